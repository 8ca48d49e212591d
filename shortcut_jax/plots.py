"""Figures of sweep results: learning curves, final metric vs width, paired heatmaps, decision
boundaries and diagnostics over training.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot (no backend is
selected, nothing is shown, saved or printed); the caller saves it with ``fig.savefig(path)``.
Needs matplotlib (the ``dev``/``experiments`` extras); ``import shortcut_jax`` does not.

Input ``rows`` is a list of dict rows as from ``csv.DictReader`` over a sweep's
``results.csv`` (values may be strings or numbers), one row per (run, eval step).

Conventions, shared by all functions:

* A *run* is identified by (dataset, variant, width, lr, data_seed, seed); replicates of a
  configuration are its (data_seed, seed) pairs, called "seeds" in the figures.
* Within one dataset the columns ``optimizer``, ``loss_fn`` and ``batch_size`` must each
  hold a single value; rows that mix them raise ``ValueError`` (filter them first).
* Means and intervals are ``stats.mean_ci`` (two-sided Student-t over seeds, default 95%);
  with one seed there is no interval. Paired differences are ``stats.paired_differences``.
* A run's *final* value is the one at its last eval step (as in ``stats``).
* NaN values (a diverged run, an empty cell) are left out of a mean; a step or cell where
  every value is NaN is not drawn.
* ``lr="best"`` picks, separately for each (variant, width), the learning rate with the best
  mean final value of ``select_by`` (highest for an accuracy column, lowest for a loss
  column; ties go to the smaller lr). ``select_by=None`` means the plotted metric when it is
  an accuracy or loss column, else ``"test_acc"``. The chosen lr is shown in the legend (or
  next to the point). Note that selecting on a test column is optimistic for that column.
* ``dataset=None`` means the first dataset in row order.
* Variants are drawn in the order plain, shortcut (then any others), plain in blue and
  shortcut in orange.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from shortcut_jax.model import Params, predict
from shortcut_jax.stats import _to_float, mean_ci, paired_differences

__all__ = [
    "DIAGNOSTICS",
    "decision_boundaries",
    "diagnostics_over_training",
    "learning_curves",
    "metric_vs_width",
    "paired_heatmap",
]

DIAGNOSTICS: tuple[str, ...] = (
    "dead_frac",
    "saturated_frac",
    "shortcut_share",
    "max_overlap",
    "grad_norm",
)

_ID_COLUMNS = (
    "dataset",
    "data_seed",
    "variant",
    "width",
    "lr",
    "seed",
    "optimizer",
    "loss_fn",
    "batch_size",
    "step",
)
_REQUIRED = ("dataset", "variant", "width", "lr", "seed", "step")
_CONFIG_COLUMNS = ("optimizer", "loss_fn", "batch_size")
_VARIANTS = ("plain", "shortcut")
_COLORS = {"plain": "C0", "shortcut": "C1"}
_OTHER_COLORS = ("C2", "C4", "C5", "C6", "C7")
_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
_PANEL_W, _PANEL_H = 4.0, 3.3
_MAX_COLS = 4
_DPI = 100

_Run = dict[str, np.ndarray]
_RunKey = tuple[str, int, float]  # (variant, width, lr)
_Runs = dict[_RunKey, dict[str, _Run]]  # {(variant, width, lr): {replicate: run}}


# --------------------------------------------------------------------------------------
# Parsing and validation
# --------------------------------------------------------------------------------------


def _as_rows(rows: Any) -> tuple[list[Mapping[str, Any]], list[str]]:
    """Check ``rows`` and return it as a list with its columns in first-seen order."""
    if rows is None or isinstance(rows, (str, bytes, Mapping)):
        raise TypeError(
            "rows: expected a list of dict rows (as from csv.DictReader), "
            f"got {type(rows).__name__}"
        )
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: expected at least one dict row (as from csv.DictReader)")
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise TypeError(f"rows[{i}]: expected a dict, got {type(r).__name__}")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        raise ValueError(f"rows: missing required column(s) {missing}; columns present: {columns}")
    return rows, columns


def _check_metric(metric: Any, columns: Sequence[str], arg: str = "metric") -> str:
    if not isinstance(metric, str) or metric not in columns or metric in _ID_COLUMNS:
        available = [c for c in columns if c not in _ID_COLUMNS]
        raise ValueError(
            f"{arg}: {metric!r} is not a metric column of rows; "
            f"available columns: {', '.join(available)}"
        )
    return metric


def _str(v: Any) -> str:
    return "" if v is None else str(v).strip()


def _id(v: Any) -> str:
    """A seed-like cell as canonical text: "3", "3.0" and 3 are all "3"."""
    s = _str(v)
    try:
        f = float(s)
    except ValueError:
        return s
    return str(int(f)) if f.is_integer() else repr(f)


def _width(v: Any) -> int:
    f = _to_float(v, "width")
    if not (math.isfinite(f) and f.is_integer() and f >= 1):
        raise ValueError(f"rows: column 'width' has a value {v!r} that is not an integer >= 1")
    return int(f)


def _lr_value(v: Any) -> float:
    f = _to_float(v, "lr")
    if not math.isfinite(f):
        raise ValueError(f"rows: column 'lr' has a value {v!r} that is not a finite number")
    return f


def _datasets(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(_str(r.get("dataset")) for r in rows))


def _pick_dataset(rows: Sequence[Mapping[str, Any]], dataset: Any) -> str:
    names = _datasets(rows)
    if dataset is None:
        return names[0]
    if _str(dataset) not in names:
        raise ValueError(f"dataset: {dataset!r} is not in rows; datasets present: {names}")
    return _str(dataset)


def _runs(rows: Sequence[Mapping[str, Any]], dataset: str, columns: Sequence[str]) -> _Runs:
    """Runs of one dataset, each sorted by step: ``{(variant, width, lr): {rep: run}}``."""
    subset = [r for r in rows if _str(r.get("dataset")) == dataset]
    for c in _CONFIG_COLUMNS:
        values = sorted({_str(r.get(c)) for r in subset})
        if len(values) > 1:
            raise ValueError(
                f"rows: dataset {dataset!r} mixes {c} values {values}; plot one at a time, "
                f"e.g. [r for r in rows if r[{c!r}] == {values[0]!r}]"
            )
    cols = list(dict.fromkeys(columns))
    acc: dict[_RunKey, dict[str, dict[str, list[float]]]] = {}
    for r in subset:
        key = (_str(r.get("variant")), _width(r.get("width")), _lr_value(r.get("lr")))
        data_seed, seed = _id(r.get("data_seed")), _id(r.get("seed"))
        rep = f"{data_seed}/{seed}" if data_seed else seed
        run = acc.setdefault(key, {}).setdefault(rep, {c: [] for c in ("step", *cols)})
        run["step"].append(_to_float(r.get("step"), "step"))
        for c in cols:
            run[c].append(_to_float(r.get(c), c))
    out: _Runs = {}
    for key in sorted(acc):
        out[key] = {}
        for rep, lists in acc[key].items():
            run = {c: np.asarray(v, dtype=np.float64) for c, v in lists.items()}
            step = run["step"]
            where = (
                f"dataset={dataset!r}, variant={key[0]!r}, width={key[1]}, lr={key[2]:g}, "
                f"seed={rep!r}"
            )
            if np.isnan(step).any():
                raise ValueError(f"rows: missing step in run {where}")
            if np.unique(step).size != step.size:
                raise ValueError(
                    f"rows: duplicate steps in run {where}; rows hold more than one run per "
                    "configuration and seed (concatenated sweeps?)"
                )
            order = np.argsort(step, kind="stable")
            out[key][rep] = {c: a[order] for c, a in run.items()}
    return out


def _variants(runs: _Runs) -> list[str]:
    present = {k[0] for k in runs}
    return [v for v in _VARIANTS if v in present] + sorted(present - set(_VARIANTS))


def _color(variant: str, variants: Sequence[str]) -> str:
    if variant in _COLORS:
        return _COLORS[variant]
    others = [v for v in variants if v not in _COLORS]
    return _OTHER_COLORS[others.index(variant) % len(_OTHER_COLORS)]


def _widths(runs: _Runs) -> list[int]:
    return sorted({k[1] for k in runs})


def _lrs(runs: _Runs, variant: str | None = None, width: int | None = None) -> list[float]:
    return sorted(
        {
            k[2]
            for k in runs
            if (variant is None or k[0] == variant) and (width is None or k[1] == width)
        }
    )


def _higher_is_better(metric: str) -> bool | None:
    name = metric.lower()
    if "acc" in name:
        return True
    if "loss" in name:
        return False
    return None


def _resolve_select_by(select_by: str | None, metric: str | None, columns: Sequence[str]) -> str:
    if select_by is None:
        select_by = metric if metric and _higher_is_better(metric) is not None else "test_acc"
    _check_metric(select_by, columns, "select_by")
    if _higher_is_better(select_by) is None:
        raise ValueError(
            f"select_by: cannot tell whether {select_by!r} is better high or low; "
            "use an accuracy or loss column"
        )
    return select_by


def _check_lr(lr: Any, runs: _Runs, dataset: str, allow_all: bool) -> str | float:
    """'best', 'all' (if allowed) or one of the learning rates present in ``runs``."""
    words = ("'best', 'all'" if allow_all else "'best'") + " or a learning rate"
    if isinstance(lr, str) and (lr == "best" or (allow_all and lr == "all")):
        return lr
    if isinstance(lr, bool):
        raise ValueError(f"lr: expected {words}, got {lr!r}")
    try:
        f = float(lr)
    except (TypeError, ValueError):
        raise ValueError(f"lr: expected {words}, got {lr!r}") from None
    present = _lrs(runs)
    for p in present:
        if math.isclose(p, f, rel_tol=1e-9, abs_tol=0.0):
            return p
    raise ValueError(
        f"lr: {lr!r} is not a learning rate of dataset {dataset!r}; "
        f"present: {[float(p) for p in present]}"
    )


def _finals(seeds: Mapping[str, _Run], column: str) -> np.ndarray:
    """Final-step values of ``column`` over the seeds, NaN dropped."""
    v = np.array([run[column][-1] for run in seeds.values()], dtype=np.float64)
    return v[~np.isnan(v)]


def _best_lr(runs: _Runs, variant: str, width: int, select_by: str) -> float:
    higher = _higher_is_better(select_by)
    best, best_mean = None, math.nan
    for lr in _lrs(runs, variant, width):
        v = _finals(runs[(variant, width, lr)], select_by)
        if v.size == 0:
            continue
        m = float(v.mean())
        if best is None or (m > best_mean if higher else m < best_mean):
            best, best_mean = lr, m
    if best is None:
        raise ValueError(
            f"select_by: final {select_by!r} is NaN for every run of variant {variant!r}, "
            f"width {width}; cannot pick a best lr (pass lr=<value>)"
        )
    return best


def _chosen_lrs(
    runs: _Runs, variant: str, width: int, lr: str | float, select_by: str
) -> list[float]:
    present = _lrs(runs, variant, width)
    if not present:
        return []
    if lr == "all":
        return present
    if lr == "best":
        return [_best_lr(runs, variant, width, select_by)]
    return [lr] if lr in present else []


def _curve(
    seeds: Mapping[str, _Run], column: str, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per eval step: mean and CI of ``column`` over the seeds that have a value there."""
    by_step: dict[float, list[float]] = {}
    for run in seeds.values():
        for s, v in zip(run["step"], run[column], strict=True):
            vals = by_step.setdefault(float(s), [])
            if not math.isnan(v):
                vals.append(float(v))
    steps = np.array(sorted(by_step), dtype=np.float64)
    stats = np.full((steps.size, 3), np.nan)
    for i, s in enumerate(steps):
        if by_step[float(s)]:
            stats[i] = mean_ci(by_step[float(s)], confidence)
    return steps, stats[:, 0], stats[:, 1], stats[:, 2]


def _pct(confidence: float) -> str:
    return f"{100 * confidence:g}%"


def _new_figure(nrows: int, ncols: int, extra_w: float = 0.0, extra_h: float = 0.6) -> Figure:
    return Figure(
        figsize=(_PANEL_W * ncols + extra_w, _PANEL_H * nrows + extra_h),
        dpi=_DPI,
        layout="tight",
    )


def _grid_shape(n: int) -> tuple[int, int]:
    """Rows and columns for ``n`` panels, at most ``_MAX_COLS`` to a row, rows filled evenly."""
    nrows = math.ceil(n / _MAX_COLS)
    return nrows, math.ceil(n / nrows)


def _panels(fig: Figure, n: int, *, sharex: bool = False, sharey: bool = False) -> list:
    """``n`` axes in a ``_grid_shape(n)`` grid; unused cells are removed."""
    nrows, ncols = _grid_shape(n)
    grid = fig.subplots(nrows, ncols, sharex=sharex, sharey=sharey, squeeze=False).ravel()
    for ax in grid[n:]:
        fig.delaxes(ax)
    axes = list(grid[:n])
    for ax in axes:  # shared axes hide inner tick labels; keep them where a cell was removed
        ax.xaxis.set_tick_params(labelbottom=True)
    return axes


def _draw_curve(ax, steps, mean, lo, hi, color, linestyle, label) -> None:
    marker = "." if steps.size <= 25 else None
    ax.plot(steps, mean, color=color, linestyle=linestyle, marker=marker, label=label)
    ax.fill_between(steps, lo, hi, color=color, alpha=0.2, linewidth=0)


def _lr_text(lr: float) -> str:
    return f"lr={lr:g}"


def _legend(ax, *args, **kwargs) -> None:
    """A legend, unless the panel has nothing labeled to show (matplotlib would warn)."""
    if args or ax.get_legend_handles_labels()[0]:
        ax.legend(*args, **kwargs)


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def learning_curves(
    rows: Sequence[Mapping[str, Any]],
    metric: str = "test_acc",
    dataset: str | None = None,
    *,
    lr: str | float = "best",
    select_by: str | None = None,
    confidence: float = 0.95,
) -> Figure:
    """``metric`` against eval step, one panel per width of one dataset (y shared; at most
    four panels to a row).

    Each line is the mean over seeds at every eval step with a shaded ``confidence`` CI band;
    plain and shortcut have their own colors. ``lr="best"`` draws, per variant and width,
    the lr with the best mean final ``select_by`` (see the module docstring), with a legend
    in every panel giving the lr and the number of seeds; ``lr=<value>`` draws that lr;
    ``lr="all"`` draws every lr, one line style per lr (legend in the first panel: colors
    are variants, styles are lrs). Axes: one per width, no colorbar.
    """
    rows, columns = _as_rows(rows)
    _check_metric(metric, columns)
    ds = _pick_dataset(rows, dataset)
    select_by = _resolve_select_by(select_by, metric, columns)
    runs = _runs(rows, ds, [metric, select_by])
    lr = _check_lr(lr, runs, ds, allow_all=True)
    widths, variants, all_lrs = _widths(runs), _variants(runs), _lrs(runs)

    fig = _new_figure(*_grid_shape(len(widths)))
    axes = _panels(fig, len(widths), sharey=True)
    for k, (ax, width) in enumerate(zip(axes, widths, strict=True)):
        for variant in variants:
            for chosen in _chosen_lrs(runs, variant, width, lr, select_by):
                seeds = runs[(variant, width, chosen)]
                steps, mean, lo, hi = _curve(seeds, metric, confidence)
                style = "-"
                if lr == "all":
                    style = _LINESTYLES[all_lrs.index(chosen) % len(_LINESTYLES)]
                label = f"{variant}, {_lr_text(chosen)} (n={len(seeds)})"
                _draw_curve(ax, steps, mean, lo, hi, _color(variant, variants), style, label)
        ax.set_title(f"width {width}")
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if lr == "best":  # the chosen lr can differ between panels
            _legend(ax, fontsize="small")
        elif k == 0 and lr == "all":  # colors: variants; line styles: lrs
            handles = [Line2D([], [], color=_color(v, variants)) for v in variants]
            handles += [Line2D([], [], color="0.3", linestyle=_LINESTYLES[i % len(_LINESTYLES)])
                        for i in range(len(all_lrs))]
            names = [*variants, *(_lr_text(r) for r in all_lrs)]
            _legend(ax, handles, names, fontsize="small")
        elif k == 0:
            _legend(ax, fontsize="small")
    if lr == "best":
        lr_desc = f"best lr per variant by final {select_by}"
    else:
        lr_desc = "one line style per lr" if lr == "all" else _lr_text(lr)
    fig.suptitle(
        f"{ds}: {metric} over training (mean, {_pct(confidence)} CI over seeds; {lr_desc})"
    )
    return fig


def metric_vs_width(
    rows: Sequence[Mapping[str, Any]],
    metric: str = "test_acc",
    *,
    lr: str | float = "best",
    select_by: str | None = None,
    confidence: float = 0.95,
) -> Figure:
    """Final ``metric`` against width (log2 axis), one panel per dataset.

    Each point is the mean over seeds of the run's final value with a ``confidence`` CI error
    bar; plain and shortcut are two colored lines, nudged apart sideways so the bars do not
    overlap. ``lr="best"`` uses, per variant and width, the lr with the best mean final
    ``select_by`` and writes the chosen lrs in a strip along the bottom of the panel, one
    row per variant in its color; ``lr=<value>`` uses that lr everywhere (every dataset must
    have it). Axes: one per dataset (at most four to a row), no colorbar.
    """
    rows, columns = _as_rows(rows)
    _check_metric(metric, columns)
    select_by = _resolve_select_by(select_by, metric, columns)
    datasets = _datasets(rows)
    fig = _new_figure(*_grid_shape(len(datasets)))
    axes = _panels(fig, len(datasets))
    for ax, ds in zip(axes, datasets, strict=True):
        runs = _runs(rows, ds, [metric, select_by])
        chosen_lr = _check_lr(lr, runs, ds, allow_all=False)
        widths, variants = _widths(runs), _variants(runs)
        nudge = np.linspace(-0.04, 0.04, len(variants)) if len(variants) > 1 else [0.0]
        for variant, dx in zip(variants, nudge, strict=True):
            xs, stats, lrs = [], [], []
            for width in widths:
                picked = _chosen_lrs(runs, variant, width, chosen_lr, select_by)
                if not picked:
                    continue
                v = _finals(runs[(variant, width, picked[0])], metric)
                if v.size == 0:
                    continue
                xs.append(width * 2.0**dx)
                stats.append(mean_ci(v, confidence))
                lrs.append(picked[0])
            if not xs:
                continue
            m, lo, hi = np.array(stats, dtype=np.float64).T
            yerr = np.nan_to_num(np.vstack([m - lo, hi - m]), nan=0.0)
            color = _color(variant, variants)
            xs = np.asarray(xs, dtype=np.float64)
            ax.errorbar(xs, m, yerr=yerr, fmt="o-", color=color, capsize=3, label=variant)
            if chosen_lr == "best":  # the chosen lrs, in a strip along the bottom
                row = len(variants) - 1 - variants.index(variant)
                for x, r in zip(xs, lrs, strict=True):
                    ax.annotate(f"{r:g}", (x, 0.0), xycoords=("data", "axes fraction"),
                                xytext=(0, 3 + 9 * row), textcoords="offset points",
                                ha="center", fontsize=7, color=color)
        if chosen_lr == "best":
            lo, hi = ax.get_ylim()
            f = 0.03 + 0.06 * len(variants)  # room for the strip, as a fraction of the axes
            ax.set_ylim(lo - f * (hi - lo) / (1 - f), hi)
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.minorticks_off()
        ax.set_title(ds)
        ax.set_xlabel("width (hidden units)")
        ax.set_ylabel(f"final {metric}")
        ax.grid(alpha=0.3)
        _legend(ax, fontsize="small", title="best lr: along the bottom" if lr == "best" else None,
                title_fontsize="x-small")
    if lr == "best":
        lr_desc = f"best lr per variant & width by final {select_by}"
    else:
        lr_desc = _lr_text(float(lr))
    fig.suptitle(f"final {metric} vs width (mean, {_pct(confidence)} CI over seeds; {lr_desc})")
    return fig


def paired_heatmap(
    rows: Sequence[Mapping[str, Any]],
    metric: str = "test_acc",
    dataset: str | None = None,
    *,
    confidence: float = 0.95,
) -> Figure:
    """lr x width grid of the mean seed-paired difference shortcut - plain of final ``metric``.

    Cells come from ``stats.paired_differences`` (pairs with a NaN dropped); each is
    annotated with its value, plus ``*`` when the ``confidence`` CI of the difference
    excludes 0. The diverging colormap is centered at 0 with symmetric limits; for accuracy
    and loss columns it is oriented so that blue means the shortcut is better, otherwise
    red means shortcut higher. Cells without both variants (or without a usable pair) show
    "n/a". The image array is (lr ascending from the bottom, width ascending from the left).
    Axes: the heatmap and its colorbar (2).
    """
    rows, columns = _as_rows(rows)
    _check_metric(metric, columns)
    ds = _pick_dataset(rows, dataset)
    runs = _runs(rows, ds, [metric])
    widths, lrs = _widths(runs), _lrs(runs)
    higher = _higher_is_better(metric)
    diff = np.full((len(lrs), len(widths)), np.nan)
    star = np.zeros(diff.shape, dtype=bool)
    n_pairs: set[int] = set()
    for i, lr in enumerate(lrs):
        for j, width in enumerate(widths):
            plain, short = runs.get(("plain", width, lr)), runs.get(("shortcut", width, lr))
            if not plain or not short:
                continue
            cell = [
                {"variant": variant, "seed": rep, "step": run["step"][-1], metric: run[metric][-1]}
                for variant, seeds in (("plain", plain), ("shortcut", short))
                for rep, run in seeds.items()
            ]
            usable = [
                rep
                for rep in plain
                if rep in short
                and not math.isnan(plain[rep][metric][-1])
                and not math.isnan(short[rep][metric][-1])
            ]
            if not usable and set(plain) == set(short):
                continue
            try:
                (res,) = paired_differences(
                    cell,
                    metric=metric,
                    higher_is_better=True if higher is None else higher,
                    group_keys=("variant",),
                    confidence=confidence,
                    drop_nan=True,
                )
            except ValueError as err:
                raise ValueError(
                    f"rows: dataset {ds!r}, width {width}, lr {lr:g}: {err}"
                ) from None
            diff[i, j] = res["diff_mean"]
            star[i, j] = res["diff_lo"] > 0 or res["diff_hi"] < 0
            n_pairs.add(res["n_used"])

    fig = _new_figure(1, 1, extra_w=1.6 + 0.5 * max(0, len(widths) - 4),
                      extra_h=1.0 + 0.35 * max(0, len(lrs) - 4))
    ax = fig.subplots()
    finite = np.abs(diff[np.isfinite(diff)])
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    cmap = "RdBu" if higher is True else "RdBu_r"
    norm = Normalize(vmin=-vmax, vmax=vmax)
    im = ax.imshow(diff, cmap=cmap, norm=norm, origin="lower", aspect="auto")
    for i in range(len(lrs)):
        for j in range(len(widths)):
            d = diff[i, j]
            if math.isnan(d):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="0.4")
                continue
            text = f"{d:+.3g}" + ("*" if star[i, j] else "")
            dark = abs(norm(d) - 0.5) > 0.3
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    ax.set_xticks(range(len(widths)), [str(w) for w in widths])
    ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_xlabel("width (hidden units)")
    ax.set_ylabel("learning rate")
    better = {True: "; blue = shortcut better", False: "; blue = shortcut better (lower)"}
    fig.colorbar(im, ax=ax, label=f"shortcut − plain, final {metric}")
    pairs = "–".join(str(n) for n in sorted({min(n_pairs), max(n_pairs)})) if n_pairs else "0"
    fig.suptitle(f"{ds}: shortcut − plain, final {metric}")
    ax.set_title(
        f"mean over {pairs} seed pairs; * = {_pct(confidence)} CI excludes 0"
        f"{better.get(higher, '')}",
        fontsize="small",
    )
    return fig


def decision_boundaries(
    models: Sequence[Params],
    X: Any,
    Y: Any,
    titles: Sequence[str],
    *,
    resolution: int = 200,
    padding: float = 0.1,
) -> Figure:
    """Side-by-side panels of 2-D classifiers: filled y_hat = predict(params, grid) in [0, 1]
    (blue 0 .. red 1), its 0.5 contour in black, and the points of ``X`` colored by ``Y``.

    ``X`` (n, 2) sets the plotted area (its range plus ``padding`` of it on each side) on a
    ``resolution`` x ``resolution`` grid; ``Y`` (n,) holds the two class labels; ``titles``
    one per model. Axes: one per model plus one shared colorbar.
    """
    if isinstance(models, Params) or not isinstance(models, Iterable):
        raise TypeError("models: expected a list of shortcut_jax.Params")
    models = list(models)
    if not models:
        raise ValueError("models is empty: expected at least one shortcut_jax.Params")
    for i, m in enumerate(models):
        if not isinstance(m, Params):
            raise TypeError(f"models[{i}]: expected a shortcut_jax.Params, got {type(m).__name__}")
        shape = np.shape(m.W1)
        if len(shape) != 2 or shape[1] != 2:
            raise ValueError(
                f"models[{i}]: decision boundaries need 2-D inputs (W1 of shape (h, 2)), "
                f"got W1 of shape {shape}"
            )
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X: decision boundaries need 2-D inputs of shape (n, 2), got {X.shape}")
    if X.shape[0] == 0 or not np.isfinite(X).all():
        raise ValueError(f"X: expected at least one point and finite values, got shape {X.shape}")
    Y = np.asarray(Y)
    if Y.shape != (X.shape[0],):
        raise ValueError(f"Y: expected shape (n,) = ({X.shape[0]},) to match X, got {Y.shape}")
    labels = np.unique(Y)
    if labels.size > 2:
        raise ValueError(f"Y: expected at most two class labels, got {labels.tolist()}")
    if isinstance(titles, str):
        raise TypeError("titles: expected a list of strings, one per model, got a str")
    titles = list(titles)
    if len(titles) != len(models):
        raise ValueError(
            f"titles: expected {len(models)} titles (one per model), got {len(titles)}"
        )
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution: expected an integer >= 2, got {resolution!r}")

    lo, hi = X.min(axis=0), X.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - padding * span, hi + padding * span
    gx, gy = np.meshgrid(
        np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    )
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)

    n = len(models)
    fig = Figure(figsize=(_PANEL_W * n + 0.8, _PANEL_W + 0.4), dpi=_DPI, layout="tight")
    gs = fig.add_gridspec(1, n + 1, width_ratios=[1.0] * n + [0.05])
    levels = np.linspace(0.0, 1.0, 11)
    point_colors = ("#2166ac", "#b2182b")  # the colormap's two ends: class 0 blue, 1 red
    filled = None
    for k, (params, title) in enumerate(zip(models, titles, strict=True)):
        ax = fig.add_subplot(gs[0, k])
        dtype = np.asarray(params.W1).dtype
        prob = np.asarray(predict(params, grid.astype(dtype)), dtype=np.float64)
        prob = prob.reshape(gx.shape)
        filled = ax.contourf(gx, gy, prob, levels=levels, cmap="RdBu_r", vmin=0.0, vmax=1.0,
                             alpha=0.55)
        if prob.min() < 0.5 < prob.max():
            ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1.5)
        for c, label in enumerate(labels):
            sel = Y == label
            ax.scatter(X[sel, 0], X[sel, 1], s=16, color=point_colors[c % 2], edgecolors="k",
                       marker="o^"[c % 2],
                       linewidths=0.4, label=f"y = {label:g}" if labels.dtype.kind in "fiub"
                       else f"y = {label}")
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_title(str(title))
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        if k == 0:
            handles, names = ax.get_legend_handles_labels()
            handles.append(Line2D([], [], color="k", linewidth=1.5))
            names.append("ŷ = 0.5")
            ax.legend(handles, names, fontsize="small", loc="best", framealpha=0.8)
    cax = fig.add_subplot(gs[0, n])
    fig.colorbar(filled, cax=cax, label="ŷ = predicted P(y = 1)")
    fig.suptitle("Decision boundaries: ŷ on a grid, 0.5 contour, data colored by label")
    return fig


def diagnostics_over_training(
    rows: Sequence[Mapping[str, Any]],
    dataset: str | None = None,
    *,
    width: int | None = None,
    lr: str | float = "best",
    select_by: str = "test_acc",
    metrics: Sequence[str] = DIAGNOSTICS,
    confidence: float = 0.95,
) -> Figure:
    """One panel per diagnostic in ``metrics`` (default ``DIAGNOSTICS``: dead_frac,
    saturated_frac, shortcut_share, max_overlap, grad_norm) against eval step, for one width.

    ``width=None`` takes the median width present (the lower middle one for an even count).
    Plain and shortcut are two colored lines (mean over seeds with a ``confidence`` CI band),
    each at the lr chosen by ``lr`` (default: best per variant by mean final ``select_by``).
    Panels are laid out three to a row; the legend is in the first panel. Axes: one per
    metric (unused grid cells are removed).
    """
    rows, columns = _as_rows(rows)
    if isinstance(metrics, str):
        raise TypeError("metrics: expected a sequence of column names, got a str")
    metrics = list(metrics)
    if not metrics:
        raise ValueError("metrics is empty: expected at least one column name")
    for m in metrics:
        _check_metric(m, columns, "metrics")
    ds = _pick_dataset(rows, dataset)
    select_by = _resolve_select_by(select_by, None, columns)
    runs = _runs(rows, ds, [*metrics, select_by])
    widths = _widths(runs)
    if width is None:
        width = widths[(len(widths) - 1) // 2]
    elif width not in widths:
        raise ValueError(f"width: {width!r} is not a width of dataset {ds!r}; present: {widths}")
    lr = _check_lr(lr, runs, ds, allow_all=False)
    variants = _variants(runs)
    picked = {v: _chosen_lrs(runs, v, width, lr, select_by) for v in variants}

    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = _new_figure(nrows, ncols)
    grid = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    for ax in grid[len(metrics):]:
        fig.delaxes(ax)
    for k, (ax, metric) in enumerate(zip(grid, metrics, strict=False)):
        for variant in variants:
            for chosen in picked[variant]:
                seeds = runs[(variant, width, chosen)]
                steps, mean, lo, hi = _curve(seeds, metric, confidence)
                label = f"{variant}, {_lr_text(chosen)} (n={len(seeds)})"
                _draw_curve(ax, steps, mean, lo, hi, _color(variant, variants), "-", label)
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.grid(alpha=0.3)
        if k == 0:
            _legend(ax, fontsize="small")
    lr_desc = f"best lr per variant by final {select_by}" if lr == "best" else _lr_text(lr)
    fig.suptitle(
        f"{ds}, width {width}: diagnostics over training "
        f"(mean, {_pct(confidence)} CI over seeds; {lr_desc})"
    )
    return fig

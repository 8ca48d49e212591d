"""Figures of a results table (`results.load`): learning curves, final metric against width,
paired differences against an axis and over two axes, decision boundaries, diagnostics.

Each function returns a matplotlib Figure built without pyplot (nothing is shown or saved;
`fig.savefig(path)`). Means and intervals come from `stats`; a figure at the "best" learning
rate uses the one chosen on validation (`stats.best_lr`), written in its legend or next to the
point. Legends count the seeds whose values are finite. Plain is blue, the shortcut orange.
Titles are wrapped to fit the figure.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import jax
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D

from shortcut_jax import stats
from shortcut_jax.model import Params, predict

DIAGNOSTICS = ("dead_frac", "saturated_frac", "shortcut_share", "max_overlap", "grad_norm")
COLORS = {"plain": "C0", "shortcut": "C1"}
STYLES = {None: "-", "zeros": "-", "lecun": "--"}
DOUBLING = ("width", "n_train", "d", "batch_size", "teacher_width")
"""Axes whose grids double (1, 2, 4, ...): drawn on a log2 scale with the grid's values as ticks."""


def _wrap(text: str, width_in: float, fontsize="medium") -> str:
    """`text` with each of its lines broken at spaces to fit `width_in` inches at `fontsize`
    (a conservative 0.6 em per character)."""
    em = FontProperties(size=fontsize).get_size_in_points()
    chars = max(20, int(width_in * 72 / (0.6 * em)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def _suptitle(fig: Figure, text: str, fontsize="medium") -> None:
    """A figure title wrapped to the figure's width."""
    fig.suptitle(_wrap(text, fig.get_figwidth() - 0.2, fontsize), fontsize=fontsize)


def _numeric(values) -> np.ndarray | None:
    """The values as floats, or None where any is not a number (a categorical axis)."""
    x = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(float)
    return None if np.isnan(x).any() else x


def _grid_ticks(ax, axis: str, values: Sequence[float]) -> None:
    """The grid's values as x ticks; a doubling axis (DOUBLING) of positive values on log2."""
    values = sorted(set(values))
    if axis in DOUBLING and values[0] > 0:
        ax.set_xscale("log", base=2)
    if axis in DOUBLING or len(values) <= 12:
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()


def _figure(n: int, width: float = 4.0, height: float = 3.3, cols: int = 4):
    """A figure with n panels, at most `cols` to a row; unused cells removed."""
    rows = math.ceil(n / cols)
    cols = math.ceil(n / rows)
    fig = Figure(figsize=(width * cols, height * rows + 0.6), dpi=100, layout="tight")
    grid = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in grid[n:]:
        fig.delaxes(ax)
    return fig, list(grid[:n])


def _check(df: pd.DataFrame, *columns: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df: expected the DataFrame of results.load, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"df: no column {missing[0]!r}; expected one of {list(df.columns)}")


SETTING = ["dataset", "data_seed", "n_train", "d", "noise", "linear_weight", "teacher_width",
           "teacher_shortcut", "optimizer", "loss_fn", "batch_size"]
"""Columns of a run's setting: everything but variant, shortcut_init, width, lr and seed."""


def _settings(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per setting; the title names the dataset and the columns that vary."""
    varying = [c for c in SETTING[1:] if df[c].nunique(dropna=False) > 1]
    out = []
    for key, g in df.groupby(SETTING, observed=True, dropna=False, sort=True):
        values = dict(zip(SETTING, key))
        shown = [f"{c}={values[c]:g}" if isinstance(values[c], float) else f"{c}={values[c]}"
                 for c in varying if not pd.isna(values[c])]
        out.append((" ".join([str(values["dataset"]), *shown]), g))
    return out


def _one(df: pd.DataFrame, dataset: str | None) -> tuple[pd.DataFrame, str]:
    """The rows of one dataset (default: the first) and, where other axes vary, of its first
    setting (named in the returned title)."""
    names = list(df["dataset"].unique())
    if dataset is None:
        dataset = names[0]
    elif dataset not in names:
        raise ValueError(f"dataset: {dataset!r} is not in the table; expected one of {names}")
    return _settings(df[df["dataset"] == dataset])[0][::-1]


def at_best_lr(df: pd.DataFrame, select_by: str = "val_acc") -> pd.DataFrame:
    """Every eval row of the runs at their configuration's validation-selected lr."""
    chosen = stats.best_lr(df, select_by)  # runs picked by their ids, not a merge on RUN_KEYS
    return df[stats.run_ids(df).isin(stats.run_ids(chosen))].reset_index(drop=True)


def _label(variant: str, init, lr: float | None, n: int) -> str:
    name = variant if init is None or pd.isna(init) else f"{variant} ({init})"
    return f"{name}{'' if lr is None else f', lr={lr:g}'} (n={n})"


def _lines(ax, runs: pd.DataFrame, metric: str, confidence: float) -> None:
    """Mean and t band of `metric` against step, one line per (variant, shortcut_init, lr)."""
    keys = ["variant", "shortcut_init", "lr"]
    for (variant, init, lr), g in runs.groupby(keys, observed=True, dropna=False):
        curve = g.groupby("step")[metric].agg(["mean", "std", "count"]).sort_index()
        steps, mean = curve.index.to_numpy(), curve["mean"].to_numpy()
        q = np.array([stats.t_quantile(confidence, int(c) - 1) if c > 1 else np.nan
                      for c in curve["count"]])
        half = q * curve["std"].to_numpy() / np.sqrt(curve["count"].to_numpy())
        lo, hi = mean - half, mean + half
        bounds = stats.bounds(metric)  # where the mean lies, as the tables' (stats.t_interval)
        if bounds is not None:
            lo, hi = np.clip(lo, *bounds), np.clip(hi, *bounds)
        n = int(stats.final(g)[metric].notna().sum())
        ax.plot(steps, mean, color=COLORS.get(variant, "C2"),
                linestyle=STYLES.get(None if pd.isna(init) else init, ":"),
                marker="." if len(steps) <= 25 else None, label=_label(variant, init, lr, n))
        ax.fill_between(steps, lo, hi, color=COLORS.get(variant, "C2"), alpha=0.2, linewidth=0)


def learning_curves(df: pd.DataFrame, metric: str = "test_acc", dataset: str | None = None, *,
                    select_by: str = "val_acc", confidence: float = 0.95) -> Figure:
    """`metric` against step, one panel per width of one dataset, each variant at its
    validation-selected lr: mean over seeds with a t band."""
    _check(df, metric, select_by)
    runs, dataset = _one(at_best_lr(df, select_by), dataset)
    widths = sorted(runs["width"].unique().tolist())
    fig, axes = _figure(len(widths))
    for ax, width in zip(axes, widths):
        _lines(ax, runs[runs["width"] == width], metric, confidence)
        ax.set(title=f"width {width}", xlabel="step", ylabel=metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    _suptitle(fig, f"{dataset}: {metric} over training\n(mean, {confidence:.0%} t interval "
                   f"over seeds; lr chosen on {select_by})")
    return fig


def diagnostics_over_training(df: pd.DataFrame, dataset: str | None = None,
                              width: int | None = None, *, metrics: Sequence[str] = DIAGNOSTICS,
                              select_by: str = "val_acc", confidence: float = 0.95) -> Figure:
    """One panel per diagnostic against step for one width (default: the median one), each
    variant at its validation-selected lr."""
    _check(df, *metrics, select_by)
    runs, dataset = _one(at_best_lr(df, select_by), dataset)
    widths = sorted(runs["width"].unique().tolist())
    width = widths[(len(widths) - 1) // 2] if width is None else width
    if width not in widths:
        raise ValueError(f"width: {width!r} is not a width of {dataset}; expected one of {widths}")
    fig, axes = _figure(len(metrics), cols=3)
    for ax, metric in zip(axes, metrics):
        _lines(ax, runs[runs["width"] == width], metric, confidence)
        ax.set(title=metric, xlabel="step", ylabel=metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    _suptitle(fig, f"{dataset}, width {width}: diagnostics over training\n(mean, "
                   f"{confidence:.0%} t interval over seeds; lr chosen on {select_by})")
    return fig


def metric_vs_width(df: pd.DataFrame, metric: str = "test_acc", *, select_by: str = "val_acc",
                    confidence: float = 0.95) -> Figure:
    """Final `metric` against width (log2 axis), one panel per dataset, each variant at the lr
    chosen on validation for that width (written next to the point)."""
    _check(df, metric, select_by)
    settings = _settings(stats.best_lr(df, select_by))
    fig, axes = _figure(len(settings))
    for ax, (title, part) in zip(axes, settings):
        widths = sorted(part["width"].unique().tolist())
        groups = part.groupby(["variant", "shortcut_init"], observed=True, dropna=False)
        for k, ((variant, init), g) in enumerate(groups):
            points = [(w, stats.t_interval(gw[metric].dropna(), confidence,
                                           stats.bounds(metric)), gw["lr"].iloc[0],
                       int(gw[metric].notna().sum())) for w, gw in g.groupby("width")]
            xs = np.array([w for w, *_ in points], float) * 2.0 ** (0.04 * (2 * k - 1))
            m, lo, hi = (np.array([p[1][i] for p in points]) for i in range(3))
            yerr = np.nan_to_num(np.vstack([m - lo, hi - m]))
            n = min(p[3] for p in points)
            ax.errorbar(xs, m, yerr=yerr, fmt="o" + STYLES.get(None if pd.isna(init) else init,
                                                              ":"),
                        color=COLORS.get(variant, "C2"), capsize=3,
                        label=_label(variant, init, None, n))
            for x, y, p in zip(xs, m, points):
                ax.annotate(f"lr {p[2]:g}", (x, y), xytext=(4, -10 - 8 * k),
                            textcoords="offset points", fontsize=7,
                            color=COLORS.get(variant, "C2"))
        _grid_ticks(ax, "width", widths)
        ax.set(xlabel="width (hidden units)", ylabel=f"final {metric}")
        ax.set_title(_wrap(title, 3.2), fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    _suptitle(fig, f"final {metric} vs width (mean, {confidence:.0%} t interval over seeds;"
                   f"\nlr chosen per variant and width on {select_by})")
    return fig


def paired_vs_axis(df: pd.DataFrame, axis: str, metrics: Sequence[str] = ("test_acc",
                                                                          "test_loss"),
                   hue: str | None = None, *, select_by: str = "val_acc",
                   confidence: float = 0.95, tables: dict | None = None) -> Figure:
    """Shortcut minus plain of final metrics (one panel each) against `axis`, with t intervals,
    one line per value of `hue` (default: width, or dataset when the axis is width); pairs at
    the other axes' values are pooled; a doubling axis (DOUBLING) on log2, the grid's values as
    ticks. tables: {metric: stats.paired_selected(df, metric, [axis, hue], select_by,
    confidence)} if made already."""
    hue = hue or ("dataset" if axis == "width" else "width")
    _check(df, axis, hue, *metrics)
    fig, axes = _figure(len(metrics))
    for ax, metric in zip(axes, metrics):
        table = (tables or {}).get(metric)
        if table is None:
            table = stats.paired_selected(df, metric, [axis, hue], select_by, confidence)
        table = table[table[axis].notna()]
        values = table[axis].unique()
        numeric = _numeric(values)
        if numeric is None:  # categories in their order (a categorical's, else sorted)
            order = (list(table[axis].cat.categories)
                     if isinstance(table[axis].dtype, pd.CategoricalDtype)
                     else sorted(values, key=str))
            order = [v for v in order if v in set(values)]
        for k, (value, g) in enumerate(table.groupby(hue, observed=True, dropna=False)):
            x = (_numeric(g[axis]) if numeric is not None
                 else np.array([order.index(v) for v in g[axis]], float))
            g = g.iloc[np.argsort(x, kind="stable")]
            x = np.sort(x)
            yerr = np.nan_to_num(np.vstack([g["diff_mean"] - g["diff_lo"],
                                            g["diff_hi"] - g["diff_mean"]]))
            ax.errorbar(x, g["diff_mean"], yerr=yerr, fmt="o-", capsize=3, color=f"C{k}",
                        label=f"{hue} {value} (n={g['n_used'].min()})")
        if numeric is None:
            ax.set_xticks(range(len(order)), [str(v) for v in order])
        else:
            _grid_ticks(ax, axis, numeric)
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        better = "higher" if stats.higher_is_better(metric) else "lower"
        ax.set(xlabel=axis, ylabel=f"shortcut − plain, final {metric}",
               title=f"{metric} (shortcut better: {better})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    _suptitle(fig, f"shortcut − plain vs {axis}\n(mean, {confidence:.0%} t interval over seeds, "
                   f"a seed's pairs at other axes' values averaged; lr chosen on {select_by} "
                   "unless an axis)")
    return fig


def paired_heatmap(df: pd.DataFrame, metric: str = "test_acc", x: str = "width", y: str = "lr",
                   *, select_by: str = "val_acc", confidence: float = 0.95) -> Figure:
    """Mean paired difference shortcut - plain of final `metric` over a y x x grid of two axes
    ("where the shortcut helps"); * marks cells with a verdict (stats.significance: the
    interval excludes 0 and the Holm-adjusted p over the cells is below the level). The colormap is
    centred at 0 and blue where the shortcut is better."""
    _check(df, metric, x, y)
    table = stats.paired_selected(df, metric, [y, x], select_by, confidence).dropna(
        subset=[x, y])
    xs, ys = sorted(table[x].dropna().unique()), sorted(table[y].dropna().unique())
    grid = np.full((len(ys), len(xs)), np.nan)
    star = np.zeros(grid.shape, bool)
    for _, r in table.iterrows():
        i, j = ys.index(r[y]), xs.index(r[x])
        grid[i, j], star[i, j] = r["diff_mean"], stats.significance(r, 1 - confidence) != 0
    fig = Figure(figsize=(max(5.0, 2.2 + 0.9 * len(xs)), 1.8 + 0.5 * len(ys)), dpi=100,
                 layout="tight")
    ax = fig.subplots()
    vmax = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    norm = Normalize(-(vmax or 1.0), vmax or 1.0)
    image = ax.imshow(grid, cmap="RdBu" if stats.higher_is_better(metric) else "RdBu_r",
                      norm=norm, origin="lower", aspect="auto")
    for i in range(len(ys)):
        for j in range(len(xs)):
            d = grid[i, j]
            text = "n/a" if np.isnan(d) else f"{d:+.3g}{'*' if star[i, j] else ''}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if abs(norm(d) - 0.5) > 0.3 else "black")
    ax.set_xticks(range(len(xs)), [f"{v:g}" if isinstance(v, float) else str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [f"{v:g}" if isinstance(v, float) else str(v) for v in ys])
    ax.set(xlabel=x, ylabel=y)
    fig.colorbar(image, ax=ax, label=f"shortcut − plain, final {metric}")
    lr = "" if "lr" in (x, y) else f"; lr chosen on {select_by}"
    ax.set_title(_wrap(f"shortcut − plain, final {metric}\n* = {confidence:.0%} interval "
                       f"excludes 0 and Holm-adjusted Wilcoxon p < {1 - confidence:g}{lr}",
                       fig.get_figwidth() - 1.2, "small"), fontsize="small")
    return fig


_predict = jax.jit(predict)  # one program per shape (op by op, each op compiled its own)


def decision_boundaries(models: Sequence[Params], X, Y, titles: Sequence[str], *,
                        resolution: int = 200, padding: float = 0.1) -> Figure:
    """Side by side, y_hat = predict(params, grid) of 2-D classifiers in [0, 1] (blue 0 ..
    red 1), its 0.5 contour, and the points of X (n, 2) coloured by Y (n,); one title each."""
    if isinstance(models, Params) or not all(isinstance(m, Params) for m in models):
        raise TypeError("models: expected a list of shortcut_jax.Params")
    if not models or len(titles) != len(models) or isinstance(titles, str):
        raise ValueError(f"models, titles: expected one title per model and at least one, got "
                         f"{len(models)} models and {titles!r}")
    X, Y = np.asarray(X, np.float64), np.asarray(Y)
    if X.ndim != 2 or X.shape[1] != 2 or not len(X) or not np.isfinite(X).all():
        raise ValueError(f"X: expected finite 2-D inputs of shape (n, 2), got {X.shape}")
    if Y.shape != (len(X),):
        raise ValueError(f"Y: expected shape ({len(X)},) to match X, got {Y.shape}")
    for i, m in enumerate(models):
        if np.shape(m.W1)[-1:] != (2,):
            raise ValueError(f"models[{i}]: expected W1 of shape (h, 2), got {np.shape(m.W1)}")
    lo, hi = X.min(0), X.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - padding * span, hi + padding * span
    gx, gy = np.meshgrid(*(np.linspace(lo[k], hi[k], resolution) for k in range(2)))
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    fig = Figure(figsize=(4.0 * len(models) + 0.8, 4.4), dpi=100, layout="tight")
    spec = fig.add_gridspec(1, len(models) + 1, width_ratios=[1.0] * len(models) + [0.05])
    for k, (params, title) in enumerate(zip(models, titles)):
        ax = fig.add_subplot(spec[0, k])
        dtype = np.asarray(params.W1).dtype
        prob = np.asarray(_predict(params, grid.astype(dtype)), np.float64).reshape(gx.shape)
        filled = ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r",
                             vmin=0, vmax=1, alpha=0.55)
        if prob.min() < 0.5 < prob.max():
            ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1.5)
        for c, label in enumerate(np.unique(Y)):
            ax.scatter(*X[Y == label].T, s=16, color=("#2166ac", "#b2182b")[c % 2],
                       edgecolors="k", linewidths=0.4, marker="o^"[c % 2], label=f"y = {label}")
        ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), title=_wrap(str(title), 3.6), xlabel="x1",
               ylabel="x2")
        if k == 0:
            handles, names = ax.get_legend_handles_labels()
            ax.legend([*handles, Line2D([], [], color="k")], [*names, "ŷ = 0.5"],
                      fontsize="small")
    fig.colorbar(filled, cax=fig.add_subplot(spec[0, -1]), label="ŷ = predicted P(y = 1)")
    return fig

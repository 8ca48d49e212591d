"""A report from any finished sweep folder, without training: `build(folder) -> Report`.

Every "best" choice is made on validation (SELECTION_RULE); every conclusion is a sentence
generated from a paired interval (shortcut minus plain of the same seed): better where the
interval lies above 0 (for accuracies; below for losses), worse where it lies on the other side,
no significant difference where it holds 0. Sections: the selected configurations, paired
differences, one figure per varied axis and a heatmap per pair of them ("where the shortcut
helps"), the teacher's generalisation error, exact Hessians of the final parameters, baselines.
The command-line module writes the files.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import threadpoolctl

from shortcut_jax import diagnostics, plots, results, stats

SELECTION_RULE = ("Learning rates are chosen per variant and configuration by the best mean "
                  "final validation accuracy over seeds; test metrics are reported for the "
                  "chosen learning rates only.")
AXES = ("width", "n_train", "d", "noise", "linear_weight", "teacher_width", "teacher_shortcut",
        "batch_size", "shortcut_init", "optimizer", "loss_fn", "depth", "activation")
"""Grid axes an ablation may vary (besides dataset, seed and lr)."""
HESSIAN_MAX_PARAMS = 600
HESSIAN_MAX_SEEDS = 256
"""The Hessian section takes at most this many seeds per configuration (the smallest)."""
CENSUS = ("n_dead", "n_silent", "n_always_active", "n_duplicated", "crit_total", "any_total",
          *(f"crit_{c}" for c in diagnostics.CAUSES))
"""The census columns (diagnostics.singularity_census) of the Hessian table."""
HESSIAN_CHUNK = 2**22
"""Floats of dz2/dtheta (runs x n x P) the report's Hessians hold at once (32 MB)."""
MAX_HEATMAPS = 6
STEPS = ("loading the table", "paired tables", "figures per axis", "Hessians", "baselines",
         "figures")
"""The steps of `build`, in order, as it names them to its `progress` callback."""
SATURATED_SHARE = 0.99
"""Outputs count as saturated when at the end this share of the training examples (mean over
seeds) has y_hat (1 - y_hat) < diagnostics.SATURATED: their gradients have vanished."""
UNTRAINED = "⚠"
"""The mark of a configuration that did not train (`untrained`) in the report's tables."""


REPORT_METRICS = ("val_acc", "test_acc", "test_loss", "train_loss", "test_gen_err",
                  *plots.DIAGNOSTICS)
"""The metrics a report reads: its tables' (the first five) and its figures' diagnostics."""


@dataclasses.dataclass
class Report:
    """A built report: its markdown, its figures and tables by name, the result rows it read."""

    markdown: str
    figures: dict  # name -> matplotlib Figure
    tables: dict[str, pd.DataFrame]
    n_rows: int
    untrained: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    """The configurations that did not train (`untrained`), one row each."""


def png(fig) -> bytes:
    """The figure as PNG bytes at 100 dpi (the report's figures/*.png)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def varied_axes(df: pd.DataFrame) -> list[str]:
    """The axes of AXES that take more than one value among one dataset's shortcut runs (d or
    noise differing between datasets is not an ablation)."""
    short = df[df["variant"] == "shortcut"].groupby("dataset", observed=True)
    return [a for a in AXES if short[a].nunique().max() > 1]


def _table(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _setting(row, axes: list[str]) -> str:
    parts = [str(row["dataset"])] if "dataset" in row else []
    for a in axes:
        if a == "dataset":
            continue
        v = row.get(a)
        if v is not None and not pd.isna(v):
            parts.append(f"{a}={v:g}" if isinstance(v, float) else f"{a}={v}")
    return " ".join(parts)


def verdict(table: pd.DataFrame, metric: str, where: list[str], level: float = 0.05,
            variant: str = "shortcut") -> str:
    """One sentence per paired table of `variant` − plain, from its intervals and Holm-adjusted
    p values (stats.significance)."""
    sig = table.apply(stats.significance, axis=1, level=level)
    good = sig if stats.higher_is_better(metric) else -sig
    better, worse = table[good > 0], table[good < 0]
    subject = "the shortcut" if variant == "shortcut" else f"the {variant} network"
    text = (f"{subject} is significantly better in {len(better)} of {len(table)} "
            f"configurations, significantly worse in {len(worse)}, and within noise in the "
            f"other {len(table) - len(better) - len(worse)}")
    for name, part in (("better", better), ("worse", worse)):
        if len(part):
            top = part.reindex(part["diff_mean"].abs().sort_values(ascending=False).index)[:3]
            text += f"; {name} at " + ", ".join(
                f"{_setting(r, where)} ({r['diff_mean']:+.4f} [{r['diff_lo']:+.4f}, "
                f"{r['diff_hi']:+.4f}], Holm p {r['p_wilcoxon_holm']:.3g})"
                for _, r in top.iterrows())
    return text + f" (Holm over the {int(table['n_tests'].max()) if len(table) else 0} tested)."


def _paired_rows(table: pd.DataFrame, axes: list[str], digits: int = 4,
                 variant: str = "shortcut") -> pd.DataFrame:
    out = pd.DataFrame({"setting": [_setting(r, axes) for _, r in table.iterrows()]})
    out["difference [CI]"] = [stats.format_ci(r.diff_mean, r.diff_lo, r.diff_hi, digits)
                                  for r in table.itertuples()]
    out["p (t test)"] = ["–" if np.isnan(p) else f"{p:.3g}" for p in table["p_ttest"]]
    out["p (Wilcoxon)"] = ["–" if np.isnan(p) else f"{p:.3g}" for p in table["p_wilcoxon"]]
    out["Holm p (t)"] = ["–" if np.isnan(p) else f"{p:.3g}" for p in table["p_ttest_holm"]]
    out["Holm p (Wilcoxon)"] = ["–" if np.isnan(p) else f"{p:.3g}"
                                for p in table["p_wilcoxon_holm"]]
    out["detectable (80% power)"] = ["–" if np.isnan(x) else f"{x:.{digits}f}"
                                     for x in table["detectable"]]
    out[f"{variant} win rate"] = [f"{w:.2f}" for w in table["win_rate"]]
    out["pairs"] = table["n_used"].to_numpy()
    return out


def untrained(df: pd.DataFrame, data: list, confidence: float = 0.95) -> pd.DataFrame:
    """The configurations (stats.CONFIG_KEYS) that did not train: a final validation accuracy
    not above chance (the majority class's share of the validation split, at or above the lower
    end of its t interval over seeds, or the mean with one seed), a mean training
    loss that rose from step 0, runs that ended with NaN or inf, or outputs saturated (a mean
    share of at least SATURATED_SHARE of the training examples). Columns: the keys, n_seeds,
    val_acc_mean/_lo/_hi, chance, loss_start, loss_end, n_nonfinite, saturated_frac, problem
    (what went wrong, in words) and cause (the likely cause). data: _datasets(folder, config).
    """
    ids = stats.run_ids(df)
    start = df["train_loss"].where(df["step"] == df["step"].groupby(ids).transform("min"))
    runs = stats.final(df)  # loss_start joins the final rows only: no copy of the whole table
    runs = runs.assign(loss_start=start.groupby(ids).max().reindex(
        stats.run_ids(runs)).to_numpy(np.float64))
    chance = pd.Series(np.nan, index=runs.index)
    for spec, ds, _ in data:
        share = float(np.mean(np.asarray(ds.Y_val) > 0.5))
        chance[_rows_of(runs, spec).index] = max(share, 1.0 - share)
    runs = runs.assign(chance=chance)
    saturation = "saturated_frac" in runs.columns
    out = []
    for key, g in runs.groupby(stats.CONFIG_KEYS, observed=True, dropna=False, sort=True):
        finite = np.isfinite(g["train_loss"]) & np.isfinite(g["val_acc"])
        ok = g[finite]
        mean, lo, hi = stats.t_interval(ok["val_acc"], confidence, stats.bounds("val_acc"))
        row = dict(zip(stats.CONFIG_KEYS, key), n_seeds=len(g), val_acc_mean=mean,
                   val_acc_lo=lo, val_acc_hi=hi, chance=g["chance"].iloc[0],
                   loss_start=g["loss_start"].mean(), loss_end=ok["train_loss"].mean(),
                   n_nonfinite=int((~finite).sum()),
                   saturated_frac=ok["saturated_frac"].mean() if saturation else np.nan)
        problems = []
        if row["n_nonfinite"]:
            problems.append(f"{row['n_nonfinite']} of {len(g)} runs ended with NaN or inf")
        saturated = row["saturated_frac"] >= SATURATED_SHARE
        if saturated:
            problems.append(f"outputs saturated ({row['saturated_frac']:.0%} of the training "
                            "examples)")
        rose = row["loss_end"] > row["loss_start"]
        if rose:
            problems.append(f"training loss rose ({row['loss_start']:.4g} → "
                            f"{row['loss_end']:.4g})")
        if not len(ok) or (lo <= row["chance"] if np.isfinite(lo) else mean <= row["chance"]):
            problems.append(f"validation accuracy {stats.format_ci(mean, lo, hi)} not above "
                            f"chance ({row['chance']:.3f})")
        if not problems:
            continue
        row["problem"] = "; ".join(problems)
        row["cause"] = ("learning rate too high" + (": the outputs saturated, their gradients "
                                                    "vanished" if saturated else "")
                        if row["n_nonfinite"] or saturated or rose else
                        "too few steps or too small a learning rate, or a task this network "
                        "cannot fit")
        out.append(row)
    return pd.DataFrame(out, columns=[*stats.CONFIG_KEYS, "n_seeds", "val_acc_mean",
                                      "val_acc_lo", "val_acc_hi", "chance", "loss_start",
                                      "loss_end", "n_nonfinite", "saturated_frac", "problem",
                                      "cause"])


def _untrained_column(table: pd.DataFrame, bad: pd.DataFrame) -> list[str]:
    """Per row of a table with the CONFIG_KEYS columns: its problem if `untrained` flagged
    that configuration, else ""."""
    def key(r):
        return tuple(None if pd.isna(r[c]) else str(r[c]) for c in stats.CONFIG_KEYS)

    flagged = {key(r): r["problem"] for _, r in bad.iterrows()}
    return [flagged.get(key(r), "") for _, r in table.iterrows()]


def _untrained_section(bad: pd.DataFrame, n_configs: int, where: list[str],
                       confidence: float) -> list[str]:
    view = pd.DataFrame({"setting": [_setting(r, [a for a in where if a != "width"])
                                     for _, r in bad.iterrows()],
                         "variant": [v if pd.isna(i) else f"{v} ({i})" for v, i in
                                     zip(bad["variant"], bad["shortcut_init"])],
                         "h": bad["width"], "lr": bad["lr"], "seeds": bad["n_seeds"],
                         "what went wrong": bad["problem"], "likely cause": bad["cause"]})
    return ["## Runs that did not train", "",
            f"{len(bad)} of {n_configs} configurations did not train: a final validation "
            f"accuracy not above chance (the majority class's share of the validation split, "
            f"against its {confidence:.0%} interval), a training loss that rose, runs that ended "
            f"with NaN or inf, or outputs saturated (at least {SATURATED_SHARE:.0%} of the "
            f"training examples with ŷ(1 − ŷ) < {diagnostics.SATURATED:g}). They are marked "
            f"{UNTRAINED} in the tables (summary.csv and selected.csv: the column "
            "did_not_train). Learning rates are chosen on validation accuracy as before: a "
            "configuration marked in the selected tables is one where no other learning rate did "
            "better.", "", _table(view), ""]


def _by_variant(tables: dict) -> pd.DataFrame:
    """{variant: paired tables} as one table, with a `variant` column (the variant compared
    with plain) before `metric`."""
    parts = []
    for v, ts in tables.items():
        for t in ts:
            t = t.copy()
            t.insert(t.columns.get_loc("metric"), "variant", v)
            parts.append(t)
    return pd.concat(parts, ignore_index=True)


def _with_matched(table: pd.DataFrame, matched: pd.DataFrame, axes: list[str],
                  digits: int = 4, variant: str = "shortcut") -> pd.DataFrame:
    """_paired_rows(table) with the same configurations' paired difference at the plain
    network's lr (stats.paired_at_plain_lr) beside each row."""
    keys = [c for c in matched.columns if c in table.columns and c in stats.CONFIG_KEYS
            and c != "lr"]
    both = table[keys].merge(matched, on=keys, how="left")
    out = _paired_rows(table, axes, digits, variant=variant)
    out["plain's lr"] = [f"{v:g}" for v in both["lr"]]
    out["difference at plain's lr [CI]"] = [
        stats.format_ci(r.diff_mean, r.diff_lo, r.diff_hi, digits) for r in both.itertuples()]
    out["Holm p (Wilcoxon), plain's lr"] = ["–" if np.isnan(p) else f"{p:.3g}"
                                            for p in both["p_wilcoxon_holm"]]
    return out


def build(folder: str | Path, *, tau: float | None = None, hessians: bool = True,
          baselines: bool = False, confidence: float = 0.95,
          progress: Callable[[str], None] | None = None) -> Report:
    """The report of a finished sweep folder with plain and shortcut runs (a ValueError names
    what is missing); `progress` is called with each step's name (STEPS, in order) as it
    starts."""
    tell = progress or (lambda step: None)
    folder = Path(folder)
    tell(STEPS[0])
    # only the columns the report reads
    df = results.load(folder, columns=[c for c in results.columns_of(folder) if c in (
        *results.ID_COLUMNS, "run", *REPORT_METRICS)])
    variants = sorted(map(str, df["variant"].unique()))
    if not {"plain", "shortcut"} <= set(variants):
        raise ValueError(f"folder: the report compares each variant with plain, the problem's "
                         f"shortcut first: expected plain and shortcut runs in {folder}, got "
                         f"variants {variants}")
    config = results.RunFolder(folder).config()["config"]
    tau = config.get("tau", 0.05) if tau is None else tau
    axes = varied_axes(df)
    where = list(dict.fromkeys(["width", *axes]))
    data = _datasets(folder, config)  # the sweep's data sets, made again
    metrics = [m for m in ("val_acc", "test_acc", "test_loss", "train_loss", "test_gen_err")
               if m in df.columns and df[m].notna().any()]
    tell(STEPS[1])
    runs = stats.with_steps_to(df, tau)
    chosen = stats.best_lr(runs, "val_acc")
    tables = {"summary": stats.summarize(runs, metrics, tau=tau, confidence=confidence),
              "selected": stats.summarize(chosen, metrics, tau=tau, confidence=confidence)}
    compared = [m for m in ("test_acc", "test_loss", "train_loss", "test_gen_err") if m in metrics]
    # each variant against plain: the problem's shortcut first, then the skips between hidden
    # layers (residual, residual+shortcut) where the sweep has them
    versus = [v for v in stats.VERSUS if v in variants]
    tables["paired"] = _by_variant({v: [stats.paired(runs, m, confidence=confidence, variant=v)
                                        for m in (*compared, stats.STEPS)] for v in versus})
    pairs = {v: {m: stats.paired(chosen, m, confidence=confidence, ignore=("lr",), variant=v)
                 for m in compared} for v in versus}
    selected_pairs = pairs["shortcut"]
    tables["paired_selected"] = _by_variant({v: p.values() for v, p in pairs.items()})
    bad = untrained(df, data, confidence)
    for name in ("summary", "selected"):
        tables[name]["did_not_train"] = _untrained_column(tables[name], bad)
    if len(bad):
        tables["untrained"] = bad
    matched = {v: {m: stats.paired_at_plain_lr(runs, m, "val_acc", confidence=confidence,
                                               variant=v) for m in compared} for v in versus}
    tables["paired_plain_lr"] = _by_variant({v: p.values() for v, p in matched.items()})

    grid = config["grid"]
    s = ["# Plain vs shortcut: does the shortcut connection help?", ""]
    s += [f"Sweep {folder.name}: datasets {sorted(map(str, df['dataset'].unique()))}, widths "
          f"{sorted(df['width'].unique().tolist())}, learning rates "
          f"{sorted(df['lr'].unique().tolist())}, "
          f"{df['seed'].nunique()} seeds, {grid['steps']} steps of {', '.join(grid['optimizers'])}"
          f" on the {', '.join(grid['loss_fns'])} loss"
          + (f"; varied axes: {', '.join(axes)}" if axes else "") + ". Plain and shortcut runs "
          "of a seed start from the same W1, b1, W2, b2 and see the same data and minibatches, "
          "so a paired difference is the shortcut's.", "", SELECTION_RULE,
          f"Intervals are {confidence:.0%} Student-t intervals over seeds (for fractions such as "
          "accuracies, intersected with [0, 1]); p values from the paired t test and the "
          "Wilcoxon signed-rank test (– where every pair is equal); intervals of losses, norms, "
          "errors and steps are bounded below at 0; the win rate is the share "
          "of seeds where the shortcut is better (lower for losses, errors and eigenvalue "
          "fractions; ties count ½). Where a table or figure leaves an axis out, a seed's pairs "
          "at its values are averaged first.",
          "Holm-adjusted p values are adjusted over the rows of their table (one family per "
          "table and metric: the configurations it compares). "
          + stats.VERDICT_RULE.format(conf=confidence, level=1 - confidence), ""]
    residual = [v for v in grid.get("variants", ()) if v.startswith("residual")]
    if residual and 1 in grid.get("depths", (1,)):
        s += [f"{' and '.join(residual)} at depth 1 left out: a depth-1 network has no skip "
              "between hidden layers (it is the plain network there).", ""]
    if ((df["depth"] > 1) | (df["activation"] != "relu")).any():
        s += ["The paired sections take each variant − plain at each depth and activation "
              "(shortcut − plain first, the skips between hidden layers in sections of their "
              "own); the figures per axis and the heatmaps show shortcut − plain; the decision "
              "boundaries cover the problem's network (depth 1, relu) only. Hessians: by hand "
              "for the problem's network, by jax.hessian in float64 for the others.", ""]
    for record in config.get("data", []):
        if "path" in record:
            s += [f"- {record['path']}: {record['n_train']} train / {record['n_val']} validation "
                  f"/ {record['n_test']} test rows, {record['d']} features, labels mapped "
                  f"{record['label_map']} (sha256 {record['sha256'][:12]}...)"]
    if len(bad):
        s += _untrained_section(bad, len(tables["summary"]), where, confidence)
    s += ["## The selected configurations", ""]
    sel = tables["selected"]
    view = pd.DataFrame({"setting": [_setting(r, [a for a in where if a != "width"])
                                     for _, r in sel.iterrows()],
                         "variant": [(v if pd.isna(i) else f"{v} ({i})")
                                     + (f" {UNTRAINED}" if flag else "") for v, i, flag in
                                     zip(sel["variant"], sel["shortcut_init"],
                                         sel["did_not_train"])],
                         "h": sel["width"], "lr (chosen)": sel["lr"]})
    for m in metrics:
        view[m] = [stats.format_ci(r[f"{m}_mean"], r[f"{m}_lo"], r[f"{m}_hi"],
                                   3 if "acc" in m else 4) for _, r in sel.iterrows()]
    view[f"steps to train loss ≤ {tau:g}"] = [
        f"{r['steps_to_tau_mean']:.0f} ({r['frac_reached']:.0%} reached)" if r["frac_reached"]
        else "never" for _, r in sel.iterrows()]
    s += [_table(view), ""]
    if sel["did_not_train"].astype(bool).any():
        s += [f"{UNTRAINED}: did not train (see Runs that did not train).", ""]

    for v in versus:
        s += [f"## Paired differences, {v} − plain (same seed, each at its chosen lr)", "",
              "Beside each, both variants at the plain network's chosen lr, so that the "
              "architecture's effect is not mixed with a different learning rate (every lr of "
              "the grid: the appendix).", ""]
        for m, table in pairs[v].items():
            at_plain = matched[v][m]
            s += [f"### {m}", "", _with_matched(table, at_plain, where, variant=v).pipe(_table),
                  "", f"Reading: {verdict(table, m, where, 1 - confidence, v)}",
                  f"At the plain network's lr: {verdict(at_plain, m, where, 1 - confidence, v)}",
                  ""]

    tell(STEPS[2])
    figures = {}
    if len(axes):
        s += ["## Where the shortcut helps: each varied axis", ""]
    for axis in axes:
        name = f"paired_vs_{axis}"
        hue = "dataset" if axis == "width" else "width"
        # from the final rows (runs): each call selects the lrs again, not over every eval row
        by_axis = {m: stats.paired_selected(runs, m, [axis, hue], "val_acc", confidence)
                   for m in ("test_acc", "test_loss")}
        figures[name] = plots.paired_vs_axis(df, axis, hue=hue, confidence=confidence,
                                             tables=by_axis)
        s += [f"- {axis}, {m}: {verdict(t, m, [axis, hue], 1 - confidence)}"
              for m, t in by_axis.items()]
        s += [f"- {axis}, {m}, {v} − plain: " + verdict(
                  stats.paired_selected(runs, m, [axis, hue], "val_acc", confidence, v), m,
                  [axis, hue], 1 - confidence, v)
              for v in versus[1:] for m in ("test_acc", "test_loss")]
        s += ["", f"![{name}](figures/{name}.png)", ""]
    for x, y in list(itertools.combinations(axes, 2))[:MAX_HEATMAPS]:
        name = f"heatmap_{y}_{x}"
        figures[name] = plots.paired_heatmap(df, "test_acc", x=x, y=y, confidence=confidence)
        s += [f"![{name}](figures/{name}.png)", ""]

    if "test_gen_err" in metrics:
        s += ["## The teacher: generalisation error", "",
              "test_gen_err = mean over test inputs of ½ (ŷ − p_teacher)², the student's "
              "distance from the teacher's noiseless output.", "",
              "Reading: " + verdict(selected_pairs["test_gen_err"], "test_gen_err", where,
                                    1 - confidence), ""]

    tell(STEPS[3])
    if hessians:
        hess = hessian_table(folder, data, chosen)
        if len(hess):
            tables["hessian"] = hess
            s += _hessian_section(hess, where, confidence)
    if "bce" in set(df["loss_fn"].astype(str)) and (df["variant"] == "shortcut").any():
        bound = linear_bound_table(data, runs)
        if bound is not None and len(bound):
            tables["linear_bound"] = bound
            s += _linear_bound_section(bound, where)
        elif bound is None:
            s += ["## Shamir's bound", "", "Not checked: scikit-learn is not installed (the "
                  "`dev` or `experiments` extra).", ""]
    tell(STEPS[4])
    if baselines:
        base = baseline_table(data)
        if len(base):
            tables["baselines"] = base
            s += ["## Baselines on the same splits (scikit-learn)", "", _table(base.round(3)), "",
                  "Reading: a linear model is what the shortcut alone is; the kit's accuracies "
                  "far below logistic regression would point to a training problem.", ""]

    s += ["## Appendix: paired differences at each learning rate of the grid", "",
          f"{' − plain, '.join(versus).capitalize()} − plain with both variants at the same "
          "lr, every lr (Holm over each table's rows).", ""]
    every = tables["paired"]
    for v, m in itertools.product(versus, compared):
        table = every[(every["metric"] == m) & (every["variant"] == v)].reset_index(drop=True)
        s += [f"### {m}" + (f", {v} − plain" if v != "shortcut" else ""), "",
              _paired_rows(table, [*where, "lr"], variant=v).pipe(_table), "",
              f"Reading: {verdict(table, m, [*where, 'lr'], 1 - confidence, v)}", ""]

    tell(STEPS[5])
    first = str(df["dataset"].iloc[0])
    figures["acc_vs_width"] = plots.metric_vs_width(df, "test_acc", confidence=confidence)
    figures["learning_curves"] = plots.learning_curves(df, "test_acc", first,
                                                       confidence=confidence)
    figures["diagnostics"] = plots.diagnostics_over_training(df, first, confidence=confidence)
    if "lr" not in axes and df["lr"].nunique() > 1 and df["width"].nunique() > 1:
        figures["paired_heatmap"] = plots.paired_heatmap(df, "test_acc", x="width", y="lr",
                                                         confidence=confidence)
    figures.update(boundaries(folder, data, chosen))
    s += ["## Figures", ""] + [f"![{n}](figures/{n}.png)" for n in figures
                               if not n.startswith(("paired_vs_", "heatmap_"))] + [""]
    return Report("\n".join(s), figures, tables, len(df), bad)


# --- what needs the data: Hessians, baselines, decision boundaries -------------------------


def _datasets(folder: Path, config: dict) -> list[tuple[dict, object, str]]:
    """(spec columns, Dataset, name) of each data set of the folder, made again from its config
    (a data file that changed since the sweep is refused by name); the name is the dataset's,
    or its spec's where the dataset has several."""
    from shortcut_jax import sweep

    data, records = sweep.load_all(sweep.Grid(**config["grid"]))
    results._refuse_changed_files(folder, config.get("data"), json.loads(json.dumps(records)))
    count = pd.Series([spec.dataset for spec in data]).value_counts()
    return [(spec.columns(), ds, spec.dataset if count[spec.dataset] == 1 else spec.name)
            for spec, ds in data.items()]


def _rows_of(runs: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The rows of `runs` on the data set with these spec columns."""
    mask = np.ones(len(runs), bool)
    for k, v in spec.items():
        col = runs[k]
        if v is None:
            mask &= col.isna().to_numpy()
        elif isinstance(v, str):
            mask &= (col.astype(str) == v).to_numpy()
        else:
            mask &= (col.astype("float64") == float(v)).fillna(False).to_numpy(bool)
    return runs[mask]


def hessian_table(folder: Path, data: list, chosen: pd.DataFrame) -> pd.DataFrame:
    """Exact float64 Hessian spectra of J at the final parameters of the chosen runs (models up
    to HESSIAN_MAX_PARAMS parameters, the first HESSIAN_MAX_SEEDS seeds): hess_zero_frac,
    hess_neg_frac, hess_zero (the near-zero count) per run, from the hand-written Hessian
    (diagnostics.hessian_by_hand: NumPy, nothing compiles) for the problem's network and
    jax.hessian in float64 (diagnostics.net_hessian) for the others, and for the problem's
    network the singularity census on the training inputs (CENSUS columns). data:
    _datasets(folder, config)."""
    from shortcut_jax.network import num_net_params, variant_parts

    seeds = np.sort(chosen["seed"].unique())[:HESSIAN_MAX_SEEDS]
    chosen = chosen[chosen["seed"].isin(seeds)]
    out = []
    for spec, ds, _ in data:
        X, Y = ds.X_train, ds.Y_train
        d = X.shape[1]
        runs = _rows_of(chosen, spec)
        for (width, loss_fn, variant, depth, act), part in runs.groupby(
                ["width", "loss_fn", "variant", "depth", "activation"], observed=True):
            P = num_net_params(d, int(width), int(depth), str(variant))
            if P > HESSIAN_MAX_PARAMS:
                continue
            params = results.params_of(folder, part)
            # a diverged run (NaN/inf parameters) has no spectrum: NaN, left out of the stats
            finite = np.logical_and.reduce([np.isfinite(a).reshape(len(part), -1).all(1)
                                            for a in jax.tree.leaves(params)])
            fractions = np.full((len(part), 2), np.nan)
            census = {c: np.full(len(part), np.nan) for c in CENSUS}
            rows = np.flatnonzero(finite)
            step = max(1, HESSIAN_CHUNK // (len(X) * P))  # runs per call: G is (runs, n, P)
            for i in range(0, len(rows), step):
                take = rows[i:i + step]
                taken = jax.tree.map(lambda a, t=take: a[t], params)
                if depth == 1 and act == "relu":  # the problem's network, by hand
                    H = diagnostics.hessian_by_hand(taken, X, Y, str(loss_fn))
                else:  # the network family: jax.hessian in float64
                    H = diagnostics.net_hessian(taken, X, Y, activation=str(act),
                                                residual=variant_parts(str(variant))[0],
                                                loss_fn=str(loss_fn))
                # LAPACK through NumPy on one thread: right after a JAX computation, OpenBLAS's
                # threads compete with XLA's for the cores (experiments/BENCHMARKS.md)
                with threadpoolctl.threadpool_limits(1):
                    eig = np.linalg.eigvalsh(H)
                spectra = diagnostics.spectrum_fractions(eig, xp=np)
                fractions[take] = np.stack(
                    [spectra["hess_zero_frac"], spectra["hess_neg_frac"]], 1)
                if depth == 1 and act == "relu":  # the census is the problem's network's
                    found = diagnostics.singularity_census(taken, X)
                    for c in CENSUS:
                        census[c][take] = found[c]
            out.append(part[[*stats.RUN_KEYS, "step"]].assign(
                n_params=P, hess_zero_frac=fractions[:, 0], hess_neg_frac=fractions[:, 1],
                hess_zero=np.round(fractions[:, 0] * P), **census))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _hessian_section(hess: pd.DataFrame, where: list[str], confidence: float) -> list[str]:
    s = ["## Why: singularities of the loss surface at the end of training", "",
         "Exact Hessian of J at the final parameters of the chosen runs (float64): the fraction "
         "of eigenvalues near zero (|λ| ≤ 1e-6 max|λ|) and negative (λ < −1e-6 max|λ|). Models "
         f"over {HESSIAN_MAX_PARAMS} parameters are skipped.", ""]
    metrics = ("hess_zero_frac", "hess_neg_frac")
    per = stats.summarize(hess, metrics, by=[c for c in stats.CONFIG_KEYS if c != "lr"],
                          confidence=confidence)  # NaN (diverged runs) left out
    view = pd.DataFrame({"setting": [_setting(r, where) for _, r in per.iterrows()],
                         "variant": per["variant"]})
    for m, label in zip(metrics, ("near-zero", "negative")):
        view[f"{label} fraction [{confidence:.0%} CI]"] = [
            stats.format_ci(r[f"{m}_mean"], r[f"{m}_lo"], r[f"{m}_hi"])
            for _, r in per.iterrows()]
    s += [_table(view), ""]
    variants = [v for v in stats.VERSUS if (hess["variant"] == v).any()]
    for (m, label), variant in itertools.product(
            (("hess_zero_frac", "near-zero"), ("hess_neg_frac", "negative")), variants):
        table = stats.paired(hess, m, confidence=confidence, ignore=("lr",), higher=False,
                             variant=variant)
        sig = table.apply(stats.significance, axis=1, level=1 - confidence)
        s += [f"### {label} eigenvalues, {variant} − plain (same seed)", "",
              _table(_paired_rows(table, where, variant=variant)), "",
              f"Reading: the {variant} network has significantly fewer {label} eigenvalues in "
              f"{int((sig < 0).sum())} of {len(table)} configurations, significantly more in "
              f"{int((sig > 0).sum())}, and no significant difference in "
              f"{int((sig == 0).sum())} (Holm over the {int(table['n_tests'].max())} tested).",
              ""]
    s += _census_section(hess, where, confidence)
    s += ["Orhan & Pitkow (2018) report that skip connections remove the degenerate (near-zero) "
          "directions that dead and overlapping units create in deep networks; the paired "
          "intervals above say where that holds for this two-layer network.", ""]
    return s


def _census_section(hess: pd.DataFrame, where: list[str], confidence: float) -> list[str]:
    """The measured near-zero count beside the census' predictions, and its paired difference
    split by cause (diagnostics.singularity_census)."""
    keys = [c for c in stats.CONFIG_KEYS if c != "lr"]
    ok = hess.dropna(subset=["hess_zero", "crit_total"])  # the census: the problem's network
    if ok.empty:
        return []
    ok = ok.assign(hess_unexplained=ok["hess_zero"] - ok["crit_total"])
    rows = []
    for key, g in ok.groupby(keys, observed=True, dropna=False, sort=True):
        r = dict(zip(keys, key))
        rows.append({"setting": _setting(r, where), "variant": r["variant"], "runs": len(g),
                     "P": int(g["n_params"].iloc[0]),
                     "near-zero (measured)": f"{g['hess_zero'].mean():.2f}",
                     "predicted at a minimum": f"{g['crit_total'].mean():.2f}",
                     "exact at any point": f"{g['any_total'].mean():.2f}",
                     "runs measured = predicted":
                         f"{(g['hess_zero'] == g['crit_total']).mean():.0%}",
                     "dead": f"{g['n_dead'].mean():.2f}", "silent": f"{g['n_silent'].mean():.2f}",
                     "always active": f"{g['n_always_active'].mean():.2f}",
                     "duplicated": f"{g['n_duplicated'].mean():.2f}"})
    s = ["### Where the near-zero directions come from: a census of the units", "",
         "Per run at its final parameters (diagnostics.singularity_census, on the training "
         "inputs): dead units (active on no row: d + 2 zero directions each at any point), "
         "silent ones (output weight 0), units active on every row (with the shortcut their "
         "W1 row and b1 trade with W and b2: d + 1 directions at a minimum, d at any point; "
         "without it d fewer), units duplicating another's activation pattern (exactly, no "
         "tolerance) and the rescaling symmetry of each live unit (1 at a minimum, none "
         "elsewhere). Means over runs of the counts; the prediction assumes a minimum, which "
         "training reaches only approximately, so a rescaling direction counts as near-zero "
         "only where the gradient is small enough.", "", _table(pd.DataFrame(rows)), ""]
    causes = [("near-zero (measured)", "hess_zero"),
              *((c.replace("_", " "), f"crit_{c}") for c in diagnostics.CAUSES),
              ("unexplained", "hess_unexplained")]
    # a cause whose count is one value in every run differs by 0 in every pair: left out
    # without pairing it
    tables = {label: stats.paired(ok, col, confidence=confidence, ignore=("lr",), higher=False)
              for label, col in causes
              if label == "near-zero (measured)" or ok[col].nunique(dropna=False) > 1}
    first = tables["near-zero (measured)"]
    view = pd.DataFrame({"setting": [_setting(r, where) for _, r in first.iterrows()]})
    for label, t in tables.items():
        if label == "near-zero (measured)" or t["diff_mean"].abs().max() > 0:
            view[label] = [stats.format_ci(r.diff_mean, r.diff_lo, r.diff_hi, 2)
                           for r in t.itertuples()]
    s += ["Paired difference shortcut − plain (same seed) of the near-zero count, split by "
          "cause (the predicted counts at a minimum; 'unexplained' = measured − predicted; "
          "causes that are 0 in every pair left out):", "", _table(view), ""]
    return s


LINEAR_BOUND_RTOL = 1e-5
"""A run is above the linear bound when its final train_loss exceeds logistic regression's by
more than this relative margin (train_loss is float32)."""


def linear_loss(X, Y) -> float | None:
    """The training cross-entropy (mean, natural log) of unregularised logistic regression
    fitted on (X, Y): the best linear predictor's (scikit-learn's LogisticRegression with
    penalty=None, lbfgs to tol 1e-10); None without scikit-learn (an optional dependency: the
    `dev` and `experiments` extras)."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        return None
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    model = LogisticRegression(penalty=None, tol=1e-10, max_iter=10_000)
    with threadpoolctl.threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # separable data: no finite optimum, loss -> 0
        model.fit(X, Y)
    z = X @ model.coef_[0] + model.intercept_[0]
    return float(np.mean(Y * np.logaddexp(0, -z) + (1 - Y) * np.logaddexp(0, z)))


def linear_bound_table(data: list, runs: pd.DataFrame) -> pd.DataFrame | None:
    """Shamir (2018): with a skip connection from the input to the output and a loss convex in
    the output's logit (the cross-entropy), no local minimum is worse than the best linear
    predictor. Per shortcut run with loss_fn "bce" (final rows of `runs`): its final
    train_loss, the linear bound on its training split (linear_loss), above (train_loss more
    than LINEAR_BOUND_RTOL above it: not at a local minimum) and its final grad_norm. Empty
    without such runs, None without scikit-learn; data as hessian_table's."""
    final = stats.final(runs)
    final = final[(final["variant"] == "shortcut") & (final["loss_fn"] == "bce")]
    out = []
    for spec, ds, name in data:
        part = _rows_of(final, spec)
        if part.empty:
            continue
        bound = linear_loss(ds.X_train, ds.Y_train)
        if bound is None:
            return None
        above = part["train_loss"] > bound * (1 + LINEAR_BOUND_RTOL)
        out.append(part[[*stats.RUN_KEYS, "train_loss", "grad_norm"]].assign(
            data_set=name, linear_loss=bound, above=above.to_numpy()))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _linear_bound_section(table: pd.DataFrame, where: list[str]) -> list[str]:
    s = ["## Shamir's bound: the shortcut network against the best linear predictor", "",
         "Shamir (2018, \"Are ResNets provably better than linear predictors?\"): with the "
         "shortcut from input to output and the cross-entropy, no local minimum has a higher "
         "training loss than unregularised logistic regression on the same training split "
         "(scikit-learn, penalty=None). A run above it (by more than "
         f"{LINEAR_BOUND_RTOL:g} relative) has not reached a local minimum; its gradient norm "
         "says how far it is.", ""]
    rows = []
    for name, g in table.groupby("data_set", sort=True):
        rows.append({"data set": name, "logistic regression train loss":
                     f"{g['linear_loss'].iloc[0]:.4g}", "shortcut runs (bce)": len(g),
                     "above the bound": int(g["above"].sum()),
                     "their train loss (max)": f"{g.loc[g['above'], 'train_loss'].max():.4g}"
                     if g["above"].any() else "–"})
    s += [_table(pd.DataFrame(rows)), ""]
    above = table[table["above"]].sort_values("train_loss", ascending=False)
    if len(above):
        view = pd.DataFrame({
            "run": [f"{_setting(r, [*where, 'lr'])} seed {r['seed']}"
                    for _, r in above.head(20).iterrows()],
            "train loss": [f"{v:.4g}" for v in above.head(20)["train_loss"]],
            "linear bound": [f"{v:.4g}" for v in above.head(20)["linear_loss"]],
            "gradient norm": [f"{v:.3g}" for v in above.head(20)["grad_norm"]]})
        s += [f"Runs above the bound ({len(above)}, the 20 highest):", "", _table(view), ""]
    return s


def baseline_table(data: list) -> pd.DataFrame:
    """Logistic regression (what the shortcut alone is, a linear model) fitted on each data
    set's train split, scored on its splits (empty without scikit-learn); data as
    hessian_table's."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        return pd.DataFrame()
    rows = []
    for _, ds, name in data:
        for label, model in (("logistic regression", LogisticRegression(max_iter=2000)),):
            with threadpoolctl.threadpool_limits(1):  # see hessian_table
                model.fit(ds.X_train, ds.Y_train)
            rows.append({"data set": name, "model": label,
                         "train acc": model.score(ds.X_train, ds.Y_train),
                         "val acc": model.score(ds.X_val, ds.Y_val),
                         "test acc": model.score(ds.X_test, ds.Y_test)})
    return pd.DataFrame(rows)


def boundaries(folder: Path, data: list, chosen: pd.DataFrame) -> dict:
    """Decision boundaries of plain and shortcut (the first seed, the smallest width, each at
    its chosen lr) on each 2-D dataset's first data set; data as hessian_table's."""
    out, seen = {}, set()
    for spec, ds, name in data:
        rows = _rows_of(chosen, spec)
        rows = rows[(rows["depth"] == 1) & (rows["activation"] == "relu")]  # the problem's net
        if np.shape(ds.X_train)[1] != 2 or rows.empty or spec["dataset"] in seen:
            continue
        seen.add(spec["dataset"])
        rows = rows[(rows["seed"] == rows["seed"].min()) & (rows["width"] == rows["width"].min())]
        models, titles = [], []
        for _, r in rows.sort_values("variant").iterrows():
            params = results.params_of(folder, rows.loc[[r.name]])
            models.append(type(params)(*(None if a is None else a[0] for a in params)))
            titles.append(f"{r['variant']}, h={r['width']}, lr={r['lr']:g}, seed {r['seed']}")
        out[f"boundaries_{name}"] = plots.decision_boundaries(models, ds.X_train, ds.Y_train,
                                                              titles)
    return out

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
HESSIAN_CHUNK = 2**22
"""Floats of dz2/dtheta (runs x n x P) the report's Hessians hold at once (32 MB)."""
MAX_HEATMAPS = 6


@dataclasses.dataclass
class Report:
    markdown: str
    figures: dict  # name -> matplotlib Figure
    tables: dict[str, pd.DataFrame]
    n_rows: int


def png(fig) -> bytes:
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


def verdict(table: pd.DataFrame, metric: str, where: list[str]) -> str:
    """One sentence per paired table, generated from its intervals."""
    sig = table.apply(stats.significance, axis=1)
    good = sig if stats.higher_is_better(metric) else -sig
    better, worse = table[good > 0], table[good < 0]
    text = (f"the shortcut is significantly better in {len(better)} of {len(table)} "
            f"configurations, significantly worse in {len(worse)}, and within noise in the "
            f"other {len(table) - len(better) - len(worse)}")
    for name, part in (("better", better), ("worse", worse)):
        if len(part):
            top = part.reindex(part["diff_mean"].abs().sort_values(ascending=False).index)[:3]
            text += f"; {name} at " + ", ".join(
                f"{_setting(r, where)} ({r['diff_mean']:+.4f} [{r['diff_lo']:+.4f}, "
                f"{r['diff_hi']:+.4f}])" for _, r in top.iterrows())
    return text + "."


def _paired_rows(table: pd.DataFrame, axes: list[str], digits: int = 4,
                 variant: str = "shortcut") -> pd.DataFrame:
    out = pd.DataFrame({"setting": [_setting(r, axes) for _, r in table.iterrows()]})
    out["difference [CI]"] = [stats.format_ci(r.diff_mean, r.diff_lo, r.diff_hi, digits)
                                  for r in table.itertuples()]
    out["p (t test)"] = ["–" if np.isnan(p) else f"{p:.3g}" for p in table["p_ttest"]]
    out["p (Wilcoxon)"] = ["–" if np.isnan(p) else f"{p:.3g}" for p in table["p_wilcoxon"]]
    out[f"{variant} win rate"] = [f"{w:.2f}" for w in table["win_rate"]]
    out["pairs"] = table["n_used"].to_numpy()
    return out


def build(folder: str | Path, *, tau: float | None = None, hessians: bool = True,
          baselines: bool = False, confidence: float = 0.95) -> Report:
    """The report of a finished sweep folder (a ValueError names what is missing)."""
    folder = Path(folder)
    df = results.load(folder)
    config = results.RunFolder(folder).config()["config"]
    tau = config.get("tau", 0.05) if tau is None else tau
    axes = varied_axes(df)
    where = list(dict.fromkeys(["width", *axes]))
    data = _datasets(folder, config)  # the sweep's data sets, made again
    metrics = [m for m in ("val_acc", "test_acc", "test_loss", "train_loss", "test_gen_err")
               if m in df.columns and df[m].notna().any()]
    runs = stats.with_steps_to(df, tau)
    chosen = stats.best_lr(runs, "val_acc")
    tables = {"summary": stats.summarize(runs, metrics, tau=tau, confidence=confidence),
              "selected": stats.summarize(chosen, metrics, tau=tau, confidence=confidence)}
    compared = [m for m in ("test_acc", "test_loss", "train_loss", "test_gen_err") if m in metrics]
    tables["paired"] = pd.concat([stats.paired(runs, m, confidence=confidence)
                                  for m in (*compared, stats.STEPS)], ignore_index=True)
    selected_pairs = {m: stats.paired(chosen, m, confidence=confidence, ignore=("lr",))
                      for m in compared}
    tables["paired_selected"] = pd.concat(selected_pairs.values(), ignore_index=True)

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
          "Wilcoxon signed-rank test (– where every pair is equal); the win rate is the share "
          "of seeds where the shortcut is better (lower for losses, errors and eigenvalue "
          "fractions; ties count ½). Where a table or figure leaves an axis out, a seed's pairs "
          "at its values are averaged first.", ""]
    residual = [v for v in grid.get("variants", ()) if v.startswith("residual")]
    if residual and 1 in grid.get("depths", (1,)):
        s += [f"{' and '.join(residual)} at depth 1 left out: a depth-1 network has no skip "
              "between hidden layers (it is the plain network there).", ""]
    if ((df["depth"] > 1) | (df["activation"] != "relu")).any():
        s += ["The paired sections take shortcut − plain at each depth and activation (the "
              "Hessian section also residual − plain); the decision boundaries cover the "
              "problem's network (depth 1, relu) only. Hessians: by hand for the problem's "
              "network, by jax.hessian in float64 for the others.", ""]
    for record in config.get("data", []):
        if "path" in record:
            s += [f"- {record['path']}: {record['n_train']} train / {record['n_val']} validation "
                  f"/ {record['n_test']} test rows, {record['d']} features, labels mapped "
                  f"{record['label_map']} (sha256 {record['sha256'][:12]}...)"]
    s += ["## The selected configurations", ""]
    sel = tables["selected"]
    view = pd.DataFrame({"setting": [_setting(r, [a for a in where if a != "width"])
                                     for _, r in sel.iterrows()],
                         "variant": [v if pd.isna(i) else f"{v} ({i})" for v, i in
                                     zip(sel["variant"], sel["shortcut_init"])],
                         "h": sel["width"], "lr (chosen)": sel["lr"]})
    for m in metrics:
        view[m] = [stats.format_ci(r[f"{m}_mean"], r[f"{m}_lo"], r[f"{m}_hi"],
                                   3 if "acc" in m else 4) for _, r in sel.iterrows()]
    view[f"steps to train loss ≤ {tau:g}"] = [
        f"{r['steps_to_tau_mean']:.0f} ({r['frac_reached']:.0%} reached)" if r["frac_reached"]
        else "never" for _, r in sel.iterrows()]
    s += [_table(view), ""]

    s += ["## Paired differences, shortcut − plain (same seed, each at its chosen lr)", ""]
    for m, table in selected_pairs.items():
        s += [f"### {m}", "", _paired_rows(table, where).pipe(_table), "",
              f"Reading: {verdict(table, m, where)}", ""]

    figures = {}
    if len(axes):
        s += ["## Where the shortcut helps: each varied axis", ""]
    for axis in axes:
        name = f"paired_vs_{axis}"
        hue = "dataset" if axis == "width" else "width"
        by_axis = {m: stats.paired_selected(df, m, [axis, hue], "val_acc", confidence)
                   for m in ("test_acc", "test_loss")}
        figures[name] = plots.paired_vs_axis(df, axis, hue=hue, confidence=confidence,
                                             tables=by_axis)
        s += [f"- {axis}, {m}: {verdict(t, m, [axis, hue])}" for m, t in by_axis.items()]
        s += ["", f"![{name}](figures/{name}.png)", ""]
    for x, y in list(itertools.combinations(axes, 2))[:MAX_HEATMAPS]:
        name = f"heatmap_{y}_{x}"
        figures[name] = plots.paired_heatmap(df, "test_acc", x=x, y=y, confidence=confidence)
        s += [f"![{name}](figures/{name}.png)", ""]

    if "test_gen_err" in metrics:
        s += ["## The teacher: generalisation error", "",
              "test_gen_err = mean over test inputs of ½ (ŷ − p_teacher)², the student's "
              "distance from the teacher's noiseless output.", "",
              f"Reading: {verdict(selected_pairs['test_gen_err'], 'test_gen_err', where)}", ""]

    if hessians:
        hess = hessian_table(folder, data, chosen)
        if len(hess):
            tables["hessian"] = hess
            s += _hessian_section(hess, where, confidence)
    if baselines:
        base = baseline_table(data)
        if len(base):
            tables["baselines"] = base
            s += ["## Baselines on the same splits (scikit-learn)", "", _table(base.round(3)), "",
                  "Reading: a linear model is what the shortcut alone is; the kit's accuracies "
                  "far below logistic regression would point to a training problem.", ""]

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
    return Report("\n".join(s), figures, tables, len(df))


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
    to HESSIAN_MAX_PARAMS parameters): hess_zero_frac, hess_neg_frac per run, from the
    hand-written Hessian (diagnostics.hessian_by_hand: NumPy, nothing compiles). data:
    _datasets(folder, config)."""
    from shortcut_jax.network import num_net_params, variant_parts

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
            out.append(part[[*stats.RUN_KEYS, "step"]].assign(
                n_params=P, hess_zero_frac=fractions[:, 0], hess_neg_frac=fractions[:, 1]))
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
    variants = [v for v in ("shortcut", "residual", "residual+shortcut")
                if (hess["variant"] == v).any()]
    for (m, label), variant in itertools.product(
            (("hess_zero_frac", "near-zero"), ("hess_neg_frac", "negative")), variants):
        table = stats.paired(hess, m, confidence=confidence, ignore=("lr",), higher=False,
                             variant=variant)
        sig = table.apply(stats.significance, axis=1)
        s += [f"### {label} eigenvalues, {variant} − plain (same seed)", "",
              _table(_paired_rows(table, where, variant=variant)), "",
              f"Reading: the {variant} network has significantly fewer {label} eigenvalues in "
              f"{int((sig < 0).sum())} of {len(table)} configurations, significantly more in "
              f"{int((sig > 0).sum())}, and no significant difference in "
              f"{int((sig == 0).sum())}.", ""]
    s += ["Orhan & Pitkow (2018) report that skip connections remove the degenerate (near-zero) "
          "directions that dead and overlapping units create in deep networks; the paired "
          "intervals above say where that holds for this two-layer network.", ""]
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

"""report.build, report.hessian_table and report._datasets on a tiny finished sweep committed
under tests/data/build_sweep (84 KB: xor in 3-D, 80 training rows, width 4, lrs 0.5 and 2, 4
seeds, 300 steps, plain and shortcut; made once by `sj.run_sweep(sj.Grid(datasets=("xor",),
d=(3,), widths=(4,), lrs=(0.5, 2.0), seeds=4, steps=300, eval_every=100, n_train=80,
n_test=30), folder)`). Nothing trains and nothing compiles here: the report takes about 0.5 s,
so mutmut can run these tests per mutant (experiments/MUTATION.md). Every number is checked
against the Parquet chunks read with pyarrow and scipy/statsmodels/NumPy directly.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from shortcut_jax import data as data_lib
from shortcut_jax import report

SWEEP = Path(__file__).parent / "data" / "build_sweep"
STEPS_DONE = 300


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "build_sweep"
    shutil.copytree(SWEEP, out)
    return out


@pytest.fixture(scope="module")
def rows():
    """Every row of the chunks, read with pyarrow alone."""
    df = pd.concat([pq.read_table(p).to_pandas() for p in sorted(SWEEP.glob("chunks/*.parquet"))],
                   ignore_index=True)
    for c in ("val_acc", "test_acc", "test_loss", "train_loss"):
        df[c] = df[c].astype(np.float64)
    return df


def final(rows):
    return rows[rows["step"] == STEPS_DONE]


def chosen_lr(rows):
    """Per variant, the lr of the best mean final validation accuracy (by hand)."""
    means = final(rows).groupby(["variant", "lr"])["val_acc"].mean()
    return {v: means[v].idxmax() for v in ("plain", "shortcut")}


def t_ci(x, conf=0.95, lo=-np.inf, hi=np.inf):
    x = np.asarray(x, np.float64)
    m = x.mean()
    h = st.t.ppf(0.5 + conf / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return m, max(m - h, lo), min(m + h, hi)


def fmt(m, lo, hi, digits):
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def run_values(rows, variant, lr, metric):
    f = final(rows)
    return f[(f["variant"] == variant) & (f["lr"] == lr)].sort_values("seed")[metric].to_numpy()


def diffs(rows, metric, lr_s, lr_p):
    return run_values(rows, "shortcut", lr_s, metric) - run_values(rows, "plain", lr_p, metric)


def wilcoxon_p(d):
    """scipy's Wilcoxon p: exact without ties or zeros, else the normal approximation (the
    kit's documented rule)."""
    a = np.sort(np.abs(d))
    tied = (a[1:] == a[:-1]).any() or (d == 0).any()
    return st.wilcoxon(d, method="approx" if tied else "exact").pvalue


def md_row(markdown, start):
    hits = [line for line in markdown.splitlines() if line.startswith(start)]
    assert hits, start
    return hits


# --- the checks, each called by one of the tests at the end (mutmut maps a function to the
# tests that call it, and a module fixture's call counts for the first test alone: so each
# test builds its own report, and every check of that report runs in it)


# --- what it read and what it made -----------------------------------------------------------


def check_build_names_its_steps_tables_and_figures(built, rows):
    rep, told = built
    assert told == list(report.STEPS)
    assert rep.n_rows == len(rows) == 64  # 2 variants x 2 lrs x 4 seeds x steps 0, 100, 200, 300
    assert list(rep.tables) == ["summary", "selected", "paired", "paired_selected",
                                "paired_plain_lr", "hessian"]
    assert list(rep.figures) == ["acc_vs_width", "learning_curves", "diagnostics"]
    assert rep.untrained.empty
    assert rep.tables["selected"]["did_not_train"].tolist() == ["", ""]
    assert rep.tables["summary"]["did_not_train"].tolist() == ["", "", "", ""]


def check_build_markdown_sections_in_order(built):
    heads = [line for line in built[0].markdown.splitlines() if line.startswith("#")]
    assert heads == [
        "# Plain vs shortcut: does the shortcut connection help?",
        "## The selected configurations",
        "## Paired differences, shortcut − plain (same seed, each at its chosen lr)",
        "### test_acc", "### test_loss", "### train_loss",
        "## Why: singularities of the loss surface at the end of training",
        "### near-zero eigenvalues, shortcut − plain (same seed)",
        "### negative eigenvalues, shortcut − plain (same seed)",
        "### Where the near-zero directions come from: a census of the units",
        "## Appendix: paired differences at each learning rate of the grid",
        "### test_acc", "### test_loss", "### train_loss",
        "## Figures"]
    lines = built[0].markdown.splitlines()
    for i, line in enumerate(lines):  # each heading, table and reading stands apart
        if line.startswith("#"):
            assert lines[i - 1:i + 2:2] == ["", ""] or i == 0 and lines[1] == "", line
        if line.startswith("Reading: "):
            assert lines[i - 1] == "" and lines[i - 2].startswith("| "), line


def check_build_opening_word_for_word(built):
    lines = built[0].markdown.splitlines()
    assert lines[:6] == [
        "# Plain vs shortcut: does the shortcut connection help?", "",
        "Sweep build_sweep: datasets ['xor'], widths [4], learning rates [0.5, 2.0], 4 seeds, "
        "300 steps of sgd on the mse loss. Plain and shortcut runs of a seed start from the same "
        "W1, b1, W2, b2 and see the same data and minibatches, so a paired difference is the "
        "shortcut's.", "",
        "Learning rates are chosen per variant and configuration by the best mean final "
        "validation accuracy over seeds; test metrics are reported for the chosen learning rates "
        "only.",
        "Intervals are 95% Student-t intervals over seeds (for fractions such as accuracies, "
        "intersected with [0, 1]); p values from the paired t test and the Wilcoxon signed-rank "
        "test (– where every pair is equal); intervals of losses, norms, errors and steps are "
        "bounded below at 0; the win rate is the share of seeds where the shortcut is better "
        "(lower for losses, errors and eigenvalue fractions; ties count ½). Where a table or "
        "figure leaves an axis out, a seed's pairs at its values are averaged first."]
    assert lines[6].startswith(
        "Holm-adjusted p values are adjusted over the rows of their table (one family per table "
        "and metric: the configurations it compares). A verdict (significantly better or worse) "
        "needs both the 95% t interval")
    assert "below 0.05 (exact" in lines[6]
    assert lines[7:9] == ["", "## The selected configurations"]


def check_build_paired_section_text_word_for_word(built):
    md = built[0].markdown
    assert ("## Paired differences, shortcut − plain (same seed, each at its chosen lr)\n\n"
            "Beside each, both variants at the plain network's chosen lr, so that the "
            "architecture's effect is not mixed with a different learning rate (every lr of the "
            "grid: the appendix).\n\n### test_acc\n\n| setting | difference [CI] |") in md
    within = ("the shortcut is significantly better in 0 of 1 configurations, significantly "
              "worse in 0, and within noise in the other 1 (Holm over the 1 tested).")
    assert md.count(f"\nReading: {within}\nAt the plain network's lr: {within}\n\n") == 3
    assert ("## Appendix: paired differences at each learning rate of the grid\n\nShortcut − "
            "plain with both variants at the same lr, every lr (Holm over each table's rows)."
            "\n\n### test_acc\n\n| setting | difference [CI] |") in md
    assert md.endswith("## Figures\n\n![acc_vs_width](figures/acc_vs_width.png)\n"
                       "![learning_curves](figures/learning_curves.png)\n"
                       "![diagnostics](figures/diagnostics.png)\n")


# --- the numbers, against scipy ---------------------------------------------------------------


def check_build_selected_table_against_scipy(built, rows):
    rep = built[0]
    lrs = chosen_lr(rows)
    sel = rep.tables["selected"].sort_values("variant")
    assert sel["lr"].tolist() == [lrs["plain"], lrs["shortcut"]]
    header = md_row(rep.markdown, "| setting | variant | h | lr (chosen) |")[0]
    assert header == ("| setting | variant | h | lr (chosen) | val_acc | test_acc | test_loss | "
                      "train_loss | steps to train loss ≤ 0.05 |")
    for v, name in (("plain", "plain"), ("shortcut", "shortcut (zeros)")):
        cells = [f"| xor | {name} | 4 | {lrs[v]} |"]
        r = sel[sel["variant"] == v].iloc[0]
        for m in ("val_acc", "test_acc", "test_loss", "train_loss"):
            acc = "acc" in m
            m_, lo, hi = t_ci(run_values(rows, v, lrs[v], m), lo=0, hi=1 if acc else np.inf)
            np.testing.assert_allclose([r[f"{m}_mean"], r[f"{m}_lo"], r[f"{m}_hi"]],
                                       [m_, lo, hi], rtol=1e-9, err_msg=f"{v} {m}")
            cells.append(f" {fmt(m_, lo, hi, 3 if acc else 4)} |")
        # steps to train loss <= 0.05: the first evaluated step below, over the runs reaching it
        part = rows[(rows["variant"] == v) & (rows["lr"] == lrs[v])]
        first = part[part["train_loss"] <= 0.05].groupby("seed")["step"].min()
        cells.append(f" {first.mean():.0f} ({len(first) / 4:.0%} reached) |")
        assert md_row(rep.markdown, f"| xor | {name} | 4 |") == ["".join(cells)]


def check_build_paired_rows_against_scipy(built, rows, metric):
    rep = built[0]
    lrs = chosen_lr(rows)
    d = diffs(rows, metric, lrs["shortcut"], lrs["plain"])
    m, lo, hi = t_ci(d)
    p_t = st.ttest_rel(run_values(rows, "shortcut", lrs["shortcut"], metric),
                       run_values(rows, "plain", lrs["plain"], metric)).pvalue
    p_w = wilcoxon_p(d)
    t = rep.tables["paired_selected"]
    r = t[t["metric"] == metric].iloc[0]
    np.testing.assert_allclose([r["diff_mean"], r["diff_lo"], r["diff_hi"], r["p_ttest"],
                                r["p_wilcoxon"]], [m, lo, hi, p_t, p_w], rtol=1e-9)
    assert r["variant"] == "shortcut" and r["n_pairs"] == 4
    win = np.mean(np.where(d == 0, 0.5, d > 0 if "acc" in metric else d < 0))
    # the plain network's lr (both variants at it): the same lr here, so the same difference
    assert lrs["plain"] == lrs["shortcut"]
    i = rep.markdown.index(f"### {metric}\n")
    line = rep.markdown[i:].splitlines()[4]
    assert line.startswith(f"| xor width=4 | {fmt(m, lo, hi, 4)} | {p_t:.3g} | {p_w:.3g} | "
                           f"{p_t:.3g} | {p_w:.3g} | ")
    assert line.endswith(f" | {win:.2f} | 4 | {lrs['plain']:g} | {fmt(m, lo, hi, 4)} | "
                         f"{p_w:.3g} |")
    plain_lr = rep.tables["paired_plain_lr"]
    r2 = plain_lr[plain_lr["metric"] == metric].iloc[0]
    np.testing.assert_allclose([r2["diff_mean"], r2["diff_lo"], r2["diff_hi"]], [m, lo, hi],
                               rtol=1e-9)


def check_build_appendix_rows_every_lr_with_holm(built, rows, metric):
    rep = built[0]
    ps_t, ps_w, cis = [], [], []
    for lr in (0.5, 2.0):
        d = diffs(rows, metric, lr, lr)
        cis.append(t_ci(d))
        ps_t.append(st.ttest_1samp(d, 0).pvalue)
        ps_w.append(wilcoxon_p(d))
    holm_t = multipletests(ps_t, method="holm")[1]
    holm_w = multipletests(ps_w, method="holm")[1]
    t = rep.tables["paired"]
    t = t[(t["metric"] == metric) & (t["variant"] == "shortcut")].sort_values("lr")
    np.testing.assert_allclose(t["p_wilcoxon_holm"], holm_w, rtol=1e-9)
    np.testing.assert_allclose(t["p_ttest_holm"], holm_t, rtol=1e-9)
    app = rep.markdown[rep.markdown.index("## Appendix"):]
    app = app[app.index(f"### {metric}\n"):]
    for k, lr in enumerate(("0.5", "2")):
        assert [line for line in app.splitlines()
                if line.startswith(f"| xor width=4 lr={lr} |")][0].startswith(
            f"| xor width=4 lr={lr} | {fmt(*cis[k], 4)} | {ps_t[k]:.3g} | {ps_w[k]:.3g} | "
            f"{holm_t[k]:.3g} | {holm_w[k]:.3g} | ")
    n = int((np.asarray(ps_w) > 0).sum())
    assert (f"Reading: the shortcut is significantly better in 0 of 2 configurations, "
            f"significantly worse in 0, and within noise in the other 2 (Holm over the {n} "
            f"tested).") in app


def check_build_confidence_and_tau_passed_on(built90, rows):
    md = built90.markdown
    assert "Intervals are 90% Student-t intervals over seeds" in md
    assert "needs both the 90% t interval" in md and "below 0.1 (exact" in md
    assert "| train_loss | steps to train loss ≤ 0.1 |" in md
    assert "## Why" not in md and "hessian" not in built90.tables
    lrs = chosen_lr(rows)
    sel = built90.tables["selected"].sort_values("variant")
    for v in ("plain", "shortcut"):
        r = sel[sel["variant"] == v].iloc[0]
        np.testing.assert_allclose(
            [r["test_acc_lo"], r["test_acc_hi"]],
            t_ci(run_values(rows, v, lrs[v], "test_acc"), 0.9, 0, 1)[1:], rtol=1e-9)
        part = rows[(rows["variant"] == v) & (rows["lr"] == lrs[v])]
        first = part[part["train_loss"] <= 0.1].groupby("seed")["step"].min()
        assert r["frac_reached"] == len(first) / 4
        assert r["steps_to_tau_mean"] == pytest.approx(first.mean(), rel=1e-12)
    for t in ("paired", "paired_selected", "paired_plain_lr"):
        tab = built90.tables[t]
        r = tab[(tab["metric"] == "test_loss") & (tab["variant"] == "shortcut")].iloc[-1]
        lr = r["lr"] if t == "paired" else lrs["shortcut"]
        np.testing.assert_allclose([r["diff_lo"], r["diff_hi"]],
                                   t_ci(diffs(rows, "test_loss", lr, lr), 0.9)[1:], rtol=1e-9)


def check_build_figures_at_the_confidence(rep, rows, conf):
    """The three figures at the end: their titles name the confidence, and what they draw
    (means at the chosen lrs, the width figure's interval ends) is computed by hand."""
    pct = f"{conf:.0%} t interval"
    lrs = chosen_lr(rows)
    assert lrs["plain"] == lrs["shortcut"] == 2.0
    fig = rep.figures["acc_vs_width"]
    assert fig._suptitle.get_text().startswith(f"final test_acc vs width (mean, {pct}")
    (ax,) = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("width (hidden units)", "final test_acc")
    drawn = sorted(y for line in ax.lines for y in line.get_ydata())
    want = sorted(x for v in ("plain", "shortcut")
                  for x in t_ci(run_values(rows, v, lrs[v], "test_acc"), conf, 0, 1))
    np.testing.assert_allclose(drawn, want, rtol=1e-9)  # the means and the bars' ends
    for name, metrics in (("learning_curves", ["test_acc"]),
                          ("diagnostics", ["dead_frac", "saturated_frac", "shortcut_share",
                                           "max_overlap", "grad_norm"])):
        fig = rep.figures[name]
        assert pct in fig._suptitle.get_text().replace("\n", " "), name
        assert fig._suptitle.get_text().startswith("xor"), name
        assert [a.get_ylabel() for a in fig.axes] == metrics, name
        for a, m in zip(fig.axes, metrics):
            assert [line.get_label() for line in a.lines] == [
                "plain, lr=2 (n=4)", "shortcut (zeros), lr=2 (n=4)"], name
            for line, v in zip(a.lines, ("plain", "shortcut")):
                part = rows[(rows["variant"] == v) & (rows["lr"] == lrs[v])]
                means = part.groupby("step")[m].mean()
                np.testing.assert_array_equal(line.get_xdata(), means.index.to_numpy())
                np.testing.assert_allclose(line.get_ydata(), means.to_numpy(), rtol=1e-6,
                                           err_msg=f"{name} {m} {v}")


def check_build_summary_every_lr(rep, rows, conf, tau):
    """The summary table: every variant and lr, the report's four metrics and steps to tau."""
    summ = rep.tables["summary"].sort_values(["variant", "lr"])
    cols = [c for c in summ.columns if c.endswith(("_mean", "_lo", "_hi"))]
    assert cols == [f"{m}_{s}" for m in ("val_acc", "test_acc", "test_loss", "train_loss",
                                         "steps_to_tau") for s in ("mean", "lo", "hi")]
    assert summ[["variant", "lr"]].values.tolist() == [
        ["plain", 0.5], ["plain", 2.0], ["shortcut", 0.5], ["shortcut", 2.0]]
    for _, r in summ.iterrows():
        for m in ("val_acc", "test_acc", "test_loss", "train_loss"):
            want = t_ci(run_values(rows, r["variant"], r["lr"], m), conf, 0,
                        1 if "acc" in m else np.inf)
            np.testing.assert_allclose([r[f"{m}_mean"], r[f"{m}_lo"], r[f"{m}_hi"]], want,
                                       rtol=1e-9, err_msg=m)
        part = rows[(rows["variant"] == r["variant"]) & (rows["lr"] == r["lr"])]
        first = part[part["train_loss"] <= tau].groupby("seed")["step"].min()
        assert r["frac_reached"] == len(first) / 4


def check_build_baselines(rep):
    """The baselines: scikit-learn's logistic regression fitted on the data made again."""
    from sklearn.linear_model import LogisticRegression

    ds = data_lib.make_synthetic("xor", 0, 80, 30, d=3, noise=0.05)
    model = LogisticRegression(max_iter=2000).fit(ds.X_train, ds.Y_train)
    base = rep.tables["baselines"]
    assert base.columns.tolist() == ["data set", "model", "train acc", "val acc", "test acc"]
    assert base[["data set", "model"]].values.tolist() == [["xor", "logistic regression"]]
    want = [model.score(ds.X_train, ds.Y_train), model.score(ds.X_val, ds.Y_val),
            model.score(ds.X_test, ds.Y_test)]
    np.testing.assert_allclose(base[["train acc", "val acc", "test acc"]].to_numpy()[0], want,
                               rtol=1e-12)
    row = " | ".join(f"{v:.3f}".rstrip("0").rstrip(".") if v != int(v) else f"{v:.1f}"
                     for v in np.round(want, 3))
    assert ("\n\n## Baselines on the same splits (scikit-learn)\n\n| data set | model | train acc"
            " | val acc | test acc |\n|---|---|---|---|---|\n| xor | logistic regression | "
            f"{row} |\n\nReading: a linear model is what the shortcut alone is; the kit's "
            "accuracies far below logistic regression would point to a training problem.\n\n"
            "## Appendix") in rep.markdown


# --- the data sets and the Hessians -----------------------------------------------------------


def test_datasets_made_again_from_the_config(folder):
    config = json.loads((folder / "config.json").read_text())["config"]
    (spec, ds, name), = report._datasets(folder, config)
    assert name == "xor"
    assert spec == {"dataset": "xor", "data_seed": 0, "n_train": 80, "d": 3, "noise": 0.05,
                    "linear_weight": None, "teacher_width": None, "teacher_shortcut": None}
    ref = data_lib.make_synthetic("xor", 0, 80, 30, d=3, noise=0.05)
    for a in ("X_train", "Y_train", "X_val", "Y_val", "X_test", "Y_test"):
        np.testing.assert_array_equal(getattr(ds, a), getattr(ref, a), err_msg=a)


def test_datasets_named_by_spec_where_a_task_has_several(tmp_path):
    """A task with one data set is named by the task, one with several by each spec."""
    config = {"grid": {"datasets": ["xor", "linear_xor"], "linear_weight": [0.5, 1.0],
                       "n_train": [40], "n_test": 20}}
    made = report._datasets(tmp_path, config)
    assert [name for _, _, name in made] == [
        "xor", "linear_xor-s0-n40-d2-noise0.05-lw0.5", "linear_xor-s0-n40-d2-noise0.05-lw1"]
    assert [spec["linear_weight"] for spec, _, _ in made] == [None, 0.5, 1.0]
    ref = data_lib.make_synthetic("linear_xor", 0, 40, 20, d=2, noise=0.05, linear_weight=1.0)
    np.testing.assert_array_equal(made[2][1].X_train, ref.X_train)


def test_datasets_refuse_a_data_file_that_changed(tmp_path):
    """A CSV sweep's data file whose SHA-256 (hashlib) differs from the one its config.json
    recorded is refused, the error naming the file and the folder; unchanged, it loads."""
    import hashlib

    csv = tmp_path / "points.csv"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": (X[:, 0] > 0).astype(int)}).to_csv(
        csv, index=False)
    folder = tmp_path / "the_sweep_folder"
    config = {"grid": {"csv": str(csv), "target": "y"},
              "data": [{"name": "points", "path": str(csv),
                        "sha256": hashlib.sha256(csv.read_bytes()).hexdigest()}]}
    (_, ds, name), = report._datasets(folder, config)
    assert name == "points" and len(ds.Y_train) + len(ds.Y_val) + len(ds.Y_test) == 40
    with csv.open("a") as out:
        out.write("0.5,0.5,1\n")
    with pytest.raises(ValueError, match="data: .*points.csv changed since the sweep in "
                       f".*{folder.name} began"):
        report._datasets(folder, config)


def loss_np(theta, X, Y, d, h, shortcut, loss_fn="mse"):
    """J = mean ½ (y_hat − y)² (or the cross-entropy) of the problem's network, parameters flat
    (W1, b1, W2, b2, W)."""
    W1 = theta[:h * d].reshape(h, d)
    b1 = theta[h * d:h * d + h]
    W2 = theta[h * d + h:h * d + 2 * h]
    b2 = theta[h * d + 2 * h]
    z2 = np.maximum(X @ W1.T + b1, 0) @ W2 + b2
    if shortcut:
        z2 = z2 + X @ theta[h * d + 2 * h + 1:]
    y_hat = 1 / (1 + np.exp(-z2))
    if loss_fn == "bce":
        return np.mean(-Y * np.log(y_hat) - (1 - Y) * np.log1p(-y_hat))
    return np.mean(0.5 * (y_hat - Y) ** 2)


def fd_hessian(f, theta, eps=1e-4):
    P = len(theta)
    H = np.empty((P, P))
    E = np.eye(P) * eps
    for i in range(P):
        for j in range(i, P):
            H[i, j] = H[j, i] = (f(theta + E[i] + E[j]) - f(theta + E[i] - E[j])
                                 - f(theta - E[i] + E[j]) + f(theta - E[i] - E[j])) / (4 * eps**2)
    return H


def flat_params(saved, variant, lr, seed, group=None):
    """The run's final parameters from params.npz, read with NumPy alone, flat in float64."""
    group = group or (f"xor-s0-n80-d3-noise0.05-{variant}"
                      f"{'-zeros' if variant == 'shortcut' else ''}-h4-sgd-mse-bfull/")
    i, = np.flatnonzero((saved[group + "lr"] == lr) & (saved[group + "seed"] == seed))
    names = ("W1", "b1", "W2", "b2") + (("W",) if variant == "shortcut" else ())
    return np.concatenate([saved[group + n][i].astype(np.float64).ravel() for n in names])


def check_hessian_table_against_a_numeric_hessian(built, folder, rows):
    hess = built[0].tables["hessian"].sort_values(["variant", "seed"]).reset_index(drop=True)
    lrs = chosen_lr(rows)
    assert hess["variant"].tolist() == ["plain"] * 4 + ["shortcut"] * 4
    assert hess["seed"].tolist() == [0, 1, 2, 3] * 2
    assert hess["lr"].tolist() == [lrs["plain"]] * 4 + [lrs["shortcut"]] * 4
    assert (hess["step"] == STEPS_DONE).all() and (hess["width"] == 4).all()
    assert hess["n_params"].tolist() == [3 * 4 + 4 + 4 + 1] * 4 + [3 * 4 + 4 + 4 + 1 + 3] * 4
    ds = data_lib.make_synthetic("xor", 0, 80, 30, d=3, noise=0.05)
    X, Y = np.asarray(ds.X_train, np.float64), np.asarray(ds.Y_train, np.float64)
    with np.load(folder / "params.npz") as z:
        saved = {k: z[k] for k in z.files}
    for _, r in hess.iterrows():
        sc = r["variant"] == "shortcut"
        theta = flat_params(saved, r["variant"], r["lr"], r["seed"])
        assert len(theta) == r["n_params"]
        lam = np.linalg.eigvalsh(fd_hessian(lambda t, sc=sc: loss_np(t, X, Y, 3, 4, sc), theta))
        tol = 1e-6 * np.abs(lam).max()
        P = len(lam)
        assert r["hess_neg_frac"] == (lam < -tol).sum() / P
        assert r["hess_zero_frac"] == (np.abs(lam) <= tol).sum() / P
        assert r["hess_zero"] == (np.abs(lam) <= tol).sum()


# --- a second sweep: teacher data, bce, widths 2 and 3, depths 1 and 2, a residual variant ----
# tests/data/build_sweep2 (328 KB): sj.run_sweep(sj.Grid(datasets=("teacher",), variants=(
# "plain", "shortcut", "residual"), depths=(1, 2), loss_fns=("bce",), widths=(2, 3), lrs=(0.05,
# 1.0), seeds=3, steps=40, eval_every=20, n_train=60, n_test=30, d=(3,)), folder): runs that
# did not train, two varied axes, the teacher's and Shamir's sections. About 2.2 s to build.

SWEEP2 = Path(__file__).parent / "data" / "build_sweep2"


def _selected(tmp_path, source):
    """A copy of a committed sweep folder, its data sets made again, and its runs at the
    validation-selected lr: what hessian_table reads."""
    from shortcut_jax import results, stats

    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())["config"]
    return folder, report._datasets(folder, config), stats.best_lr(results.load(folder),
                                                                   "val_acc")


@pytest.fixture(scope="module")
def rows2():
    df = pd.concat([pq.read_table(p).to_pandas()
                    for p in sorted(SWEEP2.glob("chunks/*.parquet"))], ignore_index=True)
    for c in ("val_acc", "test_acc", "test_loss", "train_loss", "test_gen_err"):
        df[c] = df[c].astype(np.float64)
    return df


def check_build2_tables_figures_and_headings(built2):
    assert list(built2.tables) == ["summary", "selected", "paired", "paired_selected",
                                   "untrained", "paired_plain_lr", "linear_bound"]
    assert list(built2.figures) == ["paired_vs_width", "paired_vs_depth", "heatmap_depth_width",
                                    "acc_vs_width", "learning_curves", "diagnostics",
                                    "paired_heatmap"]
    heads = [line for line in built2.markdown.splitlines() if line.startswith("#")]
    per_metric = ["### test_acc", "### test_loss", "### train_loss", "### test_gen_err"]
    assert heads == [
        "# Plain vs shortcut: does the shortcut connection help?",
        "## Runs that did not train", "## The selected configurations",
        "## Paired differences, shortcut − plain (same seed, each at its chosen lr)",
        *per_metric,
        "## Paired differences, residual − plain (same seed, each at its chosen lr)",
        *per_metric,
        "## Where the shortcut helps: each varied axis",
        "## The teacher: generalisation error",
        "## Shamir's bound: the shortcut network against the best linear predictor",
        "## Appendix: paired differences at each learning rate of the grid",
        *per_metric, *[f"{h}, residual − plain" for h in per_metric],
        "## Figures"]
    assert built2.markdown.endswith(
        "## Figures\n\n![acc_vs_width](figures/acc_vs_width.png)\n"
        "![learning_curves](figures/learning_curves.png)\n"
        "![diagnostics](figures/diagnostics.png)\n![paired_heatmap](figures/paired_heatmap.png)\n")


def check_build2_linear_bound_table(built2, rows2):
    """Shamir's table: the shortcut runs of the cross-entropy, counted by hand."""
    bound = built2.tables["linear_bound"]
    f = rows2[(rows2["step"] == 40) & (rows2["variant"] == "shortcut")]
    assert len(bound) == len(f) == 24 and set(bound["data_set"]) == {"teacher"}
    np.testing.assert_array_equal(np.sort(bound["train_loss"].to_numpy(np.float64)),
                                  np.sort(f["train_loss"].to_numpy()))


def check_build2_opening_paragraphs_word_for_word(built2):
    md = built2.markdown
    assert md.splitlines()[2] == (
        "Sweep build_sweep2: datasets ['teacher'], widths [2, 3], learning rates [0.05, 1.0], 3 "
        "seeds, 40 steps of sgd on the bce loss; varied axes: width, depth. Plain and shortcut "
        "runs of a seed start from the same W1, b1, W2, b2 and see the same data and minibatches,"
        " so a paired difference is the shortcut's.")
    assert ("\n\nresidual at depth 1 left out: a depth-1 network has no skip between hidden "
            "layers (it is the plain network there).\n\nThe paired sections take each variant "
            "− plain at each depth and activation (shortcut − plain first, the skips between "
            "hidden layers in sections of their own); the figures per axis and the heatmaps "
            "show shortcut − plain; the decision boundaries cover the problem's network (depth "
            "1, relu) only. Hessians: by hand for the problem's network, by jax.hessian in "
            "float64 for the others.\n\n## Runs that did not train\n\n") in md
    assert ("## Appendix: paired differences at each learning rate of the grid\n\nShortcut − "
            "plain, residual − plain with both variants at the same lr, every lr (Holm over "
            "each table's rows).\n\n") in md
    assert ("## The teacher: generalisation error\n\ntest_gen_err = mean over test inputs of ½ "
            "(ŷ − p_teacher)², the student's distance from the teacher's noiseless output.\n\n"
            "Reading: the shortcut is significantly better in 0 of 4 configurations, "
            "significantly worse in 0, and within noise in the other 4 (Holm over the 4 "
            "tested).\n\n## Shamir's bound") in md


def check_build2_untrained_marked(built2, rows2):
    md, bad = built2.markdown, built2.untrained
    # configurations: plain and shortcut at 2 widths x 2 depths x 2 lrs, residual at depth 2
    assert len(built2.tables["summary"]) == 20
    assert f"\n\n{len(bad)} of 20 configurations did not train: " in md
    assert len(bad) == len(built2.tables["untrained"]) > 0
    sel = built2.tables["selected"]
    key = ["variant", "width", "depth", "lr"]
    flagged = set(map(tuple, bad[key].astype(str).to_numpy()))
    for _, r in sel.iterrows():
        assert bool(r["did_not_train"]) == (tuple(r[key].astype(str)) in flagged)
    assert sel["did_not_train"].astype(bool).any() and not sel["did_not_train"].astype(bool).all()
    summary = built2.tables["summary"]
    assert summary["did_not_train"].astype(bool).sum() == len(bad)
    assert "\n\n⚠: did not train (see Runs that did not train).\n\n" in md
    lines = md.splitlines()
    start = lines.index("## The selected configurations")
    body = [line for line in lines[start:start + 14] if line.startswith("| teacher")]
    assert len(body) == len(sel) == 10
    for line, flag in zip(body, sel["did_not_train"].astype(bool)):  # the table's row order
        assert (" ⚠ | " in line) == flag, line


def check_build2_selected_lrs_by_hand(built2, rows2):
    f = rows2[rows2["step"] == 40]
    means = f.groupby(["variant", "depth", "width", "lr"])["val_acc"].mean()
    sel = built2.tables["selected"]
    assert len(sel) == 10
    for _, r in sel.iterrows():
        m = means[(r["variant"], r["depth"], r["width"])]
        best = m[m == m.max()].index.min()  # ties: the smaller lr
        assert r["lr"] == best, (r["variant"], r["depth"], r["width"])
        runs = f[(f["variant"] == r["variant"]) & (f["depth"] == r["depth"])
                 & (f["width"] == r["width"]) & (f["lr"] == best)]
        np.testing.assert_allclose(
            [r["test_gen_err_mean"], r["test_gen_err_lo"], r["test_gen_err_hi"]],
            t_ci(runs["test_gen_err"], lo=0), rtol=1e-9)


def check_build2_residual_pairs_against_scipy(built2, rows2):
    f = rows2[rows2["step"] == 40]
    sel = built2.tables["selected"]
    t = built2.tables["paired_selected"]
    md = built2.markdown
    sec = md[md.index("## Paired differences, residual − plain"):]
    sec = sec[sec.index("### test_loss\n"):]
    for width in (2, 3):
        lr = {v: sel[(sel["variant"] == v) & (sel["depth"] == 2) & (sel["width"] == width)]
              ["lr"].item() for v in ("plain", "residual")}

        def vals(v, lr_v, w=width):
            return f[(f["variant"] == v) & (f["depth"] == 2) & (f["width"] == w)
                     & (f["lr"] == lr_v)].sort_values("seed")["test_loss"].to_numpy()

        d = vals("residual", lr["residual"]) - vals("plain", lr["plain"])
        r = t[(t["variant"] == "residual") & (t["metric"] == "test_loss")
              & (t["width"] == width)].iloc[0]
        np.testing.assert_allclose([r["diff_mean"], r["diff_lo"], r["diff_hi"], r["p_ttest"]],
                                   [*t_ci(d), st.ttest_1samp(d, 0).pvalue], rtol=1e-9)
        row = [line for line in sec.splitlines()
               if line.startswith(f"| teacher width={width} depth=2 |")][0]
        assert row.startswith(f"| teacher width={width} depth=2 | {fmt(*t_ci(d), 4)} | ")
        d_at_plain = vals("residual", lr["plain"]) - vals("plain", lr["plain"])
        assert row.endswith(f" | {lr['plain']:g} | {fmt(*t_ci(d_at_plain), 4)} | "
                            f"{row.split(' | ')[-1]}")
    sec = md[md.index("## Paired differences, residual − plain"):md.index("## Where")]
    assert sec.count("| residual win rate | pairs |") == 4
    within = ("the residual network is significantly better in 0 of 2 configurations, "
              "significantly worse in 0, and within noise in the other 2 (Holm over the 2 "
              "tested).")
    assert sec.count(f" |\n\nReading: {within}\nAt the plain network's lr: {within}\n\n") == 4


def check_build2_tau_from_the_config(built2, rows2):
    """tau recorded in config.json (the command line's --tau) is the report's default."""
    md = built2.markdown
    assert "| test_gen_err | steps to train loss ≤ 0.3 |\n" in md
    sel = built2.tables["selected"]
    lines = md.splitlines()
    start = lines.index("## The selected configurations")
    body = [line for line in lines[start:start + 14] if line.startswith("| teacher")]
    cells = []
    for (_, r), line in zip(sel.iterrows(), body):
        part = rows2[(rows2["variant"] == r["variant"]) & (rows2["depth"] == r["depth"])
                     & (rows2["width"] == r["width"]) & (rows2["lr"] == r["lr"])]
        first = part[part["train_loss"] <= 0.3].groupby("seed")["step"].min()
        assert r["frac_reached"] == len(first) / 3
        cells.append(f"{first.mean():.0f} ({len(first) / 3:.0%} reached)" if len(first)
                     else "never")
        assert line.endswith(f" | {cells[-1]} |"), line
    assert "never" in cells and len(set(cells)) > 2


def check_build2_appendix_residual(built2, rows2):
    """The appendix's residual − plain rows: each width and lr at depth 2, against scipy."""
    f = rows2[(rows2["step"] == 40) & (rows2["depth"] == 2)]
    t = built2.tables["paired"]
    t = t[(t["variant"] == "residual") & (t["metric"] == "test_loss")]
    assert len(t) == 4
    for _, r in t.iterrows():
        def vals(v, r=r):
            return f[(f["variant"] == v) & (f["width"] == r["width"])
                     & (f["lr"] == r["lr"])].sort_values("seed")["test_loss"].to_numpy()

        np.testing.assert_allclose([r["diff_mean"], r["diff_lo"], r["diff_hi"]],
                                   t_ci(vals("residual") - vals("plain")), rtol=1e-9)


def check_build2_appendix_headers_and_readings(built2):
    """Each appendix table names its variant's win rate, and its reading names the variant
    and counts no verdict: with 3 pairs the exact two-sided Wilcoxon p is at least 0.25, above
    0.05 (a verdict at a level above 1 would count the intervals that exclude 0)."""
    md = built2.markdown
    app = md[md.index("## Appendix"):md.index("## Figures")]
    parts = app.split("\n### ")[1:]
    assert [p.splitlines()[0] for p in parts] == [
        f"{m}{v}" for v in ("", ", residual − plain")
        for m in ("test_acc", "test_loss", "train_loss", "test_gen_err")]
    for p in parts:
        residual = "residual − plain" in p.splitlines()[0]
        v, who, n = ("residual", "the residual network is", 4) if residual else (
            "shortcut", "the shortcut is", 8)
        assert p.splitlines()[2].endswith(f" | detectable (80% power) | {v} win rate | pairs |")
        assert (p.rstrip("\n") + "\n\n").endswith(
            f" |\n\nReading: {who} significantly better in 0 of {n} configurations, "
            f"significantly worse in 0, and within noise in the other {n} (Holm over the {n} "
            "tested).\n\n"), p[-300:]
    assert st.wilcoxon([1.0, 2.0, 3.0], method="exact").pvalue == 0.25


def check_build2_per_axis_lines(built2):
    md = built2.markdown
    sec = md[md.index("## Where the shortcut helps"):md.index("## The teacher")]
    items = [line[2:line.index(":")] for line in sec.splitlines() if line.startswith("- ")]
    assert items == [f"{a}, {m}{v}" for a in ("width", "depth") for v in ("", ", residual − plain")
                     for m in ("test_acc", "test_loss")]
    assert ("\n\n![paired_vs_width](figures/paired_vs_width.png)\n\n" in sec
            and "\n\n![paired_vs_depth](figures/paired_vs_depth.png)\n\n" in sec
            and sec.endswith("\n\n![heatmap_depth_width](figures/heatmap_depth_width.png)\n\n"))
    assert "- depth, test_loss, residual − plain: the residual network is significantly" in sec

    def within(n, who="the shortcut is"):
        return (f"{who} significantly better in 0 of {n} configurations, significantly worse "
                f"in 0, and within noise in the other {n} (Holm over the {n} tested).")

    # width per data set (1 x 2 widths); depth per width (2 x 2; residual: depth 2 only)
    for axis, n, n_res in (("width", 2, 2), ("depth", 4, 2)):
        for m in ("test_acc", "test_loss"):
            assert f"\n- {axis}, {m}: {within(n)}\n" in sec
            assert (f"\n- {axis}, {m}, residual − plain: "
                    f"{within(n_res, 'the residual network is')}\n") in sec
    lines = sec.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#"):
            assert lines[i + 1] == "", line
    # the figures: each axis against its hue (data set for width, width for the others)
    def legend(name):
        return [[t.get_text() for t in a.get_legend().get_texts()] if a.get_legend() else []
                for a in built2.figures[name].axes]

    def labels(name):
        return [(a.get_xlabel(), a.get_ylabel()) for a in built2.figures[name].axes]

    assert legend("paired_vs_width") == [["dataset teacher (n=3)"]] * 2
    assert legend("paired_vs_depth") == [["width 2 (n=3)", "width 3 (n=3)"]] * 2
    assert [x for x, _ in labels("paired_vs_depth")] == ["depth", "depth"]
    assert labels("heatmap_depth_width")[0] == ("width", "depth")
    assert labels("paired_heatmap")[0] == ("width", "lr")


# --- the tests: one report each ----------------------------------------------------------------


def test_build_report_of_a_finished_sweep(folder, rows):
    """build at its defaults (Hessians included): its steps, tables, figures, text and numbers."""
    told = []
    built = report.build(folder, progress=told.append), told  # hessians: the default
    check_build_names_its_steps_tables_and_figures(built, rows)
    check_build_markdown_sections_in_order(built)
    check_build_opening_word_for_word(built)
    check_build_paired_section_text_word_for_word(built)
    check_build_selected_table_against_scipy(built, rows)
    for metric in ("test_acc", "test_loss", "train_loss"):
        check_build_paired_rows_against_scipy(built, rows, metric)
        check_build_appendix_rows_every_lr_with_holm(built, rows, metric)
    check_hessian_table_against_a_numeric_hessian(built, folder, rows)


def test_build_at_other_confidence_and_tau(tmp_path, rows):
    """build at 90% confidence and tau 0.1, without Hessians, with baselines, of a folder whose
    config.json records no variants (an older one: the grid's default) and a data file."""
    folder = tmp_path / "build_sweep"
    shutil.copytree(SWEEP, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["config"]["grid"]["variants"]
    # a data file's record, as a CSV sweep's config.json holds it (not one of this grid's data
    # sets, so nothing reads the file): the report lists it
    config["config"]["data"].append({
        "name": "points", "path": "/data/points.csv", "sha256": "0123456789abcdef" * 4,
        "target": "label", "n_train": 41, "n_val": 11, "n_test": 23, "d": 5,
        "label_map": {"no": 0, "yes": 1}})
    (folder / "config.json").write_text(json.dumps(config))
    built90 = report.build(folder, hessians=False, confidence=0.9, tau=0.1, baselines=True)
    line = ("\n\n- /data/points.csv: 41 train / 11 validation / 23 test rows, 5 features, labels "
            "mapped {'no': 0, 'yes': 1} (sha256 0123456789ab...)\n")
    md = built90.markdown
    assert md.count("/data/points.csv") == 1 and line in md
    assert md.index("Holm-adjusted p values") < md.index(line) < md.index("## The selected")
    check_build_confidence_and_tau_passed_on(built90, rows)
    check_build_summary_every_lr(built90, rows, 0.9, 0.1)
    check_build_figures_at_the_confidence(built90, rows, 0.9)
    check_build_baselines(built90)


def test_build_sweep_with_residual_runs_that_did_not_train_and_axes(tmp_path, rows2):
    out = tmp_path / "build_sweep2"
    shutil.copytree(SWEEP2, out)
    config = json.loads((out / "config.json").read_text())
    config["config"]["tau"] = 0.3  # as the command line records its --tau
    (out / "config.json").write_text(json.dumps(config))
    built2 = report.build(out, hessians=False)
    check_build2_tau_from_the_config(built2, rows2)
    check_build2_tables_figures_and_headings(built2)
    check_build2_opening_paragraphs_word_for_word(built2)
    check_build2_untrained_marked(built2, rows2)
    check_build2_selected_lrs_by_hand(built2, rows2)
    check_build2_residual_pairs_against_scipy(built2, rows2)
    check_build2_per_axis_lines(built2)
    check_build2_appendix_residual(built2, rows2)
    check_build2_appendix_headers_and_readings(built2)
    check_build2_linear_bound_table(built2, rows2)


def test_hessian_table_of_bce_runs_against_a_numeric_hessian(tmp_path):
    """hessian_table itself on sweep 2's depth-1 runs (the cross-entropy, widths 2 and 3; its
    depth-2 runs would need jax.hessian, which compiles), and of no runs."""

    folder, data, chosen = _selected(tmp_path, SWEEP2)
    chosen = chosen[chosen["depth"] == 1]
    assert isinstance(chosen["variant"].dtype, pd.CategoricalDtype)  # residual unobserved here
    hess = report.hessian_table(folder, data, chosen)
    assert hess.index.equals(pd.RangeIndex(12))
    assert hess[list(report.CENSUS)].dtypes.eq(np.float64).all()
    assert sorted(map(tuple, hess[["variant", "width", "seed"]].astype(str).to_numpy())) == [
        (v, str(w), str(s)) for v in ("plain", "shortcut") for w in (2, 3) for s in range(3)]
    ds = data_lib.make_synthetic("teacher", 0, 60, 30, d=3)
    X, Y = np.asarray(ds.X_train, np.float64), np.asarray(ds.Y_train, np.float64)
    np.testing.assert_array_equal(X, data[0][1].X_train)
    with np.load(folder / "params.npz") as z:
        saved = {k: z[k] for k in z.files}
    for _, r in hess.iterrows():
        sc, h = r["variant"] == "shortcut", int(r["width"])
        group = (f"teacher-s0-n60-d3-noise0-tw4-ts0-{r['variant']}{'-zeros' if sc else ''}-h{h}"
                 "-sgd-bce-bfull/")
        theta = flat_params(saved, r["variant"], r["lr"], r["seed"], group)
        assert len(theta) == r["n_params"] == 3 * h + 2 * h + 1 + 3 * sc
        lam = np.linalg.eigvalsh(fd_hessian(
            lambda t, sc=sc, h=h: loss_np(t, X, Y, 3, h, sc, "bce"), theta))
        tol = 1e-6 * np.abs(lam).max()
        assert r["hess_neg_frac"] == (lam < -tol).sum() / len(lam)
        assert r["hess_zero"] == round(r["hess_zero_frac"] * len(lam))
    assert hess["hess_zero"].sum() > 0  # a near-zero eigenvalue somewhere
    assert report.hessian_table(folder, data, chosen.iloc[:0]).empty


# --- hessian_table's network family: depth 2 (jax.hessian in float64) ------------------------


def net_grad_np(theta, X, Y, h, residual, shortcut, loss_fn, masks=None, act="relu"):
    """(∇J, ReLU patterns) of a depth-2 ReLU (or tanh) network (theta flat in ravel_pytree
    order: W1, W2, b1, b2, Wo, bo, W), by backpropagation written out in NumPy float64; with
    `masks` the patterns 1{z > 0} are held at those given (ReLU'' = 0, ReLU'(0) = 0: jax's
    Hessian)."""
    n, d = X.shape
    sizes = {"W1": h * d, "W2": h * h, "b1": h, "b2": h, "Wo": h, "bo": 1, "W": d * shortcut}
    p = dict(zip(sizes, np.split(theta, np.cumsum(list(sizes.values()))[:-1])))
    W1, W2 = p["W1"].reshape(h, d), p["W2"].reshape(h, h)
    z1 = X @ W1.T + p["b1"]
    m1 = (z1 > 0 if masks is None else masks[0]) if act == "relu" else 1 - np.tanh(z1) ** 2
    a1 = z1 * m1 if act == "relu" else np.tanh(z1)  # m: phi'(z)
    z2 = a1 @ W2.T + p["b2"]
    m2 = (z2 > 0 if masks is None else masks[1]) if act == "relu" else 1 - np.tanh(z2) ** 2
    a2 = (z2 * m2 if act == "relu" else np.tanh(z2)) + (a1 if residual else 0)
    zo = a2 @ p["Wo"] + p["bo"][0] + X @ p["W"] if shortcut else a2 @ p["Wo"] + p["bo"][0]
    y_hat = 1 / (1 + np.exp(-zo))
    g = (y_hat - Y if loss_fn == "bce" else (y_hat - Y) * y_hat * (1 - y_hat)) / n  # dJ/dzo
    da2 = np.outer(g, p["Wo"])
    dz2 = da2 * m2
    dz1 = (dz2 @ W2 + (da2 if residual else 0)) * m1
    grad = {"W1": dz1.T @ X, "W2": dz2.T @ a1, "b1": dz1.sum(0), "b2": dz2.sum(0),
            "Wo": a2.T @ g, "bo": g.sum(keepdims=True), "W": X.T @ g if shortcut else []}
    return np.concatenate([np.ravel(grad[k]) for k in sizes]), (m1, m2)


def net_hessian_np(theta, X, Y, h, residual, shortcut, loss_fn, eps=1e-5, act="relu"):
    """Central differences of net_grad_np with the ReLU patterns held at theta (differences of
    the loss itself cross the kinks: units with z = 0 exactly, e.g. b2 = 0 on rows where every
    first-layer unit is off)."""
    _, masks = net_grad_np(theta, X, Y, h, residual, shortcut, loss_fn, act=act)
    masks = masks if act == "relu" else None
    E = np.eye(len(theta)) * eps
    H = np.stack([net_grad_np(theta + e, X, Y, h, residual, shortcut, loss_fn, masks, act)[0]
                  - net_grad_np(theta - e, X, Y, h, residual, shortcut, loss_fn, masks, act)[0]
                  for e in E]) / (2 * eps)
    return (H + H.T) / 2


def test_hessian_table_of_depth_2_networks_against_a_hand_written_one(tmp_path):
    """hessian_table's network family on sweep 2's depth-2 runs of width 2 (plain, shortcut,
    residual; the cross-entropy; jax.hessian in float64): each run's near-zero and negative
    eigenvalue counts against the Hessian of a hand-written NumPy gradient, and no census."""

    folder, data, chosen = _selected(tmp_path, SWEEP2)
    chosen = chosen[(chosen["depth"] == 2) & (chosen["width"] == 2)]
    hess = report.hessian_table(folder, data, chosen)
    assert sorted(map(tuple, hess[["variant", "depth", "seed"]].astype(str).to_numpy())) == [
        (v, "2", str(s)) for v in ("plain", "residual", "shortcut") for s in range(3)]
    assert hess[list(report.CENSUS)].isna().all().all()  # the census: depth 1, relu only
    ds = data_lib.make_synthetic("teacher", 0, 60, 30, d=3)
    X, Y = np.asarray(ds.X_train, np.float64), np.asarray(ds.Y_train, np.float64)
    with np.load(folder / "params.npz") as z:
        saved = {k: z[k] for k in z.files}
    names = ("W1", "W2", "b1", "b2", "Wo", "bo", "W")
    for _, r in hess.iterrows():
        v = str(r["variant"])
        group = (f"teacher-s0-n60-d3-noise0-tw4-ts0-{v}{'-zeros' if v == 'shortcut' else ''}"
                 "-h2-L2-relu-sgd-bce-bfull/")
        i, = np.flatnonzero((saved[group + "lr"] == r["lr"]) & (saved[group + "seed"] == r["seed"]))
        theta = np.concatenate([saved[group + k][i].astype(np.float64).ravel() for k in names
                                if group + k in saved])
        P = len(theta)
        assert P == r["n_params"] == (3 + 1) * 2 + (2 + 1) * 2 + (2 + 1) + 3 * (v == "shortcut")
        lam = np.linalg.eigvalsh(net_hessian_np(theta, X, Y, 2, v == "residual",
                                                v == "shortcut", "bce"))
        tol = 1e-6 * np.abs(lam).max()
        assert r["hess_zero_frac"] == (np.abs(lam) <= tol).sum() / P, (v, r["seed"])
        assert r["hess_neg_frac"] == (lam < -tol).sum() / P, (v, r["seed"])
        assert r["hess_zero"] == (np.abs(lam) <= tol).sum()
    assert hess["hess_zero"].sum() > 0 and (hess["hess_neg_frac"] > 0).all()


def test_hessian_table_skips_models_over_the_limit(tmp_path, monkeypatch):
    """Models over HESSIAN_MAX_PARAMS parameters are skipped, and only they: at a limit of 14,
    width 2's depth-1 plain (11) and shortcut (14) networks are in, its depth-2 ones (17, 20)
    out, whatever the order the groups come in."""

    folder, data, chosen = _selected(tmp_path, SWEEP2)
    chosen = chosen[chosen["width"] == 2]
    monkeypatch.setattr(report, "HESSIAN_MAX_PARAMS", 14)
    hess = report.hessian_table(folder, data, chosen)
    assert sorted(map(tuple, hess[["variant", "depth", "n_params"]].astype(str).to_numpy())) == (
        [("plain", "1", "11")] * 3 + [("shortcut", "1", "14")] * 3)


# --- readings with verdicts: both sweeps at 25% (level 0.75) ---------------------------------


def verdict_by_hand(entries, metric, conf, who):
    """The reading of (setting, paired differences) entries: a verdict where the t interval
    excludes 0 (with a spread) and the Holm-adjusted Wilcoxon p is below 1 − conf; the three
    largest |mean| of each side named."""
    ms = [(s, *t_ci(d, conf), wilcoxon_p(d), np.std(d) > 0) for s, d in entries]
    holm = multipletests([m[4] for m in ms], method="holm")[1]
    sign = 1 if "acc" in metric else -1
    better, worse = [], []
    for (s, m, lo, hi, _, spread), h in zip(ms, holm):
        if spread and (lo > 0 or hi < 0) and h < 1 - conf:
            (better if sign * m > 0 else worse).append((s, m, lo, hi, h))
    n = len(ms)
    text = (f"{who} significantly better in {len(better)} of {n} configurations, significantly "
            f"worse in {len(worse)}, and within noise in the other {n - len(better) - len(worse)}")
    for name, part in (("better", better), ("worse", worse)):
        if part:
            text += f"; {name} at " + ", ".join(
                f"{s} ({m:+.4f} [{lo:+.4f}, {hi:+.4f}], Holm p {h:.3g})"
                for s, m, lo, hi, h in sorted(part, key=lambda e: -abs(e[1]))[:3])
    return text + f" (Holm over the {n} tested).", len(better) + len(worse)


def pair2(f, variant, w, depth, metric, at_plain=False):
    """Sweep 2's pairs variant − plain of a (width, depth), each at its chosen lr (or both at
    plain's), seeds in order."""
    def lr_of(v):
        m = f[(f["variant"] == v) & (f["width"] == w) & (f["depth"] == depth)].groupby(
            "lr")["val_acc"].mean()
        return m[m == m.max()].index.min()

    def values(v, lr):
        return f[(f["variant"] == v) & (f["width"] == w) & (f["depth"] == depth)
                 & (f["lr"] == lr)].sort_values("seed")[metric].to_numpy()

    lr_p = lr_of("plain")
    return values(variant, lr_p if at_plain else lr_of(variant)) - values("plain", lr_p)


def untrained_by_hand(rows2, conf):
    """Sweep 2's configurations that did not train, by the documented rule: the final
    validation accuracy's t interval reaching down to chance (the validation split's majority
    share), a mean training loss that rose from step 0, a non-finite run, or saturation."""
    ds = data_lib.make_synthetic("teacher", 0, 60, 30, d=3)
    share = np.mean(np.asarray(ds.Y_val) > 0.5)
    chance = max(share, 1 - share)
    out = set()
    for key, g in rows2.groupby(["variant", "width", "depth", "lr"], observed=True):
        end, start = g[g["step"] == 40], g[g["step"] == 0]
        lo = t_ci(end["val_acc"], conf, 0, 1)[1]
        if (lo <= chance or end["train_loss"].mean() > start["train_loss"].mean()
                or not np.isfinite(end[["train_loss", "val_acc"]].to_numpy()).all()
                or end["saturated_frac"].mean() >= 0.99):
            out.add(tuple(map(str, key)))
    return out


def test_build_at_a_low_confidence_readings_name_their_settings(tmp_path, rows, rows2,
                                                                 monkeypatch):
    """At 25% the intervals are short and the level 0.75: the readings reach verdicts and name
    their configurations (sweep 1's appendix by lr; sweep 2's paired sections, the lines per
    axis, pairs averaged over depth for width, and the teacher's), each sentence rebuilt from
    scipy and statsmodels; its figures name the confidence. Sweep 2 is built as without
    scikit-learn: Shamir's section says it was not checked."""
    conf = 0.25
    out = tmp_path / "build_sweep"
    shutil.copytree(SWEEP, out)
    config = json.loads((out / "config.json").read_text())
    del config["config"]["data"]  # an older folder's config.json, without the data records
    (out / "config.json").write_text(json.dumps(config))
    md = report.build(out, hessians=False, confidence=conf).markdown
    app = md[md.index("## Appendix"):]
    found = 0
    for m in ("test_acc", "test_loss", "train_loss"):
        want, n = verdict_by_hand([(f"xor width=4 lr={lr:g}", diffs(rows, m, lr, lr))
                                   for lr in (0.5, 2.0)], m, conf, "the shortcut is")
        assert f"\n### {m}\n" in app and f"\nReading: {want}\n" in app, want
        found += n
    assert found  # a verdict, naming its lr

    out = tmp_path / "build_sweep2"
    shutil.copytree(SWEEP2, out)
    config = json.loads((out / "config.json").read_text())
    grid = config["config"]["grid"]  # the opening's lists, as a grid of two of each records
    grid.update(optimizers=["sgd", "adam"], loss_fns=["bce", "mse"],
                variants=[*grid["variants"], "residual+shortcut"])
    (out / "config.json").write_text(json.dumps(config))
    with monkeypatch.context() as m:  # as without scikit-learn (an optional dependency)
        m.setitem(sys.modules, "sklearn.linear_model", None)
        built2 = report.build(out, hessians=False, confidence=conf)
    md = built2.markdown
    lines = md.splitlines()
    assert " 3 seeds, 40 steps of sgd, adam on the bce, mse loss; varied axes: " in lines[2]
    assert ("\n\nresidual and residual+shortcut at depth 1 left out: a depth-1 network has no "
            "skip between hidden layers (it is the plain network there).\n\n") in md
    assert "linear_bound" not in built2.tables
    bad = untrained_by_hand(rows2, conf)
    assert set(map(tuple, built2.untrained[["variant", "width", "depth", "lr"]].astype(
        str).to_numpy())) == bad
    assert f"\n\n{len(bad)} of 20 configurations did not train: " in md
    assert len(bad) != len(untrained_by_hand(rows2, 0.95))  # the confidence decides here
    assert ("\n\n## Shamir's bound\n\nNot checked: scikit-learn is not installed (the `dev` or "
            "`experiments` extra).\n\n## Appendix") in md
    for name, pct in (("paired_vs_width", "(mean, 25% t interval"),
                      ("paired_vs_depth", "(mean, 25% t interval"),
                      ("heatmap_depth_width", "* = 25% interval"),
                      ("paired_heatmap", "* = 25% interval")):
        fig = built2.figures[name]
        title = (fig._suptitle.get_text() if fig._suptitle else fig.axes[0].get_title())
        assert pct in title.replace("\n", " "), (name, title)
    f = rows2[rows2["step"] == 40]
    found = 0
    for v, who, depths in (("shortcut", "the shortcut is", (1, 2)),
                           ("residual", "the residual network is", (2,))):
        sec = md[md.index(f"## Paired differences, {v} − plain"):]
        for m in ("test_acc", "test_loss", "train_loss", "test_gen_err"):
            part = sec[sec.index(f"### {m}\n"):].splitlines()
            for at_plain, start in ((False, "Reading: "), (True, "At the plain network's lr: ")):
                want, n = verdict_by_hand([(f"teacher width={w} depth={d}",
                                            pair2(f, v, w, d, m, at_plain))
                                           for w in (2, 3) for d in depths], m, conf, who)
                assert [x for x in part if x.startswith(start)][0] == start + want
                found += n
        suffix = "" if v == "shortcut" else f", {v} − plain"
        for m in ("test_acc", "test_loss"):
            want, n = verdict_by_hand(
                [(f"teacher width={w}", np.mean([pair2(f, v, w, d, m) for d in depths], 0))
                 for w in (2, 3)], m, conf, who)
            assert f"- width, {m}{suffix}: {want}" in lines, want
            found += n
            want, n = verdict_by_hand([(f"depth={d} width={w}", pair2(f, v, w, d, m))
                                       for w in (2, 3) for d in depths], m, conf, who)
            assert f"- depth, {m}{suffix}: {want}" in lines, want
            found += n
    want, _ = verdict_by_hand([(f"teacher width={w} depth={d}",
                                pair2(f, "shortcut", w, d, "test_gen_err"))
                               for w in (2, 3) for d in (1, 2)], "test_gen_err", conf,
                              "the shortcut is")
    assert ("## The teacher: generalisation error\n\ntest_gen_err = mean over test inputs of ½ "
            "(ŷ − p_teacher)², the student's distance from the teacher's noiseless output.\n\n"
            f"Reading: {want}\n\n") in md
    assert found > 10



# --- a third sweep: tanh, depth 2 only, one lr ------------------------------------------------
# tests/data/build_sweep3 (172 KB): sj.run_sweep(sj.Grid(datasets=("xor",), d=(3,), variants=(
# "plain", "shortcut", "residual"), depths=(2,), activations=("tanh",), widths=(2, 3), lrs=(0.5,),
# seeds=3, steps=20, eval_every=10, n_train=40, n_test=20), folder). About 0.8 s to build.

SWEEP3 = Path(__file__).parent / "data" / "build_sweep3"



def test_build_of_a_tanh_sweep_at_depth_2_and_one_lr(tmp_path):
    """A residual sweep without depth 1 has no "left out at depth 1" paragraph; one lr gives no
    lr heatmap; hessian_table's tanh networks (jax.hessian) against the hand-written Hessian."""
    from shortcut_jax import results, stats

    folder = tmp_path / "build_sweep3"
    shutil.copytree(SWEEP3, folder)
    built = report.build(folder, hessians=False)
    assert "left out" not in built.markdown
    assert ("\n\nThe paired sections take each variant − plain at each depth and activation "
            "(shortcut − plain first,") in built.markdown
    assert list(built.figures) == ["paired_vs_width", "acc_vs_width", "learning_curves",
                                   "diagnostics"]
    config = json.loads((folder / "config.json").read_text())["config"]
    data = report._datasets(folder, config)
    chosen = stats.best_lr(results.load(folder), "val_acc")
    hess = report.hessian_table(folder, data, chosen[chosen["width"] == 2])
    assert len(hess) == 9 and hess[list(report.CENSUS)].isna().all().all()
    ds = data_lib.make_synthetic("xor", 0, 40, 20, d=3, noise=0.05)
    X, Y = np.asarray(ds.X_train, np.float64), np.asarray(ds.Y_train, np.float64)
    with np.load(folder / "params.npz") as z:
        saved = {k: z[k] for k in z.files}
    for _, r in hess.iterrows():
        v = str(r["variant"])
        group = (f"xor-s0-n40-d3-noise0.05-{v}{'-zeros' if v == 'shortcut' else ''}"
                 "-h2-L2-tanh-sgd-mse-bfull/")
        i, = np.flatnonzero((saved[group + "lr"] == 0.5) & (saved[group + "seed"] == r["seed"]))
        theta = np.concatenate([saved[group + k][i].astype(np.float64).ravel()
                                for k in ("W1", "W2", "b1", "b2", "Wo", "bo", "W")
                                if group + k in saved])
        lam = np.linalg.eigvalsh(net_hessian_np(theta, X, Y, 2, v == "residual",
                                                v == "shortcut", "mse", act="tanh"))
        tol = 1e-6 * np.abs(lam).max()
        assert r["n_params"] == len(lam)
        assert r["hess_zero_frac"] == (np.abs(lam) <= tol).sum() / len(lam), (v, r["seed"])
        assert r["hess_neg_frac"] == (lam < -tol).sum() / len(lam), (v, r["seed"])
    assert (hess["hess_neg_frac"] > 0).any()


# --- baseline_table and png -------------------------------------------------------------------


def test_baseline_table_of_two_data_sets_against_scikit_learn(monkeypatch):
    """baseline_table itself: one row per data set, in data order, each scikit-learn's logistic
    regression (max_iter 2000) fitted on the train split and scored on each split; empty
    without scikit-learn."""
    from sklearn.linear_model import LogisticRegression

    made = [data_lib.make_synthetic("xor", 0, 80, 30, d=3, noise=0.05),
            data_lib.make_synthetic("moons", 1, 60, 40, d=2, noise=0.3)]
    data = [({}, made[0], "first"), ({}, made[1], "second")]
    base = report.baseline_table(data)
    assert base.columns.tolist() == ["data set", "model", "train acc", "val acc", "test acc"]
    assert base[["data set", "model"]].values.tolist() == [
        ["first", "logistic regression"], ["second", "logistic regression"]]
    for k, ds in enumerate(made):
        model = LogisticRegression(max_iter=2000).fit(ds.X_train, ds.Y_train)
        want = [model.score(ds.X_train, ds.Y_train), model.score(ds.X_val, ds.Y_val),
                model.score(ds.X_test, ds.Y_test)]
        assert len({*want}) == 3, want  # the three splits tell apart which one was scored
        np.testing.assert_allclose(base.iloc[k, 2:].to_numpy(np.float64), want, rtol=1e-12)
    monkeypatch.setitem(sys.modules, "sklearn.linear_model", None)  # as if not installed
    empty = report.baseline_table(data)
    assert isinstance(empty, pd.DataFrame) and empty.empty and empty.columns.empty


def test_png_is_a_png_at_100_dpi_whatever_the_settings():
    """png: PNG bytes (the signature and IHDR read by hand) of the figure at 100 dpi, whatever
    matplotlib's savefig format and dpi settings and the figure's own dpi."""
    import struct

    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=72)
    fig.add_subplot().plot([0, 1], [1, 0])
    with matplotlib.rc_context({"savefig.format": "pdf", "savefig.dpi": 50}):
        got = report.png(fig)
    assert got[:8] == b"\x89PNG\r\n\x1a\n" and got[12:16] == b"IHDR"
    assert struct.unpack(">II", got[16:24]) == (300, 200)  # 3 x 2 inches at 100 dpi
    i = got.index(b"pHYs")  # pixels per metre, unit 1 (metre): 100 dpi
    assert struct.unpack(">IIB", got[i + 4:i + 13]) == (3937, 3937, 1)



# --- a fourth sweep: 2-D data, two data sets of one task --------------------------------------
# tests/data/build_sweep4 (161 KB): sj.run_sweep(sj.Grid(datasets=("xor",), d=(2,), data_seeds=(0,
# 1), variants=("plain", "shortcut"), widths=(2, 3), lrs=(0.5,), seeds=2, steps=20, eval_every=10,
# n_train=(40,), n_test=20), folder, progress=False), the `.lock` file removed. About 0.7 s to
# build (its decision boundaries compile a predict).

SWEEP4 = Path(__file__).parent / "data" / "build_sweep4"
NAME4 = "xor-s{}-n40-d2-noise0.05"


def boundaries_by_hand(folder, data_seed, variant, width, seed):
    """The decision boundary's ŷ on plots.decision_boundaries' documented grid (X_train's box
    padded by 10% of its span each side, 200 x 200), from params.npz read with NumPy alone and
    the data made again: sigmoid(W2 relu(W1 x + b1) + b2 + W x), in float64."""
    ds = data_lib.make_synthetic("xor", data_seed, 40, 20, d=2, noise=0.05)
    X = np.asarray(ds.X_train, np.float64)
    lo, hi = X.min(0), X.max(0)
    lo, hi = lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    G = np.stack([gx.ravel(), gy.ravel()], 1)
    group = (f"{NAME4.format(data_seed)}-{variant}{'-zeros' if variant == 'shortcut' else ''}"
             f"-h{width}-sgd-mse-bfull/")
    with np.load(folder / "params.npz") as z:
        i, = np.flatnonzero((z[group + "lr"] == 0.5) & (z[group + "seed"] == seed))
        p = {k: z[group + k][i].astype(np.float64) for k in ("W1", "b1", "W2", "b2", "W")
             if group + k in z.files}
    z2 = np.maximum(G @ p["W1"].T + p["b1"], 0) @ p["W2"][0] + p["b2"]
    if "W" in p:
        z2 = z2 + G @ p["W"][0]
    return X, np.asarray(ds.Y_train), (1 / (1 + np.exp(-z2))).reshape(gx.shape)


def check_boundaries(figure, folder, data_seed, drawn):
    """One panel per variant (plain, shortcut; the smallest width and seed), each with its title,
    the training points by label, and ŷ (`drawn`: what contourf was given) by hand."""
    from matplotlib.collections import PathCollection

    panels = [a for a in figure.axes if a.get_title()]
    assert [a.get_title().replace("\n", " ") for a in panels] == [
        "plain, h=2, lr=0.5, seed 0", "shortcut, h=2, lr=0.5, seed 0"]
    assert len(drawn) == 2
    for ax, variant, prob in zip(panels, ("plain", "shortcut"), drawn):
        X, Y, want = boundaries_by_hand(folder, data_seed, variant, 2, 0)
        np.testing.assert_allclose(prob, want, rtol=1e-5, atol=1e-6, err_msg=variant)
        points = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
        assert len(points) == 2
        for got, label in zip(points, (0, 1)):
            np.testing.assert_array_equal(got, X[Y == label])


def contourf_spy(monkeypatch):
    """The ŷ arrays handed to matplotlib's contourf, recorded in call order."""
    from matplotlib.axes import Axes

    drawn, contourf = [], Axes.contourf

    def spy(self, *args, **kwargs):
        drawn.append(np.asarray(args[2], np.float64))
        return contourf(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "contourf", spy)
    return drawn


def test_boundaries_of_2d_data_against_numpy(tmp_path, monkeypatch):
    """boundaries itself on sweep 4: the first data set of the task drawn (its second, the
    same task, not), plain and shortcut of the smallest width and seed at the chosen lr, ŷ on
    the grid against NumPy; rows of other networks (depth 2, tanh, as a sweep with those axes
    has) left out."""
    folder, data, chosen = _selected(tmp_path, SWEEP4)
    drawn = contourf_spy(monkeypatch)
    extra = chosen[(chosen["data_seed"] == 0) & (chosen["width"] == 2) & (chosen["seed"] == 0)]
    deep = extra.assign(depth=2)
    tanh = extra.assign(activation=pd.Categorical(["tanh"] * len(extra),
                                                  categories=["relu", "tanh"]))
    both = pd.concat([deep, chosen.astype({"activation": tanh["activation"].dtype}), tanh],
                     ignore_index=True)
    out = report.boundaries(folder, data, both)
    assert list(out) == [f"boundaries_{NAME4.format(0)}"]
    check_boundaries(out[f"boundaries_{NAME4.format(0)}"], folder, 0, drawn)


def test_boundaries_skip_data_sets_without_runs_or_not_2d(tmp_path, monkeypatch):
    """A data set without chosen runs, or one whose inputs are not 2-D (a 3-D data set put in
    the first entry's place), is skipped, and the next one of the task is drawn."""
    folder, data, chosen = _selected(tmp_path, SWEEP4)
    drawn = contourf_spy(monkeypatch)
    out = report.boundaries(folder, data, chosen[chosen["data_seed"] == 1])
    assert list(out) == [f"boundaries_{NAME4.format(1)}"]
    check_boundaries(out[f"boundaries_{NAME4.format(1)}"], folder, 1, drawn)
    drawn.clear()
    three_d = data_lib.make_synthetic("xor", 0, 40, 20, d=3, noise=0.05)
    out = report.boundaries(folder, [(data[0][0], three_d, "three"), data[1]], chosen)
    assert list(out) == [f"boundaries_{NAME4.format(1)}"]
    check_boundaries(out[f"boundaries_{NAME4.format(1)}"], folder, 1, drawn)


def test_build_of_a_2d_sweep_draws_its_boundaries(tmp_path, monkeypatch):
    """build of sweep 4: the boundaries of its first data set among the figures, listed last."""
    folder = tmp_path / "build_sweep4"
    shutil.copytree(SWEEP4, folder)
    drawn = contourf_spy(monkeypatch)
    built = report.build(folder, hessians=False)
    name = f"boundaries_{NAME4.format(0)}"
    assert list(built.figures) == ["paired_vs_width", "acc_vs_width", "learning_curves",
                                   "diagnostics", name]
    assert built.markdown.endswith(
        "## Figures\n\n![acc_vs_width](figures/acc_vs_width.png)\n"
        "![learning_curves](figures/learning_curves.png)\n"
        f"![diagnostics](figures/diagnostics.png)\n![{name}](figures/{name}.png)\n")
    check_boundaries(built.figures[name], folder, 0, drawn[-2:])


# --- a folder without shortcut runs -----------------------------------------------------------


def test_build_refuses_a_folder_without_shortcut_runs(tmp_path):
    """A copy of sweep 1 whose table lists its plain chunk only (the shortcut chunk removed,
    manifest.json's checksums made again with hashlib): build names what it needs."""
    import hashlib

    folder = tmp_path / "build_sweep"
    shutil.copytree(SWEEP, folder)
    table = json.loads((folder / "table.json").read_text())
    table["files"] = [p for p in table["files"] if "-plain-" in p]
    table["rows"] = 32
    (folder / "table.json").write_text(json.dumps(table))
    manifest = {k: v for k, v in json.loads((folder / "manifest.json").read_text()).items()
                if "-shortcut-" not in k}
    manifest["table.json"] = hashlib.sha256((folder / "table.json").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for p in folder.glob("chunks/*-shortcut-*"):
        p.unlink()
    with pytest.raises(ValueError) as e:
        report.build(folder, hessians=False)
    assert str(e.value) == (
        "folder: the report compares each variant with plain, the problem's shortcut first: "
        f"expected plain and shortcut runs in {folder}, got variants ['plain']")


def test_build_refuses_a_folder_whose_data_file_changed(tmp_path):
    """A copy of sweep 1 whose config.json records a CSV grid and its file's SHA-256 (a CSV
    sweep's): with the file changed since (a SHA-256 that is not hashlib's of it), build names
    the file and the folder."""
    import hashlib

    folder = tmp_path / "build_sweep"
    shutil.copytree(SWEEP, folder)
    csv = tmp_path / "points.csv"
    X = np.random.default_rng(0).normal(size=(40, 2))
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": (X[:, 0] > 0).astype(int)}).to_csv(
        csv, index=False)
    held = hashlib.sha256(b"the file as it was").hexdigest()
    config = json.loads((folder / "config.json").read_text())
    grid = config["config"]["grid"]
    grid.update(csv=str(csv), target="y", n_train=None, d=None, noise=None)
    config["config"]["data"] = [{"name": "points", "path": str(csv), "sha256": held}]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as e:
        report.build(folder, hessians=False)
    now = hashlib.sha256(csv.read_bytes()).hexdigest()
    assert str(e.value) == (
        f"data: {csv} changed since the sweep in {folder} began (sha256 {held[:12]}..., now "
        f"{now[:12]}...); restore the file or use another --out folder")


# --- a fifth sweep: two optimizers and two loss functions, one width --------------------------
# tests/data/build_sweep5 (161 KB): sj.run_sweep(sj.Grid(datasets=("xor",), d=(3,), variants=(
# "plain", "shortcut"), widths=(2,), optimizers=("sgd", "adam"), loss_fns=("mse", "bce"), lrs=(
# 0.5,), seeds=2, steps=20, eval_every=10, n_train=(40,), n_test=20), folder, progress=False),
# the `.lock` file removed. About 0.8 s to build.

SWEEP5 = Path(__file__).parent / "data" / "build_sweep5"


def test_build_of_a_sweep_varying_optimizer_and_loss(tmp_path):
    """Two varied axes, neither of them width: the opening names both optimizers and loss
    functions, and the pair's heatmap has optimizer across and loss_fn up, each cell the mean
    over seeds of shortcut − plain final test_acc, read from the chunks with pyarrow."""
    folder = tmp_path / "build_sweep5"
    shutil.copytree(SWEEP5, folder)
    built = report.build(folder, hessians=False)
    assert built.markdown.splitlines()[2].startswith(
        "Sweep build_sweep5: datasets ['xor'], widths [2], learning rates [0.5], 2 seeds, 20 "
        "steps of sgd, adam on the mse, bce loss; varied axes: optimizer, loss_fn. ")
    assert list(built.figures) == ["paired_vs_optimizer", "paired_vs_loss_fn",
                                   "heatmap_loss_fn_optimizer", "acc_vs_width",
                                   "learning_curves", "diagnostics"]
    ax = built.figures["heatmap_loss_fn_optimizer"].axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("optimizer", "loss_fn")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["adam", "sgd"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["bce", "mse"]
    df = pd.concat([pq.read_table(p).to_pandas() for p in sorted(SWEEP5.glob("chunks/*.parquet"))],
                   ignore_index=True)
    f = df[df["step"] == 20].astype({"variant": str, "optimizer": str, "loss_fn": str})
    acc = f.set_index(["loss_fn", "optimizer", "seed", "variant"])["test_acc"].astype(np.float64)
    want = np.array([[np.mean([acc[(loss, opt, s, "shortcut")] - acc[(loss, opt, s, "plain")]
                               for s in (0, 1)]) for opt in ("adam", "sgd")]
                     for loss in ("bce", "mse")])
    np.testing.assert_allclose(ax.images[0].get_array(), want, rtol=1e-6)


# --- a sixth sweep: the teacher's reading with a verdict -------------------------------------
# tests/data/build_sweep6 (58 KB): sj.run_sweep(sj.Grid(datasets=("teacher",), d=(3,),
# teacher_shortcut=(3.0,), variants=("plain", "shortcut"), widths=(2,), loss_fns=("bce",), lrs=(
# 0.5,), seeds=6, steps=200, eval_every=100, n_train=(60,), n_test=30), folder, progress=False),
# the `.lock` file removed: the shortcut's test_gen_err lower in all 6 pairs.

SWEEP6 = Path(__file__).parent / "data" / "build_sweep6"


def test_build_of_a_teacher_sweep_reads_a_verdict(tmp_path):
    """The teacher's reading at 95% names its configuration (exact Wilcoxon p 2/64, below 0.05);
    at 97% it has none: the 97% t interval excludes 0 but the Wilcoxon p is above 0.03 (the
    level is 1 − confidence, not 0.05). Each sentence rebuilt from scipy."""
    folder = tmp_path / "build_sweep6"
    shutil.copytree(SWEEP6, folder)
    df = pd.concat([pq.read_table(p).to_pandas() for p in sorted(SWEEP6.glob("chunks/*.parquet"))],
                   ignore_index=True)
    f = df[df["step"] == 200].astype({"variant": str})
    d = np.diff([f[f["variant"] == v].sort_values("seed")["test_gen_err"].to_numpy(np.float64)
                 for v in ("plain", "shortcut")], axis=0)[0]
    assert (d < 0).all() and wilcoxon_p(d) == pytest.approx(2 / 64)
    lo, hi = t_ci(d, 0.97)[1:]
    assert hi < 0  # at level 0.05 the 97% reading would be a verdict
    for conf, n in ((0.95, 1), (0.97, 0)):
        md = report.build(folder, hessians=False, confidence=conf).markdown
        want, found = verdict_by_hand([("teacher width=2", d)], "test_gen_err", conf,
                                      "the shortcut is")
        assert found == n
        assert ("(ŷ − p_teacher)², the student's distance from the teacher's noiseless output."
                f"\n\nReading: {want}\n\n") in md, conf

"""The report's verdict sentences, word for word, from hand-made paired tables whose counts differ
in each direction (so that swapping better/worse or fewer/more fails), and the learning rate
chosen per variant where the two variants prefer different ones."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from shortcut_jax import report, stats
from tests.tables import runs, table

T2 = scipy.stats.t.ppf(0.975, 2)  # three seeds


def ci(diffs) -> str:
    """The textbook 95% t interval of three differences, as the report writes it."""
    d = np.asarray(diffs, float)
    m, half = d.mean(), T2 * d.std(ddof=1) / np.sqrt(d.size)
    return f"({m:+.4f} [{m - half:+.4f}, {m + half:+.4f}])"


def by_width(metric: str, diffs: dict[int, list[float]], base: float = 0.5) -> pd.DataFrame:
    """Final values per width: plain `base`, shortcut `base + diff` for seeds 0, 1, 2."""
    return pd.concat([runs({**{("plain", s): {metric: base} for s in range(3)},
                            **{("shortcut", s): {metric: base + d} for s, d in enumerate(ds)}},
                           width=w) for w, ds in diffs.items()], ignore_index=True)


# two configurations where the shortcut gains, one where it loses, one within noise
ACC = {2: [0.10, 0.12, 0.11], 4: [0.05, 0.06, 0.04], 8: [-0.20, -0.21, -0.19],
       16: [0.10, -0.10, 0.00]}


def test_the_verdict_sentence_for_an_accuracy_word_for_word():
    table = stats.paired(by_width("test_acc", ACC), "test_acc", by=["width"])
    assert report.verdict(table, "test_acc", ["width"]) == (
        "the shortcut is significantly better in 2 of 4 configurations, significantly worse in "
        "1, and within noise in the other 1; better at width=2 " + ci(ACC[2]) + ", width=4 "
        + ci(ACC[4]) + "; worse at width=8 " + ci(ACC[8]) + ".")


def test_the_verdict_sentence_for_a_loss_turns_the_sign_around():
    """A lower loss is better: the negative differences are the gains."""
    loss = {2: [-0.10, -0.12, -0.11], 4: [0.30, 0.31, 0.29], 8: [0.05, 0.06, 0.04],
            16: [0.10, -0.10, 0.00]}
    table = stats.paired(by_width("test_loss", loss), "test_loss", by=["width"])
    assert report.verdict(table, "test_loss", ["width"]) == (
        "the shortcut is significantly better in 1 of 4 configurations, significantly worse in "
        "2, and within noise in the other 1; better at width=2 " + ci(loss[2]) + "; worse at "
        "width=4 " + ci(loss[4]) + ", width=8 " + ci(loss[8]) + ".")


def test_the_verdict_lists_at_most_three_settings_by_size():
    gains = {w: [g, g + 0.01, g - 0.01] for w, g in ((2, 0.1), (4, 0.3), (8, 0.2), (16, 0.05))}
    table = stats.paired(by_width("test_acc", gains), "test_acc", by=["width"])
    assert report.verdict(table, "test_acc", ["width"]) == (
        "the shortcut is significantly better in 4 of 4 configurations, significantly worse in "
        "0, and within noise in the other 0; better at width=4 " + ci(gains[4]) + ", width=8 "
        + ci(gains[8]) + ", width=2 " + ci(gains[2]) + ".")


def hessian_runs(zero: dict[int, list[float]], neg: dict[int, list[float]]) -> pd.DataFrame:
    """The hessian_table format: plain at 0.5 and shortcut at 0.5 + diff, per width and seed."""
    rows = []
    for w in zero:
        for s in range(3):
            rows.append(dict(variant="plain", width=w, seed=s, step=20, n_params=9,
                             hess_zero_frac=0.5, hess_neg_frac=0.5))
            rows.append(dict(variant="shortcut", shortcut_init="zeros", width=w, seed=s, step=20,
                             lr=1.0,  # each variant at its own chosen lr
                             n_params=11, hess_zero_frac=0.5 + zero[w][s],
                             hess_neg_frac=0.5 + neg[w][s]))
    return table(rows)


def test_the_hessian_sentences_word_for_word():
    """near-zero: fewer in 2 (widths 2, 4), more in 1 (8), none in 1 (16); negative: fewer in
    1 (8), more in 3 (2, 4, 16)."""
    zero = {2: [-0.10, -0.12, -0.11], 4: [-0.05, -0.06, -0.04], 8: [0.20, 0.21, 0.19],
            16: [0.10, -0.10, 0.00]}
    neg = {2: [0.10, 0.12, 0.11], 4: [0.05, 0.06, 0.04], 8: [-0.20, -0.21, -0.19],
           16: [0.10, 0.12, 0.11]}
    text = "\n".join(report._hessian_section(hessian_runs(zero, neg), ["width"], 0.95))
    assert ("Reading: the shortcut network has significantly fewer near-zero eigenvalues in 2 of "
            "4 configurations, significantly more in 1, and no significant difference in 1."
            ) in text
    assert ("Reading: the shortcut network has significantly fewer negative eigenvalues in 1 of "
            "4 configurations, significantly more in 3, and no significant difference in 0."
            ) in text


def test_best_lr_is_chosen_per_variant_where_the_variants_prefer_different_ones():
    """Plain does best at lr 0.3, shortcut at 1.0 (on validation; test says the opposite)."""
    val = {("plain", 0.3): 0.9, ("plain", 1.0): 0.7, ("shortcut", 0.3): 0.6,
           ("shortcut", 1.0): 0.95}
    df = pd.concat([runs({(v, s): {"val_acc": val[(v, lr)] + 0.01 * s,
                                   "test_acc": 1.5 - val[(v, lr)]} for v in ("plain", "shortcut")
                          for s in range(3)}, lr=lr) for lr in (0.3, 1.0)], ignore_index=True)
    chosen = stats.best_lr(df, "val_acc")
    assert len(chosen) == 6
    assert dict(chosen.groupby("variant", observed=True)["lr"].unique().map(list)) == {
        "plain": [0.3], "shortcut": [1.0]}
    # the pairs: each variant at its own lr, seed by seed
    (row,) = stats.paired_selected(df, "val_acc", ["width"]).to_dict("records")
    assert row["n_pairs"] == 3 and row["diff_mean"] == pytest.approx(0.95 - 0.9)
    (row,) = stats.paired_selected(df, "test_acc", ["width"]).to_dict("records")
    assert (row["mean_plain"], row["mean_shortcut"]) == pytest.approx((1.5 - 0.9, 1.5 - 0.95))


def test_a_setting_names_the_dataset_and_each_axis_with_a_value():
    row = pd.Series({"dataset": "xor", "width": 4, "noise": 0.05, "lr": np.nan,
                     "shortcut_init": None, "optimizer": "adam"})
    assert report._setting(row, ["dataset", "width", "noise", "lr", "shortcut_init",
                                 "optimizer", "missing"]) == "xor width=4 noise=0.05 optimizer=adam"
    assert report._setting(pd.Series({"width": 2, "teacher_shortcut": 0.5}),
                           ["teacher_shortcut", "width"]) == "teacher_shortcut=0.5 width=2"


def test_the_hessian_section_word_for_word_apart_from_its_numbers():
    zero = {2: [-0.10, -0.12, -0.11], 4: [0.20, 0.21, 0.19]}
    neg = {2: [0.10, 0.12, 0.11], 4: [-0.20, -0.21, -0.19]}
    hess = hessian_runs(zero, neg)
    s = report._hessian_section(hess, ["width"], 0.9)
    assert s[:4] == [
        "## Why: singularities of the loss surface at the end of training", "",
        "Exact Hessian of J at the final parameters of the chosen runs (float64): the fraction "
        "of eigenvalues near zero (|λ| ≤ 1e-6 max|λ|) and negative (λ < −1e-6 max|λ|). Models "
        f"over {report.HESSIAN_MAX_PARAMS} parameters are skipped.", ""]
    table = s[4].splitlines()
    assert table[:2] == ["| setting | variant | near-zero fraction [90% CI] | negative fraction "
                         "[90% CI] |", "|---|---|---|---|"]

    def cell(values):
        v = np.asarray(values)
        half = scipy.stats.t.ppf(0.95, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
        return stats.format_ci(v.mean(), max(v.mean() - half, 0.0), min(v.mean() + half, 1.0))

    want = [f"| xor width={w} | plain | {cell([0.5] * 3)} | {cell([0.5] * 3)} |" for w in (2, 4)]
    want += [f"| xor width={w} | shortcut | {cell(0.5 + np.array(zero[w]))} | "
             f"{cell(0.5 + np.array(neg[w]))} |" for w in (2, 4)]
    assert table[2:] == want
    assert s[5:8] == ["", "### near-zero eigenvalues, shortcut − plain (same seed)", ""]
    assert s[8].splitlines()[0] == ("| setting | difference [CI] | p (t test) | p (Wilcoxon) | "
                                    "shortcut win rate | pairs |")
    # per width: the 90% interval of the differences, the win rate (fewer is a win), 3 pairs
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in s[8].splitlines()[2:]]
    for row, w, win in zip(rows, (2, 4), ("1.00", "0.00")):
        d = np.asarray(zero[w])
        half = scipy.stats.t.ppf(0.95, 2) * d.std(ddof=1) / np.sqrt(3)
        assert row[0] == f"xor width={w}" and row[4:] == [win, "3"]
        assert row[1] == stats.format_ci(d.mean(), d.mean() - half, d.mean() + half, 4)
    assert s[9:12] == ["", "Reading: the shortcut network has significantly fewer near-zero "
                       "eigenvalues in 1 of 2 configurations, significantly more in 1, and no "
                       "significant difference in 0.", ""]
    assert s[12] == "### negative eigenvalues, shortcut − plain (same seed)"
    assert s[-2:] == [
        "Orhan & Pitkow (2018) report that skip connections remove the degenerate (near-zero) "
        "directions that dead and overlapping units create in deep networks; the paired "
        "intervals above say where that holds for this two-layer network.", ""]
    assert len(s) == 20

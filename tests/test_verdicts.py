"""The report's verdict sentences, word for word, from hand-made paired tables whose counts differ
in each direction (so that swapping better/worse or fewer/more fails), and the learning rate
chosen per variant where the two variants prefer different ones.

A verdict needs the t interval to exclude 0 and the Holm-adjusted Wilcoxon p below the level
(stats.VERDICT_RULE): the exact two-sided signed-rank p of n pairs of one sign is 2 / 2^n, so
the tables have 8 seeds (2/256), and some a 6-pair configuration (2/64 = 0.031 raw) that only
the Holm adjustment keeps from a verdict. The expected p values come from scipy.stats.wilcoxon
on each configuration alone and Holm's step-down procedure written out by hand (tests.tables.holm)."""

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.stats

from shortcut_jax import report, stats
from tests.tables import holm, runs, table

SEEDS = 8


def wilcoxon_p(d) -> float:
    """scipy's signed-rank p of one configuration: exact without ties or zeros, else the normal
    approximation; NaN with fewer than 2 differences or all 0."""
    d = np.asarray(d, float)
    if d.size < 2 or not d.any():
        return np.nan
    tied = len(set(np.abs(d))) < d.size or (d == 0).any()
    return float(scipy.stats.wilcoxon(d, method="approx" if tied else "exact").pvalue)


def diffs_of(values: dict, base: float = 0.5) -> dict:
    """The differences as the table holds them: (base + d) - base in float64."""
    return {k: (base + np.asarray(v, float)) - base for k, v in values.items()}


def holm_of(values: dict, base: float = 0.5) -> dict:
    """Per key, the Holm-adjusted Wilcoxon p over all keys (the family)."""
    keys = list(values)
    adj = holm([wilcoxon_p(d) for d in diffs_of(values, base).values()])
    return dict(zip(keys, adj))


def n_tested(values: dict) -> int:
    return int(np.isfinite([wilcoxon_p(d) for d in diffs_of(values).values()]).sum())


def ci(diffs, p_holm: float) -> str:
    """The textbook 95% t interval of the differences and the Holm p, as the report writes
    them."""
    d = np.asarray(diffs, float)
    half = scipy.stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    m = d.mean()
    return f"({m:+.4f} [{m - half:+.4f}, {m + half:+.4f}], Holm p {p_holm:.3g})"


def by_width(metric: str, diffs: dict[int, list[float]], base: float = 0.5) -> pd.DataFrame:
    """Final values per width: plain `base`, shortcut `base + diff` for seeds 0, 1, ..."""
    return pd.concat([runs({**{("plain", s): {metric: base} for s in range(len(ds))},
                            **{("shortcut", s): {metric: base + d} for s, d in enumerate(ds)}},
                           width=w) for w, ds in diffs.items()], ignore_index=True)


# distinct offsets, so that |d| has no ties and the Wilcoxon p is exact
JITTER = np.array([0.0, 0.01, -0.01, 0.02, -0.02, 0.005, -0.005, 0.015])
NOISE = [0.10, -0.11, 0.02, -0.03, 0.05, -0.06, 0.07, -0.04]  # both signs: p far above 0.05


def around(g: float, n: int = SEEDS) -> list[float]:
    return list(g + JITTER[:n] * abs(g))


# two configurations where the shortcut gains, one where it loses, one within noise, and one
# that gains in all of its 6 pairs (raw p 2/64 < 0.05) but not after Holm's adjustment, and
# one equal in every pair (no test: not in Holm's family)
ACC = {2: around(0.11), 4: around(0.05), 8: around(-0.20), 16: NOISE, 32: around(0.3, 6),
       64: [0.0] * SEEDS}


def test_the_holm_helper_by_hand():
    """The test's own Holm on numbers worked out on paper."""
    got = holm([0.01, np.nan, 0.04, 0.03, 0.5])
    assert got[1] != got[1]
    assert got[[0, 2, 3, 4]] == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_the_verdict_sentence_for_an_accuracy_word_for_word():
    table = stats.paired(by_width("test_acc", ACC), "test_acc", by=["width"])
    p = holm_of(ACC)
    assert p[32] >= 0.05 > wilcoxon_p(diffs_of(ACC)[32])  # Holm holds its verdict back
    assert report.verdict(table, "test_acc", ["width"]) == (
        "the shortcut is significantly better in 2 of 6 configurations, significantly worse in "
        "1, and within noise in the other 3; better at width=2 " + ci(ACC[2], p[2]) + ", width=4 "
        + ci(ACC[4], p[4]) + "; worse at width=8 " + ci(ACC[8], p[8])
        + " (Holm over the 5 tested).")
    assert n_tested(ACC) == 5


def test_the_verdict_sentence_for_a_loss_turns_the_sign_around():
    """A lower loss is better: the negative differences are the gains."""
    loss = {2: around(-0.11), 4: around(0.30), 8: around(0.05), 16: NOISE,
            32: around(-0.3, 6)}
    table = stats.paired(by_width("test_loss", loss), "test_loss", by=["width"])
    p = holm_of(loss)
    assert p[32] >= 0.05
    assert report.verdict(table, "test_loss", ["width"]) == (
        "the shortcut is significantly better in 1 of 5 configurations, significantly worse in "
        "2, and within noise in the other 2; better at width=2 " + ci(loss[2], p[2])
        + "; worse at width=4 " + ci(loss[4], p[4]) + ", width=8 " + ci(loss[8], p[8])
        + f" (Holm over the {n_tested(loss)} tested).")


def test_the_verdict_lists_at_most_three_settings_by_size():
    gains = {w: around(g) for w, g in ((2, 0.1), (4, 0.3), (8, 0.2), (16, 0.05))}
    table = stats.paired(by_width("test_acc", gains), "test_acc", by=["width"])
    p = holm_of(gains)
    assert report.verdict(table, "test_acc", ["width"]) == (
        "the shortcut is significantly better in 4 of 4 configurations, significantly worse in "
        "0, and within noise in the other 0; better at width=4 " + ci(gains[4], p[4])
        + ", width=8 " + ci(gains[8], p[8]) + ", width=2 " + ci(gains[2], p[2])
        + " (Holm over the 4 tested).")


def hessian_runs(zero: dict[int, list[float]], neg: dict[int, list[float]]) -> pd.DataFrame:
    """The hessian_table format: plain at 0.5 and shortcut at 0.5 + diff, per width and seed,
    with the near-zero count and a census (report.CENSUS) that finds nothing."""
    rows = []
    census = {c: 0.0 for c in report.CENSUS}
    for w in zero:
        for s in range(len(zero[w])):
            rows.append(dict(variant="plain", width=w, seed=s, step=20, n_params=9,
                             hess_zero_frac=0.5, hess_neg_frac=0.5, hess_zero=round(0.5 * 9),
                             **census))
            rows.append(dict(variant="shortcut", shortcut_init="zeros", width=w, seed=s, step=20,
                             lr=1.0,  # each variant at its own chosen lr
                             n_params=11, hess_zero_frac=0.5 + zero[w][s],
                             hess_neg_frac=0.5 + neg[w][s],
                             hess_zero=round((0.5 + zero[w][s]) * 11), **census))
    return table(rows)


def test_the_hessian_sentences_word_for_word():
    """near-zero: fewer in 2 (widths 2, 4), more in 1 (8), none in 2 (16, and 32: 6 pairs of
    one sign, raw p 2/64 but not after Holm; 64, equal in every pair, untested); negative:
    fewer in 1 (8), more in 3 (2, 4, 16), none in 2 (32, noise; 64, untested)."""
    zero = {2: around(-0.11), 4: around(-0.05), 8: around(0.20), 16: NOISE, 32: around(-0.2, 6),
            64: [0.0] * SEEDS}
    neg = {2: around(0.11), 4: around(0.05), 8: around(-0.20), 16: around(0.11), 32: NOISE[:6],
           64: [0.0] * SEEDS}
    assert holm_of(zero)[32] >= 0.05 > wilcoxon_p(diffs_of(zero)[32])
    text = "\n".join(report._hessian_section(hessian_runs(zero, neg), ["width"], 0.95))
    assert ("Reading: the shortcut network has significantly fewer near-zero eigenvalues in 2 of "
            "6 configurations, significantly more in 1, and no significant difference in 3 "
            "(Holm over the 5 tested).") in text
    assert ("Reading: the shortcut network has significantly fewer negative eigenvalues in 1 of "
            "6 configurations, significantly more in 3, and no significant difference in 2 "
            "(Holm over the 5 tested).") in text
    assert n_tested(zero) == n_tested(neg) == 5


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


def detectable(d, level: float, power: float = 0.8) -> float:
    """The smallest |mean| a two-sided one-sample t test at `level` detects with `power`, by
    hand: the noncentral t's power solved for Cohen's d (scipy.stats.nct, brentq), times sd."""
    d = np.asarray(d, float)
    n = d.size
    crit = scipy.stats.t.ppf(1 - level / 2, n - 1)

    def short(es):
        nc = es * np.sqrt(n)
        return (scipy.stats.nct.sf(crit, n - 1, nc) + scipy.stats.nct.cdf(-crit, n - 1, nc)
                - power)

    return scipy.optimize.brentq(short, 1e-9, 50.0, xtol=1e-14) * d.std(ddof=1)


def test_the_hessian_section_word_for_word_apart_from_its_numbers():
    zero = {2: around(-0.11), 4: around(0.20)}
    neg = {2: around(0.11), 4: around(-0.20)}
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

    want = [f"| xor width={w} | plain | {cell([0.5] * SEEDS)} | {cell([0.5] * SEEDS)} |"
            for w in (2, 4)]
    want += [f"| xor width={w} | shortcut | {cell(0.5 + np.array(zero[w]))} | "
             f"{cell(0.5 + np.array(neg[w]))} |" for w in (2, 4)]
    assert table[2:] == want
    assert s[5:8] == ["", "### near-zero eigenvalues, shortcut − plain (same seed)", ""]
    assert s[8].splitlines()[0] == ("| setting | difference [CI] | p (t test) | p (Wilcoxon) | "
                                    "Holm p (t) | Holm p (Wilcoxon) | detectable (80% power) | "
                                    "shortcut win rate | pairs |")
    # per width: the 90% interval of the differences, scipy's p values and Holm's over the two
    # widths, the smallest difference detectable at 0.1 / 2, the win rate (fewer is a win), pairs
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in s[8].splitlines()[2:]]
    d = diffs_of(zero)
    p_t = [scipy.stats.ttest_1samp(d[w], 0.0).pvalue for w in (2, 4)]
    p_w = [wilcoxon_p(d[w]) for w in (2, 4)]
    assert len(rows) == 2
    for row, w, win, pt, pw, ht, hw in zip(rows, (2, 4), ("1.00", "0.00"), p_t, p_w, holm(p_t),
                                           holm(p_w)):
        half = scipy.stats.t.ppf(0.95, SEEDS - 1) * d[w].std(ddof=1) / np.sqrt(SEEDS)
        assert row[0] == f"xor width={w}" and row[7:] == [win, str(SEEDS)]
        assert row[1] == stats.format_ci(d[w].mean(), d[w].mean() - half, d[w].mean() + half, 4)
        assert row[2:6] == [f"{pt:.3g}", f"{pw:.3g}", f"{ht:.3g}", f"{hw:.3g}"]
        assert row[6] == f"{detectable(d[w], 0.1 / 2):.4f}"
    assert s[9:12] == ["", "Reading: the shortcut network has significantly fewer near-zero "
                       "eigenvalues in 1 of 2 configurations, significantly more in 1, and no "
                       "significant difference in 0 (Holm over the 2 tested).", ""]
    assert s[12] == "### negative eigenvalues, shortcut − plain (same seed)"
    assert s[16] == ("Reading: the shortcut network has significantly fewer negative eigenvalues "
                     "in 1 of 2 configurations, significantly more in 1, and no significant "
                     "difference in 0 (Holm over the 2 tested).")
    # then the census section (only its heading and length checked here; the counts:
    # tests/test_census.py), then the closing note
    assert s[18] == "### Where the near-zero directions come from: a census of the units"
    assert s[-2:] == [
        "Orhan & Pitkow (2018) report that skip connections remove the degenerate (near-zero) "
        "directions that dead and overlapping units create in deep networks; the paired "
        "intervals above say where that holds for this two-layer network.", ""]
    assert len(s) == 30

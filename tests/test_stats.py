"""Statistics of a results table against hand-computed numbers and scipy's own tests."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from shortcut_jax import stats
from tests.tables import runs, table


def test_t_interval_is_the_textbook_interval():
    # [1, 2, 3, 4]: mean 2.5, s = 1.29099, t_{0.975, 3} = 3.18245 (tables)
    mean, lo, hi = stats.t_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * 1.2909944487358056 / 2
    assert mean == 2.5
    assert lo == pytest.approx(2.5 - half, rel=1e-12) and hi == pytest.approx(2.5 + half, rel=1e-12)
    assert stats.t_interval([0.9, 0.99, 1.0], bounds=(0.0, 1.0))[2] == 1.0  # a fraction's bound
    assert math.isnan(stats.t_interval([3.0])[1])  # one value: no interval
    assert stats.t_interval([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)


def test_summarize_over_seeds_with_steps_to_threshold():
    df = table([{"seed": s, "step": step, "train_loss": loss, "test_acc": acc}
                for s, trajectory in enumerate([[(0, 0.9, 0.5), (10, 0.2, 0.8), (20, 0.05, 0.9)],
                                                [(0, 0.8, 0.5), (10, 0.1, 0.7), (20, 0.02, 0.8)],
                                                [(0, 0.7, 0.4), (10, 0.6, 0.6), (20, 0.5, 0.7)]])
                for step, loss, acc in trajectory])
    (row,) = stats.summarize(df, ("test_acc", "train_loss"), tau=0.1).to_dict("records")
    assert row["n_seeds"] == 3 and row["test_acc_n"] == 3
    assert row["test_acc_mean"] == pytest.approx(0.8)
    half = scipy.stats.t.ppf(0.975, 2) * np.std([0.9, 0.8, 0.7], ddof=1) / math.sqrt(3)
    assert row["test_acc_hi"] == pytest.approx(min(1.0, 0.8 + half))
    assert row["test_acc_lo"] == pytest.approx(0.8 - half)
    # seed 0 reaches loss <= 0.1 at step 20, seed 1 at step 10, seed 2 never
    assert row["steps_to_tau_mean"] == 15.0 and row["frac_reached"] == pytest.approx(2 / 3)
    assert row["train_loss_mean"] == pytest.approx((0.05 + 0.02 + 0.5) / 3)


def test_steps_to_threshold_never_reached_is_inf_and_nan_never_counts():
    df = table([{"step": 0, "train_loss": np.nan}, {"step": 10, "train_loss": 0.5}])
    assert stats.with_steps_to(df, 0.1)[stats.STEPS].tolist() == [math.inf]
    assert stats.with_steps_to(df, 0.5)[stats.STEPS].tolist() == [10.0]


def test_paired_differences_match_scipy_and_hand_counts():
    plain = [0.70, 0.80, 0.75, 0.60]
    short = [0.75, 0.80, 0.85, 0.58]
    df = runs({**{("plain", s): {"test_acc": v} for s, v in enumerate(plain)},
               **{("shortcut", s): {"test_acc": v} for s, v in enumerate(short)}})
    (row,) = stats.paired(df, "test_acc").to_dict("records")
    diffs = np.subtract(short, plain)
    assert row["n_pairs"] == row["n_used"] == 4
    assert row["diff_mean"] == pytest.approx(diffs.mean())
    ci = scipy.stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    assert (row["diff_lo"], row["diff_hi"]) == pytest.approx((ci.low, ci.high))
    assert row["p_ttest"] == pytest.approx(scipy.stats.ttest_1samp(diffs, 0.0).pvalue)
    # a zero difference: the normal approximation (scipy would otherwise permute)
    assert row["p_wilcoxon"] == pytest.approx(scipy.stats.wilcoxon(diffs, method="approx").pvalue)
    assert row["win_rate"] == (1 + 0.5 + 1 + 0) / 4  # a tie counts one half
    assert row["mean_plain"] == pytest.approx(np.mean(plain))
    assert stats.significance(row) == 0


def test_wilcoxon_is_exact_without_ties_or_zeros():
    plain, short = [0.1, 0.2, 0.3, 0.4, 0.5], [0.15, 0.18, 0.41, 0.44, 0.56]
    df = runs({**{("plain", s): {"test_acc": v} for s, v in enumerate(plain)},
               **{("shortcut", s): {"test_acc": v} for s, v in enumerate(short)}})
    got = stats.paired(df, "test_acc")["p_wilcoxon"].item()
    assert got == pytest.approx(scipy.stats.wilcoxon(np.subtract(short, plain),
                                                     method="exact").pvalue)


def test_paired_losses_win_when_lower_and_steps_count_never_as_a_loss():
    df = runs({("plain", 0): {"test_loss": 0.3, "train_loss": 0.5},
               ("shortcut", 0): {"test_loss": 0.2, "train_loss": 0.04},
               ("plain", 1): {"test_loss": 0.1, "train_loss": 0.04},
               ("shortcut", 1): {"test_loss": 0.2, "train_loss": 0.5}})
    assert stats.paired(df, "test_loss")["win_rate"].item() == 0.5
    steps = stats.paired(df, stats.STEPS, tau=0.05).iloc[0]
    assert steps["n_used"] == 0 and steps["win_rate"] == 0.5  # inf loses to a finite step
    with pytest.raises(ValueError, match=r"tau: needed for metric 'steps_to_tau'"):
        stats.paired(df, stats.STEPS)


def test_plain_pairs_with_every_shortcut_init_and_other_axes_are_matched():
    rows = []
    for s in range(3):
        for noise in (0.0, 0.2):
            rows.append({"variant": "plain", "seed": s, "noise": noise, "test_acc": 0.5 + noise})
            for init, gain in (("zeros", 0.1), ("lecun", -0.1)):
                rows.append({"variant": "shortcut", "shortcut_init": init, "seed": s,
                             "noise": noise, "test_acc": 0.5 + noise + gain})
    out = stats.paired(table(rows), "test_acc")
    assert len(out) == 4 and set(out["n_pairs"]) == {3}
    for _, r in out.iterrows():
        assert r["diff_mean"] == pytest.approx(0.1 if r["shortcut_init"] == "zeros" else -0.1)
    by_init = stats.paired(table(rows), "test_acc", by=["shortcut_init"])
    # the noise axis pooled: a seed's two pairs share its start, so they are averaged first
    assert sorted(by_init["n_pairs"]) == [3, 3]
    assert by_init.loc[by_init.shortcut_init == "zeros", "diff_mean"].item() == pytest.approx(0.1)


def test_best_lr_selects_on_validation_not_test():
    rows = []
    for s in range(3):
        for lr, val, test in ((0.1, 0.9, 0.6), (1.0, 0.7, 0.95)):
            rows.append({"seed": s, "lr": lr, "val_acc": val, "test_acc": test})
    chosen = stats.best_lr(table(rows), "val_acc")
    assert set(chosen["lr"]) == {0.1} and len(chosen) == 3
    loss_chosen = stats.best_lr(table([{**r, "val_loss": r["val_acc"]} for r in rows]),
                                "val_loss")
    assert set(loss_chosen["lr"]) == {1.0}  # lower is better for a loss
    ties = table([{"seed": 0, "lr": lr, "val_acc": 0.8} for lr in (0.3, 0.1)])
    assert stats.best_lr(ties)["lr"].tolist() == [0.1]  # a tie goes to the smaller lr


def test_final_takes_each_runs_last_step():
    df = table([{"seed": 0, "step": 0, "test_acc": 0.1}, {"seed": 0, "step": 20, "test_acc": 0.9},
                {"seed": 1, "step": 0, "test_acc": 0.2}, {"seed": 1, "step": 10, "test_acc": 0.8}])
    assert stats.final(df)["test_acc"].tolist() == [0.9, 0.8]


def test_format_ci_and_metric_directions():
    assert stats.format_ci(0.91234, 0.9, 0.92) == "0.912 [0.900, 0.920]"
    assert stats.format_ci(-0.00001, -0.01, 0.01, 3) == "0.000 [-0.010, 0.010]"
    assert stats.format_ci(0.5, np.nan, np.nan) == "0.500"
    assert stats.higher_is_better("val_acc") and not stats.higher_is_better("test_gen_err")
    with pytest.raises(ValueError, match=r"metric: cannot tell whether 'dead_frac' is better"):
        stats.higher_is_better("dead_frac")
    with pytest.raises(ValueError, match=r"metric: 'nope' is not a column"):
        stats.paired(runs({("plain", 0): {"test_acc": 1.0}}), "nope")
    one = runs({("plain", 0): {"test_acc": 1.0}})
    for call in (lambda: stats.paired(one, "test_acc", variant="resnet"),
                 lambda: stats.paired_selected(one, "test_acc", ["width"], variant="resnet"),
                 lambda: stats.paired_at_plain_lr(one, "test_acc", variant="resnet")):
        with pytest.raises(ValueError, match=r"variant: expected one of \('shortcut', "
                                             r"'residual', 'residual\+shortcut'\) \(each taken "
                                             r"against plain\), got 'resnet'"):
            call()


def test_nan_values_are_left_out_and_counted():
    df = runs({("plain", 0): {"test_acc": 0.8}, ("plain", 1): {"test_acc": np.nan},
               ("plain", 2): {"test_acc": 0.6}})
    (row,) = stats.summarize(df, ("test_acc",)).to_dict("records")
    assert row["test_acc_n"] == 2 and row["test_acc_mean"] == pytest.approx(0.7)
    assert isinstance(df, pd.DataFrame)


def test_a_bad_confidence_or_grouping_column_is_named():
    """Every interval goes through t_quantile, every grouping through one check: a confidence
    of 95 gave NaN intervals and a misspelt `by` column was dropped without a word."""
    df = runs({**{("plain", s): {"test_acc": 0.5 + 0.1 * s} for s in range(3)},
               **{("shortcut", s): {"test_acc": 0.6 + 0.1 * s} for s in range(3)}})
    for confidence in (95, 0.0, 1.0, True, "0.95"):
        with pytest.raises(ValueError, match=r"confidence: expected a number in \(0, 1\) such "
                                             rf"as 0.95, got {confidence!r}"):
            stats.summarize(df, ("test_acc",), confidence=confidence)
    with pytest.raises(ValueError, match="confidence: expected"):
        stats.paired(df, "test_acc", confidence=95)
    with pytest.raises(ValueError, match=r"by: 'widht' is not a column; expected columns of "
                                         r"\[.*'width'"):
        stats.paired(df, "test_acc", by=["width", "widht"])
    with pytest.raises(ValueError, match=r"by: 'wdth' is not a column"):
        stats.summarize(df, ("test_acc",), by=["wdth"])


def _pairs(diffs_by_width: dict, plain: float = 0.5) -> pd.DataFrame:
    """Final rows: per width, plain runs at `plain` and shortcut runs at plain + the seed's diff."""
    rows = []
    for width, diffs in diffs_by_width.items():
        for s, dv in enumerate(diffs):
            rows.append({"variant": "plain", "width": width, "seed": s, "test_acc": plain})
            rows.append({"variant": "shortcut", "shortcut_init": "zeros", "width": width,
                         "seed": s, "test_acc": plain + dv})
    return table(rows)


def test_holm_adjusted_p_values_are_holms_by_hand_over_the_table():
    rng = np.random.default_rng(0)
    diffs = {2: 0.02 + 0.01 * rng.standard_normal(8), 4: 0.004 + 0.01 * rng.standard_normal(8),
             8: 0.01 + 0.01 * rng.standard_normal(8), 16: np.zeros(8)}  # 16: no test
    out = stats.paired(_pairs(diffs), "test_acc").set_index("width")
    raw = np.array([scipy.stats.wilcoxon(diffs[w], method="exact").pvalue for w in (2, 4, 8)])
    assert out.loc[[2, 4, 8], "p_wilcoxon"].to_numpy() == pytest.approx(raw, rel=1e-12)
    # Holm by hand: the i-th smallest of m p values times (m - i), running max, at most 1
    order = np.argsort(raw)
    adj = np.minimum(1.0, np.maximum.accumulate(raw[order] * (3 - np.arange(3))))
    want = np.empty(3)
    want[order] = adj
    assert out.loc[[2, 4, 8], "p_wilcoxon_holm"].to_numpy() == pytest.approx(want, rel=1e-12)
    assert math.isnan(out.loc[16, "p_wilcoxon_holm"]) and set(out["n_tests"]) == {3}
    t_raw = [scipy.stats.ttest_1samp(diffs[w], 0.0).pvalue for w in (2, 4, 8)]
    assert out.loc[[2, 4, 8], "p_ttest_holm"].to_numpy() == pytest.approx(
        np.minimum(1, np.maximum.accumulate(np.sort(t_raw) * [3, 2, 1]))[np.argsort(
            np.argsort(t_raw))], rel=1e-12)


def test_a_verdict_needs_the_adjusted_signed_rank_test_not_only_the_interval():
    # 6 pairs, all positive and distinct: interval above 0, exact Wilcoxon p = 2/64 = 0.03125
    six = [0.011, 0.012, 0.013, 0.014, 0.015, 0.016]
    alone = stats.paired(_pairs({2: six}), "test_acc").iloc[0]
    assert alone["p_wilcoxon"] == pytest.approx(2 / 64) and alone["diff_lo"] > 0
    assert stats.significance(alone) == 1
    # the same configuration in a family of 2 with a null one: Holm 2 x 0.03125 > 0.05
    two = stats.paired(_pairs({2: six, 4: [0.01, -0.01, 0.02, -0.02, 0.03, -0.03]}),
                       "test_acc").set_index("width")
    assert two.loc[2, "p_wilcoxon_holm"] == pytest.approx(2 * 2 / 64)
    assert two.loc[2, "diff_lo"] > 0 and stats.significance(two.loc[2]) == 0
    # 5 pairs cannot reach 0.05: the exact two-sided p is at least 2/32
    five = stats.paired(_pairs({2: six[:5]}), "test_acc").iloc[0]
    assert five["diff_lo"] > 0 and five["p_wilcoxon"] == pytest.approx(2 / 32)
    assert stats.significance(five) == 0


def test_no_verdict_from_a_zero_variance_difference():
    # the case: the same difference for both of 2 pairs
    row = stats.paired(_pairs({2: [-0.0203, -0.0203]}), "test_acc").iloc[0]
    assert row["diff_lo"] == row["diff_hi"] == pytest.approx(-0.0203)
    assert math.isnan(row["p_ttest"])  # zero spread: no t test
    assert row["p_wilcoxon"] == pytest.approx(
        scipy.stats.wilcoxon([-0.0203, -0.0203], method="approx").pvalue)  # 0.157
    assert stats.significance(row) == 0
    many = stats.paired(_pairs({2: [0.05] * 12}), "test_acc").iloc[0]
    assert many["p_wilcoxon"] < 0.05 and stats.significance(many) == 0
    assert math.isnan(many["detectable"])


def test_wilcoxon_uses_the_normal_approximation_past_50_pairs():
    rng = np.random.default_rng(1)
    for n, method in ((50, "exact"), (51, "approx"), (300, "approx")):
        d = 0.01 + 0.05 * rng.standard_normal(n)
        got = stats.paired(_pairs({2: d}), "test_acc")["p_wilcoxon"].item()
        assert got == pytest.approx(scipy.stats.wilcoxon(d, method=method).pvalue, rel=1e-9)


def test_detectable_difference_is_statsmodels_power_solution_times_the_spread():
    from statsmodels.stats.power import TTestPower

    rng = np.random.default_rng(2)
    diffs = {2: 0.01 * rng.standard_normal(10), 4: 0.02 * rng.standard_normal(10)}
    out = stats.paired(_pairs(diffs), "test_acc").set_index("width")
    for w, d in diffs.items():
        d = (0.5 + d) - 0.5  # as stored
        es = TTestPower().solve_power(nobs=10, alpha=0.05 / 2, power=0.8)
        assert out.loc[w, "detectable"] == pytest.approx(es * np.std(d, ddof=1), rel=1e-5)  # brentq
        # at that difference the paired t test's power is 0.8 (statsmodels' power, the other way)
        assert TTestPower().power(out.loc[w, "detectable"] / np.std(d, ddof=1), 10,
                                  0.05 / 2) == pytest.approx(0.8, abs=1e-5)


def test_detectable_at_a_level_at_or_above_the_power_is_zero():
    """A two-sided test at level >= power rejects with probability >= power at effect 0, so
    the detectable difference is 0 (statsmodels solves it as an array at level 0.8 with 3
    differences and fails above it); below, statsmodels' solution times the spread."""
    from statsmodels.stats.power import TTestPower

    d = np.array([0.1, 0.3, 0.2])
    for level in (0.8, 0.9):
        assert stats.detectable(d, level) == 0.0
    es = TTestPower().solve_power(nobs=3, alpha=0.7, power=0.8)
    assert stats.detectable(d, 0.7) == pytest.approx(es * 0.1, rel=1e-9)  # sd of d: 0.1


def test_paired_at_the_plain_networks_lr_matches_both_variants_there():
    # plain is best on validation at lr 1.0, the shortcut at 0.3; test_acc by hand per seed
    acc = {("plain", 0.3): [0.70, 0.72, 0.71], ("plain", 1.0): [0.80, 0.83, 0.81],
           ("shortcut", 0.3): [0.90, 0.91, 0.93], ("shortcut", 1.0): [0.79, 0.80, 0.82]}
    val = {("plain", 0.3): 0.7, ("plain", 1.0): 0.8, ("shortcut", 0.3): 0.9,
           ("shortcut", 1.0): 0.6}
    rows = [{"variant": v, "lr": lr, "seed": s, "val_acc": val[v, lr], "test_acc": a,
             "shortcut_init": "zeros" if v == "shortcut" else None}
            for (v, lr), values in acc.items() for s, a in enumerate(values)]
    df = table(rows)
    (row,) = stats.paired_at_plain_lr(df, "test_acc").to_dict("records")
    want = np.subtract(acc["shortcut", 1.0], acc["plain", 1.0])
    assert row["lr"] == 1.0 and row["n_used"] == 3
    assert row["diff_mean"] == pytest.approx(want.mean(), rel=1e-12)
    assert row["p_ttest"] == pytest.approx(scipy.stats.ttest_1samp(want, 0.0).pvalue)
    # each at its own choice: shortcut at 0.3 against plain at 1.0
    (sel,) = stats.paired_selected(df, "test_acc", by=["width"]).to_dict("records")
    assert sel["diff_mean"] == pytest.approx(
        np.mean(np.subtract(acc["shortcut", 0.3], acc["plain", 1.0])), rel=1e-12)

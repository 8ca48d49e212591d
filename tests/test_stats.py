"""Tests for shortcut_jax.stats against hand-computed values (t constants from tables)."""

import math

import numpy as np
import pytest

from shortcut_jax.stats import (
    format_ci,
    mean_ci,
    paired_differences,
    rows_to_columns,
    steps_to_threshold,
    summarize,
    t_cdf,
    t_quantile,
)

# Two-sided 95% t critical values from tables (t_{0.975, df}).
T975 = {1: 12.7062047, 2: 4.3026527, 3: 3.1824463}


# --------------------------------------------------------------------------------------
# Student-t quantiles
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 1, 12.7062),
        (0.975, 7, 2.3646),
        (0.975, 15, 2.1314),
        (0.975, 30, 2.0423),
        (0.975, 2, 4.3027),
        (0.975, 3, 3.1824),
        (0.95, 3, 2.3534),
        (0.95, 5, 2.0150),
        (0.995, 10, 3.1693),
        (0.999, 4, 7.1732),
        (0.975, 120, 1.9799),
    ],
)
def test_t_quantile_textbook(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_more_digits_and_symmetry():
    assert t_quantile(0.975, 3) == pytest.approx(3.1824463, abs=1e-7)
    assert t_quantile(0.975, 200) == pytest.approx(1.9718962, abs=1e-7)
    assert t_quantile(0.025, 7) == pytest.approx(-2.3646243, abs=1e-7)
    assert t_quantile(0.5, 4) == 0.0
    # Normal limit.
    assert t_quantile(0.975, math.inf) == pytest.approx(1.9599640, abs=1e-7)
    assert t_quantile(0.975, 1e6) == pytest.approx(1.9599640 + 1e-5, abs=1e-5)


@pytest.mark.parametrize("p", [1e-6, 0.01, 0.2, 0.6, 0.9, 0.99, 0.9999])
def test_t_quantile_closed_forms(p):
    # df=1 (Cauchy): tan(pi (p - 1/2)); df=2: (2p - 1) / sqrt(2 p (1 - p)).
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)


@pytest.mark.parametrize("t", [-30.0, -2.0, -0.3, 0.0, 0.7, 4.3026527, 50.0])
def test_t_cdf_closed_form_df2(t):
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_t_quantile_rejects_bad_args():
    for p in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="p must be"):
            t_quantile(p, 3)
    with pytest.raises(ValueError, match="df must be"):
        t_quantile(0.9, 0)


# --------------------------------------------------------------------------------------
# mean_ci
# --------------------------------------------------------------------------------------


def test_mean_ci_hand_computed():
    # [1,2,3,4]: mean 2.5, sd = sqrt(5/3) = 1.2909944, se = 0.6454972,
    # half = 3.1824463 * 0.6454972 = 2.0542602.
    mean, lo, hi = mean_ci([1, 2, 3, 4])
    assert mean == pytest.approx(2.5)
    assert lo == pytest.approx(2.5 - 2.0542602, abs=1e-6)
    assert hi == pytest.approx(2.5 + 2.0542602, abs=1e-6)
    # 90%: t_{0.95,3} = 2.3533634 -> half = 1.5190895.
    mean, lo, hi = mean_ci(np.array([4.0, 3.0, 2.0, 1.0]), confidence=0.90)
    assert (lo, hi) == pytest.approx((2.5 - 1.5190895, 2.5 + 1.5190895), abs=1e-6)


def test_mean_ci_edge_cases():
    mean, lo, hi = mean_ci([0.7])
    assert mean == 0.7 and math.isnan(lo) and math.isnan(hi)
    assert mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="empty"):
        mean_ci([])
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1, 2], confidence=95)


def test_mean_ci_nan_raises_unless_dropped():
    with pytest.raises(ValueError, match="values contains 1 NaN"):
        mean_ci([1.0, float("nan"), 3.0])
    mean, lo, hi = mean_ci([1, 2, float("nan"), 3, 4], drop_nan=True)
    assert (mean, lo, hi) == pytest.approx((2.5, 2.5 - 2.0542602, 2.5 + 2.0542602), abs=1e-6)


# --------------------------------------------------------------------------------------
# steps_to_threshold
# --------------------------------------------------------------------------------------


def test_steps_to_threshold():
    steps = [0, 10, 20, 30, 40]
    loss = [1.0, 0.5, 0.2, 0.3, 0.1]
    assert steps_to_threshold(steps, loss, 0.2) == 20.0  # equality counts
    assert steps_to_threshold(steps, loss, 0.25) == 20.0  # first crossing, not last
    assert steps_to_threshold(steps, loss, 0.15) == 40.0
    assert steps_to_threshold(steps, loss, 5.0) == 0.0
    assert steps_to_threshold(steps, loss, 0.05) == math.inf
    # Unsorted input is put in step order first.
    assert steps_to_threshold([40, 0, 20, 10, 30], [0.1, 1.0, 0.2, 0.5, 0.3], 0.25) == 20.0
    # NaN losses never count as reached.
    assert steps_to_threshold([0, 1, 2], [1.0, float("nan"), 0.1], 0.5) == 2.0
    assert steps_to_threshold([0, 1], [float("nan")] * 2, 0.5) == math.inf


def test_steps_to_threshold_rejects_bad_input():
    with pytest.raises(ValueError, match="length"):
        steps_to_threshold([0, 1], [1.0], 0.5)
    with pytest.raises(ValueError, match="duplicates"):
        steps_to_threshold([0, 1, 1], [1.0, 0.5, 0.4], 0.5)


# --------------------------------------------------------------------------------------
# Tiny sweep table (strings, as csv.DictReader gives them)
# --------------------------------------------------------------------------------------

STEPS = (0, 50, 100)
# (variant, seed) -> (train_loss curve, final test_loss, final test_acc)
RUNS = {
    ("plain", 0): ((1.0, 0.25, 0.1), 0.30, 0.80),
    ("plain", 1): ((1.0, 0.5, 0.3), 0.40, 0.82),
    ("plain", 2): ((1.0, 0.6, 0.4), 0.50, 0.84),
    ("shortcut", 0): ((1.0, 0.2, 0.05), 0.25, 0.90),
    ("shortcut", 1): ((1.0, 0.3, 0.05), 0.25, 0.90),
    ("shortcut", 2): ((1.0, 0.1, 0.05), 0.25, 0.90),
}


def make_rows(runs=RUNS, width="64", extra=None):
    rows = []
    for (variant, seed), (curve, test_loss, test_acc) in runs.items():
        for i, step in enumerate(STEPS):
            final = i == len(STEPS) - 1
            row = {
                "dataset": "toy",
                "variant": variant,
                "width": width,
                "lr": "0.1",
                "seed": str(seed),
                "optimizer": "sgd",
                "loss_fn": "mse",
                "step": str(step),
                "train_loss": repr(curve[i]),
                # Non-final steps get decoy values that must not leak into final metrics.
                "test_loss": repr(test_loss) if final else "9.0",
                "test_acc": repr(test_acc) if final else "0.1",
                "grad_norm": "1.5",
            }
            row.update(extra or {})
            rows.append(row)
    return rows[::-1]  # final steps first: order must not matter


def test_summarize_hand_computed():
    rows = make_rows() + make_rows({("plain", 0): RUNS[("plain", 0)]}, width="128")
    out = summarize(rows, tau=0.3)
    assert [(r["variant"], r["width"]) for r in out] == [
        ("plain", 64),
        ("plain", 128),
        ("shortcut", 64),
    ]
    plain, single, short = out
    assert plain["dataset"] == "toy" and plain["lr"] == 0.1 and plain["optimizer"] == "sgd"
    assert plain["n_seeds"] == 3
    assert plain["final_step_min"] == plain["final_step_max"] == 100.0

    # test_acc [0.80, 0.82, 0.84]: mean 0.82, sd 0.02, half = 4.3026527 * 0.02 / sqrt(3).
    h = T975[2] * 0.02 / math.sqrt(3)  # 0.0496828
    assert plain["final_test_acc_mean"] == pytest.approx(0.82)
    assert plain["final_test_acc_lo"] == pytest.approx(0.82 - h, abs=1e-6)
    assert plain["final_test_acc_hi"] == pytest.approx(0.82 + h, abs=1e-6)
    assert plain["final_test_acc_n"] == 3
    # test_loss [0.3, 0.4, 0.5]: mean 0.4, sd 0.1.
    h = T975[2] * 0.1 / math.sqrt(3)  # 0.2484138
    assert plain["final_test_loss_mean"] == pytest.approx(0.4)
    assert plain["final_test_loss_lo"] == pytest.approx(0.4 - h, abs=1e-6)
    # train_loss [0.1, 0.3, 0.4]: mean 0.8/3, var = (1/36 + 1/900 + 4/225) / 2 = 0.0233333.
    h = T975[2] * math.sqrt(0.07 / 3) / math.sqrt(3)  # 0.3794583
    assert plain["final_train_loss_mean"] == pytest.approx(0.8 / 3)
    assert plain["final_train_loss_hi"] == pytest.approx(0.8 / 3 + h, abs=1e-6)
    # tau=0.3: seed 0 at 50, seed 1 at 100 (equality counts), seed 2 never.
    # [50, 100]: mean 75, sd 35.355, se 25, half = 12.7062047 * 25 = 317.655.
    assert plain["tau"] == 0.3
    assert plain["n_reached"] == 2
    assert plain["frac_reached"] == pytest.approx(2 / 3)
    assert plain["steps_to_tau_mean"] == 75.0
    assert plain["steps_to_tau_lo"] == pytest.approx(75 - T975[1] * 25, abs=1e-4)
    assert plain["steps_to_tau_hi"] == pytest.approx(75 + T975[1] * 25, abs=1e-4)

    # Shortcut: identical finals -> zero-width CI; all reach tau at step 50.
    assert short["n_seeds"] == 3
    assert short["final_test_acc_mean"] == short["final_test_acc_lo"] == pytest.approx(0.9)
    assert short["final_test_acc_hi"] == pytest.approx(0.9)
    assert (short["steps_to_tau_mean"], short["steps_to_tau_lo"]) == (50.0, 50.0)
    assert short["frac_reached"] == 1.0

    # One seed: mean only, CI nan.
    assert single["n_seeds"] == 1
    assert single["final_test_acc_mean"] == pytest.approx(0.80)
    assert math.isnan(single["final_test_acc_lo"]) and math.isnan(single["final_test_acc_hi"])
    assert single["steps_to_tau_mean"] == 50.0 and math.isnan(single["steps_to_tau_lo"])


def test_summarize_never_reached_and_no_tau():
    out = summarize(make_rows(), tau=0.01)
    for r in out:
        assert r["n_reached"] == 0 and r["frac_reached"] == 0.0
        assert math.isnan(r["steps_to_tau_mean"])
    out = summarize(make_rows())
    assert "steps_to_tau_mean" not in out[0] and "tau" not in out[0]


def test_summarize_missing_group_key_and_column_input():
    rows = [{k: v for k, v in r.items() if k != "dataset"} for r in make_rows()]
    out = summarize(rows, tau=0.3)
    assert len(out) == 2 and "dataset" not in out[0]
    assert out[0]["final_test_acc_mean"] == pytest.approx(0.82)
    # Dict of numpy columns gives the same result as rows.
    assert summarize(rows_to_columns(rows), tau=0.3) == out


def test_summarize_errors():
    rows = make_rows()
    with pytest.raises(ValueError, match="duplicate steps"):
        summarize(rows + rows[:1])
    # Two runs differing only in a column not among group keys collide.
    rows2 = make_rows(extra={"batch": "32"}) + make_rows(extra={"batch": "64"})
    with pytest.raises(ValueError, match="duplicate steps"):
        summarize(rows2)
    assert len(summarize(rows2, group_keys=("variant", "batch"))) == 4
    with pytest.raises(ValueError, match="no 'seed' column"):
        summarize([{k: v for k, v in r.items() if k != "seed"} for r in rows])
    bad = make_rows()
    bad[0]["test_acc"] = "nan"  # a final-step row (rows are reversed)
    with pytest.raises(ValueError, match="'test_acc' is NaN for seeds"):
        summarize(bad)
    out = summarize(bad, drop_nan=True)
    assert out[1]["final_test_acc_n"] == 2  # shortcut group lost one seed
    bad[0]["test_acc"] = "oops"
    with pytest.raises(ValueError, match="cannot parse 'oops'"):
        summarize(bad)


# --------------------------------------------------------------------------------------
# paired_differences
# --------------------------------------------------------------------------------------

PAIRED = {
    # plain test_acc [0.5, 0.6, 0.7]; shortcut = plain + [0.1, 0.2, 0.3].
    # plain test_loss [0.5]*3; shortcut [0.4, 0.5, 0.3] (one tie).
    # tau=0.3: plain reaches at [50, 100, never], shortcut at [50, 50, 100].
    ("plain", 0): ((1.0, 0.3, 0.2), 0.5, 0.5),
    ("plain", 1): ((1.0, 0.5, 0.3), 0.5, 0.6),
    ("plain", 2): ((1.0, 0.5, 0.4), 0.5, 0.7),
    ("shortcut", 0): ((1.0, 0.3, 0.1), 0.4, 0.6),
    ("shortcut", 1): ((1.0, 0.2, 0.1), 0.5, 0.8),
    ("shortcut", 2): ((1.0, 0.4, 0.3), 0.3, 1.0),
}


def test_paired_accuracy():
    rows = make_rows(PAIRED)
    (r,) = paired_differences(rows, metric="test_acc")
    assert "variant" not in r and r["dataset"] == "toy" and r["width"] == 64
    assert r["n_pairs"] == r["n_used"] == 3
    # diffs [0.1, 0.2, 0.3]: mean 0.2, sd 0.1, half = 4.3026527 * 0.1 / sqrt(3) = 0.2484138.
    h = T975[2] * 0.1 / math.sqrt(3)
    assert r["diff_mean"] == pytest.approx(0.2)
    assert r["diff_lo"] == pytest.approx(0.2 - h, abs=1e-6)
    assert r["diff_hi"] == pytest.approx(0.2 + h, abs=1e-6)
    assert r["mean_plain"] == pytest.approx(0.6) and r["mean_shortcut"] == pytest.approx(0.8)
    assert r["win_rate"] == 1.0 and r["higher_is_better"] is True
    (r,) = paired_differences(rows, metric="test_acc", higher_is_better=False)
    assert r["win_rate"] == 0.0


def test_paired_loss_ties_count_half():
    (r,) = paired_differences(make_rows(PAIRED), metric="test_loss")
    assert r["higher_is_better"] is False
    # shortcut lower, tie, lower -> (1 + 0.5 + 1) / 3.
    assert r["win_rate"] == pytest.approx(2.5 / 3)
    # diffs [-0.1, 0, -0.2]: mean -0.1, sd 0.1.
    h = T975[2] * 0.1 / math.sqrt(3)
    assert r["diff_mean"] == pytest.approx(-0.1)
    assert (r["diff_lo"], r["diff_hi"]) == pytest.approx((-0.1 - h, -0.1 + h), abs=1e-6)


def test_paired_steps_to_threshold():
    rows = make_rows(PAIRED)
    with pytest.raises(ValueError, match="needs tau"):
        paired_differences(rows, metric="steps_to_tau")
    (r,) = paired_differences(rows, metric="steps_to_tau", tau=0.3)
    # seed 0: 50 vs 50 tie; seed 1: 50 < 100 win; seed 2: 100 < never win.
    assert r["win_rate"] == pytest.approx(2.5 / 3)
    assert r["n_pairs"] == 3 and r["n_used"] == 2
    # Both-reached diffs [0, -50]: mean -25, se 25, half = 12.7062047 * 25.
    assert r["diff_mean"] == -25.0
    assert r["diff_lo"] == pytest.approx(-25 - T975[1] * 25, abs=1e-4)
    assert r["mean_plain"] == 75.0 and r["mean_shortcut"] == 50.0


def test_paired_errors():
    rows = [r for r in make_rows(PAIRED) if not (r["variant"] == "shortcut" and r["seed"] == "2")]
    with pytest.raises(ValueError, match="unpaired seeds.*seed=2 only 'plain'"):
        paired_differences(rows)
    rows = make_rows(PAIRED)
    rows[-1]["test_acc"] = "nan"  # plain seed 0, step 0: not final, so harmless
    paired_differences(rows)
    rows[-3]["test_acc"] = "nan"  # plain seed 0, final step
    with pytest.raises(ValueError, match=r"'test_acc' is NaN for seeds \[0\]"):
        paired_differences(rows)
    (r,) = paired_differences(rows, drop_nan=True)
    assert r["n_pairs"] == 3 and r["n_used"] == 2
    assert r["diff_mean"] == pytest.approx(0.25)  # diffs [0.2, 0.3]
    with pytest.raises(ValueError, match="cannot infer direction"):
        paired_differences(make_rows(PAIRED), metric="grad_norm")
    with pytest.raises(ValueError, match="no 'variant' column"):
        paired_differences([{k: v for k, v in r.items() if k != "variant"} for r in rows])


def test_paired_groups_and_other_variants():
    rows = make_rows(PAIRED) + make_rows(PAIRED, width="128")
    rows += [dict(r, variant="other", test_acc="0.0") for r in make_rows(PAIRED)[:3]]
    out = paired_differences(rows)
    assert [r["width"] for r in out] == [64, 128]
    assert all(r["diff_mean"] == pytest.approx(0.2) for r in out)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def test_format_ci():
    assert format_ci(0.9123, 0.9011, 0.9234) == "0.912 [0.901, 0.923]"
    assert format_ci(75.0, -242.655, 392.655, digits=0) == "75 [-243, 393]"
    assert format_ci(0.5, math.nan, math.nan) == "0.500 [nan, nan]"
    assert format_ci(-0.0001, -0.2, math.inf, digits=2) == "0.00 [-0.20, inf]"


def test_rows_to_columns():
    rows = [
        {"variant": "plain", "width": "64", "lr": "0.1", "acc": "0.5"},
        {"variant": "shortcut", "width": "128", "lr": "1e-2"},
    ]
    cols = rows_to_columns(rows)
    assert cols["variant"].dtype == object and list(cols["variant"]) == ["plain", "shortcut"]
    assert cols["width"].dtype == np.int64 and list(cols["width"]) == [64, 128]
    assert cols["lr"].dtype == np.float64 and list(cols["lr"]) == [0.1, 0.01]
    assert cols["acc"][0] == 0.5 and math.isnan(cols["acc"][1])

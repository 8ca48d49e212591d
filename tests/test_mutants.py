"""Tests written to kill the mutants `mutmut run` found surviving (experiments/MUTATION.md):
hand-computed numbers for what the other tests left unchecked."""

import numpy as np
import pytest
import scipy.stats

from shortcut_jax import stats
from tests.tables import runs, table


def _t_ci(values, confidence):
    v = np.asarray(values, float)
    half = scipy.stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return v.mean() - half, v.mean() + half


def test_summarize_keeps_only_observed_groups_in_sorted_order():
    """Categorical keys: a dataset x variant combination that never ran is no row (pandas'
    observed=False would add an empty one); rows come sorted by key whatever the input order."""
    rows = [{"dataset": "xor", "variant": "shortcut", "shortcut_init": "zeros", "width": w,
             "seed": s, "test_acc": 0.5} for w in (8, 2) for s in range(2)]
    rows += [{"dataset": "moons", "variant": "plain", "width": 8, "seed": s, "test_acc": 0.6}
             for s in range(2)]
    out = stats.summarize(table(rows), ("test_acc",))
    assert [(str(d), str(v), w) for d, v, w in out[["dataset", "variant", "width"]]
            .itertuples(index=False)] == [("moons", "plain", 8), ("xor", "shortcut", 2),
                                          ("xor", "shortcut", 8)]
    assert out["n_seeds"].tolist() == [2, 2, 2]


def test_summarize_bounds_fractions_only_and_uses_the_confidence_for_steps():
    values = {"train_loss": [3.0, 5.0, 9.0], "hess_zero_frac": [0.90, 0.99, 1.0]}
    df = table([{"seed": s, "step": st, "train_loss": values["train_loss"][s] if st else 9.0,
                 "hess_zero_frac": values["hess_zero_frac"][s]}
                for s in range(3) for st in (0, 10)])
    (row,) = stats.summarize(df, ("train_loss", "hess_zero_frac"), confidence=0.9,
                             tau=6.0).to_dict("records")
    lo, hi = _t_ci(values["train_loss"], 0.9)
    assert (row["train_loss_lo"], row["train_loss_hi"]) == pytest.approx((lo, hi))
    assert hi > 1  # a loss is not clipped to [0, 1]
    assert row["hess_zero_frac_hi"] == 1.0  # a fraction is
    assert stats.is_fraction("hess_zero_frac") and not stats.is_fraction("train_loss")
    # steps to train loss <= 6: seeds 0 and 1 at step 10, seed 2 never
    assert row["steps_to_tau_mean"] == 10.0 and row["frac_reached"] == pytest.approx(2 / 3)


def test_steps_to_tau_interval_at_the_given_confidence():
    df = table([{"seed": s, "step": st, "train_loss": 0.0 if st >= reach else 1.0}
                for s, reach in enumerate((10, 20, 40)) for st in (0, 10, 20, 30, 40)])
    (row,) = stats.summarize(df, ("train_loss",), tau=0.5, confidence=0.8).to_dict("records")
    assert (row["steps_to_tau_lo"], row["steps_to_tau_hi"]) == pytest.approx(
        _t_ci([10, 20, 40], 0.8))


def test_significance_is_strict_and_unit():
    assert stats.significance({"diff_lo": 0.0, "diff_hi": 0.1}) == 0  # touching 0 holds 0
    assert stats.significance({"diff_lo": -0.1, "diff_hi": 0.0}) == 0
    assert stats.significance({"diff_lo": 0.01, "diff_hi": 0.1}) == 1
    assert stats.significance({"diff_lo": -0.1, "diff_hi": -0.01}) == -1
    assert stats.significance({"diff_lo": np.nan, "diff_hi": np.nan}) == 0


def test_p_values_are_nan_floats_without_two_pairs():
    df = runs({("plain", 0): {"test_acc": 0.5}, ("shortcut", 0): {"test_acc": 0.7}})
    out = stats.paired(df, "test_acc")
    assert out["p_ttest"].dtype == np.float64 and out["p_wilcoxon"].dtype == np.float64
    assert np.isnan(out["p_ttest"].item()) and np.isnan(out["p_wilcoxon"].item())


def test_format_ci_writes_an_interval_only_with_both_ends():
    assert stats.format_ci(0.5, np.nan, 0.6) == "0.500"
    assert stats.format_ci(0.5, 0.4, np.nan) == "0.500"


def _lr_table():
    """Two widths x two lrs x three seeds: on validation loss plain prefers lr 1.0 and the
    shortcut 0.3 (validation accuracy says the opposite); test_acc = 0.5 + lr/10 + 0.1 for
    the shortcut, + 0.01 * seed."""
    rows = []
    for w in (2, 8):
        for lr in (0.3, 1.0):
            for v in ("plain", "shortcut"):
                good = (v == "plain") == (lr == 1.0)
                for s in range(3):
                    rows.append({"width": w, "lr": lr, "variant": v, "seed": s,
                                 "shortcut_init": "zeros" if v == "shortcut" else None,
                                 "val_loss": 0.1 if good else 0.4, "val_acc": 0.6 if good else 0.9,
                                 "test_acc": 0.5 + lr / 10 + 0.1 * (v == "shortcut")
                                 + 0.01 * s * (1 + (v == "shortcut"))})
    return table(rows)


def test_paired_selected_pairs_at_each_lr_when_lr_is_an_axis():
    out = stats.paired_selected(_lr_table(), "test_acc", ["width", "lr"], confidence=0.9)
    assert list(out.columns[:3]) == ["width", "lr", "metric"]  # grouped by exactly these
    assert out[["width", "lr"]].values.tolist() == [[2, 0.3], [2, 1.0], [8, 0.3], [8, 1.0]]
    assert out["n_pairs"].tolist() == [3] * 4
    assert out["diff_mean"].tolist() == pytest.approx([0.11] * 4)  # the same lr on both sides
    lo, hi = _t_ci([0.10, 0.11, 0.12], 0.9)
    assert out["diff_lo"].tolist() == pytest.approx([lo] * 4)
    assert out["diff_hi"].tolist() == pytest.approx([hi] * 4)


def test_paired_selected_selects_on_the_given_metric_per_width():
    out = stats.paired_selected(_lr_table(), "test_acc", ["width"], "val_loss", confidence=0.9)
    assert list(out.columns[:2]) == ["width", "metric"]  # grouped by exactly width
    assert out["width"].tolist() == [2, 8] and out["n_pairs"].tolist() == [3, 3]
    # plain at lr 1.0 (0.6 + 0.01 s), shortcut at 0.3 (0.63 + 0.02 s)
    assert out["diff_mean"].tolist() == pytest.approx([0.04, 0.04])
    lo, hi = _t_ci([0.03, 0.04, 0.05], 0.9)
    assert (out["diff_lo"].tolist(), out["diff_hi"].tolist()) == (
        pytest.approx([lo, lo]), pytest.approx([hi, hi]))
    by_acc = stats.paired_selected(_lr_table(), "test_acc", ["width"])  # val_acc: the opposite
    assert by_acc["diff_mean"].tolist() == pytest.approx([0.18, 0.18])


def test_best_lr_breaks_a_tie_between_many_lrs_towards_the_smallest():
    """Sorting ties needs a stable sort: with 17 learning rates, some tied at the best mean,
    NumPy's default quicksort reorders them."""
    lrs = np.round(0.05 * np.arange(1, 18), 4)
    val = np.random.default_rng(36).choice([0.7, 0.8], len(lrs))
    df = table([{"seed": s, "lr": lr, "val_acc": v} for lr, v in zip(lrs, val)
                for s in range(2)])
    assert set(stats.best_lr(df)["lr"]) == {lrs[val == 0.8].min()}

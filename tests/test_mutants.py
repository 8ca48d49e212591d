"""Tests written to kill the mutants `mutmut run` found surviving (experiments/MUTATION.md):
hand-computed numbers for what the other tests left unchecked."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from shortcut_jax import stats
from tests.tables import holm, runs, table


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
    def sig(lo, hi, **p):
        return stats.significance({"diff_lo": lo, "diff_hi": hi, **p})

    ok = {"p_wilcoxon_holm": 0.01}
    assert sig(0.0, 0.1, **ok) == 0  # touching 0 holds 0
    assert sig(-0.1, 0.0, **ok) == 0
    assert sig(0.01, 0.1, **ok) == 1
    assert sig(-0.1, -0.01, **ok) == -1
    assert sig(np.nan, np.nan, **ok) == 0
    assert sig(0.1, 0.1, **ok) == 0 and sig(-0.1, -0.1, **ok) == 0  # zero width: no test
    assert sig(0.01, 0.1, p_wilcoxon_holm=0.05) == 0  # p must be strictly below the level
    assert sig(0.01, 0.1, p_wilcoxon_holm=0.049) == 1
    assert sig(0.01, 0.1, p_wilcoxon_holm=np.nan) == 0
    assert stats.significance({"diff_lo": 0.01, "diff_hi": 0.1, "p_wilcoxon_holm": 0.05},
                              level=0.1) == 1
    assert sig(0.01, 0.1, p_wilcoxon_holm=0.2, p_wilcoxon=0.01) == 0  # the adjusted p decides
    assert sig(0.01, 0.1, p_wilcoxon_holm=0.01, p_wilcoxon=0.2) == 1
    assert sig(-0.1, -0.01, p_wilcoxon=0.01) == -1  # no adjusted p: the raw one
    assert sig(-0.1, -0.01, p_wilcoxon=0.06) == 0


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
    loss = stats.paired_selected(_lr_table(), "val_loss", ["width", "lr"])
    assert set(loss["metric"]) == {"val_loss"} and loss["diff_mean"].tolist() == pytest.approx(
        [-0.3, 0.3, -0.3, 0.3])


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


def _by_width(diffs: dict[int, list[float]], metric="test_acc") -> "object":
    """Plain at 0, shortcut at the difference, per width and seed: the differences exactly."""
    return table([r for w, ds in diffs.items() for s, d in enumerate(ds)
                  for r in ({"variant": "plain", "width": w, "seed": s, metric: 0.0},
                            {"variant": "shortcut", "shortcut_init": "zeros", "width": w,
                             "seed": s, metric: d})])


def test_p_values_of_many_tables_at_once_equal_scipy_one_by_one():
    """One paired() call over configurations of each kind, so the vectorized tests run on
    blocks that mix them: each p value equals scipy's on that configuration alone (the t test;
    the signed-rank test exact up to 50 pairs without ties or zeros, else the normal
    approximation), and the Holm-adjusted ones Holm's procedure by hand over the tested rows."""
    rng = np.random.default_rng(7)
    diffs = {1: [0.1, 0.2, 0.35],         # no ties, no zeros: exact Wilcoxon
             2: [0.1, -0.2, 0.2],         # a tie in |d| (not the smallest): normal approx
             3: [0.0, 0.2, 0.3],          # a zero: normal approx
             4: [1.0, 1.0, 1.0],          # constant: zero spread, no t test (NaN)
             5: [0.0, 0.0, 0.0],          # all zero: no test
             6: [0.1, 0.3],               # two pairs: tested
             7: [0.4],                    # one pair: no test
             8: [0.5, 0.1, 0.25],         # exact, another p in the same block
             9: [1e-6, 1e-6 * (1 + 1e-9), 1e-6 * (1 + 2e-9)],  # nearly constant: tested
             10: [0.1 + 0.2, 0.3, 0.3],   # constant but for rounding: no t test
             11: list(0.05 + rng.standard_normal(50)),  # 50 pairs, no ties: still exact
             12: list(0.05 + rng.standard_normal(51)),  # 51 pairs: normal approx
             13: list(0.3 + rng.standard_normal(51))}   # another p in that block
    out = stats.paired(_by_width(diffs), "test_acc", by=["width"]).set_index("width")
    assert out["p_ttest"].dtype == np.float64
    want_t, want_w = {}, {}
    for w, d in diffs.items():
        d = np.asarray(d)
        t, wx = out.loc[w, "p_ttest"], out.loc[w, "p_wilcoxon"]
        if d.size < 2 or not d.any():
            assert np.isnan(t) and np.isnan(wx), w
            want_t[w] = want_w[w] = np.nan
            continue
        if w in (4, 10):
            assert np.isnan(t), w
            want_t[w] = np.nan
        else:
            want_t[w] = scipy.stats.ttest_1samp(d, 0.0).pvalue
            assert t == pytest.approx(want_t[w], rel=1e-9, abs=0), w
        tied = len(set(np.abs(d))) < d.size or (d == 0).any()
        method = "approx" if tied or d.size > 50 else "exact"
        want_w[w] = scipy.stats.wilcoxon(d, method=method).pvalue
        assert wx == pytest.approx(want_w[w], rel=1e-9, abs=0), w
    # exact and approximate differ at 50 pairs, so the assertion above tells them apart
    assert scipy.stats.wilcoxon(diffs[11], method="approx").pvalue != pytest.approx(
        want_w[11], rel=1e-6)
    keys = list(diffs)
    for col, want in (("p_ttest_holm", want_t), ("p_wilcoxon_holm", want_w)):
        adj = holm([want[w] for w in keys])
        np.testing.assert_allclose(out.loc[keys, col].to_numpy(), adj, rtol=1e-9, atol=0,
                                   err_msg=col)
    assert (out["n_tests"] == np.isfinite(list(want_w.values())).sum()).all()


def test_paired_defaults_names_and_the_columns_it_offers():
    df = _by_width({2: [0.1, 0.2, 0.3]})
    out = stats.paired(df)  # test_acc by default
    assert out["metric"].tolist() == ["test_acc"]
    assert stats.paired(df, "test_acc", by=["width"])["metric"].tolist() == ["test_acc"]
    df["run"] = stats.run_ids(df)  # as results.load gives it
    with pytest.raises(ValueError, match=r"metric: 'nope' is not a column; expected one of "
                                         r"\['test_acc'\]$"):
        stats.paired(df, "nope")


def test_paired_steps_to_tau_uses_the_given_tau():
    df = table([{"variant": v, "shortcut_init": "zeros" if v == "shortcut" else None,
                 "seed": s, "step": st, "train_loss": loss}
                for s in range(3) for v, reach in (("plain", 20), ("shortcut", 10))
                for st, loss in ((0, 1.0), (10, 0.5 if reach == 10 else 0.9), (20, 0.5))])
    row = stats.paired(df, stats.STEPS, tau=0.6).iloc[0]
    assert row["n_used"] == 3 and row["diff_mean"] == -10.0 and row["win_rate"] == 1.0


def test_paired_leaves_nan_pairs_out_of_the_win_rate():
    df = _by_width({2: [0.1, np.nan, -0.1, 0.2]})
    row = stats.paired(df, "test_acc").iloc[0]
    assert row["n_pairs"] == 4 and row["n_used"] == 3
    assert row["win_rate"] == pytest.approx(2 / 3)


def test_paired_win_rate_of_a_loss_counts_lower_as_a_win():
    row = stats.paired(_by_width({2: [-0.1, -0.2, 0.3]}, "test_loss"), "test_loss").iloc[0]
    assert row["win_rate"] == pytest.approx(2 / 3)


def test_paired_refuses_several_plain_runs_for_one_shortcut_run():
    """Left out of the matching (ignore), an axis with several values would pair one shortcut
    run with several plain runs: refused, not averaged silently."""
    df = table([{"variant": v, "shortcut_init": "zeros" if v == "shortcut" else None,
                 "seed": s, "lr": lr, "test_acc": 0.5} for v in ("plain", "shortcut")
                for s in range(2) for lr in (0.1, 1.0)])
    with pytest.raises(pd.errors.MergeError):
        stats.paired(df, "test_acc", ignore=("lr",))


def test_paired_keeps_only_observed_groups_in_sorted_order():
    rows = [{"variant": v, "shortcut_init": "zeros" if v == "shortcut" else None,
             "dataset": ds, "width": w, "seed": s, "test_acc": 0.5 + 0.1 * (v == "shortcut")}
            for ds, w in (("xor", 8), ("moons", 4), ("xor", 2)) for s in range(2)
            for v in ("plain", "shortcut")]
    out = stats.paired(table(rows), "test_acc", by=["dataset", "width"])
    assert [(str(d), w) for d, w in out[["dataset", "width"]].itertuples(index=False)] == [
        ("moons", 4), ("xor", 2), ("xor", 8)]


def test_t_interval_of_two_values_and_of_float32_values_in_float64():
    mean, lo, hi = stats.t_interval([1.0, 3.0])
    half = 12.706204736174698 * np.sqrt(2.0) / np.sqrt(2)  # t_{0.975, 1} (tables), s = sqrt 2
    assert (mean, lo, hi) == pytest.approx((2.0, 2.0 - half, 2.0 + half), rel=1e-12)
    v32 = np.array([0.1, 0.2, 0.4], np.float32)
    got = stats.t_interval(v32)
    want = _t_ci(v32.astype(np.float64), 0.95)
    assert got[1:] == pytest.approx(want, rel=1e-13, abs=0)


def test_a_bad_by_column_lists_the_columns_but_run():
    df = _by_width({2: [0.1, 0.2]})
    df["run"] = stats.run_ids(df)
    with pytest.raises(ValueError) as err:
        stats.summarize(df, ("test_acc",), by=["wdth"])
    assert "'run'" not in str(err.value) and "'width'" in str(err.value)


def test_a_metric_of_unknown_direction_is_named_in_full():
    with pytest.raises(ValueError) as err:
        stats.higher_is_better("dead_frac")
    assert str(err.value) == ("metric: cannot tell whether 'dead_frac' is better high or low; "
                              "expected an accuracy, loss, error or steps column")


@pytest.mark.parametrize("shortcut", [False, True])
def test_manual_gradients_keep_the_parameters_dtype_and_shape_with_x64_on(shortcut, x64):
    """float32 parameters and inputs, integer labels, float64 enabled: every gradient is float32
    (labels are cast to the network's dtype, the ReLU's derivative too), shaped like its
    parameter, and the plain network has no dL/dW. Values: jax.grad's."""
    import jax
    import jax.numpy as jnp

    import shortcut_jax as sj

    rng = np.random.default_rng(0)
    f32 = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)  # noqa: E731
    params = sj.Params(W1=f32(4, 3), b1=f32(4), W2=f32(1, 4), b2=f32(),
                       W=f32(1, 3) if shortcut else None)
    X, Y = f32(5, 3), jnp.asarray([0, 1, 1, 0, 1])
    cases = [(sj.manual_example_grad(params, X[0], Y[1]),
              jax.grad(sj.example_loss)(params, X[0], jnp.float32(1.0))),
             (sj.manual_grad(params, X, Y), jax.grad(sj.loss)(params, X, Y.astype(jnp.float32))),
             (sj.manual_grad_bce(params, X, Y),
              jax.grad(sj.bce_loss)(params, X, Y.astype(jnp.float32)))]
    for manual, auto in cases:
        assert (manual.W is None) == (not shortcut)
        for name in ("W1", "b1", "W2", "b2", "W"):
            m, a = getattr(manual, name), getattr(auto, name)
            if a is None:
                continue
            assert m.dtype == jnp.float32 and m.shape == getattr(params, name).shape, name
            np.testing.assert_allclose(np.asarray(m), np.asarray(a), rtol=1e-5, atol=1e-7)


def test_backward_makes_X_T_itself_when_not_given():
    import jax.numpy as jnp

    import shortcut_jax as sj
    from shortcut_jax.grads import backward

    rng = np.random.default_rng(1)
    f32 = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)  # noqa: E731
    params = sj.Params(W1=f32(4, 3), b1=f32(4), W2=f32(1, 4), b2=f32(), W=f32(1, 3))
    X, Delta = f32(5, 3), f32(5)
    Z1T, A1T, _, _ = sj.model.forward_columns(params, X)
    a, b = backward(params, X, Z1T, A1T, Delta), backward(params, X, Z1T, A1T, Delta, XT=X.T)
    for name in ("W1", "b1", "W2", "b2", "W"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))

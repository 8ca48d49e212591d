"""Sweeps over the network family's axes: --depth, --activation and the residual variants.

Each is a results column; runs that share a shape and skips share a compiled program; every
variant of a seed starts from the plain network's weights; bad values are refused before
anything compiles, naming the flag; the new axes go through load_results and stats.paired."""

import jax
import numpy as np
import pytest

import shortcut_jax as sj
from shortcut_jax import cli, compilation, stats
from tests.test_compilation import count_traces

SMALL = dict(datasets=("moons",), widths=(3,), lrs=(0.5,), seeds=3, steps=4, eval_every=2,
             n_train=40, n_test=30)
ALL = ("plain", "shortcut", "residual", "residual+shortcut")


def test_new_axes_are_columns_and_share_programs(tmp_path, monkeypatch):
    """depths (1, 2) x activations (relu, tanh) x the four variants: residual at depth 1 left
    out; one program per (depth, activation, skips between hidden layers): 2 at depth 1 and 4
    at depth 2, plus the draws."""
    traces = count_traces(monkeypatch)
    grid = sj.Grid(**SMALL, depths=(1, 2), activations=("relu", "tanh"), variants=ALL)
    assert grid.left_out == [f"{v} at depth 1 left out (no skip between hidden layers: the "
                             f"plain network)" for v in ("residual", "residual+shortcut")]
    with compilation.tally() as t:
        sj.run_sweep(grid, str(tmp_path / "out"), progress=False)
    assert traces == {"init": 6, "run": 6}
    assert t.programs == 2 * 6 + 1
    df = sj.load_results(tmp_path / "out")
    assert str(df["depth"].dtype) == "int64" and str(df["activation"].dtype) == "category"
    runs = df[df["step"] == 0].groupby(["depth", "activation", "variant"], observed=True).size()
    assert dict(runs) == {(L, a, v): 3 for L in (1, 2) for a in ("relu", "tanh") for v in ALL
                          if L == 2 or not v.startswith("residual")}
    for variant in ("shortcut", "residual", "residual+shortcut"):
        p = stats.paired(df, "test_acc", by=["depth", "activation"], variant=variant)
        depths = {1, 2} if variant == "shortcut" else {2}
        assert set(p["depth"]) == depths and (p["n_pairs"] == 3).all(), variant


def test_every_variant_of_a_seed_starts_from_the_plain_weights(tmp_path):
    """A learning rate of 1e-30 leaves the float32 weights where they started (the biases,
    which start at 0, move by ~1e-32, under the atol): the hidden layers and the output layer
    of every variant of a seed are the plain run's."""
    grid = sj.Grid(**{**SMALL, "lrs": (1e-30,)}, depths=(3,), activations=("erf",),
                   variants=ALL, shortcut_init=("lecun",))
    sj.run_sweep(grid, str(tmp_path / "out"), progress=False)
    start = {v: sj.load_params(tmp_path / "out", variant=v) for v in ALL}
    plain = start["plain"]
    assert isinstance(plain, sj.NetParams) and len(plain.Ws) == 3 and plain.W is None
    assert plain.Ws[0].shape == (3, 3, 2) and plain.Ws[1].shape == (3, 3, 3)  # (runs, h, .)
    for v in ALL:
        for a, b in zip(jax.tree.leaves(start[v]._replace(W=None)), jax.tree.leaves(plain),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-25, err_msg=v)
        assert (start[v].W is not None) == v.endswith("shortcut")
    assert np.any(start["shortcut"].W != 0)  # lecun: the shortcut starts non-zero


def test_depth_one_relu_results_equal_the_problems_sweep(tmp_path):
    """Adding the axes changes nothing for the problem's network: the same sweep with and
    without depths=(1,), activations=("relu",) written out gives the same rows."""
    a = sj.run_sweep(sj.Grid(**SMALL), str(tmp_path / "a"), progress=False)
    b = sj.run_sweep(sj.Grid(**SMALL, depths=(1, 2), activations=("relu",),
                             variants=("plain", "shortcut")), str(tmp_path / "b"),
                     progress=False)
    da, db = sj.load_results(a.path), sj.load_results(b.path)
    db = db[db["depth"] == 1].reset_index(drop=True)
    cols = [c for c in da.columns if c != "run"]
    assert (da["depth"] == 1).all() and (da["activation"] == "relu").all()
    np.testing.assert_array_equal(da[cols].to_numpy(str), db[cols].to_numpy(str))


def test_config_names_the_new_axes_only_when_used():
    """config.json of a grid at depth 1 with ReLU is what it was before these axes (so such
    folders resume); other values are recorded."""
    assert not {"depths", "activations"} & set(sj.Grid(**SMALL).to_dict())
    got = sj.Grid(**SMALL, depths=(1, 2), activations=("tanh",)).to_dict()
    assert got["depths"] == (1, 2) and got["activations"] == ("tanh",)


@pytest.mark.parametrize("kw, message", [
    (dict(variants=("plain", "residual")), r"variants: \['residual'\] add identity skips .*"
                                           r"expected depths >= 2 with them, got depths \[1\]"),
    (dict(depths=(0,)), r"depths: expected an integer >= 1, got 0"),
    (dict(depths=(2.5,)), r"depths: expected an integer >= 1, got 2.5"),
    (dict(activations=("gelu",)), r"activations: expected names in \['relu', 'leaky_relu', "
                                  r"'tanh', 'softplus', 'erf'\], got 'gelu'"),
    (dict(variants=("skip",)), r"variants: expected values in \('plain', 'shortcut', "
                               r"'residual', 'residual\+shortcut'\), got 'skip'"),
])
def test_grid_refuses_bad_network_values(kw, message):
    with pytest.raises(ValueError, match=message):
        sj.Grid(**SMALL, **kw)


@pytest.mark.parametrize("flags, message", [
    (["--variants", "plain", "residual"], r"--variants: \['residual'\] add identity skips"),
    (["--depth", "0"], r"argument --depth: expected an integer >= 1, got '0'"),
    (["--depth", "1.5"], r"argument --depth: expected an integer >= 1, got '1.5'"),
    (["--activation", "gelu"], r"argument --activation: invalid choice: 'gelu'"),
])
def test_sweep_refuses_bad_values_naming_the_flag(flags, message, capsys, tmp_path,
                                                  monkeypatch):
    traces = count_traces(monkeypatch)
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", "--smoke", "--no-progress", "--out", str(tmp_path / "o"), *flags])
    assert e.value.code == 2
    import re
    assert re.search(message, capsys.readouterr().err)
    assert traces == {"init": 0, "run": 0} and not (tmp_path / "o").exists()


def test_report_over_the_new_axes_says_what_it_left_out(tmp_path):
    from shortcut_jax import report

    grid = sj.Grid(**{**SMALL, "seeds": 2}, depths=(1, 2), activations=("relu", "tanh"),
                   variants=ALL)
    sj.run_sweep(grid, str(tmp_path / "out"), progress=False)
    rep = report.build(tmp_path / "out", hessians=True)
    text = rep.markdown
    assert "varied axes: depth, activation" in text
    assert ("residual and residual+shortcut at depth 1 left out: a depth-1 network has no skip "
            "between hidden layers") in text
    assert "the decision boundaries cover the problem's network (depth 1, relu) only" in text
    assert {"heatmap_activation_depth", "paired_vs_depth", "paired_vs_activation"} <= set(
        rep.figures)
    hess = rep.tables["hessian"]
    assert set(hess["depth"]) == {1, 2} and set(hess["activation"]) == {"relu", "tanh"}
    assert set(hess["variant"]) == set(ALL) and hess["hess_zero_frac"].notna().all()
    for v in ("shortcut", "residual", "residual+shortcut"):
        assert f"### near-zero eigenvalues, {v} − plain (same seed)" in text
    assert "| residual win rate |" in text and "| residual+shortcut win rate |" in text
    # the test metrics' paired sections for every skip, each against plain: the table's
    # differences against the seeds' final test accuracies subtracted by hand (one lr)
    df = sj.load_results(tmp_path / "out")
    last = df[df["step"] == df["step"].max()]
    sel, at_plain = rep.tables["paired_selected"], rep.tables["paired_plain_lr"]
    assert set(sel["variant"]) == set(at_plain["variant"]) == set(ALL[1:])
    for v in ("residual", "residual+shortcut"):
        assert f"## Paired differences, {v} − plain (same seed, each at its chosen lr)" in text
        assert f"Reading: the {v} network is significantly better in 0 of 2 configurations" in text
        for table in (sel, at_plain):
            rows = table[(table["variant"] == v) & (table["metric"] == "test_acc")]
            assert set(rows["depth"]) == {2} and len(rows) == 2
            for _, r in rows.iterrows():
                runs = last[(last["depth"] == 2) & (last["activation"] == r["activation"])]
                acc = runs.pivot(index="seed", columns="variant", values="test_acc")
                assert r["diff_mean"] == pytest.approx((acc[v] - acc["plain"]).mean(), abs=1e-12)


def test_deeper_groups_run_in_smaller_blocks(tmp_path, monkeypatch):
    """The block is what auto_block_size gives for the group's depth: 200 rows x 64 units hold
    51.2 kB a matrix, so 1 MiB fits 20 runs of depth 1 (block 16) and 4 of depth 3 (5
    matrices a run), capped at 2 for depth >= 2."""
    made = []
    real = sj.sweep.Executor

    def recording(config, mesh, block_size, segment_evals):
        made.append((config.depth, block_size))
        return real(config, mesh, block_size, segment_evals)

    monkeypatch.setattr(sj.sweep, "Executor", recording)
    grid = sj.Grid(datasets=("moons",), widths=(64,), lrs=(0.5,), seeds=16, steps=2,
                   eval_every=2, n_train=200, n_test=30, depths=(1, 3))
    sj.run_sweep(grid, str(tmp_path / "out"), progress=False)
    assert sorted(made) == [(1, 16), (3, 2)]
    assert grid.block(200, 64, 3) == 2 and grid.block(200, 64) == 16


def test_report_of_a_sweep_without_shortcut_runs_says_what_it_needs(tmp_path, capsys):
    """The report compares each variant with plain, the shortcut first: a plain + residual
    sweep trains and loads, and its report is refused naming what it needs (it failed with a
    KeyError inside the report)."""
    from shortcut_jax import report

    grid = sj.Grid(**{**SMALL, "seeds": 2}, depths=(2,), variants=("plain", "residual"))
    sj.run_sweep(grid, str(tmp_path / "out"), progress=False)
    assert set(sj.load_results(tmp_path / "out")["variant"]) == {"plain", "residual"}
    message = (f"folder: the report compares each variant with plain, the problem's shortcut "
               f"first: expected plain and shortcut runs in {tmp_path / 'out'}, got variants "
               f"['plain', 'residual']")
    with pytest.raises(ValueError) as e:
        report.build(tmp_path / "out")
    assert str(e.value) == message
    assert cli.main(["report", str(tmp_path / "out"), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"

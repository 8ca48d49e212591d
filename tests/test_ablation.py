"""Ablation axes beyond the network: each changes what it should and nothing else, the paired
design holds at every value, bad values are refused before anything compiles, and the report
maps where the shortcut helps over two axes."""

import numpy as np
import pytest

import shortcut_jax as sj
from shortcut_jax import cli
from shortcut_jax import sweep as sweep_lib

BASE = dict(widths=(3,), lrs=(0.5,), seeds=3, steps=6, eval_every=3, n_train=40, n_test=30)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    """linear_xor over noise x shortcut_init, and a two-axis teacher ablation, with reports."""
    out = tmp_path_factory.mktemp("ablation")
    sj.run_sweep(sj.Grid(datasets=("linear_xor",), noise=(0.0, 0.3),
                         shortcut_init=("zeros", "lecun"), **BASE), str(out / "lx"),
                 progress=False)
    sj.run_sweep(sj.Grid(datasets=("teacher",), teacher_shortcut=(0.0, 1.0),
                         **{**BASE, "widths": (2, 4)}), str(out / "teacher"), progress=False)
    return out


def test_data_axes_change_the_data_they_name_and_nothing_else():
    grid = sj.Grid(datasets=("linear_xor", "teacher"), noise=(0.0, 0.3),
                   linear_weight=(0.25, 1.0), teacher_shortcut=(0.0, 2.0), **BASE)
    data, records = sweep_lib.load_all(grid)
    by = {(s.dataset, s.noise, s.linear_weight, s.teacher_shortcut): ds for s, ds in data.items()}
    assert len(by) == 4 + 4
    # noise: the same labels and the same rows, jittered
    a, b = by[("linear_xor", 0.0, 0.25, None)], by[("linear_xor", 0.3, 0.25, None)]
    assert np.array_equal(a.Y_train, b.Y_train) and not np.array_equal(a.X_train, b.X_train)
    # linear_weight: the same balanced labels and x2; x1's sign follows the other rule
    c = by[("linear_xor", 0.0, 1.0, None)]
    assert np.array_equal(a.Y_test, c.Y_test) and np.array_equal(a.X_test[:, 1], c.X_test[:, 1])
    assert not np.array_equal(a.X_test[:, 0], c.X_test[:, 0])
    # teacher_shortcut: the same test inputs (scaled by each train split's statistics: an
    # affine map per column), labels from a teacher with a shortcut
    t0, t2 = by[("teacher", 0.0, None, 0.0)], by[("teacher", 0.0, None, 2.0)]
    for j in range(2):
        assert np.corrcoef(t0.X_test[:, j], t2.X_test[:, j])[0, 1] > 1 - 1e-6
    assert not np.array_equal(t0.Y_test, t2.Y_test)
    assert {r["name"] for r in records} == {"linear_xor", "teacher"}
    assert {r.get("linear_weight") for r in records if r["name"] == "linear_xor"} == {0.25, 1.0}


def test_every_axis_is_a_column(ablation):
    df = sj.load_results(ablation / "lx")
    assert sorted(df["noise"].unique()) == [0.0, 0.3]
    assert set(df["shortcut_init"].dropna()) == {"zeros", "lecun"}
    assert df.loc[df.variant == "plain", "shortcut_init"].isna().all()
    assert (df["linear_weight"] == sj.data.LINEAR_XOR_WEIGHT).all()
    teacher = sj.load_results(ablation / "teacher")
    assert sorted(teacher["teacher_shortcut"].unique()) == [0.0, 1.0]
    assert (teacher["teacher_width"] == 4).all() and teacher["test_gen_err"].notna().all()


def test_the_paired_design_holds_at_every_axis_value(ablation):
    """At step 0, W1 (seen through max_overlap, a function of W1 alone) is one per seed across
    variants, inits and noise; plain and shortcut with W = 0 are the same function; lecun
    starts W non-zero."""
    df = sj.load_results(ablation / "lx")
    start = df[df["step"] == 0]
    for seed, g in start.groupby("seed"):
        assert g["max_overlap"].nunique() == 1, seed
    for _, g in start.groupby(["seed", "noise"]):
        plain = g[g.variant == "plain"]["train_loss"].item()
        zeros = g[g.shortcut_init == "zeros"]["train_loss"].item()
        assert plain == zeros
        assert g[g.shortcut_init == "zeros"]["shortcut_share"].item() == 0.0
        assert g[g.shortcut_init == "lecun"]["shortcut_share"].item() > 0.0
    pairs = sj.stats.paired(df, "test_acc")
    assert len(pairs) == 2 * 2 and set(pairs["n_pairs"]) == {3}  # noise x shortcut_init


def test_the_report_maps_where_the_shortcut_helps_over_two_axes(ablation):
    rep = sj.report.build(ablation / "teacher", hessians=False)
    assert {"paired_vs_width", "paired_vs_teacher_shortcut",
            "heatmap_teacher_shortcut_width"} <= set(rep.figures)
    for axis in ("width", "teacher_shortcut"):
        for metric in ("test_acc", "test_loss"):
            assert f"- {axis}, {metric}: the shortcut is significantly" in rep.markdown
    assert "## The teacher: generalisation error" in rep.markdown
    image = rep.figures["heatmap_teacher_shortcut_width"].get_axes()[0].get_images()[0]
    assert image.get_array().shape == (2, 2)


@pytest.mark.parametrize("change, match", [
    (dict(datasets=("linear_xor",), linear_weight=(0.5, 1.5)),
     r"linear_weight: expected numbers in \[0, 1\], got 1.5"),
    (dict(datasets=("teacher",), teacher_shortcut=(-1.0,)),
     r"teacher_shortcut: expected numbers >= 0, got -1.0"),
    (dict(datasets=("teacher",), teacher_width=(0,)),
     r"teacher_width: expected an integer >= 1, got 0"),
    (dict(datasets=("moons",), teacher_width=(2,)),
     r"teacher_width: applies to the data sets \['teacher'\], not to \['moons'\]"),
    (dict(datasets=("breast_cancer",), noise=(0.1,), n_train=None),
     r"noise: applies to the data sets \[.*'moons'.*\], not to \['breast_cancer'\]"),
    (dict(datasets=("moons",), noise=(-0.1,)), r"noise: expected numbers >= 0, got -0.1"),
    (dict(datasets=("moons",), shortcut_init=("ones",)),
     r"shortcut_init: expected one of \('zeros', 'lecun'\), got 'ones'"),
])
def test_bad_axis_values_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        sj.Grid(**{**BASE, **change})


def test_a_batch_size_above_any_data_sets_training_rows_is_refused_before_compiling(
        tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_lib, "Executor", lambda *a, **k: pytest.fail("compiled"))
    grid = sj.Grid(**{**BASE, "n_train": (40, 200)}, datasets=("moons",), batch_size=(100,))
    with pytest.raises(ValueError, match=r"batch_size: expected at most the 32 training rows of "
                                         r"moons-s0-n40-d2-noise0.1, got 100"):
        sj.run_sweep(grid, str(tmp_path / "x"), progress=False)


def test_the_command_line_takes_every_axis_and_refuses_a_misplaced_one(tmp_path, capsys):
    parser = cli.make_parser()
    args = parser.parse_args(["sweep", "--noise", "0", "0.1", "0.3", "--n-train", "50", "200",
                              "--dim", "2", "8", "--batch-size", "32", "full",
                              "--shortcut-init", "zeros", "lecun", "--dataset", "linear_xor",
                              "teacher", "--linear-weight", "0", "0.5", "1",
                              "--teacher-width", "1", "4", "--teacher-shortcut", "0", "0.5"])
    grid = cli.grid_from_args(args, None)
    assert grid.noise == (0.0, 0.1, 0.3) and grid.n_train == (50, 200) and grid.d == (2, 8)
    assert grid.batch_size == (32, None) and grid.shortcut_init == ("zeros", "lecun")
    assert grid.linear_weight == (0.0, 0.5, 1.0) and grid.teacher_width == (1, 4)
    help_text = " ".join(parser._subparsers._group_actions[0].choices["sweep"]
                         .format_help().split())
    for flag in ("--noise", "--n-train", "--dim", "--batch-size", "--shortcut-init",
                 "--linear-weight", "--teacher-width", "--teacher-shortcut"):
        assert flag in help_text
    assert "(default 4)" in help_text and "(default 0.3333)" in help_text
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--dataset", "moons", "--teacher-width", "2", "--out",
                  str(tmp_path / "x"), "--no-progress"])
    assert "--teacher-width: applies to the data sets ['teacher']" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

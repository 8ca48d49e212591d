"""Fast tests of results.py's and report.py's pure parts, for `mutmut run` (experiments/
MUTATION.md): hand-made rows, Parquet files and folders in tmp_path (no sweep, nothing compiles),
each compared with hand-written values."""

import hashlib
import io
import json
import os
import types

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.optimize
import scipy.stats

from shortcut_jax import diagnostics, report, results, stats
from shortcut_jax.results import ID_COLUMNS
from tests.tables import table

# --- small helpers ------------------------------------------------------------------------------


def test_fmt_gives_each_values_own_text():
    assert results._fmt(None) == ""
    assert results._fmt(np.float32(0.1)) == "0.1"  # float32's shortest text, not 0.10000000149
    assert results._fmt(np.float64(0.1)) == "0.1"  # not "np.float64(0.1)"
    assert results._fmt(0.1) == "0.1"
    assert results._fmt(1e-7) == "1e-07"
    assert results._fmt(np.int64(3)) == "3"
    assert results._fmt("full") == "full"
    assert results._fmt(2) == "2"


def test_same_compares_numbers_to_one_part_in_a_billion_and_the_rest_as_text():
    assert results._same(1, 1.0)
    assert results._same(np.int64(2), 2.0)
    assert results._same(1.0, 1.0 + 5e-10)
    assert not results._same(1.0, 1.0 + 2e-9)
    assert not results._same(0.0, 1e-300)  # no absolute tolerance
    assert not results._same(np.float32(0.1), 0.1)  # float32's 0.1 is 1.5e-8 away
    assert results._same("16", 16) and results._same(16, "16")
    assert results._same("plain", "plain") and not results._same("plain", "shortcut")
    assert results._same(None, None) and not results._same(None, 0)


def test_values_makes_a_list_of_one_value_or_many():
    assert results._values(0.1) == [0.1]
    assert results._values("plain") == ["plain"]
    assert results._values([1, 2]) == [1, 2]
    assert results._values((1, 2)) == [1, 2]
    assert results._values({3}) == [3]


KEY_DEFAULTS = ("xor", 0.0, 200.0, 2.0, 0.05, None, None, None, "plain", 4.0, None, 0.5, 0.0,
                "sgd", "mse", "full", 1.0, "relu")
"""The key of tests.tables.DEFAULTS, by hand (18 values: ID_COLUMNS without step)."""


def test_key_of_a_typed_row_and_of_a_chunks_columns():
    row = table([{"step": 30}]).iloc[0]
    assert results._key(row) == KEY_DEFAULTS
    columns = dict(zip(ID_COLUMNS, KEY_DEFAULTS))
    columns.update(data_seed=0, n_train=200, d=2, width=4, depth=1, seed=np.int64(0),
                   lr=np.float32(0.5), noise=np.float32(0.05), step=99)
    assert results._key(columns) == KEY_DEFAULTS  # float32 0.05: the float of its text
    assert results._key({}) == (None,) * 18  # missing keys: None
    assert results._key({"linear_weight": np.nan, "teacher_width": pd.NA}) == (None,) * 18


def test_differences_of_nested_configs_with_dotted_keys_in_sorted_order():
    a = {"grid": {"lr": [0.1], "n": 1, "d": {"x": 1}}, "x": 1, 2: "a"}
    b = {"grid": {"lr": [0.2], "n": 1, "d": 5}, "y": 2, 2: "a"}
    assert results._differences(a, b) == [("grid.d", {"x": 1}, 5), ("grid.lr", [0.1], [0.2]),
                                          ("x", 1, None), ("y", None, 2)]
    assert results._differences(a, a) == []
    assert results._differences(1, 2, "p.") == [("p", 1, 2)]


OLD = "0123456789abcdef" * 4
NEW = "fedcba9876543210" * 4


def test_refuse_changed_files_names_the_file_and_both_checksums(tmp_path):
    held = [{"path": "a.csv", "sha256": OLD}, {"path": "b.csv", "sha256": OLD}, "junk"]
    now = [{"path": "b.csv", "sha256": NEW}, {"sha256": NEW}, 7]
    with pytest.raises(ValueError) as e:
        results._refuse_changed_files(tmp_path, held, now)
    assert str(e.value) == (f"data: b.csv changed since the sweep in {tmp_path} began (sha256 "
                            "0123456789ab..., now fedcba987654...); restore the file or use "
                            "another --out folder")
    results._refuse_changed_files(tmp_path, held, [{"path": "a.csv", "sha256": OLD}])
    results._refuse_changed_files(tmp_path, held, [{"path": "c.csv", "sha256": NEW}])
    results._refuse_changed_files(tmp_path, held, None)
    results._refuse_changed_files(tmp_path, None, now)
    with pytest.raises(ValueError, match=r"sha256 None\.\.\., now fedcba987654"):
        results._refuse_changed_files(tmp_path, [{"path": "a.csv"}], [{"path": "a.csv",
                                                                       "sha256": NEW}])


def test_wanted_columns_in_table_order_and_unknown_names_listed():
    names = ["a", "b", "c"]
    assert results._wanted_columns(names, None, {}) == ["a", "b", "c"]
    assert results._wanted_columns(names, ["c", "a"], {"b": 1}) == ["a", "c"]
    assert results._wanted_columns(names, "b", {}) == ["b"]
    assert results._wanted_columns(names, [], {}) == []
    with pytest.raises(ValueError) as e:
        results._wanted_columns(names, ["a", "z"], {})
    assert str(e.value) == "z: no such column in this table; expected one of ['a', 'b', 'c']"
    with pytest.raises(ValueError, match=r"^y: no such column"):
        results._wanted_columns(names, None, {"y": 1})


def test_name_missing_lists_the_values_held_without_na():
    held = {"lr": [0.3, None, 0.1, np.nan, 1.0], "variant": ["plain", "shortcut"]}
    results._name_missing(held.get, {"lr": [0.1, 1.0 + 1e-12], "variant": "plain"})
    with pytest.raises(ValueError) as e:
        results._name_missing(held.get, {"variant": "plain", "lr": [0.1, 0.2]})
    assert str(e.value) == "lr=0.2: no such value in this sweep; expected one of [0.1, 0.3, 1.0]"
    with pytest.raises(ValueError, match=r"^variant='res': .* \['plain', 'shortcut'\]$"):
        results._name_missing(held.get, {"variant": "res"})


def test_final_rows_takes_each_runs_last_step_and_selects():
    rows = [{"run": r, "variant": v, "lr": lr, "seed": r, "step": s, "val_acc": r + s / 100}
            for r, (v, lr, last) in enumerate([("plain", 0.1, 20), ("shortcut", 0.1, 20),
                                              ("shortcut", 0.3, 10)])
            for s in range(0, last + 1, 10)]
    df = table(rows)
    out = results.final_rows(df)
    assert out["run"].tolist() == [0, 1, 2] and out["step"].tolist() == [20, 20, 10]
    assert out.index.tolist() == [2, 5, 7]  # the rows of df, not copies
    assert results.final_rows(df, variant="shortcut")["run"].tolist() == [1, 2]
    assert results.final_rows(df, variant=["plain", "shortcut"], lr=0.1)["run"].tolist() == [0, 1]
    assert results.final_rows(df, lr=(0.3,), seed={2})["run"].tolist() == [2]
    with pytest.raises(ValueError) as e:
        results.final_rows(df, step=10)
    runs = [c for c in ID_COLUMNS if c != "step"]
    assert str(e.value) == f"step: not a column to select runs by; expected one of {runs}"
    with pytest.raises(ValueError) as e:
        results.final_rows(df, lr=[0.1, 0.2])
    assert str(e.value) == "lr=0.2: no such value in this sweep; expected one of [0.1, 0.3]"
    with pytest.raises(ValueError, match=r"^shortcut_init='zeros': .* of \[\]$"):
        results.final_rows(df, shortcut_init="zeros")


# --- a hand-made finished folder: chunks, the typed frame, the CSV text ------------------------

BASE = dict(dataset="xor", data_seed=3, n_train=None, d=2, noise=0.05, linear_weight=None,
            teacher_width=None, teacher_shortcut=None, variant="plain", width=4,
            shortcut_init=None, optimizer="sgd", loss_fn="mse", batch_size="16", depth=1,
            activation="relu")
f32 = np.float32


def _chunks():
    """Three chunks: two plain runs (lr 0.1, 0.3) at steps 0, 5; one shortcut run (with
    grad_norm_W) at steps 0, 5; one plain run at step 0 only, batch size 2."""
    return [
        (BASE, [0.1, 0.3], [0, 1], 5,
         {"train_loss": f32([[1.0, 0.5], [2.0, 0.25]]), "val_acc": f32([[0.5, 0.75],
                                                                       [0.5, 0.625]])}, 0),
        ({**BASE, "variant": "shortcut", "shortcut_init": "zeros", "n_train": 200,
          "batch_size": "full", "linear_weight": 0.5},
         [0.1], [0], 5, {"train_loss": f32([[1.0, 0.125]]), "val_acc": f32([[0.5, 0.875]]),
                         "grad_norm_W": f32([[0.1, 0.2]])}, 2),
        ({**BASE, "batch_size": "2"}, [1.0], [7], 5,
         {"train_loss": f32([[3.0]]), "val_acc": f32([[0.25]])}, 3),
    ]


def test_chunk_table_rows_run_major_with_typed_columns():
    t = results._chunk_table(*_chunks()[0])
    assert t.column_names == [*ID_COLUMNS, "run", "train_loss", "val_acc"]
    assert t.column("lr").to_pylist() == [0.1, 0.1, 0.3, 0.3]
    assert t.column("seed").to_pylist() == [0, 0, 1, 1]
    assert t.column("step").to_pylist() == [0, 5, 0, 5]
    assert t.column("run").to_pylist() == [0, 0, 1, 1]
    assert t.column("train_loss").to_pylist() == [1.0, 0.5, 2.0, 0.25]
    assert t.column("dataset").to_pylist() == ["xor"] * 4
    assert t.column("batch_size").to_pylist() == ["16"] * 4
    assert t.column("n_train").to_pylist() == [None] * 4
    assert t.column("noise").to_pylist() == [0.05] * 4
    assert t.column("data_seed").to_pylist() == [3] * 4
    types = {f.name: f.type for f in t.schema}
    assert types["lr"] == pa.float64() and types["seed"] == pa.int64()
    assert types["step"] == pa.int64() and types["run"] == pa.int64()
    assert types["dataset"] == pa.string() and types["batch_size"] == pa.string()
    assert types["noise"] == pa.float64() and types["linear_weight"] == pa.float64()
    assert types["n_train"] == pa.int64() and types["width"] == pa.int64()
    assert types["shortcut_init"] == pa.string() and types["train_loss"] == pa.float32()
    t = results._chunk_table(*_chunks()[1])
    assert t.column("run").to_pylist() == [2, 2]
    assert t.column("width").to_pylist() == [4, 4] and t.column("n_train").to_pylist() == [200] * 2
    assert t.column("grad_norm_W").to_pylist() == [f32(0.1).item(), f32(0.2).item()]


METRICS = ["train_loss", "val_acc", "grad_norm_W"]


def _folder(path, old_csv=None):
    """A finished folder by hand: config.json, the chunks as Parquet files, table.json (no
    manifest: nothing to check); or, with old_csv, a folder of the CSV era."""
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text("{}")
    if old_csv is not None:
        (path / "results.csv").write_text(old_csv)
        return path
    files = []
    for i, chunk in enumerate(_chunks()):
        pq.write_table(results._chunk_table(*chunk), path / f"c{i}.parquet")
        files.append(f"c{i}.parquet")
    cats = {"dataset": ["xor"], "variant": ["plain", "shortcut"], "shortcut_init": ["zeros"],
            "optimizer": ["sgd"], "loss_fn": ["mse"], "batch_size": ["16", "2", "full"],
            "activation": ["relu"]}
    (path / "table.json").write_text(json.dumps({"format": "parquet", "files": files,
                                                 "metrics": METRICS, "rows": 7,
                                                 "categories": cats}))
    return path


def _csv_text(tmp_path, files):
    folder = _folder(tmp_path / "f")
    pq.write_table(results._chunk_table(*_chunks()[0]).slice(0, 0), folder / "empty.parquet")
    buf = io.BytesIO()
    results._write_csv(buf, folder, {"files": files, "metrics": METRICS})
    return buf.getvalue().decode()


def test_write_csv_text_by_hand(tmp_path):
    text = _csv_text(tmp_path, ["c0.parquet", "empty.parquet", "c1.parquet"])
    head = ",".join([*ID_COLUMNS, *METRICS])
    ids0 = "xor,3,,2,0.05,,,,plain,4,,{lr},{seed},sgd,mse,16,1,relu,{step}"
    ids1 = "xor,3,200,2,0.05,0.5,,,shortcut,4,zeros,{lr},{seed},sgd,mse,full,1,relu,{step}"
    lines = [head,
             ids0.format(lr="0.1", seed=0, step=0) + ",1.0,0.5,",
             ids0.format(lr="0.1", seed=0, step=5) + ",0.5,0.75,",
             ids0.format(lr="0.3", seed=1, step=0) + ",2.0,0.5,",
             ids0.format(lr="0.3", seed=1, step=5) + ",0.25,0.625,",
             ids1.format(lr="0.1", seed=0, step=0) + ",1.0,0.5,0.1",
             ids1.format(lr="0.1", seed=0, step=5) + ",0.125,0.875,0.2"]
    assert text == "\n".join(lines) + "\n"  # \n endings, float32 text 0.1 (not 0.100000001)
    assert _csv_text(tmp_path, []) == head + "\n"


def test_frame_fills_batches_into_typed_columns_with_the_tables_categories():
    cols = ["dataset", "batch_size", "shortcut_init", "n_train", "seed", "run", "lr", "val_acc"]
    frame = results._Frame(cols, 3, {"dataset": ["xor", "moons"], "variant": [],
                                     "shortcut_init": ["zeros"], "optimizer": [], "loss_fn": [],
                                     "batch_size": ["full", "16", "2"], "activation": []})

    def batch(dataset, batch_size, init, n_train, seed, run, lr, acc):
        return pa.record_batch({
            "dataset": pa.array(dataset).dictionary_encode(),
            "batch_size": pa.array(batch_size).dictionary_encode(),
            "shortcut_init": pa.array(init, pa.string()).dictionary_encode(),
            "n_train": pa.array(n_train, pa.int64()), "seed": pa.array(seed, pa.int64()),
            "run": pa.array(run, pa.int64()), "lr": pa.array(lr, pa.float64()),
            "val_acc": pa.array(acc, pa.float32())})

    frame.fill(batch(["xor", "moons"], ["full", "2"], [None, "zeros"], [None, 100], [0, 1],
                     [5, 6], [0.1, 0.3], [0.5, None]))
    with pytest.raises(RuntimeError) as e:
        frame.frame()
    assert str(e.value) == "the table changed while it was read: 2 rows, 3 counted"
    frame.fill(batch(["moons"], ["16"], ["zeros"], [7], [2], [7], [1.0], [0.25]))
    df = frame.frame()
    want = pd.DataFrame({
        "dataset": pd.Categorical(["xor", "moons", "moons"], categories=["moons", "xor"]),
        "batch_size": pd.Categorical(["full", "2", "16"], categories=["2", "16", "full"],
                                     ordered=True),
        "shortcut_init": pd.Categorical([None, "zeros", "zeros"], categories=["zeros"]),
        "n_train": pd.array([pd.NA, 100, 7], "Int64"),
        "seed": np.array([0, 1, 2], np.int64), "run": np.array([5, 6, 7], np.int64),
        "lr": [0.1, 0.3, 1.0], "val_acc": [0.5, np.nan, 0.25]})
    pd.testing.assert_frame_equal(df, want)
    assert not df["dataset"].cat.ordered


def _want_frame():
    """load(folder) of _folder by hand."""
    nan = np.nan
    n = 7
    want = pd.DataFrame({
        "dataset": pd.Categorical(["xor"] * n, categories=["xor"]),
        "data_seed": np.full(n, 3, np.int64),
        "n_train": pd.array([pd.NA] * 4 + [200, 200, pd.NA], "Int64"),
        "d": pd.array([2] * n, "Int64"),
        "noise": np.full(n, 0.05),
        "linear_weight": [nan] * 4 + [0.5, 0.5, nan],
        "teacher_width": pd.array([pd.NA] * n, "Int64"),
        "teacher_shortcut": np.full(n, nan),
        "variant": pd.Categorical(["plain"] * 4 + ["shortcut"] * 2 + ["plain"],
                                  categories=["plain", "shortcut"]),
        "width": np.full(n, 4, np.int64),
        "shortcut_init": pd.Categorical([None] * 4 + ["zeros"] * 2 + [None],
                                        categories=["zeros"]),
        "lr": [0.1, 0.1, 0.3, 0.3, 0.1, 0.1, 1.0],
        "seed": np.array([0, 0, 1, 1, 0, 0, 7], np.int64),
        "optimizer": pd.Categorical(["sgd"] * n), "loss_fn": pd.Categorical(["mse"] * n),
        "batch_size": pd.Categorical(["16"] * 4 + ["full"] * 2 + ["2"],
                                     categories=["2", "16", "full"], ordered=True),
        "depth": np.ones(n, np.int64), "activation": pd.Categorical(["relu"] * n),
        "step": np.array([0, 5, 0, 5, 0, 5, 0], np.int64),
        "run": np.array([0, 0, 1, 1, 2, 2, 3], np.int64),
        "train_loss": [1.0, 0.5, 2.0, 0.25, 1.0, 0.125, 3.0],
        "val_acc": [0.5, 0.75, 0.5, 0.625, 0.5, 0.875, 0.25],
        "grad_norm_W": [nan] * 4 + [float(f32(0.1)), float(f32(0.2)), nan]})
    return want


def test_load_of_a_hand_made_folder_equals_the_frame_by_hand(tmp_path):
    folder = _folder(tmp_path / "f")
    pd.testing.assert_frame_equal(results.load(folder), _want_frame())
    assert results.columns_of(folder) == [*ID_COLUMNS, "run", *METRICS]


def test_load_reads_the_columns_and_rows_asked_for(tmp_path):
    folder = _folder(tmp_path / "f")
    want = _want_frame()
    got = results.load(folder, columns=["val_acc", "lr"], variant="plain", step=[5])
    pd.testing.assert_frame_equal(
        got, want.loc[[1, 3], ["lr", "val_acc"]].reset_index(drop=True))
    got = results.load(folder, columns="run", lr=0.1, batch_size=["full", "16"])
    pd.testing.assert_frame_equal(got, want.loc[[0, 1, 4, 5], ["run"]].reset_index(drop=True))
    got = results.load(folder, columns=["seed"], shortcut_init="zeros")
    pd.testing.assert_frame_equal(got, want.loc[[4, 5], ["seed"]].reset_index(drop=True))
    with pytest.raises(ValueError) as e:
        results.load(folder, lr=[0.1, 0.2])
    assert str(e.value) == "lr=0.2: no such value in this sweep; expected one of [0.1, 0.3, 1.0]"
    with pytest.raises(ValueError) as e:
        results.load(folder, seed="x")
    assert str(e.value) == "seed='x': expected values of type int64"
    with pytest.raises(ValueError, match=r"^bogus: no such column"):
        results.load(folder, bogus=1)
    # a value only in rows the other selectors leave out is no error: an empty frame
    assert results.load(folder, variant="shortcut", seed=7).shape == (0, len(want.columns))


def test_columns_of_an_older_csv_folder_puts_run_after_the_ids(tmp_path):
    header = ",".join([*ID_COLUMNS, "train_loss", "val_acc"])
    folder = _folder(tmp_path / "old", old_csv=header + "\n")
    assert results.columns_of(folder) == [*ID_COLUMNS, "run", "train_loss", "val_acc"]


def test_params_rows_finds_each_rows_group_and_place():
    groups = {KEY_DEFAULTS[:11] + (None, None) + KEY_DEFAULTS[13:]: [
        ("g0", pd.MultiIndex.from_arrays([[0.5, 0.5, 0.1], [0, 1, 0]])),
        ("g1", pd.MultiIndex.from_arrays([[0.5], [2]]))]}
    rows = table([{"seed": s, "lr": lr} for lr, s in ((0.5, 2), (0.1, 0), (0.5, 1))])
    group_of, row_of = results._params_rows(groups, rows)
    assert group_of.tolist() == ["g1", "g0", "g0"] and row_of.tolist() == [0, 2, 1]
    rows = table([{"seed": 0}, {"seed": 9, "width": 8}])
    with pytest.raises(ValueError) as e:
        results._params_rows(groups, rows)
    assert str(e.value).startswith("rows: params.npz holds no run {'dataset': 'xor', ")
    assert "'width': 8, " in str(e.value) and "'seed': 9, " in str(e.value)
    assert str(e.value).endswith("}; expected rows of load(folder) of the same folder")
    with pytest.raises(ValueError, match=r"'seed': 3, "):
        results._params_rows(groups, table([{"seed": 3}]))


# --- report.py: tables and sections from hand-made rows ----------------------------------------

def _t(values, confidence=0.95):
    """mean, lo, hi of a Student-t interval by hand (scipy's quantile)."""
    v = np.asarray(values, float)
    half = scipy.stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return v.mean(), v.mean() - half, v.mean() + half


def test_varied_axes_are_those_of_one_datasets_shortcut_runs():
    rows = [{"dataset": ds, "variant": "shortcut", "shortcut_init": "zeros", "d": d, "width": w}
            for ds, d in (("xor", 2), ("moons", 3)) for w in (4, 8)]
    rows += [{"variant": "plain", "noise": n} for n in (0.1, 0.2)]  # plain runs: not counted
    assert report.varied_axes(table(rows)) == ["width"]
    rows += [{"dataset": "xor", "variant": "shortcut", "shortcut_init": "zeros", "d": 5}]
    assert report.varied_axes(table(rows)) == ["width", "d"]
    assert report.varied_axes(table(rows[:4:2])) == []  # d between data sets only


def test_markdown_table_by_hand():
    frame = pd.DataFrame({"a": [1, 2], "b c": ["x", None]})
    assert report._table(frame) == "| a | b c |\n|---|---|\n| 1 | x |\n| 2 | nan |"
    assert report._table(frame.iloc[:0]) == "| a | b c |\n|---|---|"


def _paired_table():
    return pd.DataFrame({"dataset": ["xor", "xor"], "width": [4, 8], "noise": [0.05, np.nan],
                         "diff_mean": [0.012345, -0.5], "diff_lo": [0.01, np.nan],
                         "diff_hi": [0.02, np.nan], "p_ttest": [0.0123456, np.nan],
                         "p_wilcoxon": [np.nan, 0.5], "p_ttest_holm": [0.0246912, np.nan],
                         "p_wilcoxon_holm": [np.nan, 1.0], "detectable": [0.0031234, np.nan],
                         "win_rate": [0.875, 1 / 3], "n_used": [8, 3]})


def test_paired_rows_by_hand():
    out = report._paired_rows(_paired_table(), ["width", "noise"])
    want = pd.DataFrame({
        "setting": ["xor width=4 noise=0.05", "xor width=8"],
        "difference [CI]": ["0.0123 [0.0100, 0.0200]", "-0.5000"],
        "p (t test)": ["0.0123", "–"], "p (Wilcoxon)": ["–", "0.5"],
        "Holm p (t)": ["0.0247", "–"], "Holm p (Wilcoxon)": ["–", "1"],
        "detectable (80% power)": ["0.0031", "–"], "shortcut win rate": ["0.88", "0.33"],
        "pairs": [8, 3]})
    pd.testing.assert_frame_equal(out, want)
    out = report._paired_rows(_paired_table(), ["width"], digits=2, variant="residual")
    assert out["difference [CI]"].tolist() == ["0.01 [0.01, 0.02]", "-0.50"]
    assert out["detectable (80% power)"].tolist() == ["0.00", "–"]
    assert list(out.columns)[7] == "residual win rate"


def test_with_matched_sets_the_plain_lrs_difference_beside_each_row():
    t = _paired_table().assign(variant="shortcut", lr=[1.0, 0.3])
    matched = pd.DataFrame({"dataset": ["xor", "xor"], "width": [8, 4], "lr": [0.1, 0.03],
                            "variant": ["shortcut", "shortcut"], "diff_mean": [0.25, -0.125],
                            "diff_lo": [0.125, np.nan], "diff_hi": [0.5, np.nan],
                            "p_wilcoxon_holm": [0.0421, np.nan], "seed_count": [3, 8]})
    out = report._with_matched(t, matched, ["width"])
    assert out.columns.tolist()[-4:] == ["pairs", "plain's lr", "difference at plain's lr [CI]",
                                         "Holm p (Wilcoxon), plain's lr"]
    assert out["plain's lr"].tolist() == ["0.03", "0.1"]
    assert out["difference at plain's lr [CI]"].tolist() == ["-0.1250", "0.2500 [0.1250, 0.5000]"]
    assert out["Holm p (Wilcoxon), plain's lr"].tolist() == ["–", "0.0421"]
    out = report._with_matched(t, matched, ["width"], digits=1)
    assert out["difference at plain's lr [CI]"].tolist() == ["-0.1", "0.2 [0.1, 0.5]"]
    assert out["difference [CI]"].tolist() == ["0.0 [0.0, 0.0]", "-0.5"]


def test_rows_of_a_spec_matches_text_numbers_and_na():
    runs = table([{"dataset": "xor", "noise": 0.05}, {"dataset": "xor", "noise": np.nan},
                  {"dataset": "moons", "noise": 0.05, "n_train": 100},
                  {"dataset": "xor", "noise": 0.1, "n_train": 100}])
    assert report._rows_of(runs, {"dataset": "xor", "noise": 0.05}).index.tolist() == [0]
    assert report._rows_of(runs, {"noise": None}).index.tolist() == [1]
    assert report._rows_of(runs, {"n_train": 100}).index.tolist() == [2, 3]
    assert report._rows_of(runs, {"n_train": None}).index.tolist() == []
    assert report._rows_of(runs, {}).index.tolist() == [0, 1, 2, 3]


def _untrained_runs(saturation=True):
    """One configuration per width (3 seeds unless said), steps 0 and 10: (val_acc, loss at 0,
    loss at 10, saturated share) per seed."""
    configs = {
        2: [(0.9, 1.0, 0.2, 0.1), (0.95, 1.0, 0.3, 0.0), (1.0, 1.0, 0.1, 0.0)],  # fine
        4: [(0.7, 1.0, 0.2, 0.0), (0.75, 1.0, 0.2, 0.0), (0.8, 1.0, 0.2, 0.0)],  # at chance
        8: [(0.9, 0.5, 0.7, 0.0), (0.95, 0.5, 0.7, 0.0), (1.0, 0.5, 0.7, 0.0)],  # loss rose
        16: [(0.9, 1.0, np.nan, 0.0), (0.95, 1.0, 0.5, 0.0), (0.95, 1.0, 0.3, 0.0)],  # a NaN
        32: [(0.95, 1.0, 0.5, 0.99), (0.95, 1.0, 0.5, 0.99)],  # saturated: exactly 0.99
        64: [(0.95, 1.0, 0.5, 0.98), (0.95, 1.0, 0.5, 0.98)],  # not quite
        128: [(0.75, 1.0, 0.5, 0.0)],  # one seed at chance
        256: [(0.9, 1.0, np.inf, 0.0)],  # every run infinite
        512: [(0.76, 1.0, 0.5, 0.0)],  # one seed, above chance
    }
    rows = []
    for w, seeds in configs.items():
        for s, (acc, start, end, sat) in enumerate(seeds):
            for step, loss in ((0, start), (10, end)):
                rows.append({"width": w, "seed": s, "step": step, "train_loss": loss,
                             "val_acc": acc if step else 0.5,
                             **({"saturated_frac": sat} if saturation else {})})
    return table(rows)


DATA = [({"dataset": "xor"}, types.SimpleNamespace(Y_val=np.array([1.0, 0.0, 0.0, 0.0])), "xor")]


def test_untrained_finds_each_kind_of_failure_by_hand():
    bad = report.untrained(_untrained_runs(), DATA)
    assert bad.columns.tolist() == [*stats.CONFIG_KEYS, "n_seeds", "val_acc_mean", "val_acc_lo",
                                    "val_acc_hi", "chance", "loss_start", "loss_end",
                                    "n_nonfinite", "saturated_frac", "problem", "cause"]
    assert bad["width"].tolist() == [4, 8, 16, 32, 128, 256]
    assert bad["n_seeds"].tolist() == [3, 3, 3, 2, 1, 1]
    assert bad["n_nonfinite"].tolist() == [0, 0, 1, 0, 0, 1]
    assert bad["chance"].tolist() == [0.75] * 6  # the majority class: 3 of 4 are 0
    assert bad["loss_start"].tolist() == [1.0, 0.5, 1.0, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(bad["loss_end"], [0.2, 0.7, 0.4, 0.5, 0.5, np.nan], rtol=1e-12)
    np.testing.assert_allclose(bad["saturated_frac"], [0, 0, 0, 0.99, 0, np.nan], rtol=1e-12)
    m4, lo4, hi4 = _t([0.7, 0.75, 0.8])
    np.testing.assert_allclose(bad["val_acc_mean"], [m4, 0.95, 0.95, 0.95, 0.75, np.nan],
                               rtol=1e-12)
    _, lo8, _ = _t([0.9, 0.95, 1.0])
    np.testing.assert_allclose(bad["val_acc_lo"], [lo4, lo8, 0.95, 0.95, np.nan, np.nan],
                               rtol=1e-12)
    np.testing.assert_allclose(bad["val_acc_hi"], [hi4, 1.0, 0.95, 0.95, np.nan, np.nan],
                               rtol=1e-12)  # fractions: the interval ends at 1
    assert bad["problem"].tolist() == [
        f"validation accuracy {m4:.3f} [{lo4:.3f}, {hi4:.3f}] not above chance (0.750)",
        "training loss rose (0.5 → 0.7)",
        "1 of 3 runs ended with NaN or inf",
        "outputs saturated (99% of the training examples)",
        "validation accuracy 0.750 not above chance (0.750)",
        "1 of 1 runs ended with NaN or inf; validation accuracy nan not above chance (0.750)"]
    high = "learning rate too high"
    assert bad["cause"].tolist() == [
        "too few steps or too small a learning rate, or a task this network cannot fit", high,
        high, high + ": the outputs saturated, their gradients vanished",
        "too few steps or too small a learning rate, or a task this network cannot fit", high]
    bad = report.untrained(_untrained_runs(saturation=False), DATA, confidence=0.5)
    assert bad["width"].tolist() == [4, 8, 16, 128, 256]
    assert bad["saturated_frac"].isna().all()
    _, lo, hi = _t([0.7, 0.75, 0.8], 0.5)
    assert bad["val_acc_lo"].iloc[0] == pytest.approx(lo, rel=1e-12)
    assert bad["val_acc_hi"].iloc[0] == pytest.approx(hi, rel=1e-12)
    # no data: chance NaN, no accuracy is at chance
    assert report.untrained(_untrained_runs(), [])["width"].tolist() == [8, 16, 32, 256]
    assert report.untrained(_untrained_runs()[lambda d: d["width"] == 2], DATA).empty


def test_untrained_column_and_section_by_hand():
    runs = _untrained_runs()
    bad = report.untrained(runs, DATA)
    t = stats.final(runs)[lambda d: d["seed"] == 0][stats.CONFIG_KEYS].reset_index(drop=True)
    col = report._untrained_column(t, bad)
    assert col == ["", bad["problem"].iloc[0], bad["problem"].iloc[1], bad["problem"].iloc[2],
                   bad["problem"].iloc[3], "", bad["problem"].iloc[4], bad["problem"].iloc[5],
                   ""]
    two = bad.iloc[[1, 3]].assign(variant=["plain", "shortcut"], shortcut_init=[None, "zeros"])
    s = report._untrained_section(two, 12, ["dataset", "width", "noise"], 0.9)
    assert s[:2] == ["## Runs that did not train", ""]
    assert s[2] == (
        "2 of 12 configurations did not train: a final validation accuracy not above chance "
        "(the majority class's share of the validation split, against its 90% interval), a "
        "training loss that rose, runs that ended with NaN or inf, or outputs saturated (at "
        "least 99% of the training examples with ŷ(1 − ŷ) < 0.001). They are marked ⚠ in the "
        "tables (summary.csv and selected.csv: the column did_not_train). Learning rates are "
        "chosen on validation accuracy as before: a configuration marked in the selected tables "
        "is one where no other learning rate did better.")
    assert s[3:] == ["", "\n".join([
        "| setting | variant | h | lr | seeds | what went wrong | likely cause |",
        "|---|---|---|---|---|---|---|",
        "| xor noise=0.05 | plain | 8 | 0.5 | 3 | training loss rose (0.5 → 0.7) | learning rate "
        "too high |",
        "| xor noise=0.05 | shortcut (zeros) | 32 | 0.5 | 2 | outputs saturated (99% of the "
        "training examples) | learning rate too high: the outputs saturated, their gradients "
        "vanished |"]), ""]


def test_linear_bound_table_and_section_by_hand(monkeypatch):
    monkeypatch.setattr(report, "linear_loss", lambda X, Y: float(np.sum(X)))  # 0.5 and 2.0
    rows = [{"variant": v, "shortcut_init": i, "loss_fn": f, "seed": s, "step": step,
             "train_loss": loss + (1.0 if step == 0 else 0.0), "grad_norm": g}
            for v, i, f, s, loss, g in (("shortcut", "zeros", "bce", 0, 0.500004, 0.1),
                                        ("shortcut", "zeros", "bce", 1, 0.500006, 0.25),
                                        ("shortcut", "zeros", "bce", 2, 0.75, 0.125),
                                        ("plain", None, "bce", 0, 9.0, 1.0),
                                        ("shortcut", "zeros", "mse", 0, 9.0, 1.0))
            for step in (0, 10)]
    rows += [{"dataset": "moons", "variant": "shortcut", "shortcut_init": "zeros",
              "loss_fn": "bce", "seed": 0, "step": 10, "train_loss": 1.0, "grad_norm": 0.5}]
    runs = table(rows)
    data = [({"dataset": "xor"}, types.SimpleNamespace(X_train=np.array([0.5]), Y_train=None),
             "xor-a"),
            ({"dataset": "moons"}, types.SimpleNamespace(X_train=np.array([2.0]), Y_train=None),
             "moons"),
            ({"dataset": "spirals"}, None, "spirals")]
    t = report.linear_bound_table(data, runs)
    assert t.columns.tolist() == [*stats.RUN_KEYS, "train_loss", "grad_norm", "data_set",
                                  "linear_loss", "above"]
    assert t["seed"].tolist() == [0, 1, 2, 0] and t["data_set"].tolist() == ["xor-a"] * 3 + [
        "moons"]
    assert t["above"].tolist() == [False, True, True, False]
    assert t["linear_loss"].tolist() == [0.5, 0.5, 0.5, 2.0]
    assert t["grad_norm"].tolist() == [0.1, 0.25, 0.125, 0.5]
    assert report.linear_bound_table(data[2:], runs).empty
    monkeypatch.setattr(report, "linear_loss", lambda X, Y: None)
    assert report.linear_bound_table(data, runs) is None
    s = report._linear_bound_section(t, ["dataset", "width"])
    assert s[0] == "## Shamir's bound: the shortcut network against the best linear predictor"
    assert "(by more than 1e-05 relative)" in s[2]
    assert s[3:] == ["", "\n".join([
        "| data set | logistic regression train loss | shortcut runs (bce) | above the bound | "
        "their train loss (max) |", "|---|---|---|---|---|",
        "| moons | 2 | 1 | 0 | – |", "| xor-a | 0.5 | 3 | 2 | 0.75 |"]), "",
        "Runs above the bound (2, the 20 highest):", "", "\n".join([
            "| run | train loss | linear bound | gradient norm |", "|---|---|---|---|",
            "| xor width=4 lr=0.5 seed 2 | 0.75 | 0.5 | 0.125 |",
            "| xor width=4 lr=0.5 seed 1 | 0.5 | 0.5 | 0.25 |"]), ""]
    assert report._linear_bound_section(t[~t["above"]], [])[5:] == [""]


# --- written after the first mutmut run, for its survivors --------------------------------------

def test_chunk_table_types_columns_whatever_the_values_types():
    columns = {**BASE, "noise": 0, "linear_weight": 1, "batch_size": 16}
    t = results._chunk_table(columns, [1, 2], np.array([5, 6], np.int32), 5,
                             {"val_acc": f32([[0.5], [0.25]])}, 0)
    types = {f.name: f.type for f in t.schema}
    assert types["lr"] == pa.float64() and t.column("lr").to_pylist() == [1.0, 2.0]
    assert types["seed"] == pa.int64() and t.column("seed").to_pylist() == [5, 6]
    assert types["noise"] == pa.float64() and types["linear_weight"] == pa.float64()
    assert t.column("batch_size").to_pylist() == ["16", "16"]


def test_differences_keep_a_keys_own_letters():
    assert results._differences({"X": 1}, {"X": 2}) == [("X", 1, 2)]
    assert results._differences({"a": {"X.": 1}}, {"a": {"X.": 2}}) == [("a.X", 1, 2)]


def test_missing_values_are_listed_in_text_order_and_selectors_combine():
    with pytest.raises(ValueError, match=r"expected one of \[10, 9\]$"):
        results._name_missing({"width": [9, 10]}.get, {"width": 11})
    df = table([{"run": r, "width": w, "variant": v, "lr": lr, "step": 10}
                for r, (w, v, lr) in enumerate([(9, "plain", 0.1), (10, "shortcut", 0.1),
                                                (10, "shortcut", 0.3)])])
    with pytest.raises(ValueError, match=r"expected one of \[10, 9\]$"):
        results.final_rows(df, width=11)
    assert results.final_rows(df, variant="shortcut", lr=0.1)["run"].tolist() == [1]
    assert results.final_rows(df, lr=0.1, variant="shortcut")["run"].tolist() == [1]


def test_params_rows_tells_configurations_apart_in_any_row_order():
    def key(width=4.0, activation="relu"):
        k = list(KEY_DEFAULTS)
        k[9], k[11], k[12], k[17] = width, None, None, activation
        return tuple(k)

    groups = {key(): [("a", pd.MultiIndex.from_arrays([[0.5, 0.5], [0, 1]]))],
              key(width=8.0): [("b", pd.MultiIndex.from_arrays([[0.5], [0]]))],
              key(activation="tanh"): [("c", pd.MultiIndex.from_arrays([[0.5, 0.5], [1, 0]]))]}
    rows = table([{"width": 8, "seed": 0}, {"seed": 1}, {"activation": "tanh", "seed": 0},
                  {"seed": 0}, {"activation": "tanh", "seed": 1}])
    group_of, row_of = results._params_rows(groups, rows)
    assert group_of.tolist() == ["b", "a", "c", "a", "c"]
    assert row_of.tolist() == [0, 1, 1, 0, 0]
    with pytest.raises(ValueError, match=r"'depth': 1, 'activation': 'relu'\}; expected rows"):
        results._params_rows(groups, table([{"seed": 3}]))


def test_write_csv_of_a_file_with_one_row(tmp_path):
    text = _csv_text(tmp_path, ["c2.parquet"])
    assert text.splitlines()[1:] == ["xor,3,,2,0.05,,,,plain,4,,1.0,7,sgd,mse,2,1,relu,0,3.0,0.25,"]


def test_load_selects_a_name_given_as_a_number(tmp_path):
    folder = _folder(tmp_path / "f")
    got = results.load(folder, columns=["run", "step"], batch_size=16)
    pd.testing.assert_frame_equal(got, _want_frame().loc[[0, 1, 2, 3], ["step", "run"]])


OLD_CSV = """dataset,data_seed,n_train,d,noise,linear_weight,teacher_width,teacher_shortcut,\
variant,width,shortcut_init,lr,seed,optimizer,loss_fn,batch_size,step,train_loss,val_acc
xor,0,,2,0.05,,,,plain,4,,0.1,0,sgd,mse,full,0,1.0,0.5
xor,0,,2,0.05,,,,plain,4,,0.1,0,sgd,mse,full,5,0.5,0.75
xor,0,,2,0.05,,,,shortcut,4,zeros,0.1,0,sgd,mse,full,0,1.0,0.5
xor,0,,2,0.05,,,,shortcut,4,zeros,0.1,0,sgd,mse,full,5,0.25,nan
"""


def test_load_of_an_older_csv_folder_with_columns_and_selectors(tmp_path):
    folder = _folder(tmp_path / "old", old_csv=OLD_CSV)
    got = results.load(folder, columns=["val_acc", "run"], variant="shortcut")
    pd.testing.assert_frame_equal(got, pd.DataFrame({"run": np.array([1, 1], np.int64),
                                                     "val_acc": [0.5, np.nan]}))
    got = results.load(folder, columns="depth")
    pd.testing.assert_frame_equal(got, pd.DataFrame({"depth": np.ones(4, np.int64)}))
    with pytest.raises(ValueError, match=r"^variant='res': no such value"):
        results.load(folder, variant="res")


def test_columns_of_an_unreadable_csv_names_it(tmp_path):
    folder = _folder(tmp_path / "old", old_csv="")
    with pytest.raises(ValueError) as e:
        results.columns_of(folder)
    assert str(e.value).startswith(f"folder: {folder / 'results.csv'} cannot be read (")


def test_linear_bound_section_word_for_word_and_at_most_20_runs():
    t = table([{"seed": s, "train_loss": 1.0 + s / 100, "grad_norm": 0.5} for s in range(21)])
    t = t.assign(data_set="xor", linear_loss=0.5, above=True)
    s = report._linear_bound_section(t, ["dataset"])
    assert s[1:3] == ["", (
        "Shamir (2018, \"Are ResNets provably better than linear predictors?\"): with the "
        "shortcut from input to output and the cross-entropy, no local minimum has a higher "
        "training loss than unregularised logistic regression on the same training split "
        "(scikit-learn, penalty=None). A run above it (by more than 1e-05 relative) has not "
        "reached a local minimum; its gradient norm says how far it is.")]
    assert s[6] == "Runs above the bound (21, the 20 highest):"
    lines = s[8].splitlines()
    assert len(lines) == 22 and lines[2] == "| xor lr=0.5 seed 20 | 1.2 | 0.5 | 0.5 |"
    assert lines[-1] == "| xor lr=0.5 seed 1 | 1.01 | 0.5 | 0.5 |"


def test_rows_of_with_a_missing_value_after_another_key():
    runs = table([{"dataset": "xor", "noise": np.nan}, {"dataset": "moons", "noise": 0.1}])
    assert report._rows_of(runs, {"dataset": "moons", "noise": None}).empty


def test_untrained_column_matches_keys_whatever_their_missing_value():
    keys = stats.CONFIG_KEYS
    t = table([{"width": 4}, {"width": 8}])[keys]  # NA as NaN, pd.NA and None
    bad = pd.DataFrame([{**{c: t[c].iloc[1] for c in keys}, "problem": "p"}])
    bad = bad.astype(object).where(bad.notna(), None)  # NA as None
    assert report._untrained_column(t, bad) == ["", "p"]


def test_with_matched_leaves_a_row_without_its_plain_lr_blank():
    t = _paired_table().assign(variant="shortcut", lr=[1.0, 0.3])
    matched = pd.DataFrame({"dataset": ["xor"], "width": [8], "lr": [0.1],
                            "variant": ["shortcut"], "diff_mean": [0.25], "diff_lo": [0.125],
                            "diff_hi": [0.5], "p_wilcoxon_holm": [0.0421]})
    out = report._with_matched(t, matched, ["width"])
    assert out["plain's lr"].tolist() == ["nan", "0.1"]
    assert out["difference at plain's lr [CI]"].tolist() == ["nan", "0.2500 [0.1250, 0.5000]"]


def test_linear_bound_table_in_data_order_at_the_margin(monkeypatch):
    monkeypatch.setattr(report, "linear_loss", lambda X, Y: float(np.sum(X) + np.sum(Y)))
    at = 0.5 * (1 + report.LINEAR_BOUND_RTOL)  # exactly at the margin: not above
    rows = [{"dataset": ds, "variant": "shortcut", "shortcut_init": "zeros", "loss_fn": "bce",
             "seed": s, "step": 10, "train_loss": loss, "grad_norm": 0.5}
            for ds, s, loss in (("moons", 0, 1.0), ("xor", 0, at), ("xor", 1, 0.75))]
    rows.insert(0, {"variant": "plain", "seed": 3, "step": 10})
    data = [({"dataset": "spirals"}, None, "spirals"),
            ({"dataset": "xor"}, types.SimpleNamespace(X_train=np.array([0.25]),
                                                       Y_train=np.array([0.25])), "xor"),
            ({"dataset": "moons"}, types.SimpleNamespace(X_train=np.array([0.5]),
                                                         Y_train=np.array([0.5])), "moons")]
    t = report.linear_bound_table(data, table(rows))
    assert t.index.tolist() == [0, 1, 2]
    assert t["data_set"].tolist() == ["xor", "xor", "moons"]
    assert t["above"].tolist() == [False, True, False]


def test_untrained_at_the_edges_sorted_and_with_two_variants():
    rows = []
    configs = {  # width: (variant, per seed (val_acc, loss at 0, loss at 10))
        8: ("plain", [(0.95, 0.5, 0.5), (0.95, 0.5, 0.5)]),  # loss the same: did not rise
        4: ("shortcut", [(0.7, 1.0, 0.5), (0.82, 1.0, 0.5)]),  # mean 0.76, interval under
        2: ("plain", [(0.75, 1.0, 0.5), (0.75, 1.0, 0.5)]),  # interval [0.75, 0.75] at chance
        16: ("shortcut", [(0.95, 1.0, 0.5), (0.95, 1.0, 0.5)])}  # fine
    for w, (v, seeds) in configs.items():
        for s, (acc, start, end) in enumerate(seeds):
            for step, loss in ((0, start), (10, end)):
                rows.append({"width": w, "variant": v, "seed": s, "step": step,
                             "shortcut_init": "zeros" if v == "shortcut" else None,
                             "train_loss": loss, "val_acc": acc})
    bad = report.untrained(table(rows), DATA)
    assert bad["width"].tolist() == [2, 4]  # sorted: plain before shortcut, then by width
    assert bad["problem"].tolist()[0] == ("validation accuracy 0.750 [0.750, 0.750] not above "
                                          "chance (0.750)")
    _, lo, hi = _t([0.7, 0.82])
    assert lo < 0 and hi > 1  # two seeds: the interval is all of [0, 1]
    assert bad["problem"].tolist()[1] == ("validation accuracy 0.760 [0.000, 1.000] not above "
                                          "chance (0.750)")
    none = report.untrained(table(rows)[lambda d: d["width"] == 16], DATA)
    assert none.empty and none.columns.tolist() == bad.columns.tolist()


def test_linear_loss_fits_to_1e_10_in_float64_whatever_the_inputs_dtype():
    """The fit's loss within 1e-10 of scipy's BFGS on the same float64 values: scikit-learn's
    default tol (1e-4) and a float32 fit each miss by about 1e-8 here (measured)."""
    rng = np.random.default_rng(0)
    X32 = rng.normal(size=(40, 2)).astype(np.float32)
    X = X32.astype(np.float64)  # the values a float32 input holds
    Y = (rng.random(40) < 1 / (1 + np.exp(-X @ [1.0, -0.5]))).astype(float)

    def loss(p):
        z = X @ p[:2] + p[2]
        return np.mean(Y * np.logaddexp(0, -z) + (1 - Y) * np.logaddexp(0, z))

    def grad(p):
        r = 1 / (1 + np.exp(-(X @ p[:2] + p[2]))) - Y
        return np.append(X.T @ r, r.sum()) / len(Y)

    best = scipy.optimize.minimize(loss, np.zeros(3), jac=grad, method="BFGS",
                                   options={"gtol": 1e-12})
    assert report.linear_loss(X, Y) == pytest.approx(best.fun, rel=1e-10)
    assert report.linear_loss(X32, Y.astype(np.float32)) == pytest.approx(best.fun, rel=1e-10)


# --- written after the run of the functions the fast tests also reach: folder checks ----------

RERUN = "rerun the command that wrote the folder to rebuild it from the chunks"


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_folder_not_a_sweep_unfinished_or_without_parquet_is_named(tmp_path):
    empty = tmp_path / "e"
    empty.mkdir()
    with pytest.raises(ValueError) as e:
        results.load(empty)
    assert str(e.value) == (f"folder: {empty} is not a sweep folder (no config.json); expected a "
                            "folder written by run_sweep, `shortcut-jax sweep` or `compare`")
    (empty / "config.json").write_text("{}")
    with pytest.raises(ValueError) as e:
        results.columns_of(empty)
    assert str(e.value) == (f"folder: {empty} is an unfinished sweep (no results.csv); rerun the "
                            "command that started it to finish it")
    folder = _folder(tmp_path / "f")
    with pytest.raises(ValueError, match=r"unfinished sweep \(no params\.npz\)"):
        results._finished(folder)  # by default params.npz too
    assert results._finished(folder, table_only=True).path == folder
    old = _folder(tmp_path / "old", old_csv=OLD_CSV)
    with pytest.raises(ValueError) as e:
        results._table(results.RunFolder(old))
    assert str(e.value) == (f"folder: {old} has no Parquet table (table.json); it was written "
                            "before the kit stored results as Parquet, and its results.csv is "
                            "the table")


def test_checksums_of_the_table_and_its_files_are_checked_per_file_version(tmp_path):
    folder = _folder(tmp_path / "f")
    names = ["table.json", "c0.parquet", "c1.parquet", "c2.parquet"]
    manifest = {n: _sha(folder / n) for n in names}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert results.RunFolder(folder).read_manifest() == manifest
    assert results.RunFolder(folder).manifest == manifest
    assert results.RunFolder(folder).timings == {} and results.RunFolder(folder).counts == {}
    assert len(results.load(folder)) == 7
    c1 = folder / "c1.parquet"
    info = c1.stat()
    c1.write_bytes(c1.read_bytes()[:-1] + b"!")  # the same size, a new time: damaged
    os.utime(c1, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))  # new even on a coarse clock
    with pytest.raises(ValueError) as e:
        results.load(folder)
    assert str(e.value) == f"folder: {c1} fails its recorded checksum (damaged?); {RERUN}"
    c1.write_bytes(c1.read_bytes() + b"!")  # another size at the first time: damaged
    os.utime(c1, ns=(info.st_atime_ns, info.st_mtime_ns))
    with pytest.raises(ValueError, match="c1.parquet fails its recorded checksum"):
        results.load(folder)
    pq.write_table(results._chunk_table(*_chunks()[1]), c1)  # whole again
    assert len(results.load(folder)) == 7
    (folder / "c2.parquet").unlink()
    del manifest["c2.parquet"]  # a file the manifest does not know, missing: named too
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError) as e:
        results.load(folder)
    assert str(e.value) == (f"folder: {folder / 'c2.parquet'} fails its recorded checksum "
                            f"(damaged?); {RERUN}")


def test_an_unreadable_table_or_manifest_is_named_with_what_to_do(tmp_path):
    folder = _folder(tmp_path / "f")
    (folder / "table.json").write_text("{")
    with pytest.raises(ValueError) as e:
        results.load(folder)
    assert str(e.value).startswith(f"folder: {folder / 'table.json'} cannot be read (")
    assert str(e.value).endswith(f"): {RERUN}")
    path = folder / "manifest.json"
    path.write_text("[")
    with pytest.raises(ValueError) as e:
        results.RunFolder(folder).read_manifest()
    assert str(e.value).startswith(f"folder: {path} cannot be read (")
    assert str(e.value).endswith("): it was cut short or edited; rerun the command that wrote "
                                 "the folder: it checks every chunk and rebuilds the manifest")
    for held in ([], {"a": 1}, {"a": "x", "b": None}):
        path.write_text(json.dumps(held))
        with pytest.raises(ValueError) as e:
            results.RunFolder(folder).read_manifest()
        assert str(e.value) == (f"folder: {path} is not a manifest (expected {{file: sha256}}); "
                                "rerun the command that wrote the folder: it checks every chunk "
                                "and rebuilds the manifest")
    path.write_text(json.dumps({}))
    assert results.RunFolder(folder).read_manifest() == {}


OLDER_CSV = """dataset,data_seed,n_train,d,noise,linear_weight,teacher_width,teacher_shortcut,\
variant,width,shortcut_init,lr,seed,optimizer,loss_fn,batch_size,step,train_loss,val_acc
xor,0,,2,0.05,,,,plain,4,,0.1,0,sgd,mse,16,0,1.0,
xor,0,,2,0.05,,,,plain,4,,0.1,0,sgd,mse,16,5,0.5,nan
xor,0,200,2,0.05,0.5,,,shortcut,4,zeros,0.1,0,sgd,mse,full,0,NaN,0.5
xor,0,200,2,0.05,0.5,,,shortcut,4,zeros,0.1,0,sgd,mse,2,0,-nan,0.25
"""


def test_load_types_an_older_csv_folder_by_hand(tmp_path):
    """A folder written before the Parquet table and the network family: no depth or
    activation column (depth 1, relu), NA as empty text, NaN metrics in the spellings written."""
    got = results.load(_folder(tmp_path / "old", old_csv=OLDER_CSV))
    nan, na = np.nan, pd.NA
    want = pd.DataFrame({
        "dataset": pd.Categorical(["xor"] * 4), "data_seed": np.zeros(4, np.int64),
        "n_train": pd.array([na, na, 200, 200], "Int64"), "d": pd.array([2] * 4, "Int64"),
        "noise": np.full(4, 0.05), "linear_weight": [nan, nan, 0.5, 0.5],
        "teacher_width": pd.array([na] * 4, "Int64"), "teacher_shortcut": np.full(4, nan),
        "variant": pd.Categorical(["plain", "plain", "shortcut", "shortcut"]),
        "width": np.full(4, 4, np.int64),
        "shortcut_init": pd.Categorical([nan, nan, "zeros", "zeros"], categories=["zeros"]),
        "lr": np.full(4, 0.1), "seed": np.zeros(4, np.int64),
        "optimizer": pd.Categorical(["sgd"] * 4), "loss_fn": pd.Categorical(["mse"] * 4),
        "batch_size": pd.Categorical(["16", "16", "full", "2"], categories=["2", "16", "full"],
                                     ordered=True),
        "depth": np.ones(4, np.int64), "activation": pd.Categorical(["relu"] * 4),
        "step": np.array([0, 5, 0, 0], np.int64), "run": np.array([0, 0, 1, 2], np.int64),
        "train_loss": [1.0, 0.5, nan, nan], "val_acc": [nan, nan, 0.5, 0.25]})
    pd.testing.assert_frame_equal(got, want)
    folder = _folder(tmp_path / "old2", old_csv=OLDER_CSV)
    got = results.load(folder, columns="run", batch_size="2", variant="shortcut")
    pd.testing.assert_frame_equal(got, pd.DataFrame({"run": np.array([2], np.int64)}))
    swapped = "".join(",".join([b, a, *rest]) + "\n"  # data_seed before dataset
                      for a, b, *rest in (line.split(",") for line in OLDER_CSV.splitlines()))
    with pytest.raises(ValueError) as e:
        results.load(_folder(tmp_path / "bad", old_csv=swapped))
    ids = [c for c in ID_COLUMNS if c not in ("depth", "activation")]
    assert str(e.value) == (f"folder: {tmp_path / 'bad' / 'results.csv'} cannot be read "
                            f"(expected the columns {ids} first); {RERUN}")


def _census_runs():
    """A Hessian table by hand: width 2 with 4 seeds, width 8 with 1 (seed 0's values), width 16
    without a census (NaN: the network family); shortcut rows first."""
    per = {  # (variant, width): per seed (hess_zero, crit_total, any_total, n_dead,
        # n_always_active, crit_dead, crit_rescaling), n_params
        ("shortcut", 2): ([(4, 4, 2, 0, 1, 4, 0), (5, 4, 2, 0, 1, 5, 0), (4, 4, 2, 0, 1, 4, 0),
                           (5, 4, 2, 0, 1, 5, 0)], 19),
        ("shortcut", 8): ([(4, 4, 2, 0, 1, 4, 0)], 67),
        ("plain", 2): ([(6, 5, 3, 1, 0, 4, 1), (6, 5, 3, 1, 0, 4, 1), (7, 5, 3, 2, 0, 4, 1),
                        (7, 5, 3, 2, 0, 4, 1)], 17),
        ("plain", 8): ([(6, 5, 3, 1, 0, 4, 1)], 65),
        ("shortcut", 16): ([(3, np.nan, np.nan, 0, 0, np.nan, np.nan)], 131),
        ("plain", 16): ([(9, np.nan, np.nan, 0, 0, np.nan, np.nan)], 129)}
    rows = []
    for (v, w), (seeds, P) in per.items():
        for s, (zero, crit, any_, dead, always, c_dead, c_resc) in enumerate(seeds):
            rows.append({"variant": v, "width": w, "seed": s, "step": 10,
                         "lr": 1.0 if v == "shortcut" else 0.5,
                         "shortcut_init": "zeros" if v == "shortcut" else None,
                         "n_params": P, "hess_zero": float(zero), "crit_total": crit,
                         "any_total": any_, "n_dead": float(dead), "n_silent": 0.0,
                         "n_always_active": float(always), "n_duplicated": 0.0,
                         **{f"crit_{c}": 0.0 for c in diagnostics.CAUSES},
                         "crit_dead": c_dead, "crit_rescaling": c_resc,
                         "crit_always_active": float(always)})
    return table(rows)


def test_the_census_section_word_for_word():
    s = report._census_section(_census_runs(), ["width"], 0.9)
    assert s[:2] == ["### Where the near-zero directions come from: a census of the units", ""]
    assert s[2] == (
        "Per run at its final parameters (diagnostics.singularity_census, on the training "
        "inputs): dead units (active on no row: d + 2 zero directions each at any point), "
        "silent ones (output weight 0), units active on every row (with the shortcut their "
        "W1 row and b1 trade with W and b2: d + 1 directions at a minimum, d at any point; "
        "without it d fewer), units duplicating another's activation pattern (exactly, no "
        "tolerance) and the rescaling symmetry of each live unit (1 at a minimum, none "
        "elsewhere). Means over runs of the counts; the prediction assumes a minimum, which "
        "training reaches only approximately, so a rescaling direction counts as near-zero "
        "only where the gradient is small enough.")
    assert s[3] == "" and s[5] == ""
    assert s[4].splitlines() == [
        "| setting | variant | runs | P | near-zero (measured) | predicted at a minimum | exact "
        "at any point | runs measured = predicted | dead | silent | always active | duplicated |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        "| xor width=2 | plain | 4 | 17 | 6.50 | 5.00 | 3.00 | 0% | 1.50 | 0.00 | 0.00 | 0.00 |",
        "| xor width=8 | plain | 1 | 65 | 6.00 | 5.00 | 3.00 | 0% | 1.00 | 0.00 | 0.00 | 0.00 |",
        "| xor width=2 | shortcut | 4 | 19 | 4.50 | 4.00 | 2.00 | 50% | 0.00 | 0.00 | 1.00 | "
        "0.00 |",
        "| xor width=8 | shortcut | 1 | 67 | 4.00 | 4.00 | 2.00 | 100% | 0.00 | 0.00 | 1.00 | "
        "0.00 |"]
    assert s[6:8] == [
        "Paired difference shortcut − plain (same seed) of the near-zero count, split by "
        "cause (the predicted counts at a minimum; 'unexplained' = measured − predicted; "
        "causes that are 0 in every pair left out):", ""]

    def ci(d):  # the 90% t interval of the differences, by hand
        d = np.asarray(d, float)
        half = scipy.stats.t.ppf(0.95, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
        return f"{d.mean():.2f} [{d.mean() - half:.2f}, {d.mean() + half:.2f}]"

    assert s[8].splitlines() == [
        "| setting | near-zero (measured) | dead | rescaling | always active | unexplained |",
        "|---|---|---|---|---|---|",
        f"| xor width=2 | {ci([-2, -1, -3, -2])} | {ci([0, 1, 0, 1])} | -1.00 [-1.00, -1.00] | "
        f"1.00 [1.00, 1.00] | {ci([-1, 0, -2, -1])} |",
        "| xor width=8 | -2.00 | 0.00 | -1.00 | 1.00 | -1.00 |"]
    assert s[9:] == [""]
    same = _census_runs().assign(hess_zero=5.0)  # the measured count the same in every pair
    view = report._census_section(same, ["width"], 0.9)[8].splitlines()
    assert view[0] == ("| setting | near-zero (measured) | dead | rescaling | always active | "
                       "unexplained |")
    assert view[3].startswith("| xor width=8 | 0.00 | 0.00 | -1.00 | 1.00 | ")
    no_census = _census_runs()[lambda d: d["width"] == 16]
    assert report._census_section(no_census, ["width"], 0.9) == []


def test_load_of_a_csv_folder_with_the_network_familys_columns(tmp_path):
    """Runs that differ only in activation are two runs; a name spelled like a missing value
    (NA) is a name; metrics written as integers are floats."""
    head = ",".join([*ID_COLUMNS, "train_loss", "grad_norm"])
    ids = "NA,0,,2,0.05,,,,plain,4,,0.1,0,sgd,mse,full,1,{act},{step}"
    lines = [head] + [ids.format(act=a, step=s) + f",1.0,{g}"
                      for a, s, g in (("relu", 0, 1), ("tanh", 0, 2), ("tanh", 5, 3))]
    got = results.load(_folder(tmp_path / "old", old_csv="\n".join(lines) + "\n"))
    assert got["run"].tolist() == [0, 1, 1]
    assert got["dataset"].tolist() == ["NA"] * 3
    assert got["grad_norm"].dtype == np.float64 and got["grad_norm"].tolist() == [1.0, 2.0, 3.0]


def test_verdict_names_the_variant_keeps_the_level_and_counts_an_empty_table():
    """A skip between hidden layers is named as a network; the level given is the one used
    (adjusted p 0.03: significant at 0.05, not at 0.01); an empty table tested nothing."""
    t = pd.DataFrame({"dataset": ["xor"], "width": [4], "diff_mean": [0.25], "diff_lo": [0.125],
                      "diff_hi": [0.375], "p_wilcoxon_holm": [0.03], "n_tests": [3]})
    assert report.verdict(t, "test_acc", ["width"], 0.05, "residual") == (
        "the residual network is significantly better in 1 of 1 configurations, significantly "
        "worse in 0, and within noise in the other 0; better at xor width=4 (+0.2500 "
        "[+0.1250, +0.3750], Holm p 0.03) (Holm over the 3 tested).")
    assert report.verdict(t, "test_acc", ["width"], 0.01).startswith(
        "the shortcut is significantly better in 0 of 1 configurations")
    assert report.verdict(t.iloc[:0], "test_acc", ["width"]) == (
        "the shortcut is significantly better in 0 of 0 configurations, significantly worse in "
        "0, and within noise in the other 0 (Holm over the 0 tested).")


def test_with_matched_names_the_win_rate_of_its_variant():
    t = _paired_table().assign(lr=[1.0, 0.3])
    matched = t[["dataset", "width"]].assign(lr=0.5, diff_mean=0.0, diff_lo=np.nan,
                                             diff_hi=np.nan, p_wilcoxon_holm=np.nan)
    assert "shortcut win rate" in report._with_matched(t, matched, ["width"]).columns
    out = report._with_matched(t, matched, ["width"], variant="residual")
    assert "residual win rate" in out.columns and "shortcut win rate" not in out.columns


def test_the_census_leaves_out_a_cause_that_varies_but_not_within_pairs():
    """crit_duplicated 2 at width 2 and 5 at width 8 for both variants: a column of several
    values whose every paired difference is 0, left out of the paired table."""
    runs = _census_runs()
    runs["crit_duplicated"] = runs["width"].map({2: 2.0, 8: 5.0, 16: np.nan})
    view = report._census_section(runs, ["width"], 0.9)[8].splitlines()
    assert view[0] == ("| setting | near-zero (measured) | dead | rescaling | always active | "
                       "unexplained |")

"""Results folders: sizes and provenance from the data loaded, damaged files caught, named and
recomputed, one writer per folder, and the typed table (load, load_params)."""

import csv
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import shortcut_jax as sj
from shortcut_jax import results
from shortcut_jax import sweep as sweep_lib
from tests.folders import same_folders

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(datasets=("xor",), widths=(3,), lrs=(0.5,), seeds=4, steps=10, eval_every=5,
             n_train=40, n_test=30, block_size=2, chunk_size=2)  # 2 groups x 2 chunks


def write_csv(path, n=300, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.where(X[:, 0] + X[:, 1] * X[:, 2] > 0, "yes", "no")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"x{i}" for i in range(d)] + ["label"])
        w.writerows([[*map(str, x), lab] for x, lab in zip(X, y)])
    return path


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
    return out


# --- 1, 2: sizes, checks and provenance from the data loaded ------------------------------


def test_a_csv_is_sized_checked_and_recorded_as_loaded(tmp_path):
    path = write_csv(tmp_path / "f.csv")  # 300 rows: 90 test, 210 training part, 42 val, 168
    grid = sj.Grid(csv=str(path), target="label", widths=(3,), lrs=(0.5,), seeds=2, steps=4,
                   eval_every=2, batch_size=(150,))
    sj.run_sweep(grid, str(tmp_path / "ok"), progress=False)
    record = json.loads((tmp_path / "ok" / "config.json").read_text())["config"]["data"][0]
    assert {k: record[k] for k in ("name", "n_train", "n_val", "n_test", "d")} == {
        "name": "f", "n_train": 168, "n_val": 42, "n_test": 90, "d": 5}
    assert record["label_map"] == {"no": 0, "yes": 1}
    assert record["sha256"] == sj.data.file_sha256(path) and record["path"] == str(path)
    with pytest.raises(ValueError, match=r"batch_size: expected at most the 168 training rows "
                                         r"of f-s0, got 250"):
        sj.run_sweep(grid.__class__(**{**grid.to_dict(), "batch_size": (250,)}),
                     str(tmp_path / "big"), progress=False)


def test_block_and_chunk_sizes_come_from_the_loaded_rows():
    grid = sj.Grid(datasets=("breast_cancer",), widths=(64,), seeds=1000, memory_budget=1 << 24)
    data = sj.data.breast_cancer(0)
    config = grid.groups()[0].config
    n_train = len(data.Y_train)
    assert n_train == 318
    block = grid.block(n_train, 64)
    assert block == sweep_lib.auto_block_size(318, 64) == 8  # not the synthetic 200 rows' 16
    size = sweep_lib.chunk_size_for(grid, config, 2000, 1, data)
    rows = n_train + len(data.Y_val) + len(data.Y_test)
    per_run = sweep_lib.estimate_bytes_per_run(config, 30)  # d = 30 features, not 2
    want = ((1 << 24) - block * rows * 64 * 32) // per_run
    assert 8 < want < 2000 and size == -(-want // block) * block  # whole blocks


def test_synthetic_records_hold_the_task_and_sizes(whole):
    record = json.loads((whole / "config.json").read_text())["config"]["data"]
    assert record == [{"name": "xor", "n_train": 32, "n_val": 8, "n_test": 30, "d": 2,
                       "label_map": {"0": 0, "1": 1}, "data_seed": 0, "noise": 0.05}]


def test_resuming_with_a_changed_csv_is_refused_naming_the_file(tmp_path):
    path = write_csv(tmp_path / "f.csv", n=80)
    grid = sj.Grid(csv=str(path), target="label", widths=(3,), lrs=(0.5,), seeds=2, steps=4,
                   eval_every=2)
    sj.run_sweep(grid, str(tmp_path / "out"), progress=False)
    write_csv(path, n=80, seed=1)
    with pytest.raises(ValueError, match=rf"data: {path} changed since the sweep in .* began "
                                         r"\(sha256 [0-9a-f]{12}\.\.\., now [0-9a-f]{12}"):
        sj.run_sweep(grid, str(tmp_path / "out"), progress=False)


# --- 3: damaged files are caught, named, moved aside and recomputed -----------------------


def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _empty(p):
    p.write_bytes(b"")


def _flip(p):
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))


@pytest.mark.parametrize("suffix", ["npz", "parquet"])
@pytest.mark.parametrize("damage", [_truncate, _empty, _flip], ids=["truncated", "empty",
                                                                     "flipped-byte"])
def test_a_damaged_chunk_is_named_moved_aside_and_recomputed(whole, tmp_path, damage, suffix):
    out = tmp_path / "run"
    sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
    chunk = sorted((out / "chunks").glob(f"*.{suffix}"))[1]
    original = chunk.read_bytes()
    damage(chunk)
    if suffix == "parquet":  # the table's own file: loading it names it
        with pytest.raises(ValueError, match=rf"{chunk.name} fails its recorded checksum"):
            sj.load_results(out)
    with pytest.warns(results.DamagedFileWarning, match=rf"{chunk.name} fails its recorded "
                                                        r"checksum: moved to .*chunks/damaged"):
        sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
    kept = list((out / "chunks" / "damaged").glob(chunk.name + ".*"))
    assert len(kept) == 1 and kept[0].read_bytes() != original  # kept aside, not deleted
    assert chunk.read_bytes() == original  # recomputed bitwise
    same_folders(whole, out)


def test_a_chunk_copied_from_another_sweep_is_caught(whole, tmp_path):
    out, other = tmp_path / "run", tmp_path / "other"
    sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
    sj.run_sweep(sj.Grid(**{**SMALL, "steps": 20, "eval_every": 10}), str(other),
                 progress=False)
    name = sorted((out / "chunks").glob("*.npz"))[0].name
    (out / "chunks" / name).write_bytes((other / "chunks" / name).read_bytes())
    with pytest.warns(results.DamagedFileWarning, match=rf"{name} fails its recorded checksum"):
        sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
    same_folders(whole, out)


@pytest.mark.parametrize("name", ["table.json", "results.csv", "params.npz"])
def test_a_damaged_results_file_is_moved_aside_and_rebuilt(whole, tmp_path, name):
    out = tmp_path / "run"
    sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
    _flip(out / name)
    if name != "results.csv":  # the table is Parquet: load reads no results.csv
        with pytest.raises(ValueError, match=rf"{name} fails its recorded checksum"):
            sj.load_results(out) if name == "table.json" else sj.load_params(out)
    with pytest.warns(results.DamagedFileWarning, match=rf"{name} fails its recorded checksum"):
        sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
    assert len(list((out / "chunks" / "damaged").glob(name + ".*"))) == 1
    same_folders(whole, out)


SWEEP_CLI = ["-m", "shortcut_jax.cli", "sweep", "--dataset", "xor", "--widths", "3", "--lrs",
             "0.5", "--seeds", "4", "--steps", "10", "--eval-every", "5", "--n-train", "40",
             "--n-test", "30", "--block-size", "2", "--chunk-size", "2", "--no-progress",
             "--cpu-devices", "1"]


def test_sigkill_between_a_chunks_temporary_file_and_its_rename(whole, tmp_path):
    """The fault hook kills the sweep right after the second chunk's temporary file is written;
    the rerun removes the leftover, recomputes that chunk and ends as an uninterrupted run."""
    out = tmp_path / "killed"
    target = sorted(p.name for p in (whole / "chunks").glob("*.npz"))[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", results.KILL_ENV: target}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, *SWEEP_CLI, "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert list((out / "chunks").glob(f".{target}.*.tmp")), "no temporary file left behind"
    assert not (out / "chunks" / target).exists() and not (out / "results.csv").exists()
    env.pop(results.KILL_ENV)
    subprocess.run([sys.executable, *SWEEP_CLI, "--out", str(out)], env=env, check=True,
                   capture_output=True, text=True, timeout=300)
    assert not list((out / "chunks").glob(".*.tmp"))
    same_folders(whole, out)


# --- 4: one writer per folder ------------------------------------------------------------

HOLD = """
import sys, time
from shortcut_jax.results import RunFolder
with RunFolder(sys.argv[1]).writing():
    print("holding", flush=True)
    time.sleep(120)
"""


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holder_leaves_no_lock(
        tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(RuntimeError, match=rf"out: {out} is being written by process "
                                               rf"{holder.pid} on .*; wait for it"):
            sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
        assert not (out / "chunks").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)  # the kernel released the lock
    assert (out / "results.csv").exists()


# --- the typed table ---------------------------------------------------------------------


def test_load_gives_one_typed_row_per_run_and_eval_step(whole):
    df = sj.load_results(whole)
    assert len(df) == 2 * 4 * 3  # variants x seeds x evals
    assert list(df.columns[:len(results.ID_COLUMNS)]) == list(results.ID_COLUMNS)
    for c in ("dataset", "variant", "optimizer", "loss_fn", "batch_size", "shortcut_init"):
        assert isinstance(df[c].dtype, pd.CategoricalDtype), c
    for c in ("data_seed", "width", "seed", "step"):
        assert df[c].dtype == np.int64, c
    assert df["n_train"].dtype == "Int64" and df["lr"].dtype == np.float64
    assert df["train_loss"].dtype == np.float64 and df["val_acc"].dtype == np.float64
    assert df["linear_weight"].isna().all() and df["teacher_width"].isna().all()
    assert df.loc[df.variant == "plain", "shortcut_init"].isna().all()
    assert set(df.loc[df.variant == "shortcut", "shortcut_init"]) == {"zeros"}
    assert list(df["batch_size"].cat.categories) == ["full"]
    # the same numbers as the CSV text (float32 as trained, widened exactly), parsed
    # independently
    with open(whole / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(np.float32(r["test_loss"])) for r in rows] == df["test_loss"].tolist()
    assert results.RunFolder(whole).config()["config"]["grid"]["seeds"] == 4


def test_load_params_stacks_the_selected_runs_in_row_order(whole):
    df = sj.load_results(whole)
    rows = results.final_rows(df, variant="shortcut", seed=[2, 0])
    assert rows["seed"].tolist() == [0, 2]  # table order, not selector order
    p = sj.load_params(whole, variant="shortcut", seed=[2, 0])
    assert p.W1.shape == (2, 3, 2) and p.W.shape == (2, 1, 2)
    with np.load(whole / "params.npz") as z:
        group = next(k.split("/")[0] for k in z.files if "shortcut" in k)
        seeds = z[f"{group}/seed"].tolist()
        np.testing.assert_array_equal(p.W1[1], z[f"{group}/W1"][seeds.index(2)])
    plain = sj.load_params(whole, variant="plain")
    assert plain.W is None and plain.W1.shape == (4, 3, 2)
    # the parameters reproduce the recorded final loss
    data = sj.data.get_dataset("xor", 0, n_train=40, n_test=30)
    one = sj.Params(*(None if a is None else a[0] for a in p))
    np.testing.assert_allclose(sj.loss(one, data.X_train, data.Y_train),
                               rows["train_loss"].iloc[0], rtol=1e-6)


def test_params_of_takes_rows_in_any_order_and_names_a_run_it_does_not_hold(whole):
    """Each row's parameters against params.npz read by a loop over its runs' (lr, seed);
    a row whose seed no run has is a ValueError naming the run."""
    rows = results.final_rows(sj.load_results(whole), variant="shortcut").iloc[[3, 0, 2, 1]]
    p = results.params_of(whole, rows)
    with np.load(whole / "params.npz") as z:
        group = next(k.split("/")[0] for k in z.files if "shortcut" in k)
        for i, (lr, seed) in enumerate(zip(rows["lr"], rows["seed"])):
            j = next(j for j, (a, b) in enumerate(zip(z[f"{group}/lr"], z[f"{group}/seed"]))
                     if float(a) == pytest.approx(lr) and b == seed)
            for name in ("W1", "b1", "W2", "b2", "W"):
                np.testing.assert_array_equal(getattr(p, name)[i], z[f"{group}/{name}"][j])
    stray = rows.assign(seed=[0, 1, 99, 2])
    with pytest.raises(ValueError, match=r"rows: params.npz holds no run \{.*'seed': 99"):
        results.params_of(whole, stray)


@pytest.mark.parametrize("selectors, match", [
    (dict(colour="red"), r"colour: not a column to select runs by; expected one of \['dataset'"),
    (dict(variant="resnet"), r"variant='resnet': no such value in this sweep; expected one of "
                             r"\['plain', 'shortcut'\]"),
    (dict(width=7), r"width=7: no such value in this sweep; expected one of \[3\]"),
    (dict(), r"selectors: the runs have several variant values \['plain', 'shortcut'\]; "
             r"select one"),
])
def test_load_params_names_bad_selectors(whole, selectors, match):
    with pytest.raises(ValueError, match=match):
        sj.load_params(whole, **selectors)


def test_loading_a_folder_that_is_not_a_finished_sweep_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match=rf"folder: {tmp_path} is not a sweep folder \(no "
                                         r"config.json\)"):
        sj.load_results(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=rf"folder: {tmp_path} is an unfinished sweep \(no "
                                         r"results.csv\); rerun"):
        sj.load_results(tmp_path)


def test_nothing_is_written_outside_atomic_renames(whole):
    """Every file of a finished folder has its checksum recorded, and nothing is left over."""
    manifest = json.loads((whole / "manifest.json").read_text())
    files = {p.relative_to(whole).as_posix() for p in whole.rglob("*") if p.is_file()}
    assert set(manifest) == files - {"config.json", "manifest.json", ".lock", ".lock.holder"}
    for name, digest in manifest.items():
        assert sj.data.file_sha256(whole / name) == digest, name


def test_a_healthy_resume_warns_of_nothing_and_moves_nothing(whole):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sj.run_sweep(sj.Grid(**SMALL), str(whole), progress=False)
    assert not (whole / "chunks" / "damaged").exists()


def test_only_process_0_judges_and_writes_the_folder(tmp_path, monkeypatch):
    """Another process of a multi-process sweep sees process 0's files half made (here a
    temporary file of config.json); it leaves the checks and the writing to process 0, whose
    decisions run_sweep broadcasts. (CI once failed on this race: process 1 refused the
    folder and process 0 then timed out waiting for it.)"""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".config.json.tmp").write_text("{")
    monkeypatch.setattr(results, "_is_writer", lambda: False)
    results.RunFolder(out).prepare({"a": 1}, {})
    assert sorted(p.name for p in out.iterdir()) == [".config.json.tmp"]
    monkeypatch.setattr(results, "_is_writer", lambda: True)
    (out / "stray.csv").write_text("a\n")  # a killed writer's temporary file alone is no result
    with pytest.raises(ValueError, match="exists and is not empty but has no config.json"):
        results.RunFolder(out).prepare({"a": 1}, {})


# --- the Parquet table: columns and rows as asked, older CSV folders --------------------------


def _as_csv_folder(whole, tmp_path):
    """A copy of `whole` as the kit wrote folders before the Parquet table: results.csv, no
    table.json, no Parquet chunks."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(whole, old)
    (old / "table.json").unlink()
    for p in (old / "chunks").glob("*.parquet"):
        p.unlink()
    return old


def test_the_parquet_table_equals_the_csv_text_and_an_older_csv_folder_loads(whole, tmp_path):
    """Every column of the Parquet table against results.csv parsed with the csv module (NA
    where empty; metrics the float32 of their text), and an older folder holding results.csv
    only loads to the same frame, metrics to float32 precision."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DtypeWarning, nothing else
        df = sj.load_results(whole)
        old = sj.load_results(_as_csv_folder(whole, tmp_path))
    with open(whole / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(df)
    for c in rows[0]:
        want = [r[c] for r in rows]
        got = df[c].astype(object).tolist()
        if c in results.ID_COLUMNS:
            assert [None if w == "" else w for w in want] == [
                None if pd.isna(g) else (g if isinstance(g, str) else _text(g)) for g in got], c
        else:  # metrics: NaN where the run has none (a plain run's grad_norm_W)
            assert [np.nan if w == "" else float(np.float32(w)) for w in want] == pytest.approx(
                got, nan_ok=True, rel=0, abs=0), c
    assert df["grad_norm_W"][df.variant == "plain"].isna().all()
    assert df["grad_norm_W"][df.variant == "shortcut"].notna().all()
    assert df["run"].tolist() == [i // 3 for i in range(len(df))]  # runs in file order
    assert list(old.columns) == list(df.columns) and (old.dtypes == df.dtypes).all()
    pd.testing.assert_frame_equal(old, df, check_exact=False, rtol=1e-7, atol=0)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            assert list(old[c].cat.categories) == list(df[c].cat.categories), c


def _text(v):
    """A value of the typed table as results.csv writes it."""
    return repr(float(v)) if isinstance(v, float) else str(v)


@pytest.mark.parametrize("csv_folder", [False, True], ids=["parquet", "older-csv"])
def test_columns_and_selectors_equal_filtering_the_whole_table(whole, tmp_path, csv_folder):
    folder = _as_csv_folder(whole, tmp_path) if csv_folder else whole
    df = sj.load_results(folder)
    cases = [
        (["seed", "test_acc"], dict(variant="shortcut", seed=[2, 0], step=10)),
        (["variant", "lr", "val_loss", "run"], dict(step=[0, 5], lr=0.5)),
        (None, dict(dataset="xor", width=3, batch_size="full")),
        (["test_acc"], dict()),
    ]
    for columns, selectors in cases:
        got = sj.load_results(folder, columns=columns, **selectors)
        mask = np.ones(len(df), bool)
        for c, v in selectors.items():
            mask &= df[c].isin(v if isinstance(v, list) else [v]).to_numpy()
        want = df.loc[mask, [c for c in df.columns if columns is None or c in columns]]
        pd.testing.assert_frame_equal(got, want.reset_index(drop=True))
    # a combination no run has: an empty frame, still typed
    empty = sj.load_results(folder, variant="plain", shortcut_init="zeros")
    assert empty.empty and (empty.dtypes == df.dtypes).all()


def test_results_csv_text_is_each_values_own_shortest_text(tmp_path):
    """The CSV writer's text, cell by cell, against a reference written with Python's own
    float text: repr of the float64 lr, str of each float32 metric, empty for a missing column;
    values where float32 and float64 text differ (0.1), extremes, signed zero and NaN."""
    import pyarrow.parquet as pq

    metric = np.array([[0.1, -0.0, np.nan], [1e-45, 3.4028235e38, np.inf],
                       [1e-5, 123456.79, -2.5]], np.float32)
    lrs, seeds = np.array([0.1, 3e-3, 1e22]), np.array([0, 7, 12])
    columns = {"dataset": "a,b", "variant": "plain", "width": 4, "noise": 0.3}
    t = results._chunk_table(columns, lrs, seeds, 5, {"test_acc": metric}, 10)
    pq.write_table(t, tmp_path / "c.parquet")
    with open(tmp_path / "out.csv", "wb") as f:
        results._write_csv(f, tmp_path, {"files": ["c.parquet"],
                                         "metrics": ["test_acc", "grad_norm_W"]})
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [*results.ID_COLUMNS, "test_acc", "grad_norm_W"]
    for i, row in enumerate(rows[1:]):
        r, e = divmod(i, 3)
        cell = dict(zip(rows[0], row))
        assert cell["lr"] == repr(float(lrs[r])) and cell["seed"] == str(seeds[r])
        assert cell["step"] == str(5 * e) and cell["dataset"] == "a,b" and cell["width"] == "4"
        assert cell["noise"] == "0.3" and cell["teacher_width"] == ""
        assert cell["test_acc"] == str(metric[r, e]) and cell["grad_norm_W"] == ""
    assert [row[rows[0].index("test_acc")] for row in rows[1:4]] == ["0.1", "-0.0", "nan"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(columns=["test_acc", "colour"]), r"colour: no such column in this table; expected "
                                           r"one of \['dataset'"),
    (dict(colour="red"), r"colour: no such column"),
    (dict(variant="resnet"), r"variant='resnet': no such value in this sweep; expected one of "
                             r"\['plain', 'shortcut'\]"),
    (dict(step=[5, 7]), r"step=7: no such value in this sweep; expected one of \[0, 10, 5\]"),
    (dict(seed="two"), r"seed='two': expected values of type int64"),
])
def test_load_names_bad_columns_and_selectors(whole, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sj.load_results(whole, **kwargs)


def test_export_writes_the_table_as_csv(whole, tmp_path):
    from shortcut_jax import cli

    assert cli.main(["export", str(whole), "--csv", "--out", str(tmp_path / "t.csv")]) == 0
    df = sj.load_results(whole)
    with open(tmp_path / "t.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["seed"]) for r in rows] == df["seed"].tolist()
    assert [float(np.float32(r["val_loss"])) for r in rows] == df["val_loss"].tolist()
    assert cli.main(["export", str(tmp_path), "--csv"]) == 2


def test_load_types_every_column_without_a_dtype_warning(whole, tmp_path, monkeypatch):
    """Each column of an older folder's results.csv gets a dtype: untyped, pandas' low-memory
    reader guesses per chunk (~260k rows) and warned "DtypeWarning: Columns (32: grad_norm_W)
    have mixed types" on a 24,576-run folder (plain rows first, whose grad_norm_W is empty)."""
    old = _as_csv_folder(whole, tmp_path)
    given = []
    read_csv = pd.read_csv

    def spy(path, *args, **kwargs):
        given.append(kwargs.get("dtype") if kwargs.get("nrows") != 0 else None)
        return read_csv(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_csv", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = sj.load_results(old)
    with open(old / "results.csv", newline="") as f:
        header = next(csv.reader(f))
    (dtypes,) = [g for g in given if g is not None]
    assert set(header) <= set(dtypes)
    assert not any(df[c].dtype == object for c in df.columns)
    assert df["grad_norm_W"].dtype == np.float64
    assert df.loc[df.variant == "plain", "grad_norm_W"].isna().all()
    assert df.loc[df.variant == "shortcut", "grad_norm_W"].notna().all()

"""Fast tests of results.py's writing side, for `mutmut run` (experiments/MUTATION.md): atomic
writes observed through os.replace/os.fsync/os.kill, hand-made NumPy params, tiny folders in
tmp_path (copies of the committed sweeps under tests/data), a git repository made in tmp_path,
the SIGINT handler called directly; each compared with hand-written values (no sweep runs,
nothing compiles)."""

import errno
import gc
import os
import signal
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

from shortcut_jax import results

DATA = Path(__file__).parent / "data"
"""The committed tiny sweep folders (tests/test_mutants_build.py describes them)."""

# --- atomic writes ------------------------------------------------------------------------------


def _spy_replace(monkeypatch):
    """os.replace recorded as (source, destination, destination's bytes before the rename)."""
    calls, real = [], os.replace

    def replace(src, dst):
        dst_before = open(dst, "rb").read() if os.path.exists(dst) else None
        calls.append((str(src), str(dst), open(src, "rb").read(), dst_before))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_atomic_write_bytes_writes_through_a_temporary_file_beside_the_path(tmp_path,
                                                                         monkeypatch):
    calls = _spy_replace(monkeypatch)
    path = tmp_path / "new" / "deeper" / "file.bin"  # folders made on the way
    results.atomic_write_bytes(path, b"\x00\x01payload\r\n")
    assert path.read_bytes() == b"\x00\x01payload\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp's 0o600 opened up
    [(src, dst, written, before)] = calls
    assert dst == str(path) and before is None and written == b"\x00\x01payload\r\n"
    name = os.path.basename(src)
    assert os.path.dirname(src) == str(path.parent)
    assert name.startswith(".file.bin.") and name.endswith(".tmp") and len(name) > 14
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.bin"]
    # a second write replaces the first; a str path works; the folder exists already
    results.atomic_write_bytes(str(path), b"two")
    assert path.read_bytes() == b"two" and calls[1][3] == b"\x00\x01payload\r\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.bin"]


def test_atomic_write_text_writes_utf8_bytes_untranslated(tmp_path):
    path = tmp_path / "t.txt"
    results.atomic_write_text(path, "é ∑ x\r\ny\n")
    assert path.read_bytes() == b"\xc3\xa9 \xe2\x88\x91 x\r\ny\n"


def test_atomic_open_text_mode_keeps_line_ends_and_binary_mode_takes_bytes(tmp_path):
    with results.atomic_open(tmp_path / "a.txt") as f:  # default mode "w": text
        f.write("a\r\nb\nc\r")
    assert (tmp_path / "a.txt").read_bytes() == b"a\r\nb\nc\r"  # newline="": nothing translated
    with results.atomic_open(tmp_path / "b.bin", "wb") as f:
        f.write(b"\r\n")
    assert (tmp_path / "b.bin").read_bytes() == b"\r\n"


def test_atomic_open_flushes_and_syncs_before_before_rename_and_renames_after(tmp_path,
                                                                             monkeypatch):
    path = tmp_path / "f.bin"
    events, real_fsync = [], os.fsync

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_size))  # flushed: every byte in the file
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    calls = _spy_replace(monkeypatch)

    def before(tmp):
        assert isinstance(tmp, type(path)) and tmp.parent == path.parent
        events.append(("before", tmp.name, tmp.read_bytes(), path.exists()))

    def after():
        events.append(("after", path.read_bytes()))

    with results.atomic_open(path, "wb", before_rename=before, after_rename=after) as f:
        f.write(b"12345")
        assert results._writes[0] == 1  # a write in progress
    assert results._writes[0] == 0
    assert events[0] == ("fsync", 5)
    assert events[1][0] == "before" and events[1][2:] == (b"12345", False)
    assert events[2] == ("after", b"12345")
    assert os.path.basename(calls[0][0]) == events[1][1]  # the temporary file renamed


def test_atomic_open_leaves_nothing_behind_when_the_block_or_before_rename_fails(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(ZeroDivisionError):
        with results.atomic_open(path) as f:
            f.write("new")
            raise ZeroDivisionError
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
    assert results._writes[0] == 0

    def before(tmp):
        raise KeyError("no")

    after = []
    with pytest.raises(KeyError):
        with results.atomic_open(path, before_rename=before,
                                 after_rename=lambda: after.append(1)) as f:
            f.write("new")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
    assert after == [] and results._writes[0] == 0


def test_atomic_open_names_the_path_in_a_system_error(tmp_path):
    path = tmp_path / "f.bin"
    with pytest.raises(results.WriteFailed) as e:
        with results.atomic_open(path, "wb"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (e.value.errno, e.value.strerror, e.value.filename) == (
        errno.ENOSPC, "No space left on device", str(path))
    assert isinstance(e.value.__cause__, OSError)
    with pytest.raises(results.WriteFailed) as e:  # no strerror: the error's text
        with results.atomic_open(path, "wb"):
            raise OSError(errno.EIO, "")
    assert e.value.strerror == f"[Errno {errno.EIO}] " and e.value.filename == str(path)
    with pytest.raises(OSError) as e:  # not the system's (no errno): raised as it is
        with results.atomic_open(path, "wb"):
            raise OSError("mine")
    assert type(e.value) is OSError and e.value.args == ("mine",)
    failed = results.WriteFailed(errno.EROFS, "Read-only", "elsewhere")
    with pytest.raises(results.WriteFailed) as e:  # a WriteFailed keeps its own file
        with results.atomic_open(path, "wb"):
            raise failed
    assert e.value is failed
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_atomic_open_raises_a_pending_ctrl_c_once_the_outer_file_is_in_place(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(results, "_pending", [False])
    with pytest.raises(KeyboardInterrupt):
        with results.atomic_open(tmp_path / "outer") as f:
            f.write("o")
            with results.atomic_open(tmp_path / "inner") as g:
                g.write("i")
                assert results._writes[0] == 2
                results._pending[0] = True
            assert (tmp_path / "inner").read_text() == "i"  # the inner write ends quietly
            assert results._pending[0] is True
    assert (tmp_path / "outer").read_text() == "o"
    assert results._pending == [False] and results._writes[0] == 0
    with results.atomic_open(tmp_path / "again") as f:  # nothing pending: no interrupt
        f.write("a")


def test_the_kill_hook_kills_between_the_write_and_the_rename_of_a_matching_file(tmp_path,
                                                                                monkeypatch):
    killed = []

    class Killed(Exception):
        pass

    def kill(pid, sig):
        killed.append((pid, sig))
        raise Killed

    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setenv(results.KILL_ENV, "*.npz")
    results.atomic_write_bytes(tmp_path / "a.parquet", b"x")  # no match: written
    assert killed == [] and (tmp_path / "a.parquet").read_bytes() == b"x"
    with pytest.raises(Killed):
        results.atomic_write_bytes(tmp_path / "params.npz", b"y")
    assert killed == [(os.getpid(), signal.SIGKILL)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet"]
    monkeypatch.setenv(results.KILL_ENV, "")  # empty: off
    results.atomic_write_bytes(tmp_path / "params.npz", b"y")
    assert killed == [(os.getpid(), signal.SIGKILL)]


# --- chunks that read back whole ----------------------------------------------------------------


def test_whole_reads_a_parquet_file_and_every_array_of_an_npz(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = tmp_path / "c.parquet"
    pq.write_table(pa.table({"x": np.arange(1000.0)}), good, compression="none")
    assert results._whole(good) is True
    data = good.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2])
    assert results._whole(cut) is False
    footer = tmp_path / "footer.parquet"  # the magic number at the end destroyed
    footer.write_bytes(data[:-4] + b"XXXX")
    assert results._whole(footer) is False
    (tmp_path / "empty.parquet").write_bytes(b"")
    assert results._whole(tmp_path / "empty.parquet") is False

    npz = tmp_path / "c.npz"
    np.savez(npz, a=np.arange(100.0), b=np.ones(3, np.int8))
    assert results._whole(npz) is True
    raw = npz.read_bytes()
    at = raw.index(np.arange(100.0).tobytes()[8:16])  # inside a's bytes: its CRC-32 fails
    flipped = tmp_path / "flipped.npz"
    flipped.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:])
    assert results._whole(flipped) is False
    cut = tmp_path / "cut.npz"
    cut.write_bytes(raw[: len(raw) - 30])  # the central directory cut short
    assert results._whole(cut) is False
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    assert results._whole(tmp_path / "junk.npz") is False
    assert results._whole(tmp_path / "missing.npz") is False  # OSError
    # a zip read as a zip even when named otherwise, and Parquet bytes named .npz do not load
    twin = tmp_path / "twin.chunk"
    twin.write_bytes(raw)
    assert results._whole(twin) is True
    (tmp_path / "pq.npz").write_bytes(data)
    assert results._whole(tmp_path / "pq.npz") is False


# --- parameters of runs -------------------------------------------------------------------------

COLUMNS = {"dataset": "xor", "data_seed": 0, "n_train": 80, "d": 3, "noise": 0.05,
           "linear_weight": None, "teacher_width": None, "teacher_shortcut": None,
           "variant": "plain", "width": 2, "shortcut_init": None, "optimizer": "sgd",
           "loss_fn": "mse", "batch_size": "full", "depth": 1, "activation": "relu"}
"""A chunk's columns (as sweep writes them): the run key without lr and seed."""


def test_whole_closes_a_file_that_is_no_zip(tmp_path):
    """np.load(path) leaves the file open when the zip is broken (a ResourceWarning at
    collection); _whole opens and closes it itself."""
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not a zip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert results._whole(junk) is False
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def _params_folder(path, groups):
    """A finished folder by hand: config.json, an empty table.json, and params.npz of groups
    {name: (columns, lrs, seeds, {leaf: array})} (no manifest: nothing to check)."""
    import json

    path.mkdir()
    (path / "config.json").write_text('{"config": {}}')
    (path / "table.json").write_text('{"format": "parquet", "files": [], "rows": 0}')
    arrays = {}
    for g, (columns, lrs, seeds, leaves) in groups.items():
        arrays[f"{g}/columns"] = np.asarray(json.dumps(columns))
        arrays[f"{g}/lr"] = np.asarray(lrs, np.float64)
        arrays[f"{g}/seed"] = np.asarray(seeds, np.int64)
        arrays.update({f"{g}/{k}": v for k, v in leaves.items()})
    np.savez(path / "params.npz", **arrays)
    return path


def _rows(*runs):
    """Rows of load(folder) by hand: each run is (columns, lr, seed)."""
    import pandas as pd

    df = pd.DataFrame([{**c, "lr": lr, "seed": s, "step": 100} for c, lr, s in runs])
    for c in ("n_train", "d", "teacher_width"):
        df[c] = df[c].astype("Int64")
    for c in ("noise", "linear_weight", "teacher_shortcut"):
        df[c] = df[c].astype("float64")
    return df


def test_params_of_stacks_the_runs_of_several_groups_in_row_order(tmp_path):
    from shortcut_jax.model import Params

    a = {**COLUMNS}
    b = {**COLUMNS, "noise": 0.1}  # another group of the same shapes
    W1a = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)
    W1b = 100 + np.arange(3 * 2 * 3, dtype=np.float32).reshape(3, 2, 3)
    folder = _params_folder(tmp_path / "f", {
        "ga": (a, [0.5, 2.0], [0, 0], {"W1": W1a, "b1": np.full((2, 2), 1, np.float32),
                                       "W2": np.zeros((2, 1, 2), np.float32),
                                       "b2": np.array([1.5, 2.5], np.float32)}),
        "gb": (b, [0.5, 0.5, 0.5], [0, 1, 2], {"W1": W1b, "b1": np.full((3, 2), 2, np.float32),
                                               "W2": np.ones((3, 1, 2), np.float32),
                                               "b2": np.array([7, 8, 9], np.float32)})})
    rows = _rows((b, 0.5, 2), (a, 2.0, 0), (b, 0.5, 0), (a, 0.5, 0))
    p = results.params_of(folder, rows)
    assert type(p) is Params and p.W is None
    assert p.W1.dtype == np.float32 and p.W1.shape == (4, 2, 3)
    np.testing.assert_array_equal(p.W1, np.stack([W1b[2], W1a[1], W1b[0], W1a[0]]))
    np.testing.assert_array_equal(p.b2, np.array([9, 2.5, 7, 1.5], np.float32))
    np.testing.assert_array_equal(p.b1, [[2, 2], [1, 1], [2, 2], [1, 1]])
    np.testing.assert_array_equal(p.W2, [[[1, 1]], [[0, 0]], [[1, 1]], [[0, 0]]])
    # one run; results.load_params's selectors reach the same runs
    one = results.params_of(folder, _rows((a, 2.0, 0)))
    np.testing.assert_array_equal(one.W1, W1a[1:2])
    with pytest.raises(ValueError, match=r"rows: params.npz holds no run .*'lr': 1.0"):
        results.params_of(folder, _rows((a, 1.0, 0)))


def test_params_of_gives_network_params_for_depth_or_activation(tmp_path):
    from shortcut_jax.network import NetParams

    deep = {**COLUMNS, "depth": 2, "variant": "shortcut", "shortcut_init": "zeros"}
    tanh = {**COLUMNS, "activation": "tanh"}
    leaves2 = {"W1": np.full((1, 2, 3), 1.0), "W2": np.full((1, 2, 2), 2.0),
               "b1": np.full((1, 2), 3.0), "b2": np.full((1, 2), 4.0),
               "Wo": np.full((1, 1, 2), 5.0), "bo": np.full((1,), 6.0),
               "W": np.full((1, 1, 3), 7.0)}
    leaves1 = {"W1": np.full((1, 2, 3), -1.0), "b1": np.full((1, 2), -3.0),
               "Wo": np.full((1, 1, 2), -5.0), "bo": np.full((1,), -6.0)}
    folder = _params_folder(tmp_path / "f", {"deep": (deep, [0.1], [4], leaves2),
                                              "tanh": (tanh, [0.1], [4], leaves1)})
    p = results.params_of(folder, _rows((deep, 0.1, 4)))
    assert type(p) is NetParams and len(p.Ws) == 2 and len(p.bs) == 2
    for got, want in zip([*p.Ws, *p.bs, p.Wo, p.bo, p.W],
                         ["W1", "W2", "b1", "b2", "Wo", "bo", "W"], strict=True):
        np.testing.assert_array_equal(got, leaves2[want], err_msg=want)
    q = results.params_of(folder, _rows((tanh, 0.1, 4)))  # depth 1, not relu: the network
    assert type(q) is NetParams and q.W is None
    assert len(q.Ws) == 1 and len(q.bs) == 1
    np.testing.assert_array_equal(q.Ws[0], leaves1["W1"])
    np.testing.assert_array_equal(q.bs[0], leaves1["b1"])
    np.testing.assert_array_equal(q.Wo, leaves1["Wo"])
    np.testing.assert_array_equal(q.bo, leaves1["bo"])


@pytest.mark.parametrize("column, other, shown", [
    ("variant", "shortcut", "['plain', 'shortcut']; select one, e.g. variant='plain'"),
    ("width", 3, "[2, 3]; select one, e.g. width=2"),
    ("d", 4, "[3, 4]; select one, e.g. d=3"),
    ("d", None, "[3, <NA>]; select one, e.g. d=3"),
    ("dataset", "moons", "['moons', 'xor']; select one, e.g. dataset='xor'"),
    ("depth", 2, "[1, 2]; select one, e.g. depth=1"),
    ("activation", "tanh", "['relu', 'tanh']; select one, e.g. activation='relu'"),
])
def test_params_of_refuses_runs_of_several_shapes_or_variants(tmp_path, column, other, shown):
    folder = _params_folder(tmp_path / "f", {"g": (COLUMNS, [0.5], [0], {
        "W1": np.zeros((1, 2, 3)), "b1": np.zeros((1, 2)), "W2": np.zeros((1, 1, 2)),
        "b2": np.zeros(1)})})
    rows = _rows((COLUMNS, 0.5, 0), ({**COLUMNS, column: other}, 0.5, 0))
    with pytest.raises(ValueError) as e:
        results.params_of(folder, rows)
    assert str(e.value).replace("np.int64(", "").replace(")", "") == (
        f"selectors: the runs have several {column} values {shown}")


def test_params_of_refuses_no_rows_and_load_params_no_match(tmp_path):
    import shutil

    folder = _params_folder(tmp_path / "f", {})
    with pytest.raises(ValueError) as e:
        results.params_of(folder, _rows((COLUMNS, 0.5, 0)).iloc[:0])
    assert str(e.value) == "rows: expected at least one run, got none"
    shutil.copytree(DATA / "build_sweep2", tmp_path / "s")  # residual runs have depth 2
    with pytest.raises(ValueError) as e:
        results.load_params(tmp_path / "s", variant="residual", depth=1)
    assert str(e.value) == "selectors: no run matches {'variant': 'residual', 'depth': 1}"


def test_load_params_reads_the_selected_runs_of_a_sweep_in_final_rows_order(tmp_path):
    import shutil

    shutil.copytree(DATA / "build_sweep", tmp_path / "s")
    chunk = next((tmp_path / "s" / "chunks").glob("*-shortcut-*.npz"))
    with np.load(chunk) as z:
        want = {k: z[k] for k in z.files}
    # the chunk holds lr 0.5, seeds 0-3, then lr 2, seeds 0-3; final_rows sorts the same way
    assert want["lr"].tolist() == [0.5] * 4 + [2.0] * 4 and want["seed"].tolist() == [0, 1, 2, 3] * 2
    p = results.load_params(tmp_path / "s", variant="shortcut", lr=2.0)
    for leaf in ("W1", "b1", "W2", "b2", "W"):
        np.testing.assert_array_equal(getattr(p, leaf), want[f"param/{leaf}"][4:], err_msg=leaf)
    p = results.load_params(tmp_path / "s", variant="shortcut", seed=[3, 1])
    np.testing.assert_array_equal(p.W, want["param/W"][[1, 3, 5, 7]])


# --- provenance ---------------------------------------------------------------------------------


def test_provenance_records_versions_devices_precision_commit_and_time(monkeypatch):
    import datetime
    import importlib.metadata
    import platform

    import jax
    import jaxlib
    import optax

    monkeypatch.setattr(results, "git_commit", lambda: "abc123+dirty")
    x64 = bool(jax.config.jax_enable_x64)
    try:
        for on in (True, False):
            jax.config.update("jax_enable_x64", on)
            before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
            p = results.provenance("highest")
            after = datetime.datetime.now(datetime.timezone.utc)
            assert p == {
                "shortcut_jax": importlib.metadata.version("shortcut-jax"),
                "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                "optax": optax.__version__, "chex": importlib.metadata.version("chex"),
                "numpy": np.__version__, "python": platform.python_version(),
                "platform": platform.platform(), "backend": jax.default_backend(),
                "device_kind": jax.devices()[0].device_kind,
                "device_count": len(jax.devices()),
                "process_count": 1, "x64": on, "matmul_precision": "highest",
                "git_commit": "abc123+dirty", "created": p["created"]}
            assert type(p["x64"]) is bool
            created = p["created"]
            assert len(created) == 25 and created.endswith("+00:00") and created[10] == "T"
            assert before <= datetime.datetime.fromisoformat(created) <= after
    finally:
        jax.config.update("jax_enable_x64", x64)
    assert results.provenance("default")["matmul_precision"] == "default"


def test_own_version_reads_the_installed_metadata_or_none(monkeypatch):
    import importlib.metadata

    assert results._own_version() == importlib.metadata.version("shortcut-jax") == "0.1.0"

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert results._own_version() is None


def test_is_writer_is_process_0(monkeypatch):
    import jax

    assert results._is_writer() is True
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    assert results._is_writer() is False


def _git(repo, *args):
    import subprocess

    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c",
                    "init.defaultBranch=main", *args], cwd=repo, check=True,
                   capture_output=True)


def test_git_commit_names_head_of_the_packages_checkout_and_dirt(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "results.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    head = (repo / ".git" / "refs" / "heads" / "main").read_text().strip()
    assert len(head) == 40
    monkeypatch.setattr(results, "__file__", str(repo / "pkg" / "results.py"))
    assert results.git_commit() == head
    (repo / "pkg" / "new.txt").write_text("untracked")
    assert results.git_commit() == head + "+dirty"
    (repo / "pkg" / "new.txt").unlink()
    (repo / "pkg" / "results.py").write_text("x = 2\n")  # modified
    assert results.git_commit() == head + "+dirty"
    (repo / "pkg" / "results.py").write_text("x = 1\n")
    assert results.git_commit() == head
    # not a checkout: None; no git at all: None
    (tmp_path / "plain" / "pkg").mkdir(parents=True)
    monkeypatch.setattr(results, "__file__", str(tmp_path / "plain" / "pkg" / "results.py"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert results.git_commit() is None
    monkeypatch.setattr(results, "__file__", str(repo / "pkg" / "results.py"))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert results.git_commit() is None


# --- Ctrl-C -------------------------------------------------------------------------------------


def test_interrupted_says_what_was_saved_and_how_to_resume(tmp_path):
    stop = results.Interrupted()
    assert str(stop) == "interrupted" and isinstance(stop, KeyboardInterrupt)
    stop.folder, stop.saved = tmp_path, 3
    assert str(stop) == (f"interrupted: 3 runs are saved in {tmp_path}; rerun the same sweep "
                         "to resume")
    stop.total = 10
    assert str(stop) == (f"interrupted: 3 of 10 runs are saved in {tmp_path}; rerun the same "
                         "sweep to resume")
    stop.saved, stop.total = 0, 0
    assert str(stop) == (f"interrupted: 0 of 0 runs are saved in {tmp_path}; rerun the same "
                         "sweep to resume")


def test_on_sigint_raises_at_once_unless_a_file_is_being_written(monkeypatch):
    set_to = []
    monkeypatch.setattr(signal, "signal", lambda sig, handler: set_to.append((sig, handler)))
    monkeypatch.setattr(results, "_writes", [0])
    monkeypatch.setattr(results, "_pending", [False])
    with pytest.raises(KeyboardInterrupt):
        results._on_sigint(signal.SIGINT, None)
    assert set_to == [(signal.SIGINT, signal.SIG_DFL)] and results._pending == [False]
    results._writes[0] = 2
    results._on_sigint(signal.SIGINT, None)  # waits for the file
    assert results._pending == [True] and results._writes == [2]
    assert set_to == [(signal.SIGINT, signal.SIG_DFL)] * 2


# --- RunFolder: the writing side ----------------------------------------------------------------


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _manifest(folder):
    import json

    return json.loads((folder / "manifest.json").read_text())


def _metrics(runs, evals, names, start=0.0):
    """Hand-made metrics (runs, evals) float32: start + 0.25 * position, name by name."""
    return {k: (start + 10 * i + 0.25 * np.arange(runs * evals, dtype=np.float32)).reshape(
        runs, evals).astype(np.float32) for i, k in enumerate(names)}


def test_saved_of_counts_the_runs_put_in_place_and_the_sweeps_total(tmp_path):
    f = results.RunFolder(tmp_path)
    assert f._saved_of() == (0, None)
    f._saved_now = 3
    assert f._saved_of() == (3, None)
    f.counts = {"resumed": 2, "trained": 5}
    assert f._saved_of() == (5, 7)


def test_chunk_paths_are_named_by_group_and_4_digit_chunk(tmp_path):
    f = results.RunFolder(tmp_path / "out")
    assert f.chunk_path("g", 7) == tmp_path / "out" / "chunks" / "g-0007.npz"
    assert f.rows_path("g", 12345) == tmp_path / "out" / "chunks" / "g-12345.parquet"


def test_record_writes_the_manifest_and_forgets_a_name(tmp_path):
    f = results.RunFolder(tmp_path)
    f._record("chunks/a.npz", "1" * 64)
    assert (tmp_path / "manifest.json").read_text() == '{\n"chunks/a.npz": "' + "1" * 64 + '"\n}\n'
    f._record("b", "2")
    f._record("b", "3")  # replaced
    f._record("missing", None)  # nothing to forget: no error
    assert (tmp_path / "manifest.json").read_text() == (
        '{\n"chunks/a.npz": "' + "1" * 64 + '",\n"b": "3"\n}\n')
    f._record("chunks/a.npz", None)
    assert (tmp_path / "manifest.json").read_text() == '{\n"b": "3"\n}\n'
    assert f.manifest == {"b": "3"} and results.RunFolder(tmp_path).manifest == {"b": "3"}


def test_write_records_the_checksum_before_the_rename_then_calls_after(tmp_path, monkeypatch):
    f = results.RunFolder(tmp_path)
    seen, real = [], os.replace

    def replace(src, dst):
        if str(dst).endswith("x.bin"):
            seen.append(_manifest(tmp_path))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    after = []
    f._write(tmp_path / "chunks" / "x.bin", lambda fh: fh.write(b"abc"),
             lambda: after.append((tmp_path / "chunks" / "x.bin").read_bytes()))
    assert seen == [{"chunks/x.bin": _sha(b"abc")}] and after == [b"abc"]
    assert (tmp_path / "chunks" / "x.bin").read_bytes() == b"abc"
    f._write(tmp_path / "y.bin", lambda fh: fh.write(b"y"))  # binary; no after_rename
    assert _manifest(tmp_path) == {"chunks/x.bin": _sha(b"abc"), "y.bin": _sha(b"y")}


def test_save_chunk_writes_rows_and_params_with_checksums(tmp_path, monkeypatch):
    import json

    import pyarrow.parquet as pq

    f = results.RunFolder(tmp_path)
    metrics = _metrics(2, 3, ["train_loss", "val_acc", "dead_frac"])
    W1 = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)
    f.save_chunk("g", 1, COLUMNS, np.array([0.5, 2.0]), np.array([3, 4]), 5, metrics,
                 {"W1": W1, "b2": np.array([1.0, 2.0], np.float32)}, first_run=7)
    rows = tmp_path / "chunks" / "g-0001.parquet"
    npz = tmp_path / "chunks" / "g-0001.npz"
    assert _manifest(tmp_path) == {"chunks/g-0001.parquet": _sha(rows.read_bytes()),
                                   "chunks/g-0001.npz": _sha(npz.read_bytes())}
    assert f._saved_now == 2
    t = pq.read_table(rows)
    assert t.column_names == [*results.ID_COLUMNS, "run", "train_loss", "val_acc", "dead_frac"]
    assert t.column("run").to_pylist() == [7, 7, 7, 8, 8, 8]
    assert t.column("lr").to_pylist() == [0.5] * 3 + [2.0] * 3
    assert t.column("seed").to_pylist() == [3, 3, 3, 4, 4, 4]
    assert t.column("step").to_pylist() == [0, 5, 10] * 2
    assert t.column("val_acc").to_pylist() == [10 + 0.25 * i for i in range(6)]
    meta = pq.ParquetFile(rows).metadata.row_group(0)
    enc = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert {c.compression for c in enc.values()} == {"ZSTD"}
    assert "BYTE_STREAM_SPLIT" in enc["train_loss"].encodings
    for c in ("val_acc", "dead_frac", "dataset", "lr", "run"):  # dictionaries
        assert "BYTE_STREAM_SPLIT" not in enc[c].encodings, c
        assert "RLE_DICTIONARY" in enc[c].encodings, c
    assert "RLE_DICTIONARY" not in enc["train_loss"].encodings
    with np.load(npz) as z:
        assert sorted(z.files) == ["columns", "eval_every", "lr", "param/W1", "param/b2", "seed"]
        assert z["lr"].tolist() == [0.5, 2.0] and z["seed"].tolist() == [3, 4]
        assert z["eval_every"].shape == () and int(z["eval_every"]) == 5
        assert json.loads(str(z["columns"])) == COLUMNS
        np.testing.assert_array_equal(z["param/W1"], W1)
    assert {k: v.tolist() for k, v in f.load_chunk("g", 1).items()
            if k != "param/W1"} == {"lr": [0.5, 2.0], "seed": [3, 4], "eval_every": 5,
                                    "columns": json.dumps(COLUMNS), "param/b2": [1.0, 2.0]}
    # a second chunk adds its runs; one whose params cannot be put in place adds none
    f.save_chunk("g", 2, COLUMNS, np.array([1.0] * 3), np.arange(3), 1, _metrics(3, 1, ["a"]),
                 {"W1": np.zeros((3, 2, 3))})  # runs numbered from 0 by default
    assert f._saved_now == 5
    assert pq.read_table(f.rows_path("g", 2)).column("run").to_pylist() == [0, 1, 2]

    def refuse(src, dst):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(results.WriteFailed):
        f.save_chunk("g", 3, COLUMNS, np.array([1.0]), np.arange(1), 1, _metrics(1, 1, ["a"]),
                     {"W1": np.zeros((1, 2, 3))})
    assert f._saved_now == 5


def test_a_process_other_than_0_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "_is_writer", lambda: False)
    f = results.RunFolder(tmp_path / "out")
    f.prepare({"a": 1}, {})
    f.save_chunk("g", 0, COLUMNS, np.array([1.0]), np.arange(1), 1, _metrics(1, 1, ["a"]),
                 {"W1": np.zeros((1, 2, 3))})
    f.assemble([("g", 0)])
    assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".x.tmp").write_text("")
    f.clean_temporaries()
    assert (tmp_path / "out" / ".x.tmp").exists()
    (tmp_path / "out" / "chunks").mkdir()
    (tmp_path / "out" / "chunks" / "c.npz").write_bytes(b"damaged")
    assert f.verified(tmp_path / "out" / "chunks" / "c.npz") is False  # not moved aside
    assert (tmp_path / "out" / "chunks" / "c.npz").exists()
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_clean_temporaries_removes_temporary_files_only(tmp_path):
    (tmp_path / "chunks" / "damaged").mkdir(parents=True)
    for name in (".config.json.abc.tmp", ".x.tmp", "kept.tmp", ".hidden", "results.csv",
                 "chunks/.g-0000.npz.q.tmp", "chunks/g-0000.npz", "chunks/damaged/.d.tmp"):
        (tmp_path / name).write_text("")
    results.RunFolder(tmp_path).clean_temporaries()
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                  if p.is_file())
    assert left == [".hidden", "chunks/damaged/.d.tmp", "chunks/g-0000.npz", "kept.tmp",
                    "results.csv"]


def test_prepare_writes_the_config_once_and_refuses_another(tmp_path):
    out = tmp_path / "new" / "out"
    f = results.RunFolder(out)
    config = {"grid": {"lrs": (0.1, 1.0)}, 3: "three", "data": None}
    f.prepare(config, {"jax": "0.0"})
    text = (out / "config.json").read_text()
    assert text == ('{\n  "config": {\n    "grid": {\n      "lrs": [\n        0.1,\n        1.0\n'
                    '      ]\n    },\n    "3": "three",\n    "data": null\n  },\n'
                    '  "provenance": {\n    "jax": "0.0"\n  }\n}\n')
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    f.prepare(config, {"jax": "9.9"})  # the same config (as JSON): resumes, nothing written
    assert (out / "config.json").read_text() == text
    results.RunFolder(out).prepare({"grid": {"lrs": [0.1, 1.0]}, "3": "three", "data": None},
                                   {})
    assert (out / "config.json").read_text() == text
    other = {"grid": {"lrs": [0.1, 2.0], "a": 1, "b": 2, "c": 3, "d": 4}, "3": "four"}
    with pytest.raises(ValueError) as e:
        results.RunFolder(out).prepare(other, {})
    assert str(e.value) == (
        f"out: {out} holds results of a different config: 3 is 'three' there, 'four' here; "
        "grid.a is None there, 1 here; grid.b is None there, 2 here; grid.c is None there, "
        "3 here; grid.d is None there, 4 here; use another --out folder or delete it")
    assert (out / "config.json").read_text() == text


def test_prepare_refuses_a_changed_data_file_naming_it(tmp_path):
    out = tmp_path / "out"
    held = {"data": [{"path": "/d.csv", "sha256": "a" * 64}], "x": 1}
    results.RunFolder(out).prepare(held, {})
    with pytest.raises(ValueError) as e:
        results.RunFolder(out).prepare({"data": [{"path": "/d.csv", "sha256": "b" * 64}],
                                        "x": 1}, {})
    assert str(e.value) == (f"data: /d.csv changed since the sweep in {out} began (sha256 "
                            "aaaaaaaaaaaa..., now bbbbbbbbbbbb...); restore the file or use "
                            "another --out folder")


@pytest.mark.parametrize("left, ok", [
    ([".lock", ".lock.holder", ".config.json.k2j.tmp"], True),
    ([], True),
    (["results.csv"], False),
    (["x.tmp"], False),
    ([".hidden"], False),
    ([".lockers.tmp.x"], True),  # starts with .lock
])
def test_prepare_refuses_a_folder_with_results_but_no_config(tmp_path, left, ok):
    out = tmp_path / "out"
    out.mkdir()
    for name in left:
        (out / name).write_text("")
    if ok:
        results.RunFolder(out).prepare({"a": 1}, {})
        assert (out / "config.json").exists()
    else:
        with pytest.raises(ValueError) as e:
            results.RunFolder(out).prepare({"a": 1}, {})
        assert str(e.value) == (f"out: {out} exists and is not empty but has no config.json; "
                                "refusing to mix results")
        assert not (out / "config.json").exists()


def test_config_names_an_unreadable_or_foreign_config_json(tmp_path):
    f = results.RunFolder(tmp_path)
    (tmp_path / "config.json").write_text('{"config": {"a": 1}, "provenance": {}}')
    assert f.config() == {"config": {"a": 1}, "provenance": {}}
    (tmp_path / "config.json").write_text('{"config": {"a"')
    with pytest.raises(ValueError) as e:
        f.config()
    assert str(e.value).startswith(f"folder: {tmp_path / 'config.json'} cannot be read (")
    assert str(e.value).endswith(
        "): it was cut short or edited, and a sweep's config cannot be guessed from its "
        "results; restore config.json from a copy of the folder, or rerun the command that "
        "made it with a new --out folder")
    for text in ('[1, 2]', '{"config": [1]}', '{"provenance": {}}'):
        (tmp_path / "config.json").write_text(text)
        with pytest.raises(ValueError) as e:
            f.config()
        assert str(e.value) == (
            f"folder: {tmp_path / 'config.json'} does not hold a sweep's config (expected "
            '{"config": {...}, "provenance": {...}}); restore it from a copy of the folder, or '
            "rerun the command that made it with a new --out folder")


def _damaged(folder):
    """{name without its stamp: bytes} of chunks/damaged, each stamp checked."""
    import re

    out = {}
    for p in (folder / "chunks" / "damaged").iterdir():
        name, stamp = p.name.rsplit(".", 1)
        assert re.fullmatch(r"\d{8}-\d{6}-\d{6}", stamp), p.name
        out[name] = p.read_bytes()
    return out


def test_verified_keeps_a_file_that_matches_and_sets_aside_one_that_does_not(tmp_path):
    (tmp_path / "chunks").mkdir()
    good, bad, none = (tmp_path / "chunks" / n for n in ("good.npz", "bad.npz", "none.npz"))
    good.write_bytes(b"good")
    bad.write_bytes(b"bad")
    none.write_bytes(b"none")
    (tmp_path / "manifest.json").write_text(
        f'{{"chunks/good.npz": "{_sha(b"good")}", "chunks/bad.npz": "{_sha(b"other")}", '
        f'"chunks/gone.npz": "{_sha(b"x")}"}}')
    f = results.RunFolder(tmp_path)
    assert f.verified(tmp_path / "chunks" / "gone.npz") is False  # missing: nothing to do
    assert f.verified(good) is True and good.exists()
    with pytest.warns(results.DamagedFileWarning) as w:
        assert f.verified(bad) is False
    dest = next((tmp_path / "chunks" / "damaged").iterdir())
    assert str(w[0].message) == (f"{bad} fails its recorded checksum: moved to {dest}; it will "
                                 "be recomputed")
    with pytest.warns(results.DamagedFileWarning) as w:
        assert f.verified(none) is False
    assert str(w[0].message).startswith(f"{none} has no recorded checksum: moved to ")
    assert str(w[0].message).endswith("; it will be recomputed")
    assert not bad.exists() and not none.exists()
    assert _damaged(tmp_path) == {"bad.npz": b"bad", "none.npz": b"none"}
    assert _manifest(tmp_path) == {"chunks/good.npz": _sha(b"good"),
                                   "chunks/gone.npz": _sha(b"x")}


def test_has_chunk_checks_and_sets_aside_both_files(tmp_path):
    f = results.RunFolder(tmp_path)
    (tmp_path / "chunks").mkdir()
    rows, npz = f.rows_path("g", 0), f.chunk_path("g", 0)
    rows.write_bytes(b"r")
    npz.write_bytes(b"n")
    (tmp_path / "manifest.json").write_text(
        f'{{"chunks/g-0000.parquet": "{_sha(b"r")}", "chunks/g-0000.npz": "{_sha(b"n")}"}}')
    assert f.has_chunk("g", 0) is True
    g = results.RunFolder(tmp_path)
    npz.write_bytes(b"changed")
    with pytest.warns(results.DamagedFileWarning):
        assert g.has_chunk("g", 0) is False
    assert rows.exists() and not npz.exists()
    npz.write_bytes(b"n")
    g._record("chunks/g-0000.npz", _sha(b"n"))
    rows.write_bytes(b"changed")  # the rows damaged, the params whole: both checked
    with pytest.warns(results.DamagedFileWarning):
        assert g.has_chunk("g", 0) is False
    assert npz.exists() and not rows.exists()
    assert g.manifest == {"chunks/g-0000.npz": _sha(b"n")}


def test_an_unreadable_manifest_keeps_chunks_that_read_whole(tmp_path):
    import hashlib

    (tmp_path / "chunks").mkdir()
    whole = tmp_path / "chunks" / "w.npz"
    np.savez(whole, a=np.arange(3))
    broken = tmp_path / "chunks" / "b.npz"
    broken.write_bytes(b"PK\x03\x04 cut")
    csv = tmp_path / "results.csv"
    csv.write_text("x\n")
    (tmp_path / "manifest.json").write_text('{"chunks/w.npz": ')
    f = results.RunFolder(tmp_path)
    with pytest.warns(results.DamagedFileWarning) as w:
        assert f.manifest == {}
    assert str(w[0].message).startswith(f"{tmp_path / 'manifest.json'} cannot be read: moved to ")
    assert str(w[0].message).endswith("; its chunks are checked by reading them whole and kept, "
                                      "and every other file is rebuilt")
    assert f.verified(whole) is True
    assert f.manifest == {"chunks/w.npz": hashlib.sha256(whole.read_bytes()).hexdigest()}
    assert _manifest(tmp_path) == f.manifest
    assert f.verified(whole) is True  # now recorded
    with pytest.warns(results.DamagedFileWarning) as w:  # (and NumPy's unclosed file)
        assert f.verified(broken) is False
    [said] = [str(x.message) for x in w if x.category is results.DamagedFileWarning]
    assert said.startswith(f"{broken} does not read back whole: moved to ")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file rebuilt anyway (not a chunk) goes quietly
        assert f.verified(csv) is False
    assert not csv.exists()
    assert sorted(_damaged(tmp_path)) == ["b.npz", "manifest.json", "results.csv"]
    assert f.manifest == {"chunks/w.npz": hashlib.sha256(whole.read_bytes()).hexdigest()}


def test_set_aside_names_the_destination_when_the_move_fails(tmp_path, monkeypatch):
    f = results.RunFolder(tmp_path)
    (tmp_path / "x").write_text("x")

    def refuse(src, dst):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(results.WriteFailed) as e:
        f._set_aside(tmp_path / "x", "why")
    assert e.value.filename.startswith(str(tmp_path / "chunks" / "damaged" / "x."))
    assert (tmp_path / "chunks" / "damaged").is_dir()
    monkeypatch.undo()
    with pytest.warns(results.DamagedFileWarning) as w:
        f._set_aside(tmp_path / "x", "is odd", "; then this")
    dest = next((tmp_path / "chunks" / "damaged").iterdir())
    assert str(w[0].message) == f"{tmp_path / 'x'} is odd: moved to {dest}; then this"
    (tmp_path / "y").write_text("y")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f._set_aside(tmp_path / "y", "quietly", warn=False)
    assert _damaged(tmp_path) == {"x": b"x", "y": b"y"}


def _two_groups(folder):
    """A folder of hand-made chunks: group g in chunks 0 (2 runs) and 1 (1 run), group h in
    chunk 0 (1 run); g has dead_frac, h grad_norm_W and a shortcut_init."""
    f = results.RunFolder(folder)
    h = {**COLUMNS, "variant": "shortcut", "shortcut_init": "zeros", "dataset": "moons"}
    f.save_chunk("g", 0, COLUMNS, np.array([0.5, 2.0]), np.array([0, 0]), 10,
                 _metrics(2, 2, ["train_loss", "val_acc", "dead_frac"]),
                 {"W1": np.arange(12, dtype=np.float32).reshape(2, 2, 3),
                  "b2": np.array([1, 2], np.float32)})
    f.save_chunk("g", 1, COLUMNS, np.array([0.5]), np.array([1]), 10,
                 _metrics(1, 2, ["train_loss", "val_acc", "dead_frac"], start=100),
                 {"W1": np.full((1, 2, 3), -1, np.float32), "b2": np.array([3], np.float32)},
                 first_run=3)
    f.save_chunk("h", 0, h, np.array([1.0]), np.array([5]), 10,
                 _metrics(1, 2, ["train_loss", "grad_norm_W"], start=50),
                 {"W1": np.full((1, 2, 3), 9, np.float64), "W": np.ones((1, 1, 3))},
                 first_run=2)
    return f


def test_assemble_writes_the_table_params_and_csv_of_the_chunks_in_order(tmp_path):
    import json

    out = tmp_path / "out"
    f = _two_groups(out)
    f.assemble([("g", 0), ("h", 0), ("g", 1)])
    table = json.loads((out / "table.json").read_text())
    assert (out / "table.json").read_text().startswith('{\n"format": "parquet",\n"files": [\n')
    assert table == {
        "format": "parquet",
        "files": ["chunks/g-0000.parquet", "chunks/h-0000.parquet", "chunks/g-0001.parquet"],
        "metrics": [*results.METRIC_COLUMNS, "dead_frac", "grad_norm_W"], "rows": 8,
        "categories": {"dataset": ["moons", "xor"], "variant": ["plain", "shortcut"],
                       "shortcut_init": ["zeros"], "optimizer": ["sgd"], "loss_fn": ["mse"],
                       "batch_size": ["full"], "activation": ["relu"]}}
    with np.load(out / "params.npz") as z:
        assert sorted(z.files) == ["g/W1", "g/b2", "g/columns", "g/lr", "g/seed",
                                   "h/W", "h/W1", "h/columns", "h/lr", "h/seed"]
        np.testing.assert_array_equal(z["g/W1"], np.concatenate(
            [np.arange(12, dtype=np.float32).reshape(2, 2, 3), np.full((1, 2, 3), -1)]))
        assert z["g/W1"].dtype == np.float32 and z["h/W1"].dtype == np.float64
        assert z["g/b2"].tolist() == [1, 2, 3] and z["g/lr"].tolist() == [0.5, 2.0, 0.5]
        assert z["g/seed"].tolist() == [0, 0, 1] and z["h/seed"].tolist() == [5]
        assert json.loads(str(z["g/columns"])) == COLUMNS
        assert json.loads(str(z["h/columns"]))["dataset"] == "moons"
        np.testing.assert_array_equal(z["h/W"], np.ones((1, 1, 3)))
    lines = (out / "results.csv").read_text().splitlines()
    assert lines[0].split(",") == [*results.ID_COLUMNS, *table["metrics"]]
    assert len(lines) == 9
    # rows in the given order: g's chunk 0 (runs 0, 1), h's (run 2), g's chunk 1 (run 3)
    at = {c: i for i, c in enumerate(lines[0].split(","))}
    assert [line.split(",")[at["seed"]] for line in lines[1:]] == list("00005511")
    assert lines[5].split(",")[at["dataset"]] == "moons"
    assert lines[7].split(",")[at["train_loss"]] == "100.0"
    assert [line.split(",")[at["grad_norm_W"]] for line in lines[1:]] == [
        "", "", "", "", "60.0", "60.25", "", ""]
    assert _manifest(out) == {
        **{f"chunks/{n}": _sha((out / "chunks" / n).read_bytes()) for n in (
            "g-0000.parquet", "g-0000.npz", "g-0001.parquet", "g-0001.npz", "h-0000.parquet",
            "h-0000.npz")},
        **{n: _sha((out / n).read_bytes()) for n in ("table.json", "params.npz",
                                                        "results.csv")}}


def test_assemble_writes_csv_up_to_csv_rows_and_sets_aside_stale_files(tmp_path, monkeypatch):
    out = tmp_path / "out"
    f = _two_groups(out)
    monkeypatch.setattr(results, "CSV_ROWS", 5)
    f.assemble([("g", 0), ("h", 0)])  # 6 rows
    assert not (out / "results.csv").exists() and (out / "table.json").exists()
    monkeypatch.setattr(results, "CSV_ROWS", 6)
    (out / "params.npz").write_bytes(b"stale")  # no longer its recorded checksum
    with pytest.warns(results.DamagedFileWarning, match="params.npz fails its recorded"):
        f.assemble([("g", 0), ("h", 0)])
    assert len((out / "results.csv").read_text().splitlines()) == 7
    assert _damaged(out) == {"params.npz": b"stale"}
    with np.load(out / "params.npz") as z:
        assert z["g/lr"].tolist() == [0.5, 2.0]


def test_export_csv_writes_the_folders_csv_or_another_file(tmp_path, monkeypatch):
    out = tmp_path / "out"
    f = _two_groups(out)
    monkeypatch.setattr(results, "CSV_ROWS", 0)
    f.assemble([("g", 1), ("h", 0)])
    assert not (out / "results.csv").exists()
    other = tmp_path / "elsewhere.csv"
    assert f.export_csv(str(other)) == other
    text = other.read_text()
    lines = text.splitlines()
    assert len(lines) == 5 and lines[0].split(",")[:2] == ["dataset", "data_seed"]
    assert "results.csv" not in _manifest(out) and not (out / "results.csv").exists()
    assert f.export_csv() == out / "results.csv"
    assert (out / "results.csv").read_text() == text
    assert _manifest(out)["results.csv"] == _sha(text.encode())
    (out / "results.csv").unlink()
    monkeypatch.chdir(out)
    assert f.export_csv("results.csv") == f.results_csv  # the same file, spelled another way
    assert (out / "results.csv").read_text() == text
    assert _manifest(out)["results.csv"] == _sha(text.encode())


def test_params_of_names_an_unreadable_params_npz_and_rereads_a_new_one(tmp_path):
    W1 = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    leaves = {"W1": W1, "b1": np.zeros((2, 2)), "W2": np.zeros((2, 1, 2)), "b2": np.zeros(2)}
    folder = _params_folder(tmp_path / "f", {"g": (COLUMNS, [0.5, 2.0], [0, 0], leaves)})
    rows = _rows((COLUMNS, 2.0, 0))
    np.testing.assert_array_equal(results.params_of(folder, rows).W1, W1[1:])
    # the same file name, written again with the runs in another order: read again
    npz = folder / "params.npz"
    stamp = npz.stat().st_mtime_ns
    _params_folder(tmp_path / "f2", {"g": (COLUMNS, [2.0, 0.5], [0, 0], leaves)})
    os.replace(tmp_path / "f2" / "params.npz", npz)
    os.utime(npz, ns=(stamp + 10**9, stamp + 10**9))
    np.testing.assert_array_equal(results.params_of(folder, rows).W1, W1[:1])
    # a leaf whose bytes fail their CRC-32; then a file that is no zip
    raw = npz.read_bytes()
    at = raw.index(W1.tobytes()[4:12])
    npz.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:])
    with pytest.raises(ValueError) as e:
        results.params_of(folder, rows)
    assert str(e.value).startswith(f"folder: {npz} cannot be read (")
    assert str(e.value).endswith("); rerun the command that wrote the folder to rebuild it "
                                 "from the chunks")
    npz.write_bytes(b"junk")
    with pytest.raises(ValueError) as e:
        results.params_of(folder, rows)
    assert str(e.value).startswith(f"folder: {npz} cannot be read (")


def test_git_commit_is_none_when_git_fails_either_question(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "results.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    monkeypatch.setattr(results, "__file__", str(repo / "pkg" / "results.py"))
    assert results.git_commit() is None  # no commit yet: no HEAD (though status answers)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    assert results.git_commit() is not None
    (repo / ".git" / "index").write_text("junk")  # HEAD answers, status does not
    assert results.git_commit() is None


def test_params_npz_entries_are_zip64_so_a_leaf_may_pass_4_gib(tmp_path):
    import struct
    import zipfile

    out = tmp_path / "out"
    _two_groups(out).assemble([("g", 0), ("h", 0), ("g", 1)])
    raw = (out / "params.npz").read_bytes()
    with zipfile.ZipFile(out / "params.npz") as z:
        infos = z.infolist()
    assert len(infos) == 10
    for info in infos:  # each local header carries a ZIP64 extra field (id 1), stored as is
        assert info.compress_type == zipfile.ZIP_STORED, info.filename
        start = info.header_offset
        assert raw[start:start + 4] == b"PK\x03\x04"
        name_len, extra_len = struct.unpack("<2H", raw[start + 26:start + 30])
        extra = raw[start + 30 + name_len:start + 30 + name_len + extra_len]
        assert extra_len >= 4 and struct.unpack("<H", extra[:2])[0] == 1, info.filename


@pytest.mark.skipif("mutants" in results.__file__.split(os.sep),
                    reason="mutmut's trampolines add stack frames")
def test_a_damaged_file_warning_points_at_the_caller_of_verified(tmp_path):
    (tmp_path / "chunks").mkdir()
    (tmp_path / "chunks" / "c.npz").write_bytes(b"c")
    with pytest.warns(results.DamagedFileWarning) as w:
        results.RunFolder(tmp_path).verified(tmp_path / "chunks" / "c.npz")
    assert w[0].filename == __file__


def test_git_commit_gives_each_git_call_5_seconds_and_is_none_past_them(monkeypatch):
    """Both git calls run with timeout=5 (a hung git cannot stall a sweep's start); a call
    past it (subprocess.TimeoutExpired) gives None. subprocess.run is a spy: nothing waits."""
    import subprocess

    calls = []

    def spy(args, **kw):
        calls.append((args, kw.get("timeout")))
        return subprocess.CompletedProcess(args, 0, stdout="abc123\n" if "rev-parse" in args
                                           else "")

    monkeypatch.setattr(results.subprocess, "run", spy)
    assert results.git_commit() == "abc123"
    assert calls == [(["git", "rev-parse", "HEAD"], 5), (["git", "status", "--porcelain"], 5)]

    def hung(args, **kw):
        raise subprocess.TimeoutExpired(args, kw["timeout"])

    monkeypatch.setattr(results.subprocess, "run", hung)
    assert results.git_commit() is None

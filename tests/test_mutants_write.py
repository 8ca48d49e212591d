"""Fast tests of results.py's writing side, for `mutmut run` (experiments/MUTATION.md): atomic
writes observed through os.replace/os.fsync/os.kill, hand-made NumPy params, tiny folders in
tmp_path (copies of the committed sweeps under tests/data), a git repository made in tmp_path,
the SIGINT handler called directly; each compared with hand-written values (no sweep runs,
nothing compiles)."""

import errno
import os
import signal
import stat

import numpy as np
import pytest

from shortcut_jax import results

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
    shutil.copytree("tests/data/build_sweep2", tmp_path / "s")  # residual runs have depth 2
    with pytest.raises(ValueError) as e:
        results.load_params(tmp_path / "s", variant="residual", depth=1)
    assert str(e.value) == "selectors: no run matches {'variant': 'residual', 'depth': 1}"


def test_load_params_reads_the_selected_runs_of_a_sweep_in_final_rows_order(tmp_path):
    import shutil

    shutil.copytree("tests/data/build_sweep", tmp_path / "s")
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

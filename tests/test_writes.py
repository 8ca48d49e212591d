"""Every file of a sweep folder arrives by an atomic rename: kills at the rename of each final
file (the config, the manifest, results.csv, params.npz) resume to the same folder, compared
file by file; and every write of a sweep, observed through open/os.open/os.replace, goes to a
temporary file that is then renamed into place."""

import builtins
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import shortcut_jax as sj
from shortcut_jax import results
from tests.test_results import SMALL

KILLED = f"""
import sys
import shortcut_jax as sj
sj.run_sweep(sj.Grid(**{SMALL!r}), sys.argv[1], progress=False)
"""


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("writes") / "run"
    sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
    return out


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".lock")}


def same_final_files(a: Path, b: Path) -> None:
    """The same files; each chunk, results.csv and params.npz byte for byte; the manifest as a
    mapping (its order is the order of writing); config.json's config (its provenance says
    when and where the sweep started)."""
    fa, fb = files(a), files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        if name in ("manifest.json", "config.json"):
            continue
        assert fa[name] == fb[name], name
    assert json.loads(fa["manifest.json"]) == json.loads(fb["manifest.json"])
    assert json.loads(fa["config.json"])["config"] == json.loads(fb["config.json"])["config"]


@pytest.mark.parametrize("target", ["config.json", "manifest.json", "results.csv", "params.npz"])
def test_a_kill_at_the_rename_of_any_final_file_resumes_to_the_same_folder(whole, tmp_path,
                                                                           target):
    out = tmp_path / "killed"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", results.KILL_ENV: target}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", KILLED, str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    left = {p.name for p in out.rglob(f".{target}.*.tmp")}
    assert len(left) == 1 and not (out / target).exists()  # killed just before the rename
    if target == "params.npz":  # results.csv was already in place
        assert (out / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()
    sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
    assert not list(out.rglob("*.tmp"))
    same_final_files(whole, out)


def test_every_write_of_a_sweep_goes_to_a_temporary_file_renamed_into_place(
        whole, tmp_path, monkeypatch):
    """builtins.open / io.open / os.open in a write mode, os.replace and os.rename recorded over
    a fresh sweep and a resume that recomputes a deleted chunk and results.csv."""
    out = tmp_path / "run"
    opened, replaced = [], []
    real_open, real_os_open, real_replace = builtins.open, os.open, os.replace

    def open_(file, mode="r", *a, **k):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
            opened.append(Path(file))
        return real_open(file, mode, *a, **k)

    def os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
            opened.append(Path(path))
        return real_os_open(path, flags, *a, **k)

    def replace(src, dst, *a, **k):
        replaced.append((Path(src), Path(dst)))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", lambda *a: pytest.fail(f"os.rename{a}"))
    sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
    first = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    (out / "results.csv").unlink()
    chunk = sorted((out / "chunks").glob("*.npz"))[-1]
    chunk.unlink()
    sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
    monkeypatch.undo()

    inside = [p for p in opened if out in p.parents]
    assert inside, "no write observed"
    renamed = {src: dst for src, dst in replaced}
    for p in inside:
        if p.name in (".lock",):  # the lock: a file the OS locks, never data
            continue
        # a temporary name beside its destination, renamed onto it
        assert p in renamed, f"{p} was written in place"
        dst = renamed[p]
        assert p.parent == dst.parent and p.name.startswith(f".{dst.name}.")
        assert p.name.endswith(".tmp")
    # every final file arrived by a rename, the deleted ones twice
    final = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert final == first
    arrived = [dst.relative_to(out).as_posix() for _, dst in replaced if out in dst.parents]
    assert set(final) - {".lock"} <= set(arrived)
    assert arrived.count("results.csv") == 2 and arrived.count(
        chunk.relative_to(out).as_posix()) == 2
    same_final_files(whole, out)

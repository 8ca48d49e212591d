"""What compiles: a fixed number of programs per sweep, none for data, one per shape whatever
the axes that change no shape; the persistent cache changes no result; imports stay light."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import shortcut_jax as sj
from shortcut_jax import compilation
from shortcut_jax import sweep as sweep_lib

SMALL = dict(datasets=("linear_xor",), widths=(3,), lrs=(0.5, 1.0), seeds=2, steps=4,
             eval_every=2, n_train=40, n_test=30)


def count_traces(monkeypatch):
    """Counts traces of the sweep's stages; clears JAX's in-memory caches so that every program
    a sweep needs counts (a program read back from a cache counts as one too)."""
    jax.clear_caches()
    traces = {"init": 0, "run": 0}
    real = sweep_lib.make_stages

    def counting(config):
        init, run = real(config)

        def init_(*a):
            traces["init"] += 1
            return init(*a)

        def run_(*a, **k):
            traces["run"] += 1
            return run(*a, **k)

        return init_, run_

    monkeypatch.setattr(sweep_lib, "make_stages", counting)
    return traces


@pytest.mark.parametrize("axis, values", [
    ("noise", (0.0, 0.05, 0.1, 0.2, 0.4)),
    ("linear_weight", (0.0, 0.25, 0.5, 0.75, 1.0)),
    ("shortcut_init", ("zeros", "lecun")),
])
def test_axes_that_change_no_shape_add_no_compilation(axis, values, tmp_path, monkeypatch):
    """A whole sweep compiles the draws once and init + run once for both variants (a plain run
    is the shortcut program with W frozen at 0), whatever the number of values of an axis that
    changes no shape: 3 programs in all."""
    traces = count_traces(monkeypatch)
    with compilation.tally() as t:
        sj.run_sweep(sj.Grid(**SMALL, **{axis: values}), str(tmp_path / "out"),
                     progress=False)
    n_groups = len(values) * 2 if axis != "shortcut_init" else 1 + len(values)
    assert len(list((tmp_path / "out" / "chunks").glob("*.npz"))) == n_groups
    assert traces == {"init": 1, "run": 1}  # one Executor for both variants
    assert t.programs == 2 + 1


def test_teacher_axes_share_one_program(tmp_path, monkeypatch):
    traces = count_traces(monkeypatch)
    grid = sj.Grid(**{**SMALL, "datasets": ("teacher",)}, teacher_shortcut=(0.0, 0.5, 1.0),
                   teacher_width=(1, 2), variants=("shortcut",))
    with compilation.tally() as t:
        sj.run_sweep(grid, str(tmp_path / "out"), progress=False)
    assert traces == {"init": 1, "run": 1} and t.programs == 3


@pytest.mark.parametrize("axis, values", [("n_train", (40, 60)), ("d", (2, 5))])
def test_a_new_shape_is_a_new_program(axis, values, tmp_path, monkeypatch):
    """Two programs per shape; the draws once for the whole sweep (at the largest d too)."""
    traces = count_traces(monkeypatch)
    grid = sj.Grid(**{**SMALL, axis: values}, variants=("shortcut",))
    with compilation.tally() as t:
        sj.run_sweep(grid, str(tmp_path / "out"), progress=False)
    assert traces == {"init": 2, "run": 2} and t.programs == 2 * 2 + 1


RUN = [sys.executable, "-m", "shortcut_jax.cli", "sweep", "--dataset", "xor", "--widths", "3",
       "--lrs", "0.5", "--seeds", "2", "--steps", "4", "--eval-every", "2", "--n-train", "40",
       "--n-test", "30", "--no-progress"]


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", compilation.DISABLE_ENV)}
    return {**env, "XDG_CACHE_HOME": str(tmp_path / "cache"), "JAX_PLATFORMS": "cpu", **extra}


def test_results_are_the_same_with_and_without_the_cache(tmp_path):
    env = _env(tmp_path)
    for name, extra in (("cold", []), ("warm", []), ("off", ["--no-compile-cache"])):
        subprocess.run([*RUN, "--out", str(tmp_path / name), *extra], env=env, check=True,
                       capture_output=True, timeout=300)
    folder = tmp_path / "cache" / "shortcut-jax" / "xla"
    assert any(folder.iterdir()), "the cache holds the compiled programs"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # owner only
    csv = {n: (tmp_path / n / "results.csv").read_bytes() for n in ("cold", "warm", "off")}
    assert csv["cold"] == csv["warm"] == csv["off"]
    for n in ("warm", "off"):
        with np.load(tmp_path / "cold" / "params.npz") as a, \
                np.load(tmp_path / n / "params.npz") as b:
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_the_cache_can_be_turned_off_and_a_users_folder_is_respected(tmp_path):
    env = _env(tmp_path, **{compilation.DISABLE_ENV: "1"})
    subprocess.run([*RUN, "--out", str(tmp_path / "a")], env=env, check=True,
                   capture_output=True, timeout=300)
    assert not (tmp_path / "cache").exists()
    own = tmp_path / "mine"
    env = _env(tmp_path, JAX_COMPILATION_CACHE_DIR=str(own))
    subprocess.run([*RUN, "--out", str(tmp_path / "b")], env=env, check=True,
                   capture_output=True, timeout=300)
    assert any(own.iterdir()) and not (tmp_path / "cache").exists()


def test_a_cache_folder_others_can_write_is_refused(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    if folder.stat().st_uid != os.getuid():
        pytest.skip("not the folder's owner")
    # our own folder: tightened to owner-only
    assert compilation.enable_cache(folder) == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    compilation.enable_cache(Path(os.environ["XDG_CACHE_HOME"]) / "shortcut-jax" / "xla")


def test_importing_the_package_loads_no_heavy_optional_library():
    code = ("import sys, shortcut_jax; print(sorted(m for m in ('matplotlib', 'sklearn', "
            "'pandas', 'tqdm', 'torch', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out == "[]"

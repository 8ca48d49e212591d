"""Sweeps: one compile per shape group, vmap vs loop, devices, hosts, resume, refusal, errors."""

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shortcut_jax as sj
from shortcut_jax import sweep as sweep_lib

ROOT = Path(__file__).resolve().parents[1]
SWEEP = str(ROOT / "experiments" / "sweep.py")
SMALL = dict(datasets=("xor",), widths=(4,), lrs=(0.5, 1.0), seeds=4, steps=20, eval_every=10,
             n_train=64, n_test=64, block_size=2)
CLI = ["--dataset", "xor", "--widths", "4", "--lrs", "0.5", "1.0", "--seeds", "4", "--steps",
       "20", "--eval-every", "10", "--n-train", "64", "--n-test", "64", "--block-size", "2",
       "--no-progress", "--no-compile-cache"]
# XLA's CPU dot kernels may round the last bit differently with buffer layout, which changes
# with the number of runs per device; parameters and losses have come out bitwise equal, the
# per-eval gradient-norm diagnostics within this tolerance.
DEVICE_RTOL = 1e-6


def read(path):
    with open(Path(path) / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_same_results(a, b, rtol=0.0):
    ra, rb = read(a), read(b)
    assert len(ra) == len(rb) and ra[0].keys() == rb[0].keys()
    exact = ("dataset", "variant", "width", "lr", "seed", "step", "train_loss", "test_loss",
             "train_acc", "test_acc")
    for x, y in zip(ra, rb):
        assert [x[k] for k in exact] == [y[k] for k in exact]
        for k in x:
            if k not in exact and x[k] != y[k]:
                np.testing.assert_allclose(float(x[k]), float(y[k]), rtol=rtol, err_msg=k)
    pa, pb = np.load(Path(a) / "params.npz"), np.load(Path(b) / "params.npz")
    assert sorted(pa.files) == sorted(pb.files)
    for k in pa.files:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


def run_cli(out, *extra, devices=1, timeout=300):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, SWEEP, *CLI, "--out", str(out), *extra], env=env,
                          capture_output=True, text=True, timeout=timeout, check=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The small sweep on one device, in this process."""
    out = tmp_path_factory.mktemp("ref") / "run"
    sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
    return out


def test_results_table_is_tidy(reference):
    rows = read(reference)
    assert len(rows) == 2 * 2 * 4 * 3  # variants x lrs x seeds x evals (steps 0, 10, 20)
    assert list(rows[0])[:len(sj.results.ID_COLUMNS)] == list(sj.results.ID_COLUMNS)
    for col in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                "grad_norm"):
        assert col in rows[0]
    assert {r["variant"] for r in rows} == {"plain", "shortcut"}
    assert {r["step"] for r in rows} == {"0", "10", "20"}
    config = (reference / "config.json").read_text()
    for key in ('"jax"', '"jaxlib"', '"optax"', '"device_kind"', '"device_count"',
                '"matmul_precision": "highest"', '"x64"', '"git_commit"'):
        assert key in config


def test_sweep_runs_equal_single_runs(reference):
    """Each (variant, lr, seed) row equals make_train run alone (the vmapped sweep vs a loop)."""
    rows = read(reference)
    data = sj.data.get_dataset("xor", 0, n_train=64, n_test=64)
    for variant in ("plain", "shortcut"):
        cfg = sj.TrainConfig(h=4, shortcut=variant == "shortcut", steps=20, eval_every=10)
        train = jax.jit(sj.make_train(cfg))
        for lr in (0.5, 1.0):
            for seed in range(4):
                _, m = train(jax.random.key(seed), jnp.float32(lr), data)
                got = [float(r["train_loss"]) for r in rows if r["variant"] == variant
                       and float(r["lr"]) == lr and int(r["seed"]) == seed]
                np.testing.assert_allclose(got, m["train_loss"], rtol=1e-6)


def test_paired_start(reference):
    """Plain and shortcut runs of a seed start as the same function (W = 0)."""
    rows = [r for r in read(reference) if r["step"] == "0"]
    by = {(r["variant"], r["lr"], r["seed"]): r["train_loss"] for r in rows}
    assert len(by) == 2 * 2 * 4
    for lr, seed in {(lr, seed) for _, lr, seed in by}:
        assert by[("plain", lr, seed)] == by[("shortcut", lr, seed)]


def test_one_compilation_per_shape_group(tmp_path, monkeypatch):
    from tests.test_compilation import count_traces

    traces = count_traces(monkeypatch)
    grid = sj.Grid(**{**SMALL, "variants": ("shortcut",), "seeds": 8, "chunk_size": 4,
                      "steps": 40})
    sj.run_sweep(grid, str(tmp_path / "out"), progress=False)
    chunks = list((tmp_path / "out" / "chunks").glob("*.npz"))
    assert len(chunks) == 4  # 16 runs in chunks of 4: one group, four compiled-call series
    assert traces == {"init": 1, "run": 1}


def test_chunking_does_not_change_results(reference, tmp_path):
    sj.run_sweep(sj.Grid(**{**SMALL, "chunk_size": 4}), str(tmp_path / "c4"), progress=False)
    assert len(list((tmp_path / "c4" / "chunks").glob("*.npz"))) == 4
    assert_same_results(reference, tmp_path / "c4", rtol=DEVICE_RTOL)


def test_memory_budget_splits_into_chunks():
    grid = sj.Grid(**{**SMALL, "seeds": 64, "memory_budget": 40_000})
    group = grid.groups()[0]
    data = sj.data.get_dataset("xor", 0, n_train=64, n_test=64)
    size = sweep_lib.chunk_size_for(grid, group.config, len(grid.runs()), 1, data)
    assert 2 <= size < len(grid.runs()) and size % 2 == 0  # whole blocks


def test_a_chunk_holds_at_most_4096_runs_unless_asked():
    """The host holds a chunk: by default at most 4096 runs (whole blocks), however many runs
    the memory budget would allow, so a sweep's memory does not grow with its seeds."""
    grid = sj.Grid(**{**SMALL, "seeds": 10_000, "block_size": 64})
    group = grid.groups()[0]
    data = sj.data.get_dataset("xor", 0, n_train=64, n_test=64)
    assert sweep_lib.chunk_size_for(grid, group.config, 20_000, 2, data) == 4096
    assert sweep_lib.chunk_size_for(grid, group.config, 1000, 2, data) == 1024  # whole blocks
    asked = sj.Grid(**{**SMALL, "seeds": 10_000, "block_size": 64, "chunk_size": 8192})
    assert sweep_lib.chunk_size_for(asked, group.config, 20_000, 2, data) == 8192


def test_same_config_twice_is_bitwise_identical(reference, tmp_path):
    sj.run_sweep(sj.Grid(**SMALL), str(tmp_path / "again"), progress=False)
    assert (reference / "results.csv").read_bytes() == \
        (tmp_path / "again" / "results.csv").read_bytes()


def test_different_config_into_the_same_folder_is_refused(reference):
    with pytest.raises(ValueError, match=r"out: .* holds results of a different config: "
                                         r"grid.lrs is \[0.5, 1.0\] there, \[0.3\] here"):
        sj.run_sweep(sj.Grid(**{**SMALL, "lrs": (0.3,)}), str(reference), progress=False)


def test_eight_devices_give_the_one_device_results(reference, tmp_path):
    proc = run_cli(tmp_path / "d8", devices=8)
    assert '"device_count": 8' in (tmp_path / "d8" / "config.json").read_text(), proc.stderr
    assert_same_results(reference, tmp_path / "d8", rtol=DEVICE_RTOL)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_one_process_results(reference, tmp_path):
    """jax.distributed on 127.0.0.1 with gloo CPU collectives, 2 processes x 2 devices."""
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, SWEEP, *CLI, "--out", str(tmp_path / "mp"),
                               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                               "--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    config = (tmp_path / "mp" / "config.json").read_text()
    assert '"process_count": 2' in config and '"device_count": 4' in config
    assert_same_results(reference, tmp_path / "mp", rtol=DEVICE_RTOL)


def test_resume_after_sigkill_is_bitwise_identical(tmp_path):
    """Kill the sweep once its first chunk is on disk; the rerun skips it and ends identical."""
    args = ["--seeds", "16", "--lrs", "0.5", "--chunk-size", "4", "--steps", "3000",
            "--eval-every", "1000", "--n-train", "1024", "--widths", "32", "--variants",
            "shortcut"]
    run_cli(tmp_path / "whole", *args)
    out = tmp_path / "killed"
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    proc = subprocess.Popen([sys.executable, SWEEP, *CLI, *args, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "chunks").glob("*.npz")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted((out / "chunks").glob("*.npz"))
    assert 1 <= len(done) < 4, "the kill came too late to test resuming"
    assert not (out / "results.csv").exists()
    first = {p: p.stat().st_mtime_ns for p in done}
    run_cli(out, *args)
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())  # skipped, not redone
    assert (tmp_path / "whole" / "results.csv").read_bytes() == \
        (out / "results.csv").read_bytes()


def test_cli_shards_over_one_cpu_device_per_core_by_default(reference, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    subprocess.run([sys.executable, SWEEP, *CLI, "--out", str(tmp_path / "cores")], env=env,
                   capture_output=True, text=True, timeout=300, check=True)
    cores = len(os.sched_getaffinity(0))
    assert f'"device_count": {cores}' in (tmp_path / "cores" / "config.json").read_text()
    assert_same_results(reference, tmp_path / "cores", rtol=DEVICE_RTOL)


def test_cli_refuses_a_cpu_device_count_jax_cannot_have(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, SWEEP, *CLI, "--cpu-devices", "3", "--out",
                           str(tmp_path / "x")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "--cpu-devices: expected 3 devices to be possible, but JAX already runs with 1" \
        in proc.stderr
    assert not (tmp_path / "x").exists()


USE_CPU_CORES = """
import sys
from shortcut_jax.sweep import use_cpu_cores
first = use_cpu_cores(int(sys.argv[1]))
import jax
print(first, jax.device_count(), use_cpu_cores(5), jax.device_count())
"""


@pytest.mark.parametrize("xla_flags, expected", [
    ("", "3 3 None 3"),  # set before the backend starts; a later call changes nothing
    ("--xla_force_host_platform_device_count=2", "None 2 None 2"),  # the user's flag wins
])
def test_use_cpu_cores(xla_flags, expected):
    env = {**os.environ, "XLA_FLAGS": xla_flags, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", USE_CPU_CORES, "3"], env=env,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.split() == expected.split()
    with pytest.raises(ValueError, match=r"count: expected an integer >= 1, got 0"):
        sweep_lib.use_cpu_cores(0)


def test_segments_past_the_last_eval_point_change_nothing(reference, tmp_path, monkeypatch):
    """3 eval points in calls of 2: the second call's extra point is dropped, no extra steps."""
    assert sweep_lib.segment_evals(3) == 1 and sweep_lib.segment_evals(41) == 3
    monkeypatch.setattr(sweep_lib, "segment_evals", lambda num_evals: 2)
    sj.run_sweep(sj.Grid(**SMALL), str(tmp_path / "seg2"), progress=False)
    assert_same_results(reference, tmp_path / "seg2", rtol=DEVICE_RTOL)


@pytest.mark.parametrize("change, match", [
    (dict(widths=()), r"widths: expected at least one value"),
    (dict(lrs=()), r"lrs: expected at least one value"),
    (dict(widths=(4, 0)), r"widths: expected an integer >= 1, got 0"),
    (dict(lrs=(0.1, -1.0)), r"lrs: expected finite learning rates > 0, got -1.0"),
    (dict(lrs=(float("nan"),)), r"lrs: expected finite learning rates > 0"),
    (dict(steps=0), r"steps: expected an integer >= 1, got 0"),
    (dict(seeds=0), r"seeds: expected an integer >= 1, got 0"),
    (dict(n_test=0), r"n_test: expected an integer >= 1, got 0"),
    (dict(optimizers=("lbfgs",)), r"optimizers: expected names in .*'lbfgs'"),
    (dict(loss_fns=("hinge",)), r"loss_fns: expected names in .*'hinge'"),
    (dict(variants=("resnet",)), r"variants: expected values in"),
    (dict(batch_size=0), r"batch_size: expected an integer >= 1, got 0"),
    (dict(linear_weight=0.5), r"linear_weight: applies to the data sets \['linear_xor'\], "
                              r"not to \['xor'\]"),
    (dict(teacher_width=(2,)), r"teacher_width: applies to the data sets \['teacher'\]"),
    (dict(eval_every=7), r"eval_every: expected a divisor of steps=20, got 7"),
])
def test_bad_grid_raises(change, match):
    with pytest.raises(ValueError, match=match):
        sj.Grid(**{**SMALL, **change})


def _set(a, index, value):
    a = np.array(a)
    a[index] = value
    return a


@pytest.mark.parametrize("corrupt, match", [
    (lambda d: d._replace(X_train=_set(d.X_train, (1, 1), np.inf)),
     r"data.X_train: expected finite values"),
    (lambda d: d._replace(Y_train=_set(d.Y_train, 0, -1.0)),
     r"data.Y_train: expected labels 0 or 1"),
    (lambda d: d._replace(X_train=d.X_train[:8], Y_train=d.Y_train[:8]),
     r"batch_size: expected at most the 8 training rows of xor-s0-n64-d2-noise0.05, got 16"),
])
def test_bad_data_is_refused_before_compiling(corrupt, match, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("compiled before validating")

    monkeypatch.setattr(sweep_lib, "Executor", boom)
    data = sj.data.get_dataset("xor", 0, n_train=64, n_test=64)
    with pytest.raises(ValueError, match=match):
        sj.run_sweep(sj.Grid(**{**SMALL, "batch_size": 16}), str(tmp_path / "x"),
                     load=lambda spec: corrupt(data), progress=False)
    assert not (tmp_path / "x" / "chunks").exists()


def test_cli_help_lists_every_flag():
    out = subprocess.run([sys.executable, SWEEP, "--help"], capture_output=True, text=True,
                         check=True).stdout
    for flag in ("--dataset", "--n-train", "--variants", "--widths", "--lrs", "--seeds",
                 "--steps", "--eval-every", "--optimizer", "--loss", "--batch-size", "--out",
                 "--chunk-size", "--data", "--target", "--val-fraction", "--no-compile-cache"):
        assert flag in out
    # the grid's n_train, n_test and d are the synthetic tasks' only, and say so
    entries = out.split("\n  --")  # one help entry per flag
    for flag in ("n-train", "n-test", "dim", "noise"):
        entry = next(e for e in entries if e.startswith(flag + " "))
        assert "synthetic tasks only" in entry, flag
    assert "input jitter, not label noise" in " ".join(out.split())


@pytest.mark.parametrize("partitionable", [True, False])
@pytest.mark.parametrize("axis, values", [("widths", (3, 16)), ("d", (2, 7))])
def test_a_group_s_results_do_not_depend_on_the_other_groups(tmp_path, partitionable, axis,
                                                              values):
    """Draws come from the widest width and largest d only where a prefix equals a narrower
    draw."""
    small = {**SMALL, "variants": ("shortcut",), "lrs": (0.5,), "seeds": 2, "steps": 10,
             "eval_every": 10, "widths": (3,), "d": (2,)}
    with jax.threefry_partitionable(partitionable):
        sj.run_sweep(sj.Grid(**{**small, axis: values[:1]}), str(tmp_path / "one"),
                     progress=False)
        sj.run_sweep(sj.Grid(**{**small, axis: values}), str(tmp_path / "two"),
                     progress=False)
    one = [r for r in read(tmp_path / "one")]
    column = {"widths": "width"}.get(axis, axis)
    two = [r for r in read(tmp_path / "two") if r[column] == str(values[0])]
    assert len(one) == len(two) > 0
    assert [r["train_loss"] for r in one] == [r["train_loss"] for r in two]


def test_a_finished_sweep_resumes_without_drawing_or_compiling(reference, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("nothing is left to run")

    monkeypatch.setattr(sweep_lib, "draw_runs", boom)
    monkeypatch.setattr(sweep_lib, "Executor", boom)
    sj.run_sweep(sj.Grid(**SMALL), str(reference), progress=False)


def test_run_chunk_refuses_partial_blocks_and_missing_draws():
    cfg = sj.TrainConfig(h=4, steps=20, eval_every=10)
    ex = sweep_lib.Executor(cfg, sweep_lib.make_mesh(), 2, 3)
    data = sj.data.get_dataset("xor", 0, n_train=64, n_test=64)
    B = ex.block_runs
    draws = sweep_lib.draw_runs(range(B + 1), 2, 4)
    with pytest.raises(ValueError, match=rf"lrs: expected a multiple of the executor's {B} "
                                         rf"runs per block, got {B + 1} runs"):
        sweep_lib.run_chunk(ex, data, np.full(B + 1, 0.5), np.zeros(B + 1), draws)
    with pytest.raises(ValueError, match=rf"w_scales: expected one per run \({B}\), got 1"):
        sweep_lib.run_chunk(ex, data, np.full(B, 0.5), np.zeros(1), draws)
    with pytest.raises(ValueError, match=rf"draws: expected one row per run \({B}\), got "
                                         rf"{B + 1} z rows"):
        sweep_lib.run_chunk(ex, data, np.full(B, 0.5), np.zeros(B), draws)


@pytest.mark.parametrize("seeds", [[-1], [2**32], [1.7], [], 5, [True]])
def test_draw_runs_refuses_bad_seeds(seeds):
    with pytest.raises(ValueError, match=r"seeds: expected a non-empty sequence of integers in "
                                         r"\[0, 2\*\*32\)"):
        sweep_lib.draw_runs(seeds, 2, 3)


def test_auto_block_size_fills_about_a_megabyte():
    from shortcut_jax.sweep import auto_block_size

    assert auto_block_size(1000, 16) == 16  # 16 runs x 1000 x 16 x 4 B = 1.0 MB
    assert auto_block_size(4096, 128) == 1  # one run is 2 MB already
    assert auto_block_size(10, 1) == 64  # capped
    assert auto_block_size(1000, 16, platform="cpu") == 16
    assert auto_block_size(1000, 16, platform="gpu") == 512  # fill the device, 32 MiB
    assert auto_block_size(4096, 128, platform="gpu") == 16
    assert auto_block_size(10, 1, platform="tpu") == 4096  # capped
    assert auto_block_size(1000, 16, platform="CPU") == 16
    # a depth-L run holds 2L - 1 activation matrices, and deeper blocks hold 2 runs at most
    assert auto_block_size(1000, 16, depth=1) == 16
    assert auto_block_size(1000, 16, depth=2) == 2  # 1 MiB / 192 kB = 5.5 -> 4, capped at 2
    assert auto_block_size(1000, 16, depth=3) == 2  # 1 MiB / 320 kB = 3.3
    assert auto_block_size(1000, 16, depth=4) == 2  # 1 MiB / 448 kB = 2.3
    assert auto_block_size(1000, 16, depth=9) == 1  # 1 MiB / 1088 kB < 1: one run
    assert auto_block_size(10, 1, depth=2) == 2  # the cap, not 64
    assert auto_block_size(1000, 16, platform="gpu", depth=3) == 64  # 32 MiB / 320 kB = 104.9
    with pytest.raises(ValueError, match=r"depth: expected an integer >= 1, got 0"):
        auto_block_size(1000, 16, depth=0)
    for bad in ((0, 4), (1000.5, 4), (10, -1)):
        with pytest.raises(ValueError, match=r"(n|h): expected an integer >= 1"):
            auto_block_size(*bad)
    with pytest.raises(TypeError, match=r"platform: expected a name such as 'cpu' or 'gpu', "
                                        r"got 5"):
        auto_block_size(1000, 16, platform=5)
    grid = sj.Grid(**{**SMALL, "block_size": None})
    assert grid.block(51, 4) == 8  # capped at the group's 2 lrs x 4 seeds
    assert sj.Grid(**{**SMALL, "block_size": None, "seeds": 100}).block(51, 4) == 64
    assert sj.Grid(**{**SMALL, "block_size": None, "seeds": 100}).block(4096, 64) == 1
    assert sj.Grid(**SMALL).block(51, 4) == 2
    with pytest.raises(ValueError, match="block_size: expected an integer >= 1, got 0"):
        sj.Grid(**{**SMALL, "block_size": 0})


@pytest.mark.parametrize("typed, note", [([], True), (["--eval-every=50"], True),
                                         (["--eval-every", "7"], False)])
def test_a_grid_error_names_the_flag_and_marks_a_default(typed, note, tmp_path, capsys):
    """However the flag is typed (or called from Python): a value equal to the default is
    marked as such; the check reads the parser's defaults, not sys.argv."""
    from shortcut_jax import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["sweep", "--dataset", "xor", "--steps", "30", *typed, "--out",
                  str(tmp_path / "out"), "--no-progress"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--eval-every: expected a divisor of steps=30, got" in err
    assert ("(the default; set --eval-every)" in err) == note

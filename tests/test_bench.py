"""The benchmark (shortcut_jax.bench, `shortcut-jax bench`, experiments/benchmark.py): agreement
of every implementation in --quick, the whole-process section's structure, the workers that time
one repeat per request, and the one-device kit. Timings are printed, never asserted."""

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shortcut_jax import bench, peers

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    """A benchmark command in a fresh process (its JAX devices are its own: one per core)."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_quick_agrees_with_every_peer(tmp_path):
    """experiments/benchmark.py --quick (configs in one process): every implementation's final
    losses agree with the kit's, each row records its threads and devices."""
    out = tmp_path / "b"
    stdout = _run("experiments/benchmark.py", "--quick", "--out", str(out), "--sections",
                  "grads", "compile", "configs")
    report = json.loads((out / "results.json").read_text())
    assert report["sections"] == ["grads", "compile", "configs"] and "process" not in report
    two = report["versions"]["device_count"] > 1
    for name, config in report["configs"].items():
        impls = [r["impl"] for r in config["rows"]]
        expected = {"kit", "numpy", "jax_naive"} | ({"kit_1dev"} if two else set())
        if two and config["M"] > 1:
            expected.add("jax_naive_sharded")
        assert expected <= set(impls), name
        assert impls[0] == "kit" and len(set(impls)) == len(impls), name
        assert ("jax_python_loop" in impls) == (config["M"] > 1), name
        assert ("jax_step_loop" in impls) == (config["M"] == 1), name
        for r in config["rows"]:
            assert r["agree"], (name, r["impl"])
            assert len(r["times_s"]) == 2 and r["compile_s"] >= 0
            f = r["footing"]
            assert f["cpus"] >= 1 and set(f["env"]) == set(bench.THREAD_ENV)
            if r["impl"] in (*bench.KIT_IMPLS, *bench.JAX_PEERS):
                assert 1 <= f["jax_devices_used"] <= f["jax_devices"]
            if r["impl"] in ("kit_1dev", "jax_naive"):
                assert f["jax_devices_used"] == 1
            if r["impl"] == "numpy":
                assert "blas" in f
    assert {r["impl"] for r in report["grads"]} == {"manual_grad", "jax.grad"}
    assert report["compile"][0]["group"].startswith("draw_runs")
    md = (out / "results.md").read_text()
    assert md.startswith("# Benchmark") and "threads / devices" in md and "× kit_1dev" in md
    assert "## A: n=64" in stdout


def test_process_section_quick(tmp_path):
    """--quick --sections process: a cold and a warm run of the (tiny) sweep command, each
    phase of its --timings, start-up and the rest recorded; the table in results.md."""
    out = tmp_path / "p"
    _run("-m", "shortcut_jax.cli", "bench", "--quick", "--out", str(out), "--sections",
         "process", "--process-commands", "sweep")
    proc = json.loads((out / "results.json").read_text())["process"]
    assert list(proc["commands"]) == ["sweep"]
    assert proc["commands"]["sweep"].startswith("shortcut-jax sweep --dataset xor")
    assert [(r["command"], r["cache"], r["rep"]) for r in proc["runs"]] == [
        ("sweep", "cold", 0), ("sweep", "warm", 0)]
    for run in proc["runs"]:
        assert run["error"] is None and run["returncode"] == 0
        assert {"data", "draws", "compile", "train", "write"} <= set(run["phases"])
        assert "report" not in run["phases"]
        assert run["startup_s"] is not None and run["other_s"] is not None
        assert run["wall_s"] > 0
    rows = {(r["command"], r["cache"]): r for r in proc["summary"]}
    assert set(rows) == {("sweep", "cold"), ("sweep", "warm")}
    for r in rows.values():
        assert r["runs"] == 1 and r["failed"] == 0 and r["target_s"] is None
        assert set(r["phases"]) == set(bench.PROCESS_PHASES) and r["phases"]["report"] is None
        assert all(r["phases"][p] is not None for p in ("data", "draws", "compile", "train",
                                                        "write"))
    md = (out / "results.md").read_text()
    assert "| sweep | cold | 1 |" in md and "| sweep | warm | 1 |" in md
    assert "| startup | data | draws | compile | train | write | report | other |" in md


def test_a_failing_command_is_reported(tmp_path, monkeypatch):
    """A command that fails is recorded with the tail of its stderr; the section goes on and
    its summary and table say so."""
    run = bench.run_process(["sweep", "--widths", "0"],
                            bench.processes._cache_home(tmp_path / "c"), tmp_path / "w")
    assert run["returncode"] == 2 and "--widths" in run["error"] and run["phases"] == {}
    ok = {"wall_s": 2.0, "returncode": 0, "timings": {"command": 1.0}, "error": None,
          "phases": {"data": 0.5, "compile": 0.5}, "startup_s": 0.7, "other_s": 0.3}
    runs = iter([dict(run), dict(ok), dict(ok), dict(run)])
    monkeypatch.setattr(bench.processes, "run_process", lambda *a, **k: next(runs))
    proc = bench.process_times({"bad": ["sweep", "--widths", "0"]}, 2)
    assert [(r["cache"], r["rep"]) for r in proc["runs"]] == [
        ("cold", 0), ("warm", 0), ("cold", 1), ("warm", 1)]
    rows = {r["cache"]: r for r in proc["summary"]}
    assert rows["cold"]["failed"] == 1 and rows["cold"]["wall_s"] == 2.0
    assert rows["warm"]["failed"] == 1 and "--widths" in rows["warm"]["error"]
    assert rows["warm"]["phases"]["compile"] == 0.5 and rows["warm"]["phases"]["train"] is None
    md = bench.tables._process_markdown(proc)
    assert "| bad | cold | 1 (1 failed) | 2.00 |" in "\n".join(md)
    assert "bad (warm cache) failed:" in md


def test_kit_on_one_device_in_a_worker():
    """The kit in a process with one CPU device and several blocks (this crashed with "Buffer
    has been deleted or donated": Executor.run donates its state): the worker answers one
    repeat per request, with NumPy's losses."""
    cfg = (1000, 2, 16, 48, 5)  # blocks of 16 runs: three calls on the one device
    worker = bench.Worker("kit", cfg, cpu_devices=1)
    timed = bench.timed_rounds([("kit", lambda: worker)], 2)["kit"]  # closes the worker
    assert worker.proc.returncode == 0
    assert "error" not in timed, timed.get("error")
    assert len(timed["times_s"]) == 2
    assert timed["footing"]["jax_devices"] == 1 and timed["footing"]["jax_devices_used"] == 1
    n, d, h, M, T = cfg
    X, Y = peers.make_data(1, n, d)
    _, losses = peers.train_numpy(peers.init_stacked(0, M, d, h, True, w_scale=0.1), X, Y, 0.5, T)
    np.testing.assert_allclose(timed["final_losses"], losses, rtol=1e-4, atol=1e-6)


def test_serve_answers_one_repeat_per_request():
    answers = io.StringIO()
    assert bench.serve("numpy", (64, 2, 4, 3, 5), io.StringIO("rep\nrep\nquit\nrep\n"),
                       answers) == 0
    lines = answers.getvalue().splitlines()
    assert len(lines) == 3 and all(x.startswith(bench.PROTOCOL) for x in lines)
    msgs = [json.loads(x[len(bench.PROTOCOL):]) for x in lines]
    assert msgs[0]["compile_s"] >= 0 and msgs[0]["footing"]["cpus"] >= 1
    assert all(len(m["final_losses"]) == 3 and m["time_s"] > 0 for m in msgs[1:])
    answers = io.StringIO()
    assert bench.serve("numpy", (64, 2, 4, 3, 5), io.StringIO("nonsense\n"), answers) == 2
    error = json.loads(answers.getvalue().splitlines()[-1][len(bench.PROTOCOL):])["error"]
    assert error == "request: expected 'rep' or 'quit', got 'nonsense'"


class _Fake:
    def __init__(self, name, calls, fail_at=None):
        self.name, self.calls, self.fail_at = name, calls, fail_at

    def warm_up(self):
        self.calls.append(("warm", self.name))
        return 0.0

    def footing(self):
        return {"cpus": 1}

    def rep(self):
        self.calls.append(("rep", self.name))
        if sum(c == ("rep", self.name) for c in self.calls) == self.fail_at:
            raise bench.WorkerError(f"{self.name} died")
        return 1.0, [0.5]


def test_rounds_interleave_the_implementations():
    calls = []
    starts = [(n, lambda n=n: _Fake(n, calls, fail_at=2 if n == "B" else None)) for n in "ABC"]
    out = bench.timed_rounds(starts, 3)
    assert calls == [("warm", "A"), ("warm", "B"), ("warm", "C"),
                     ("rep", "A"), ("rep", "B"), ("rep", "C"),
                     ("rep", "A"), ("rep", "B"), ("rep", "C"),
                     ("rep", "A"), ("rep", "C")]
    assert out["A"]["times_s"] == [1.0] * 3 and out["B"] == {"error": "B died"}


def test_config_entries():
    labels = lambda *a: [e[0] for e in bench.config_entries(*a)]
    assert labels(16, None, 2, False, False) == [
        "kit", "kit_1dev", "numpy", "numpy+tuned_malloc", "jax_naive", "jax_naive_sharded",
        "jax_python_loop"]
    assert labels(1, None, 2, True, False) == ["kit", "kit_1dev", "numpy", "jax_naive",
                                               "jax_step_loop"]
    assert labels(16, None, 1, True, False) == ["kit", "numpy", "jax_naive", "jax_python_loop"]
    assert labels(16, ["numpy", "torch_bmm"], 2, False, True) == [
        "kit", "numpy", "numpy+tuned_malloc", "torch_bmm", "torch_bmm+tuned_malloc"]
    tuned = [e for e in bench.config_entries(16, None, 2, False, True) if e[2]]
    assert {e[1] for e in tuned} == set(bench.MALLOC_IMPLS)


def test_impl_names_and_flags():
    assert set(bench.PEER_IMPLS) == set(peers.IMPLEMENTATIONS)
    assert bench.TORCH_IMPLS == peers.TORCH_IMPLEMENTATIONS
    assert bench.JAX_PEERS == peers.JAX_IMPLEMENTATIONS
    from shortcut_jax import cli

    args = cli.make_parser().parse_args(["bench", "--one", "kit", "--cfg", "[1000,2,16,1024,200]"])
    assert args.cfg == (1000, 2, 16, 1024, 200) and args.sections is None
    with pytest.raises(SystemExit):
        cli.make_parser().parse_args(["bench", "--cfg", "[1, 2]"])
    with pytest.raises(argparse.ArgumentTypeError, match=r"\[n, d, h, M, T\].*got '\[1, 2, 0"):
        bench.config_list("[1, 2, 0, 4, 5]")
    with pytest.raises(ValueError, match="impl: expected one of"):
        bench.Runner("jax", (8, 2, 4, 2, 3))


def test_an_out_that_is_a_file_is_refused_before_anything_runs(tmp_path, capsys):
    from shortcut_jax import cli

    (tmp_path / "f").write_text("")
    assert cli.main(["bench", "--quick", "--out", str(tmp_path / "f")]) == 2
    assert (f"--out: expected a folder for results.md and results.json, got the file "
            f"{tmp_path / 'f'}") in capsys.readouterr().err


def test_importing_the_command_loads_neither_torch_nor_matplotlib():
    code = ("import sys; import shortcut_jax.cli as c; import shortcut_jax.bench; "
            "c.make_parser(); print(sorted(m for m in ('torch', 'matplotlib') if m in "
            "sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-2000:]


def test_the_store_section_times_sweep_load_and_report_in_processes(tmp_path):
    """One tiny size: a sweep, loading its table and its report, each a fresh process with its
    own wall time and peak memory; the table names them."""
    from shortcut_jax.bench import store

    rows = store.store_scaling([12], quick=True, timeout=300)
    assert [(r["runs"], r["step"], r["error"]) for r in rows] == [
        (12, "sweep", None), (12, "load", None), (12, "report", None)]
    assert all(r["wall_s"] > 0 and r["peak_mb"] > 50 for r in rows)
    md = bench.markdown({"versions": {"device": "cpu", "platform": "x", "cpus": 2, "jax": "0"},
                         "store": rows})
    assert "## Sweep, load and report against the number of runs" in md
    assert "| 12 | load |" in md
    store.plot_store(rows, tmp_path / "store.png")
    assert (tmp_path / "store.png").stat().st_size > 0

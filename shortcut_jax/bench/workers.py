"""One implementation on one configuration, in this process (Runner) or in a worker process of
its own (Worker, serve); rounds interleaved across implementations (timed_rounds, time_config)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shortcut_jax.bench.configs import (
    IMPLS,
    JAX_PEERS,
    KIT_IMPLS,
    MALLOC_IMPLS,
    ONE_DEVICE_IMPLS,
    PROTOCOL,
    THREAD_ENV,
    TORCH_IMPLS,
    TUNED_MALLOC,
    Echo,
    _quiet,
    step_flops,
)
from shortcut_jax.bench.kit import kit_layout, train_kit

# --- one implementation on one configuration -------------------------------------------------


class Runner:
    """One implementation (a name in IMPLS) on one configuration (n, d, h, M, T), in this
    process: `warm_up()` once (compilation; seconds), then `rep()` per timed repeat."""

    def __init__(self, impl: str, cfg: Sequence[int]):
        from functools import partial

        from shortcut_jax import peers

        if impl not in IMPLS:
            raise ValueError(f"impl: expected one of {list(IMPLS)}, got {impl!r}")
        if impl in TORCH_IMPLS and not peers.HAVE_TORCH:
            raise ImportError(f"impl: {impl!r} needs PyTorch (pip install -e '.[bench]')")
        n, d, h, M, T = cfg
        self.impl, self.cfg, self.T = impl, tuple(cfg), T
        self.params = peers.init_stacked(0, M, d, h, True, w_scale=0.1)
        self.X, self.Y = peers.make_data(1, n, d)
        self.devices_used: int | None = None  # JAX devices the implementation computes on
        if impl in KIT_IMPLS:
            import jax

            devices = jax.devices()[:1] if impl == "kit_1dev" else jax.devices()
            self.fn = partial(train_kit, devices=devices)
            self.devices_used = kit_layout(n, h, M, len(devices))[1]
        else:
            self.fn = peers.IMPLEMENTATIONS[impl]
            if impl in JAX_PEERS:
                self.devices_used = peers.sharded_devices(M) if impl == "jax_naive_sharded" else 1

    def warm_up(self) -> float:
        """The first call, or torch.compile's compilation: seconds. JAX programs that depend on
        T (the kit, jax_naive*, jax_python_loop) warm up with a full run; others with 2 steps."""
        from functools import partial

        from shortcut_jax import peers

        if self.impl == "torch_compile":
            step, compile_s = peers.make_torch_compile_step(self.params, self.X, self.Y, 0.5)
            self.fn = partial(peers.train_torch_compile, step=step)
            self.fn(self.params, self.X, self.Y, 0.5, 2)
            return compile_s
        whole = self.impl in (*KIT_IMPLS, "jax_naive", "jax_naive_sharded", "jax_python_loop")
        t0 = time.perf_counter()
        self.fn(self.params, self.X, self.Y, 0.5, self.T if whole else 2)
        return time.perf_counter() - t0

    def rep(self) -> tuple[float, list[float]]:
        """One timed training of the M models for T steps: (seconds, final losses)."""
        t0 = time.perf_counter()
        _, losses = self.fn(self.params, self.X, self.Y, 0.5, self.T)
        return time.perf_counter() - t0, [float(v) for v in losses]

    def footing(self) -> dict[str, Any]:
        """Threads and devices this implementation runs with, in this process."""
        info: dict[str, Any] = {"cpus": _cpus(),
                                "env": {k: os.environ.get(k) for k in THREAD_ENV}}
        if self.devices_used is not None:
            import jax

            info.update(jax_devices_used=self.devices_used, jax_devices=jax.local_device_count(),
                        jax_device_kind=jax.devices()[0].device_kind)
        if self.impl in TORCH_IMPLS:
            import torch

            info.update(torch_threads=torch.get_num_threads(),
                        torch_interop_threads=torch.get_num_interop_threads())
        if self.impl == "numpy":
            info["blas"] = _blas_threads()
        return info


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _blas_threads() -> list[dict[str, Any]] | None:
    """NumPy's BLAS libraries and their thread counts (threadpoolctl), None without it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [{"library": i.get("internal_api"), "threads": i.get("num_threads")}
            for i in threadpool_info() if i.get("user_api") == "blas"]


def footing_text(f: dict[str, Any]) -> str:
    """A row's threads and devices in a few words, for the tables."""
    parts = []
    if "jax_devices_used" in f:
        s = "" if f["jax_devices"] == 1 else "s"
        parts.append(f"{f['jax_devices_used']} of {f['jax_devices']} JAX {f['jax_device_kind']} "
                     f"device{s}")
    if "torch_threads" in f:
        parts.append(f"torch {f['torch_threads']} threads")
    if "blas" in f:
        blas = f["blas"]
        parts.append("BLAS threads unknown" if not blas else
                     ", ".join(f"{b['library']} {b['threads']} threads" for b in blas))
    env = f.get("env", {})
    parts += [f"{k}={env[k]}" for k in THREAD_ENV[:3] if env.get(k) is not None]
    parts.append(f"{f['cpus']} CPUs")
    return "; ".join(parts)


# --- workers: one process per implementation, one repeat per request ---------------------------


class WorkerError(RuntimeError):
    """A worker process ended or answered with an error; the message ends with its stderr."""


class Worker:
    """A Runner in a process of its own (`bench --serve`): same warm_up / rep / footing."""

    def __init__(self, impl: str, cfg: Sequence[int], *, cpu_devices: int | None = None,
                 env: dict[str, str] | None = None):
        self.impl, self.cfg = impl, tuple(cfg)
        self._tmp = tempfile.mkdtemp(prefix="shortcut-jax-bench-worker-")
        cmd = [sys.executable, "-m", "shortcut_jax.cli", "bench", "--serve", impl, "--cfg",
               json.dumps(list(cfg))]
        if cpu_devices is not None:
            cmd += ["--cpu-devices", str(cpu_devices)]
        full_env = {**os.environ, **(env or {}), "JAX_ENABLE_COMPILATION_CACHE": "false",
                    "TORCHINDUCTOR_CACHE_DIR": os.path.join(self._tmp, "inductor")}
        self._stderr_path = os.path.join(self._tmp, "stderr")
        self._stderr = open(self._stderr_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=full_env, text=True, bufsize=1)
        self._footing: dict[str, Any] | None = None

    def _tail(self, chars: int = 1500) -> str:
        return Path(self._stderr_path).read_text(errors="replace")[-chars:].strip()

    def _answer(self) -> dict[str, Any]:
        for line in self.proc.stdout:
            if line.startswith(PROTOCOL):
                msg = json.loads(line[len(PROTOCOL):])
                if "error" in msg:
                    raise WorkerError(f"{self.impl}: {msg['error']}")
                return msg
        self.proc.wait()
        raise WorkerError(f"{self.impl} worker exited with status {self.proc.returncode}:\n"
                          f"{self._tail()}")

    def warm_up(self) -> float:
        msg = self._answer()
        self._footing = msg["footing"]
        return msg["compile_s"]

    def rep(self) -> tuple[float, list[float]]:
        try:
            self.proc.stdin.write("rep\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # _answer reports the exit and the stderr
        msg = self._answer()
        return msg["time_s"], msg["final_losses"]

    def footing(self) -> dict[str, Any]:
        if self._footing is None:
            raise WorkerError(f"{self.impl}: footing is known after warm_up()")
        return self._footing

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
        except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self._stderr.close()
            shutil.rmtree(self._tmp, ignore_errors=True)


def serve(impl: str, cfg: Sequence[int], requests=None, answers=None) -> int:
    """The worker's side (`bench --serve IMPL --cfg ...`): warm up, answer `{compile_s,
    footing}`, then one `{time_s, final_losses}` per "rep" line on `requests` until "quit" or
    its end. Answers are single lines prefixed with PROTOCOL on `answers`."""
    requests = sys.stdin if requests is None else requests
    answers = sys.stdout if answers is None else answers

    def send(msg: dict[str, Any]) -> None:
        answers.write(PROTOCOL + json.dumps(msg) + "\n")
        answers.flush()

    runner = Runner(impl, cfg)
    send({"compile_s": runner.warm_up(), "footing": runner.footing()})
    for line in requests:
        request = line.strip()
        if request == "quit":
            break
        if request != "rep":
            send({"error": f"request: expected 'rep' or 'quit', got {request!r}"})
            return 2
        seconds, losses = runner.rep()
        send({"time_s": seconds, "final_losses": losses})
    return 0


def timed_rounds(starts: Sequence[tuple[str, Callable[[], Any]]], reps: int,
                 echo: Echo = _quiet) -> dict[str, dict[str, Any]]:
    """Start and warm up every runner, one after another (so each compiles alone), then `reps`
    rounds of one repeat of each in turn -> {label: {compile_s, footing, times_s,
    final_losses}}, or {label: {error}} for one that failed (reported, dropped).

    starts: (label, start) pairs, start() -> a Runner or a Worker (closed at the end). In this
    process only ImportError counts as a failure; other errors propagate."""
    out: dict[str, dict[str, Any]] = {}
    started, live = [], []

    def fail(label: str, e: Exception) -> None:
        out[label] = {"error": str(e)}
        echo(f"  {label}: failed: {str(e).splitlines()[-1:]}")

    try:
        for label, start in starts:
            try:
                r = start()
                started.append(r)
                out[label] = {"compile_s": r.warm_up(), "footing": r.footing(), "times_s": []}
                live.append((label, r))
            except (WorkerError, ImportError) as e:
                fail(label, e)
        for _ in range(reps):
            for label, r in list(live):
                try:
                    seconds, losses = r.rep()
                except WorkerError as e:
                    fail(label, e)
                    live.remove((label, r))
                    continue
                out[label]["times_s"].append(seconds)
                out[label]["final_losses"] = losses
    finally:
        for r in started:
            if hasattr(r, "close"):
                r.close()
    return out


def config_entries(M: int, impls: Sequence[str] | None, n_devices: int, quick: bool,
                   have_torch: bool) -> list[tuple[str, str, bool]]:
    """(label, impl, tuned malloc) of every row of a configuration with M models, in the order
    they are timed in each round. kit_1dev and jax_naive_sharded only where more than one
    device exists (and M > 1 for the latter); jax_python_loop for M > 1, jax_step_loop for
    M = 1; tuned malloc for NumPy and PyTorch (not with --quick)."""
    out = []
    for impl in IMPLS:
        if impl != "kit" and impls is not None and impl not in impls:
            continue
        if impl in TORCH_IMPLS and not have_torch:
            continue
        if impl in ("kit_1dev", "jax_naive_sharded") and n_devices == 1:
            continue
        if (impl == "jax_naive_sharded" or impl == "jax_python_loop") and M == 1:
            continue
        if impl == "jax_step_loop" and M > 1:
            continue
        out.append((impl, impl, False))
        if impl in MALLOC_IMPLS and not quick:
            out.append((f"{impl}+tuned_malloc", impl, True))
    return out


def time_config(name: str, cfg: Sequence[int], entries: Sequence[tuple[str, str, bool]],
                reps: int, *, in_process: bool, cpu_devices: int | None = None,
                echo: Echo = _quiet) -> list[dict[str, Any]]:
    """The rows of one configuration: every entry timed in rounds (timed_rounds), in workers
    (or in this process with in_process), speedups against the kit and agreement of losses."""
    import numpy as np

    n, d, h, M, T = cfg
    starts = []
    for label, impl, tuned in entries:
        if in_process:
            starts.append((label, lambda impl=impl: Runner(impl, cfg)))
            continue
        devices = 1 if impl in ONE_DEVICE_IMPLS or impl in MALLOC_IMPLS else cpu_devices
        env = TUNED_MALLOC if tuned else None
        starts.append((label, lambda impl=impl, devices=devices, env=env: Worker(
            impl, cfg, cpu_devices=devices, env=env)))
    timed = timed_rounds(starts, reps, echo)
    rows = []
    for label, impl, tuned in entries:
        t = timed.get(label)
        if t is None or "error" in t or not t["times_s"]:
            continue
        times = t["times_s"]
        median = float(np.median(times))
        rows.append({"impl": impl, "label": label, "tuned_malloc": tuned,
                     "compile_s": t["compile_s"], "times_s": times, "median_s": median,
                     "spread_s": float(np.max(times) - np.min(times)),
                     "model_steps_per_s": M * T / median,
                     "gflops": M * T / median * step_flops(n, d, h) / 1e9,
                     "final_losses": t["final_losses"], "footing": t["footing"]})
        echo(f"  {name} {label}: {median:.3f} s, {M * T / median:,.0f} model-steps/s "
             f"({footing_text(t['footing'])})")
    kit = next((r for r in rows if r["impl"] == "kit"), None)
    one = next((r for r in rows if r["impl"] == "kit_1dev"), None)
    for r in rows:
        r["agree"] = kit is not None and bool(np.allclose(r["final_losses"], kit["final_losses"],
                                                          rtol=1e-4, atol=1e-6))
        r["kit_speedup"] = None if kit is None else r["median_s"] / kit["median_s"]
        r["kit_1dev_speedup"] = None if one is None else r["median_s"] / one["median_s"]
    return rows



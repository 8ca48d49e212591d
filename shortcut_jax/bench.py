"""How fast the kit trains many models, next to what a user would pick instead; and how long the
kit's own commands take, start to finish.

    shortcut-jax bench [--out runs/bench]        # about an hour on 2 CPU cores with torch
    shortcut-jax bench --quick                   # seconds: tiny sizes, agreement check
    shortcut-jax bench --sections process        # only the whole-process times (minutes)

Sections (--sections, default all; --quick skips scaling and memory):
  grads    one gradient and one SGD step, manual_grad vs jax.grad, jitted, over several (n, d, h);
  compile  compile time of a sweep shape group (Executor.init and .run) and of the sweep's draws;
  configs  configurations A, B, C (float32, full-batch SGD, all models on the same data): the
           kit's sweep machinery (sweep.Executor, one call per block, as sweep.run_chunk) vs the
           peers of shortcut_jax.peers (NumPy, plain jit(vmap(scan)) on one device and sharded
           over every device, Python loops of jitted calls, PyTorch when the `bench` extra is
           installed), all from the same initial parameters, final losses checked to agree;
  scaling  the kit's time against M, n and h (log-log PNG), model-steps/s and GFLOP/s against a
           measured matmul peak (full run only);
  memory   peak memory of a chunked sweep at M = 1k, 4k, 16k (full run only);
  process  whole commands as a user runs them: `shortcut-jax sweep` (1024 models, 200 steps) and
           `shortcut-jax compare` (the headline experiment), each in a fresh Python process,
           with a cold (empty) and a warm persistent compilation cache, rounds interleaved;
           wall time measured around the process, split into start-up (Python and the
           imports, until the command's clock starts), the phases of its --timings (data,
           draws, compile, train, write, report) and the rest.

Timing (configs): every implementation runs in a process of its own (a worker started with
`python -m shortcut_jax.cli bench --serve IMPL --cfg ...`), which compiles / warms up once (that
time is reported apart as "compile s") and then times one call per request. The workers of a
configuration stay alive together and are asked for one repeat each in turn, A B C A B C ...,
--reps rounds, so that the machine's drift moves every implementation alike; median and spread
of the rounds. --quick runs everything in this process instead (same interleaving).

Equal footing (configs): the kit ("kit") shards its runs over one CPU device per core
(--cpu-devices to change) and also runs on one device in the same run ("kit_1dev", a worker with
--cpu-devices 1); plain jit(vmap(scan)) runs on one device ("jax_naive") and sharded over the
same devices as the kit ("jax_naive_sharded", jax.sharding over a "models" axis); NumPy and
PyTorch use their own threads, each as installed and with tuned malloc (TUNED_MALLOC). Every row
records its threads and devices (torch threads, BLAS threads, OMP/MKL/OpenBLAS settings, JAX
devices used of those present), in results.json and in the table. The benchmark never reads the
persistent compilation cache except in the process section, where that is what is measured.

Writes results.md and results.json (machine, versions, devices, precision) to --out.
FLOPs of one SGD step of one model, counted analytically (multiply-add = 2):
  forward 2nhd + 2nh + (2nd shortcut) ; backward 2nh + 2nhd + 2nh (+ 2nd) ; ~ 4nhd + 6nh (+ 4nd).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CONFIGS = {  # name: (n, d, h, M, T)
    "A": (1000, 2, 16, 1024, 200),
    "B": (4096, 32, 128, 64, 100),
    "C": (1000, 2, 16, 1, 1000),
}
QUICK = {"A": (64, 2, 4, 16, 10), "B": (128, 3, 8, 4, 10), "C": (64, 2, 4, 1, 20)}
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
"""glibc malloc settings that keep big freed blocks (no mmap/munmap and page faults each step)."""

SECTIONS = ("grads", "compile", "configs", "scaling", "memory", "process", "network")
QUICK_SECTIONS = ("grads", "compile", "configs", "process")

KIT_IMPLS = ("kit", "kit_1dev")
TORCH_IMPLS = ("torch_func", "torch_bmm", "torch_bmm_manual", "torch_compile")
JAX_PEERS = ("jax_naive", "jax_naive_sharded", "jax_python_loop", "jax_step_loop")
PEER_IMPLS = ("numpy", *TORCH_IMPLS, *JAX_PEERS)  # the keys of shortcut_jax.peers.IMPLEMENTATIONS
IMPLS = (*KIT_IMPLS, *PEER_IMPLS)
MALLOC_IMPLS = ("numpy", *TORCH_IMPLS)  # timed as installed and with TUNED_MALLOC
ONE_DEVICE_IMPLS = ("kit_1dev", "jax_naive", "jax_python_loop", "jax_step_loop")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS",
              *TUNED_MALLOC)
"""Environment variables recorded with every row (None where unset)."""

PROCESS_COMMANDS = {  # the sweep, and the headline experiment with its defaults
    "sweep": ["sweep", "--dataset", "xor", "--n-train", "1000", "--variants", "shortcut",
              "--widths", "16", "--lrs", "0.5", "--seeds", "1024", "--steps", "200",
              "--eval-every", "200", "--optimizer", "sgd"],
    "compare": ["compare"],
}
PROCESS_QUICK = {
    "sweep": ["sweep", "--dataset", "xor", "--n-train", "64", "--n-test", "64", "--variants",
              "shortcut", "--widths", "4", "--lrs", "0.5", "--seeds", "2", "--steps", "20",
              "--eval-every", "10", "--optimizer", "sgd"],
    "compare": ["compare", "--dataset", "linear_xor", "--widths", "3", "--lrs", "1.0",
                "--seeds", "3", "--steps", "40", "--eval-every", "20", "--n-train", "64",
                "--n-test", "64"],
}
PROCESS_PHASES = ("data", "draws", "compile", "train", "write", "report")
"""Phases of a command's --timings (compare adds report); start-up is measured apart."""
PROCESS_TARGETS = {("sweep", "cold"): 3.5, ("sweep", "warm"): 2.5, ("compare", "cold"): 15.0,
                   ("compare", "warm"): 10.0}
"""Seconds of wall time the issue asks for on the 2-core development machine (full run)."""

NETWORK_CONFIG = (1000, 2, 16, 1024, 200, 3, "tanh", "residual+shortcut")
"""Configuration D: (n, d, h, M, T, depth, activation, variant), the network family."""
NETWORK_QUICK = (64, 2, 4, 8, 10, 3, "tanh", "residual+shortcut")
NETWORK_IMPLS = ("kit", "kit_autodiff", "jax_naive_sharded")

STEPS_PER_CALL = 100  # grads section's step column: SGD steps in one compiled loop, per step
PROTOCOL = "BENCH-JSON "  # prefix of a worker's answer lines on its stdout
Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def step_flops(n: int, d: int, h: int, shortcut: bool = True) -> int:
    """Analytic FLOPs of one full-batch SGD step of one model (see the module docstring)."""
    return 4 * n * h * d + 6 * n * h + (4 * n * d if shortcut else 0)


# --- the kit --------------------------------------------------------------------------------


def kit_layout(n: int, h: int, M: int, n_devices: int,
               block_size: int | None = None) -> tuple[int, int]:
    """(runs per device per call, devices used) of train_kit: the sweep's block size
    (sweep.auto_block_size) but at most M, so one model is not padded to a block of copies; at
    most one device per block."""
    from shortcut_jax.sweep import auto_block_size

    block = min(block_size or auto_block_size(n, h), M)
    return block, min(n_devices, -(-M // block))


_EXECUTORS: dict = {}


def train_kit(params: dict, X, Y, lr, T: int, *, devices: Sequence | None = None,
              block_size: int | None = None) -> tuple[dict, Any]:
    """The kit's sweep machinery from given stacked params (shortcut_jax.peers layout): the runs
    sharded over `devices` (default every JAX device, at most one per block), one Executor.run
    call per block as sweep.run_chunk makes them; returns (final params, final training losses).

    The run call records the metrics of step 0 and step T (losses and accuracies of train, val
    and test -- all three the training data here --, gradient norm, diagnostics)."""
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    from shortcut_jax import peers
    from shortcut_jax.data import Dataset
    from shortcut_jax.model import Params
    from shortcut_jax.sweep import MATMUL_PRECISION, Executor
    from shortcut_jax.train import TrainConfig, TrainState

    p, X, Y, lr_vec = peers._prep(params, X, Y, lr)
    M, h, _ = p["W1"].shape
    devices = list(jax.devices() if devices is None else devices)
    block, used = kit_layout(X.shape[0], h, M, len(devices), block_size)
    mesh = Mesh(np.asarray(devices[:used]), ("runs",))
    cfg = TrainConfig(h=h, shortcut=p["W"] is not None, steps=T, eval_every=T)
    key = (cfg, block, mesh)
    if key not in _EXECUTORS:
        _EXECUTORS[key] = Executor(cfg, mesh, block, segment_evals=cfg.num_evals)
    ex = _EXECUTORS[key]
    B = ex.block_runs
    R = -(-M // B) * B
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], R - M, 0)])  # noqa: E731
    p = {k: None if v is None else pad(v) for k, v in p.items()}
    lr_vec = pad(lr_vec)
    runs, rep = NamedSharding(mesh, P("runs")), NamedSharding(mesh, P())
    data = jax.device_put(Dataset(X, Y, X, Y, X, Y), rep)
    key_data = np.asarray(jax.random.key_data(jax.random.split(jax.random.key(0), B)))
    init_opt = jax.vmap(lambda q: cfg.make_optimizer(0.0).init(q))
    first = jax.device_put(np.int32(0), rep)
    outs = []
    with jax.default_matmul_precision(MATMUL_PRECISION):
        for j in range(0, R, B):  # as sweep.run_chunk: one call per block, dispatched async
            params_j = jax.device_put(Params(**{k: None if v is None else v[j:j + B]
                                                for k, v in p.items()}), runs)
            # Executor.run donates its state: every block gets arrays of its own (a key array
            # shared by the blocks was deleted by the first call on one device, where no
            # resharding copy stood in between)
            state = TrainState(params_j, init_opt(params_j),
                               jax.random.wrap_key_data(jax.device_put(key_data, runs)),
                               jax.device_put(np.zeros(B, np.int32), runs))
            on = jax.device_put(np.ones(B, np.float32), runs)  # the shortcut network
            outs.append(ex.run(state, jax.device_put(lr_vec[j:j + B], runs), on, data, first))
    outs = jax.device_get([(s.params, m["train_loss"][:, -1]) for s, m in outs])
    final = {k: None if getattr(outs[0][0], k) is None else
             np.concatenate([getattr(o[0], k) for o in outs])[:M] for k in p}
    return final, np.concatenate([o[1] for o in outs])[:M]


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


# --- section: gradients and steps ----------------------------------------------------------


def grad_timings(shapes: Sequence[tuple[int, int, int]], reps: int) -> list[dict[str, Any]]:
    """One gradient and one SGD step, manual_grad vs jax.grad, jitted.

    The four functions of a shape are timed in turns, rep by rep (at least 20 reps), so that a
    machine that speeds up or slows down over the section moves all of them alike.
    """
    import jax
    import jax.numpy as jnp

    import shortcut_jax as sj

    rows = []
    for n, d, h in shapes:
        params = sj.init_params(jax.random.key(0), d, h, shortcut_init="lecun")
        X = jax.random.normal(jax.random.key(1), (n, d))
        Y = (X[:, 0] > 0).astype(jnp.float32)
        fns = {}
        for name, g in (("manual_grad", sj.manual_grad), ("jax.grad", jax.grad(sj.loss))):
            fns[(name, "grad")] = jax.jit(g)
            fns[(name, "step")] = jax.jit(_sgd_steps(g, STEPS_PER_CALL))
        compile_s, us = _time_interleaved(fns, (params, X, Y), max(reps, 20))
        for name in ("manual_grad", "jax.grad"):
            rows.append({"n": n, "d": d, "h": h, "impl": name,
                         "grad_compile_s": compile_s[(name, "grad")],
                         "grad_us": us[(name, "grad")],
                         "step_us": us[(name, "step")] / STEPS_PER_CALL})
    return rows


def _sgd_steps(g, k: int):
    """k SGD steps in one compiled fori_loop: a step's own time, without call dispatch."""
    import jax

    def steps(p, X, Y):
        return jax.lax.fori_loop(
            0, k, lambda _, p: jax.tree.map(lambda a, b: a - 0.1 * b, p, g(p, X, Y)), p)
    return steps


def _time_interleaved(fns: dict, args, reps: int, inner: int = 10) -> tuple[dict, dict]:
    """({key: seconds of the first, compiling call}, {key: median µs of one later call})."""
    import jax
    import numpy as np

    compile_s, ts = {}, {k: [] for k in fns}
    for k, f in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        compile_s[k] = time.perf_counter() - t0
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                out = f(*args)
            jax.block_until_ready(out)
            ts[k].append((time.perf_counter() - t0) / inner)
    return compile_s, {k: 1e6 * float(np.median(v)) for k, v in ts.items()}


# --- section: compile time of a shape group ------------------------------------------------


def compile_times(widths: Sequence[int] = (4, 16, 64), quick: bool = False,
                  echo: Echo = _quiet) -> list[dict[str, Any]]:
    """Seconds to trace and compile one sweep shape group (Executor.init and .run, with the
    per-eval metrics and diagnostics), each width a fresh group (the plain variant runs in the
    same program), with the sweep's shardings; and the sweep's one draw of every run's random
    numbers (sweep.draw_runs, compiled once per sweep)."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from shortcut_jax.sweep import (
        MATMUL_PRECISION,
        Executor,
        Grid,
        draw_runs,
        load_all,
        make_mesh,
        segment_evals,
    )
    from shortcut_jax.train import Draws

    # one variant: plain runs use the shortcut's program (sweep.Executor)
    grid = Grid(datasets=("moons",), variants=("shortcut",),
                widths=tuple(widths), seeds=8 if quick else 32, steps=20 if quick else 2000,
                eval_every=10 if quick else 50)
    datasets, _ = load_all(grid)
    (data,) = datasets.values()
    n, d = data.X_train.shape
    mesh = make_mesh()
    runs, rep = NamedSharding(mesh, P("runs")), NamedSharding(mesh, P())
    data_g = jax.device_put(data, rep)
    t0 = time.perf_counter()
    draws = draw_runs(range(grid.seeds), d, max(widths))
    rows = [{"group": "draw_runs (once per sweep)", "h": max(widths), "runs": grid.seeds,
             "init_s": time.perf_counter() - t0, "run_s": 0.0}]
    rows[0]["total_s"] = rows[0]["init_s"]
    echo(f"  compile {rows[0]['group']}: {rows[0]['total_s']:.2f} s")
    for group in grid.groups():
        cfg = group.config
        ex = Executor(cfg, mesh, grid.block(n, cfg.h), segment_evals(cfg.num_evals))
        R = ex.block_runs
        idx = np.arange(R) % grid.seeds
        block = Draws(jax.device_put(draws.z[idx], runs),
                      jax.random.wrap_key_data(jax.device_put(draws.batch_key[idx], runs)))
        lrs = jax.device_put(np.full(R, 0.5, np.float32), runs)
        w_scales = jax.device_put(np.zeros(R, data.X_train.dtype), runs)
        w_on = jax.device_put(np.ones(R, data.X_train.dtype), runs)
        first = jax.device_put(np.int32(0), rep)
        with jax.default_matmul_precision(MATMUL_PRECISION):
            t0 = time.perf_counter()
            init = ex.init.lower(block, lrs, data_g, w_scales).compile()
            t1 = time.perf_counter()
            state = init(block, lrs, data_g, w_scales)
            t2 = time.perf_counter()
            ex.run.lower(state, lrs, w_on, data_g, first).compile()
            t3 = time.perf_counter()
        rows.append({"group": group.name, "h": cfg.h, "runs": R, "init_s": t1 - t0,
                     "run_s": t3 - t2, "total_s": t1 - t0 + t3 - t2})
        echo(f"  compile {group.name}: {t1 - t0 + t3 - t2:.2f} s")
    return rows


def matmul_peak(size: int = 2048, reps: int = 5) -> float:
    """Measured float32 GFLOP/s of a large jnp.dot on the default device."""
    import jax
    import numpy as np

    a = jax.random.normal(jax.random.key(0), (size, size))
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a))
        ts.append(time.perf_counter() - t0)
    return 2 * size**3 / float(np.median(ts)) / 1e9


def versions() -> dict[str, Any]:
    """Machine, versions, devices and thread settings of this (the driving) process."""
    import jax
    import numpy as np
    import optax

    from shortcut_jax import peers
    from shortcut_jax.sweep import MATMUL_PRECISION

    info = {"python": platform.python_version(), "machine": platform.machine(),
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "cpus": _cpus(),
            "jax": jax.__version__, "optax": optax.__version__, "numpy": np.__version__,
            "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
            "device_count": jax.device_count(), "matmul_precision": MATMUL_PRECISION,
            "dtype": "float32", "env": {k: os.environ.get(k) for k in THREAD_ENV}}
    if peers.HAVE_TORCH:
        from importlib.metadata import version

        info["torch"] = version("torch")
    return info


# --- sections: scaling and memory (full run) ---------------------------------------------------


MEMORY_SCRIPT = """
import resource, sys, tempfile, time
import shortcut_jax as sj
sj.use_cpu_cores()
M = int(sys.argv[1])
grid = sj.Grid(datasets=("xor",), variants=("shortcut",), widths=(16,), lrs=(0.5,), seeds=M,
               steps=20, eval_every=20, n_train=1000, n_test=1000, chunk_size=1024)
with tempfile.TemporaryDirectory() as out:
    t0 = time.perf_counter()
    sj.run_sweep(grid, out, progress=False)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - t0)
"""


def memory(sizes: Sequence[int] = (1024, 4096, 16384), echo: Echo = _quiet) -> list[dict]:
    """Peak resident memory of a whole run_sweep (chunks of 1024 runs) against M."""
    rows = []
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    for M in sizes:
        proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(M)], text=True,
                              capture_output=True, env=env)
        if proc.returncode == 0:
            rss, secs = map(float, proc.stdout.split()[-2:])
            rows.append({"M": M, "peak_rss_mb": rss, "seconds": secs})
        else:
            echo(f"  memory M={M}: failed {proc.stderr[-300:]}")
    return rows


def scaling(base_cfg: Sequence[int], reps: int, cpu_devices: int | None = None,
            echo: Echo = _quiet) -> list[dict[str, Any]]:
    """Kit time against M, n and h, one varied at a time around configuration A (M = 256), each
    point in a worker of its own."""
    import numpy as np

    n, d, h, _, T = base_cfg
    base = {"n": n, "d": d, "h": h, "M": 256, "T": T}
    sweeps = {"M": (64, 256, 1024, 4096), "n": (250, 1000, 4000), "h": (4, 16, 64)}
    rows = []
    for axis, values in sweeps.items():
        for v in values:
            cfg = {**base, axis: v}
            point = tuple(cfg[k] for k in ("n", "d", "h", "M", "T"))
            t = timed_rounds([("kit", lambda p=point: Worker("kit", p, cpu_devices=cpu_devices))],
                             max(2, reps // 2), echo)["kit"]
            if "error" in t:
                continue
            median = float(np.median(t["times_s"]))
            rate = cfg["M"] * cfg["T"] / median
            rows.append({"axis": axis, **cfg, "median_s": median, "model_steps_per_s": rate,
                         "gflops": rate * step_flops(cfg["n"], cfg["d"], cfg["h"]) / 1e9})
            echo(f"  scaling {axis}={v}: {median:.3f} s")
    return rows


def plot_scaling(rows: list[dict], path: Path) -> None:
    """Log-log PNG of the kit's time against M, n and h (skipped without matplotlib)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return
    import io

    from shortcut_jax.results import atomic_write_bytes

    fig = Figure(figsize=(12, 3.8), dpi=100, layout="tight")
    for i, axis in enumerate(("M", "n", "h")):
        part = [r for r in rows if r["axis"] == axis]
        if not part:
            continue
        ax = fig.add_subplot(1, 3, i + 1)
        xs, ts = [r[axis] for r in part], [r["median_s"] for r in part]
        ax.loglog(xs, ts, "o-", label="kit sweep")
        ax.loglog(xs, [ts[0] * x / xs[0] for x in xs], "--", label="linear")
        others = ", ".join(f"{k}={part[0][k]}" for k in ("n", "h", "M", "T") if k != axis)
        ax.set(xlabel=axis, ylabel=f"seconds for T={part[0]['T']} steps",
               title=f"time vs {axis} ({others})")
        ax.minorticks_off()
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


# --- section: whole processes ------------------------------------------------------------------


def _cache_home(path: Path) -> Path:
    """An XDG_CACHE_HOME whose compile cache is empty: matplotlib's font cache is linked from the
    user's own, so that only compilation is cold."""
    path.mkdir(parents=True, exist_ok=True)
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if (user / "matplotlib").is_dir() and not (path / "matplotlib").exists():
        (path / "matplotlib").symlink_to(user / "matplotlib", target_is_directory=True)
    return path


def run_process(argv: Sequence[str], cache_home: Path, workdir: Path, *,
                cpu_devices: int | None = None, timeout: float = 1800.0) -> dict[str, Any]:
    """One command (`python -m shortcut_jax.cli ARGV --no-progress --out ... --timings ...`) in
    a fresh process with XDG_CACHE_HOME = cache_home (and no other compile-cache settings).

    Returns {wall_s (measured here, around the process), returncode, timings (the command's
    --timings file as written), phases (PROCESS_PHASES found there), startup_s, other_s,
    error}: startup_s = the command's "started" (Unix time, after Python's start and the
    imports) - the launch, or its "import" phase where it records one instead; other_s = wall -
    startup - the phases (set-up inside the command, interpreter exit)."""
    workdir.mkdir(parents=True, exist_ok=True)
    timings = workdir / "timings.json"
    cmd = [sys.executable, "-m", "shortcut_jax.cli", *argv, "--no-progress", "--out",
           str(workdir / "out"), "--timings", str(timings)]
    if cpu_devices is not None:
        cmd += ["--cpu-devices", str(cpu_devices)]
    from shortcut_jax.compilation import DISABLE_ENV

    env = {k: v for k, v in os.environ.items() if k not in (
        "JAX_COMPILATION_CACHE_DIR", DISABLE_ENV, "JAX_ENABLE_COMPILATION_CACHE")}
    env["XDG_CACHE_HOME"] = str(cache_home)
    launched, t0 = time.time(), time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        code, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as e:
        code, err = None, e.stderr or ""
        err = err.decode(errors="replace") if isinstance(err, bytes) else err
        err += f"\ntimed out after {timeout:g} s"
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"wall_s": wall, "returncode": code, "timings": {}, "phases": {},
                           "startup_s": None, "other_s": None, "error": None}
    if code == 0 and timings.exists():
        recorded = json.loads(timings.read_text())
        phases = {p: float(recorded[p]) for p in PROCESS_PHASES if p in recorded}
        startup = float(recorded["started"]) - launched  # cli --timings always records it
        out.update(timings=recorded, phases=phases, startup_s=startup,
                   other_s=wall - startup - sum(phases.values()))
    else:
        tail = (err or "").strip().splitlines()[-12:]
        out["error"] = "\n".join(tail) or f"exit status {code}, no --timings written"
    return out


def process_times(commands: dict[str, list[str]], reps: int, *, cpu_devices: int | None = None,
                  timeout: float = 1800.0, targets: dict | None = None,
                  echo: Echo = _quiet) -> dict[str, Any]:
    """Whole-process times of each command, cold and warm compile cache, rounds interleaved.

    Round r runs, for each command in turn: a cold run (a fresh, empty cache folder; in round 0
    the command's warm folder, still empty, which that run fills) and a warm run (the command's
    warm folder). Every run writes to a fresh --out. Returns {commands, runs, summary}: summary
    has per (command, cache) the medians of wall time, start-up, each phase and the rest
    (run_process); a command that fails is recorded with the tail of its stderr.
    """
    import numpy as np

    root = Path(tempfile.mkdtemp(prefix="shortcut-jax-bench-process-"))
    runs = []
    try:
        for r in range(reps):
            for name, argv in commands.items():
                for cache in ("cold", "warm"):
                    home = root / (f"cold-{name}-{r}" if cache == "cold" and r else
                                   f"warm-{name}")
                    run = run_process(argv, _cache_home(home), root / f"{name}-{cache}-{r}",
                                      cpu_devices=cpu_devices, timeout=timeout)
                    run.update(command=name, cache=cache, rep=r)
                    runs.append(run)
                    state = (f"{run['wall_s']:.2f} s" if run["error"] is None else
                             f"failed after {run['wall_s']:.1f} s: "
                             f"{run['error'].splitlines()[-1:]}")
                    echo(f"  {name} ({cache} cache, round {r + 1}): {state}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = []
    for name in commands:
        for cache in ("cold", "warm"):
            mine = [u for u in runs if u["command"] == name and u["cache"] == cache]
            ok = [u for u in mine if u["error"] is None]
            row: dict[str, Any] = {"command": name, "cache": cache, "runs": len(mine),
                                   "failed": len(mine) - len(ok),
                                   "target_s": (targets or {}).get((name, cache))}
            if ok:
                row["wall_s"] = float(np.median([u["wall_s"] for u in ok]))
                row["startup_s"] = float(np.median([u["startup_s"] for u in ok]))
                row["other_s"] = float(np.median([u["other_s"] for u in ok]))
                row["command_s"] = _median([u["timings"].get("command") for u in ok])
                row["phases"] = {p: _median([u["phases"].get(p) for u in ok])
                                 for p in PROCESS_PHASES}
            if len(ok) < len(mine):
                row["error"] = next(u["error"] for u in mine if u["error"] is not None)
            summary.append(row)
    return {"commands": {k: " ".join(["shortcut-jax", *v]) for k, v in commands.items()},
            "runs": runs, "summary": summary}


def _median(values: Sequence[float | None]) -> float | None:
    import numpy as np

    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None


# --- the report --------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Lines of a markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def markdown(report: dict[str, Any]) -> str:
    """results.md: every section that ran, as tables."""
    v = report["versions"]
    s = [f"# Benchmark ({v['device']}, {v['platform']}, {v['cpus']} CPUs; jax {v['jax']}"
         + (f", torch {v['torch']}" if "torch" in v else "") + ")", ""]
    if "peak_gflops" in report:
        s += [f"Float32 matmul peak measured in this run: {report['peak_gflops']:.1f} GFLOP/s. "
              "Times are medians.", ""]
    if report.get("grads"):
        s += ["## Gradient and step, manual_grad vs jax.grad (jitted, µs)", "",
              f"grad: one jitted call (dispatch included); step: one SGD step inside a compiled "
              f"loop of {STEPS_PER_CALL} (dispatch excluded). Timed in turns, median.", "",
              *_table(["n", "d", "h", "impl", "grad µs", "step µs", "compile s"],
                      [[r["n"], r["d"], r["h"], r["impl"], f"{r['grad_us']:.1f}",
                        f"{r['step_us']:.1f}", f"{r['grad_compile_s']:.2f}"]
                       for r in report["grads"]]), ""]
    if report.get("compile"):
        s += ["## Compile time of a sweep shape group (trace + XLA compile of init and "
              "run, eval metrics and diagnostics included)", "",
              *_table(["group", "runs", "init s", "run s", "total s"],
                      [[r["group"], r["runs"], f"{r['init_s']:.2f}", f"{r['run_s']:.2f}",
                        f"{r['total_s']:.2f}"] for r in report["compile"]]), ""]
    if report.get("configs"):
        where = ("all in this process (--quick)" if report.get("quick") else
                 "each implementation in a process of its own")
        s += [f"Configurations: {where}, timed in rounds (one repeat of each in turn per "
              "round); × kit = its time / the kit's; × kit_1dev = its time / the kit's on one "
              "device; threads / devices: what the implementation ran with.", ""]
    ratio = lambda x: "–" if x is None else f"{x:.2f}×"  # noqa: E731
    for name, c in report.get("configs", {}).items():
        s += [f"## {name}: n={c['n']} d={c['d']} h={c['h']} M={c['M']} T={c['T']}", "",
              *_table(["impl", "malloc", "threads / devices", "median s", "spread s",
                       "model-steps/s", "GFLOP/s", "compile s", "× kit", "× kit_1dev",
                       "losses agree"],
                      [[r["impl"], "tuned" if r["tuned_malloc"] else "as installed",
                        footing_text(r["footing"]), f"{r['median_s']:.3f}",
                        f"{r['spread_s']:.3f}", f"{r['model_steps_per_s']:,.0f}",
                        f"{r['gflops']:.2f}", f"{r['compile_s']:.2f}", ratio(r["kit_speedup"]),
                        ratio(r["kit_1dev_speedup"]), "yes" if r["agree"] else "NO"]
                       for r in c["rows"]]), ""]
    if report.get("scaling"):
        s += ["## Kit time vs M, n and h (one varied at a time; d and T of A)", "",
              *_table(["varied", "n", "h", "M", "s", "model-steps/s", "GFLOP/s"],
                      [[r["axis"], r["n"], r["h"], r["M"], f"{r['median_s']:.3f}",
                        f"{r['model_steps_per_s']:,.0f}", f"{r['gflops']:.2f}"]
                       for r in report["scaling"]]), ""]
    if report.get("memory"):
        s += ["## Peak memory of a chunked sweep (chunks of 1024 runs, h=16, n=1000)", "",
              *_table(["M", "peak RSS MB", "s"],
                      [[r["M"], f"{r['peak_rss_mb']:.0f}", f"{r['seconds']:.1f}"]
                       for r in report["memory"]]), ""]
    if report.get("process"):
        s += _process_markdown(report["process"])
    if report.get("network"):
        r = report["network"]
        s += [f"## Configuration D: the network family (depth {r['depth']}, {r['activation']}, "
              f"{r['variant']}; n={r['n']}, d={r['d']}, h={r['h']}, M={r['M']}, T={r['T']})", "",
              f"In one process on {r['devices']} JAX {r['platform']} device(s), timed in "
              f"{r['reps']} rounds after a warm-up call (its time: first call s); median.", "",
              *_table(["impl", "median s", "spread s", "model-steps/s", "× kit",
                       "first call s", "losses agree"],
                      [[x["impl"], f"{x['median_s']:.3f}", f"{x['spread_s']:.3f}",
                        f"{x['model_steps_per_s']:,.0f}", f"{x['x_kit']:.2f}×",
                        f"{x['first_call_s']:.1f}", "yes" if x["agree"] else "NO"]
                       for x in r["rows"]]), ""]
    return "\n".join(s).rstrip() + "\n"


def _process_markdown(proc: dict[str, Any]) -> list[str]:
    s = ["## Whole processes: wall time of a command, cold and warm compile cache", "",
         "Each run a fresh `python -m shortcut_jax.cli ...` process with a fresh --out; cold: an "
         "empty compile cache folder, warm: the folder a cold run filled; rounds interleaved. "
         "Medians, seconds. startup: Python's start and the imports, until the command's clock "
         "starts; the phases from its --timings; other: the rest of the wall time (set-up "
         "inside the command, exit).", ""]
    s += [f"- {name}: `{cmd}`" for name, cmd in proc["commands"].items()]
    s += ["", "| command | cache | runs | wall s | target s | startup | "
          + " | ".join(PROCESS_PHASES) + " | other |",
          "|---|---|---|---|---|---|" + "---|" * (len(PROCESS_PHASES) + 1)]
    f = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
    for r in proc["summary"]:
        runs = f"{r['runs'] - r['failed']}" + (f" ({r['failed']} failed)" if r["failed"] else "")
        if "wall_s" not in r:
            s.append(f"| {r['command']} | {r['cache']} | {runs} | failed | {f(r['target_s'])} | "
                     + " | ".join("–" for _ in range(len(PROCESS_PHASES) + 2)) + " |")
            continue
        s.append(f"| {r['command']} | {r['cache']} | {runs} | {r['wall_s']:.2f} | "
                 f"{f(r['target_s'])} | {f(r['startup_s'])} | "
                 + " | ".join(f(r["phases"][p]) for p in PROCESS_PHASES)
                 + f" | {f(r['other_s'])} |")
    for r in proc["summary"]:
        if r.get("error"):
            s += ["", f"{r['command']} ({r['cache']} cache) failed:", "", "```", r["error"],
                  "```"]
    s.append("")
    return s


# --- flags and main ----------------------------------------------------------------------------


def config_list(text: str) -> tuple[int, int, int, int, int]:
    """argparse type of --cfg: a JSON list [n, d, h, M, T] of integers >= 1."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not (isinstance(value, list) and len(value) == 5 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise argparse.ArgumentTypeError(f"expected a JSON list [n, d, h, M, T] of five integers "
                                         f">= 1, got {text!r}")
    return tuple(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's flags, on `parser` (the `bench` subcommand of shortcut_jax.cli)."""
    from shortcut_jax.cli import positive_int

    a = parser.add_argument
    a("--quick", action="store_true",
      help="tiny sizes, in this process (the configs section), tiny commands (process); checks "
           "agreement -- what the tests run")
    a("--out", default="runs/bench", help="output folder for results.md and results.json")
    a("--sections", nargs="+", choices=SECTIONS, default=None,
      help=f"sections to run (default: all; with --quick: {' '.join(QUICK_SECTIONS)})")
    a("--reps", type=positive_int, default=5,
      help="timed rounds per configuration (median, spread); --quick: 2")
    a("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
      help="configurations of the configs section")
    a("--impls", nargs="+", default=None, choices=list(IMPLS),
      help="implementations to time (default: all installed); kit always runs")
    a("--cpu-devices", type=positive_int, default=None,
      help="CPU devices the kit and jax_naive_sharded shard over (default: one per core)")
    a("--process-reps", type=positive_int, default=None,
      help="rounds of the process section, each a cold and a warm run of every command "
           "(default 3; --quick: 1)")
    a("--process-commands", nargs="+", choices=list(PROCESS_COMMANDS),
      default=list(PROCESS_COMMANDS), help="commands the process section runs")
    a("--process-timeout", type=positive_int, default=1800,
      help="seconds after which a command of the process section counts as failed")
    a("--one", choices=list(IMPLS), default=None, help=argparse.SUPPRESS)
    a("--serve", choices=list(IMPLS), default=None, help=argparse.SUPPRESS)
    a("--cfg", type=config_list, default=None, metavar="[n,d,h,M,T]",
      help="time this configuration (JSON list) in the configs section instead of --configs")


def main(args: argparse.Namespace) -> int:
    """The benchmark: the sections asked for, tables printed, results.md and results.json
    written into args.out. Exit status 1 when an implementation's final losses disagree with
    the kit's or a command of the process section failed."""
    import jax

    from shortcut_jax import cli

    if Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"error: --out: expected a folder for results.md and results.json, got the file "
              f"{args.out}", file=sys.stderr)
        return 2
    if args.one or args.serve:  # a fresh process timing one implementation
        if args.cfg is None:
            print(f"error: --cfg: expected [n, d, h, M, T] with --{'one' if args.one else 'serve'}"
                  f", got none", file=sys.stderr)
            return 2
        jax.config.update("jax_enable_compilation_cache", False)
        cli.set_cpu_devices(args.cpu_devices)
        if args.serve:
            return serve(args.serve, args.cfg)
        return _one(args.one, args.cfg, args.reps)

    from shortcut_jax import peers
    from shortcut_jax.results import atomic_write_text

    def echo(line: str) -> None:
        print(line, flush=True)

    sections = args.sections or (QUICK_SECTIONS if args.quick else SECTIONS)
    if not args.quick:  # compile times measured, not read from a user's cache (--quick: as is)
        jax.config.update("jax_enable_compilation_cache", False)
    cli.set_cpu_devices(args.cpu_devices)
    reps = 2 if args.quick else args.reps
    report: dict[str, Any] = {"versions": versions(), "quick": args.quick,
                              "sections": list(sections)}
    ok = True
    if "configs" in sections or ("scaling" in sections and not args.quick):
        report["peak_gflops"] = matmul_peak(256 if args.quick else 2048)
        echo(f"float32 matmul peak: {report['peak_gflops']:.1f} GFLOP/s")
    if "grads" in sections:
        shapes = [(64, 2, 4)] if args.quick else [(200, 2, 16), (1000, 2, 16), (4096, 32, 128)]
        report["grads"] = grad_timings(shapes, reps)
    if "compile" in sections:
        report["compile"] = compile_times((4,) if args.quick else (4, 16, 64), args.quick, echo)
    if "configs" in sections:
        configs = QUICK if args.quick else CONFIGS
        configs = {"custom": args.cfg} if args.cfg else {k: configs[k] for k in args.configs}
        n_devices = jax.local_device_count()
        report["configs"] = {}
        for name, cfg in configs.items():
            n, d, h, M, T = cfg
            entries = config_entries(M, args.impls, n_devices, args.quick, peers.HAVE_TORCH)
            rows = time_config(name, cfg, entries, reps, in_process=args.quick,
                               cpu_devices=args.cpu_devices, echo=echo)
            report["configs"][name] = {"n": n, "d": d, "h": h, "M": M, "T": T, "rows": rows}
            if not all(r["agree"] for r in rows):
                ok = False
                echo(f"FAIL: {name}: an implementation's final losses disagree with the kit's")
    if "scaling" in sections and not args.quick:
        report["scaling"] = scaling(CONFIGS["A"], reps, args.cpu_devices, echo)
        plot_scaling(report["scaling"], Path(args.out) / "scaling.png")
    if "memory" in sections and not args.quick:
        report["memory"] = memory(echo=echo)
    if "process" in sections:
        commands = PROCESS_QUICK if args.quick else PROCESS_COMMANDS
        commands = {k: v for k, v in commands.items() if k in args.process_commands}
        process_reps = args.process_reps or (1 if args.quick else 3)
        report["process"] = process_times(
            commands, process_reps, cpu_devices=args.cpu_devices, timeout=args.process_timeout,
            targets=None if args.quick else PROCESS_TARGETS, echo=echo)
        if any(r["failed"] for r in report["process"]["summary"]):
            ok = False
            echo("FAIL: a command of the process section failed (its stderr is in the table)")
    if "network" in sections:
        report["network"] = network_times(NETWORK_QUICK if args.quick else NETWORK_CONFIG,
                                          reps, echo)
        if not all(r["agree"] for r in report["network"]["rows"]):
            ok = False
            echo("FAIL: D: an implementation's final losses disagree with the kit's")
    out = Path(args.out)
    atomic_write_text(out / "results.json", json.dumps(report, indent=1))
    text = markdown(report)
    atomic_write_text(out / "results.md", text)
    print(text)
    return 0 if ok else 1


def network_times(cfg: Sequence[Any] = NETWORK_CONFIG, reps: int = 3,
                  echo: Echo = _quiet) -> dict[str, Any]:
    """Configuration D in this process, on every JAX device: M models of the network family
    (depth, activation, variant) trained T full-batch SGD steps on one data set, by

        kit                the sweep's engine (sweep.Executor via run_chunk) with netgrads'
                           hand-written gradient
        kit_autodiff       the same engine with jax.grad (TrainConfig grad="autodiff")
        jax_naive_sharded  jax.jit(jax.vmap(lax.scan of jax.grad SGD steps)), the models sharded
                           over the same devices (a 1-D mesh)

    from the same initial parameters (sweep.draw_runs). Timed in rounds (one call of each in
    turn per round) after a warm-up call (the compile); the kit's time includes its init and
    host transfers. Returns the configuration and a row per implementation (median s, spread,
    model-steps/s, x kit, whether its final training losses agree with the kit's, rtol 1e-3)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    from shortcut_jax import network as nw
    from shortcut_jax import peers, sweep
    from shortcut_jax.data import Dataset
    from shortcut_jax.train import TrainConfig

    n, d, h, M, T, depth, activation, variant = cfg
    residual, shortcut = nw.variant_parts(variant)
    X, Y = (np.asarray(a, np.float32) for a in peers.make_data(1, n, d))
    data = Dataset(X, Y, X, Y, X, Y)
    draws = sweep.draw_runs(range(M), d, h, depth=depth)
    lr = 0.5
    mesh = sweep.make_mesh()
    block = min(sweep.auto_block_size(n, h), M)
    R = -(-M // (block * mesh.devices.size)) * block * mesh.devices.size
    idx = np.arange(R) % M
    kw = dict(h=h, shortcut=True, steps=T, eval_every=T, depth=depth, activation=activation,
              residual=residual)

    def kit(grad):
        ex = sweep.Executor(TrainConfig(**kw, grad=grad), mesh, block, segment_evals=2)

        def go():
            _, metrics = sweep.run_chunk(
                ex, data, np.full(R, lr, np.float32), np.full(R, 0.1, np.float32),
                sweep.Draws(draws.z[idx], draws.batch_key[idx]),
                w_on=np.full(R, 1.0 if shortcut else 0.0, np.float32))
            return metrics["train_loss"][:M, -1]
        return go

    models = NamedSharding(Mesh(np.asarray(jax.devices()[:min(M, jax.device_count())]),
                                ("models",)), P("models"))
    init = jax.vmap(lambda z: nw.net_params_from_normals(z, d, h, depth, shortcut=shortcut,
                                                         w_scale=0.1))
    J = lambda p, X, Y: nw.net_loss(p, X, Y, activation=activation,  # noqa: E731
                                    residual=residual)

    @jax.jit
    def naive(params, X, Y):
        def one(p):
            def step(p, _):
                g = jax.grad(J)(p, X, Y)
                return jax.tree.map(lambda a, b: a - lr * b, p, g), None
            p, _ = jax.lax.scan(step, p, length=T)
            return J(p, X, Y)
        return jax.vmap(one)(params)

    params0 = jax.device_put(init(jnp.asarray(draws.z)), models)
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)

    def naive_go():
        with jax.default_matmul_precision(sweep.MATMUL_PRECISION):
            return np.asarray(naive(params0, Xj, Yj))

    impls = {"kit": kit("manual"), "kit_autodiff": kit("autodiff"),
             "jax_naive_sharded": naive_go}
    losses, compile_s, times = {}, {}, {k: [] for k in impls}
    for name, go in impls.items():
        t0 = time.perf_counter()
        losses[name] = go()
        compile_s[name] = time.perf_counter() - t0
    for _ in range(reps):
        for name, go in impls.items():
            t0 = time.perf_counter()
            go()
            times[name].append(time.perf_counter() - t0)
    kit_s = float(np.median(times["kit"]))
    rows = []
    for name in impls:
        median = float(np.median(times[name]))
        agree = bool(np.allclose(losses[name], losses["kit"], rtol=1e-3, atol=1e-6))
        rows.append({"impl": name, "median_s": median,
                     "spread_s": float(np.max(times[name]) - np.min(times[name])),
                     "model_steps_per_s": M * T / median, "x_kit": median / kit_s,
                     "first_call_s": compile_s[name], "agree": agree})
        echo(f"  D {name}: {median:.3f} s, {M * T / median:,.0f} model-steps/s, "
             f"{median / kit_s:.2f}x kit, losses agree: {agree}")
    return {"n": n, "d": d, "h": h, "M": M, "T": T, "depth": depth, "activation": activation,
            "variant": variant, "devices": int(mesh.devices.size),
            "platform": jax.default_backend(), "reps": reps, "rows": rows}


def _one(impl: str, cfg: Sequence[int], reps: int) -> int:
    """--one IMPL --cfg [n, d, h, M, T]: warm-up and `reps` timed calls in this process; prints
    one JSON line (compile_s, times_s, median_s, model_steps_per_s, final_losses, footing)."""
    import numpy as np

    runner = Runner(impl, cfg)
    res: dict[str, Any] = {"impl": impl, "compile_s": runner.warm_up(),
                           "footing": runner.footing()}
    times = []
    for _ in range(reps):
        seconds, losses = runner.rep()
        times.append(seconds)
    median = float(np.median(times))
    res.update(times_s=times, median_s=median, spread_s=float(np.max(times) - np.min(times)),
               model_steps_per_s=cfg[3] * cfg[4] / median, final_losses=losses)
    print(json.dumps(res))
    return 0

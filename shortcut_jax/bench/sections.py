"""In-process sections: gradients and steps, compile times, the matmul peak, versions; scaling
and memory of the kit (full run)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shortcut_jax.bench.configs import STEPS_PER_CALL, THREAD_ENV, Echo, _quiet, step_flops
from shortcut_jax.bench.workers import Worker, _cpus, timed_rounds

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
        ex = Executor(cfg, mesh, grid.block(n, cfg.h, cfg.depth), segment_evals(cfg.num_evals))
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



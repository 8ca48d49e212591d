"""How fast the kit trains many models, next to what a user would pick instead.

    python experiments/benchmark.py [--out runs/bench]   # ~10 min on 2 CPU cores, ~35 with torch
    python experiments/benchmark.py --quick               # seconds: tiny sizes, agreement check

Every timing: warm-up (compilation) excluded and reported apart, block_until_ready, median and
spread of --reps repeats, each implementation in its own subprocess. The kit shards its runs
over one CPU device per core (shortcut_jax.use_cpu_cores; --cpu-devices N to change). Sections:
  1. one gradient and one SGD step, manual_grad vs jax.grad, jitted, over several (n, d, h);
     compile time of a sweep shape group (init and run of shortcut_jax.sweep.Executor);
  2. configurations A, B, C (float32, full-batch SGD, all models on the same data): the kit's
     sweep (shortcut_jax.sweep.Executor: vmapped blocks, one call per block) vs peers from
     experiments/peers.py (NumPy, plain jit(vmap(scan)), a Python loop of jitted runs, and
     PyTorch as installed and with tuned malloc when the `bench` extra is installed), all from
     the same initial parameters, final losses checked to agree;
  3. scaling in M, n and h (log-log PNG), model-steps/s and GFLOP/s against a measured
     matmul peak; peak memory of a chunked sweep at M = 1k, 4k, 16k.
Writes results.md and results.json (machine, versions, device, precision) to --out.
FLOPs of one SGD step of one model, counted analytically (multiply-add = 2):
  forward 2nhd + 2nh + (2nd shortcut) ; backward 2nh + 2nhd + 2nh (+ 2nd) ; ~ 4nhd + 6nh (+ 4nd).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402
from jax.sharding import Mesh  # noqa: E402
from sweep import positive_int, set_cpu_devices  # noqa: E402

import shortcut_jax as sj  # noqa: E402
from shortcut_jax.sweep import Executor, auto_block_size  # noqa: E402
from shortcut_jax.train import Data, TrainConfig, TrainState  # noqa: E402

CONFIGS = {  # name: (n, d, h, M, T)
    "A": (1000, 2, 16, 1024, 200),
    "B": (4096, 32, 128, 64, 100),
    "C": (1000, 2, 16, 1, 1000),
}
QUICK = {"A": (64, 2, 4, 16, 10), "B": (128, 3, 8, 4, 10), "C": (64, 2, 4, 1, 20)}
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
SUBPROCESS_FLAGS: list[str] = []  # main's --cpu-devices, passed on to each timed subprocess
BLOCK_SIZE = None  # None: shortcut_jax.sweep.auto_block_size(n, h), as the sweep picks it


def step_flops(n: int, d: int, h: int, shortcut: bool = True) -> int:
    """Analytic FLOPs of one full-batch SGD step of one model (see the module docstring)."""
    return 4 * n * h * d + 6 * n * h + (4 * n * d if shortcut else 0)


def train_kit(params: dict, X, Y, lr, T: int, block_size: int | None = BLOCK_SIZE):
    """The kit's sweep machinery from given stacked params: Executor.run block by block."""
    p, X, Y, lr_vec = peers._prep(params, X, Y, lr)
    M, h, d = p["W1"].shape
    block_size = min(block_size or auto_block_size(X.shape[0], h), M)  # M=1: no padding
    n_blocks = -(-M // block_size)  # a device per block at most (C: one model, one device)
    mesh = Mesh(np.asarray(jax.devices()[:n_blocks]), ("runs",))
    cfg = TrainConfig(h=h, shortcut=p["W"] is not None, steps=T, eval_every=T)
    ex = _executor(cfg, mesh, block_size)
    B = ex.block_runs
    R = -(-M // B) * B
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], R - M, 0)])  # noqa: E731
    p = {k: None if v is None else pad(v) for k, v in p.items()}
    lr_vec = pad(lr_vec)
    data = Data(jnp.asarray(X), jnp.asarray(Y), jnp.asarray(X), jnp.asarray(Y))
    keys = jax.random.split(jax.random.key(0), B)
    init_opt = jax.vmap(lambda q: cfg.make_optimizer(0.0).init(q))
    outs = []
    with jax.default_matmul_precision("highest"):
        for j in range(0, R, B):  # as sweep.run_chunk: one call per block, dispatched async
            params = sj.Params(**{k: None if v is None else jnp.asarray(v[j:j + B])
                                  for k, v in p.items()})
            state = TrainState(params, init_opt(params), keys, jnp.zeros(B, jnp.int32))
            # one call: the loss at step 0, T steps, the loss at step T
            outs.append(ex.run(state, jnp.asarray(lr_vec[j:j + B]), data, jnp.int32(0)))
    outs = jax.device_get([(s.params, m["train_loss"][:, -1]) for s, m in outs])
    final = {k: None if getattr(outs[0][0], k) is None else
             np.concatenate([getattr(o[0], k) for o in outs])[:M] for k in p}
    return final, np.concatenate([o[1] for o in outs])[:M]


_EXECUTORS: dict = {}


def _executor(cfg, mesh, block_size):
    key = (cfg, block_size)
    if key not in _EXECUTORS:
        _EXECUTORS[key] = Executor(cfg, mesh, block_size, segment_evals=cfg.num_evals)
    return _EXECUTORS[key]


def train_jax_step_loop(params: dict, X, Y, lr, T: int):
    """A Python loop of T calls of one jitted SGD step (jax.grad, vmapped over the models)."""
    p, X, Y, lr_vec = peers._prep(params, X, Y, lr)
    p = peers._jax_params(p)
    X, Y, lr_vec = jnp.asarray(X), jnp.asarray(Y), jnp.asarray(lr_vec)
    for _ in range(T):
        p = _jax_step(p, X, Y, lr_vec)
    out, losses = jax.device_get((p, jax.vmap(peers._jax_loss_one, (0, None, None))(p, X, Y)))
    return peers._np_params(out), np.asarray(losses)


@jax.jit
def _jax_step(p, X, Y, lr):
    def one(p, lr):
        g = jax.grad(peers._jax_loss_one)(p, X, Y)
        return jax.tree.map(lambda a, b: a - lr * b, p, g)

    return jax.vmap(one)(p, lr)


IMPLS = {"kit": train_kit, **peers.IMPLEMENTATIONS, "jax_step_loop": train_jax_step_loop}


def time_impl(name: str, n, d, h, M, T, reps: int) -> dict:
    """In this process: warm-up call (compile), then `reps` timed calls."""
    params = peers.init_stacked(0, M, d, h, True, w_scale=0.1)
    X, Y = peers.make_data(1, n, d)
    fn = IMPLS[name]
    res = {"impl": name}
    if name == "torch_compile":
        step, res["compile_s"] = peers.make_torch_compile_step(params, X, Y, 0.5)
        fn = lambda *a: peers.train_torch_compile(*a, step=step)  # noqa: E731
    t0 = time.perf_counter()
    fn(params, X, Y, 0.5, T if name in ("kit", "jax_naive", "jax_python_loop") else 2)
    res.setdefault("compile_s", time.perf_counter() - t0)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        _, losses = fn(params, X, Y, 0.5, T)
        times.append(time.perf_counter() - t0)
    res.update(times_s=times, median_s=float(np.median(times)),
               spread_s=float(np.max(times) - np.min(times)),
               model_steps_per_s=M * T / float(np.median(times)),
               final_losses=[float(v) for v in losses])
    return res


def run_sub(name: str, cfg: tuple, reps: int, env_extra: dict | None = None) -> dict | None:
    env = {**os.environ, **(env_extra or {})}
    cmd = [sys.executable, __file__, "--one", name, "--cfg", json.dumps(cfg), "--reps",
           str(reps)]
    cmd += SUBPROCESS_FLAGS
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  {name}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def grad_timings(shapes, reps: int) -> list[dict]:
    """Section 1: one gradient and one SGD step, manual_grad vs jax.grad, jitted.

    The four functions of a shape are timed in turns, rep by rep (at least 20 reps), so that a
    machine that speeds up or slows down over the section moves all of them alike.
    """
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


STEPS_PER_CALL = 100  # section 1's step column: SGD steps in one compiled loop, per step


def _sgd_steps(g, k: int):
    """k SGD steps in one compiled fori_loop: a step's own time, without call dispatch."""
    def steps(p, X, Y):
        return jax.lax.fori_loop(
            0, k, lambda _, p: jax.tree.map(lambda a, b: a - 0.1 * b, p, g(p, X, Y)), p)
    return steps


def _time_interleaved(fns: dict, args, reps: int, inner: int = 10) -> tuple[dict, dict]:
    """({key: seconds of the first, compiling call}, {key: median µs of one later call})."""
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


def compile_times(widths=(4, 16, 64), quick: bool = False) -> list[dict]:
    """Seconds to trace and compile one sweep shape group (Executor.init and .run, with the
    per-eval metrics and diagnostics), each width and variant a fresh group; and the sweep's
    one draw of every run's random numbers (sweep.draw_runs, compiled once per sweep)."""
    from shortcut_jax.sweep import Grid, default_loader, draw_runs, make_mesh, segment_evals
    from shortcut_jax.train import Draws

    grid = Grid(datasets=("moons",), widths=widths, seeds=8 if quick else 32,
                steps=20 if quick else 2000, eval_every=10 if quick else 50)
    data = default_loader(grid)("moons", 0)
    mesh = make_mesh()
    t0 = time.perf_counter()
    draws = draw_runs(range(grid.seeds), grid.d, max(widths))
    rows = [{"group": "draw_runs (once per sweep)", "h": max(widths), "runs": grid.seeds,
             "init_s": time.perf_counter() - t0, "run_s": 0.0}]
    rows[0]["total_s"] = rows[0]["init_s"]
    print(f"  compile {rows[0]['group']}: {rows[0]['total_s']:.2f} s", flush=True)
    for group in grid.groups():
        cfg = group.config
        ex = Executor(cfg, mesh, grid.block(cfg.h), segment_evals(cfg.num_evals))
        R = ex.block_runs
        idx = np.arange(R) % grid.seeds
        block = Draws(jnp.asarray(draws.z[idx]), jax.random.wrap_key_data(draws.batch_key[idx]))
        lrs = jnp.full(R, 0.5)
        with jax.default_matmul_precision("highest"):
            t0 = time.perf_counter()
            init = ex.init.lower(block, lrs, data).compile()
            t1 = time.perf_counter()
            state = init(block, lrs, data)
            t2 = time.perf_counter()
            ex.run.lower(state, lrs, data, jnp.int32(0)).compile()
            t3 = time.perf_counter()
        rows.append({"group": group.name, "h": cfg.h, "runs": R, "init_s": t1 - t0,
                     "run_s": t3 - t2, "total_s": t1 - t0 + t3 - t2})
        print(f"  compile {group.name}: {t1 - t0 + t3 - t2:.2f} s", flush=True)
    return rows


def matmul_peak(size: int = 2048, reps: int = 5) -> float:
    """Measured float32 GFLOP/s of a large jnp.dot on the default device."""
    a = jax.random.normal(jax.random.key(0), (size, size))
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a))
        ts.append(time.perf_counter() - t0)
    return 2 * size**3 / float(np.median(ts)) / 1e9


def versions() -> dict:
    import optax

    info = {"python": platform.python_version(), "machine": platform.machine(),
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "optax": optax.__version__, "numpy": np.__version__, "backend": jax.default_backend(),
            "device": jax.devices()[0].device_kind, "device_count": jax.device_count(),
            "matmul_precision": "highest", "dtype": "float32"}
    if peers.HAVE_TORCH:
        import torch

        info["torch"] = torch.__version__
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes; check agreement")
    ap.add_argument("--out", default="runs/bench", help="output folder")
    ap.add_argument("--reps", type=int, default=5, help="timed repeats (median, spread)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--impls", nargs="+", default=None, choices=list(IMPLS),
                    help="implementations to time (default: all installed); kit always runs")
    ap.add_argument("--cpu-devices", type=positive_int, default=None,
                    help="CPU devices the kit shards its runs over (default: one per core)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--cfg", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    set_cpu_devices(args.cpu_devices)  # before any JAX computation
    SUBPROCESS_FLAGS[:] = [] if args.cpu_devices is None else ["--cpu-devices",
                                                               str(args.cpu_devices)]
    if args.one:
        print(json.dumps(time_impl(args.one, *json.loads(args.cfg), reps=args.reps)))
        return 0
    from shortcut_jax.results import atomic_write_text

    configs = QUICK if args.quick else CONFIGS
    reps = 2 if args.quick else args.reps
    impls = [k for k in IMPLS if (peers.HAVE_TORCH or k not in peers.TORCH_IMPLEMENTATIONS)
             and (args.impls is None or k in args.impls or k == "kit")]
    report = {"versions": versions(), "peak_gflops": matmul_peak(256 if args.quick else 2048)}
    print(f"float32 matmul peak: {report['peak_gflops']:.1f} GFLOP/s", flush=True)
    shapes = [(64, 2, 4)] if args.quick else [(200, 2, 16), (1000, 2, 16), (4096, 32, 128)]
    report["grads"] = grad_timings(shapes, reps)
    report["compile"] = compile_times(quick=args.quick)
    report["configs"], ok = {}, True
    for name in args.configs:
        cfg = configs[name]
        n, d, h, M, T = cfg
        rows = []
        for impl in impls:
            if (M == 1) == (impl == "jax_python_loop") and impl in ("jax_python_loop",
                                                                      "jax_step_loop"):
                continue  # M = 1: a loop of jitted steps; M > 1: a loop over models
            tunings = [False, True] if impl in peers.TORCH_IMPLEMENTATIONS else [False]
            for tuned in tunings[:1] if args.quick else tunings:
                # --quick: in this process (seconds); else a subprocess each (clean allocator)
                r = (time_impl(impl, *cfg, reps=reps) if args.quick else
                     run_sub(impl, cfg, reps, TUNED_MALLOC if tuned else None))
                if r is None:
                    continue
                r["tuned_malloc"] = tuned
                r["gflops"] = r["model_steps_per_s"] * step_flops(n, d, h) / 1e9
                rows.append(r)
                print(f"  {name} {impl}{' (tuned malloc)' if tuned else ''}: "
                      f"{r['median_s']:.3f}s, {r['model_steps_per_s']:,.0f} model-steps/s",
                      flush=True)
        kit = next(r for r in rows if r["impl"] == "kit")
        for r in rows:
            r["agree"] = bool(np.allclose(r["final_losses"], kit["final_losses"], rtol=1e-4,
                                          atol=1e-6))
            ok &= r["agree"]
            r["kit_speedup"] = r["median_s"] / kit["median_s"]
        report["configs"][name] = {"n": n, "d": d, "h": h, "M": M, "T": T, "rows": rows}
    if not args.quick and "A" in args.configs:
        report["scaling"] = scaling(report["configs"]["A"], reps)
        report["memory"] = memory()
        plot_scaling(report["scaling"], Path(args.out) / "scaling.png")
    out = Path(args.out)
    atomic_write_text(out / "results.json", json.dumps(report, indent=1))
    text = markdown(report)
    atomic_write_text(out / "results.md", text)
    print(text)
    if not ok:
        print("FAIL: an implementation's final losses disagree with the kit's", file=sys.stderr)
    return 0 if ok else 1


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


def memory(sizes=(1024, 4096, 16384)) -> list[dict]:
    """Peak resident memory of a whole run_sweep (chunks of 1024 runs) against M."""
    rows = []
    for M in sizes:
        proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(M)], text=True,
                              capture_output=True)
        if proc.returncode == 0:
            rss, secs = map(float, proc.stdout.split()[-2:])
            rows.append({"M": M, "peak_rss_mb": rss, "seconds": secs})
        else:
            print(f"  memory M={M}: failed {proc.stderr[-300:]}", file=sys.stderr)
    return rows


def scaling(a: dict, reps: int) -> list[dict]:
    """Kit time against M, n and h, one varied at a time around configuration A."""
    base = {"n": a["n"], "d": a["d"], "h": a["h"], "M": 256, "T": a["T"]}
    sweeps = {"M": (64, 256, 1024, 4096), "n": (250, 1000, 4000), "h": (4, 16, 64)}
    rows = []
    for axis, values in sweeps.items():
        for v in values:
            cfg = {**base, axis: v}
            r = run_sub("kit", tuple(cfg[k] for k in ("n", "d", "h", "M", "T")),
                        max(2, reps // 2))
            if r:
                flops = r["model_steps_per_s"] * step_flops(cfg["n"], cfg["d"], cfg["h"]) / 1e9
                rows.append({"axis": axis, **cfg, "median_s": r["median_s"],
                             "model_steps_per_s": r["model_steps_per_s"], "gflops": flops})
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


def markdown(report: dict) -> str:
    v = report["versions"]
    s = [f"# Benchmark ({v['device']}, {v['platform']}, {v['cpu_count']} CPUs; jax {v['jax']}"
         + (f", torch {v['torch']}" if "torch" in v else "") + ")", "",
         f"Float32 matmul peak measured in this run: {report['peak_gflops']:.1f} GFLOP/s. "
         "Times are medians; speedup = that implementation's time / the kit's.", "",
         "## Gradient and step, manual_grad vs jax.grad (jitted, µs)", "",
         f"grad: one jitted call (dispatch included); step: one SGD step inside a compiled "
         f"loop of {STEPS_PER_CALL} (dispatch excluded). Timed in turns, median.", "",
         "| n | d | h | impl | grad µs | step µs | compile s |", "|---|---|---|---|---|---|---|"]
    for r in report["grads"]:
        s.append(f"| {r['n']} | {r['d']} | {r['h']} | {r['impl']} | {r['grad_us']:.1f} | "
                 f"{r['step_us']:.1f} | {r['grad_compile_s']:.2f} |")
    if report.get("compile"):
        s += ["", "## Compile time of a sweep shape group (trace + XLA compile of init and "
              "run, eval metrics and diagnostics included)", "",
              "| group | runs | init s | run s | total s |", "|---|---|---|---|---|"]
        s += [f"| {r['group']} | {r['runs']} | {r['init_s']:.2f} | {r['run_s']:.2f} | "
              f"{r['total_s']:.2f} |" for r in report["compile"]]
    for name, c in report["configs"].items():
        s += ["", f"## {name}: n={c['n']} d={c['d']} h={c['h']} M={c['M']} T={c['T']}", "",
              "| impl | malloc | median s | spread s | model-steps/s | GFLOP/s | compile s | "
              "kit speedup | losses agree |", "|---|---|---|---|---|---|---|---|---|"]
        for r in c["rows"]:
            s.append(f"| {r['impl']} | {'tuned' if r['tuned_malloc'] else 'as installed'} | "
                     f"{r['median_s']:.3f} | {r['spread_s']:.3f} | {r['model_steps_per_s']:,.0f}"
                     f" | {r['gflops']:.2f} | {r['compile_s']:.2f} | {r['kit_speedup']:.2f}× | "
                     f"{'yes' if r['agree'] else 'NO'} |")
    if report.get("scaling"):
        s += ["", "## Kit time vs M, n and h (one varied at a time; d and T of A)", "",
              "| varied | n | h | M | s | model-steps/s | GFLOP/s |",
              "|---|---|---|---|---|---|---|"]
        s += [f"| {r['axis']} | {r['n']} | {r['h']} | {r['M']} | {r['median_s']:.3f} | "
              f"{r['model_steps_per_s']:,.0f} | {r['gflops']:.2f} |" for r in report["scaling"]]
    if report.get("memory"):
        s += ["", "## Peak memory of a chunked sweep (chunks of 1024 runs, h=16, n=1000)", "",
              "| M | peak RSS MB | s |", "|---|---|---|"]
        s += [f"| {r['M']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.1f} |"
              for r in report["memory"]]
    return "\n".join(s) + "\n"


if __name__ == "__main__":
    sys.exit(main())

"""Sweeps: a grid of runs, grouped by shape, vmapped over (lr, seed), sharded over devices.

    grid -> draw_runs (every seed's random numbers at the widest width, one call per sweep)
         -> groups (dataset, data_seed, variant, width, optimizer, loss_fn: one program each)
         -> chunks of runs -> blocks (one compiled call per block and segment, sharded over
            the "runs" mesh axis)
         -> results.RunFolder (atomic chunk files, resume, tidy CSV)

Runs go through the devices in blocks: one compiled call trains `block_size` runs on each
device (vmapped), and the host loops over a chunk's blocks, so activations stay cache-sized and
every block computes the same program whatever the device count -- results do not depend on how
many devices there are. (The loop over blocks is the host's, not a `lax.map` inside the program:
a program with no loop over blocks compiles ~0.3 s faster, experiments/BENCHMARKS.md.)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from shortcut_jax import data as data_lib
from shortcut_jax import results as results_lib
from shortcut_jax.train import (
    LOSSES,
    OPTIMIZERS,
    Data,
    Draws,
    TrainConfig,
    draw,
    make_stages,
    validate_data,
)

VARIANTS = ("plain", "shortcut")
MATMUL_PRECISION = "highest"  # pinned for every sweep: GPUs would otherwise use TF32


@dataclasses.dataclass(frozen=True)
class Grid:
    """Everything a sweep runs: the product of the tuple fields, `seeds` seeds 0..seeds-1."""

    datasets: tuple[str, ...] = ("moons",)
    variants: tuple[str, ...] = VARIANTS
    widths: tuple[int, ...] = (4, 16, 64)
    lrs: tuple[float, ...] = (0.1, 0.5)
    seeds: int = 4
    data_seeds: tuple[int, ...] = (0,)
    optimizers: tuple[str, ...] = ("sgd",)
    loss_fns: tuple[str, ...] = ("mse",)
    steps: int = 2000
    eval_every: int = 50
    batch_size: int | None = None
    grad: str = "manual"
    n_train: int = 200
    n_test: int = 1000
    d: int = 2
    noise: float | None = None
    chunk_size: int | None = None  # runs per results file, in blocks; None: memory_budget
    block_size: int | None = None  # runs per device per call; None: auto_block_size
    memory_budget: int = 1 << 30  # bytes a chunk may take on one device

    def __post_init__(self):
        for name in ("datasets", "variants", "widths", "lrs", "data_seeds", "optimizers",
                     "loss_fns"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise TypeError(f"{name}: expected a sequence, got {value!r}")
            if len(value) == 0:
                raise ValueError(f"{name}: expected at least one value, got an empty grid axis")
            object.__setattr__(self, name, tuple(value))
        for v in self.variants:
            if v not in VARIANTS:
                raise ValueError(f"variants: expected values in {VARIANTS}, got {v!r}")
        for w in self.widths:
            _positive_int("widths", w)
        for lr in self.lrs:
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 \
                    or not math.isfinite(lr):
                raise ValueError(f"lrs: expected finite learning rates > 0, got {lr!r}")
        for name in ("seeds", "steps", "eval_every", "n_train", "n_test", "d", "memory_budget"):
            _positive_int(name, getattr(self, name))
        for name in ("chunk_size", "block_size"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        for name, known in (("optimizers", OPTIMIZERS), ("loss_fns", LOSSES)):
            for value in getattr(self, name):
                if value not in known:
                    raise ValueError(f"{name}: expected names in {sorted(known)}, got {value!r}")
        # the remaining checks (eval_every, batch_size, grad) are TrainConfig's
        self.train_config(self.widths[0], True, self.optimizers[0], self.loss_fns[0])
        if self.batch_size is not None and self.batch_size > self.n_train:
            raise ValueError(f"batch_size: expected at most n_train={self.n_train}, "
                             f"got {self.batch_size}")

    def train_config(self, width: int, shortcut: bool, optimizer: str, loss_fn: str):
        return TrainConfig(h=width, shortcut=shortcut, steps=self.steps,
                           eval_every=self.eval_every, optimizer=optimizer, loss_fn=loss_fn,
                           grad=self.grad, batch_size=self.batch_size)

    def block(self, width: int) -> int:
        """Runs per device per call for this width: block_size, else auto_block_size -- at most
        a group's runs (lrs x seeds), so small grids are not padded to a cache-sized block. It
        does not depend on the device count: neither do the results."""
        return min(self.block_size or auto_block_size(self.n_train, width), len(self.runs()))

    def groups(self) -> list[Group]:
        """Shape groups in a fixed order; runs inside a group are (lr, seed), lr-major."""
        out = []
        for ds, dseed, variant, width, opt, lf in itertools.product(
                self.datasets, self.data_seeds, self.variants, self.widths, self.optimizers,
                self.loss_fns):
            out.append(Group(ds, dseed, variant, width, opt, lf,
                             self.train_config(width, variant == "shortcut", opt, lf)))
        return out

    def runs(self) -> list[tuple[float, int]]:
        return [(float(lr), s) for lr in self.lrs for s in range(self.seeds)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Group:
    dataset: str
    data_seed: int
    variant: str
    width: int
    optimizer: str
    loss_fn: str
    config: TrainConfig

    @property
    def name(self) -> str:
        return (f"{self.dataset}-d{self.data_seed}-{self.variant}-h{self.width}-"
                f"{self.optimizer}-{self.loss_fn}")

    def columns(self, batch_size) -> dict[str, Any]:
        return {"dataset": self.dataset, "data_seed": self.data_seed, "variant": self.variant,
                "width": self.width, "optimizer": self.optimizer, "loss_fn": self.loss_fn,
                "batch_size": "full" if batch_size is None else batch_size}


def auto_block_size(n: int, h: int, platform: str | None = None) -> int:
    """Runs vmapped in one call per device, from the (n, h) float32 activations of a run.

    CPU: the power of two (1..64) of runs whose activations fill ~1 MiB, a core's cache.
    Measured on a 2-core CPU (experiments/BENCHMARKS.md): n=1000, h=16 is fastest at 16;
    n=4096, h=128 at 1 -- one run's activations already exceed the cache, and a vmapped block
    only turns its matmuls into slower batched ones. Other platforms (GPU, TPU) want the device
    filled instead: up to 4096 runs whose activations fit 32 MiB (a guess, not measured: no GPU
    was lent to this project's benchmarks). platform: jax.default_backend() by default.
    """
    _positive_int("n", n)
    _positive_int("h", h)
    platform = jax.default_backend() if platform is None else platform
    if not isinstance(platform, str):
        raise TypeError(f"platform: expected a name such as 'cpu' or 'gpu', got {platform!r}")
    platform = platform.lower()
    budget, cap = (1 << 20, 64) if platform == "cpu" else (1 << 25, 4096)
    fit = budget // (4 * n * h)
    return int(min(cap, 2 ** int(math.log2(fit)))) if fit >= 1 else 1


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")


def default_loader(grid: Grid) -> Callable[[str, int], Data]:
    """(dataset name, data seed) -> Data from the built-in tasks, sized by the grid."""

    def load(name: str, data_seed: int) -> Data:
        key = jax.random.key(data_seed)
        ds = data_lib.get_dataset(name, key, n_train=grid.n_train, n_test=grid.n_test,
                                  d=grid.d, noise=grid.noise)
        return Data(*ds)

    return load


# --- compiled execution -----------------------------------------------------------------------


def use_cpu_cores(count: int | None = None) -> int | None:
    """Give JAX one CPU device per core (or `count` devices); call before any JAX computation.

    A CPU device runs its elementwise kernels on one thread, so a sweep sharded over one
    device per core uses every core (1.8x on 2 cores, experiments/BENCHMARKS.md); results do
    not depend on the device count. Returns the count set, or None -- changing nothing -- when
    XLA_FLAGS already sets --xla_force_host_platform_device_count or JAX's backend is running.
    No effect on GPUs.
    """
    if count is None:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    _positive_int("count", count)
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    try:
        jax.config.update("jax_num_cpu_devices", int(count))
    except RuntimeError:  # the backend already runs with its devices
        return None
    return int(count)


def make_mesh() -> Mesh:
    """A 1-D mesh named "runs" over every device of every process."""
    return Mesh(np.asarray(jax.devices()), ("runs",))


class Executor:
    """Compiled init / run-segment of one TrainConfig for one block of runs on each device.

    init(draws, lrs, data) -> state; run(state, lrs, data, first) -> (state, metrics (R, k))
    with R = block_runs = block_size x devices: eval points first .. first + k - 1,
    k = segment_evals (train.make_stages). `run_chunk` calls them block by block.
    """

    def __init__(self, config: TrainConfig, mesh: Mesh, block_size: int, segment_evals: int):
        self.config, self.mesh, self.segment_evals = config, mesh, segment_evals
        self.block_runs = block_size * mesh.devices.size
        init, run = make_stages(config)

        def run_device(state, lr, data, first):  # one device's block of runs, vmapped
            return jax.vmap(lambda s, lr: run(s, lr, data, segment_evals, first))(state, lr)

        runs, rep = P("runs"), P()
        # init (no random draws: those come from draw_runs) runs once per block, so it is
        # compiled without LLVM optimization
        self.init = jax.jit(jax.vmap(init, (0, 0, None)), out_shardings=NamedSharding(mesh, runs),
                            compiler_options={"xla_backend_optimization_level": 0})
        self.run = jax.jit(jax.shard_map(run_device, mesh=mesh, in_specs=(runs, runs, rep, rep),
                                         out_specs=runs), donate_argnums=0)

    def segments(self) -> range:
        """First eval point of each run call: 0, k, 2k, ... covering config.num_evals points."""
        return range(0, self.config.num_evals, self.segment_evals)


def _global(mesh: Mesh, host: np.ndarray, spec) -> jax.Array:
    """A global array laid out as `spec` from a host array every process holds in full."""
    sharding = NamedSharding(mesh, spec)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def _to_host(tree):
    """Gather a (possibly multi-process) sharded pytree to NumPy on every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def draw_runs(seeds: Sequence[int], d: int, h: int, dtype=jnp.float32) -> Draws:
    """train.draw for the run keys jax.random.key(seed), as NumPy: z (S, num_normals(d, h)),
    batch_key as key data (S, ...). One compiled call for all of a sweep's seeds at its widest
    width (every narrower width reads a prefix of z), so no shape group compiles a sampler."""
    seeds = np.asarray(seeds)
    if (seeds.ndim != 1 or len(seeds) == 0 or not np.issubdtype(seeds.dtype, np.integer)
            or seeds.min() < 0 or seeds.max() >= 2**32):
        raise ValueError(f"seeds: expected a non-empty sequence of integers in [0, 2**32), got "
                         f"{seeds.dtype}{list(seeds.shape)} {np.ravel(seeds).tolist()[:5]}")
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    out = jax.jit(jax.vmap(draw, (0, None, None, None)), static_argnums=(1, 2, 3))(
        keys, d, h, jnp.dtype(dtype))
    return Draws(np.asarray(out.z), np.asarray(jax.random.key_data(out.batch_key)))


def run_chunk(executor: Executor, data: Data, lrs: np.ndarray, draws: Draws,
              on_segment: Callable[[int], None] | None = None):
    """Train len(lrs) runs (a whole number of blocks) from their draws (rows of draw_runs)
    -> (final params, metrics (R, E)).

    Each segment calls executor.run once per block (runs [j B, (j + 1) B), B = block_runs);
    the calls are dispatched asynchronously, so the devices do not wait for the host.
    """
    mesh, config, B = executor.mesh, executor.config, executor.block_runs
    if len(lrs) % B:
        raise ValueError(f"lrs: expected a multiple of the executor's {B} runs per block, got "
                         f"{len(lrs)} runs")
    if len(draws.z) != len(lrs) or len(draws.batch_key) != len(lrs):
        raise ValueError(f"draws: expected one row per run ({len(lrs)}), got "
                         f"{len(draws.z)} z rows and {len(draws.batch_key)} batch keys")
    lrs = np.asarray(lrs, np.float32)
    data_g = Data(*(_global(mesh, np.asarray(a), P()) for a in data))
    with jax.default_matmul_precision(MATMUL_PRECISION):
        blocks = []  # [state, lrs, metrics of each segment] per block
        for j in range(0, len(lrs), B):
            draws_g = Draws(_global(mesh, draws.z[j:j + B], P("runs")), jax.random.wrap_key_data(
                _global(mesh, draws.batch_key[j:j + B], P("runs"))))
            lrs_g = _global(mesh, lrs[j:j + B], P("runs"))
            blocks.append([executor.init(draws_g, lrs_g, data_g), lrs_g, []])
        for start in executor.segments():
            first = _global(mesh, np.asarray(start, np.int32), P())
            for block in blocks:
                block[0], metrics = executor.run(block[0], block[1], data_g, first)
                block[2].append(metrics)
            if on_segment is not None:
                jax.block_until_ready(metrics)
                trained = min(start + executor.segment_evals, config.num_evals - 1) - start
                on_segment(max(trained, 0) * config.eval_every)
    params, parts = _to_host(([b[0].params for b in blocks], [b[2] for b in blocks]))
    metrics = {k: np.concatenate([np.concatenate([p[k] for p in segs], axis=1)
                                  for segs in parts])[:, :config.num_evals]
               for k in parts[0][0]}
    params = jax.tree.map(lambda *leaves: np.concatenate(leaves), *params)
    return params, metrics


def segment_evals(num_evals: int, target_segments: int = 20) -> int:
    """Eval points per run call: about num_evals / target_segments (>= 1).

    The last call may run past the last eval point; those points repeat the final state and
    are dropped (fewer than segment_evals of them).
    """
    return -(-num_evals // min(num_evals, target_segments))


def estimate_bytes_per_run(config: TrainConfig, n_train: int, n_test: int, d: int) -> int:
    """Device bytes a run holds in a chunk: parameters x (1 + optimizer moments) + metrics."""
    h = config.h
    n_params = (d + 1) * h + (h + 1) + (d if config.shortcut else 0)
    n_metrics = 16
    return 4 * (3 * n_params + config.num_evals * n_metrics) + 64


def chunk_size_for(grid: Grid, config: TrainConfig, n_runs: int, n_devices: int) -> int:
    """Runs per chunk (whole blocks): the grid's chunk_size, else what fits memory_budget per
    device. The block's activations (block x (n_train + n_test) x h x ~8 floats) come off first.
    """
    block = grid.block(config.h)
    quantum = n_devices * block
    if grid.chunk_size is not None:
        size = grid.chunk_size
    else:
        per_run = estimate_bytes_per_run(config, grid.n_train, grid.n_test, grid.d)
        activations = block * (grid.n_train + grid.n_test) * config.h * 8 * 4
        size = max(1, (grid.memory_budget - activations) // per_run) * n_devices
    size = min(size, n_runs)
    return max(quantum, -(-size // quantum) * quantum)  # round up to whole blocks per device


# --- the driver --------------------------------------------------------------------------------


def iter_chunks(grid: Grid, n_devices: int) -> Iterator[tuple[Group, int, list, int]]:
    """(group, chunk index, runs of the chunk, padded chunk size) in a fixed order."""
    runs = grid.runs()
    for group in grid.groups():
        size = chunk_size_for(grid, group.config, len(runs), n_devices)
        for c in range(-(-len(runs) // size)):
            yield group, c, runs[c * size:(c + 1) * size], size


def run_sweep(grid: Grid, out_dir: str, *, load: Callable[[str, int], Data] | None = None,
              progress: bool = True, extra_config: dict | None = None) -> results_lib.RunFolder:
    """Run (or resume) the whole grid into out_dir; returns the finished RunFolder.

    Data from `load(dataset, data_seed)` (default: the built-in tasks) is validated before
    anything compiles.
    """
    load = load or default_loader(grid)
    datasets = {}
    for name in grid.datasets:
        for ds in grid.data_seeds:
            datasets[(name, ds)] = data = Data(*load(name, ds))
            validate_data(data)
            if grid.batch_size is not None and grid.batch_size > data.X_train.shape[0]:
                raise ValueError(f"batch_size: expected at most the {data.X_train.shape[0]} "
                                 f"training examples of {name}, got {grid.batch_size}")
    mesh = make_mesh()
    n_devices = mesh.devices.size
    folder = results_lib.RunFolder(out_dir)
    config = {"grid": grid.to_dict(), **(extra_config or {})}
    folder.prepare(config, results_lib.provenance(MATMUL_PRECISION))

    # every seed's random numbers, per input dimension and dtype, drawn at the widest width
    # when first needed (not at all on a full resume): a narrower width reads a prefix, which
    # equals its own draw only with partitionable threefry (JAX's default); else one per width
    wide = jax.config.jax_threefry_partitionable
    draws: dict[tuple, Draws] = {}
    chunks = list(iter_chunks(grid, n_devices))
    todo = [c for c in chunks if not folder.has_chunk(c[0].name, c[1])]
    executors: dict[TrainConfig, Executor] = {}
    bar = _progress_bar(progress, sum(len(c[2]) for c in todo) * grid.steps)
    t0 = time.perf_counter()
    for group, c, runs, size in todo:
        if group.config not in executors:
            executors[group.config] = Executor(group.config, mesh, grid.block(group.width),
                                               segment_evals(group.config.num_evals))
        padded = runs + [runs[-1]] * (size - len(runs))
        lrs = np.array([r[0] for r in padded], np.float32)
        seeds = np.array([r[1] for r in padded], np.int64)

        label, n_real = f"{group.name} chunk {c}", len(runs)

        def on_segment(steps, label=label, n_real=n_real):
            bar.update(steps * n_real)
            rate = bar.n / grid.steps / (time.perf_counter() - t0)
            bar.set_postfix_str(f"{label}, {rate:.1f} runs/s")

        data = datasets[(group.dataset, group.data_seed)]
        key = (data.X_train.shape[1], max(grid.widths) if wide else group.width,
               data.X_train.dtype)  # draw_runs' (d, h, dtype)
        if key not in draws:
            draws[key] = draw_runs(range(grid.seeds), *key)
        rows = draws[key]
        params, metrics = run_chunk(executors[group.config], data, lrs,
                                    Draws(rows.z[seeds], rows.batch_key[seeds]), on_segment)
        folder.save_chunk(group.name, c, group.columns(grid.batch_size),
                          np.array([r[0] for r in runs]), seeds[:n_real], group.config.eval_every,
                          {k: v[:n_real] for k, v in metrics.items()},
                          {k: np.asarray(v)[:n_real] for k, v in params._asdict().items()
                           if v is not None})
    bar.close()
    folder.assemble([(g.name, c) for g, c, _, _ in chunks])
    return folder


def _progress_bar(enabled: bool, total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", unit_scale=True, disable=not enabled,
                desc="sweep (run-steps)", smoothing=0.1)

"""Sweeps: a grid of runs, grouped by shape, vmapped over (lr, seed), sharded over devices.

    grid -> data sets (one per dataset x data seed x data axes: n_train, d, noise, ...)
         -> draw_runs (every seed's random numbers at the widest width and largest d, one call
            per sweep)
         -> groups (a data set x variant, width, optimizer, loss, batch size, shortcut init)
         -> chunks of runs -> blocks (one compiled call per block and segment, sharded over
            the "runs" mesh axis)
         -> results.RunFolder (checksummed chunk files, resume, tidy CSV)

A compiled program depends only on shapes and static settings: data sets and the shortcut's
initial scale are arguments, so axes that change no shape (noise, linear_weight,
teacher_shortcut, shortcut_init, lr) share one program -- and so do the two variants: a plain run
is the shortcut network with W = 0 and dJ/dW set to 0 (train.make_stages), which computes the
same values as the plain network. Runs go through the devices in blocks:
one compiled call trains `block` runs on each device (vmapped), and the host loops over a
chunk's blocks, so every block computes the same program whatever the device count -- results
do not depend on how many devices there are.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from shortcut_jax import data as data_lib
from shortcut_jax import network as net_lib
from shortcut_jax import results as results_lib
from shortcut_jax.data import Dataset
from shortcut_jax.model import shortcut_w_scale
from shortcut_jax.train import (
    LOSSES,
    OPTIMIZERS,
    Draws,
    TrainConfig,
    draw,
    make_stages,
    validate_data,
)

VARIANTS = ("plain", "shortcut")
"""The default variants: the problem's two networks."""
ALL_VARIANTS = net_lib.VARIANTS
"""Every variant a grid takes: the residual ones need depths >= 2 (network.py)."""
MATMUL_PRECISION = "highest"  # pinned for every sweep: GPUs would otherwise use TF32

SYNTHETIC_AXES = ("n_train", "d", "noise")
AXES_OF = {name: SYNTHETIC_AXES for name in data_lib.SYNTHETIC}
AXES_OF["linear_xor"] = (*SYNTHETIC_AXES, "linear_weight")
AXES_OF["teacher"] = (*SYNTHETIC_AXES, "teacher_width", "teacher_shortcut")
DATA_AXES = (*SYNTHETIC_AXES, "linear_weight", "teacher_width", "teacher_shortcut")
"""Grid axes that make data sets, and the data sets each applies to (others: real data)."""
AXIS_DEFAULTS = {"n_train": 200, "d": 2, "noise": None, "linear_weight":
                 data_lib.LINEAR_XOR_WEIGHT, "teacher_width": 4, "teacher_shortcut": 0.0}


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """One data set of a sweep; an axis that does not apply to the dataset is None."""

    dataset: str
    data_seed: int
    n_train: int | None = None
    d: int | None = None
    noise: float | None = None
    linear_weight: float | None = None
    teacher_width: int | None = None
    teacher_shortcut: float | None = None

    def columns(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def name(self) -> str:
        tags = {"n_train": "n", "d": "d", "noise": "noise", "linear_weight": "lw",
                "teacher_width": "tw", "teacher_shortcut": "ts"}
        parts = [self.dataset, f"s{self.data_seed}"]
        parts += [f"{tag}{getattr(self, k):g}" for k, tag in tags.items()
                  if getattr(self, k) is not None]
        return "-".join(parts)


@dataclasses.dataclass(frozen=True)
class Grid:
    """Everything a sweep runs: the product of its axes (tuple fields), seeds 0..seeds-1.

    Data axes (n_train, d, noise: synthetic tasks; linear_weight: linear_xor; teacher_width,
    teacher_shortcut: teacher) vary only the data sets they apply to; None leaves the default
    (AXIS_DEFAULTS; noise None = each task's default). n_train is the training part of a
    synthetic task, of which val_fraction is held out for validation; breast cancer and a CSV
    (csv + target) are split test_fraction / val_fraction instead. A scalar is one value.
    """

    datasets: tuple[str, ...] = ("moons",)
    variants: tuple[str, ...] = VARIANTS
    widths: tuple[int, ...] = (4, 16, 64)
    lrs: tuple[float, ...] = (0.1, 0.5)
    seeds: int = 4
    data_seeds: tuple[int, ...] = (0,)
    optimizers: tuple[str, ...] = ("sgd",)
    loss_fns: tuple[str, ...] = ("mse",)
    batch_size: tuple[int | None, ...] = (None,)
    shortcut_init: tuple[str, ...] = ("zeros",)
    shortcut_scale: float = 1.0
    steps: int = 2000
    eval_every: int = 50
    grad: str = "manual"
    n_train: tuple[int, ...] | None = None
    n_test: int = 1000
    d: tuple[int, ...] | None = None
    noise: tuple[float, ...] | None = None
    linear_weight: tuple[float, ...] | None = None
    teacher_width: tuple[int, ...] | None = None
    teacher_shortcut: tuple[float, ...] | None = None
    teacher_labels: str = "threshold"
    teacher_flip: float = 0.0
    teacher_seed: int = 0
    val_fraction: float = data_lib.VAL_FRACTION
    test_fraction: float = 0.3
    csv: str | None = None
    target: str | None = None
    chunk_size: int | None = None  # runs per results file, in blocks; None: memory_budget,
    # at most CHUNK_RUNS
    block_size: int | None = None  # runs per device per call; None: auto_block_size
    memory_budget: int = 1 << 30  # bytes a chunk may take on one device
    depths: tuple[int, ...] = (1,)
    activations: tuple[str, ...] = ("relu",)

    def __post_init__(self):
        if self.csv is not None:
            if not isinstance(self.csv, (str, os.PathLike)) or not isinstance(self.target, str):
                raise TypeError(f"csv, target: expected a file path and a column name, got "
                                f"{self.csv!r} and {self.target!r}")
            object.__setattr__(self, "csv", str(self.csv))
            object.__setattr__(self, "datasets", (Path(self.csv).stem,))
        elif self.target is not None:
            raise ValueError(f"target: only used with csv (a CSV file), got {self.target!r}")
        for name in ("datasets", "variants", "widths", "lrs", "data_seeds", "optimizers",
                     "loss_fns", "batch_size", "shortcut_init", *DATA_AXES, "depths",
                     "activations"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                value = (value,)  # one value
            if len(value) == 0:
                raise ValueError(f"{name}: expected at least one value, got an empty grid axis")
            if len(set(value)) != len(value):
                raise ValueError(f"{name}: expected distinct values, got {list(value)}")
            object.__setattr__(self, name, tuple(value))
        known = (*data_lib.DATASETS, *(() if self.csv is None else self.datasets))
        for name in self.datasets:
            if name not in known:
                raise ValueError(f"datasets: expected names in {list(data_lib.DATASETS)}, got "
                                 f"{name!r}")
        for v in self.variants:
            if v not in ALL_VARIANTS:
                raise ValueError(f"variants: expected values in {ALL_VARIANTS}, got {v!r}")
        for depth in self.depths:
            data_lib._check_int("depths", depth)
        for a in self.activations:
            if a not in net_lib.ACTIVATIONS:
                raise ValueError(f"activations: expected names in {list(net_lib.ACTIVATIONS)}, "
                                 f"got {a!r}")
        residual = [v for v in self.variants if v.startswith("residual")]
        if residual and max(self.depths) == 1:
            raise ValueError(f"variants: {residual} add identity skips between hidden layers, "
                             f"and a depth-1 network has one hidden layer (residual is the plain "
                             f"network there); expected depths >= 2 with them, got depths "
                             f"{list(self.depths)}")
        for w in self.widths:
            data_lib._check_int("widths", w)
        for seed in self.data_seeds:
            data_lib._check_int("data_seeds", seed, minimum=0)
        for lr in self.lrs:
            _real("lrs", lr, 0.0, math.inf, "finite learning rates > 0", open_low=True)
        for name in ("seeds", "steps", "eval_every", "n_test", "memory_budget"):
            data_lib._check_int(name, getattr(self, name))
        for name in ("chunk_size", "block_size"):
            if getattr(self, name) is not None:
                data_lib._check_int(name, getattr(self, name))
        data_lib._check_int("teacher_seed", self.teacher_seed, minimum=0)
        for name, known_names in (("optimizers", OPTIMIZERS), ("loss_fns", LOSSES)):
            for value in getattr(self, name):
                if value not in known_names:
                    raise ValueError(f"{name}: expected names in {sorted(known_names)}, got "
                                     f"{value!r}")
        for b in self.batch_size:
            if b is not None:
                data_lib._check_int("batch_size", b)
        for value in self.shortcut_init:
            shortcut_w_scale(value, self.shortcut_scale)  # checks the name and the scale
        for n in self.n_train or ():
            data_lib._check_int("n_train", n, minimum=2)  # one row to train, one to validate
        for d in self.d or ():
            data_lib._check_int("d", d)  # the 2-D tasks' generators ask for d >= 2 when loading
        for v in self.noise or ():
            _real("noise", v, 0.0, math.inf, "numbers >= 0")
        for v in self.linear_weight or ():
            _real("linear_weight", v, 0.0, 1.0, "numbers in [0, 1]", open_high=False)
        for v in self.teacher_width or ():
            data_lib._check_int("teacher_width", v)
        for v in self.teacher_shortcut or ():
            _real("teacher_shortcut", v, 0.0, math.inf, "numbers >= 0")
        if self.teacher_labels not in ("threshold", "bernoulli"):
            raise ValueError(f"teacher_labels: expected 'threshold' or 'bernoulli', got "
                             f"{self.teacher_labels!r}")
        _real("teacher_flip", self.teacher_flip, 0.0, 0.5, "a number in [0, 0.5]",
              open_high=False)
        for name in ("val_fraction", "test_fraction"):
            _real(name, getattr(self, name), 0.0, 1.0, "a number in (0, 1)", open_low=True)
        for axis in DATA_AXES:
            users = [ds for ds in self.datasets if axis in AXES_OF.get(ds, ())]
            if getattr(self, axis) is not None and not users:
                takes = sorted(ds for ds, axes in AXES_OF.items() if axis in axes)
                raise ValueError(f"{axis}: applies to the data sets {takes}, not to "
                                 f"{list(self.datasets)}; leave it out or add such a data set")
        # the remaining checks (eval_every, grad) are TrainConfig's
        self.train_config(self.widths[0], self.optimizers[0], self.loss_fns[0],
                          self.batch_size[0])

    def train_config(self, width: int, optimizer: str, loss_fn: str,
                     batch_size: int | None = None, depth: int = 1, activation: str = "relu",
                     residual: bool = False) -> TrainConfig:
        """The compiled program's settings: always the shortcut network (a plain run is W = 0
        with W frozen, see Executor); W's start is the sweep's traced w_scale, so the config
        holds no shortcut_init (one program for all of them). The residual skips are static:
        residual and residual+shortcut share a program, plain and shortcut another."""
        return TrainConfig(h=width, shortcut=True, steps=self.steps,
                           eval_every=self.eval_every, optimizer=optimizer, loss_fn=loss_fn,
                           grad=self.grad, batch_size=batch_size, depth=depth,
                           activation=activation, residual=residual)

    @property
    def left_out(self) -> list[str]:
        """Notes on combinations the grid does not run: residual variants at depth 1."""
        return [f"{v} at depth 1 left out (no skip between hidden layers: the plain network)"
                for v in self.variants if v.startswith("residual") and 1 in self.depths]

    def data_specs(self) -> list[DataSpec]:
        """Every data set of the grid: dataset x data seed x the data axes that apply to it."""
        out = []
        for ds in self.datasets:
            axes = AXES_OF.get(ds, ())
            values = [getattr(self, a) or ((data_lib.DEFAULT_NOISE[ds],) if a == "noise" else
                                           (AXIS_DEFAULTS[a],)) for a in axes]
            for seed in self.data_seeds:
                for combo in itertools.product(*values):
                    out.append(DataSpec(ds, seed, **dict(zip(axes, combo))))
        return out

    def groups(self, specs: Sequence[DataSpec] | None = None) -> list[Group]:
        """Shape groups in a fixed order; runs inside a group are (lr, seed), lr-major. The
        plain variant has no shortcut_init (None): its runs pair with every shortcut_init."""
        out = []
        for spec in self.data_specs() if specs is None else specs:
            for variant, width, opt, lf, bs, depth, act in itertools.product(
                    self.variants, self.widths, self.optimizers, self.loss_fns, self.batch_size,
                    self.depths, self.activations):
                residual, shortcut = net_lib.variant_parts(variant)
                if residual and depth == 1:
                    continue  # no skip between hidden layers: see left_out
                inits = self.shortcut_init if shortcut else (None,)
                for init in inits:  # one program for both variants: the shortcut's
                    out.append(Group(spec, variant, width, opt, lf, bs, init,
                                     self.train_config(width, opt, lf, bs, depth, act,
                                                       residual), depth, act))
        return out

    def runs(self) -> list[tuple[float, int]]:
        """(lr, seed) of a shape group's runs, lr-major."""
        return [(float(lr), s) for lr in self.lrs for s in range(self.seeds)]

    def block(self, n: int, width: int, depth: int = 1) -> int:
        """Runs per device per call for n training rows, this width and depth: block_size, else
        auto_block_size -- at most a group's runs (lrs x seeds), so small grids are not padded.
        It does not depend on the device count: neither do the results."""
        return min(self.block_size or auto_block_size(n, width, depth=depth), len(self.runs()))

    def to_dict(self) -> dict[str, Any]:
        """The grid as config.json records it; depths and activations only where they differ
        from the problem's (1,) and ("relu",), so folders from before those axes resume."""
        out = dataclasses.asdict(self)
        for name, default in (("depths", (1,)), ("activations", ("relu",))):
            if out[name] == default:
                del out[name]
        return out


@dataclasses.dataclass(frozen=True)
class Group:
    """A shape group's runs on one data set: one compiled program (`config`) per shapes."""

    spec: DataSpec
    variant: str
    width: int
    optimizer: str
    loss_fn: str
    batch_size: int | None
    shortcut_init: str | None
    config: TrainConfig
    depth: int = 1
    activation: str = "relu"

    @property
    def name(self) -> str:
        init = "" if self.shortcut_init is None else f"-{self.shortcut_init}"
        batch = "full" if self.batch_size is None else self.batch_size
        net = "" if (self.depth, self.activation) == (1, "relu") else (
            f"-L{self.depth}-{self.activation}")
        return (f"{self.spec.name}-{self.variant}{init}-h{self.width}{net}-{self.optimizer}-"
                f"{self.loss_fn}-b{batch}")

    def columns(self) -> dict[str, Any]:
        """The results columns every run of the group shares (results.ID_COLUMNS)."""
        return {**self.spec.columns(), "variant": self.variant, "width": self.width,
                "shortcut_init": self.shortcut_init, "optimizer": self.optimizer,
                "loss_fn": self.loss_fn,
                "batch_size": "full" if self.batch_size is None else self.batch_size,
                "depth": self.depth, "activation": self.activation}


def auto_block_size(n: int, h: int, platform: str | None = None, depth: int = 1) -> int:
    """Runs vmapped in one call per device, from the float32 activations of a run: (2 depth - 1)
    (n, h) matrices (the problem's network: one; each deeper layer adds its z_k and a_k).

    CPU: the power of two (1..64) of runs whose activations fill ~1 MiB, a core's cache, and
    at most 2 for depth >= 2 (measured: blocks of 4 or more were 30-45% slower a model-step
    there; experiments/BENCHMARKS.md holds the measurements behind both). Other platforms (GPU,
    TPU) want the device filled instead: up to 4096 runs whose activations fit 32 MiB (a guess,
    not measured). platform: jax.default_backend() by default.
    """
    data_lib._check_int("n", n)
    data_lib._check_int("h", h)
    data_lib._check_int("depth", depth)
    platform = jax.default_backend() if platform is None else platform
    if not isinstance(platform, str):
        raise TypeError(f"platform: expected a name such as 'cpu' or 'gpu', got {platform!r}")
    platform = platform.lower()
    budget, cap = (1 << 20, 64 if depth == 1 else 2) if platform == "cpu" else (1 << 25, 4096)
    fit = budget // (4 * n * h * (2 * depth - 1))
    return int(min(cap, 2 ** int(math.log2(fit)))) if fit >= 1 else 1


def _real(name: str, value, low: float, high: float, what: str, *, open_low: bool = False,
          open_high: bool = True) -> None:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    ok = ok and (value > low if open_low else value >= low) and (
        value < high if open_high else value <= high)
    if not ok:
        raise ValueError(f"{name}: expected {what}, got {value!r}")


def load_data(grid: Grid, spec: DataSpec) -> tuple[Dataset, dict[str, Any]]:
    """(Dataset, provenance record) of one data set of the grid (data.describe + the spec)."""
    if grid.csv is not None:
        ds, info = data_lib.load_csv(grid.csv, grid.target, seed=spec.data_seed,
                                     test_fraction=grid.test_fraction,
                                     val_fraction=grid.val_fraction)
        extra = {k: info[k] for k in ("path", "sha256", "target", "label_map")}
    elif spec.dataset == "breast_cancer":
        ds = data_lib.breast_cancer(spec.data_seed, grid.test_fraction, grid.val_fraction)
        extra = {"source": "sklearn.datasets.load_breast_cancer", "label_map": {0: 0, 1: 1}}
    else:
        kwargs: dict[str, Any] = {}
        if spec.linear_weight is not None:
            kwargs["linear_weight"] = spec.linear_weight
        if spec.dataset == "teacher":
            kwargs.update(width=spec.teacher_width, shortcut=spec.teacher_shortcut,
                          labels=grid.teacher_labels, flip=grid.teacher_flip,
                          teacher_seed=grid.teacher_seed)
        ds = data_lib.make_synthetic(spec.dataset, spec.data_seed, spec.n_train, grid.n_test,
                                     spec.d, spec.noise, val_fraction=grid.val_fraction,
                                     **kwargs)
        extra = {"noise": spec.noise, **kwargs}
    return ds, data_lib.describe(ds, spec.dataset, data_seed=spec.data_seed, **extra)


# --- compiled execution -----------------------------------------------------------------------


def use_cpu_cores(count: int | None = None) -> int | None:
    """Give JAX one CPU device per core (or `count` devices); call before any JAX computation.

    A CPU device runs its elementwise kernels on one thread, so a sweep sharded over one
    device per core uses every core (experiments/BENCHMARKS.md); results do not depend on the
    device count. Returns the count set, or None -- changing nothing -- when XLA_FLAGS already
    sets --xla_force_host_platform_device_count or JAX's backend is running. No effect on GPUs.
    """
    if count is None:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    data_lib._check_int("count", count)
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

    init(draws, lrs, data, w_scales) -> state; run(state, lrs, w_on, data, first) -> (state,
    metrics (R, k)) with R = block_runs = block_size x devices: eval points first .. first + k
    - 1, k = segment_evals (train.make_stages; w_on 0 trains a plain network). `run_chunk` calls
    them block by block.
    """

    def __init__(self, config: TrainConfig, mesh: Mesh, block_size: int, segment_evals: int):
        self.config, self.mesh, self.segment_evals = config, mesh, segment_evals
        self.block_runs = block_size * mesh.devices.size
        init, run = make_stages(config)

        def run_device(state, lr, w_on, data, first):  # one device's block of runs, vmapped
            return jax.vmap(lambda s, lr, on: run(s, lr, data, segment_evals, first, on))(
                state, lr, w_on)

        runs, rep = P("runs"), P()
        # init (no random draws: those come from draw_runs) runs once per block, so it is
        # compiled without LLVM optimization
        self.init = jax.jit(jax.vmap(init, (0, 0, None, 0)),
                            out_shardings=NamedSharding(mesh, runs),
                            compiler_options={"xla_backend_optimization_level": 0})
        self.run = jax.jit(jax.shard_map(run_device, mesh=mesh,
                                         in_specs=(runs, runs, runs, rep, rep), out_specs=runs),
                           donate_argnums=0)

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


def draw_runs(seeds: Sequence[int], d: int, h: int, dtype=jnp.float32, depth: int = 1) -> Draws:
    """train.draw for the run keys jax.random.key(seed), as NumPy: z (S, num_normals(d, h))
    (num_net_normals(d, h, depth) for deeper networks),
    batch_key as key data (S, ...). One compiled program for all of a sweep's seeds at its
    widest width (every narrower width reads a prefix of z), so no shape group compiles a
    sampler."""
    seeds = np.asarray(seeds)
    if (seeds.ndim != 1 or len(seeds) == 0 or not np.issubdtype(seeds.dtype, np.integer)
            or seeds.min() < 0 or seeds.max() >= 2**32):
        raise ValueError(f"seeds: expected a non-empty sequence of integers in [0, 2**32), got "
                         f"{seeds.dtype}{list(seeds.shape)} {np.ravel(seeds).tolist()[:5]}")
    z, batch_key = _draw_runs(seeds.astype(np.uint32), d, h, jnp.dtype(dtype), depth)
    return Draws(np.asarray(z), np.asarray(batch_key))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _draw_runs(seeds, d, h, dtype, depth):
    out = jax.vmap(lambda s: draw(jax.random.key(s), d, h, dtype, depth))(seeds)
    return out.z, jax.random.key_data(out.batch_key)


def run_chunk(executor: Executor, data: Dataset, lrs: np.ndarray, w_scales: np.ndarray,
              draws: Draws, on_segment: Callable[[int], None] | None = None,
              w_on: np.ndarray | None = None):
    """Train len(lrs) runs (a whole number of blocks) from their draws (rows of draw_runs),
    shortcut scales and w_on (default 1; 0: a plain network, see Executor) -> (final params,
    metrics (R, E)).

    Each segment calls executor.run once per block (runs [j B, (j + 1) B), B = block_runs);
    the calls are dispatched asynchronously, so the devices do not wait for the host.
    """
    mesh, config, B = executor.mesh, executor.config, executor.block_runs
    if len(lrs) % B:
        raise ValueError(f"lrs: expected a multiple of the executor's {B} runs per block, got "
                         f"{len(lrs)} runs")
    if len(w_scales) != len(lrs):
        raise ValueError(f"w_scales: expected one per run ({len(lrs)}), got {len(w_scales)}")
    if len(draws.z) != len(lrs) or len(draws.batch_key) != len(lrs):
        raise ValueError(f"draws: expected one row per run ({len(lrs)}), got "
                         f"{len(draws.z)} z rows and {len(draws.batch_key)} batch keys")
    dtype = np.dtype(np.asarray(data.X_train).dtype)
    lrs, w_scales = np.asarray(lrs, np.float32), np.asarray(w_scales, dtype)
    w_on = np.ones(len(lrs), dtype) if w_on is None else np.asarray(w_on, dtype)
    data_g = Dataset(*(None if a is None else _global(mesh, np.asarray(a), P()) for a in data))
    with jax.default_matmul_precision(MATMUL_PRECISION):
        blocks = []  # [state, lrs, metrics of each segment] per block
        for j in range(0, len(lrs), B):
            draws_g = Draws(_global(mesh, draws.z[j:j + B], P("runs")), jax.random.wrap_key_data(
                _global(mesh, draws.batch_key[j:j + B], P("runs"))))
            lrs_g = _global(mesh, lrs[j:j + B], P("runs"))
            scales_g = _global(mesh, w_scales[j:j + B], P("runs"))
            on_g = _global(mesh, w_on[j:j + B], P("runs"))
            blocks.append([executor.init(draws_g, lrs_g, data_g, scales_g), lrs_g, on_g, []])
        for start in executor.segments():
            first = _global(mesh, np.asarray(start, np.int32), P())
            for block in blocks:
                block[0], metrics = executor.run(block[0], block[1], block[2], data_g, first)
                block[3].append(metrics)
            if on_segment is not None:
                jax.block_until_ready(metrics)
                trained = min(start + executor.segment_evals, config.num_evals - 1) - start
                on_segment(max(trained, 0) * config.eval_every)
    params, parts = _to_host(([b[0].params for b in blocks], [b[3] for b in blocks]))
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


def estimate_bytes_per_run(config: TrainConfig, d: int) -> int:
    """Device bytes a run holds in a chunk: parameters x (1 + optimizer moments) + metrics."""
    h = config.h
    n_params = (d + 1) * h + (config.depth - 1) * (h + 1) * h + (h + 1) + (
        d if config.shortcut else 0)
    n_metrics = 20
    return 4 * (3 * n_params + config.num_evals * n_metrics) + 64


CHUNK_RUNS = 4096
"""Runs of a chunk at most, unless Grid.chunk_size says otherwise: the host holds a chunk's
states and metrics (~20 kB a run measured with h = 16 and 11 eval points, experiments/
BENCHMARKS.md), so a sweep's peak memory does not grow with its number of runs."""


def chunk_size_for(grid: Grid, config: TrainConfig, n_runs: int, n_devices: int,
                   data: Dataset) -> int:
    """Runs per chunk (whole blocks) on this data set: the grid's chunk_size, else what fits
    memory_budget per device, at most CHUNK_RUNS (rounded up to whole blocks). The block's
    activations (block x (train + val + test rows) x h x ~8 floats) come off first.
    """
    n_train, d = np.shape(data.X_train)
    block = grid.block(n_train, config.h, config.depth)
    quantum = n_devices * block
    if grid.chunk_size is not None:
        size = grid.chunk_size
    else:
        rows = n_train + len(data.Y_val) + len(data.Y_test)
        per_run = estimate_bytes_per_run(config, d)
        activations = block * rows * config.h * 8 * 4
        size = max(1, (grid.memory_budget - activations) // per_run) * n_devices
        size = min(size, CHUNK_RUNS)  # the host holds a chunk: memory flat in the run count
    size = min(size, n_runs)
    return max(quantum, -(-size // quantum) * quantum)  # round up to whole blocks per device


# --- the driver --------------------------------------------------------------------------------


def iter_chunks(grid: Grid, data: dict[DataSpec, Dataset], n_devices: int
                ) -> Iterator[tuple[Group, int, list, int]]:
    """(group, chunk index, runs of the chunk, padded chunk size) in a fixed order."""
    runs = grid.runs()
    for group in grid.groups(list(data)):
        size = chunk_size_for(grid, group.config, len(runs), n_devices, data[group.spec])
        for c in range(-(-len(runs) // size)):
            yield group, c, runs[c * size:(c + 1) * size], size


def load_all(grid: Grid, load: Callable[[DataSpec], Dataset] | None = None
             ) -> tuple[dict[DataSpec, Dataset], list[dict[str, Any]]]:
    """Every data set of the grid, validated, with its provenance record; batch sizes checked
    against each data set's training rows. Nothing compiles."""
    datasets, records = {}, []
    for spec in grid.data_specs():
        if load is None:
            ds, record = load_data(grid, spec)
        else:
            ds = load(spec)
            if not isinstance(ds, Dataset):
                raise TypeError(f"load: expected a data.Dataset from load({spec}), got "
                                f"{type(ds).__name__}")
            record = data_lib.describe(ds, spec.dataset, **spec.columns())
        validate_data(ds)
        n = len(ds.Y_train)
        for b in grid.batch_size:
            if b is not None and b > n:
                raise ValueError(f"batch_size: expected at most the {n} training rows of "
                                 f"{spec.name}, got {b}")
        datasets[spec] = ds
        records.append(record)
    return datasets, records


def run_sweep(grid: Grid, out_dir: str, *, load: Callable[[DataSpec], Dataset] | None = None,
              progress: bool = True, extra_config: dict | None = None) -> results_lib.RunFolder:
    """Run (or resume) the whole grid into out_dir; returns the finished RunFolder, whose
    `timings` holds seconds spent loading data, drawing, compiling, training and writing, and
    `counts` the runs trained now and the runs found complete ("trained", "resumed").

    Data from `load(spec)` (default: `load_data`, the built-in tasks or the grid's CSV) are
    validated, and recorded in config.json, before anything compiles. One writer per folder:
    a second sweep on a folder another live process is writing stops with a message naming it.
    A Ctrl-C leaves as results.Interrupted, a file that cannot be written as
    results.WriteFailed, each with the runs saved; rerunning resumes.
    """
    timings = dict.fromkeys(("data", "draws", "compile", "train", "write"), 0.0)
    t0 = time.perf_counter()
    datasets, records = load_all(grid, load)
    timings["data"] = time.perf_counter() - t0
    mesh = make_mesh()
    n_devices = mesh.devices.size
    folder = results_lib.RunFolder(out_dir)
    config = {"grid": grid.to_dict(), "data": records, **(extra_config or {})}
    with folder.writing():
        folder.prepare(config, results_lib.provenance(MATMUL_PRECISION))
        folder.clean_temporaries()
        chunks = list(iter_chunks(grid, datasets, n_devices))
        done = np.array([folder.has_chunk(g.name, c) for g, c, _, _ in chunks], bool)
        if jax.process_count() > 1:  # process 0's folder decides, for every process alike
            done = np.asarray(multihost_utils.broadcast_one_to_all(done), bool)
        todo = [c for c, ok in zip(chunks, done) if not ok]
        starts = np.cumsum([0] + [len(c[2]) for c in chunks])  # each chunk's first run
        first_run = {(g.name, c): int(n) for (g, c, _, _), n in zip(chunks, starts)}
        folder.counts = {"trained": sum(len(c[2]) for c in todo),
                         "resumed": sum(len(c[2]) for c, ok in zip(chunks, done) if ok)}
        _train(grid, folder, datasets, mesh, todo, progress, timings, first_run)
        t0 = time.perf_counter()
        folder.assemble([(g.name, c) for g, c, _, _ in chunks])
        timings["write"] += time.perf_counter() - t0
    folder.timings = timings
    return folder


def _train(grid, folder, datasets, mesh, todo, progress, timings, first_run) -> None:
    """Train and save every chunk in `todo`; adds to timings (compile from JAX's own events)."""
    from shortcut_jax import compilation

    # every seed's random numbers, per dtype, drawn once at the widest width and the largest
    # input dimension when first needed (not at all on a full resume): every group reads a
    # prefix, which equals its own draw only with partitionable threefry (JAX's default); else
    # one draw per (d, width)
    wide = jax.config.jax_threefry_partitionable
    widest = (max(np.shape(ds.X_train)[1] for ds in datasets.values()), max(grid.widths),
              max(grid.depths))
    draws: dict[tuple, Draws] = {}
    executors: dict[tuple, Executor] = {}
    bar = _progress_bar(progress, sum(len(c[2]) for c in todo) * grid.steps)
    start = time.perf_counter()
    for group, c, runs, size in todo:
        data = datasets[group.spec]
        n, d = np.shape(data.X_train)
        ex_key = (group.config, grid.block(n, group.width, group.config.depth))
        if ex_key not in executors:
            executors[ex_key] = Executor(group.config, mesh, ex_key[1],
                                         segment_evals(group.config.num_evals))
        padded = runs + [runs[-1]] * (size - len(runs))
        lrs = np.array([r[0] for r in padded], np.float32)
        seeds = np.array([r[1] for r in padded], np.int64)
        plain = not net_lib.variant_parts(group.variant)[1]  # no input -> output shortcut
        w_scale = 0.0 if plain else shortcut_w_scale(group.shortcut_init, grid.shortcut_scale)
        label, n_real = f"{group.name} chunk {c}", len(runs)

        def on_segment(steps, label=label, n_real=n_real):
            bar.update(steps * n_real)
            rate = bar.n / grid.steps / (time.perf_counter() - start)
            bar.set_postfix_str(f"{label}, {rate:.1f} runs/s")

        key = (*(widest if wide else (d, group.width, group.depth)), np.dtype(data.X_train.dtype))
        if key not in draws:  # draw_runs' (d, h, depth, dtype)
            t0 = time.perf_counter()
            with compilation.tally() as compiled:
                draws[key] = draw_runs(range(grid.seeds), key[0], key[1], key[3], key[2])
            timings["compile"] += compiled.seconds
            timings["draws"] += time.perf_counter() - t0 - compiled.seconds
        rows = draws[key]
        t0 = time.perf_counter()
        with compilation.tally() as compiled:
            params, metrics = run_chunk(executors[ex_key], data, lrs, np.full(size, w_scale),
                                        Draws(rows.z[seeds], rows.batch_key[seeds]), on_segment,
                                        w_on=np.full(size, 0.0 if plain else 1.0))
        timings["compile"] += compiled.seconds
        timings["train"] += time.perf_counter() - t0 - compiled.seconds
        t0 = time.perf_counter()
        dropped = ("W", "grad_norm_W") if plain else ()  # W = 0 throughout a plain run
        folder.save_chunk(group.name, c, group.columns(), np.array([r[0] for r in runs]),
                          seeds[:n_real], group.config.eval_every,
                          {k: v[:n_real] for k, v in metrics.items() if k not in dropped},
                          {k: np.asarray(v)[:n_real] for k, v in _leaves(params).items()
                           if v is not None and k not in dropped},
                          first_run=first_run[group.name, c])
        timings["write"] += time.perf_counter() - t0
    bar.close()


def _leaves(params) -> dict[str, Any]:
    """Named leaves of a Params (W1, b1, W2, b2, W) or a NetParams (W1..WL, b1..bL, Wo, bo, W;
    W_k is the k-th hidden layer's)."""
    if not isinstance(params, net_lib.NetParams):
        return params._asdict()
    return net_lib.named_leaves(params)


def _progress_bar(enabled: bool, total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", unit_scale=True, disable=not enabled,
                desc="sweep (run-steps)", smoothing=0.1)

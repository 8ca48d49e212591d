"""The kit's sweep machinery timed as the benchmark's "kit" implementation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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



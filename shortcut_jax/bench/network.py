"""The network section: configuration D (the network family: depth 3, tanh, residual+shortcut)
in this process, the kit's engine with the hand-written gradient beside the same engine with
jax.grad and plain jit(vmap(scan)) with jax.grad, on the same devices."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from shortcut_jax.bench.configs import Echo, _quiet

NETWORK_CONFIG = (1000, 2, 16, 1024, 200, 3, "tanh", "residual+shortcut")
"""Configuration D: (n, d, h, M, T, depth, activation, variant), the network family."""
NETWORK_QUICK = (64, 2, 4, 8, 10, 3, "tanh", "residual+shortcut")
NETWORK_IMPLS = ("kit", "kit_autodiff", "kit_depth1_block", "jax_naive_sharded")


def network_times(cfg: Sequence[Any] = NETWORK_CONFIG, reps: int = 3,
                  echo: Echo = _quiet) -> dict[str, Any]:
    """Configuration D in this process, on every JAX device: M models of the network family
    (depth, activation, variant) trained T full-batch SGD steps on one data set, by

        kit                the sweep's engine (sweep.Executor via run_chunk) with netgrads'
                           hand-written gradient
        kit_autodiff       the same engine with jax.grad (TrainConfig grad="autodiff")
        kit_depth1_block   the kit with the block size of a depth-1 network of this n and h
                           (auto_block_size(n, h), what the kit used before the block size
                           took the depth into account)
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
    kw = dict(h=h, shortcut=True, steps=T, eval_every=T, depth=depth, activation=activation,
              residual=residual)
    block, depth1_block = (min(sweep.auto_block_size(n, h, depth=depth), M),
                           min(sweep.auto_block_size(n, h), M))

    def kit(grad, block=block):
        R = -(-M // (block * mesh.devices.size)) * block * mesh.devices.size
        idx = np.arange(R) % M
        ex = sweep.Executor(TrainConfig(**kw, grad=grad), mesh, block, segment_evals=2)

        def go():
            _, metrics = sweep.run_chunk(
                ex, data, np.full(R, lr, np.float32),
                np.full(R, 0.1 if shortcut else 0.0, np.float32),  # W starts and stays 0 without it
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
             "kit_depth1_block": kit("manual", depth1_block),
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
            "variant": variant, "block": block, "depth1_block": depth1_block,
            "devices": int(mesh.devices.size),
            "platform": jax.default_backend(), "reps": reps, "rows": rows}


BLOCK_DEPTHS = (1, 2, 3, 4)
BLOCK_SIZES = (1, 2, 4, 8, 16, 32)


def block_times(n: int = 1000, d: int = 2, h: int = 16, depths: Sequence[int] = BLOCK_DEPTHS,
                blocks: Sequence[int] = BLOCK_SIZES, M: int = 64, T: int = 100,
                activation: str = "tanh", reps: int = 3,
                echo: Echo = _quiet) -> dict[str, Any]:
    """The kit's engine on one device against its block size, per depth (the measurement
    behind sweep.auto_block_size's depth): M runs of T full-batch SGD steps (residual+shortcut,
    shortcut at depth 1) through sweep.run_chunk, one Executor per block size, timed in rounds
    over the block sizes after a warm-up call; median microseconds per model-step."""
    import jax
    import numpy as np
    from jax.sharding import Mesh

    from shortcut_jax import peers, sweep
    from shortcut_jax.data import Dataset
    from shortcut_jax.train import TrainConfig

    if M % max(blocks):
        raise ValueError(f"M: expected a multiple of every block size {list(blocks)}, got {M}")
    X, Y = (np.asarray(a, np.float32) for a in peers.make_data(1, n, d))
    data = Dataset(X, Y, X, Y, X, Y)
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("runs",))
    rows = []
    for depth in depths:
        draws = sweep.draw_runs(range(M), d, h, depth=depth)
        cfg = TrainConfig(h=h, steps=T, eval_every=T, depth=depth, activation=activation,
                          residual=depth > 1, network=True)
        calls = {}
        for block in blocks:
            ex = sweep.Executor(cfg, mesh, block, segment_evals=2)
            calls[block] = (lambda ex=ex, draws=draws: sweep.run_chunk(
                ex, data, np.full(M, 0.5, np.float32), np.full(M, 0.1, np.float32), draws))
            calls[block]()  # compile and warm up
        times = {b: [] for b in blocks}
        for _ in range(reps):
            for block, go in calls.items():
                t0 = time.perf_counter()
                go()
                times[block].append(time.perf_counter() - t0)
        us = {b: float(np.median(t)) / (M * T) * 1e6 for b, t in times.items()}
        auto = sweep.auto_block_size(n, h, depth=depth)
        rows.append({"depth": depth, "us_per_model_step": us, "auto_block": auto})
        echo(f"  blocks, depth {depth}: " + ", ".join(f"{b}: {v:.1f} us" for b, v in us.items())
             + f" (auto_block_size: {auto})")
    return {"n": n, "d": d, "h": h, "M": M, "T": T, "activation": activation, "reps": reps,
            "platform": jax.default_backend(), "blocks": list(blocks), "rows": rows}

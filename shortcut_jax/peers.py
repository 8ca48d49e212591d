"""Peer implementations of the benchmark workload: M independent shortcut networks, full-batch SGD.

What a user would write instead of the kit, timed next to it by `shortcut-jax bench`
(shortcut_jax.bench). Every model sees the same data X (n, d) float32 and Y (n,) in {0, 1}.
Model m has parameters W1 (h, d), b1 (h,), W2 (1, h), b2 (), and, in the shortcut variant,
W (1, d); they are passed stacked along a leading model axis of size M (W is None for the plain
network):

    z1 = W1 x + b1,  a1 = relu(z1),  z2 = W2 a1 + b2 [+ W x],  y_hat = sigmoid(z2)
    J  = mean_n 1/2 (y_hat - y)^2,    theta <- theta - lr * dJ/dtheta   (T steps, plain SGD)

Each `train_<name>(params, X, Y, lr, T)` returns (final stacked params as a dict of float32 NumPy
arrays, per-model loss (M,) at the final params). `lr` is a scalar or an (M,) vector.

    numpy              hand-vectorized over models, hand-written gradients
    torch_func         torch.func.vmap(torch.func.grad(per-model loss)), Python loop over steps
    torch_bmm          hand-batched bmm forward, autograd (default) or hand-written backward
    torch_compile      torch.compile of a hand-written full step (compile time reported apart)
    jax_naive          jax.jit(jax.vmap(train_one)), train_one = lax.scan of jax.grad SGD steps,
                       on the default device
    jax_naive_sharded  the same program with the models sharded over every JAX device (a
                       "models" mesh axis, jax.sharding), as JAX's sharding guide writes it
    jax_python_loop    a Python loop over models of one jitted single-model training
    jax_step_loop      a Python loop over T calls of one jitted, vmapped SGD step

The JAX peers use plain JAX, nothing from shortcut_jax. PyTorch is optional (the `bench`
extra): `HAVE_TORCH` says whether it is importable; torch is imported when first used.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

HAVE_TORCH = importlib.util.find_spec("torch") is not None

FIELDS = ("W1", "b1", "W2", "b2", "W")
F32 = np.float32


# ----------------------------------------------------------------------------------------------
# helpers


def init_stacked(seed: int, M: int, d: int, h: int, shortcut: bool, w_scale: float = 0.0) -> dict:
    """Stacked initial params: He-normal W1 (std sqrt(2/d)), W2 std sqrt(1/h), zero biases,
    W = w_scale * N(0, 1) for the shortcut net (zeros by default), None for the plain net."""
    rng = np.random.default_rng(seed)
    return {
        "W1": (np.sqrt(2.0 / d) * rng.standard_normal((M, h, d))).astype(F32),
        "b1": np.zeros((M, h), F32),
        "W2": (np.sqrt(1.0 / h) * rng.standard_normal((M, 1, h))).astype(F32),
        "b2": np.zeros((M,), F32),
        "W": (w_scale * rng.standard_normal((M, 1, d))).astype(F32) if shortcut else None,
    }


def make_data(seed: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """X ~ N(0, 1) (n, d) float32; Y = 1{x_0 x_1 > 0} (an XOR-like task), or 1{x_0 > 0} if d=1."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(F32)
    Y = (X[:, 0] * X[:, 1] > 0) if d > 1 else (X[:, 0] > 0)
    return X, Y.astype(F32)


def _prep(params: dict, X, Y, lr) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """float32 copies of params (W None for plain), X, Y, and lr as an (M,) float32 vector."""
    p = {k: (None if params.get(k) is None else np.array(params[k], F32)) for k in FIELDS}
    M = p["W1"].shape[0]
    lr_vec = np.broadcast_to(np.asarray(lr, F32), (M,)).copy()
    return p, np.ascontiguousarray(X, F32), np.ascontiguousarray(Y, F32), lr_vec


def _sigmoid_np(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def loss_numpy(params: dict, X, Y) -> np.ndarray:
    """Per-model loss (M,) in float32 NumPy, vectorized over models."""
    p, X, Y, _ = _prep(params, X, Y, 0.0)
    M, h, d = p["W1"].shape
    A1 = np.maximum(p["W1"].reshape(M * h, d) @ X.T + p["b1"].reshape(M * h, 1), 0.0)
    Z2 = np.matmul(p["W2"], A1.reshape(M, h, -1))[:, 0, :] + p["b2"][:, None]  # (M, n)
    if p["W"] is not None:
        Z2 += p["W"].reshape(M, d) @ X.T
    return np.mean(0.5 * (_sigmoid_np(Z2) - Y[None, :]) ** 2, axis=1)


# ----------------------------------------------------------------------------------------------
# 1. numpy: hand-vectorized, hand-written gradients


def train_numpy(params: dict, X, Y, lr, T: int) -> tuple[dict, np.ndarray]:
    """NumPy, all models at once, hidden units x examples layout (M*h, n): layer 1 is one
    (M*h, d) @ (d, n) matmul; reductions run along the contiguous example axis; in-place buffers."""
    p, X, Y, lr_vec = _prep(params, X, Y, lr)
    M, h, d = p["W1"].shape
    n = X.shape[0]
    shortcut = p["W"] is not None
    W1 = p["W1"].reshape(M * h, d)  # views of the fresh copies made by _prep, updated in place
    b1 = p["b1"].reshape(M * h)
    W2 = p["W2"].reshape(M, h)
    b2 = p["b2"]
    W = p["W"].reshape(M, d) if shortcut else None
    XT = np.ascontiguousarray(X.T)
    lr_h = np.repeat(lr_vec, h)  # (M*h,) learning rate of each hidden unit's row
    A1 = np.empty((M * h, n), F32)  # z1, then relu(z1) in place
    G = np.empty((M * h, n), F32)  # dJ/dz1 per example
    mask = np.empty((M * h, n), bool)
    A1_3, G_3 = A1.reshape(M, h, n), G.reshape(M, h, n)
    inv_n = F32(1.0 / n)
    for _ in range(T):
        np.matmul(W1, XT, out=A1)
        A1 += b1[:, None]
        np.maximum(A1, 0.0, out=A1)
        Z2 = np.matmul(W2[:, None, :], A1_3)[:, 0, :]  # (M, n)
        Z2 += b2[:, None]
        if shortcut:
            Z2 += W @ XT
        y_hat = _sigmoid_np(Z2)
        delta = (y_hat - Y[None, :]) * y_hat * (1.0 - y_hat) * inv_n  # (M, n), includes the mean
        dW2 = np.matmul(A1_3, delta[:, :, None])[:, :, 0]
        db2 = delta.sum(axis=1)
        dW = delta @ X if shortcut else None
        np.greater(A1, 0.0, out=mask)  # relu(z1) > 0 iff z1 > 0, so relu'(0) = 0
        np.multiply(W2[:, :, None], delta[:, None, :], out=G_3)
        np.multiply(G, mask, out=G)
        db1 = G.sum(axis=1)
        dW1 = G @ X
        W1 -= lr_h[:, None] * dW1
        b1 -= lr_h * db1
        W2 -= lr_vec[:, None] * dW2
        b2 -= lr_vec * db2
        if shortcut:
            W -= lr_vec[:, None] * dW
    return p, loss_numpy(p, X, Y)


# ----------------------------------------------------------------------------------------------
# torch helpers


def _to_torch(p: dict) -> dict:
    import torch

    return {k: (None if v is None else torch.from_numpy(np.array(v, F32))) for k, v in p.items()}


def _from_torch(p: dict) -> dict:
    return {k: (None if v is None else v.detach().numpy().astype(F32)) for k, v in p.items()}


def _lr_like(lr_t, x):
    """lr (M,) reshaped to broadcast against a stacked tensor x (M, ...)."""
    return lr_t.reshape((-1,) + (1,) * (x.dim() - 1))


# ----------------------------------------------------------------------------------------------
# 2. torch_func: vmap(grad(per-model loss))


def _torch_loss_one(p: dict, X, Y):
    import torch

    a1 = torch.relu(X @ p["W1"].T + p["b1"])
    z2 = a1 @ p["W2"][0] + p["b2"]
    if "W" in p:
        z2 = z2 + X @ p["W"][0]
    return (0.5 * (torch.sigmoid(z2) - Y) ** 2).mean()


def train_torch_func(params: dict, X, Y, lr, T: int) -> tuple[dict, np.ndarray]:
    """torch.func.vmap over stacked params of torch.func.grad of the per-model loss; eager."""
    import torch
    from torch.func import grad, vmap

    p, X, Y, lr_vec = _prep(params, X, Y, lr)
    tp = {k: v for k, v in _to_torch(p).items() if v is not None}
    Xt, Yt, lr_t = torch.from_numpy(X), torch.from_numpy(Y), torch.from_numpy(lr_vec)
    lrs = {k: _lr_like(lr_t, v) for k, v in tp.items()}
    grads_fn = vmap(grad(_torch_loss_one), in_dims=(0, None, None))
    for _ in range(T):
        g = grads_fn(tp, Xt, Yt)
        tp = {k: v - lrs[k] * g[k] for k, v in tp.items()}
    losses = vmap(_torch_loss_one, in_dims=(0, None, None))(tp, Xt, Yt)
    out = _from_torch(tp)
    out.setdefault("W", None)
    return {k: out[k] for k in FIELDS}, losses.numpy().astype(F32)


# ----------------------------------------------------------------------------------------------
# 3. torch_bmm: hand-batched bmm forward; autograd or hand-written backward


def _torch_bmm_forward(W1, b1, W2, b2, W, Xb, Y):
    """Xb = X expanded to (M, n, d). Returns (z1 (M, n, h), a1, y_hat (M, n), losses (M,))."""
    import torch

    z1 = torch.baddbmm(b1.unsqueeze(1), Xb, W1.transpose(1, 2))  # (M, n, h)
    a1 = torch.relu(z1)
    z2 = torch.baddbmm(b2.reshape(-1, 1, 1), a1, W2.transpose(1, 2))  # (M, n, 1)
    if W is not None:
        z2 = torch.baddbmm(z2, Xb, W.transpose(1, 2))
    y_hat = torch.sigmoid(z2.squeeze(2))
    losses = (0.5 * (y_hat - Y.unsqueeze(0)) ** 2).mean(dim=1)
    return z1, a1, y_hat, losses


def train_torch_bmm(
    params: dict, X, Y, lr, T: int, *, backward: str = "autograd"
) -> tuple[dict, np.ndarray]:
    """Stacked (M, ...) tensors, torch.baddbmm forward. backward="autograd": leaf tensors with
    requires_grad and losses.sum().backward(); backward="manual": hand-written gradients.
    Updates under torch.no_grad()."""
    import torch

    if backward not in ("autograd", "manual"):
        raise ValueError(f"backward: expected 'autograd' or 'manual', got {backward!r}")
    p, X, Y, lr_vec = _prep(params, X, Y, lr)
    tp = _to_torch(p)
    names = [k for k in FIELDS if tp[k] is not None]
    M, n = p["W1"].shape[0], X.shape[0]
    Xt, Yt, lr_t = torch.from_numpy(X), torch.from_numpy(Y), torch.from_numpy(lr_vec)
    Xb = Xt.unsqueeze(0).expand(M, -1, -1)
    lrs = {k: _lr_like(lr_t, tp[k]) for k in names}
    if backward == "autograd":
        for k in names:
            tp[k].requires_grad_(True)
        for _ in range(T):
            _, _, _, losses = _torch_bmm_forward(*(tp[k] for k in FIELDS), Xb, Yt)
            losses.sum().backward()
            with torch.no_grad():
                for k in names:
                    tp[k].sub_(lrs[k] * tp[k].grad)
                    tp[k].grad = None
    else:
        with torch.no_grad():
            for _ in range(T):
                z1, a1, y_hat, _ = _torch_bmm_forward(*(tp[k] for k in FIELDS), Xb, Yt)
                delta = (y_hat - Yt) * y_hat * (1.0 - y_hat) * (1.0 / n)  # (M, n)
                dz1 = delta.unsqueeze(2) * tp["W2"] * (z1 > 0)  # (M, n, h)
                g = {
                    "W1": torch.bmm(dz1.transpose(1, 2), Xb),
                    "b1": dz1.sum(dim=1),
                    "W2": torch.bmm(delta.unsqueeze(1), a1),
                    "b2": delta.sum(dim=1),
                }
                if tp["W"] is not None:
                    g["W"] = torch.bmm(delta.unsqueeze(1), Xb)
                for k in names:
                    tp[k].sub_(lrs[k] * g[k])
    with torch.no_grad():
        _, _, _, losses = _torch_bmm_forward(*(tp[k] for k in FIELDS), Xb, Yt)
    return _from_torch(tp), losses.numpy().astype(F32)


# ----------------------------------------------------------------------------------------------
# 4. torch_compile: torch.compile of a hand-written full step


def _torch_step(W1, b1, W2, b2, W, X, Y, lr):
    """One SGD step on stacked tensors with hand-written gradients, in the hidden units x examples
    layout (M*h, n): layer 1 of all models is one (M*h, d) @ (d, n) matmul and the reductions run
    along the contiguous example axis (1.8x faster compiled than an (n, M*h) layout on 2 cores).
    Returns the new (W1, b1, W2, b2, W)."""
    import torch

    M, h, d = W1.shape
    n = X.shape[0]
    a1, z2 = _torch_forward(W1, b1, W2, b2, W, X)
    y_hat = torch.sigmoid(z2)
    delta = (y_hat - Y.reshape(1, n)) * y_hat * (1.0 - y_hat) * (1.0 / n)  # (M, n)
    dz1 = delta.reshape(M, 1, n) * W2.reshape(M, h, 1) * (a1 > 0)  # (M, h, n)
    lr3 = lr.reshape(M, 1, 1)
    W1 = W1 - lr3 * (dz1.reshape(M * h, n) @ X).reshape(M, h, d)
    b1 = b1 - lr.reshape(M, 1) * dz1.sum(dim=2)
    W2 = W2 - lr3 * (delta.reshape(M, 1, n) * a1).sum(dim=2).reshape(M, 1, h)
    b2 = b2 - lr * delta.sum(dim=1)
    if W is not None:
        W = W - lr3 * (delta @ X).reshape(M, 1, d)
    return W1, b1, W2, b2, W


def _torch_forward(W1, b1, W2, b2, W, X):
    """(a1 (M, h, n), z2 (M, n)) in the hidden-units x examples layout."""
    import torch

    M, h, d = W1.shape
    n = X.shape[0]
    XT = X.T
    a1 = torch.relu(W1.reshape(M * h, d) @ XT + b1.reshape(M * h, 1)).reshape(M, h, n)
    z2 = (a1 * W2.reshape(M, h, 1)).sum(dim=1) + b2.reshape(M, 1)
    if W is not None:
        z2 = z2 + W.reshape(M, d) @ XT
    return a1, z2


def _torch_losses(W1, b1, W2, b2, W, X, Y):
    import torch

    z2 = _torch_forward(W1, b1, W2, b2, W, X)[1]
    return (0.5 * (torch.sigmoid(z2) - Y.reshape(1, -1)) ** 2).mean(dim=1)


def make_torch_compile_step(params: dict, X, Y, lr) -> tuple[Callable, float]:
    """torch.compile(_torch_step) and warm it up (compile) on copies of these inputs.

    Returns (compiled step, seconds the warm-up call took, i.e. the compile time). The step is
    specialized to these shapes and to plain/shortcut; reuse it for inputs of the same shapes."""
    import torch

    step = torch.compile(_torch_step, dynamic=False, fullgraph=True)
    p, X, Y, lr_vec = _prep(params, X, Y, lr)
    tp = _to_torch(p)
    args = [tp[k] for k in FIELDS] + [torch.from_numpy(a) for a in (X, Y, lr_vec)]
    t0 = time.perf_counter()
    with torch.no_grad():  # as in train_torch_compile: grad mode is part of dynamo's guards
        out = step(*args)
        step(*out, *args[5:])  # a second call: any recompile from outputs fed back as inputs
    return step, time.perf_counter() - t0


def train_torch_compile(
    params: dict, X, Y, lr, T: int, *, step: Callable | None = None, info: dict | None = None
) -> tuple[dict, np.ndarray]:
    """T calls of the compiled step in a Python loop. Pass `step` from make_torch_compile_step
    to exclude compile time; otherwise one is made here and info["compile_s"] (if info is a
    dict) gets its compile time."""
    import torch

    if step is None:
        step, compile_s = make_torch_compile_step(params, X, Y, lr)
        if info is not None:
            info["compile_s"] = compile_s
    p, X, Y, lr_vec = _prep(params, X, Y, lr)
    tp = _to_torch(p)
    state = tuple(tp[k] for k in FIELDS)
    Xt, Yt, lr_t = torch.from_numpy(X), torch.from_numpy(Y), torch.from_numpy(lr_vec)
    with torch.no_grad():
        for _ in range(T):
            state = step(*state, Xt, Yt, lr_t)
        losses = _torch_losses(*state, Xt, Yt)
    return _from_torch(dict(zip(FIELDS, state))), losses.numpy().astype(F32)


# ----------------------------------------------------------------------------------------------
# 5.-8. JAX peers (plain jax; nothing from shortcut_jax)


def _jax_loss_one(p: dict, X, Y):
    a1 = jax.nn.relu(X @ p["W1"].T + p["b1"][None, :])
    z2 = a1 @ p["W2"][0] + p["b2"]
    if "W" in p:
        z2 = z2 + X @ p["W"][0]
    return jnp.mean(0.5 * (jax.nn.sigmoid(z2) - Y) ** 2)


def _jax_train_one(p: dict, X, Y, lr, T: int):
    """One model: lax.scan over T SGD steps with jax.grad; returns (final params, final loss)."""

    def body(p, _):
        g = jax.grad(_jax_loss_one)(p, X, Y)
        return jax.tree.map(lambda a, b: a - lr * b, p, g), None

    p, _ = jax.lax.scan(body, p, None, length=T)
    return p, _jax_loss_one(p, X, Y)


@partial(jax.jit, static_argnames=("T",))
def _jax_naive(p, X, Y, lr, T):
    return jax.vmap(partial(_jax_train_one, T=T), in_axes=(0, None, None, 0))(p, X, Y, lr)


_jax_one_jit = jax.jit(_jax_train_one, static_argnames=("T",))


def _jax_params(p: dict) -> dict:
    return {k: jnp.asarray(v) for k, v in p.items() if v is not None}


def _np_params(p: dict) -> dict:
    return {k: (np.asarray(p[k], F32) if k in p else None) for k in FIELDS}


def train_jax_naive(params: dict, X, Y, lr, T: int) -> tuple[dict, np.ndarray]:
    """jax.jit(jax.vmap(train_one)) over stacked params; train_one scans T jax.grad SGD steps."""
    p, X, Y, lr_vec = _prep(params, X, Y, lr)
    out, losses = _jax_naive(_jax_params(p), jnp.asarray(X), jnp.asarray(Y), jnp.asarray(lr_vec), T)
    return _np_params(jax.device_get(out)), np.asarray(losses, F32)


def sharded_devices(M: int) -> int:
    """Devices train_jax_naive_sharded spreads M models over: every device, at most M."""
    return min(jax.device_count(), M)


def train_jax_naive_sharded(params: dict, X, Y, lr, T: int) -> tuple[dict, np.ndarray]:
    """train_jax_naive's program with the models sharded over the devices (a 1-D "models" mesh,
    jax.make_mesh; X and Y replicated): jit partitions the vmapped models over the devices.
    M is padded with copies of the last model to a multiple of the devices (sharded_devices)."""
    p, X, Y, lr_vec = _prep(params, X, Y, lr)
    M = p["W1"].shape[0]
    n_dev = sharded_devices(M)
    mesh = jax.make_mesh((n_dev,), ("models",), devices=jax.devices()[:n_dev])
    models, replicated = NamedSharding(mesh, P("models")), NamedSharding(mesh, P())
    R = -(-M // n_dev) * n_dev

    def pad(a):
        return np.concatenate([a, np.repeat(a[-1:], R - M, 0)]) if R > M else a

    pj = jax.device_put({k: pad(v) for k, v in p.items() if v is not None}, models)
    out, losses = _jax_naive(pj, jax.device_put(X, replicated), jax.device_put(Y, replicated),
                             jax.device_put(pad(lr_vec), models), T)
    out, losses = jax.device_get((out, losses))
    return _np_params({k: v[:M] for k, v in out.items()}), np.asarray(losses[:M], F32)


def train_jax_python_loop(params: dict, X, Y, lr, T: int) -> tuple[dict, np.ndarray]:
    """A Python loop over models; each model's whole training is one call of a jitted scan
    (compiled once, reused for all M models)."""
    p, X, Y, lr_vec = _prep(params, X, Y, lr)
    M = p["W1"].shape[0]
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    names = [k for k in FIELDS if p[k] is not None]
    results = [_jax_one_jit({k: p[k][m] for k in names}, Xj, Yj, lr_vec[m], T) for m in range(M)]
    results = jax.device_get(results)
    out = {k: np.stack([r[0][k] for r in results]).astype(F32) for k in names}
    losses = np.array([r[1] for r in results], F32)
    return _np_params(out), losses


def train_jax_step_loop(params: dict, X, Y, lr, T: int) -> tuple[dict, np.ndarray]:
    """A Python loop of T calls of one jitted SGD step (jax.grad, vmapped over the models)."""
    p, X, Y, lr_vec = _prep(params, X, Y, lr)
    pj = _jax_params(p)
    Xj, Yj, lr_j = jnp.asarray(X), jnp.asarray(Y), jnp.asarray(lr_vec)
    for _ in range(T):
        pj = _jax_step(pj, Xj, Yj, lr_j)
    out, losses = jax.device_get((pj, _jax_losses(pj, Xj, Yj)))
    return _np_params(out), np.asarray(losses, F32)


@jax.jit
def _jax_step(p, X, Y, lr):
    def one(p, lr):
        g = jax.grad(_jax_loss_one)(p, X, Y)
        return jax.tree.map(lambda a, b: a - lr * b, p, g)

    return jax.vmap(one)(p, lr)


@jax.jit
def _jax_losses(p, X, Y):
    return jax.vmap(_jax_loss_one, (0, None, None))(p, X, Y)


IMPLEMENTATIONS: dict[str, Callable] = {
    "numpy": train_numpy,
    "torch_func": train_torch_func,
    "torch_bmm": train_torch_bmm,
    "torch_bmm_manual": partial(train_torch_bmm, backward="manual"),
    "torch_compile": train_torch_compile,
    "jax_naive": train_jax_naive,
    "jax_naive_sharded": train_jax_naive_sharded,
    "jax_python_loop": train_jax_python_loop,
    "jax_step_loop": train_jax_step_loop,
}
TORCH_IMPLEMENTATIONS = ("torch_func", "torch_bmm", "torch_bmm_manual", "torch_compile")
JAX_IMPLEMENTATIONS = ("jax_naive", "jax_naive_sharded", "jax_python_loop", "jax_step_loop")

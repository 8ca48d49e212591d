"""The network family: L >= 1 hidden layers of width h, a hidden activation phi, and skips.

    a0 = x
    z_k = W_k a_{k-1} + b_k                    k = 1..L     W_1 (h, d), W_k (h, h) for k >= 2
    a_k = phi(z_k)    [+ a_{k-1} for k >= 2 in the residual variants]
    z_o = W_o a_L + b_o [+ W x]                W_o (1, h), b_o (), W (1, d): the shortcut
    y_hat = sigmoid(z_o)

Variants: "plain", "shortcut" (the problem's input -> output W x), "residual" (identity skips
between consecutive hidden layers, Orhan & Pitkow's residual network; at L = 1 there is none,
so it is the plain network) and "residual+shortcut" (both). At L = 1 with phi = ReLU this is the
problem's network: `to_net`/`from_net` convert between `model.Params` and `NetParams`, and the
functions here give the same numbers as model.py's, which stays the front door.

Each activation's derivative is written by hand beside it (ACTIVATIONS). At a kink the
derivative is the left one, as jax.grad gives it: ReLU'(0) = 0 and leaky ReLU'(0) = LEAKY_SLOPE.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from shortcut_jax.model import (
    Params,
    _check_size,
    _times_x,
    check_X,
    check_XT,
    check_Y,
    params_from_normals,
)

LEAKY_SLOPE = 0.01
"""The slope of leaky_relu for z <= 0: phi(z) = z for z > 0, 0.01 z otherwise."""


def relu(z):
    return jax.nn.relu(z)                                   # max(0, z)


def relu_prime(z):
    return (z > 0).astype(z.dtype)                          # 1{z > 0}


def leaky_relu(z):
    return jnp.where(z > 0, z, LEAKY_SLOPE * z)             # z if z > 0 else 0.01 z


def leaky_relu_prime(z):
    return jnp.where(z > 0, jnp.ones_like(z), jnp.full_like(z, LEAKY_SLOPE))


def tanh(z):
    return jnp.tanh(z)


def tanh_prime(z):
    t = jnp.tanh(z)
    return 1 - t * t                                        # 1 - tanh(z)^2


def softplus(z):
    return jax.nn.softplus(z)                               # log(1 + e^z)


def softplus_prime(z):
    return jax.nn.sigmoid(z)                                # 1 / (1 + e^-z)


_SQRT_HALF = 1 / math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def erf(z):
    return jax.scipy.special.erf(z * _SQRT_HALF)           # erf(z / sqrt 2)


def erf_prime(z):
    return _SQRT_2_OVER_PI * jnp.exp(-0.5 * z * z)          # sqrt(2/pi) e^{-z^2/2}


ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "relu": (relu, relu_prime),
    "leaky_relu": (leaky_relu, leaky_relu_prime),
    "tanh": (tanh, tanh_prime),
    "softplus": (softplus, softplus_prime),
    "erf": (erf, erf_prime),
}
"""name -> (phi, phi'), phi' written by hand."""

KINKED = ("relu", "leaky_relu")
"""Activations with a kink at z = 0 (finite differences must stay away from it)."""

VARIANTS = ("plain", "shortcut", "residual", "residual+shortcut")


def check_activation(activation: str) -> tuple[Callable, Callable]:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {list(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation]


def variant_parts(variant: str) -> tuple[bool, bool]:
    """variant -> (residual, shortcut)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    return variant.startswith("residual"), variant.endswith("shortcut")


class NetParams(NamedTuple):
    """Ws: (W_1 (h, d), W_2 (h, h), ..., W_L (h, h)); bs: (b_1, ..., b_L), each (h,);
    Wo (1, h), bo () scalar: the output layer; W (1, d) or None: the input -> output shortcut."""

    Ws: tuple[jax.Array, ...]
    bs: tuple[jax.Array, ...]
    Wo: jax.Array
    bo: jax.Array
    W: jax.Array | None = None


class NetForward(NamedTuple):
    """A batch in columns: zs, as: (z_k^T, a_k^T), each (h, n), k = 1..L; z_o, y_hat (n,)."""

    zs: tuple[jax.Array, ...]
    as_: tuple[jax.Array, ...]
    z_o: jax.Array
    y_hat: jax.Array


def to_net(params: Params) -> NetParams:
    """The problem's Params as the depth-1 NetParams (the same arrays)."""
    return NetParams(Ws=(params.W1,), bs=(params.b1,), Wo=params.W2, bo=params.b2, W=params.W)


def from_net(params: NetParams) -> Params:
    """A depth-1 NetParams as the problem's Params."""
    if len(params.Ws) != 1:
        raise ValueError(f"params: expected depth 1 for the problem's Params, got depth "
                         f"{len(params.Ws)}")
    return Params(W1=params.Ws[0], b1=params.bs[0], W2=params.Wo, b2=params.bo, W=params.W)


def num_net_params(d: int, h: int, depth: int, variant: str = "shortcut") -> int:
    """(d+1)h + (L-1)(h+1)h + (h+1) [+ d with the shortcut]; the residual skips add none.
    At L = 1 the problem's part (a), (d+1)h + (h+1) + d."""
    _check_size("d", d)
    _check_size("h", h)
    _check_size("depth", depth)
    _, shortcut = variant_parts(variant)
    return (d + 1) * h + (depth - 1) * (h + 1) * h + (h + 1) + (d if shortcut else 0)


def num_net_normals(d: int, h: int, depth: int) -> int:
    """Standard normals net_params_from_normals reads: the problem's hd + h + d, then h^2 for
    each of W_2..W_L."""
    _check_size("d", d)
    _check_size("h", h)
    _check_size("depth", depth)
    return h * d + h + d + (depth - 1) * h * h


def net_params_from_normals(z: jax.Array, d: int, h: int, depth: int, *,
                            shortcut: bool = True, w_scale: ArrayLike = 0.0) -> NetParams:
    """W_1, Wo, W as model.params_from_normals (the first hd + h + d normals, so depth 1 is the
    problem's init exactly), then W_k ~ N(0, 2/h) (He-normal) for k = 2..L; biases 0."""
    n = num_net_normals(d, h, depth)
    z = jnp.asarray(z)
    if z.ndim != 1 or z.shape[0] < n or not jnp.issubdtype(z.dtype, jnp.floating):
        raise ValueError(f"z: expected a floating 1-D array of at least {n} normals for d={d}, "
                         f"h={h}, depth={depth}, got {z.dtype}{list(z.shape)}")
    first = params_from_normals(z, d, h, shortcut=shortcut, w_scale=w_scale)
    start, scale = h * d + h + d, jnp.sqrt(2.0 / h).astype(z.dtype)
    Ws = [first.W1]
    for k in range(depth - 1):
        Ws.append(z[start + k * h * h:start + (k + 1) * h * h].reshape(h, h) * scale)
    bs = tuple(jnp.zeros((h,), z.dtype) for _ in range(depth))
    return NetParams(Ws=tuple(Ws), bs=bs, Wo=first.W2, bo=first.b2, W=first.W)


def net_init(key: jax.Array, d: int, h: int, depth: int, *, variant: str = "shortcut",
             dtype=jnp.float32, w_scale: ArrayLike = 0.0) -> NetParams:
    """Initial parameters (see net_params_from_normals); every variant of a key starts from
    the same hidden-layer and output weights."""
    _, shortcut = variant_parts(variant)
    z = jax.random.normal(key, (num_net_normals(d, h, depth),), dtype)
    return net_params_from_normals(z, d, h, depth, shortcut=shortcut, w_scale=w_scale)


def named_leaves(params: NetParams) -> dict[str, jax.Array | None]:
    """{"W1".."WL", "b1".."bL", "Wo", "bo", "W"}: W_k, b_k of hidden layer k, the output layer,
    the shortcut (None in the plain network)."""
    out = {f"W{k + 1}": W for k, W in enumerate(params.Ws)}
    out |= {f"b{k + 1}": b for k, b in enumerate(params.bs)}
    return {**out, "Wo": params.Wo, "bo": params.bo, "W": params.W}


def count_net_params(params: NetParams) -> int:
    """Number of scalars in the pytree's leaves."""
    return sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(params))


def check_net_params(params: NetParams) -> NetParams:
    """Floating leaves with consistent shapes; depth = len(Ws) >= 1."""
    if not isinstance(params, NetParams):
        raise TypeError(f"params: expected a shortcut_jax.network.NetParams, got "
                        f"{type(params).__name__}")
    Ws, bs = tuple(map(jnp.asarray, params.Ws)), tuple(map(jnp.asarray, params.bs))
    if len(Ws) < 1 or len(bs) != len(Ws):
        raise ValueError(f"params: expected as many biases as weight matrices (>= 1), got "
                         f"{len(Ws)} Ws and {len(bs)} bs")
    leaves = {f"Ws[{k}]": a for k, a in enumerate(Ws)} | {f"bs[{k}]": a for k, a in enumerate(bs)}
    leaves |= {"Wo": jnp.asarray(params.Wo), "bo": jnp.asarray(params.bo)}
    W = None if params.W is None else jnp.asarray(params.W)
    if W is not None:
        leaves["W"] = W
    for name, a in leaves.items():
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(f"params.{name}: expected a floating dtype, got {a.dtype}")
    if Ws[0].ndim != 2:
        raise ValueError(f"params.Ws[0]: expected shape (h, d), got {Ws[0].shape}")
    h, d = Ws[0].shape
    expected = {f"Ws[{k}]": (h, h) for k in range(1, len(Ws))}
    expected |= {f"bs[{k}]": (h,) for k in range(len(bs))} | {"Wo": (1, h), "bo": (), "W": (1, d)}
    for name, shape in expected.items():
        if name in leaves and leaves[name].shape != shape:
            raise ValueError(f"params.{name}: expected shape {shape} to match Ws[0] of shape "
                             f"{Ws[0].shape}, got {leaves[name].shape}")
    return NetParams(Ws=Ws, bs=bs, Wo=leaves["Wo"], bo=leaves["bo"], W=W)


def net_forward_columns(params: NetParams, X: ArrayLike, *, activation: str = "relu",
                        residual: bool = False, XT: jax.Array | None = None) -> NetForward:
    """X (n, d) -> NetForward, column i is example i (as model.forward_columns, whose
    operations it repeats at depth 1, so that it gives the same numbers there)."""
    phi, _ = check_activation(activation)
    Ws, bs, Wo, bo, W = check_net_params(params)
    X = check_X(X, Ws[0].shape[1])
    XT = X.T if XT is None else check_XT(XT, X)             # (d, n)
    zs, as_ = [], []
    A = None
    for k, (Wk, bk) in enumerate(zip(Ws, bs)):
        Z = (_times_x(Wk, XT) if k == 0 else Wk @ A) + bk[:, None]   # z_k = W_k a_{k-1} + b_k
        A = phi(Z) + A if residual and k > 0 else phi(Z)            # a_k [+ a_{k-1}]
        zs.append(Z)
        as_.append(A)
    Zo = Wo[0] @ A + bo                                     # z_o = W_o a_L + b_o
    if W is not None:
        Zo = Zo + _times_x(W, XT)[0]                        # + W x
    return NetForward(tuple(zs), tuple(as_), Zo, jax.nn.sigmoid(Zo))


def net_predict(params: NetParams, X: ArrayLike, *, activation: str = "relu",
                residual: bool = False) -> jax.Array:
    """X (n, d) -> y_hat (n,)."""
    return net_forward_columns(params, X, activation=activation, residual=residual).y_hat


def net_forward(params: NetParams, x: ArrayLike, *, activation: str = "relu",
                residual: bool = False) -> jax.Array:
    """One example x (d,) -> y_hat, a scalar."""
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"x: expected shape (d,), got {x.shape} (for a batch use net_predict)")
    return net_predict(params, x[None, :], activation=activation, residual=residual)[0]


LOSS_FNS = ("mse", "bce")


def loss_from_net_forward(fwd: NetForward, Y: ArrayLike, loss_fn: str = "mse") -> jax.Array:
    """J from a forward pass: mse 1/n sum 1/2 (y_hat - y)^2, or bce in the log-sigmoid form of
    model.bce_loss (the same expressions as model.py's)."""
    if loss_fn == "mse":
        Y = check_Y(Y, fwd.y_hat.shape[0], fwd.y_hat.dtype)
        return jnp.mean(0.5 * (fwd.y_hat - Y) ** 2)
    if loss_fn == "bce":
        Zo = fwd.z_o
        Y = check_Y(Y, Zo.shape[0], Zo.dtype)
        return jnp.mean(Y * jax.nn.softplus(-Zo) + (1 - Y) * jax.nn.softplus(Zo))
    raise ValueError(f"loss_fn: expected one of {LOSS_FNS}, got {loss_fn!r}")


def net_loss(params: NetParams, X: ArrayLike, Y: ArrayLike, *, activation: str = "relu",
             residual: bool = False, loss_fn: str = "mse") -> jax.Array:
    """J over X (n, d), Y (n,): loss_fn "mse" (the problem's) or "bce" (cross-entropy)."""
    if loss_fn not in LOSS_FNS:
        raise ValueError(f"loss_fn: expected one of {LOSS_FNS}, got {loss_fn!r}")
    fwd = net_forward_columns(params, X, activation=activation, residual=residual)
    return loss_from_net_forward(fwd, Y, loss_fn)

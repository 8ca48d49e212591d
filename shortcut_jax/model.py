"""The plain and the shortcut two-layer network of the problem, as pure functions over `Params`.

    z1 = W1 x + b1            a1 = ReLU(z1)
    z2 = W2 a1 + b2 [+ W x]   y_hat = a2 = sigmoid(z2)
    L(y_hat, y) = 1/2 (y_hat - y)^2        J = 1/n sum_i L(y_hat_i, y_i)

The bracketed term is the shortcut; `Params.W is None` is the plain network.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


class Forward(NamedTuple):
    """The forward pass: z1, a1 (h,), z2, y_hat () for one example; for a batch in columns
    (forward_columns) z1, a1 are (h, n) and z2, y_hat (n,); in rows (forward_batch) (n, h)."""

    z1: jax.Array
    a1: jax.Array
    z2: jax.Array
    y_hat: jax.Array


class Params(NamedTuple):
    """W1 (h, d), b1 (h,), W2 (1, h), b2 () scalar, W (1, d) or None for the plain network."""

    W1: jax.Array
    b1: jax.Array
    W2: jax.Array
    b2: jax.Array
    W: jax.Array | None = None


def init_params(
    key: jax.Array,
    d: int,
    h: int,
    *,
    shortcut: bool = True,
    dtype=jnp.float32,
    shortcut_init: str = "zeros",
    shortcut_scale: float = 1.0,
) -> Params:
    """He-normal W1 ~ N(0, 2/d), LeCun-normal W2 ~ N(0, 1/h), b1 = b2 = 0.

    W is zeros by default (`shortcut_init="zeros"`), so plain and shortcut start as the same
    function; `shortcut_init="lecun"` gives W ~ N(0, shortcut_scale^2 / d). W1, b1, W2, b2 are
    the same for `shortcut=False` and `shortcut=True` given the same key. All draws come from
    one call of `jax.random.normal` (num_normals(d, h) numbers).
    """
    n = num_normals(d, h)  # checks d and h
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype: expected a floating dtype, got {jnp.dtype(dtype)}")
    z = jax.random.normal(key, (n,), dtype)
    return params_from_normals(z, d, h, shortcut=shortcut,
                               w_scale=shortcut_w_scale(shortcut_init, shortcut_scale))


SHORTCUT_INITS = ("zeros", "lecun")


def shortcut_w_scale(shortcut_init: str, shortcut_scale: float = 1.0) -> float:
    """The factor s of W = s * N(0, 1/d): 0 for "zeros", shortcut_scale for "lecun"."""
    if shortcut_init not in SHORTCUT_INITS:
        raise ValueError(f"shortcut_init: expected one of {SHORTCUT_INITS}, got "
                         f"{shortcut_init!r}")
    if (isinstance(shortcut_scale, bool) or not isinstance(shortcut_scale, (int, float))
            or not np.isfinite(shortcut_scale) or shortcut_scale < 0):
        raise ValueError(f"shortcut_scale: expected a finite number >= 0, got "
                         f"{shortcut_scale!r}")
    return 0.0 if shortcut_init == "zeros" else float(shortcut_scale)


def num_normals(d: int, h: int) -> int:
    """Standard normals init_params draws: hd for W1, h for W2, d for W."""
    _check_size("d", d)
    _check_size("h", h)
    return h * d + h + d


def params_from_normals(z: jax.Array, d: int, h: int, *, shortcut: bool = True,
                        w_scale: ArrayLike = 0.0) -> Params:
    """init_params from its draws z (num_normals(d, h) or more; the rest are not read);
    W = w_scale * N(0, 1/d) (exactly 0 where w_scale is 0; w_scale may be traced).

    With partitionable threefry (JAX's default, jax_threefry_partitionable), the numbers of
    jax.random.normal(key, (m,)) are the first m of a longer draw with the same key, so one
    draw at the widest width serves every width (the sweep relies on it only with that flag).
    """
    n = num_normals(d, h)  # checks d and h
    if not hasattr(z, "shape"):
        raise TypeError(f"z: expected an array of standard normals, got {type(z).__name__}")
    z = jnp.asarray(z)
    if z.ndim != 1 or z.shape[0] < n or not jnp.issubdtype(z.dtype, jnp.floating):
        raise ValueError(f"z: expected a floating 1-D array of at least {n} normals for d={d}, "
                         f"h={h}, got {z.dtype}{list(z.shape)}")
    dtype = z.dtype
    W1 = z[:h * d].reshape(h, d) * jnp.sqrt(2.0 / d).astype(dtype)
    W2 = z[h * d:h * d + h].reshape(1, h) * jnp.sqrt(1.0 / h).astype(dtype)
    b1 = jnp.zeros((h,), dtype)
    b2 = jnp.zeros((), dtype)
    W = None
    if shortcut:
        s = jnp.asarray(w_scale, dtype)
        W = z[h * d + h:h * d + h + d].reshape(1, d) * (s * jnp.sqrt(1.0 / d).astype(dtype))
        W = jnp.where(s == 0, jnp.zeros((), dtype), W)  # +0.0, not -0.0 * z
    return Params(W1=W1, b1=b1, W2=W2, b2=b2, W=W)


def num_params(d: int, h: int, *, shortcut: bool = True) -> int:
    """The problem's part (a): (d+1)h + (h+1) + d with the shortcut, (d+1)h + (h+1) without."""
    _check_size("d", d)
    _check_size("h", h)
    return (d + 1) * h + (h + 1) + (d if shortcut else 0)


def count_params(params: Params) -> int:
    """Number of scalars in the pytree's leaves (W=None contributes none)."""
    return sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(params))


def forward(params: Params, x: ArrayLike) -> jax.Array:
    """One example x (d,) -> y_hat, a scalar in (0, 1)."""
    return forward_example(params, x).y_hat


def forward_example(params: Params, x: ArrayLike) -> Forward:
    """x (d,) -> Forward(z1 (h,), a1 (h,), z2 (), y_hat ()), the problem's forward equations."""
    W1, b1, W2, b2, W = check_params(params)
    x = check_x(x, W1.shape[1])
    z1 = W1 @ x + b1
    a1 = jax.nn.relu(z1)
    z2 = W2[0] @ a1 + b2
    if W is not None:
        z2 = z2 + W[0] @ x
    return Forward(z1, a1, z2, jax.nn.sigmoid(z2))


def predict(params: Params, X: ArrayLike) -> jax.Array:
    """Inputs X (n, d) -> y_hat (n,); `forward` in matrix form, one row per example."""
    return forward_columns(params, X).y_hat


def forward_batch(params: Params, X: ArrayLike) -> Forward:
    """X (n, d) -> Forward(Z1 (n, h), A1 (n, h), Z2 (n,), Y_hat (n,)); row i is example i."""
    Z1T, A1T, Z2, Y_hat = forward_columns(params, X)
    return Forward(Z1T.T, A1T.T, Z2, Y_hat)


def forward_columns(params: Params, X: ArrayLike, *, XT: jax.Array | None = None) -> Forward:
    """X (n, d) -> Forward(Z1^T (h, n), A1^T (h, n), Z2 (n,), Y_hat (n,)); column i is example i.

    The batch in columns, z1 = W1 x + b1 for all x at once: examples along the contiguous axis
    (faster on CPU than rows, experiments/BENCHMARKS.md). XT: X.T made once outside a training
    loop (XLA would copy it again every step).
    """
    W1, b1, W2, b2, W = check_params(params)
    X = check_X(X, W1.shape[1])
    XT = X.T if XT is None else check_XT(XT, X)       # (d, n)
    Z1T = _times_x(W1, XT) + b1[:, None]
    A1T = jax.nn.relu(Z1T)
    Z2 = W2[0] @ A1T + b2
    if W is not None:
        Z2 = Z2 + _times_x(W, XT)[0]
    return Forward(Z1T, A1T, Z2, jax.nn.sigmoid(Z2))


SMALL_D = 4
"""Up to this input dimension, W1 x is written out as the sum over its d terms."""


def _times_x(M: jax.Array, XT: jax.Array) -> jax.Array:
    """M (k, d) @ X^T (d, n). For d <= SMALL_D as the sum of d outer products, which XLA fuses
    with what follows (a dot with K = d is slower on CPU: experiments/BENCHMARKS.md)."""
    if M.shape[1] > SMALL_D:
        return M @ XT
    out = M[:, :1] * XT[:1]  # (k, 1) * (1, n): column j of M times row j of X^T
    for j in range(1, M.shape[1]):
        out = out + M[:, j:j + 1] * XT[j:j + 1]
    return out


def example_loss(params: Params, x: ArrayLike, y: ArrayLike) -> jax.Array:
    """L = 1/2 (y_hat - y)^2 for one example x (d,), y scalar."""
    y_hat = forward(params, x)
    y = check_y(y, y_hat.dtype)
    return 0.5 * (y_hat - y) ** 2


def loss(params: Params, X: ArrayLike, Y: ArrayLike) -> jax.Array:
    """J = 1/n sum_i 1/2 (y_hat_i - y_i)^2 for X (n, d), Y (n,) -> scalar."""
    return loss_from_forward(forward_columns(params, X), Y)


def loss_from_forward(fwd: Forward, Y: ArrayLike) -> jax.Array:
    """J from fwd = forward_columns(params, X) and Y (n,), for a forward pass read twice."""
    Y_hat = fwd.y_hat
    Y = check_Y(Y, Y_hat.shape[0], Y_hat.dtype)
    return jnp.mean(0.5 * (Y_hat - Y) ** 2)


def example_bce_loss(params: Params, x: ArrayLike, y: ArrayLike) -> jax.Array:
    """Binary cross-entropy -[y log y_hat + (1-y) log(1-y_hat)] in the log-sigmoid form
    y softplus(-z2) + (1-y) softplus(z2): two non-negative terms, finite and without
    cancellation at any z2 (softplus(z2) - y z2 would lose the loss of a confident right
    answer)."""
    z2 = forward_example(params, x).z2
    y = check_y(y, z2.dtype)
    return y * jax.nn.softplus(-z2) + (1 - y) * jax.nn.softplus(z2)


def bce_loss(params: Params, X: ArrayLike, Y: ArrayLike) -> jax.Array:
    """Mean binary cross-entropy over X (n, d), Y (n,), from the logits z2 (no log of 0)."""
    return bce_loss_from_forward(forward_columns(params, X), Y)


def bce_loss_from_forward(fwd: Forward, Y: ArrayLike) -> jax.Array:
    """bce_loss from fwd = forward_columns(params, X) and Y (n,)."""
    Z2 = fwd.z2
    Y = check_Y(Y, Z2.shape[0], Z2.dtype)
    return jnp.mean(Y * jax.nn.softplus(-Z2) + (1 - Y) * jax.nn.softplus(Z2))


# --- validation: runs at trace time on static shapes and dtypes, names the argument ----------


def _check_size(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")


def check_params(params: Params) -> Params:
    """Check that the leaves are floating arrays with mutually consistent shapes."""
    if not isinstance(params, Params):
        raise TypeError(f"params: expected a shortcut_jax.Params, got {type(params).__name__}")
    arrays = {}
    for name, leaf in params._asdict().items():
        if leaf is None:
            if name != "W":
                raise ValueError(f"params.{name}: expected an array, got None")
            arrays[name] = None
            continue
        leaf = jnp.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(f"params.{name}: expected a floating dtype, got {leaf.dtype}")
        arrays[name] = leaf
    W1, b1, W2, b2, W = (arrays[k] for k in Params._fields)
    if W1.ndim != 2:
        raise ValueError(f"params.W1: expected shape (h, d), got {W1.shape}")
    h, d = W1.shape
    expected = {"b1": (h,), "W2": (1, h), "b2": (), "W": (1, d)}
    for name, shape in expected.items():
        leaf = arrays[name]
        if leaf is not None and leaf.shape != shape:
            raise ValueError(
                f"params.{name}: expected shape {shape} to match W1 of shape {W1.shape}, "
                f"got {leaf.shape}"
            )
    return Params(W1=W1, b1=b1, W2=W2, b2=b2, W=W)


def check_finite(name: str, a) -> None:
    """Concrete values (NumPy, before anything compiles): no NaN or inf."""
    a = np.asarray(a)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: expected finite values, found "
                         f"{int(np.sum(~np.isfinite(a)))} NaN/inf entries")


def check_labels(name: str, a) -> None:
    """Concrete labels (NumPy): exactly 0 or 1."""
    a = np.asarray(a)
    if not np.all((a == 0) | (a == 1)):
        bad = np.unique(a[(a != 0) & (a != 1)])[:5]
        raise ValueError(f"{name}: expected labels 0 or 1, got values such as {bad.tolist()}")


def _floating(name: str, a: ArrayLike) -> jax.Array:
    a = jnp.asarray(a)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise TypeError(f"{name}: expected a floating dtype, got {a.dtype}")
    return a


def check_x(x: ArrayLike, d: int) -> jax.Array:
    x = _floating("x", x)
    if x.shape != (d,):
        hint = " (for a batch use predict/loss)" if x.ndim == 2 else ""
        raise ValueError(f"x: expected shape (d,) = ({d},), got {x.shape}{hint}")
    return x


def check_XT(XT: ArrayLike, X: jax.Array) -> jax.Array:
    """XT must be X.T: shape (d, n) and X's dtype."""
    XT = jnp.asarray(XT)
    if XT.shape != X.shape[::-1] or XT.dtype != X.dtype:
        raise ValueError(f"XT: expected X.T, a {X.dtype}{list(X.shape[::-1])} array, got "
                         f"{XT.dtype}{list(XT.shape)}")
    return XT


def check_X(X: ArrayLike, d: int) -> jax.Array:
    """X must be a floating (n, d) array with n >= 1."""
    X = _floating("X", X)
    if X.ndim != 2:
        raise ValueError(f"X: expected a 2-D array of shape (n, {d}), got shape {X.shape}")
    if X.shape[1] != d:
        raise ValueError(f"X: expected {d} features (shape (n, {d})), got shape {X.shape}")
    if X.shape[0] < 1:
        raise ValueError(f"X: expected at least one example, got shape {X.shape}")
    return X


def _labels(name: str, y: ArrayLike, dtype) -> jax.Array:
    y = jnp.asarray(y)
    if not (jnp.issubdtype(y.dtype, jnp.floating) or jnp.issubdtype(y.dtype, jnp.integer)
            or y.dtype == jnp.bool_):
        raise TypeError(f"{name}: expected a numeric dtype for 0/1 labels, got {y.dtype}")
    return y.astype(dtype)


def check_y(y: ArrayLike, dtype) -> jax.Array:
    y = _labels("y", y, dtype)
    if y.shape != ():
        raise ValueError(f"y: expected a scalar label, got shape {y.shape}")
    return y


def check_Y(Y: ArrayLike, n: int, dtype) -> jax.Array:
    """Y must be a 1-D (n,) array of labels; integer or bool labels are cast to `dtype`."""
    Y = _labels("Y", Y, dtype)
    if Y.shape != (n,):
        hint = " (flatten it: Y.reshape(-1))" if Y.ndim == 2 and Y.shape == (n, 1) else ""
        raise ValueError(f"Y: expected shape (n,) = ({n},) to match X, got {Y.shape}{hint}")
    return Y

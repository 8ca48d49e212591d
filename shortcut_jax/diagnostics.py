"""What a run looks like inside: dead units, saturation, gradient norms, the shortcut's share.

`at_eval` is computed inside the compiled training loop at every eval step; the exact Hessian
once at the end (the models are tiny): `hessian_spectrum` by `jax.hessian`, `hessian_by_hand`
written out in NumPy (what the report uses; nothing to compile).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from shortcut_jax.model import Forward, Params, check_finite, check_labels, forward_columns
from shortcut_jax.network import NetForward, NetParams, named_leaves, net_loss

SATURATED = 1e-3  # an example is saturated when y_hat (1 - y_hat) < SATURATED


# Each diagnostic reads the training forward pass in columns (model.forward_columns), the
# same ops as the gradient's, so that XLA computes that pass once per eval point; `at_eval`
# traces it once and hands it to each (the `_from` functions).


def dead_fraction(params: Params, X: jax.Array) -> jax.Array:
    """Fraction of hidden units with z1 <= 0 on every row of X (n, d)."""
    return _dead_from(forward_columns(params, X))


def saturated_fraction(params: Params, X: jax.Array) -> jax.Array:
    """Fraction of rows of X whose sigmoid is saturated, y_hat (1 - y_hat) < SATURATED."""
    return _saturated_from(forward_columns(params, X))


def shortcut_share(params: Params, X: jax.Array) -> jax.Array:
    """Mean over rows of |W x| / (|W x| + |W2 a1|): 0 for the plain net and for W = 0."""
    return _share_from(params, X, forward_columns(params, X))


def _dead_from(fwd: Forward) -> jax.Array:
    Z1T = fwd.z1
    return jnp.mean(jnp.all(Z1T <= 0, axis=1).astype(Z1T.dtype))


def _saturated_from(fwd: Forward) -> jax.Array:
    Y_hat = fwd.y_hat
    return jnp.mean((Y_hat * (1 - Y_hat) < SATURATED).astype(Y_hat.dtype))


def _share_from(params: Params, X: jax.Array, fwd: Forward) -> jax.Array:
    if params.W is None:
        return jnp.zeros((), X.dtype)
    A1T = fwd.a1
    skip, hidden = jnp.abs(params.W[0] @ X.T), jnp.abs(params.W2[0] @ A1T)
    total = skip + hidden
    return jnp.mean(jnp.where(total > 0, skip / jnp.where(total > 0, total, 1), 0))


def max_overlap(params: Params) -> jax.Array:
    """Largest cosine similarity between two hidden units' incoming weights (0 when h = 1)."""
    W1 = params.W1
    norms = jnp.linalg.norm(W1, axis=1)
    unit = W1 / jnp.where(norms > 0, norms, 1)[:, None]
    cos = unit @ unit.T
    h = W1.shape[0]
    off_diagonal = jnp.where(jnp.eye(h, dtype=bool), -jnp.inf, cos)
    return jnp.max(off_diagonal) if h > 1 else jnp.zeros((), W1.dtype)


def grad_norms(g: Params) -> dict[str, jax.Array]:
    """Euclidean norm of the gradient of each parameter group, keyed grad_norm_<name>."""
    return {f"grad_norm_{k}": jnp.sqrt(jnp.sum(v * v))
            for k, v in g._asdict().items() if v is not None}


def at_eval(params: Params, g: Params, X: jax.Array,
            fwd: Forward | None = None) -> dict[str, jax.Array]:
    """All per-eval diagnostics of one run: X the training inputs, g the gradient there, fwd
    forward_columns(params, X) if already computed."""
    fwd = forward_columns(params, X) if fwd is None else fwd
    return {
        "dead_frac": _dead_from(fwd),
        "saturated_frac": _saturated_from(fwd),
        "shortcut_share": _share_from(params, X, fwd),
        "max_overlap": max_overlap(params),
        **grad_norms(g),
    }


def net_at_eval(params: NetParams, g: NetParams, X: jax.Array,
                fwd: NetForward) -> dict[str, jax.Array]:
    """at_eval for the network family, fwd = network.net_forward_columns(params, X):
    dead_frac (hidden units of every layer with z_k <= 0 on every row) and dead_frac_k per
    layer, saturated_frac, shortcut_share (|W x| / (|W x| + |W_o a_L|)), max_overlap (the
    largest over layers of max_overlap_k, between units' incoming weights in layer k) and
    grad_norm_<leaf> (network.named_leaves). At depth 1 the first four are at_eval's."""
    out: dict[str, jax.Array] = {}
    dead = [jnp.all(Z <= 0, axis=1).astype(Z.dtype) for Z in fwd.zs]
    out["dead_frac"] = jnp.mean(jnp.concatenate(dead))
    Y_hat = fwd.y_hat
    out["saturated_frac"] = jnp.mean((Y_hat * (1 - Y_hat) < SATURATED).astype(Y_hat.dtype))
    if params.W is None:
        out["shortcut_share"] = jnp.zeros((), X.dtype)
    else:
        skip, hidden = jnp.abs(params.W[0] @ X.T), jnp.abs(params.Wo[0] @ fwd.as_[-1])
        total = skip + hidden
        out["shortcut_share"] = jnp.mean(jnp.where(total > 0, skip / jnp.where(total > 0, total,
                                                                                1), 0))
    overlaps = [max_overlap(Params(W1=Wk, b1=None, W2=None, b2=None)) for Wk in params.Ws]
    out["max_overlap"] = jnp.max(jnp.stack(overlaps))
    if len(params.Ws) > 1:
        for k, (d_k, o_k) in enumerate(zip(dead, overlaps), start=1):
            out[f"dead_frac_{k}"], out[f"max_overlap_{k}"] = jnp.mean(d_k), o_k
    out.update({f"grad_norm_{k}": jnp.sqrt(jnp.sum(v * v))
                for k, v in named_leaves(g).items() if v is not None})
    return out


def hessian_matrix(objective, params: Params, X: jax.Array, Y: jax.Array) -> jax.Array:
    """The exact Hessian of J = objective(params, X, Y) over the flattened parameters
    (ravel_pytree order), symmetrized."""
    flat, unravel = ravel_pytree(params)
    H = jax.hessian(lambda v: objective(unravel(v), X, Y))(flat)
    return 0.5 * (H + H.T)


def hessian_by_hand(params: Params, X, Y, loss_fn: str = "mse") -> np.ndarray:
    """The exact Hessian of J over the flattened parameters (ravel_pytree order: W1, b1, W2,
    b2, W), written out, in float64 NumPy; params may carry a leading axis of R runs -> (R, P, P).

    With l(z2, y) the loss of one example and g = dz2/dtheta,

        (h.1) d2J/dtheta2 = 1/n sum_i [ l''(z2_i) g_i g_i^T + l'(z2_i) d2z2_i/dtheta2 ]
        (h.2) g = (W2_k 1{z1_k > 0} x^T, W2_k 1{z1_k > 0}, a1_k, 1, x^T)   (W1_k, b1_k, W2_k, b2, W)
        (h.3) d2z2/dW2_k dW1_k = 1{z1_k > 0} x^T, d2z2/dW2_k db1_k = 1{z1_k > 0}, else 0
              (ReLU'' = 0, as in jax.grad)
        mse: l' = (y_hat - y) s, l'' = s^2 + (y_hat - y) s (1 - 2 y_hat), s = y_hat (1 - y_hat)
        bce: l' = y_hat - y,     l'' = s

    NumPy, so nothing compiles; equals jax.hessian of model.loss / bce_loss (tested).
    """
    W1, b1, W2, b2 = (np.asarray(a, np.float64) for a in params[:4])
    W = None if params.W is None else np.asarray(params.W, np.float64)
    single = W1.ndim == 2
    if single:
        W1, b1, W2, b2 = W1[None], b1[None], W2[None], b2[None]
        W = None if W is None else W[None]
    if loss_fn not in ("mse", "bce"):
        raise ValueError(f"loss_fn: expected 'mse' or 'bce', got {loss_fn!r}")
    if W1.ndim != 3:
        raise ValueError(f"params.W1: expected shape (h, d) or (runs, h, d), got {W1.shape}")
    R, h, d = W1.shape
    for name, a, shape in (("b1", b1, (h,)), ("W2", W2, (1, h)), ("b2", b2, ()),
                           ("W", W, (1, d))):
        if a is not None and a.shape != (R, *shape):
            raise ValueError(f"params.{name}: expected shape {shape if single else (R, *shape)}"
                             f" to match W1 {W1.shape[1:] if single else W1.shape}, got "
                             f"{a.shape[1:] if single else a.shape}")
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim != 2 or X.shape[1] != d or len(X) < 1 or not np.issubdtype(X.dtype, np.floating):
        raise ValueError(f"X: expected a floating (n, {d}) array with n >= 1, got "
                         f"{X.dtype}{list(X.shape)}")
    n = X.shape[0]
    if Y.shape != (n,):
        raise ValueError(f"Y: expected shape ({n},) to match X, got {Y.shape}")
    check_finite("X", X)
    check_labels("Y", Y)
    for name, a in zip(Params._fields, (W1, b1, W2, b2, W)):
        if a is not None:
            check_finite(f"params.{name}", a)
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    Z1 = np.einsum("nd,rhd->rnh", X, W1) + b1[:, None, :]            # (R, n, h)
    on = (Z1 > 0).astype(np.float64)                                  # 1{z1 > 0}
    A1 = Z1 * on
    Z2 = np.einsum("rnh,rh->rn", A1, W2[:, 0]) + b2[:, None]
    if W is not None:
        Z2 = Z2 + np.einsum("nd,rd->rn", X, W[:, 0])
    Y_hat = 0.5 * (1.0 + np.tanh(0.5 * Z2))                           # sigmoid, no overflow
    s = Y_hat * (1 - Y_hat)
    if loss_fn == "mse":
        l1, l2 = (Y_hat - Y) * s, s * s + (Y_hat - Y) * s * (1 - 2 * Y_hat)
    else:
        l1, l2 = Y_hat - Y, s
    dz1 = W2[:, 0][:, None, :] * on                                   # (h.2) dz2/db1
    G = [(dz1[..., None] * X[None, :, None, :]).reshape(R, n, h * d), dz1, A1,
         np.ones((R, n, 1))]                                           # (h.2), one row per i
    if W is not None:
        G.append(np.broadcast_to(X, (R, n, d)))
    G = np.concatenate(G, axis=2)                                     # (R, n, P)
    H = np.matmul(np.swapaxes(G, 1, 2) * (l2 / n)[:, None, :], G)     # (h.1), first term
    cross_W1 = np.einsum("rn,rnh,nd->rhd", l1 / n, on, X)             # (h.1) second term, (h.3)
    cross_b1 = np.einsum("rn,rnh->rh", l1 / n, on)
    k = np.arange(h)
    for j in range(d):
        H[:, h * d + h + k, k * d + j] += cross_W1[:, :, j]
        H[:, k * d + j, h * d + h + k] += cross_W1[:, :, j]
    H[:, h * d + h + k, h * d + k] += cross_b1
    H[:, h * d + k, h * d + h + k] += cross_b1
    return H[0] if single else H


def net_hessian(params: NetParams, X, Y, *, activation: str = "relu", residual: bool = False,
                loss_fn: str = "mse") -> np.ndarray:
    """The exact Hessian of the network family's J (network.net_loss) over the flattened
    parameters (ravel_pytree order: W_1..W_L, b_1..b_L, W_o, b_o, W, which is hessian_by_hand's
    at depth 1), by jax.hessian in float64, symmetrized; params may carry a leading axis of R
    runs -> (R, P, P). At depth 1 with ReLU it equals hessian_by_hand (tested)."""
    if not isinstance(params, NetParams):
        raise TypeError(f"params: expected a network.NetParams, got {type(params).__name__}")
    with jax.enable_x64(True):
        p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        X, Y = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)
        single = p.Ws[0].ndim == 2
        if single:
            p = jax.tree.map(lambda a: a[None], p)
        J = functools.partial(net_loss, activation=activation, residual=residual,
                              loss_fn=loss_fn)
        H = np.asarray(_net_hessians(J, p, X, Y))
    return H[0] if single else H


@functools.partial(jax.jit, static_argnums=0)
def _net_hessians(J, params, X, Y):
    return jax.vmap(lambda q: hessian_matrix(J, q, X, Y))(params)


def spectrum_fractions(eig, tol: float = 1e-6, xp=jnp) -> dict:
    """Fractions of the eigenvalues eig (..., P) of a Hessian near zero (|lambda| <= tol
    max|lambda|) and negative (lambda < -tol max|lambda|). xp: jax.numpy or numpy."""
    scale = xp.maximum(xp.max(xp.abs(eig), axis=-1), xp.finfo(eig.dtype).tiny)[..., None]
    P = eig.shape[-1]
    return {"hess_zero_frac": xp.sum(xp.abs(eig) <= tol * scale, axis=-1) / P,
            "hess_neg_frac": xp.sum(eig < -tol * scale, axis=-1) / P}


def hessian_spectrum(objective, params: Params, X: jax.Array, Y: jax.Array,
                     tol: float = 1e-6) -> dict[str, jax.Array]:
    """Exact Hessian of J at params (jax.hessian): eigenvalues and fractions near zero /
    negative (spectrum_fractions)."""
    eig = jnp.linalg.eigvalsh(hessian_matrix(objective, params, X, Y))
    return {"eigenvalues": eig, **spectrum_fractions(eig, tol)}

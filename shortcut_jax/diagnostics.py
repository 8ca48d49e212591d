"""What a run looks like inside: dead units, saturation, gradient norms, the shortcut's share.

`at_eval` is computed inside the compiled training loop at every eval step; `hessian_spectrum`
once at the end (the models are tiny, so the exact Hessian is affordable).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from shortcut_jax.model import Forward, Params, forward_columns

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


def hessian_matrix(objective, params: Params, X: jax.Array, Y: jax.Array,
                   keep: jax.Array | None = None) -> jax.Array:
    """The exact Hessian of J = objective(params, X, Y) over the flattened parameters
    (ravel_pytree order), symmetrized; with keep (a 0/1 vector), the rows and columns of the
    dropped coordinates are zero."""
    flat, unravel = ravel_pytree(params)
    H = jax.hessian(lambda v: objective(unravel(v), X, Y))(flat)
    H = 0.5 * (H + H.T)
    if keep is not None:
        keep = jnp.asarray(keep, H.dtype)
        H = H * keep[:, None] * keep[None, :]  # dropped rows and columns: eigenvalues 0
    return H


def spectrum_fractions(eig, n_kept, tol: float = 1e-6, xp=jnp) -> dict:
    """Fractions of the n_kept eigenvalues of a Hessian near zero (|lambda| <= tol max|lambda|)
    and negative (lambda < -tol max|lambda|), from eig (..., P) holding P - n_kept extra zeros
    (hessian_matrix's dropped coordinates). xp: jax.numpy or numpy."""
    scale = xp.maximum(xp.max(xp.abs(eig), axis=-1), xp.finfo(eig.dtype).tiny)[..., None]
    extra = eig.shape[-1] - n_kept
    return {"hess_zero_frac": (xp.sum(xp.abs(eig) <= tol * scale, axis=-1) - extra) / n_kept,
            "hess_neg_frac": xp.sum(eig < -tol * scale, axis=-1) / n_kept}


def hessian_spectrum(objective, params: Params, X: jax.Array, Y: jax.Array,
                     tol: float = 1e-6, keep: jax.Array | None = None) -> dict[str, jax.Array]:
    """Exact Hessian of J at params: eigenvalues and fractions near zero / negative
    (spectrum_fractions).

    keep: optional 0/1 vector over the flattened parameters (ravel_pytree order); the fractions
    are then those of the Hessian restricted to the kept coordinates (the eigenvalues gain one 0
    per dropped one). A plain network's Hessian is the shortcut network's at W = 0 with W
    dropped, so one compiled program serves both variants.
    """
    H = hessian_matrix(objective, params, X, Y, keep)
    eig = jnp.linalg.eigvalsh(H)
    n = eig.shape[-1] if keep is None else jnp.sum(jnp.asarray(keep, eig.dtype))
    return {"eigenvalues": eig, **spectrum_fractions(eig, n, tol)}

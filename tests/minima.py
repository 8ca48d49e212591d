"""Minima of the cross-entropy trained in float64, for the tests that need a critical point
(the census's zero directions, Shamir's bound)."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from jax.flatten_util import ravel_pytree

import shortcut_jax as sj
from shortcut_jax import diagnostics as dg


def fit_bce(p0, X, Y, method: str, options: dict):
    """p0 trained in float64 on bce_loss: scipy.optimize.minimize (`method`, `options`; the exact
    gradient, and hessian_by_hand where the method takes a Hessian), then up to 20 Newton steps
    by least squares (H is singular at these minima) until the gradient norm is <= 1e-12.
    Returns (params as NumPy, loss, gradient, Hessian by hand), all at the end point."""
    flat0, unravel = ravel_pytree(p0)
    with jax.enable_x64(True):
        Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
        value_grad = jax.jit(jax.value_and_grad(lambda v: sj.bce_loss(unravel(v), Xj, Yj)))

        def fun(v):
            f, g = value_grad(jnp.asarray(v))
            return float(f), np.asarray(g, np.float64)

        def params(v):
            return jax.tree.map(np.asarray, unravel(jnp.asarray(v)))

        def hess(v):
            return dg.hessian_by_hand(params(v), X, Y, "bce")

        uses_hess = method in ("trust-exact", "trust-krylov", "trust-ncg", "Newton-CG")
        v = scipy.optimize.minimize(fun, np.asarray(flat0), jac=True,
                                    hess=hess if uses_hess else None, method=method,
                                    options=options).x
        for _ in range(20):
            g = fun(v)[1]
            if np.linalg.norm(g) <= 1e-12:
                break
            v = v - np.linalg.lstsq(hess(v), g, rcond=1e-10)[0]
        loss, grad = fun(v)
        return params(v), loss, grad, hess(v)

"""Hand-written backpropagation for the network family (network.py), layer by layer.

The problem's (b.1)-(b.7) (grads.py) generalised to L hidden layers, any activation phi and the
skips. With delta = dL/dz_o (squared loss: (y_hat - y)(1 - y_hat) y_hat; cross-entropy:
y_hat - y):

    (b.1) dL/dy_hat = y_hat - y
    (b.2) dL/db_o   = delta
    (b.3) dL/dW_o   = delta a_L^T                                (1, h)
    (b.4) dL/dW     = delta x^T                                  (1, d)   shortcut only
    (b.5) dL/da_L   = delta W_o^T                                (h,)
    then for k = L, L-1, ..., 1:
    (b.6) dL/dz_k   = dL/da_k * phi'(z_k) = dL/db_k              (h,)     phi' = 1{z > 0}: ReLU
    (b.7) dL/dW_k   = dL/dz_k a_{k-1}^T,  a_0 = x                (h, h), (h, d) for k = 1
    (b.8) dL/da_{k-1} = W_k^T dL/dz_k  [+ dL/da_k: residual]     (h,)     k >= 2 only

At L = 1, (b.8) never runs and (b.6), (b.7) are the problem's; with ReLU the operations are
grads.backward's, so the numbers are the same. Returns a `NetParams` shaped like the parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from shortcut_jax.model import check_X, check_XT, check_Y
from shortcut_jax.network import (
    LOSS_FNS,
    NetForward,
    NetParams,
    check_activation,
    check_net_params,
    net_forward_columns,
    net_loss,
)


def net_manual_grad(params: NetParams, X: ArrayLike, Y: ArrayLike, *,
                    activation: str = "relu", residual: bool = False, loss_fn: str = "mse",
                    XT: jax.Array | None = None) -> NetParams:
    """dJ/dtheta over a batch X (n, d), Y (n,), by (b.1)-(b.8) in matrix form, averaged over n
    (column i of each (h, n) matrix is example i; Delta carries the 1/n)."""
    if loss_fn not in LOSS_FNS:
        raise ValueError(f"loss_fn: expected one of {LOSS_FNS}, got {loss_fn!r}")
    Ws = check_net_params(params).Ws
    X = check_X(X, Ws[0].shape[1])
    XT = X.T if XT is None else check_XT(XT, X)
    fwd = net_forward_columns(params, X, activation=activation, residual=residual, XT=XT)
    Y = check_Y(Y, X.shape[0], fwd.y_hat.dtype)
    n = X.shape[0]
    if loss_fn == "mse":
        dL_dY_hat = fwd.y_hat - Y                           # (b.1)  per example
        sigma_prime = (1 - fwd.y_hat) * fwd.y_hat           # dy_hat/dz_o = sigma'(z_o)
        Delta = dL_dY_hat / n * sigma_prime                 # (1/n) dL/dz_o per example
    else:  # bce: dL/dz_o = y_hat - y, written (1-y) sigmoid(z_o) - y sigmoid(-z_o)
        Delta = ((1 - Y) * fwd.y_hat - Y * jax.nn.sigmoid(-fwd.z_o)) / n
    return net_backward(params, X, fwd, Delta, activation=activation, residual=residual, XT=XT)


def net_backward(params: NetParams, X: jax.Array, fwd: NetForward, Delta: jax.Array, *,
                 activation: str = "relu", residual: bool = False,
                 XT: jax.Array | None = None) -> NetParams:
    """(b.2)-(b.8) in matrix form from Delta (n,) = dJ/dz_o per example and the forward pass
    in columns (network.net_forward_columns)."""
    _, phi_prime = check_activation(activation)
    Ws, Wo, W = params.Ws, params.Wo, params.W
    XT = X.T if XT is None else check_XT(XT, X)
    L = len(Ws)
    dbo = jnp.sum(Delta)                                    # (b.2)  sum_i delta_i
    dWo = (fwd.as_[-1] @ Delta)[None, :]                    # (b.3)  sum_i delta_i a_L,i^T
    dW = None if W is None else (XT @ Delta)[None, :]       # (b.4)  sum_i delta_i x_i^T
    dA = Wo[0][:, None] * Delta[None, :]                    # (b.5)  column i: delta_i W_o^T
    dWs, dbs = [None] * L, [None] * L
    for k in reversed(range(L)):                            # layer k + 1 of the equations
        dZ = dA * phi_prime(fwd.zs[k])                      # (b.6)  dL/dz_k, (h, n)
        if k == 0:
            # (b.6) db_1 = sum_i dz_1,i and (b.7) dW_1 = sum_i dz_1,i x_i^T in one pass
            G = dZ @ jnp.concatenate([X, jnp.ones((X.shape[0], 1), X.dtype)], axis=1)
            dWs[0], dbs[0] = G[:, :-1], G[:, -1]            # (b.7), (b.6)
        else:
            dWs[k] = dZ @ fwd.as_[k - 1].T                  # (b.7)  sum_i dz_k,i a_{k-1},i^T
            dbs[k] = jnp.sum(dZ, axis=1)                    # (b.6)  sum_i dz_k,i
            dA_prev = Ws[k].T @ dZ                          # (b.8)  W_k^T dL/dz_k
            dA = dA_prev + dA if residual else dA_prev      # (b.8)  + dL/da_k through the skip
    return NetParams(Ws=tuple(dWs), bs=tuple(dbs), Wo=dWo, bo=dbo, W=dW)


def net_manual_example_grad(params: NetParams, x: ArrayLike, y: ArrayLike, *,
                            activation: str = "relu", residual: bool = False,
                            loss_fn: str = "mse") -> NetParams:
    """dL/dtheta for one example x (d,), y scalar: net_manual_grad of the batch of one."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 1:
        raise ValueError(f"x: expected shape (d,), got {x.shape} (for a batch use "
                         f"net_manual_grad)")
    if y.ndim != 0:
        raise ValueError(f"y: expected a scalar label, got shape {y.shape}")
    return net_manual_grad(params, x[None, :], y[None], activation=activation,
                           residual=residual, loss_fn=loss_fn)


def loss_with_manual_vjp(X: ArrayLike, Y: ArrayLike, *, activation: str = "relu",
                         residual: bool = False, loss_fn: str = "mse"
                         ) -> Callable[[NetParams], jax.Array]:
    """params -> J(params; X, Y) as a jax.custom_vjp whose reverse pass is net_manual_grad: what
    jax.grad of it returns is the hand-written gradient (for jax.test_util.check_grads)."""
    kw = dict(activation=activation, residual=residual, loss_fn=loss_fn)

    @jax.custom_vjp
    def J(params):
        return net_loss(params, X, Y, **kw)

    def fwd(params):
        return J(params), params

    def bwd(params, g):
        return (jax.tree.map(lambda t: g * t, net_manual_grad(params, X, Y, **kw)),)

    J.defvjp(fwd, bwd)
    return J

"""The problem's part (b) as code: hand-written derivatives of the squared loss.

Numbered as in the answer to part (b), with delta = (y_hat - y)(1 - y_hat) y_hat = dL/dz2:

    (b.1) dL/dy_hat = y_hat - y
    (b.2) dL/db2    = delta
    (b.3) dL/dW2    = delta a1^T                          (1, h)
    (b.4) dL/dW     = delta x^T                           (1, d)   shortcut only
    (b.5) dL/da1    = delta W2^T                          (h,)
    (b.6) dL/db1    = delta W2^T * 1{z1 > 0}              (h,)
    (b.7) dL/dW1    = (delta W2^T * 1{z1 > 0}) x^T        (h, d)

Each function returns a `Params` shaped like the parameters (dL/db1 is (h,), not (1, h)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from shortcut_jax.model import (
    Params,
    check_params,
    check_X,
    check_x,
    check_XT,
    check_Y,
    check_y,
    forward_columns,
    forward_example,
)


def manual_example_grad(params: Params, x: ArrayLike, y: ArrayLike) -> Params:
    """dL/dtheta for one example x (d,), y scalar, by the formulas (b.1)-(b.7)."""
    W1, b1, W2, b2, W = check_params(params)
    z1, a1, z2, y_hat = forward_example(params, x)      # forward: z1, a1 (h,); z2, y_hat ()
    x = check_x(x, W1.shape[1])
    y = check_y(y, y_hat.dtype)
    # backward
    dL_dy_hat = y_hat - y                               # (b.1)
    delta = dL_dy_hat * (1 - y_hat) * y_hat             # dL/dz2
    db2 = delta                                         # (b.2)
    dW2 = delta * a1[None, :]                           # (b.3)  (1, h)
    dW = None if W is None else delta * x[None, :]      # (b.4)  (1, d)
    da1 = delta * W2[0]                                 # (b.5)  (h,)
    relu_prime = (z1 > 0).astype(z1.dtype)              # 1{z1 > 0}
    db1 = da1 * relu_prime                              # (b.6)  (h,)
    dW1 = db1[:, None] * x[None, :]                     # (b.7)  (h, d)
    return Params(W1=dW1, b1=db1, W2=dW2, b2=db2, W=dW)


def manual_grad(params: Params, X: ArrayLike, Y: ArrayLike, *,
                XT: jax.Array | None = None) -> Params:
    """dJ/dtheta over a batch X (n, d), Y (n,): (b.1)-(b.7) in matrix form, averaged over n.

    Column i of each (h, n) matrix (entry i of each (n,) vector) is the per-example quantity;
    sums over examples are the batch average because Delta already carries the 1/n.
    XT: optionally X.T, made once outside a training loop.
    """
    W1 = check_params(params).W1
    X = check_X(X, W1.shape[1])
    XT = X.T if XT is None else XT
    Z1T, A1T, Z2, Y_hat = forward_columns(params, X, XT=XT)  # forward, a column per example
    Y = check_Y(Y, X.shape[0], Y_hat.dtype)
    n = X.shape[0]
    dL_dY_hat = Y_hat - Y                               # (b.1)  per example
    sigma_prime = (1 - Y_hat) * Y_hat                   # dy_hat/dz2 = sigma'(z2)
    Delta = dL_dY_hat / n * sigma_prime                 # (1/n) dL/dz2 per example
    return backward(params, X, Z1T, A1T, Delta, XT=XT)


def manual_grad_bce(params: Params, X: ArrayLike, Y: ArrayLike, *,
                    XT: jax.Array | None = None) -> Params:
    """dJ/dtheta for the binary cross-entropy J = 1/n sum_i -[y log y_hat + (1-y) log(1-y_hat)].

    Only dL/dz2 changes: d/dz2 [y softplus(-z2) + (1-y) softplus(z2)] = sigmoid(z2) - y
    = y_hat - y, written (1-y) sigmoid(z2) - y sigmoid(-z2): no cancellation when y_hat is
    close to its label.
    """
    W1 = check_params(params).W1
    X = check_X(X, W1.shape[1])
    XT = X.T if XT is None else XT
    Z1T, A1T, Z2, Y_hat = forward_columns(params, X, XT=XT)
    Y = check_Y(Y, X.shape[0], Y_hat.dtype)
    dL_dZ2 = (1 - Y) * Y_hat - Y * jax.nn.sigmoid(-Z2)  # y_hat - y, without cancellation
    Delta = dL_dZ2 / X.shape[0]                         # (1/n) dL/dz2 per example
    return backward(params, X, Z1T, A1T, Delta, XT=XT)


def backward(params: Params, X: jax.Array, Z1T: jax.Array, A1T: jax.Array,
             Delta: jax.Array, *, XT: jax.Array | None = None) -> Params:
    """(b.2)-(b.7) in matrix form from Delta (n,) = dJ/dz2 per example; column i of Z1T, A1T
    (h, n) is example i (see model.forward_columns). XT: optionally X.T, made already."""
    W2, W = params.W2, params.W
    XT = X.T if XT is None else check_XT(XT, X)
    db2 = jnp.sum(Delta)                                # (b.2)  sum_i delta_i
    dW2 = (A1T @ Delta)[None, :]                        # (b.3)  sum_i delta_i a1_i^T
    dW = None if W is None else (XT @ Delta)[None, :]   # (b.4)  sum_i delta_i x_i^T
    dA1T = W2[0][:, None] * Delta[None, :]              # (b.5)  column i: delta_i W2^T
    relu_prime = (Z1T > 0).astype(Z1T.dtype)            # 1{z1 > 0}
    dZ1T = dA1T * relu_prime                            # (b.6)  per example, (h, n)
    # (b.6) db1 = sum_i dz1_i and (b.7) dW1 = sum_i dz1_i x_i^T in one pass: dZ1T @ [X 1]
    G = dZ1T @ jnp.concatenate([X, jnp.ones((X.shape[0], 1), X.dtype)], axis=1)
    dW1, db1 = G[:, :-1], G[:, -1]                      # (b.7), (b.6)
    return Params(W1=dW1, b1=db1, W2=dW2, b2=db2, W=dW)

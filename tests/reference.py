"""An independent float64 NumPy implementation of J, for finite differences and cross-checks."""

import numpy as np


def np_logits(W1, b1, W2, b2, W, X):
    """z1 (n, h) and z2 (n,) of the network, in float64 NumPy, one row per example."""
    X = np.asarray(X, np.float64)
    z1 = X @ np.asarray(W1, np.float64).T + np.asarray(b1, np.float64)[None, :]
    a1 = np.maximum(z1, 0.0)
    z2 = a1 @ np.asarray(W2, np.float64)[0] + float(b2)
    if W is not None:
        z2 = z2 + X @ np.asarray(W, np.float64)[0]
    return z1, z2


def np_sigmoid(z):
    """sigmoid(z) = 1/2 (1 + tanh(z/2)): no overflow at any z, written differently from jax.nn."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, np.float64)))


def np_log_sigmoid(z):
    """log sigmoid(z) = -log(1 + e^-z), exact to rounding for every z (no log of 0)."""
    return -np.logaddexp(0.0, -np.asarray(z, np.float64))


def np_loss(W1, b1, W2, b2, W, X, Y):
    """J = mean 1/2 (sigmoid(W2 relu(W1 x + b1) + b2 [+ W x]) - y)^2, in float64 NumPy."""
    _, z2 = np_logits(W1, b1, W2, b2, W, X)
    y_hat = np_sigmoid(z2)
    return float(np.mean(0.5 * (y_hat - np.asarray(Y, np.float64)) ** 2))


def np_bce_terms(W1, b1, W2, b2, W, X, Y):
    """Per-example cross-entropy -[y log y_hat + (1 - y) log(1 - y_hat)], float64, (n,).

    Written from the textbook form with log y_hat = log sigmoid(z2) and
    log(1 - y_hat) = log sigmoid(-z2), each a sum of non-negative terms: no log of 0 and no
    cancellation, so a term of e^-100 is returned as e^-100 (not as 100 - 100).
    """
    _, z2 = np_logits(W1, b1, W2, b2, W, X)
    Y = np.asarray(Y, np.float64)
    return -(Y * np_log_sigmoid(z2) + (1.0 - Y) * np_log_sigmoid(-z2))


def np_bce_loss(W1, b1, W2, b2, W, X, Y):
    """J = mean binary cross-entropy of sigmoid(z2) against y, in float64 NumPy."""
    return float(np.mean(np_bce_terms(W1, b1, W2, b2, W, X, Y)))


def np_central_diff(params, X, Y, eps=1e-6, loss=np_loss):
    """dJ/dtheta by central differences of `loss` (default the squared loss np_loss), one
    coordinate at a time; `loss` takes (W1, b1, W2, b2, W, X, Y). Returns a dict of arrays."""
    leaves = {k: (None if v is None else np.array(v, np.float64)) for k, v in params._asdict().items()}
    out = {}
    for name, value in leaves.items():
        if value is None:
            out[name] = None
            continue
        g = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus = {k: (None if v is None else v.copy()) for k, v in leaves.items()}
            minus = {k: (None if v is None else v.copy()) for k, v in leaves.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            g[idx] = (loss(**plus, X=X, Y=Y) - loss(**minus, X=X, Y=Y)) / (2 * eps)
        out[name] = g
    return out

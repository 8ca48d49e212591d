"""An independent float64 NumPy implementation of J, for finite differences and cross-checks."""

import numpy as np


def np_loss(W1, b1, W2, b2, W, X, Y):
    """J = mean 1/2 (sigmoid(W2 relu(W1 x + b1) + b2 [+ W x]) - y)^2, in float64 NumPy."""
    X = np.asarray(X, np.float64)
    z1 = X @ np.asarray(W1, np.float64).T + np.asarray(b1, np.float64)[None, :]
    a1 = np.maximum(z1, 0.0)
    z2 = a1 @ np.asarray(W2, np.float64)[0] + float(b2)
    if W is not None:
        z2 = z2 + X @ np.asarray(W, np.float64)[0]
    y_hat = 0.5 * (1.0 + np.tanh(0.5 * z2))  # sigmoid, written differently from jax.nn
    return float(np.mean(0.5 * (y_hat - np.asarray(Y, np.float64)) ** 2))


def np_central_diff(params, X, Y, eps=1e-6):
    """dJ/dtheta by central differences, one coordinate at a time; returns a dict of arrays."""
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
            g[idx] = (np_loss(**plus, X=X, Y=Y) - np_loss(**minus, X=X, Y=Y)) / (2 * eps)
        out[name] = g
    return out

"""An independent float64 NumPy implementation of the network family's J (network.py), for
finite differences: each activation written from its textbook formula."""

import numpy as np
from scipy import special

NP_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "tanh": np.tanh,
    "softplus": lambda z: np.logaddexp(0.0, z),
    "erf": lambda z: special.erf(z / np.sqrt(2.0)),
}


def np_net_logits(Ws, bs, Wo, bo, W, X, activation, residual):
    """[z_1, ..., z_L] (each (n, h)) and z_o (n,), one row per example, in float64 NumPy."""
    phi = NP_ACTIVATIONS[activation]
    X = np.asarray(X, np.float64)
    a, zs = X, []
    for k, (Wk, bk) in enumerate(zip(Ws, bs)):
        z = a @ np.asarray(Wk, np.float64).T + np.asarray(bk, np.float64)[None, :]
        a = phi(z) + a if (residual and k > 0) else phi(z)
        zs.append(z)
    zo = a @ np.asarray(Wo, np.float64)[0] + float(bo)
    if W is not None:
        zo = zo + X @ np.asarray(W, np.float64)[0]
    return zs, zo


def np_net_loss(leaves, X, Y, activation, residual, loss_fn):
    """J from a dict of float64 leaves {"Ws": [...], "bs": [...], "Wo", "bo", "W"}."""
    _, zo = np_net_logits(leaves["Ws"], leaves["bs"], leaves["Wo"], leaves["bo"], leaves["W"],
                          X, activation, residual)
    Y = np.asarray(Y, np.float64)
    if loss_fn == "mse":
        y_hat = 0.5 * (1.0 + np.tanh(0.5 * zo))  # sigmoid without overflow
        return float(np.mean(0.5 * (y_hat - Y) ** 2))
    # -[y log sigmoid(z) + (1 - y) log sigmoid(-z)], log sigmoid(z) = -log(1 + e^-z)
    return float(np.mean(Y * np.logaddexp(0.0, -zo) + (1 - Y) * np.logaddexp(0.0, zo)))


def np_net_central_diff(leaves, X, Y, activation, residual, loss_fn, eps=1e-6):
    """dJ/dtheta by central differences, one coordinate at a time, as a dict like `leaves`."""
    def paths():
        for name in ("Ws", "bs"):
            for k in range(len(leaves[name])):
                yield name, k
        for name in ("Wo", "bo", "W"):
            if leaves[name] is not None:
                yield name, None

    def get(tree, name, k):
        return tree[name] if k is None else tree[name][k]

    out = {"Ws": [None] * len(leaves["Ws"]), "bs": [None] * len(leaves["bs"]), "Wo": None,
           "bo": None, "W": None}
    for name, k in paths():
        value = get(leaves, name, k)
        g = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            def J(step, name=name, k=k, idx=idx):
                tree = {n: ([a.copy() for a in v] if isinstance(v, list) else
                            (None if v is None else v.copy())) for n, v in leaves.items()}
                leaf = get(tree, name, k)
                leaf[idx] += step
                return np_net_loss(tree, X, Y, activation, residual, loss_fn)
            g[idx] = (J(eps) - J(-eps)) / (2 * eps)
        if k is None:
            out[name] = g
        else:
            out[name][k] = g
    return out

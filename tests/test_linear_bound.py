"""Shamir's bound (report.linear_bound_table): a shortcut network with the cross-entropy, at a
local minimum, has a training loss at or below unregularised logistic regression's."""

import numpy as np
import pytest
import scipy.optimize

import shortcut_jax as sj
from shortcut_jax import report
from tests.minima import fit_bce
from tests.tables import table

pytest.importorskip("sklearn")


def noisy_data(n=30, seed=0):
    """n distinct 2-D inputs, each 4 times with 1 to 3 of them labelled 1: no model fits the
    labels, so the cross-entropy has a finite minimum."""
    rng = np.random.default_rng(seed)
    Xu = rng.standard_normal((n, 2))
    ones = 1 + (Xu[:, 0] * Xu[:, 1] > 0) + (Xu[:, 0] > 0.5)
    X = np.repeat(Xu, 4, axis=0)
    Y = (np.arange(4)[None, :] < ones[:, None]).astype(np.float64).ravel()
    return X, Y


def logistic_loss_by_scipy(X, Y):
    """min over (w, b) of the mean cross-entropy, by scipy's BFGS on the exact gradient."""
    Xa = np.concatenate([X, np.ones((len(X), 1))], 1)

    def f(v):
        z = Xa @ v
        p = 1 / (1 + np.exp(-z))
        return (np.mean(Y * np.logaddexp(0, -z) + (1 - Y) * np.logaddexp(0, z)),
                Xa.T @ (p - Y) / len(Y))

    return scipy.optimize.minimize(f, np.zeros(3), jac=True, method="BFGS",
                                   options={"gtol": 1e-12}).fun


def test_linear_loss_is_logistic_regressions_optimum():
    X, Y = noisy_data()
    assert report.linear_loss(X, Y) == pytest.approx(logistic_loss_by_scipy(X, Y), rel=1e-8)


@pytest.mark.parametrize("seed", [0, 7])  # starts whose run ends where the gradient vanishes
# (others stop at a ReLU kink, where J is not differentiable and no gradient norm goes to 0)
def test_a_converged_shortcut_network_is_at_or_below_the_bound(seed):
    X, Y = noisy_data()
    rng = np.random.default_rng(seed)
    p0 = sj.Params(rng.standard_normal((4, 2)), 0.1 * rng.standard_normal(4),
                   rng.standard_normal((1, 4)), np.float64(0.0), np.zeros((1, 2)))
    _, loss, grad, H = fit_bce(p0, X, Y, "BFGS", {"gtol": 1e-10, "maxiter": 5000})
    assert np.linalg.norm(grad) <= 1e-10  # converged
    eig = np.linalg.eigvalsh(H)
    assert eig.min() >= -1e-6 * np.abs(eig).max()  # no negative curvature: a minimum
    assert loss <= report.linear_loss(X, Y) + 1e-10


def test_runs_above_the_bound_are_listed_with_their_gradient_norms():
    X, Y = noisy_data()
    bound = report.linear_loss(X, Y)
    ds = sj.Dataset(X, Y, X[:5], Y[:5], X[:5], Y[:5])
    rows = [{"variant": "shortcut", "shortcut_init": "zeros", "loss_fn": "bce", "seed": s,
             "train_loss": loss, "grad_norm": g}
            for s, loss, g in ((0, bound * 1.5, 0.3), (1, bound * 0.9, 1e-6), (2, bound, 0.0))]
    rows += [{"variant": "plain", "loss_fn": "bce", "seed": 3, "train_loss": 9.0,
              "grad_norm": 1.0},                                  # plain: no bound
             {"variant": "shortcut", "shortcut_init": "zeros", "loss_fn": "mse", "seed": 4,
              "train_loss": 9.0, "grad_norm": 1.0}]               # mse: no bound
    out = report.linear_bound_table([({"dataset": "xor"}, ds, "xor")], table(rows))
    assert sorted(out["seed"]) == [0, 1, 2]
    assert out.set_index("seed")["above"].to_dict() == {0: True, 1: False, 2: False}
    assert (out["linear_loss"] == bound).all()
    text = "\n".join(report._linear_bound_section(out, ["width"]))
    assert "Runs above the bound (1, the 20 highest)" in text
    assert f"| xor width=4 lr=0.5 seed 0 | {bound * 1.5:.4g} | {bound:.4g} | 0.3 |" in text

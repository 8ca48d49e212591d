"""The singularity census (diagnostics.singularity_census) against the null space of the float64
Hessian of constructed networks: at a random point and at a critical point."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import shortcut_jax as sj
from shortcut_jax import diagnostics as dg
from tests.minima import fit_bce


def params(W1, b1, W2, b2, W=None):
    return sj.Params(np.asarray(W1, np.float64), np.asarray(b1, np.float64),
                     np.asarray(W2, np.float64).reshape(1, -1), np.float64(b2),
                     None if W is None else np.asarray(W, np.float64).reshape(1, -1))


def null_dim(H, tol):
    eig = np.linalg.eigvalsh(H)
    return int(np.sum(np.abs(eig) <= tol * np.abs(eig).max())), eig


def data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    return X, rng.integers(0, 2, n).astype(np.float64)


# d = 2 units: dead (z1 <= 0.5 - 2 < 0), always active (z1 >= 2 - 0.7 > 0), kinked
DEAD, ALWAYS, KINKED = ([0.3, 0.2], -2.0), ([0.4, -0.3], 2.0), ([1.0, 0.5], 0.1)


def random_point(units, shortcut, seed=1):
    rng = np.random.default_rng(seed)
    W1, b1 = zip(*units)
    return params(W1, b1, rng.standard_normal(len(units)), rng.standard_normal(),
                  rng.standard_normal(2) if shortcut else None)


@pytest.mark.parametrize("loss_fn", ["bce", "mse"])
@pytest.mark.parametrize("units, plain, short", [
    ([DEAD, ALWAYS, KINKED], 4, 6),             # the hand check: dead d+2, always-active d
    ([DEAD, ALWAYS, ALWAYS, KINKED], 6, 8),     # two always-active: d, A d
    ([KINKED, KINKED, ALWAYS], 2, 4),           # a duplicated pattern: d
    ([DEAD, DEAD, KINKED], 8, 8),               # the dead alone
])
def test_exact_zero_directions_at_a_random_point_are_the_census(units, plain, short, loss_fn):
    X, Y = data()
    for shortcut, want in ((False, plain), (True, short)):
        p = random_point(units, shortcut)
        census = dg.singularity_census(p, X)
        assert census["any_total"] == want
        got, eig = null_dim(dg.hessian_by_hand(p, X, Y, loss_fn), 1e-12)
        assert got == want, (shortcut, eig[:10])
        assert np.sort(np.abs(eig))[want] > 1e-8 * np.abs(eig).max()  # a clear gap


def test_a_unit_active_on_one_row_is_thin():
    X, Y = data()
    i = int(np.argmax(X[:, 0]))
    thin = ([1.0, 0.0], -(X[i, 0] - 1e-3))  # active on row i only: r_p = 1
    for shortcut in (False, True):
        p = random_point([thin, KINKED], shortcut)
        census = dg.singularity_census(p, X)
        assert census["any_thin"] == 2 and census["crit_thin"] == 2  # d + 1 - 1
        got, _ = null_dim(dg.hessian_by_hand(p, X, Y, "bce"), 1e-12)
        assert got == census["any_total"] == 2


def test_census_counts_and_jax_hessian_agree(x64):
    X, Y = data()
    p = random_point([DEAD, ALWAYS, KINKED, KINKED], True)
    census = dg.singularity_census(p, X)
    assert (census["n_dead"], census["n_always_active"], census["n_live"],
            census["n_duplicated"]) == (1, 1, 3, 1)
    flat, unravel = ravel_pytree(jax.tree.map(jnp.asarray, p))
    H = jax.hessian(lambda v: sj.bce_loss(unravel(v), jnp.asarray(X), jnp.asarray(Y)))(flat)
    got, _ = null_dim(np.asarray(H), 1e-12)
    assert got == census["any_total"] == 4 + 2 + 2
    # the critical-point causes account for every parameter: P = rank_sum + sum - rows
    P = sj.num_params(2, 4, shortcut=True)
    assert census["crit_total"] - census["crit_rows"] + census["rank_sum"] == P


def critical_point(units, shortcut, seed=3):
    """Trained in float64 (scipy's trust-exact with hessian_by_hand, then Newton steps) to a
    gradient norm <= 1e-10 on 40 distinct inputs, each 8 times with k of them labelled 1: k / 8
    the teacher's probability rounded to 1/8 .. 7/8 (the teacher: these units at a random
    point, also the start), a finite minimum the network cannot fit exactly."""
    p0 = random_point(units, shortcut, seed=seed)
    Xu = np.random.default_rng(seed).uniform(-1, 1, (40, 2))
    z2 = (np.maximum(Xu @ p0.W1.T + p0.b1, 0) @ p0.W2[0] + p0.b2
          + (0 if p0.W is None else Xu @ p0.W[0]))
    ones = np.clip(np.round(8 / (1 + np.exp(-z2))), 1, 7)
    X = np.repeat(Xu, 8, axis=0)
    Y = (np.arange(8)[None, :] < ones[:, None]).astype(np.float64).ravel()
    p, _, g, _ = fit_bce(p0, X, Y, "trust-exact", {"gtol": 1e-11, "maxiter": 500})
    return p, X, Y, np.linalg.norm(g)


UNITS = [DEAD, ALWAYS, KINKED, ([-0.8, 0.6], 0.2)]


@pytest.mark.parametrize("shortcut, seed, census_counts", [
    (False, 3, (1, 2, 1)), (False, 5, (1, 0, 2)), (False, 10, (1, 0, 1)),
    (True, 3, (1, 2, 1)), (True, 4, (1, 0, 2)), (True, 10, (1, 0, 2))])
def test_zero_directions_at_a_minimum_are_the_census(shortcut, seed, census_counts):
    p, X, Y, grad = critical_point(UNITS, shortcut, seed)
    assert grad <= 1e-10
    census = dg.singularity_census(p, X)
    assert (census["n_dead"], census["n_silent"], census["n_always_active"]) == census_counts
    got, eig = null_dim(dg.hessian_by_hand(p, X, Y, "bce"), 1e-8)
    assert eig.min() >= -1e-10 * np.abs(eig).max()  # a minimum, not a saddle
    assert got == census["crit_total"], eig[:16]
    assert np.sort(np.abs(eig))[got] > 1e-7 * np.abs(eig).max()  # a clear gap
    # by hand for these counts: dead d + 2, silent d + 1, rescaling 1 per other live unit,
    # always-active A (d + 1), less d without the shortcut
    dead, quiet, A = census_counts
    want = 4 * dead + 3 * quiet + (4 - dead - quiet) + 3 * A - (2 if A and not shortcut else 0)
    assert census["crit_total"] == want
    # at the random starting point (the teacher) only the dead unit's and the shortcut's d
    start = random_point(UNITS, shortcut, seed=seed)
    assert dg.singularity_census(start, X)["any_total"] == 4 + (2 if shortcut else 0)


def test_duplicated_units_at_a_minimum_add_d_plus_1():
    # two copies of one unit (different W2 at the start) keep one pattern to the minimum
    p, X, Y, grad = critical_point([DEAD, KINKED, KINKED, ([-0.8, 0.6], 0.2)], False, seed=3)
    assert grad <= 1e-10
    census = dg.singularity_census(p, X)
    assert (census["n_dead"], census["n_silent"], census["n_duplicated"]) == (1, 0, 1)
    assert census["crit_duplicated"] == 3  # (m - 1)(d + 1)
    got, eig = null_dim(dg.hessian_by_hand(p, X, Y, "bce"), 1e-8)
    assert eig.min() >= -1e-10 * np.abs(eig).max()
    assert got == census["crit_total"] == 4 + 3 + 3  # dead, rescaling of 3 live units, duplicate

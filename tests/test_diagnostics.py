"""The diagnostics against constructed networks with known answers and independent computations.

Every expected value here is either worked out by hand from the network's equations or computed
independently (NumPy, finite differences of the hand-written gradient); none is a stored output
of the code under test.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import shortcut_jax as sj
from shortcut_jax import diagnostics as dg

F32_TOL = 1e-6
F64_TOL = 1e-10

# jitted: one small XLA program per input shape compiles faster than op-by-op eager dispatch
dead_fraction = jax.jit(dg.dead_fraction)
saturated_fraction = jax.jit(dg.saturated_fraction)
shortcut_share = jax.jit(dg.shortcut_share)
max_overlap = jax.jit(dg.max_overlap)


def net(W1, b1, W2, b2, W=None, dtype=jnp.float32):
    """Params from nested lists: W1 (h, d), b1 (h,), W2 (1, h), b2 scalar, W (1, d) or None."""
    return sj.Params(
        W1=jnp.asarray(W1, dtype),
        b1=jnp.asarray(b1, dtype),
        W2=jnp.asarray(W2, dtype),
        b2=jnp.asarray(b2, dtype),
        W=None if W is None else jnp.asarray(W, dtype),
    )


def arr(x, dtype=jnp.float32):
    return jnp.asarray(x, dtype)


def normal(seed, shape, dtype=jnp.float32):
    """Standard normal draws from NumPy (cheaper than eager jax.random in a test)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def random_params(seed, d, h, shortcut, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return sj.Params(
        W1=jnp.asarray(rng.standard_normal((h, d)), dtype),
        b1=jnp.asarray(rng.standard_normal(h), dtype),
        W2=jnp.asarray(rng.standard_normal((1, h)), dtype),
        b2=jnp.asarray(rng.standard_normal(), dtype),
        W=jnp.asarray(rng.standard_normal((1, d)), dtype) if shortcut else None,
    )


# --- dead_fraction ---------------------------------------------------------------------------


def test_dead_fraction_all_units_dead_is_exactly_one():
    # W1 = 0, b1 = -1: z1 = -1 on every row, for every unit.
    p = net(np.zeros((5, 3)), -np.ones(5), np.ones((1, 5)), 0.0, np.ones((1, 3)))
    X = normal(0, (7, 3))
    out = dead_fraction(p, X)
    assert out.shape == () and out.dtype == jnp.float32
    assert float(out) == 1.0


def test_dead_fraction_no_unit_dead_is_exactly_zero():
    # W1 = 0, b1 = +1: z1 = 1 > 0 on every row.
    p = net(np.zeros((5, 3)), np.ones(5), np.ones((1, 5)), 0.0)
    X = normal(1, (7, 3))
    assert float(dead_fraction(p, X)) == 0.0


def test_dead_fraction_two_of_five_dead():
    X = arr([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    p = net(
        W1=[[1.0, 0.0],    # z1 = [ 1,    0,   -1  ]  alive (positive on row 0)
            [0.0, 0.0],    # z1 = [-0.5, -0.5, -0.5]  dead
            [-1.0, 0.0],   # z1 = [-2,   -1,    0  ]  dead: z1 <= 0 everywhere, 0 included
            [0.0, 1.0],    # z1 = [-0.5,  0.5, -1.5]  alive on a single row only -> alive
            [1.0, 1.0]],   # z1 = [ 3,    3,    0  ]  alive
        b1=[0.0, -0.5, -1.0, -0.5, 2.0],
        W2=[[1.0, 1.0, 1.0, 1.0, 1.0]],
        b2=0.0,
    )
    # independent: z1 in NumPy, dead iff z1 <= 0 on every row
    Z1 = np.asarray(X) @ np.asarray(p.W1).T + np.asarray(p.b1)[None, :]
    assert np.all(Z1 <= 0, axis=0).tolist() == [False, True, True, False, False]
    assert float(dead_fraction(p, X)) == pytest.approx(0.4, abs=F32_TOL)


def test_dead_fraction_unit_at_exactly_zero_counts_as_dead():
    # z1 == 0 on every row: ReLU outputs 0 and its derivative (JAX convention) is 0 -> dead.
    p = net(np.zeros((2, 2)), [0.0, 1.0], [[1.0, 1.0]], 0.0)
    X = arr([[1.0, 2.0], [-3.0, 4.0]])
    assert float(dead_fraction(p, X)) == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dead_fraction_matches_numpy_on_random_networks(seed):
    # b1 shifted down so that some, but not all, units are dead
    p = random_params(seed, d=3, h=16, shortcut=True)
    p = p._replace(b1=p.b1 - 2.0)
    X = normal(100 + seed, (6, 3))
    Z1 = np.asarray(X, np.float64) @ np.asarray(p.W1, np.float64).T + np.asarray(p.b1)[None, :]
    expected = np.mean(np.all(Z1 <= 0, axis=0))
    assert float(dead_fraction(p, X)) == pytest.approx(expected, abs=F32_TOL)


# --- saturated_fraction ----------------------------------------------------------------------


@pytest.mark.parametrize("b2", [50.0, -50.0])
def test_saturated_fraction_huge_bias_is_exactly_one(b2):
    # W2 = 0 and no shortcut contribution: z2 = b2 = +-50 on every row, y_hat (1 - y_hat) ~ e^-50
    p = net(np.ones((3, 2)), np.zeros(3), np.zeros((1, 3)), b2, np.zeros((1, 2)))
    X = normal(2, (5, 2))
    out = saturated_fraction(p, X)
    assert out.shape == () and out.dtype == jnp.float32
    assert float(out) == 1.0


def test_saturated_fraction_zero_output_is_exactly_zero():
    # W2 = 0, b2 = 0: y_hat = 1/2, y_hat (1 - y_hat) = 1/4
    p = net(np.ones((3, 2)), np.zeros(3), np.zeros((1, 3)), 0.0, np.zeros((1, 2)))
    X = normal(3, (5, 2))
    assert float(saturated_fraction(p, X)) == 0.0


def _sat(z):
    """y_hat (1 - y_hat) for y_hat = sigmoid(z), written as e^-|z| / (1 + e^-|z|)^2."""
    e = math.exp(-abs(z))
    return e / (1 + e) ** 2


def test_saturated_fraction_mixed_through_the_hidden_path():
    # d = h = 1, W1 = 1, W2 = 1, plain net: z2 = relu(x)
    # x:   0     10        -10     3       7
    # z2:  0     10          0     3       7
    # s:  .25   4.5e-5     .25   .045   9.1e-4   -> saturated (s < 1e-3): rows 1 and 4 -> 2/5
    xs = [0.0, 10.0, -10.0, 3.0, 7.0]
    z2 = [max(x, 0.0) for x in xs]
    assert [_sat(z) < 1e-3 for z in z2] == [False, True, False, False, True]
    p = net([[1.0]], [0.0], [[1.0]], 0.0)
    assert float(saturated_fraction(p, arr([[x] for x in xs]))) == pytest.approx(0.4, abs=F32_TOL)


def test_saturated_fraction_mixed_through_the_shortcut():
    # W2 = 0, W = 1: z2 = x. 6.5 is just unsaturated (s = 1.50e-3), 7 just saturated (9.1e-4).
    xs = [0.0, 10.0, -10.0, 3.0, 7.0, -6.5]
    assert [_sat(x) < 1e-3 for x in xs] == [False, True, True, False, True, False]
    p = net([[1.0]], [0.0], [[0.0]], 0.0, [[1.0]])
    assert float(saturated_fraction(p, arr([[x] for x in xs]))) == pytest.approx(0.5, abs=F32_TOL)


# --- shortcut_share --------------------------------------------------------------------------


def test_shortcut_share_is_exactly_zero_when_W_is_zero():
    p = random_params(4, d=3, h=4, shortcut=True)
    p = p._replace(W=jnp.zeros((1, 3)))
    X = normal(5, (8, 3))
    assert float(shortcut_share(p, X)) == 0.0


def test_shortcut_share_is_zero_for_the_plain_network():
    p = random_params(6, d=3, h=4, shortcut=False)
    X = normal(7, (8, 3))
    out = shortcut_share(p, X)
    assert out.shape == () and out.dtype == jnp.float32
    assert float(out) == 0.0


def test_shortcut_share_is_exactly_one_when_W2_is_zero():
    # the hidden path contributes W2 a1 = 0; W x != 0 on every row -> every row's share is 1
    p = random_params(8, d=3, h=4, shortcut=True)
    p = p._replace(W2=jnp.zeros((1, 4)))
    X = normal(9, (8, 3))
    assert np.all(np.abs(np.asarray(X) @ np.asarray(p.W)[0]) > 0)
    assert float(shortcut_share(p, X)) == 1.0


def test_shortcut_share_hand_computed():
    # d = 2, h = 1: a1 = relu(x0), W2 a1 = 2 relu(x0), W x = x1
    # row       |W x|  |W2 a1|  share
    # [ 1,  1]    1      2      1/3
    # [ 3, -1]    1      6      1/7
    # [-1,  2]    2      0      1
    # [-1,  0]    0      0      0   <- both paths 0: the row counts as 0 (not NaN, not skipped)
    p = net([[1.0, 0.0]], [0.0], [[2.0]], 0.0, [[0.0, 1.0]])
    X = arr([[1.0, 1.0], [3.0, -1.0], [-1.0, 2.0], [-1.0, 0.0]])
    expected = (1 / 3 + 1 / 7 + 1 + 0) / 4  # = 31/84, the mean over all 4 rows
    assert float(shortcut_share(p, X)) == pytest.approx(expected, abs=F32_TOL)


def test_shortcut_share_uses_the_hidden_paths_sum_not_per_unit_magnitudes():
    # h = 2, W2 = [1, -1]: the hidden contribution is |W2 a1| = |a1_0 - a1_1|, which can cancel
    # row       a1       |W2 a1|  |W x|  share
    # [2,  1]   [2, 1]     1        3     3/4
    # [1,  1]   [1, 1]     0        2     1
    # [1, -1]   [1, 0]     1        0     0
    p = net([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0], [[1.0, -1.0]], 0.0, [[1.0, 1.0]])
    X = arr([[2.0, 1.0], [1.0, 1.0], [1.0, -1.0]])
    assert float(shortcut_share(p, X)) == pytest.approx((3 / 4 + 1 + 0) / 3, abs=F32_TOL)


def test_shortcut_share_all_rows_zero_is_zero_not_nan():
    p = net([[1.0, 0.0]], [0.0], [[2.0]], 0.0, [[0.0, 1.0]])
    X = arr([[-1.0, 0.0], [-2.0, 0.0]])  # a1 = 0 and W x = 0 on both rows
    assert float(shortcut_share(p, X)) == 0.0


def test_shortcut_share_matches_numpy_on_a_random_network():
    p = random_params(10, d=4, h=6, shortcut=True)
    X = normal(11, (9, 4))
    Xn = np.asarray(X, np.float64)
    A1 = np.maximum(Xn @ np.asarray(p.W1, np.float64).T + np.asarray(p.b1, np.float64)[None, :], 0)
    skip = np.abs(Xn @ np.asarray(p.W, np.float64)[0])
    hidden = np.abs(A1 @ np.asarray(p.W2, np.float64)[0])
    expected = np.mean(skip / (skip + hidden))
    assert float(shortcut_share(p, X)) == pytest.approx(expected, abs=F32_TOL)


# --- max_overlap -----------------------------------------------------------------------------


def _with_W1(W1):
    W1 = np.asarray(W1, np.float32)
    h, d = W1.shape
    return net(W1, np.zeros(h), np.ones((1, h)), 0.0, np.zeros((1, d)))


def test_max_overlap_identical_rows_is_one():
    p = _with_W1([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0], [1.0, 2.0, 3.0]])
    assert float(max_overlap(p)) == pytest.approx(1.0, abs=F32_TOL)


def test_max_overlap_parallel_rows_of_different_length_is_one():
    p = _with_W1([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    assert float(max_overlap(p)) == pytest.approx(1.0, abs=F32_TOL)


@pytest.mark.parametrize("W1", [[[1.0, 0.0], [0.0, 1.0]],
                                [[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.5]]])
def test_max_overlap_orthogonal_rows_is_zero(W1):
    assert float(max_overlap(_with_W1(W1))) == 0.0


def test_max_overlap_opposite_rows_is_minus_one():
    # h = 2: the only pair has cosine -1 (the diagonal cos = 1 must not be counted)
    p = _with_W1([[1.0, 0.0], [-1.0, 0.0]])
    assert float(max_overlap(p)) == pytest.approx(-1.0, abs=F32_TOL)


def test_max_overlap_single_unit_is_zero():
    out = max_overlap(_with_W1([[3.0, -4.0]]))
    assert out.shape == () and float(out) == 0.0


@pytest.mark.parametrize("W1, expected", [
    ([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], 0.0),             # zero row has cosine 0 with others
    ([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]], 1 / math.sqrt(2)),
    ([[0.0, 0.0], [0.0, 0.0]], 0.0),                          # all rows zero
])
def test_max_overlap_zero_row_is_finite(W1, expected):
    out = float(max_overlap(_with_W1(W1)))
    assert math.isfinite(out)
    assert out == pytest.approx(expected, abs=F32_TOL)


def test_max_overlap_matches_numpy_on_a_random_matrix():
    W1 = np.asarray(normal(12, (7, 3)), np.float64)
    U = W1 / np.linalg.norm(W1, axis=1, keepdims=True)
    cos = U @ U.T
    expected = max(cos[i, j] for i in range(7) for j in range(7) if i != j)
    assert float(max_overlap(_with_W1(W1))) == pytest.approx(expected, abs=F32_TOL)


# --- grad_norms ------------------------------------------------------------------------------


@pytest.mark.parametrize("shortcut", [True, False])
def test_grad_norms_keys_and_values(shortcut):
    g = random_params(13, d=3, h=5, shortcut=shortcut)  # any Params-shaped pytree will do
    out = dg.grad_norms(g)
    names = ["W1", "b1", "W2", "b2"] + (["W"] if shortcut else [])
    assert sorted(out) == sorted(f"grad_norm_{k}" for k in names)
    assert "grad_norm_W" not in out or shortcut
    for k in names:
        expected = np.linalg.norm(np.asarray(getattr(g, k), np.float64).ravel())
        assert float(out[f"grad_norm_{k}"]) == pytest.approx(expected, rel=F32_TOL, abs=1e-12), k


def test_grad_norms_hand_computed():
    g = net([[3.0, 4.0]], [-12.0], [[0.0]], -2.0, [[1.0, 1.0]])
    out = dg.grad_norms(g)
    assert {k: float(v) for k, v in out.items()} == pytest.approx(
        {"grad_norm_W1": 5.0, "grad_norm_b1": 12.0, "grad_norm_W2": 0.0,
         "grad_norm_b2": 2.0, "grad_norm_W": math.sqrt(2)}, abs=F32_TOL)


# --- at_eval ---------------------------------------------------------------------------------

AT_EVAL_X = [[1.0, 1.0], [2.0, -1.0]]
# Net A: units identical (overlap 1); unit 1 has z1 = [-99, -98] (dead) -> dead 1/2;
#        W2 = 0, W = [1, 0]: z2 = x0 = [1, 2], unsaturated, shortcut share 1.
NET_A = dict(W1=[[1.0, 0.0], [1.0, 0.0]], b1=[0.0, -100.0], W2=[[0.0, 0.0]], b2=0.0,
             W=[[1.0, 0.0]])
EXPECTED_A = {"dead_frac": 0.5, "saturated_frac": 0.0, "shortcut_share": 1.0, "max_overlap": 1.0}
# Net B: orthogonal units (overlap 0), both alive (z1 = [1, 2] and [1, -1]); z2 = b2 = 50
#        (saturated); W x = 0 and W2 a1 = 0 on every row -> shortcut share 0.
NET_B = dict(W1=[[1.0, 0.0], [0.0, 1.0]], b1=[0.0, 0.0], W2=[[0.0, 0.0]], b2=50.0,
             W=[[0.0, 0.0]])
EXPECTED_B = {"dead_frac": 0.0, "saturated_frac": 1.0, "shortcut_share": 0.0, "max_overlap": 0.0}
GRAD_KEYS = {f"grad_norm_{k}" for k in ("W1", "b1", "W2", "b2", "W")}


def _check_at_eval(out, expected, g):
    assert set(out) == set(expected) | GRAD_KEYS
    for k, v in out.items():
        assert np.shape(v) == () and np.isfinite(float(v)), k
    for k, v in expected.items():
        assert float(out[k]) == pytest.approx(v, abs=F32_TOL), k
    for name in ("W1", "b1", "W2", "b2", "W"):
        expected_norm = np.linalg.norm(np.asarray(getattr(g, name), np.float64).ravel())
        assert float(out[f"grad_norm_{name}"]) == pytest.approx(expected_norm, rel=F32_TOL), name


def _some_grad(seed):
    return random_params(seed, d=2, h=2, shortcut=True)


@pytest.mark.parametrize("net_kw, expected", [(NET_A, EXPECTED_A), (NET_B, EXPECTED_B)])
def test_at_eval_known_networks_eager_and_jit(net_kw, expected):
    p, X, g = net(**net_kw), arr(AT_EVAL_X), _some_grad(16)
    _check_at_eval(dg.at_eval(p, g, X), expected, g)
    _check_at_eval(jax.jit(dg.at_eval)(p, g, X), expected, g)


def test_at_eval_under_vmap_over_a_batch_of_params():
    pa, pb = net(**NET_A), net(**NET_B)
    ga, gb = _some_grad(17), _some_grad(18)
    P = jax.tree.map(lambda a, b: jnp.stack([a, b]), pa, pb)
    G = jax.tree.map(lambda a, b: jnp.stack([a, b]), ga, gb)
    out = jax.jit(jax.vmap(dg.at_eval, in_axes=(0, 0, None)))(P, G, arr(AT_EVAL_X))
    for i, (expected, g) in enumerate([(EXPECTED_A, ga), (EXPECTED_B, gb)]):
        _check_at_eval({k: v[i] for k, v in out.items()}, expected, g)


def test_at_eval_plain_network_has_no_W_gradient_key():
    p = random_params(19, d=3, h=4, shortcut=False)
    X = normal(20, (6, 3))
    g = random_params(21, d=3, h=4, shortcut=False)
    out = jax.jit(dg.at_eval)(p, g, X)
    assert set(out) == {"dead_frac", "saturated_frac", "shortcut_share", "max_overlap",
                        "grad_norm_W1", "grad_norm_b1", "grad_norm_W2", "grad_norm_b2"}
    assert all(np.isfinite(float(v)) for v in out.values())
    assert float(out["shortcut_share"]) == 0.0


# --- hessian_spectrum ------------------------------------------------------------------------


@jax.jit
def _fd_hessian(params, X, Y, eps):
    flat, unravel = ravel_pytree(params)

    def grad_flat(v):
        return ravel_pytree(sj.manual_grad(unravel(v), X, Y))[0]

    def column(e):
        return (grad_flat(flat + eps * e) - grad_flat(flat - eps * e)) / (2 * eps)

    basis = jnp.eye(flat.shape[0], dtype=flat.dtype)
    return jax.vmap(column, out_axes=1)(basis)  # column j = (g(v + eps e_j) - g(v - eps e_j)) / 2eps


def fd_hessian(params, X, Y, eps=1e-5):
    """Central differences of the hand-written gradient sj.manual_grad, one column per parameter."""
    return np.asarray(_fd_hessian(params, X, Y, eps))


# jitted once per shape; the objective is static (sj.loss or a test's own function)
hessian_spectrum = jax.jit(dg.hessian_spectrum, static_argnums=0)


def kink_free_problem(d, h, n, shortcut, margin=1e-2):
    """A random float64 point with |z1| > margin on every row and unit (first seed that has it)."""
    for seed in range(100):
        rng = np.random.default_rng(seed)
        W1, b1 = rng.standard_normal((h, d)), rng.standard_normal(h)
        X = rng.standard_normal((n, d))
        if np.min(np.abs(X @ W1.T + b1[None, :])) <= margin:
            continue
        p = net(W1, b1, rng.standard_normal((1, h)), rng.standard_normal(),
                rng.standard_normal((1, d)) if shortcut else None, dtype=jnp.float64)
        Y = jnp.asarray(rng.integers(0, 2, n), jnp.float64)
        return p, jnp.asarray(X, jnp.float64), Y
    raise AssertionError("no kink-free seed")


@pytest.mark.parametrize("shortcut", [True, False])
def test_hessian_spectrum_matches_finite_differences_of_manual_grad(x64, shortcut):
    # Away from the ReLU kink (|z1| > 1e-2 while a step of eps = 1e-5 moves z1 by ~1e-5 |x|),
    # J is smooth in a neighbourhood, so the FD Hessian of the hand-written gradient is the
    # true Hessian to O(eps^2). Across a kink manual_grad jumps (1{z1 > 0} flips) and the FD
    # column would pick up that jump / (2 eps) while the autodiff Hessian does not.
    d, h, n = 3, 4, 8
    p, X, Y = kink_free_problem(d, h, n, shortcut)
    assert p.W1.dtype == jnp.float64
    H_fd = fd_hessian(p, X, Y)
    N = sj.num_params(d, h, shortcut=shortcut)
    assert H_fd.shape == (N, N)
    np.testing.assert_allclose(H_fd, H_fd.T, rtol=1e-5, atol=1e-9)
    eig_fd = np.linalg.eigvalsh(0.5 * (H_fd + H_fd.T))
    scale = np.max(np.abs(eig_fd))

    out = hessian_spectrum(sj.loss, p, X, Y)
    eig = np.asarray(out["eigenvalues"])
    assert eig.dtype == np.float64
    assert eig.shape == (N,) and N == sj.count_params(p)
    assert np.all(np.diff(eig) >= 0), "eigenvalues must be sorted ascending"
    np.testing.assert_allclose(eig, eig_fd, rtol=1e-5, atol=1e-8 * scale)

    # fractions, recomputed from the FD eigenvalues (no eigenvalue sits near the thresholds)
    rel = eig_fd / scale
    assert not np.any(np.abs(np.abs(rel) - 1e-6) < 1e-7), "eigenvalue too close to tol"
    zero = float(out["hess_zero_frac"])
    neg = float(out["hess_neg_frac"])
    assert 0.0 <= zero <= 1.0 and 0.0 <= neg <= 1.0 and zero + neg <= 1.0
    assert zero == pytest.approx(np.mean(np.abs(rel) <= 1e-6), abs=F64_TOL)
    assert neg == pytest.approx(np.mean(rel < -1e-6), abs=F64_TOL)


@pytest.mark.parametrize("shortcut", [True, False])
def test_hessian_spectrum_dead_unit_gives_zero_curvature(x64, shortcut):
    # unit 2 has z1 = x0 + x1 + x2 - 100 < 0 on every row: its W1 row (d), b1 entry and W2 entry
    # never affect J near this point, so their Hessian rows/columns are exactly zero
    d, h, n = 3, 4, 8  # the shapes of the test above: the jitted functions are reused
    p, X, Y = kink_free_problem(d, h, n, shortcut)
    p = p._replace(W1=p.W1.at[2].set(jnp.ones(d)), b1=p.b1.at[2].set(-100.0))
    assert np.all(np.asarray(sj.model.forward_batch(p, X).z1)[:, 2] < -90)
    N = sj.num_params(d, h, shortcut=shortcut)

    # indices of the dead unit's parameters in the flat vector, found by raveling a mask
    mask = jax.tree.map(jnp.zeros_like, p)
    mask = mask._replace(W1=mask.W1.at[2].set(1.0), b1=mask.b1.at[2].set(1.0),
                         W2=mask.W2.at[0, 2].set(1.0))
    dead_idx = np.flatnonzero(np.asarray(ravel_pytree(mask)[0]))
    assert len(dead_idx) == d + 2

    H_fd = fd_hessian(p, X, Y)
    assert np.all(H_fd[dead_idx, :] == 0) and np.all(H_fd[:, dead_idx] == 0)
    live = np.setdiff1d(np.arange(N), dead_idx)
    assert np.max(np.abs(H_fd[np.ix_(live, live)])) > 0

    out = hessian_spectrum(sj.loss, p, X, Y)
    zero = float(out["hess_zero_frac"])
    assert 0.0 <= zero <= 1.0 and 0.0 <= float(out["hess_neg_frac"]) <= 1.0
    assert zero >= len(dead_idx) / N - F64_TOL
    # and the other eigenvalues are those of the live block
    eig = np.asarray(out["eigenvalues"])
    H_live = H_fd[np.ix_(live, live)]
    expected = np.sort(np.concatenate([np.zeros(len(dead_idx)),
                                       np.linalg.eigvalsh(0.5 * (H_live + H_live.T))]))
    np.testing.assert_allclose(eig, expected, rtol=1e-5, atol=1e-8 * np.max(np.abs(expected)))


QUADRATIC_C = np.array([3.0, -2.0, 0.0, 1e-8, 4.0, -1e-3, 0.5, 0.0, 1.0, 2.0, -4.0])


def _quadratic(params, X, Y):
    """1/2 s sum_j c_j theta_j^2, Hessian s diag(c); the scale s rides in Y[0] (one compile)."""
    v = ravel_pytree(params)[0]
    return 0.5 * Y[0] * jnp.sum(jnp.asarray(QUADRATIC_C) * v * v)


@pytest.mark.parametrize("s", [1.0, 1e-4, 1e4])
def test_hessian_spectrum_of_a_known_quadratic(x64, s):
    # eigenvalues are s sorted(c) exactly. The thresholds are relative to max |lambda| = 4 s, so
    # the fractions do not depend on s: 1e-8 s is within tol (zero), -1e-3 s is not (negative).
    # (an absolute tol would count -1e-3 s as zero at s = 1e-4 and 1e-8 s as nonzero at s = 1e4)
    p = net(np.ones((2, 2)), np.ones(2), np.ones((1, 2)), 1.0, np.ones((1, 2)), dtype=jnp.float64)
    N = sj.count_params(p)  # 4 + 2 + 2 + 1 + 2 = 11
    assert N == len(QUADRATIC_C)
    X = jnp.zeros((1, 2), jnp.float64)
    Y = jnp.full((1,), s, jnp.float64)
    out = hessian_spectrum(_quadratic, p, X, Y)
    np.testing.assert_allclose(np.asarray(out["eigenvalues"]), s * np.sort(QUADRATIC_C),
                               rtol=F64_TOL, atol=0)
    assert float(out["hess_zero_frac"]) == pytest.approx(3 / 11, abs=F64_TOL)   # 0, 0, 1e-8
    assert float(out["hess_neg_frac"]) == pytest.approx(3 / 11, abs=F64_TOL)    # -2, -1e-3, -4
    # a looser tol = 1e-2 (threshold 0.04 s) also counts -1e-3 s as zero
    out = hessian_spectrum(_quadratic, p, X, Y, 1e-2)
    assert float(out["hess_zero_frac"]) == pytest.approx(4 / 11, abs=F64_TOL)
    assert float(out["hess_neg_frac"]) == pytest.approx(2 / 11, abs=F64_TOL)


def test_hessian_spectrum_of_the_zero_function_is_all_zero(x64):
    # H = 0: scale falls back to the smallest normal number, every eigenvalue counts as zero
    p = net(np.ones((2, 2)), np.ones(2), np.ones((1, 2)), 1.0, dtype=jnp.float64)
    out = hessian_spectrum(lambda params, X, Y: jnp.zeros((), jnp.float64), p,
                              jnp.zeros((1, 2), jnp.float64), jnp.zeros((1,), jnp.float64))
    assert np.all(np.asarray(out["eigenvalues"]) == 0)
    assert float(out["hess_zero_frac"]) == 1.0
    assert float(out["hess_neg_frac"]) == 0.0


# --- hessian_by_hand --------------------------------------------------------------------------


def _random_problem(rng, d, h, n, shortcut):
    p = sj.Params(rng.standard_normal((h, d)), rng.standard_normal(h),
                  rng.standard_normal((1, h)), np.float64(rng.standard_normal()),
                  rng.standard_normal((1, d)) if shortcut else None)
    return p, rng.standard_normal((n, d)), rng.integers(0, 2, n).astype(np.float64)


@pytest.mark.parametrize("shortcut", [True, False])
@pytest.mark.parametrize("loss_fn, objective", [("mse", sj.loss), ("bce", sj.bce_loss)])
def test_hessian_by_hand_equals_jax_hessian(x64, shortcut, loss_fn, objective):
    """(h.1)-(h.3) against jax.hessian of the loss in float64, with a dead unit (zero rows and
    columns) and a unit whose z1 changes sign across the rows (the cross terms (h.3))."""
    rng = np.random.default_rng(3)
    p, X, Y = _random_problem(rng, 3, 5, 40, shortcut)
    p = p._replace(W1=p.W1.copy(), b1=p.b1.copy())
    p.W1[2], p.b1[2] = 0.0, -1.0  # unit 2 dead on every row
    z1 = X @ p.W1.T + p.b1
    assert np.all(z1[:, 2] < 0) and np.any(z1[:, 0] > 0) and np.any(z1[:, 0] < 0)
    H = dg.hessian_by_hand(p, X, Y, loss_fn)
    reference = np.asarray(dg.hessian_matrix(objective, jax.tree.map(jnp.asarray, p),
                                             jnp.asarray(X), jnp.asarray(Y)))
    N = sj.num_params(3, 5, shortcut=shortcut)
    assert H.shape == (N, N) and H.dtype == np.float64
    np.testing.assert_allclose(H, reference, rtol=1e-9, atol=1e-12 * np.abs(reference).max())
    assert np.any(np.abs(H) > 0.1 * np.abs(H).max())  # not a matrix of zeros


def test_hessian_by_hand_runs_a_stack_of_models_and_float32_params():
    rng = np.random.default_rng(4)
    runs = [_random_problem(rng, 2, 3, 25, True) for _ in range(4)]
    X, Y = runs[0][1], runs[0][2]
    stack = sj.Params(*(np.stack([r[0][k] for r in runs]) for k in range(5)))
    H = dg.hessian_by_hand(stack, X, Y)
    assert H.shape == (4, 15, 15)  # (d + 1) h + h + 1 + d
    for i, (p, _, _) in enumerate(runs):
        np.testing.assert_array_equal(H[i], dg.hessian_by_hand(p, X, Y))
    low = jax.tree.map(lambda a: np.asarray(a, np.float32), runs[0][0])
    H_low = dg.hessian_by_hand(low, X.astype(np.float32), Y)
    assert H_low.dtype == np.float64  # float32 inputs, computed in float64
    np.testing.assert_array_equal(H_low, dg.hessian_by_hand(
        jax.tree.map(lambda a: np.asarray(a, np.float64), low), X.astype(np.float32), Y))


def test_hessian_by_hand_names_bad_arguments():
    p, X, Y = _random_problem(np.random.default_rng(5), 2, 3, 10, True)
    with pytest.raises(ValueError, match="loss_fn: expected 'mse' or 'bce', got 'l1'"):
        dg.hessian_by_hand(p, X, Y, "l1")
    with pytest.raises(ValueError, match=r"X: expected a floating \(n, 2\) array with n >= 1, "
                                         r"got float64\[10, 3\]"):
        dg.hessian_by_hand(p, np.ones((10, 3)), Y)
    with pytest.raises(ValueError, match=r"X: expected a floating \(n, 2\) array with n >= 1, "
                                         r"got int64\[10, 2\]"):
        dg.hessian_by_hand(p, np.ones((10, 2), np.int64), Y)
    with pytest.raises(ValueError, match=r"Y: expected shape \(10,\) to match X, got \(10, 1\)"):
        dg.hessian_by_hand(p, X, Y[:, None])
    with pytest.raises(ValueError, match=r"Y: expected labels 0 or 1, got values such as \[5.0\]"):
        dg.hessian_by_hand(p, X, np.where(Y > 0, 5.0, 0.0))
    with pytest.raises(ValueError, match=r"X: expected finite values, found 1 NaN/inf entries"):
        dg.hessian_by_hand(p, np.where(np.arange(20).reshape(10, 2) == 3, np.nan, X), Y)
    with pytest.raises(ValueError, match=r"params.W2: expected finite values, found 1 NaN/inf"):
        dg.hessian_by_hand(p._replace(W2=np.full((1, 3), [np.inf, 0.0, 0.0])), X, Y)
    with pytest.raises(ValueError, match=r"params.W2: expected shape \(1, 3\) to match W1 "
                                         r"\(3, 2\), got \(3,\)"):
        dg.hessian_by_hand(p._replace(W2=p.W2[0]), X, Y)
    stack = sj.Params(*(np.stack([a, a]) for a in p))
    with pytest.raises(ValueError, match=r"params.b1: expected shape \(2, 3\) to match W1 "
                                         r"\(2, 3, 2\), got \(2, 4\)"):
        dg.hessian_by_hand(stack._replace(b1=np.zeros((2, 4))), X, Y)
    with pytest.raises(ValueError, match=r"params.W1: expected shape \(h, d\) or \(runs, h, "
                                         r"d\), got \(3,\)"):
        dg.hessian_by_hand(p._replace(W1=p.W1[:, 0]), X, Y)

"""The hand-written derivatives against jax.grad, finite differences and the ReLU kink."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import shortcut_jax as sj
from tests.reference import np_central_diff

FIELDS = ("W1", "b1", "W2", "b2", "W")


def random_problem(seed, d, h, n, scale, shortcut, dtype):
    """Parameters at `scale` (saturated outputs, dead units at large scales), data, 0/1 labels."""
    k = jax.random.split(jax.random.key(seed), 6)
    params = sj.Params(
        W1=scale * jax.random.normal(k[0], (h, d), dtype),
        b1=scale * jax.random.normal(k[1], (h,), dtype),
        W2=scale * jax.random.normal(k[2], (1, h), dtype),
        b2=scale * jax.random.normal(k[3], (), dtype),
        W=scale * jax.random.normal(k[4], (1, d), dtype) if shortcut else None,
    )
    kx, ky = jax.random.split(k[5])
    X = jax.random.normal(kx, (n, d), dtype)
    Y = jax.random.bernoulli(ky, 0.5, (n,)).astype(dtype)
    return params, X, Y


@jax.jit
def term_scale(params, X, Y):
    """Per leaf, max_j (1/n) sum_i |dL_i/dtheta_j|: the size of the terms J's gradient sums."""
    per_example = jax.vmap(jax.grad(sj.example_loss), in_axes=(None, 0, 0))(params, X, Y)
    return jax.tree.map(lambda g: jnp.max(jnp.mean(jnp.abs(g), axis=0)), per_example)


def assert_grads_close(manual, auto, rtol, scale=None):
    """Elementwise |m - a| <= atol + rtol |a|, with atol = rtol * scale of that leaf.

    `scale` (default max |a| of the leaf) is the size of the terms summed into an entry: an
    entry that cancels to near zero keeps only the summation-order noise of its terms, which
    differs between the matrix form and jax.grad's; a wrong formula is off by a whole term.
    """
    for name in FIELDS:
        m, a = getattr(manual, name), getattr(auto, name)
        if a is None:
            assert m is None, name
            continue
        assert m.shape == a.shape and m.dtype == a.dtype, (name, m.shape, a.shape)
        a = np.asarray(a)
        s = np.max(np.abs(a)) if scale is None else getattr(scale, name)
        atol = rtol * float(s) + np.finfo(a.dtype).tiny
        np.testing.assert_allclose(np.asarray(m), a, rtol=rtol, atol=atol, err_msg=name)


manual_grad = jax.jit(sj.manual_grad)
auto_grad = jax.jit(jax.grad(sj.loss))
manual_example_grad = jax.jit(sj.manual_example_grad)
auto_example_grad = jax.jit(jax.grad(sj.example_loss))


problems = st.fixed_dictionaries(
    dict(
        seed=st.integers(0, 2**31 - 1),
        d=st.integers(1, 64),
        h=st.integers(1, 128),
        n=st.integers(1, 256),
        scale=st.sampled_from([1e-2, 1e-1, 0.5, 1.0, 3.0, 10.0]),
        shortcut=st.booleans(),
    )
)
cases = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cases
@given(problems, st.sampled_from([jnp.float32, jnp.float64]))
def test_manual_grad_matches_jax_grad(p, dtype):
    """rtol 1e-10 in float64, 1e-5 in float32; atol = rtol * term_scale (see assert_grads_close)."""
    rtol = 1e-10 if dtype == jnp.float64 else 1e-5
    with jax.enable_x64(dtype == jnp.float64):
        params, X, Y = random_problem(**p, dtype=dtype)
        assert_grads_close(manual_grad(params, X, Y), auto_grad(params, X, Y), rtol=rtol,
                           scale=term_scale(params, X, Y))


@cases
@given(problems, st.sampled_from([jnp.float32, jnp.float64]))
def test_manual_example_grad_matches_jax_grad(p, dtype):
    """One example: no sums over n, so atol = rtol * max |leaf| suffices."""
    rtol = 1e-10 if dtype == jnp.float64 else 1e-5
    with jax.enable_x64(dtype == jnp.float64):
        params, X, Y = random_problem(**{**p, "n": 1}, dtype=dtype)
        x, y = X[0], Y[0]
        assert_grads_close(manual_example_grad(params, x, y), auto_example_grad(params, x, y),
                           rtol=rtol)


def test_batch_grad_is_mean_of_example_grads(x64):
    params, X, Y = random_problem(3, 5, 7, 33, 1.0, True, jnp.float64)
    per_example = jax.vmap(sj.manual_example_grad, in_axes=(None, 0, 0))(params, X, Y)
    mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), per_example)
    assert_grads_close(sj.manual_grad(params, X, Y), mean, rtol=1e-12)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 6), st.integers(1, 8),
       st.sampled_from([0.3, 1.0, 2.0]), st.booleans())
def test_manual_and_jax_grad_match_finite_differences(seed, d, h, n, scale, shortcut):
    """Central differences of an independent NumPy J, in float64.

    Points with some |z1| < 1e-3 are excluded: a step of eps = 1e-6 in W1 or b1 moves z1 by at
    most eps (1 + |x|), so away from the kink J is smooth along every coordinate step and the
    difference quotient converges; at the kink it would average the two one-sided slopes.
    """
    with jax.enable_x64(True):
        params, X, Y = random_problem(seed, d, h, n, scale, shortcut, jnp.float64)
        Z1 = X @ params.W1.T + params.b1[None, :]
        assume(float(jnp.min(jnp.abs(Z1))) > 1e-3)
        fd = sj.Params(**np_central_diff(params, X, Y))
        manual = manual_grad(params, X, Y)
        auto = auto_grad(params, X, Y)
    for name in FIELDS:
        f = getattr(fd, name)
        if f is None:
            assert getattr(manual, name) is None and getattr(auto, name) is None
            continue
        atol = 1e-8 * max(1.0, float(np.max(np.abs(f))))
        for g in (manual, auto):
            np.testing.assert_allclose(np.asarray(getattr(g, name)), f, rtol=1e-6, atol=atol,
                                       err_msg=name)


@pytest.mark.parametrize("shortcut", [False, True])
def test_relu_kink_gives_zero_gradient_for_that_unit(shortcut, x64):
    """z1[0] = 2*1 + (-1)*2 + 0 = 0 exactly: 1{z1 > 0} is 0, so unit 0 gets no gradient."""
    W1 = jnp.array([[2.0, -1.0], [0.5, 0.25]])
    params = sj.Params(W1=W1, b1=jnp.zeros(2), W2=jnp.array([[1.5, -0.7]]), b2=jnp.array(0.1),
                       W=jnp.array([[0.3, -0.2]]) if shortcut else None)
    x, y = jnp.array([1.0, 2.0]), jnp.array(1.0)
    assert float((W1 @ x)[0]) == 0.0
    for g in (sj.manual_example_grad(params, x, y), jax.grad(sj.example_loss)(params, x, y),
              sj.manual_grad(params, x[None, :], y[None]),
              jax.grad(sj.loss)(params, x[None, :], y[None])):
        assert float(g.b1[0]) == 0.0
        np.testing.assert_array_equal(np.asarray(g.W1[0]), np.zeros(2))
        assert float(g.b1[1]) != 0.0  # the active unit does get a gradient


def test_shortcut_with_zero_W_equals_plain():
    params, X, Y = random_problem(7, 4, 9, 50, 1.0, True, jnp.float32)
    shortcut = params._replace(W=jnp.zeros_like(params.W))
    plain = params._replace(W=None)
    np.testing.assert_array_equal(sj.predict(shortcut, X), sj.predict(plain, X))
    gs, gp = sj.manual_grad(shortcut, X, Y), sj.manual_grad(plain, X, Y)
    for name in ("W1", "b1", "W2", "b2"):
        np.testing.assert_array_equal(getattr(gs, name), getattr(gp, name), err_msg=name)
    assert gp.W is None and gs.W.shape == (1, 4)


@pytest.mark.parametrize("grad", [sj.manual_grad, sj.manual_grad_bce])
def test_precomputed_XT_gives_the_same_gradient(grad):
    params, X, Y = random_problem(3, 3, 5, 40, 1.0, True, jnp.float32)
    want, got = jax.jit(grad)(params, X, Y), jax.jit(lambda p, X, Y: grad(p, X, Y, XT=X.T))(
        params, X, Y)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"XT: expected X.T, a float32\[3, 40\] array, got "
                                         r"float32\[40, 3\]"):
        grad(params, X, Y, XT=X)
    Z1T, A1T, _, _ = sj.forward_columns(params, X)
    with pytest.raises(ValueError, match=r"XT: expected X.T"):
        sj.backward(params, X, Z1T, A1T, Y, XT=X)


@pytest.mark.parametrize("z2", [1e4, -1e4, 1e3, -1e3, 50.0, -50.0])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_saturated_output_is_finite(z2, dtype):
    """|z2| up to 1e4: loss and both gradients stay finite (no overflow in the sigmoid)."""
    with jax.enable_x64(dtype == jnp.float64):
        params = sj.Params(W1=jnp.ones((2, 1), dtype), b1=jnp.zeros(2, dtype),
                           W2=jnp.zeros((1, 2), dtype), b2=jnp.asarray(z2, dtype),
                           W=jnp.zeros((1, 1), dtype))
        X, Y = jnp.ones((3, 1), dtype), jnp.array([0.0, 1.0, 1.0], dtype)
        values = [sj.loss(params, X, Y), sj.predict(params, X)]
        values += jax.tree.leaves(sj.manual_grad(params, X, Y))
        values += jax.tree.leaves(jax.grad(sj.loss)(params, X, Y))
        for v in values:
            assert bool(jnp.all(jnp.isfinite(v)))
        y_hat = 0.5 * (1.0 + np.tanh(0.5 * z2))  # the sigmoid, computed without overflow
        expected = 0.5 * np.mean((y_hat - np.array([0.0, 1.0, 1.0])) ** 2)
        np.testing.assert_allclose(float(values[0]), expected, rtol=1e-6)

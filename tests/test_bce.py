"""The binary cross-entropy, verified like the squared loss (tests/test_grads.py).

bce_loss and manual_grad_bce against an independent float64 NumPy cross-entropy
(tests/reference.py, the textbook -[y log sigmoid(z2) + (1 - y) log sigmoid(-z2)]) and its central
differences, on hypothesis-drawn shapes and scales that carry signal, at the exact ReLU kink, and
at saturated logits |z2| up to 1e4.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shortcut_jax as sj
from tests.reference import (
    np_bce_loss,
    np_bce_terms,
    np_central_diff,
    np_log_sigmoid,
    np_logits,
)
from tests.test_grads import (
    DTYPES,
    FD_SCALES,
    FIELDS,
    SCALES,
    VARIANTS,
    as_numpy,
    assert_grads_close,
    at,
    check_finite_differences,
    check_manual_grad_matches_jax_grad,
    over_scales,
    problems,
    problems_over_scales,
    run_cases,
    small_problems,
)

bce_loss = jax.jit(sj.bce_loss)
example_bce_loss = jax.jit(sj.example_bce_loss)
manual_grad_bce = jax.jit(sj.manual_grad_bce)
auto_grad_bce = jax.jit(jax.grad(sj.bce_loss))
auto_example_grad_bce = jax.jit(jax.grad(sj.example_bce_loss))
LOSSES_OVER_SCALES = over_scales(lambda params, X, Y: (
    sj.bce_loss(params, X, Y), jax.vmap(sj.example_bce_loss, in_axes=(None, 0, 0))(params, X, Y)))


def logit_term_size(params, X):
    """Per example, sum of |terms| added into z2 (|W2_j a1_j|, |b2|, |W_k x_k|): the size a
    rounding error in z2, hence in softplus(z2) - y z2, is relative to (cancellation included)."""
    p = as_numpy(params)
    X = np.asarray(X, np.float64)
    z1, _ = np_logits(**p, X=X)
    size = np.maximum(z1, 0.0) @ np.abs(p["W2"][0]) + abs(float(p["b2"]))
    if p["W"] is not None:
        size = size + np.abs(X) @ np.abs(p["W"][0])
    return size


@DTYPES
@VARIANTS
def test_bce_loss_matches_numpy(shortcut, dtype):
    """bce_loss (mean) and example_bce_loss (per example) equal the float64 NumPy cross-entropy:
    rtol 1e-12 in float64, 1e-5 in float32, atol = rtol * (1 + size of the terms summed into z2)
    for losses that are tiny next to the logit (a well-classified example, or |z2| cancelling).
    The loss is checked at every scale, saturated or not: nothing discarded.

    Observed before dtype and network were explicit: 8 cases = 48 parameter sets, all checked.
    """
    def check(tally, seed, d, h, n, shortcut, dtype):
        rtol = 1e-12 if dtype == jnp.float64 else 1e-5
        with jax.enable_x64(dtype == jnp.float64):
            params, X, Y = problems_over_scales(seed, d, h, n, shortcut, dtype, SCALES)
            means, terms = LOSSES_OVER_SCALES(params, X, Y)
        assert means.shape == (len(SCALES),) and means.dtype == np.dtype(dtype)
        assert terms.shape == (len(SCALES), n)
        for k, scale in enumerate(SCALES):
            tally.keep(scale)
            p = at(params, k)
            want = np_bce_terms(**as_numpy(p), X=X, Y=Y)
            atol = rtol * (1.0 + logit_term_size(p, X))
            err = np.abs(np.asarray(terms[k], np.float64) - want)
            assert np.all(err <= atol + rtol * np.abs(want)), (scale, np.max(err), want)
            np.testing.assert_allclose(float(means[k]), np_bce_loss(**as_numpy(p), X=X, Y=Y),
                                       rtol=rtol, atol=float(np.mean(atol)), err_msg=str(scale))

    strategy, large = problems(shortcut, dtype)
    run_cases(strategy, check, max_examples=2, max_discarded=0, examples=large)


@DTYPES
@VARIANTS
def test_manual_grad_bce_matches_jax_grad(shortcut, dtype):
    """manual_grad_bce vs jax.grad(bce_loss), the squared-loss test's scheme: rtol 1e-10 in
    float64, 1e-5 in float32, atol = rtol * term_scale (with c_i = max(y_hat_i, y_i), see
    tests/test_grads.py), sets without signal discarded.

    Observed before dtype and network were explicit (six runs): 12 cases = 72 parameter sets, 70-72 checked; 0-2 discarded, at scale
    10: the cross-entropy's dL/dz2 = y_hat - y is +-1 on a misclassified saturated example, so
    only batches classified right to the last example lose their signal.
    """
    strategy, large = problems(shortcut, dtype)
    run_cases(strategy,
              lambda tally, **p: check_manual_grad_matches_jax_grad("bce", tally, **p),
              max_examples=3, max_discarded=0.2, examples=large)


@VARIANTS
def test_manual_grad_bce_matches_finite_differences(shortcut):
    """manual_grad_bce and jax.grad(bce_loss) vs central differences of np_bce_loss, float64,
    rtol 1e-6, away from the ReLU kink (|z1| > 1e-3).

    Observed before dtype and network were explicit (six runs): 10 cases = 40 parameter sets, 38-40 checked; 0-2 discarded, near the
    kink or saturated at scale 3 (about 2% of sets on average, NumPy simulation of 1200).
    """
    strategy, large = small_problems(shortcut)
    run_cases(strategy, lambda tally, **p: check_finite_differences("bce", tally, **p),
              max_examples=5, max_discarded=0.4, scales=FD_SCALES, examples=large,
              all_checked_upto=None, one_checked=(1.0, 3.0))


KINK_GRADS = jax.jit(lambda params, x, y: (
    sj.manual_grad_bce(params, x[None, :], y[None]),
    jax.grad(sj.bce_loss)(params, x[None, :], y[None]), jax.grad(sj.example_bce_loss)(params, x, y)))


@pytest.mark.parametrize("y", [0.0, 1.0])
@pytest.mark.parametrize("shortcut", [False, True])
def test_bce_relu_kink_gives_zero_gradient_for_that_unit(shortcut, y, x64):
    """z1[0] = 2*1 + (-1)*2 + 0 = 0 exactly: relu'(0) = 0 (as jax.grad takes it), so unit 0's
    incoming gradient (W1[0], b1[0]) is exactly 0; every other entry equals central differences
    of np_bce_loss (no step of those moves z1[0] off the kink)."""
    W1 = jnp.array([[2.0, -1.0], [0.5, 0.25]])
    params = sj.Params(W1=W1, b1=jnp.zeros(2), W2=jnp.array([[1.5, -0.7]]), b2=jnp.array(0.1),
                       W=jnp.array([[0.3, -0.2]]) if shortcut else None)
    x, y = jnp.array([1.0, 2.0]), jnp.array(y)
    X, Y = x[None, :], y[None]
    assert float((W1 @ x)[0]) == 0.0
    fd = np_central_diff(params, X, Y, loss=np_bce_loss)
    for g in KINK_GRADS(params, x, y):
        assert float(g.b1[0]) == 0.0
        np.testing.assert_array_equal(np.asarray(g.W1[0]), np.zeros(2))
        assert float(g.b1[1]) != 0.0  # the active unit does get a gradient
        np.testing.assert_allclose(np.asarray(g.b1[1]), fd["b1"][1], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(g.W1[1]), fd["W1"][1], rtol=1e-6)
        for name in ("W2", "b2", "W"):
            if fd[name] is None:
                assert getattr(g, name) is None
                continue
            np.testing.assert_allclose(np.asarray(getattr(g, name)), fd[name], rtol=1e-6,
                                       atol=1e-9, err_msg=name)


def saturated_problem(z2, dtype):
    """x = [1, 2]; z1 = [2, -1.5] (unit 0 on, unit 1 off); z2 = W2 a1 + W x + b2 = 4 + 1 + b2 =
    the given z2 exactly (integers, exact in float32 up to 1e4)."""
    params = sj.Params(W1=jnp.array([[1.0, 0.5], [-1.0, 0.25]], dtype),
                       b1=jnp.array([0.0, -1.0], dtype), W2=jnp.array([[2.0, 3.0]], dtype),
                       b2=jnp.asarray(z2 - 5.0, dtype), W=jnp.array([[0.5, 0.25]], dtype))
    return params, jnp.array([1.0, 2.0], dtype)


@pytest.mark.parametrize("z2", [1e4, -1e4, 1e3, -1e3, 100.0, -100.0])
@pytest.mark.parametrize("y", [0.0, 1.0])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_bce_saturated_logits_are_finite_and_exact(z2, y, dtype):
    """|z2| up to 1e4, both labels: bce_loss, example_bce_loss, manual_grad_bce (and jax.grad)
    are finite; the loss equals the float64 log-sigmoid reference (|z2| when the label is
    wrong, ~e^-|z2| when right); the gradient equals the analytic (sigmoid(z2) - y) dz2/dtheta,
    with dz2/dtheta = 1 (b2), a1 (W2), x (W), W2 1{z1 > 0} (b1), (W2 1{z1 > 0}) x^T (W1). The
    off unit's entries are exactly 0."""
    rtol = 1e-12 if dtype == jnp.float64 else 1e-6
    with jax.enable_x64(dtype == jnp.float64):
        params, x = saturated_problem(z2, dtype)
        X, Y = jnp.asarray(np.asarray(x)[None, :]), jnp.asarray([y], dtype)
        z1, z2_got = np_logits(**as_numpy(params), X=X)
        assert z2_got[0] == z2 and list(z1[0]) == [2.0, -1.5]
        losses = [bce_loss(params, X, Y), example_bce_loss(params, x, jnp.asarray(y, dtype))]
        grads = [manual_grad_bce(params, X, Y), auto_grad_bce(params, X, Y),
                 auto_example_grad_bce(params, x, jnp.asarray(y, dtype))]
    for v in losses + [leaf for g in grads for leaf in g]:
        assert v.dtype == np.dtype(dtype) and bool(np.all(np.isfinite(np.asarray(v))))
    want = np_bce_loss(**as_numpy(params), X=X, Y=Y)
    if (z2 > 0) != (y == 1.0):
        assert want == pytest.approx(abs(z2), rel=1e-15)  # e.g. z2 = 1e4, y = 0: J = 1e4
    for v in losses:
        np.testing.assert_allclose(float(v), want, rtol=rtol, atol=rtol * abs(z2))
    # dL/dz2 = sigmoid(z2) - y = (1 - y) sigmoid(z2) - y sigmoid(-z2): +-1 or +-e^-|z2|,
    # written without cancellation (e^-100 is representable in float64)
    delta = (1 - y) * np.exp(np_log_sigmoid(z2)) - y * np.exp(np_log_sigmoid(-z2))
    on = np.array([1.0, 0.0])
    W2 = np.array([2.0, 3.0])
    xs = np.array([1.0, 2.0])
    expected = sj.Params(W1=delta * np.outer(W2 * on, xs), b1=delta * W2 * on,
                         W2=delta * np.array([[2.0, 0.0]]), b2=np.asarray(delta),
                         W=delta * xs[None, :])
    for g in grads:
        assert_grads_close(g, jax.tree.map(lambda a: np.asarray(a, dtype), expected), rtol=rtol)
        assert float(g.b1[1]) == 0.0 and float(g.W2[0, 1]) == 0.0
        np.testing.assert_array_equal(np.asarray(g.W1[1]), np.zeros(2))


def test_bce_mixed_labels_at_saturation():
    """A batch with both labels at z2 = +-1e4 (float32): the mean loss is 1e4 * (wrong labels) /
    n and the gradient sums only the misclassified examples' (sigmoid(z2) - y) = +-1 terms."""
    W1 = jnp.eye(2)
    params = sj.Params(W1=W1, b1=jnp.zeros(2), W2=jnp.zeros((1, 2)), b2=jnp.array(0.0),
                       W=jnp.array([[1e4, -1e4]]))
    X = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # z2 = 1e4, 1e4, -1e4, -1e4
    Y = jnp.array([0.0, 1.0, 0.0, 1.0])                              # wrong, right, right, wrong
    assert float(bce_loss(params, X, Y)) == pytest.approx(np_bce_loss(**as_numpy(params), X=X,
                                                                      Y=Y), rel=1e-6)
    assert float(bce_loss(params, X, Y)) == pytest.approx(1e4 / 2, rel=1e-6)
    g = manual_grad_bce(params, X, Y)
    # dJ/dz2 per example: (1, 0, 0, -1) / 4; dW = sum_i delta_i x_i = (1/4, -1/4)
    np.testing.assert_allclose(np.asarray(g.W), [[0.25, -0.25]], rtol=1e-6)
    assert float(g.b2) == 0.0
    np.testing.assert_allclose(np.asarray(g.W2), [[0.25, -0.25]], rtol=1e-6)
    for name in FIELDS:
        assert bool(np.all(np.isfinite(np.asarray(getattr(g, name))))), name


def test_a_confident_right_answer_keeps_its_small_loss_and_gradient_in_float32():
    """z2 = 20, y = 1: loss = softplus(-20) = 2.06e-9 and dL/dz2 = -sigmoid(-20), which the
    forms softplus(z2) - y z2 and y_hat - y would round to 0 in float32."""
    params = sj.Params(W1=jnp.zeros((1, 1)), b1=jnp.zeros(1), W2=jnp.zeros((1, 1)),
                       b2=jnp.array(20.0), W=None)
    X, Y = jnp.ones((1, 1)), jnp.ones(1)
    want = float(np.log1p(np.exp(-20.0)))
    np.testing.assert_allclose(float(bce_loss(params, X, Y)), want, rtol=1e-6)
    np.testing.assert_allclose(float(manual_grad_bce(params, X, Y).b2), -want, rtol=1e-5)

"""Params, init, parameter count, forward/loss against NumPy, jit, and every bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shortcut_jax as sj
from shortcut_jax.model import num_normals, params_from_normals, shortcut_w_scale
from tests.reference import np_loss


@pytest.mark.parametrize("shortcut", [False, True])
@pytest.mark.parametrize("d", [1, 2, 7, 30])
@pytest.mark.parametrize("h", [1, 3, 16, 128])
def test_num_params_is_the_closed_form_and_matches_the_pytree(d, h, shortcut):
    closed_form = (d + 1) * h + (h + 1) + d if shortcut else (d + 1) * h + (h + 1)
    assert sj.num_params(d, h, shortcut=shortcut) == closed_form
    params = sj.init_params(jax.random.key(0), d, h, shortcut=shortcut)
    assert sj.count_params(params) == closed_form


def test_params_shapes_and_names():
    p = sj.init_params(jax.random.key(1), d=3, h=5)
    assert p._fields == ("W1", "b1", "W2", "b2", "W")
    assert [leaf.shape for leaf in p] == [(5, 3), (5,), (1, 5), (), (1, 3)]
    assert all(leaf.dtype == jnp.float32 for leaf in p)
    assert sj.init_params(jax.random.key(1), 3, 5, shortcut=False).W is None


def test_init_is_paired_between_plain_and_shortcut():
    key = jax.random.key(42)
    plain = sj.init_params(key, 4, 8, shortcut=False)
    shortcut = sj.init_params(key, 4, 8, shortcut=True)
    for name in ("W1", "b1", "W2", "b2"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(shortcut, name))
    np.testing.assert_array_equal(shortcut.W, np.zeros((1, 4)))
    drawn = sj.init_params(key, 4, 8, shortcut_init="lecun")
    np.testing.assert_array_equal(drawn.W1, plain.W1)
    assert float(jnp.abs(drawn.W).sum()) > 0
    half = sj.init_params(key, 4, 8, shortcut_init="lecun", shortcut_scale=0.5)
    np.testing.assert_allclose(half.W, 0.5 * drawn.W, rtol=1e-6)
    assert not np.signbit(shortcut.W).any()  # +0.0, not -0.0


def test_a_traced_shortcut_scale_gives_the_static_inits():
    """The sweep passes W's scale as data: one program, bitwise the static initialisations."""
    key, d, h = jax.random.key(5), 3, 4
    z = jax.random.normal(key, (num_normals(d, h),))
    from_scale = jax.jit(lambda z, s: params_from_normals(z, d, h, w_scale=s))
    for init, scale in (("zeros", 1.0), ("lecun", 1.0), ("lecun", 0.25)):
        want = sj.init_params(key, d, h, shortcut_init=init, shortcut_scale=scale)
        got = from_scale(z, jnp.float32(shortcut_w_scale(init, scale)))
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("h", [1, 4, 16, 63])
def test_params_from_a_wider_draw_equal_init_params(h):
    """The sweep draws once at its widest width: a prefix of that draw is init_params' draw,
    bitwise, eagerly and under jit."""
    key, d = jax.random.key(7), 3
    wide = jax.random.normal(key, (num_normals(d, 64),))
    for shortcut_init in ("zeros", "lecun"):
        want = sj.init_params(key, d, h, shortcut_init=shortcut_init)
        s = shortcut_w_scale(shortcut_init)
        got = params_from_normals(wide, d, h, w_scale=s)
        jitted = jax.jit(lambda z, s=s: params_from_normals(z, d, h, w_scale=s))(wide)
        for w, g, j in zip(want, got, jitted):
            np.testing.assert_array_equal(g, w)
            np.testing.assert_array_equal(j, w)


def test_params_from_normals_refuses_too_few_draws():
    with pytest.raises(ValueError, match=r"z: expected a floating 1-D array of at least 14 "
                                         r"normals for d=2, h=4, got float32\[13\]"):
        params_from_normals(jnp.zeros(13), 2, 4)
    with pytest.raises(TypeError, match=r"z: expected an array of standard normals, got "
                                        r"NoneType"):
        params_from_normals(None, 2, 4)


def test_init_scale_is_he_and_lecun():
    """Sample std of W1 ~ sqrt(2/d) and of W2 ~ sqrt(1/h) (loose: a statistical check)."""
    p = sj.init_params(jax.random.key(3), d=50, h=400)
    np.testing.assert_allclose(float(jnp.std(p.W1)), np.sqrt(2 / 50), rtol=0.05)
    np.testing.assert_allclose(float(jnp.std(p.W2)), np.sqrt(1 / 400), rtol=0.15)
    assert float(jnp.abs(p.b1).sum()) == 0.0 and float(p.b2) == 0.0


@pytest.mark.parametrize("shortcut", [False, True])
def test_forward_predict_loss_match_numpy(shortcut, x64):
    params = sj.init_params(jax.random.key(5), 3, 6, shortcut=shortcut, dtype=jnp.float64,
                            shortcut_init="lecun")
    params = params._replace(b1=0.1 * jnp.arange(6.0), b2=jnp.array(-0.2))
    X = jax.random.normal(jax.random.key(6), (11, 3), jnp.float64)
    Y = (X[:, 0] > 0).astype(jnp.float64)
    args = {k: (None if v is None else np.asarray(v)) for k, v in params._asdict().items()}
    np.testing.assert_allclose(float(sj.loss(params, X, Y)), np_loss(**args, X=X, Y=Y),
                               rtol=1e-12)
    y_hat = sj.predict(params, X)
    assert y_hat.shape == (11,)
    for i in range(11):
        np.testing.assert_allclose(float(sj.forward(params, X[i])), float(y_hat[i]), rtol=1e-12)
        np.testing.assert_allclose(float(sj.example_loss(params, X[i], Y[i])),
                                   np_loss(**args, X=X[i:i + 1], Y=Y[i:i + 1]), rtol=1e-12)


def test_integer_labels_are_accepted():
    p = sj.init_params(jax.random.key(0), 2, 3)
    X = jnp.ones((4, 2))
    Yi = jnp.array([0, 1, 1, 0])
    assert float(sj.loss(p, X, Yi)) == float(sj.loss(p, X, Yi.astype(jnp.float32)))


def test_jit_and_no_jit_agree():
    p = sj.init_params(jax.random.key(0), 5, 7, shortcut_init="lecun")
    X = jax.random.normal(jax.random.key(1), (20, 5))
    Y = (X[:, 1] > 0).astype(jnp.float32)
    np.testing.assert_allclose(jax.jit(sj.loss)(p, X, Y), sj.loss(p, X, Y), rtol=1e-6)
    for a, b in zip(jax.jit(sj.manual_grad)(p, X, Y), sj.manual_grad(p, X, Y)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_jitted_loss_and_manual_grad_trace_once():
    loss = jax.jit(chex.assert_max_traces(sj.loss, n=1))
    grad = jax.jit(chex.assert_max_traces(sj.manual_grad, n=1))
    p = sj.init_params(jax.random.key(0), 3, 4)
    for i in range(4):
        X = jax.random.normal(jax.random.key(i), (10, 3))
        Y = (X[:, 0] > 0).astype(jnp.float32)
        p = jax.tree.map(lambda a, g: a - 0.1 * g, p, grad(p, X, Y))
        loss(p, X, Y)
    chex.clear_trace_counter()


# --- bad input: a clear error naming the argument, what was expected and what was given ----

P = sj.init_params(jax.random.key(0), 3, 4)
X3 = jnp.ones((5, 3))
Y5 = jnp.zeros(5)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: sj.forward(P, jnp.ones(2)), ValueError, r"x: expected shape \(d,\) = \(3,\), got \(2,\)"),
        (lambda: sj.forward(P, jnp.ones((2, 3))), ValueError, r"x: .*use predict"),
        (lambda: sj.predict(P, jnp.ones((5, 2))), ValueError, r"X: expected 3 features.*\(5, 2\)"),
        (lambda: sj.predict(P, jnp.ones(3)), ValueError, r"X: expected a 2-D array.*got shape \(3,\)"),
        (lambda: sj.loss(P, X3, jnp.zeros((5, 1))), ValueError, r"Y: expected shape \(n,\) = \(5,\).*\(5, 1\)"),
        (lambda: sj.loss(P, X3, jnp.zeros(4)), ValueError, r"Y: expected shape \(n,\) = \(5,\).*\(4,\)"),
        (lambda: sj.manual_grad(P, X3, jnp.zeros((5, 1))), ValueError, r"Y: .*\(5, 1\)"),
        (lambda: sj.manual_grad(P, jnp.ones((5, 4)), Y5), ValueError, r"X: expected 3 features"),
        (lambda: sj.manual_example_grad(P, jnp.ones(4), 1.0), ValueError, r"x: expected shape"),
        (lambda: sj.manual_example_grad(P, jnp.ones(3), jnp.ones(2)), ValueError, r"y: expected a scalar"),
        (lambda: sj.example_loss(P, jnp.ones(3), jnp.ones(1)), ValueError, r"y: expected a scalar"),
        (lambda: sj.loss(P, jnp.ones((5, 3), jnp.int32), Y5), TypeError, r"X: expected a floating dtype, got int32"),
        (lambda: sj.forward(P, jnp.ones(3, jnp.int32)), TypeError, r"x: expected a floating dtype"),
        (lambda: sj.loss(P._replace(W1=P.W1.astype(jnp.int32)), X3, Y5), TypeError, r"params.W1: expected a floating dtype"),
        (lambda: sj.loss(P._replace(b1=jnp.zeros(5)), X3, Y5), ValueError, r"params.b1: expected shape \(4,\).*got \(5,\)"),
        (lambda: sj.loss(P._replace(W2=jnp.zeros((4,))), X3, Y5), ValueError, r"params.W2: expected shape \(1, 4\)"),
        (lambda: sj.loss(P._replace(b2=jnp.zeros(1)), X3, Y5), ValueError, r"params.b2: expected shape \(\)"),
        (lambda: sj.loss(P._replace(W=jnp.zeros((1, 2))), X3, Y5), ValueError, r"params.W: expected shape \(1, 3\)"),
        (lambda: sj.loss(P._replace(W1=jnp.zeros(3)), X3, Y5), ValueError, r"params.W1: expected shape \(h, d\)"),
        (lambda: sj.loss(P._replace(b1=None), X3, Y5), ValueError, r"params.b1: expected an array"),
        (lambda: sj.loss(tuple(P), X3, Y5), TypeError, r"params: expected a shortcut_jax.Params"),
        (lambda: sj.loss(P, jnp.ones((0, 3)), jnp.zeros(0)), ValueError, r"X: expected at least one"),
        (lambda: sj.init_params(jax.random.key(0), 0, 4), ValueError, r"d: expected an integer >= 1, got 0"),
        (lambda: sj.init_params(jax.random.key(0), 3, -2), ValueError, r"h: expected an integer >= 1, got -2"),
        (lambda: sj.init_params(jax.random.key(0), 3, 2.5), ValueError, r"h: expected an integer >= 1, got 2.5"),
        (lambda: sj.init_params(jax.random.key(0), 3, 4, dtype=jnp.int32), TypeError, r"dtype: expected a floating"),
        (lambda: sj.init_params(jax.random.key(0), 3, 4, shortcut_init="ones"), ValueError, r"shortcut_init: expected one of \('zeros', 'lecun'\), got 'ones'"),
        (lambda: sj.init_params(jax.random.key(0), 3, 4, shortcut_init="lecun", shortcut_scale=-1.0), ValueError, r"shortcut_scale: expected a finite number >= 0, got -1.0"),
        (lambda: sj.num_params(0, 4), ValueError, r"d: expected an integer >= 1"),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_bad_input_raises_at_trace_time_under_jit():
    with pytest.raises(ValueError, match=r"Y: expected shape \(n,\) = \(5,\)"):
        jax.jit(sj.manual_grad)(P, X3, jnp.zeros((5, 1)))
    with pytest.raises(ValueError, match=r"X: expected 3 features"):
        jax.jit(sj.loss)(P, jnp.ones((5, 2)), Y5)

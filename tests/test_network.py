"""The network family (network.py) and its hand-written backprop (netgrads.py).

At depth 1 with ReLU the general functions give the problem's numbers bit for bit; for every
depth <= 4, activation, variant and loss the hand-written gradient equals jax.grad (float32 and
float64, hypothesis-drawn), passes jax.test_util.check_grads as a custom VJP, and equals central
finite differences of the independent NumPy J (tests/netreference.py) away from kinks.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import shortcut_jax as sj
from shortcut_jax import netgrads as ng
from shortcut_jax import network as nw
from tests.netreference import np_net_central_diff, np_net_logits

ACTS = tuple(nw.ACTIVATIONS)
SETTINGS = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def random_net(seed, d, h, depth, n, scale, variant, dtype):
    """Weights scale * N(0, 1/fan-in), biases scale/2 * N(0, 1), x ~ N(0, I), 0/1 labels
    (NumPy draws, as jnp arrays)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)

    def draw(shape, fan_in=1.0, s=scale):
        return jnp.asarray((s / np.sqrt(fan_in) * rng.standard_normal(shape)).astype(dt))

    _, shortcut = nw.variant_parts(variant)
    params = nw.NetParams(
        Ws=tuple(draw((h, d if k == 0 else h), d if k == 0 else h) for k in range(depth)),
        bs=tuple(draw((h,), s=scale / 2) for _ in range(depth)),
        Wo=draw((1, h), h), bo=draw(()), W=draw((1, d), d) if shortcut else None)
    X = jnp.asarray(rng.standard_normal((n, d)).astype(dt))
    Y = jnp.asarray(rng.integers(0, 2, n).astype(dt))
    return params, X, Y


def kw(activation, variant, loss_fn):
    return dict(activation=activation, residual=nw.variant_parts(variant)[0], loss_fn=loss_fn)


def leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


# --- depth 1 with ReLU is the problem's network ------------------------------------------------


@pytest.mark.parametrize("d", [2, 7])  # d <= SMALL_D and d > SMALL_D take different paths
@pytest.mark.parametrize("shortcut", [False, True])
def test_depth_one_relu_equals_the_problem_exactly(d, shortcut):
    p = sj.init_params(jax.random.key(d), d, 5, shortcut=shortcut, shortcut_init="lecun")
    p = p._replace(b1=jnp.linspace(-0.3, 0.3, 5), b2=jnp.asarray(0.2, jnp.float32))
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.standard_normal((40, d)), jnp.float32)
    Y = jnp.asarray(rng.integers(0, 2, 40), jnp.float32)
    q = nw.to_net(p)
    problem = {"mse": (sj.loss, sj.manual_grad), "bce": (sj.bce_loss, sj.manual_grad_bce)}
    for loss_fn, (J, G) in problem.items():
        got = jax.jit(lambda q, X, Y, lf=loss_fn: (
            nw.net_loss(q, X, Y, loss_fn=lf), ng.net_manual_grad(q, X, Y, loss_fn=lf)))(q, X, Y)
        want = jax.jit(lambda p, X, Y, J=J, G=G: (J(p, X, Y), nw.to_net(G(p, X, Y))))(p, X, Y)
        for a, b in zip(leaves(got), leaves(want), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=loss_fn)
    np.testing.assert_array_equal(nw.net_predict(q, X), sj.predict(p, X))
    np.testing.assert_array_equal(nw.net_forward(q, X[0]), sj.forward(p, X[0]))
    ex = ng.net_manual_example_grad(q, X[0], Y[0])
    for a, b in zip(leaves(ex), leaves(nw.to_net(sj.manual_example_grad(p, X[0], Y[0])))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # batch-of-one vs vector form
    assert nw.from_net(q) == p


def test_depth_one_init_is_the_problems():
    for shortcut, variant in ((False, "plain"), (True, "shortcut")):
        want = sj.init_params(jax.random.key(3), 3, 6, shortcut=shortcut, shortcut_init="lecun")
        got = nw.net_init(jax.random.key(3), 3, 6, 1, variant=variant, w_scale=1.0)
        for a, b in zip(leaves(got), leaves(nw.to_net(want)), strict=True):
            np.testing.assert_array_equal(a, b)


def test_deeper_init_shares_the_first_layers_and_adds_he_normal_layers():
    shallow = nw.net_init(jax.random.key(1), 2, 64, 1)
    deep = nw.net_init(jax.random.key(1), 2, 64, 3, variant="residual+shortcut")
    np.testing.assert_array_equal(deep.Ws[0], shallow.Ws[0])
    np.testing.assert_array_equal(deep.Wo, shallow.Wo)
    for Wk in deep.Ws[1:]:
        assert Wk.shape == (64, 64)
        assert abs(float(jnp.std(Wk)) - np.sqrt(2 / 64)) < 0.1 * np.sqrt(2 / 64)
    assert not np.array_equal(deep.Ws[1], deep.Ws[2])


@pytest.mark.parametrize("d, h, depth", [(1, 1, 1), (2, 16, 1), (3, 5, 2), (7, 4, 4)])
@pytest.mark.parametrize("variant", nw.VARIANTS)
def test_parameter_count_closed_form_matches_the_pytree(d, h, depth, variant):
    params = nw.net_init(jax.random.key(0), d, h, depth, variant=variant)
    # written out: layer 1, the L-1 hidden layers, the output layer, the shortcut
    by_hand = h * d + h + (depth - 1) * (h * h + h) + h + 1 + (d if "shortcut" in variant else 0)
    assert nw.num_net_params(d, h, depth, variant) == nw.count_net_params(params) == by_hand
    if depth == 1 and not variant.startswith("residual"):
        assert by_hand == sj.num_params(d, h, shortcut=variant == "shortcut")


# --- hand-written gradient vs jax.grad ----------------------------------------------------------

SCALES = (0.3, 1.0, 2.0)
GRADS = {}


def grads_over_scales(activation, residual, loss_fn):
    """jit of lax.map over parameter sets stacked on a leading axis (one compile per static
    setting and shape): (manual, jax.grad, term scale) of each set. The term scale of a leaf,
    max_j mean_i |dL_i/dtheta_j| (jax.grad per example), is the size of the terms the batch
    gradient sums: summation order cannot change an entry by more than rtol times it."""
    key = (activation, residual, loss_fn)
    if key not in GRADS:
        k = dict(activation=activation, residual=residual, loss_fn=loss_fn)

        def one(p, X, Y):
            per = jax.vmap(lambda x, y: jax.grad(nw.net_loss)(p, x[None], y[None], **k))(X, Y)
            scale = jax.tree.map(lambda g: jnp.max(jnp.mean(jnp.abs(g), axis=0)), per)
            return ng.net_manual_grad(p, X, Y, **k), jax.grad(nw.net_loss)(p, X, Y, **k), scale

        GRADS[key] = jax.jit(lambda ps, X, Y: jax.lax.map(lambda p: one(p, X, Y), ps))
    return GRADS[key]


cases = st.fixed_dictionaries(dict(
    seed=st.integers(0, 2**31 - 1), d=st.integers(1, 6), h=st.integers(1, 8),
    depth=st.integers(1, 4), n=st.integers(1, 16),
    activation=st.sampled_from(ACTS), variant=st.sampled_from(nw.VARIANTS),
    loss_fn=st.sampled_from(nw.LOSS_FNS), dtype=st.sampled_from(["float32", "float64"])))


@settings(SETTINGS, max_examples=20)
@given(cases)
def test_manual_grad_matches_jax_grad(case):
    """|manual - jax.grad| <= rtol |jax.grad| + rtol s per entry, s the leaf's term scale;
    rtol 1e-10 in float64, 1e-5 in float32. Depth <= 4, every activation, variant and loss,
    each case at the weight scales SCALES (one compile per case)."""
    c = dict(case)
    dtype = c.pop("dtype")
    k = kw(c.pop("activation"), c["variant"], c.pop("loss_fn"))
    rtol = 1e-10 if dtype == "float64" else 1e-5
    with jax.enable_x64(dtype == "float64"):
        sets = [random_net(c["seed"], c["d"], c["h"], c["depth"], c["n"], s, c["variant"], dtype)
                for s in SCALES]
        stacked = jax.tree.map(lambda *a: jnp.asarray(np.stack(a)), *[p for p, _, _ in sets])
        _, X, Y = sets[0]
        manual, auto, scale = grads_over_scales(**k)(stacked, X, Y)
    assert jax.tree.structure(manual) == jax.tree.structure(auto)
    for m, a, s in zip(leaves(manual), leaves(auto), leaves(scale), strict=True):
        assert m.dtype == a.dtype == np.dtype(dtype) and m.shape == a.shape
        for i in range(len(SCALES)):
            np.testing.assert_allclose(m[i], a[i], rtol=rtol,
                                       atol=rtol * float(s[i]) + np.finfo(a.dtype).tiny)


def test_manual_example_grad_is_the_mean_of_the_batch(x64):
    params, X, Y = random_net(4, 3, 5, 3, 9, 1.0, "residual+shortcut", "float64")
    k = kw("tanh", "residual+shortcut", "bce")
    per = jax.jit(jax.vmap(lambda x, y: ng.net_manual_example_grad(params, x, y, **k)))(X, Y)
    mean = jax.tree.map(lambda g: np.mean(np.asarray(g), axis=0), per)
    for a, b in zip(leaves(ng.net_manual_grad(params, X, Y, **k)), leaves(mean)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


# --- as a custom VJP, and against finite differences of the NumPy reference ------------------


@pytest.mark.parametrize("activation, variant", list(itertools.product(ACTS, nw.VARIANTS)))
def test_manual_grad_passes_check_grads_as_a_custom_vjp(activation, variant, x64):
    """jax.test_util.check_grads (reverse mode, float64) of J whose VJP is net_manual_grad,
    depth 3, both losses, at the first seed whose |z_k| all exceed 1e-2 (away from kinks)."""
    residual = nw.variant_parts(variant)[0]
    for seed in range(100):
        params, X, Y = random_net(seed, 3, 4, 3, 6, 1.0, variant, "float64")
        zs, _ = np_net_logits(*params, X, activation, residual)
        if min(float(np.min(np.abs(z))) for z in zs) > 1e-2:
            break
    for loss_fn in nw.LOSS_FNS:
        J = ng.loss_with_manual_vjp(X, Y, activation=activation, residual=residual,
                                    loss_fn=loss_fn)
        check_grads(J, (params,), order=1, modes=("rev",))


def test_check_grads_catches_a_wrong_vjp(x64):
    """The check above can fail: a VJP off by 1% in one leaf is refused."""
    params, X, Y = random_net(11, 3, 4, 3, 6, 1.0, "residual", "float64")

    @jax.custom_vjp
    def J(p):
        return nw.net_loss(p, X, Y, activation="tanh", residual=True)

    def bwd(p, g):
        grad = ng.net_manual_grad(p, X, Y, activation="tanh", residual=True)
        return (jax.tree.map(lambda t: g * t, grad._replace(Wo=1.01 * grad.Wo)),)

    J.defvjp(lambda p: (J(p), p), bwd)
    with pytest.raises(AssertionError):
        check_grads(J, (params,), order=1, modes=("rev",))


def as_leaves(params):
    f = lambda a: None if a is None else np.asarray(a, np.float64)  # noqa: E731
    return {"Ws": [f(a) for a in params.Ws], "bs": [f(a) for a in params.bs],
            "Wo": f(params.Wo), "bo": f(params.bo), "W": f(params.W)}


small_cases = st.fixed_dictionaries(dict(
    seed=st.integers(0, 2**31 - 1), d=st.integers(1, 3), h=st.integers(1, 4),
    depth=st.integers(1, 4), n=st.integers(1, 6), scale=st.sampled_from([0.5, 1.0, 2.0]),
    activation=st.sampled_from(ACTS), variant=st.sampled_from(nw.VARIANTS),
    loss_fn=st.sampled_from(nw.LOSS_FNS)))


@settings(SETTINGS, max_examples=20)
@given(small_cases)
def test_manual_grad_matches_finite_differences_of_numpy_reference(case):
    """float64, eps 1e-6, rtol 1e-6, atol 1e-8 max(1, max |fd|). For relu and leaky_relu a
    case with some |z_k| < 1e-3 is skipped (counted by hypothesis as a rejected example): a
    step of 1e-6 in a weight cannot cross the kink from there in these small nets."""
    c = dict(case)
    k = kw(c["activation"], c["variant"], c["loss_fn"])
    with jax.enable_x64(True):
        params, X, Y = random_net(c["seed"], c["d"], c["h"], c["depth"], c["n"], c["scale"],
                                  c["variant"], "float64")
        zs, _ = np_net_logits(*params, X, k["activation"], k["residual"])
        if k["activation"] in nw.KINKED:
            from hypothesis import assume
            assume(min(float(np.min(np.abs(z))) for z in zs) > 1e-3)
        manual = ng.net_manual_grad(params, X, Y, **k)
    fd = np_net_central_diff(as_leaves(params), np.asarray(X), np.asarray(Y), k["activation"],
                             k["residual"], k["loss_fn"])
    ref = jax.tree.leaves(nw.NetParams(Ws=tuple(fd["Ws"]), bs=tuple(fd["bs"]), Wo=fd["Wo"],
                                       bo=fd["bo"], W=fd["W"]))
    for m, f in zip(leaves(manual), ref, strict=True):
        np.testing.assert_allclose(m, f, rtol=1e-6, atol=1e-8 * max(1.0, float(np.max(np.abs(f)))))


# --- kinks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation, slope", [("relu", 0.0), ("leaky_relu", nw.LEAKY_SLOPE)])
@pytest.mark.parametrize("residual", [False, True])
def test_kink_takes_the_left_derivative(activation, slope, residual, x64):
    """z_2[0] = 2*1 - 1*2 + 0 = 0 exactly at layer 2: phi'(0) is the left slope (0 for ReLU,
    0.01 for leaky ReLU), so dL/db_2[0] = slope * dL/da_2[0], by hand and by jax.grad."""
    params = nw.NetParams(Ws=(jnp.eye(2), jnp.array([[2.0, -1.0], [0.5, 0.25]])),
                          bs=(jnp.zeros(2), jnp.zeros(2)), Wo=jnp.array([[1.5, -0.7]]),
                          bo=jnp.array(0.1), W=jnp.array([[0.3, -0.2]]))
    X, Y = jnp.array([[1.0, 2.0]]), jnp.array([1.0])
    k = dict(activation=activation, residual=residual)
    fwd = nw.net_forward_columns(params, X, **k)
    assert float(fwd.zs[1][0, 0]) == 0.0
    y_hat = float(fwd.y_hat[0])
    delta = (y_hat - 1.0) * (1 - y_hat) * y_hat                      # dL/dz_o
    dL_da2 = delta * 1.5                                              # W_o[0, 0]
    for g in (ng.net_manual_grad(params, X, Y, **k), jax.grad(nw.net_loss)(params, X, Y, **k)):
        np.testing.assert_allclose(float(g.bs[1][0]), slope * dL_da2, rtol=1e-14, atol=0)
        np.testing.assert_allclose(np.asarray(g.Ws[1][0]), slope * dL_da2 * np.array([1.0, 2.0]),
                                   rtol=1e-14, atol=0)
        if slope == 0.0:
            assert float(g.bs[1][0]) == 0.0 and not np.any(np.asarray(g.Ws[1][0]))


# --- bad values ---------------------------------------------------------------------------------


def test_bad_values_are_named():
    params, X, Y = random_net(0, 2, 3, 2, 4, 1.0, "shortcut", "float32")
    with pytest.raises(ValueError, match=r"activation: expected one of \['relu', 'leaky_relu', "
                                         r"'tanh', 'softplus', 'erf'\], got 'gelu'"):
        nw.net_loss(params, X, Y, activation="gelu")
    with pytest.raises(ValueError, match=r"variant: expected one of .*got 'skip'"):
        nw.num_net_params(2, 3, 2, "skip")
    with pytest.raises(ValueError, match=r"depth: expected an integer >= 1, got 0"):
        nw.num_net_params(2, 3, 0)
    with pytest.raises(ValueError, match=r"loss_fn: expected one of \('mse', 'bce'\), got 'l1'"):
        ng.net_manual_grad(params, X, Y, loss_fn="l1")
    with pytest.raises(ValueError, match=r"params.Ws\[1\]: expected shape \(3, 3\) to match "
                                         r"Ws\[0\] of shape \(3, 2\), got \(3, 2\)"):
        nw.net_loss(params._replace(Ws=(params.Ws[0], params.Ws[0])), X, Y)
    with pytest.raises(ValueError, match=r"params: expected as many biases"):
        nw.net_loss(params._replace(bs=params.bs[:1]), X, Y)
    with pytest.raises(ValueError, match=r"params: expected depth 1"):
        nw.from_net(params)
    with pytest.raises(TypeError, match=r"params: expected a shortcut_jax.network.NetParams"):
        nw.net_loss(nw.from_net(nw.net_init(jax.random.key(0), 2, 3, 1)), X, Y)

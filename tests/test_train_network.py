"""Training the network family (TrainConfig depth, activation, residual): the network engine at
depth 1 with ReLU reproduces the problem's engine, deeper networks train with the hand-written
gradient as with jax.grad, and every variant of a key starts from the same weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shortcut_jax as sj
from shortcut_jax import network as nw
from shortcut_jax.train import TrainConfig, draw, make_stages, make_train


def dataset(dtype=np.float32, d=2, seed=0):
    rng = np.random.default_rng(seed)
    parts = []
    for n in (48, 16, 20):
        X = rng.standard_normal((n, d)).astype(dtype)
        parts += [X, (X[:, 0] * X[:, -1] > 0).astype(dtype)]
    return sj.Dataset(*parts)


@pytest.mark.parametrize("loss_fn, optimizer, batch_size", [("mse", "sgd", None),
                                                            ("bce", "adam", 16)])
def test_network_engine_at_depth_one_equals_the_problems(loss_fn, optimizer, batch_size):
    """The same runs (mse/sgd full batch; bce/adam minibatches) through model.py/grads.py and
    through network.py/netgrads.py (network=True): equal within float32 rounding."""
    data = dataset()
    kw = dict(h=6, steps=30, eval_every=10, loss_fn=loss_fn, optimizer=optimizer,
              batch_size=batch_size, shortcut_init="lecun")
    key, lr = jax.random.key(5), jnp.float32(0.3)
    p_old, m_old = jax.jit(make_train(TrainConfig(**kw)))(key, lr, data)
    p_new, m_new = jax.jit(make_train(TrainConfig(**kw, network=True)))(key, lr, data)
    assert isinstance(p_new, nw.NetParams)
    for a, b in zip(jax.tree.leaves(nw.to_net(p_old)), jax.tree.leaves(p_new), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    same = {"grad_norm_Wo": "grad_norm_W2", "grad_norm_bo": "grad_norm_b2"}
    assert {same.get(k, k) for k in m_new} == set(m_old)
    for k in m_new:
        np.testing.assert_allclose(m_new[k], m_old[same.get(k, k)], rtol=1e-6, atol=1e-7,
                                   err_msg=k)


def test_deep_network_trains_with_manual_grad_as_with_jax_grad(x64):
    """Depth 3, tanh, residual + shortcut, float64: the two gradients' trajectories agree."""
    data = dataset(np.float64, d=3)
    kw = dict(h=5, steps=40, eval_every=10, depth=3, activation="tanh", residual=True,
              shortcut_init="lecun", optimizer="momentum")
    key, lr = jax.random.key(1), jnp.float64(0.2)
    p_m, m_m = jax.jit(make_train(TrainConfig(**kw)))(key, lr, data)
    p_a, m_a = jax.jit(make_train(TrainConfig(**kw, grad="autodiff")))(key, lr, data)
    assert len(p_m.Ws) == 3 and p_m.W is not None
    assert float(m_m["train_loss"][-1]) < float(m_m["train_loss"][0])
    for a, b in zip(jax.tree.leaves(p_m), jax.tree.leaves(p_a), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    for k in m_m:
        np.testing.assert_allclose(m_m[k], m_a[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_every_variant_of_a_key_starts_from_the_same_weights():
    data = dataset()
    draws = draw(jax.random.key(2), 2, 4, jnp.float32, depth=3)
    starts = {}
    for variant in nw.VARIANTS:
        residual, shortcut = nw.variant_parts(variant)
        init, _ = make_stages(TrainConfig(h=4, depth=3, residual=residual, shortcut=shortcut,
                                          activation="erf"))
        starts[variant] = init(draws, jnp.float32(0.1), data).params
    for variant, p in starts.items():
        for a, b in zip(jax.tree.leaves(p._replace(W=None)),
                        jax.tree.leaves(starts["plain"]), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=variant)


@pytest.mark.parametrize("kw, message", [
    (dict(depth=0), r"depth: expected an integer >= 1, got 0"),
    (dict(depth=2.0), r"depth: expected an integer >= 1, got 2.0"),
    (dict(activation="gelu"), r"activation: expected one of \['relu', 'leaky_relu', 'tanh', "
                              r"'softplus', 'erf'\], got 'gelu'"),
    (dict(residual=True), r"residual: a depth-1 network has no skip between hidden layers"),
])
def test_bad_network_settings_are_named(kw, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(h=4, **kw)


def test_network_diagnostics_per_layer_against_numpy():
    """net_at_eval at depth 3 (ReLU, residual, shortcut) against NumPy: a unit of layer k is
    dead when z_k <= 0 on every row; overlaps are cosines of rows of W_k."""
    from shortcut_jax import diagnostics, netgrads
    from tests.netreference import np_net_logits

    rng = np.random.default_rng(0)
    h, d = 4, 2
    Ws = (rng.standard_normal((h, d)), rng.standard_normal((h, h)), rng.standard_normal((h, h)))
    Ws = tuple(W.astype(np.float32) for W in Ws)
    Ws[1][0] = -np.abs(Ws[1][0])  # unit 0 of layer 2: a_1 >= 0, so z_2[0] <= -0.1
    bs = (np.zeros(h, np.float32), np.full(h, -0.1, np.float32), np.zeros(h, np.float32))
    params = nw.NetParams(Ws=tuple(map(jnp.asarray, Ws)), bs=tuple(map(jnp.asarray, bs)),
                          Wo=jnp.asarray(rng.standard_normal((1, h)), jnp.float32),
                          bo=jnp.float32(0.2), W=jnp.asarray([[0.5, -0.3]], jnp.float32))
    X = jnp.asarray(rng.standard_normal((30, d)), jnp.float32)
    Y = (X[:, 0] > 0).astype(jnp.float32)
    fwd = nw.net_forward_columns(params, X, residual=True)
    g = netgrads.net_manual_grad(params, X, Y, residual=True)
    got = diagnostics.net_at_eval(params, g, X, fwd)
    zs, zo = np_net_logits(*params, np.asarray(X), "relu", True)
    dead = [np.all(z <= 0, axis=0) for z in zs]  # (h,) per layer, rows are examples here
    assert dead[1][0]  # ReLU outputs are >= 0, so a negative row with b < 0 is dead
    for k in range(3):
        np.testing.assert_allclose(got[f"dead_frac_{k + 1}"], dead[k].mean())
        U = Ws[k] / np.linalg.norm(Ws[k], axis=1, keepdims=True)
        cos = U @ U.T
        np.testing.assert_allclose(got[f"max_overlap_{k + 1}"], cos[~np.eye(h, dtype=bool)].max(),
                                   rtol=1e-5)
    np.testing.assert_allclose(got["dead_frac"], np.concatenate(dead).mean())
    a3 = np.maximum(zs[2], 0) + np.maximum(zs[1], 0) + np.maximum(zs[0], 0)
    skip = np.abs(np.asarray(X) @ np.asarray(params.W)[0])
    hidden = np.abs(a3 @ np.asarray(params.Wo)[0])
    np.testing.assert_allclose(got["shortcut_share"], np.mean(skip / (skip + hidden)), rtol=1e-5)
    assert {"grad_norm_W1", "grad_norm_W3", "grad_norm_b2", "grad_norm_Wo", "grad_norm_bo",
            "grad_norm_W"} <= set(got)
    np.testing.assert_allclose(got["grad_norm_W2"], np.linalg.norm(np.asarray(g.Ws[1])),
                               rtol=1e-6)

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
    assert set(m_new) <= set(m_old)
    for k in m_new:
        np.testing.assert_allclose(m_new[k], m_old[k], rtol=1e-6, atol=1e-7, err_msg=k)


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

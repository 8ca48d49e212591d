"""diagnostics.net_hessian: jax.hessian of the network family's J in float64, against the
problem's hand-written Hessian at depth 1 and central differences of the hand-written gradient
deeper."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import shortcut_jax as sj
from shortcut_jax import diagnostics
from shortcut_jax import netgrads as ng
from shortcut_jax import network as nw
from tests.test_network import random_net


@pytest.mark.parametrize("loss_fn", ["mse", "bce"])
@pytest.mark.parametrize("variant", ["plain", "shortcut"])
def test_net_hessian_at_depth_one_equals_hessian_by_hand(loss_fn, variant):
    sets = [random_net(s, 3, 4, 1, 12, 1.0, variant, "float64") for s in (1, 2)]
    X, Y = sets[0][1], sets[0][2]
    stacked = jax.tree.map(lambda *a: np.stack(a), *[p for p, _, _ in sets])  # 2 runs
    got = diagnostics.net_hessian(stacked, X, Y, loss_fn=loss_fn)
    want = diagnostics.hessian_by_hand(nw.from_net(stacked), X, Y, loss_fn)
    P = nw.num_net_params(3, 4, 1, variant)
    assert got.shape == want.shape == (2, P, P)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


def test_net_hessian_of_a_deep_net_equals_differences_of_the_manual_gradient(x64):
    """Depth 2, tanh, residual + shortcut: column j of H is (g(θ + ε e_j) − g(θ − ε e_j)) / 2ε
    of the hand-written gradient g (netgrads), ε = 1e-6, rtol 1e-6."""
    params, X, Y = random_net(3, 2, 3, 2, 10, 1.0, "residual+shortcut", "float64")
    k = dict(activation="tanh", residual=True, loss_fn="bce")
    H = diagnostics.net_hessian(params, X, Y, **k)
    flat, unravel = ravel_pytree(params)
    g = jax.jit(lambda v: ravel_pytree(ng.net_manual_grad(unravel(v), X, Y, **k))[0])
    eps = 1e-6
    fd = np.stack([(np.asarray(g(flat + eps * e)) - np.asarray(g(flat - eps * e))) / (2 * eps)
                   for e in np.eye(flat.size)], axis=1)
    assert H.shape == (flat.size, flat.size)
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max())
    np.testing.assert_array_equal(H, H.T)


def test_net_hessian_names_a_wrong_pytree():
    with pytest.raises(TypeError, match=r"params: expected a network.NetParams, got Params"):
        diagnostics.net_hessian(sj.init_params(jax.random.key(0), 2, 3), jnp.ones((4, 2)),
                                jnp.ones(4))

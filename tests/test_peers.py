"""The benchmark peers (shortcut_jax.peers) against an independent float64 NumPy reference."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from shortcut_jax import peers

M, N, D, H, T = 8, 64, 3, 5, 20
LR = 2.0  # large enough that 20 steps move every model's loss well past the tolerance

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method`:DeprecationWarning")

NAMES = [
    "numpy",
    "torch_func",
    "torch_bmm",
    "torch_bmm_manual",
    "torch_compile",
    "jax_naive",
    "jax_naive_sharded",
    "jax_python_loop",
    "jax_step_loop",
]


def ref_train(params, X, Y, lr, T):
    """Float64, one model at a time, explicit per-example formulas averaged over n."""
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y, np.float64)
    Mm = params["W1"].shape[0]
    lr = np.broadcast_to(np.asarray(lr, np.float64), (Mm,))
    shortcut = params["W"] is not None
    out = {k: [] for k in peers.FIELDS}
    losses = np.zeros(Mm)

    def run(W1, b1, W2, b2, W):
        y_hat = np.zeros(len(X))
        for i, x in enumerate(X):
            z1 = W1 @ x + b1
            z2 = W2[0] @ np.maximum(z1, 0.0) + b2 + (W[0] @ x if shortcut else 0.0)
            y_hat[i] = 1.0 / (1.0 + np.exp(-z2))
        return y_hat

    for m in range(Mm):
        W1 = params["W1"][m].astype(np.float64)
        b1 = params["b1"][m].astype(np.float64)
        W2 = params["W2"][m].astype(np.float64)
        b2 = float(params["b2"][m])
        W = params["W"][m].astype(np.float64) if shortcut else None
        for _ in range(T):
            g = {"W1": 0.0, "b1": 0.0, "W2": 0.0, "b2": 0.0, "W": 0.0}
            for x, y in zip(X, Y):
                z1 = W1 @ x + b1
                a1 = np.maximum(z1, 0.0)
                z2 = W2[0] @ a1 + b2 + (W[0] @ x if shortcut else 0.0)
                y_hat = 1.0 / (1.0 + np.exp(-z2))
                delta = (y_hat - y) * (1.0 - y_hat) * y_hat
                g["W2"] = g["W2"] + delta * a1[None, :]
                g["b2"] = g["b2"] + delta
                g["W"] = g["W"] + delta * x[None, :]
                db1 = delta * W2[0] * (z1 > 0)
                g["b1"] = g["b1"] + db1
                g["W1"] = g["W1"] + np.outer(db1, x)
            n = len(X)
            W1 = W1 - lr[m] * g["W1"] / n
            b1 = b1 - lr[m] * g["b1"] / n
            W2 = W2 - lr[m] * g["W2"] / n
            b2 = b2 - lr[m] * g["b2"] / n
            if shortcut:
                W = W - lr[m] * g["W"] / n
        losses[m] = np.mean(0.5 * (run(W1, b1, W2, b2, W) - Y) ** 2)
        for k, v in zip(peers.FIELDS, (W1, b1, W2, b2, W)):
            out[k].append(v)
    params_out = {k: (np.stack(v) if shortcut or k != "W" else None) for k, v in out.items()}
    return params_out, losses


def _case(shortcut, seed=0):
    params = peers.init_stacked(seed, M, D, H, shortcut, w_scale=0.5)
    rng = np.random.default_rng(seed + 100)
    params["b1"] = (0.3 * rng.standard_normal(params["b1"].shape)).astype(np.float32)
    params["b2"] = (0.3 * rng.standard_normal(params["b2"].shape)).astype(np.float32)
    X, Y = peers.make_data(seed + 1, N, D)
    return params, X, Y


_REF_CACHE = {}


def _ref(shortcut, lr_kind):
    key = (shortcut, lr_kind)
    if key not in _REF_CACHE:
        params, X, Y = _case(shortcut)
        lr = _lr(lr_kind)
        _REF_CACHE[key] = ref_train(params, X, Y, lr, T)
    return _REF_CACHE[key]


def _lr(kind):
    return LR if kind == "scalar" else np.linspace(0.5, 3.0, M).astype(np.float32)


_COMPILED = {}  # shortcut -> compiled torch step, so the suite compiles each graph once


def _run(name, params, X, Y, lr, T):
    if name.startswith("torch"):
        pytest.importorskip("torch")
    fn = peers.IMPLEMENTATIONS[name]
    if name != "torch_compile":
        return fn(params, X, Y, lr, T)
    key = params["W"] is not None
    if key not in _COMPILED:
        _COMPILED[key] = peers.make_torch_compile_step(params, X, Y, lr)[0]
    return fn(params, X, Y, lr, T, step=_COMPILED[key])


def test_reference_moves_and_matches_loss_formula():
    """The reference trains (losses change by far more than rtol) and its loss formula agrees
    with the vectorized float32 loss at the initial params."""
    params, X, Y = _case(True)
    _, final = _ref(True, "scalar")
    initial = peers.loss_numpy(params, X, Y)
    assert np.all(np.abs(final - initial) > 1e-2 * initial)
    _, zero_steps = ref_train(params, X, Y, LR, 0)
    np.testing.assert_allclose(initial, zero_steps, rtol=1e-5)


CASES = [(name, shortcut, "scalar") for name in NAMES for shortcut in (False, True)] + [
    (name, True, "vector")
    for name in ("numpy", "torch_bmm", "torch_compile", "jax_naive", "jax_naive_sharded",
                 "jax_step_loop")
]


@pytest.mark.parametrize(
    ("name", "shortcut", "lr_kind"),
    CASES,
    ids=[f"{n}-{'shortcut' if s else 'plain'}-{lr}" for n, s, lr in CASES],
)
def test_matches_float64_reference(name, shortcut, lr_kind):
    params, X, Y = _case(shortcut)
    before = {k: (None if v is None else v.copy()) for k, v in params.items()}
    ref_params, ref_losses = _ref(shortcut, lr_kind)
    out, losses = _run(name, params, X, Y, _lr(lr_kind), T)
    assert losses.shape == (M,) and losses.dtype == np.float32
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    assert set(out) == set(peers.FIELDS)
    for k in peers.FIELDS:
        if ref_params[k] is None:
            assert out[k] is None
            continue
        assert out[k].dtype == np.float32 and out[k].shape == params[k].shape
        np.testing.assert_allclose(out[k], ref_params[k], rtol=1e-4, atol=1e-4)
    for k, v in before.items():  # inputs are not modified in place
        if v is not None:
            np.testing.assert_array_equal(params[k], v)


@pytest.mark.parametrize("name", NAMES)
def test_loss_decreases(name):
    params, X, Y = _case(True, seed=3)
    initial = peers.loss_numpy(params, X, Y)
    _, losses = _run(name, params, X, Y, 0.5, 30)
    assert np.all(losses < initial - 1e-3)


def test_torch_compile_reports_compile_time():
    pytest.importorskip("torch")
    params, X, Y = _case(False)
    info = {}
    _, losses = peers.train_torch_compile(params, X, Y, LR, T, info=info)
    assert info["compile_s"] > 0
    step, compile_s = peers.make_torch_compile_step(params, X, Y, LR)
    _, losses2 = peers.train_torch_compile(params, X, Y, LR, T, step=step)
    np.testing.assert_array_equal(losses, losses2)


def test_init_stacked_shapes():
    p = peers.init_stacked(0, 4, 3, 7, True, w_scale=0.0)
    assert p["W1"].shape == (4, 7, 3) and p["b1"].shape == (4, 7)
    assert p["W2"].shape == (4, 1, 7) and p["b2"].shape == (4,) and p["W"].shape == (4, 1, 3)
    assert all(v.dtype == np.float32 for v in p.values())
    assert not p["W"].any() and not p["b1"].any() and p["W1"].std() > 0.5
    assert peers.init_stacked(0, 4, 3, 7, False)["W"] is None


def test_names_are_the_implementations():
    assert sorted(NAMES) == sorted(peers.IMPLEMENTATIONS)
    assert set(peers.TORCH_IMPLEMENTATIONS) | set(peers.JAX_IMPLEMENTATIONS) < set(NAMES)


def test_sharded_peer_pads_models_over_two_devices():
    """Three models over two CPU devices (a fresh process): padded to four, sharded, and the
    same numbers as the one-device jit(vmap(scan))."""
    script = textwrap.dedent("""
        import jax
        jax.config.update("jax_num_cpu_devices", 2)
        import numpy as np
        from shortcut_jax import peers
        params = peers.init_stacked(0, 3, 2, 5, True, w_scale=0.5)
        X, Y = peers.make_data(1, 64, 2)
        assert peers.sharded_devices(3) == 2 and peers.sharded_devices(1) == 1
        out, losses = peers.train_jax_naive_sharded(params, X, Y, [0.5, 1.0, 2.0], 20)
        ref, ref_losses = peers.train_jax_naive(params, X, Y, [0.5, 1.0, 2.0], 20)
        assert losses.shape == (3,) and out["W1"].shape == (3, 5, 2)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
        for k in peers.FIELDS:
            np.testing.assert_allclose(out[k], ref[k], rtol=1e-5, atol=1e-6)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]

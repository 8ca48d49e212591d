"""Training: manual vs jax.grad trajectories, BCE gradients, vmap vs loop, pairing, fit."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import shortcut_jax as sj
from shortcut_jax.train import Draws, TrainConfig, check_data, draw, make_stages, validate_data


def toy_data(seed=0, n=120, m=64, d=2):
    """xor with 96 training rows (24 held out for validation), 64 test rows."""
    return sj.data.make_synthetic("xor", seed, n, m, d=d)


DATA = toy_data()


def test_manual_and_autodiff_give_the_same_trajectory():
    """300 SGD steps from the same start; float32, so agreement is to rounding (rtol 1e-5)."""
    out = {}
    for grad in ("manual", "autodiff"):
        cfg = TrainConfig(h=8, steps=300, eval_every=30, grad=grad)
        out[grad] = jax.jit(sj.make_train(cfg))(jax.random.key(3), 0.5, DATA)
    (pm, mm), (pa, ma) = out["manual"], out["autodiff"]
    np.testing.assert_allclose(mm["train_loss"], ma["train_loss"], rtol=1e-5)
    for a, b in zip(pm, pa):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert mm["train_loss"][-1] < 0.8 * mm["train_loss"][0]  # it does learn


@pytest.mark.parametrize("dtype, rtol", [(jnp.float32, 1e-5), (jnp.float64, 1e-10)])
@pytest.mark.parametrize("shortcut", [False, True])
@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0])
def test_bce_manual_grad_matches_jax_grad(dtype, rtol, shortcut, scale):
    with jax.enable_x64(dtype == jnp.float64):
        k = jax.random.split(jax.random.key(int(scale * 10) + shortcut), 3)
        params = sj.init_params(k[0], 5, 9, shortcut=shortcut, dtype=dtype, shortcut_init="lecun")
        params = jax.tree.map(lambda a: scale * a + 0.1 * scale, params)
        X = jax.random.normal(k[1], (40, 5), dtype)
        Y = jax.random.bernoulli(k[2], 0.5, (40,)).astype(dtype)
        manual = jax.jit(sj.manual_grad_bce)(params, X, Y)
        auto = jax.jit(jax.grad(sj.bce_loss))(params, X, Y)
        per_ex = jax.vmap(jax.grad(sj.example_bce_loss), in_axes=(None, 0, 0))(params, X, Y)
        for m, a, p in zip(manual, auto, per_ex):
            if a is None:
                assert m is None
                continue
            s = float(jnp.max(jnp.mean(jnp.abs(p), axis=0)))  # size of the summed terms
            np.testing.assert_allclose(m, a, rtol=rtol, atol=rtol * s)


def test_bce_is_finite_when_saturated():
    params = sj.Params(W1=jnp.ones((2, 1)), b1=jnp.zeros(2), W2=jnp.zeros((1, 2)),
                       b2=jnp.array(-1e4), W=jnp.zeros((1, 1)))
    X, Y = jnp.ones((2, 1)), jnp.array([1.0, 0.0])
    value = sj.bce_loss(params, X, Y)
    np.testing.assert_allclose(float(value), 1e4 / 2, rtol=1e-6)  # -log sigmoid(-1e4) = 1e4
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(
        sj.manual_grad_bce(params, X, Y)))


def test_vmap_over_seeds_and_lrs_equals_a_python_loop():
    cfg = TrainConfig(h=6, steps=40, eval_every=10)
    train = jax.jit(sj.make_train(cfg))
    keys = jax.vmap(jax.random.key)(jnp.arange(3))
    lrs = jnp.array([0.1, 0.5, 1.0])
    params, metrics = jax.jit(jax.vmap(sj.make_train(cfg), in_axes=(0, 0, None)))(keys, lrs,
                                                                                  DATA)
    for i in range(3):
        p_i, m_i = train(keys[i], lrs[i], DATA)
        for name in m_i:
            np.testing.assert_allclose(metrics[name][i], m_i[name], rtol=1e-6, atol=1e-7,
                                       err_msg=name)
        for a, b in zip(params, p_i):
            np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7)


def test_minibatches_follow_the_documented_order():
    """An independent loop: each epoch draws permutation(fold_in(k_batch, epoch), n)."""
    cfg = TrainConfig(h=4, steps=10, eval_every=10, batch_size=32)  # 3 steps per epoch
    key, lr = jax.random.key(11), 0.3
    params, _ = jax.jit(sj.make_train(cfg))(key, lr, DATA)
    k_init, k_batch = jax.random.split(key)
    ref = sj.init_params(k_init, 2, 4)
    for t in range(10):
        epoch, i = divmod(t, 96 // 32)
        order = jax.random.permutation(jax.random.fold_in(k_batch, epoch), 96)
        idx = order[i * 32:(i + 1) * 32]
        g = sj.manual_grad(ref, DATA.X_train[idx], DATA.Y_train[idx])
        ref = jax.tree.map(lambda p, g: p - lr * g, ref, g)
    for a, b in zip(params, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_plain_and_shortcut_runs_of_one_key_are_paired():
    """A shortcut net whose W is frozen at 0 must retrace the plain run exactly: same start,
    same minibatch order."""
    freeze_W = lambda lr: optax.chain(  # noqa: E731
        optax.masked(optax.set_to_zero(), lambda p: p._replace(
            W1=False, b1=False, W2=False, b2=False, W=p.W is not None)),
        optax.sgd(lr))
    runs = {}
    for shortcut in (False, True):
        cfg = TrainConfig(h=5, shortcut=shortcut, steps=30, eval_every=10, batch_size=16,
                          optimizer=freeze_W)
        runs[shortcut] = jax.jit(sj.make_train(cfg))(jax.random.key(7), 0.4, DATA)
    (pp, mp), (ps, ms) = runs[False], runs[True]
    for name in ("W1", "b1", "W2", "b2"):
        np.testing.assert_array_equal(getattr(pp, name), getattr(ps, name), err_msg=name)
    np.testing.assert_array_equal(mp["train_loss"], ms["train_loss"])
    np.testing.assert_array_equal(ps.W, np.zeros((1, 2)))


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw"])
def test_optimizers_by_name_match_optax(optimizer):
    cfg = TrainConfig(h=4, steps=20, eval_every=20, optimizer=optimizer)
    params, _ = jax.jit(sj.make_train(cfg))(jax.random.key(0), 0.05, DATA)
    tx = {"sgd": optax.sgd(0.05), "momentum": optax.sgd(0.05, momentum=0.9),
          "adam": optax.adam(0.05), "adamw": optax.adamw(0.05, weight_decay=1e-4)}[optimizer]
    ref = sj.init_params(jax.random.split(jax.random.key(0))[0], 2, 4)
    state = tx.init(ref)
    for _ in range(20):
        updates, state = tx.update(sj.manual_grad(ref, DATA.X_train, DATA.Y_train), state, ref)
        ref = optax.apply_updates(ref, updates)
    for a, b in zip(params, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fit_matches_a_hand_written_sgd_loop():
    params0 = sj.init_params(jax.random.key(2), 2, 8, shortcut_init="lecun")
    params, losses = sj.fit(params0, DATA.X_train, DATA.Y_train, optax.sgd(0.5), 25)
    ref, ref_losses = params0, []
    for _ in range(25):
        ref_losses.append(float(sj.loss(ref, DATA.X_train, DATA.Y_train)))
        ref = jax.tree.map(lambda p, g: p - 0.5 * g, ref,
                           sj.manual_grad(ref, DATA.X_train, DATA.Y_train))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for a, b in zip(params, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_fit_compiles_once_per_configuration(monkeypatch):
    """fit's scan is traced once for an optimizer, steps, loss and shapes, however often it
    is called; a new number of steps is a new program."""
    from shortcut_jax import train as train_lib

    traces = []
    real = train_lib.make_grad_fn
    monkeypatch.setattr(train_lib, "make_grad_fn", lambda c: traces.append(c) or real(c))
    tx = optax.sgd(0.1)
    p = sj.init_params(jax.random.key(0), 2, 5)
    for _ in range(3):
        sj.fit(p, DATA.X_train, DATA.Y_train, tx, 7)
    assert len(traces) == 1
    sj.fit(p, DATA.X_train, DATA.Y_train, tx, 8)
    assert len(traces) == 2


def test_jitted_train_does_not_recompile():
    cfg = TrainConfig(h=3, steps=10, eval_every=5)
    train = jax.jit(chex.assert_max_traces(sj.make_train(cfg), n=1))
    for seed, lr in [(0, 0.1), (1, 0.2), (2, 0.3)]:
        train(jax.random.key(seed), jnp.float32(lr), DATA)
    chex.clear_trace_counter()


def test_metrics_are_recorded_every_eval_every():
    cfg = TrainConfig(h=3, steps=40, eval_every=10)
    _, m = jax.jit(sj.make_train(cfg))(jax.random.key(0), 0.5, DATA)
    assert cfg.num_evals == 5
    for name in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                 "grad_norm", "dead_frac", "saturated_frac", "shortcut_share", "max_overlap",
                 "grad_norm_W1"):
        assert m[name].shape == (5,), name
    p0 = sj.init_params(jax.random.split(jax.random.key(0))[0], 2, 3)
    np.testing.assert_allclose(m["train_loss"][0], sj.loss(p0, DATA.X_train, DATA.Y_train),
                               rtol=1e-6)
    np.testing.assert_allclose(m["test_acc"][0], jnp.mean(
        (sj.predict(p0, DATA.X_test) > 0.5) == (DATA.Y_test > 0.5)), rtol=1e-6)
    np.testing.assert_allclose(m["val_loss"][0], sj.loss(p0, DATA.X_val, DATA.Y_val), rtol=1e-6)
    np.testing.assert_allclose(m["val_acc"][0], jnp.mean(
        (sj.predict(p0, DATA.X_val) > 0.5) == (DATA.Y_val > 0.5)), rtol=1e-6)
    assert "test_gen_err" not in m  # only with a teacher


def test_teacher_data_adds_the_generalisation_error():
    data = sj.data.make_synthetic("teacher", 0, 80, 50, d=3, width=2)
    cfg = TrainConfig(h=3, steps=10, eval_every=10)
    params, m = jax.jit(sj.make_train(cfg))(jax.random.key(0), 0.5, data)
    y_hat = sj.predict(params, data.X_test)
    np.testing.assert_allclose(m["test_gen_err"][-1],
                               np.mean(0.5 * (np.asarray(y_hat) - data.P_test) ** 2), rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(h=0), r"h: expected an integer >= 1, got 0"),
    (dict(h=4, steps=0), r"steps: expected an integer >= 1"),
    (dict(h=4, steps=10, eval_every=3), r"eval_every: expected a divisor of steps=10, got 3"),
    (dict(h=4, optimizer="rmsprop"), r"optimizer: expected one of .*'rmsprop'"),
    (dict(h=4, loss_fn="hinge"), r"loss_fn: expected one of .*'hinge'"),
    (dict(h=4, grad="numeric"), r"grad: expected one of"),
    (dict(h=4, batch_size=0), r"batch_size: expected None or an integer >= 1"),
])
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_bad_data_raises():
    with pytest.raises(ValueError, match=r"batch_size: expected at most the 96 training"):
        check_data(DATA, batch_size=200)
    X = DATA.X_train.copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"data.X_train: expected finite values, found 1"):
        validate_data(DATA._replace(X_train=X))
    Y = DATA.Y_test.copy()
    Y[3] = 2.0
    with pytest.raises(ValueError, match=r"data.Y_test: expected labels 0 or 1.*\[2.0\]"):
        validate_data(DATA._replace(Y_test=Y))
    with pytest.raises(TypeError, match=r"data: expected a data.Dataset \(X_train, Y_train, "
                                        r"X_val, Y_val, X_test, Y_test\[, P_test\]\), got tuple"):
        check_data((DATA.X_train, DATA.Y_train))
    with pytest.raises(ValueError, match=r"data.X_val: expected a floating \(n, d\) array with "
                                         r"d=2, got float32\[24, 3\]"):
        check_data(DATA._replace(X_val=np.zeros((24, 3), np.float32)))
    with pytest.raises(ValueError, match=r"data.X_test: expected at least one example"):
        check_data(DATA._replace(X_test=DATA.X_test[:0], Y_test=DATA.Y_test[:0]))
    with pytest.raises(ValueError, match=r"data.Y_train: expected shape \(96,\)"):
        check_data(DATA._replace(Y_train=DATA.Y_train[:5]))


def test_stages_start_from_draws_equal_to_make_train():
    """init(draw(key, ...)) then run is make_train(key) (two programs: XLA may round the last
    bit differently); a key where draws belong is refused by name."""
    cfg = TrainConfig(h=3, steps=20, eval_every=10)
    init, run = make_stages(cfg)
    key, lr = jax.random.key(4), jnp.float32(0.5)
    staged = jax.jit(lambda k: run(init(draw(k, 2, 3), lr, DATA), lr, DATA, cfg.num_evals))
    state, m = staged(key)
    params, want = jax.jit(sj.make_train(cfg))(key, lr, DATA)
    for a, b in zip(state.params, params):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(m["train_loss"], want["train_loss"], rtol=1e-6)
    with pytest.raises(TypeError, match=r"draws: expected a train.Draws, e.g. draw\(key, d, h\), "
                                        r"got PRNGKeyArray"):
        init(key, lr, DATA)
    with pytest.raises(ValueError, match=r"h: expected an integer >= 1, got 0"):
        draw(key, 2, 0)


@pytest.mark.parametrize("call, error, match", [
    (lambda: draw(0, 2, 3), TypeError, r"key: expected one PRNG key .*, got int"),
    (lambda: draw(jax.random.split(jax.random.key(0)), 2, 3), TypeError,
     r"key: expected one PRNG key .*, got key<fry>\[2\]"),
    (lambda: draw(jax.random.key(0), 2, 3, jnp.int32), TypeError,
     r"dtype: expected a floating dtype, got int32"),
])
def test_bad_draw_raises(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_init_refuses_draws_that_do_not_fit_the_data():
    init, _ = make_stages(TrainConfig(h=3))
    z = draw(jax.random.key(0), 2, 3).z
    with pytest.raises(TypeError, match=r"draws.batch_key: expected one PRNG key .*NoneType"):
        init(Draws(z, None), 0.1, DATA)
    with pytest.raises(TypeError, match=r"draws.z: expected the data's dtype float32 .*float16"):
        init(draw(jax.random.key(0), 2, 3, jnp.float16), 0.1, DATA)
    raw = draw(jax.random.PRNGKey(0), 2, 3)  # a raw uint32 key is still a key
    assert init(raw, 0.1, DATA).params.W1.shape == (3, 2)

"""The hand-written derivatives against jax.grad, finite differences and the ReLU kink.

The hypothesis tests check cases that carry signal. Weights are scale * N(0, 1/fan-in), so the
scale sets |z1| ~ scale and |z2| ~ scale^2 whatever d and h; every drawn case (seed, shape,
dtype) is checked at every scale of SCALES (one compile per shape, see `over_scales`), and a
parameter set is discarded, counted, unless at least MIN_SIGNAL of its gradient entries that can
be non-zero are non-zero: a saturated sigmoid makes float32 gradients exactly 0, and 0 == 0
checks nothing. The network (plain, shortcut) and the dtype are explicit axes (pytest
parameters), every case has a live hidden unit (else only b2 and W would be checked), and the
largest shapes run as an explicit @example. `run_cases` asserts how many cases ran, how many
were checked at each scale, and bounds how many sets were discarded; each test's docstring gives
the numbers observed (`pytest -s` prints them).
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, example, given, note, settings
from hypothesis import strategies as st

import shortcut_jax as sj
from shortcut_jax.grads import backward  # plumbing, importable from its module
from tests.reference import np_bce_loss, np_central_diff, np_logits, np_loss, np_sigmoid

FIELDS = ("W1", "b1", "W2", "b2", "W")
MIN_SIGNAL = 0.9  # fraction of the entries that can be non-zero that must be non-zero
# |z2| ~ scale^2: up to 1 nothing saturates, at 3 a few examples, at 10 most (|z2| ~ 100) but
# rarely every example of a batch.
SCALES = (1e-2, 1e-1, 0.5, 1.0, 3.0, 10.0)
FD_SCALES = (0.3, 1.0, 2.0, 3.0)  # finite differences need |dJ/dtheta| well above their noise


def random_problem(seed, d, h, n, scale, shortcut, dtype):
    """Weights scale * N(0, 1/fan-in), biases scale * N(0, 1), x ~ N(0, I), 0/1 labels.

    The same seed at another scale gives the same normals, scaled. NumPy draws: jax.random
    would compile a sampler for every new shape (seconds per hypothesis case).
    """
    params, X, Y = _numpy_problem(seed, d, h, n, scale, shortcut, dtype)
    return jax.tree.map(jnp.asarray, params), jnp.asarray(X), jnp.asarray(Y)


def _numpy_problem(seed, d, h, n, scale, shortcut, dtype):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)

    def draw(shape, fan_in=1):
        return (scale / np.sqrt(fan_in) * rng.standard_normal(shape)).astype(dt)

    params = sj.Params(W1=draw((h, d), d), b1=draw((h,)), W2=draw((1, h), h), b2=draw(()),
                       W=draw((1, d), d) if shortcut else None)
    return params, rng.standard_normal((n, d)).astype(dt), rng.integers(0, 2, n).astype(dt)


def problems_over_scales(seed, d, h, n, shortcut, dtype, scales):
    """random_problem at each scale, the parameters stacked along a leading axis; X, Y shared.
    Stacked in NumPy (jnp.stack would compile for every new shape)."""
    sets = [_numpy_problem(seed, d, h, n, s, shortcut, dtype)[0] for s in scales]
    _, X, Y = _numpy_problem(seed, d, h, n, 1.0, shortcut, dtype)
    params = jax.tree.map(lambda *leaves: jnp.asarray(np.stack(leaves)), *sets)
    return params, jnp.asarray(X), jnp.asarray(Y)


def at(tree, k):
    """Slice k of every leaf of a stacked pytree (None stays None), as NumPy."""
    return jax.tree.map(lambda a: np.asarray(a)[k], tree)


def over_scales(f):
    """jit of lax.map(f) over the leading axis of the stacked params: one compile per shape for
    all scales, and each slice runs f's own, unbatched computation (a loop, not vmap)."""
    return jax.jit(lambda params, *args: jax.lax.map(lambda p: f(p, *args), params))


def as_numpy(params):
    return {k: (None if v is None else np.asarray(v, np.float64)) for k, v in params._asdict().items()}


def signal_fraction(params, X, grad, floor=0.0):
    """Fraction of the entries of `grad` that can be non-zero with |entry| > floor.

    The ReLU alone zeroes W1[j], b1[j], W2[j] of a unit j with z1 <= 0 on every example (dead on
    this batch), whatever the output; those entries cannot be non-zero and are not counted. The
    rest vanish only when dL/dz2 does on the examples that reach them: a saturated sigmoid.
    """
    p = as_numpy(params)
    X = np.asarray(X, np.float64)
    z1, _ = np_logits(**p, X=X)
    on = (z1 > 0).astype(np.float64)                            # (n, h)
    live = on.any(axis=0) & (p["W2"][0] != 0)                   # (h,)
    can = {"W1": live[:, None] & ((on.T @ (X != 0)) > 0), "b1": live,
           "W2": on.any(axis=0)[None, :], "b2": np.ones((), bool),
           "W": None if p["W"] is None else (X != 0).any(axis=0)[None, :]}
    total = hit = 0
    for name in FIELDS:
        g = getattr(grad, name)
        if g is None:
            continue
        mask = np.broadcast_to(can[name], np.shape(g))
        total += int(mask.sum())
        hit += int((mask & (np.abs(np.asarray(g, np.float64)) > floor)).sum())
    return hit / total


class Tally:
    """A hypothesis test's cases, and its parameter sets checked and discarded, by scale."""

    def __init__(self):
        self.cases = 0
        self.checked = collections.Counter()
        self.discarded = collections.Counter()
        self.reasons = collections.Counter()

    def keep(self, scale, **reasons):
        """Whether to check the set at this scale: not if one of `reasons` (name=bool) holds.
        Counted either way; a discard is also a hypothesis event."""
        why = [name for name, holds in reasons.items() if holds]
        if why:
            self.discarded[scale] += 1
            self.reasons[why[0]] += 1
            event(f"discarded at scale {scale}: {why[0]}")
            return False
        self.checked[scale] += 1
        note(f"checking the set at scale {scale}")  # if the case fails, the last is the one
        return True

    def __repr__(self):
        scales = sorted(set(self.checked) | set(self.discarded))
        per_scale = ", ".join(f"{s}: {self.checked[s]}/{self.discarded[s]}" for s in scales)
        return (f"{self.cases} cases; parameter sets checked/discarded by scale {per_scale}; "
                f"discarded {dict(self.reasons)}")


def has_live_unit(seed, d, h, n, shortcut, dtype, **_):
    """Whether some hidden unit has z1 > 0 on some example: the sign of z1 does not depend on
    the scale (the same normals, scaled), so a case without one has only b2 (and W) to check
    at every scale."""
    params, X, _ = _numpy_problem(seed, d, h, n, 1.0, shortcut, np.float64)
    return bool((X @ params.W1.T + params.b1 > 0).any())


def run_cases(strategy, check, max_examples, max_discarded, scales=SCALES, examples=(),
              all_checked_upto=1.0, one_checked=(0.0, 3.0)):
    """Run check(tally, **case) on max_examples hypothesis cases with a live hidden unit (cases
    without one are rejected and drawn again) and on each of `examples`; assert that all ran,
    that every scale up to all_checked_upto was checked in every case, every other scale in the
    range one_checked in at least one (at 10 about half the one-example sets saturate; at 0.3
    finite differences skip about 40% of the sets as near the kink), and that at most a
    fraction max_discarded of the parameter sets were discarded.
    Returns the tally."""
    tally = Tally()

    @settings(max_examples=max_examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(strategy)
    def run(case):
        assume(has_live_unit(**case))
        check(tally, **case)
        tally.cases += 1

    for case in examples:
        assert has_live_unit(**case), case
        run = example(case)(run)
    run()
    print(f"\n{tally}")
    sets = sum(tally.checked.values()) + sum(tally.discarded.values())
    assert tally.cases == max_examples + len(examples), tally
    assert sets == tally.cases * len(scales), tally
    for scale in scales:
        if all_checked_upto is not None and scale <= all_checked_upto:
            assert tally.checked[scale] == tally.cases, (scale, tally)
        elif one_checked[0] <= scale <= one_checked[1]:
            assert tally.checked[scale] >= 1, (scale, tally)
    assert sum(tally.discarded.values()) <= max_discarded * sets, tally
    return tally


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


# loss J, the hand-written dJ/dtheta, the independent float64 NumPy J
LOSSES = {
    "squared": (sj.loss, sj.manual_grad, np_loss),
    "bce": (sj.bce_loss, sj.manual_grad_bce, np_bce_loss),
}


def _grads(kind):
    loss, manual, _ = LOSSES[kind]
    return over_scales(lambda params, X, Y: (manual(params, X, Y), jax.grad(loss)(params, X, Y)))


def term_scale(params, X, Y, kind):
    """Per leaf, max_j (1/n) sum_i c_i |dz2_i/dtheta_j| in float64 NumPy: the size of the terms
    dL_i/dtheta = dL_i/dz2 dz2_i/dtheta that J's gradient sums (for assert_grads_close).

    c_i = |dL_i/dz2| for the squared loss. For the cross-entropy c_i = max(y_hat_i, y_i), the
    larger operand of dL/dz2 = y_hat - y: a difference of numbers up to 1, whose rounding leaves
    an absolute error ~eps however small the difference. A well-classified float32 example,
    z2 = 6.3, y = 1: y_hat - y = -0.00183, and one ulp of y_hat (6e-8) is 3e-5 of that;
    manual_grad_bce and jax.grad round y_hat differently and were seen to differ by 6.5e-5.
    """
    p = as_numpy(params)
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    z1, z2 = np_logits(**p, X=X)
    y_hat = np_sigmoid(z2)
    c = np.abs(y_hat - Y) * y_hat * (1 - y_hat) if kind == "squared" else np.maximum(y_hat, Y)
    on, a1, w2, n = (z1 > 0).astype(np.float64), np.maximum(z1, 0.0), np.abs(p["W2"][0]), len(X)
    return sj.Params(W1=np.max(w2[:, None] * ((c[:, None] * on).T @ np.abs(X))) / n,
                     b1=np.max(w2 * (c @ on)) / n, W2=np.max(c @ a1) / n, b2=np.sum(c) / n,
                     W=None if p["W"] is None else np.max(c @ np.abs(X)) / n)


GRADS = {kind: _grads(kind) for kind in LOSSES}
EXAMPLE_GRADS = over_scales(lambda params, x, y: (sj.manual_example_grad(params, x, y),
                                                  jax.grad(sj.example_loss)(params, x, y)))


def problem_cases(d: int, h: int, n: int, **fixed):
    """Hypothesis cases: a seed and shapes up to d, h, n; `fixed` (the explicit axes: shortcut,
    dtype) the same in every case."""
    return st.fixed_dictionaries(dict(seed=st.integers(0, 2**31 - 1), d=st.integers(1, d),
                                      h=st.integers(1, h), n=st.integers(1, n),
                                      **{k: st.just(v) for k, v in fixed.items()}))


DTYPES = pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
VARIANTS = pytest.mark.parametrize("shortcut", [False, True], ids=["plain", "shortcut"])


def problems(shortcut, dtype):
    """d <= 64, h <= 128, n <= 256 (cases), and the largest shapes as an explicit example."""
    return problem_cases(64, 128, 256, shortcut=shortcut, dtype=dtype), [
        dict(seed=1, d=64, h=128, n=256, shortcut=shortcut, dtype=dtype)]


def small_problems(shortcut):
    """Small enough for central differences one at a time; a larger explicit example (577 or
    593 parameters)."""
    return problem_cases(4, 6, 8, shortcut=shortcut, dtype=jnp.float64), [
        dict(seed=1, d=16, h=32, n=64, shortcut=shortcut, dtype=jnp.float64)]


def check_manual_grad_matches_jax_grad(kind, tally, seed, d, h, n, shortcut, dtype):
    """manual vs jax.grad of J at every scale with signal: rtol 1e-10 in float64, 1e-5 in
    float32, atol = rtol * term_scale (see assert_grads_close)."""
    rtol = 1e-10 if dtype == jnp.float64 else 1e-5
    with jax.enable_x64(dtype == jnp.float64):
        params, X, Y = problems_over_scales(seed, d, h, n, shortcut, dtype, SCALES)
        manual, auto = GRADS[kind](params, X, Y)
    for k, scale in enumerate(SCALES):
        p = at(params, k)
        if tally.keep(scale, saturated=signal_fraction(p, X, at(auto, k)) < MIN_SIGNAL):
            assert_grads_close(at(manual, k), at(auto, k), rtol=rtol,
                               scale=term_scale(p, X, Y, kind))


def check_finite_differences(kind, tally, seed, d, h, n, shortcut, dtype=jnp.float64):
    """manual and jax.grad of J vs central differences of the independent NumPy J, float64.

    Sets with some |z1| < 1e-3 are excluded: a step of eps = 1e-6 in W1 or b1 moves z1 by at
    most eps (1 + |x|), so away from the kink J is smooth along every coordinate step and the
    difference quotient converges; at the kink it would average the two one-sided slopes. Sets
    where fewer than MIN_SIGNAL of the entries exceed 1e-6 (100x the atol) are excluded too.
    """
    with jax.enable_x64(True):
        params, X, Y = problems_over_scales(seed, d, h, n, shortcut, jnp.float64, FD_SCALES)
        manual, auto = GRADS[kind](params, X, Y)
    for k, scale in enumerate(FD_SCALES):
        p = at(params, k)
        z1, _ = np_logits(**as_numpy(p), X=X)
        fd = sj.Params(**np_central_diff(p, X, Y, loss=LOSSES[kind][2]))
        if not tally.keep(scale, near_kink=float(np.min(np.abs(z1))) <= 1e-3,
                          saturated=signal_fraction(p, X, fd, floor=1e-6) < MIN_SIGNAL):
            continue
        for name in FIELDS:
            f = getattr(fd, name)
            if f is None:
                assert getattr(manual, name) is None and getattr(auto, name) is None
                continue
            atol = 1e-8 * max(1.0, float(np.max(np.abs(f))))
            for g in (manual, auto):
                np.testing.assert_allclose(np.asarray(getattr(g, name))[k], f, rtol=1e-6,
                                           atol=atol, err_msg=name)


@DTYPES
@VARIANTS
def test_manual_grad_matches_jax_grad(shortcut, dtype):
    """Squared loss, d <= 64, h <= 128, n <= 256 and (64, 128, 256) itself, per network and
    dtype, all SCALES; every case has a live hidden unit.

    Observed before dtype and network were explicit (six runs): 12 cases = 72 parameter sets,
    69-71 checked; the 1-3 discarded as saturated were all at scale 10 (outputs that round to
    exactly 0 or 1).
    """
    strategy, large = problems(shortcut, dtype)
    run_cases(strategy,
              lambda tally, **p: check_manual_grad_matches_jax_grad("squared", tally, **p),
              max_examples=3, max_discarded=0.2, examples=large)


@DTYPES
@VARIANTS
def test_manual_example_grad_matches_jax_grad(shortcut, dtype):
    """One example: no sums over n, so atol = rtol * max |leaf| suffices.

    Observed before dtype and network were explicit (six runs): 12 cases = 72 parameter sets, 61-68 checked; 4-11 discarded as
    saturated, at scale 10 and a few times one at scale 3 (one example has no unsaturated
    peers: about half the scale-10 sets are saturated).
    """
    def check(tally, seed, d, h, n, shortcut, dtype):
        rtol = 1e-10 if dtype == jnp.float64 else 1e-5
        with jax.enable_x64(dtype == jnp.float64):
            params, X, Y = problems_over_scales(seed, d, h, 1, shortcut, dtype, SCALES)
            x, y = jnp.asarray(np.asarray(X)[0]), jnp.asarray(np.asarray(Y)[0])  # no eager slice
            manual, auto = EXAMPLE_GRADS(params, x, y)
        for k, scale in enumerate(SCALES):
            signal = signal_fraction(at(params, k), X, at(auto, k))
            if tally.keep(scale, saturated=signal < MIN_SIGNAL):
                assert_grads_close(at(manual, k), at(auto, k), rtol=rtol)

    run_cases(problem_cases(64, 128, 1, shortcut=shortcut, dtype=dtype), check,
              max_examples=3, max_discarded=0.3,
              examples=[dict(seed=1, d=64, h=128, n=1, shortcut=shortcut, dtype=dtype)])


@VARIANTS
def test_manual_and_jax_grad_match_finite_differences(shortcut):
    """Squared loss, d <= 4, h <= 6, n <= 8, all FD_SCALES (see check_finite_differences).

    Observed before dtype and network were explicit (six runs): 10 cases = 40 parameter sets, 34-39 checked; 1-6 discarded, mostly at
    scale 3 (entries under 1e-6: with n <= 8, a unit may only see well-classified examples),
    0-2 near the kink. About 11% of sets are discarded on average (NumPy simulation of 1200).
    """
    strategy, large = small_problems(shortcut)
    run_cases(strategy, lambda tally, **p: check_finite_differences("squared", tally, **p),
              max_examples=5, max_discarded=0.4, scales=FD_SCALES, examples=large,
              all_checked_upto=None, one_checked=(1.0, 3.0))


def test_batch_grad_is_mean_of_example_grads(x64):
    params, X, Y = random_problem(3, 5, 7, 33, 1.0, True, jnp.float64)
    per_example = jax.jit(jax.vmap(sj.manual_example_grad, in_axes=(None, 0, 0)))(params, X, Y)
    mean = jax.tree.map(lambda g: np.mean(np.asarray(g), axis=0), per_example)
    assert_grads_close(jax.jit(sj.manual_grad)(params, X, Y), mean, rtol=1e-12)


KINK_GRADS = jax.jit(lambda params, x, y: (
    sj.manual_example_grad(params, x, y), jax.grad(sj.example_loss)(params, x, y),
    sj.manual_grad(params, x[None, :], y[None]), jax.grad(sj.loss)(params, x[None, :], y[None])))


@pytest.mark.parametrize("shortcut", [False, True])
def test_relu_kink_gives_zero_gradient_for_that_unit(shortcut, x64):
    """z1[0] = 2*1 + (-1)*2 + 0 = 0 exactly: 1{z1 > 0} is 0, so unit 0 gets no gradient."""
    W1 = jnp.array([[2.0, -1.0], [0.5, 0.25]])
    params = sj.Params(W1=W1, b1=jnp.zeros(2), W2=jnp.array([[1.5, -0.7]]), b2=jnp.array(0.1),
                       W=jnp.array([[0.3, -0.2]]) if shortcut else None)
    x, y = jnp.array([1.0, 2.0]), jnp.array(1.0)
    assert float((W1 @ x)[0]) == 0.0
    for g in KINK_GRADS(params, x, y):
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
        backward(params, X, Z1T, A1T, Y, XT=X)


SATURATED = jax.jit(lambda params, X, Y: (
    [sj.loss(params, X, Y), sj.predict(params, X)] + jax.tree.leaves(sj.manual_grad(params, X, Y))
    + jax.tree.leaves(jax.grad(sj.loss)(params, X, Y))))  # one compile per dtype, not per op


@pytest.mark.parametrize("z2", [1e4, -1e4, 1e3, -1e3, 50.0, -50.0])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_saturated_output_is_finite(z2, dtype):
    """|z2| up to 1e4: loss and both gradients stay finite (no overflow in the sigmoid)."""
    with jax.enable_x64(dtype == jnp.float64):
        params = sj.Params(W1=jnp.ones((2, 1), dtype), b1=jnp.zeros(2, dtype),
                           W2=jnp.zeros((1, 2), dtype), b2=jnp.asarray(z2, dtype),
                           W=jnp.zeros((1, 1), dtype))
        X, Y = jnp.ones((3, 1), dtype), jnp.array([0.0, 1.0, 1.0], dtype)
        values = SATURATED(params, X, Y)
        for v in values:
            assert bool(np.all(np.isfinite(np.asarray(v))))
        y_hat = 0.5 * (1.0 + np.tanh(0.5 * z2))  # the sigmoid, computed without overflow
        expected = 0.5 * np.mean((y_hat - np.array([0.0, 1.0, 1.0])) ** 2)
        np.testing.assert_allclose(float(values[0]), expected, rtol=1e-6)

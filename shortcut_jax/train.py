"""Compiled training: `make_train(config) -> train(key, lr, data) -> (params, metrics)`.

One SGD-family step, theta <- theta + optax_update(g), with g = dJ/dtheta from the hand-written
`manual_grad` (default) or from `jax.grad`; the whole loop is `lax.scan`, metrics are recorded
every `eval_every` steps inside it. `key` alone fixes the initial parameters and the minibatch
order, so plain and shortcut runs of one key are paired.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from shortcut_jax import diagnostics
from shortcut_jax import network as net
from shortcut_jax.data import Dataset
from shortcut_jax.grads import manual_grad, manual_grad_bce
from shortcut_jax.model import (
    Params,
    bce_loss,
    bce_loss_from_forward,
    check_finite,
    check_labels,
    forward_columns,
    loss,
    loss_from_forward,
    num_normals,
    params_from_normals,
    predict,
    shortcut_w_scale,
)
from shortcut_jax.netgrads import net_manual_grad

LOSSES: dict[str, tuple[Callable, Callable, Callable]] = {  # (J, dJ/dtheta, J from a forward)
    "mse": (loss, manual_grad, loss_from_forward),  # the problem's J = 1/n sum 1/2 (y_hat - y)^2
    "bce": (bce_loss, manual_grad_bce, bce_loss_from_forward),  # cross-entropy, same sigmoid
}

OPTIMIZERS: dict[str, Callable[[Any], optax.GradientTransformation]] = {
    "sgd": optax.sgd,
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "adam": optax.adam,
    "adamw": lambda lr: optax.adamw(lr, weight_decay=1e-4),
}

GRADS = ("manual", "autodiff")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Static settings of one shape group; the key and learning rate are traced arguments.

    optimizer: a name in OPTIMIZERS or a callable lr -> optax.GradientTransformation.
    batch_size: None for full-batch steps, else minibatches reshuffled every epoch.
    shortcut_init, shortcut_scale: W's start (model.init_params); the sweep passes its scale as
    a traced argument instead, so that one program serves every shortcut_init.
    depth, activation, residual: the network family (network.py); depth 1 with ReLU and no
    residual skip is the problem's network, trained with model.py and grads.py unless
    `network` is True (the network family's functions, which give the same numbers there).
    """

    h: int
    shortcut: bool = True
    steps: int = 1000
    eval_every: int = 50
    optimizer: str | Callable[[Any], optax.GradientTransformation] = "sgd"
    loss_fn: str = "mse"
    grad: str = "manual"
    batch_size: int | None = None
    shortcut_init: str = "zeros"
    shortcut_scale: float = 1.0
    depth: int = 1
    activation: str = "relu"
    residual: bool = False
    network: bool = False

    def __post_init__(self):
        for name in ("h", "steps", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if self.steps % self.eval_every:
            raise ValueError(f"eval_every: expected a divisor of steps={self.steps}, "
                             f"got {self.eval_every}")
        if isinstance(self.optimizer, str) and self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)} or a callable "
                             f"lr -> optax.GradientTransformation, got {self.optimizer!r}")
        if not isinstance(self.optimizer, str) and not callable(self.optimizer):
            raise TypeError(f"optimizer: expected a name or a callable, got {self.optimizer!r}")
        if self.loss_fn not in LOSSES:
            raise ValueError(f"loss_fn: expected one of {sorted(LOSSES)}, got {self.loss_fn!r}")
        if self.grad not in GRADS:
            raise ValueError(f"grad: expected one of {GRADS}, got {self.grad!r}")
        b = self.batch_size
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise ValueError(f"batch_size: expected None or an integer >= 1, got {b!r}")
        shortcut_w_scale(self.shortcut_init, self.shortcut_scale)  # checks both
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"depth: expected an integer >= 1, got {self.depth!r}")
        net.check_activation(self.activation)
        for name in ("residual", "network"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        if self.residual and self.depth == 1:
            raise ValueError("residual: a depth-1 network has no skip between hidden layers "
                             "(residual is the plain network there); expected depth >= 2")

    @property
    def general(self) -> bool:
        """Whether runs use the network family's functions (network.py, netgrads.py)."""
        return self.network or self.depth > 1 or self.activation != "relu" or self.residual

    @property
    def w_scale(self) -> float:
        """The factor s of the shortcut's start W = s * N(0, 1/d) (0 for "zeros")."""
        return shortcut_w_scale(self.shortcut_init, self.shortcut_scale)

    @property
    def num_evals(self) -> int:
        """Eval points at steps 0, eval_every, ..., steps."""
        return self.steps // self.eval_every + 1

    def make_optimizer(self, lr) -> optax.GradientTransformation:
        """The optax optimizer at learning rate lr (a name of OPTIMIZERS, or a callable)."""
        make = OPTIMIZERS[self.optimizer] if isinstance(self.optimizer, str) else self.optimizer
        return make(lr)


class Draws(NamedTuple):
    """A run's random numbers: z, the standard normals of init_params, and its minibatch key."""

    z: jax.Array  # (num_normals(d, h),) or more: a prefix serves narrower widths
    batch_key: jax.Array


def draw(key: jax.Array, d: int, h: int, dtype=jnp.float32, depth: int = 1) -> Draws:
    """k_init, k_batch = split(key); z = normal(k_init, (num_net_normals(d, h, depth),)), which
    is num_normals(d, h) at depth 1.

    A sweep draws once for its widest width; every narrower width reads a prefix of z.
    """
    n = num_normals(d, h) if depth == 1 else net.num_net_normals(d, h, depth)
    _check_key("key", key)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype: expected a floating dtype, got {jnp.dtype(dtype)}")
    k_init, k_batch = jax.random.split(key)
    return Draws(jax.random.normal(k_init, (n,), dtype), k_batch)


def _check_key(name: str, key: Any) -> None:
    """One PRNG key: a typed key array of shape (), or a raw uint32 key (jax.random.PRNGKey)."""
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and shape == ()
    raw = dtype == jnp.uint32 and shape is not None and len(shape) == 1
    if not (typed or raw):
        got = f"{dtype}{list(shape)}" if shape is not None else type(key).__name__
        raise TypeError(f"{name}: expected one PRNG key such as jax.random.key(seed), got {got}")


class TrainState(NamedTuple):
    params: Params
    opt_state: Any
    key: jax.Array  # minibatch key of the run
    step: jax.Array  # int32 scalar


def check_data(data: Any, batch_size: int | None = None) -> Dataset:
    """Shapes and dtypes of a data.Dataset (NumPy or jax arrays, or tracers: nothing is copied
    or converted, so nothing compiles); values are checked by `validate_data`."""
    if isinstance(data, tuple) and not isinstance(data, Dataset) and len(data) in (6, 7):
        data = Dataset(*data)
    if not isinstance(data, Dataset):
        raise TypeError("data: expected a data.Dataset (X_train, Y_train, X_val, Y_val, X_test, "
                        f"Y_test[, P_test]), got {type(data).__name__}")
    data = Dataset(*(a if a is None or hasattr(a, "shape") else np.asarray(a) for a in data))
    d = data.X_train.shape[-1] if data.X_train.ndim == 2 else None
    for split in ("train", "val", "test"):
        X, Y = getattr(data, f"X_{split}"), getattr(data, f"Y_{split}")
        if X.ndim != 2 or X.shape[1] != d or not jnp.issubdtype(X.dtype, jnp.floating):
            raise ValueError(f"data.X_{split}: expected a floating (n, d) array"
                             f"{'' if d is None or split == 'train' else f' with d={d}'}, got "
                             f"{X.dtype}{list(X.shape)}")
        if X.shape[0] < 1:
            raise ValueError(f"data.X_{split}: expected at least one example, got shape "
                             f"{X.shape}")
        if Y.shape != (X.shape[0],):
            raise ValueError(f"data.Y_{split}: expected shape ({X.shape[0]},) to match "
                             f"X_{split} {X.shape}, got {Y.shape}")
    if data.P_test is not None and data.P_test.shape != data.Y_test.shape:
        raise ValueError(f"data.P_test: expected shape {data.Y_test.shape} like Y_test, got "
                         f"{data.P_test.shape}")
    n = data.X_train.shape[0]
    if batch_size is not None and batch_size > n:
        raise ValueError(f"batch_size: expected at most the {n} training examples, "
                         f"got {batch_size}")
    return data


def validate_data(data: Any) -> None:
    """Concrete checks before anything compiles: finite features, labels exactly 0 or 1."""
    for name, a in check_data(data)._asdict().items():
        if a is None:
            continue
        if name.startswith(("X", "P")):
            check_finite(f"data.{name}", a)
        if name.startswith("Y"):
            check_labels(f"data.{name}", a)


def accuracy(params: Params, X: jax.Array, Y: jax.Array) -> jax.Array:
    """Fraction of examples with 1{y_hat > 1/2} == y."""
    return _accuracy_from(predict(params, X), Y)


def _accuracy_from(Y_hat: jax.Array, Y: jax.Array) -> jax.Array:
    return jnp.mean(((Y_hat > 0.5) == (Y > 0.5)).astype(Y_hat.dtype))


def make_grad_fn(config: TrainConfig) -> Callable[[Params, jax.Array, jax.Array], Params]:
    if config.general:
        kw = dict(activation=config.activation, residual=config.residual,
                  loss_fn=config.loss_fn)
        if config.grad == "manual":
            return functools.partial(net_manual_grad, **kw)
        return jax.grad(functools.partial(net.net_loss, **kw))
    objective, manual, _ = LOSSES[config.loss_fn]
    return manual if config.grad == "manual" else jax.grad(objective)


def evaluate(config: TrainConfig, params: Params, data: Dataset,
             w_on: jax.Array | None = None) -> dict[str, jax.Array]:
    """Scalar metrics of one run at one eval point: loss and accuracy of each split (and, with a
    teacher, test_gen_err = mean 1/2 (y_hat - p_teacher)^2 on the test inputs), diagnostics.

    Each split's forward pass is traced once and read by every metric of that split (the
    gradient traces its own training pass, which XLA merges with this one). w_on: see
    make_stages. The network family (config.general) reads its own forward pass, loss and
    diagnostics (network.py, diagnostics.net_at_eval).
    """
    if config.general:  # the network family: its forward pass, loss and diagnostics
        fwd_of = functools.partial(net.net_forward_columns, activation=config.activation,
                                   residual=config.residual)
        loss_from = functools.partial(net.loss_from_net_forward, loss_fn=config.loss_fn)
        at_eval = diagnostics.net_at_eval
    else:
        fwd_of, loss_from, at_eval = forward_columns, LOSSES[config.loss_fn][2], diagnostics.at_eval
    g = _masked(make_grad_fn(config)(params, data.X_train, data.Y_train), w_on)
    out = {}
    for split in ("train", "val", "test"):
        X, Y = getattr(data, f"X_{split}"), getattr(data, f"Y_{split}")
        fwd = fwd_of(params, X)
        out[f"{split}_loss"] = loss_from(fwd, Y)
        out[f"{split}_acc"] = _accuracy_from(fwd.y_hat, Y)
        if split == "train":
            train = fwd
    if data.P_test is not None:
        out["test_gen_err"] = jnp.mean(0.5 * (fwd.y_hat - data.P_test) ** 2)
    out["grad_norm"] = optax.tree.norm(g)
    out.update(at_eval(params, g, data.X_train, train))
    return out


def _masked(g: Params, w_on: jax.Array | None) -> Params:
    """dJ/dW where w_on != 0, else 0 (which freezes W: a plain network run as a shortcut one
    with W = 0)."""
    return g if w_on is None or g.W is None else g._replace(
        W=jnp.where(w_on != 0, g.W, jnp.zeros_like(g.W)))


def make_stages(config: TrainConfig):
    """(init, run): init(draws, lr, data, w_scale=config.w_scale) -> state; run(state, lr, data,
    k, first=0) -> (state, metrics (k,)). draws = draw(key, d, config.h) or a wider draw (see
    `draw`); w_scale (may be traced) sets the shortcut's start W = w_scale * N(0, 1/d).
    run(..., w_on=s) with s = 0 (traced) sets dJ/dW to 0: with w_scale = 0 too, W stays
    exactly 0, so a shortcut config trains a plain network -- the sweep runs both variants in
    one compiled program that way (z2 gains W x = 0, which changes no value).

    `run` repeats k times: record the metrics of eval point `first + i` (step
    (first + i) * eval_every), then train eval_every steps -- except after the last eval point
    (config.num_evals - 1), so points past it repeat the final state. The sweep calls it in
    segments (one compiled program for all of them: `first` is traced) to update a progress bar
    between compiled calls; `evaluate` is compiled once, inside `run`.
    """
    grad_fn = make_grad_fn(config)
    full_batch_manual = config.batch_size is None and config.grad == "manual"

    def init(draws: Draws, lr: jax.Array, data: Dataset, w_scale=None) -> TrainState:
        if not isinstance(draws, Draws):
            raise TypeError(f"draws: expected a train.Draws, e.g. draw(key, d, h), got "
                            f"{type(draws).__name__}")
        data = check_data(data, config.batch_size)
        _check_key("draws.batch_key", draws.batch_key)
        z_dtype = getattr(draws.z, "dtype", None)
        if z_dtype != data.X_train.dtype:
            raise TypeError(f"draws.z: expected the data's dtype {data.X_train.dtype} (draw(key, "
                            f"d, h, dtype=data.X_train.dtype)), got {z_dtype}")
        make = (functools.partial(net.net_params_from_normals, depth=config.depth)
                if config.general else params_from_normals)
        params = make(draws.z, data.X_train.shape[1], config.h, shortcut=config.shortcut,
                      w_scale=config.w_scale if w_scale is None else w_scale)
        opt_state = config.make_optimizer(lr).init(params)
        return TrainState(params, opt_state, draws.batch_key, jnp.zeros((), jnp.int32))

    def batch(state: TrainState, data: Dataset) -> tuple[jax.Array, jax.Array]:
        if config.batch_size is None:
            return data.X_train, data.Y_train
        n, b = data.X_train.shape[0], config.batch_size
        per_epoch = n // b  # the last n % b examples of each shuffle are dropped
        epoch, i = state.step // per_epoch, state.step % per_epoch
        order = jax.random.permutation(jax.random.fold_in(state.key, epoch), n)
        idx = jax.lax.dynamic_slice(order, (i * b,), (b,))
        return data.X_train[idx], data.Y_train[idx]

    def step(state: TrainState, lr: jax.Array, data: Dataset, XT, w_on) -> TrainState:
        X, Y = batch(state, data)
        # full batch: X^T made once per run call, not every step (XLA does not hoist it)
        g = grad_fn(state.params, X, Y, XT=XT) if full_batch_manual else grad_fn(
            state.params, X, Y)
        g = _masked(g, w_on)
        updates, opt_state = config.make_optimizer(lr).update(g, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.key, state.step + 1)

    def run(state: TrainState, lr: jax.Array, data: Dataset, num_evals: int, first=0,
            w_on=None):
        data = check_data(data, config.batch_size)
        XT = data.X_train.T if full_batch_manual else None

        def interval(state, i):
            metrics = evaluate(config, state.params, data, w_on)
            todo = jnp.where(first + i < config.num_evals - 1, config.eval_every, 0)
            state = jax.lax.fori_loop(0, todo, lambda _, s: step(s, lr, data, XT, w_on), state)
            return state, metrics

        return jax.lax.scan(interval, state, jnp.arange(num_evals))

    return init, run


def make_train(config: TrainConfig):
    """train(key, lr, data) -> (params, metrics): metrics[name] has shape (config.num_evals,).

    Pure and traceable: jit it, vmap it over keys and learning rates.
    """
    init, run = make_stages(config)

    def train(key: jax.Array, lr: jax.Array, data: Dataset):
        data = check_data(data, config.batch_size)
        draws = draw(key, data.X_train.shape[1], config.h, data.X_train.dtype, config.depth)
        state, metrics = run(init(draws, lr, data), lr, data, config.num_evals)
        return state.params, metrics

    return train


def fit(params: Params, X: jax.Array, Y: jax.Array,
        optimizer: optax.GradientTransformation, steps: int, *, loss_fn: str = "mse",
        grad: str = "manual") -> tuple[Params, jax.Array]:
    """Train one model from `params` for `steps` full-batch steps -> (params, losses (steps,)).

    losses[t] is J before step t. Compiled as one `lax.scan`, once per optimizer object, steps,
    loss_fn, grad and shapes: calling fit again with the same optimizer does not recompile.
    """
    config = TrainConfig(h=params.W1.shape[0], steps=steps, eval_every=steps, loss_fn=loss_fn,
                         grad=grad)
    return _fit(params, X, Y, optimizer, config)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _fit(params, X, Y, optimizer, config: TrainConfig):
    objective, grad_fn = LOSSES[config.loss_fn][0], make_grad_fn(config)

    def step(carry, _):
        params, opt_state = carry
        value, g = objective(params, X, Y), grad_fn(params, X, Y)
        updates, opt_state = optimizer.update(g, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), length=config.steps)
    return params, losses

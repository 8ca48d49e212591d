"""Binary classification data: synthetic 2-D tasks, breast cancer, and the user's CSV files.

Every generator is a pure function of one PRNG key, with `n` and `d` static, so it can be
jitted and vmapped over keys. Inputs are float32 (n, d), labels float32 (n,) in {0, 1}.
The task lives in the first two coordinates; for d > 2 the rest are irrelevant N(0, 1)
features. `noise` is the std of Gaussian jitter added to the two task coordinates AFTER the
labels are fixed, so it blurs the boundary (label noise near it) without changing the rule.
"""

from __future__ import annotations

import csv
import math
import numbers
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

LINEAR_W = (0.6, 0.8)
"""Unit normal of the `linear` task's separating line through the origin (first 2 coords)."""

LINEAR_XOR_C = 2.0
"""Weight of the product term in `linear_xor`: y = 1{x1 + C x1 x2 > 0}."""

SPIRAL_TURNS = 1.5
"""Turns of each arm in `spirals`."""


class Dataset(NamedTuple):
    """X_train (n_train, d), Y_train (n_train,), X_test (n_test, d), Y_test (n_test,); float32."""

    X_train: jax.Array
    Y_train: jax.Array
    X_test: jax.Array
    Y_test: jax.Array


# --------------------------------------------------------------------------- argument checks


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _check_real(
    name: str, value: Any, *, low: float, high: float = math.inf, open_low: bool = False
) -> None:
    """Check a Python/NumPy number lies in [low, high) (or (low, high)); arrays pass unchecked."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not isinstance(value, numbers.Real):
        return  # a jax array or tracer: cannot be checked without concretizing
    ok = (value > low if open_low else value >= low) and value < high
    if not ok:  # also catches NaN
        lo = f"> {low}" if open_low else f">= {low}"
        rng = lo if high == math.inf else f"{lo} and < {high}"
        raise ValueError(f"{name} must be {rng}, got {value!r}")


def _check_common(n: int, d: int, noise: Any) -> None:
    _check_int("n", n, 1)
    _check_int("d", d, 2)
    _check_real("noise", noise, low=0.0)


# --------------------------------------------------------------------------- generators


def _draw(key: jax.Array, n: int, m: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Labels (n,) int32, half 0 half 1 (floor(n/2) ones) in random order; U[0,1) (n, m); key."""
    k_u, k_rest = jax.random.split(key)
    u = jax.random.uniform(k_u, (n, m + 1), jnp.float32)
    y = (jnp.arange(n, dtype=jnp.int32) % 2)[jnp.argsort(u[:, 0])]
    return y, u[:, 1:], k_rest


def _finish(
    key: jax.Array, x1: jax.Array, x2: jax.Array, y: jax.Array, d: int, noise: Any
) -> tuple[jax.Array, jax.Array]:
    """Stack (x1, x2), add N(0, noise^2) jitter, append d-2 N(0,1) columns: X (n,d), Y (n,)."""
    z = jax.random.normal(key, (x1.shape[0], d), jnp.float32)
    X = jnp.stack([x1, x2], axis=1).astype(jnp.float32)
    X = X + jnp.asarray(noise, jnp.float32) * z[:, :2]
    return jnp.concatenate([X, z[:, 2:]], axis=1), y.astype(jnp.float32)


def _pm(condition: jax.Array) -> jax.Array:
    """+1 where condition, else -1 (float32)."""
    return jnp.where(condition, 1.0, -1.0).astype(jnp.float32)


@partial(jax.jit, static_argnums=(1, 2))
def _linear(key, n, d, noise, margin):
    y, u, key = _draw(key, n, 2)
    along = _pm(y == 1) * (jnp.asarray(margin, jnp.float32) + u[:, 0])
    across = 2.0 * u[:, 1] - 1.0
    w1, w2 = LINEAR_W
    return _finish(key, along * w1 - across * w2, along * w2 + across * w1, y, d, noise)


def linear(
    key: jax.Array, n: int, d: int = 2, noise: float = 0.0, margin: float = 0.1
) -> tuple[jax.Array, jax.Array]:
    """X (n,d), Y (n,): y = 1{w.x > 0}, w = LINEAR_W, every clean point >= margin off the line.

    Along w the points sit at +-(margin + U[0,1)), across it at U[-1,1); classes are balanced.
    At noise 0 the data are linearly separable with the given margin.
    """
    _check_common(n, d, noise)
    _check_real("margin", margin, low=0.0)
    return _linear(key, n, d, noise, margin)


@partial(jax.jit, static_argnums=(1, 2))
def _xor(key, n, d, noise):
    y, u, key = _draw(key, n, 3)
    s1 = _pm(u[:, 2] < 0.5)
    s2 = jnp.where(y == 1, s1, -s1)
    return _finish(key, s1 * (1.0 - u[:, 0]), s2 * (1.0 - u[:, 1]), y, d, noise)


def xor(key: jax.Array, n: int, d: int = 2, noise: float = 0.05) -> tuple[jax.Array, jax.Array]:
    """X (n,d), Y (n,): (x1, x2) uniform on [-1,1]^2, y = 1{x1 x2 > 0}; classes balanced."""
    _check_common(n, d, noise)
    return _xor(key, n, d, noise)


@partial(jax.jit, static_argnums=(1, 2))
def _moons(key, n, d, noise):
    y, u, key = _draw(key, n, 1)
    t = jnp.pi * u[:, 0]
    x1 = jnp.where(y == 0, jnp.cos(t), 1.0 - jnp.cos(t))
    x2 = jnp.where(y == 0, jnp.sin(t), 0.5 - jnp.sin(t))
    return _finish(key, x1, x2, y, d, noise)


def moons(key: jax.Array, n: int, d: int = 2, noise: float = 0.1) -> tuple[jax.Array, jax.Array]:
    """X (n,d), Y (n,): two interleaved half circles (as sklearn's make_moons), y=1 the lower."""
    _check_common(n, d, noise)
    return _moons(key, n, d, noise)


@partial(jax.jit, static_argnums=(1, 2))
def _circles(key, n, d, noise, factor):
    y, u, key = _draw(key, n, 1)
    t = 2.0 * jnp.pi * u[:, 0]
    r = jnp.where(y == 1, jnp.asarray(factor, jnp.float32), 1.0)
    return _finish(key, r * jnp.cos(t), r * jnp.sin(t), y, d, noise)


def circles(
    key: jax.Array, n: int, d: int = 2, noise: float = 0.05, factor: float = 0.5
) -> tuple[jax.Array, jax.Array]:
    """X (n,d), Y (n,): concentric circles, y=0 radius 1, y=1 radius `factor` in (0, 1)."""
    _check_common(n, d, noise)
    _check_real("factor", factor, low=0.0, high=1.0, open_low=True)
    return _circles(key, n, d, noise, factor)


@partial(jax.jit, static_argnums=(1, 2))
def _spirals(key, n, d, noise):
    y, u, key = _draw(key, n, 1)
    t = u[:, 0]
    r = 0.1 + 0.9 * t
    angle = 2.0 * jnp.pi * SPIRAL_TURNS * t + jnp.pi * y.astype(jnp.float32)
    return _finish(key, r * jnp.cos(angle), r * jnp.sin(angle), y, d, noise)


def spirals(key: jax.Array, n: int, d: int = 2, noise: float = 0.05) -> tuple[jax.Array, jax.Array]:
    """X (n,d), Y (n,): two arms r = 0.1 + 0.9 t, angle 2 pi SPIRAL_TURNS t + pi y, t ~ U[0,1)."""
    _check_common(n, d, noise)
    return _spirals(key, n, d, noise)


@partial(jax.jit, static_argnums=(1, 2))
def _linear_xor(key, n, d, noise):
    y, u, key = _draw(key, n, 2)
    x2 = 2.0 * u[:, 0] - 1.0
    x1 = _pm(y == 1) * _pm(1.0 + LINEAR_XOR_C * x2 >= 0.0) * (1.0 - u[:, 1])
    return _finish(key, x1, x2, y, d, noise)


def linear_xor(
    key: jax.Array, n: int, d: int = 2, noise: float = 0.05
) -> tuple[jax.Array, jax.Array]:
    """X (n,d), Y (n,): (x1, x2) uniform on [-1,1]^2, y = 1{x1 + C x1 x2 > 0}, C = LINEAR_XOR_C.

    A linear part plus a product part, the task where a shortcut should matter: the best
    linear rule, y = 1{x1 > 0}, is right wherever x2 > -1/C (75% at C = 2); the hidden
    layer must flip it in the strip x2 < -1/C. Classes are balanced.
    """
    _check_common(n, d, noise)
    return _linear_xor(key, n, d, noise)


SYNTHETIC: dict[str, Callable[..., tuple[jax.Array, jax.Array]]] = {
    "linear": linear,
    "xor": xor,
    "moons": moons,
    "circles": circles,
    "spirals": spirals,
    "linear_xor": linear_xor,
}
"""Synthetic task name -> generator(key, n, d=2, noise=..., **task_kwargs) -> (X, Y)."""

DATASETS: tuple[str, ...] = (*SYNTHETIC, "breast_cancer")
"""Every name `get_dataset` accepts."""


# --------------------------------------------------------------------------- split, scale


def train_test_split(key: jax.Array, X: ArrayLike, Y: ArrayLike, n_test: int) -> Dataset:
    """X (n,d), Y (n,) -> Dataset: a random n_test rows as test, the other n - n_test as train."""
    X, Y = jnp.asarray(X), jnp.asarray(Y)
    if X.ndim != 2 or Y.ndim != 1 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X must be (n, d) and Y (n,), got X {X.shape} and Y {Y.shape}")
    n = X.shape[0]
    _check_int("n_test", n_test, 0)
    if n_test > n - 1:
        raise ValueError(f"n_test must be <= n - 1 = {n - 1} (train needs a row), got {n_test}")
    return _split(key, X, Y, n_test)


@partial(jax.jit, static_argnums=3)
def _split(key, X, Y, n_test):
    perm = jax.random.permutation(key, X.shape[0])
    test, train = perm[:n_test], perm[n_test:]
    return Dataset(X[train], Y[train], X[test], Y[test])


def standardize(
    X_train: ArrayLike, X_test: ArrayLike
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(n_tr,d), (n_te,d) -> both scaled by the TRAIN mean (d,) and std (d,); returns them too.

    A column constant on train gets std 1 and its train value as mean (so it maps to 0).
    """
    X_train, X_test = jnp.asarray(X_train), jnp.asarray(X_test)
    if X_train.ndim != 2 or X_test.ndim != 2 or X_train.shape[1] != X_test.shape[1]:
        raise ValueError(
            f"X_train and X_test must be (n, d) with the same d, got {X_train.shape} and "
            f"{X_test.shape}"
        )
    if X_train.shape[0] < 1:
        raise ValueError(f"X_train must have >= 1 row, got shape {X_train.shape}")
    return _standardize(X_train, X_test)


@jax.jit
def _standardize(X_train, X_test):
    constant = X_train.max(axis=0) == X_train.min(axis=0)
    mean = jnp.where(constant, X_train[0], X_train.mean(axis=0))
    std = jnp.where(constant, jnp.ones_like(mean), X_train.std(axis=0))
    return (
        (X_train - mean[None, :]) / std[None, :],
        (X_test - mean[None, :]) / std[None, :],
        mean,
        std,
    )


def _split_standardize(
    key: jax.Array, X: ArrayLike, Y: ArrayLike, n_test: int
) -> tuple[Dataset, jax.Array, jax.Array]:
    """Split, then standardize on train: (Dataset, mean (d,), std (d,))."""
    raw = train_test_split(key, X, Y, n_test)
    X_train, X_test, mean, std = standardize(raw.X_train, raw.X_test)
    return Dataset(X_train, raw.Y_train, X_test, raw.Y_test), mean, std


def _unknown(name: Any, known: tuple[str, ...] | list[str]) -> ValueError:
    return ValueError(f"name must be one of {', '.join(known)}; got {name!r}")


def make_synthetic(
    name: str,
    key: jax.Array,
    n_train: int,
    n_test: int,
    d: int = 2,
    noise: float | None = None,
    **task_kwargs: Any,
) -> Dataset:
    """Dataset with X (n_train|n_test, d) standardized on train; noise None = the task's default.

    `task_kwargs` go to the generator (e.g. margin for linear, factor for circles).
    """
    if name not in SYNTHETIC:
        raise _unknown(name, list(SYNTHETIC))
    _check_int("n_train", n_train, 1)
    _check_int("n_test", n_test, 0)
    if noise is not None:
        task_kwargs["noise"] = noise
    k_gen, k_split = jax.random.split(key)
    X, Y = SYNTHETIC[name](k_gen, n_train + n_test, d, **task_kwargs)
    return _split_standardize(k_split, X, Y, n_test)[0]


# --------------------------------------------------------------------------- real data


def _n_test(n: int, test_fraction: Any) -> int:
    if not isinstance(test_fraction, numbers.Real):
        raise TypeError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    _check_real("test_fraction", test_fraction, low=0.0, high=1.0, open_low=True)
    if n < 2:
        raise ValueError(f"need >= 2 rows to split into train and test, got {n}")
    return min(max(round(n * float(test_fraction)), 1), n - 1)


def breast_cancer(key: jax.Array, test_fraction: float = 0.3) -> Dataset:
    """Wisconsin breast cancer (569 x 30, y=1 benign) from scikit-learn, standardized on train."""
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError as err:
        raise ImportError(
            "breast_cancer needs scikit-learn: pip install 'shortcut-jax[experiments]'"
        ) from err
    bunch = load_breast_cancer()
    X = np.asarray(bunch.data, np.float32)
    Y = np.asarray(bunch.target, np.float32)
    return _split_standardize(key, X, Y, _n_test(X.shape[0], test_fraction))[0]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _label_key(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def load_csv(
    path: str | os.PathLike[str],
    target: str,
    *,
    key: jax.Array,
    test_fraction: float = 0.3,
) -> tuple[Dataset, dict[str, Any]]:
    """CSV with a header row -> (Dataset standardized on train, info); all other columns numeric.

    The target must take exactly two values: 0/1 are kept, any other two are mapped in sorted
    order (numbers numerically, else strings lexicographically), smaller -> 0, larger -> 1.
    info: path, target, feature_names, label_map {original: 0|1}, n_train, n_test, mean, std
    (the train statistics, as lists, to scale new data the same way).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such file")
    if not isinstance(target, str):
        raise TypeError(f"target must be a column name (str), got {target!r}")
    where = f"in path={str(path)!r}"
    with p.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise ValueError(f"path={str(path)!r}: empty file, a header row is required")
        rows: list[list[str]] = []
        lines: list[int] = []
        for row in reader:
            if not row:
                continue  # blank line
            if len(row) != len(header):
                raise ValueError(
                    f"row {len(rows) + 1} (line {reader.line_num}) {where} has {len(row)} "
                    f"cells, the header has {len(header)}"
                )
            rows.append([c.strip() for c in row])
            lines.append(reader.line_num)
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ValueError(f"duplicate column names {dup} {where}")
    if target not in header:
        hint = ""
        if all(_is_number(h) for h in header):
            hint = " (the first row looks like data: a header row of column names is required)"
        raise ValueError(
            f"target={target!r} is not a column {where}; available columns: {header}{hint}"
        )
    if not rows:
        raise ValueError(f"no data rows {where}")
    t_col = header.index(target)
    feature_names = [h for h in header if h != target]
    if not feature_names:
        raise ValueError(f"no feature columns besides target={target!r} {where}")

    def cell_error(what: str, j: int, i: int) -> ValueError:
        return ValueError(f"{what} in column {header[j]!r}, row {i + 1} (line {lines[i]}) {where}")

    X = np.empty((len(rows), len(header) - 1), np.float64)
    for i, row in enumerate(rows):
        c = 0
        for j, cell in enumerate(row):
            if j == t_col:
                continue
            if cell == "":
                raise cell_error("empty cell", j, i)
            try:
                value = float(cell)
            except ValueError:
                raise cell_error(f"non-numeric value {cell!r}", j, i) from None
            if not math.isfinite(value):
                raise cell_error(f"NaN or infinite value {cell!r}", j, i)
            X[i, c] = value
            c += 1

    raw_y = [row[t_col] for row in rows]
    for i, cell in enumerate(raw_y):
        if cell == "":
            raise cell_error("empty cell", t_col, i)
    try:
        values: list[Any] = [float(c) for c in raw_y]
    except ValueError:
        values = raw_y  # string labels
    else:
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise cell_error(f"NaN or infinite value {raw_y[i]!r}", t_col, i)
    distinct = sorted(set(values))
    if len(distinct) != 2:
        shown = ", ".join(repr(_label_key(v) if isinstance(v, float) else v) for v in distinct[:5])
        more = ", ..." if len(distinct) > 5 else ""
        raise ValueError(
            f"target={target!r} must have exactly 2 distinct values, found {len(distinct)}: "
            f"{shown}{more} {where}"
        )
    Y = np.asarray([0.0 if v == distinct[0] else 1.0 for v in values], np.float32)
    label_map = {(_label_key(v) if isinstance(v, float) else v): k for k, v in enumerate(distinct)}

    n_test = _n_test(len(rows), test_fraction)
    data, mean, std = _split_standardize(key, X.astype(np.float32), Y, n_test)
    info = {
        "path": str(path),
        "target": target,
        "feature_names": feature_names,
        "label_map": label_map,
        "n_train": len(rows) - n_test,
        "n_test": n_test,
        "mean": np.asarray(mean).tolist(),
        "std": np.asarray(std).tolist(),
    }
    return data, info


def get_dataset(
    name: str,
    key: jax.Array,
    *,
    n_train: int = 200,
    n_test: int = 1000,
    d: int = 2,
    noise: float | None = None,
) -> Dataset:
    """Dataset by name (see DATASETS); breast_cancer ignores n_train, n_test, d and noise."""
    if name in SYNTHETIC:
        return make_synthetic(name, key, n_train, n_test, d, noise)
    if name == "breast_cancer":
        return breast_cancer(key)
    raise _unknown(name, DATASETS)

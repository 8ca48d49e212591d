"""Binary classification data: synthetic tasks, a teacher network, breast cancer, CSV files.

Every data set is a `Dataset` of float32 NumPy arrays: a train split, a validation split carved
from the training part (stratified by label), and a test split, all standardized with the train
split's mean and std. Everything is NumPy, seeded by an int (or a JAX key): making data compiles
nothing.

Synthetic tasks live in the first two input coordinates; for d > 2 the other coordinates are
irrelevant N(0, 1) features. `noise` is the std of Gaussian jitter added to the inputs AFTER the
labels are fixed (input jitter, not label noise): it blurs the boundary without changing the rule.
The `teacher` task draws x ~ N(0, I_d) and labels from a two-layer network of the kit's family.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

LINEAR_W = (0.6, 0.8)
"""Unit normal of the `linear` task's separating line through the origin (first 2 coords)."""

LINEAR_XOR_WEIGHT = 1 / 3
"""Default `linear_weight` of `linear_xor`: y = 1{x1 + 2 x1 x2 > 0}."""

SPIRAL_TURNS = 1.5
"""Turns of each arm in `spirals`."""

TEACHER_LOGIT_STD = 4.0
"""Std of the teacher's hidden-layer logit on x ~ N(0, I_d); its shortcut adds s times that."""

VAL_FRACTION = 0.2
"""Default share of the training part held out for validation."""


class Dataset(NamedTuple):
    """Train (n, d)/(n,), validation (v, d)/(v,), test (m, d)/(m,), float32; P_test (m,) is the
    teacher's noiseless P(y = 1 | x) on the test inputs (teacher task only, else None)."""

    X_train: Any
    Y_train: Any
    X_val: Any
    Y_val: Any
    X_test: Any
    Y_test: Any
    P_test: Any = None


# --------------------------------------------------------------------------- argument checks


def _check_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _check_real(name: str, value: Any, low: float, high: float = math.inf, *,
                open_low: bool = False, open_high: bool = True) -> float:
    """A real number in [low, high) (or with the given open/closed ends), as float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = (value > low if open_low else value >= low) and (
            value < high if open_high else value <= high)
    if not ok:  # also catches NaN
        lo = f"{'(' if open_low else '['}{low:g}"
        hi = f"{high:g}{')' if open_high else ']'}"
        raise ValueError(f"{name}: expected a number in {lo}, {hi}, got {value!r}")
    return value


def rng_from(seed: Any) -> np.random.Generator:
    """A NumPy generator from an int seed >= 0, a JAX PRNG key, or a Generator (returned)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    dtype = getattr(seed, "dtype", None)
    if dtype is not None:  # a JAX key: typed (shape ()) or raw uint32 data
        import jax

        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            seed = jax.random.key_data(seed)
        words = np.asarray(seed)
        if words.dtype == np.uint32 and words.ndim == 1:
            return np.random.default_rng(words.tolist())
    raise TypeError(f"seed: expected an integer >= 0 or a JAX PRNG key, got {seed!r}")


# --------------------------------------------------------------------------- generators


def _balanced(rng: np.random.Generator, n: int) -> np.ndarray:
    """Labels (n,) int, floor(n/2) ones, in random order."""
    return rng.permutation(np.arange(n) % 2)


def _pm(condition: np.ndarray) -> np.ndarray:
    return np.where(condition, 1.0, -1.0)


def _finish(rng: np.random.Generator, x1, x2, y, d: int, noise: float):
    """Stack (x1, x2), add N(0, noise^2) jitter, append d-2 N(0, 1) columns: X (n,d), Y (n,)."""
    z = rng.standard_normal((len(y), d))
    X = np.stack([x1, x2], axis=1) + noise * z[:, :2]
    return np.concatenate([X, z[:, 2:]], axis=1).astype(np.float32), y.astype(np.float32)


def _check_common(n: int, d: int, noise: Any, d_min: int = 2) -> float:
    _check_int("n", n, 1)
    _check_int("d", d, d_min)
    return _check_real("noise", noise, 0.0)


def linear(seed, n: int, d: int = 2, noise: float = 0.0, margin: float = 0.1):
    """X (n,d), Y (n,): y = 1{w.x > 0}, w = LINEAR_W, every clean point >= margin off the line.

    Along w the points sit at +-(margin + U[0,1)), across it at U[-1,1); classes are balanced.
    """
    noise = _check_common(n, d, noise)
    margin = _check_real("margin", margin, 0.0)
    rng = rng_from(seed)
    y = _balanced(rng, n)
    u = rng.random((n, 2))
    along, across = _pm(y == 1) * (margin + u[:, 0]), 2.0 * u[:, 1] - 1.0
    w1, w2 = LINEAR_W
    return _finish(rng, along * w1 - across * w2, along * w2 + across * w1, y, d, noise)


def xor(seed, n: int, d: int = 2, noise: float = 0.05):
    """X (n,d), Y (n,): (x1, x2) uniform on [-1,1]^2, y = 1{x1 x2 > 0}; classes balanced."""
    return linear_xor(seed, n, d, noise, linear_weight=0.0)


def moons(seed, n: int, d: int = 2, noise: float = 0.1):
    """X (n,d), Y (n,): two interleaved half circles (as sklearn's make_moons), y=1 the lower."""
    noise = _check_common(n, d, noise)
    rng = rng_from(seed)
    y = _balanced(rng, n)
    t = np.pi * rng.random(n)
    x1 = np.where(y == 0, np.cos(t), 1.0 - np.cos(t))
    x2 = np.where(y == 0, np.sin(t), 0.5 - np.sin(t))
    return _finish(rng, x1, x2, y, d, noise)


def circles(seed, n: int, d: int = 2, noise: float = 0.05, factor: float = 0.5):
    """X (n,d), Y (n,): concentric circles, y=0 radius 1, y=1 radius `factor` in (0, 1)."""
    noise = _check_common(n, d, noise)
    factor = _check_real("factor", factor, 0.0, 1.0, open_low=True)
    rng = rng_from(seed)
    y = _balanced(rng, n)
    t = 2.0 * np.pi * rng.random(n)
    r = np.where(y == 1, factor, 1.0)
    return _finish(rng, r * np.cos(t), r * np.sin(t), y, d, noise)


def spirals(seed, n: int, d: int = 2, noise: float = 0.05):
    """X (n,d), Y (n,): two arms r = 0.1 + 0.9 t, angle 2 pi SPIRAL_TURNS t + pi y, t ~ U[0,1)."""
    noise = _check_common(n, d, noise)
    rng = rng_from(seed)
    y = _balanced(rng, n)
    t = rng.random(n)
    r, angle = 0.1 + 0.9 * t, 2.0 * np.pi * SPIRAL_TURNS * t + np.pi * y
    return _finish(rng, r * np.cos(angle), r * np.sin(angle), y, d, noise)


def linear_xor(seed, n: int, d: int = 2, noise: float = 0.05,
               linear_weight: float = LINEAR_XOR_WEIGHT):
    """X (n,d), Y (n,): (x1, x2) uniform on [-1,1]^2, y = 1{a x1 + (1 - a) x1 x2 > 0}, a the
    linear_weight in [0, 1]: 1 is the linear rule y = 1{x1 > 0}, 0 is XOR; classes balanced.

    The default a = 1/3 is y = 1{x1 + 2 x1 x2 > 0}: the linear rule is right where x2 > -1/2
    (75% of the square) and the hidden layer must flip it in the strip below.
    """
    noise = _check_common(n, d, noise)
    a = _check_real("linear_weight", linear_weight, 0.0, 1.0, open_high=False)
    rng = rng_from(seed)
    y = _balanced(rng, n)
    u = rng.random((n, 2))
    x2 = 2.0 * u[:, 0] - 1.0
    x1 = _pm(y == 1) * _pm(a + (1.0 - a) * x2 >= 0.0) * (1.0 - u[:, 1])
    return _finish(rng, x1, x2, y, d, noise)


def teacher_params(d: int, width: int, shortcut: float = 0.0, teacher_seed: int = 0):
    """A teacher of the kit's family as float64 model.Params, drawn from teacher_seed alone.

    W1 ~ N(0, 1/d), b1 = 0; W2, b2 set so that the hidden logit W2 a1 + b2 has mean 0 and std
    TEACHER_LOGIT_STD on x ~ N(0, I_d) (fitted on 8192 inputs drawn with the teacher); W =
    shortcut * TEACHER_LOGIT_STD * u^T with u a random unit vector, None when shortcut is 0 (a
    plain network). The same teacher_seed gives the same W1, W2, b2 and u for every shortcut.
    """
    from shortcut_jax.model import Params

    _check_int("d", d, 1)
    _check_int("teacher_width", width, 1)
    s = _check_real("teacher_shortcut", shortcut, 0.0)
    _check_int("teacher_seed", teacher_seed, 0)
    rng = np.random.default_rng([teacher_seed, d, width])
    W1 = rng.standard_normal((width, d)) / math.sqrt(d)
    W2 = rng.standard_normal((1, width))
    u = rng.standard_normal(d)
    hidden = np.maximum(rng.standard_normal((8192, d)) @ W1.T, 0.0) @ W2[0]
    gain = TEACHER_LOGIT_STD / max(float(hidden.std()), 1e-12)
    W = s * TEACHER_LOGIT_STD * (u / np.linalg.norm(u))[None, :] if s > 0 else None
    return Params(W1=W1, b1=np.zeros(width), W2=W2 * gain,
                  b2=np.asarray(-float(hidden.mean()) * gain), W=W)


def teacher_probability(params, X: np.ndarray) -> np.ndarray:
    """sigmoid(W2 relu(W1 x + b1) + b2 [+ W x]) of a float64 teacher on X (n, d), in NumPy."""
    z2 = np.maximum(X @ params.W1.T + params.b1, 0.0) @ params.W2[0] + params.b2
    if params.W is not None:
        z2 = z2 + X @ params.W[0]
    return 0.5 * (1.0 + np.tanh(0.5 * z2))


def teacher(seed, n: int, d: int = 2, noise: float = 0.0, *, width: int = 4,
            shortcut: float = 0.0, labels: str = "threshold", flip: float = 0.0,
            teacher_seed: int = 0):
    """X (n,d), Y (n,), P (n,): x ~ N(0, I_d), labels from `teacher_params(d, width, shortcut,
    teacher_seed)`: P = the teacher's P(y = 1 | x) on the inputs returned, y = 1{P > 1/2}
    (labels="threshold") or y ~ Bernoulli(P) ("bernoulli"), then each label flipped with
    probability `flip`. Input jitter (noise) is added after the labels are drawn.
    """
    noise = _check_common(n, d, noise, d_min=1)
    if labels not in ("threshold", "bernoulli"):
        raise ValueError(f"labels: expected 'threshold' or 'bernoulli', got {labels!r}")
    flip = _check_real("flip", flip, 0.0, 0.5, open_high=False)
    params = teacher_params(d, width, shortcut, teacher_seed)
    rng = rng_from(seed)
    X = rng.standard_normal((n, d))
    p = teacher_probability(params, X)
    y = (p > 0.5) if labels == "threshold" else (rng.random(n) < p)
    y = np.where(rng.random(n) < flip, ~y, y)
    X = X + noise * rng.standard_normal((n, d))
    return (X.astype(np.float32), y.astype(np.float32),
            teacher_probability(params, X).astype(np.float32))


SYNTHETIC: dict[str, Callable[..., tuple]] = {
    "linear": linear,
    "xor": xor,
    "moons": moons,
    "circles": circles,
    "spirals": spirals,
    "linear_xor": linear_xor,
    "teacher": teacher,
}
"""Synthetic task name -> generator(seed, n, d=2, noise=..., **task_kwargs) -> (X, Y[, P])."""

DEFAULT_NOISE = {"linear": 0.0, "xor": 0.05, "moons": 0.1, "circles": 0.05, "spirals": 0.05,
                 "linear_xor": 0.05, "teacher": 0.0}
"""Each synthetic task's default input jitter."""

DATASETS: tuple[str, ...] = (*SYNTHETIC, "breast_cancer")
"""Every name `get_dataset` accepts."""


# --------------------------------------------------------------------------- split, scale


def _carve(rng: np.random.Generator, Y: np.ndarray, fraction: float, what: str):
    """(rest, carved) row indices, carved = round(fraction * count) rows of each label (at least
    one row in all, at least one left), each shuffled."""
    labels = np.unique(Y)
    take = {c: int(round(fraction * np.sum(Y == c))) for c in labels}
    if sum(take.values()) == 0:
        take[max(labels, key=lambda c: np.sum(Y == c))] = 1
    rest, carved = [], []
    for c in labels:
        idx = rng.permutation(np.flatnonzero(Y == c))
        carved.append(idx[:take[c]])
        rest.append(idx[take[c]:])
    rest, carved = np.concatenate(rest), np.concatenate(carved)
    if len(rest) == 0:
        raise ValueError(f"{what}: {fraction:g} of {len(Y)} rows leaves no rows to train on")
    return rng.permutation(rest), rng.permutation(carved)


def standardize(X_train, *others):
    """(mean (d,), std (d,)) of X_train and (X - mean) / std of X_train and each of `others`.

    A column constant on train gets std 1 and its train value as mean (so it maps to 0).
    """
    X_train = np.asarray(X_train, np.float64)
    if X_train.ndim != 2 or X_train.shape[0] < 1:
        raise ValueError(f"X_train: expected an (n, d) array with n >= 1, got {X_train.shape}")
    for i, X in enumerate(others):
        if np.ndim(X) != 2 or np.shape(X)[1] != X_train.shape[1]:
            raise ValueError(f"others[{i}]: expected (m, {X_train.shape[1]}) like X_train, "
                             f"got {np.shape(X)}")
    constant = X_train.max(axis=0) == X_train.min(axis=0)
    mean = np.where(constant, X_train[0], X_train.mean(axis=0))
    std = np.where(constant, 1.0, X_train.std(axis=0))
    scaled = [((np.asarray(X, np.float64) - mean) / std).astype(np.float32)
              for X in (X_train, *others)]
    return mean, std, *scaled


def split(seed, X, Y, *, test_fraction: float | None = None, n_test: int | None = None,
          val_fraction: float = VAL_FRACTION, P=None) -> tuple[Dataset, dict[str, Any]]:
    """Rows (X (n, d), Y (n,)) -> (Dataset, scaling): test rows (the last n_test, which must
    already be in random order, or a stratified test_fraction), validation rows (a stratified
    val_fraction of the rest), standardized on the train rows; scaling = {"mean", "std"} lists.
    P (n,): the teacher's probabilities, kept for the test rows.
    """
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim != 2 or Y.shape != (X.shape[0],):
        raise ValueError(f"X, Y: expected shapes (n, d) and (n,), got {X.shape} and {Y.shape}")
    val_fraction = _check_real("val_fraction", val_fraction, 0.0, 1.0, open_low=True)
    rng = rng_from(seed)
    if (test_fraction is None) == (n_test is None):
        raise ValueError("split: expected exactly one of test_fraction and n_test")
    if n_test is not None:
        _check_int("n_test", n_test, 1)
        if n_test >= len(Y):
            raise ValueError(f"n_test: expected fewer than the {len(Y)} rows, got {n_test}")
        part, test = np.arange(len(Y) - n_test), np.arange(len(Y) - n_test, len(Y))
    else:
        test_fraction = _check_real("test_fraction", test_fraction, 0.0, 1.0, open_low=True)
        part, test = _carve(rng, Y, test_fraction, "test_fraction")
    train, val = _carve(rng, Y[part], val_fraction, "val_fraction")
    train, val = part[train], part[val]
    mean, std, X_train, X_val, X_test = standardize(X[train], X[val], X[test])
    Y = Y.astype(np.float32)
    ds = Dataset(X_train, Y[train], X_val, Y[val], X_test, Y[test],
                 None if P is None else np.asarray(P, np.float32)[test])
    return ds, {"mean": mean.tolist(), "std": std.tolist()}


def make_synthetic(name: str, seed, n_train: int, n_test: int, d: int = 2,
                   noise: float | None = None, *, val_fraction: float = VAL_FRACTION,
                   **task_kwargs: Any) -> Dataset:
    """Dataset of a synthetic task: n_train + n_test rows drawn, the last n_test the test split,
    a stratified val_fraction of the first n_train the validation split; standardized on train.

    noise None = the task's default (DEFAULT_NOISE); task_kwargs go to the generator (margin of
    linear, factor of circles, linear_weight of linear_xor, width/shortcut/... of teacher).
    """
    if name not in SYNTHETIC:
        raise _unknown(name, list(SYNTHETIC))
    _check_int("n_train", n_train, 2)
    _check_int("n_test", n_test, 1)
    rng = rng_from(seed)
    noise = DEFAULT_NOISE[name] if noise is None else noise
    X, Y, *P = SYNTHETIC[name](rng, n_train + n_test, d, noise, **task_kwargs)
    return split(rng, X, Y, n_test=n_test, val_fraction=val_fraction, P=P[0] if P else None)[0]


def _unknown(name: Any, known) -> ValueError:
    return ValueError(f"name: expected one of {', '.join(known)}; got {name!r}")


# --------------------------------------------------------------------------- real data


def breast_cancer(seed, test_fraction: float = 0.3, val_fraction: float = VAL_FRACTION) -> Dataset:
    """Wisconsin breast cancer (569 x 30, y=1 benign) from scikit-learn: stratified test and
    validation splits, standardized on train."""
    X, Y = breast_cancer_arrays()
    return split(seed, X.astype(np.float32), Y.astype(np.float32), test_fraction=test_fraction,
                 val_fraction=val_fraction)[0]


def breast_cancer_arrays() -> tuple[np.ndarray, np.ndarray]:
    """X (569, 30), Y (569,) as sklearn.datasets.load_breast_cancer gives them, read from the
    CSV file scikit-learn ships (importing sklearn.datasets takes over a second); through
    load_breast_cancer where that file is not found."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise ImportError("breast_cancer needs scikit-learn: pip install "
                          "'shortcut-jax[experiments]'")
    path = Path(spec.origin).parent / "datasets" / "data" / "breast_cancer.csv"
    if path.is_file():
        raw = np.loadtxt(path, delimiter=",", skiprows=1)  # header: 569,30,malignant,benign
        return raw[:, :-1], raw[:, -1]
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return np.asarray(bunch.data), np.asarray(bunch.target)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _label_key(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def load_csv(path: str | os.PathLike[str], target: str, *, seed=0, test_fraction: float = 0.3,
             val_fraction: float = VAL_FRACTION) -> tuple[Dataset, dict[str, Any]]:
    """CSV with a header row -> (Dataset standardized on train, info); all other columns numeric.

    The target must take exactly two values: 0/1 are kept, any other two are mapped in sorted
    order (numbers numerically, else strings), smaller -> 0, larger -> 1. info: path, sha256,
    target, feature_names, label_map {original: 0|1}, mean and std (the train statistics, to
    scale new data the same way).
    """
    import pandas as pd

    p = Path(path)
    where = f"in path={str(path)!r}"
    if not p.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such file")
    if not isinstance(target, str):
        raise TypeError(f"target: expected a column name (str), got {target!r}")
    try:
        table = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                            header=None, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise ValueError(f"path={str(path)!r}: empty file, a header row is required") from None
    except pd.errors.ParserError as err:
        raise ValueError(f"path={str(path)!r}: {err}") from None
    table = table.apply(lambda column: column.str.strip())
    header = table.iloc[0].tolist()
    table = table.iloc[1:].reset_index(drop=True)
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ValueError(f"duplicate column names {dup} {where}")
    if target not in header:
        numeric = pd.to_numeric(pd.Series(header), errors="coerce").notna().all()
        hint = (" (the first row looks like data: a header row of column names is required)"
                if numeric else "")
        raise ValueError(f"target={target!r} is not a column {where}; available columns: "
                         f"{header}{hint}")
    table.columns = header
    if table.empty:
        raise ValueError(f"no data rows {where}")
    features = [h for h in header if h != target]
    if not features:
        raise ValueError(f"no feature columns besides target={target!r} {where}")
    missing = table.isna() | (table == "")
    if missing.any().any():
        row, col = np.argwhere(missing.to_numpy())[0]
        raise ValueError(f"empty cell in column {header[col]!r}, row {row + 1} {where}")
    values = table.apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(values[features].to_numpy(np.float64))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        cell = table[features[col]].iloc[row]
        raise ValueError(f"non-numeric, NaN or infinite value {cell!r} in column "
                         f"{features[col]!r}, row {row + 1} {where}")
    if table[target].map(_is_float).all():  # numeric labels
        raw = table[target].astype(np.float64).to_numpy()
        if not np.isfinite(raw).all():
            row = int(np.flatnonzero(~np.isfinite(raw))[0])
            raise ValueError(f"NaN or infinite value {table[target].iloc[row]!r} in column "
                             f"{target!r}, row {row + 1} {where}")
    else:
        raw = table[target].to_numpy()
    distinct = sorted(set(raw.tolist()))
    if len(distinct) != 2:
        shown = ", ".join(repr(_label_key(v)) for v in distinct[:5])
        more = ", ..." if len(distinct) > 5 else ""
        raise ValueError(f"target={target!r}: expected exactly 2 distinct values, found "
                         f"{len(distinct)}: {shown}{more} {where}")
    Y = (raw == distinct[1]).astype(np.float32)
    X = values[features].to_numpy(np.float32)
    ds, scaling = split(seed, X, Y, test_fraction=test_fraction, val_fraction=val_fraction)
    info = {"path": str(path), "sha256": file_sha256(p), "target": target,
            "feature_names": features,
            "label_map": {_label_key(v): k for k, v in enumerate(distinct)}, **scaling}
    return ds, info


def get_dataset(name: str, seed, *, n_train: int = 200, n_test: int = 1000, d: int = 2,
                noise: float | None = None, val_fraction: float = VAL_FRACTION,
                **task_kwargs: Any) -> Dataset:
    """Dataset by name (see DATASETS); breast_cancer takes none of n_train, n_test, d, noise."""
    if name in SYNTHETIC:
        return make_synthetic(name, seed, n_train, n_test, d, noise, val_fraction=val_fraction,
                              **task_kwargs)
    if name == "breast_cancer":
        return breast_cancer(seed, val_fraction=val_fraction)
    raise _unknown(name, DATASETS)


def describe(ds: Dataset, name: str, **extra: Any) -> dict[str, Any]:
    """The provenance record of a data set: name, sizes of each split, d, label map, extras."""
    return {"name": name, "n_train": int(len(ds.Y_train)), "n_val": int(len(ds.Y_val)),
            "n_test": int(len(ds.Y_test)), "d": int(np.shape(ds.X_train)[1]),
            "label_map": {0: 0, 1: 1}, **extra}

"""Seed-level statistics for sweep results: t-based CIs, steps-to-threshold, paired tests.

Input format: a list of dict rows (as from ``csv.DictReader``; values may be strings or
numbers) or a dict of equal-length column arrays. Pure Python + numpy; nothing is printed.

Conventions:

* CIs are two-sided Student-t intervals of the mean over seeds (sample sd, ``ddof=1``);
  with one value the CI is ``(nan, nan)``.
* NaN in a quantity being averaged raises ``ValueError`` unless ``drop_nan=True``.
* A run that never reaches the loss threshold has steps-to-threshold ``inf``.
* Group keys absent from every row are ignored (left out of grouping and of the output).
* Empty strings and ``None`` in numeric columns mean NaN.
* ``t_quantile`` (no scipy): bisection on the t CDF via the regularized incomplete beta
  (Lentz continued fraction); relative error < 1e-11 for df <= 1e6 (checked vs scipy).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_GROUP_KEYS",
    "DEFAULT_METRICS",
    "format_ci",
    "mean_ci",
    "paired_differences",
    "rows_to_columns",
    "steps_to_threshold",
    "summarize",
    "t_cdf",
    "t_quantile",
]

DEFAULT_GROUP_KEYS: tuple[str, ...] = (
    "dataset",
    "variant",
    "width",
    "lr",
    "optimizer",
    "loss_fn",
)
DEFAULT_METRICS: tuple[str, ...] = ("test_acc", "test_loss", "train_loss")
STEPS_METRIC = "steps_to_tau"

Rows = Sequence[Mapping[str, Any]] | Mapping[str, Any]

# --------------------------------------------------------------------------------------
# Student-t distribution (no scipy)
# --------------------------------------------------------------------------------------

_EPS = 1e-16
_TINY = 1e-300


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise RuntimeError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def _betainc(a: float, b: float, x: float, y: float, log_front: float) -> float:
    """Regularized incomplete beta I_x(a, b); ``y = 1 - x`` and the log of the prefactor
    ``x**a * y**b / B(a, b)`` are passed in so callers can compute them accurately."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, y) / b


def _lgamma_ratio_half(a: float) -> float:
    """log(Gamma(a + 1/2) / Gamma(a)), without cancellation for large ``a``."""
    if a < 50.0:
        return math.lgamma(a + 0.5) - math.lgamma(a)
    inv = 1.0 / a
    return 0.5 * math.log(a) + inv * (
        -1.0 / 8.0 + inv**2 * (1.0 / 192.0 + inv**2 * (-1.0 / 640.0 + inv**2 * 17.0 / 14336.0))
    )


def _upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0."""
    if math.isinf(df):
        return 0.5 * math.erfc(t / math.sqrt(2.0))
    if t == 0.0:
        return 0.5
    a = df / 2.0
    t2 = t * t
    x, y = df / (df + t2), t2 / (df + t2)
    # log of x**a * y**(1/2) / B(a, 1/2), with B(a, 1/2) = Gamma(a) sqrt(pi) / Gamma(a + 1/2).
    log_front = (
        _lgamma_ratio_half(a)
        - 0.5 * math.log(math.pi)
        - a * math.log1p(t2 / df)
        + 0.5 * math.log(y)
    )
    return 0.5 * _betainc(a, 0.5, x, y, log_front)


def t_cdf(t: float, df: float) -> float:
    """Student-t CDF P(T <= t) with ``df > 0`` degrees of freedom (``df=inf``: normal)."""
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df}")
    if math.isnan(t):
        return math.nan
    if t >= 0:
        return 1.0 - _upper_tail(t, df)
    return _upper_tail(-t, df)


@lru_cache(maxsize=1024)
def _t_upper_quantile(q: float, df: float) -> float:
    """The t >= 0 with P(T > t) = q, for 0 < q <= 0.5, by bisection."""
    if df == 1.0:  # Cauchy: closed form, also far in the tail.
        return 1.0 / math.tan(math.pi * q)
    lo, hi = 0.0, 1.0
    while _upper_tail(hi, df) > q:
        lo, hi = hi, 2.0 * hi
        if hi > 1e300:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _upper_tail(mid, df) > q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def t_quantile(p: float, df: float) -> float:
    """Inverse Student-t CDF: the t with P(T <= t) = p (``df=inf`` gives the normal)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df}")
    if p == 0.5:
        return 0.0
    if p > 0.5:
        return _t_upper_quantile(1.0 - p, float(df))
    return -_t_upper_quantile(p, float(df))


# --------------------------------------------------------------------------------------
# Scalar summaries
# --------------------------------------------------------------------------------------


def mean_ci(
    values: Iterable[float], confidence: float = 0.95, drop_nan: bool = False
) -> tuple[float, float, float]:
    """Mean and two-sided Student-t CI ``(mean, lo, hi)``; n=1 gives ``lo = hi = nan``.

    NaN in ``values`` raises ``ValueError`` unless ``drop_nan=True``; no values raises.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    arr = np.asarray(list(values), dtype=np.float64).ravel()
    nan = np.isnan(arr)
    if nan.any():
        if not drop_nan:
            raise ValueError(
                f"values contains {int(nan.sum())} NaN of {arr.size}; pass drop_nan=True to drop"
            )
        arr = arr[~nan]
    n = arr.size
    if n == 0:
        raise ValueError("values is empty (after dropping NaN)" if drop_nan else "values is empty")
    mean = float(arr.mean())
    if n == 1:
        return mean, math.nan, math.nan
    se = float(arr.std(ddof=1)) / math.sqrt(n)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * se
    return mean, mean - half, mean + half


def steps_to_threshold(steps: Iterable[float], train_loss: Iterable[float], tau: float) -> float:
    """First eval step (in step order) with ``train_loss <= tau``; ``inf`` if never reached.

    NaN losses never count as reached. Steps must be unique.
    """
    s = np.asarray(list(steps), dtype=np.float64).ravel()
    loss = np.asarray(list(train_loss), dtype=np.float64).ravel()
    if s.shape != loss.shape:
        raise ValueError(f"steps ({s.size}) and train_loss ({loss.size}) differ in length")
    if np.isnan(s).any():
        raise ValueError("steps contains NaN")
    if np.unique(s).size != s.size:
        raise ValueError("steps contains duplicates")
    if math.isnan(tau):
        raise ValueError("tau is NaN")
    order = np.argsort(s, kind="stable")
    hit = np.flatnonzero(loss[order] <= tau)
    return float(s[order][hit[0]]) if hit.size else math.inf


def format_ci(mean: float, lo: float, hi: float, digits: int = 3) -> str:
    """Format as ``"0.912 [0.901, 0.923]"`` with ``digits`` decimals (nan/inf spelled out)."""

    def fmt(x: float) -> str:
        s = f"{float(x):.{digits}f}"
        # Avoid "-0.000" for values that round to zero.
        return s[1:] if s.startswith("-") and float(s) == 0.0 else s

    return f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]"


# --------------------------------------------------------------------------------------
# Table handling
# --------------------------------------------------------------------------------------


def _coerce(v: Any) -> Any:
    """Key value from csv or Python: int-like -> int, float-like -> float, else str."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return int(f) if f.is_integer() else f
    s = str(v).strip()
    try:
        return int(s)
    except ValueError:
        pass
    try:
        f = float(s)
    except ValueError:
        return s
    return int(f) if f.is_integer() else f


def _to_float(v: Any, column: str) -> float:
    """Numeric cell -> float; ``None``/empty -> nan; anything else unparsable raises."""
    if v is None:
        return math.nan
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return math.nan
        try:
            return float(s)
        except ValueError:
            raise ValueError(f"column {column!r}: cannot parse {v!r} as a number") from None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"column {column!r}: cannot parse {v!r} as a number") from None


def _as_rows(rows: Rows) -> list[Mapping[str, Any]]:
    """Accept a list of dict rows or a dict of equal-length columns."""
    if isinstance(rows, Mapping):
        arrays = {k: np.asarray(v) for k, v in rows.items()}
        if any(a.ndim != 1 for a in arrays.values()):
            raise ValueError("rows given as a dict must map column names to 1-D arrays")
        cols = {k: a.tolist() for k, a in arrays.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in cols.items()} for i in range(n)]
    return list(rows)


def rows_to_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Rows -> columns: all-int columns int64, all-numeric float64 (missing -> nan), else object.

    A key missing from some rows is ``None`` there (``nan`` in numeric columns).
    """
    rows = list(rows)
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    out: dict[str, np.ndarray] = {}
    for k in keys:
        vals = [_coerce(r.get(k)) for r in rows]
        vals = [None if v == "" else v for v in vals]
        present = [v for v in vals if v is not None]
        is_num = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
        if present and is_num:
            if len(present) == len(vals) and all(isinstance(v, int) for v in vals):
                out[k] = np.asarray(vals, dtype=np.int64)
            else:
                out[k] = np.asarray([math.nan if v is None else v for v in vals], np.float64)
        else:
            out[k] = np.asarray(vals, dtype=object)
    return out


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """Total order over tuples of mixed None / numbers / strings."""

    def one(v: Any) -> tuple[int, Any]:
        if v is None:
            return (0, 0)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return (1, v) if not math.isnan(v) else (2, 0)
        return (3, str(v))

    return tuple(one(v) for v in key)


_Run = dict[str, np.ndarray]


def _collect_runs(
    rows: list[Mapping[str, Any]], group_keys: Sequence[str], columns: Sequence[str]
) -> tuple[list[str], dict[tuple[Any, ...], dict[Any, _Run]]]:
    """Group rows into runs: ``{group: {seed: {"step": ..., col: ...}}}``, sorted by step."""
    if not rows:
        raise ValueError("rows is empty")
    present: set[str] = set()
    for r in rows:
        present.update(r.keys())
    for required in ("seed", "step", *columns):
        if required not in present:
            raise ValueError(f"rows have no {required!r} column")
    keys = [k for k in group_keys if k in present]
    acc: dict[tuple[Any, ...], dict[Any, dict[str, list[float]]]] = {}
    for r in rows:
        gk = tuple(_coerce(r.get(k)) for k in keys)
        seed = _coerce(r.get("seed"))
        run = acc.setdefault(gk, {}).setdefault(seed, {c: [] for c in ("step", *columns)})
        run["step"].append(_to_float(r.get("step"), "step"))
        for c in columns:
            run[c].append(_to_float(r.get(c), c))
    runs: dict[tuple[Any, ...], dict[Any, _Run]] = {}
    for gk in sorted(acc, key=_sort_key):
        runs[gk] = {}
        for seed in sorted(acc[gk], key=lambda s: _sort_key((s,))):
            arrs = {c: np.asarray(v, dtype=np.float64) for c, v in acc[gk][seed].items()}
            step = arrs["step"]
            where = f"run {_describe(keys, gk)}, seed={seed!r}"
            if np.isnan(step).any():
                raise ValueError(f"missing step in {where}")
            if np.unique(step).size != step.size:
                raise ValueError(
                    f"duplicate steps in {where}: rows are not identified by group keys "
                    f"{keys} + seed; add the column that distinguishes them to group_keys"
                )
            order = np.argsort(step, kind="stable")
            runs[gk][seed] = {c: a[order] for c, a in arrs.items()}
    return keys, runs


def _run_value(run: _Run, metric: str, tau: float | None) -> float:
    """Final-step value of ``metric``, or steps-to-threshold for ``STEPS_METRIC``."""
    if metric == STEPS_METRIC:
        assert tau is not None
        return steps_to_threshold(run["step"], run["train_loss"], tau)
    return float(run[metric][-1])


def _describe(keys: Sequence[str], gk: tuple[Any, ...]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in zip(keys, gk, strict=True)) or "(single group)"


# --------------------------------------------------------------------------------------
# Table summaries
# --------------------------------------------------------------------------------------


def summarize(
    rows: Rows,
    tau: float | None = None,
    group_keys: Sequence[str] = DEFAULT_GROUP_KEYS,
    metrics: Sequence[str] = DEFAULT_METRICS,
    confidence: float = 0.95,
    drop_nan: bool = False,
) -> list[dict[str, Any]]:
    """One summary row per group over seeds, using each run's final eval step.

    Output keys: the present group keys, ``n_seeds``, ``final_step_min``/``_max``, and per
    metric ``final_<m>_mean/_lo/_hi/_n``. With ``tau``: ``tau``, ``steps_to_tau_mean/_lo/
    _hi`` (over seeds that reached it; nan if none), ``n_reached``, ``frac_reached``.
    """
    metrics = list(metrics)
    columns = list(dict.fromkeys([*metrics, *(["train_loss"] if tau is not None else [])]))
    keys, runs = _collect_runs(_as_rows(rows), group_keys, columns)
    out: list[dict[str, Any]] = []
    for gk, seeds in runs.items():
        row: dict[str, Any] = dict(zip(keys, gk, strict=True))
        row["n_seeds"] = len(seeds)
        finals = [r["step"][-1] for r in seeds.values()]
        row["final_step_min"] = float(min(finals))
        row["final_step_max"] = float(max(finals))
        for m in metrics:
            vals = np.array([_run_value(r, m, None) for r in seeds.values()])
            nan = np.isnan(vals)
            if nan.any() and not drop_nan:
                bad = [s for s, b in zip(seeds, nan, strict=True) if b]
                raise ValueError(
                    f"final {m!r} is NaN for seeds {bad} in group {_describe(keys, gk)}; "
                    "pass drop_nan=True to drop them"
                )
            vals = vals[~nan]
            mean, lo, hi = mean_ci(vals, confidence) if vals.size else (math.nan,) * 3
            row.update({f"final_{m}_mean": mean, f"final_{m}_lo": lo, f"final_{m}_hi": hi})
            row[f"final_{m}_n"] = int(vals.size)
        if tau is not None:
            steps = np.array([_run_value(r, STEPS_METRIC, tau) for r in seeds.values()])
            reached = steps[np.isfinite(steps)]
            mean, lo, hi = mean_ci(reached, confidence) if reached.size else (math.nan,) * 3
            row["tau"] = float(tau)
            row.update({"steps_to_tau_mean": mean, "steps_to_tau_lo": lo, "steps_to_tau_hi": hi})
            row["n_reached"] = int(reached.size)
            row["frac_reached"] = reached.size / len(seeds)
        out.append(row)
    return out


def _infer_higher_is_better(metric: str) -> bool:
    name = metric.lower()
    if "acc" in name:
        return True
    if "loss" in name or "step" in name:
        return False
    raise ValueError(f"cannot infer direction of metric {metric!r}; pass higher_is_better")


def paired_differences(
    rows: Rows,
    metric: str = "test_acc",
    tau: float | None = None,
    higher_is_better: bool | None = None,
    group_keys: Sequence[str] = DEFAULT_GROUP_KEYS,
    variants: tuple[str, str] = ("plain", "shortcut"),
    confidence: float = 0.95,
    drop_nan: bool = False,
) -> list[dict[str, Any]]:
    """Seed-paired ``variants[1] - variants[0]`` differences of a run-level metric per group.

    ``metric`` is a column (value at each run's final step) or ``"steps_to_tau"`` (needs
    ``tau``). Groups are ``group_keys`` minus ``"variant"``; other variants are ignored.
    Win rate = fraction of seeds where the second variant is better (ties count 1/2);
    ``higher_is_better`` is inferred from the name (acc: higher; loss/step: lower).
    For steps, never-reached (inf) loses to any finite value and ties with inf; the
    difference CI uses only pairs where both reached (``n_used``). A seed present for only
    one variant raises ``ValueError``; NaN raises unless ``drop_nan`` (pair dropped).
    Output keys: group keys, ``metric``, ``n_pairs``, ``n_used``, ``mean_<variant>`` (both,
    over used pairs), ``diff_mean/_lo/_hi``, ``win_rate``, ``higher_is_better``.
    """
    if metric == STEPS_METRIC:
        if tau is None:
            raise ValueError(f"metric {STEPS_METRIC!r} needs tau")
        columns = ["train_loss"]
    else:
        columns = [metric]
    if higher_is_better is None:
        higher_is_better = _infer_higher_is_better(metric)
    base, treat = variants
    table = _as_rows(rows)
    if not any("variant" in r for r in table):
        raise ValueError("rows have no 'variant' column")
    wanted = {_coerce(base), _coerce(treat)}
    table = [r for r in table if _coerce(r.get("variant")) in wanted]
    keys_wo = [k for k in group_keys if k != "variant"]
    keys, runs = _collect_runs(table, [*keys_wo, "variant"], columns)
    vi = len(keys) - 1  # "variant" is last in keys
    paired: dict[tuple[Any, ...], dict[str, dict[Any, _Run]]] = {}
    for gk, seeds in runs.items():
        paired.setdefault(gk[:vi], {})[gk[vi]] = seeds
    out: list[dict[str, Any]] = []
    for g, by_variant in paired.items():
        where = _describe(keys[:vi], g)
        b_runs = by_variant.get(_coerce(base), {})
        t_runs = by_variant.get(_coerce(treat), {})
        lonely = [(s, base) for s in b_runs if s not in t_runs]
        lonely += [(s, treat) for s in t_runs if s not in b_runs]
        if lonely:
            desc = ", ".join(f"seed={s!r} only {v!r}" for s, v in lonely)
            raise ValueError(f"unpaired seeds in group {where}: {desc}")
        bv = np.array([_run_value(b_runs[s], metric, tau) for s in b_runs])
        tv = np.array([_run_value(t_runs[s], metric, tau) for s in b_runs])
        nan = np.isnan(bv) | np.isnan(tv)
        if nan.any() and not drop_nan:
            bad = [s for s, b in zip(b_runs, nan, strict=True) if b]
            raise ValueError(
                f"{metric!r} is NaN for seeds {bad} in group {where}; pass drop_nan=True"
            )
        bv, tv = bv[~nan], tv[~nan]
        if bv.size == 0:
            raise ValueError(f"no usable pairs for {metric!r} in group {where}")
        better = tv > bv if higher_is_better else tv < bv
        wins = np.where(tv == bv, 0.5, better.astype(np.float64))
        finite = np.isfinite(bv) & np.isfinite(tv)
        diffs = tv[finite] - bv[finite]
        mean, lo, hi = mean_ci(diffs, confidence) if diffs.size else (math.nan,) * 3
        row: dict[str, Any] = dict(zip(keys[:vi], g, strict=True))
        row["metric"] = metric
        row["n_pairs"] = int(nan.size)
        row["n_used"] = int(diffs.size)
        row[f"mean_{base}"] = float(bv[finite].mean()) if diffs.size else math.nan
        row[f"mean_{treat}"] = float(tv[finite].mean()) if diffs.size else math.nan
        row.update({"diff_mean": mean, "diff_lo": lo, "diff_hi": hi})
        row["win_rate"] = float(wins.mean())
        row["higher_is_better"] = bool(higher_is_better)
        out.append(row)
    return out

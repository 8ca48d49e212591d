"""Seed-level statistics of a results table (`results.load`): pandas groupby + scipy.stats.

A *run* is one row of `results.RUN_KEYS` values; its *final* value of a metric is the one at its
last eval step. Seeds are the replicates: a configuration's mean over seeds comes with a Student-t
interval (scipy.stats.t); for a fraction in [0, 1] (accuracies, *_frac) the interval is
intersected with [0, 1], for a loss, norm, error or step count with [0, inf) -- the mean lies
there, so the coverage is unchanged and the interval stays bounded. Paired differences are
shortcut minus plain of the same seed and every other grid axis (plain runs have no
shortcut_init: one plain run pairs with each), with a t interval, the paired t test
(scipy.stats.ttest_rel) and the Wilcoxon signed-rank test.

A paired table's rows are one family of tests: their p values are Holm-adjusted together
(statsmodels' multipletests), and a verdict (`significance`, VERDICT_RULE) needs the t interval
to exclude 0 with a non-zero spread AND the Holm-adjusted Wilcoxon p below the level, so a
difference that is equal for every pair, or too few pairs (the exact signed-rank test cannot go
below 2 / 2^n: n >= 6 pairs for 0.05), gives none. Each row also states the smallest difference
the paired t test detects with 80% power at its spread (statsmodels' TTestPower).
"""

from __future__ import annotations

import functools
import gc
import numbers
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.stats

from shortcut_jax.results import ID_COLUMNS

RUN_KEYS = [c for c in ID_COLUMNS if c != "step"]
"""The columns that identify a run."""
CONFIG_KEYS = [c for c in RUN_KEYS if c != "seed"]
"""The columns that identify a configuration (its runs differ only in seed)."""
STEPS = "steps_to_tau"
VERSUS = ("shortcut", "residual", "residual+shortcut")
"""The variants a paired difference takes against plain."""
POWER = 0.8
"""The power at which a paired table states its smallest detectable difference."""
EXACT_MAX_N = 50
"""Up to this many pairs (without ties or zeros) the Wilcoxon p value is exact; past it scipy's
normal approximation (as scipy's own method='auto')."""
VERDICT_RULE = ("A verdict (significantly better or worse) needs both the {conf:.0%} t interval "
                "of the paired difference to exclude 0 (with a non-zero spread: a difference "
                "equal for every pair gives none) and the Wilcoxon signed-rank p value, "
                "Holm-adjusted over the configurations of its table (the family), below "
                "{level:g} (exact up to 50 pairs without ties, else the normal approximation; "
                "it cannot reach {level:g} with fewer than 6 pairs). 'detectable' is the "
                "smallest difference the paired t test detects with 80% power at the pairs' "
                "spread, at the Bonferroni level {level:g}/m of the table's first Holm step.")


def higher_is_better(metric: str) -> bool:
    """Accuracies are better high; losses, errors and steps low."""
    if "acc" in metric:
        return True
    if any(word in metric for word in ("loss", "err", "step")):
        return False
    raise ValueError(f"metric: cannot tell whether {metric!r} is better high or low; "
                     "expected an accuracy, loss, error or steps column")


def run_ids(df: pd.DataFrame) -> pd.Series:
    """One integer per run: results.load's run column, else a hash of the RUN_KEYS values; a
    cheap key to group rows by."""
    if "run" in df.columns:
        return df["run"]
    return pd.util.hash_pandas_object(df[RUN_KEYS], index=False)


def final(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its last eval step."""
    return df[df["step"] == df["step"].groupby(run_ids(df)).transform("max")]


def with_steps_to(df: pd.DataFrame, tau: float, metric: str = "train_loss") -> pd.DataFrame:
    """final(df) with a column steps_to_tau: each run's first eval step with metric <= tau
    (inf if never; NaN never counts as reached)."""
    first = df["step"].where(df[metric] <= tau).groupby(run_ids(df)).min()  # NaN: never
    last = final(df)  # the column joins the final rows only: no copy of the whole table
    return last.assign(**{STEPS: first.reindex(run_ids(last)).to_numpy(np.float64)}).fillna(
        {STEPS: np.inf})


def is_fraction(metric: str) -> bool:
    """Metrics that lie in [0, 1]: accuracies and *_frac."""
    return "acc" in metric or metric.endswith("_frac")


def bounds(metric: str) -> tuple[float, float] | None:
    """Where a metric lies: [0, 1] for fractions, [0, inf) for losses, norms, errors and steps
    (an interval is intersected with it), None for others (max_overlap, shortcut_share)."""
    if is_fraction(metric):
        return (0.0, 1.0)
    if any(word in metric for word in ("loss", "norm", "err", "step")):
        return (0.0, np.inf)
    return None


def t_interval(values, confidence: float = 0.95,
               bounds: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean and its two-sided Student-t interval (NaN with one value),
    intersected with `bounds` if given (where the mean must lie, e.g. (0, 1) for fractions)."""
    v = np.asarray(values, np.float64)
    mean = float(v.mean()) if v.size else np.nan
    if v.size < 2:
        return mean, np.nan, np.nan
    half = t_quantile(confidence, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return mean, float(lo), float(hi)


def _keys(df: pd.DataFrame, by: Sequence[str] | None) -> list[str]:
    keys = list(CONFIG_KEYS if by is None else by)
    missing = [c for c in keys if c not in df.columns]
    if missing:
        raise ValueError(f"by: {missing[0]!r} is not a column; expected columns of "
                         f"{[c for c in df.columns if c != 'run']}")
    return keys


@functools.lru_cache(maxsize=256)
def t_quantile(confidence: float, df: int) -> float:
    """The two-sided Student-t quantile t_{(1 + confidence) / 2, df} (scipy.stats.t.ppf)."""
    if (isinstance(confidence, bool) or not isinstance(confidence, numbers.Real)
            or not 0 < confidence < 1):
        raise ValueError(f"confidence: expected a number in (0, 1) such as 0.95, got "
                         f"{confidence!r}")
    return float(scipy.stats.t.ppf(0.5 + confidence / 2, df))


def summarize(df: pd.DataFrame, metrics: Sequence[str] = ("test_acc", "test_loss", "train_loss"),
              by: Sequence[str] | None = None, tau: float | None = None,
              confidence: float = 0.95) -> pd.DataFrame:
    """Per configuration (default: every column of CONFIG_KEYS), over seeds: n_seeds and, per
    metric, <m>_mean/_lo/_hi (t interval, within the metric's `bounds`; NaN values left out,
    <m>_n of them used) of the final values; with tau, steps_to_tau_mean/_lo/_hi over the
    runs that reached it and frac_reached. df may hold final rows with steps_to_tau already
    (with_steps_to)."""
    runs = with_steps_to(df, tau) if tau is not None and STEPS not in df else final(df)
    keys = _keys(df, by)
    rows = []
    for key, g in runs.groupby(keys, observed=True, dropna=False, sort=True):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["n_seeds"] = len(g)
        for m in metrics:
            v = g[m].dropna().to_numpy()
            row[f"{m}_mean"], row[f"{m}_lo"], row[f"{m}_hi"] = t_interval(v, confidence,
                                                                         bounds(m))
            row[f"{m}_n"] = len(v)
        if tau is not None:
            reached = g[STEPS][np.isfinite(g[STEPS])].to_numpy()
            row[f"{STEPS}_mean"], row[f"{STEPS}_lo"], row[f"{STEPS}_hi"] = t_interval(
                reached, confidence, bounds(STEPS))
            row["frac_reached"] = len(reached) / len(g)
        rows.append(row)
    return pd.DataFrame(rows)


def best_lr(df: pd.DataFrame, select_by: str = "val_acc") -> pd.DataFrame:
    """final(df) restricted to each configuration's best learning rate: the lr with the best
    mean final `select_by` over seeds (ties: the smaller lr), chosen per configuration without
    lr -- so per variant and width. Select on validation metrics, never on test ones. df may
    hold final rows already (e.g. from with_steps_to)."""
    runs = final(df)
    keys = [c for c in CONFIG_KEYS if c != "lr"]
    means = runs.groupby([*keys, "lr"], observed=True, dropna=False)[select_by].mean()
    means = means.reset_index().sort_values("lr", kind="stable")
    means = means.sort_values(select_by, ascending=not higher_is_better(select_by),
                              kind="stable", na_position="last")
    chosen = means.drop_duplicates(keys)[[*keys, "lr"]]
    return runs.merge(chosen, on=[*keys, "lr"])


def paired(df: pd.DataFrame, metric: str = "test_acc", by: Sequence[str] | None = None, *,
           tau: float | None = None, confidence: float = 0.95, ignore: Sequence[str] = (),
           higher: bool | None = None, variant: str = "shortcut") -> pd.DataFrame:
    """Shortcut minus plain of the final `metric` (or "steps_to_tau" with tau), per seed,
    matched on seed and every other grid axis, summarized per `by` (default: CONFIG_KEYS
    without variant and shortcut_init, plus shortcut_init). Where `by` leaves axes out, a
    seed's pairs at their values are averaged first: they share the seed's initialization, so
    the replicates are the seeds (n_pairs counts seeds).

    Columns: by..., metric, n_pairs, n_used (pairs with both values finite), mean_plain,
    mean_shortcut, diff_mean/_lo/_hi (t interval), p_ttest, p_wilcoxon, win_rate (fraction
    of pairs where the shortcut is better, ties 1/2; inf steps lose to any finite number),
    p_ttest_holm, p_wilcoxon_holm (Holm-adjusted over the rows of the table: the family),
    n_tests (the family's size m) and detectable (the smallest |difference| the paired t test
    detects with power POWER at level (1 - confidence) / m, from the pairs' spread).
    `ignore`: axes left out of the matching, e.g. ("lr",) for best_lr(df) rows, so that each
    variant runs at its own selected learning rate. df may hold final rows already.
    `higher`: whether a higher metric is better (for the win rate); default from its name.
    `variant`: the variant taken against plain ("shortcut", "residual", "residual+shortcut");
    the columns keep the names mean_shortcut and win_rate for it.
    """
    _check_variant(variant)
    if metric == STEPS and STEPS not in df.columns:
        if tau is None:
            raise ValueError(f"tau: needed for metric {STEPS!r}")
        df = with_steps_to(df, tau)
    runs = final(df)
    if metric not in runs.columns:
        raise ValueError(f"metric: {metric!r} is not a column; expected one of "
                         f"{[c for c in runs.columns if c not in (*ID_COLUMNS, 'run')]}")
    match = [c for c in RUN_KEYS if c not in ("variant", "shortcut_init", *ignore)]
    plain = runs[runs["variant"] == "plain"][[*match, metric]]
    short = runs[runs["variant"] == variant][[*match, "shortcut_init", metric]]
    pairs = short.merge(plain, on=match, suffixes=("_s", "_p"), validate="many_to_one")
    keys = [c for c in _keys(df, by) if c in pairs.columns and c != "variant"
            and c not in ignore]
    better = higher_is_better(metric) if higher is None else higher
    rows, diffs = [], []
    for key, g in pairs.groupby(keys, observed=True, dropna=False, sort=True):
        if g["seed"].duplicated().any():  # axes pooled: a seed's pairs share its start, so
            g = g.groupby("seed")[[f"{metric}_s", f"{metric}_p"]].mean()  # one mean per seed
        s, p = g[f"{metric}_s"].to_numpy(float), g[f"{metric}_p"].to_numpy(float)
        ok = ~(np.isnan(s) | np.isnan(p))
        s, p = s[ok], p[ok]
        both = np.isfinite(s) & np.isfinite(p)
        diff = s[both] - p[both]
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row.update(metric=metric, n_pairs=len(g), n_used=int(both.sum()),
                   mean_plain=float(p[both].mean()) if both.any() else np.nan,
                   mean_shortcut=float(s[both].mean()) if both.any() else np.nan)
        row["diff_mean"], row["diff_lo"], row["diff_hi"] = t_interval(diff, confidence)
        wins = np.where(s == p, 0.5, (s > p) if better else (s < p))
        row["win_rate"] = float(wins.mean()) if wins.size else np.nan
        rows.append(row)
        diffs.append(diff)
    out = pd.DataFrame(rows)
    out["p_ttest"], out["p_wilcoxon"] = _p_values(diffs)
    out["p_ttest_holm"], out["p_wilcoxon_holm"] = holm(out["p_ttest"]), holm(out["p_wilcoxon"])
    m = int(out["p_wilcoxon"].notna().sum()) if len(out) else 0
    out["n_tests"] = m
    level = (1 - confidence) / max(m, 1)
    out["detectable"] = [detectable(d, level) for d in diffs] if len(out) else []
    return out


def holm(p) -> np.ndarray:
    """Holm-adjusted p values (statsmodels' multipletests, method 'holm') over the finite ones
    of p, the family; NaN (no test) stays NaN and does not count in the family."""
    from statsmodels.stats.multitest import multipletests  # ~1 s to import: when first used

    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        # multipletests' Holm branch calls gc.collect(): 0.24 s a call with a 24,576-run table
        # in memory. Frozen objects are not scanned, so the collection costs nothing.
        gc.freeze()
        try:
            out[ok] = multipletests(p[ok], method="holm")[1]
        finally:
            gc.unfreeze()
    return out


@functools.lru_cache(maxsize=1024)
def _effect_size(n: int, level: float, power: float) -> float:
    from statsmodels.stats.power import TTestPower

    if level >= power:  # the test rejects with probability >= level at every effect, 0 too
        return 0.0
    d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=level, power=power,
                                 alternative="two-sided")
    return float(np.ravel(d)[0])  # a number, or a 1-element array for some n


def detectable(diff, level: float = 0.05, power: float = POWER) -> float:
    """The smallest |mean difference| a two-sided paired t test at `level` detects with
    `power`, from the differences' sample standard deviation: Cohen's d solved by statsmodels'
    TTestPower times the sd; 0 at a level >= power. NaN with fewer than 2 differences or zero
    spread."""
    d = np.asarray(diff, np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2 or not np.ptp(d) > 0:
        return np.nan
    return _effect_size(int(d.size), float(level), float(power)) * float(d.std(ddof=1))


def _check_variant(variant: str) -> None:
    if variant not in VERSUS:
        raise ValueError(f"variant: expected one of {VERSUS} (each taken against plain), got "
                         f"{variant!r}")


def paired_selected(df: pd.DataFrame, metric: str, by: Sequence[str],
                    select_by: str = "val_acc", confidence: float = 0.95,
                    variant: str = "shortcut") -> pd.DataFrame:
    """paired(...) of `variant` − plain grouped by `by` with each variant at its
    validation-selected lr (best_lr) unless lr is one of `by`; a seed's pairs at the other
    axes' values are averaged."""
    _check_variant(variant)
    if "lr" in by:
        return paired(df, metric, by=by, confidence=confidence, variant=variant)
    return paired(best_lr(df, select_by), metric, by=by, confidence=confidence, ignore=("lr",),
                  variant=variant)


def paired_at_plain_lr(df: pd.DataFrame, metric: str, select_by: str = "val_acc", *,
                       tau: float | None = None, confidence: float = 0.95,
                       variant: str = "shortcut") -> pd.DataFrame:
    """paired(...) of `variant` − plain with both at the plain network's validation-selected
    learning rate (best_lr of the plain runs, per configuration): the architecture's effect at a
    learning rate both share, to set beside the comparison at each variant's own choice. Its lr
    column is that rate; the family of its Holm adjustment is its rows."""
    _check_variant(variant)
    if metric == STEPS and STEPS not in df.columns:
        if tau is None:
            raise ValueError(f"tau: needed for metric {STEPS!r}")
        df = with_steps_to(df, tau)
    runs = final(df)
    chosen = best_lr(runs[runs["variant"] == "plain"], select_by)
    keys = [c for c in CONFIG_KEYS if c not in ("variant", "shortcut_init", "lr")]
    lrs = chosen[[*keys, "lr"]].drop_duplicates()
    return paired(runs.merge(lrs, on=[*keys, "lr"]), metric, confidence=confidence,
                  variant=variant)


def _p_values(diffs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Paired t test (a one-sample t test of the differences, as scipy.stats.ttest_rel) and
    Wilcoxon signed-rank p values of each difference vector (exact up to EXACT_MAX_N
    differences without ties or zeros, else the normal approximation); NaN with fewer than 2
    differences or all of them 0, and NaN (t) for constant non-zero ones: zero spread, no test.
    Vectorized: one scipy call per vector length and method."""
    t_p, w_p = np.full(len(diffs), np.nan), np.full(len(diffs), np.nan)
    usable = [i for i, d in enumerate(diffs) if d.size >= 2 and np.any(d != 0)]
    for n in sorted({diffs[i].size for i in usable}):
        idx = [i for i in usable if diffs[i].size == n]
        block = np.stack([diffs[i] for i in idx])
        constant = np.ptp(block, axis=1) <= 1e-12 * np.abs(block).max(axis=1)  # t = +-inf
        varying = ~constant
        if varying.any():
            t_p[np.asarray(idx)[varying]] = scipy.stats.ttest_1samp(block[varying], 0.0,
                                                                    axis=1).pvalue
        t_p[np.asarray(idx)[constant]] = np.nan  # zero spread: t undefined, no verdict
        # exact null distribution without ties or zeros; with them scipy would run a
        # permutation test (slow), so the normal approximation with tie correction instead
        size = np.abs(block)
        ties = (np.sort(size, axis=1)[:, 1:] == np.sort(size, axis=1)[:, :-1]).any(axis=1)
        ties |= (block == 0).any(axis=1)
        ties |= n > EXACT_MAX_N  # the exact null distribution costs O(n^3): 12.8 s at n=2048
        for rows, method in ((~ties, "exact"), (ties, "approx")):
            if rows.any():
                w_p[np.asarray(idx)[rows]] = scipy.stats.wilcoxon(block[rows], axis=1,
                                                                  method=method).pvalue
    return t_p, w_p


def significance(row, level: float = 0.05) -> int:
    """+1 if the difference is significantly above 0, -1 below, else 0 (VERDICT_RULE): the
    interval excludes 0 with a non-zero width, and the Holm-adjusted Wilcoxon p (p_wilcoxon_holm;
    a row without it, the raw p_wilcoxon) is below `level`."""
    p = row["p_wilcoxon_holm"] if "p_wilcoxon_holm" in row else row["p_wilcoxon"]
    lo, hi = row["diff_lo"], row["diff_hi"]
    if not (hi > lo and p < level):  # NaN compares False: no verdict
        return 0
    if lo > 0:
        return 1
    if hi < 0:
        return -1
    return 0


def format_ci(mean: float, lo: float, hi: float, digits: int = 3) -> str:
    """"0.912 [0.901, 0.923]" (no interval: just the mean); -0.000 is written 0.000."""

    def fmt(x: float) -> str:
        s = f"{float(x):.{digits}f}"
        return s[1:] if s.startswith("-") and float(s) == 0.0 else s

    if np.isnan(lo) or np.isnan(hi):
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]"

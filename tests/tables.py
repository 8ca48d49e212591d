"""Hand-made results tables in the format of results.load, for the stats and plots tests."""

import itertools

import numpy as np
import pandas as pd

from shortcut_jax.results import ID_COLUMNS

DEFAULTS = dict(dataset="xor", data_seed=0, n_train=200, d=2, noise=0.05, linear_weight=np.nan,
                teacher_width=pd.NA, teacher_shortcut=np.nan, variant="plain", width=4,
                shortcut_init=None, lr=0.5, seed=0, optimizer="sgd", loss_fn="mse",
                batch_size="full", depth=1, activation="relu", step=0)


def table(rows: list[dict]) -> pd.DataFrame:
    """A typed table from rows that name only what differs from DEFAULTS."""
    df = pd.DataFrame([{**DEFAULTS, **r} for r in rows])
    for c in ("dataset", "variant", "shortcut_init", "optimizer", "loss_fn", "batch_size",
              "activation"):
        df[c] = df[c].astype("category")
    for c in ("n_train", "d", "teacher_width"):
        df[c] = df[c].astype("Int64")
    front = list(ID_COLUMNS)
    return df[front + [c for c in df.columns if c not in front]]


def runs(values: dict, steps=(0, 10, 20), **fixed) -> pd.DataFrame:
    """A table with one run per (variant, seed) key of `values`; a run's metric at the last step
    is the value given, earlier steps 1 + that (so the final value is at the last step)."""
    rows = []
    for (variant, seed), metrics in values.items():
        for step in steps:
            last = step == steps[-1]
            rows.append({**fixed, "variant": variant, "seed": seed, "step": step,
                         "shortcut_init": "zeros" if variant == "shortcut" else None,
                         **{k: v if last else v + 1.0 for k, v in metrics.items()}})
    return table(rows)


def grid(variants=("plain", "shortcut"), seeds=range(3), **axes) -> list[dict]:
    """The keys of a product of axes, for building rows."""
    names = list(axes)
    return [dict(zip(["variant", "seed", *names], combo))
            for combo in itertools.product(variants, seeds, *axes.values())]


def holm(p) -> np.ndarray:
    """Holm's step-down adjustment by hand: sorted ascending, the i-th (from 0) of m finite p
    values becomes max over j <= i of min(1, (m - j) p_(j)); NaN (no test) stays NaN."""
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    idx = [i for i in np.argsort(p, kind="stable") if np.isfinite(p[i])]
    m, running = len(idx), 0.0
    for j, i in enumerate(idx):
        running = max(running, min(1.0, (m - j) * p[i]))
        out[i] = running
    return out

"""The headline experiment: does the shortcut help, and why? Plain vs shortcut, paired by seed.

    python experiments/compare_shortcut.py            # ~30 s on 2 CPU cores (29 s measured)
    python experiments/compare_shortcut.py --smoke    # seconds (what the test runs)

Default: linear_xor and moons (synthetic, 2-D) and breast cancer (569 x 30, bundled with
scikit-learn), widths 2 8 32, learning rates 0.3 1.0, 8 seeds, 1000 full-batch SGD steps on the
problem's squared loss. Writes to runs/compare-<date-time>/ (or --out): results.csv,
summary.csv, paired.csv, hessian.csv, config.json, report.md and figures/*.png. Rerunning with
the same --out resumes. Your own data: --data FILE.csv --target COLUMN.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep import add_grid_flags, default_out, grid_from_args, init_devices  # noqa: E402

from shortcut_jax import data as data_lib  # noqa: E402
from shortcut_jax import diagnostics, plots, results, stats  # noqa: E402
from shortcut_jax.model import Params, bce_loss, loss  # noqa: E402
from shortcut_jax.sweep import Grid, default_loader, run_sweep  # noqa: E402
from shortcut_jax.train import Data  # noqa: E402

DEFAULTS = Grid(datasets=("linear_xor", "moons", "breast_cancer"), widths=(2, 8, 32),
                lrs=(0.3, 1.0), seeds=8, steps=1000, eval_every=50, n_train=200, n_test=1000,
                noise=None)
SMOKE_DATASETS = ("linear_xor", "breast_cancer")
SMOKE = dict(widths=[3], lrs=[1.0], seeds=3, steps=40, eval_every=20, n_train=64, n_test=64)
GROUP_KEYS = ("dataset", "data_seed", "variant", "width", "lr", "optimizer", "loss_fn")
HESSIAN_MAX_PARAMS = 600


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULTS.datasets),
                        choices=data_lib.DATASETS)
    parser.add_argument("--data", default=None, help="your own CSV file (replaces --datasets)")
    parser.add_argument("--target", default=None, help="label column of --data")
    parser.add_argument("--tau", type=float, default=0.05,
                        help="train-loss threshold for steps-to-threshold")
    add_grid_flags(parser, DEFAULTS)
    args = parser.parse_args(argv)
    if (args.data is None) != (args.target is None):
        parser.error("--data and --target go together: --data FILE.csv --target COLUMN")
    return parser, args


def make_loader(args, grid: Grid):
    """(loader, notes): the built-in tasks, or the user's CSV under the name of its file.

    The loader is cached: the sweep and the report see the same arrays, made once.
    """
    if args.data is None:
        return functools.cache(default_loader(grid)), []
    ds, info = data_lib.load_csv(args.data, args.target, key=jax.random.key(0))
    notes = [f"{args.data}: {info['n_train']} train / {info['n_test']} test rows, "
             f"{len(info['feature_names'])} features, labels mapped {info['label_map']}"]

    @functools.cache
    def load(name, seed):
        if seed == 0:
            return ds
        return data_lib.load_csv(args.data, args.target, key=jax.random.key(seed))[0]

    return load, notes


def baselines(datasets: dict[str, Data]) -> list[dict]:
    """Logistic regression and sklearn's MLPClassifier on the same splits (if installed)."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return []
    out = []
    for name, d in datasets.items():
        Xtr, Ytr, Xte, Yte = (np.asarray(a) for a in d)
        for label, model in [("logistic regression", LogisticRegression(max_iter=2000)),
                             ("MLPClassifier(32)", MLPClassifier((32,), max_iter=2000,
                                                                 random_state=0))]:
            model.fit(Xtr, Ytr)
            out.append({"dataset": name, "model": label,
                        "train_acc": float(model.score(Xtr, Ytr)),
                        "test_acc": float(model.score(Xte, Yte))})
    return out


def hessians(folder: results.RunFolder, grid: Grid, datasets: dict, loss_fn: str) -> list[dict]:
    """Exact float64 Hessian spectra of J at the final parameters (up to HESSIAN_MAX_PARAMS)."""
    objective = {"mse": loss, "bce": bce_loss}[loss_fn]
    z = np.load(folder.path / "params.npz")
    out = []
    spectrum = jax.jit(jax.vmap(lambda p, X, Y: diagnostics.hessian_spectrum(objective, p, X, Y),
                                in_axes=(0, None, None)))
    for g in grid.groups():
        if g.loss_fn != loss_fn:
            continue
        pre = g.name + "/"
        leaves = {k[len(pre):]: z[k] for k in z.files if k.startswith(pre)}
        n_params = sum(v[0].size for k, v in leaves.items() if k in Params._fields)
        if n_params > HESSIAN_MAX_PARAMS:
            continue
        d = datasets[(g.dataset, g.data_seed)]
        with jax.enable_x64(True):  # float64: float32 rounding is near the 1e-6 zero threshold
            params = Params(**{k: jnp.asarray(leaves[k], jnp.float64) if k in leaves else None
                               for k in Params._fields})
            X, Y = (jnp.asarray(a, jnp.float64) for a in (d.X_train, d.Y_train))
            spec = jax.device_get(spectrum(params, X, Y))
        for i in range(len(leaves["lr"])):
            out.append({"dataset": g.dataset, "data_seed": g.data_seed, "variant": g.variant,
                        "width": g.width, "lr": float(leaves["lr"][i]),
                        "seed": int(leaves["seed"][i]), "optimizer": g.optimizer,
                        "loss_fn": g.loss_fn, "step": grid.steps, "n_params": n_params,
                        "hess_zero_frac": float(spec["hess_zero_frac"][i]),
                        "hess_neg_frac": float(spec["hess_neg_frac"][i])})
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    text = io.StringIO()
    keys = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(text, keys, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    results.atomic_write_text(path, text.getvalue())


def fmt(row, m, digits=3):
    return stats.format_ci(row[f"{m}_mean"], row[f"{m}_lo"], row[f"{m}_hi"], digits)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def report(grid, summary, paired, hess, base, tau, notes, figures) -> str:
    s = ["# Plain vs shortcut: does the shortcut connection help?", ""]
    batch = "full batch" if grid.batch_size is None else f"batch {grid.batch_size}"
    s += [f"Grid: datasets {list(grid.datasets)}, widths {list(grid.widths)}, learning rates "
          f"{list(grid.lrs)}, {grid.seeds} seeds, {grid.steps} steps of {grid.optimizers[0]} "
          f"on the {grid.loss_fns[0]} loss ({batch}). "
          "Plain and shortcut runs of a seed start from the same W1, b1, W2, b2 (W = 0) and "
          "see the same data, so differences are the shortcut's. Intervals are 95% Student-t "
          "over seeds.", ""]
    s += [f"- {n}" for n in notes] + ([""] if notes else [])

    s += ["## Final test accuracy and loss", ""]
    rows = [[r["dataset"], r["variant"], r["width"], r["lr"], fmt(r, "final_test_acc"),
             fmt(r, "final_test_loss", 4),
             f"{r['steps_to_tau_mean']:.0f} ({r['n_reached']}/{r['n_seeds']})"
             if r["n_reached"] else f"never (0/{r['n_seeds']})"] for r in summary]
    s += [table(["dataset", "variant", "h", "lr", "test acc", "test loss",
                 f"steps to train loss ≤ {tau}"], rows), ""]
    best = {}
    for r in summary:
        k = (r["dataset"], r["variant"])
        if k not in best or r["final_test_acc_mean"] > best[k]["final_test_acc_mean"]:
            best[k] = r
    reading = "; ".join(
        f"{ds}: shortcut {best[(ds, 'shortcut')]['final_test_acc_mean']:.3f} vs plain "
        f"{best[(ds, 'plain')]['final_test_acc_mean']:.3f}"
        for ds in dict.fromkeys(r["dataset"] for r in summary)
        if (ds, "shortcut") in best and (ds, "plain") in best)
    s += [f"Reading: best configuration per variant — {reading}.", ""]

    s += ["## Paired differences, shortcut − plain (same seed)", ""]
    for metric, label in (("test_acc", "test accuracy"), ("train_loss", "final train loss")):
        ps = [p for p in paired if p["metric"] == metric]
        rows = [[p["dataset"], p["width"], p["lr"],
                 stats.format_ci(p["diff_mean"], p["diff_lo"], p["diff_hi"], 4),
                 f"{p['win_rate']:.2f}", p["n_pairs"]] for p in ps]
        s += [f"### {label}", "", table(["dataset", "h", "lr", "difference [95% CI]",
                                         "shortcut win rate", "pairs"], rows), ""]
        better = [p for p in ps if (p["diff_lo"] > 0 if metric == "test_acc" else p["diff_hi"] < 0)]
        worse = [p for p in ps if (p["diff_hi"] < 0 if metric == "test_acc" else p["diff_lo"] > 0)]
        top = max(better, key=lambda p: abs(p["diff_mean"])) if better else None
        gain = f"; its largest gain is on {top['dataset']} at h={top['width']}" if top else ""
        s += [f"Reading: the shortcut is significantly better in {len(better)} of {len(ps)} "
              f"configurations, significantly worse in {len(worse)}, and the rest are within "
              f"noise{gain}.", ""]

    if hess:
        s += ["## Why: singularities of the loss surface at the end of training", ""]
        groups = {}
        for h in hess:
            groups.setdefault((h["dataset"], h["width"], h["variant"]), []).append(h)
        rows = []
        for (ds, w, v), hs in sorted(groups.items()):
            z = stats.mean_ci([h["hess_zero_frac"] for h in hs])
            n = stats.mean_ci([h["hess_neg_frac"] for h in hs])
            rows.append([ds, w, v, stats.format_ci(*z), stats.format_ci(*n)])
        s += [table(["dataset", "h", "variant", "near-zero Hessian eigenvalues (fraction)",
                     "negative eigenvalues (fraction)"], rows), ""]
        zp = np.mean([h["hess_zero_frac"] for h in hess if h["variant"] == "plain"] or [np.nan])
        zs = np.mean([h["hess_zero_frac"] for h in hess if h["variant"] == "shortcut"]
                     or [np.nan])
        verdict = ("fewer, as Orhan & Pitkow (2018) predict for skip connections, which they "
                   "say break the degeneracies that dead and overlapping units create"
                   if zs < zp else
                   "not fewer: here the shortcut does not remove degenerate directions, "
                   "contrary to what Orhan & Pitkow (2018) report for deep skip networks")
        s += [f"Reading: on average {zp:.3f} of the plain network's Hessian eigenvalues are "
              f"near zero (|λ| ≤ 1e-6 max|λ|) and {zs:.3f} of the shortcut network's — "
              f"{verdict}. Models over {HESSIAN_MAX_PARAMS} parameters are skipped.", ""]

    if base:
        s += ["## Baselines on the same splits (scikit-learn)", ""]
        s += [table(["dataset", "model", "train acc", "test acc"],
                    [[b["dataset"], b["model"], f"{b['train_acc']:.3f}", f"{b['test_acc']:.3f}"]
                     for b in base]), ""]
        s += ["Reading: the kit's accuracies should sit between logistic regression (a linear "
              "model, which the shortcut alone also is) and a well-tuned MLP; far below the "
              "logistic baseline would point to a training problem.", ""]

    s += ["## Figures", ""] + [f"![{name}](figures/{name}.png)" for name in figures] + [""]
    return "\n".join(s)


def main(argv=None) -> int:
    parser, args = parse(argv)
    init_devices(args)
    if args.data:
        names = [Path(args.data).stem]
    else:
        names = list(SMOKE_DATASETS) if args.smoke else args.datasets
    try:
        grid = grid_from_args(args, names, smoke=SMOKE)
        load, notes = make_loader(args, grid)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        parser.error(str(e))
    for note in notes:
        print(note)  # e.g. the label mapping of the user's CSV
    out = Path(args.out or default_out("compare"))
    try:
        folder = run_sweep(grid, str(out), load=load, progress=not args.no_progress,
                           extra_config={"tau": args.tau, "data": args.data,
                                         "target": args.target})
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if jax.process_index() != 0:
        return 0

    rows = folder.read_rows()
    summary = stats.summarize(rows, tau=args.tau, group_keys=GROUP_KEYS)
    paired = [p for m in ("test_acc", "train_loss")
              for p in stats.paired_differences(rows, metric=m, group_keys=GROUP_KEYS)]
    datasets = {(n, s): Data(*load(n, s)) for n in grid.datasets for s in grid.data_seeds}
    hess = hessians(folder, grid, datasets, grid.loss_fns[0])
    base = baselines({n: d for (n, s), d in datasets.items() if s == grid.data_seeds[0]})
    write_csv(out / "summary.csv", summary)
    write_csv(out / "paired.csv", paired)
    write_csv(out / "hessian.csv", hess)
    write_csv(out / "baselines.csv", base)

    figures = {}
    first = grid.datasets[0]
    figures["learning_curves"] = plots.learning_curves(rows, "test_acc", dataset=first)
    figures["acc_vs_width"] = plots.metric_vs_width(rows, "test_acc")
    figures["paired_heatmap"] = plots.paired_heatmap(rows, "test_acc", dataset=first)
    figures["diagnostics"] = plots.diagnostics_over_training(rows, dataset=first)
    z = np.load(out / "params.npz")
    for name in grid.datasets:
        d = datasets[(name, grid.data_seeds[0])]
        if d.X_train.shape[1] != 2:
            continue
        w, lr = grid.widths[0], grid.lrs[-1]
        models, titles = [], []
        for variant in ("plain", "shortcut"):
            g = [g for g in grid.groups() if g.dataset == name and g.variant == variant
                 and g.width == w and g.data_seed == grid.data_seeds[0]][0]
            pre = g.name + "/"
            i = int(np.flatnonzero((z[pre + "lr"] == lr) & (z[pre + "seed"] == 0))[0])
            models.append(Params(**{k: jnp.asarray(z[pre + k][i]) if pre + k in z.files
                                    else None for k in Params._fields}))
            titles.append(f"{name}, {variant}, h={w}, lr={lr}, seed 0")
        figures[f"boundaries_{name}"] = plots.decision_boundaries(models, d.X_train,
                                                                  d.Y_train, titles)
    for name, fig in figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        results.atomic_write_bytes(out / "figures" / f"{name}.png", buf.getvalue())
    text = report(grid, summary, paired, hess, base, args.tau, notes, list(figures))
    results.atomic_write_text(out / "report.md", text)
    cfg = json.loads((out / "config.json").read_text())
    print(f"wrote {out}/report.md ({len(rows)} result rows, {len(figures)} figures; "
          f"jax {cfg['provenance']['jax']} on {cfg['provenance']['device_kind']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

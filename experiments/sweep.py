"""Sweep plain vs shortcut over widths x learning rates x seeds; resumable.

    python experiments/sweep.py --dataset moons --widths 4 16 64 --lrs 0.1 0.5 --seeds 16 \
        --steps 2000 --out runs/sweep-moons          # ~1 min on 2 CPU cores

Writes results.csv (one row per run and eval step), config.json, params.npz and chunks/ into
--out; rerunning the same command resumes. `--smoke` is a seconds-long configuration for tests.
Several hosts: run the same command on each with --coordinator HOST:PORT --num-processes N
--process-id I (jax.distributed); process 0 writes the files.
"""

from __future__ import annotations

import argparse
import datetime
import sys

from shortcut_jax.data import DATASETS
from shortcut_jax.sweep import VARIANTS, Grid, run_sweep, use_cpu_cores
from shortcut_jax.train import LOSSES, OPTIMIZERS

SMOKE = dict(widths=[4, 8], lrs=[0.5], seeds=2, steps=20, eval_every=10, n_train=64, n_test=64)


def add_grid_flags(parser: argparse.ArgumentParser, defaults: Grid) -> None:
    """The grid flags shared by the sweep and the headline experiment."""
    a = parser.add_argument
    a("--variants", nargs="+", choices=VARIANTS, default=list(defaults.variants))
    a("--widths", nargs="+", type=int, default=list(defaults.widths), help="hidden widths h")
    a("--lrs", nargs="+", type=float, default=list(defaults.lrs), help="learning rates")
    a("--seeds", type=int, default=defaults.seeds, help="seeds 0..N-1 per configuration")
    a("--data-seeds", nargs="+", type=int, default=list(defaults.data_seeds))
    a("--steps", type=int, default=defaults.steps, help="training steps")
    a("--eval-every", type=int, default=defaults.eval_every, help="steps between evaluations")
    a("--optimizer", nargs="+", choices=sorted(OPTIMIZERS), default=list(defaults.optimizers))
    a("--loss", nargs="+", choices=sorted(LOSSES), default=list(defaults.loss_fns),
      help="mse: the problem's squared loss; bce: cross-entropy")
    a("--grad", choices=["manual", "autodiff"], default=defaults.grad,
      help="hand-written manual_grad or jax.grad")
    a("--batch-size", type=int, default=None, help="minibatch size (default: full batch)")
    a("--n-train", type=int, default=defaults.n_train, help="training examples (synthetic)")
    a("--n-test", type=int, default=defaults.n_test, help="test examples (synthetic)")
    a("--dim", type=int, default=defaults.d, help="input dimension d (synthetic)")
    a("--noise", type=float, default=None, help="label noise of synthetic tasks (task default)")
    a("--chunk-size", type=int, default=None, help="runs per results file (default: memory)")
    a("--block-size", type=int, default=defaults.block_size,
      help="runs vmapped together (default: from n and h, see sweep.auto_block_size)")
    a("--out", default=None, help="output folder (default runs/<name>-<date-time>)")
    a("--no-progress", action="store_true", help="no progress bar")
    a("--smoke", action="store_true", help="a tiny configuration that runs in seconds")
    a("--cpu-devices", type=positive_int, default=None,
      help="CPU devices to shard the runs over (default: one per core; sweep.use_cpu_cores)")
    a("--coordinator", default=None, help="HOST:PORT of process 0, for several hosts")
    a("--num-processes", type=int, default=None)
    a("--process-id", type=int, default=None)


def grid_from_args(args: argparse.Namespace, datasets: list[str], smoke=None) -> Grid:
    values = dict(
        datasets=datasets, variants=args.variants, widths=args.widths, lrs=args.lrs,
        seeds=args.seeds, data_seeds=args.data_seeds, steps=args.steps,
        eval_every=args.eval_every, optimizers=args.optimizer, loss_fns=args.loss,
        grad=args.grad, batch_size=args.batch_size, n_train=args.n_train, n_test=args.n_test,
        d=args.dim, noise=args.noise, chunk_size=args.chunk_size, block_size=args.block_size)
    if args.smoke:
        values.update(SMOKE if smoke is None else smoke)
    return Grid(**values)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def set_cpu_devices(count: int | None) -> None:
    """--cpu-devices: one CPU device per core (count None) or count; before any JAX computation.

    Where JAX already runs (tests) the default leaves the devices as they are; an explicit
    count that JAX cannot have is an error.
    """
    import jax

    if use_cpu_cores(count) is None and count is not None and count != jax.local_device_count():
        raise SystemExit(f"--cpu-devices: expected {count} devices to be possible, but JAX "
                         f"already runs with {jax.local_device_count()} (fixed by XLA_FLAGS or "
                         f"an earlier JAX computation)")


def init_devices(args: argparse.Namespace) -> None:
    """set_cpu_devices(--cpu-devices), then jax.distributed with --coordinator."""
    import jax

    set_cpu_devices(args.cpu_devices)
    if args.coordinator is not None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def default_out(name: str) -> str:
    return f"runs/{name}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", nargs="+", choices=DATASETS, default=["moons"],
                        help="built-in data sets")
    add_grid_flags(parser, Grid(seeds=16))
    args = parser.parse_args(argv)
    init_devices(args)
    try:
        grid = grid_from_args(args, args.dataset)
    except (ValueError, TypeError) as e:
        parser.error(str(e))
    out = args.out or default_out("sweep")
    try:
        folder = run_sweep(grid, out, progress=not args.no_progress)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {folder.results_csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

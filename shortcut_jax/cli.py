"""The installed command: `shortcut-jax sweep | compare | report | export | grad-check | bench`.

The only module that parses flags; each subcommand calls the library. `--timings FILE` records
seconds per phase of the command (data, draws, compile, train, write, report) and "started", the
Unix time at which the command began, after Python and the imports: a caller that notes when it
launched the process gets the start-up and import time by difference.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

SWEEP_SMOKE = dict(widths=[4, 8], lrs=[0.5], seeds=2, steps=20, eval_every=10, n_train=[64],
                   n_test=64)
COMPARE_DEFAULTS = dict(datasets=["linear_xor", "moons", "breast_cancer"], widths=[2, 8, 32],
                        lrs=[0.3, 1.0], seeds=32, steps=1000, eval_every=50)
COMPARE_SMOKE = dict(datasets=["linear_xor", "breast_cancer"], widths=[3], lrs=[1.0], seeds=3,
                     steps=40, eval_every=20, n_train=[64], n_test=64)
SWEEP_DEFAULTS = dict(datasets=["moons"], widths=[4, 16, 64], lrs=[0.1, 0.5], seeds=16,
                      steps=2000, eval_every=50)


# --- flag types --------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def nonnegative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def batch_size(text: str) -> int | None:
    """argparse type: an integer >= 1 or 'full' (full-batch steps)."""
    return None if text == "full" else positive_int(text)


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    return value


# --- the grid's flags --------------------------------------------------------------------------


def add_grid_flags(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    """The flags of a Grid, shared by `sweep` and `compare` (`defaults` differ)."""
    from shortcut_jax.data import DATASETS, DEFAULT_NOISE, LINEAR_XOR_WEIGHT, VAL_FRACTION
    from shortcut_jax.model import SHORTCUT_INITS
    from shortcut_jax.sweep import AXIS_DEFAULTS
    from shortcut_jax.train import LOSSES, OPTIMIZERS

    a = parser.add_argument
    g = parser.add_argument_group("the network and its training")
    g.add_argument("--widths", nargs="+", type=positive_int, default=defaults["widths"],
                   help="hidden widths h")
    g.add_argument("--lrs", nargs="+", type=number, default=defaults["lrs"],
                   help="learning rates")
    g.add_argument("--seeds", type=positive_int, default=defaults["seeds"],
                   help="seeds 0..N-1 per configuration (paired: plain and shortcut runs of a "
                        "seed share W1, b1, W2, b2 and minibatch order)")
    g.add_argument("--steps", type=positive_int, default=defaults["steps"],
                   help="training steps")
    g.add_argument("--eval-every", type=positive_int, default=defaults["eval_every"],
                   help="steps between evaluations")
    g.add_argument("--optimizer", nargs="+", choices=sorted(OPTIMIZERS), default=["sgd"],
                   help="optax optimizers by name (momentum 0.9; adamw weight decay 1e-4)")
    g.add_argument("--loss", nargs="+", choices=sorted(LOSSES), default=["mse"],
                   help="mse: the problem's squared loss; bce: cross-entropy")
    g.add_argument("--grad", choices=["manual", "autodiff"], default="manual",
                   help="hand-written manual_grad or jax.grad")
    g.add_argument("--batch-size", nargs="+", type=batch_size, default=[None],
                   help="minibatch sizes, or 'full' (default: full batch); at most the "
                        "training rows of every data set")
    g.add_argument("--shortcut-init", nargs="+", choices=SHORTCUT_INITS, default=["zeros"],
                   help="the shortcut's start: zeros (plain and shortcut start as one function) "
                        "or lecun, W ~ N(0, scale^2/d)")
    g.add_argument("--shortcut-scale", type=number, default=1.0,
                   help="the scale of --shortcut-init lecun")
    d = parser.add_argument_group(
        "data", "Axes taking several values vary the data sets they apply to; each is a "
        "column of the results.")
    d.add_argument("--dataset", "--datasets", dest="datasets", nargs="+", choices=DATASETS,
                   default=defaults["datasets"], help="built-in data sets")
    d.add_argument("--data", default=None, help="your own CSV file (replaces --dataset)")
    d.add_argument("--target", default=None, help="label column of --data")
    d.add_argument("--data-seeds", nargs="+", type=nonnegative_int, default=[0],
                   help="seeds of the data sets (inputs, labels and splits)")
    d.add_argument("--n-train", nargs="+", type=positive_int, default=None,
                   help=f"synthetic tasks only: rows of the training part, of which "
                        f"--val-fraction are held out for validation (default "
                        f"{AXIS_DEFAULTS['n_train']})")
    d.add_argument("--n-test", type=positive_int, default=1000,
                   help="synthetic tasks only: test rows")
    d.add_argument("--dim", nargs="+", type=positive_int, default=None,
                   help=f"synthetic tasks only: input dimension d (default "
                        f"{AXIS_DEFAULTS['d']}; 2-D tasks add d-2 irrelevant N(0,1) features)")
    d.add_argument("--noise", nargs="+", type=number, default=None,
                   help="synthetic tasks only: std of Gaussian jitter added to the inputs after "
                        "the labels are fixed (input jitter, not label noise; default per task: "
                        f"{DEFAULT_NOISE})")
    d.add_argument("--linear-weight", nargs="+", type=number, default=None,
                   help=f"linear_xor only: a in [0, 1] of y = 1{{a x1 + (1-a) x1 x2 > 0}}, 1 a "
                        f"linear rule, 0 XOR (default {LINEAR_XOR_WEIGHT:.4g})")
    d.add_argument("--teacher-width", nargs="+", type=positive_int, default=None,
                   help=f"teacher only: hidden width of the teacher network (default "
                        f"{AXIS_DEFAULTS['teacher_width']})")
    d.add_argument("--teacher-shortcut", nargs="+", type=number, default=None,
                   help="teacher only: strength s >= 0 of the teacher's shortcut, its linear "
                        "part's std relative to the hidden part's (default 0: a plain teacher)")
    d.add_argument("--teacher-labels", choices=["threshold", "bernoulli"], default="threshold",
                   help="teacher only: y = 1{p > 1/2} or y ~ Bernoulli(p)")
    d.add_argument("--teacher-flip", type=number, default=0.0,
                   help="teacher only: probability of flipping each label")
    d.add_argument("--teacher-seed", type=nonnegative_int, default=0,
                   help="teacher only: the seed the teacher network is drawn from")
    d.add_argument("--val-fraction", type=number, default=VAL_FRACTION,
                   help="share of each training part held out for validation (stratified)")
    d.add_argument("--test-fraction", type=number, default=0.3,
                   help="breast cancer and --data only: share of rows held out for test")
    r = parser.add_argument_group("running")
    r.add_argument("--smoke", action="store_true", help="a tiny configuration that runs in "
                                                        "seconds (what the tests run)")
    r.add_argument("--chunk-size", type=positive_int, default=None,
                   help="runs per results file (default: what fits in 1 GiB of device memory)")
    r.add_argument("--block-size", type=positive_int, default=None,
                   help="runs vmapped together (default: from n, h and the depth, "
                   "sweep.auto_block_size)")
    a("--out", default=None, help="output folder (default runs/<command>-<date-time>)")
    add_network_flags(parser)
    add_run_flags(parser)


def add_network_flags(parser: argparse.ArgumentParser) -> None:
    """--depth, --activation, --variants: the network family's axes (network.py)."""
    from shortcut_jax.network import ACTIVATIONS, LEAKY_SLOPE, VARIANTS

    g = parser.add_argument_group("the network family")
    g.add_argument("--depth", nargs="+", type=positive_int, default=[1],
                   help="hidden layers L (1: the problem's network)")
    g.add_argument("--activation", nargs="+", choices=list(ACTIVATIONS), default=["relu"],
                   help=f"hidden activations (leaky_relu: slope {LEAKY_SLOPE} for z <= 0; erf: "
                        f"erf(z/sqrt 2))")
    g.add_argument("--variants", nargs="+", choices=VARIANTS, default=["plain", "shortcut"],
                   help="plain, shortcut (input -> output W x), residual (identity skips "
                        "between hidden layers, depth >= 2), residual+shortcut; every variant "
                        "of a seed starts from the plain network's weights (paired by seed)")


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of every command that runs JAX: devices, hosts, the compile cache, timings."""
    r = parser.add_argument_group("devices and caching")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--cpu-devices", type=positive_int, default=None,
                   help="CPU devices to shard the runs over (default: one per core)")
    r.add_argument("--coordinator", default=None,
                   help="HOST:PORT of process 0, for several hosts (jax.distributed)")
    r.add_argument("--num-processes", type=positive_int, default=None,
                   help="with --coordinator: how many processes take part")
    r.add_argument("--process-id", type=nonnegative_int, default=None,
                   help="with --coordinator: this process's index, 0 writes the files")
    r.add_argument("--distributed", choices=["auto"], default=None,
                   help="auto: several processes set up from the cluster's environment "
                        "(SLURM, Open MPI, Kubernetes, ...: jax.distributed.initialize())")
    r.add_argument("--heartbeat-timeout", type=number, default=60.0, metavar="SECONDS",
                   help="with several processes: a process whose peer has sent no heartbeat "
                        "for this long stops (exit 3), naming the peer")
    r.add_argument("--no-compile-cache", action="store_true",
                   help="do not use the persistent compilation cache (also: "
                        "SHORTCUT_JAX_NO_COMPILE_CACHE=1); default folder "
                        "$XDG_CACHE_HOME/shortcut-jax/xla, or your JAX_COMPILATION_CACHE_DIR")
    r.add_argument("--timings", default=None, metavar="FILE",
                   help="write seconds per phase (data, draws, compile, train, write, report) "
                        "and the Unix time the command started to FILE as JSON")
    r.add_argument("--debug", action="store_true",
                   help="show the Python traceback before the one-line message of a Ctrl-C "
                        "or a file that could not be written")


def add_bench_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of `bench` (shortcut_jax.bench)."""
    from shortcut_jax.bench.configs import (
        CONFIGS,
        IMPLS,
        PROCESS_COMMANDS,
        QUICK_SECTIONS,
        SECTIONS,
        config_list,
    )

    a = parser.add_argument
    a("--quick", action="store_true",
      help="tiny sizes, in this process (the configs section), tiny commands (process); checks "
           "agreement -- what the tests run")
    a("--out", default="runs/bench", help="output folder for results.md and results.json")
    a("--sections", nargs="+", choices=SECTIONS, default=None,
      help=f"sections to run (default: all; with --quick: {' '.join(QUICK_SECTIONS)})")
    a("--reps", type=positive_int, default=5,
      help="timed rounds per configuration (median, spread); --quick: 2")
    a("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
      help="configurations of the configs section")
    a("--impls", nargs="+", default=None, choices=list(IMPLS),
      help="implementations to time (default: all installed); kit always runs")
    a("--cpu-devices", type=positive_int, default=None,
      help="CPU devices the kit and jax_naive_sharded shard over (default: one per core)")
    a("--process-reps", type=positive_int, default=None,
      help="rounds of the process section, each a cold and a warm run of every command "
           "(default 3; --quick: 1)")
    a("--process-commands", nargs="+", choices=list(PROCESS_COMMANDS),
      default=list(PROCESS_COMMANDS), help="commands the process section runs")
    a("--process-timeout", type=positive_int, default=1800,
      help="seconds after which a command of the process section counts as failed")
    a("--one", choices=list(IMPLS), default=None, help=argparse.SUPPRESS)
    a("--serve", choices=list(IMPLS), default=None, help=argparse.SUPPRESS)
    a("--cfg", type=config_list, default=None, metavar="[n,d,h,M,T]",
      help="time this configuration (JSON list) in the configs section instead of --configs")


FLAGS = {"datasets": "--dataset", "d": "--dim", "loss_fns": "--loss", "depths": "--depth",
         "activations": "--activation", "depth": "--depth",
         "optimizers": "--optimizer", "csv": "--data", "teacher_labels": "--teacher-labels"}
"""Grid fields whose flag is not "--" + the field's name with dashes."""


def _as_flags(message: str, args: argparse.Namespace,
              parser: argparse.ArgumentParser) -> str:
    """A Grid error in the command's terms: its field named by the flag that sets it, and a
    value equal to the flag's default marked as such."""
    name, sep, rest = message.partition(":")
    if not sep or not name.isidentifier():
        return message
    flag = FLAGS.get(name, "--" + name.replace("_", "-"))
    dest = flag[2:].replace("-", "_")
    default = parser.get_default(dest)
    if default is not None and getattr(args, dest, None) == default:
        rest += f" (the default; set {flag})"
    return f"{flag}:{rest}"


def grid_from_args(args: argparse.Namespace, smoke: dict[str, Any] | None):
    """The Grid the flags describe (the smoke configuration over them with --smoke)."""
    from shortcut_jax.sweep import Grid

    values = dict(
        datasets=args.datasets, variants=args.variants, widths=args.widths, lrs=args.lrs,
        seeds=args.seeds, data_seeds=args.data_seeds, steps=args.steps,
        eval_every=args.eval_every, optimizers=args.optimizer, loss_fns=args.loss,
        grad=args.grad, batch_size=args.batch_size, shortcut_init=args.shortcut_init,
        shortcut_scale=args.shortcut_scale, n_train=args.n_train, n_test=args.n_test,
        d=args.dim, noise=args.noise, linear_weight=args.linear_weight,
        teacher_width=args.teacher_width, teacher_shortcut=args.teacher_shortcut,
        teacher_labels=args.teacher_labels, teacher_flip=args.teacher_flip,
        teacher_seed=args.teacher_seed, val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, csv=args.data, target=args.target,
        chunk_size=args.chunk_size, block_size=args.block_size, depths=args.depth,
        activations=args.activation)
    if args.smoke:
        smoke = dict(smoke or {})
        if args.data is not None:  # the smoke sizes of synthetic tasks do not apply
            for key in ("datasets", "n_train", "n_test"):
                smoke.pop(key, None)
        values.update(smoke)
    return Grid(**values)


# --- devices, hosts, cache -----------------------------------------------------------------


def set_cpu_devices(count: int | None) -> None:
    """--cpu-devices: one CPU device per core (count None) or count; before any JAX computation.

    Where JAX already runs (tests) the default leaves the devices as they are; an explicit
    count that JAX cannot have is an error.
    """
    import jax

    from shortcut_jax.sweep import use_cpu_cores

    if use_cpu_cores(count) is None and count is not None and count != jax.local_device_count():
        raise SystemExit(f"--cpu-devices: expected {count} devices to be possible, but JAX "
                         f"already runs with {jax.local_device_count()} (fixed by XLA_FLAGS or "
                         f"an earlier JAX computation)")


def init_runtime(args: argparse.Namespace) -> None:
    """Before any JAX computation: the compile cache, CPU devices, jax.distributed."""
    from shortcut_jax import cluster, compilation

    if not args.no_compile_cache:
        compilation.enable_cache()
    set_cpu_devices(args.cpu_devices)
    if args.coordinator is not None and args.distributed is not None:
        raise SystemExit("--distributed auto: takes the coordinator from the environment; "
                         "leave out --coordinator, --num-processes and --process-id")
    out = getattr(args, "out", None)
    hint = ("rerun the same command" + (f" with --out {out}" if out else "")
            + " (one process, or the whole job again) to resume from them")
    try:
        cluster.initialize(args.distributed == "auto", args.coordinator, args.num_processes,
                           args.process_id, args.heartbeat_timeout, hint)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


def default_out(name: str) -> str:
    return f"runs/{name}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _write_timings(args: argparse.Namespace, timings: dict[str, float]) -> None:
    """--timings: the phases, and "command" = seconds from the command's start to now."""
    t0 = timings.pop("t0")
    if args.timings:
        from shortcut_jax import results

        timings["command"] = time.perf_counter() - t0
        results.atomic_write_text(args.timings, json.dumps(timings, indent=1) + "\n")


# --- subcommands -------------------------------------------------------------------------------


def cmd_sweep(args: argparse.Namespace, parser: argparse.ArgumentParser,
              smoke: dict[str, Any] | None = SWEEP_SMOKE, name: str = "sweep"):
    """Run (or resume) a grid into --out; returns (RunFolder, timings) or an exit code."""
    timings = {"started": time.time()}
    t0 = time.perf_counter()
    init_runtime(args)
    from shortcut_jax.sweep import run_sweep

    if (args.data is None) != (args.target is None):
        parser.error("--data and --target go together: --data FILE.csv --target COLUMN")
    try:
        grid = grid_from_args(args, smoke)
    except (ValueError, TypeError) as e:
        parser.error(_as_flags(str(e), args, parser))
    out = args.resolved_out = args.out or default_out(name)
    from shortcut_jax import cluster

    try:
        with cluster.guard():
            folder = run_sweep(grid, out, progress=not args.no_progress,
                               extra_config=getattr(args, "extra_config", None))
    except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cluster.finished()
    timings.update(folder.timings, t0=t0)
    return folder, timings


def cmd_compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The headline experiment: a sweep, then its report (figures, Hessians, baselines)."""
    args.extra_config = {"tau": args.tau}
    done = cmd_sweep(args, parser, smoke=COMPARE_SMOKE, name="compare")
    if isinstance(done, int):
        return done
    folder, timings = done
    import jax

    if jax.process_index() != 0:
        return 0
    t0 = time.perf_counter()
    try:
        written = _report(folder.path, folder.path, args.tau, hessians=True, baselines=True,
                          progress=not args.no_progress)
    except (KeyboardInterrupt, OSError) as e:  # the sweep is whole: say so
        e.folder, e.total = folder.path, sum(folder.counts.values())
        e.saved = e.total
        raise
    timings["report"] = time.perf_counter() - t0
    _write_timings(args, timings)
    print(written)
    return 0


def cmd_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """report.md and figures from a finished sweep folder, without training."""
    init_runtime(args)
    try:
        written = _report(Path(args.folder), Path(args.out or args.folder), args.tau,
                          hessians=not args.no_hessians, baselines=args.baselines,
                          progress=not args.no_progress)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(written)
    return 0


def _report(folder: Path, out: Path, tau: float | None, *, hessians: bool,
            baselines: bool, progress: bool = True) -> str:
    from tqdm.auto import tqdm

    from shortcut_jax import report, results

    # a bar over the report's steps (report.STEPS) and the writing of its files
    with tqdm(total=len(report.STEPS) + 1, unit="step", disable=not progress, desc="report",
              bar_format="{desc}: {n_fmt}/{total_fmt} steps [{elapsed}]") as bar:
        def step(name: str) -> None:
            bar.set_description_str(f"report: {name}")
            bar.update(1)

        rep = report.build(folder, tau=tau, hessians=hessians, baselines=baselines,
                           progress=step)
        step("writing")
        for name, fig in rep.figures.items():
            results.atomic_write_bytes(out / "figures" / f"{name}.png", report.png(fig))
        for name, table in rep.tables.items():
            results.atomic_write_text(out / f"{name}.csv", table.to_csv(index=False))
        results.atomic_write_text(out / "report.md", rep.markdown)
    if len(rep.untrained):
        print(untrained_warning(rep.untrained, len(rep.tables["summary"]), out / "report.md"),
              file=sys.stderr)
    return (f"wrote {out / 'report.md'} ({rep.n_rows} result rows, {len(rep.figures)} figures, "
            f"{len(rep.tables)} tables)")


def untrained_warning(bad, n_configs: int, path: Path) -> str:
    """One line: how many configurations did not train, their likely causes and learning rates,
    and where the report lists them."""
    causes = "; ".join(
        f"{cause.split(':')[0]} at lr {', '.join(f'{lr:g}' for lr in sorted(set(part['lr'])))}"
        for cause, part in bad.groupby("cause", sort=False))
    return (f"warning: {len(bad)} of {n_configs} configurations did not train (likely cause: "
            f"{causes}); see 'Runs that did not train' in {path}")


def cmd_export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The folder's table as CSV text (results.csv, or --out)."""
    from shortcut_jax import results

    if not args.csv:
        parser.error("--csv: the only export format; add --csv")
    try:
        folder = results._finished(args.folder)
        with folder.writing():
            written = folder.export_csv(args.out)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {written}")
    return 0


def cmd_grad_check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Hand-written gradients vs jax.grad and finite differences; exit 1 on a failure."""
    init_runtime(args)
    from shortcut_jax import gradcheck

    try:
        gradcheck.network_settings(args.depth, args.activation, args.variants)
    except ValueError as e:
        parser.error(_as_flags(str(e), args, parser))
    result = gradcheck.run(args.cases, args.seed)
    print(gradcheck.format_table(result))
    net = gradcheck.run_network(args.net_cases, args.seed, args.depth, args.activation,
                                args.variants)
    print()
    print(gradcheck.format_network_table(net))
    return 1 if result["failed"] or net["failed"] else 0


def cmd_bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from shortcut_jax import bench

    set_cpu_devices(args.cpu_devices)
    return bench.main(args)


# --- the parser --------------------------------------------------------------------------------


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help, except None (an axis left at its documented default)."""

    def _get_help_string(self, action):
        if action.default is None or action.default == [None]:
            return action.help
        return super()._get_help_string(action)


def make_parser() -> argparse.ArgumentParser:
    fmt = _Formatter
    parser = argparse.ArgumentParser(
        prog="shortcut-jax", description="How a shortcut connection changes the learning of a "
        "two-layer ReLU/sigmoid network: sweeps, the headline comparison, reports.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sweep", formatter_class=fmt, help="run a resumable grid of runs",
                       description="Sweep plain vs shortcut over a grid; rerunning the same "
                       "command resumes. Writes the table (table.json, chunks/*.parquet; "
                       "results.csv too for small sweeps), params.npz, config.json.")
    add_grid_flags(p, SWEEP_DEFAULTS)
    p.set_defaults(func=lambda a, p=p: _sweep_main(a, p))

    p = sub.add_parser("compare", formatter_class=fmt, help="the headline experiment",
                       description="Plain vs shortcut, paired by seed, on linear_xor, moons and "
                       "breast cancer; writes the sweep and its report (report.md, figures).")
    add_grid_flags(p, COMPARE_DEFAULTS)
    p.add_argument("--tau", type=number, default=0.05,
                   help="train-loss threshold for steps-to-threshold")
    p.set_defaults(func=lambda a, p=p: cmd_compare(a, p))

    p = sub.add_parser("report", formatter_class=fmt, help="report.md from a sweep folder",
                       description="report.md, tables and figures rebuilt from a finished "
                       "sweep folder without training.")
    p.add_argument("folder", help="a folder written by `sweep` or `compare`")
    p.add_argument("--out", default=None, help="write here instead of into FOLDER")
    p.add_argument("--tau", type=number, default=None,
                   help="train-loss threshold for steps-to-threshold (default: the folder's)")
    p.add_argument("--no-hessians", action="store_true",
                   help="skip the exact Hessians of the final parameters")
    p.add_argument("--baselines", action="store_true",
                   help="add scikit-learn baselines on the same splits")
    add_run_flags(p)
    p.set_defaults(func=lambda a, p=p: cmd_report(a, p))

    p = sub.add_parser("export", formatter_class=fmt, help="a sweep folder's table as CSV",
                       description="The table of a finished sweep folder (Parquet) as CSV "
                       "text, one row per run and eval step, written chunk by chunk.")
    p.add_argument("folder", help="a folder written by `sweep` or `compare`")
    p.add_argument("--csv", action="store_true", help="write CSV (the only format)")
    p.add_argument("--out", default=None, help="the CSV file (default FOLDER/results.csv)")
    p.set_defaults(func=lambda a, p=p: cmd_export(a, p))

    p = sub.add_parser("grad-check", formatter_class=fmt,
                       help="manual gradients vs jax.grad and finite differences",
                       description="The hand-written derivatives of part (b) against jax.grad "
                       "(float32, float64) and central finite differences; exit 1 on failure.")
    p.add_argument("--cases", type=positive_int, default=300, help="random cases per network")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="PRNG seed")
    add_network_flags(p)
    p.add_argument("--net-cases", type=positive_int, default=30,
                   help="random cases per (depth, activation, variant, loss) of the network "
                        "family's check")
    add_run_flags(p)
    p.set_defaults(func=lambda a, p=p: cmd_grad_check(a, p))

    p = sub.add_parser("bench", formatter_class=fmt, help="speed next to the alternatives",
                       description="Benchmarks: the kit next to NumPy, plain JAX and PyTorch; "
                       "whole-process times of the sweep and compare commands.")
    add_bench_flags(p)
    p.set_defaults(func=lambda a, p=p: cmd_bench(a, p))
    return parser


def _sweep_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    done = cmd_sweep(args, parser)
    if isinstance(done, int):
        return done
    folder, timings = done
    _write_timings(args, timings)
    print(f"wrote {folder.path} ({folder.counts['trained']} runs trained, "
          f"{folder.counts['resumed']} found complete)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    import warnings

    from shortcut_jax import results

    shown = warnings.showwarning

    def one_line(message, category, *where, **kwargs):
        """A damaged file moved aside: one line, not Python's file:line and source."""
        if issubclass(category, results.DamagedFileWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            shown(message, category, *where, **kwargs)

    with warnings.catch_warnings(), results.interrupt_safely():
        if not getattr(args, "debug", False):
            warnings.showwarning = one_line  # restored by catch_warnings
        try:
            return args.func(args)
        except (KeyboardInterrupt, results.WriteFailed) as e:
            if getattr(args, "debug", False):
                traceback.print_exc()
            print(stopped(e, args), file=sys.stderr)
            return 130 if isinstance(e, KeyboardInterrupt) else 1


def process(argv: list[str] | None = None) -> int:
    """`main` as a whole process: the installed `shortcut-jax` and the experiment scripts.

    Python's cyclic collector set as mypy sets its own (a young collection every 10,000
    allocations, not 700, and fewer old ones: the objects this process allocates live to its
    end), and frozen before Python exits (its last collection walks every object left)."""
    gc.set_threshold(10_000, 50, 50)
    try:
        return main(argv)
    finally:
        gc.freeze()


def stopped(e: BaseException, args: argparse.Namespace) -> str:
    """The one line a command prints when Ctrl-C or a file it could not write (WriteFailed)
    stops it: what is saved where, and how to go on."""
    _close_progress_bars()
    what = ("interrupted" if isinstance(e, KeyboardInterrupt) else
            f"error: could not write {Path(e.filename).name} in {Path(e.filename).parent} "
            f"({e.strerror})")
    fix = "" if isinstance(e, KeyboardInterrupt) else "free space (or make it writable) and "
    if args.command == "report":
        return (f"{what}: report.md was not written (the sweep in {args.folder} is "
                f"unchanged); {fix}rerun the same command")
    if args.command not in ("sweep", "compare"):
        return f"{what}; {fix}rerun the same command"
    folder = getattr(e, "folder", None) or getattr(args, "resolved_out", None)
    saved, total = getattr(e, "saved", 0), getattr(e, "total", None)
    if folder is None or not Path(folder).exists():
        return f"{what}: nothing was saved; {fix}rerun the same command"
    if total is None:  # stopped before the sweep counted its runs
        chunks = len(list(Path(folder).glob("chunks/*.npz")))
        kept = (f"the runs of {chunks} finished chunks are kept in {folder}" if chunks else
                f"nothing was saved in {folder}")
    elif saved == total:
        kept = f"all {total} runs are saved in {folder}"
    else:
        kept = f"{saved} of {total} runs are saved in {folder}"
    same = "the same command" if args.out is not None else f"the same command with --out {folder}"
    return f"{what}: {kept}; {fix}rerun {same} to resume"


def _close_progress_bars() -> None:
    """End a progress bar's line, so that the message starts on its own."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


if __name__ == "__main__":
    sys.exit(main())

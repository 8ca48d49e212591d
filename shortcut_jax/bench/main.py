"""The benchmark's entry point (`shortcut-jax bench`, flags in shortcut_jax.cli)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shortcut_jax.bench.configs import (
    CONFIGS,
    PROCESS_COMMANDS,
    PROCESS_QUICK,
    PROCESS_TARGETS,
    QUICK,
    QUICK_SECTIONS,
    SECTIONS,
)
from shortcut_jax.bench.processes import process_times
from shortcut_jax.bench.sections import (
    compile_times,
    grad_timings,
    matmul_peak,
    memory,
    plot_scaling,
    scaling,
    versions,
)
from shortcut_jax.bench.tables import markdown
from shortcut_jax.bench.workers import Runner, config_entries, serve, time_config


def main(args: argparse.Namespace) -> int:
    """The benchmark: the sections asked for, tables printed, results.md and results.json
    written into args.out (the caller sets the CPU devices first: cli.set_cpu_devices). Exit
    status 1 when an implementation's final losses disagree with the kit's or a command of the
    process section failed."""
    import jax

    if Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"error: --out: expected a folder for results.md and results.json, got the file "
              f"{args.out}", file=sys.stderr)
        return 2
    if args.one or args.serve:  # a fresh process timing one implementation
        if args.cfg is None:
            print(f"error: --cfg: expected [n, d, h, M, T] with --{'one' if args.one else 'serve'}"
                  f", got none", file=sys.stderr)
            return 2
        jax.config.update("jax_enable_compilation_cache", False)
        if args.serve:
            return serve(args.serve, args.cfg)
        return _one(args.one, args.cfg, args.reps)

    from shortcut_jax import peers
    from shortcut_jax.results import atomic_write_text

    def echo(line: str) -> None:
        print(line, flush=True)

    sections = args.sections or (QUICK_SECTIONS if args.quick else SECTIONS)
    if not args.quick:  # compile times measured, not read from a user's cache (--quick: as is)
        jax.config.update("jax_enable_compilation_cache", False)
    reps = 2 if args.quick else args.reps
    report: dict[str, Any] = {"versions": versions(), "quick": args.quick,
                              "sections": list(sections)}
    ok = True
    if "configs" in sections or ("scaling" in sections and not args.quick):
        report["peak_gflops"] = matmul_peak(256 if args.quick else 2048)
        echo(f"float32 matmul peak: {report['peak_gflops']:.1f} GFLOP/s")
    if "grads" in sections:
        shapes = [(64, 2, 4)] if args.quick else [(200, 2, 16), (1000, 2, 16), (4096, 32, 128)]
        report["grads"] = grad_timings(shapes, reps)
    if "compile" in sections:
        report["compile"] = compile_times((4,) if args.quick else (4, 16, 64), args.quick, echo)
    if "configs" in sections:
        configs = QUICK if args.quick else CONFIGS
        configs = {"custom": args.cfg} if args.cfg else {k: configs[k] for k in args.configs}
        n_devices = jax.local_device_count()
        report["configs"] = {}
        for name, cfg in configs.items():
            n, d, h, M, T = cfg
            entries = config_entries(M, args.impls, n_devices, args.quick, peers.HAVE_TORCH)
            rows = time_config(name, cfg, entries, reps, in_process=args.quick,
                               cpu_devices=args.cpu_devices, echo=echo)
            report["configs"][name] = {"n": n, "d": d, "h": h, "M": M, "T": T, "rows": rows}
            if not all(r["agree"] for r in rows):
                ok = False
                echo(f"FAIL: {name}: an implementation's final losses disagree with the kit's")
    if "scaling" in sections and not args.quick:
        report["scaling"] = scaling(CONFIGS["A"], reps, args.cpu_devices, echo)
        plot_scaling(report["scaling"], Path(args.out) / "scaling.png")
    if "memory" in sections and not args.quick:
        report["memory"] = memory(echo=echo)
    if "process" in sections:
        commands = PROCESS_QUICK if args.quick else PROCESS_COMMANDS
        commands = {k: v for k, v in commands.items() if k in args.process_commands}
        process_reps = args.process_reps or (1 if args.quick else 3)
        report["process"] = process_times(
            commands, process_reps, cpu_devices=args.cpu_devices, timeout=args.process_timeout,
            targets=None if args.quick else PROCESS_TARGETS, echo=echo)
        if any(r["failed"] for r in report["process"]["summary"]):
            ok = False
            echo("FAIL: a command of the process section failed (its stderr is in the table)")
    if "store" in sections:
        from shortcut_jax.bench.store import STORE_RUNS, plot_store, store_scaling

        report["store"] = store_scaling((12, 24) if args.quick else STORE_RUNS, args.quick,
                                        timeout=args.process_timeout, echo=echo)
        if not args.quick:
            plot_store(report["store"], Path(args.out) / "store.png")
        if any(r["error"] for r in report["store"]):
            ok = False
            echo("FAIL: a step of the store section failed (its stderr is in the table)")
    if "network" in sections:
        from shortcut_jax.bench.network import (
            NETWORK_CONFIG,
            NETWORK_QUICK,
            block_times,
            network_times,
        )

        report["network"] = network_times(NETWORK_QUICK if args.quick else NETWORK_CONFIG,
                                          reps, echo)
        report["network_blocks"] = (
            block_times(n=64, h=4, depths=(1, 3), blocks=(1, 2), M=2, T=4, reps=1, echo=echo)
            if args.quick else block_times(reps=reps, echo=echo))
        if not all(r["agree"] for r in report["network"]["rows"]):
            ok = False
            echo("FAIL: D: an implementation's final losses disagree with the kit's")
    out = Path(args.out)
    atomic_write_text(out / "results.json", json.dumps(report, indent=1))
    text = markdown(report)
    atomic_write_text(out / "results.md", text)
    print(text)
    return 0 if ok else 1


def _one(impl: str, cfg: Sequence[int], reps: int) -> int:
    """--one IMPL --cfg [n, d, h, M, T]: warm-up and `reps` timed calls in this process; prints
    one JSON line (compile_s, times_s, median_s, model_steps_per_s, final_losses, footing)."""
    import numpy as np

    runner = Runner(impl, cfg)
    res: dict[str, Any] = {"impl": impl, "compile_s": runner.warm_up(),
                           "footing": runner.footing()}
    times = []
    for _ in range(reps):
        seconds, losses = runner.rep()
        times.append(seconds)
    median = float(np.median(times))
    res.update(times_s=times, median_s=median, spread_s=float(np.max(times) - np.min(times)),
               model_steps_per_s=cfg[3] * cfg[4] / median, final_losses=losses)
    print(json.dumps(res))
    return 0

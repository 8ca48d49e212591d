"""results.md: the report's tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shortcut_jax.bench.configs import PROCESS_PHASES, STEPS_PER_CALL
from shortcut_jax.bench.workers import footing_text

# --- the report --------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Lines of a markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def markdown(report: dict[str, Any]) -> str:
    """results.md: every section that ran, as tables."""
    v = report["versions"]
    s = [f"# Benchmark ({v['device']}, {v['platform']}, {v['cpus']} CPUs; jax {v['jax']}"
         + (f", torch {v['torch']}" if "torch" in v else "") + ")", ""]
    if "peak_gflops" in report:
        s += [f"Float32 matmul peak measured in this run: {report['peak_gflops']:.1f} GFLOP/s. "
              "Times are medians.", ""]
    if report.get("grads"):
        s += ["## Gradient and step, manual_grad vs jax.grad (jitted, µs)", "",
              f"grad: one jitted call (dispatch included); step: one SGD step inside a compiled "
              f"loop of {STEPS_PER_CALL} (dispatch excluded). Timed in turns, median.", "",
              *_table(["n", "d", "h", "impl", "grad µs", "step µs", "compile s"],
                      [[r["n"], r["d"], r["h"], r["impl"], f"{r['grad_us']:.1f}",
                        f"{r['step_us']:.1f}", f"{r['grad_compile_s']:.2f}"]
                       for r in report["grads"]]), ""]
    if report.get("compile"):
        s += ["## Compile time of a sweep shape group (trace + XLA compile of init and "
              "run, eval metrics and diagnostics included)", "",
              *_table(["group", "runs", "init s", "run s", "total s"],
                      [[r["group"], r["runs"], f"{r['init_s']:.2f}", f"{r['run_s']:.2f}",
                        f"{r['total_s']:.2f}"] for r in report["compile"]]), ""]
    if report.get("configs"):
        where = ("all in this process (--quick)" if report.get("quick") else
                 "each implementation in a process of its own")
        s += [f"Configurations: {where}, timed in rounds (one repeat of each in turn per "
              "round); × kit = its time / the kit's; × kit_1dev = its time / the kit's on one "
              "device; threads / devices: what the implementation ran with.", ""]
    ratio = lambda x: "–" if x is None else f"{x:.2f}×"  # noqa: E731
    for name, c in report.get("configs", {}).items():
        s += [f"## {name}: n={c['n']} d={c['d']} h={c['h']} M={c['M']} T={c['T']}", "",
              *_table(["impl", "malloc", "threads / devices", "median s", "spread s",
                       "model-steps/s", "GFLOP/s", "compile s", "× kit", "× kit_1dev",
                       "losses agree"],
                      [[r["impl"], "tuned" if r["tuned_malloc"] else "as installed",
                        footing_text(r["footing"]), f"{r['median_s']:.3f}",
                        f"{r['spread_s']:.3f}", f"{r['model_steps_per_s']:,.0f}",
                        f"{r['gflops']:.2f}", f"{r['compile_s']:.2f}", ratio(r["kit_speedup"]),
                        ratio(r["kit_1dev_speedup"]), "yes" if r["agree"] else "NO"]
                       for r in c["rows"]]), ""]
    if report.get("scaling"):
        s += ["## Kit time vs M, n and h (one varied at a time; d and T of A)", "",
              *_table(["varied", "n", "h", "M", "s", "model-steps/s", "GFLOP/s"],
                      [[r["axis"], r["n"], r["h"], r["M"], f"{r['median_s']:.3f}",
                        f"{r['model_steps_per_s']:,.0f}", f"{r['gflops']:.2f}"]
                       for r in report["scaling"]]), ""]
    if report.get("store"):
        s += ["## Sweep, load and report against the number of runs (whole processes)", "",
              "The issue's sweep (xor, widths 4 16, lrs 0.1 0.3 1.0, 100 steps, eval every 10; "
              "12 runs a seed), then `load_results` of its whole table, then its report, each "
              "a fresh process: wall time around it, its own peak resident memory. "
              "Log-log plot: store.png.", "",
              *_table(["runs", "step", "wall s", "peak MB", "error"],
                      [[r["runs"], r["step"], f"{r['wall_s']:.2f}",
                        "" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}",
                        (r["error"] or "").replace("\n", " ")[:80]]
                       for r in report["store"]]), ""]
    if report.get("memory"):
        s += ["## Peak memory of a chunked sweep (chunks of 1024 runs, h=16, n=1000)", "",
              *_table(["M", "peak RSS MB", "s"],
                      [[r["M"], f"{r['peak_rss_mb']:.0f}", f"{r['seconds']:.1f}"]
                       for r in report["memory"]]), ""]
    if report.get("process"):
        s += _process_markdown(report["process"])
    if report.get("network"):
        r = report["network"]
        s += [f"## Configuration D: the network family (depth {r['depth']}, {r['activation']}, "
              f"{r['variant']}; n={r['n']}, d={r['d']}, h={r['h']}, M={r['M']}, T={r['T']})", "",
              f"In one process on {r['devices']} JAX {r['platform']} device(s), timed in "
              f"{r['reps']} rounds after a warm-up call (its time: first call s); median. "
              f"Blocks of {r.get('block', '?')} runs per device per call "
              f"(kit_depth1_block: {r.get('depth1_block', '?')}).", "",
              *_table(["impl", "median s", "spread s", "model-steps/s", "× kit",
                       "first call s", "losses agree"],
                      [[x["impl"], f"{x['median_s']:.3f}", f"{x['spread_s']:.3f}",
                        f"{x['model_steps_per_s']:,.0f}", f"{x['x_kit']:.2f}×",
                        f"{x['first_call_s']:.1f}", "yes" if x["agree"] else "NO"]
                       for x in r["rows"]]), ""]
    if report.get("network_blocks"):
        r = report["network_blocks"]
        s += [f"## The kit's block size against the depth ({r['activation']}, residual+shortcut "
              f"(shortcut at depth 1); n={r['n']}, d={r['d']}, h={r['h']}, M={r['M']}, "
              f"T={r['T']}, one {r['platform']} device)", "",
              f"Microseconds per model-step, median of {r['reps']} rounds; * the block "
              f"sweep.auto_block_size picks.", "",
              *_table(["depth", *(f"block {b}" for b in r["blocks"])],
                      [[x["depth"], *(f"{x['us_per_model_step'][b]:.1f}"
                                      + ("*" if b == x["auto_block"] else "")
                                      for b in r["blocks"])] for x in r["rows"]]), ""]
    return "\n".join(s).rstrip() + "\n"


def _process_markdown(proc: dict[str, Any]) -> list[str]:
    s = ["## Whole processes: wall time of a command, cold and warm compile cache", "",
         "Each run a fresh `python -m shortcut_jax.cli ...` process with a fresh --out; cold: an "
         "empty compile cache folder, warm: the folder a cold run filled; rounds interleaved. "
         "Medians, seconds. startup: Python's start and the imports, until the command's clock "
         "starts; the phases from its --timings; other: the rest of the wall time (set-up "
         "inside the command, exit).", ""]
    s += [f"- {name}: `{cmd}`" for name, cmd in proc["commands"].items()]
    s += ["", "| command | cache | runs | wall s | target s | startup | "
          + " | ".join(PROCESS_PHASES) + " | other |",
          "|---|---|---|---|---|---|" + "---|" * (len(PROCESS_PHASES) + 1)]
    f = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
    for r in proc["summary"]:
        runs = f"{r['runs'] - r['failed']}" + (f" ({r['failed']} failed)" if r["failed"] else "")
        if "wall_s" not in r:
            s.append(f"| {r['command']} | {r['cache']} | {runs} | failed | {f(r['target_s'])} | "
                     + " | ".join("–" for _ in range(len(PROCESS_PHASES) + 2)) + " |")
            continue
        s.append(f"| {r['command']} | {r['cache']} | {runs} | {r['wall_s']:.2f} | "
                 f"{f(r['target_s'])} | {f(r['startup_s'])} | "
                 + " | ".join(f(r["phases"][p]) for p in PROCESS_PHASES)
                 + f" | {f(r['other_s'])} |")
    for r in proc["summary"]:
        if r.get("error"):
            s += ["", f"{r['command']} ({r['cache']} cache) failed:", "", "```", r["error"],
                  "```"]
    s.append("")
    return s



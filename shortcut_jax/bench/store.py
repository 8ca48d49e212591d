"""The store section: whole-process time and peak memory of sweep, load and report against the
number of runs (the issue's sweep, 12 runs a seed), each step a fresh Python process."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shortcut_jax.bench.configs import Echo, _quiet

STORE_SWEEP = ["--dataset", "xor", "--n-train", "200", "--widths", "4", "16", "--lrs", "0.1",
               "0.3", "1.0", "--steps", "100", "--eval-every", "10"]
STORE_QUICK = ["--dataset", "xor", "--n-train", "64", "--n-test", "64", "--widths", "4", "16",
               "--lrs", "0.1", "0.3", "1.0", "--steps", "10", "--eval-every", "5"]
STORE_RUNS = (1_000, 10_000, 100_000)
RUNS_PER_SEED = 12  # 2 variants x 2 widths x 3 learning rates
STEPS = ("sweep", "load", "report")
_PREFIX = "BENCH-STORE "
_SCRIPT = """
import json, resource, sys
step, folder, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
if step == "load":
    import shortcut_jax as sj
    code = 0 if len(sj.load_results(folder)) else 1
else:
    from shortcut_jax.cli import main
    argv = ([step, *rest, "--out", folder] if step == "sweep" else [step, folder, *rest])
    code = main([*argv, "--no-progress"])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("PREFIX" + json.dumps({"code": code, "peak_mb": peak}))
""".replace("PREFIX", _PREFIX)


def store_scaling(runs: Sequence[int] = STORE_RUNS, quick: bool = False, *,
                  timeout: float = 3600.0, echo: Echo = _quiet) -> list[dict[str, Any]]:
    """Rows {runs, seeds, step, wall_s, peak_mb, error}: the sweep (seeds = runs / 12), loading
    its whole table, and its report (Hessians included), each in a fresh process; wall time measured
    around the process, peak resident memory by the process itself."""
    rows = []
    sweep = STORE_QUICK if quick else STORE_SWEEP
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        for n in runs:
            seeds = max(1, round(n / RUNS_PER_SEED))
            folder = str(Path(tmp) / f"runs{n}")
            for step in STEPS:
                rest = [*sweep, "--seeds", str(seeds)] if step == "sweep" else []
                t0 = time.perf_counter()
                try:
                    proc = subprocess.run([sys.executable, "-c", _SCRIPT, step, folder, *rest],
                                          capture_output=True, text=True, timeout=timeout)
                    lines = [x for x in proc.stdout.splitlines() if x.startswith(_PREFIX)]
                    answer = json.loads(lines[-1][len(_PREFIX):]) if lines else {}
                    error = None if proc.returncode == 0 and answer.get("code") == 0 else (
                        "\n".join(proc.stderr.strip().splitlines()[-5:]) or "no answer")
                except subprocess.TimeoutExpired:
                    answer, error = {}, f"timed out after {timeout:g} s"
                row = {"runs": seeds * RUNS_PER_SEED, "seeds": seeds, "step": step,
                       "wall_s": time.perf_counter() - t0, "peak_mb": answer.get("peak_mb"),
                       "error": error}
                rows.append(row)
                echo(f"  store {row['runs']} runs, {step}: {row['wall_s']:.1f} s, "
                     f"{row['peak_mb'] or float('nan'):.0f} MB" + (f" FAILED {error}" if error
                                                                  else ""))
                if error:
                    break
    return rows


def plot_store(rows: list[dict], path: Path) -> None:
    """Log-log PNG of each step's wall time and peak memory against the runs (skipped without
    matplotlib)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return
    import io

    from shortcut_jax.results import atomic_write_bytes

    fig = Figure(figsize=(10, 3.8), dpi=100, layout="tight")
    for i, (key, label) in enumerate((("wall_s", "seconds (whole process)"),
                                      ("peak_mb", "peak resident memory, MB"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for step in STEPS:
            part = [r for r in rows if r["step"] == step and r[key] is not None
                    and not r["error"]]
            if part:
                ax.loglog([r["runs"] for r in part], [r[key] for r in part], "o-", label=step)
        ax.set(xlabel="runs", ylabel=label, title=f"{label.split(',')[0]} vs runs")
        ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())

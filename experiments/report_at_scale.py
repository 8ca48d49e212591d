"""The report of a large sweep folder, timed (printed, not asserted: experiments/BENCHMARKS.md).

    python experiments/report_at_scale.py [--out runs/report-at-scale] [--seeds 2048]

Writes the folder of `shortcut-jax sweep --dataset xor --n-train 200 --widths 4 16 --lrs 0.1
0.3 1.0 --seeds 2048 --steps 100 --eval-every 10` (24,576 runs; ~40 s on 2 CPU cores; reused
when it exists), then prints the seconds of loading it, of `report.build` (statistics,
Hessians, figures drawn) and of rendering the figures to PNG, with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from shortcut_jax.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/report-at-scale", help="the sweep folder")
    p.add_argument("--seeds", type=int, default=2048, help="seeds per configuration")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not (out / "table.json").exists() and not (out / "results.csv").exists():
        code = cli_main(["sweep", "--dataset", "xor", "--n-train", "200", "--widths", "4", "16",
                         "--lrs", "0.1", "0.3", "1.0", "--seeds", str(args.seeds), "--steps",
                         "100", "--eval-every", "10", "--out", str(out), "--no-progress"])
        if code:
            return code
    from shortcut_jax import report, results

    t0 = time.perf_counter()
    n = len(results.load(out))
    t1 = time.perf_counter()
    built = report.build(out)
    t2 = time.perf_counter()
    for fig in built.figures.values():
        report.png(fig)
    t3 = time.perf_counter()
    print(f"{n} rows: load {t1 - t0:.2f} s, report.build {t2 - t1:.2f} s (load included), "
          f"PNGs {t3 - t2:.2f} s; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} "
          "CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

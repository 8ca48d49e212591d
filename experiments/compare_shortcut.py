"""The headline experiment: does the shortcut help, and why? Plain vs shortcut, paired by seed.

    python experiments/compare_shortcut.py            # ~14 s cold, ~10 s warm (2 cores)
    python experiments/compare_shortcut.py --smoke    # seconds (what the test runs)

The same as `shortcut-jax compare`. Default: linear_xor and moons (synthetic, 2-D) and breast
cancer (569 x 30, bundled with scikit-learn), widths 2 8 32, learning rates 0.3 1.0, 32 seeds,
1000 full-batch SGD steps on the problem's squared loss. Writes to runs/compare-<date-time>/
(or --out): the sweep's files, report.md, summary.csv, paired.csv, hessian.csv and figures/.
Rerunning with the same --out resumes. Your own data: --data FILE.csv --target COLUMN.
"""

from __future__ import annotations

import sys

from shortcut_jax.cli import main as cli_main
from shortcut_jax.cli import process


def main(argv: list[str] | None = None) -> int:
    return cli_main(["compare", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(process(["compare", *sys.argv[1:]]))  # main(), Python's collector set for a process

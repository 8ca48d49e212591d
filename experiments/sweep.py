"""Sweep plain vs shortcut over a grid of widths, learning rates, seeds and data axes; resumable.

    python experiments/sweep.py --dataset moons --widths 4 16 64 --lrs 0.1 0.5 --seeds 16 \
        --steps 2000 --out runs/sweep-moons          # ~10 s on 2 CPU cores
    python experiments/sweep.py --smoke               # seconds (what the tests run)

The same as `shortcut-jax sweep` (--help lists every flag and axis). Writes results.csv (one row
per run and eval step), params.npz, config.json, manifest.json and chunks/ into --out; rerunning
the same command resumes. `shortcut-jax report OUT` turns the folder into report.md. Several
hosts: run the same command on each with --coordinator HOST:PORT --num-processes N
--process-id I (jax.distributed); process 0 writes the files.
"""

from __future__ import annotations

import sys

from shortcut_jax.cli import main as cli_main
from shortcut_jax.cli import process


def main(argv: list[str] | None = None) -> int:
    return cli_main(["sweep", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(process(["sweep", *sys.argv[1:]]))  # main(), Python's collector set for a process

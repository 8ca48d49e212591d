"""How fast the kit trains many models next to what a user would pick instead, and how long its
commands take start to finish.

    python experiments/benchmark.py [--out runs/bench]   # about an hour on 2 CPU cores with torch
    python experiments/benchmark.py --quick               # seconds: tiny sizes, agreement check

The same as `shortcut-jax bench` (shortcut_jax/bench/; --help lists the sections and flags;
`--sections process` runs only the whole-process times of `sweep` and `compare`). Writes
results.md and results.json into --out; the measured runs are in experiments/BENCHMARKS.md.
"""

from __future__ import annotations

import sys

from shortcut_jax.cli import main as cli_main
from shortcut_jax.cli import process


def main(argv: list[str] | None = None) -> int:
    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(process(["bench", *sys.argv[1:]]))  # main(), Python's collector set for a process

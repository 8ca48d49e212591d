"""Check the hand-written gradients against jax.grad and central finite differences.

    python experiments/grad_check.py [--cases 300]   # ~2 min on 2 CPU cores, mostly compiling

The same as `shortcut-jax grad-check`: prints, for W1, b1, W2, b2, W and both networks, the max
absolute and relative error of manual_grad vs jax.grad (float32 and float64) and vs central
finite differences (float64); exits 1 if any exceeds its tolerance (shortcut_jax.gradcheck).
"""

from __future__ import annotations

import sys

from shortcut_jax.cli import main as cli_main
from shortcut_jax.cli import process


def main(argv: list[str] | None = None) -> int:
    return cli_main(["grad-check", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(process(["grad-check", *sys.argv[1:]]))  # main(), Python's collector set for a process

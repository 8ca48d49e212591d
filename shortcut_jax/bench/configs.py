"""The benchmark's configurations, implementations, commands and constants."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

CONFIGS = {  # name: (n, d, h, M, T)
    "A": (1000, 2, 16, 1024, 200),
    "B": (4096, 32, 128, 64, 100),
    "C": (1000, 2, 16, 1, 1000),
}
QUICK = {"A": (64, 2, 4, 16, 10), "B": (128, 3, 8, 4, 10), "C": (64, 2, 4, 1, 20)}
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
"""glibc malloc settings that keep big freed blocks (no mmap/munmap and page faults each step)."""

SECTIONS = ("grads", "compile", "configs", "scaling", "memory", "process", "store",
            "network")
QUICK_SECTIONS = ("grads", "compile", "configs", "process")

KIT_IMPLS = ("kit", "kit_1dev")
TORCH_IMPLS = ("torch_func", "torch_bmm", "torch_bmm_manual", "torch_compile")
JAX_PEERS = ("jax_naive", "jax_naive_sharded", "jax_python_loop", "jax_step_loop")
PEER_IMPLS = ("numpy", *TORCH_IMPLS, *JAX_PEERS)  # the keys of shortcut_jax.peers.IMPLEMENTATIONS
IMPLS = (*KIT_IMPLS, *PEER_IMPLS)
MALLOC_IMPLS = ("numpy", *TORCH_IMPLS)  # timed as installed and with TUNED_MALLOC
ONE_DEVICE_IMPLS = ("kit_1dev", "jax_naive", "jax_python_loop", "jax_step_loop")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS",
              *TUNED_MALLOC)
"""Environment variables recorded with every row (None where unset)."""

PROCESS_COMMANDS = {  # the sweep, and the headline experiment with its defaults
    "sweep": ["sweep", "--dataset", "xor", "--n-train", "1000", "--variants", "shortcut",
              "--widths", "16", "--lrs", "0.5", "--seeds", "1024", "--steps", "200",
              "--eval-every", "200", "--optimizer", "sgd"],
    "compare": ["compare"],
}
PROCESS_QUICK = {
    "sweep": ["sweep", "--dataset", "xor", "--n-train", "64", "--n-test", "64", "--variants",
              "shortcut", "--widths", "4", "--lrs", "0.5", "--seeds", "2", "--steps", "20",
              "--eval-every", "10", "--optimizer", "sgd"],
    "compare": ["compare", "--dataset", "linear_xor", "--widths", "3", "--lrs", "1.0",
                "--seeds", "3", "--steps", "40", "--eval-every", "20", "--n-train", "64",
                "--n-test", "64"],
}
PROCESS_PHASES = ("data", "draws", "compile", "train", "write", "report")
"""Phases of a command's --timings (compare adds report); start-up is measured apart."""
PROCESS_TARGETS = {("sweep", "cold"): 3.5, ("sweep", "warm"): 2.5, ("compare", "cold"): 15.0,
                   ("compare", "warm"): 10.0}
"""Seconds of wall time the issue asks for on the 2-core development machine (full run)."""

STEPS_PER_CALL = 100  # grads section's step column: SGD steps in one compiled loop, per step
PROTOCOL = "BENCH-JSON "  # prefix of a worker's answer lines on its stdout
Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def step_flops(n: int, d: int, h: int, shortcut: bool = True) -> int:
    """Analytic FLOPs of one full-batch SGD step of one model (see the module docstring)."""
    return 4 * n * h * d + 6 * n * h + (4 * n * d if shortcut else 0)



def config_list(text: str) -> tuple[int, int, int, int, int]:
    """argparse type of --cfg: a JSON list [n, d, h, M, T] of integers >= 1."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not (isinstance(value, list) and len(value) == 5 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise argparse.ArgumentTypeError(f"expected a JSON list [n, d, h, M, T] of five integers "
                                         f">= 1, got {text!r}")
    return tuple(value)



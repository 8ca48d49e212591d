"""The process section: whole commands in fresh processes, cold and warm compile cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shortcut_jax.bench.configs import PROCESS_PHASES, Echo, _quiet

# --- section: whole processes ------------------------------------------------------------------


def _cache_home(path: Path) -> Path:
    """An XDG_CACHE_HOME whose compile cache is empty: matplotlib's font cache is linked from the
    user's own, so that only compilation is cold."""
    path.mkdir(parents=True, exist_ok=True)
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if (user / "matplotlib").is_dir() and not (path / "matplotlib").exists():
        (path / "matplotlib").symlink_to(user / "matplotlib", target_is_directory=True)
    return path


def run_process(argv: Sequence[str], cache_home: Path, workdir: Path, *,
                cpu_devices: int | None = None, timeout: float = 1800.0) -> dict[str, Any]:
    """One command (`python -m shortcut_jax.cli ARGV --no-progress --out ... --timings ...`) in
    a fresh process with XDG_CACHE_HOME = cache_home (and no other compile-cache settings).

    Returns {wall_s (measured here, around the process), returncode, timings (the command's
    --timings file as written), phases (PROCESS_PHASES found there), startup_s, other_s,
    error}: startup_s = the command's "started" (Unix time, after Python's start and the
    imports) - the launch, or its "import" phase where it records one instead; other_s = wall -
    startup - the phases (set-up inside the command, interpreter exit)."""
    workdir.mkdir(parents=True, exist_ok=True)
    timings = workdir / "timings.json"
    cmd = [sys.executable, "-m", "shortcut_jax.cli", *argv, "--no-progress", "--out",
           str(workdir / "out"), "--timings", str(timings)]
    if cpu_devices is not None:
        cmd += ["--cpu-devices", str(cpu_devices)]
    from shortcut_jax.compilation import DISABLE_ENV

    env = {k: v for k, v in os.environ.items() if k not in (
        "JAX_COMPILATION_CACHE_DIR", DISABLE_ENV, "JAX_ENABLE_COMPILATION_CACHE")}
    env["XDG_CACHE_HOME"] = str(cache_home)
    launched, t0 = time.time(), time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        code, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as e:
        code, err = None, e.stderr or ""
        err = err.decode(errors="replace") if isinstance(err, bytes) else err
        err += f"\ntimed out after {timeout:g} s"
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"wall_s": wall, "returncode": code, "timings": {}, "phases": {},
                           "startup_s": None, "other_s": None, "error": None}
    if code == 0 and timings.exists():
        recorded = json.loads(timings.read_text())
        phases = {p: float(recorded[p]) for p in PROCESS_PHASES if p in recorded}
        startup = float(recorded["started"]) - launched  # cli --timings always records it
        out.update(timings=recorded, phases=phases, startup_s=startup,
                   other_s=wall - startup - sum(phases.values()))
    else:
        tail = (err or "").strip().splitlines()[-12:]
        out["error"] = "\n".join(tail) or f"exit status {code}, no --timings written"
    return out


def process_times(commands: dict[str, list[str]], reps: int, *, cpu_devices: int | None = None,
                  timeout: float = 1800.0, targets: dict | None = None,
                  echo: Echo = _quiet) -> dict[str, Any]:
    """Whole-process times of each command, cold and warm compile cache, rounds interleaved.

    Round r runs, for each command in turn: a cold run (a fresh, empty cache folder; in round 0
    the command's warm folder, still empty, which that run fills) and a warm run (the command's
    warm folder). Every run writes to a fresh --out. Returns {commands, runs, summary}: summary
    has per (command, cache) the medians of wall time, start-up, each phase and the rest
    (run_process); a command that fails is recorded with the tail of its stderr.
    """
    import numpy as np

    root = Path(tempfile.mkdtemp(prefix="shortcut-jax-bench-process-"))
    runs = []
    try:
        for r in range(reps):
            for name, argv in commands.items():
                for cache in ("cold", "warm"):
                    home = root / (f"cold-{name}-{r}" if cache == "cold" and r else
                                   f"warm-{name}")
                    run = run_process(argv, _cache_home(home), root / f"{name}-{cache}-{r}",
                                      cpu_devices=cpu_devices, timeout=timeout)
                    run.update(command=name, cache=cache, rep=r)
                    runs.append(run)
                    state = (f"{run['wall_s']:.2f} s" if run["error"] is None else
                             f"failed after {run['wall_s']:.1f} s: "
                             f"{run['error'].splitlines()[-1:]}")
                    echo(f"  {name} ({cache} cache, round {r + 1}): {state}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = []
    for name in commands:
        for cache in ("cold", "warm"):
            mine = [u for u in runs if u["command"] == name and u["cache"] == cache]
            ok = [u for u in mine if u["error"] is None]
            row: dict[str, Any] = {"command": name, "cache": cache, "runs": len(mine),
                                   "failed": len(mine) - len(ok),
                                   "target_s": (targets or {}).get((name, cache))}
            if ok:
                row["wall_s"] = float(np.median([u["wall_s"] for u in ok]))
                row["startup_s"] = float(np.median([u["startup_s"] for u in ok]))
                row["other_s"] = float(np.median([u["other_s"] for u in ok]))
                row["command_s"] = _median([u["timings"].get("command") for u in ok])
                row["phases"] = {p: _median([u["phases"].get(p) for u in ok])
                                 for p in PROCESS_PHASES}
            if len(ok) < len(mine):
                row["error"] = next(u["error"] for u in mine if u["error"] is not None)
            summary.append(row)
    return {"commands": {k: " ".join(["shortcut-jax", *v]) for k, v in commands.items()},
            "runs": runs, "summary": summary}


def _median(values: Sequence[float | None]) -> float | None:
    import numpy as np

    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None



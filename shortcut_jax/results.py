"""The one module that writes files: run folders with config, atomic chunks, resume, tidy CSV.

    out/config.json          {"config": ..., "provenance": ...}; a different config is refused
    out/chunks/<group>-<c>.npz  metrics (runs, evals) and final params of one chunk, atomically
    out/results.csv          one row per (run, eval step), assembled from the chunks
    out/params.npz           final parameters, "<group>/<leaf>" -> (runs, ...), with lr and seed

Every file is written to a temporary name in the same folder and renamed into place, so a
killed sweep leaves whole files or none; rerunning the same command skips finished chunks.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import json
import os
import platform
import subprocess
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ID_COLUMNS = ("dataset", "data_seed", "variant", "width", "lr", "seed", "optimizer", "loss_fn",
              "batch_size", "step")
METRIC_COLUMNS = ("train_loss", "train_acc", "test_loss", "test_acc", "grad_norm")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w"):
    """A file object on a temporary name beside path, renamed onto path when the block ends."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write payload to path via a temporary file in the same folder and os.replace."""
    with atomic_open(path, "wb") as f:
        f.write(payload)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _is_writer() -> bool:
    import jax

    return jax.process_index() == 0


def provenance(matmul_precision: str) -> dict[str, Any]:
    """Versions, devices, precision and git commit, for config.json."""
    import chex
    import jax
    import jaxlib
    import optax

    import shortcut_jax

    devices = jax.devices()
    return {
        "shortcut_jax": shortcut_jax.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "chex": chex.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "x64": bool(jax.config.jax_enable_x64),
        "matmul_precision": matmul_precision,
        "git_commit": git_commit(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def git_commit() -> str | None:
    """HEAD of the checkout the package was imported from, with '+dirty' when modified."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True,
                               text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _fmt(value: Any) -> str:
    """Exact text for floats (repr round-trips), plain text otherwise."""
    if isinstance(value, np.floating):
        return str(value)  # shortest text that round-trips in the value's own dtype
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


class RunFolder:
    """A sweep's output folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def results_csv(self) -> Path:
        return self.path / "results.csv"

    def prepare(self, config: dict[str, Any], prov: dict[str, Any]) -> None:
        """Create the folder, or check that it holds this same config (then it resumes)."""
        cfg_path = self.path / "config.json"
        config = json.loads(json.dumps(config))  # normalise tuples -> lists
        if cfg_path.exists():
            held = json.loads(cfg_path.read_text()).get("config")
            if held != config:
                diff = sorted(k for k in set(held or {}) | set(config)
                              if (held or {}).get(k) != config.get(k))
                raise ValueError(f"out: {self.path} holds results of a different config "
                                 f"(differs in {diff}); use another --out folder or delete it")
            return
        if self.path.exists() and any(self.path.iterdir()):
            raise ValueError(f"out: {self.path} exists and is not empty but has no config.json; "
                             "refusing to mix results")
        if _is_writer():
            atomic_write_text(cfg_path, json.dumps({"config": config, "provenance": prov},
                                                   indent=2) + "\n")

    def chunk_path(self, group: str, chunk: int) -> Path:
        return self.path / "chunks" / f"{group}-{chunk:04d}.npz"

    def has_chunk(self, group: str, chunk: int) -> bool:
        return self.chunk_path(group, chunk).exists()

    def save_chunk(self, group: str, chunk: int, columns: dict[str, Any], lrs: np.ndarray,
                   seeds: np.ndarray, eval_every: int, metrics: dict[str, np.ndarray],
                   params: dict[str, np.ndarray]) -> None:
        """One chunk's runs: metrics[name] (runs, evals), params[leaf] (runs, ...)."""
        if not _is_writer():
            return
        buf = io.BytesIO()
        arrays = {"lr": lrs, "seed": seeds, "eval_every": np.asarray(eval_every),
                  "columns": np.asarray(json.dumps(columns))}
        arrays.update({f"metric/{k}": v for k, v in metrics.items()})
        arrays.update({f"param/{k}": v for k, v in params.items()})
        np.savez(buf, **arrays)
        atomic_write_bytes(self.chunk_path(group, chunk), buf.getvalue())

    def load_chunk(self, group: str, chunk: int) -> dict[str, Any]:
        with np.load(self.chunk_path(group, chunk)) as z:
            return {k: z[k] for k in z.files}

    def assemble(self, chunks: Sequence[tuple[str, int]]) -> None:
        """Write results.csv and params.npz from the chunks, in the given order.

        Streams: one chunk's rows in memory at a time, one group's parameters at a time.
        """
        if not _is_writer():
            return
        metric_names = list(METRIC_COLUMNS)
        for g, c in chunks:
            with np.load(self.chunk_path(g, c)) as z:
                metric_names += [k.removeprefix("metric/") for k in z.files
                                 if k.startswith("metric/")
                                 and k.removeprefix("metric/") not in metric_names]
        with atomic_open(self.results_csv, "w") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow([*ID_COLUMNS, *metric_names])
            for g, c in chunks:
                writer.writerows(_chunk_rows(self.load_chunk(g, c), metric_names))
        with atomic_open(self.path / "params.npz", "wb") as f, \
                zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            for group in dict.fromkeys(g for g, _ in chunks):
                parts: dict[str, list[np.ndarray]] = {}
                for g, c in chunks:
                    if g == group:
                        for k, v in self.load_chunk(g, c).items():
                            if k.startswith("param/") or k in ("lr", "seed"):
                                parts.setdefault(k.removeprefix("param/"), []).append(v)
                for k, v in parts.items():
                    with zf.open(f"{group}/{k}.npy", "w", force_zip64=True) as entry:
                        np.lib.format.write_array(entry, np.concatenate(v))

    def read_rows(self) -> list[dict[str, str]]:
        with open(self.results_csv, newline="") as f:
            return list(csv.DictReader(f))


def _chunk_rows(z: dict[str, Any], metric_names: Iterable[str]) -> Iterable[list[str]]:
    columns = json.loads(str(z["columns"]))
    eval_every = int(z["eval_every"])
    metric_names = list(metric_names)
    for r in range(len(z["lr"])):
        n_evals = z["metric/train_loss"].shape[1]
        for e in range(n_evals):
            ids = {**columns, "lr": z["lr"][r], "seed": z["seed"][r], "step": e * eval_every}
            values = [z[f"metric/{m}"][r, e] if f"metric/{m}" in z else "" for m in metric_names]
            yield [_fmt(ids[c]) for c in ID_COLUMNS] + [_fmt(v) for v in values]

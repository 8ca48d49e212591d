"""The one module that writes files: run folders with config, checksummed chunks, resume,
a columnar table, and the typed table a researcher reads (`load`, `load_params`).

    out/config.json          {"config": ..., "provenance": ...}; a different config is refused
    out/manifest.json        SHA-256 of every chunk, table.json, results.csv and params.npz
    out/chunks/<group>-<c>.parquet  one row per (run, eval step) of one chunk: the table's rows
    out/chunks/<group>-<c>.npz  final params (and lr, seed) of one chunk
    out/chunks/damaged/      chunks (and rebuilt files) that failed their checksum, kept aside
    out/table.json           the table: its Parquet files in run order, metric names, row count
    out/results.csv          the same rows as text, written for sweeps of at most CSV_ROWS rows
                             (`shortcut-jax export FOLDER --csv` writes it for any sweep)
    out/params.npz           final parameters, "<group>/<leaf>" -> (runs, ...), with lr and seed

Folders written before the Parquet table (results.csv and chunks holding metrics) still load.

Every file is written to a temporary name in the same folder and renamed into place, and a
chunk's checksum enters the manifest before its rename, so a killed sweep leaves whole files or
none and a file on disk always has a recorded checksum. Rerunning the same command verifies the
chunks, moves aside (and recomputes) any that are damaged, and skips the rest. One process
writes a folder at a time (an OS file lock, released when its holder dies). A file that cannot
be written (a full disk, a read-only folder) is a WriteFailed naming it, a Ctrl-C under
interrupt_safely waits for the file being written; a sweep's either carries the runs saved.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import functools
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Callable, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np

from shortcut_jax.data import file_sha256 as sha256

ID_COLUMNS = ("dataset", "data_seed", "n_train", "d", "noise", "linear_weight", "teacher_width",
              "teacher_shortcut", "variant", "width", "shortcut_init", "lr", "seed",
              "optimizer", "loss_fn", "batch_size", "depth", "activation", "step")
"""Columns that identify a row: every grid axis, the seed and the eval step (results.csv)."""
METRIC_COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                  "grad_norm")
"""Metrics of every run; diagnostics (and test_gen_err with a teacher) follow them."""
CSV_ROWS = 100_000
"""A sweep of at most this many rows also gets results.csv (larger ones: `export_csv`)."""
KILL_ENV = "SHORTCUT_JAX_KILL_BEFORE_RENAME"
"""Fault injection for tests: SIGKILL this process between writing a file whose name matches
this glob to its temporary name and renaming it into place."""


class DamagedFileWarning(UserWarning):
    """A results file failed its checksum or could not be read; it was moved aside."""


class WriteFailed(OSError):
    """A file could not be written (a full disk, a read-only folder, a quota): errno, strerror
    and filename (the file) of the OSError; for a sweep, `saved` of `total` runs are kept in
    `folder` (RunFolder.writing fills these in; total is None where not yet known)."""

    folder: Path | None = None
    saved: int = 0
    total: int | None = None


class Interrupted(KeyboardInterrupt):
    """A sweep stopped by Ctrl-C at a safe point: `saved` of `total` runs are kept in `folder`
    (total None where not yet known); rerunning the same sweep resumes."""

    folder: Path | None = None
    saved: int = 0
    total: int | None = None

    def __str__(self) -> str:
        if self.folder is None:
            return "interrupted"
        of = "" if self.total is None else f" of {self.total}"
        return (f"interrupted: {self.saved}{of} runs are saved in {self.folder}; rerun the same "
                "sweep to resume")


_writes = [0]  # atomic_open blocks in progress (a Ctrl-C waits for them: interrupt_safely)
_pending = [False]  # a Ctrl-C came while a file was being written


def _on_sigint(signum, frame) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C stops the process at once
    if _writes[0]:
        _pending[0] = True  # raised when the file is in place (atomic_open)
    else:
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupt_safely():
    """Within the block (main thread), Ctrl-C raises KeyboardInterrupt at once unless a file is
    being written, else as soon as that file is in place; a second Ctrl-C then kills the process
    at once (SIGINT's default action; a temporary file it leaves is removed by the next sweep).
    For commands: a library user's interrupt handling is left alone."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):  # e.g. a background job
        yield
        return
    before = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
        _pending[0] = False


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w",
                before_rename: Callable[[Path], None] | None = None,
                after_rename: Callable[[], None] | None = None):
    """A file object on a temporary name beside path, renamed onto path when the block ends
    (after before_rename(temporary path), if given; then after_rename()). An OSError (a full
    disk, a read-only folder) is raised as WriteFailed naming path; the temporary file is
    removed. A Ctrl-C during the block (under interrupt_safely) is raised once path is in place.
    """
    path = Path(path)
    _writes[0] += 1
    try:
        with _naming(path):
            yield from _atomic(path, mode, before_rename)
        if after_rename is not None:
            after_rename()
    finally:
        _writes[0] -= 1
    if _pending[0] and not _writes[0]:
        _pending[0] = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def _naming(path: Path):
    """An OSError of the system (with an errno) in the block re-raised as
    WriteFailed(errno, strerror, path)."""
    try:
        yield
    except WriteFailed:
        raise
    except OSError as e:
        if e.errno is None:  # not the system's: e.g. filelock.Timeout
            raise
        raise WriteFailed(e.errno, e.strerror or str(e), str(path)) from e


def _atomic(path: Path, mode: str, before_rename: Callable[[Path], None] | None):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if before_rename is not None:
            before_rename(Path(tmp))
        if os.environ.get(KILL_ENV) and fnmatch(path.name, os.environ[KILL_ENV]):
            os.kill(os.getpid(), signal.SIGKILL)
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
    """atomic_write_bytes of the text, UTF-8 encoded."""
    atomic_write_bytes(path, text.encode())


def _is_writer() -> bool:
    import jax

    return jax.process_index() == 0


def provenance(matmul_precision: str) -> dict[str, Any]:
    """Versions, devices, precision and git commit, for config.json."""
    import importlib.metadata

    import jax
    import jaxlib
    import optax

    devices = jax.devices()
    return {
        "shortcut_jax": _own_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "chex": importlib.metadata.version("chex"),  # importing chex takes ~0.1 s
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


def _own_version() -> str | None:
    """The installed shortcut-jax's version (read from its metadata, not by importing the
    package, which imports this module); None when run from a checkout that is not installed."""
    import importlib.metadata

    try:
        return importlib.metadata.version("shortcut-jax")
    except importlib.metadata.PackageNotFoundError:
        return None


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
    """Exact text for floats (repr round-trips), plain text otherwise; None is empty."""
    if value is None:
        return ""
    if isinstance(value, np.floating):
        return str(value)  # shortest text that round-trips in the value's own dtype
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


class RunFolder:
    """A sweep's output folder. `timings` is set by sweep.run_sweep (seconds per phase)."""

    LOCK = ".lock"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.timings: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._manifest: dict[str, str] | None = None
        self._saved_now = 0  # runs of the chunks save_chunk put in place
        self._rebuild = False  # the manifest could not be read: chunks that read whole count

    @property
    def results_csv(self) -> Path:
        return self.path / "results.csv"

    @property
    def params_npz(self) -> Path:
        return self.path / "params.npz"

    @property
    def table_json(self) -> Path:
        return self.path / "table.json"

    # --- one writer ------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self):
        """Hold the folder's lock (an OS lock: the kernel releases it when the holder dies) for
        the block; another live holder is named in the error. Only the writing process locks.

        A Ctrl-C in the block leaves as Interrupted, a file that could not be written as
        WriteFailed, each with the runs saved (`counts` "trained" + "resumed" is the total)."""
        try:
            with self._locked():
                yield self
        except WriteFailed as e:
            e.folder, e.saved, e.total = self.path, *self._saved_of()
            raise
        except KeyboardInterrupt as e:
            stop = Interrupted()
            stop.folder, (stop.saved, stop.total) = self.path, self._saved_of()
            raise stop from e

    def _saved_of(self) -> tuple[int, int | None]:
        """(runs saved, runs of the sweep or None if not yet known)."""
        if "resumed" not in self.counts:
            return self._saved_now, None
        return (self.counts["resumed"] + self._saved_now,
                self.counts["resumed"] + self.counts["trained"])

    @contextlib.contextmanager
    def _locked(self):
        if not _is_writer():
            yield self
            return
        import filelock

        with _naming(self.path / self.LOCK):
            self.path.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.path / self.LOCK, timeout=0)
        holder = self.path / f"{self.LOCK}.holder"
        try:
            with _naming(self.path / self.LOCK):
                lock.acquire()
        except filelock.Timeout:
            try:
                who = json.loads(holder.read_text())
                who = (f"process {who['pid']} on {who['host']} (started {who['started']}: "
                       f"{who['command']})")
            except (OSError, ValueError, KeyError):
                who = "another process"
            raise RuntimeError(f"out: {self.path} is being written by {who}; wait for it to "
                               "finish or use another --out folder") from None
        try:
            atomic_write_text(holder, json.dumps({
                "pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)}))
            yield self
        finally:
            holder.unlink(missing_ok=True)
            lock.release()

    # --- config ------------------------------------------------------------------------------

    def prepare(self, config: dict[str, Any], prov: dict[str, Any]) -> None:
        """Create the folder, or check that it holds this same config (then it resumes).

        Process 0 alone decides (run_sweep broadcasts what it found): another process would
        look at the folder while process 0 writes it, and see its files half made."""
        if not _is_writer():
            return
        cfg_path = self.path / "config.json"
        config = json.loads(json.dumps(config))  # normalise tuples -> lists, keys -> str
        if cfg_path.exists():
            held = self.config().get("config") or {}
            if held != config:
                _refuse_changed_files(self.path, held.get("data"), config.get("data"))
                diff = "; ".join(f"{k} is {a!r} there, {b!r} here"
                                 for k, a, b in _differences(held, config)[:5])
                raise ValueError(f"out: {self.path} holds results of a different config: {diff}; "
                                 "use another --out folder or delete it")
            return
        # a temporary file a killed writer left (config.json's own) is no result
        if self.path.exists() and any(p for p in self.path.iterdir()
                                      if not p.name.startswith(self.LOCK)
                                      and not fnmatch(p.name, ".*.tmp")):
            raise ValueError(f"out: {self.path} exists and is not empty but has no config.json; "
                             "refusing to mix results")
        atomic_write_text(cfg_path, json.dumps({"config": config, "provenance": prov},
                                               indent=2) + "\n")

    def config(self) -> dict[str, Any]:
        """config.json's {"config": ..., "provenance": ...}; one that cannot be read is a
        ValueError naming it (a config cannot be guessed from the results)."""
        path = self.path / "config.json"
        held = _read_json(path, "it was cut short or edited, and a sweep's config cannot be "
                          "guessed from its results; restore config.json from a copy of the "
                          "folder, or rerun the command that made it with a new --out folder")
        if not isinstance(held, dict) or not isinstance(held.get("config"), dict):
            raise ValueError(f"folder: {path} does not hold a sweep's config (expected "
                             '{"config": {...}, "provenance": {...}}); restore it from a copy '
                             "of the folder, or rerun the command that made it with a new --out "
                             "folder")
        return held

    # --- checksums ---------------------------------------------------------------------------

    @property
    def manifest(self) -> dict[str, str]:
        """{file name relative to the folder: sha256}; a manifest that cannot be read is moved
        aside, and rebuilt: a chunk that reads back whole (every array's zip CRC-32) is kept and
        its checksum recorded anew, every other file counts as unverified."""
        if self._manifest is None:
            path = self.path / "manifest.json"
            try:
                self._manifest = self.read_manifest()
            except ValueError:
                self._manifest = {}
                self._rebuild = True
                self._set_aside(path, "cannot be read", "; its chunks are checked by reading "
                                "them whole and kept, and every other file is rebuilt")
        return self._manifest

    def read_manifest(self) -> dict[str, str]:
        """manifest.json ({} if there is none); one that cannot be read is a ValueError
        naming it."""
        path = self.path / "manifest.json"
        if not path.exists():
            return {}
        held = _read_json(path, "it was cut short or edited; rerun the command that wrote the "
                          "folder: it checks every chunk and rebuilds the manifest")
        if not isinstance(held, dict) or not all(isinstance(v, str) for v in held.values()):
            raise ValueError(f"folder: {path} is not a manifest (expected {{file: sha256}}); "
                             "rerun the command that wrote the folder: it checks every chunk "
                             "and rebuilds the manifest")
        return held

    def _record(self, name: str, digest: str | None) -> None:
        manifest = dict(self.manifest)
        if digest is None:
            manifest.pop(name, None)
        else:
            manifest[name] = digest
        atomic_write_text(self.path / "manifest.json", json.dumps(manifest, indent=0) + "\n")
        self._manifest = manifest

    def verified(self, path: Path) -> bool:
        """True if path exists and matches its recorded checksum; a file that does not (or has
        none recorded) is named in a DamagedFileWarning and moved to chunks/damaged/."""
        if not path.exists():
            return False
        name = path.relative_to(self.path).as_posix()
        want = self.manifest.get(name)
        if want is not None and sha256(path) == want:
            return True
        if want is None and self._rebuild and name.startswith("chunks/") and _whole(path):
            if _is_writer():
                self._record(name, sha256(path))
            return True
        if _is_writer():
            chunk = name.startswith("chunks/")
            self._set_aside(path, "fails its recorded checksum" if want is not None else
                            "does not read back whole" if self._rebuild and chunk else
                            "has no recorded checksum",
                            warn=not (self._rebuild and want is None and not chunk))
            self._record(name, None)
        return False

    def _set_aside(self, path: Path, why: str, then: str = "; it will be recomputed",
                   warn: bool = True) -> None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        dest = self.path / "chunks" / "damaged" / f"{path.name}.{stamp}"
        with _naming(dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        if warn:
            warnings.warn(f"{path} {why}: moved to {dest}{then}", DamagedFileWarning,
                          stacklevel=3)

    # --- chunks ------------------------------------------------------------------------------

    def chunk_path(self, group: str, chunk: int) -> Path:
        """chunks/GROUP-NNNN.npz of the folder."""
        return self.path / "chunks" / f"{group}-{chunk:04d}.npz"

    def rows_path(self, group: str, chunk: int) -> Path:
        """chunks/GROUP-NNNN.parquet of the folder: the chunk's rows."""
        return self.path / "chunks" / f"{group}-{chunk:04d}.parquet"

    def has_chunk(self, group: str, chunk: int) -> bool:
        """A finished chunk whose files' checksums verify (a damaged one is moved aside:
        False)."""
        rows = self.verified(self.rows_path(group, chunk))
        return self.verified(self.chunk_path(group, chunk)) and rows

    def save_chunk(self, group: str, chunk: int, columns: dict[str, Any], lrs: np.ndarray,
                   seeds: np.ndarray, eval_every: int, metrics: dict[str, np.ndarray],
                   params: dict[str, np.ndarray], first_run: int = 0) -> None:
        """One chunk's runs: metrics[name] (runs, evals) as Parquet rows (runs numbered from
        first_run), params[leaf] (runs, ...) as npz."""
        if not _is_writer():
            return
        import pyarrow.parquet as pq

        table = _chunk_table(columns, lrs, seeds, eval_every, metrics, first_run)
        # fractions (accuracies, *_frac) take few values: dictionaries; other metrics: their
        # bytes split by position, which zstd compresses (a third smaller than dictionaries)
        split = [k for k in metrics if "acc" not in k and not k.endswith("_frac")]
        self._write(self.rows_path(group, chunk), lambda f: pq.write_table(
            table, f, compression="zstd", use_byte_stream_split=split,
            use_dictionary=[c for c in table.column_names if c not in split]))
        arrays = {"lr": lrs, "seed": seeds, "eval_every": np.asarray(eval_every),
                  "columns": np.asarray(json.dumps(columns))}
        arrays.update({f"param/{k}": v for k, v in params.items()})

        def saved():
            self._saved_now += len(lrs)

        self._write(self.chunk_path(group, chunk), lambda f: np.savez(f, **arrays), saved)

    def _write(self, path: Path, write: Callable[[Any], None],
               after_rename: Callable[[], None] | None = None) -> None:
        """Write a binary file atomically, its checksum entering the manifest before the rename
        (so a file in place always has one)."""
        name = path.relative_to(self.path).as_posix()
        with atomic_open(path, "wb", before_rename=lambda tmp: self._record(name, sha256(tmp)),
                         after_rename=after_rename) as f:
            write(f)

    def load_chunk(self, group: str, chunk: int) -> dict[str, Any]:
        """A chunk's arrays by name, read into memory."""
        with np.load(self.chunk_path(group, chunk)) as z:
            return {k: z[k] for k in z.files}

    def clean_temporaries(self) -> None:
        """Remove temporary files a killed writer left (never a finished file)."""
        if not _is_writer():
            return
        for tmp in [*self.path.glob(".*.tmp"), *self.path.glob("chunks/.*.tmp")]:
            tmp.unlink(missing_ok=True)

    def assemble(self, chunks: Sequence[tuple[str, int]]) -> None:
        """Write table.json, params.npz and (at most CSV_ROWS rows) results.csv from the chunks,
        in the given order (a damaged earlier copy of any is moved aside first).

        Streams: one chunk's rows in memory at a time, one group's parameters at a time.
        """
        if not _is_writer():
            return
        import pyarrow.parquet as pq

        for path in (self.table_json, self.results_csv, self.params_npz):
            self.verified(path)
        metric_names, n_rows = list(METRIC_COLUMNS), 0
        categories: dict[str, set] = {c: set() for c in CATEGORICAL}
        for g, c in chunks:
            meta = pq.read_metadata(self.rows_path(g, c))
            n_rows += meta.num_rows
            metric_names += [k for k in meta.schema.names if k not in (*ID_COLUMNS, "run")
                             and k not in metric_names]
            names = pq.read_table(self.rows_path(g, c), columns=list(CATEGORICAL))
            for k in CATEGORICAL:
                categories[k].update(names.column(k).unique().drop_null().to_pylist())
        files = [self.rows_path(g, c).relative_to(self.path).as_posix() for g, c in chunks]
        table = {"format": "parquet", "files": files, "metrics": metric_names, "rows": n_rows,
                 "categories": {k: sorted(v) for k, v in categories.items()}}

        def write_params(f):
            """Each group's leaves concatenated over its chunks, streamed chunk by chunk (an
            .npy header, then each chunk's bytes): memory does not grow with the runs."""
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
                for group in dict.fromkeys(g for g, _ in chunks):
                    paths = [self.chunk_path(g, c) for g, c in chunks if g == group]
                    with np.load(paths[0]) as z:
                        keys = {k: (z[k].shape[1:], z[k].dtype) for k in z.files
                                if k.startswith("param/") or k in ("lr", "seed")}
                        with zf.open(f"{group}/columns.npy", "w", force_zip64=True) as entry:
                            np.lib.format.write_array(entry, z["columns"])
                    n = 0  # the group's runs: every leaf has one row per run
                    for path in paths:
                        with np.load(path) as z:
                            n += len(z["lr"])
                    for k, (shape, dtype) in keys.items():
                        header = {"descr": np.lib.format.dtype_to_descr(dtype),
                                  "fortran_order": False, "shape": (n, *shape)}
                        name = k.removeprefix("param/")
                        with zf.open(f"{group}/{name}.npy", "w", force_zip64=True) as entry:
                            np.lib.format.write_array_header_1_0(entry, header)
                            for path in paths:
                                with np.load(path) as z:
                                    entry.write(np.ascontiguousarray(z[k]).tobytes())

        if n_rows <= CSV_ROWS:
            self._write(self.results_csv, lambda f: _write_csv(f, self.path, table))
        self._write(self.params_npz, write_params)
        self._write(self.table_json, lambda f: f.write(json.dumps(table, indent=0).encode()))

    def export_csv(self, path: str | Path | None = None) -> Path:
        """The table as CSV text (one row per run and eval step, as results.csv), streamed chunk
        by chunk to path (default: the folder's results.csv, checksummed in the manifest)."""
        table = _table(self)
        if path is None or Path(path).resolve() == self.results_csv.resolve():
            self._write(self.results_csv, lambda f: _write_csv(f, self.path, table))
            return self.results_csv
        with atomic_open(path, "wb") as f:
            _write_csv(f, self.path, table)
        return Path(path)


def _read_json(path: Path, what: str) -> Any:
    """The JSON in path; one that cannot be read is a ValueError naming path, what is wrong and
    `what` (what to do)."""
    try:
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"folder: {path} cannot be read ({e}): {what}") from None


def _whole(path: Path) -> bool:
    """A chunk that reads back whole: a Parquet file that reads, or a zip whose every array
    passes its CRC-32 and loads."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pq.read_table(path)
            return True
        except (OSError, ValueError, pa.ArrowException):
            return False
    try:
        with open(path, "rb") as fh, np.load(fh) as z:  # np.load(path) leaves a bad zip open
            for k in z.files:
                z[k]
        return True
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return False


def _differences(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, value in a, value in b) wherever two JSON-like configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def _refuse_changed_files(path: Path, held: Any, now: Any) -> None:
    """A data file recorded in the held config whose SHA-256 changed: an error naming it."""
    now_by_path = {r.get("path"): r for r in now or [] if isinstance(r, dict) and "path" in r}
    for record in held or []:
        if isinstance(record, dict) and record.get("path") in now_by_path:
            new = now_by_path[record["path"]]
            if record.get("sha256") != new.get("sha256"):
                raise ValueError(f"data: {record['path']} changed since the sweep in {path} "
                                 f"began (sha256 {str(record.get('sha256'))[:12]}..., now "
                                 f"{str(new.get('sha256'))[:12]}...); restore the file or use "
                                 "another --out folder")


def _chunk_table(columns: dict[str, Any], lrs: np.ndarray, seeds: np.ndarray,
                 eval_every: int, metrics: dict[str, np.ndarray], first_run: int):
    """One chunk's rows as a pyarrow Table: ID_COLUMNS, run, then the metrics (float32 as
    trained); rows run-major, eval steps inside."""
    import pyarrow as pa

    n_runs, n_evals = np.shape(next(iter(metrics.values())))
    n = n_runs * n_evals
    cols: dict[str, Any] = {}
    for c in ID_COLUMNS:
        if c == "lr":
            cols[c] = pa.array(np.repeat(np.asarray(lrs, np.float64), n_evals))
        elif c == "seed":
            cols[c] = pa.array(np.repeat(np.asarray(seeds, np.int64), n_evals))
        elif c == "step":
            cols[c] = pa.array(np.tile(np.arange(n_evals, dtype=np.int64) * eval_every, n_runs))
        else:
            v = columns.get(c)
            kind = pa.string() if c in CATEGORICAL else (
                pa.float64() if c in FLOAT else pa.int64())
            cols[c] = pa.nulls(n, kind) if v is None else pa.repeat(
                pa.scalar(str(v) if c in CATEGORICAL else v, kind), n)
    cols["run"] = pa.array(np.repeat(np.arange(first_run, first_run + n_runs, dtype=np.int64),
                                     n_evals))
    for k, v in metrics.items():
        cols[k] = pa.array(np.asarray(v).reshape(-1))
    return pa.table(cols)


def _write_csv(f, folder: Path, table: dict[str, Any]) -> None:
    """table.json's Parquet files as CSV text (today's results.csv format) into binary f.

    Column by column: a float's text is numpy's shortest round-trip text in its own dtype (the
    text `_fmt` gives, for float32 and float64 alike), a null or missing column is empty."""
    import pyarrow.parquet as pq

    text = io.TextIOWrapper(f, newline="", encoding="utf-8")
    writer = csv.writer(text, lineterminator="\n")
    metric_names = table["metrics"]
    writer.writerow([*ID_COLUMNS, *metric_names])
    for name in table["files"]:
        t = pq.read_table(folder / name)
        n = t.num_rows
        if not n:
            continue
        cols = [t.column(c).to_numpy().astype(str) if c in ("lr", "seed", "step")
                else [_fmt(t.column(c)[0].as_py())] * n for c in ID_COLUMNS]
        cols += [t.column(m).to_numpy().astype(str) if m in t.column_names else [""] * n
                 for m in metric_names]
        writer.writerows(zip(*cols))
    text.flush()
    text.detach()


# --- reading: the typed table ------------------------------------------------------------------

CATEGORICAL = ("dataset", "variant", "shortcut_init", "optimizer", "loss_fn", "batch_size",
               "activation")
INTEGER = ("data_seed", "width", "seed", "step", "depth")
NULLABLE_INTEGER = ("n_train", "d", "teacher_width")
FLOAT = ("noise", "linear_weight", "teacher_shortcut", "lr")


def _finished(folder: str | Path, table_only: bool = False) -> RunFolder:
    """The RunFolder of a finished sweep, its table (table.json and its files, or an older
    folder's results.csv) and (unless table_only) params.npz verified, else a ValueError naming
    the folder and what is missing."""
    f = RunFolder(folder)
    if not (f.path / "config.json").is_file():
        raise ValueError(f"folder: {f.path} is not a sweep folder (no config.json); expected a "
                         "folder written by run_sweep, `shortcut-jax sweep` or `compare`")
    manifest = f.read_manifest()  # a damaged one is named, not moved aside: this only reads
    table = f.table_json if f.table_json.is_file() else f.results_csv
    for path in (table, f.params_npz)[:1 if table_only else 2]:
        if not path.is_file():
            raise ValueError(f"folder: {f.path} is an unfinished sweep (no {path.name}); rerun "
                             "the command that started it to finish it")
        _check(f, path, manifest)
    if table == f.table_json:
        for name in _table(f)["files"]:
            _check(f, f.path / name, manifest)
    return f


def _check(f: RunFolder, path: Path, manifest: dict[str, str]) -> None:
    """A ValueError naming path if it is missing or fails its recorded checksum."""
    want = manifest.get(path.relative_to(f.path).as_posix())
    try:
        info = path.stat()
    except OSError:
        info = None
    if info is None or (want is not None
                        and _digest(path, info.st_mtime_ns, info.st_size) != want):
        raise ValueError(f"folder: {path} fails its recorded checksum (damaged?); rerun "
                         "the command that wrote the folder to rebuild it from the chunks")


@contextlib.contextmanager
def _unreadable(path: Path):
    """A results file that cannot be parsed: a ValueError naming it and what to do."""
    try:
        yield
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"folder: {path} cannot be read ({e}); rerun the command that wrote "
                         "the folder to rebuild it from the chunks") from None


def _table(f: RunFolder) -> dict[str, Any]:
    """table.json of a finished folder (its Parquet files in run order, metric names)."""
    if not f.table_json.is_file():
        raise ValueError(f"folder: {f.path} has no Parquet table (table.json); it was written "
                         "before the kit stored results as Parquet, and its results.csv is the "
                         "table")
    return _read_json(f.table_json, "rerun the command that wrote the folder to rebuild it "
                                    "from the chunks")


@functools.cache  # a few bytes per file version; a table has many files
def _digest(path: Path, mtime_ns: int, size: int) -> str:
    """sha256 of a file version: a report reads params.npz once per run group, and each read
    checks the folder, so the hash is computed once per file version."""
    return sha256(path)


def load(folder: str | Path, columns: Sequence[str] | None = None, **selectors):
    """A finished sweep folder as a pandas DataFrame: one row per (run, eval step), typed.

    Names (dataset, variant, shortcut_init, optimizer, loss_fn, batch_size) are categoricals;
    data_seed, width, seed, step int64; run (int64) numbers the runs in file order; n_train, d,
    teacher_width nullable Int64 and noise,
    linear_weight, teacher_shortcut float64, NA where the axis does not apply to the data set
    (shortcut_init is NA for the plain network); lr and metrics float64. The folder's
    config.json: RunFolder(folder).config() (not in df.attrs: pandas deep-copies attrs on every
    operation).

    columns: only these columns (in table order); selectors: only the rows whose column
    equals the value or one of a list of values, e.g. step=100, variant="plain" -- both read
    from the Parquet files as asked (pyarrow filters), not from the whole table. A selector
    naming no such column, or a value the table does not hold, is a ValueError.
    """
    f = _finished(folder, table_only=True)
    if not f.table_json.is_file():
        return _load_csv(f, columns, selectors)
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = _table(f)
    names = [*ID_COLUMNS, "run", *table["metrics"]]
    wanted = _wanted_columns(names, columns, selectors)
    schema = pa.schema([(c, _arrow_types().get(c, pa.float32())) for c in names])
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(
        dictionary_columns=list(CATEGORICAL)))
    data = ds.dataset([str(f.path / name) for name in table["files"]], schema=schema,
                      format=fmt)
    where = None
    for c, v in selectors.items():
        values = _values(v)
        values = [str(x) for x in values] if c in CATEGORICAL else values
        kind = pa.string() if c in CATEGORICAL else schema.field(c).type
        try:
            cond = pc.field(c).isin(pa.array(values, kind))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            raise ValueError(f"{c}={v!r}: expected values of type {kind}") from None
        where = cond if where is None else where & cond
    read = [c for c in names if c in wanted or c in selectors]
    # one thread: on a busy 2-core machine pyarrow's threads made a whole read 2-3x slower;
    # the system allocator: pyarrow's default (mimalloc) kept the read's freed pages and read
    # slower (experiments/BENCHMARKS.md)
    scanner = data.scanner(columns=read, filter=where, use_threads=False, batch_readahead=1,
                           fragment_readahead=1, memory_pool=pa.system_memory_pool())
    frame = _Frame(wanted, scanner.count_rows(), table["categories"])
    held: dict[str, set] = {c: set() for c in selectors}
    for batch in scanner.to_batches():  # a file's rows at a time into the frame's arrays
        frame.fill(batch)
        for c in selectors:
            held[c].update(batch.column(c).unique().to_pylist())
    for c, v in selectors.items():  # a value absent from the rows read: is it in the table?
        if not all(any(_same(x, p) for p in held[c]) for x in _values(v)):
            _name_missing(lambda c: data.to_table(columns=[c]).column(c).unique().to_pylist(),
                          {c: v})
    return frame.frame()


def _size_order(b: str) -> tuple[bool, int]:
    """Sort key of batch_size names: sizes in increasing order, "full" last."""
    return (b == "full", int(b) if b != "full" else 0)


class _Frame:
    """load's DataFrame built in place: each column's array allocated once at its final size
    and filled batch by batch, so that reading holds one batch beside the frame, not the whole
    table in Arrow beside its pandas copy (experiments/BENCHMARKS.md).
    Names (categories: the whole table's values, sorted; batch sizes in size order; shortcut_init
    NA for plain runs) as categoricals, NULLABLE_INTEGER as Int64, metrics float64."""

    def __init__(self, columns: list[str], n: int, categories: dict[str, list[str]]):
        import pandas as pd

        self.n, self.at = n, 0
        self.categories = {}
        for c in CATEGORICAL:
            cats = sorted(categories[c], key=_size_order if c == "batch_size" else None)
            self.categories[c] = pd.Index(cats)
        self.values = {c: np.empty(n, np.int32 if c in CATEGORICAL else np.int64
                                   if c in (*INTEGER, *NULLABLE_INTEGER, "run") else np.float64)
                       for c in columns}
        self.masks = {c: np.empty(n, bool) for c in columns if c in NULLABLE_INTEGER}

    def fill(self, batch) -> None:
        rows = slice(self.at, self.at + batch.num_rows)
        for c, out in self.values.items():
            col = batch.column(c)
            if c in CATEGORICAL:  # the batch's dictionary codes mapped to the table's
                codes = self.categories[c].get_indexer(col.dictionary.to_pylist())
                out[rows] = np.append(codes, -1)[col.indices.fill_null(-1).to_numpy()]  # NA: -1
            elif c in NULLABLE_INTEGER:
                self.masks[c][rows] = col.is_null().to_numpy(zero_copy_only=False)
                out[rows] = col.fill_null(0).to_numpy()
            else:  # nulls (a plain run's shortcut metrics) are NaN
                out[rows] = col.to_numpy(zero_copy_only=False)
        self.at = rows.stop

    def frame(self):
        import pandas as pd

        if self.at != self.n:
            raise RuntimeError(f"the table changed while it was read: {self.at} rows, "
                               f"{self.n} counted")
        columns = {}
        for c, v in self.values.items():
            if c in CATEGORICAL:
                columns[c] = pd.Categorical.from_codes(v, categories=self.categories[c],
                                                       ordered=c == "batch_size")
            elif c in NULLABLE_INTEGER:
                columns[c] = pd.arrays.IntegerArray(v, self.masks[c])
            else:
                columns[c] = v
        return pd.DataFrame(columns, copy=False)


def columns_of(folder: str | Path) -> list[str]:
    """The columns `load(folder)` returns, in its order, from table.json (or an older folder's
    results.csv header): no row is read."""
    f = _finished(folder, table_only=True)
    if f.table_json.is_file():
        return [*ID_COLUMNS, "run", *_table(f)["metrics"]]
    import pandas as pd

    with _unreadable(f.results_csv):
        header = list(pd.read_csv(f.results_csv, nrows=0).columns)
    return [*ID_COLUMNS, "run", *(c for c in header if c not in ID_COLUMNS)]


def _values(v: Any) -> list:
    """A selector's value or values, as a list."""
    return list(v) if isinstance(v, (list, tuple, set)) else [v]


@functools.cache
def _arrow_types() -> dict[str, Any]:
    """The Arrow type of each id column (metrics: float32)."""
    import pyarrow as pa

    return {**{c: pa.dictionary(pa.int32(), pa.string()) for c in CATEGORICAL},
            **{c: pa.int64() for c in (*INTEGER, *NULLABLE_INTEGER, "run")},
            **{c: pa.float64() for c in FLOAT}}


def _wanted_columns(names: list[str], columns: Sequence[str] | None,
                    selectors: dict[str, Any]) -> list[str]:
    """The table's names that `columns` asks for, in table order; unknown names (in columns
    or selectors) are a ValueError listing the columns."""
    if isinstance(columns, str):
        columns = [columns]
    for c in [*(columns or ()), *selectors]:
        if c not in names:
            raise ValueError(f"{c}: no such column in this table; expected one of {names}")
    return names if columns is None else [c for c in names if c in columns]


def _name_missing(present_of: Callable[[str], list], selectors: dict[str, Any]) -> None:
    """A selector value the table does not hold: a ValueError listing the values it has."""
    for c, v in selectors.items():
        values = _values(v)
        present = [p for p in present_of(c) if p is not None and p == p]
        for x in values:
            if not any(_same(x, p) for p in present):
                raise ValueError(f"{c}={x!r}: no such value in this sweep; expected one of "
                                 f"{sorted(present, key=str)}")


def _load_csv(f: RunFolder, columns: Sequence[str] | None, selectors: dict[str, Any]):
    """load() of a folder written before the Parquet table: its results.csv."""
    import pandas as pd

    dtypes = {**dict.fromkeys(CATEGORICAL, "category"), **dict.fromkeys(INTEGER, "int64"),
              **dict.fromkeys(NULLABLE_INTEGER, "Int64"), **dict.fromkeys(FLOAT, "float64")}
    with _unreadable(f.results_csv):
        # every column typed (a metric empty for one variant, e.g. grad_norm_W, is no mixed column)
        header = list(pd.read_csv(f.results_csv, nrows=0).columns)
        metrics = [c for c in header if c not in ID_COLUMNS]
        # written before the network family: depth 1, relu (the problem's network)
        before = {c: v for c, v in (("depth", 1), ("activation", "relu")) if c not in header}
        df = pd.read_csv(f.results_csv, dtype={**dtypes, **dict.fromkeys(metrics, "float64")},
                         keep_default_na=False,
                         na_values={**{c: [""] for c in (*NULLABLE_INTEGER, *FLOAT,
                                                         "shortcut_init")},
                                    **{c: ["", "nan", "NaN", "-nan"] for c in metrics}})
        ids = [c for c in ID_COLUMNS if c not in before]
        if list(df.columns[:len(ids)]) != ids:
            raise ValueError(f"expected the columns {ids} first")
        for c, v in before.items():
            df.insert(ID_COLUMNS.index(c), c, v)
            df[c] = df[c].astype(dtypes[c])
    df["shortcut_init"] = df["shortcut_init"].cat.remove_categories(
        [c for c in df["shortcut_init"].cat.categories if c == ""])
    sizes = sorted(df["batch_size"].cat.categories, key=_size_order)
    df["batch_size"] = df["batch_size"].cat.reorder_categories(sizes, ordered=True)
    keys = pd.util.hash_pandas_object(df[list(ID_COLUMNS[:-1])], index=False)
    df.insert(len(ID_COLUMNS), "run", pd.factorize(keys)[0].astype("int64"))
    wanted = _wanted_columns(list(df.columns), columns, selectors)
    mask = np.ones(len(df), bool)
    for c, v in selectors.items():
        values = _values(v)
        mask &= df[c].astype(object).map(
            lambda p, vs=values: any(_same(x, p) for x in vs)).to_numpy(bool)
    if selectors:
        _name_missing(lambda c: df[c].unique().tolist(), selectors)
    return df.loc[mask, wanted].reset_index(drop=True)


def final_rows(df, **selectors):
    """The rows of load(folder) at each run's last eval step that match selectors
    (column=value or column=[values]); an unknown column or value is a ValueError listing the
    valid ones."""
    runs = [c for c in ID_COLUMNS if c != "step"]
    last = df[df["step"] == df["step"].groupby(df["run"]).transform("max")]  # as stats.final
    mask = np.ones(len(last), bool)
    for column, wanted in selectors.items():
        if column not in runs:
            raise ValueError(f"{column}: not a column to select runs by; expected one of {runs}")
        values = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
        present = last[column].dropna().unique().tolist()
        for v in values:
            if not any(_same(v, p) for p in present):
                raise ValueError(f"{column}={v!r}: no such value in this sweep; expected one of "
                                 f"{sorted(present, key=str)}")
        mask &= last[column].map(lambda p, vs=values: any(_same(v, p) for v in vs)).to_numpy(bool)
    return last[mask]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0.0))
    return str(a) == str(b)


def _key(values) -> tuple:
    """A run's identity from its RUN_KEYS values, alike whether they come from the typed
    table or from a chunk's columns (numbers as the float of their CSV text, NA as None)."""
    out = []
    for c in ID_COLUMNS[:-1]:
        v = values.get(c) if isinstance(values, dict) else values[c]
        if isinstance(v, str):
            out.append(v)
        elif v is None or type(v).__name__ == "NAType" or v != v:  # None, pandas NA, NaN
            out.append(None)
        else:
            out.append(float(_fmt(v)))
    return tuple(out)


def params_of(folder: str | Path, rows) -> Any:
    """Final Params of the runs in `rows` (rows of load(folder): final_rows, stats.best_lr...),
    stacked on a leading run axis in row order. The runs must share shapes and variant.
    Runs of the network family (depth > 1 or an activation other than relu) give a
    network.NetParams."""
    from shortcut_jax.model import Params
    from shortcut_jax.network import NetParams

    f = _finished(folder)
    if len(rows) == 0:
        raise ValueError("rows: expected at least one run, got none")
    for column in ("variant", "width", "d", "dataset", "depth", "activation"):
        if rows[column].nunique(dropna=False) > 1:
            raise ValueError(f"selectors: the runs have several {column} values "
                             f"{sorted(rows[column].unique().tolist(), key=str)}; select one, "
                             f"e.g. {column}={rows[column].iloc[0]!r}")
    with _unreadable(f.params_npz):
        groups = _params_groups(f.params_npz, f.params_npz.stat().st_mtime_ns)
    group_of, row_of = _params_rows(groups, rows)
    leaves = {}
    depth = int(rows["depth"].iloc[0])
    network = depth > 1 or rows["activation"].iloc[0] != "relu"
    names = ([f"W{k}" for k in range(1, depth + 1)] + [f"b{k}" for k in range(1, depth + 1)]
             + ["Wo", "bo", "W"]) if network else Params._fields
    with _unreadable(f.params_npz), np.load(f.params_npz) as z:
        for name in names:  # z[key] reads the whole array: once per group and leaf
            if f"{group_of[0]}/{name}" in z.files:
                for g in dict.fromkeys(group_of):
                    at = group_of == g
                    leaf = z[f"{g}/{name}"]
                    if name not in leaves:
                        leaves[name] = np.empty((len(rows), *leaf.shape[1:]), leaf.dtype)
                    leaves[name][at] = leaf[row_of[at]]
    if network:  # sweep._leaves' names
        return NetParams(Ws=tuple(leaves[f"W{k}"] for k in range(1, depth + 1)),
                         bs=tuple(leaves[f"b{k}"] for k in range(1, depth + 1)),
                         Wo=leaves["Wo"], bo=leaves["bo"], W=leaves.get("W"))
    return Params(**leaves)


@functools.lru_cache(maxsize=8)
def _params_groups(path: Path, mtime_ns: int) -> dict[tuple, list[tuple[str, Any]]]:
    """{a run key without lr and seed: [(group, its runs' (lr, seed) as a pandas MultiIndex)]}
    of a params.npz (cached per file version; lr as the float of its text, as _key)."""
    import pandas as pd

    out: dict[tuple, list[tuple[str, Any]]] = {}
    with np.load(path) as z:
        for group in dict.fromkeys(k.split("/")[0] for k in z.files):
            columns = json.loads(str(z[f"{group}/columns"]))
            lrs = np.asarray(z[f"{group}/lr"]).astype(str).astype(np.float64)
            out.setdefault(_key({**columns, "lr": None, "seed": None}), []).append(
                (group, pd.MultiIndex.from_arrays([lrs, np.asarray(z[f"{group}/seed"])])))
    return out


def _params_rows(groups: dict[tuple, list[tuple[str, Any]]], rows) -> tuple[np.ndarray, ...]:
    """(group, row in the group) in params.npz of each of `rows` (rows of load(folder)); a run
    params.npz does not hold is a ValueError naming it."""
    import pandas as pd

    keys = rows[list(ID_COLUMNS[:-1])]
    config = [c for c in keys.columns if c not in ("lr", "seed")]
    ids = pd.util.hash_pandas_object(keys[config], index=False).to_numpy()
    lrs, seeds = keys["lr"].to_numpy(np.float64), keys["seed"].to_numpy()
    group_of, row_of = np.empty(len(rows), object), np.full(len(rows), -1)
    for h in dict.fromkeys(ids):
        at = ids == h
        first = keys.iloc[int(np.argmax(at))]
        runs = pd.MultiIndex.from_arrays([lrs[at], seeds[at]])
        for group, index in groups.get(_key({**first, "lr": None, "seed": None}), []):
            found = index.get_indexer(runs)
            take = found >= 0
            picked = np.flatnonzero(at)[take]
            group_of[picked], row_of[picked] = group, found[take]
        missing = at & (row_of < 0)
        if missing.any():
            run = keys.iloc[int(np.argmax(missing))].to_dict()
            raise ValueError(f"rows: params.npz holds no run {run}; expected rows of "
                             "load(folder) of the same folder")
    return group_of, row_of


def load_params(folder: str | Path, **selectors):
    """Final parameters of the runs matching selectors (as `final_rows`), stacked on a leading
    run axis in the order of final_rows(load(folder), **selectors). The runs must share shapes
    and variant (select one width and variant where the sweep has several)."""
    rows = final_rows(load(folder), **selectors)
    if rows.empty:
        raise ValueError(f"selectors: no run matches {selectors}")
    return params_of(folder, rows)

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
writes a folder at a time (an OS file lock, released when its holder dies).
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
              "optimizer", "loss_fn", "batch_size", "step")
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


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w",
                before_rename: Callable[[Path], None] | None = None):
    """A file object on a temporary name beside path, renamed onto path when the block ends
    (after before_rename(temporary path), if given)."""
    path = Path(path)
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
        the block; another live holder is named in the error. Only the writing process locks."""
        if not _is_writer():
            yield self
            return
        import filelock

        self.path.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.path / self.LOCK, timeout=0)
        holder = self.path / f"{self.LOCK}.holder"
        try:
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
            held = json.loads(cfg_path.read_text()).get("config") or {}
            if held != config:
                _refuse_changed_files(self.path, held.get("data"), config.get("data"))
                diff = "; ".join(f"{k} is {a!r} there, {b!r} here"
                                 for k, a, b in _differences(held, config)[:5])
                raise ValueError(f"out: {self.path} holds results of a different config: {diff}; "
                                 "use another --out folder or delete it")
            return
        if self.path.exists() and any(p for p in self.path.iterdir()
                                      if not p.name.startswith(self.LOCK)):
            raise ValueError(f"out: {self.path} exists and is not empty but has no config.json; "
                             "refusing to mix results")
        atomic_write_text(cfg_path, json.dumps({"config": config, "provenance": prov},
                                               indent=2) + "\n")

    def config(self) -> dict[str, Any]:
        """config.json's {"config": ..., "provenance": ...}."""
        return json.loads((self.path / "config.json").read_text())

    # --- checksums ---------------------------------------------------------------------------

    @property
    def manifest(self) -> dict[str, str]:
        """{file name relative to the folder: sha256}; a manifest that cannot be read is moved
        aside (every file it vouched for then counts as unverified)."""
        if self._manifest is None:
            path = self.path / "manifest.json"
            self._manifest = {}
            if path.exists():
                try:
                    self._manifest = dict(json.loads(path.read_text()))
                except (ValueError, TypeError):
                    self._set_aside(path, "cannot be read")
        return self._manifest

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
        if _is_writer():
            self._set_aside(path, "has no recorded checksum" if want is None
                            else "fails its recorded checksum")
            self._record(name, None)
        return False

    def _set_aside(self, path: Path, why: str) -> None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        dest = self.path / "chunks" / "damaged" / f"{path.name}.{stamp}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        warnings.warn(f"{path} {why}: moved to {dest}; it will be recomputed",
                      DamagedFileWarning, stacklevel=3)

    # --- chunks ------------------------------------------------------------------------------

    def chunk_path(self, group: str, chunk: int) -> Path:
        return self.path / "chunks" / f"{group}-{chunk:04d}.npz"

    def rows_path(self, group: str, chunk: int) -> Path:
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
        self._write(self.chunk_path(group, chunk), lambda f: np.savez(f, **arrays))

    def _write(self, path: Path, write: Callable[[Any], None]) -> None:
        """Write a binary file atomically, its checksum entering the manifest before the rename
        (so a file in place always has one)."""
        name = path.relative_to(self.path).as_posix()
        with atomic_open(path, "wb", before_rename=lambda tmp: self._record(name, sha256(tmp))
                         ) as f:
            write(f)

    def load_chunk(self, group: str, chunk: int) -> dict[str, Any]:
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
                        keys = [k for k in z.files if k.startswith("param/")
                                or k in ("lr", "seed")]
                        with zf.open(f"{group}/columns.npy", "w", force_zip64=True) as entry:
                            np.lib.format.write_array(entry, z["columns"])
                    for k in keys:
                        shapes = []
                        for path in paths:
                            with np.load(path) as z:
                                shapes.append((z[k].shape, z[k].dtype))
                        (shape, dtype), n = shapes[0], sum(s[0][0] for s in shapes)
                        header = {"descr": np.lib.format.dtype_to_descr(dtype),
                                  "fortran_order": False, "shape": (n, *shape[1:])}
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
    """table.json's Parquet files as CSV text (today's results.csv format) into binary f."""
    import pyarrow.parquet as pq

    text = io.TextIOWrapper(f, newline="", encoding="utf-8")
    writer = csv.writer(text, lineterminator="\n")
    metric_names = table["metrics"]
    writer.writerow([*ID_COLUMNS, *metric_names])
    for name in table["files"]:
        t = pq.read_table(folder / name)
        n = t.num_rows
        ids = [t.column(c).to_pylist() if c in ("lr", "seed", "step")
               else [t.column(c)[0].as_py()] * n for c in ID_COLUMNS] if n else []
        values = [t.column(m).to_numpy() if m in t.column_names else None
                  for m in metric_names]
        for r in range(n):
            writer.writerow([_fmt(col[r]) for col in ids]
                            + ["" if v is None else _fmt(v[r]) for v in values])
    text.flush()
    text.detach()


# --- reading: the typed table ------------------------------------------------------------------

CATEGORICAL = ("dataset", "variant", "shortcut_init", "optimizer", "loss_fn", "batch_size")
INTEGER = ("data_seed", "width", "seed", "step")
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
    table = f.table_json if f.table_json.is_file() else f.results_csv
    for path in (table, f.params_npz)[:1 if table_only else 2]:
        if not path.is_file():
            raise ValueError(f"folder: {f.path} is an unfinished sweep (no {path.name}); rerun "
                             "the command that started it to finish it")
        _check(f, path)
    if table == f.table_json:
        for name in _table(f)["files"]:
            _check(f, f.path / name)
    return f


def _check(f: RunFolder, path: Path) -> None:
    """A ValueError naming path if it is missing or fails its recorded checksum."""
    want = f.manifest.get(path.relative_to(f.path).as_posix())
    try:
        info = path.stat()
    except OSError:
        info = None
    if info is None or (want is not None
                        and _digest(path, info.st_mtime_ns, info.st_size) != want):
        raise ValueError(f"folder: {path} fails its recorded checksum (damaged?); rerun "
                         "the command that wrote the folder to rebuild it from the chunks")


def _table(f: RunFolder) -> dict[str, Any]:
    """table.json of a finished folder (its Parquet files in run order, metric names)."""
    if not f.table_json.is_file():
        raise ValueError(f"folder: {f.path} has no Parquet table (table.json); it was written "
                         "before the kit stored results as Parquet, and its results.csv is the "
                         "table")
    return json.loads(f.table_json.read_text())


@functools.lru_cache(maxsize=32)
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
    schema = pa.schema([(c, _ARROW_TYPES.get(c, pa.float32())) for c in names])
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(
        dictionary_columns=list(CATEGORICAL)))
    data = ds.dataset([str(f.path / name) for name in table["files"]], schema=schema,
                      format=fmt)
    where = None
    for c, v in selectors.items():
        values = list(v) if isinstance(v, (list, tuple, set)) else [v]
        values = [str(x) for x in values] if c in CATEGORICAL else values
        kind = pa.string() if c in CATEGORICAL else schema.field(c).type
        try:
            cond = pc.field(c).isin(pa.array(values, kind))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            raise ValueError(f"{c}={v!r}: expected values of type {kind}") from None
        where = cond if where is None else where & cond
    read = [c for c in names if c in wanted or c in selectors]
    # one thread: on a busy 2-core machine pyarrow's threads made a whole read 2-3x slower
    got = data.to_table(columns=read, filter=where, use_threads=False)
    for c, v in selectors.items():  # a value absent from the rows read: is it in the table?
        values = list(v) if isinstance(v, (list, tuple, set)) else [v]
        held = got.column(c).unique().to_pylist()
        if not all(any(_same(x, p) for p in held) for x in values):
            _name_missing(lambda c: data.to_table(columns=[c]).column(c).unique().to_pylist(),
                          {c: v})
    got = got.select(wanted)
    got = got.cast(pa.schema([pa.field(c, pa.float64()) if got.schema.field(c).type ==
                              pa.float32() else got.schema.field(c) for c in wanted]))
    # split_blocks, self_destruct: the columns are handed over one by one, not consolidated
    return _typed(got.to_pandas(split_blocks=True, self_destruct=True), table["categories"])


_ARROW_TYPES: dict[str, Any] = {}


def _arrow_types() -> None:
    import pyarrow as pa

    _ARROW_TYPES.update({c: pa.dictionary(pa.int32(), pa.string()) for c in CATEGORICAL})
    _ARROW_TYPES.update({c: pa.int64() for c in (*INTEGER, *NULLABLE_INTEGER, "run")})
    _ARROW_TYPES.update({c: pa.float64() for c in FLOAT})


def _wanted_columns(names: list[str], columns: Sequence[str] | None,
                    selectors: dict[str, Any]) -> list[str]:
    """The table's names that `columns` asks for, in table order; unknown names (in columns
    or selectors) are a ValueError listing the columns."""
    if not _ARROW_TYPES:
        _arrow_types()
    if isinstance(columns, str):
        columns = [columns]
    for c in [*(columns or ()), *selectors]:
        if c not in names:
            raise ValueError(f"{c}: no such column in this table; expected one of {names}")
    return names if columns is None else [c for c in names if c in columns]


def _name_missing(present_of: Callable[[str], list], selectors: dict[str, Any]) -> None:
    """A selector value the table does not hold: a ValueError listing the values it has."""
    for c, v in selectors.items():
        values = list(v) if isinstance(v, (list, tuple, set)) else [v]
        present = [p for p in present_of(c) if p is not None and p == p]
        for x in values:
            if not any(_same(x, p) for p in present):
                raise ValueError(f"{c}={x!r}: no such value in this sweep; expected one of "
                                 f"{sorted(present, key=str)}")


def _typed(df, categories: dict[str, list[str]]):
    """The Parquet table's pandas frame in load's types (categories: the whole table's values,
    sorted; batch sizes in size order; shortcut_init NA for plain runs)."""
    import pandas as pd

    for c in df.columns:
        if c in CATEGORICAL:
            df[c] = df[c].astype("category")
            cats = sorted(categories[c])
            if c == "batch_size":
                cats = sorted(cats, key=lambda b: (b == "full", int(b) if b != "full" else 0))
            df[c] = df[c].cat.set_categories(cats, ordered=c == "batch_size")
        elif c in NULLABLE_INTEGER:
            df[c] = df[c].astype(pd.Int64Dtype())
        elif c not in (*INTEGER, *FLOAT, "run") and df[c].dtype != np.float64:
            df[c] = df[c].astype(np.float64)
    return df


def _load_csv(f: RunFolder, columns: Sequence[str] | None, selectors: dict[str, Any]):
    """load() of a folder written before the Parquet table: its results.csv."""
    import pandas as pd

    dtypes = {**dict.fromkeys(CATEGORICAL, "category"), **dict.fromkeys(INTEGER, "int64"),
              **dict.fromkeys(NULLABLE_INTEGER, "Int64"), **dict.fromkeys(FLOAT, "float64")}
    df = pd.read_csv(f.results_csv, dtype=dtypes, keep_default_na=False,
                     na_values={c: [""] for c in (*NULLABLE_INTEGER, *FLOAT, "shortcut_init")})
    metrics = [c for c in df.columns if c not in ID_COLUMNS]
    df[metrics] = df[metrics].apply(pd.to_numeric, errors="coerce").astype("float64")
    df["shortcut_init"] = df["shortcut_init"].cat.remove_categories(
        [c for c in df["shortcut_init"].cat.categories if c == ""])
    sizes = sorted(df["batch_size"].cat.categories, key=lambda b: (b == "full", int(b)
                                                                   if b != "full" else 0))
    df["batch_size"] = df["batch_size"].cat.reorder_categories(sizes, ordered=True)
    keys = pd.util.hash_pandas_object(df[list(ID_COLUMNS[:-1])], index=False)
    df.insert(len(ID_COLUMNS), "run", pd.factorize(keys)[0].astype("int64"))
    wanted = _wanted_columns(list(df.columns), columns, selectors)
    mask = np.ones(len(df), bool)
    for c, v in selectors.items():
        values = list(v) if isinstance(v, (list, tuple, set)) else [v]
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
        elif v is None or v != v or type(v).__name__ == "NAType":  # None, NaN, pandas NA
            out.append(None)
        else:
            out.append(float(_fmt(v)))
    return tuple(out)


def params_of(folder: str | Path, rows) -> Any:
    """Final Params of the runs in `rows` (rows of load(folder): final_rows, stats.best_lr...),
    stacked on a leading run axis in row order. The runs must share shapes and variant."""
    from shortcut_jax.model import Params

    f = _finished(folder)
    if len(rows) == 0:
        raise ValueError("rows: expected at least one run, got none")
    for column in ("variant", "width", "d", "dataset"):
        if rows[column].nunique(dropna=False) > 1:
            raise ValueError(f"selectors: the runs have several {column} values "
                             f"{sorted(rows[column].unique().tolist(), key=str)}; select one, "
                             f"e.g. {column}={rows[column].iloc[0]!r}")
    where = _params_index(f.params_npz, f.params_npz.stat().st_mtime_ns)
    picked = [where[_key(r)] for r in rows[list(ID_COLUMNS[:-1])].to_dict("records")]
    leaves = {}
    with np.load(f.params_npz) as z:  # z[key] reads the whole array: once per group and leaf
        for name in Params._fields:
            if f"{picked[0][0]}/{name}" in z.files:
                arrays = {g: z[f"{g}/{name}"] for g in dict.fromkeys(g for g, _ in picked)}
                leaves[name] = np.stack([arrays[g][i] for g, i in picked])
    return Params(**leaves)


@functools.lru_cache(maxsize=8)
def _params_index(path: Path, mtime_ns: int) -> dict[tuple, tuple[str, int]]:
    """{run key: (group, row)} of a params.npz (cached per file version)."""
    where = {}
    with np.load(path) as z:
        for group in dict.fromkeys(k.split("/")[0] for k in z.files):
            columns = json.loads(str(z[f"{group}/columns"]))
            for i, (lr, seed) in enumerate(zip(z[f"{group}/lr"], z[f"{group}/seed"])):
                where[_key({**columns, "lr": lr, "seed": seed})] = (group, i)
    return where


def load_params(folder: str | Path, **selectors):
    """Final parameters of the runs matching selectors (as `final_rows`), stacked on a leading
    run axis in the order of final_rows(load(folder), **selectors). The runs must share shapes
    and variant (select one width and variant where the sweep has several)."""
    rows = final_rows(load(folder), **selectors)
    if rows.empty:
        raise ValueError(f"selectors: no run matches {selectors}")
    return params_of(folder, rows)

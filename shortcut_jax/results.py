"""The one module that writes files: run folders with config, checksummed chunks, resume,
a tidy CSV, and the typed table a researcher reads (`load`, `load_params`).

    out/config.json          {"config": ..., "provenance": ...}; a different config is refused
    out/manifest.json        SHA-256 of every chunk, results.csv and params.npz
    out/chunks/<group>-<c>.npz  metrics (runs, evals) and final params of one chunk
    out/chunks/damaged/      chunks (and rebuilt files) that failed their checksum, kept aside
    out/results.csv          one row per (run, eval step), assembled from the chunks
    out/params.npz           final parameters, "<group>/<leaf>" -> (runs, ...), with lr and seed

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
from collections.abc import Callable, Iterable, Sequence
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

    import shortcut_jax

    devices = jax.devices()
    return {
        "shortcut_jax": shortcut_jax.__version__,
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

    def has_chunk(self, group: str, chunk: int) -> bool:
        """A finished chunk whose checksum verifies (a damaged one is moved aside: False)."""
        return self.verified(self.chunk_path(group, chunk))

    def save_chunk(self, group: str, chunk: int, columns: dict[str, Any], lrs: np.ndarray,
                   seeds: np.ndarray, eval_every: int, metrics: dict[str, np.ndarray],
                   params: dict[str, np.ndarray]) -> None:
        """One chunk's runs: metrics[name] (runs, evals), params[leaf] (runs, ...)."""
        if not _is_writer():
            return
        arrays = {"lr": lrs, "seed": seeds, "eval_every": np.asarray(eval_every),
                  "columns": np.asarray(json.dumps(columns))}
        arrays.update({f"metric/{k}": v for k, v in metrics.items()})
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
        """Write results.csv and params.npz from the chunks, in the given order (a damaged
        earlier copy of either is moved aside first).

        Streams: one chunk's rows in memory at a time, one group's parameters at a time.
        """
        if not _is_writer():
            return
        for path in (self.results_csv, self.params_npz):
            self.verified(path)
        metric_names = list(METRIC_COLUMNS)
        for g, c in chunks:
            with np.load(self.chunk_path(g, c)) as z:
                metric_names += [k.removeprefix("metric/") for k in z.files
                                 if k.startswith("metric/")
                                 and k.removeprefix("metric/") not in metric_names]

        def write_csv(f):
            text = io.TextIOWrapper(f, newline="", encoding="utf-8")
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow([*ID_COLUMNS, *metric_names])
            for g, c in chunks:
                writer.writerows(_chunk_rows(self.load_chunk(g, c), metric_names))
            text.flush()
            text.detach()

        def write_params(f):
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
                for group in dict.fromkeys(g for g, _ in chunks):
                    parts: dict[str, list[np.ndarray]] = {}
                    for g, c in chunks:
                        if g == group:
                            for k, v in self.load_chunk(g, c).items():
                                if k.startswith("param/") or k in ("lr", "seed"):
                                    parts.setdefault(k.removeprefix("param/"), []).append(v)
                                elif k == "columns":
                                    parts["columns"] = [v]
                    for k, v in parts.items():
                        with zf.open(f"{group}/{k}.npy", "w", force_zip64=True) as entry:
                            np.lib.format.write_array(entry, v[0] if k == "columns"
                                                      else np.concatenate(v))

        self._write(self.results_csv, write_csv)
        self._write(self.params_npz, write_params)


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


def _chunk_rows(z: dict[str, Any], metric_names: Iterable[str]) -> Iterable[list[str]]:
    columns = json.loads(str(z["columns"]))
    eval_every = int(z["eval_every"])
    metric_names = list(metric_names)
    n_evals = z["metric/train_loss"].shape[1]
    for r in range(len(z["lr"])):
        for e in range(n_evals):
            ids = {"depth": 1, "activation": "relu",  # chunks from before these axes
                   **columns, "lr": z["lr"][r], "seed": z["seed"][r], "step": e * eval_every}
            values = [z[f"metric/{m}"][r, e] if f"metric/{m}" in z else "" for m in metric_names]
            yield [_fmt(ids.get(c)) for c in ID_COLUMNS] + [_fmt(v) for v in values]


# --- reading: the typed table ------------------------------------------------------------------

CATEGORICAL = ("dataset", "variant", "shortcut_init", "optimizer", "loss_fn", "batch_size",
               "activation")
INTEGER = ("data_seed", "width", "seed", "step", "depth")
NULLABLE_INTEGER = ("n_train", "d", "teacher_width")
FLOAT = ("noise", "linear_weight", "teacher_shortcut", "lr")


def _finished(folder: str | Path) -> RunFolder:
    """The RunFolder of a finished sweep, its results.csv verified, else a ValueError naming
    the folder and what is missing."""
    f = RunFolder(folder)
    if not (f.path / "config.json").is_file():
        raise ValueError(f"folder: {f.path} is not a sweep folder (no config.json); expected a "
                         "folder written by run_sweep, `shortcut-jax sweep` or `compare`")
    for path in (f.results_csv, f.params_npz):
        if not path.is_file():
            raise ValueError(f"folder: {f.path} is an unfinished sweep (no {path.name}); rerun "
                             "the command that started it to finish it")
        want = f.manifest.get(path.name)
        info = path.stat()
        if want is not None and _digest(path, info.st_mtime_ns, info.st_size) != want:
            raise ValueError(f"folder: {path} fails its recorded checksum (damaged?); rerun "
                             "the command that wrote the folder to rebuild it from the chunks")
    return f


@functools.lru_cache(maxsize=32)
def _digest(path: Path, mtime_ns: int, size: int) -> str:
    """sha256 of a file version: a report reads params.npz once per run group, and each read
    checks the folder, so the hash is computed once per file version."""
    return sha256(path)


def load(folder: str | Path):
    """A finished sweep folder as a pandas DataFrame: one row per (run, eval step), typed.

    Names (dataset, variant, shortcut_init, optimizer, loss_fn, batch_size) are categoricals;
    data_seed, width, seed, step int64; run (int64) numbers the runs in file order; n_train, d,
    teacher_width nullable Int64 and noise,
    linear_weight, teacher_shortcut float64, NA where the axis does not apply to the data set
    (shortcut_init is NA for the plain network); lr and metrics float64. The folder's
    config.json: RunFolder(folder).config() (not in df.attrs: pandas deep-copies attrs on every
    operation).
    """
    import pandas as pd

    f = _finished(folder)
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
    return df


def final_rows(df, **selectors):
    """The rows of load(folder) at each run's last eval step that match selectors
    (column=value or column=[values]); an unknown column or value is a ValueError listing the
    valid ones."""
    from shortcut_jax import stats

    runs = [c for c in ID_COLUMNS if c != "step"]
    last = stats.final(df)
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
    where = _params_index(f.params_npz, f.params_npz.stat().st_mtime_ns)
    picked = [where[_key(r)] for r in rows[list(ID_COLUMNS[:-1])].to_dict("records")]
    leaves = {}
    depth = int(rows["depth"].iloc[0])
    network = depth > 1 or rows["activation"].iloc[0] != "relu"
    names = ([f"W{k}" for k in range(1, depth + 1)] + [f"b{k}" for k in range(1, depth + 1)]
             + ["Wo", "bo", "W"]) if network else Params._fields
    with np.load(f.params_npz) as z:  # z[key] reads the whole array: once per group and leaf
        for name in names:
            if f"{picked[0][0]}/{name}" in z.files:
                arrays = {g: z[f"{g}/{name}"] for g in dict.fromkeys(g for g, _ in picked)}
                leaves[name] = np.stack([arrays[g][i] for g, i in picked])
    if network:  # sweep._leaves' names
        return NetParams(Ws=tuple(leaves[f"W{k}"] for k in range(1, depth + 1)),
                         bs=tuple(leaves[f"b{k}"] for k in range(1, depth + 1)),
                         Wo=leaves["Wo"], bo=leaves["bo"], W=leaves.get("W"))
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

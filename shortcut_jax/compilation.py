"""JAX's persistent compilation cache for the kit's commands, and a tally of compilations.

The commands (shortcut_jax.cli) call `enable_cache()` before any JAX computation, so a program
compiled once is read from disk by every later process that needs it. The cache folder is the
user's own (owner-only permissions): JAX's documentation warns that whoever can write the cache
can run code in the processes that read it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import jax

DISABLE_ENV = "SHORTCUT_JAX_NO_COMPILE_CACHE"
"""Set to 1 (or true/yes) to turn the cache off, like the commands' --no-compile-cache."""


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/shortcut-jax/xla, else ~/.cache/shortcut-jax/xla."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "shortcut-jax" / "xla"


def cache_disabled() -> bool:
    """Whether DISABLE_ENV (set to 1, true, yes or on) turns the compilation cache off."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def enable_cache(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache for every program (no minimum compile time).

    The folder: `path`, else the user's own JAX_COMPILATION_CACHE_DIR (or jax_compilation_cache_dir
    already set), else default_cache_dir(), created with owner-only permissions. Returns it, or
    None when SHORTCUT_JAX_NO_COMPILE_CACHE is set. A folder that others can write is refused.
    """
    if cache_disabled():
        return None
    own = jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if path is None and own:
        folder = Path(own)
    else:
        folder = Path(path) if path is not None else default_cache_dir()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            folder.chmod(0o700)
            info = folder.stat()
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(f"compile cache: {folder} must belong to you and be writable "
                                  f"by you alone (mode {stat.filemode(info.st_mode)}); fix it or "
                                  f"pass --no-compile-cache")
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


class Tally:
    """Programs compiled (or read from the persistent cache) and seconds spent on them."""

    def __init__(self):
        self.programs = 0
        self.seconds = 0.0


_ACTIVE: list[Tally] = []
_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
           "/jax/core/compile/jaxpr_to_mlir_module_duration",
           "/jax/core/compile/backend_compile_duration")
_listening = False


def _listen(event: str, duration: float, **_) -> None:
    if event in _EVENTS:
        for t in _ACTIVE:
            t.seconds += duration
            t.programs += event == _EVENTS[-1]


@contextlib.contextmanager
def tally():
    """with tally() as t: ... -- t.programs compiled in the block (one backend compile or cache
    read each), t.seconds spent tracing, lowering and compiling them (JAX's monitoring events)."""
    global _listening
    if not _listening:
        jax.monitoring.register_event_duration_secs_listener(_listen)
        _listening = True
    t = Tally()
    _ACTIVE.append(t)
    try:
        yield t
    finally:
        _ACTIVE.remove(t)

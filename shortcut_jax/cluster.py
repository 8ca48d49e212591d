"""Several processes, one sweep: jax.distributed from explicit settings or from the cluster's
environment (SLURM, Open MPI, Kubernetes, ...: `jax.distributed.initialize()` finds them), and
a watchdog that stops a process whose peer stopped responding, naming the peer.

Every process's watchdog writes a heartbeat (a counter) to JAX's coordination key-value store
every `interval` seconds and reads the others'. A peer whose counter has not moved for
`timeout` seconds -- or, seen from another process, the coordinator (process 0, which holds the
store) no longer answering -- is lost: the watchdog prints which one and how to resume, and
ends the process with exit code EXIT_LOST. JAX's own heartbeat (which aborts with a C++ stack
trace) is set to fire well after it. A process that finished its part says so, and is not
missed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

EXIT_LOST = 3
"""Exit code of a process whose peer stopped responding."""
PREFIX = "shortcut_jax/heartbeat/"

_watchdog: Watchdog | None = None


def initialize(auto: bool, coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout: float = 60.0, hint: str = "") -> bool:
    """jax.distributed for several processes: from the environment (auto) or the given
    coordinator; starts the watchdog (timeout seconds; hint: how to resume, for its message).
    Returns False (and does nothing) when neither is asked for."""
    import jax

    if not auto and coordinator is None:
        return False
    if not timeout > 0:
        raise ValueError(f"timeout (--heartbeat-timeout): expected seconds > 0, got "
                         f"{timeout!r}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax_timeout = int(max(2 * timeout + 10, 30))  # JAX's own verdict comes well after ours
    if auto:
        try:
            jax.distributed.initialize(heartbeat_timeout_seconds=jax_timeout)
        except ValueError as e:
            raise ValueError(f"--distributed auto: JAX found no cluster environment (SLURM, "
                             f"Open MPI, Kubernetes, ...) to take the coordinator, process "
                             f"count and process id from ({e}); start the command under srun / "
                             f"mpirun, or give --coordinator, --num-processes and "
                             f"--process-id") from None
    else:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   heartbeat_timeout_seconds=jax_timeout)
    if jax.process_count() > 1:
        _forward_stderr(jax.process_index(), jax.process_count(), hint)
        start_watchdog(timeout, hint)
    return True


_FORWARD = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
me, n, hint = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
tail = b""
while True:
    b = os.read(0, 1 << 16)
    if not b:
        break
    os.write(2, b)
    tail = (tail + b)[-16384:]
marker = b"JAX distributed service detected fatal errors"
if marker in tail:
    text = tail.decode(errors="replace")
    if me != 0 and ("leader task" in text or "to coordination service" in text):
        who = "process 0"
    else:
        tasks = [int(t) for t in re.findall(r"task[:_ ]?(\d+)", text) if int(t) != me]
        who = f"process {tasks[-1]}" if tasks else "another process"
    os.write(2, (f"\nerror: {who} stopped responding (JAX's distributed service reported "
                 f"it lost); process {me} of {n} stops too. Finished chunks are kept: {hint}"
                 "\n").encode())
"""


def _forward_stderr(me: int, n: int, hint: str) -> None:
    """Route this process's stderr (fd 2) through a small child process that passes it on and,
    once this process is gone, adds which process was lost when JAX's distributed service
    ended it (that abort, from C++, leaves Python no chance to say it)."""
    import subprocess

    r, w = os.pipe()
    err = os.dup(2)
    subprocess.Popen([sys.executable, "-I", "-S", "-c", _FORWARD, str(me), str(n),
                      hint or "rerun the same command to resume from them"],
                     stdin=r, stdout=subprocess.DEVNULL, stderr=err, close_fds=True)
    os.close(r)
    os.close(err)
    sys.stderr.flush()
    os.dup2(w, 2)
    os.close(w)


def _report_lost(lost: int, me: int, n: int, timeout: float, hint: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(
        f"\nerror: process {lost} stopped responding (no heartbeat for {timeout:g} s, "
        f"--heartbeat-timeout); process {me} of {n} stops too. "
        f"Finished chunks are kept: {hint or 'rerun the same command to resume from them'}\n")
    sys.stderr.flush()
    os._exit(EXIT_LOST)


def start_watchdog(timeout: float, hint: str = "") -> Watchdog:
    global _watchdog
    _watchdog = Watchdog(timeout, hint)
    return _watchdog


def finished() -> None:
    """This process has done its part of the sweep: its peers stop expecting heartbeats."""
    if _watchdog is not None:
        _watchdog.finish()


@contextlib.contextmanager
def guard():
    """Around the sweep: an error while a peer is being lost (a collective whose peer died)
    waits for the watchdog's verdict, so the last message names the lost process."""
    try:
        yield
    except Exception:
        if _watchdog is not None:
            _watchdog.wait()
        raise


class Watchdog:
    """Heartbeats through JAX's coordination service; see the module's docstring."""

    def __init__(self, timeout: float, hint: str = "", interval: float | None = None):
        import jax
        from jax._src import distributed

        self.client = distributed.global_state.client
        self.me, self.n = jax.process_index(), jax.process_count()
        self.timeout, self.hint = float(timeout), hint
        self.interval = interval or min(1.0, self.timeout / 5)
        now = time.monotonic()
        self.peers = [j for j in range(self.n) if j != self.me]
        self.last = dict.fromkeys(self.peers, now)  # when each peer's counter last moved
        self.contact = now  # when the coordination service last answered
        self.done: set[int] = set()
        self._stop = threading.Event()
        for target in (self._beat, self._judge):
            threading.Thread(target=target, daemon=True, name=f"watchdog-{target.__name__}"
                             ).start()

    def _beat(self) -> None:
        seen: dict[int, str] = {}
        count = 0
        while not self._stop.is_set():
            count += 1
            try:
                self.client.key_value_set(f"{PREFIX}{self.me}", str(count),
                                          allow_overwrite=True)
                self.contact = time.monotonic()
            except Exception:  # the coordinator is gone, or busy: the judge decides
                pass
            for j in self.peers:
                try:
                    value = self.client.key_value_try_get(f"{PREFIX}{j}")
                except Exception:
                    continue
                if value == "done":
                    self.done.add(j)
                if value != seen.get(j):
                    seen[j], self.last[j] = value, time.monotonic()
            self._stop.wait(self.interval)

    def _judge(self) -> None:
        while not self._stop.wait(self.interval / 2):
            lost = self.lost()
            if lost is not None:
                self._exit(lost)

    def lost(self) -> int | None:
        """The first process judged lost now, or None."""
        now = time.monotonic()
        for j in self.peers:
            if j not in self.done and now - self.last[j] > self.timeout:
                return j
        if self.me != 0 and 0 not in self.done and now - self.contact > self.timeout:
            return 0
        return None

    def _exit(self, lost: int) -> None:
        _report_lost(lost, self.me, self.n, self.timeout, self.hint)

    def wait(self) -> None:
        """Up to timeout + a few intervals for a verdict (which ends the process)."""
        deadline = time.monotonic() + self.timeout + 3 * self.interval
        while time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(self.interval / 2)

    def finish(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self.client.key_value_set(f"{PREFIX}{self.me}", "done", allow_overwrite=True)

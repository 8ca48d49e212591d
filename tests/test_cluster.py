"""The cluster path: `--distributed auto` under the environment SLURM gives each task, and a
process whose peer was SIGKILLed stops within --heartbeat-timeout, naming the lost process;
a rerun on one process resumes from the finished chunks."""

import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

import shortcut_jax as sj
from tests.test_sweep import CLI, DEVICE_RTOL, SMALL, SWEEP, assert_same_results

CLUSTER_VARS = ("SLURM_", "OMPI_", "PMI_", "KUBERNETES_", "JOBSET_", "TPU_")


def _slurm_job_id() -> int:
    """A job id whose coordinator port (JAX: 61440 + id % 4096) is free now."""
    for _ in range(200):
        port = random.randint(61440, 65535)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return 4096 * 7 + port - 61440
    raise RuntimeError("no free port in JAX's SLURM range")


def slurm_env(job: int, task: int, ntasks: int = 2, devices: int = 2) -> dict[str, str]:
    """What srun gives task `task` of `ntasks` on one node (the variables JAX's SlurmCluster
    reads), with no other cluster's variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLUSTER_VARS)}
    env.update(JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               SLURM_JOB_ID=str(job), SLURM_NTASKS=str(ntasks), SLURM_PROCID=str(task),
               SLURM_LOCALID=str(task), SLURM_STEP_NODELIST="localhost",
               SLURM_STEP_NUM_NODES="1", SLURM_NODEID="0")
    return env


def start(out, *extra, task, job, ntasks=2):
    return subprocess.Popen([sys.executable, SWEEP, *CLI, "--out", str(out), "--distributed",
                             "auto", *extra], env=slurm_env(job, task, ntasks),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    sj.run_sweep(sj.Grid(**SMALL), str(out), progress=False)
    return out


def test_distributed_auto_under_slurm_gives_the_one_process_results(reference, tmp_path):
    job = _slurm_job_id()
    procs = [start(tmp_path / "slurm", task=i, job=job) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    config = (tmp_path / "slurm" / "config.json").read_text()
    assert '"process_count": 2' in config and '"device_count": 4' in config
    assert_same_results(reference, tmp_path / "slurm", rtol=DEVICE_RTOL)


def test_distributed_auto_without_a_cluster_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLUSTER_VARS)}
    proc = subprocess.run([sys.executable, SWEEP, *CLI, "--out", str(tmp_path / "x"),
                           "--distributed", "auto"], env={**env, "JAX_PLATFORMS": "cpu"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--distributed auto: JAX found no cluster environment" in proc.stderr


LONG = ["--seeds", "16", "--lrs", "0.5", "--chunk-size", "4", "--steps", "3000",
        "--eval-every", "1000", "--n-train", "1024", "--widths", "32", "--variants",
        "shortcut", "--block-size", "1"]
TIMEOUT = 5


@pytest.mark.parametrize("killed", [1, 0])
def test_a_killed_process_is_named_by_its_peer_within_the_timeout_and_the_sweep_resumes(
        tmp_path, killed):
    """SIGKILL one process of a two-process sweep once the first chunk is on disk: the other
    exits non-zero within --heartbeat-timeout (plus the time to notice), its last message
    naming the lost process and how to resume; a rerun on one process finishes the sweep,
    equal to an uninterrupted one-process sweep."""
    out, job = tmp_path / "killed", _slurm_job_id()
    extra = [*LONG, "--heartbeat-timeout", str(TIMEOUT)]
    procs = [start(out, *extra, task=i, job=job) for i in range(2)]
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list((out / "chunks").glob("*.parquet")):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        procs[killed].send_signal(signal.SIGKILL)
        t0 = time.time()
        _, err = procs[1 - killed].communicate(timeout=TIMEOUT + 60)
        waited = time.time() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    # the watchdog's exit code 3; a lost coordinator: JAX's own abort, at once
    assert procs[1 - killed].returncode == (3 if killed else -signal.SIGABRT), err
    last = err.strip().splitlines()[-1]
    assert f"error: process {killed} stopped responding" in last, err
    assert f"rerun the same command with --out {out}" in last
    assert waited < TIMEOUT + 30, waited
    if killed == 0:
        return
    done = sorted((out / "chunks").glob("*.parquet"))
    assert 1 <= len(done) < 4, "the kill came too late to test resuming"
    first = {p: p.stat().st_mtime_ns for p in done}
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLUSTER_VARS)}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    for folder in (out, tmp_path / "whole"):
        subprocess.run([sys.executable, SWEEP, *CLI, *LONG, "--out", str(folder)], env=env,
                       check=True, capture_output=True, text=True, timeout=300)
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())  # kept, not redone
    assert_same_results(tmp_path / "whole", out, rtol=DEVICE_RTOL)

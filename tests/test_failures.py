"""When things go wrong, through the command in a subprocess: Ctrl-C, a full disk, a damaged
config or manifest, a training that diverged. Each prints one line naming what is saved where
and how to go on, and the rerun ends bitwise as the uninterrupted sweep."""

import csv
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.folders import same_folders

SWEEP = ["sweep", "--dataset", "xor", "--widths", "3", "--lrs", "0.5", "--seeds", "4", "--steps",
         "10", "--eval-every", "5", "--n-train", "40", "--n-test", "30", "--block-size", "2",
         "--chunk-size", "2", "--no-progress", "--cpu-devices", "1"]  # 2 groups x 2 chunks x 2
PLAIN_1 = "xor-s0-n40-d2-noise0.05-plain-h3-sgd-mse-bfull-0001.npz"  # the second chunk written

# The command, with faults a test asks for through the environment:
#   FAULT_FULL=GLOB       fsync of a file whose name matches GLOB fails with ENOSPC (a full disk)
#   FAULT_SIGINT=GLOB:K   fsync of a file matching GLOB first sends this process K SIGINTs
#                         (Ctrl-C while a file is being written)
#   FAULT_SIGINT_CHUNK=N  a SIGINT just before the N-th chunk trains (nothing is being written)
COMMAND = r"""
import errno, fnmatch, os, signal, sys

# as started from a terminal: a background job of a non-interactive shell (pytest's, maybe)
# starts with SIGINT ignored, and Python then installs no handler of its own
signal.signal(signal.SIGINT, signal.default_int_handler)

def fsync_with_faults(fd, fsync=os.fsync):
    name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
    if fnmatch.fnmatch(name, os.environ.get("FAULT_FULL", "-")):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    pattern, _, k = os.environ.get("FAULT_SIGINT", "-:0").rpartition(":")
    if fnmatch.fnmatch(name, pattern):
        for _ in range(int(k)):
            os.kill(os.getpid(), signal.SIGINT)
    return fsync(fd)

os.fsync = fsync_with_faults
if "FAULT_SIGINT_CHUNK" in os.environ:
    from shortcut_jax import sweep
    calls, run_chunk = [0], sweep.run_chunk
    def interrupted(*a, **k):
        calls[0] += 1
        if calls[0] == int(os.environ["FAULT_SIGINT_CHUNK"]):
            os.kill(os.getpid(), signal.SIGINT)
        return run_chunk(*a, **k)
    sweep.run_chunk = interrupted
from shortcut_jax.cli import main
sys.exit(main(sys.argv[1:]))
"""


def command(*args, wait=True, **faults):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **faults}
    env.pop("XLA_FLAGS", None)
    popen = dict(env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return subprocess.Popen([sys.executable, "-c", COMMAND, *args], **popen)
    return subprocess.run([sys.executable, "-c", COMMAND, *args], timeout=300, **popen)


def no_temporaries(out):
    return not [p for p in Path(out).rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    proc = command(*SWEEP, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def rerun_matches(whole, out, trained):
    proc = command(*SWEEP, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"({trained} runs trained, {8 - trained} found complete)" in proc.stdout
    assert no_temporaries(out)
    same_folders(whole, out)


# --- Ctrl-C ------------------------------------------------------------------------------


def test_ctrl_c_while_training_stops_at_once_and_the_rerun_resumes(whole, tmp_path):
    out = tmp_path / "run"
    proc = command(*SWEEP, "--out", str(out), FAULT_SIGINT_CHUNK="2")
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == (f"interrupted: 2 of 8 runs are saved in {out}; rerun the same "
                           "command to resume\n")  # one line, no traceback
    assert len(list((out / "chunks").glob("*.npz"))) == 1 and no_temporaries(out)
    rerun_matches(whole, out, trained=6)


def test_ctrl_c_while_a_chunk_is_written_stops_once_it_is_in_place(whole, tmp_path):
    out = tmp_path / "run"
    proc = command(*SWEEP, "--out", str(out), FAULT_SIGINT=f".{PLAIN_1}.*:1")
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == (f"interrupted: 4 of 8 runs are saved in {out}; rerun the same "
                           "command to resume\n")
    assert (out / "chunks" / PLAIN_1).exists() and no_temporaries(out)
    rerun_matches(whole, out, trained=4)


def test_a_second_ctrl_c_stops_at_once(whole, tmp_path):
    out = tmp_path / "run"
    proc = command(*SWEEP, "--out", str(out), FAULT_SIGINT=f".{PLAIN_1}.*:2")
    assert proc.returncode == -signal.SIGINT  # killed by the signal, the chunk not finished
    assert not (out / "chunks" / PLAIN_1).exists()
    rerun_matches(whole, out, trained=6)  # the temporary file it left is removed


def test_ctrl_c_from_outside_with_debug_shows_the_traceback(tmp_path):
    """A real SIGINT from another process while the sweep trains: the one line, then (with
    --debug) the traceback."""
    out = tmp_path / "run"
    long = [*SWEEP, "--seeds", "64", "--chunk-size", "8", "--steps", "2000", "--n-train", "400"]
    proc = command(*long, "--out", str(out), "--debug", wait=False)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "chunks").glob("*.npz")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.startswith("Traceback"), err
    line = err.splitlines()[-1]
    saved = len(list((out / "chunks").glob("*.npz"))) * 8
    assert line == (f"interrupted: {saved} of 128 runs are saved in {out}; rerun the same "
                    "command to resume")
    assert saved < 128 and no_temporaries(out)


# --- a full disk -------------------------------------------------------------------------


@pytest.mark.parametrize("target, saved", [(f".{PLAIN_1}.*", 2), (".results.csv.*", 8)])
def test_a_full_disk_names_the_file_and_the_rerun_resumes(whole, tmp_path, target, saved):
    out = tmp_path / "run"
    proc = command(*SWEEP, "--out", str(out), FAULT_FULL=target)
    assert proc.returncode == 1, proc.stderr
    name = target[1:].removesuffix(".*")
    folder = out / "chunks" if name.endswith(".npz") else out
    kept = f"all 8 runs are saved in {out}" if saved == 8 else \
        f"{saved} of 8 runs are saved in {out}"
    assert proc.stderr == (f"error: could not write {name} in {folder} "
                           f"({os.strerror(errno.ENOSPC)}): {kept}; free space (or make it "
                           "writable) and rerun the same command to resume\n")
    assert not (folder / name).exists() and no_temporaries(out)
    rerun_matches(whole, out, trained=8 - saved)


def test_a_full_disk_during_a_report_leaves_the_sweep_alone(whole, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(whole, out)
    proc = command("report", str(out), "--no-hessians", "--no-progress", FAULT_FULL=".report.md.*")
    assert proc.returncode == 1
    assert proc.stderr == (f"error: could not write report.md in {out} "
                           f"({os.strerror(errno.ENOSPC)}): report.md was not written (the "
                           f"sweep in {out} is unchanged); free space (or make it writable) and "
                           "rerun the same command\n")
    assert not (out / "report.md").exists() and no_temporaries(out)
    same_folders(whole, out)


def test_a_read_only_folder_is_named(tmp_path):
    """A read-only tmpfs (in a user and mount namespace of its own, where the system allows)."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no user and mount namespaces here (unshare -rm)")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MNT": str(tmp_path), "COMMAND": COMMAND}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o ro tmpfs "$MNT" && '
                           'python -c "$COMMAND" "$@" --out "$MNT/run"', "sh", *SWEEP], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr == (f"error: could not write .lock in {tmp_path}/run (Read-only file "
                           "system): nothing was saved; free space (or make it writable) and "
                           "rerun the same command\n")


# --- damaged files -----------------------------------------------------------------------


def _cut(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_damaged_config_is_named_and_cannot_be_guessed(whole, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(whole, out)
    _cut(out / "config.json")
    report = command("report", str(out), "--no-hessians", "--no-progress")
    resume = command(*SWEEP, "--out", str(out))
    for proc in (report, resume):
        assert proc.returncode == 2
        assert proc.stderr.startswith(f"error: folder: {out / 'config.json'} cannot be read (")
        assert proc.stderr.endswith("): it was cut short or edited, and a sweep's config cannot "
                                    "be guessed from its results; restore config.json from a "
                                    "copy of the folder, or rerun the command that made it with "
                                    "a new --out folder\n")
    (out / "config.json").write_bytes((whole / "config.json").read_bytes())  # a copy restored
    rerun_matches(whole, out, trained=0)


def test_a_damaged_manifest_is_named_and_rebuilt_from_the_chunks(whole, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(whole, out)
    _cut(out / "manifest.json")
    proc = command("report", str(out), "--no-hessians", "--no-progress")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: folder: {out / 'manifest.json'} cannot be read (")
    assert proc.stderr.endswith("): it was cut short or edited; rerun the command that wrote "
                                "the folder: it checks every chunk and rebuilds the manifest\n")
    proc = command(*SWEEP, "--out", str(out))
    assert proc.returncode == 0
    assert proc.stderr.startswith(f"warning: {out / 'manifest.json'} cannot be read: moved to "
                                  f"{out / 'chunks' / 'damaged' / 'manifest.json'}.")
    assert proc.stderr.count("\n") == 1 and "chunks are checked by reading them" in proc.stderr
    assert "(0 runs trained, 8 found complete)" in proc.stdout  # no chunk recomputed
    same_folders(whole, out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == json.loads((whole / "manifest.json").read_text())


@pytest.mark.parametrize("name, text", [
    ("results.csv", "dataset,step\nxor,0,1,2\n"),  # an older folder, its table results.csv
    ("table.json", '{"format": "parquet", "files": ['),  # the Parquet table's index
])
def test_a_damaged_results_file_without_a_checksum_is_named(whole, tmp_path, name, text):
    out = tmp_path / "run"
    shutil.copytree(whole, out)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest[name]
    if name == "results.csv":  # as the kit wrote folders before the Parquet table
        del manifest["table.json"]
        (out / "table.json").unlink()
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / name).write_text(text)
    proc = command("report", str(out), "--no-hessians", "--no-progress")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: folder: {out / name} cannot be read (")
    assert proc.stderr.rstrip("\n").endswith("rerun the command that wrote the folder to "
                                              "rebuild it from the chunks")


FULL_DISK = """
set -e
mount -t tmpfs -o size=40k tmpfs "$MNT"
set +e
python -c "$COMMAND" "$@" --out "$MNT/run" > "$LOG/out1" 2> "$LOG/err1"; echo $? > "$LOG/rc1"
find "$MNT/run" -name '*.tmp' > "$LOG/tmp1"
mount -o remount,size=4m "$MNT"  # space freed
python -c "$COMMAND" "$@" --out "$MNT/run" > "$LOG/out2" 2> "$LOG/err2"; echo $? > "$LOG/rc2"
cp -r "$MNT/run" "$LOG/run"
"""


def test_a_real_full_disk(whole, tmp_path):
    """A sweep into a 40 kB tmpfs (in a user and mount namespace of its own, where the system
    allows one): the kernel's ENOSPC, then the rerun after the tmpfs grew."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no user and mount namespaces here (unshare -rm)")
    mnt, log = tmp_path / "mnt", tmp_path / "log"
    mnt.mkdir()
    log.mkdir()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MNT": str(mnt), "LOG": str(log),
           "COMMAND": COMMAND}
    env.pop("XLA_FLAGS", None)
    subprocess.run(["unshare", "-rm", "sh", "-c", FULL_DISK, "sh", *SWEEP], env=env,
                   check=True, timeout=300)
    err = (log / "err1").read_text()
    assert (log / "rc1").read_text() == "1\n" and err.count("\n") == 1, err
    assert re.fullmatch(rf"error: could not write \S+ in {mnt}/run\S* \(No space left on "
                        rf"device\): (\d) of 8 runs are saved in {mnt}/run; free space \(or make "
                        r"it writable\) and rerun the same command to resume\n", err), err
    assert (log / "tmp1").read_text() == ""  # no partial file
    assert (log / "rc2").read_text() == "0\n", (log / "err2").read_text()
    same_folders(whole, log / "run")


# --- a training that failed --------------------------------------------------------------

DIVERGING = ["sweep", "--dataset", "moons", "--widths", "4", "--lrs", "2", "10000", "--seeds", "4",
             "--steps", "100", "--eval-every", "50", "--n-train", "100", "--n-test", "64",
             "--no-progress", "--cpu-devices", "1"]


def expected_untrained(out):
    """The configurations that did not train, computed from results.csv with the csv module,
    scipy.stats.t and the data set's validation labels: (variant, lr) -> what went wrong."""
    import scipy.stats

    import shortcut_jax as sj

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    Y_val = np.asarray(sj.data.get_dataset("moons", 0, n_train=100, n_test=64).Y_val)
    chance = max(np.mean(Y_val), 1 - np.mean(Y_val))
    last = max(int(r["step"]) for r in rows)
    flagged = {}
    for config in sorted({(r["variant"], float(r["lr"])) for r in rows}):
        mine = [r for r in rows if (r["variant"], float(r["lr"])) == config]
        start = np.mean([float(r["train_loss"]) for r in mine if r["step"] == "0"])
        end = [r for r in mine if int(r["step"]) == last]
        val = np.array([float(r["val_acc"]) for r in end])
        lo = val.mean() - scipy.stats.t.ppf(0.975, len(val) - 1) * scipy.stats.sem(val)
        what = {"saturated": np.mean([float(r["saturated_frac"]) for r in end]) >= 0.99,
                "rose": np.mean([float(r["train_loss"]) for r in end]) > start,
                "chance": lo <= chance,
                "nan": not np.all(np.isfinite([float(r["train_loss"]) for r in end]))}
        if any(what.values()):
            flagged[config] = what
    return flagged


def test_a_diverging_learning_rate_is_flagged_with_its_cause(tmp_path):
    out = tmp_path / "run"
    proc = command(*DIVERGING, "--out", str(out))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # the sweep does not judge
    proc = command("report", str(out), "--no-hessians", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    expected = expected_untrained(out)
    assert sorted(expected) == [("plain", 1e4), ("shortcut", 1e4)]  # lr 2 trained
    assert proc.stderr == (f"warning: 2 of 4 configurations did not train (likely cause: "
                           f"learning rate too high at lr 10000); see 'Runs that did not train' "
                           f"in {out / 'report.md'}\n")
    report = (out / "report.md").read_text()
    section = report[report.index("## Runs that did not train"):
                     report.index("## The selected configurations")]
    listed = [line for line in section.splitlines() if line.startswith("| moons")]
    assert len(listed) == 2
    for line, ((variant, lr), what) in zip(listed, sorted(expected.items())):
        assert line.startswith(f"| moons | {variant}")
        assert f"| 4 | {lr} | 4 |" in line
        assert ("outputs saturated" in line) == what["saturated"]
        assert ("training loss rose" in line) == what["rose"]
        assert ("not above chance (0.500)" in line) == what["chance"]
        cause = "learning rate too high: the outputs saturated, their gradients vanished" \
            if what["saturated"] else "learning rate too high"
        assert line.endswith(f"| {cause} |")
    with open(out / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    flags = {(r["variant"], float(r["lr"])): bool(r["did_not_train"]) for r in summary}
    assert flags == {c: c in expected for c in flags}  # the tables mark them
    for name in summary[0]:  # intervals of losses and norms bounded at 0
        if name.endswith("_lo") and ("loss" in name or "norm" in name):
            assert all(float(r[name]) >= 0.0 for r in summary if r[name]), name


def test_the_selected_table_marks_a_configuration_that_did_not_train(tmp_path):
    import shortcut_jax as sj

    out = tmp_path / "run"
    sj.run_sweep(sj.Grid(datasets=("moons",), widths=(4,), lrs=(1e4,), seeds=3, steps=20,
                         eval_every=10, n_train=100, n_test=64), str(out), progress=False)
    rep = sj.report.build(out, hessians=False)
    assert set(rep.tables["selected"]["did_not_train"].astype(bool)) == {True}
    assert "| moons | plain ⚠ | 4 | 10000.0 |" in rep.markdown
    assert "⚠: did not train (see Runs that did not train)." in rep.markdown


def test_intervals_of_nonnegative_metrics_are_bounded_at_0():
    """A loss with one large value: the t interval (scipy directly) reaches below 0; the
    summary's stops at 0, a fraction's at [0, 1], and a difference is left alone."""
    import pandas as pd
    import scipy.stats

    from shortcut_jax import stats

    loss = np.array([0.0, 0.0, 0.0, 1.5])
    lo, hi = scipy.stats.t.interval(0.95, 3, loss.mean(), scipy.stats.sem(loss))
    assert lo < 0
    rows = pd.DataFrame({c: 0 for c in stats.RUN_KEYS}, index=range(4)).assign(
        seed=range(4), step=10, test_loss=loss, grad_norm=loss, val_acc=[1.0, 1.0, 1.0, 0.5],
        max_overlap=loss - 1.0)
    s = stats.summarize(rows, ["test_loss", "grad_norm", "val_acc", "max_overlap"]).iloc[0]
    assert (s["test_loss_lo"], s["grad_norm_lo"]) == (0.0, 0.0)
    assert s["test_loss_hi"] == pytest.approx(hi, rel=1e-12)
    assert s["val_acc_hi"] == 1.0
    assert s["max_overlap_lo"] == pytest.approx(lo - 1.0, rel=1e-12)  # may be negative


def test_the_line_names_the_folder_to_resume_and_what_the_report_left(tmp_path):
    """Without --out, resuming needs the folder's name; a report leaves its sweep alone; an
    interrupted compare whose sweep is whole says so."""
    import argparse

    from shortcut_jax import cli, results

    stop = results.Interrupted()
    stop.folder, stop.saved, stop.total = tmp_path, 3, 8
    args = argparse.Namespace(command="sweep", out=None, resolved_out=str(tmp_path))
    assert cli.stopped(stop, args) == (f"interrupted: 3 of 8 runs are saved in {tmp_path}; "
                                       f"rerun the same command with --out {tmp_path} to resume")
    full = results.WriteFailed(errno.EDQUOT, os.strerror(errno.EDQUOT), str(tmp_path / "r.md"))
    full.folder, full.saved, full.total = tmp_path, 8, 8
    args = argparse.Namespace(command="compare", out=str(tmp_path))
    assert cli.stopped(full, args) == (
        f"error: could not write r.md in {tmp_path} ({os.strerror(errno.EDQUOT)}): all 8 runs "
        f"are saved in {tmp_path}; free space (or make it writable) and rerun the same command "
        "to resume")
    args = argparse.Namespace(command="report", folder=str(tmp_path), out=None)
    assert cli.stopped(KeyboardInterrupt(), args) == (
        f"interrupted: report.md was not written (the sweep in {tmp_path} is unchanged); rerun "
        "the same command")
    args = argparse.Namespace(command="sweep", out=None, resolved_out=str(tmp_path / "new"))
    assert cli.stopped(KeyboardInterrupt(), args) == ("interrupted: nothing was saved; rerun the "
                                                      "same command")
    (tmp_path / "chunks").mkdir()
    for name in ("a-0000.npz", "a-0001.npz"):
        (tmp_path / "chunks" / name).write_bytes(b"")
    stop.total = None  # stopped while checking the chunks of a resumed sweep
    args = argparse.Namespace(command="sweep", out=str(tmp_path))
    assert cli.stopped(stop, args) == (f"interrupted: the runs of 2 finished chunks are kept in "
                                       f"{tmp_path}; rerun the same command to resume")


def test_with_a_damaged_manifest_a_damaged_chunk_is_still_named_and_recomputed(whole, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(whole, out)
    _cut(out / "manifest.json")
    _cut(out / "chunks" / PLAIN_1)
    proc = command(*SWEEP, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and lines[1].startswith(
        f"warning: {out / 'chunks' / PLAIN_1} does not read back whole: moved to ")
    assert "(2 runs trained, 6 found complete)" in proc.stdout
    same_folders(whole, out)


def test_compare_stopped_in_its_report_says_the_sweep_is_whole(tmp_path):
    out = tmp_path / "run"
    proc = command("compare", *SWEEP[1:], "--out", str(out), FAULT_FULL=".report.md.*")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == (f"error: could not write report.md in {out} "
                           f"({os.strerror(errno.ENOSPC)}): all 8 runs are saved in {out}; free "
                           "space (or make it writable) and rerun the same command to resume\n")
    assert not (out / "report.md").exists() and no_temporaries(out)


def test_untrained_names_nan_runs_and_a_chance_level_accuracy():
    """Three hand-made configurations on a validation split of 3 ones in 4 (chance 0.75): one
    with a NaN run, one that trained, one whose accuracy interval reaches chance."""
    import types

    import pandas as pd
    import scipy.stats

    from shortcut_jax import report, stats

    rows = []
    for lr, losses, accs in ((1.0, [np.nan, 0.1, 0.1], [np.nan, 0.95, 0.95]),
                             (0.5, [0.05, 0.05, 0.06], [0.9, 0.92, 0.94]),
                             (0.1, [0.15, 0.15, 0.15], [0.7, 0.8, 0.76])):
        for seed in range(3):
            for step, loss, acc in ((0, 0.2, 0.5), (10, losses[seed], accs[seed])):
                rows.append({**{c: 0 for c in stats.RUN_KEYS}, "dataset": "xor", "lr": lr,
                             "seed": seed, "step": step, "train_loss": loss, "val_acc": acc,
                             "saturated_frac": 0.0})
    data = [({"dataset": "xor"}, types.SimpleNamespace(Y_val=np.array([0, 1, 1, 1])), "xor")]
    bad = report.untrained(pd.DataFrame(rows), data).set_index("lr")
    assert sorted(bad.index) == [0.1, 1.0]
    assert bad.loc[1.0, "problem"] == "1 of 3 runs ended with NaN or inf"
    assert bad.loc[1.0, "cause"] == "learning rate too high"
    acc = np.array([0.7, 0.8, 0.76])
    half = scipy.stats.t.ppf(0.975, 2) * acc.std(ddof=1) / np.sqrt(3)
    assert bad.loc[0.1, "problem"] == (f"validation accuracy {acc.mean():.3f} "
                                       f"[{acc.mean() - half:.3f}, {acc.mean() + half:.3f}] "
                                       "not above chance (0.750)")
    assert bad.loc[0.1, "cause"] == ("too few steps or too small a learning rate, or a task "
                                     "this network cannot fit")
    assert (bad["chance"] == 0.75).all() and bad.loc[1.0, "n_nonfinite"] == 1

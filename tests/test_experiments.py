"""The installed command and the experiment scripts in their smoke configurations; the report
from any sweep folder, with the selection made on validation."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import shortcut_jax as sj
from shortcut_jax import cli, results

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"exp_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_script_edits_sys_path():
    for path in [*ROOT.glob("experiments/*.py"), *ROOT.glob("shortcut_jax/*.py")]:
        assert "sys.path" not in path.read_text(), path


def test_grad_check_passes_and_prints_the_table(capsys):
    assert load_script("grad_check").main(["--cases", "3"]) == 0  # three shapes, all checks
    out = capsys.readouterr().out
    assert "PASS" in out
    for name in ("W1", "b1", "W2", "b2", "W"):
        assert f"| {name} " in out


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("cmp") / "cmp"
    assert load_script("compare_shortcut").main(["--smoke", "--out", str(out), "--no-progress",
                                                 "--timings", str(out) + ".json"]) == 0
    return out


def test_compare_smoke_writes_what_it_promises(compared):
    for name in ("results.csv", "summary.csv", "selected.csv", "paired.csv",
                 "paired_selected.csv", "paired_plain_lr.csv", "hessian.csv", "baselines.csv", "config.json",
                 "report.md", "params.npz", "figures/learning_curves.png",
                 "figures/acc_vs_width.png", "figures/diagnostics.png",
                 "figures/boundaries_linear_xor.png"):
        assert (compared / name).stat().st_size > 0, name
    report = (compared / "report.md").read_text()
    for heading in ("The selected configurations", "Paired differences", "Hessian",
                    "Baselines", "near-zero eigenvalues, shortcut − plain",
                    "difference at plain's lr [CI]", "Holm p (Wilcoxon)",
                    "detectable (80% power)", "Appendix: paired differences at each learning",
                    "a census of the units", "split by cause"):
        assert heading in report
    assert "Holm-adjusted over the configurations of its table" in report  # the rule stated
    assert report.count("Reading:") >= 6
    assert "chosen per variant and configuration by the best mean final validation accuracy" \
        in report
    with open(compared / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert {r["dataset"] for r in summary} == {"linear_xor", "breast_cancer"}
    assert {r["variant"] for r in summary} == {"plain", "shortcut"}
    assert json.loads((compared / "config.json").read_text())["config"]["tau"] == 0.05
    timings = json.loads(Path(str(compared) + ".json").read_text())
    assert set(timings) >= {"started", "data", "draws", "compile", "train", "write", "report",
                            "command"}


def test_report_rebuilds_the_same_report_elsewhere_without_training(compared, tmp_path,
                                                                      monkeypatch):
    from shortcut_jax import sweep as sweep_lib

    monkeypatch.setattr(sweep_lib, "Executor", lambda *a, **k: pytest.fail("trained"))
    assert cli.main(["report", str(compared), "--out", str(tmp_path / "again"),
                     "--baselines", "--tau", "0.05"]) == 0
    assert (tmp_path / "again" / "report.md").read_text() == \
        (compared / "report.md").read_text()
    assert not (tmp_path / "again" / "results.csv").exists()


def test_the_hessian_verdict_comes_from_paired_intervals(compared):
    hess = sj.stats.paired(
        __import__("pandas").read_csv(compared / "hessian.csv"), "hess_zero_frac",
        ignore=("lr",), higher=False)
    sig = hess.apply(sj.stats.significance, axis=1)
    report = (compared / "report.md").read_text()
    assert (f"significantly fewer near-zero eigenvalues in {int((sig < 0).sum())} of "
            f"{len(hess)} configurations") in report


def test_the_hessian_table_holds_each_runs_census(compared):
    import numpy as np
    import pandas as pd

    from shortcut_jax import diagnostics

    hess = pd.read_csv(compared / "hessian.csv")
    assert len(hess) and hess["hess_zero"].notna().all()
    assert (hess["hess_zero"] == (hess["hess_zero_frac"] * hess["n_params"]).round()).all()
    causes = sum(hess[f"crit_{c}"] for c in diagnostics.CAUSES)
    assert (hess["crit_total"] == causes).all()
    h, P = hess["width"], hess["n_params"]
    d = np.where(hess["variant"] == "shortcut", (P - 1 - 2 * h) / (h + 1), (P - 1) / h - 2)
    assert (hess["crit_dead"] == (d + 2) * hess["n_dead"]).all()


def test_a_diverged_run_has_no_hessian_spectrum_and_the_report_goes_on(compared, monkeypatch):
    """NaN fractions for a run whose parameters are not finite, left out of the intervals."""
    params_of = results.params_of

    def one_diverged(folder, rows):
        p = params_of(folder, rows)
        return p._replace(W1=np.where(np.arange(len(rows))[:, None, None] == 0, np.nan, p.W1))

    monkeypatch.setattr(results, "params_of", one_diverged)
    rep = sj.report.build(compared)
    hess = rep.tables["hessian"]
    first = hess.groupby(["dataset", "width", "variant"], observed=True).head(1).index
    assert hess.loc[first, "hess_zero_frac"].isna().all()
    assert hess.drop(first)["hess_zero_frac"].notna().all()
    assert "## Why: singularities" in rep.markdown and "nan" not in rep.markdown.lower()


def test_compare_on_a_users_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 3))
    label = np.where(X[:, 0] + X[:, 1] * X[:, 2] > 0, "yes", "no")
    path = tmp_path / "mine.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "answer"])
        w.writerows([[*map(str, x), y] for x, y in zip(X, label)])
    out = tmp_path / "cmp"
    main = load_script("compare_shortcut").main
    assert main(["--smoke", "--data", str(path), "--target", "answer", "--out", str(out),
                 "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    assert "labels mapped {'no': 0, 'yes': 1}" in report and "sha256" in report
    assert main(["--smoke", "--data", str(tmp_path / "missing.csv"), "--target", "answer",
                 "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "missing.csv" in capsys.readouterr().err


def test_sweep_smoke_and_its_report(tmp_path, capsys):
    out = tmp_path / "s"
    assert load_script("sweep").main(["--smoke", "--out", str(out), "--no-progress"]) == 0
    assert "(8 runs trained, 0 found complete)" in capsys.readouterr().out
    assert load_script("sweep").main(["--smoke", "--out", str(out), "--no-progress"]) == 0
    assert "(0 runs trained, 8 found complete)" in capsys.readouterr().out
    assert not (out / ".lock.holder").exists()  # the holder's note leaves with the lock
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 1 * 2 * 3  # variants x widths x lrs x seeds x evals
    assert cli.main(["report", str(out), "--no-hessians"]) == 0
    report = (out / "report.md").read_text()
    assert "## Where the shortcut helps: each varied axis" in report  # widths 4 and 8
    assert (out / "figures" / "paired_vs_width.png").stat().st_size > 0


def test_report_names_a_folder_that_is_not_a_finished_sweep(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert f"folder: {tmp_path} is not a sweep folder (no config.json)" in capsys.readouterr().err


def test_the_report_follows_validation_when_test_would_pick_another_lr(tmp_path):
    """A real sweep with two lrs whose final val/test accuracies are then set so that lr 0.1 is
    best on validation and lr 1.0 on test: the report selects 0.1 and reports its test values."""
    out = tmp_path / "run"
    sj.run_sweep(sj.Grid(datasets=("xor",), widths=(3,), lrs=(0.1, 1.0), seeds=3, steps=4,
                         eval_every=2, n_train=40, n_test=30), str(out), progress=False)
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        if r["step"] == "4":
            low = r["lr"] == "0.1"
            r["val_acc"] = "0.9" if low else "0.6"
            r["test_acc"] = "0.55" if low else "0.95"
    with results.atomic_open(out / "results.csv") as f:
        writer = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["results.csv"] = sj.data.file_sha256(out / "results.csv")
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "table.json").unlink()  # the edited results.csv is the table (an older folder)
    rep = sj.report.build(out, hessians=False)
    selected = rep.tables["selected"]
    assert set(selected["lr"]) == {0.1}
    assert selected["test_acc_mean"].tolist() == pytest.approx([0.55, 0.55])
    assert "| 0.1 | 0.900 [0.900, 0.900] | 0.550 [0.550, 0.550]" in rep.markdown


def test_the_command_is_installed_and_lists_its_subcommands():
    exe = Path(sys.executable).with_name("shortcut-jax")
    assert exe.exists(), "pip install -e . installs the shortcut-jax command"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"}).stdout
    for command in ("sweep", "compare", "report", "grad-check", "bench"):
        assert command in out


def test_the_process_entry_returns_mains_code_with_the_collector_set_and_frozen(tmp_path):
    """cli.process (the installed command's entry) returns what main returns, with Python's
    collector set to (10000, 50, 50) and every object left frozen before Python exits."""
    code = ("import gc, sys; from shortcut_jax import cli\n"
            f"rc = cli.process(['export', {str(tmp_path)!r}, '--csv'])\n"
            "print(rc, gc.get_threshold(), gc.get_freeze_count() > 1000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=True)
    assert out.stdout.split("\n")[0] == "2 (10000, 50, 50) True", out.stderr

"""Every experiment script runs in its smoke configuration and writes what it promises."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location(f"exp_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grad_check_passes_and_prints_the_table(capsys):
    assert load_script("grad_check").main(["--cases", "3"]) == 0  # three shapes, all checks
    out = capsys.readouterr().out
    assert "PASS" in out
    for name in ("W1", "b1", "W2", "b2", "W"):
        assert f"| {name} " in out


def test_compare_shortcut_smoke(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = tmp_path / "cmp"
    assert load_script("compare_shortcut").main(["--smoke", "--out", str(out), "--no-progress"]) == 0
    for name in ("results.csv", "summary.csv", "paired.csv", "config.json", "report.md",
                 "params.npz", "figures/learning_curves.png", "figures/acc_vs_width.png",
                 "figures/paired_heatmap.png", "figures/diagnostics.png",
                 "figures/boundaries_linear_xor.png"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    for heading in ("Final test accuracy", "Paired differences", "Hessian", "Baselines"):
        assert heading in report
    assert report.count("Reading:") >= 4
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert {r["dataset"] for r in summary} == {"linear_xor", "breast_cancer"}
    assert {r["variant"] for r in summary} == {"plain", "shortcut"}
    assert json.loads((out / "config.json").read_text())["config"]["tau"] == 0.05


def test_compare_shortcut_on_a_users_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
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
    assert "labels mapped {'no': 0, 'yes': 1}" in report
    assert "labels mapped {'no': 0, 'yes': 1}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--smoke", "--data", str(tmp_path / "missing.csv"), "--target", "answer",
              "--out", str(tmp_path / "x")])
    assert "missing.csv" in capsys.readouterr().err


def test_sweep_smoke(tmp_path):
    assert load_script("sweep").main(["--smoke", "--out", str(tmp_path / "s"),
                                      "--no-progress"]) == 0
    with open(tmp_path / "s" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 1 * 2 * 3  # variants x widths x lrs x seeds x evals


def test_benchmark_quick_agrees_with_every_peer(tmp_path):
    assert load_script("benchmark").main(["--quick", "--out", str(tmp_path / "b")]) == 0
    report = json.loads((tmp_path / "b" / "results.json").read_text())
    for name, config in report["configs"].items():
        impls = {r["impl"] for r in config["rows"]}
        assert {"kit", "numpy", "jax_naive"} <= impls, name
        assert all(r["agree"] for r in config["rows"]), name
    assert {r["impl"] for r in report["grads"]} == {"manual_grad", "jax.grad"}
    assert (tmp_path / "b" / "results.md").read_text().startswith("# Benchmark")

"""The report's progress bar: report.build names its steps (report.STEPS, in order) to a
callback, and `shortcut-jax report` shows them on stderr unless --no-progress."""

import pytest

from shortcut_jax import cli, report

SWEEP = ["sweep", "--dataset", "xor", "--widths", "3", "--lrs", "0.5", "--seeds", "2",
         "--steps", "20", "--eval-every", "10", "--n-train", "64", "--n-test", "64",
         "--no-progress", "--no-compile-cache"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("progress") / "run"
    assert cli.main([*SWEEP, "--out", str(out)]) == 0
    return out


def test_build_names_each_step_in_order(folder):
    told = []
    report.build(folder, hessians=False, progress=told.append)
    assert told == list(report.STEPS)


def test_the_command_shows_the_steps_unless_asked_not_to(folder, tmp_path, capsys):
    assert cli.main(["report", str(folder), "--no-hessians", "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    for name in (*report.STEPS, "writing"):
        assert f"report: {name}" in err
    assert f"{len(report.STEPS) + 1}/{len(report.STEPS) + 1} steps" in err
    assert cli.main(["report", str(folder), "--no-hessians", "--no-progress", "--out",
                     str(tmp_path / "b")]) == 0
    assert "report:" not in capsys.readouterr().err
    assert (tmp_path / "a" / "report.md").read_text() == (tmp_path / "b" / "report.md").read_text()

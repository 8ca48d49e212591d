"""experiments/tutorial.ipynb runs top to bottom in a fresh kernel without an error, and what it
prints (tables, numbers, the report's text) is what its committed outputs show.

After changing the notebook or what it shows, refresh its committed outputs with
`python -m tests.test_tutorial` (from the repository root): it executes the notebook as the test
does and writes it back with its outputs, figures included.
"""

import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "experiments" / "tutorial.ipynb"
NUMBER = re.compile(r"[-+−]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def shown(cell) -> list[str]:
    """The text a code cell shows: its stdout (however the kernel split it into messages), each
    result's markdown or plain text, and one "<image>" per figure (its pixels are
    matplotlib's, not the kit's: not compared)."""
    out, stdout = [], None
    for o in cell.get("outputs", []):
        if o.output_type == "stream" and o.name == "stdout":
            if stdout is None:
                stdout = len(out)
                out.append("")
            out[stdout] += o.text
        elif o.output_type in ("execute_result", "display_data"):
            data = o.get("data", {})
            out.append(data.get("text/markdown") or data.get("text/plain", ""))
            out += ["<image>"] * ("image/png" in data)
        elif o.output_type == "error":
            out.append(f"{o.ename}: {o.evalue}")
    return out


def differences(committed: str, fresh: str) -> list[str]:
    """Where two texts differ: the words between numbers exactly (up to spacing), integers
    exactly, other numbers to within one unit of the last digit the committed text prints
    (float32 sums may round differently across CPUs and XLA versions; a changed result moves
    the numbers by more)."""
    words = tuple([" ".join(w.split()) for w in NUMBER.split(t)] for t in (committed, fresh))
    numbers = (NUMBER.findall(committed), NUMBER.findall(fresh))
    if words[0] != words[1] or len(numbers[0]) != len(numbers[1]):
        return [f"committed:\n{committed}\nfresh:\n{fresh}"]
    out = []
    for a, b in zip(*numbers):
        x, y = (float(v.replace("−", "-")) for v in (a, b))
        mantissa, _, exponent = a.lower().partition("e")
        if "." not in mantissa and not exponent:  # an integer: a count, a size, a step
            unit = 0.0
        else:
            unit = 1.01 * 10.0 ** (int(exponent or 0) - len(mantissa.partition(".")[2]))
        if abs(x - y) > unit:
            out.append(f"{a} became {b}")
    return out


def execute(nb, work: Path) -> None:
    """Run nb in a fresh kernel in the empty directory `work`, with no persistent compilation
    cache (nothing found from earlier runs); raises on the first cell that fails."""
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "SHORTCUT_JAX_NO_COMPILE_CACHE": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel's environment is this process's
    try:
        client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3", record_timing=False,
                                         resources={"metadata": {"path": str(work)}})
        client.execute()  # raises CellExecutionError on the first cell that fails
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The committed notebook and a fresh execution of it."""
    committed = nbformat.read(NOTEBOOK, as_version=4)
    fresh = nbformat.read(NOTEBOOK, as_version=4)
    execute(fresh, tmp_path_factory.mktemp("tutorial"))
    return committed, fresh


def test_the_tutorial_runs_and_shows_what_its_committed_outputs_show(executed):
    committed, fresh = executed
    code = [(a, b) for a, b in zip(committed.cells, fresh.cells) if a.cell_type == "code"]
    assert len(code) >= 10
    for a, _ in code:
        assert a.get("outputs") is not None and a.execution_count is not None, \
            "the committed notebook is not executed: commit it with its outputs"
    problems = []
    for i, (a, b) in enumerate(code):
        was, now = shown(a), shown(b)
        if len(was) != len(now):
            problems.append(f"code cell {i}: {len(was)} outputs committed, {len(now)} now")
            continue
        for x, y in zip(was, now):
            problems += [f"code cell {i}: {d}" for d in differences(x, y)]
    assert problems == [], "\n".join(problems)
    images = sum(s == "<image>" for a, _ in code for s in shown(a))
    assert images >= 3  # the figures are committed, so the repository page shows them


@pytest.mark.parametrize("committed, fresh, same", [
    ("acc 0.913 [0.815, 1.000]", "acc 0.914 [0.815, 1.000]", True),   # one unit of the last digit
    ("acc 0.913 [0.815, 1.000]", "acc 0.915 [0.815, 1.000]", False),
    ("p 5.21e-03", "p 5.22e-03", True),
    ("p 5.21e-03", "p 5.41e-03", False),
    ("better in 4 of 9", "better in 3 of 9", False),
    ("better in 4 of 9", "worse in 4 of 9", False),
    ("step  val_acc\n100    0.913", "step   val_acc\n100     0.913", True),  # spacing
    ("step 100", "step 101", False),
])
def test_the_comparison_allows_rounding_and_nothing_else(committed, fresh, same):
    assert (differences(committed, fresh) == []) == same


def refresh() -> None:
    """Execute the notebook and write it back with its outputs (stderr, such as a library's
    warnings naming local paths, left out)."""
    import tempfile

    nb = nbformat.read(NOTEBOOK, as_version=4)
    with tempfile.TemporaryDirectory() as work:
        execute(nb, Path(work))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if not (o.output_type == "stream" and o.name == "stderr")]
    nbformat.write(nb, NOTEBOOK)
    print(f"wrote {NOTEBOOK}")


if __name__ == "__main__":
    refresh()

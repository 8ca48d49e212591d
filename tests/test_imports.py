"""The package's import graph, read from the source (ast): every import of a shortcut_jax
module, at the top or inside a function, is an edge, and the graph has no cycle."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "shortcut_jax"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """{module: modules of the package it imports}. `from shortcut_jax.x import y` is an edge
    to shortcut_jax.x.y where that is a module, else to shortcut_jax.x; `import shortcut_jax`
    and names taken from the package are edges to shortcut_jax (its __init__)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # import a.b.c: the deepest module of the package
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges.add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state and (found := visit(v)):
                return found
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state and (found := visit(u)):
            return found
    return None


def test_the_package_imports_no_module_that_imports_it_back():
    graph = import_graph()
    assert "shortcut_jax.cli" in graph and "shortcut_jax.bench.main" in graph
    assert "shortcut_jax.results" in graph["shortcut_jax.stats"]  # edges are seen
    assert "shortcut_jax.bench.configs" in graph["shortcut_jax.cli"]  # inside a function too
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("sources, cycle", [
    ({"a": "from shortcut_jax import b\n", "b": "def f():\n    from shortcut_jax import a\n"},
     True),
    ({"a": "import shortcut_jax.b as b\n", "b": "import numpy\n"}, False),
    ({"a": "from shortcut_jax.b import x\n", "b": "import shortcut_jax\n",
      "__init__": "from shortcut_jax.a import y\n"}, True),
    ({"a": "from . import b\n", "b": "from .a import y\n"}, True),
])
def test_the_graph_finds_a_cycle_hidden_in_a_function(tmp_path, sources, cycle):
    root = tmp_path / "shortcut_jax"
    root.mkdir()
    (root / "__init__.py").write_text(sources.get("__init__", ""))
    for name, text in sources.items():
        if name != "__init__":
            (root / f"{name}.py").write_text(text)
    graph = import_graph(root)
    assert (find_cycle(graph) is not None) == cycle, graph

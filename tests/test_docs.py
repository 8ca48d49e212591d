"""The API reference: pdoc builds it from the docstrings (the README's command), and every
public name has a docstring: each name of shortcut_jax.__all__, each public function and class
of the public submodules (the modules in __all__), and each public method of those classes."""

import importlib
import types

import pytest

pytest.importorskip("pdoc")
import pdoc.doc  # noqa: E402

import shortcut_jax as sj  # noqa: E402

SUBMODULES = [n for n in sj.__all__ if isinstance(getattr(sj, n), types.ModuleType)]


def public_objects() -> list:
    """pdoc's view of every public name: what the reference shows."""
    top = pdoc.doc.Module(sj)
    objs = [top] + [top.get(n) for n in sj.__all__ if n not in SUBMODULES]
    assert None not in objs, [n for n in sj.__all__ if n not in SUBMODULES and top.get(n) is None]
    for name in SUBMODULES:
        module = pdoc.doc.Module(importlib.import_module(f"shortcut_jax.{name}"))
        objs += [module] + [v for k, v in module.members.items()
                            if not k.startswith("_") and v.modulename == module.modulename
                            and isinstance(v, (pdoc.doc.Function, pdoc.doc.Class))]
    methods = [m for c in objs if isinstance(c, pdoc.doc.Class) for k, m in c.members.items()
               if not k.startswith("_") and isinstance(m, pdoc.doc.Function)
               and k in vars(c.obj)]  # its own, not inherited from NamedTuple or object
    return objs + methods


def test_every_public_name_has_a_docstring():
    objs = public_objects()
    names = {o.fullname for o in objs}
    assert {"shortcut_jax.make_train", "shortcut_jax.stats.paired", "shortcut_jax.Grid.runs",
            "shortcut_jax.plots.paired_vs_axis", "shortcut_jax.data.make_synthetic"} <= names
    missing = sorted(o.fullname for o in objs if not o.docstring.strip())
    assert missing == [], f"public names without a docstring: {missing}"


@pytest.mark.filterwarnings(r"ignore:Error parsing type annotation ForwardRef\('Any'\)")
def test_the_reference_builds_with_a_page_per_public_module(tmp_path):
    """(pdoc cannot resolve `Any` in the __init__ NamedTuple generates for Dataset: a warning.)"""
    pdoc.pdoc("shortcut_jax", output_directory=tmp_path)
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    assert {"index.html", "shortcut_jax.html"} <= pages
    assert {f"shortcut_jax/{n}.html" for n in SUBMODULES} <= pages
    front = (tmp_path / "shortcut_jax.html").read_text()
    for name in sj.__all__:
        assert f'id="{name}"' in front or f"shortcut_jax/{name}.html" in front, name

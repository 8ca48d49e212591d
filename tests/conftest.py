"""Strict JAX settings for the whole suite, and one compilation cache for the session.

Implicit rank promotion is an error. Every sweep builds new jitted functions, so the same
programs would compile again test after test: the suite shares a persistent compilation cache
in a temporary folder (subprocesses too, through XDG_CACHE_HOME), removed at the end.
test_compilation.py checks that results are the same with and without a cache.
"""

import os
import shutil
import tempfile

import jax
import pytest

_CACHE_HOME = tempfile.mkdtemp(prefix="shortcut-jax-tests-")
os.environ["XDG_CACHE_HOME"] = _CACHE_HOME
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
os.environ.pop("SHORTCUT_JAX_NO_COMPILE_CACHE", None)

jax.config.update("jax_numpy_rank_promotion", "raise")

from shortcut_jax import compilation  # noqa: E402

compilation.enable_cache()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE_HOME, ignore_errors=True)


@pytest.fixture
def x64():
    """Run the test body with float64 enabled."""
    with jax.enable_x64(True):
        yield

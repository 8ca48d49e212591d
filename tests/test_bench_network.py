"""The benchmark's configuration D (the network family): three implementations from the same
start agree on the final losses, and the section renders."""

from shortcut_jax import bench
from shortcut_jax.bench import network, sections


def test_configuration_d_runs_and_agrees():
    report = network.network_times(network.NETWORK_QUICK, reps=1)
    assert [r["impl"] for r in report["rows"]] == list(network.NETWORK_IMPLS)
    assert all(r["agree"] for r in report["rows"])
    assert report["depth"] == 3 and report["variant"] == "residual+shortcut"
    text = bench.markdown({"versions": sections.versions(), "network": report})
    assert "## Configuration D: the network family (depth 3, tanh, residual+shortcut" in text
    assert "network" in bench.SECTIONS and "network" not in bench.QUICK_SECTIONS

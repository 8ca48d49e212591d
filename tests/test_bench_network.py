"""The benchmark's configuration D (the network family): three implementations from the same
start agree on the final losses, and the section renders."""

import pytest

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


def test_block_times_cover_every_depth_and_block():
    report = network.block_times(n=64, h=4, depths=(1, 3), blocks=(1, 2), M=2, T=4, reps=1)
    assert [r["depth"] for r in report["rows"]] == [1, 3]
    assert all(set(r["us_per_model_step"]) == {1, 2} and min(r["us_per_model_step"].values())
               > 0 for r in report["rows"])
    # 1 MiB / (4 B x 64 x 4) = 1024 runs at depth 1: the cap of 64; at depth 3 the cap of 2
    assert [r["auto_block"] for r in report["rows"]] == [64, 2]
    text = bench.markdown({"versions": sections.versions(), "network_blocks": report})
    assert "| 3 | " in text and "## The kit's block size against the depth" in text
    with pytest.raises(ValueError, match=r"M: expected a multiple of every block size \[1, 2\], "
                                         r"got 3"):
        network.block_times(n=64, h=4, depths=(1,), blocks=(1, 2), M=3, T=4)

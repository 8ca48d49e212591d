"""Comparing two sweep folders, for the kill, resume and failure tests."""

from pathlib import Path

import numpy as np


def same_folders(a, b):
    """results.csv bitwise and every array of params.npz equal, bitwise."""
    assert (Path(a) / "results.csv").read_bytes() == (Path(b) / "results.csv").read_bytes()
    with np.load(Path(a) / "params.npz") as pa, np.load(Path(b) / "params.npz") as pb:
        assert sorted(pa.files) == sorted(pb.files)
        for k in pa.files:
            np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)

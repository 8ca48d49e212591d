"""The paired design at the sweep level, at every value of every axis: what run_sweep hands the
training for a plain run and for a shortcut run of the same seed (and the same other axes) is the
same -- the same standard normals (so the same W1, b1, W2, b2 at init), the same data and the
same minibatch key (so the same minibatch order) -- and only W's start and training differ."""

import itertools

import numpy as np
import pytest

import shortcut_jax as sj
from shortcut_jax import results
from shortcut_jax import sweep as sweep_lib
from shortcut_jax.model import num_normals

GRID = dict(datasets=("linear_xor", "teacher"), noise=(0.0, 0.3), linear_weight=(0.25, 1.0),
            teacher_shortcut=(0.0, 1.0), teacher_width=(1, 2), n_train=(40, 60), d=(2, 3),
            shortcut_init=("zeros", "lecun"), batch_size=(8, None), widths=(3,), lrs=(0.5,),
            seeds=3, steps=4, eval_every=2, n_test=30)
AXES = ("dataset", "n_train", "d", "noise", "linear_weight", "teacher_width", "teacher_shortcut",
        "batch_size", "width", "lr", "seed")


@pytest.fixture(scope="module")
def handed(tmp_path_factory):
    """{(axes..., variant, shortcut_init): what the run got}, recorded at run_chunk (which
    trains nothing here: it returns zeros of the right shapes) and save_chunk."""
    calls, runs = [], {}
    real_save = results.RunFolder.save_chunk

    def fake_run_chunk(executor, data, lrs, w_scales, draws, on_segment=None, w_on=None):
        calls.append((data, np.asarray(w_scales), np.asarray(draws.z),
                      np.asarray(draws.batch_key), np.asarray(w_on)))
        R, d, c = len(lrs), np.shape(data.X_train)[1], executor.config
        params = sj.Params(np.zeros((R, c.h, d)), np.zeros((R, c.h)), np.zeros((R, 1, c.h)),
                           np.zeros(R), np.zeros((R, 1, d)))
        return params, {m: np.zeros((R, c.num_evals)) for m in results.METRIC_COLUMNS}

    def save_chunk(self, group, chunk, columns, lrs, seeds, *a, **k):
        data, w_scales, z, keys, w_on = calls.pop()
        for i, (lr, seed) in enumerate(zip(lrs, seeds)):
            key = (*(columns.get(a, lr if a == "lr" else seed if a == "seed" else None)
                     for a in AXES), columns["variant"], columns["shortcut_init"])
            assert key not in runs, key
            runs[key] = dict(data=data, w_scale=w_scales[i], z=z[i], key=keys[i], w_on=w_on[i])
        return real_save(self, group, chunk, columns, lrs, seeds, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep_lib, "run_chunk", fake_run_chunk)
        mp.setattr(results.RunFolder, "save_chunk", save_chunk)
        sj.run_sweep(sj.Grid(**GRID), str(tmp_path_factory.mktemp("pairing") / "run"),
                     progress=False)
    return runs


def test_every_axis_value_is_run_for_both_variants(handed):
    values = {a: {k[i] for k in handed} for i, a in enumerate(AXES)}
    assert values["n_train"] == {40, 60} and values["d"] == {2, 3}
    assert values["noise"] == {0.0, 0.3} and values["batch_size"] == {8, "full"}
    assert values["linear_weight"] == {0.25, 1.0, None}
    assert values["teacher_width"] == {1, 2, None} and values["teacher_shortcut"] == {0.0, 1.0,
                                                                                      None}
    # linear_xor: 2 n x 2 d x 2 noise x 2 lw; teacher: 2 n x 2 d x 2 noise x 2 tw x 2 ts; each
    # x 2 batch sizes x 3 seeds x (plain, zeros, lecun)
    assert len(handed) == (16 + 32) * 2 * 3 * 3


def test_plain_and_shortcut_runs_of_a_seed_get_the_same_start_data_and_minibatches(handed):
    plain = {k[:-2]: v for k, v in handed.items() if k[-2] == "plain"}
    assert len(plain) * 3 == len(handed)
    for key, run in handed.items():
        p = plain[key[:-2]]
        d, h = key[AXES.index("d")], key[AXES.index("width")]
        n = num_normals(d, h)
        # the normals of W1, b1, W2, b2 (the rest of a wide draw is never read)
        np.testing.assert_array_equal(run["z"][:n], p["z"][:n], err_msg=str(key))
        np.testing.assert_array_equal(run["key"], p["key"], err_msg=str(key))  # minibatches
        for a, b in zip(run["data"], p["data"]):
            if a is None:
                assert b is None
            else:
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(key))
        if key[AXES.index("seed")] == 0 and key[AXES.index("n_train")] == 40:  # a few in full
            start = [sj.model.params_from_normals(r["z"], d, h, w_scale=r["w_scale"])
                     for r in (run, p)]
            for f in ("W1", "b1", "W2", "b2"):
                np.testing.assert_array_equal(getattr(start[0], f), getattr(start[1], f))
        # what differs: W starts at 0 and stays there for plain; lecun starts it non-zero
        variant, init = key[-2:]
        assert (run["w_on"], run["w_scale"] > 0) == {
            ("plain", None): (0.0, False), ("shortcut", "zeros"): (1.0, False),
            ("shortcut", "lecun"): (1.0, True)}[(variant, init)], key


def test_a_seed_starts_from_the_same_normals_at_every_axis_value_and_seeds_differ(handed):
    seed_at = AXES.index("seed")
    n = num_normals(3, 3)
    by_seed = {}
    for key, run in handed.items():
        if key[AXES.index("d")] == 3:
            by_seed.setdefault(key[seed_at], []).append((run["z"][:n], run["key"]))
    assert sorted(by_seed) == [0, 1, 2]
    for runs in by_seed.values():
        for z, k in runs:
            np.testing.assert_array_equal(z, runs[0][0])
            np.testing.assert_array_equal(k, runs[0][1])
    for a, b in itertools.combinations(sorted(by_seed), 2):
        assert not np.array_equal(by_seed[a][0][0], by_seed[b][0][0])
        assert not np.array_equal(by_seed[a][0][1], by_seed[b][0][1])

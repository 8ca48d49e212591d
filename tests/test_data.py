"""Synthetic tasks, the teacher, splits and scaling, breast cancer and CSV loading, against
independent checks (the rules written out again, the network of shortcut_jax.model)."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shortcut_jax as sj
from shortcut_jax import data

TASKS_2D = ("linear", "xor", "moons", "circles", "spirals", "linear_xor")
N, D = 2001, 5


# --------------------------------------------------------------------------- generators


def test_registry_names():
    assert tuple(data.SYNTHETIC) == (*TASKS_2D, "teacher")
    assert data.DATASETS == (*TASKS_2D, "teacher", "breast_cancer")
    assert set(data.DEFAULT_NOISE) == set(data.SYNTHETIC)


@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("name", TASKS_2D)
def test_generator_shapes_dtypes_balanced(name, d):
    X, Y = data.SYNTHETIC[name](0, N, d)
    assert X.shape == (N, d) and X.dtype == np.float32
    assert Y.shape == (N,) and Y.dtype == np.float32
    assert set(np.unique(Y)) == {0.0, 1.0}
    assert int(Y.sum()) == N // 2  # balanced by construction: floor(n/2) ones
    assert np.isfinite(X).all()


@pytest.mark.parametrize("name", (*TASKS_2D, "teacher"))
def test_generators_are_deterministic_in_the_seed(name):
    gen = data.SYNTHETIC[name]
    a, b, c = gen(3, 50, 3), gen(3, 50, 3), gen(4, 50, 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    # a JAX key is a seed too, and the same key gives the same data
    k = jax.random.key(9)
    assert np.array_equal(gen(k, 50, 3)[0], gen(jax.random.key(9), 50, 3)[0])


def test_linear_rule_and_margin():
    X, Y = data.linear(0, N, noise=0.0, margin=0.25)
    along = X[:, :2] @ np.asarray(data.LINEAR_W, np.float32)
    assert np.array_equal(Y, (along > 0).astype(np.float32))
    assert np.abs(along).min() >= 0.25 - 1e-6


@pytest.mark.parametrize("a, rule", [
    (0.0, lambda x1, x2: x1 * x2 > 0),  # XOR
    (1 / 3, lambda x1, x2: x1 + 2 * x1 * x2 > 0),  # today's linear_xor, C = 2
    (1.0, lambda x1, x2: x1 > 0),  # a linear rule
    (0.7, lambda x1, x2: 0.7 * x1 + 0.3 * x1 * x2 > 0),
])
def test_linear_xor_labels_mix_a_linear_and_a_product_rule(a, rule):
    X, Y = data.linear_xor(1, N, noise=0.0, linear_weight=a)
    assert np.array_equal(Y, rule(X[:, 0].astype(np.float64), X[:, 1]).astype(np.float32))
    assert np.abs(X[:, :2]).max() <= 1.0


def test_xor_is_linear_xor_at_weight_zero_and_the_default_weight_is_a_third():
    assert all(np.array_equal(u, v) for u, v in zip(data.xor(2, 100, noise=0.0),
                                                    data.linear_xor(2, 100, noise=0.0,
                                                                    linear_weight=0.0)))
    assert all(np.array_equal(u, v) for u, v in zip(data.linear_xor(2, 100),
                                                    data.linear_xor(2, 100, 2, 0.05, 1 / 3)))


def test_moons_circles_spirals_geometry():
    X, Y = data.moons(0, N, noise=0.0)
    upper = np.hypot(X[:, 0], X[:, 1])
    lower = np.hypot(X[:, 0] - 1.0, X[:, 1] - 0.5)
    np.testing.assert_allclose(np.where(Y == 0, upper, lower), 1.0, atol=1e-5)
    X, Y = data.circles(0, N, noise=0.0, factor=0.3)
    np.testing.assert_allclose(np.hypot(X[:, 0], X[:, 1]), np.where(Y == 1, 0.3, 1.0), atol=1e-5)
    X, Y = data.spirals(0, N, noise=0.0)
    r = np.hypot(X[:, 0], X[:, 1])
    t = (r - 0.1) / 0.9
    angle = 2 * np.pi * data.SPIRAL_TURNS * t + np.pi * Y
    np.testing.assert_allclose(X[:, 0], r * np.cos(angle), atol=1e-4)
    np.testing.assert_allclose(X[:, 1], r * np.sin(angle), atol=1e-4)


@pytest.mark.parametrize("name", TASKS_2D)
def test_noise_is_jitter_on_the_inputs_after_the_labels(name):
    clean, Yc = data.SYNTHETIC[name](5, N, D, noise=0.0)
    noisy, Yn = data.SYNTHETIC[name](5, N, D, noise=0.3)
    assert np.array_equal(Yc, Yn)  # the labels come from the clean inputs
    assert np.array_equal(clean[:, 2:], noisy[:, 2:])  # extra features untouched
    jitter = (noisy[:, :2] - clean[:, :2]) / 0.3
    assert abs(jitter.mean()) < 0.05 and abs(jitter.std() - 1.0) < 0.05


@pytest.mark.parametrize("name", TASKS_2D)
def test_extra_features_are_standard_normal(name):
    X, _ = data.SYNTHETIC[name](0, N, 6)
    assert np.all(np.abs(X[:, 2:].mean(0)) < 0.1) and np.all(np.abs(X[:, 2:].std(0) - 1) < 0.1)


# --------------------------------------------------------------------------- the teacher


def test_teacher_is_a_network_of_the_kits_family():
    """P equals shortcut_jax.predict of the teacher's Params (float64), an independent forward;
    threshold labels are 1{P > 1/2} at noise 0."""
    X, Y, P = data.teacher(0, 400, 4, width=3, shortcut=0.7, teacher_seed=2)
    params = data.teacher_params(4, 3, 0.7, teacher_seed=2)
    with jax.enable_x64(True):
        want = sj.predict(jax.tree.map(jnp.asarray, params), jnp.asarray(X, jnp.float64))
    np.testing.assert_allclose(P, np.asarray(want), rtol=1e-5, atol=1e-6)
    assert np.array_equal(Y, (P > 0.5).astype(np.float32))
    assert 0.2 < Y.mean() < 0.8  # the hidden logit is centred: no one-class task


def test_teacher_shortcut_zero_is_a_plain_network_and_only_scales_W():
    plain = data.teacher_params(3, 4, 0.0)
    assert plain.W is None
    one, two = data.teacher_params(3, 4, 1.0), data.teacher_params(3, 4, 2.0)
    for name in ("W1", "b1", "W2", "b2"):
        assert np.array_equal(getattr(plain, name), getattr(one, name))
        assert np.array_equal(getattr(one, name), getattr(two, name))
    np.testing.assert_allclose(two.W, 2 * one.W)
    np.testing.assert_allclose(np.linalg.norm(one.W), data.TEACHER_LOGIT_STD)
    other = data.teacher_params(3, 4, 1.0, teacher_seed=1)
    assert not np.array_equal(other.W1, one.W1)
    # the hidden logit has mean 0 and std TEACHER_LOGIT_STD on fresh Gaussian inputs
    X = np.random.default_rng(123).standard_normal((20000, 3))
    hidden = np.maximum(X @ one.W1.T, 0) @ one.W2[0] + one.b2
    assert abs(hidden.mean()) < 0.15 and abs(hidden.std() / data.TEACHER_LOGIT_STD - 1) < 0.05


def test_teacher_inputs_do_not_depend_on_the_teacher():
    a = data.teacher(1, 300, 3, width=1, shortcut=0.0)
    b = data.teacher(1, 300, 3, width=4, shortcut=2.0)
    assert np.array_equal(a[0], b[0])
    assert not np.array_equal(a[1], b[1])


def test_teacher_label_flips_and_bernoulli_labels():
    X, Y, P = data.teacher(0, 20000, 2, flip=0.2)
    assert abs(np.mean(Y != (P > 0.5)) - 0.2) < 0.015
    X, Y, P = data.teacher(0, 20000, 2, labels="bernoulli")
    assert abs(Y.mean() - P.mean()) < 0.015
    assert np.mean(Y != (P > 0.5)) > 0.01  # not thresholded


# --------------------------------------------------------------------------- split and scale


def test_split_is_a_stratified_partition_standardized_on_train():
    rng = np.random.default_rng(0)
    n = 500
    X = np.stack([np.arange(n), rng.normal(size=n) * 3 + 1], 1).astype(np.float32)
    Y = (rng.random(n) < 0.3).astype(np.float32)
    ds, scaling = data.split(7, X, Y, test_fraction=0.3, val_fraction=0.2)
    unscale = lambda A: A * np.asarray(scaling["std"]) + np.asarray(scaling["mean"])  # noqa: E731
    ids = {k: np.rint(unscale(getattr(ds, f"X_{k}"))[:, 0]).astype(int)
           for k in ("train", "val", "test")}
    assert sorted(np.concatenate(list(ids.values()))) == list(range(n))
    for k, idx in ids.items():
        assert np.array_equal(getattr(ds, f"Y_{k}"), Y[idx]), k
    ones, zeros = int(Y.sum()), n - int(Y.sum())
    test_ones, test_zeros = round(0.3 * ones), round(0.3 * zeros)
    assert (ds.Y_test.sum(), len(ds.Y_test)) == (test_ones, test_ones + test_zeros)
    val_ones = round(0.2 * (ones - test_ones))
    val_zeros = round(0.2 * (zeros - test_zeros))
    assert (ds.Y_val.sum(), len(ds.Y_val)) == (val_ones, val_ones + val_zeros)
    np.testing.assert_allclose(ds.X_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.X_train.std(0), 1.0, atol=1e-5)
    raw_train = X[ids["train"]].astype(np.float64)
    np.testing.assert_allclose(scaling["mean"], raw_train.mean(0), rtol=1e-9)
    np.testing.assert_allclose(ds.X_test, (X[ids["test"]] - raw_train.mean(0))
                               / raw_train.std(0), rtol=1e-5, atol=1e-5)
    assert all(getattr(ds, f).dtype == np.float32 for f in ds._fields[:6])


def test_standardize_constant_column_gets_std_one():
    mean, std, A, B = data.standardize(np.array([[1.0, 2.0], [1.0, 4.0]]), np.array([[3.0, 3.0]]))
    assert std[0] == 1.0 and mean[0] == 1.0
    np.testing.assert_allclose(A[:, 0], 0.0)
    np.testing.assert_allclose(B, [[2.0, 0.0]])


@pytest.mark.parametrize("name", (*TASKS_2D, "teacher"))
def test_make_synthetic(name):
    ds = data.make_synthetic(name, 0, 250, 100, d=3)
    assert isinstance(ds, data.Dataset)
    assert len(ds.Y_train) + len(ds.Y_val) == 250 and len(ds.Y_test) == 100
    assert len(ds.Y_val) == round(0.2 * (250 - ds.Y_train.sum() - ds.Y_val.sum())) + round(
        0.2 * (ds.Y_train.sum() + ds.Y_val.sum()))
    assert ds.X_train.shape[1] == ds.X_val.shape[1] == ds.X_test.shape[1] == 3
    np.testing.assert_allclose(ds.X_train.mean(0), 0.0, atol=1e-5)
    assert (ds.P_test is not None) == (name == "teacher")
    again = data.make_synthetic(name, 0, 250, 100, d=3)
    assert all(a is None and b is None or np.array_equal(a, b) for a, b in zip(ds, again))
    rows = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    assert len(np.unique(rows, axis=0)) == 350  # distinct draws: no row in two splits


def test_make_synthetic_defaults_and_kwargs():
    default = data.make_synthetic("circles", 0, 100, 50)
    explicit = data.make_synthetic("circles", 0, 100, 50, noise=0.05, factor=0.5)
    assert all(np.array_equal(a, b) for a, b in zip(default[:6], explicit[:6]))
    other = data.make_synthetic("circles", 0, 100, 50, factor=0.2)
    assert not np.array_equal(default.X_train, other.X_train)
    got = data.get_dataset("xor", 3, n_train=100, n_test=50, d=3, noise=0.2)
    want = data.make_synthetic("xor", 3, 100, 50, d=3, noise=0.2)
    assert all(np.array_equal(a, b) for a, b in zip(got[:6], want[:6]))


def test_making_data_compiles_nothing():
    from shortcut_jax import compilation

    with compilation.tally() as t:
        data.make_synthetic("moons", 0, 300, 100, d=4)
        data.make_synthetic("teacher", 1, 300, 100, d=4, shortcut=1.0)
    assert t.programs == 0


def test_describe_records_the_sizes():
    ds = data.make_synthetic("moons", 0, 100, 30, d=3)
    record = data.describe(ds, "moons", data_seed=0)
    assert record == {"name": "moons", "n_train": len(ds.Y_train), "n_val": len(ds.Y_val),
                      "n_test": 30, "d": 3, "label_map": {0: 0, 1: 1}, "data_seed": 0}


@pytest.mark.parametrize(("call", "match"), [
    (lambda: data.linear(0, 0), r"n: expected an integer >= 1, got 0"),
    (lambda: data.xor(0, 10, d=1), r"d: expected an integer >= 2, got 1"),
    (lambda: data.moons(0, 10, noise=-0.1), r"noise: expected a number in \[0, inf\), got -0.1"),
    (lambda: data.spirals(0, 10, noise=float("nan")), r"noise: expected a number in \[0, inf\)"),
    (lambda: data.xor(0, 5, noise=True), r"noise: expected a number in \[0, inf\), got True"),
    (lambda: data.linear(0, 10, margin=-1.0), r"margin: expected a number in \[0, inf\)"),
    (lambda: data.circles(0, 10, factor=1.5), r"factor: expected a number in \(0, 1\), got 1.5"),
    (lambda: data.linear_xor(0, 10, linear_weight=1.5),
     r"linear_weight: expected a number in \[0, 1\], got 1.5"),
    (lambda: data.teacher(0, 10, width=0), r"teacher_width: expected an integer >= 1, got 0"),
    (lambda: data.teacher(0, 10, shortcut=-1.0),
     r"teacher_shortcut: expected a number in \[0, inf\), got -1.0"),
    (lambda: data.teacher(0, 10, labels="soft"), r"labels: expected 'threshold' or 'bernoulli'"),
    (lambda: data.teacher(0, 10, flip=0.7), r"flip: expected a number in \[0, 0.5\], got 0.7"),
    (lambda: data.make_synthetic("xor", 0, 1, 5), r"n_train: expected an integer >= 2, got 1"),
    (lambda: data.make_synthetic("xor", 0, 5, 0), r"n_test: expected an integer >= 1, got 0"),
    (lambda: data.make_synthetic("xor", 0, 50, 5, val_fraction=1.0),
     r"val_fraction: expected a number in \(0, 1\), got 1.0"),
    (lambda: data.make_synthetic("swiss_roll", 0, 10, 5),
     r"name: expected one of linear, xor, moons, circles, spirals, linear_xor, teacher; got"),
    (lambda: data.get_dataset("mnist", 0), r"name: expected one of .*breast_cancer; got 'mnist'"),
    (lambda: data.split(0, np.zeros((4, 2)), np.zeros(3), n_test=1),
     r"X, Y: expected shapes \(n, d\) and \(n,\), got \(4, 2\) and \(3,\)"),
    (lambda: data.split(0, np.zeros((4, 2)), np.zeros(4), n_test=4),
     r"n_test: expected fewer than the 4 rows, got 4"),
])
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_a_bad_seed_is_named():
    with pytest.raises(TypeError, match=r"seed: expected an integer >= 0 or a JAX PRNG key, "
                                        r"got -1"):
        data.moons(-1, 10)


# --------------------------------------------------------------------------- breast cancer


def test_breast_cancer():
    datasets = pytest.importorskip("sklearn.datasets")
    ds = data.breast_cancer(0)
    # 212 malignant (0), 357 benign (1): 30% of each is test, then 20% of each rest is val
    assert len(ds.Y_test) == 64 + 107 and int(ds.Y_test.sum()) == 107
    assert len(ds.Y_val) == 30 + 50 and int(ds.Y_val.sum()) == 50
    assert ds.X_train.shape == (569 - 171 - 80, 30)
    y = np.concatenate([ds.Y_train, ds.Y_val, ds.Y_test])
    bunch = datasets.load_breast_cancer()
    assert y.sum() == bunch.target.sum()
    X, Y = data.breast_cancer_arrays()  # read from sklearn's file: the same numbers
    np.testing.assert_array_equal(X, bunch.data)
    np.testing.assert_array_equal(Y, bunch.target)
    np.testing.assert_allclose(ds.X_train.mean(0), 0.0, atol=1e-4)
    with pytest.raises(ValueError, match=r"test_fraction: expected a number in \(0, 1\), got 1.0"):
        data.breast_cancer(0, test_fraction=1.0)


def test_breast_cancer_without_sklearn(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError, match=r"pip install 'shortcut-jax\[experiments\]'"):
        data.breast_cancer(0)


# --------------------------------------------------------------------------- CSV


def write(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def csv_text(labels):
    """Header a,label,b; a = row index, b = 10 * row index, the given labels."""
    lines = ["a,label,b"] + [f"{i},{lab},{10 * i}" for i, lab in enumerate(labels)]
    return "\n".join(lines) + "\n"


def rows_of(ds, info):
    """Row indices (column a) and labels of every split, unscaled with the recorded stats."""
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    raw = X * np.asarray(info["std"]) + np.asarray(info["mean"])
    return raw, np.concatenate([ds.Y_train, ds.Y_val, ds.Y_test])


def test_load_csv_roundtrip(tmp_path):
    labels = [0, 1] * 20
    path = write(tmp_path, csv_text(labels))
    ds, info = data.load_csv(path, "label")
    assert info["feature_names"] == ["a", "b"]
    assert info["label_map"] == {0: 0, 1: 1}
    assert info["sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert (len(ds.Y_train), len(ds.Y_val), len(ds.Y_test)) == (22, 6, 12)
    raw, y = rows_of(ds, info)
    idx = np.rint(raw[:, 0]).astype(int)
    assert sorted(idx) == list(range(40))
    np.testing.assert_allclose(raw[:, 1], 10 * idx, atol=1e-3)
    assert np.array_equal(y, np.array(labels, float)[idx])


@pytest.mark.parametrize(("labels", "mapping"), [
    (["M", "B", "B", "M", "B", "M"] * 2, {"B": 0, "M": 1}),
    ([4, 2, 2, 4, 4, 2] * 2, {2: 0, 4: 1}),
    ([10, 9, 9, 10, 9, 10] * 2, {9: 0, 10: 1}),  # numeric order, not string order
    ([" yes", "no", "yes ", "no", "no", "yes"] * 2, {"no": 0, "yes": 1}),
    ([0.5, -1.5, 0.5, -1.5, 0.5, 0.5] * 2, {-1.5: 0, 0.5: 1}),
])
def test_load_csv_label_mapping(tmp_path, labels, mapping):
    ds, info = data.load_csv(write(tmp_path, csv_text(labels)), "label", test_fraction=0.5)
    assert info["label_map"] == mapping
    raw, y = rows_of(ds, info)
    idx = np.rint(raw[:, 0]).astype(int)
    clean = [lab.strip() if isinstance(lab, str) else lab for lab in labels]
    assert np.array_equal(y, np.array([mapping[clean[i]] for i in idx], float))


def test_load_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"path=.*nope\.csv.*no such file"):
        data.load_csv(tmp_path / "nope.csv", "label")


def test_load_csv_missing_column_lists_columns(tmp_path):
    path = write(tmp_path, csv_text([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"target='y'.*available columns: \['a', 'label', 'b'\]"):
        data.load_csv(path, "y")


@pytest.mark.parametrize(("cell", "match"), [
    ("abc", r"non-numeric, NaN or infinite value 'abc' in column 'b', row 2 in path="),
    ("", r"empty cell in column 'b', row 2 in path="),
    ("nan", r"non-numeric, NaN or infinite value 'nan' in column 'b', row 2"),
    ("inf", r"non-numeric, NaN or infinite value 'inf' in column 'b', row 2"),
])
def test_load_csv_bad_feature_cell(tmp_path, cell, match):
    text = f"a,label,b\n1,0,2\n3,1,{cell}\n5,0,6\n7,1,8\n"
    with pytest.raises(ValueError, match=match):
        data.load_csv(write(tmp_path, text), "label")


@pytest.mark.parametrize(("labels", "match"), [
    (["x", "y", "z", "x"], r"expected exactly 2 distinct values, found 3: 'x', 'y', 'z'"),
    ([1, 1, 1, 1], r"expected exactly 2 distinct values, found 1: 1\b"),
    (list(range(8)), r"found 8: 0, 1, 2, 3, 4, \.\.\."),
])
def test_load_csv_target_not_two_valued(tmp_path, labels, match):
    with pytest.raises(ValueError, match=match):
        data.load_csv(write(tmp_path, csv_text(labels)), "label")


def test_load_csv_bad_target_cells(tmp_path):
    with pytest.raises(ValueError, match=r"empty cell in column 'label', row 3"):
        data.load_csv(write(tmp_path, "a,label\n1,0\n2,1\n3,\n"), "label")
    with pytest.raises(ValueError, match=r"NaN or infinite value 'nan' in column 'label', row 1"):
        data.load_csv(write(tmp_path, "a,label\n1,nan\n2,1\n3,0\n"), "label")


def test_load_csv_ragged_and_empty(tmp_path):
    with pytest.raises(ValueError, match=r"empty cell in column 'b', row 2"):
        data.load_csv(write(tmp_path, "a,label,b\n1,0,2\n3,1\n"), "label")
    with pytest.raises(ValueError, match=r"Expected 3 fields in line 3, saw 4"):
        data.load_csv(write(tmp_path, "a,label,b\n1,0,2\n3,1,4,5\n"), "label")
    with pytest.raises(ValueError, match="header row is required"):
        data.load_csv(write(tmp_path, ""), "label")
    with pytest.raises(ValueError, match="first row looks like data: a header row"):
        data.load_csv(write(tmp_path, "1,0,2\n3,1,4\n"), "label")
    with pytest.raises(ValueError, match="no data rows"):
        data.load_csv(write(tmp_path, "a,label\n"), "label")
    with pytest.raises(ValueError, match="no feature columns"):
        data.load_csv(write(tmp_path, "label\n0\n1\n"), "label")
    with pytest.raises(ValueError, match=r"duplicate column names \['a'\]"):
        data.load_csv(write(tmp_path, "a,label,a\n1,0,2\n3,1,4\n"), "label")
    with pytest.raises(ValueError, match=r"test_fraction: expected a number in \(0, 1\), got 0"):
        data.load_csv(write(tmp_path, csv_text([0, 1])), "label", test_fraction=0)

"""Synthetic tasks, split and scaling, breast cancer and CSV loading against independent checks."""

import sys

import jax
import numpy as np
import pytest

from shortcut_jax import data

NAMES = ("linear", "xor", "moons", "circles", "spirals", "linear_xor")
KEY = jax.random.key(0)
# one size for (almost) every call, so each jitted generator compiles once or twice per run
N, D = 2001, 5
N_TRAIN, N_TEST = 1601, 400


def np_(a):
    return np.asarray(a, np.float64)


# --------------------------------------------------------------------------- generators


def test_registry_names():
    assert tuple(data.SYNTHETIC) == NAMES
    assert data.DATASETS == (*NAMES, "breast_cancer")


@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("name", NAMES)
def test_generator_shapes_dtypes_balanced(name, d):
    n = N
    X, Y = data.SYNTHETIC[name](KEY, n, d)
    assert X.shape == (n, d) and X.dtype == np.float32
    assert Y.shape == (n,) and Y.dtype == np.float32
    assert set(np.unique(np_(Y))) == {0.0, 1.0}
    assert int(np_(Y).sum()) == n // 2  # balanced by construction: floor(n/2) ones
    assert np.isfinite(np_(X)).all()


@pytest.mark.parametrize("name", NAMES)
def test_generator_determinism(name):
    gen = data.SYNTHETIC[name]
    X1, Y1 = gen(jax.random.key(3), N, D)
    X2, Y2 = gen(jax.random.key(3), N, D)
    X3, Y3 = gen(jax.random.key(4), N, D)
    assert np.array_equal(np.asarray(X1), np.asarray(X2))
    assert np.array_equal(np.asarray(Y1), np.asarray(Y2))
    assert not np.array_equal(np.asarray(X1), np.asarray(X3))
    assert not np.array_equal(np.asarray(Y1), np.asarray(Y3))


def test_float32_even_with_x64(x64):
    X, Y = data.moons(KEY, 10, 3)
    assert X.dtype == np.float32 and Y.dtype == np.float32


def test_linear_rule_and_margin():
    margin = 0.25
    X, Y = data.linear(KEY, N, D, noise=0.0, margin=margin)
    s = np_(X)[:, :2] @ np.array([0.6, 0.8])
    assert np.array_equal(np_(Y), (s > 0).astype(float))
    assert np.abs(s).min() >= margin - 1e-6
    assert np.abs(s).min() < margin + 0.01  # the margin is attained, not exceeded by far


def test_xor_rule():
    X, Y = data.xor(KEY, N, D, noise=0.0)
    X = np_(X)[:, :2]
    assert np.array_equal(np_(Y), (X[:, 0] * X[:, 1] > 0).astype(float))
    assert np.abs(X).max() <= 1.0


def test_linear_xor_rule():
    X, Y = data.linear_xor(KEY, N, D, noise=0.0)
    X = np_(X)[:, :2]
    assert np.array_equal(np_(Y), (X[:, 0] + 2.0 * X[:, 0] * X[:, 1] > 0).astype(float))
    assert np.abs(X).max() <= 1.0


def test_moons_geometry():
    X, Y = data.moons(KEY, N, D, noise=0.0)
    X, Y = np_(X)[:, :2], np_(Y)
    up, lo = X[Y == 0], X[Y == 1]
    np.testing.assert_allclose((up**2).sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(((lo - [1.0, 0.5]) ** 2).sum(1), 1.0, atol=1e-5)
    assert (up[:, 1] >= -1e-6).all() and (lo[:, 1] <= 0.5 + 1e-6).all()


def test_circles_radii():
    X, Y = data.circles(KEY, N, D, noise=0.0, factor=0.3)
    r = np.linalg.norm(np_(X)[:, :2], axis=1)
    np.testing.assert_allclose(r, np.where(np_(Y) == 1, 0.3, 1.0), atol=1e-5)


def test_spirals_geometry():
    X, Y = data.spirals(KEY, N, D, noise=0.0)
    X, Y = np_(X)[:, :2], np_(Y)
    r = np.linalg.norm(X, axis=1)
    t = (r - 0.1) / 0.9
    assert (t > -1e-5).all() and (t < 1 + 1e-5).all()
    angle = 2 * np.pi * 1.5 * t + np.pi * Y
    np.testing.assert_allclose(
        X, r[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1), atol=1e-4
    )


@pytest.mark.parametrize("name", NAMES)
def test_noise_is_jitter_on_the_two_task_coordinates(name):
    gen = data.SYNTHETIC[name]
    X0, Y0 = gen(KEY, N, D, noise=0.0)
    X1, Y1 = gen(KEY, N, D, noise=0.2)
    assert np.array_equal(np.asarray(Y0), np.asarray(Y1))  # labels fixed before the jitter
    diff = np_(X1) - np_(X0)
    np.testing.assert_allclose(diff[:, :2].std(0), 0.2, rtol=0.1)
    np.testing.assert_allclose(diff[:, :2].mean(0), 0.0, atol=0.02)
    assert np.array_equal(diff[:, 2:], np.zeros((N, D - 2)))


@pytest.mark.parametrize("name", NAMES)
def test_extra_features_are_standard_normal_noise(name):
    X, Y = data.SYNTHETIC[name](KEY, N, D)
    extra, y = np_(X)[:, 2:], np_(Y)
    np.testing.assert_allclose(extra.mean(0), 0.0, atol=0.06)
    np.testing.assert_allclose(extra.std(0), 1.0, atol=0.06)
    for col in extra.T:
        assert abs(np.corrcoef(col, y)[0, 1]) < 0.06


def test_linear_task_is_separable_and_linear_xor_is_not():
    lm = pytest.importorskip("sklearn.linear_model")
    ds = data.make_synthetic("linear", KEY, N_TRAIN, N_TEST, d=D, noise=0.0)
    clf = lm.Perceptron(tol=None, max_iter=1000, random_state=0)
    clf.fit(np_(ds.X_train), np_(ds.Y_train))
    assert clf.score(np_(ds.X_train), np_(ds.Y_train)) == 1.0
    assert clf.score(np_(ds.X_test), np_(ds.Y_test)) > 0.98
    # linear_xor: a linear rule gets the x1 part (~75%) but cannot get the product part
    ds = data.make_synthetic("linear_xor", KEY, N_TRAIN, N_TEST, d=D, noise=0.0)
    clf = lm.LogisticRegression(max_iter=10_000).fit(np_(ds.X_train), np_(ds.Y_train))
    assert 0.65 < clf.score(np_(ds.X_train), np_(ds.Y_train)) < 0.85


def test_jit_matches_eager():
    jitted = jax.jit(data.make_synthetic, static_argnums=(0, 2, 3, 4))
    got = jitted("linear_xor", KEY, N_TRAIN, N_TEST, D, 0.1)
    want = data.make_synthetic("linear_xor", KEY, N_TRAIN, N_TEST, D, 0.1)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np_(a), np_(b), atol=1e-5)


# --------------------------------------------------------------------------- split and scale


def test_standardize_uses_train_statistics_only():
    rng = np.random.default_rng(0)
    Xtr = rng.normal([1.0, -3.0, 10.0], [2.0, 0.5, 4.0], size=(200, 3))
    Xte = rng.normal([5.0, 0.0, -2.0], [1.0, 3.0, 1.0], size=(80, 3))
    Ztr, Zte, mean, std = data.standardize(Xtr.astype(np.float32), Xte.astype(np.float32))
    np.testing.assert_allclose(np_(mean), Xtr.mean(0), rtol=1e-5)
    np.testing.assert_allclose(np_(std), Xtr.std(0), rtol=1e-5)
    np.testing.assert_allclose(np_(Ztr).mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np_(Ztr).std(0), 1.0, atol=1e-5)
    expected_test_mean = (Xte.mean(0) - Xtr.mean(0)) / Xtr.std(0)
    np.testing.assert_allclose(np_(Zte).mean(0), expected_test_mean, atol=1e-4)
    np.testing.assert_allclose(np_(Zte).std(0), Xte.std(0) / Xtr.std(0), rtol=1e-4)


def test_standardize_constant_column_gets_std_one():
    Xtr = np.array([[0.1, 1.0], [0.1, 2.0], [0.1, 3.0]], np.float32)
    Xte = np.array([[0.6, 2.0]], np.float32)
    Ztr, Zte, mean, std = data.standardize(Xtr, Xte)
    assert np_(std)[0] == 1.0 and np_(mean)[0] == np.float32(0.1)
    assert np.array_equal(np_(Ztr)[:, 0], np.zeros(3))
    np.testing.assert_allclose(np_(Zte)[0], [0.5, 0.0], atol=1e-6)
    assert np.isfinite(np_(Ztr)).all()


def test_train_test_split_is_a_partition_keeping_pairs():
    n = 30
    X = np.stack([np.arange(n), -np.arange(n)], 1).astype(np.float32)
    Y = (np.arange(n) % 3 == 0).astype(np.float32)
    ds = data.train_test_split(KEY, X, Y, 7)
    assert ds.X_train.shape == (23, 2) and ds.X_test.shape == (7, 2)
    ids = np.concatenate([np_(ds.X_train)[:, 0], np_(ds.X_test)[:, 0]]).astype(int)
    assert sorted(ids) == list(range(n))
    assert not np.array_equal(ids, np.arange(n))  # actually shuffled
    for Xs, Ys in ((ds.X_train, ds.Y_train), (ds.X_test, ds.Y_test)):
        i = np_(Xs)[:, 0].astype(int)
        assert np.array_equal(np_(Xs)[:, 1], -i)
        assert np.array_equal(np_(Ys), Y[i])


@pytest.mark.parametrize("name", NAMES)
def test_make_synthetic(name):
    ds = data.make_synthetic(name, KEY, N_TRAIN, N_TEST, d=D)
    assert isinstance(ds, data.Dataset)
    assert [a.shape for a in ds] == [(N_TRAIN, D), (N_TRAIN,), (N_TEST, D), (N_TEST,)]
    assert all(a.dtype == np.float32 for a in ds)
    np.testing.assert_allclose(np_(ds.X_train).mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np_(ds.X_train).std(0), 1.0, atol=1e-5)
    assert set(np.unique(np_(ds.Y_train))) == {0.0, 1.0}
    assert set(np.unique(np_(ds.Y_test))) == {0.0, 1.0}
    # all points are distinct draws: no test row is also a train row
    rows = np.concatenate([np_(ds.X_train), np_(ds.X_test)])
    assert len(np.unique(rows, axis=0)) == N
    again = data.make_synthetic(name, KEY, N_TRAIN, N_TEST, d=D)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(ds, again))
    other = data.make_synthetic(name, jax.random.key(1), N_TRAIN, N_TEST, d=D)
    assert not np.array_equal(np.asarray(ds.X_train), np.asarray(other.X_train))


def test_make_synthetic_scales_the_generator_output_with_train_statistics():
    ds = data.make_synthetic("moons", KEY, N_TRAIN, N_TEST, d=D, noise=0.1)
    # the generator gets the first half of the split key (the second one draws the split)
    X, Y = data.moons(jax.random.split(KEY)[0], N, D, noise=0.1)
    X, Y = np_(X), np_(Y)
    out = np.concatenate([np_(ds.X_train), np_(ds.X_test)])
    # the scaling is an affine map per column: fit it on the sorted columns ...
    pred = np.empty_like(X)
    for j in range(D):
        slope, intercept = np.polyfit(np.sort(X[:, j]), np.sort(out[:, j]), 1)
        pred[:, j] = slope * X[:, j] + intercept
    # ... to pair each output row with its nearest raw row (float32 rounding makes ranks tie)
    d2 = (out**2).sum(1)[:, None] + (pred**2).sum(1)[None, :] - 2.0 * out @ pred.T
    match = d2.argmin(axis=1)
    assert sorted(match) == list(range(N))
    raw = X[match]
    assert np.array_equal(Y[match], np.concatenate([np_(ds.Y_train), np_(ds.Y_test)]))
    # the statistics are those of the raw rows that went to train, and only of those
    mean, std = raw[:N_TRAIN].mean(0), raw[:N_TRAIN].std(0)
    np.testing.assert_allclose(out, (raw - mean) / std, atol=1e-4)


def test_make_synthetic_defaults_and_kwargs():
    default = data.make_synthetic("circles", KEY, N_TRAIN, N_TEST, D)
    explicit = data.make_synthetic("circles", KEY, N_TRAIN, N_TEST, D, noise=0.05, factor=0.5)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(default, explicit))
    other = data.make_synthetic("circles", KEY, N_TRAIN, N_TEST, D, factor=0.2)
    assert not np.array_equal(np.asarray(default.X_train), np.asarray(other.X_train))
    empty = data.make_synthetic("xor", KEY, N, 0, D)
    assert empty.X_test.shape == (0, D) and empty.Y_test.shape == (0,)
    assert empty.X_train.shape == (N, D)


def test_vmap_over_keys_matches_loop():
    keys = jax.random.split(KEY, 3)
    batched = jax.vmap(lambda k: data.make_synthetic("spirals", k, N_TRAIN, N_TEST, d=D))(keys)
    shapes = [(3, N_TRAIN, D), (3, N_TRAIN), (3, N_TEST, D), (3, N_TEST)]
    assert [a.shape for a in batched] == shapes
    for i in range(3):
        single = data.make_synthetic("spirals", keys[i], N_TRAIN, N_TEST, d=D)
        for a, b in zip(batched, single):
            np.testing.assert_allclose(np_(a)[i], np_(b), atol=1e-5)
    assert not np.array_equal(np_(batched.X_train[0]), np_(batched.X_train[1]))


def test_get_dataset():
    got = data.get_dataset("xor", KEY, n_train=N_TRAIN, n_test=N_TEST, d=D, noise=0.2)
    want = data.make_synthetic("xor", KEY, N_TRAIN, N_TEST, d=D, noise=0.2)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(got, want))
    with pytest.raises(ValueError, match="linear, xor, .*breast_cancer; got 'mnist'"):
        data.get_dataset("mnist", KEY)


def test_make_synthetic_unknown_name_lists_known():
    with pytest.raises(ValueError, match="linear, xor, moons, circles, spirals, linear_xor"):
        data.make_synthetic("swiss_roll", KEY, 10, 5)


# --------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: data.linear(KEY, 0), r"\bn must be >= 1, got 0"),
        (lambda: data.xor(KEY, 10, d=1), r"\bd must be >= 2, got 1"),
        (lambda: data.moons(KEY, 10, noise=-0.1), r"noise must be >= 0.0, got -0.1"),
        (lambda: data.spirals(KEY, 10, noise=float("nan")), r"noise must be >= 0.0, got nan"),
        (lambda: data.linear(KEY, 10, margin=-1.0), r"margin must be >= 0.0, got -1.0"),
        (lambda: data.circles(KEY, 10, factor=1.5), r"factor must be > 0.0 and < 1.0, got 1.5"),
        (lambda: data.circles(KEY, 10, factor=0.0), r"factor must be > 0.0 and < 1.0, got 0.0"),
        (lambda: data.make_synthetic("xor", KEY, 0, 5), r"n_train must be >= 1, got 0"),
        (lambda: data.make_synthetic("xor", KEY, 5, -1), r"n_test must be >= 0, got -1"),
        (lambda: data.make_synthetic("xor", KEY, 5, 5, d=1), r"\bd must be >= 2, got 1"),
        (
            lambda: data.train_test_split(KEY, np.zeros((4, 2)), np.zeros(4), 4),
            r"n_test must be <= n - 1 = 3.*got 4",
        ),
        (
            lambda: data.train_test_split(KEY, np.zeros((4, 2)), np.zeros(3), 1),
            r"X must be \(n, d\) and Y \(n,\)",
        ),
        (
            lambda: data.standardize(np.zeros((4, 2)), np.zeros((4, 3))),
            r"same d, got \(4, 2\) and \(4, 3\)",
        ),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match=r"\bn must be an int >= 1, got 2.5"):
        data.linear(KEY, 2.5)
    with pytest.raises(TypeError, match=r"noise must be a number, got True"):
        data.xor(KEY, 5, noise=True)


# --------------------------------------------------------------------------- breast cancer


def test_breast_cancer():
    datasets = pytest.importorskip("sklearn.datasets")
    ds = data.breast_cancer(KEY)
    assert ds.X_train.shape == (398, 30) and ds.X_test.shape == (171, 30)
    assert ds.Y_train.shape == (398,) and ds.Y_test.shape == (171,)
    assert all(a.dtype == np.float32 for a in ds)
    y = np.concatenate([np_(ds.Y_train), np_(ds.Y_test)])
    assert y.sum() == datasets.load_breast_cancer().target.sum()  # 357 benign (y = 1)
    np.testing.assert_allclose(np_(ds.X_train).mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np_(ds.X_train).std(0), 1.0, atol=1e-4)
    assert data.get_dataset("breast_cancer", KEY).X_train.shape == (398, 30)
    with pytest.raises(ValueError, match="test_fraction must be > 0.0 and < 1.0, got 1.0"):
        data.breast_cancer(KEY, test_fraction=1.0)


def test_breast_cancer_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'shortcut-jax\[experiments\]'"):
        data.breast_cancer(KEY)


# --------------------------------------------------------------------------- CSV


def write(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def csv_text(labels):
    """Header a,label,b; a = row index, b = 10 * row index, the given labels."""
    lines = ["a,label,b"] + [f"{i},{lab},{10 * i}" for i, lab in enumerate(labels)]
    return "\n".join(lines) + "\n"


def unscale(X, info):
    return np_(X) * np.asarray(info["std"])[None, :] + np.asarray(info["mean"])[None, :]


def test_load_csv_roundtrip(tmp_path):
    labels = [0, 1] * 10
    ds, info = data.load_csv(write(tmp_path, csv_text(labels)), "label", key=KEY)
    assert info["feature_names"] == ["a", "b"]
    assert info["label_map"] == {0: 0, 1: 1}
    assert (info["n_train"], info["n_test"]) == (14, 6)
    assert ds.X_train.shape == (14, 2) and ds.X_test.shape == (6, 2)
    assert all(a.dtype == np.float32 for a in ds)
    np.testing.assert_allclose(np_(ds.X_train).mean(0), 0.0, atol=1e-5)
    raw = np.concatenate([unscale(ds.X_train, info), unscale(ds.X_test, info)])
    idx = np.rint(raw[:, 0]).astype(int)
    assert sorted(idx) == list(range(20))
    np.testing.assert_allclose(raw[:, 1], 10 * idx, atol=1e-3)
    y = np.concatenate([np_(ds.Y_train), np_(ds.Y_test)])
    assert np.array_equal(y, np.array(labels, float)[idx])


@pytest.mark.parametrize(
    ("labels", "mapping"),
    [
        (["M", "B", "B", "M", "B", "M"], {"B": 0, "M": 1}),
        ([4, 2, 2, 4, 4, 2], {2: 0, 4: 1}),
        ([10, 9, 9, 10, 9, 10], {9: 0, 10: 1}),  # numeric order, not string order
        ([" yes", "no", "yes ", "no", "no", "yes"], {"no": 0, "yes": 1}),
        ([0.5, -1.5, 0.5, -1.5, 0.5, 0.5], {-1.5: 0, 0.5: 1}),
    ],
)
def test_load_csv_label_mapping(tmp_path, labels, mapping):
    ds, info = data.load_csv(write(tmp_path, csv_text(labels)), "label", key=KEY, test_fraction=0.5)
    assert info["label_map"] == mapping
    raw = np.concatenate([unscale(ds.X_train, info), unscale(ds.X_test, info)])
    idx = np.rint(raw[:, 0]).astype(int)
    y = np.concatenate([np_(ds.Y_train), np_(ds.Y_test)])
    clean = [lab.strip() if isinstance(lab, str) else lab for lab in labels]
    assert np.array_equal(y, np.array([mapping[clean[i]] for i in idx], float))


def test_load_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"path=.*nope\.csv.*no such file"):
        data.load_csv(tmp_path / "nope.csv", "label", key=KEY)


def test_load_csv_missing_column_lists_columns(tmp_path):
    path = write(tmp_path, csv_text([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"target='y'.*available columns: \['a', 'label', 'b'\]"):
        data.load_csv(path, "y", key=KEY)


@pytest.mark.parametrize(
    ("cell", "match"),
    [
        ("abc", r"non-numeric value 'abc' in column 'b', row 2 \(line 3\)"),
        ("", r"empty cell in column 'b', row 2 \(line 3\)"),
        ("nan", r"NaN or infinite value 'nan' in column 'b', row 2 \(line 3\)"),
        ("NaN", r"NaN or infinite value 'NaN' in column 'b', row 2 \(line 3\)"),
        ("inf", r"NaN or infinite value 'inf' in column 'b', row 2 \(line 3\)"),
    ],
)
def test_load_csv_bad_feature_cell(tmp_path, cell, match):
    text = f"a,label,b\n1,0,2\n3,1,{cell}\n5,0,6\n7,1,8\n"
    with pytest.raises(ValueError, match=match):
        data.load_csv(write(tmp_path, text), "label", key=KEY)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (["x", "y", "z", "x"], r"exactly 2 distinct values, found 3: 'x', 'y', 'z'"),
        ([1, 1, 1, 1], r"exactly 2 distinct values, found 1: 1\b"),
        (list(range(8)), r"found 8: 0, 1, 2, 3, 4, \.\.\."),
    ],
)
def test_load_csv_target_not_two_valued(tmp_path, labels, match):
    with pytest.raises(ValueError, match=match):
        data.load_csv(write(tmp_path, csv_text(labels)), "label", key=KEY)


def test_load_csv_bad_target_cells(tmp_path):
    with pytest.raises(ValueError, match=r"empty cell in column 'label', row 3 \(line 4\)"):
        data.load_csv(write(tmp_path, "a,label\n1,0\n2,1\n3,\n"), "label", key=KEY)
    with pytest.raises(ValueError, match=r"NaN or infinite value 'nan' in column 'label', row 1"):
        data.load_csv(write(tmp_path, "a,label\n1,nan\n2,1\n3,0\n"), "label", key=KEY)


def test_load_csv_ragged_and_empty(tmp_path):
    with pytest.raises(ValueError, match=r"row 2 \(line 3\).* has 2 cells, the header has 3"):
        data.load_csv(write(tmp_path, "a,label,b\n1,0,2\n3,1\n"), "label", key=KEY)
    with pytest.raises(ValueError, match="header row is required"):
        data.load_csv(write(tmp_path, ""), "label", key=KEY)
    with pytest.raises(ValueError, match="first row looks like data: a header row"):
        data.load_csv(write(tmp_path, "1,0,2\n3,1,4\n"), "label", key=KEY)
    with pytest.raises(ValueError, match="no data rows"):
        data.load_csv(write(tmp_path, "a,label\n"), "label", key=KEY)
    with pytest.raises(ValueError, match="no feature columns"):
        data.load_csv(write(tmp_path, "label\n0\n1\n"), "label", key=KEY)
    with pytest.raises(ValueError, match=r"test_fraction must be > 0.0 and < 1.0, got 0"):
        data.load_csv(write(tmp_path, csv_text([0, 1])), "label", key=KEY, test_fraction=0)

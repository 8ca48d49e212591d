"""shortcut_jax.plots on a small synthetic sweep table with hand-computed values."""

import csv
import io

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import jax  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import shortcut_jax  # noqa: E402
from shortcut_jax import plots  # noqa: E402
from shortcut_jax.stats import mean_ci  # noqa: E402

VARIANTS = ("plain", "shortcut")
WIDTHS = (4, 16)
LRS = (0.01, 0.1)
SEEDS = (0, 1, 2)
STEPS = (0, 50, 100)
COLUMNS = (
    "dataset data_seed variant width lr seed optimizer loss_fn batch_size step train_loss "
    "train_acc test_loss test_acc grad_norm dead_frac saturated_frac shortcut_share max_overlap "
    "grad_norm_W1 grad_norm_b1 grad_norm_W2 grad_norm_b2 grad_norm_W"
).split()

# Accuracy gained by the last step, per (variant, width, lr). Best lr: plain 0.1 at width 4 and
# 0.01 at width 16; shortcut 0.01 at width 4 and 0.1 at width 16.
RATE = {
    ("plain", 4, 0.01): 0.10,
    ("plain", 4, 0.1): 0.20,
    ("plain", 16, 0.01): 0.25,
    ("plain", 16, 0.1): 0.15,
    ("shortcut", 4, 0.01): 0.30,
    ("shortcut", 4, 0.1): 0.22,
    ("shortcut", 16, 0.01): 0.24,
    ("shortcut", 16, 0.1): 0.35,
}
BEST = {("plain", 4): 0.1, ("plain", 16): 0.01, ("shortcut", 4): 0.01, ("shortcut", 16): 0.1}


def acc(variant, width, lr, seed, step):
    noise = (0.01 if variant == "plain" else 0.02) * seed
    return 0.5 + RATE[(variant, width, lr)] * step / 100 + noise


def dead(variant, width, lr, seed, step):
    return (0.05 if variant == "plain" else 0.02) * (1 + seed) * (1 + step / 100) + lr


def make_rows(datasets=("xor",)):
    """The sweep table as csv.DictReader gives it back: every value a string."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    for ds in datasets:
        for v in VARIANTS:
            for w in WIDTHS:
                for lr in LRS:
                    for s in SEEDS:
                        for t in STEPS:
                            a = acc(v, w, lr, s, t)
                            writer.writerow({
                                "dataset": ds, "data_seed": 0, "variant": v, "width": w,
                                "lr": lr, "seed": s, "optimizer": "sgd", "loss_fn": "mse",
                                "batch_size": "full", "step": t, "train_loss": repr(0.3 - a / 4),
                                "train_acc": repr(a + 0.01), "test_loss": repr(1.0 - a),
                                "test_acc": repr(a), "grad_norm": repr(1.0 / (1 + t + s)),
                                "dead_frac": repr(dead(v, w, lr, s, t)),
                                "saturated_frac": repr(0.001 * t), "max_overlap": "0.5",
                                "shortcut_share": "0.0" if v == "plain" else repr(0.1 + 0.001 * t),
                                "grad_norm_W1": "0.1", "grad_norm_b1": "0.1", "grad_norm_W2": "0.1",
                                "grad_norm_b2": "0.1", "grad_norm_W": "" if v == "plain" else "0.1",
                            })
    return list(csv.DictReader(io.StringIO(buf.getvalue())))


@pytest.fixture(scope="module")
def rows():
    r = make_rows()
    assert len(r) == 2 * 2 * 2 * 3 * 3 and all(isinstance(x, str) for x in r[0].values())
    return r


def seed_mean(fn, variant, width, lr, step):
    return np.mean([fn(variant, width, lr, s, step) for s in SEEDS])


def check_png(fig, tmp_path):
    assert isinstance(fig, Figure)
    assert fig.get_dpi() == 100
    assert fig.get_suptitle()
    path = tmp_path / "x.png"
    fig.savefig(path, dpi=50)  # small: the check is that it renders, not how it looks
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def line_by_label(ax, prefix):
    (line,) = [ln for ln in ax.lines if ln.get_label().startswith(prefix)]
    return line


# --------------------------------------------------------------------------------------
# learning_curves
# --------------------------------------------------------------------------------------


def test_learning_curves_best_lr_seed_mean(rows, tmp_path):
    fig = plots.learning_curves(rows, metric="test_acc")
    assert len(fig.axes) == len(WIDTHS)
    for ax, w in zip(fig.axes, WIDTHS):
        assert ax.get_title() == f"width {w}"
        assert ax.get_xlabel() == "step" and ax.get_ylabel() == "test_acc"
        assert ax.get_legend() is not None
        assert len(ax.lines) == 2  # one lr per variant
        for v in VARIANTS:
            lr = BEST[(v, w)]
            line = line_by_label(ax, f"{v}, lr={lr:g} (n=3)")
            np.testing.assert_allclose(line.get_xdata(), STEPS)
            want = [seed_mean(acc, v, w, lr, t) for t in STEPS]
            np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-12)
    # the CI band of the last line equals stats.mean_ci at the last step
    band = fig.axes[-1].collections[-1].get_paths()[0].vertices
    _, lo, hi = mean_ci([acc("shortcut", 16, 0.1, s, 100) for s in SEEDS])
    ys = band[np.isclose(band[:, 0], 100.0), 1]
    assert np.isclose(ys.min(), lo) and np.isclose(ys.max(), hi)
    check_png(fig, tmp_path)


def test_learning_curves_loss_picks_lowest_and_lr_options(rows, tmp_path):
    # test_loss = 1 - test_acc: the lowest final loss is the same best lr as the highest acc
    fig = plots.learning_curves(rows, metric="test_loss")
    line = line_by_label(fig.axes[0], "plain, lr=0.1")
    np.testing.assert_allclose(line.get_ydata(), [1 - seed_mean(acc, "plain", 4, 0.1, t)
                                                  for t in STEPS], rtol=1e-12)
    fig = plots.learning_curves(rows, lr="all")
    assert [len(ax.lines) for ax in fig.axes] == [4, 4]
    assert {ln.get_linestyle() for ln in fig.axes[0].lines} == {"-", "--"}
    fig = plots.learning_curves(rows, lr="0.01", dataset="xor")
    assert all(ln.get_label().split(", ")[1].startswith("lr=0.01") for ln in fig.axes[1].lines)
    check_png(fig, tmp_path)
    with pytest.raises(ValueError, match="lr"):
        plots.learning_curves(rows, lr=0.3)
    with pytest.raises(ValueError, match="lr"):
        plots.learning_curves(rows, lr="fastest")
    with pytest.raises(ValueError, match="select_by"):
        plots.learning_curves(rows, select_by="dead_frac")


# --------------------------------------------------------------------------------------
# metric_vs_width
# --------------------------------------------------------------------------------------


def test_metric_vs_width_one_panel_per_dataset(tmp_path):
    rows = make_rows(datasets=("xor", "moons"))
    fig = plots.metric_vs_width(rows, metric="test_acc")
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["xor", "moons"]
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("width")
    assert ax.get_ylabel() == "final test_acc" and ax.get_legend() is not None
    containers = {c.get_label(): c for c in ax.containers}
    assert set(containers) == set(VARIANTS)
    for v in VARIANTS:
        data_line = containers[v].lines[0]
        want = [seed_mean(acc, v, w, BEST[(v, w)], 100) for w in WIDTHS]
        np.testing.assert_allclose(data_line.get_ydata(), want, rtol=1e-12)
        np.testing.assert_allclose(data_line.get_xdata(), WIDTHS, rtol=0.05)
    # the chosen lr is written next to each point
    assert sorted(t.get_text() for t in ax.texts) == ["0.01", "0.01", "0.1", "0.1"]
    check_png(fig, tmp_path)


def test_metric_vs_width_fixed_lr(rows):
    fig = plots.metric_vs_width(rows, metric="test_acc", lr=0.01)
    (ax,) = fig.axes
    data_line = [c for c in ax.containers if c.get_label() == "plain"][0].lines[0]
    np.testing.assert_allclose(data_line.get_ydata(),
                               [seed_mean(acc, "plain", w, 0.01, 100) for w in WIDTHS])
    assert not ax.texts


# --------------------------------------------------------------------------------------
# paired_heatmap
# --------------------------------------------------------------------------------------


def test_paired_heatmap_values_and_stars(rows, tmp_path):
    fig = plots.paired_heatmap(rows, metric="test_acc")
    assert len(fig.axes) == 2  # heatmap + colorbar
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("width") and ax.get_ylabel() == "learning rate"
    want = np.array([
        [
            np.mean([acc("shortcut", w, lr, s, 100) - acc("plain", w, lr, s, 100) for s in SEEDS])
            for w in WIDTHS
        ]
        for lr in LRS
    ])
    arr = np.ma.getdata(ax.images[0].get_array())
    np.testing.assert_allclose(arr, want, rtol=1e-9, atol=1e-12)
    # cell (lr=0.01, width=16) has mean difference 0: its CI includes 0, the others exclude it
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in ax.texts}
    assert texts[(0, 1)] == f"{want[0, 1]:+.3g}"
    assert all(texts[k].endswith("*") for k in [(0, 0), (1, 0), (1, 1)])
    # blue (RdBu high end) means shortcut better for accuracy; symmetric color limits
    norm = ax.images[0].norm
    assert ax.images[0].get_cmap().name == "RdBu" and norm.vmin == -norm.vmax
    check_png(fig, tmp_path)
    fig = plots.paired_heatmap(rows, metric="test_loss")
    np.testing.assert_allclose(np.ma.getdata(fig.axes[0].images[0].get_array()), -want,
                               rtol=1e-9, atol=1e-12)
    assert fig.axes[0].images[0].get_cmap().name == "RdBu_r"


def test_paired_heatmap_unpaired_seed_names_the_cell(rows):
    some = [r for r in rows if not (r["variant"] == "shortcut" and r["width"] == "16"
                                    and r["lr"] == "0.1" and r["seed"] == "2")]
    with pytest.raises(ValueError, match="width 16, lr 0.1: unpaired seeds"):
        plots.paired_heatmap(some)


def test_paired_heatmap_missing_variant_is_na(rows):
    some = [r for r in rows if not (r["variant"] == "shortcut" and r["width"] == "16")]
    ax = plots.paired_heatmap(some).axes[0]
    arr = ax.images[0].get_array()
    assert np.isnan(np.ma.getdata(arr)[:, 1]).all() and np.isfinite(np.ma.getdata(arr)[:, 0]).all()
    assert sum(t.get_text() == "n/a" for t in ax.texts) == 2


# --------------------------------------------------------------------------------------
# decision_boundaries
# --------------------------------------------------------------------------------------


def test_decision_boundaries(tmp_path):
    models = [
        shortcut_jax.init_params(jax.random.key(0), 2, 4),
        shortcut_jax.init_params(jax.random.key(1), 2, 4, shortcut=False),
    ]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    Y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
    fig = plots.decision_boundaries(models, X, Y, ["shortcut", "plain"], resolution=80)
    assert len(fig.axes) == 3  # two panels + one colorbar
    assert [ax.get_title() for ax in fig.axes[:2]] == ["shortcut", "plain"]
    ax = fig.axes[0]
    assert ax.get_legend() is not None and ax.get_xlabel() == "x1" and ax.get_ylabel() == "x2"
    scat = [c for c in ax.collections if c.get_label() == "y = 1"][0]
    np.testing.assert_allclose(scat.get_offsets(), X[Y == 1])
    check_png(fig, tmp_path)

    d3 = shortcut_jax.Params(W1=np.zeros((4, 3), np.float32), b1=np.zeros(4, np.float32),
                             W2=np.zeros((1, 4), np.float32), b2=np.float32(0.0))
    with pytest.raises(ValueError, match=r"models\[1\].*2-D"):
        plots.decision_boundaries([models[0], d3], X, Y, ["a", "b"])
    with pytest.raises(ValueError, match="X"):
        plots.decision_boundaries(models, np.zeros((30, 3)), Y, ["a", "b"])
    with pytest.raises(ValueError, match="Y"):
        plots.decision_boundaries(models, X, Y[:5], ["a", "b"])
    with pytest.raises(ValueError, match="titles"):
        plots.decision_boundaries(models, X, Y, ["only one"])
    with pytest.raises(ValueError, match="models"):
        plots.decision_boundaries([], X, Y, [])


# --------------------------------------------------------------------------------------
# diagnostics_over_training
# --------------------------------------------------------------------------------------


def test_diagnostics_over_training(rows, tmp_path):
    fig = plots.diagnostics_over_training(rows)
    assert len(fig.axes) == len(plots.DIAGNOSTICS) == 5
    assert [ax.get_title() for ax in fig.axes] == list(plots.DIAGNOSTICS)
    assert "width 4" in fig.get_suptitle()  # lower median of (4, 16)
    assert fig.axes[0].get_legend() is not None
    line = line_by_label(fig.axes[0], "shortcut, lr=0.01")  # best shortcut lr at width 4
    np.testing.assert_allclose(line.get_ydata(),
                               [seed_mean(dead, "shortcut", 4, 0.01, t) for t in STEPS])
    np.testing.assert_allclose(line_by_label(fig.axes[2], "plain").get_ydata(), 0.0)
    check_png(fig, tmp_path)

    fig = plots.diagnostics_over_training(rows, width=16, lr=0.1,
                                          metrics=["dead_frac", "grad_norm_W"])
    assert len(fig.axes) == 2 and "width 16" in fig.get_suptitle()
    np.testing.assert_allclose(line_by_label(fig.axes[0], "plain").get_ydata(),
                               [seed_mean(dead, "plain", 16, 0.1, t) for t in STEPS])
    # grad_norm_W is empty (NaN) for plain: nothing to draw
    assert np.isnan(line_by_label(fig.axes[1], "plain").get_ydata()).all()
    with pytest.raises(ValueError, match="width"):
        plots.diagnostics_over_training(rows, width=8)
    with pytest.raises(ValueError, match="metrics.*available columns"):
        plots.diagnostics_over_training(rows, metrics=["dead_frac", "nope"])


# --------------------------------------------------------------------------------------
# Bad inputs shared by the row-based figures
# --------------------------------------------------------------------------------------

ROW_FIGURES = [
    plots.learning_curves,
    plots.metric_vs_width,
    plots.paired_heatmap,
    plots.diagnostics_over_training,
]


@pytest.mark.parametrize("fn", ROW_FIGURES)
def test_empty_rows(fn):
    with pytest.raises(ValueError, match="rows"):
        fn([])


@pytest.mark.parametrize("fn", ROW_FIGURES[:3])
def test_unknown_metric_lists_columns(fn, rows):
    with pytest.raises(ValueError, match="metric") as info:
        fn(rows, metric="test_accuracy")
    assert "test_acc" in str(info.value) and "dead_frac" in str(info.value)
    with pytest.raises(ValueError, match="metric"):
        fn(rows, metric="width")  # an id column is not a metric


@pytest.mark.parametrize("fn", [plots.learning_curves, plots.paired_heatmap,
                                plots.diagnostics_over_training])
def test_unknown_dataset(fn, rows):
    with pytest.raises(ValueError, match="dataset.*xor"):
        fn(rows, dataset="spirals")


def test_mixed_optimizers_refused(rows):
    mixed = rows + [{**r, "optimizer": "adam"} for r in rows]
    with pytest.raises(ValueError, match="optimizer"):
        plots.learning_curves(mixed)


def test_duplicate_runs_refused(rows):
    with pytest.raises(ValueError, match="duplicate steps"):
        plots.paired_heatmap(rows + rows[:3])


def test_missing_column_and_non_numeric(rows):
    with pytest.raises(ValueError, match="rows.*step"):
        plots.learning_curves([{k: v for k, v in r.items() if k != "step"} for r in rows])
    bad = [dict(r) for r in rows]
    bad[0]["test_acc"] = "high"
    with pytest.raises(ValueError, match="test_acc"):
        plots.learning_curves(bad)


def test_nan_values_are_left_out(rows):
    # a diverged seed (NaN accuracy at every step) is left out of the mean
    rows = [dict(r) for r in rows]
    for r in rows:
        if (r["variant"], r["width"], r["lr"], r["seed"]) == ("plain", "4", "0.1", "2"):
            r["test_acc"] = "nan"
    fig = plots.learning_curves(rows)
    line = line_by_label(fig.axes[0], "plain, lr=0.1 (n=3)")
    want = [np.mean([acc("plain", 4, 0.1, s, t) for s in (0, 1)]) for t in STEPS]
    np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-12)

"""Figures of a results table: what each draws, from which runs, and its errors."""

import jax
import numpy as np
import pytest

pytest.importorskip("matplotlib")

import shortcut_jax as sj  # noqa: E402
from shortcut_jax import plots, stats  # noqa: E402
from tests import tables  # noqa: E402
from tests.tables import table  # noqa: E402

DIAG = {m: 0.1 for m in plots.DIAGNOSTICS}


def sweep_table(nan_seed=None):
    """2 widths x 2 lrs x 2 variants x 3 seeds x 3 steps of one dataset. On validation lr 0.1
    is best, on test lr 1.0, so a figure at the best lr must show lr 0.1's test values."""
    rows = []
    for width in (2, 8):
        for lr in (0.1, 1.0):
            for variant in ("plain", "shortcut"):
                for seed in range(3):
                    for step in (0, 10, 20):
                        acc = 0.5 + 0.01 * step + (0.1 if variant == "shortcut" else 0.0)
                        test = acc + (0.2 if lr == 1.0 else 0.0) + 0.01 * seed
                        if nan_seed == seed and step == 20 and variant == "plain":
                            test = np.nan
                        rows.append({"width": width, "lr": lr, "variant": variant,
                                     "seed": seed, "step": step,
                                     "shortcut_init": "zeros" if variant == "shortcut" else None,
                                     "val_acc": acc + (0.1 if lr == 0.1 else 0.0),
                                     "test_acc": test, "test_loss": 1 - test, **DIAG})
    return table(rows)


def test_learning_curves_draw_each_variant_at_its_validation_lr():
    fig = plots.learning_curves(sweep_table(), "test_acc")
    axes = fig.get_axes()
    assert len(axes) == 2  # one panel per width
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["plain, lr=0.1 (n=3)", "shortcut (zeros), lr=0.1 (n=3)"]
    line = axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [0, 10, 20])
    np.testing.assert_allclose(line.get_ydata(), [0.51, 0.61, 0.71])  # lr 0.1, not 1.0


def test_legends_count_only_seeds_with_finite_values():
    fig = plots.learning_curves(sweep_table(nan_seed=1), "test_acc")
    labels = [t.get_text() for t in fig.get_axes()[0].get_legend().get_texts()]
    assert labels[0] == "plain, lr=0.1 (n=2)"
    fig = plots.metric_vs_width(sweep_table(nan_seed=1), "test_acc")
    labels = [t.get_text() for t in fig.get_axes()[0].get_legend().get_texts()]
    assert labels == ["plain (n=2)", "shortcut (zeros) (n=3)"]


def test_metric_vs_width_points_and_chosen_lrs():
    fig = plots.metric_vs_width(sweep_table(), "test_acc")
    (ax,) = fig.get_axes()
    texts = {t.get_text() for t in ax.texts}
    assert texts == {"lr 0.1"}
    means = stats.summarize(stats.best_lr(sweep_table()), ("test_acc",))
    plotted = [y for line in ax.get_lines() for y in line.get_ydata()]
    for m in means["test_acc_mean"]:
        assert any(abs(m - y) < 1e-9 for y in plotted)


def test_paired_heatmap_cells_are_the_paired_means():
    df = sweep_table()
    fig = plots.paired_heatmap(df, "test_acc", x="width", y="lr")
    image = fig.get_axes()[0].get_images()[0].get_array()
    want = stats.paired(df, "test_acc", by=["lr", "width"])
    assert image.shape == (2, 2)
    for _, r in want.iterrows():
        i, j = [0.1, 1.0].index(r["lr"]), [2, 8].index(r["width"])
        assert image[i, j] == pytest.approx(r["diff_mean"])
    # every seed's difference is +0.1: a zero-spread interval, no verdict and no star
    assert "+0.1" in {t.get_text() for t in fig.get_axes()[0].texts}
    assert not any("*" in t.get_text() for t in fig.get_axes()[0].texts)


def test_heatmap_star_marks_a_holm_verdict():
    rows = []
    diffs = {2: 0.1 + 0.01 * np.arange(8), 8: [0.01, -0.02, 0.03, -0.01, 0.02, -0.03, 0.015,
                                               -0.005]}
    for width, diff in diffs.items():
        for seed in range(8):
            for variant in ("plain", "shortcut"):
                up = diff[seed] if variant == "shortcut" else 0.0
                rows.append({"width": width, "variant": variant, "seed": seed, "val_acc": 0.5,
                             "shortcut_init": "zeros" if variant == "shortcut" else None,
                             "test_acc": 0.5 + up})
    df = table(rows)
    want = stats.paired(df, "test_acc", by=["lr", "width"]).set_index("width")
    assert want.loc[2, "p_wilcoxon_holm"] < 0.05 and stats.significance(want.loc[2]) == 1
    texts = {t.get_text() for t in plots.paired_heatmap(df, "test_acc").get_axes()[0].texts}
    assert f"{want.loc[2, 'diff_mean']:+.3g}*" in texts
    assert f"{want.loc[8, 'diff_mean']:+.3g}" in texts


def test_fraction_intervals_in_figures_stay_within_0_and_1():
    rows = [{"variant": v, "seed": s, "step": step, "width": 4,
             "shortcut_init": "zeros" if v == "shortcut" else None, "val_acc": 0.9,
             "test_acc": 1.0 if s else 0.8, "test_loss": 0.1, **DIAG}
            for v in ("plain", "shortcut") for s in range(3) for step in (0, 10)]
    fig = plots.learning_curves(table(rows), "test_acc")
    ys = np.concatenate([c.get_paths()[0].vertices[:, 1] for c in fig.get_axes()[0].collections])
    assert ys.max() == 1.0 and ys.min() < 1.0  # the t band 0.933 +- 0.287, clipped
    fig = plots.metric_vs_width(table(rows), "test_acc")
    bars = [seg for c in fig.get_axes()[0].collections for seg in c.get_segments()]
    assert max(seg[:, 1].max() for seg in bars) == 1.0


def test_paired_vs_axis_one_line_per_hue_value():
    fig = plots.paired_vs_axis(sweep_table(), "width", metrics=("test_acc", "test_loss"))
    assert len(fig.get_axes()) == 2
    labels = [t.get_text() for t in fig.get_axes()[0].get_legend().get_texts()]
    assert labels == ["dataset xor (n=3)"]


def test_diagnostics_panels():
    fig = plots.diagnostics_over_training(sweep_table())
    assert [ax.get_title() for ax in fig.get_axes()] == list(plots.DIAGNOSTICS)
    with pytest.raises(ValueError, match=r"width: 5 is not a width of xor; expected one of "
                                         r"\[2, 8\]"):
        plots.diagnostics_over_training(sweep_table(), width=5)


@pytest.mark.parametrize("call, match", [
    (lambda df: plots.learning_curves(df, "nope"), r"df: no column 'nope'"),
    (lambda df: plots.learning_curves(df, dataset="moons"),
     r"dataset: 'moons' is not in the table; expected one of \['xor'\]"),
    (lambda df: plots.metric_vs_width(df.to_dict("records")), r"df: expected the DataFrame"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(sweep_table())


def test_decision_boundaries():
    X = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    Y = (X[:, 0] > 0).astype(np.float32)
    models = [sj.init_params(jax.random.key(0), 2, 3, shortcut=s) for s in (False, True)]
    fig = plots.decision_boundaries(models, X, Y, ["plain", "shortcut"])
    assert len(fig.get_axes()) == 3  # two panels and a colorbar
    with pytest.raises(ValueError, match=r"X: expected finite 2-D inputs of shape \(n, 2\)"):
        plots.decision_boundaries(models, X[:, :1], Y, ["a", "b"])
    with pytest.raises(ValueError, match=r"models, titles: expected one title per model"):
        plots.decision_boundaries(models, X, Y, ["a"])
    with pytest.raises(TypeError, match=r"models: expected a list of shortcut_jax.Params"):
        plots.decision_boundaries(models[0], X, Y, ["a"])


def texts_outside_the_canvas(fig) -> list[str]:
    """Rendered at the dpi the report saves with: the texts whose drawn extent leaves the figure
    (and the figure's tight bounding box where it leaves it), with 1 px of slack."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    FigureCanvasAgg(fig).draw()  # applies the figure's layout engine, as savefig does
    renderer = fig.canvas.get_renderer()
    box = fig.bbox.padded(1.0)
    ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
             for t in [*axis.get_ticklabels(), *axis.get_ticklabels(minor=True)]}
    out = []  # tick labels (only those in view are drawn) are in the tight bounding box below
    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip() and id(t) not in ticks:
            e = t.get_window_extent(renderer)
            inside = box.x0 <= e.x0 and e.x1 <= box.x1 and box.y0 <= e.y0 and e.y1 <= box.y1
            if not inside and (t.axes is None or not t.get_clip_on()
                               or t in (t.axes.title, t.axes.xaxis.label, t.axes.yaxis.label)):
                out.append(t.get_text())
    tight = fig.get_tightbbox(renderer)  # inches
    if not fig.bbox_inches.padded(1.0 / fig.dpi).contains(tight.x0, tight.y0) or \
            not fig.bbox_inches.padded(1.0 / fig.dpi).contains(tight.x1, tight.y1):
        out.append(f"tight bbox {tight.bounds} of a {fig.bbox_inches.bounds} figure")
    return out


def test_a_doubling_axis_is_drawn_on_log2_with_the_grids_values_as_ticks():
    fig = plots.paired_vs_axis(sweep_table(), "width", metrics=("test_acc",))
    (ax,) = fig.get_axes()
    assert ax.get_xscale() == "log"
    np.testing.assert_array_equal(ax.get_xticks(), [2, 8])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "8"]
    fig = plots.paired_vs_axis(sweep_table(), "lr", metrics=("test_acc",))  # not a doubling axis
    (ax,) = fig.get_axes()
    assert ax.get_xscale() == "linear"
    np.testing.assert_array_equal(ax.get_xticks(), [0.1, 1.0])


@pytest.mark.parametrize("sizes, scale, ticks", [
    (("16", "64", "256"), "log", ["16", "64", "256"]),  # batch sizes are category names
    (("16", "64", "full"), "linear", ["16", "64", "full"]),  # full batch: in order, last
])
def test_batch_size_on_log2_unless_one_is_the_full_batch(sizes, scale, ticks):
    rows = [{**k, "step": 20, "test_acc": 0.5 + 0.01 * k["seed"], "val_acc": 0.5}
            for k in tables.grid(batch_size=sizes)]
    df = table(rows)
    df["batch_size"] = df["batch_size"].cat.reorder_categories(list(sizes), ordered=True)
    (ax,) = plots.paired_vs_axis(df, "batch_size", metrics=("test_acc",)).get_axes()
    assert ax.get_xscale() == scale
    assert [t.get_text() for t in ax.get_xticklabels()] == ticks


@pytest.fixture(scope="module")
def teacher_report(tmp_path_factory):
    """The report of a tiny two-axis teacher sweep (2-D inputs, so with decision boundaries)."""
    out = tmp_path_factory.mktemp("figures") / "teacher"
    sj.run_sweep(sj.Grid(datasets=("teacher",), widths=(1, 2, 4), lrs=(0.5, 1.0), seeds=3,
                         steps=6, eval_every=3, n_train=40, n_test=30, d=(2,),
                         teacher_shortcut=(0.0, 1.0)), str(out), progress=False)
    return sj.report.build(out, hessians=False)


def test_no_text_of_a_report_figure_leaves_the_canvas(teacher_report):
    figures = teacher_report.figures
    assert {"paired_vs_width", "paired_vs_teacher_shortcut", "heatmap_teacher_shortcut_width",
            "acc_vs_width", "learning_curves", "diagnostics", "paired_heatmap"} <= set(figures)
    assert any(name.startswith("boundaries_teacher") for name in figures), list(figures)
    for name, fig in figures.items():
        assert texts_outside_the_canvas(fig) == [], name
    ax = figures["paired_vs_width"].get_axes()[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]

"""Each plot function returns its Axes or grid with the artists it promises (Agg backend)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pytest
import seaborn as sns
from conftest import add_seeded_grid, add_trial
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from analysis import load_curves, load_trials, param_importance, plots


@pytest.fixture
def frames(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="p", direction="maximize")
    for i, lr in enumerate((1e-3, 3e-3, 1e-2, 3e-2, 1e-1)):
        add_trial(
            optuna_study,
            "sgd",
            lr,
            0.9 + 0.01 * i,
            momentum=0.9,
            weight_decay=1e-4 * (i + 1),
            schedule="constant" if i % 2 else "cosine",
        )
    add_trial(optuna_study, "sgd", 2.0, None, diverged=True)
    add_trial(optuna_study, "sgd", 5.0, None, diverged=True)
    add_trial(optuna_study, "sgd", 1e-4, 0.5, state="pruned")
    for i, lr in enumerate((1e-5, 1e-4, 1e-3)):
        add_trial(optuna_study, "adam", lr, 0.95 + 0.01 * i, weight_decay=1e-5 * (i + 1))
    add_trial(optuna_study, "adam", 1e-6, 0.6, state="pruned")
    yield load_trials(url, "p"), load_curves(url, "p"), optuna_study
    plt.close("all")


def _points(ax: Axes, label: str) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections if c.get_label() == label)


def _trend(ax: Axes, colour) -> Line2D:
    lines = [line for line in ax.get_lines() if line.get_gid() == "trend"]
    return next(line for line in lines if line.get_color() == colour)


def test_lr_sensitivity_plot_shows_error_on_log_axes_and_diverged_runs_in_a_strip(frames):
    trials, _, _ = frames
    fig, ax = plt.subplots()
    assert plots.lr_sensitivity_plot(trials, ax=ax) is ax
    assert _points(ax, "sgd") == 5 and _points(ax, "adam") == 3
    assert _points(ax, "sgd pruned") == 1 and _points(ax, "adam pruned") == 1
    assert _points(ax, "sgd diverged") == 2
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlabel() == "learning rate"
    assert ax.get_ylabel() == "final test error (1 - accuracy)"
    assert ax.get_title() == "Final test error against learning rate"
    # Error = 1 - accuracy: SGD's complete runs at 0.90 ... 0.94 accuracy.
    sgd = next(c for c in ax.collections if c.get_label() == "sgd")
    assert sorted(sgd.get_offsets()[:, 1]) == pytest.approx([0.06, 0.07, 0.08, 0.09, 0.10])
    # Diverged runs sit above chance error (0.9), inside the axes, apart from every other run.
    diverged = next(c for c in ax.collections if c.get_label() == "sgd diverged")
    bottom, top = ax.get_ylim()
    assert all(0.9 < y < top for y in diverged.get_offsets()[:, 1])
    assert bottom < 0.06  # the best run is on the axis
    # The complete runs (90 % to 97 % accuracy) span a quarter of the axis; on a 0.1-1
    # accuracy axis they had 8 % of it.
    assert np.log10(0.10 / 0.03) / np.log10(top / bottom) > 0.25


def test_lr_sensitivity_trend_only_where_a_bin_has_enough_runs(tmp_path):
    """Three runs in the bin 10^-3.5..10^-3, two in 10^-2.5..10^-2: the mean is drawn over
    the first only, unless min_runs allows two."""
    url = f"sqlite:///{tmp_path / 'b.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="b", direction="maximize")
    for lr, acc in ((10**-3.4, 0.97), (10**-3.25, 0.98), (10**-3.1, 0.99)):
        add_trial(optuna_study, "sgd", lr, acc)
    for lr, acc in ((10**-2.4, 0.90), (10**-2.1, 0.80)):
        add_trial(optuna_study, "sgd", lr, acc)
    trials = load_trials(url, "b")
    colour = plots.optimizer_palette(["sgd"])["sgd"]

    ax = plots.lr_sensitivity_plot(trials, ax=plt.subplots()[1])
    line = _trend(ax, colour)
    x, y = line.get_xdata(), line.get_ydata()
    assert np.nanmin(x) == pytest.approx(10**-3.5) and np.nanmax(x) == pytest.approx(10**-3)
    assert np.nanmean(y) == pytest.approx(0.02)  # mean error of the three runs
    assert "3+ runs" in " ".join(t.get_text() for t in ax.get_legend().get_texts())

    ax = plots.lr_sensitivity_plot(trials, ax=plt.subplots()[1], min_runs=2)
    x = _trend(ax, colour).get_xdata()
    assert np.nanmax(x) == pytest.approx(10**-2)
    assert np.isnan(x).sum() == 1  # the two bins do not touch: the line breaks between them

    ax = plots.lr_sensitivity_plot(trials, ax=plt.subplots()[1], min_runs=4)
    assert not [line for line in ax.get_lines() if line.get_gid() == "trend"]


def test_binned_error_counts_each_seed_as_a_run(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    add_seeded_grid(optuna_study)
    trials = load_trials(url, "s")
    sgd = trials[trials["optimizer"] == "sgd"]
    ax = plots.lr_sensitivity_plot(sgd, ax=plt.subplots()[1])
    x = _trend(ax, plots.optimizer_palette(["sgd"])["sgd"]).get_xdata()
    # One trial per bin, but three seeds each: every bin has its mean.
    assert np.nanmin(x) == pytest.approx(10**-4.5) and np.nanmax(x) == pytest.approx(10**-2)
    with pytest.raises(ValueError, match="min_runs must be 1 or more, but got min_runs=0"):
        plots.binned_error(sgd.assign(error=0.1), min_runs=0)


def test_axes_level_plots_draw_on_the_current_axes_when_given_none(frames):
    trials, curves, optuna_study = frames
    for draw in (
        lambda: plots.lr_sensitivity_plot(trials),
        lambda: plots.lr_schedule_plot(curves, trials),
        lambda: plots.hparam_scatter(trials),
        lambda: plots.importance_plot(param_importance(optuna_study)),
        lambda: plots.best_so_far_plot(trials),
    ):
        fig, (left, right) = plt.subplots(1, 2)
        plt.sca(left)  # the current Axes is the left one, not the last one made
        ax = draw()
        assert ax is left
        assert ax.has_data() and not right.has_data()
        plt.close(fig)


def test_lr_sensitivity_grid_facets_by_schedule(frames):
    trials, _, _ = frames
    grid = plots.lr_sensitivity_grid(trials)
    assert isinstance(grid, sns.FacetGrid)
    assert sorted(grid.axes_dict) == ["constant", "cosine"]
    assert _points(grid.axes_dict["constant"], "sgd") == 2
    assert _points(grid.axes_dict["cosine"], "sgd") == 3


def test_learning_curves_one_line_per_trial_pruned_faded(frames):
    _, curves, _ = frames
    grid = plots.learning_curves(curves)
    assert sorted(grid.axes_dict) == ["adam", "sgd"]
    sgd_lines = grid.axes_dict["sgd"].get_lines()
    assert len(sgd_lines) == 6  # 5 complete + 1 pruned; diverged runs have no epochs
    assert sorted(line.get_alpha() for line in sgd_lines)[0] == 0.25


def test_lr_schedule_plot_one_line_per_schedule(frames):
    trials, curves, _ = frames
    ax = plots.lr_schedule_plot(curves, trials, ax=plt.subplots()[1])
    assert len(ax.get_lines()) == 2
    assert {t.get_text().split(" ")[0] for t in ax.get_legend().get_texts()} == {
        "constant",
        "cosine",
    }


def test_hparam_scatter_points_per_complete_trial(frames):
    trials, _, _ = frames
    ax = plots.hparam_scatter(trials, y="weight_decay", ax=plt.subplots()[1])
    assert sum(len(c.get_offsets()) for c in ax.collections) == 8  # 5 SGD + 3 Adam
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("learning rate", "weight decay")
    ax = plots.hparam_scatter(trials, y="momentum", ax=plt.subplots()[1])
    assert sum(len(c.get_offsets()) for c in ax.collections) == 5  # SGD only
    assert ax.get_yscale() == "linear"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("learning rate", "momentum")


def test_hparam_scatter_colour_scale_is_not_stretched_by_one_bad_run(tmp_path):
    """Good runs between 0.95 and 0.985, one complete run at 0.15: the good runs get
    different colours, the bad one the lowest, and the colour bar says so."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="c", direction="maximize")
    good = (0.95, 0.96, 0.97, 0.975, 0.98, 0.985)
    for i, acc in enumerate(good):
        add_trial(optuna_study, "adam", 10 ** (-4 + 0.3 * i), acc, weight_decay=1e-5 * (i + 1))
    add_trial(optuna_study, "adam", 0.05, 0.15, weight_decay=1e-3)
    trials = load_trials(url, "c")
    fig, ax = plt.subplots()
    plots.hparam_scatter(trials, y="weight_decay", ax=ax)
    (points,) = ax.collections
    assert points.norm.vmin == pytest.approx(0.95) and points.norm.vmax == pytest.approx(0.985)
    colours = points.to_rgba(points.get_array())
    assert len({tuple(c) for c in colours[:-1]}) == len(good)  # every good run its own colour
    assert tuple(colours[-1]) == tuple(colours[0])  # 0.15 drawn in the lowest colour
    colourbar = fig.axes[-1]
    assert "final test accuracy" in colourbar.get_ylabel()
    assert "1 run below 0.950" in colourbar.get_ylabel()
    # Without the robust range the one bad run sets the scale.
    ax = plots.hparam_scatter(trials, y="weight_decay", ax=plt.subplots()[1], robust=False)
    assert ax.collections[0].norm.vmin == pytest.approx(0.15)


def test_axis_labels_use_words_not_column_names(frames):
    trials, curves, optuna_study = frames
    assert plots.axis_label("lr") == "learning rate"
    assert plots.axis_label("sgd_weight_decay") == "weight decay (sgd)"
    axes = [
        plots.lr_sensitivity_plot(trials, ax=plt.subplots()[1]),
        plots.lr_seed_plot(trials, ax=plt.subplots()[1]),
        plots.hparam_scatter(trials, ax=plt.subplots()[1]),
        plots.lr_schedule_plot(curves, trials, ax=plt.subplots()[1]),
        plots.best_so_far_plot(trials, ax=plt.subplots()[1]),
        *plots.learning_curves(curves).axes.flat,
        *plots.lr_sensitivity_grid(trials).axes.flat,
    ]
    labels = {label for ax in axes for label in (ax.get_xlabel(), ax.get_ylabel()) if label}
    assert labels and not [label for label in labels if "_" in label or label == "lr"]
    ax = plots.importance_plot(param_importance(optuna_study), ax=plt.subplots()[1])
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert "learning rate (sgd)" in names and not [n for n in names if "_" in n]


def test_importance_plot_one_bar_per_param(frames):
    _, _, optuna_study = frames
    table = param_importance(optuna_study)
    ax = plots.importance_plot(table, ax=plt.subplots()[1])
    assert len(ax.patches) == len(table) > 0


def test_best_so_far_one_step_line_per_optimizer_and_one_overall(frames):
    trials, _, _ = frames
    ax = plots.best_so_far_plot(trials, ax=plt.subplots()[1])
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"sgd", "adam", "any optimizer"}
    overall = lines["any optimizer"].get_ydata()
    assert overall[-1] == pytest.approx(0.97)
    assert (overall[:-1] <= overall[1:]).all()  # never goes down


def test_lr_schedule_plot_draws_the_rates_swept_within_each_epoch_where_recorded(frames):
    trials, curves, _ = frames
    ax = plots.lr_schedule_plot(curves, trials, ax=plt.subplots()[1])
    assert not ax.collections  # curves without lr_min / lr_max: lines only
    swept = curves.assign(lr_min=curves["lr"] / 10, lr_max=curves["lr"])
    ax = plots.lr_schedule_plot(swept, trials, ax=plt.subplots()[1])
    assert len(ax.collections) == 2  # one band per schedule


def test_lr_schedule_plot_shows_four_decades_not_a_warm_up_from_zero(frames):
    trials, curves, _ = frames
    warm = curves.assign(lr_min=1e-10, lr_max=curves["lr"])  # a warm-up starting near 0
    ax = plots.lr_schedule_plot(warm, trials, ax=plt.subplots()[1])
    low, high = ax.get_ylim()
    assert low >= curves["lr"].max() * 10.0**-plots.SCHEDULE_DECADES * 0.999
    assert high >= curves["lr"].max()
    plt.close("all")

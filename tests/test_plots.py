"""Each plot function returns its Axes or grid with the artists it promises (Agg backend)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import optuna
import pytest
import seaborn as sns
from conftest import add_trial
from matplotlib.axes import Axes

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


def test_lr_sensitivity_plot_draws_each_kind_of_run_and_a_trend_per_optimizer(frames):
    trials, _, _ = frames
    fig, ax = plt.subplots()
    assert plots.lr_sensitivity_plot(trials, ax=ax) is ax
    assert _points(ax, "sgd") == 5 and _points(ax, "adam") == 3
    assert _points(ax, "sgd pruned") == 1 and _points(ax, "adam pruned") == 1
    assert _points(ax, "sgd diverged") == 2
    diverged = next(c for c in ax.collections if c.get_label() == "sgd diverged")
    assert set(diverged.get_offsets()[:, 1]) == {0.1}  # at the bottom, at chance
    assert len(ax.get_lines()) == 2  # one trend per optimizer
    assert ax.get_xscale() == "log"


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
    ax = plots.hparam_scatter(trials, y="momentum", ax=plt.subplots()[1])
    assert sum(len(c.get_offsets()) for c in ax.collections) == 5  # SGD only
    assert ax.get_yscale() == "linear"


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

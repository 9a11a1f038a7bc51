"""Time to target and search-range warnings, on synthetic studies with known curves."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import add_trial

from analysis import load_curves, load_studies, load_trials
from analysis.diagnostics import (
    RANGE_WARNING_COLUMNS,
    range_warnings,
    time_to_target,
    time_to_target_plot,
    time_to_target_summary,
)
from analysis.findings import grouped_range_messages
from search_spaces import get_space
from study.store import records

# add_trial's curve climbs 0.01 an epoch to the final accuracy: 3 epochs ending at 0.985 are
# 0.965, 0.975, 0.985; a pruned trial ran 1 epoch, a diverged one none.


@pytest.fixture
def timed(tmp_path):
    url = f"sqlite:///{tmp_path / 't.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="t", direction="maximize")
    add_trial(optuna_study, "adam", 1e-3, 0.985)  # 0 -> reaches 0.97 at epoch 2
    add_trial(optuna_study, "adam", 3e-3, 0.975)  # 1 -> epoch 3
    add_trial(optuna_study, "adam", 1e-4, 0.96)  # 2 -> never
    add_trial(optuna_study, "adam", 1e-1, None, diverged=True)  # 3 -> never
    add_trial(optuna_study, "sgd", 0.1, 0.995)  # 4 -> epoch 1
    add_trial(optuna_study, "sgd", 0.3, 0.98, state="pruned")  # 5 -> epoch 1, then stopped
    add_trial(optuna_study, "sgd", 1e-3, 0.5, state="pruned")  # 6 -> never
    yield load_curves(url, "t"), load_trials(url, "t")
    plt.close("all")


def test_time_to_target_is_the_first_epoch_at_or_above_the_target(timed):
    curves, trials = timed
    per_trial = time_to_target(curves, trials, target=0.97).set_index("number")
    expected = {0: 2, 1: 3, 2: math.nan, 3: math.nan, 4: 1, 5: 1, 6: math.nan}
    assert per_trial["epoch"].to_dict() == pytest.approx(expected, nan_ok=True)
    assert per_trial["reached"].to_dict() == {n: not math.isnan(e) for n, e in expected.items()}
    # add_trial records 1 s per epoch: the seconds are summed up to the epoch reached.
    assert per_trial["seconds"].to_dict() == pytest.approx(expected, nan_ok=True)


def test_a_diverged_trial_never_reaches_the_target_even_if_its_curve_did(timed):
    curves, trials = timed
    # Give the diverged trial a curve that passed the target before it broke.
    extra = curves.iloc[[0]].assign(number=3, epoch=1, eval_accuracy=0.99)
    per_trial = time_to_target(pd.concat([curves, extra]), trials, target=0.97)
    row = per_trial.set_index("number").loc[3]
    assert row["outcome"] == "diverged" and not row["reached"] and math.isnan(row["epoch"])


def test_unrecorded_seconds_leave_the_time_unknown_not_smaller(timed):
    curves, trials = timed
    curves = curves.copy()
    curves.loc[(curves["number"] == 0) & (curves["epoch"] == 1), "epoch_seconds"] = np.nan
    per_trial = time_to_target(curves, trials, target=0.97).set_index("number")
    assert per_trial.loc[0, "epoch"] == 2 and math.isnan(per_trial.loc[0, "seconds"])
    assert per_trial.loc[1, "seconds"] == 3.0


def test_time_to_target_rejects_a_percentage(timed):
    curves, trials = timed
    with pytest.raises(ValueError, match="target=97"):
        time_to_target(curves, trials, target=97)


def test_summary_gives_the_share_reaching_and_the_median_epoch_of_those_that_did(timed):
    summary = time_to_target_summary(time_to_target(*timed, target=0.97)).set_index("optimizer")
    assert summary.loc["adam", ["n", "n_reached"]].tolist() == [4, 2]
    assert summary.loc["adam", "share"] == pytest.approx(0.5)
    assert summary.loc["adam", "median_epoch"] == pytest.approx(2.5)
    assert summary.loc["sgd", ["n", "n_reached"]].tolist() == [3, 2]
    assert summary.loc["sgd", "share"] == pytest.approx(2 / 3)
    assert summary.loc["sgd", "median_epoch"] == 1
    assert summary.loc["sgd", "median_seconds"] == 1.0


def test_summary_of_an_unreachable_target_has_no_median(timed):
    summary = time_to_target_summary(time_to_target(*timed, target=0.999))
    assert (summary["share"] == 0).all() and summary["median_epoch"].isna().all()


def test_ecdf_plot_draws_one_line_per_optimizer_ending_at_the_share_reaching(timed):
    per_trial = time_to_target(*timed, target=0.97)
    fig, ax = plt.subplots()
    assert time_to_target_plot(per_trial, ax=ax) is ax
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"adam (2/4 reached)", "sgd (2/3 reached)"}
    assert lines["adam (2/4 reached)"].get_ydata()[-1] == pytest.approx(0.5)
    assert lines["sgd (2/3 reached)"].get_ydata()[-1] == pytest.approx(2 / 3)
    assert ax.get_title() == "Time to 0.97 test accuracy"
    assert ax.get_xlabel() == "epoch at which test accuracy first reached 0.97"
    assert ax.get_ylabel() == "share of trials that reached it"
    # The legend sits outside the axes, so it covers no line.
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    plt.close(fig)


def test_ecdf_plot_against_seconds(timed):
    per_trial = time_to_target(*timed, target=0.97)
    fig, ax = plt.subplots()
    time_to_target_plot(per_trial, x="seconds", ax=ax)
    assert len(ax.get_lines()) == 2 and "seconds" in ax.get_xlabel()


# --- range warnings ----------------------------------------------------------------------


def _definition(space: str) -> dict:
    return json.loads(json.dumps(get_space(space).definition(5)))


@pytest.fixture
def ranged(tmp_path):
    """A study with the default space's stored definition (adam lr 1e-5..1e-2)."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="r", direction="maximize")
    optuna_study.set_user_attr(records.SPACE_DEFINITION, _definition("default"))
    optuna_study.set_user_attr(records.EPOCHS, 5)
    return url, optuna_study


def _warnings(url: str) -> pd.DataFrame:
    (optuna_study,) = load_studies(url, "r")
    return range_warnings(optuna_study, load_trials(url, "r"))


def test_a_best_learning_rate_at_the_top_of_its_range_is_flagged(ranged):
    url, optuna_study = ranged
    add_trial(optuna_study, "adam", 9.6e-3, 0.985)  # best, at the top (log scale)
    add_trial(optuna_study, "adam", 1e-4, 0.97)
    add_trial(optuna_study, "adam", 2e-2, None, diverged=True)  # diverged: never the best
    add_trial(optuna_study, "sgd", 0.03, 0.98)  # mid-range
    table = _warnings(url)
    assert list(table.columns) == RANGE_WARNING_COLUMNS
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["optimizer"], row["parameter"], row["edge"]) == ("adam", "adam_lr", "high")
    assert (row["value"], row["low"], row["high"]) == pytest.approx((9.6e-3, 1e-5, 1e-2))
    assert (row["suggested_low"], row["suggested_high"]) == pytest.approx((1e-5, 1e-1))
    assert row["message"] == (
        "adam's best lr 9.6e-03 is at the top of its range 1e-05..1e-02: try up to 1e-01"
    )


def test_a_best_learning_rate_mid_range_is_not_flagged(ranged):
    url, optuna_study = ranged
    add_trial(optuna_study, "adam", 3e-4, 0.985)  # best, mid-range
    add_trial(optuna_study, "adam", 9.6e-3, 0.97)  # at the top, but not the best
    add_trial(optuna_study, "adam", 1.1e-5, 0.99, state="pruned")  # pruned: not the best
    table = _warnings(url)
    assert table.empty and list(table.columns) == RANGE_WARNING_COLUMNS


def test_a_best_learning_rate_at_the_bottom_suggests_a_decade_lower(ranged):
    url, optuna_study = ranged
    add_trial(optuna_study, "sgd", 1.2e-3, 0.985)
    (message,) = _warnings(url)["message"]
    assert message == (
        "sgd's best lr 1.2e-03 is at the bottom of its range 1e-03..1e+00: try down to 1e-04"
    )


def _add_sampled(optuna_study: optuna.Study, params: dict, accuracy: float) -> None:
    """A complete trial that sampled ``params`` from the default space's ranges."""
    dists = get_space("default").distributions(5)
    config = {
        "optimizer": params["optimizer"],
        "lr": params[f"{params['optimizer']}_lr"],
        "schedule": params.get("schedule", "constant"),
        "epochs": 1,
    }
    optuna_study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE,
            value=accuracy,
            params=params,
            distributions={name: dists[name] for name in params},
            user_attrs={records.CONFIG: config, records.EVAL_ACCURACY: [accuracy]},
        )
    )


def test_linear_schedule_and_shared_parameters_are_checked_and_clipped_to_sane_bounds(ranged):
    url, optuna_study = ranged
    _add_sampled(
        optuna_study,
        {
            "optimizer": "sgd",
            "sgd_lr": 0.03,
            "sgd_weight_decay": 3e-5,
            "sgd_momentum": 0.985,  # top of 0..0.99: wider, but below 1
            "sgd_nesterov": True,  # categorical: never flagged
            "schedule": "step",
            "step_epochs": 2,
            "step_gamma": 0.055,  # gamma at the bottom
            "warmup_epochs": 0.5,
        },
        0.98,
    )
    _add_sampled(
        optuna_study,
        {
            "optimizer": "adam",
            "adam_lr": 1e-3,
            "adam_weight_decay": 3e-5,
            "adam_beta1": 0.52,  # bottom of 0.5..0.99
            "schedule": "cosine",
            "warmup_epochs": 0.95,  # top of 0..1 (5 epochs)
        },
        0.985,
    )
    table = _warnings(url).set_index("parameter")
    assert sorted(table.index) == ["adam_beta1", "sgd_momentum", "step_gamma", "warmup_epochs"]
    assert table.loc["sgd_momentum", ["edge", "suggested_high"]].tolist() == ["high", 0.999]
    assert table.loc["adam_beta1", "suggested_low"] == pytest.approx(0.5 - 0.49 / 2)
    assert table.loc["step_gamma", "edge"] == "low"
    assert table.loc["step_gamma", "suggested_low"] == pytest.approx(0.005)
    assert table.loc["warmup_epochs", "optimizer"] == "adam"
    assert table.loc["warmup_epochs", "suggested_high"] == pytest.approx(1.5)
    assert table.loc["sgd_momentum", "message"] == (
        "sgd's best momentum 0.985 is at the top of its range 0..0.99: try up to 0.999"
    )


@pytest.mark.parametrize("space", ["lab", "lr-grid", None])
def test_studies_without_sampled_ranges_give_an_empty_table(tmp_path, space):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="r", direction="maximize")
    if space is not None:
        optuna_study.set_user_attr(records.SPACE_DEFINITION, _definition(space))
    add_trial(optuna_study, "adam", 9.6e-3, 0.985)
    table = _warnings(url)
    assert table.empty and list(table.columns) == RANGE_WARNING_COLUMNS


def test_edge_must_be_a_share_of_the_range(ranged):
    url, optuna_study = ranged
    with pytest.raises(ValueError, match="edge=0.6"):
        range_warnings(optuna_study, load_trials(url, "r"), edge=0.6)


def test_an_edge_that_cannot_widen_gives_no_warning_and_one_parameter_is_one_line(ranged):
    """A warm-up of 0 is the smallest there is: no warning. Two optimizers' learning rates
    at the top of their ranges: one line naming both, with the way to widen each."""
    url, optuna_study = ranged
    _add_sampled(optuna_study, {"optimizer": "adam", "adam_lr": 9.6e-3,
                                "schedule": "cosine", "warmup_epochs": 0.01}, 0.985)
    _add_sampled(optuna_study, {"optimizer": "sgd", "sgd_lr": 0.95,
                                "schedule": "constant", "warmup_epochs": 0.02}, 0.98)
    table = _warnings(url)
    assert set(table["parameter"]) == {"adam_lr", "sgd_lr"}  # no warmup_epochs row
    (line,) = grouped_range_messages(table)
    assert line.startswith("The best lr sits at the top of its range for 2 optimizers:")
    assert "adam's (9.6e-03 in 1e-05..1e-02, try up to 1e-01)" in line
    assert "sgd's (9.5e-01 in 1e-03..1e+00, try up to 1e+01)" in line

"""Tuning-budget curves: the estimator against hand-computed values, the counting rule, the
validity marks and the plot (Agg backend)."""

from __future__ import annotations

import itertools
import math

import matplotlib.pyplot as plt
import optuna
import pandas as pd
import pytest
from conftest import add_trial
from matplotlib.axes import Axes

from analysis import load_trials
from analysis.budget import (
    NOT_INDEPENDENT,
    expected_max,
    trials_to_reach,
    tunability,
    tuning_curve,
    tuning_curve_plot,
)
from analysis.tables import CHANCE


def _frame(values: dict[str, list[float]], sampler: str = "random") -> pd.DataFrame:
    """A trials frame of complete trials with the given final accuracies per optimizer."""
    rows = [
        {
            "study": "s",
            "number": i,
            "optimizer": name,
            "outcome": "complete",
            "value": acc,
            "final_accuracy": acc,
            "sampler": sampler,
        }
        for i, (name, acc) in enumerate(
            (name, acc) for name, accs in values.items() for acc in accs
        )
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def study(tmp_path):
    """SGD: two complete, one pruned at 0.5, one diverged, one failed. Adam: three complete."""
    url = f"sqlite:///{tmp_path / 'b.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="b", direction="maximize")
    add_trial(optuna_study, "sgd", 1e-2, 0.90)
    add_trial(optuna_study, "sgd", 3e-2, 0.95)
    add_trial(optuna_study, "sgd", 1e-4, 0.50, state="pruned")
    add_trial(optuna_study, "sgd", 5.0, None, diverged=True)
    optuna_study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL,
            params={"optimizer": "sgd"},
            distributions={
                "optimizer": optuna.distributions.CategoricalDistribution(
                    ["sgd", "adam", "adamw", "rmsprop"]
                )
            },
        )
    )
    for lr, acc in ((1e-4, 0.96), (1e-3, 0.97), (1e-2, 0.98)):
        add_trial(optuna_study, "adam", lr, acc)
    yield load_trials(url, "b")
    plt.close("all")


def test_expected_best_of_two_matches_counting_every_pair_by_hand():
    values = [0.90, 0.95, 0.97]
    # The 9 ordered pairs of draws: max 0.90 once, 0.95 three times, 0.97 five times.
    by_hand = (0.90 * 1 + 0.95 * 3 + 0.97 * 5) / 9
    assert by_hand == pytest.approx(
        sum(max(a, b) for a, b in itertools.product(values, repeat=2)) / 9
    )
    curve = tuning_curve(_frame({"sgd": values}))
    assert curve.loc[curve["n"] == 2, "expected_best"].item() == pytest.approx(by_hand)
    assert expected_max(values, 2)[1] == pytest.approx(by_hand)


def test_one_trial_expects_the_mean_and_many_approach_the_best():
    values = [0.6, 0.9, 0.95, 0.97, 0.8]
    curve = tuning_curve(_frame({"sgd": values}), n_max=200)
    assert curve["n"].tolist() == list(range(1, 201))
    assert curve["expected_best"].iloc[0] == pytest.approx(sum(values) / len(values))
    assert curve["expected_best"].iloc[-1] == pytest.approx(0.97, abs=1e-12)
    assert (curve["expected_best"].diff().dropna() >= -1e-12).all()
    assert curve["extrapolated"].tolist() == [n > 5 for n in range(1, 201)]


def test_interval_brackets_the_curve_and_says_what_it_is():
    curve = tuning_curve(_frame({"sgd": [0.6, 0.9, 0.95, 0.97, 0.8]}), n_boot=500)
    assert (curve["lo"] <= curve["expected_best"] + 1e-12).all()
    assert (curve["expected_best"] <= curve["hi"] + 1e-12).all()
    assert curve["lo"].iloc[0] < curve["hi"].iloc[0]
    assert (curve["hi"] <= 0.97 + 1e-12).all()  # a bootstrap never beats the best trial
    assert curve["interval"].iloc[0] == (
        "95 % percentile bootstrap over the 5 trials (500 resamples)"
    )
    again = tuning_curve(_frame({"sgd": [0.6, 0.9, 0.95, 0.97, 0.8]}), n_boot=500)
    pd.testing.assert_frame_equal(curve, again)


def test_a_single_trial_has_no_interval():
    curve = tuning_curve(_frame({"sgd": [0.9]}))
    assert curve["expected_best"].tolist() == [0.9]
    assert curve[["lo", "hi"]].isna().all().all()
    assert curve["interval"].item() == "none: fewer than 2 trials"


def test_pruned_count_at_their_last_value_diverged_at_chance_failed_left_out(study):
    curve = tuning_curve(study)
    sgd = curve[curve["optimizer"] == "sgd"]
    assert sgd["n"].tolist() == [1, 2, 3, 4]
    assert sgd["n_trials"].iloc[0] == 4 and sgd["n_pruned"].iloc[0] == 1
    assert sgd["n_diverged"].iloc[0] == 1
    assert sgd["expected_best"].iloc[0] == pytest.approx((0.90 + 0.95 + 0.50 + CHANCE) / 4)
    assert curve.attrs["pruned"] == "last"

    dropped = tuning_curve(study, pruned="drop")
    sgd = dropped[dropped["optimizer"] == "sgd"]
    assert sgd["n_trials"].iloc[0] == 3 and sgd["n_pruned"].iloc[0] == 0
    assert sgd["expected_best"].iloc[0] == pytest.approx((0.90 + 0.95 + CHANCE) / 3)


def test_unknown_pruned_policy_names_the_allowed_ones(study):
    with pytest.raises(ValueError, match="pruned must be one of last, drop, but got 'keep'"):
        tuning_curve(study, pruned="keep")


def test_tpe_and_unrecorded_samplers_are_marked_invalid_but_still_computed(study):
    # add_trial records no sampler: an old study, whose trials may not be independent.
    unrecorded = tuning_curve(study)
    assert not unrecorded["valid"].any()
    assert unrecorded["note"].str.contains("sampler was not recorded").all()

    trials = study.assign(sampler=study["optimizer"].map({"sgd": "random", "adam": "tpe"}))
    curve = tuning_curve(trials)
    by_optimizer = curve.groupby("optimizer")
    assert by_optimizer["valid"].all().to_dict() == {"adam": False, "sgd": True}
    assert curve.loc[curve["optimizer"] == "adam", "note"].iloc[0] == NOT_INDEPENDENT
    assert curve.loc[curve["optimizer"] == "sgd", "note"].iloc[0] == ""
    assert curve.loc[curve["optimizer"] == "adam", "expected_best"].iloc[0] == pytest.approx(0.97)
    reach = trials_to_reach(trials, 0.95)
    assert reach.set_index("optimizer")["valid"].to_dict() == {"adam": False, "sgd": True}


def test_trials_to_reach_at_the_edges_and_in_the_middle():
    trials = _frame({"sgd": [0.5, 0.8, 0.9, 0.95]})
    table = trials_to_reach(trials, [0.99, 0.4, 0.9], p=0.9).set_index("target")
    assert table.loc[0.99, "n_trials_needed"] == math.inf
    assert table.loc[0.99, "share_reaching"] == 0
    assert table.loc[0.4, "n_trials_needed"] == 1
    assert table.loc[0.4, "share_reaching"] == 1
    # Half the trials reach 0.9: 1 - 0.5^3 = 0.875 < 0.9 <= 1 - 0.5^4 = 0.9375.
    assert table.loc[0.9, "share_reaching"] == 0.5
    assert table.loc[0.9, "n_trials_needed"] == 4
    # On the boundary: 1 - 0.5^2 = 0.75 exactly.
    assert trials_to_reach(trials, 0.9, p=0.75)["n_trials_needed"].item() == 2
    assert trials_to_reach(trials, 0.9, p=1.0)["n_trials_needed"].item() == math.inf


def test_trials_to_reach_rejects_a_probability_out_of_range():
    with pytest.raises(ValueError, match="p must be a probability in \\(0, 1\\], but got p=0"):
        trials_to_reach(_frame({"sgd": [0.9]}), 0.9, p=0)


def test_tunability_uniform_and_early_weights_by_hand():
    curve = tuning_curve(_frame({"sgd": [0.5, 1.0]}))
    # E[max of 1] = 0.75; E[max of 2] = 0.5 * 1/4 + 1.0 * 3/4 = 0.875.
    assert curve["expected_best"].tolist() == pytest.approx([0.75, 0.875])
    uniform = tunability(curve)
    assert uniform["tunability"].item() == pytest.approx((0.75 + 0.875) / 2)
    assert uniform["weights"].item() == "uniform" and uniform["n_max"].item() == 2
    early = tunability(curve, weights="early")
    assert early["tunability"].item() == pytest.approx((0.75 / 1 + 0.875 / 2) / (1 + 1 / 2))
    with pytest.raises(ValueError, match="weights must be one of uniform, early"):
        tunability(curve, weights="late")


def test_tunability_ranks_the_optimizer_that_is_good_early():
    trials = _frame({"steady": [0.9, 0.9, 0.9, 0.9], "lucky": [0.5, 0.5, 0.5, 0.99]})
    curve = tuning_curve(trials, n_max=8)
    early = tunability(curve, weights="early").set_index("optimizer")["tunability"]
    assert early["steady"] > early["lucky"]
    assert list(tunability(curve).columns) == [
        "optimizer",
        "tunability",
        "weights",
        "n_max",
        "valid",
        "note",
    ]


def test_plot_draws_one_line_per_optimizer_on_log_axes_and_names_invalid_ones(study):
    trials = study.assign(sampler=study["optimizer"].map({"sgd": "random", "adam": "tpe"}))
    fig, ax = plt.subplots()
    assert tuning_curve_plot(tuning_curve(trials), ax=ax) is ax
    assert isinstance(ax, Axes)
    assert len(ax.get_lines()) == 2
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "not valid for adam" in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["adam (not independent draws)", "sgd"]
    # Error, 1 - accuracy: sgd's first point is 1 - its mean.
    sgd = next(line for line in ax.get_lines() if line.get_label() == "sgd")
    assert sgd.get_ydata()[0] == pytest.approx(1 - (0.90 + 0.95 + 0.50 + CHANCE) / 4)


def test_plot_of_accuracy_has_a_linear_axis_and_a_plain_title():
    fig, ax = plt.subplots()
    tuning_curve_plot(
        tuning_curve(_frame({"sgd": [0.9, 0.95], "adam": [0.97]})), error=False, ax=ax
    )
    assert ax.get_yscale() == "linear"
    assert ax.get_title() == "Expected best of n trials (band: bootstrap over trials)"
    plt.close(fig)

"""analysis.load and analysis.tables on real and synthetic studies in SQLite files."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from conftest import add_seeded_grid, add_trial, run_small_study

from analysis import (
    HPARAM_COLUMNS,
    PRUNED_AS_LOWER_BOUNDS,
    PRUNED_LEFT_OUT,
    StudyNotFoundError,
    best_trials,
    ci_separation,
    load_curves,
    load_studies,
    load_trials,
    lr_sensitivity,
    outcome_counts,
    param_importance,
)
from study.store import records
from study.store.storage import StorageError

# LRs in the middle of half-decade bins, so the binning below is exact.
GOOD = [10**e for e in (-3.75, -3.25, -2.75, -2.25, -1.75)]


@pytest.fixture(scope="module")
def real_study(tmp_path_factory):
    """A small real study made by the CLI: 6 trials, 2 epochs, 2000 training images."""
    return run_small_study(f"sqlite:///{tmp_path_factory.mktemp('real') / 'r.db'}", "real", 6)


@pytest.fixture
def known(tmp_path):
    """SGD flat at 0.98 over exactly two decades, worse below, diverged above; Adam, 3 runs."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="known", direction="maximize")
    for lr in GOOD:
        add_trial(optuna_study, "sgd", lr, 0.98)
    add_trial(optuna_study, "sgd", 10**-3.7, 0.98)  # a second run in the first good bin
    add_trial(optuna_study, "sgd", 10**-4.75, 0.50)
    add_trial(optuna_study, "sgd", 10**-0.75, None, diverged=True)
    add_trial(optuna_study, "sgd", 10**-0.25, None, diverged=True)
    add_trial(optuna_study, "sgd", 10**-4.25, 0.40, state="pruned")
    for lr, acc in ((1e-4, 0.95), (1e-3, 0.97), (1e-2, 0.90)):
        add_trial(optuna_study, "adam", lr, acc)
    return url


@pytest.mark.slow
def test_load_trials_has_one_row_per_trial_with_documented_columns(real_study):
    trials = load_trials(real_study, "real")
    assert len(trials) == 6
    for column in (
        "study",
        "number",
        "state",
        *HPARAM_COLUMNS,
        "final_accuracy",
        "best_accuracy",
        "test_accuracy",
        "epochs_run",
        "diverged",
        "diverged_lr",
        "duration_s",
        "eval_set",
    ):
        assert column in trials, column
    assert set(trials["state"]) <= {"complete", "pruned"}
    assert (trials["study"] == "real").all() and (trials["eval_set"] == "test").all()
    sgd = trials[trials["optimizer"] == "sgd"]
    adam = trials[trials["optimizer"].isin(["adam", "adamw"])]
    assert sgd["momentum"].notna().all() and sgd["beta1"].isna().all()
    assert adam["momentum"].isna().all() and adam["beta1"].notna().all()
    assert (trials["final_accuracy"] > 0).all() and (trials["duration_s"] > 0).all()


@pytest.mark.slow
def test_load_curves_is_long_one_row_per_trial_epoch(real_study):
    trials = load_trials(real_study, "real")
    curves = load_curves(real_study, "real")
    assert len(curves) == trials["epochs_run"].sum()
    assert list(curves.columns[:6]) == [
        "study",
        "number",
        "state",
        "optimizer",
        "schedule",
        "epoch",
    ]
    for column in (
        "train_loss",
        "train_accuracy",
        "eval_accuracy",
        "lr",
        "batch_size",
        "epoch_seconds",
    ):
        assert curves[column].notna().all(), column
    last = curves.sort_values("epoch").groupby("number").tail(1).set_index("number")
    assert (
        last["eval_accuracy"].to_dict() == trials.set_index("number")["final_accuracy"].to_dict()
    )


@pytest.mark.slow
def test_several_studies_in_one_frame_with_a_study_column(real_study):
    # A second study in the same storage: the same command, another name.
    run_small_study(real_study, "other", 2)  # a second study in the same storage
    both = load_trials(real_study, ["real", "other"])
    assert both.groupby("study").size().to_dict() == {"real": 6, "other": 2}
    assert set(load_curves(real_study, ["real", "other"])["study"]) == {"real", "other"}
    assert len(load_trials(real_study)) == 8  # None: every study in the storage
    assert "study" in best_trials(both).columns


@pytest.mark.slow
def test_a_running_trial_is_read_as_running(real_study):
    optuna_study = optuna.load_study(study_name="real", storage=real_study)
    trial = optuna_study.ask()  # a worker that has just started a trial
    trial.set_user_attr("eval_accuracy", [0.5])
    trials = load_trials(real_study, "real")
    assert trials.set_index("number").loc[trial.number, "state"] == "running"
    assert len(load_curves(real_study, "real").query("number == @trial.number")) == 1
    optuna_study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert (
        load_trials(real_study, "real").set_index("number").loc[trial.number, "state"] == "failed"
    )


@pytest.mark.slow
def test_unknown_study_lists_the_ones_in_the_storage(real_study):
    with pytest.raises(
        StudyNotFoundError, match="no study 'nope' in this storage; its studies: 'real'"
    ):
        load_trials(real_study, "nope")


def test_reading_a_missing_file_does_not_create_it(tmp_path):
    with pytest.raises(StorageError, match="does not exist; run a study first"):
        load_trials(f"sqlite:///{tmp_path / 'none.db'}", "x")
    assert not (tmp_path / "none.db").exists()


def test_sensitivity_metrics_have_the_known_answers(known):
    table = lr_sensitivity(load_trials(known, "known"))
    assert table.attrs["pruned"] == PRUNED_AS_LOWER_BOUNDS
    sgd = table.set_index("optimizer").loc["sgd"]
    assert sgd["n"] == 10  # complete, diverged and the pruned run (at its last accuracy)
    assert sgd["best_accuracy"] == pytest.approx(0.98)
    assert sgd["good_lr_width"] == pytest.approx(2.0)  # flat over exactly two decades
    assert (sgd["good_lr_low"], sgd["good_lr_high"]) == pytest.approx((10**-3.75, 10**-1.75))
    assert not sgd["good_lr_width_at_edge"]  # worse below, diverged above: a closed band
    # Bins: five good ones at 0.98 (one holding two runs), 0.50, the pruned run's 0.40, and
    # two diverged at chance.
    expected = 0.98 - (5 * 0.98 + 0.50 + 0.40 + 0.10 + 0.10) / 9
    assert sgd["sensitivity"] == pytest.approx(expected)
    assert (sgd["range_low"], sgd["range_high"]) == pytest.approx((10**-4.75, 10**-0.25))
    assert sgd["min_diverged_lr"] == pytest.approx(10**-0.75)
    assert (sgd["n_complete"], sgd["n_pruned"], sgd["n_diverged"]) == (7, 1, 2)
    # One run per learning rate: no interval from runs a sampler chose, and the note says why.
    assert sgd["n_seeds"] == 1 and sgd["interval_method"] == "none"
    assert sgd["best_accuracy_method"] == "none" and math.isnan(sgd["best_accuracy_lo"])
    assert "no interval (needs 3 seeds)" in sgd["note"]
    adam = table.set_index("optimizer").loc["adam"]
    assert adam["good_lr_width"] == pytest.approx(0.0)  # only 1e-3 is within 1 point of 0.97
    # Leaving pruned runs out makes SGD look less sensitive than it is.
    without = lr_sensitivity(load_trials(known, "known"), include_pruned=False)
    assert without.attrs["pruned"] == PRUNED_LEFT_OUT
    sgd_without = without.set_index("optimizer").loc["sgd"]
    assert sgd_without["n"] == 9
    assert sgd_without["sensitivity"] == pytest.approx(0.98 - (5 * 0.98 + 0.50 + 0.2) / 8)
    assert sgd_without["sensitivity"] < sgd["sensitivity"]


def test_intervals_come_from_seeds_with_their_method_and_n(tmp_path):
    """A grid with five seeds per point: SGD flat (seed noise only), Adam peaked. The best
    accuracy gets a t-interval over the seeds at its learning rate, the width a BCa one."""
    url = f"sqlite:///{tmp_path / 'g.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="g", direction="maximize")
    add_seeded_grid(optuna_study, seeds=5)
    table = lr_sensitivity(load_trials(url, "g"), n_boot=300).set_index("optimizer")
    sgd, adam = table.loc["sgd"], table.loc["adam"]
    assert sgd["n_seeds"] == adam["n_seeds"] == 5
    assert sgd["best_accuracy_method"] == adam["best_accuracy_method"] == "t"
    assert sgd["interval_method"] == adam["interval_method"] == "bca"
    # Seeds 0.97 .. 0.99 (sd 0.0079): mean +- t(4) * sd / sqrt(5), within 0 and 1.
    half = 2.776 * np.std([0.97, 0.975, 0.98, 0.985, 0.99], ddof=1) / 5**0.5
    assert adam["best_accuracy_lo"] == pytest.approx(0.98 - half, abs=1e-4)
    assert adam["best_accuracy_hi"] == pytest.approx(min(1.0, 0.98 + half), abs=1e-4)
    assert sgd["good_lr_width"] == pytest.approx(2.0) and sgd["good_lr_width_at_edge"]
    assert adam["good_lr_width"] == 0.0 and not adam["good_lr_width_at_edge"]
    assert adam["good_lr_width_lo"] <= 0.0 <= adam["good_lr_width_hi"] < 0.5
    assert sgd["good_lr_width_hi"] >= 2.0 - 1e-9


def test_two_seeds_give_no_interval_and_say_so(tmp_path):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="two", direction="maximize")
    for lr in (1e-3, 1e-2, 1e-1):
        add_trial(optuna_study, "sgd", lr, None, seed_accuracies=[0.9768, 0.9785])
    row = lr_sensitivity(load_trials(url, "two")).iloc[0]
    assert row["n_seeds"] == 2 and row["best_accuracy_method"] == "none"
    assert math.isnan(row["best_accuracy_lo"]) and math.isnan(row["good_lr_width_lo"])
    assert row["note"].startswith("2 seeds per learning rate")


def test_wider_tolerance_widens_the_good_range(known):
    trials = load_trials(known, "known")
    narrow = lr_sensitivity(trials).set_index("optimizer").loc["adam", "good_lr_width"]
    wide = lr_sensitivity(trials, tolerance=0.03).set_index("optimizer").loc["adam"]
    assert narrow == pytest.approx(0.0)
    assert wide["good_lr_width"] == pytest.approx(1.0)  # 1e-4 .. 1e-3
    assert wide["good_lr_width_at_edge"]  # 1e-4 is the smallest learning rate tried


def test_ci_separation_tests_every_pair_with_holm(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="c", direction="maximize")
    for i in range(3):
        lr = 10 ** (-3 + i)
        add_trial(optuna_study, "sgd", lr, None, seed_accuracies=[0.979, 0.98, 0.981])
        add_trial(optuna_study, "adam", lr / 10, None, seed_accuracies=[0.899, 0.90, 0.901])
        add_trial(optuna_study, "adamw", lr / 10, None, seed_accuracies=[0.977, 0.98, 0.983])
    separation = ci_separation(lr_sensitivity(load_trials(url, "c"), n_boot=10))
    pairs = {frozenset((r.a, r.b)): r for r in separation.itertuples()}
    assert pairs[frozenset(("sgd", "adam"))].separated == True  # noqa: E712 - 0.98 vs 0.90
    assert pairs[frozenset(("sgd", "adamw"))].separated == False  # noqa: E712 - same mean
    assert set(separation["pairs_tested"]) == {3}
    # Holm: the smallest p times 3, and no adjusted p below the raw one.
    assert (separation["p_holm"] >= separation["p_value"] - 1e-15).all()
    assert separation["p_holm"].min() == pytest.approx(3 * separation["p_value"].min())
    assert (separation["difference"] >= 0).all()  # a is the better of each pair


def test_ci_separation_says_why_it_cannot_tell(known):
    """One run per learning rate: the pairs are neither separated nor not, and the note
    says why instead of leaving the cell blank."""
    separation = ci_separation(lr_sensitivity(load_trials(known, "known")))
    (row,) = separation.itertuples()
    assert (row.a, row.b) == ("sgd", "adam")
    assert math.isnan(row.separated) and row.pairs_tested == 0
    assert row.note.startswith("cannot tell: sgd: 1 seed per learning rate")


def test_outcome_counts_count_a_diverged_trial_as_diverged_not_complete(known):
    table = outcome_counts(load_trials(known, "known")).set_index("optimizer")
    assert list(table.columns) == ["complete", "pruned", "diverged", "failed", "running", "total"]
    assert table.loc["sgd"].to_dict() == {
        "complete": 7,
        "pruned": 1,
        "diverged": 2,
        "failed": 0,
        "running": 0,
        "total": 10,
    }
    assert table.loc["all"].to_dict() == {
        "complete": 10,
        "pruned": 1,
        "diverged": 2,
        "failed": 0,
        "running": 0,
        "total": 13,
    }
    # The same rule as the sensitivity table's counts.
    sensitivity = lr_sensitivity(load_trials(known, "known"), n_boot=10).set_index("optimizer")
    assert sensitivity.loc["sgd", "n_complete"] == table.loc["sgd", "complete"]
    assert sensitivity.loc["sgd", "n_diverged"] == table.loc["sgd", "diverged"]


def test_best_trials_per_optimizer_and_schedule(known):
    trials = load_trials(known, "known")
    best = best_trials(trials)
    assert list(best["optimizer"]) == ["sgd", "adam"]
    assert list(best["final_accuracy"]) == pytest.approx([0.98, 0.97])
    by_schedule = best_trials(trials, by=("optimizer", "schedule"))
    assert set(by_schedule.columns) >= {"optimizer", "schedule", "number", "lr"}


@pytest.mark.slow
def test_importance_is_a_table_summing_to_one_from_enough_trials(real_study):
    optuna_study = load_studies(real_study, "real")[0]
    table = param_importance(optuna_study, min_trials=2)
    assert list(table.columns) == ["param", "importance"]
    assert "optimizer" in set(table["param"])
    assert table["importance"].sum() == pytest.approx(1.0)
    # By default a handful of trials gives no ranking, and says why.
    few = param_importance(optuna_study)
    assert few.empty and few.attrs["note"].startswith("too few complete trials for importance")


def test_trials_without_a_recorded_sampler_take_it_from_the_space(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    grid = optuna.create_study(storage=url, study_name="grid", direction="maximize")
    grid.set_user_attr(records.SPACE_DEFINITION, {"grid": {"optimizer": ["sgd"], "lr": [0.1]}})
    add_trial(grid, "sgd", 0.1, 0.9)
    tpe = optuna.create_study(storage=url, study_name="tpe", direction="maximize")
    tpe.set_user_attr(records.SPACE_DEFINITION, {"optimizers": {"sgd": {}}})
    add_trial(tpe, "sgd", 0.1, 0.9)
    assert load_trials(url, "grid")["sampler"].tolist() == ["grid"]
    assert load_trials(url, "tpe")["sampler"].tolist() == [""]  # unknown: not assumed

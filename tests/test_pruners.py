"""Pruning within each optimizer: a trial is compared only with its own optimizer's."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from study.search.pruners import GroupedPruner, create_pruner, list_pruners

OPTIMIZER = CategoricalDistribution(("sgd", "adam"))


def _study(pruner):
    """Six SGD trials at ~0.97 and six Adam trials at ~0.85 by epoch 2, all complete.

    Each trial runs through ``pruner`` epoch by epoch, as in a study, so that ASHA and
    Hyperband have the rungs they compare with. Hyperband picks a trial's bracket from the
    study's name and the trial's number: under this name trial 12 (the first after these)
    falls in a bracket that judges it at epoch 2."""
    optuna_study = optuna.create_study(study_name="grouped", direction="maximize", pruner=pruner)
    for i in range(6):
        for optimizer, level in (("sgd", 0.97), ("adam", 0.85)):
            curve = {1: level - 0.05, 2: level + 0.001 * i, 3: level + 0.01}
            optuna_study.enqueue_trial({"optimizer": optimizer})
            trial = optuna_study.ask()
            trial.suggest_categorical("optimizer", OPTIMIZER.choices)
            for epoch, accuracy in curve.items():
                trial.report(accuracy, epoch)
                trial.should_prune()  # records the rungs; the trial completes all the same
            optuna_study.tell(trial, curve[3])
    return optuna_study


def _pruned(optuna_study, optimizer, accuracy_at_2):
    optuna_study.enqueue_trial({"optimizer": optimizer})
    trial = optuna_study.ask()
    trial.suggest_categorical("optimizer", OPTIMIZER.choices)
    trial.report(accuracy_at_2 - 0.05, 1)
    trial.report(accuracy_at_2, 2)
    pruned = trial.should_prune()
    optuna_study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return pruned


def test_an_adam_trial_is_judged_against_adam_not_sgd():
    within = _study(create_pruner("median", epochs=3, within="optimizer"))
    across = _study(create_pruner("median", epochs=3, within=None))
    assert not _pruned(within, "adam", 0.86)  # above Adam's median (0.85)
    assert _pruned(across, "adam", 0.86)  # below the median of all twelve (0.91)
    assert _pruned(within, "adam", 0.70)  # bad for Adam too
    assert _pruned(within, "sgd", 0.90)  # below SGD's median


def test_startup_trials_count_per_optimizer():
    pruner = create_pruner("median", epochs=3, within="optimizer")
    optuna_study = optuna.create_study(direction="maximize", pruner=pruner)
    for i in range(6):
        optuna_study.add_trial(
            optuna.trial.create_trial(
                params={"optimizer": "sgd"},
                distributions={"optimizer": OPTIMIZER},
                value=0.97,
                intermediate_values={1: 0.9, 2: 0.97 + 0.001 * i},
            )
        )
    # Adam has no complete trial yet: its first trials are never pruned, however low.
    assert not _pruned(optuna_study, "adam", 0.3)


@pytest.mark.parametrize("name", list_pruners())
def test_every_registered_pruner_judges_a_trial_within_its_optimizer(name):
    def pruned(within, optimizer, accuracy_at_2):  # each the first trial after the twelve
        return _pruned(_study(create_pruner(name, epochs=3, within=within)), optimizer,
                       accuracy_at_2)

    assert not pruned("optimizer", "adam", 0.86)  # ahead of every Adam trial
    if name == "none":
        assert not pruned("optimizer", "adam", 0.5)
        assert isinstance(create_pruner(name, epochs=3, within="optimizer"),
                          optuna.pruners.NopPruner)
    else:
        assert pruned("optimizer", "adam", 0.5)  # far behind every Adam trial
        assert pruned(None, "adam", 0.86)  # behind SGD's, when compared with the whole study
        assert isinstance(create_pruner(name, epochs=3, within="optimizer"), GroupedPruner)


def test_within_must_be_a_known_grouping():
    with pytest.raises(ValueError, match="unknown within='schedule'; choose one of: optimizer"):
        create_pruner("median", epochs=3, within="schedule")

"""What a run shows while it works (``study.search.progress``): the running trials of the
progress display and the line per finished trial."""

from __future__ import annotations

import optuna
import pytest

from study.search.progress import running_label, trial_line
from study.store import records


def _running(set_up) -> optuna.trial.FrozenTrial:
    """A RUNNING trial of a real (in-memory) study, as the display reads it from storage,
    after ``set_up(trial)`` wrote to it what the objective has written by then."""
    optuna_study = optuna.create_study(direction="maximize")
    trial = optuna_study.ask()
    set_up(trial)
    (frozen,) = optuna_study.get_trials(deepcopy=False)
    assert frozen.state == optuna.trial.TrialState.RUNNING
    return frozen


def _training(optimizer: str, *, epochs: int, done: int):
    def set_up(trial: optuna.Trial) -> None:
        trial.suggest_categorical("optimizer", [optimizer])
        trial.set_user_attr(records.CONFIG, {"optimizer": optimizer, "epochs": epochs})
        trial.set_user_attr(records.EVAL_ACCURACY, [0.9] * done)

    return set_up


@pytest.mark.parametrize(
    ("set_up", "shown"),
    [
        # Just created: no optimizer chosen yet (a grid point, the sampler still at work).
        (lambda trial: None, "starting"),
        # Chosen, its configuration not yet stored: the epoch it starts.
        (lambda trial: trial.suggest_categorical("optimizer", ["sgd"]), "sgd epoch 1"),
        (_training("adam", epochs=5, done=0), "adam epoch 1/5"),
        (_training("rmsprop", epochs=5, done=2), "rmsprop epoch 3/5"),
        # Every epoch has run; the trial is still writing its results: never "epoch 6".
        (_training("rmsprop", epochs=5, done=5), "rmsprop finishing"),
        # A fixed run of the lab's spaces, named by its configuration.
        (lambda trial: trial.set_user_attr(records.FIXED_TRIAL, "lab_config=sgd-multistep"),
         "sgd-multistep epoch 1"),
    ],
)
def test_a_running_trial_shows_its_optimizer_and_the_epoch_it_trains(set_up, shown):
    assert running_label(_running(set_up)) == shown


def test_a_finished_trial_line_counts_the_epochs_it_ran():
    optuna_study = optuna.create_study(direction="maximize")
    trial = optuna_study.ask()
    trial.suggest_categorical("optimizer", ["adam"])
    trial.set_user_attr(records.CONFIG, {"optimizer": "adam", "lr": 1.2e-4, "epochs": 5})
    trial.set_user_attr(records.EVAL_ACCURACY, [0.9, 0.95, 0.96, 0.965, 0.9676])
    trial.set_user_attr(records.EPOCH_SECONDS, [3.5, 3.7, 3.8, 3.9, 3.8])
    optuna_study.tell(trial, 0.9676)
    line = trial_line(optuna_study.trials[0])
    assert line == "trial   0 adam    lr 1.20e-04  accuracy 0.9676  (5 epochs, 18.7 s)"

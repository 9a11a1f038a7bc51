"""Balanced optimizer allocation: each optimizer gets an equal share of trials."""

from __future__ import annotations

from collections import Counter

import optuna
import pytest
from conftest import QUICK

from search_spaces import get_space
from study.run import main
from study.search.samplers import BalancedSampler, create_sampler, list_samplers
from study.train.config import TrialConfig


def _optimize(optuna_study, n_trials, *, prune_sgd=False):
    """Trials of the default space with a near-zero objective that favours SGD strongly,
    so a sampler left to itself would pile onto SGD."""
    space = get_space("default")

    def objective(trial):
        config = space.config_for(trial, TrialConfig(epochs=5))
        if prune_sgd and config.optimizer == "sgd":
            raise optuna.TrialPruned()
        return 0.99 if config.optimizer == "sgd" else 0.5

    optuna_study.optimize(objective, n_trials=n_trials)
    return Counter(t.params["optimizer"] for t in optuna_study.get_trials())


@pytest.mark.parametrize("name", list_samplers())
def test_every_optimizer_gets_an_equal_share_and_keeps_it_on_resume(name, tmp_path):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    optuna_study = optuna.create_study(
        storage=url, direction="maximize", sampler=BalancedSampler(create_sampler(name, seed=0))
    )
    assert _optimize(optuna_study, 12) == {"sgd": 3, "rmsprop": 3, "adam": 3, "adamw": 3}
    # A resumed study (a new process: a new sampler object) stays balanced.
    resumed = optuna.load_study(
        study_name=optuna_study.study_name,
        storage=url,
        sampler=BalancedSampler(create_sampler(name, seed=1, n_existing_trials=12)),
    )
    assert _optimize(resumed, 9) == {"sgd": 6, "rmsprop": 5, "adam": 5, "adamw": 5}


def test_ties_go_in_registry_order_and_pruned_trials_count():
    optuna_study = optuna.create_study(
        direction="maximize", sampler=BalancedSampler(create_sampler("tpe", seed=0))
    )
    _optimize(optuna_study, 4, prune_sgd=True)
    assert [t.params["optimizer"] for t in optuna_study.get_trials()] == [
        "sgd",
        "rmsprop",
        "adam",
        "adamw",
    ]


def test_tpe_alone_piles_onto_the_optimizer_that_looks_best():
    # The reason balanced allocation exists: the same objective without it.
    optuna_study = optuna.create_study(direction="maximize", sampler=create_sampler("tpe", seed=0))
    counts = _optimize(optuna_study, 40)
    assert counts["sgd"] > 2 * min(counts[o] for o in ("rmsprop", "adam", "adamw"))


def test_the_other_parameters_are_still_the_samplers():
    optuna_study = optuna.create_study(
        direction="maximize", sampler=BalancedSampler(create_sampler("random", seed=0))
    )
    _optimize(optuna_study, 8)
    lrs = [t.params[f"{t.params['optimizer']}_lr"] for t in optuna_study.get_trials()]
    assert len(set(lrs)) == 8


@pytest.mark.slow
def test_a_default_study_from_the_command_line_is_balanced(in_tmp):
    args = ["--epochs", "1", "--study-name", "bal", *QUICK]
    assert main(["--trials", "12", *args]) == 0
    storage = f"sqlite:///{in_tmp / 'studies' / 'bal.db'}"
    optuna_study = optuna.load_study(study_name="bal", storage=storage)
    assert optuna_study.user_attrs["allocation"] == "balanced"
    counts = Counter(t.params["optimizer"] for t in optuna_study.get_trials())
    assert counts == {"sgd": 3, "rmsprop": 3, "adam": 3, "adamw": 3}
    assert main(["--trials", "16", *args]) == 0
    counts = Counter(t.params["optimizer"] for t in optuna_study.get_trials())
    assert counts == {"sgd": 4, "rmsprop": 4, "adam": 4, "adamw": 4}

from __future__ import annotations

import optuna
import pytest

from search_spaces import LAB_CONFIGS, TrialConfig, get_space, list_spaces
from study.optim import get_optimizer_info


def _configs(space, tmp_path, n=40):
    optuna_study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 's.db'}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    space.enqueue_fixed_trials(optuna_study, n)
    configs = []
    for _ in range(n):
        trial = optuna_study.ask()
        configs.append(space.config_for(trial, TrialConfig(epochs=5)))
        optuna_study.tell(trial, 0.5)
    return configs


@pytest.mark.parametrize("name", list_spaces())
def test_every_space_proposes_valid_configs_with_conditional_parameters(name, tmp_path):
    space = get_space(name)
    configs = _configs(space, tmp_path)
    for config in configs:
        info = get_optimizer_info(config.optimizer)
        assert config.momentum is None or info.has_momentum
        assert config.beta1 is None or info.has_betas
        assert config.epochs == 5
    if space.optimizers:
        assert {c.optimizer for c in configs} == set(space.optimizers)


def test_each_optimizer_has_its_own_lr_range_in_the_default_space(tmp_path):
    for config in _configs(get_space("default"), tmp_path, n=60):
        low, high = get_optimizer_info(config.optimizer).lr_range
        assert low <= config.lr <= high
        if config.optimizer == "sgd":
            assert config.momentum is not None
        if config.optimizer in ("adam", "adamw"):
            assert config.beta1 is not None and config.momentum is None


def test_lab_space_enqueues_once_however_often_it_is_asked(tmp_path):
    space = get_space("lab")
    optuna_study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'l.db'}")
    assert space.enqueue_fixed_trials(optuna_study, 4) == 4
    assert space.enqueue_fixed_trials(optuna_study, 4) == 0
    assert space.enqueue_fixed_trials(optuna_study, 5) == 1
    waiting = optuna_study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs["fixed_trial"] for t in waiting] == [
        f"lab_config={n}" for n in (*LAB_CONFIGS, "sgd", "rmsprop")
    ]


def test_restrict_keeps_order_and_rejects_what_the_space_does_not_search():
    space = get_space("default").restrict(["adam", "sgd", "adam"])
    assert space.optimizers == ("adam", "sgd")
    assert get_space("default").optimizers == ("sgd", "rmsprop", "adam", "adamw")
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        get_space("default").restrict(["lion"])
    with pytest.raises(ValueError, match="runs fixed configurations"):
        get_space("lab").restrict(["sgd"])

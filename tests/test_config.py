from __future__ import annotations

import json

import pytest

from study.train.config import ConfigError, TrialConfig
from study.train.optim import get_optimizer_info, list_optimizers


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lr": -0.1}, r"lr must be a finite number > 0, but got lr=-0.1"),
        ({"lr": float("nan")}, r"lr must be a finite number > 0"),
        ({"optimizer": "lamb"}, r"unknown optimizer 'lamb'; choose one of: sgd, rmsprop"),
        ({"optimizer": "adam", "momentum": 0.9}, r"'adam' takes no momentum.*momentum=0.9"),
        ({"optimizer": "sgd", "beta1": 0.9}, r"'sgd' takes no beta1"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\), but got momentum=1.0"),
        ({"nesterov": True}, r"nesterov=True needs .* momentum > 0"),
        ({"weight_decay": -1e-4}, r"weight_decay must be a finite number >= 0"),
        ({"optimizer": "sgd_lab", "weight_decay": 1e-4}, r"'sgd_lab' takes no weight decay"),
        ({"schedule": "cyclic"}, r"unknown schedule 'cyclic'"),
        ({"schedule": "step", "schedule_params": {"gamma": 0}}, r"gamma must be in"),
        ({"warmup_epochs": 5}, r"warmup_epochs must be in \[0, epochs=5\)"),
        (
            {
                "schedule": "multistep",
                "schedule_params": {"milestones": [1, 6]},
                "warmup_epochs": 2,
                "epochs": 15,
            },
            r"schedule: schedule 'multistep' counts epochs from the start of training, so"
            r" milestones=\[1, 6\] puts a decay at epoch 1, inside the warm-up"
            r" \(warmup_epochs=2\); give milestones >= 2 or warmup_epochs <= 1",
        ),
        (
            {"schedule": "step", "schedule_params": {"step_epochs": 1}, "warmup_epochs": 1.5},
            r"step_epochs=1 puts a decay at epoch 1, inside the warm-up",
        ),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, but got batch_size=0"),
        ({"epochs": 0}, r"epochs must be an integer >= 1"),
        ({"seed": -1}, r"seed must be an integer >= 0"),
        ({"optimizer": "adam", "dampening": 0.1}, r"'adam' takes no dampening"),
        ({"optimizer": "sgd", "dampening": 0.1}, r"dampening .* needs momentum > 0"),
        (
            {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "dampening": 0.1},
            r"Nesterov momentum needs dampening 0",
        ),
        ({"optimizer": "sgd", "centered": True}, r"'sgd' takes no centered \(only rmsprop"),
        ({"optimizer": "nadam", "momentum": 0.9}, r"'nadam' takes no momentum"),
        ({"optimizer": "adagrad", "beta1": 0.9}, r"'adagrad' takes no beta1"),
        ({"head_lr_mult": -2.0}, r"head_lr_mult must be a finite number > 0"),
        ({"head_weight_decay": float("inf")}, r"head_weight_decay must be a finite number >= 0"),
        (
            {"optimizer": "sgd_lab", "head_weight_decay": 1e-3},
            r"'sgd_lab' takes no weight decay, but got head_weight_decay=0.001",
        ),
    ],
)
def test_bad_values_name_the_field_the_value_and_the_range(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrialConfig(**changes)


def test_schedule_defaults_are_filled_in_and_the_dict_round_trips():
    config = TrialConfig(
        optimizer="adamw",
        lr=3e-4,
        beta1=0.8,
        weight_decay=0.05,
        schedule="multistep",
        warmup_epochs=0.5,
    )
    assert config.schedule_params == {"milestones": (6.0, 11.0), "gamma": 0.1}
    stored = json.loads(json.dumps(config.to_dict()))  # what the study database holds
    assert TrialConfig.from_dict(stored) == config


def test_new_fields_are_recorded_and_old_records_still_load():
    config = TrialConfig(
        optimizer="rmsprop",
        lr=1e-3,
        momentum=0.5,
        centered=True,
        weight_decay=1e-4,
        no_decay_1d=False,
        head_lr_mult=3.0,
        head_weight_decay=1e-3,
    )
    stored = json.loads(json.dumps(config.to_dict()))
    assert {k: stored[k] for k in ("centered", "head_lr_mult", "head_weight_decay")} == {
        "centered": True,
        "head_lr_mult": 3.0,
        "head_weight_decay": 1e-3,
    }
    assert TrialConfig.from_dict(stored) == config
    sgd = TrialConfig(optimizer="sgd", lr=0.1, momentum=0.9, dampening=0.2)
    assert sgd.optimizer_hparams()["dampening"] == 0.2
    # A record written before these fields existed: they take their defaults.
    old = {
        k: v
        for k, v in TrialConfig().to_dict().items()
        if k not in ("dampening", "centered", "head_lr_mult", "head_weight_decay")
    }
    loaded = TrialConfig.from_dict(old)
    assert (loaded.dampening, loaded.centered, loaded.head_lr_mult) == (None, False, None)


def test_every_optimizer_takes_the_defaults():
    for name in list_optimizers():
        config = TrialConfig(optimizer=name, lr=get_optimizer_info(name).default_lr)
        assert config.head_lr_mult is None and config.weight_decay == 0.0


def test_milestones_count_from_the_start_of_training_and_may_end_the_warmup():
    # The README's example: the lab's milestones with one warm-up epoch.
    config = TrialConfig(
        schedule="multistep",
        schedule_params={"milestones": [6, 11]},
        epochs=15,
        warmup_epochs=1,
    )
    assert config.schedule_params["milestones"] == (6.0, 11.0)
    TrialConfig(schedule="multistep", schedule_params={"milestones": [1]}, warmup_epochs=1)
    with pytest.raises(ConfigError, match="inside the warm-up"):
        config.replace(warmup_epochs=6.5)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match="unknown TrialConfig field 'learning_rate'"):
        TrialConfig.from_dict({"learning_rate": 0.1})


def test_replace_with_another_schedule_starts_from_its_defaults():
    cosine = TrialConfig(schedule="cosine", schedule_params={"floor": 0.1})
    assert cosine.replace(schedule="constant").schedule_params == {}
    assert cosine.replace(schedule="step").schedule_params == {"step_epochs": 2.0, "gamma": 0.1}
    assert cosine.replace(lr=0.2).schedule_params == {"floor": 0.1}  # same schedule: kept


def test_replace_validates_again():
    with pytest.raises(ConfigError, match="lr must be"):
        TrialConfig().replace(lr=0)

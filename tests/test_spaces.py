from __future__ import annotations

import json

import optuna
import pytest
from optuna.distributions import FloatDistribution

from search_spaces import (
    LAB_CONFIGS,
    WIDE_LR_RANGES,
    SearchSpace,
    drop_inapplicable,
    get_space,
    list_spaces,
)
from study.store import records
from study.train.config import TrialConfig
from study.train.loop import fit
from study.train.optim import get_optimizer_info, list_optimizers


def _trials(space, n=40, epochs=5):
    """``n`` trials of ``space`` asked of a random sampler (in memory: the storage is not
    what is tested here); returns (config, frozen trial) pairs."""
    optuna_study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    space.enqueue_fixed_trials(optuna_study, n)
    configs = []
    for _ in range(n):
        trial = optuna_study.ask()
        configs.append(space.config_for(trial, TrialConfig(epochs=epochs)))
        optuna_study.tell(trial, 0.5)
    return list(zip(configs, optuna_study.get_trials(), strict=True))


@pytest.mark.parametrize("name", list_spaces())
def test_every_space_proposes_valid_configs_with_conditional_parameters(name):
    space = get_space(name)
    pairs = _trials(space, n=80)
    for config, _ in pairs:
        info = get_optimizer_info(config.optimizer)
        assert config.momentum is None or info.has_momentum
        assert config.beta1 is None or info.has_betas
        assert config.epochs == 5
    if space.optimizers:
        assert {c.optimizer for c, _ in pairs} == set(space.optimizers)


@pytest.mark.parametrize("name", list_spaces())
def test_what_is_sampled_is_what_is_declared_and_stored(name):
    """Each range is declared once: every trial's parameter distribution is the declared
    one, and the definition stored with the study decodes to the same distributions."""
    space = get_space(name)
    declared = space.distributions(epochs=5)
    for _, trial in _trials(space, epochs=5):
        for param, distribution in trial.distributions.items():
            assert declared[param] == distribution, param
    stored = json.loads(json.dumps(space.definition(epochs=5)))  # as the database holds it
    if space.configs:
        # each fixed configuration as stored (functions of the epochs resolved) is the one run
        assert set(stored["configs"]) == set(space.configs)
        for config, trial in _trials(space, n=len(space.configs), epochs=5):
            fields = stored["configs"][trial.params[space.config_param]]
            ran = json.loads(json.dumps(config.to_dict()))
            assert {k: ran[k] for k in fields} == fields
        return
    for optimizer, fields in stored["optimizers"].items():
        for field, value in fields.items():
            if isinstance(value, dict):
                decoded = records.decode_distribution(value)
                assert decoded == declared[f"{optimizer}_{field}"]


def test_each_optimizer_has_its_own_lr_range_in_the_default_space():
    space = get_space("default")
    for config, trial in _trials(space, n=60):
        lr_range = space.optimizers[config.optimizer]["lr"]
        assert lr_range.low <= config.lr <= lr_range.high
        assert trial.distributions[f"{config.optimizer}_lr"] == lr_range
        if config.optimizer == "sgd":
            assert config.momentum is not None
        if config.optimizer in ("adam", "adamw"):
            assert config.beta1 is not None and config.momentum is None
    # SGD's and Adam's ranges are orders of magnitude apart.
    assert space.optimizers["sgd"]["lr"].low >= 100 * space.optimizers["adam"]["lr"].low


def test_ranges_that_depend_on_the_run_length_follow_the_epochs():
    space = get_space("default")
    assert space.distributions(epochs=5)["step_epochs"].high == 4
    assert space.distributions(epochs=15)["step_epochs"].high == 14
    assert space.distributions(epochs=1)["warmup_epochs"].high == 0.5
    assert (
        space.definition(epochs=15)["schedules"]["step"]["step_epochs"]["attributes"]["high"] == 14
    )


def test_fixed_values_are_applied_not_sampled():
    space = get_space("lr-sweep")
    for config, trial in _trials(space, n=20):
        assert config.schedule == "constant"
        assert set(trial.params) == {"optimizer", f"{config.optimizer}_lr"}
        if config.optimizer == "sgd":
            assert config.momentum == 0.9


def test_a_space_built_from_data_alone():
    space = SearchSpace(
        "mine",
        "Adam only, three decades of learning rate",
        optimizers={"adam": {"lr": FloatDistribution(1e-5, 1e-2, log=True), "beta1": 0.8}},
    )
    ((config, trial),) = _trials(space, n=1)
    assert config.optimizer == "adam" and config.beta1 == 0.8
    assert 1e-5 <= config.lr <= 1e-2 and set(trial.params) == {"optimizer", "adam_lr"}
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        SearchSpace("bad", "", optimizers={"lion": {}})


def test_lab_space_enqueues_once_however_often_it_is_asked():
    space = get_space("lab")
    optuna_study = optuna.create_study()
    assert space.enqueue_fixed_trials(optuna_study, 4) == 4
    assert space.enqueue_fixed_trials(optuna_study, 4) == 0
    assert space.enqueue_fixed_trials(optuna_study, 5) == 1
    waiting = optuna_study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs[records.FIXED_TRIAL] for t in waiting] == [
        f"lab_config={n}" for n in (*LAB_CONFIGS, "sgd", "rmsprop")
    ]


def test_restrict_keeps_order_and_rejects_what_the_space_does_not_search():
    space = get_space("default").restrict(["adam", "sgd", "adam"])
    assert space.optimizer_names == ("adam", "sgd")
    assert get_space("default").optimizer_names == ("sgd", "rmsprop", "adam", "adamw")
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        get_space("default").restrict(["lion"])
    with pytest.raises(ValueError, match="runs fixed configurations"):
        get_space("lab").restrict(["sgd"])


@pytest.mark.parametrize("name", list_spaces())
def test_every_space_builds_and_trains_its_first_trial(name, tiny_data):
    space = get_space(name)
    ((config, _),) = _trials(space, n=1, epochs=1)
    result = fit(config.replace(batch_size=64), tiny_data)
    assert result.diverged or len(result.history) == 1  # a diverged run is data, not a crash


def test_default_keeps_its_four_optimizers_and_wide_searches_every_one():
    # default's trials are shared equally among its optimizers: more would thin each share
    assert get_space("default").optimizer_names == ("sgd", "rmsprop", "adam", "adamw")
    wide = get_space("wide")
    assert set(wide.optimizer_names) == set(list_optimizers())
    for optimizer, (low, high, reason) in WIDE_LR_RANGES.items():
        assert wide.optimizers[optimizer]["lr"] == FloatDistribution(low, high, log=True)
        assert reason  # the one-line reason for the range, for the README
    # Adagrad's and SGD's good rates sit above Adam's.
    assert wide.optimizers["adagrad"]["lr"].low > wide.optimizers["adam"]["lr"].low
    assert wide.optimizers["sgd_lab"]["lr"] == wide.optimizers["sgd"]["lr"]


def test_wide_samples_the_labs_knobs_only_where_they_act():
    space = get_space("wide")
    pairs = _trials(space, n=150)
    seen: dict[str, set] = {"no_decay_1d": set(), "centered": set(), "nesterov": set()}
    for config, trial in pairs:
        params = trial.params
        assert config.head_lr_mult == params["head_lr_mult"]
        assert config.to_dict()["head_lr_mult"] == config.head_lr_mult  # recorded
        if config.optimizer == "sgd":
            # dampening acts on the momentum buffer, and torch's Nesterov needs it at 0
            assert ("sgd_dampening" in params) == (not config.nesterov)
            if config.nesterov:
                assert config.dampening is None
            seen["nesterov"].add(config.nesterov)
        if config.optimizer == "rmsprop":
            assert config.momentum == params["rmsprop_momentum"]
            seen["centered"].add(config.centered)
        if get_optimizer_info(config.optimizer).has_weight_decay:
            key = f"{config.optimizer}_head_weight_decay"
            assert config.head_weight_decay == params[key]
            seen["no_decay_1d"].add(config.no_decay_1d)
        else:  # sgd_lab: no weight decay, nothing about it sampled
            assert config.weight_decay == 0 and config.head_weight_decay is None
            assert not any("decay" in p for p in params)
    assert all(values == {False, True} for values in seen.values()), seen


def test_drop_inapplicable_follows_what_the_space_samples():
    fields = {"lr": 0.1, "momentum": 0.0, "nesterov": True, "dampening": 0.5}
    assert drop_inapplicable(fields) == {"lr": 0.1, "momentum": 0.0}
    fields = {"momentum": 0.9, "nesterov": True, "dampening": 0.5}
    assert drop_inapplicable(fields) == {"momentum": 0.9, "nesterov": True}
    fields = {"momentum": 0.9, "nesterov": False, "dampening": 0.5}
    assert drop_inapplicable(fields) == fields

from __future__ import annotations

import math
import pickle

import pytest
import torch

from study.train.config import ConfigError, TrialConfig
from study.train.schedules import (
    ReduceOnPlateau,
    build_epoch_hook,
    build_lr_lambda,
    build_momentum_fn,
    create_scheduler,
    get_schedule_info,
    list_schedules,
    validate_schedule_params,
)

SPE = 10  # updates per epoch in these tests


def lrs(name: str, params=None, *, epochs: int = 5, warmup: float = 0.0, base: float = 0.1):
    """The learning rate used by each update, read from a real optimizer + LambdaLR."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=base)
    scheduler = create_scheduler(
        optimizer,
        build_lr_lambda(name, params, steps_per_epoch=SPE, epochs=epochs, warmup_epochs=warmup),
    )
    used = []
    for _ in range(epochs * SPE):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return used


#: The schedules warm-up composes onto (all but one_cycle, which has its own).
WARMED = [n for n in list_schedules() if get_schedule_info(n).composes_warmup]


@pytest.mark.parametrize("name", WARMED)
def test_warmup_reaches_the_target_at_its_last_step_and_never_starts_at_zero(name):
    used = lrs(name, warmup=1.0)
    # where the shape starts: the full rate, or base_ratio x it for a cyclic one
    start = 0.1 * build_lr_lambda(name, steps_per_epoch=SPE, epochs=4)(0)
    assert used[0] == pytest.approx(start / SPE)
    assert used[0] > 0
    assert used[SPE - 1] == pytest.approx(start)  # last warm-up update: where the shape starts
    assert used[SPE] == pytest.approx(start)  # ... and the shape goes on from there
    assert all(a < b for a, b in zip(used[: SPE - 1], used[1:SPE], strict=True))
    assert max(used) <= 0.1 + 1e-12  # lr is the highest rate of every schedule


def test_the_existing_shapes_warm_up_to_the_full_rate_exactly_as_before():
    # Only a shape that starts below the full rate gets a warm-up target: configurations
    # that ran before the cyclic schedules existed give the same rates, bit for bit.
    for name in ("constant", "exponential", "cosine", "linear", "cosine_restarts", "plateau"):
        f = build_lr_lambda(name, steps_per_epoch=SPE, epochs=5, warmup_epochs=1)
        assert "target" not in f.keywords, name
        assert f(SPE - 1) == 1.0


def test_constant_is_constant():
    assert set(lrs("constant")) == {0.1}


def test_step_decays_at_the_right_update():
    used = lrs("step", {"step_epochs": 2, "gamma": 0.5})
    assert used[2 * SPE - 1] == pytest.approx(0.1)
    assert used[2 * SPE] == pytest.approx(0.05)
    assert used[4 * SPE] == pytest.approx(0.025)


def torch_lr_per_epoch(scheduler_cls, epochs: int, base: float = 0.1, **kwargs) -> list[float]:
    """The lab's way: a torch scheduler on a dummy optimizer, stepped once per epoch."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = scheduler_cls(optimizer, **kwargs)
    out = []
    for _ in range(epochs):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("warmup", [0.0, 1.0, 2.5])
def test_multistep_decays_where_the_labs_multisteplr_does_warmup_or_not(warmup):
    # The case: milestones [6, 11] over 15 epochs; with 1 warm-up epoch they used to
    # move to 7 and 12.
    used = lrs("multistep", {"milestones": [6, 11], "gamma": 0.1}, epochs=15, warmup=warmup)
    lab = torch_lr_per_epoch(
        torch.optim.lr_scheduler.MultiStepLR, 15, milestones=[6, 11], gamma=0.1
    )
    assert lab[5:7] == pytest.approx([0.1, 0.01]) and lab[10:12] == pytest.approx([0.01, 0.001])
    first_full = math.ceil(warmup)  # the first epoch with no warm-up update in it
    for epoch in range(first_full, 15):
        assert used[epoch * SPE : (epoch + 1) * SPE] == pytest.approx([lab[epoch]] * SPE)
    # the drop by gamma is exactly at the first update of (0-based) epochs 6 and 11
    assert used[6 * SPE] / used[6 * SPE - 1] == pytest.approx(0.1)
    assert used[11 * SPE] / used[11 * SPE - 1] == pytest.approx(0.1)
    drops = [i for i in range(1, len(used)) if used[i] < used[i - 1] * 0.999]
    assert drops == [6 * SPE, 11 * SPE]


def test_step_decays_where_the_labs_steplr_does_with_warmup():
    used = lrs("step", {"step_epochs": 2, "gamma": 0.5}, epochs=7, warmup=1.0)
    lab = torch_lr_per_epoch(torch.optim.lr_scheduler.StepLR, 7, step_size=2, gamma=0.5)
    for epoch in range(1, 7):
        assert used[epoch * SPE : (epoch + 1) * SPE] == pytest.approx([lab[epoch]] * SPE)


def test_a_milestone_at_the_end_of_warmup_decays_at_the_first_update_after_it():
    used = lrs("multistep", {"milestones": [1], "gamma": 0.5}, epochs=3, warmup=1.0)
    assert used[SPE - 1] == pytest.approx(0.1)  # warm-up reaches the base rate ...
    assert used[SPE] == pytest.approx(0.05)  # ... and the milestone decays it next


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "multistep",
            {"milestones": [0.5, 6]},
            r"'multistep' counts epochs from the start of training, so milestones=\[0.5, 6\]"
            r" puts a decay at epoch 0.5, inside the warm-up \(warmup_epochs=1\); give"
            r" milestones >= 1 or warmup_epochs <= 0.5",
        ),
        (
            "step",
            {"step_epochs": 0.5},
            r"step_epochs=0.5 puts a decay at epoch 0.5, inside the warm-up.*"
            r"step_epochs >= 1 or warmup_epochs <= 0.5",
        ),
    ],
)
def test_a_decay_inside_the_warmup_is_an_error_naming_the_value_and_the_fix(name, params, message):
    with pytest.raises(ValueError, match=message):
        validate_schedule_params(name, params, warmup_epochs=1)
    with pytest.raises(ValueError, match=message):
        build_lr_lambda(name, params, steps_per_epoch=SPE, epochs=15, warmup_epochs=1)
    validate_schedule_params(name, params, warmup_epochs=0.5)  # at its end: allowed
    validate_schedule_params(name, params)  # no warm-up: allowed


def test_exponential_counts_its_epochs_from_the_end_of_warmup():
    used = lrs("exponential", {"gamma": 0.5}, warmup=1.0)
    assert used[SPE] == pytest.approx(0.1)
    assert used[2 * SPE] == pytest.approx(0.05)


def test_cosine_reaches_its_floor_at_the_end():
    used = lrs("cosine", {"floor": 0.1})
    assert used[0] == pytest.approx(0.1)
    steps = 5 * SPE
    assert used[-1] == pytest.approx(
        0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (steps - 1) / steps)))
    )
    # the factor at the end of the run is exactly the floor
    f = build_lr_lambda("cosine", {"floor": 0.1}, steps_per_epoch=SPE, epochs=5)
    assert f(steps) == pytest.approx(0.1)
    assert f(steps * 3) == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(used, used[1:], strict=False))


def test_cosine_with_warmup_decays_over_what_is_left():
    f = build_lr_lambda("cosine", steps_per_epoch=SPE, epochs=5, warmup_epochs=1)
    assert f(SPE - 1) == pytest.approx(1.0)
    assert f(SPE) == pytest.approx(1.0)  # decay starts after warm-up
    assert f(5 * SPE) == pytest.approx(0.0, abs=1e-12)  # floor at the run's end


def test_exponential_is_gamma_per_epoch():
    used = lrs("exponential", {"gamma": 0.5})
    assert used[SPE] == pytest.approx(0.05)
    assert used[2 * SPE] == pytest.approx(0.025)


def test_linear_goes_straight_to_the_floor():
    f = build_lr_lambda("linear", {"floor": 0.2}, steps_per_epoch=SPE, epochs=5)
    assert f(25) == pytest.approx(0.6)
    assert f(50) == pytest.approx(0.2)


def test_schedules_pickle():
    f = build_lr_lambda("cosine", steps_per_epoch=SPE, epochs=5, warmup_epochs=1)
    assert pickle.loads(pickle.dumps(f))(17) == f(17)


def test_bad_schedule_params_name_the_value_and_range():
    with pytest.raises(ValueError, match=r"gamma must be in \[0.0001, 1\].*gamma=2"):
        validate_schedule_params("step", {"gamma": 2})
    with pytest.raises(ValueError, match="takes no parameter 'gamma'; its parameters: floor"):
        validate_schedule_params("cosine", {"gamma": 0.5})
    with pytest.raises(ValueError, match="unknown schedule 'cyclic'; choose one of: constant"):
        validate_schedule_params("cyclic", {})


# --- cosine_restarts, triangular, triangular2, exp_range, one_cycle, plateau --------------


def torch_lr_per_update(scheduler_cls, updates: int, base: float = 0.1, **kwargs):
    """A torch scheduler stepped once per update: the rate (and momentum) of each update."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base, momentum=0.9)
    scheduler = scheduler_cls(optimizer, **kwargs)
    rates, momenta = [], []
    for _ in range(updates):
        rates.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        scheduler.step()
    return rates, momenta


@pytest.mark.parametrize(("period", "mult"), [(1.0, 1), (1.0, 2), (0.5, 3), (2.0, 1)])
def test_cosine_restarts_is_torchs_cosine_annealing_warm_restarts_per_update(period, mult):
    params = {"period_epochs": period, "period_mult": mult, "floor": 0.1}
    used = lrs("cosine_restarts", params, epochs=6)
    torch_rates, _ = torch_lr_per_update(
        torch.optim.lr_scheduler.CosineAnnealingWarmRestarts,
        6 * SPE,
        T_0=round(period * SPE),
        T_mult=mult,
        eta_min=0.1 * 0.1,
    )
    assert used == pytest.approx(torch_rates)


def test_cosine_restarts_restarts_at_the_base_rate_each_period_longer_by_period_mult():
    used = lrs("cosine_restarts", {"period_epochs": 1, "period_mult": 2, "floor": 0.1})
    # periods of 1, 2, then 4 epochs: restarts at the first update of epochs 1 and 3
    restarts = [i for i in range(1, len(used)) if used[i] > used[i - 1]]
    assert restarts == [SPE, 3 * SPE]
    for i in (0, SPE, 3 * SPE):
        assert used[i] == pytest.approx(0.1)
    # the last update of each period is one update short of the floor (0.01)
    assert used[SPE - 1] == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * 0.9)))
    assert used[2 * SPE] == pytest.approx(0.01 + 0.09 * 0.5)  # half-way through period 2
    assert used[3 * SPE - 1] == pytest.approx(
        0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * 19 / 20))
    )


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_the_cyclic_schedules_are_torchs_cycliclr_per_update(mode):
    params = {"step_epochs": 1.5, "base_ratio": 0.2}
    if mode == "exp_range":
        params["gamma"] = 0.6  # per epoch: CyclicLR's gamma per update is its SPE-th root
    used = lrs(mode, params, epochs=8)
    torch_rates, _ = torch_lr_per_update(
        torch.optim.lr_scheduler.CyclicLR,
        8 * SPE,
        base_lr=0.02,
        max_lr=0.1,
        step_size_up=15,
        mode=mode,
        gamma=params.get("gamma", 1.0) ** (1 / SPE),
        cycle_momentum=False,
    )
    assert used == pytest.approx(torch_rates)


def test_triangular_climbs_from_base_ratio_to_lr_and_back_every_cycle():
    used = lrs("triangular", {"step_epochs": 1, "base_ratio": 0.1}, epochs=6)
    for cycle in range(3):
        assert used[2 * cycle * SPE] == pytest.approx(0.01)  # each cycle starts at the base
        assert used[(2 * cycle + 1) * SPE] == pytest.approx(0.1)  # and peaks at lr
    assert used[SPE // 2] == pytest.approx(0.055)  # linear in between
    assert min(used) == pytest.approx(0.01) and max(used) == pytest.approx(0.1)


def test_triangular2_halves_the_height_above_the_base_every_cycle():
    used = lrs("triangular2", {"step_epochs": 1, "base_ratio": 0.1}, epochs=6)
    peaks = [used[(2 * cycle + 1) * SPE] for cycle in range(3)]
    assert peaks == pytest.approx([0.1, 0.01 + 0.09 / 2, 0.01 + 0.09 / 4])
    assert [used[2 * cycle * SPE] for cycle in range(3)] == pytest.approx([0.01] * 3)


def test_exp_range_shrinks_the_height_by_gamma_per_epoch():
    used = lrs("exp_range", {"step_epochs": 1, "base_ratio": 0.1, "gamma": 0.5}, epochs=6)
    peaks = [used[(2 * cycle + 1) * SPE] for cycle in range(3)]
    # the peaks fall at epochs 1, 3, 5: the height is 0.09 x 0.5 ** epoch there
    assert peaks == pytest.approx([0.01 + 0.09 * 0.5, 0.01 + 0.09 * 0.5**3, 0.01 + 0.09 * 0.5**5])
    assert [used[2 * cycle * SPE] for cycle in range(3)] == pytest.approx([0.01] * 3)


def test_a_cyclic_schedule_counts_its_cycles_from_the_end_of_warmup():
    warm = lrs("triangular", {"step_epochs": 1, "base_ratio": 0.1}, epochs=5, warmup=1.0)
    cold = lrs("triangular", {"step_epochs": 1, "base_ratio": 0.1}, epochs=4)
    assert warm[SPE:] == pytest.approx(cold)


def test_one_cycle_is_torchs_onecyclelr_per_update_momentum_included():
    params = {"pct_start": 0.25, "div_factor": 10, "final_div_factor": 100}
    used = lrs("one_cycle", params, epochs=6)
    torch_rates, torch_momenta = torch_lr_per_update(
        torch.optim.lr_scheduler.OneCycleLR,
        6 * SPE,
        max_lr=0.1,
        total_steps=6 * SPE,
        pct_start=0.25,
        div_factor=10,
        final_div_factor=100,
    )
    assert used == pytest.approx(torch_rates)
    momentum = build_momentum_fn("one_cycle", params, steps_per_epoch=SPE, epochs=6)
    assert [momentum(i) for i in range(6 * SPE)] == pytest.approx(torch_momenta)


def test_one_cycle_rises_to_lr_then_anneals_while_momentum_cycles_the_other_way():
    used = lrs("one_cycle")  # 50 updates; defaults: pct_start 0.3, 25, 1e4, 0.85-0.95
    peak = used.index(max(used))
    assert used[0] == pytest.approx(0.1 / 25)
    assert peak == 14 and used[peak] == pytest.approx(0.1)  # 0.3 x 50 - 1
    assert used[-1] == pytest.approx(0.1 / 25 / 1e4)  # final value, at the last update
    momentum = build_momentum_fn("one_cycle", steps_per_epoch=SPE, epochs=5)
    assert momentum(0) == pytest.approx(0.95) and momentum(49) == pytest.approx(0.95)
    assert momentum(peak) == pytest.approx(0.85)
    assert min(momentum(i) for i in range(50)) == pytest.approx(0.85)
    assert (
        build_momentum_fn("one_cycle", {"cycle_momentum": 0}, steps_per_epoch=SPE, epochs=5)
        is None
    )
    for name in set(list_schedules()) - {"one_cycle"}:
        assert build_momentum_fn(name, steps_per_epoch=SPE, epochs=5) is None, name


def test_one_cycle_takes_no_warmup_and_says_how_to_fix_it():
    message = (
        r"schedule 'one_cycle' has a warm-up of its own, so it takes no warmup_epochs, but"
        r" got warmup_epochs=1; set warmup_epochs=0 \(its pct_start is the fraction of the"
        r" run spent rising\)"
    )
    with pytest.raises(ValueError, match=message):
        build_lr_lambda("one_cycle", steps_per_epoch=SPE, epochs=5, warmup_epochs=1)
    with pytest.raises(ConfigError, match=message):
        TrialConfig(schedule="one_cycle", warmup_epochs=1)
    TrialConfig(schedule="one_cycle", warmup_epochs=0)


@pytest.mark.parametrize(
    "accuracies",
    [
        [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6],
        [0.5, 0.4, 0.7, 0.7, 0.70001, 0.71, 0.69, 0.69, 0.69, 0.69],
        [0.9] * 7,
    ],
)
@pytest.mark.parametrize("patience", [0, 1, 2])
def test_plateau_reduces_where_torchs_reducelronplateau_does(accuracies, patience):
    hook = build_epoch_hook("plateau", {"factor": 0.5, "patience": patience})
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=patience, threshold=1e-4
    )
    lr = 0.1
    for accuracy in accuracies:
        lr *= hook.step(accuracy)
        reference.step(accuracy)
        assert lr == pytest.approx(optimizer.param_groups[0]["lr"])


def test_plateau_reduces_after_patience_epochs_without_improvement():
    hook = ReduceOnPlateau(factor=0.1, patience=2, threshold=1e-4)
    # epoch 1 sets the best; 2 and 3 are tolerated; the 4th without improvement reduces,
    # and the count starts afresh
    assert [hook.step(a) for a in [0.9, 0.9, 0.85, 0.9]] == [1.0, 1.0, 1.0, 0.1]
    assert [hook.step(a) for a in [0.9, 0.9, 0.9]] == [1.0, 1.0, 0.1]
    assert hook.step(0.95) == 1.0 and hook.best == 0.95
    # a checkpoint's copy goes on where it stopped
    assert hook.step(0.95) == 1.0
    resumed = ReduceOnPlateau(factor=0.1, patience=2, threshold=1e-4)
    resumed.load_state_dict(hook.state_dict())
    assert [resumed.step(0.95) for _ in range(2)] == [1.0, 0.1]
    for name in set(list_schedules()) - {"plateau"}:
        assert build_epoch_hook(name) is None, name


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "cosine_restarts",
            {"period_mult": 1.5},
            r"period_mult must be a whole number in \[1, 10\].*period_mult=1.5",
        ),
        ("plateau", {"patience": 0.5}, r"patience must be a whole number.*patience=0.5"),
        ("triangular", {"base_ratio": 0}, r"base_ratio must be in \[0.0001, 1\].*base_ratio=0"),
        ("exp_range", {"gamma": 1.5}, r"gamma must be in \[0.0001, 1\].*gamma=1.5"),
        ("one_cycle", {"pct_start": 1.0}, r"pct_start must be in \[0.01, 0.99\]"),
        (
            "one_cycle",
            {"base_momentum": 0.95, "max_momentum": 0.85},
            r"base_momentum \(at the peak rate\) must be <= max_momentum.*"
            r"base_momentum=0.95, max_momentum=0.85; swap them",
        ),
    ],
)
def test_bad_new_schedule_params_name_the_key_the_value_and_what_is_allowed(name, params, message):
    with pytest.raises(ValueError, match=message):
        validate_schedule_params(name, params)


@pytest.mark.parametrize("name", list_schedules())
def test_every_schedule_pickles_and_never_gives_a_zero_rate(name):
    f = build_lr_lambda(name, steps_per_epoch=SPE, epochs=5)
    g = pickle.loads(pickle.dumps(f))
    assert [g(i) for i in range(5 * SPE)] == [f(i) for i in range(5 * SPE)]
    assert all(0 < f(i) <= 1.0 + 1e-12 for i in range(5 * SPE)), name


def test_the_batch_size_schedule_multiplies_the_batch_where_multistep_divides_the_rate():
    from study.train.schedules import batch_factor, build_batch_factor

    grow = build_batch_factor("batch_multistep", {"milestones": [2, 4], "gamma": 0.2})
    assert [grow(e) for e in range(6)] == [1, 1, 5, 5, 25, 25]
    assert batch_factor(3, milestones=(1,), gamma=0.5) == 2
    assert build_batch_factor("multistep", {"milestones": [2]}) is None  # keeps the batch
    # the learning rate is held (warm-up aside): the batch size moves instead
    factor = build_lr_lambda(
        "batch_multistep", {"milestones": [2, 4]}, steps_per_epoch=10, epochs=6
    )
    assert {factor(i) for i in range(60)} == {1.0}
    with pytest.raises(ValueError, match="inside the warm-up"):
        build_lr_lambda(
            "batch_multistep", {"milestones": [1]}, steps_per_epoch=10, epochs=6, warmup_epochs=1.5
        )

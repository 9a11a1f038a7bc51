from __future__ import annotations

import math
import pickle

import pytest
import torch

from study.schedules import (
    build_lr_lambda,
    create_scheduler,
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


@pytest.mark.parametrize("name", list_schedules())
def test_warmup_reaches_the_target_at_its_last_step_and_never_starts_at_zero(name):
    used = lrs(name, warmup=1.0)
    assert used[0] == pytest.approx(0.1 / SPE)
    assert used[0] > 0
    assert used[SPE - 1] == pytest.approx(0.1)  # last warm-up update: the full rate
    assert all(a < b for a, b in zip(used[: SPE - 1], used[1:SPE], strict=True))
    assert max(used) == pytest.approx(0.1)


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
def test_a_decay_inside_the_warmup_is_an_error_naming_the_value_and_the_fix(
    name, params, message
):
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

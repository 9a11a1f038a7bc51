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


def test_multistep_decays_before_the_lab_epochs_7_and_12():
    used = lrs("multistep", {"milestones": [6, 11], "gamma": 0.1}, epochs=15)
    assert used[6 * SPE - 1] == pytest.approx(0.1)
    assert used[6 * SPE] == pytest.approx(0.01)
    assert used[11 * SPE] == pytest.approx(0.001)


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

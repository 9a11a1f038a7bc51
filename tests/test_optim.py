from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from search_spaces import TrialConfig
from study.data import iter_batches
from study.model import MLP
from study.optim import (
    LabMomentumSGD,
    create_optimizer,
    get_optimizer_info,
    list_optimizers,
    param_groups_weight_decay,
)
from study.schedules import build_lr_lambda, create_scheduler, list_schedules


def _config_for(name: str, schedule: str) -> TrialConfig:
    info = get_optimizer_info(name)
    low, high = info.lr_range
    lr = (low * high) ** 0.5  # the middle of its range (log scale)
    return TrialConfig(
        optimizer=name,
        lr=lr,
        momentum=0.9 if info.has_momentum else None,
        weight_decay=1e-4 if info.has_weight_decay else 0.0,
        schedule=schedule,
        warmup_epochs=0.5,
        epochs=3,
        batch_size=32,
    )


@pytest.mark.parametrize("schedule", list_schedules())
@pytest.mark.parametrize("name", list_optimizers())
def test_every_optimizer_with_every_schedule_lowers_the_loss(name, schedule, tiny_data):
    config = _config_for(name, schedule)
    torch.manual_seed(0)
    model = MLP()
    optimizer = create_optimizer(config, model)
    steps_per_epoch = -(-tiny_data.num_train // config.batch_size)
    scheduler = create_scheduler(
        optimizer,
        build_lr_lambda(
            schedule, steps_per_epoch=steps_per_epoch, epochs=config.epochs, warmup_epochs=0.5
        ),
    )
    x, y = tiny_data.train_x, tiny_data.train_y

    def full_loss() -> float:
        with torch.no_grad():
            model.eval()
            loss = F.cross_entropy(model(x), y).item()
            model.train()
            return loss

    before = full_loss()
    g = torch.Generator().manual_seed(0)
    for _ in range(config.epochs):
        for xb, yb in iter_batches(x, y, config.batch_size, g):
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            assert torch.isfinite(loss)
    after = full_loss()
    assert after < 0.7 * before, f"{name}/{schedule}: loss {before:.3f} -> {after:.3f}"


def test_unknown_optimizer_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'") as err:
        get_optimizer_info("lamb")
    for name in list_optimizers():
        assert name in str(err.value)


def test_capability_flags_decide_the_constructor_arguments():
    model = MLP()
    sgd = create_optimizer(
        TrialConfig(optimizer="sgd", lr=0.1, momentum=0.8, nesterov=True), model
    )
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["nesterov"]
    adam = create_optimizer(TrialConfig(optimizer="adam", lr=1e-3, beta1=0.7), model)
    assert adam.param_groups[0]["betas"] == (0.7, 0.999)
    rms = create_optimizer(TrialConfig(optimizer="rmsprop", lr=1e-2), model)
    assert rms.param_groups[0]["alpha"] == 0.99  # torch's default kept
    assert isinstance(
        create_optimizer(TrialConfig(optimizer="adamw", lr=1e-3), model), torch.optim.AdamW
    )


def test_biases_are_not_decayed_unless_asked():
    model = MLP()
    groups = param_groups_weight_decay(model, 5e-4)
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert all(p.ndim == 2 for p in groups[0]["params"])
    assert all(p.ndim == 1 for p in groups[1]["params"])
    # The lab decays every parameter: one group.
    lab = param_groups_weight_decay(model, 5e-4, no_decay_1d=False)
    assert len(lab) == 1 and len(lab[0]["params"]) == len(list(model.parameters()))
    # An empty group is not added.
    assert len(param_groups_weight_decay(torch.nn.Linear(3, 3, bias=False), 0.1)) == 1


def test_lab_param_group_split_works_on_the_mlp():
    model = MLP()
    optimizer = torch.optim.SGD(
        [
            {"params": model.layers[:6].parameters(), "weight_decay": 5e-4},
            {"params": model.layers[6:].parameters(), "weight_decay": 1e-3},
        ],
        momentum=0.9,
        lr=0.1,
    )
    assert len(optimizer.param_groups) == 2
    assert len(optimizer.param_groups[0]["params"]) == 4  # two Linear layers
    assert len(optimizer.param_groups[1]["params"]) == 2  # the output layer


def test_lab_hand_written_sgd_matches_torch_sgd_with_momentum(tiny_data):
    torch.manual_seed(0)
    a = MLP(dropout=0.0)
    b = MLP(dropout=0.0)
    b.load_state_dict(a.state_dict())
    opt_a = LabMomentumSGD(a.parameters(), lr=0.05, momentum=0.9)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9)
    for _ in range(5):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            F.cross_entropy(model(tiny_data.train_x), tiny_data.train_y).backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)

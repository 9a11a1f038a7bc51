from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from study.config import TrialConfig
from study.model import MLP
from study.optim import (
    LabMomentumSGD,
    create_optimizer,
    get_optimizer_info,
    list_optimizers,
    param_groups_weight_decay,
)
from study.schedules import list_schedules
from study.train import fit

#: A learning rate that trains each kind of optimizer: SGD's good rates sit two decades
#: above the adaptive ones'.
LR = {"sgd": 0.03, "sgd_lab": 0.03}


def _config_for(name: str, schedule: str) -> TrialConfig:
    info = get_optimizer_info(name)
    return TrialConfig(
        optimizer=name,
        lr=LR.get(name, 3e-4),
        momentum=0.9 if info.has_momentum else None,
        weight_decay=1e-4 if info.has_weight_decay else 0.0,
        schedule=schedule,
        warmup_epochs=0.5,
        epochs=3,
        batch_size=32,
    )


def _full_loss(model: torch.nn.Module, data) -> float:
    with torch.no_grad():
        model.eval()
        return F.cross_entropy(model(data.train_x), data.train_y).item()


@pytest.mark.parametrize("schedule", list_schedules())
@pytest.mark.parametrize("name", list_optimizers())
def test_every_optimizer_with_every_schedule_lowers_the_loss(name, schedule, tiny_data):
    config = _config_for(name, schedule)
    torch.manual_seed(config.seed)
    before = _full_loss(MLP(), tiny_data)  # the same initial weights fit starts from
    result = fit(config, tiny_data)
    assert not result.diverged, f"{name}/{schedule} diverged at lr {result.diverged_lr}"
    assert len(result.history) == config.epochs
    after = _full_loss(result.model, tiny_data)
    assert after < 0.7 * before, f"{name}/{schedule}: loss {before:.3f} -> {after:.3f}"


def test_unknown_optimizer_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'") as err:
        get_optimizer_info("lamb")
    for name in list_optimizers():
        assert name in str(err.value)


def test_capability_flags_decide_the_constructor_arguments():
    model = MLP()
    sgd = create_optimizer(model, "sgd", lr=0.1, momentum=0.8, nesterov=True)
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["nesterov"]
    adam = create_optimizer(model, "adam", lr=1e-3, beta1=0.7)
    assert adam.param_groups[0]["betas"] == (0.7, 0.999)
    rms = create_optimizer(model, "rmsprop", lr=1e-2)
    assert rms.param_groups[0]["alpha"] == 0.99  # torch's default kept
    assert isinstance(create_optimizer(model, "adamw", lr=1e-3), torch.optim.AdamW)
    # One fused kernel per update where torch has one.
    for name in list_optimizers():
        fused = create_optimizer(model, name, lr=1e-3).defaults.get("fused")
        assert (fused is True) == get_optimizer_info(name).has_fused, name
    assert create_optimizer(model, "sgd", lr=0.1).defaults["fused"] is True
    # What a config carries is exactly what create_optimizer takes.
    config = TrialConfig(optimizer="adam", lr=3e-4, beta1=0.8, weight_decay=1e-5)
    built = create_optimizer(model, config.optimizer, **config.optimizer_hparams())
    assert built.param_groups[0]["lr"] == 3e-4 and built.param_groups[0]["betas"][0] == 0.8


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("adam", {"momentum": 0.9}, "'adam' takes no momentum (only sgd, rmsprop, sgd_lab do)"),
        ("sgd", {"beta1": 0.9}, "'sgd' takes no beta1"),
        ("sgd_lab", {"weight_decay": 1e-4}, "'sgd_lab' takes no weight decay"),
        ("sgd", {"lr": 0}, "lr must be a finite number > 0, but got lr=0"),
    ],
)
def test_create_optimizer_refuses_what_the_optimizer_does_not_take(name, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_optimizer(MLP(), name, **{"lr": 0.1, **kwargs})


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

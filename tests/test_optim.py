from __future__ import annotations

import math

import optuna
import pytest
import torch
import torch.nn.functional as F

from study.train.config import TrialConfig
from study.train.loop import TrainingRun, fit
from study.train.model import MLP
from study.train.optim import (
    LabMomentumSGD,
    OptimInfo,
    create_optimizer,
    get_optimizer_info,
    head_parameters,
    list_optimizers,
    param_groups,
    param_groups_weight_decay,
    register,
    unregister,
)
from study.train.schedules import (
    build_lr_lambda,
    create_scheduler,
    get_schedule_info,
    list_schedules,
)

#: A learning rate that trains each kind of optimizer in a few updates: SGD's good rates sit
#: two decades above the adaptive ones', Adagrad's step shrinks as its sums grow, RAdam damps
#: its first steps and Adamax's steps are smaller than Adam's at the same rate.
LR = {"sgd": 0.03, "sgd_lab": 0.03, "adagrad": 1e-2, "radam": 3e-3, "adamax": 1e-3}


def _lr(name: str) -> float:
    return LR.get(name, 3e-4)


def _config_for(name: str, schedule: str) -> TrialConfig:
    info = get_optimizer_info(name)
    # a schedule with a warm-up of its own (one_cycle) takes none composed onto it
    warmup = 0.5 if getattr(get_schedule_info(schedule), "composes_warmup", True) else 0.0
    return TrialConfig(
        optimizer=name,
        lr=_lr(name),
        momentum=0.9 if info.has_momentum else None,
        weight_decay=1e-4 if info.has_weight_decay else 0.0,
        schedule=schedule,
        warmup_epochs=warmup,
        epochs=3,
        batch_size=32,
    )


def _variants(info: OptimInfo) -> dict[str, dict]:
    """Each kind of config ``info``'s capability flags say it accepts, by a readable id."""
    out: dict[str, dict] = {"defaults": {}, "head_lr_mult": {"head_lr_mult": 3.0}}
    if info.has_momentum:
        out["momentum"] = {"momentum": 0.9}
    if info.has_nesterov:
        out["nesterov"] = {"momentum": 0.9, "nesterov": True}
    if info.has_dampening:
        out["dampening"] = {"momentum": 0.9, "dampening": 0.5}
    if info.has_betas:
        out["betas"] = {"beta1": 0.8, "beta2": 0.99}
    if info.has_alpha:
        out["alpha"] = {"alpha": 0.9}
    if info.has_centered:
        out["centered"] = {"centered": True, **({"momentum": 0.5} if info.has_momentum else {})}
    if info.has_weight_decay:
        out["decay_all"] = {"weight_decay": 1e-3, "no_decay_1d": False}
        out["head_groups"] = {"weight_decay": 1e-4, "head_weight_decay": 1e-3, "head_lr_mult": 0.5}
    return out


_VARIANTS = [
    (name, kind, changes)
    for name in list_optimizers()
    for kind, changes in _variants(get_optimizer_info(name)).items()
]


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


@pytest.mark.parametrize(
    ("name", "kind", "changes"), _VARIANTS, ids=[f"{n}-{k}" for n, k, _ in _VARIANTS]
)
def test_every_optimizer_trains_with_every_kind_of_config_it_accepts(
    name, kind, changes, tiny_data
):
    config = TrialConfig(optimizer=name, lr=_lr(name), epochs=2, batch_size=32, **changes)
    torch.manual_seed(config.seed)
    before = _full_loss(MLP(), tiny_data)
    result = fit(config, tiny_data)
    assert not result.diverged, f"{name}/{kind} diverged: {result.diverged_reason}"
    after = _full_loss(result.model, tiny_data)
    assert math.isfinite(after) and after < 0.8 * before, f"{name}/{kind}: {before} -> {after}"


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
    assert rms.param_groups[0]["momentum"] == 0 and not rms.param_groups[0]["centered"]
    rms = create_optimizer(model, "rmsprop", lr=1e-2, momentum=0.5, centered=True)
    assert rms.param_groups[0]["momentum"] == 0.5 and rms.param_groups[0]["centered"]
    damped = create_optimizer(model, "sgd", lr=0.1, momentum=0.9, dampening=0.3)
    assert damped.param_groups[0]["dampening"] == 0.3
    assert isinstance(create_optimizer(model, "adamw", lr=1e-3), torch.optim.AdamW)
    for name, cls in (
        ("nadam", torch.optim.NAdam),
        ("radam", torch.optim.RAdam),
        ("adagrad", torch.optim.Adagrad),
        ("adamax", torch.optim.Adamax),
    ):
        built = create_optimizer(model, name, lr=1e-3, weight_decay=1e-4)
        assert type(built) is cls and built.param_groups[0]["weight_decay"] == 1e-4
    assert create_optimizer(model, "radam", lr=1e-3, beta2=0.98).param_groups[0]["betas"] == (
        0.9,
        0.98,
    )
    # One fused kernel per update where torch has one (on the CPU here).
    for name in list_optimizers():
        info = get_optimizer_info(name)
        fused = create_optimizer(model, name, lr=1e-3).defaults.get("fused")
        assert (fused is True) == (info.has_fused and "cpu" in info.fused_devices), name
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
        ("adam", {"dampening": 0.1}, "'adam' takes no dampening (only sgd do)"),
        ("adamax", {"centered": True}, "'adamax' takes no centered (only rmsprop do)"),
        ("adagrad", {"beta1": 0.9}, "'adagrad' takes no beta1 (only adam, adamw, nadam"),
        ("sgd", {"dampening": 0.1}, "dampening .* needs momentum > 0"),
        (
            "sgd",
            {"momentum": 0.9, "nesterov": True, "dampening": 0.1},
            "Nesterov momentum needs dampening 0",
        ),
        ("sgd", {"momentum": 0.9, "dampening": 1.0}, "dampening must be in [0, 1)"),
        (
            "sgd_lab",
            {"head_weight_decay": 1e-3},
            "'sgd_lab' takes no weight decay, but got head_weight_decay=0.001; set it to None",
        ),
        ("sgd", {"head_lr_mult": 0.0}, "head_lr_mult must be a finite number > 0"),
        ("sgd", {"head_weight_decay": -1.0}, "head_weight_decay must be a finite number >= 0"),
        ("rmsprop", {"centered": 1}, "centered must be True or False"),
    ],
)
def test_create_optimizer_refuses_what_the_optimizer_does_not_take(name, kwargs, message):
    escaped = message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    with pytest.raises(ValueError, match=escaped):
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


def test_the_head_is_the_labs_second_param_group():
    model = MLP()
    assert [id(p) for p in head_parameters(model)] == [
        id(p) for p in model.layers[6:].parameters()
    ]


def test_head_groups_combine_with_the_bias_exemption():
    model = MLP()
    groups = param_groups(
        model, lr=0.1, weight_decay=1e-4, head_lr_mult=3.0, head_weight_decay=1e-3
    )
    head = {id(p) for p in model.layers[6:].parameters()}
    # body weights, body biases, head weight, head bias: in that order (the first group's
    # learning rate is the one recorded per epoch)
    assert [(g.get("lr"), g["weight_decay"]) for g in groups] == [
        (None, 1e-4),
        (None, 0.0),
        (pytest.approx(0.3), 1e-3),
        (pytest.approx(0.3), 0.0),
    ]
    assert [len(g["params"]) for g in groups] == [2, 2, 1, 1]
    assert all(id(p) in head for g in groups[2:] for p in g["params"])
    # The lab decays every parameter: one group for the body, one for the head.
    lab = param_groups(model, lr=0.1, weight_decay=5e-4, no_decay_1d=False, head_weight_decay=1e-3)
    assert [(len(g["params"]), g["weight_decay"], "lr" in g) for g in lab] == [
        (4, 5e-4, False),
        (2, 1e-3, False),
    ]
    # No head option: the groups of before, unchanged.
    plain = param_groups(model, lr=0.1, weight_decay=1e-4)
    expected = param_groups_weight_decay(model, 1e-4)
    assert [[id(p) for p in g["params"]] for g in plain] == [
        [id(p) for p in g["params"]] for g in expected
    ]
    # An optimizer without weight decay still gets the head's learning rate.
    lab_sgd = create_optimizer(model, "sgd_lab", lr=0.1, momentum=0.9, head_lr_mult=0.5)
    assert [g["lr"] for g in lab_sgd.param_groups] == [0.1, 0.05]
    assert all("weight_decay" not in g for g in lab_sgd.param_groups)


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_a_schedule_keeps_the_head_learning_rate_multiplier(schedule):
    # One lambda for LambdaLR scales every group by the same factor.
    model = MLP()
    optimizer = create_optimizer(model, "sgd", lr=0.1, momentum=0.9, head_lr_mult=4.0)
    lr_lambda = build_lr_lambda(schedule, steps_per_epoch=5, epochs=4, warmup_epochs=1)
    scheduler = create_scheduler(optimizer, lr_lambda)
    for _ in range(20):
        body_lrs = [g["lr"] for g in optimizer.param_groups[:2]]  # weights, biases
        head_lrs = [g["lr"] for g in optimizer.param_groups[2:]]
        assert body_lrs[0] == body_lrs[1]
        assert head_lrs == [pytest.approx(4.0 * body_lrs[0])] * 2
        optimizer.step()
        scheduler.step()
    assert body_lrs[0] < 0.1  # the schedule did move the rates


def test_training_applies_the_head_groups(tiny_data):
    config = TrialConfig(
        optimizer="adamw",
        lr=1e-3,
        weight_decay=0.01,
        head_lr_mult=2.0,
        head_weight_decay=0.1,
        schedule="cosine",
        epochs=2,
        batch_size=64,
    )
    run = TrainingRun(config, tiny_data)
    groups = run.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0, 0.1, 0.0]
    assert [g["lr"] for g in groups] == [1e-3, 1e-3, 2e-3, 2e-3]
    run.train_epoch()
    # the body's rate is the one recorded: that of the epoch's last update (the 4th)
    factor = build_lr_lambda("cosine", steps_per_epoch=4, epochs=2)(3)
    assert run.history[0].lr == pytest.approx(factor * 1e-3)
    assert groups[2]["lr"] == pytest.approx(2.0 * groups[0]["lr"])
    assert config.to_dict()["head_lr_mult"] == 2.0  # recorded with the trial


def _twin_steps(lrs, grads, momentum=0.9):
    """Run LabMomentumSGD and torch's SGD(momentum, dampening=0) on one parameter, the same
    gradients fed to both, at learning rate ``lrs[t]`` for step ``t``; returns each step's
    update and torch's momentum buffer before it, for both."""
    lab_w = torch.zeros(3, requires_grad=True)
    torch_w = torch.zeros(3, requires_grad=True)
    lab = LabMomentumSGD([lab_w], lr=lrs[0], momentum=momentum)
    ref = torch.optim.SGD([torch_w], lr=lrs[0], momentum=momentum, dampening=0)
    steps = []
    for lr, grad in zip(lrs, grads, strict=True):
        before = (lab_w.detach().clone(), torch_w.detach().clone())
        buf = ref.state[torch_w].get("momentum_buffer", torch.zeros(3)).clone()
        for opt, w in ((lab, lab_w), (ref, torch_w)):
            opt.param_groups[0]["lr"] = lr
            w.grad = grad.clone()
            opt.step()
        steps.append((lab_w.detach() - before[0], torch_w.detach() - before[1], buf))
    return steps


def test_lab_sgd_matches_torch_sgd_step_for_step_at_a_constant_rate():
    grads = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    for lab_step, torch_step, _ in _twin_steps([0.05] * 8, grads):
        torch.testing.assert_close(lab_step, torch_step)


def test_lab_sgd_differs_from_torch_sgd_after_a_learning_rate_change():
    """The lab's buffer holds lr-scaled history: after the rate drops from lr to lr', its
    first step is larger than torch's by momentum * (lr - lr') * B (torch's buffer), and the
    excess decays by momentum per step."""
    momentum, lr, new_lr = 0.9, 0.1, 0.01
    grads = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    steps = _twin_steps([lr] * 4 + [new_lr] * 4, grads, momentum=momentum)
    for lab_step, torch_step, _ in steps[:4]:
        torch.testing.assert_close(lab_step, torch_step)
    buf = steps[4][2]  # torch's buffer when the rate changed
    for k, (lab_step, torch_step, _) in enumerate(steps[4:], start=1):
        excess = momentum**k * (lr - new_lr) * buf
        torch.testing.assert_close(lab_step - torch_step, -excess)  # steps descend: minus
    assert not torch.allclose(steps[4][0], steps[4][1])


def test_lab_hand_written_sgd_trains_like_torch_sgd_on_the_mlp(tiny_data):
    torch.manual_seed(0)
    a = MLP(dropout=0.0)
    b = MLP(dropout=0.0)
    b.load_state_dict(a.state_dict())
    opt_a = create_optimizer(a, "sgd_lab", lr=0.05, momentum=0.9)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9)
    for _ in range(5):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            F.cross_entropy(model(tiny_data.train_x), tiny_data.train_y).backward()
            opt.step()
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


class SignSGD(torch.optim.Optimizer):
    """A user's optimizer, outside torch.optim: steps by lr x sign(gradient)."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param.add_(param.grad.sign(), alpha=-group["lr"])


@pytest.fixture
def sign_sgd():
    """``sign_sgd`` registered for one test, as a user registers one from Python."""
    info = register(
        OptimInfo(
            name="sign_sgd", opt_class=SignSGD, description="sign of the gradient", default_lr=1e-3
        )
    )
    try:
        yield info
    finally:
        unregister("sign_sgd")


def test_a_users_optimizer_is_registered_searched_and_trained(sign_sgd, tiny_data):
    from search_spaces import SearchSpace  # a search space names the user's optimizer

    assert "sign_sgd" in list_optimizers()
    space = SearchSpace(
        "mine",
        "sign SGD over two decades",
        optimizers={
            "sign_sgd": {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)},
            "adam": {"lr": 1e-3},
        },
    )
    optuna_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    optuna_study.enqueue_trial({"optimizer": "sign_sgd"})
    trial = optuna_study.ask()
    config = space.config_for(trial, TrialConfig(epochs=2, batch_size=32))
    assert config.optimizer == "sign_sgd" and 1e-4 <= config.lr <= 1e-2
    assert set(trial.params) == {"optimizer", "sign_sgd_lr"}
    config = config.replace(lr=3e-3, head_lr_mult=0.5)  # param groups work for it too
    torch.manual_seed(config.seed)
    before = _full_loss(MLP(), tiny_data)
    result = fit(config, tiny_data)
    assert not result.diverged and _full_loss(result.model, tiny_data) < 0.8 * before
    # Its flags say it takes nothing else: a weight decay it would ignore is refused.
    with pytest.raises(ValueError, match="'sign_sgd' takes no weight decay"):
        TrialConfig(optimizer="sign_sgd", lr=1e-3, weight_decay=1e-4)
    with pytest.raises(ValueError, match="already registered"):
        register(sign_sgd)


def test_unregistered_optimizer_is_gone(sign_sgd):
    unregister("sign_sgd")
    assert "sign_sgd" not in list_optimizers()
    register(sign_sgd)  # the fixture removes it again


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Sign SGD"}, "lower case letters, digits and '_'"),
        ({"opt_class": torch.nn.Linear}, "opt_class must be a torch.optim.Optimizer subclass"),
        ({"default_lr": 0.0}, "default_lr must be a finite number > 0"),
        ({"has_nesterov": True}, "has_nesterov=True needs has_momentum=True"),
        ({"decoupled_weight_decay": True}, "decoupled_weight_decay=True needs"),
    ],
)
def test_a_malformed_registry_entry_is_refused(changes, message):
    fields = {"name": "mine", "opt_class": SignSGD, "description": "", "default_lr": 1e-3}
    with pytest.raises(ValueError, match=message):
        OptimInfo(**{**fields, **changes})

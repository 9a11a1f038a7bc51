"""The cohort trainer: stacked layers against autograd, batched updates against torch.optim
member by member, and members whose runs do not depend on their cohort-mates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_dataset

from study.train.cohort import train_cohort
from study.train.cohort_optim import groups_by_parameter, stacked_optimizer_class
from study.train.config import TrialConfig
from study.train.loop import EpochStats, FitResult, fit
from study.train.model import (
    MLP,
    Dropout,
    cross_entropy_backward,
    cross_entropy_forward,
    relu_dropout_forward,
)
from study.train.optim import create_optimizer, get_optimizer_info, list_optimizers
from study.train.stacked import StackedMLP

# --- the stacked layers ----------------------------------------------------------------


def test_each_member_draws_the_dropout_mask_a_lone_model_draws_from_its_seed():
    pre = torch.randn(3, 8, 32)
    generators = [torch.Generator().manual_seed(s) for s in (5, 6, 7)]
    out, scale = relu_dropout_forward(pre.clone(), 0.2, generators)
    for k, seed in enumerate((5, 6, 7)):
        torch.manual_seed(seed)
        torch.testing.assert_close(scale * out[k], Dropout(0.2)(F.relu(pre[k])))
    assert 0.7 < (out > 0).float().mean() / (pre > 0).float().mean() < 0.9


def test_the_cross_entropy_pair_takes_a_stack_of_members():
    torch.manual_seed(0)
    logits, y = torch.randn(3, 16, 10), torch.randint(0, 10, (3, 16))
    leaf = logits.clone().requires_grad_()
    per_example = F.cross_entropy(leaf.transpose(1, 2), y, reduction="none")
    per_example.mean(1).sum().backward()

    nll, pred, log_p = cross_entropy_forward(logits, y)
    torch.testing.assert_close(nll, per_example.detach())
    assert torch.equal(pred, logits.argmax(dim=2))
    torch.testing.assert_close(cross_entropy_backward(log_p, y) / 16, leaf.grad)


@pytest.mark.parametrize("bf16", [False, True])
def test_a_stacked_step_gives_each_members_own_train_step_gradients(bf16):
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(MLP(in_features=20, hidden=(16, 12), num_classes=10))
    stack = StackedMLP.from_mlps(models)
    x, y = torch.randn(3, 8, 20), torch.randint(0, 10, (3, 8))
    nll = torch.empty(3, 8)
    grads = stack.train_step(x, y, [torch.Generator().manual_seed(s) for s in (10, 11, 12)],
                             bf16=bf16, nll=nll)
    tol = {"rtol": 2e-2, "atol": 2e-3} if bf16 else {"rtol": 1e-5, "atol": 1e-6}
    for k, model in enumerate(models):
        torch.manual_seed(10 + k)
        own_nll, _ = model.train_step(x[k], y[k], bf16=bf16)
        torch.testing.assert_close(nll[k], own_nll, **tol)
        for stacked, p in zip(grads, model.parameters(), strict=True):
            torch.testing.assert_close(stacked[k], p.grad, **tol)
    torch.testing.assert_close(stack.to_mlp(2).layers[1].weight, models[2].layers[1].weight)


# --- the batched updates against torch.optim, member by member ------------------------------


def _member_hparams(name: str) -> list[dict]:
    """Three members of optimizer ``name`` that differ in every hyperparameter it takes."""
    info = get_optimizer_info(name)
    members = [{"lr": info.default_lr * f} for f in (1.0, 0.5, 2.0)]
    per_flag = {
        "has_momentum": {"momentum": (0.9, None, 0.5)},
        "has_nesterov": {"nesterov": (True, False, False)},
        "has_dampening": {"dampening": (None, None, 0.3)},
        "has_betas": {"beta1": (0.9, 0.8, 0.95), "beta2": (0.999, 0.99, 0.9)},
        "has_alpha": {"alpha": (0.99, 0.9, None)},
        "has_centered": {"centered": (False, True, False)},
        "has_weight_decay": {"weight_decay": (0.0, 0.01, 0.1), "no_decay_1d": (True, False, True),
                             "head_weight_decay": (None, 0.0, 0.05)},
    }
    for flag, values in per_flag.items():
        if getattr(info, flag):
            for key, column in values.items():
                for member, value in zip(members, column, strict=True):
                    member[key] = value
    for member, mult in zip(members, (None, 2.0, 0.5), strict=True):
        member["head_lr_mult"] = mult
    return members


def _momentum_key(name: str) -> str | None:
    info = get_optimizer_info(name)
    return "beta1" if info.has_betas else "momentum" if info.has_momentum else None


def _set_groups(optimizer, factor: float, key: str | None, value: float | None) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
        if value is not None and key == "beta1":
            group["betas"] = (value, group["betas"][1])
        elif value is not None:
            group["momentum"] = value


@pytest.mark.parametrize("scheduled_momentum", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list_optimizers())
def test_a_batched_update_gives_torch_optims_parameters_member_by_member(
    name, dtype, scheduled_momentum
):
    members = _member_hparams(name)
    key = _momentum_key(name) if scheduled_momentum else None
    if scheduled_momentum and key is None:
        pytest.skip(f"{name} has neither momentum nor betas")
    models, optimizers = [], []
    for seed, hparams in enumerate(members):
        torch.manual_seed(seed)
        models.append(MLP(in_features=6, hidden=(5, 4), num_classes=3).to(dtype))
        optimizers.append(create_optimizer(models[-1], name, **hparams))
        for group in optimizers[-1].param_groups:
            group["initial_lr"] = group["lr"]
    params = [torch.stack([p.detach().clone() for p in ps])
              for ps in zip(*[m.parameters() for m in models], strict=True)]
    groups = [groups_by_parameter(o, list(m.parameters()))
              for o, m in zip(optimizers, models, strict=True)]
    stacked = stacked_optimizer_class(name)(groups, params)
    generator = torch.Generator().manual_seed(1)
    for step in range(20):
        factors = [1.0 - 0.03 * step, 0.5 + 0.05 * step, 1.0 / (1 + step)]
        momenta = [0.95 - 0.01 * step, 0.85 + 0.005 * step, 0.9] if key else None
        grads = [torch.randn(p.shape, generator=generator, dtype=dtype) for p in params]
        for k, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
            _set_groups(optimizer, factors[k], key, momenta[k] if momenta else None)
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g[k].clone()
            optimizer.step()
        stacked.step(params, grads, factors, {key: momenta} if key else None)
    # where torch.optim runs its fused kernel, the cohort calls that kernel: equal bit for bit
    assert stacked.fused == bool(optimizers[0].param_groups[0].get("fused"))
    tol = 0 if stacked.fused else 1e-10 if dtype == torch.float64 else 1e-5
    for k, model in enumerate(models):
        for p, stack in zip(model.parameters(), params, strict=True):
            torch.testing.assert_close(stack[k], p.detach(), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["adam", "rmsprop", "nadam", "radam", "adamax"])
def test_members_leave_the_batched_update_and_the_rest_go_on_unchanged(name):
    """A member left alone in the stack after others leave updates exactly as in a stack of
    its own from the start (the unfused updates' kept temporaries shrink with it)."""
    models, optimizers = [], []
    for seed, hparams in enumerate(_member_hparams(name)):
        torch.manual_seed(seed)
        models.append(MLP(in_features=6, hidden=(5, 4), num_classes=3).double())
        optimizers.append(create_optimizer(models[-1], name, **hparams))
    stacked = [torch.stack([p.detach().clone() for p in ps])
               for ps in zip(*[m.parameters() for m in models], strict=True)]
    groups = [groups_by_parameter(o, list(m.parameters()))
              for o, m in zip(optimizers, models, strict=True)]
    whole = stacked_optimizer_class(name)(groups, stacked)
    alone = stacked_optimizer_class(name)(groups[2:], [p[2:].clone() for p in stacked])
    kept = [p[2:].clone() for p in stacked]
    generator = torch.Generator().manual_seed(0)
    for step in range(6):
        grads = [torch.randn(p.shape, generator=generator, dtype=torch.float64)
                 for p in stacked]
        if step == 3:
            whole.keep(torch.tensor([2]))
            stacked = [p[2:].clone() for p in stacked]
        last = [g[-1:].clone() for g in grads]  # a step consumes its gradients
        whole.step(stacked, [g[-len(stacked[0]):] for g in grads], [1.0] * len(stacked[0]))
        alone.step(kept, last, [1.0])
    for mine, theirs in zip(stacked, kept, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)


def test_an_optimizer_without_a_batched_update_is_named_with_the_ones_that_have_one():
    from study.train.optim import OptimInfo, register, unregister

    class Odd(torch.optim.SGD):
        pass

    register(OptimInfo(name="odd_sgd", opt_class=Odd, description="test", default_lr=0.1))
    try:
        with pytest.raises(ValueError, match=r"'odd_sgd' \(Odd\).*Adam, AdamW"):
            stacked_optimizer_class("odd_sgd")
    finally:
        unregister("odd_sgd")


# --- the trainer -----------------------------------------------------------------------------


def _mixed_configs(epochs: int = 2, precision: str = "fp32") -> list[TrialConfig]:
    """One member per registered optimizer, under schedules that exercise every path: a
    momentum schedule (one_cycle), an epoch-level one (plateau), warm-up, constant."""
    schedules = [{"schedule": "one_cycle"},
                 {"schedule": "plateau", "schedule_params": {"patience": 0}},
                 {"schedule": "cosine", "warmup_epochs": 1}, {"schedule": "constant"}]
    configs = []
    for i, name in enumerate(list_optimizers()):
        info = get_optimizer_info(name)
        extra = {"momentum": 0.9} if info.has_momentum else {}
        if info.has_weight_decay:
            extra |= {"weight_decay": 1e-3, "head_lr_mult": 0.5}
        configs.append(TrialConfig(optimizer=name, lr=info.default_lr, epochs=epochs,
                                   batch_size=32, seed=i, precision=precision,
                                   **schedules[i % 4], **extra))
    return configs


def _same_run(a: FitResult, b: FitResult, rtol: float, atol: float = 1e-6) -> None:
    assert (a.diverged, a.diverged_reason, a.diverged_epoch) == (
        b.diverged, b.diverged_reason, b.diverged_epoch)
    assert len(a.history) == len(b.history)
    for x, y in zip(a.history, b.history, strict=True):
        assert x.train_loss == pytest.approx(y.train_loss, rel=rtol, abs=atol)
        assert x.eval_loss == pytest.approx(y.eval_loss, rel=rtol, abs=atol)
        assert x.eval_accuracy == pytest.approx(y.eval_accuracy, abs=0.01)
        assert (x.lr, x.lr_min, x.lr_max) == pytest.approx((y.lr, y.lr_min, y.lr_max), rel=1e-12)
        assert x.momentum == (None if y.momentum is None else pytest.approx(y.momentum))
        assert x.batch_size == y.batch_size and x.epoch == y.epoch


def test_each_member_trains_as_fit_trains_its_config(tiny_data):
    configs = _mixed_configs()
    results = train_cohort(configs, tiny_data)
    assert [r.config for r in results] == configs
    for result, config in zip(results, configs, strict=True):
        # RMSprop's spike in its first updates (at its default rate) magnifies the rounding
        # of products blocked differently across threads to a few 1e-4 of its loss
        _same_run(result, fit(config, tiny_data), rtol=1e-3, atol=1e-4)
        assert isinstance(result.model, MLP) and result.test_accuracy == result.final_accuracy


def test_a_member_gives_the_same_result_in_cohorts_of_1_3_and_8(tiny_data):
    member = TrialConfig(optimizer="adam", lr=1e-3, epochs=2, batch_size=32, seed=3,
                         schedule="cosine", warmup_epochs=1, precision="bf16")
    others = [member.replace(optimizer="sgd", lr=0.05 * (i + 1), seed=10 + i, beta1=None)
              for i in range(7)]
    alone = train_cohort([member], tiny_data)[0]
    for mates in (others[:2], others):
        in_cohort = train_cohort([*mates[:1], member, *mates[1:]], tiny_data)[1]
        _same_run(in_cohort, alone, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_cohort_on_cuda_trains_each_member_as_in_a_cohort_of_one(precision):
    from study.train.data import load_mnist

    data = load_mnist(device="cuda", train_size=4096)
    configs = [TrialConfig(optimizer=name, lr=lr, epochs=2, batch_size=64, seed=seed,
                           precision=precision)
               for name, lr, seed in (("sgd", 0.05, 1), ("adam", 1e-3, 2), ("adamw", 1e-3, 3))]
    together = train_cohort(configs, data)
    for config, result in zip(configs, together, strict=True):
        assert next(result.model.parameters()).is_cuda
        assert not result.diverged and result.final_accuracy > 0.8, config.optimizer
        # its own seed's streams on the GPU too: the same run alone, to the rounding of
        # products blocked differently for another stack, which 128 adaptive updates in
        # float32 magnify to a few 1e-3 of a loss (seen on the CPU)
        _same_run(result, train_cohort([config], data)[0], rtol=1e-2, atol=1e-3)
    diverged = train_cohort([configs[0].replace(lr=1e7), configs[1]], data)
    assert diverged[0].diverged and not diverged[1].diverged


def _stack_sizes(monkeypatch) -> list[int]:
    """The number of members in each training step of the stack, as the steps are made."""
    sizes: list[int] = []
    step = StackedMLP.train_step

    def counting(self, x, *args, **kwargs):
        sizes.append(x.shape[0])
        return step(self, x, *args, **kwargs)

    monkeypatch.setattr(StackedMLP, "train_step", counting)
    return sizes


def test_a_diverging_member_leaves_the_stack_and_the_others_go_on_unchanged(
    tiny_data, monkeypatch
):
    good = TrialConfig(optimizer="sgd", lr=0.05, momentum=0.9, epochs=3, batch_size=8)
    bad = good.replace(lr=1e6, seed=1)
    alone = train_cohort([good], tiny_data)[0]
    sizes = _stack_sizes(monkeypatch)
    together, broken = train_cohort([good, bad], tiny_data)
    _same_run(together, alone, rtol=1e-5)
    reference = fit(bad, tiny_data)
    assert broken.diverged and broken.diverged_reason == reference.diverged_reason
    assert broken.diverged_epoch == 1 and broken.history == ()
    assert broken.diverged_lr == pytest.approx(1e6) and broken.test_accuracy is None
    assert sizes[0] == 2 and sizes[-1] == 1 and len(sizes) == 3 * 32  # it stopped costing


def test_a_pruned_member_leaves_at_the_epoch_boundary_and_the_rest_go_on(
    tiny_data, monkeypatch
):
    configs = [TrialConfig(optimizer="adam", lr=1e-3, epochs=3, batch_size=32, seed=s)
               for s in range(3)]
    unpruned = train_cohort(configs, tiny_data)
    one_epoch = train_cohort([configs[1].replace(epochs=1)], tiny_data)[0]
    sizes = _stack_sizes(monkeypatch)
    seen, left = [], []

    def prune_member_1(epoch: int, stats: dict[int, EpochStats]) -> list[int]:
        seen.extend((member, s.epoch) for member, s in stats.items())
        return [1] if epoch == 1 else []

    results = train_cohort(configs, tiny_data, on_epoch=prune_member_1,
                           on_leave=lambda gone: left.append(dict(gone)))
    assert [len(r.history) for r in results] == [3, 1, 3]
    assert left == [{1: results[1]}, {0: results[0], 2: results[2]}]  # as they left
    _same_run(results[1], one_epoch, rtol=1e-5)
    assert results[1].final_accuracy == results[1].history[0].eval_accuracy
    for r, u in ((results[0], unpruned[0]), (results[2], unpruned[2])):
        _same_run(r, u, rtol=1e-5)
    assert sorted(seen) == [(0, 1), (0, 2), (0, 3), (1, 1), (2, 1), (2, 2), (2, 3)]
    assert sizes[:8] == [3] * 8 and sizes[8:] == [2] * 16


@pytest.mark.parametrize(("field", "value"), [("batch_size", 16), ("epochs", 3),
                                              ("precision", "bf16")])
def test_configs_that_cannot_share_a_stack_are_refused_naming_the_field(field, value):
    configs = [TrialConfig(), TrialConfig().replace(**{field: value})]
    with pytest.raises(ValueError, match=f"share {field}"):
        train_cohort(configs, make_tiny_dataset(n_train=8, n_eval=8))


def _decay_rate(name: str, k: int) -> dict:
    """Member ``k``'s own decay rate (alpha or betas) and weight decay."""
    if name == "rmsprop":
        return {"alpha": 0.99 - 0.01 * k, "weight_decay": 1e-3 * k}
    return {"beta1": 0.9 - 0.02 * k, "beta2": 0.999 - 0.001 * k, "weight_decay": 1e-3 * k}


@pytest.mark.parametrize("lr_mults, own_rates", [
    ((1.0, 1.0, 0.5, 2.0), False),  # torch's own expressions, a call per learning rate
    (tuple(1.0 + 0.1 * k for k in range(10)), False),  # past _MAX_RUNS rates: one call
    (tuple(1.0 + 0.1 * k for k in range(10)), True),  # and every member its own betas
])
@pytest.mark.parametrize("name", ["rmsprop", "nadam", "radam", "adamax"])
def test_members_sharing_their_betas_update_as_torch_optim_does(name, lr_mults, own_rates):
    """The common case (the members share alpha or betas, no momentum) in float32:
    RMSprop, NAdam and Adamax bit for bit where each learning rate has its own call; every
    optimizer to float32 rounding where one call takes all the rates, with shared or
    per-member betas (and weight decay). RAdam's 20 updates cover both its plain steps and
    its rectified ones."""
    models, optimizers = [], []
    for seed, mult in enumerate(lr_mults):
        torch.manual_seed(seed)
        models.append(MLP(in_features=6, hidden=(5, 4), num_classes=3))
        own = _decay_rate(name, seed) if own_rates else {}
        optimizers.append(create_optimizer(models[-1], name, lr=1e-2 * mult, **own))
    params = [torch.stack([p.detach().clone() for p in ps])
              for ps in zip(*[m.parameters() for m in models], strict=True)]
    groups = [groups_by_parameter(o, list(m.parameters()))
              for o, m in zip(optimizers, models, strict=True)]
    stacked = stacked_optimizer_class(name)(groups, params)
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        grads = [torch.randn(p.shape, generator=generator) for p in params]
        for k, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g[k].clone()
            optimizer.step()
        stacked.step(params, grads, [1.0] * len(lr_mults))
    exact = name != "radam" and len(lr_mults) < 8
    for k, model in enumerate(models):
        for p, stack in zip(model.parameters(), params, strict=True):
            if exact:
                assert torch.equal(stack[k], p.detach())
            else:
                torch.testing.assert_close(stack[k], p.detach(), rtol=1e-5, atol=1e-6)

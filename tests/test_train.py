from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from study.train.config import TrialConfig
from study.train.data import load_mnist
from study.train.loop import (
    CHECK_EVERY,
    LOSS_DIVERGENCE_FACTOR,
    SETTLE_UPDATES,
    EpochStats,
    TrainingRun,
    fit,
)
from study.train.model import MLP, Dropout
from study.train.optim import get_optimizer_info, list_optimizers
from study.train.schedules import build_momentum_fn


def test_fit_records_one_entry_per_epoch_with_the_lr_in_effect(tiny_data):
    config = TrialConfig(
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        epochs=4,
        batch_size=32,
        schedule="step",
        schedule_params={"step_epochs": 2, "gamma": 0.1},
    )
    seen = []
    result = fit(config, tiny_data, on_epoch=seen.append)
    assert [s.epoch for s in result.history] == [1, 2, 3, 4]
    assert seen == list(result.history)
    assert [s.lr for s in result.history] == pytest.approx([0.05, 0.05, 0.005, 0.005])
    assert not result.diverged and result.diverged_lr is None
    assert result.final_accuracy == result.history[-1].eval_accuracy > 0.9
    assert result.test_accuracy == result.final_accuracy
    assert all(s.seconds > 0 and s.batch_size == 32 for s in result.history)
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_same_seed_same_run_other_seed_other_run(tiny_data):
    config = TrialConfig(optimizer="adam", lr=1e-3, epochs=2, batch_size=32, seed=7)
    a, b = fit(config, tiny_data), fit(config, tiny_data)
    assert [s.train_loss for s in a.history] == [s.train_loss for s in b.history]
    c = fit(config.replace(seed=8), tiny_data)
    assert [s.train_loss for s in a.history] != [s.train_loss for s in c.history]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_a_huge_learning_rate_diverges_as_data_not_as_an_error(optimizer, tiny_data):
    # A short run: 256 examples, 32 updates per epoch.
    config = TrialConfig(optimizer=optimizer, lr=1e6, epochs=3, batch_size=8)
    assert tiny_data.num_train // 8 == 2 * SETTLE_UPDATES
    result = fit(config, tiny_data)
    assert result.diverged
    assert result.diverged_epoch == 1 and result.history == ()
    assert result.diverged_lr == pytest.approx(1e6)
    assert result.final_accuracy == 0.0 and result.test_accuracy is None
    assert result.diverged_reason in ("non-finite loss", "loss blew up")


def test_rmsprops_spike_at_its_default_lr_is_not_divergence_in_a_short_run(tiny_data):
    # The lab's RMSprop (lr 0.01) spikes to ~1000 in its first updates, then recovers. In a
    # one-epoch run of 32 updates the spike dominates the epoch's mean loss (the issue:
    # `--train-size 2000 --epochs 1` counted it as diverged); it is not divergence.
    config = TrialConfig(optimizer="rmsprop", lr=0.01, epochs=1, batch_size=8)
    result = fit(config, tiny_data)
    assert not result.diverged and result.diverged_reason is None
    assert result.history[0].train_loss > LOSS_DIVERGENCE_FACTOR * math.log(10)  # the spike
    assert result.final_accuracy > 0.9


class _Spikes(torch.nn.Module):
    """The MLP, but in training updates ``first`` to ``last - 1`` (0-based) class 0's logit
    reads ``shift`` above the largest one, whatever the weights: a loss of about
    0.9 x ``shift`` in those updates that no training brings down."""

    def __init__(self, first: int, last: int, shift: float = 100.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mlp = MLP()
        self.first, self.last, self.shift = first, last, shift
        self.calls = 0

    def forward(self, x):
        logits = self.mlp(x)
        if not self.training:
            return logits
        self.calls += 1
        if self.first < self.calls <= self.last:
            bump = torch.zeros_like(logits)
            bump[:, 0] = logits.max(dim=1).values - logits[:, 0] + self.shift
            return logits + bump.detach()
        return logits


def test_a_loss_spike_is_divergence_only_when_it_outlasts_the_first_updates(tiny_data):
    config = TrialConfig(optimizer="adam", lr=1e-3, epochs=2, batch_size=8)
    # spiking in updates 1..15: the mean of the epoch is far above the limit, yet no
    # judged update is in the spike
    transient = fit(config, tiny_data, model=_Spikes(1, SETTLE_UPDATES))
    assert transient.history[0].train_loss > LOSS_DIVERGENCE_FACTOR * math.log(10)
    assert not transient.diverged and transient.final_accuracy > 0.8
    # spiking from update 1 on: the loss stays up, the run blew up in its first epoch
    lasting = fit(config, tiny_data, model=_Spikes(1, 10**9))
    assert lasting.diverged_reason == "loss blew up" and lasting.diverged_epoch == 1


def test_a_blow_up_is_judged_once_the_run_has_made_enough_updates(tiny_data):
    # 8 updates per epoch: the first two epochs lie within the run's first SETTLE_UPDATES
    # updates, so a finite blow-up is seen in epoch 3 (the documented limit: a run of at
    # most SETTLE_UPDATES updates is stopped by a non-finite loss only).
    config = TrialConfig(optimizer="adam", lr=1e6, epochs=3, batch_size=32)
    assert tiny_data.num_train // 32 * 2 == SETTLE_UPDATES
    result = fit(config, tiny_data)
    assert result.diverged_reason == "loss blew up" and result.diverged_epoch == 3
    assert len(result.history) == 2
    assert not fit(config.replace(epochs=2), tiny_data).diverged
    # a non-finite loss stops any run at once
    sgd = fit(config.replace(optimizer="sgd", epochs=1), tiny_data)
    assert sgd.diverged_reason == "non-finite loss" and sgd.diverged_epoch == 1


def test_the_lr_that_broke_it_is_the_one_in_effect(tiny_data):
    # Warm-up over 2 epochs to a huge rate: it breaks before reaching it.
    config = TrialConfig(optimizer="sgd", lr=1e8, epochs=3, batch_size=8, warmup_epochs=2)
    result = fit(config, tiny_data)
    assert result.diverged
    assert 0 < result.diverged_lr < 1e8


def test_on_epoch_can_stop_the_run(tiny_data):
    class Stop(Exception):
        pass

    def stop(stats):
        raise Stop

    with pytest.raises(Stop):
        fit(TrialConfig(epochs=3, batch_size=32), tiny_data, on_epoch=stop)


def test_fit_trains_a_given_model(tiny_data):
    model = MLP(hidden=(32,), dropout=0.0)
    result = fit(TrialConfig(epochs=1, batch_size=32), tiny_data, model=model)
    assert result.model is model


def test_mlp_layers_match_the_lab():
    names = [type(m).__name__ for m in MLP().layers]
    assert names == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert [m.out_features for m in MLP().layers if hasattr(m, "out_features")] == [512, 256, 10]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_keeps_data_and_model_on_the_gpu():
    data = load_mnist(device="cuda", train_size=4096)
    assert data.train_x.is_cuda and data.eval_x.is_cuda
    result = fit(TrialConfig(optimizer="adam", lr=1e-3, epochs=2, batch_size=128), data)
    assert next(result.model.parameters()).is_cuda
    assert not result.diverged and result.final_accuracy > 0.8
    diverged = fit(TrialConfig(optimizer="sgd", lr=1e7, epochs=1, batch_size=128), data)
    assert diverged.diverged and diverged.diverged_lr == pytest.approx(1e7)


def test_interleaved_runs_give_the_same_result_as_runs_alone(tiny_data):
    configs = [
        TrialConfig(optimizer="sgd", lr=0.05, momentum=0.9, epochs=3, batch_size=32, seed=s)
        for s in (3, 4)
    ]
    alone = [fit(c, tiny_data) for c in configs]
    runs = [TrainingRun(c, tiny_data) for c in configs]
    while not all(r.finished for r in runs):
        for run in runs:
            run.train_epoch()
    for solo, run in zip(alone, runs, strict=True):
        assert [s.train_loss for s in run.history] == [s.train_loss for s in solo.history]
        assert run.result().final_accuracy == solo.final_accuracy


class _Collapses(torch.nn.Module):
    """The MLP, but after ``after`` training updates (and until ``until``) its input is
    wiped out: the network learned, then predicts one class for everything, with a finite
    loss."""

    def __init__(self, after: int, until: int = 10**9) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mlp = MLP()
        self.after, self.until = after, until
        self.calls = 0

    def forward(self, x):
        if self.training:
            self.calls += 1
        return self.mlp(x * 0.0 if self.after < self.calls <= self.until else x)


def test_a_run_that_learns_then_falls_to_chance_is_recorded_as_diverged(tiny_data):
    # 32 updates per epoch: an evaluation at chance after one epoch is a collapse at once.
    config = TrialConfig(optimizer="sgd", lr=0.05, momentum=0.9, epochs=4, batch_size=8)
    steps = tiny_data.num_train // 8
    assert steps >= SETTLE_UPDATES
    result = fit(config, tiny_data, model=_Collapses(after=2 * steps))
    assert result.diverged and result.diverged_reason == "collapsed to chance"
    assert result.diverged_epoch == 3
    assert [s.epoch for s in result.history] == [1, 2]
    assert result.history[-1].eval_accuracy > 0.5
    # A run that never learned is slow, not collapsed.
    slow = fit(config.replace(lr=1e-7, momentum=None), tiny_data)
    assert not slow.diverged and slow.final_accuracy < 0.5


def test_after_short_epochs_a_collapse_must_be_seen_for_enough_updates(tiny_data):
    # 8 updates per epoch: one evaluation at chance spans too few updates to tell a
    # collapse from a dip; two in a row do.
    config = TrialConfig(optimizer="sgd", lr=0.05, momentum=0.9, epochs=5, batch_size=32)
    steps = tiny_data.num_train // 32
    assert steps * 2 == SETTLE_UPDATES
    collapsed = fit(config, tiny_data, model=_Collapses(after=2 * steps))
    assert collapsed.diverged_reason == "collapsed to chance"
    assert collapsed.diverged_epoch == 4
    assert [s.epoch for s in collapsed.history] == [1, 2, 3]
    assert collapsed.history[-1].eval_accuracy < 0.2  # the first sighting, not yet a verdict
    # wiped out for epoch 3 only: at chance in one evaluation, then it learns again
    dip = fit(config, tiny_data, model=_Collapses(after=2 * steps, until=3 * steps))
    assert not dip.diverged
    assert dip.history[2].eval_accuracy < 0.2 < 0.5 < dip.history[1].eval_accuracy
    assert dip.final_accuracy > 0.5


def test_bf16_trains_with_float32_weights(tiny_data):
    config = TrialConfig(optimizer="adam", lr=1e-3, epochs=2, batch_size=32, precision="bf16")
    result = fit(config, tiny_data)
    assert not result.diverged and result.final_accuracy > 0.9
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


@pytest.mark.parametrize("schedule", ["constant", "triangular", "one_cycle", "plateau"])
def test_the_training_loop_does_not_synchronise_with_the_host_per_update(
    tiny_data, monkeypatch, schedule
):
    # On a GPU every .item() waits for the device; the loop may look at the divergence flag
    # once every CHECK_EVERY updates and once per epoch, never per update (the schedules'
    # rates, lowest and highest included, and momenta are Python floats).
    calls = []
    real_item = torch.Tensor.item

    def counting_item(self):
        calls.append(1)
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    config = TrialConfig(optimizer="sgd", lr=0.05, epochs=1, batch_size=8, schedule=schedule)
    updates = -(-tiny_data.num_train // 8)
    fit(config, tiny_data)
    assert len(calls) <= updates // CHECK_EVERY + 10


def test_the_cpu_dropout_keeps_each_unit_with_probability_one_minus_p():
    from study.train.model import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.2)
    x = torch.ones(512, 1000)
    y = drop(x)
    kept = (y != 0).float()
    assert kept.mean().item() == pytest.approx(0.8, abs=0.002)
    assert y.mean().item() == pytest.approx(1.0, abs=0.005)  # unbiased: scaled by 1/keep
    # every lane of the random integers is used alike (no lane biased)
    lanes = kept.flatten()[: 4 * 100_000].view(-1, 4).mean(dim=0)
    assert torch.allclose(lanes, torch.full((4,), 0.8), atol=0.005)
    assert torch.equal(drop.eval()(x), x)  # identity at evaluation
    torch.manual_seed(1)
    a = Dropout(0.2).train()(x)
    torch.manual_seed(1)
    assert torch.equal(Dropout(0.2).train()(x), a)  # seeded like torch's


# --- what the schedules set and what each epoch records ---------------------------------


def _rates_per_update(config: TrialConfig, steps: int) -> list[float]:
    f = config.lr_lambda(steps)
    return [config.lr * f(i) for i in range(steps * config.epochs)]


def test_each_epoch_records_the_lowest_highest_and_last_rate_of_a_cyclic_schedule(tiny_data):
    config = TrialConfig(
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        epochs=4,
        batch_size=32,
        warmup_epochs=0.5,
        schedule="triangular2",
        schedule_params={"step_epochs": 0.75, "base_ratio": 0.1},
    )
    steps = tiny_data.num_train // 32
    rates = _rates_per_update(config, steps)
    result = fit(config, tiny_data)
    assert not result.diverged
    for stats in result.history:
        epoch = rates[(stats.epoch - 1) * steps : stats.epoch * steps]
        assert stats.lr == pytest.approx(epoch[-1])
        assert stats.lr_min == pytest.approx(min(epoch))
        assert stats.lr_max == pytest.approx(max(epoch))
        assert stats.lr_min < stats.lr_max  # a cycle moves within every epoch here
        assert stats.momentum == 0.9  # the configured momentum, untouched
    assert max(s.lr_max for s in result.history) == pytest.approx(0.05)  # the peak is lr


def test_a_constant_rate_records_the_same_lowest_highest_and_last(tiny_data):
    result = fit(TrialConfig(optimizer="adam", lr=1e-3, epochs=2, batch_size=32), tiny_data)
    for stats in result.history:
        assert stats.lr == stats.lr_min == stats.lr_max == 1e-3
        assert stats.momentum == 0.9  # Adam's beta1


def test_epoch_stats_built_without_the_newer_fields_read_as_one_rate():
    # as bench/epoch_speed.py builds them: lr_min and lr_max are the lr, no momentum
    stats = EpochStats(1, 0.1, 0.9, 0.1, 0.9, 0.01, 64, 0.0)
    assert stats.lr_min == stats.lr_max == 0.01 and stats.momentum is None


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_one_cycle_sets_momentum_or_beta1_in_every_group_at_every_update(optimizer, tiny_data):
    config = TrialConfig(
        optimizer=optimizer,
        lr=0.05 if optimizer == "sgd" else 1e-3,
        epochs=3,
        batch_size=32,
        weight_decay=1e-4,
        schedule="one_cycle",
    )
    steps = tiny_data.num_train // 32
    momentum = build_momentum_fn(
        "one_cycle", config.schedule_params, steps_per_epoch=steps, epochs=3
    )
    run = TrainingRun(config, tiny_data)
    assert len(run.optimizer.param_groups) == 2  # decayed weights, undecayed biases
    seen: list[list[tuple[float, float]]] = []

    def before_step(optim, args, kwargs):
        groups = optim.param_groups
        seen.append([(g["lr"], g["betas"][0] if "betas" in g else g["momentum"]) for g in groups])
        if "betas" in groups[0]:
            assert all(g["betas"][1] == 0.999 for g in groups)  # beta2 kept

    run.optimizer.register_step_pre_hook(before_step)
    while not run.finished:
        run.train_epoch()
    expected = [momentum(i) for i in range(3 * steps)]
    for group in range(2):
        assert [update[group][1] for update in seen] == pytest.approx(expected)
    # from max_momentum down to about base_momentum at the peak rate (no update falls on
    # the peak exactly here), then back up
    assert expected[0] == pytest.approx(0.95) and min(expected) == pytest.approx(0.85, abs=1e-3)
    assert [s.momentum for s in run.history] == pytest.approx(
        [expected[(e + 1) * steps - 1] for e in range(3)]
    )
    rates = _rates_per_update(config, steps)
    assert [update[0][0] for update in seen] == pytest.approx(rates)
    assert not run.result().diverged and run.history[-1].eval_accuracy > 0.9


def test_one_cycle_leaves_an_optimizer_without_momentum_or_betas_alone(tiny_data):
    plain = [
        n
        for n in list_optimizers()
        if not (get_optimizer_info(n).has_momentum or get_optimizer_info(n).has_betas)
    ]
    if not plain:
        pytest.skip("every registered optimizer has momentum or betas")
    config = TrialConfig(
        optimizer=plain[0], lr=0.01, epochs=1, batch_size=32, schedule="one_cycle"
    )
    result = fit(config, tiny_data)
    assert result.history[0].momentum is None
    assert result.history[0].lr_max > result.history[0].lr_min


def test_one_cycle_with_cycle_momentum_0_keeps_the_configured_momentum(tiny_data):
    config = TrialConfig(
        optimizer="sgd",
        lr=0.05,
        momentum=0.7,
        epochs=2,
        batch_size=32,
        schedule="one_cycle",
        schedule_params={"cycle_momentum": 0},
    )
    run = TrainingRun(config, tiny_data)
    run.train_epoch()
    assert run.history[0].momentum == 0.7
    assert all(g["momentum"] == 0.7 for g in run.optimizer.param_groups)


def test_plateau_reduces_the_rate_after_patience_epochs_without_improvement(tiny_data):
    # A rate so small the evaluated accuracy never moves: epoch 1 sets the best, epoch 2 is
    # tolerated (patience 1), epoch 3 is one too many: epoch 4 trains at half the rate;
    # the count starts afresh, so epoch 6 at a quarter.
    config = TrialConfig(
        optimizer="sgd",
        lr=1e-9,
        epochs=6,
        batch_size=32,
        warmup_epochs=0,
        schedule="plateau",
        schedule_params={"factor": 0.5, "patience": 1},
    )
    result = fit(config, tiny_data)
    accuracies = [s.eval_accuracy for s in result.history]
    assert len(set(accuracies)) == 1
    assert [s.lr for s in result.history] == pytest.approx(
        [1e-9, 1e-9, 1e-9, 5e-10, 5e-10, 2.5e-10]
    )
    assert all(s.lr_min == s.lr_max == s.lr for s in result.history)


def test_plateau_follows_the_accuracy_as_torchs_reducelronplateau_does(tiny_data):
    config = TrialConfig(
        optimizer="sgd",
        lr=0.02,
        momentum=0.9,
        epochs=6,
        batch_size=32,
        warmup_epochs=1,
        schedule="plateau",
        schedule_params={"factor": 0.3, "patience": 0},
    )
    result = fit(config, tiny_data)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.3, patience=0, threshold=1e-4
    )
    expected = []
    for stats in result.history:
        expected.append(optimizer.param_groups[0]["lr"])
        reference.step(stats.eval_accuracy)
    assert [s.lr for s in result.history] == pytest.approx(expected)
    assert len({s.lr for s in result.history}) > 1  # it did reduce, here after epoch 3


def test_a_batch_size_schedule_trains_each_epoch_at_its_batch_size(tiny_data):
    config = TrialConfig(
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        epochs=3,
        batch_size=8,
        schedule="batch_multistep",
        schedule_params={"milestones": [1, 2], "gamma": 0.5},
    )
    run = TrainingRun(config, tiny_data)
    updates = []
    for _ in range(3):
        before = run.scheduler.last_epoch
        stats = run.train_epoch()
        updates.append(run.scheduler.last_epoch - before)
    n = tiny_data.num_train
    assert [e.batch_size for e in run.history] == [8, 16, 32]
    assert updates == [-(-n // 8), -(-n // 16), -(-n // 32)]
    assert {e.lr for e in run.history} == {0.05} and stats.lr_min == stats.lr_max == 0.05


@pytest.mark.parametrize("bf16", [False, True])
def test_the_mlps_train_step_gives_autograds_gradients(bf16):
    torch.manual_seed(0)
    model = MLP()
    model.train()
    x, y = torch.randn(64, 784), torch.randint(0, 10, (64,))
    torch.manual_seed(1)  # the same dropout masks for both
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
    per_example = F.cross_entropy(logits.float(), y, reduction="none")
    model.zero_grad(set_to_none=True)
    per_example.mean().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    exact = MLP().double()  # the same network in float64: the gradients bf16 approximates
    exact.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    F.cross_entropy(exact(x.double()), y).backward()
    torch.manual_seed(1)
    nll, pred = model.train_step(x, y, bf16=bf16)
    assert nll.dtype == torch.float32 and pred.dtype == torch.long
    for p, grad, p64 in zip(model.parameters(), expected, exact.parameters(), strict=True):
        assert p.grad.dtype == torch.float32
        if bf16:  # rounded to bfloat16 at other points than autograd: no further from exact
            error = (p.grad.double() - p64.grad).norm() / p64.grad.norm()
            autograd_error = (grad.double() - p64.grad).norm() / p64.grad.norm()
            assert error <= 1.2 * autograd_error + 1e-3
            assert (p.grad - grad).norm() <= 0.05 * grad.norm()
        else:
            torch.testing.assert_close(p.grad, grad, rtol=1e-5, atol=1e-7)
    if bf16:
        torch.testing.assert_close(nll, per_example.detach(), rtol=2e-2, atol=2e-2)
        assert (pred == logits.argmax(dim=1)).float().mean() >= 0.9  # near-ties may flip
    else:
        torch.testing.assert_close(nll, per_example.detach(), rtol=1e-5, atol=1e-6)
        assert torch.equal(pred, logits.argmax(dim=1))


def test_the_train_step_follows_each_layers_own_dropout():
    torch.manual_seed(0)
    model = MLP()
    model.layers[6].p = 0.5  # the second hidden layer's dropout, changed after building
    x, y = torch.randn(32, 784), torch.randint(0, 10, (32,))
    torch.manual_seed(1)
    F.cross_entropy(model(x), y).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    model.train_step(x, y)
    for p, grad in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, grad, rtol=1e-5, atol=1e-7)


def test_the_train_step_writes_into_given_buffers_and_reuses_its_gradients():
    torch.manual_seed(0)
    model = MLP()
    x, y = torch.randn(8, 784), torch.randint(0, 10, (8,))
    nll, pred = torch.full((10,), -1.0), torch.full((10,), -1, dtype=torch.long)
    out = model.train_step(x, y, nll=nll[2:], pred=pred[2:])
    assert out[0].data_ptr() == nll[2:].data_ptr() and out[1].data_ptr() == pred[2:].data_ptr()
    assert nll[:2].tolist() == [-1.0, -1.0] and (nll[2:] > 0).all()
    assert pred[:2].tolist() == [-1, -1] and ((pred[2:] >= 0) & (pred[2:] < 10)).all()
    grads = [p.grad for p in model.parameters()]
    model.train_step(x, y)
    assert all(p.grad is g for p, g in zip(model.parameters(), grads, strict=True))
    # zero_grad(set_to_none=True) drops them; the next step makes them again
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    model.train_step(x, y)
    first = [p.grad.clone() for p in model.parameters()]
    torch.manual_seed(5)
    model.train_step(x, y)  # the same masks: the same gradients, not added up
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), first, strict=True))


def test_a_copied_model_trains_on_its_own_gradient_buffers():
    torch.manual_seed(0)
    model = MLP()
    x, y = torch.randn(8, 784), torch.randint(0, 10, (8,))
    model.train_step(x, y, bf16=True)
    twin = copy.deepcopy(model)
    assert "_step_cache" not in twin.__dict__  # made again on use, not shared
    torch.manual_seed(1)
    model.train_step(x, y, bf16=True)
    torch.manual_seed(1)
    twin.train_step(x, y, bf16=True)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad) and a.grad.data_ptr() != b.grad.data_ptr()


def test_the_cheap_dropout_mask_keeps_its_probability_and_matches_forward():
    drop = Dropout(0.2)
    x = torch.ones(200, 500)
    torch.manual_seed(3)
    mask, scale = drop.cpu_mask(x)
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and mask.dtype == torch.float32
    assert mask.mean().item() == pytest.approx(0.8, abs=0.005) and scale == 65536 / 52429
    torch.manual_seed(3)
    assert torch.equal(drop(x), mask * scale)  # forward draws the same mask
    torch.manual_seed(3)
    half, _ = drop.cpu_mask(x.bfloat16())
    assert half.dtype == torch.bfloat16 and torch.equal(half.float(), mask)


def test_training_uses_autograd_where_the_mlp_was_changed(tiny_data):
    model = MLP()
    assert model.has_train_step(torch.device("cpu"))
    assert not model.has_train_step(torch.device("meta"))  # a GPU uses autograd
    hooked = MLP()
    hooked.layers[1].register_forward_hook(lambda module, args, out: out)
    assert not hooked.has_train_step(torch.device("cpu"))
    other = MLP()
    other.layers.append(torch.nn.ReLU())
    assert not other.has_train_step(torch.device("cpu"))
    assert not MLP().double().has_train_step(torch.device("cpu"))  # float32 only
    # one epoch through either path trains the same model, to float32 rounding
    config = TrialConfig(optimizer="adam", lr=1e-3, epochs=1, batch_size=64, seed=3)
    fast, slow = TrainingRun(config, tiny_data), TrainingRun(config, tiny_data)
    slow.model.layers[0].register_forward_hook(lambda module, args, out: out)
    assert not slow.model.has_train_step(torch.device("cpu"))
    a, b = fast.train_epoch(), slow.train_epoch()
    assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
    assert a.train_accuracy == pytest.approx(b.train_accuracy, abs=2e-3)
    assert a.eval_accuracy == pytest.approx(b.eval_accuracy, abs=2e-3)

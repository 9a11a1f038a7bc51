"""One training run: the epoch loop, evaluation, divergence and collapse detection.

``fit(config, data)`` is the public API for a single run without any study (the lab's
experiments). :class:`TrainingRun` is the same run advanced one epoch at a time: the study's
objective interleaves several seeds of a configuration with it, epoch by epoch. This module
never imports Optuna.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from study.train.config import TrialConfig
from study.train.data import Dataset, epoch_permutation, iter_batches
from study.train.model import MLP
from study.train.optim import create_optimizer, get_optimizer_info
from study.train.schedules import (
    build_batch_factor,
    build_epoch_hook,
    build_momentum_fn,
    create_scheduler,
    scale_lr,
)

__all__ = [
    "EpochStats",
    "FitResult",
    "TrainingRun",
    "fit",
    "evaluate",
    "collapse_levels",
    "flush_denormals",
    "fast_bf16_available",
]

logger = logging.getLogger(__name__)

#: A training run has diverged ("loss blew up") when an epoch's mean training loss over its
#: judged updates (those after the run's first SETTLE_UPDATES) exceeds this multiple of the
#: first batch's loss (about ln 10 = 2.3 for a fresh 10-class classifier). A non-finite
#: training loss is divergence at once, at any update (checked every CHECK_EVERY updates).
#: Not the learning-rate range test's stop (``study.train.range_test.RANGE_STOP_FACTOR``, a
#: multiple of the smoothed loss's minimum while the rate rises).
LOSS_DIVERGENCE_FACTOR = 10.0
#: Updates between divergence checks (one host synchronisation each on a GPU).
CHECK_EVERY = 25
#: A run has collapsed when, after reaching this accuracy, its evaluation accuracy falls
#: back below twice chance and stays there (a network that learned, then lost it without a
#: non-finite loss: dead units after a too-large step). It is recorded like a divergence.
#: Both levels are MNIST's (ten classes); :func:`collapse_levels` gives them for any number.
COLLAPSE_AFTER = 0.5
#: Updates a transient may last without being divergence, the same at every training size,
#: so it matters only in short runs. RMSprop at its default lr 0.01 spikes to ~1000-2000 at
#: its second update and is back under 10 within about 10 more (MNIST, batch 64): that
#: spike dominates the mean loss of a 32-update epoch (2,000 examples), not of a full one
#: (938 updates).
#: (1) "Loss blew up" never judges the run's first SETTLE_UPDATES updates: an epoch's judged
#: mean is over its updates after them; an epoch with none is not judged.
#: (2) A fall below twice chance is a collapse once the evaluations that saw it span at
#: least SETTLE_UPDATES updates (its own epoch included): at once after an epoch of that
#: many updates or more, else at the next evaluation(s).
#: Limits: a run of at most SETTLE_UPDATES updates in all is never judged "blew up" (only
#: a non-finite loss stops it; a finite blow-up is a complete run at the accuracy it
#: reached); a fall to chance seen only by a run's last evaluations, spanning fewer than
#: SETTLE_UPDATES updates, is not a collapse; a transient that outlasts SETTLE_UPDATES by
#: most of an epoch still counts as a blow-up.
SETTLE_UPDATES = 16
_EVAL_CHUNK = 10_000


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Denormal floats (below 1.2e-38) read and written as zero while training on the CPU.

    Adam's and RMSprop's second moments of tiny gradients sink into them as training goes on,
    and the CPU computes on them many times slower: at one thread an Adam epoch grows to
    several times its first one's time. What is flushed lies below float32's normal range;
    the accuracies the study records are unchanged. Left off again at the end (torch's
    default; it cannot be read back).
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def collapse_levels(num_classes: int) -> tuple[float, float]:
    """(the accuracy a run must have reached, the one it then falls below) for a collapse:
    :data:`COLLAPSE_AFTER` and twice chance with ten classes (0.5, 0.2); with C classes the
    same shares of the way from chance (1/C) to 1, 4/9 and 1/9, so that on three classes a
    run learning slowly past 0.5 is no collapse."""
    c = num_classes
    return (4 * c + 5) / (9 * c), (c + 8) / (9 * c)


def fast_bf16_available(device: str | torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix products natively (a GPU with bf16 support;
    a CPU with AVX-512 BF16 or AMX instructions), so ``bf16`` is worth it there."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(
            including_emulation=False
        )
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = fh.read()
    except OSError:  # not Linux: no cheap way to tell, so say no
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class EpochStats:
    """What one epoch measured.

    ``train_loss`` and ``train_accuracy`` are running averages over the epoch's batches,
    weighted by batch size (the lab's AverageMeter), with dropout active. ``eval_*`` is
    measured after the epoch on the evaluation set (test set or validation split). ``lr`` is
    the learning rate of the epoch's last update, ``lr_min`` and ``lr_max`` the lowest and
    highest of its updates (first parameter group; ``None`` given: ``lr``, an epoch at one
    rate). ``momentum`` is the momentum, or beta1 of an optimizer with betas, of the epoch's
    last update; ``None`` for an optimizer with neither.
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    eval_loss: float
    eval_accuracy: float
    lr: float
    batch_size: int
    seconds: float
    lr_min: float | None = None
    lr_max: float | None = None
    momentum: float | None = None

    def __post_init__(self) -> None:
        if self.lr_min is None:
            object.__setattr__(self, "lr_min", self.lr)
        if self.lr_max is None:
            object.__setattr__(self, "lr_max", self.lr)


@dataclass(frozen=True)
class FitResult:
    """The outcome of :func:`fit`.

    Attributes:
        history: one :class:`EpochStats` per completed epoch.
        diverged: a loss became non-finite, an epoch's mean loss past the run's first
            ``SETTLE_UPDATES`` updates was far above the first batch's, or the run collapsed
            to chance after having learned (for at least ``SETTLE_UPDATES`` updates);
            training stopped.
        diverged_lr: the learning rate in effect when divergence was detected.
        diverged_epoch: the (1-based) epoch in which it diverged.
        diverged_reason: ``"non-finite loss"``, ``"loss blew up"`` or
            ``"collapsed to chance"``; ``None`` when it did not diverge.
        final_accuracy: evaluation accuracy after the last epoch; 0.0 for a diverged run.
        test_accuracy: test-set accuracy at the end (equal to ``final_accuracy`` when the
            evaluation set is the test set; ``None`` for a diverged run).
        eval_set: ``"test"`` or ``"validation"``.
        model: the trained model.
    """

    config: TrialConfig
    history: tuple[EpochStats, ...]
    diverged: bool
    diverged_lr: float | None
    diverged_epoch: int | None
    diverged_reason: str | None
    final_accuracy: float
    test_accuracy: float | None
    eval_set: str
    model: nn.Module = field(repr=False, compare=False)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, x.shape[0], _EVAL_CHUNK):
        logits = model(x[start : start + _EVAL_CHUNK])
        target = y[start : start + _EVAL_CHUNK]
        loss_sum += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(dim=1) == target).sum()
    model.train(was_training)
    n = x.shape[0]
    return loss_sum.item() / n, correct.item() / n


def _get_rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]):
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


class TrainingRun:
    """One training run of ``config`` on ``data``, advanced by :meth:`train_epoch`.

    Several runs can be interleaved epoch by epoch in one process: each keeps its own random
    state (weight initialisation, dropout, batch order), so a run gives the same result
    whether it is trained alone or beside others.

    On a CPU the lab's MLP computes its gradients with :meth:`~study.train.model.MLP.train_step`
    (autograd's gradients to rounding, without autograd; each example's loss and prediction
    go into the epoch's buffers, added up once at its end, so an update never waits on the
    host); another model, or a GPU, uses autograd. The learning rate follows the schedule once per
    update (``LambdaLR``); a schedule with a momentum schedule (``one_cycle``) sets the
    momentum, or beta1, of every parameter group per update where the optimizer has one; an
    epoch-level schedule (``plateau``) reads each evaluation and scales the rate from the
    next update on.

    Args:
        config: optimizer, learning rate, schedule, batch size, epochs, seed and precision.
        data: tensors from :func:`~study.train.data.load_mnist` or
            :func:`~study.train.data.tensor_dataset` (training runs on their device).
        model: a model to train instead of a fresh ``MLP()`` seeded with ``config.seed``; or
            a function that makes one (``() -> nn.Module``), called like ``MLP()`` with the
            random state seeded by ``config.seed``, so each seed gets its own initialisation.
        divergence_factor: the run is diverged when an epoch's mean training loss (past the
            run's first ``SETTLE_UPDATES`` updates) exceeds this multiple of its first
            batch's loss, or at once when a loss is not finite.
    """

    def __init__(
        self,
        config: TrialConfig,
        data: Dataset,
        *,
        model: nn.Module | Callable[[], nn.Module] | None = None,
        divergence_factor: float = LOSS_DIVERGENCE_FACTOR,
    ) -> None:
        self.config = config
        self.data = data
        self.device = data.device
        self.divergence_factor = divergence_factor
        outer = _get_rng_state(self.device)
        torch.manual_seed(config.seed)
        self.model = (model if isinstance(model, nn.Module) else (model or MLP)()).to(
            self.device)
        self.model.train()
        self.optimizer = create_optimizer(
            self.model, config.optimizer, **config.optimizer_hparams()
        )
        steps_per_epoch = math.ceil(data.num_train / config.batch_size)
        self.scheduler = create_scheduler(self.optimizer, config.lr_lambda(steps_per_epoch))
        # the momentum a schedule sets: group["momentum"], or beta1 of group["betas"]
        info = get_optimizer_info(config.optimizer)
        self._momentum_key = (
            "betas" if info.has_betas else "momentum" if info.has_momentum else None
        )
        self._momentum_fn = (
            build_momentum_fn(
                config.schedule, config.schedule_params,
                steps_per_epoch=steps_per_epoch, epochs=config.epochs,
            )
            if self._momentum_key is not None
            else None
        )
        if self._momentum_fn is not None:
            self._set_momentum(self._momentum_fn(0))
        self._epoch_hook = build_epoch_hook(config.schedule, config.schedule_params)
        self._batch_factor = build_batch_factor(config.schedule, config.schedule_params)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self._rng = _get_rng_state(self.device)  # this run's dropout stream
        _set_rng_state(self.device, outer)
        self._autocast = config.precision == "bf16"
        self.history: list[EpochStats] = []
        self.diverged_lr: float | None = None
        self.diverged_epoch: int | None = None
        self.diverged_reason: str | None = None
        self._loss_limit: float | None = None
        self._collapse_after, self._collapse_level = collapse_levels(data.num_classes)
        self._updates = 0  # optimizer updates made so far
        self._below_updates = 0  # updates spanned by the evaluations below collapse level

    @property
    def diverged(self) -> bool:
        return self.diverged_reason is not None

    def _set_momentum(self, value: float) -> None:
        for group in self.optimizer.param_groups:
            if self._momentum_key == "betas":
                group["betas"] = (value, *group["betas"][1:])
            else:
                group["momentum"] = value

    def _momentum_used(self) -> float | None:
        """The momentum (or beta1) of the last update made."""
        if self._momentum_fn is not None:
            return self._momentum_fn(self.scheduler.last_epoch - 1)
        if self._momentum_key is None:
            return None
        value = self.optimizer.param_groups[0][self._momentum_key]
        return float(value[0] if self._momentum_key == "betas" else value)

    def state_dict(self) -> dict[str, Any]:
        """Everything the run needs to go on where it stopped: the model, optimizer and
        schedule states, its random streams (batch order, dropout), its history and its
        divergence bookkeeping. :mod:`study.train.checkpoint` writes it to a file."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch_hook": self._epoch_hook.state_dict() if self._epoch_hook else None,
            "generator": self.generator.get_state(),
            "rng": self._rng,
            "history": [dataclasses.asdict(e) for e in self.history],
            "diverged": (self.diverged_lr, self.diverged_epoch, self.diverged_reason),
            "loss_limit": self._loss_limit,
            "updates": self._updates,
            "below_updates": self._below_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` of a run of the same config: the next epochs
        are the ones the original run would have trained."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self._epoch_hook is not None and state.get("epoch_hook") is not None:
            self._epoch_hook.load_state_dict(state["epoch_hook"])
        self.generator.set_state(state["generator"].to(torch.uint8).cpu())
        cpu_rng, cuda_rng = state["rng"]
        self._rng = (cpu_rng.to(torch.uint8).cpu(),
                     None if cuda_rng is None else cuda_rng.to(torch.uint8).cpu())
        self.history = [EpochStats(**e) for e in state["history"]]
        self.diverged_lr, self.diverged_epoch, self.diverged_reason = state["diverged"]
        self._loss_limit = state["loss_limit"]
        self._updates = state["updates"]
        self._below_updates = state["below_updates"]
        if self._momentum_fn is not None:
            self._set_momentum(self._momentum_fn(self.scheduler.last_epoch))

    @property
    def finished(self) -> bool:
        """All epochs trained, or stopped by divergence."""
        return self.diverged or len(self.history) >= self.config.epochs

    def train_epoch(self) -> EpochStats | None:
        """Train and evaluate one more epoch; ``None`` when the run diverged in it."""
        if self.finished:
            raise RuntimeError(
                f"this run has finished ({len(self.history)} of {self.config.epochs} epochs"
                f"{', diverged' if self.diverged else ''}); nothing left to train. A "
                "checkpoint trains on with checkpoint.resume(data, epochs=N).")
        outer = _get_rng_state(self.device)
        _set_rng_state(self.device, self._rng)
        try:
            with flush_denormals():
                return self._train_epoch(len(self.history) + 1)
        finally:
            self._rng = _get_rng_state(self.device)
            _set_rng_state(self.device, outer)

    def _train_epoch(self, epoch: int) -> EpochStats | None:
        model, config, data = self.model, self.config, self.data
        start = time.perf_counter()
        # the loss "blew up" is judged on the epoch's updates past the run's first few
        judged_from = max(0, SETTLE_UPDATES - self._updates)
        batch_size = config.batch_size * (
            self._batch_factor(epoch - 1) if self._batch_factor is not None else 1)
        steps = math.ceil(data.num_train / batch_size)
        self._lr_low, self._lr_high = math.inf, -math.inf
        self._lr_used = self.optimizer.param_groups[0]["lr"]
        if isinstance(model, MLP) and model.has_train_step(self.device):
            tally = self._epoch_by_train_step(batch_size, judged_from)
        else:
            tally = self._epoch_by_autograd(batch_size, judged_from)
        loss_sum, unjudged_sum, seen, unjudged_seen, correct, bad = tally
        lr_used, lr_low, lr_high = self._lr_used, self._lr_low, self._lr_high
        self._updates += steps
        train_loss = loss_sum.item() / seen
        if bad.item():
            return self._diverge(epoch, lr_used, "non-finite loss")
        judged_seen = seen - unjudged_seen
        if judged_seen and (loss_sum - unjudged_sum).item() / judged_seen > self._loss_limit:
            return self._diverge(epoch, lr_used, "loss blew up")
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
            eval_loss, eval_acc = evaluate(model, data.eval_x, data.eval_y)
        best = max((s.eval_accuracy for s in self.history), default=0.0)
        below = best >= self._collapse_after and eval_acc < self._collapse_level
        self._below_updates = self._below_updates + steps if below else 0
        if self._below_updates >= SETTLE_UPDATES:
            return self._diverge(epoch, lr_used, "collapsed to chance")
        stats = EpochStats(
            epoch=epoch,
            train_loss=train_loss,
            train_accuracy=correct.item() / seen,
            eval_loss=eval_loss,
            eval_accuracy=eval_acc,
            lr=lr_used,
            batch_size=batch_size,
            seconds=time.perf_counter() - start,
            lr_min=lr_low,
            lr_max=lr_high,
            momentum=self._momentum_used(),
        )
        self.history.append(stats)
        if self._epoch_hook is not None:
            # an epoch-level schedule (plateau) reads the accuracy; applies from the next
            # update on
            factor = self._epoch_hook.step(eval_acc)
            if factor != 1.0:
                scale_lr(self.scheduler, factor)
        return stats

    def _before_update(self) -> None:
        # Python floats from the scheduler: no host synchronisation
        lr = self._lr_used = self.optimizer.param_groups[0]["lr"]
        self._lr_low = min(self._lr_low, lr)
        self._lr_high = max(self._lr_high, lr)

    def _after_update(self) -> None:
        self.optimizer.step()
        self.scheduler.step()
        if self._momentum_fn is not None:
            self._set_momentum(self._momentum_fn(self.scheduler.last_epoch))

    def _epoch_by_train_step(self, batch_size: int, judged_from: int) -> tuple:
        """The epoch's updates through :meth:`MLP.train_step` (the lab's MLP on a CPU): each
        example's loss and prediction go into the epoch's buffers, added up once at the end
        (and checked for non-finite values every ``CHECK_EVERY`` updates)."""
        data, n = self.data, self.data.num_train
        train_step = self.model.train_step
        inputs = data.train_inputs(torch.bfloat16 if self._autocast else data.train_x.dtype)
        perm = epoch_permutation(n, self.generator, self.device)
        nll = torch.empty(n, device=self.device)
        pred = torch.empty(n, dtype=torch.long, device=self.device)
        seen = checked = 0
        for step, first in enumerate(range(0, n, batch_size)):
            idx = perm[first : first + batch_size]
            seen = first + idx.shape[0]
            self._before_update()
            train_step(inputs.index_select(0, idx), data.train_y.index_select(0, idx),
                       bf16=self._autocast, nll=nll[first:seen], pred=pred[first:seen])
            self._after_update()
            if self._loss_limit is None:
                # the first batch fixes the reference loss (one sync per run)
                self._loss_limit = self.divergence_factor * max(
                    nll[first:seen].mean().item(), 1e-3)
            if (step + 1) % CHECK_EVERY == 0:
                if not torch.isfinite(nll[checked:seen]).all().item():
                    break
                checked = seen
        unjudged_seen = min(judged_from * batch_size, seen)
        correct = (pred[:seen] == data.train_y.index_select(0, perm[:seen])).sum()
        bad = ~torch.isfinite(nll[checked:seen]).all()
        return (nll[:seen].sum(), nll[:unjudged_seen].sum(), seen, unjudged_seen, correct, bad)

    def _epoch_by_autograd(self, batch_size: int, judged_from: int) -> tuple:
        """The epoch's updates through autograd (any model, any device): the sums are kept
        on the device, with no host synchronisation per update."""
        model, optimizer, data = self.model, self.optimizer, self.data
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        bad = torch.zeros((), device=self.device, dtype=torch.bool)
        unjudged_sum = torch.zeros((), device=self.device)
        seen = unjudged_seen = 0
        batches = iter_batches(data.train_x, data.train_y, batch_size, self.generator)
        for step, (xb, yb) in enumerate(batches):
            self._before_update()
            with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                enabled=self._autocast):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._after_update()
            detached = loss.detach()
            if self._loss_limit is None:
                # 1. the first batch fixes the reference loss (one sync per run)
                self._loss_limit = self.divergence_factor * max(detached.item(), 1e-3)
            # 2. accumulate on the device; no per-step host synchronisation
            loss_sum += detached * yb.shape[0]
            correct += (logits.detach().argmax(dim=1) == yb).sum()
            seen += yb.shape[0]
            bad |= ~torch.isfinite(detached)
            if step < judged_from:
                unjudged_sum += detached * yb.shape[0]
                unjudged_seen += yb.shape[0]
            # 3. look at the flag every CHECK_EVERY updates; the epoch mean at its end
            if (step + 1) % CHECK_EVERY == 0 and bad.item():
                break
        return loss_sum, unjudged_sum, seen, unjudged_seen, correct, bad

    def _diverge(self, epoch: int, lr: float, reason: str) -> None:
        self.diverged_lr, self.diverged_epoch, self.diverged_reason = lr, epoch, reason
        logger.debug("diverged in epoch %d at lr %.3g: %s", epoch, lr, reason)
        return None

    def result(self) -> FitResult:
        """The outcome so far (call it when :attr:`finished`)."""
        if self.diverged:
            final_accuracy, test_accuracy = 0.0, None
        else:
            final_accuracy = self.history[-1].eval_accuracy if self.history else math.nan
            if self.data.eval_set == "test":
                test_accuracy = final_accuracy
            else:
                with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                    enabled=self._autocast):
                    test_accuracy = evaluate(self.model, self.data.test_x, self.data.test_y)[1]
        return FitResult(
            config=self.config,
            history=tuple(self.history),
            diverged=self.diverged,
            diverged_lr=self.diverged_lr,
            diverged_epoch=self.diverged_epoch,
            diverged_reason=self.diverged_reason,
            final_accuracy=final_accuracy,
            test_accuracy=test_accuracy,
            eval_set=self.data.eval_set,
            model=self.model,
        )


def fit(
    config: TrialConfig,
    data: Dataset,
    *,
    on_epoch: Callable[[EpochStats], None] | None = None,
    model: nn.Module | Callable[[], nn.Module] | None = None,
    divergence_factor: float = LOSS_DIVERGENCE_FACTOR,
) -> FitResult:
    """Train the lab's MLP (or ``model``) on ``data`` as ``config`` says.

    Args:
        config: optimizer, learning rate, schedule, batch size, epochs, seed and precision.
        data: tensors from :func:`~study.train.data.load_mnist` or
            :func:`~study.train.data.tensor_dataset` (training runs on their device).
        on_epoch: called after each epoch's evaluation; it may raise to stop the run (the
            study's pruning does), and the exception propagates.
        model: a model, or a function making one, as :class:`TrainingRun` takes it.
        divergence_factor: the run is diverged when an epoch's mean training loss (past the
            run's first ``SETTLE_UPDATES`` updates) exceeds this multiple of its first
            batch's loss, or at once when a loss is not finite.

    Returns:
        A :class:`FitResult`; a diverged run is a result with ``diverged=True``, not an error.
    """
    run = TrainingRun(config, data, model=model, divergence_factor=divergence_factor)
    while not run.finished:
        stats = run.train_epoch()
        if stats is not None and on_epoch is not None:
            on_epoch(stats)
    return run.result()

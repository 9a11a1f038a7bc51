"""One training run: the epoch loop, evaluation and divergence detection.

``fit(config, data)`` is the public API for a single run without any study (the lab's
experiments); the study's objective calls it with an ``on_epoch`` callback. This module never
imports Optuna.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from study.config import TrialConfig
from study.data import Dataset, iter_batches
from study.model import MLP
from study.optim import create_optimizer
from study.schedules import build_lr_lambda, create_scheduler

__all__ = ["EpochStats", "FitResult", "fit", "evaluate"]

logger = logging.getLogger(__name__)

#: A run has diverged when a training loss is not finite (checked every CHECK_EVERY updates)
#: or when an epoch's mean training loss exceeds this multiple of the first batch's loss
#: (about ln 10 = 2.3 for a fresh 10-class classifier). Single spikes are not divergence:
#: RMSprop at its default lr 0.01 spikes to ~1000 in its first updates, then recovers.
DIVERGENCE_FACTOR = 10.0
#: Updates between divergence checks (one host synchronisation each on a GPU).
CHECK_EVERY = 25
_EVAL_CHUNK = 10_000


@dataclass(frozen=True)
class EpochStats:
    """What one epoch measured.

    ``train_loss`` and ``train_accuracy`` are running averages over the epoch's batches,
    weighted by batch size (the lab's AverageMeter), with dropout active. ``eval_*`` is
    measured after the epoch on the evaluation set (test set or validation split). ``lr`` is
    the learning rate of the epoch's last update (first parameter group).
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    eval_loss: float
    eval_accuracy: float
    lr: float
    batch_size: int
    seconds: float


@dataclass(frozen=True)
class FitResult:
    """The outcome of :func:`fit`.

    Attributes:
        history: one :class:`EpochStats` per completed epoch.
        diverged: a loss became non-finite, or an epoch's mean loss ended far above the
            first batch's; training stopped there.
        diverged_lr: the learning rate in effect when divergence was detected.
        diverged_epoch: the (1-based) epoch in which it diverged.
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


def fit(
    config: TrialConfig,
    data: Dataset,
    *,
    on_epoch: Callable[[EpochStats], None] | None = None,
    model: nn.Module | None = None,
    divergence_factor: float = DIVERGENCE_FACTOR,
) -> FitResult:
    """Train the lab's MLP (or ``model``) on ``data`` as ``config`` says.

    Args:
        config: optimizer, learning rate, schedule, batch size, epochs and seed.
        data: tensors from :func:`study.data.load_mnist` (training runs on their device).
        on_epoch: called after each epoch's evaluation; it may raise to stop the run (the
            study's pruning does), and the exception propagates.
        model: a model to train instead of a fresh ``MLP()`` seeded with ``config.seed``.
        divergence_factor: the run is diverged when an epoch's mean training loss exceeds
            this multiple of its first batch's loss, or at once when a loss is not finite.

    Returns:
        A :class:`FitResult`; a diverged run is a result with ``diverged=True``, not an error.
    """
    torch.manual_seed(config.seed)
    if model is None:
        model = MLP()
    model = model.to(data.device)
    model.train()
    optimizer = create_optimizer(model, config.optimizer, **config.optimizer_hparams())
    steps_per_epoch = math.ceil(data.num_train / config.batch_size)
    lr_lambda = build_lr_lambda(
        config.schedule,
        config.schedule_params,
        steps_per_epoch=steps_per_epoch,
        epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
    )
    scheduler = create_scheduler(optimizer, lr_lambda)
    generator = torch.Generator(device=data.device).manual_seed(config.seed)

    history: list[EpochStats] = []
    loss_limit: float | None = None
    diverged_lr: float | None = None
    diverged_epoch: int | None = None
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=data.device)
        correct = torch.zeros((), device=data.device, dtype=torch.long)
        bad = torch.zeros((), device=data.device, dtype=torch.bool)
        seen = 0
        lr_used = optimizer.param_groups[0]["lr"]
        batches = iter_batches(data.train_x, data.train_y, config.batch_size, generator)
        for step, (xb, yb) in enumerate(batches):
            lr_used = optimizer.param_groups[0]["lr"]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            detached = loss.detach()
            if loss_limit is None:
                # 1. the first batch fixes the reference loss (one sync per run)
                loss_limit = divergence_factor * max(detached.item(), 1e-3)
            # 2. accumulate on the device; no per-step host synchronisation
            loss_sum += detached * yb.shape[0]
            correct += (logits.detach().argmax(dim=1) == yb).sum()
            seen += yb.shape[0]
            bad |= ~torch.isfinite(detached)
            # 3. look at the flag every CHECK_EVERY updates; the epoch mean at its end
            if (step + 1) % CHECK_EVERY == 0 and bad.item():
                break
        if bad.item() or loss_sum.item() / seen > loss_limit:
            diverged_lr, diverged_epoch = lr_used, epoch
            logger.debug("diverged in epoch %d at lr %.3g", epoch, lr_used)
            break
        eval_loss, eval_acc = evaluate(model, data.eval_x, data.eval_y)
        stats = EpochStats(
            epoch=epoch,
            train_loss=loss_sum.item() / seen,
            train_accuracy=correct.item() / seen,
            eval_loss=eval_loss,
            eval_accuracy=eval_acc,
            lr=lr_used,
            batch_size=config.batch_size,
            seconds=time.perf_counter() - start,
        )
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)

    diverged = diverged_epoch is not None
    if diverged:
        final_accuracy, test_accuracy = 0.0, None
    else:
        final_accuracy = history[-1].eval_accuracy
        if data.eval_set == "test":
            test_accuracy = final_accuracy
        else:
            test_accuracy = evaluate(model, data.test_x, data.test_y)[1]
    return FitResult(
        config=config,
        history=tuple(history),
        diverged=diverged,
        diverged_lr=diverged_lr,
        diverged_epoch=diverged_epoch,
        final_accuracy=final_accuracy,
        test_accuracy=test_accuracy,
        eval_set=data.eval_set,
        model=model,
    )

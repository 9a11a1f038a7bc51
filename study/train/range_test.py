"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural
Networks", section 3.3; fastai's ``lr_find``; torch-lr-finder): the short run and its curve's
suggestions, with no Optuna.

One short run per optimizer from a fresh seeded model, its learning rate raised
exponentially from ``start_lr`` to ``end_lr`` over ``num_updates`` updates, the training
loss smoothed with a debiased exponential moving average and the run stopped once the
smoothed loss exceeds ``diverge_factor`` times its minimum (or a loss is not finite). The
curve of smoothed loss against learning rate gives the usual suggestions (``steepest``,
``valley``, ``min_div_10``; see :func:`suggest_lrs`). ``study.store.range_tests`` stores a
result; ``python -m study.lr_range`` runs and stores tests.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from study.train.config import TrialConfig
from study.train.data import Dataset, iter_batches
from study.train.model import MLP
from study.train.optim import create_optimizer

__all__ = [
    "START_LR",
    "END_LR",
    "NUM_UPDATES",
    "SMOOTH",
    "RANGE_STOP_FACTOR",
    "RULES",
    "VALLEY_SLOPE",
    "DIVERGED",
    "NON_FINITE",
    "REACHED_END",
    "LrRangeResult",
    "check_range",
    "smooth_losses",
    "suggest_lrs",
    "lr_range_test",
]

logger = logging.getLogger(__name__)

#: fastai's ``lr_find`` defaults (1e-7 to 10, beta 0.98, stop at 4x the minimum), with 200
#: updates instead of its (and torch-lr-finder's) 100: 25 per decade.
START_LR = 1e-7
END_LR = 10.0
NUM_UPDATES = 200
SMOOTH = 0.98
#: The range test's stop rule (its ``diverge_factor``): the test ends once the smoothed loss
#: exceeds this multiple of its lowest value so far. It ends a test that is meant to end in a
#: blow-up; it is not the training loop's divergence rule (``study.train.loop``).
RANGE_STOP_FACTOR = 4.0
#: The suggestion rules, in the order tables show them (see :func:`suggest_lrs`).
RULES = ("steepest", "valley", "min_div_10")
#: ``valley``'s descent falls by at least this share of the curve's drop per decade.
VALLEY_SLOPE = 0.05
#: Why a test stopped.
DIVERGED = "diverged"
NON_FINITE = "non-finite loss"
REACHED_END = "reached end_lr"


@dataclass(frozen=True)
class LrRangeResult:
    """One learning-rate range test.

    Attributes:
        config: the configuration tested (its ``lr`` is ``start_lr``).
        lrs: the learning rate of each update made, ``start_lr`` first.
        losses: each update's training loss (its batch's, before the step), finite.
        smoothed: the debiased moving average of ``losses`` (:func:`smooth_losses`).
        suggestions: rule -> suggested learning rate (NaN where a rule has too few points).
        stopped_at: the learning rate of the last update tried (the one that diverged, or
            ``end_lr``).
        why: ``"diverged"`` (the smoothed loss exceeded ``diverge_factor`` times its
            minimum), ``"non-finite loss"`` (that update's loss is not in ``losses``) or
            ``"reached end_lr"``.
        settings: the test's settings (start_lr, end_lr, num_updates, smooth,
            diverge_factor).
        seconds: wall time.
    """

    config: TrialConfig
    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestions: Mapping[str, float]
    stopped_at: float
    why: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = math.nan

    @property
    def optimizer(self) -> str:
        return self.config.optimizer


def check_range(
    *, start_lr: float, end_lr: float, num_updates: int, smooth: float, diverge_factor: float
) -> None:
    """Check a range test's settings.

    Raises:
        ValueError: a value out of range; the message names it and what is allowed.
    """
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, but got {name}={value!r}.")
    if start_lr >= end_lr:
        raise ValueError(f"start_lr must be below end_lr, but got start_lr={start_lr:g} >= "
                         f"end_lr={end_lr:g}; swap them.")
    if not (isinstance(num_updates, int) and num_updates >= 2):
        raise ValueError(f"num_updates must be an integer >= 2, but got {num_updates=}.")
    if not 0 <= smooth < 1:
        raise ValueError(f"smooth must be in [0, 1) (0: no smoothing), but got {smooth=}.")
    if not diverge_factor > 1:
        raise ValueError(f"diverge_factor must be > 1, but got {diverge_factor=}.")


def _smooth_step(avg: float, loss: float, beta: float, k: int) -> tuple[float, float]:
    """One step of the debiased moving average: the new ``avg`` and the ``k``-th (from 1)
    smoothed value."""
    avg = beta * avg + (1 - beta) * loss
    return avg, avg / (1 - beta**k)


def smooth_losses(losses: Sequence[float], beta: float = SMOOTH) -> list[float]:
    """fastai's debiased exponential moving average: ``avg = beta*avg + (1-beta)*loss``,
    the ``k``-th value ``avg / (1 - beta**k)`` (``k`` from 1)."""
    avg, out = 0.0, []
    for k, loss in enumerate(losses, start=1):
        avg, value = _smooth_step(avg, loss, beta, k)
        out.append(value)
    return out


def _valley(lr: np.ndarray, loss: np.ndarray) -> int:
    """Index of the ``valley`` suggestion (see :func:`suggest_lrs`)."""
    low = int(np.argmin(loss))
    drop = float(loss[: low + 1].max() - loss[low])
    if drop <= 0 or lr.size < 2:
        return low
    slope = np.gradient(loss, np.log10(lr))  # loss per decade of learning rate
    falling = np.append(slope <= -VALLEY_SLOPE * drop, False)
    best_start, best_length, start = low, 0, None
    for i, fall in enumerate(falling):
        if fall and start is None:
            start = i
        elif not fall and start is not None:
            if i - start > best_length:
                best_start, best_length = start, i - start
            start = None
    return best_start + best_length // 2 if best_length else low


def suggest_lrs(
    lrs: Sequence[float],
    smoothed: Sequence[float],
    *,
    skip_start: int = 0,
    skip_end: int = 0,
) -> dict[str, float]:
    """The named suggestions from a range test's smoothed loss curve.

    Computed on the curve without its first ``skip_start`` and last ``skip_end`` points
    (fastai drops the first tenth of the updates and the last 5: the start is noise on a
    flat curve, the end is the blow-up); on the whole curve when that leaves fewer than 5.

    - ``steepest``: the learning rate where the smoothed loss falls fastest against
      ``log(lr)`` (the most negative ``numpy.gradient``; torch-lr-finder's suggestion,
      fastai's ``steep``). NaN with fewer than 2 points.
    - ``valley``: a simple version of fastai's ``valley`` (the middle of the longest
      descent): the longest stretch of consecutive points where the smoothed loss falls by
      at least ``VALLEY_SLOPE`` (1/20) of the curve's drop (its highest value before its
      minimum, less the minimum) per decade of learning rate, and the learning rate halfway
      along it (in updates: the geometric middle). The slope threshold keeps the flat start,
      where the loss creeps down, out of the valley, so it does not need fastai's longest
      decreasing subsequence over noise. Without such a stretch: the minimum's learning rate.
    - ``min_div_10``: the learning rate of the lowest smoothed loss, divided by 10 (fastai's
      ``minimum``).

    All NaN for an empty curve.
    """
    lr = np.asarray(lrs, dtype=float)
    loss = np.asarray(smoothed, dtype=float)
    if lr.shape != loss.shape:
        raise ValueError(f"lrs and smoothed differ in length: {lr.size} != {loss.size}.")
    if lr.size - skip_start - skip_end >= 5:
        lr, loss = lr[skip_start : lr.size - skip_end], loss[skip_start : loss.size - skip_end]
    if lr.size == 0:
        return dict.fromkeys(RULES, math.nan)
    steepest = math.nan
    if lr.size >= 2:
        steepest = float(lr[np.argmin(np.gradient(loss, np.log(lr)))])
    return {
        "steepest": steepest,
        "valley": float(lr[_valley(lr, loss)]),
        "min_div_10": float(lr[np.argmin(loss)] / 10),
    }


@dataclass
class _Curve:
    """What the updates of a test recorded, and why and where they stopped."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    why: str = REACHED_END
    stopped_at: float = math.nan


def _batches(data: Dataset, batch_size: int, generator: torch.Generator) -> Iterator:
    while True:  # a fresh permutation per pass, as many passes as the test needs
        yield from iter_batches(data.train_x, data.train_y, batch_size, generator)


def _exponential_lrs(start_lr: float, end_lr: float, num_updates: int) -> Iterator[float]:
    """Update ``k``'s (0-based) learning rate, ``start_lr * (end_lr / start_lr) ** (k / (n - 1))``
    for ``n`` updates."""
    for k in range(num_updates):
        yield start_lr * (end_lr / start_lr) ** (k / (num_updates - 1))


def _raise_lr(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator,
    *,
    start_lr: float,
    end_lr: float,
    num_updates: int,
    bf16: bool,
    smooth: float,
    stop_factor: float,
) -> _Curve:
    """The updates of a test, each at the next of :func:`_exponential_lrs` (every param group
    scaled alike from ``start_lr``, the rate ``optimizer`` was made with, so ``head_lr_mult``
    holds), until a loss is not finite or the smoothed loss exceeds ``stop_factor`` times the
    lowest so far. One host synchronisation per update: the stop rule reads the loss."""
    ratios = [group["lr"] / start_lr for group in optimizer.param_groups]
    curve = _Curve(stopped_at=end_lr)
    avg, best = 0.0, math.inf
    for k, lr in enumerate(_exponential_lrs(start_lr, end_lr, num_updates), start=1):
        for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
            group["lr"] = lr * ratio
        xb, yb = next(batches)
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
        value = loss.item()
        if not math.isfinite(value):
            curve.why, curve.stopped_at = NON_FINITE, lr
            return curve
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        avg, smooth_value = _smooth_step(avg, value, smooth, k)
        curve.lrs.append(lr)
        curve.losses.append(value)
        curve.smoothed.append(smooth_value)
        best = min(best, smooth_value)
        if smooth_value > stop_factor * best:
            curve.why, curve.stopped_at = DIVERGED, lr
            return curve
    return curve


def lr_range_test(
    config: TrialConfig,
    data: Dataset,
    *,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    num_updates: int = NUM_UPDATES,
    smooth: float = SMOOTH,
    diverge_factor: float = RANGE_STOP_FACTOR,
    model: nn.Module | None = None,
) -> LrRangeResult:
    """Run the learning-rate range test of ``config``'s optimizer on ``data``.

    A fresh ``MLP()`` (or ``model``) seeded with ``config.seed``, in training mode, and the
    optimizer built by ``create_optimizer`` with ``config``'s other hyperparameters. Update
    ``k`` (0-based) uses ``lr_k = start_lr * (end_lr / start_lr) ** (k / (num_updates - 1))``
    (every param group scaled alike, so ``head_lr_mult`` holds); batches of
    ``config.batch_size`` from seeded permutations, as many passes over the training set
    as it takes. The test stops after the update whose smoothed loss exceeds
    ``diverge_factor`` times the lowest so far, or at a non-finite loss.

    Args:
        config: optimizer and its hyperparameters, batch size, seed, precision (its ``lr``,
            schedule and epochs are not used).
        data: the training tensors (``train_x``, ``train_y``) on the device to run on.
        start_lr, end_lr: the first and last learning rate (0 < start_lr < end_lr).
        num_updates: updates from ``start_lr`` to ``end_lr`` (>= 2).
        smooth: ``beta`` of the moving average, in [0, 1) (0: the raw losses).
        diverge_factor: stop when the smoothed loss exceeds this multiple of its minimum
            (> 1; :data:`RANGE_STOP_FACTOR`).
        model: a model to test instead of the lab's MLP (its output: one logit per class).

    Raises:
        ValueError: a setting out of range (:func:`check_range`).
    """
    settings = {"start_lr": start_lr, "end_lr": end_lr, "num_updates": num_updates,
                "smooth": smooth, "diverge_factor": diverge_factor}
    check_range(**settings)
    begin = time.perf_counter()
    device = data.device
    config = config.replace(lr=start_lr)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        model = (model if model is not None else MLP()).to(device)
        model.train()
        optimizer = create_optimizer(model, config.optimizer, **config.optimizer_hparams())
        generator = torch.Generator(device=device).manual_seed(config.seed)
        curve = _raise_lr(model, optimizer, _batches(data, config.batch_size, generator),
                          start_lr=start_lr, end_lr=end_lr, num_updates=num_updates,
                          bf16=config.precision == "bf16", smooth=smooth,
                          stop_factor=diverge_factor)
    suggestions = suggest_lrs(curve.lrs, curve.smoothed, skip_start=num_updates // 10, skip_end=5)
    seconds = time.perf_counter() - begin
    logger.info("%s: %d updates, stopped at lr %.3g (%s) in %.1f s", config.optimizer,
                len(curve.lrs), curve.stopped_at, curve.why, seconds)
    return LrRangeResult(config=config, lrs=tuple(curve.lrs), losses=tuple(curve.losses),
                         smoothed=tuple(curve.smoothed), suggestions=suggestions,
                         stopped_at=curve.stopped_at, why=curve.why, settings=settings,
                         seconds=seconds)

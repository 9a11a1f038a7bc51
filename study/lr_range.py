"""``python -m study.lr_range``: the learning-rate range test (Smith 2017, "Cyclical Learning
Rates for Training Neural Networks", section 3.3; fastai's ``lr_find``; torch-lr-finder).

One short run per optimizer from a fresh seeded model, its learning rate raised
exponentially from ``start_lr`` to ``end_lr`` over ``num_updates`` updates, the training
loss smoothed with a debiased exponential moving average and the run stopped once the
smoothed loss exceeds ``diverge_factor`` times its minimum (or a loss is not finite). The
curve of smoothed loss against learning rate gives the usual suggestions (``steepest``,
``valley``, ``min_div_10``; see :func:`suggest_lrs`).

Each optimizer's result is one trial of its own study (default ``lr-range``) in the study
database; ``analysis.range_test`` reads it back, plots it and sets it beside what a study
measured. The other hyperparameters are those of the ``lr-grid`` space (SGD with momentum
0.9, the rest at torch defaults), so the suggestions compare with that study's grid.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import torch
import torch.nn.functional as F
from torch import nn

from analysis.range_test import newest_tests
from search_spaces import get_space
from study.cli import (
    HelpFormatter,
    Parser,
    UsageError,
    add_machine_options,
    positive_int,
    registry_name,
    resolve_device,
    run_command,
    toolkit_version,
)
from study.store import records
from study.store.storage import default_storage_url, display_url, open_storage
from study.train.config import PRECISIONS, TrialConfig
from study.train.data import Dataset, iter_batches, load_mnist
from study.train.model import MLP
from study.train.optim import create_optimizer, get_optimizer_info

__all__ = [
    "START_LR",
    "END_LR",
    "NUM_UPDATES",
    "SMOOTH",
    "DIVERGE_FACTOR",
    "RULES",
    "VALLEY_SLOPE",
    "LrRangeResult",
    "lr_range_config",
    "check_range",
    "smooth_losses",
    "suggest_lrs",
    "lr_range_test",
    "store_result",
    "build_parser",
    "main",
]

logger = logging.getLogger(__name__)
PROG = "python -m study.lr_range"

#: fastai's ``lr_find`` defaults (1e-7 to 10, beta 0.98, stop at 4x the minimum), with 200
#: updates instead of its (and torch-lr-finder's) 100: 25 per decade.
START_LR = 1e-7
END_LR = 10.0
NUM_UPDATES = 200
SMOOTH = 0.98
DIVERGE_FACTOR = 4.0
#: The suggestion rules, in the order tables show them (see :func:`suggest_lrs`).
RULES = ("steepest", "valley", "min_div_10")
#: ``valley``'s descent falls by at least this share of the curve's drop per decade.
VALLEY_SLOPE = 0.05
#: The rules whose suggestion becomes the trial's value (what Optuna tools show), in order
#: of preference: the first that is defined.
VALUE_RULES = ("valley", "min_div_10")
#: Why a test stopped.
DIVERGED = "diverged"
NON_FINITE = "non-finite loss"
REACHED_END = "reached end_lr"
#: The space whose fixed hyperparameters the test uses, so its suggestions compare with an
#: LR-grid study.
SPACE = "lr-grid"


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


def lr_range_config(
    optimizer: str, *, seed: int = 0, batch_size: int = 64, precision: str = "fp32"
) -> TrialConfig:
    """The configuration an optimizer is tested with: the ``lr-grid`` space's fixed
    hyperparameters (SGD with momentum 0.9, the rest at torch defaults; an optimizer not
    in that space at its torch defaults), constant schedule.

    Raises:
        ConfigError: an unknown optimizer (the message lists the registered ones) or a bad
            ``batch_size`` / ``seed`` / ``precision``.
    """
    fixed = get_space(SPACE).optimizers.get(optimizer, {})
    # Only fixed values: the space samples nothing but the learning rate.
    hparams = {k: v for k, v in fixed.items() if isinstance(v, (int, float, bool))}
    return TrialConfig(optimizer=optimizer, lr=START_LR, seed=seed, batch_size=batch_size,
                       precision=precision, **hparams)


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


def smooth_losses(losses: Sequence[float], beta: float = SMOOTH) -> list[float]:
    """fastai's debiased exponential moving average: ``avg = beta*avg + (1-beta)*loss``,
    the ``k``-th value ``avg / (1 - beta**k)`` (``k`` from 1)."""
    avg, out = 0.0, []
    for k, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta**k))
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


def _batches(data: Dataset, batch_size: int, generator: torch.Generator):
    while True:  # a fresh permutation per pass, as many passes as the test needs
        yield from iter_batches(data.train_x, data.train_y, batch_size, generator)


def lr_range_test(
    config: TrialConfig,
    data: Dataset,
    *,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    num_updates: int = NUM_UPDATES,
    smooth: float = SMOOTH,
    diverge_factor: float = DIVERGE_FACTOR,
    model: nn.Module | None = None,
) -> LrRangeResult:
    """Run the learning-rate range test of ``config``'s optimizer on ``data``.

    A fresh ``MLP()`` (or ``model``) seeded with ``config.seed``, in training mode, and the
    optimizer built by ``create_optimizer`` with ``config``'s other hyperparameters. Update
    ``k`` (0-based) uses ``lr_k = start_lr * (end_lr / start_lr) ** (k / (num_updates - 1))``
    (every param group scaled alike, so ``head_lr_mult`` holds); batches of
    ``config.batch_size`` from seeded permutations, as many passes over the training set
    as it takes. The test stops after the update whose smoothed loss exceeds
    ``diverge_factor`` times the lowest so far, or at a non-finite loss. One host
    synchronisation per update (the stop rule reads the loss).

    Args:
        config: optimizer and its hyperparameters, batch size, seed, precision (its ``lr``,
            schedule and epochs are not used).
        data: the training tensors (``train_x``, ``train_y``) on the device to run on.
        start_lr, end_lr: the first and last learning rate (0 < start_lr < end_lr;
            default 1e-7 and 10).
        num_updates: updates from ``start_lr`` to ``end_lr`` (>= 2; default 200).
        smooth: ``beta`` of the moving average, in [0, 1) (default 0.98; 0: raw losses).
        diverge_factor: stop when the smoothed loss exceeds this multiple of its minimum
            (> 1; default 4).
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
        ratios = [group["lr"] / start_lr for group in optimizer.param_groups]
        generator = torch.Generator(device=device).manual_seed(config.seed)
        batches = _batches(data, config.batch_size, generator)
        lrs: list[float] = []
        losses: list[float] = []
        smoothed: list[float] = []
        avg, best = 0.0, math.inf
        why, stopped_at = REACHED_END, end_lr
        for k in range(num_updates):
            lr = start_lr * (end_lr / start_lr) ** (k / (num_updates - 1))
            for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                group["lr"] = lr * ratio
            xb, yb = next(batches)
            with torch.autocast(device.type, dtype=torch.bfloat16,
                                enabled=config.precision == "bf16"):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            value = loss.item()
            if not math.isfinite(value):
                why, stopped_at = NON_FINITE, lr
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            avg = smooth * avg + (1 - smooth) * value
            smooth_value = avg / (1 - smooth ** (k + 1))
            lrs.append(lr)
            losses.append(value)
            smoothed.append(smooth_value)
            best = min(best, smooth_value)
            if smooth_value > diverge_factor * best:
                why, stopped_at = DIVERGED, lr
                break
    suggestions = suggest_lrs(lrs, smoothed, skip_start=num_updates // 10, skip_end=5)
    seconds = time.perf_counter() - begin
    logger.info("%s: %d updates, stopped at lr %.3g (%s) in %.1f s", config.optimizer,
                len(lrs), stopped_at, why, seconds)
    return LrRangeResult(config=config, lrs=tuple(lrs), losses=tuple(losses),
                         smoothed=tuple(smoothed), suggestions=suggestions,
                         stopped_at=stopped_at, why=why, settings=settings, seconds=seconds)


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def store_result(
    optuna_study: optuna.Study, result: LrRangeResult, *, extra: Mapping[str, Any] | None = None
) -> optuna.trial.FrozenTrial:
    """Add ``result`` to ``optuna_study`` as a finished trial and return it.

    User attributes: the names ``records.LR_RANGE_*`` (optimizer, lrs, losses, smoothed,
    suggestions with ``null`` for an undefined one, stopped_at, why, and the settings with
    ``extra`` and the test's seconds added) and ``config``. Its value is the first defined
    suggestion of ``valley``, ``min_div_10``, so Optuna's tools show a learning rate; state
    COMPLETE, or FAIL when there is none (the first loss was already non-finite).
    """
    suggestions = {rule: _json_number(lr) for rule, lr in result.suggestions.items()}
    value = next((suggestions[r] for r in VALUE_RULES if suggestions.get(r) is not None), None)
    attrs = {
        records.CONFIG: result.config.to_dict(),
        records.LR_RANGE_OPTIMIZER: result.optimizer,
        records.LR_RANGE_LRS: list(result.lrs),
        records.LR_RANGE_LOSSES: list(result.losses),
        records.LR_RANGE_SMOOTHED: list(result.smoothed),
        records.LR_RANGE_SUGGESTIONS: suggestions,
        records.LR_RANGE_STOPPED_AT: result.stopped_at,
        records.LR_RANGE_WHY: result.why,
        records.LR_RANGE_SETTINGS: {**result.settings, **(extra or {}),
                                    "seconds": round(result.seconds, 3)},
    }
    state = (optuna.trial.TrialState.COMPLETE if value is not None
             else optuna.trial.TrialState.FAIL)
    optuna_study.add_trial(optuna.trial.create_trial(state=state, value=value,
                                                     user_attrs=attrs))
    return optuna_study.get_trials(deepcopy=False)[-1]


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, but got {value!r}")
    return number


def _int_at_least_2(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 2:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2, but got {value!r}")
    return number


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, but got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (every option documents its default)."""
    parser = Parser(
        prog=PROG,
        description="Learning-rate range test (Smith 2017; fastai lr_find): per optimizer, "
        "one short run with the learning rate raised exponentially from --start-lr to "
        "--end-lr, stopped when the smoothed loss exceeds --diverge-factor x its minimum; "
        "suggestions steepest, valley and min_div_10. Other hyperparameters as in the "
        "lr-grid space (SGD momentum 0.9, the rest at torch defaults). Each optimizer is one "
        "trial of its own study in the storage; one already there is skipped (--again).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--optimizer", action="append", required=True,
                        type=registry_name(get_optimizer_info), metavar="NAME",
                        help="an optimizer to test; repeat for several")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="database URL (default: sqlite:///studies/<study-name>.db)")
    parser.add_argument("--study-name", default=records.LR_RANGE_STUDY, metavar="NAME",
                        help="the study the results go to")
    parser.add_argument("--start-lr", type=_positive_float, default=START_LR, metavar="LR",
                        help="learning rate of the first update")
    parser.add_argument("--end-lr", type=_positive_float, default=END_LR, metavar="LR",
                        help="learning rate of the last update")
    parser.add_argument("--num-updates", type=_int_at_least_2, default=NUM_UPDATES, metavar="N",
                        help="updates from --start-lr to --end-lr (spaced evenly in log lr)")
    parser.add_argument("--smooth", type=_float, default=SMOOTH, metavar="BETA",
                        help="beta of the debiased moving average of the loss, in [0, 1)")
    parser.add_argument("--diverge-factor", type=_float, default=DIVERGE_FACTOR, metavar="F",
                        help="stop when the smoothed loss exceeds this multiple of its minimum")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the model's initialisation, dropout and batch order")
    parser.add_argument("--batch-size", type=positive_int, default=64,
                        help="examples per update")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32, or bf16 autocast")
    parser.add_argument("--again", action="store_true",
                        help="test an optimizer the study already holds once more (a new "
                        "trial; readers take the newest)")
    parser.add_argument("--train-size", type=positive_int, default=None, metavar="N",
                        help="use only the first N training images (default: all 60000)")
    add_machine_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv``; returns the exit code (2 for a usage error)."""
    return run_command(PROG, build_parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    settings = {"start_lr": args.start_lr, "end_lr": args.end_lr,
                "num_updates": args.num_updates, "smooth": args.smooth,
                "diverge_factor": args.diverge_factor}
    try:
        check_range(**settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    optimizers = list(dict.fromkeys(args.optimizer))  # each once, in the order given
    configs = [lr_range_config(name, seed=args.seed, batch_size=args.batch_size,
                               precision=args.precision) for name in optimizers]
    device = resolve_device(args.device)
    url = args.storage or default_storage_url(args.study_name)
    storage = open_storage(url)
    if args.study_name in optuna.study.get_all_study_names(storage):
        optuna_study = optuna.load_study(study_name=args.study_name, storage=storage)
        if records.LR_RANGE_KIND not in optuna_study.user_attrs:
            raise UsageError(f"study {args.study_name!r} in {display_url(url)} is not a "
                             "range-test study; pass another --study-name.")
    else:
        optuna_study = optuna.create_study(study_name=args.study_name, storage=storage)
        optuna_study.set_metric_names([records.LR_RANGE_METRIC])
        optuna_study.set_user_attr(records.LR_RANGE_KIND, "learning-rate range test")
    stored = newest_tests(optuna_study)
    todo = []
    for config in configs:
        if config.optimizer in stored and not args.again:
            trial = stored[config.optimizer]
            print(f"{config.optimizer}: already tested (trial {trial.number}); skipped. "
                  "Pass --again to test it once more.")
        else:
            todo.append(config)
    if todo:
        if args.threads:
            torch.set_num_threads(args.threads)
        data = load_mnist(args.data_dir, device=device, train_size=args.train_size)
        extra = {"train_size": data.num_train, "device": device,
                 "toolkit_version": toolkit_version()}
        logger.info("range test of %s on %s, %d training images", ", ".join(
            c.optimizer for c in todo), device, data.num_train)
        for config in todo:
            result = lr_range_test(config, data, **settings)
            store_result(optuna_study, result, extra=extra)
    print(_summary(newest_tests(optuna_study), optimizers, args.study_name, display_url(url)))
    return 0


def _summary(newest: Mapping[str, optuna.trial.FrozenTrial], optimizers: Sequence[str],
             study_name: str, shown_url: str) -> str:
    lines = ["", f"Learning-rate range test, study {study_name!r} ({shown_url}):",
             f"{'optimizer':<10} {'steepest':>9} {'valley':>9} {'min_div_10':>10} "
             f"{'stopped at':>10}  why"]
    for name in optimizers:
        trial = newest.get(name)
        if trial is None:
            continue
        attrs = trial.user_attrs
        shown = [f"{v:.3g}" if v is not None else "-"
                 for v in (attrs[records.LR_RANGE_SUGGESTIONS].get(r) for r in RULES)]
        lines.append(f"{name:<10} {shown[0]:>9} {shown[1]:>9} {shown[2]:>10} "
                     f"{attrs[records.LR_RANGE_STOPPED_AT]:>10.3g}  {attrs[records.LR_RANGE_WHY]}")
    lines.append("Read, plot, compare: analysis.range_test (load_lr_range, lr_range_plot, "
                 "compare_with_study).")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

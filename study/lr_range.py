"""``python -m study.lr_range``: the learning-rate range test from the command line.

Per optimizer, the test of ``study.train.range_test`` (the learning rate raised exponentially
over a short run, the smoothed loss curve's suggestions ``steepest``, ``valley`` and
``min_div_10``), stored by ``study.store.range_tests`` as one trial of its own study (default
``lr-range``) in the study database; ``analysis.range_test`` reads it back, plots it and sets
it beside what a study measured. The other hyperparameters are those of the ``lr-grid`` space
(SGD with momentum 0.9, the rest at torch defaults), so the suggestions compare with that
study's grid.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from analysis.range_test import newest_tests
from search_spaces import get_space
from search_spaces.spaces import BATCH_LIMIT, MAX_BATCH_SIZE
from study.cli import (
    HelpFormatter,
    Parser,
    UsageError,
    add_machine_options,
    int_in,
    number,
    positive_float,
    registry_name,
    resolve_device,
    run_command,
    set_training_threads,
    toolkit_version,
)
from study.store import records
from study.store.range_tests import open_range_study, store_range_test
from study.store.storage import checked_url, display_url, open_storage
from study.train.config import PRECISIONS, TrialConfig
from study.train.data import MNIST_TRAIN, Dataset, load_mnist
from study.train.optim import get_optimizer_info
from study.train.range_test import (
    END_LR,
    NUM_UPDATES,
    RANGE_STOP_FACTOR,
    RULES,
    SMOOTH,
    START_LR,
    LrRangeResult,
    check_range,
    lr_range_test,
)

__all__ = ["SPACE", "lr_range_config", "store_result", "build_parser", "main"]

logger = logging.getLogger(__name__)
PROG = "python -m study.lr_range"

#: The space whose fixed hyperparameters the test uses, so its suggestions compare with an
#: LR-grid study.
SPACE = "lr-grid"
#: The most updates a test runs, and why (the refusal of more says it).
MAX_NUM_UPDATES = 10_000
UPDATES_LIMIT = (f"each is one batch: 10000 are about 10 epochs at batch 64, and the default "
                 f"{NUM_UPDATES} find the divergence")
#: The largest --seed: a 32-bit seed, which every random generator the test uses takes.
MAX_SEED = 2**32 - 1


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


def store_result(
    optuna_study: optuna.Study, result: LrRangeResult, *, extra: Mapping[str, Any] | None = None
) -> optuna.trial.FrozenTrial:
    """Add ``result`` to ``optuna_study`` as a finished trial and return it
    (:func:`study.store.range_tests.store_range_test`; ``extra`` joins the stored settings)."""
    return store_range_test(
        optuna_study, config=result.config.to_dict(), optimizer=result.optimizer,
        lrs=result.lrs, losses=result.losses, smoothed=result.smoothed,
        suggestions=result.suggestions, stopped_at=result.stopped_at, why=result.why,
        settings={**result.settings, **(extra or {})}, seconds=result.seconds)


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
    parser.add_argument("--start-lr", type=positive_float, default=START_LR, metavar="LR",
                        help="learning rate of the first update")
    parser.add_argument("--end-lr", type=positive_float, default=END_LR, metavar="LR",
                        help="learning rate of the last update")
    parser.add_argument("--num-updates", type=int_in(2, MAX_NUM_UPDATES, why=UPDATES_LIMIT),
                        default=NUM_UPDATES, metavar="N",
                        help="updates from --start-lr to --end-lr (spaced evenly in log lr)")
    parser.add_argument("--smooth", type=number, default=SMOOTH, metavar="BETA",
                        help="beta of the debiased moving average of the loss, in [0, 1)")
    parser.add_argument("--diverge-factor", type=number, default=RANGE_STOP_FACTOR, metavar="F",
                        help="stop when the smoothed loss exceeds this multiple of its minimum")
    parser.add_argument("--seed", type=int_in(0, MAX_SEED), default=0,
                        help="seeds the model's initialisation, dropout and batch order")
    parser.add_argument("--batch-size", type=int_in(1, MAX_BATCH_SIZE, why=BATCH_LIMIT),
                        default=64,
                        help="examples per update")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32, or bf16 autocast")
    parser.add_argument("--again", action="store_true",
                        help="test an optimizer the study already holds once more (a new "
                        "trial; readers take the newest)")
    parser.add_argument("--train-size", type=int_in(1, MNIST_TRAIN, why="MNIST's training "
                        "images"), default=None, metavar="N",
                        help="use only the first N training images (default: all 60000)")
    add_machine_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv``; returns the exit code (2 for a usage error)."""
    return run_command(PROG, build_parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    settings = _range_settings(args)
    optimizers = list(dict.fromkeys(args.optimizer))  # each once, in the order given
    configs = [lr_range_config(name, seed=args.seed, batch_size=args.batch_size,
                               precision=args.precision) for name in optimizers]
    device = resolve_device(args.device)
    threads = set_training_threads(args.threads, device, cohort=1)
    url = checked_url(args.study_name, args.storage)
    # Read before the database is opened: a missing or corrupt file then stops the command
    # with nothing created.
    data = load_mnist(args.data_dir, device=device, train_size=args.train_size)
    optuna_study = open_range_study(open_storage(url), args.study_name, url=url)
    todo = _to_test(configs, newest_tests(optuna_study), again=args.again)
    if todo:
        _test_and_store(optuna_study, todo, data, device=device, threads=threads,
                        settings=settings)
    print(_summary(newest_tests(optuna_study), optimizers, args.study_name, display_url(url)))
    return 0


def _range_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The test's settings from the command line, checked before anything is written."""
    settings = {"start_lr": args.start_lr, "end_lr": args.end_lr,
                "num_updates": args.num_updates, "smooth": args.smooth,
                "diverge_factor": args.diverge_factor}
    try:
        check_range(**settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return settings


def _to_test(
    configs: Sequence[TrialConfig], stored: Mapping[str, optuna.trial.FrozenTrial], *,
    again: bool
) -> list[TrialConfig]:
    """The configurations to test: those whose optimizer the study lacks, or all with
    ``again``; each one skipped is said."""
    todo = []
    for config in configs:
        if config.optimizer in stored and not again:
            trial = stored[config.optimizer]
            print(f"{config.optimizer}: already tested (trial {trial.number}); skipped. "
                  "Pass --again to test it once more.")
        else:
            todo.append(config)
    return todo


def _test_and_store(
    optuna_study: optuna.Study, todo: Sequence[TrialConfig], data: Dataset, *,
    device: str, threads: int, settings: Mapping[str, Any]
) -> None:
    """Test each configuration on ``data`` (on ``device``; ``threads``: torch's, as set),
    storing each as it ends."""
    extra = {records.TRAIN_SIZE: data.num_train, "device": device, "threads": threads,
             records.TOOLKIT_VERSION: toolkit_version()}
    logger.info("range test of %s on %s (%d torch thread%s), %d training images",
                ", ".join(c.optimizer for c in todo), device, threads,
                "" if threads == 1 else "s", data.num_train)
    for config in todo:
        result = lr_range_test(config, data, **settings)
        store_result(optuna_study, result, extra=extra)


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

"""``python -m study.run``: run (or continue) an optimizer study on MNIST.

``--trials N`` is the study's target: re-running the same command after a crash, Ctrl-C or
SIGTERM continues until N trials are finished (complete or pruned); nothing finished runs
again, and a study already at N runs nothing.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import optuna
import torch

from search_spaces import get_space, list_spaces
from study import records
from study.config import ConfigError, TrialConfig
from study.data import DEFAULT_ROOT, DataError, load_mnist
from study.optim import get_optimizer_info
from study.pruners import create_pruner, get_pruner_info, list_pruners
from study.runner import FINISHED, run_trials
from study.samplers import create_sampler, get_sampler_info, list_samplers
from study.storage import (
    StorageError,
    default_storage_url,
    display_url,
    open_storage,
    open_study,
)
from study.summary import summarize

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)
PROG = "python -m study.run"


class UsageError(Exception):
    """A bad command-line value; exits with code 2 and one line."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        # Options whose default is computed say so in their help; don't add "(default: None)".
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other user mistake, instead of usage + error.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _registry_name(lookup: Any) -> Any:
    def convert(value: str) -> str:
        try:
            lookup(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return convert


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, but got {value!r}")
    return number


def _name_list(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        try:
            get_optimizer_info(name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if not names:
        raise argparse.ArgumentTypeError(f"expected names like sgd,adam, but got {value!r}")
    return names


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 0.5:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 0.5], but got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (every option documents its default)."""
    parser = _Parser(
        prog=PROG,
        description="Run or continue an Optuna study of optimizers and learning rates for "
        "the lab's MLP on MNIST. Re-running the same command continues the study.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--trials", type=_positive_int, default=50,
                        help="target number of finished (complete or pruned) trials")
    parser.add_argument("--epochs", type=_positive_int, default=5,
                        help="training epochs per trial (the lab uses 5)")
    parser.add_argument("--space", type=_registry_name(get_space), default="default",
                        help=f"search space: {', '.join(list_spaces())}")
    parser.add_argument("--optimizers", type=_name_list, default=None, metavar="A,B",
                        help="only these optimizers, comma-separated, e.g. sgd,adam "
                        "(default: all the space searches: sgd, rmsprop, adam, adamw)")
    parser.add_argument("--study-name", default=None,
                        help="study name (default: the space's name)")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="database URL, e.g. postgresql://user:pw@host/db "
                        "(default: sqlite:///studies/<study-name>.db)")
    parser.add_argument("--sampler", type=_registry_name(get_sampler_info),
                        default="tpe", help=f"sampler: {', '.join(list_samplers())}")
    parser.add_argument("--pruner", type=_registry_name(get_pruner_info), default=None,
                        help=f"pruner: {', '.join(list_pruners())} (default: the space's, "
                        "median; none for the lab space)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the sampler; trial k trains with seed SEED + k (give "
                        "parallel workers different seeds)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where training runs; auto picks cuda when available")
    parser.add_argument("--batch-size", type=_positive_int, default=64,
                        help="training batch size")
    parser.add_argument("--validation", type=_fraction, default=0.0, metavar="FRACTION",
                        help="hold out this share of the training set and prune on it "
                        "(the test set is then measured once per trial); 0 prunes on the "
                        "test set")
    parser.add_argument("--train-size", type=_positive_int, default=None, metavar="N",
                        help="train on the first N training examples only, for a quick look "
                        "(default: all 60000, less the validation share)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_ROOT, metavar="DIR",
                        help="folder with the four MNIST .gz IDX files")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="CPU threads for torch (default: torch's choice)")
    return parser


def _resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but torch sees no CUDA device; use --device cpu.")
    return name


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv``; returns the exit code (2 for a usage error)."""
    # group=True and heartbeat are "experimental" in Optuna 5; we rely on them on purpose.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option (already printed)
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return _run(args)
    except (UsageError, ConfigError, DataError, StorageError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    device = _resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = TrialConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    space = get_space(args.space)
    if args.optimizers is not None:
        try:
            space = space.restrict(args.optimizers)
        except ValueError as exc:
            raise UsageError(f"--optimizers: {exc}") from None
    study_name = args.study_name or args.space
    url = args.storage or default_storage_url(study_name)
    # Data first: a missing or corrupt file stops the run before any database is created.
    data = load_mnist(args.data_dir, device=device, validation_fraction=args.validation,
                      split_seed=args.seed, train_size=args.train_size)
    storage = open_storage(url)
    settings = {
        "space": space.name,
        "space_description": space.description,
        "space_definition": space.definition(args.epochs),
        "optimizers": list(space.optimizer_names),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "validation": args.validation,
        "train_size": args.train_size,
        "eval_set": data.eval_set,
        "toolkit_version": _version(),
    }
    assert tuple(settings) == records.SETTINGS
    optuna_study = open_study(storage, study_name, settings=settings,
                              checked=records.CHECKED_SETTINGS,
                              pruner=create_pruner(args.pruner or space.pruner,
                                                   epochs=args.epochs))
    optuna.storages.fail_stale_trials(optuna_study)
    n_existing = len(optuna_study.get_trials(deepcopy=False))
    optuna_study.sampler = create_sampler(args.sampler, seed=args.seed,
                                          n_existing_trials=n_existing)
    shown_url = display_url(url)

    def summary(wall_seconds: float | None = None) -> str:
        return summarize(storage, study_name, target=args.trials, shown_url=shown_url,
                         storage_option=args.storage and shown_url, wall_seconds=wall_seconds)

    finished = len(optuna_study.get_trials(deepcopy=False, states=FINISHED))
    if finished >= args.trials:
        print(f"Study {study_name!r} already has {finished} finished trials (target "
              f"{args.trials}); nothing to run. Raise --trials to run more.")
        print(summary())
        return 0

    space.enqueue_fixed_trials(optuna_study, args.trials)
    logger.info("study %r in %s: %d of %d trials finished; training on %s (%s set)",
                study_name, shown_url, finished, args.trials, device, data.eval_set)

    interrupted, wall_seconds = run_trials(optuna_study, space, data, base,
                                           target=args.trials, finished=finished)
    print(summary(wall_seconds))
    if interrupted:
        print(f"Interrupted: the running trial was marked failed. Run the same command to "
              f"continue to {args.trials} finished trials.")
        return 130
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("optstudy")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())

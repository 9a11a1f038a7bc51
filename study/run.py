"""``python -m study.run``: run (or continue) an optimizer study on MNIST.

``--trials N`` is the study's target: re-running the same command after a crash, Ctrl-C or
SIGTERM continues until N trials are finished (complete or pruned); nothing finished runs
again, and a study already at N runs nothing.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import optuna
import pandas as pd
import torch
from tqdm.auto import tqdm

from search_spaces import ConfigError, SearchSpace, TrialConfig, get_space, list_spaces
from study.data import DEFAULT_ROOT, DataError, Dataset, load_mnist
from study.objective import (
    Objective,
    create_pruner,
    create_sampler,
    get_pruner_info,
    get_sampler_info,
    list_pruners,
    list_samplers,
)
from study.optim import get_optimizer_info
from study.schedules import format_schedule_params
from study.storage import (
    StorageError,
    default_storage_url,
    display_url,
    open_storage,
    open_study,
)
from study.train import EpochStats

__all__ = ["main", "build_parser", "summarize"]

logger = logging.getLogger(__name__)
PROG = "python -m study.run"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
#: Settings a study keeps for life: its trials are only comparable under the same ones.
CHECKED_SETTINGS = ("space", "optimizers", "epochs", "batch_size", "validation", "train_size")


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


def _raise_interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


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
        "space_definition": dict(space.definition or {}),
        "optimizers": list(space.optimizers),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "validation": args.validation,
        "train_size": args.train_size,
        "eval_set": "validation" if args.validation > 0 else "test",
        "toolkit_version": _version(),
    }
    optuna_study = open_study(storage, study_name, settings=settings, checked=CHECKED_SETTINGS,
                              pruner=create_pruner(args.pruner or space.pruner,
                                                   epochs=args.epochs))
    optuna.storages.fail_stale_trials(optuna_study)
    n_existing = len(optuna_study.get_trials(deepcopy=False))
    optuna_study.sampler = create_sampler(args.sampler, seed=args.seed,
                                          n_existing_trials=n_existing)
    shown_url = display_url(url)
    finished = len(optuna_study.get_trials(deepcopy=False, states=FINISHED))
    if finished >= args.trials:
        print(f"Study {study_name!r} already has {finished} finished trials (target "
              f"{args.trials}); nothing to run. Raise --trials to run more.")
        print(summarize(optuna_study, target=args.trials, storage_url=shown_url))
        return 0

    space.enqueue_fixed_trials(optuna_study, args.trials)
    logger.info("study %r in %s: %d of %d trials finished; training on %s (%s set)",
                study_name, shown_url, finished, args.trials, device, data.eval_set)

    interrupted, wall_seconds = _optimize(optuna_study, space, data, base,
                                          target=args.trials, finished=finished)
    print(summarize(optuna_study, target=args.trials, storage_url=shown_url,
                    wall_seconds=wall_seconds))
    if interrupted:
        print(f"Interrupted: the running trial was marked failed. Run the same command to "
              f"continue to {args.trials} finished trials.")
        return 130
    return 0


def _optimize(
    optuna_study: optuna.Study,
    space: SearchSpace,
    data: Dataset,
    base: TrialConfig,
    *,
    target: int,
    finished: int,
) -> tuple[bool, float]:
    """Run trials until ``target`` are finished; returns (interrupted, wall seconds)."""
    trial_bar = tqdm(total=target, initial=finished, unit="trial", desc=optuna_study.study_name,
                     dynamic_ncols=True, disable=None)
    epoch_bar = tqdm(total=base.epochs, unit="epoch", leave=False, position=1,
                     dynamic_ncols=True, disable=None)

    def on_epoch(trial: optuna.Trial, stats: EpochStats) -> None:
        if stats.epoch == 1:
            epoch_bar.reset(total=base.epochs)
            epoch_bar.set_description(f"trial {trial.number} {trial.params.get('optimizer', '')}")
        epoch_bar.update(1)
        epoch_bar.set_postfix(loss=f"{stats.train_loss:.3f}", acc=f"{stats.eval_accuracy:.4f}")

    def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state in FINISHED:
            trial_bar.update(1)
        best = _best_trial(study)
        if best is not None:
            trial_bar.set_postfix(best=f"{best.value:.4f}")
        tqdm.write(_trial_line(trial), file=sys.stderr)

    objective = Objective(space, data, base, on_epoch=on_epoch)
    callbacks = [optuna.study.MaxTrialsCallback(target, states=FINISHED), on_trial]
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    start = time.perf_counter()
    interrupted = False
    try:
        optuna_study.optimize(objective, n_trials=target - finished, callbacks=callbacks,
                              gc_after_trial=False)
    except KeyboardInterrupt:
        interrupted = True
        # Optuna marks a trial failed when the interrupt hits its objective; one caught
        # between sampling and the objective would stay RUNNING, so close it here.
        if objective.current_trial is not None:
            running = optuna_study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if any(t.number == objective.current_trial for t in running):
                optuna_study.tell(objective.current_trial, state=optuna.trial.TrialState.FAIL)
    finally:
        signal.signal(signal.SIGTERM, previous)
        epoch_bar.close()
        trial_bar.close()
    return interrupted, time.perf_counter() - start


# --- reporting ----------------------------------------------------------------------------


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("optstudy")
    except PackageNotFoundError:
        return "unknown"


def _best_trial(optuna_study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = optuna_study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value, default=None)


def _trial_line(trial: optuna.trial.FrozenTrial) -> str:
    config = trial.user_attrs.get("config", {})
    epochs = len(trial.user_attrs.get("eval_accuracy", []))
    seconds = sum(trial.user_attrs.get("epoch_seconds", []))
    attrs = trial.user_attrs
    head = f"trial {trial.number:>3} {config.get('optimizer', '?'):<7} "
    head += f"lr {config.get('lr', math.nan):.2e}"
    if attrs.get("diverged"):
        outcome = f"diverged at lr {attrs['diverged_lr']:.2e} (epoch {attrs['diverged_epoch']})"
    elif trial.state == optuna.trial.TrialState.PRUNED:
        outcome = f"pruned after epoch {epochs}: {trial.value:.4f}"
    elif trial.state == optuna.trial.TrialState.COMPLETE:
        outcome = f"accuracy {trial.value:.4f}"
    else:
        outcome = trial.state.name.lower()
    return f"{head}  {outcome}  ({epochs} epoch{'' if epochs == 1 else 's'}, {seconds:.1f} s)"


def _config_columns(config: dict[str, Any]) -> dict[str, Any]:
    schedule = config.get("schedule", "")
    params = format_schedule_params(config.get("schedule_params"))
    if params:
        schedule += f"({params})"
    return {
        "optimizer": config.get("optimizer"),
        "lr": config.get("lr"),
        "momentum": config.get("momentum"),
        "beta1": config.get("beta1"),
        "weight_decay": config.get("weight_decay"),
        "schedule": schedule,
        "warmup_epochs": config.get("warmup_epochs"),
    }


def summarize(
    optuna_study: optuna.Study,
    *,
    target: int,
    storage_url: str,
    wall_seconds: float | None = None,
) -> str:
    """The end-of-run summary: counts, best trial overall and per optimizer, how to open it."""
    trials = optuna_study.get_trials(deepcopy=False)
    state = optuna.trial.TrialState
    diverged = [t for t in trials if t.user_attrs.get("diverged")]
    counts = {
        "complete": sum(t.state == state.COMPLETE for t in trials) - len(diverged),
        "pruned": sum(t.state == state.PRUNED for t in trials),
        "diverged": len(diverged),
        "failed": sum(t.state == state.FAIL for t in trials),
        "running": sum(t.state == state.RUNNING for t in trials),
    }
    finished = counts["complete"] + counts["pruned"] + counts["diverged"]
    epochs = optuna_study.user_attrs.get("epochs")
    lines = [
        "",
        f"Study {optuna_study.study_name!r} ({storage_url}): {finished} finished of target "
        f"{target}" + (" (parallel workers can overshoot by at most workers - 1)"
                       if finished > target else ""),
        "  " + ", ".join(f"{k} {v}" for k, v in counts.items()),
    ]
    pruned = [t for t in trials if t.state == state.PRUNED]
    if epochs and pruned:
        saved = sum(epochs - len(t.user_attrs.get("eval_accuracy", [])) for t in pruned)
        lines.append(f"  pruning saved {saved} of {epochs * finished} trial-epochs")
    if wall_seconds is not None:
        lines.append(f"  wall time this run: {_duration(wall_seconds)}")
    rows = []
    for t in trials:
        if t.state != state.COMPLETE or t.user_attrs.get("diverged"):
            continue
        rows.append({"trial": t.number, "accuracy": t.value,
                     **_config_columns(t.user_attrs.get("config", {}))})
    if rows:
        table = pd.DataFrame(rows).sort_values("accuracy", ascending=False)
        best = table.iloc[0]
        lines.append(f"Best trial: #{best['trial']} {best['optimizer']} accuracy "
                     f"{best['accuracy']:.4f} at lr {best['lr']:.3g} "
                     f"({optuna_study.user_attrs.get('eval_set', 'test')} set)")
        per_opt = table.groupby("optimizer", sort=False).head(1).dropna(axis=1, how="all")
        lines.append("Best trial per optimizer:")
        lines.append(per_opt.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    else:
        lines.append("No complete trial yet.")
    name = optuna_study.study_name
    storage = "" if storage_url == default_storage_url(name) else f" --storage {storage_url}"
    lines.append(f"Report: python -m analysis.report --study-name {name}{storage}")
    lines.append(f"Trials: optuna trials --study-name {name} --storage {storage_url}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


if __name__ == "__main__":
    sys.exit(main())

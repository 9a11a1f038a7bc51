"""``python -m study.confirm``: re-run each optimizer's best configurations with fresh seeds.

A study's best trial per optimizer is one seed at one sampled point: its margin over the
others may be seed noise. This command takes the best ``--top`` configurations of each
optimizer in study S and trains each with ``--seeds`` new seeds (never a seed S used), to the
last epoch, without pruning, into the study ``S.confirm`` in the same storage. The analysis
(``python -m analysis.report --study-name S``) then says whether the leader's margin
exceeds the seed noise. Re-running the same command adds only what is missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import optuna
import torch

from analysis.load import StudyNotFoundError, load_studies, load_trials
from analysis.tables import best_trials, confirmation, seed_noise_verdicts
from search_spaces import suggest
from study.cli import (
    HelpFormatter,
    Parser,
    UsageError,
    add_machine_options,
    positive_int,
    resolve_device,
    run_command,
    toolkit_version,
)
from study.search.trial_loop import FINISHED, run_trials
from study.store import records
from study.store.storage import default_storage_url, display_url, open_storage
from study.train.config import TrialConfig
from study.train.data import load_mnist

__all__ = ["main", "build_parser", "confirm_study_name"]

logger = logging.getLogger(__name__)
PROG = "python -m study.confirm"
CONFIRM_SUFFIX = records.CONFIRM_SUFFIX


def confirm_study_name(study_name: str) -> str:
    """The confirmation study of ``study_name``: ``<study_name>.confirm``."""
    return study_name + CONFIRM_SUFFIX


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (every option documents its default)."""
    parser = Parser(
        prog=PROG,
        description="Re-run the best configurations of each optimizer in a study with fresh "
        "seeds, to tell a real difference from seed noise. Re-running continues.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--study-name", required=True,
                        help="the study whose best configurations to confirm")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="its database URL (default: sqlite:///studies/<study-name>.db)")
    parser.add_argument("--top", type=positive_int, default=1,
                        help="configurations per optimizer: its best TOP complete trials")
    parser.add_argument("--seeds", type=positive_int, default=10,
                        help="fresh seeds per configuration")
    add_machine_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv``; returns the exit code (2 for a usage error)."""
    return run_command(PROG, build_parser(), _confirm, argv, errors=(StudyNotFoundError,))


def _used_seeds(trials: Sequence[optuna.trial.FrozenTrial]) -> set[int]:
    used: set[int] = set()
    for trial in trials:
        attrs = trial.user_attrs
        used.update(attrs.get(records.SEEDS) or [])
        if records.SEED in attrs:
            used.add(attrs[records.SEED])
    return used


def _study_seed(settings: dict[str, Any], trials: Any) -> int:
    """The source study's seed (its validation split's): stored, or for a study made before
    it was kept, trial k's seed less k (what ``study.run`` used then)."""
    if settings.get("seed") is not None:
        return int(settings["seed"])
    for trial in trials:
        if records.SEED in trial.user_attrs:
            return int(trial.user_attrs[records.SEED]) - trial.number
    return 0


def _confirm(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.study_name
    if name.endswith(CONFIRM_SUFFIX):
        raise UsageError(f"{name!r} is a confirmation study already; pass the study it "
                         f"confirms, {name.removesuffix(CONFIRM_SUFFIX)!r}.")
    url = args.storage or default_storage_url(name)
    storage = open_storage(url, create=False)
    (source,) = load_studies(storage, name)
    settings = source.user_attrs
    if "epochs" not in settings:
        raise UsageError(f"study {name!r} was not made by python -m study.run (no settings); "
                         "there is nothing to confirm.")
    trials = load_trials(storage, name)
    chosen = best_trials(trials, n=args.top)
    if chosen.empty:
        raise UsageError(f"study {name!r} has no complete, non-diverged trial yet; let it run "
                         "longer before confirming.")
    source_trials = {t.number: t for t in source.get_trials(deepcopy=False)}

    target_name = confirm_study_name(name)
    confirm_settings = {
        "source_study": name,
        "epochs": settings["epochs"],
        "batch_size": settings.get("batch_size", 64),
        "validation": settings.get("validation", 0.0),
        "train_size": settings.get("train_size"),
        "precision": settings.get("precision", "fp32"),
        "eval_set": settings.get("eval_set", "test"),
        "toolkit_version": toolkit_version(),
    }
    if target_name in optuna.study.get_all_study_names(storage):
        confirm_study = optuna.load_study(study_name=target_name, storage=storage,
                                          sampler=optuna.samplers.RandomSampler(seed=0),
                                          pruner=optuna.pruners.NopPruner())
    else:
        # Every run is enqueued with its parameters: the sampler never chooses anything.
        confirm_study = optuna.create_study(study_name=target_name, storage=storage,
                                            direction="maximize",
                                            sampler=optuna.samplers.RandomSampler(seed=0),
                                            pruner=optuna.pruners.NopPruner())
        confirm_study.set_metric_names(list(records.METRIC_NAMES))
        for key, value in confirm_settings.items():
            confirm_study.set_user_attr(key, value)
    seeds = list(confirm_study.user_attrs.get(records.SEEDS, []))
    if len(seeds) < args.seeds:
        used = _used_seeds(source_trials.values()) | set(seeds)
        fresh = max(used, default=-1) + 1
        seeds += list(range(fresh, fresh + args.seeds - len(seeds)))
        confirm_study.set_user_attr(records.SEEDS, seeds)
    seeds = seeds[: args.seeds]

    optuna.storages.fail_stale_trials(confirm_study)
    have = {(t.user_attrs.get(records.SOURCE_TRIAL), t.user_attrs.get(records.SEED))
            for t in confirm_study.get_trials(
                deepcopy=False, states=(*FINISHED, optuna.trial.TrialState.RUNNING,
                                        optuna.trial.TrialState.WAITING))}
    wanted = [(int(number), seed) for number in chosen["number"] for seed in seeds]
    missing = [run for run in wanted if run not in have]
    shown = display_url(url)
    for number, seed in missing:
        confirm_study.enqueue_trial(
            dict(source_trials[number].params),
            user_attrs={records.SOURCE_TRIAL: number, records.SEED: seed},
            skip_if_exists=False,
        )
    # Queued runs an interrupted run left behind count too: they run first.
    queued = len(confirm_study.get_trials(deepcopy=False,
                                          states=(optuna.trial.TrialState.WAITING,)))
    if not queued:
        print(f"Study {target_name!r} already has all {len(wanted)} runs; nothing to run. "
              "Raise --seeds or --top for more.")
        print(_summary(storage, target_name, shown, args.storage))
        return 0
    data = load_mnist(args.data_dir, device=device,
                      validation_fraction=confirm_settings["validation"],
                      split_seed=_study_seed(settings, source_trials.values()),
                      train_size=confirm_settings["train_size"])

    def propose(trial: optuna.Trial) -> TrialConfig:
        number = trial.user_attrs[records.SOURCE_TRIAL]
        original = source_trials[number]
        for param, distribution in original.distributions.items():
            suggest(trial, param, distribution)  # the enqueued values: Optuna tools see them
        config = TrialConfig.from_dict(original.user_attrs[records.CONFIG])
        return config.replace(seed=trial.user_attrs[records.SEED])

    finished = len(confirm_study.get_trials(deepcopy=False, states=FINISHED))
    logger.info("study %r: %d configurations x %d seeds, %d runs to go; training on %s",
                target_name, len(chosen), len(seeds), queued, device)
    interrupted, seconds = run_trials(confirm_study, propose, data,
                                      epochs=confirm_settings["epochs"],
                                      target=finished + queued, finished=finished)
    print(_summary(storage, target_name, shown, args.storage))
    if interrupted:
        print("Interrupted: the running trial was marked failed. Run the same command to "
              "continue.")
        return 130
    return 0


def _summary(storage: Any, name: str, shown_url: str, storage_option: str | None) -> str:
    trials = load_trials(storage, name)
    table = confirmation(trials)
    lines = ["", f"Confirmation study {name!r} ({shown_url}): {len(trials)} runs"]
    if not table.empty:
        columns = ["optimizer", "source_trial", "lr", "n", "mean", "std", "mean_lo", "mean_hi"]
        lines.append(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        for verdict in seed_noise_verdicts(trials)["verdict"]:
            lines.append(verdict)
    source = name.removesuffix(CONFIRM_SUFFIX)
    option = f" --storage {storage_option}" if storage_option else ""
    lines.append(f"Report: python -m analysis.report --study-name {source}{option}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

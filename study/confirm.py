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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import optuna
import pandas as pd

from analysis.load import StudyNotFoundError, load_studies, load_trials
from analysis.tables import best_trials, confirmation, seed_noise_verdicts
from search_spaces import suggest
from study.cli import (
    HelpFormatter,
    Parser,
    UsageError,
    add_machine_options,
    int_in,
    positive_int,
    resolve_device,
    run_command,
    set_training_threads,
    toolkit_version,
)
from study.search.trial_loop import FINISHED, run_trials
from study.search.workers import COHORT_LIMIT, COHORT_NETWORKS, MAX_COHORT, default_cohort
from study.store import records
from study.store.storage import checked_url, display_url, open_storage, open_study
from study.summary import password_hint, report_command
from study.train.config import TrialConfig
from study.train.data import Dataset, load_mnist

__all__ = ["main", "build_parser", "confirm_study_name"]

logger = logging.getLogger(__name__)
PROG = "python -m study.confirm"
CONFIRM_SUFFIX = records.CONFIRM_SUFFIX
#: The most fresh seeds per configuration, and why (the refusal of more says it).
MAX_SEEDS = 1000
SEEDS_LIMIT = ("each seed is one full training run of every configuration; 10 (the default) "
               "tell a real difference from seed noise")
#: How a source study that does not store one of these settings trained: it is read as this.
_UNSTORED: dict[str, Any] = {
    records.BATCH_SIZE: 64,
    records.VALIDATION: 0.0,
    records.TRAIN_SIZE: None,
    records.PRECISION: "fp32",
    records.EVAL_SET: "test",
}


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
    parser.add_argument("--seeds", type=int_in(1, MAX_SEEDS, why=SEEDS_LIMIT), default=10,
                        help="fresh seeds per configuration")
    parser.add_argument("--cohort", type=int_in(1, MAX_COHORT, why=COHORT_LIMIT), default=None,
                        metavar="N",
                        help="train N runs at once as one stacked model (each stored as if "
                        "trained alone); 1 trains one at a time (default: "
                        f"{COHORT_NETWORKS['cpu']} on a CPU, 1 on a GPU)")
    add_machine_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv``; returns the exit code (2 for a usage error)."""
    return run_command(PROG, build_parser(), _confirm, argv, errors=(StudyNotFoundError,))


def _used_seeds(trials: Iterable[optuna.trial.FrozenTrial]) -> set[int]:
    used: set[int] = set()
    for trial in trials:
        attrs = trial.user_attrs
        used.update(attrs.get(records.SEEDS) or [])
        if records.SEED in attrs:
            used.add(attrs[records.SEED])
    return used


def _study_seed(settings: Mapping[str, Any], trials: Iterable[optuna.trial.FrozenTrial]) -> int:
    """The source study's seed (its validation split's): the stored setting, or, for a study
    that does not store it, trial k's seed less k (such a study ran one seed per trial, trial
    k's being the study's seed + k)."""
    if settings.get(records.STUDY_SEED) is not None:
        return int(settings[records.STUDY_SEED])
    for trial in trials:
        if records.SEED in trial.user_attrs:
            return int(trial.user_attrs[records.SEED]) - trial.number
    return 0


def _confirm(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    cohort = args.cohort or default_cohort(device, 1)
    threads = set_training_threads(args.threads, device, cohort=cohort)
    name = _source_name(args.study_name)
    url = checked_url(name, args.storage)
    storage = open_storage(url, create=False)
    source, chosen = _source_and_best(storage, name, top=args.top)
    source_trials = {t.number: t for t in source.get_trials(deepcopy=False)}
    settings = _confirm_settings(name, source.user_attrs)
    # Read before the confirmation study is created or queued: a missing or corrupt file
    # then stops the command with nothing written.
    data = load_mnist(args.data_dir, device=device,
                      validation_fraction=settings[records.VALIDATION],
                      split_seed=_study_seed(source.user_attrs, source_trials.values()),
                      train_size=settings[records.TRAIN_SIZE])
    if args.seeds < records.MIN_SEEDS:
        logger.warning("--seeds %d: the report gives no interval below %d seeds per "
                       "configuration.", args.seeds, records.MIN_SEEDS)
    confirm_study = _open_confirm_study(storage, confirm_study_name(name), settings)
    seeds = _seeds(confirm_study, source_trials.values(), count=args.seeds)
    wanted = [(int(number), seed) for number in chosen["number"] for seed in seeds]
    queued = _enqueue_missing(confirm_study, wanted, source_trials)
    shown = display_url(url)
    if not queued:
        print(f"Study {confirm_study.study_name!r} already has all {len(wanted)} runs; nothing "
              "to run. Raise --seeds or --top for more.")
        print(_summary(storage, confirm_study.study_name, shown, args.storage,
                       wanted=len(wanted)))
        return 0
    logger.info("study %r: %d configurations x %d seeds, %d runs to go; training on %s "
                "(%d torch thread%s)", confirm_study.study_name, len(chosen), len(seeds),
                queued, device, threads, "" if threads == 1 else "s")
    interrupted = _run_queued(confirm_study, source_trials, data,
                              epochs=settings[records.EPOCHS], queued=queued,
                              cohort=cohort)
    print(_summary(storage, confirm_study.study_name, shown, args.storage, wanted=len(wanted)))
    if interrupted:
        print("Interrupted: the runs in training were marked failed. Run the same command to "
              "continue.")
        return 130
    return 0


def _source_name(name: str) -> str:
    """``name``, refused when it names a confirmation study itself."""
    if name.endswith(CONFIRM_SUFFIX):
        raise UsageError(f"{name!r} is a confirmation study already; pass the study it "
                         f"confirms, {name.removesuffix(CONFIRM_SUFFIX)!r}.")
    return name


def _source_and_best(
    storage: optuna.storages.BaseStorage, name: str, *, top: int
) -> tuple[optuna.Study, pd.DataFrame]:
    """The source study and the rows of its best ``top`` trials per optimizer (a
    :func:`analysis.tables.best_trials` frame).

    Raises:
        StudyNotFoundError: no such study.
        UsageError: it was not made by ``python -m study.run``, or has no trial to confirm.
    """
    (source,) = load_studies(storage, name)
    if records.EPOCHS not in source.user_attrs:
        raise UsageError(f"study {name!r} was not made by python -m study.run (no settings); "
                         "there is nothing to confirm.")
    chosen = best_trials(load_trials(storage, name), n=top)
    if chosen.empty:
        raise UsageError(f"study {name!r} has no complete, non-diverged trial yet; let it run "
                         "longer before confirming.")
    return source, chosen


def _confirm_settings(name: str, source: Mapping[str, Any]) -> dict[str, Any]:
    """The confirmation study's settings: how its source study ``name`` trained (a setting
    the source does not store read as :data:`_UNSTORED` says) and this toolkit's version."""
    return {
        records.SOURCE_STUDY: name,
        records.EPOCHS: source[records.EPOCHS],
        **{key: source.get(key, default) for key, default in _UNSTORED.items()},
        records.TOOLKIT_VERSION: toolkit_version(),
    }


def _open_confirm_study(
    storage: optuna.storages.BaseStorage, target_name: str, settings: Mapping[str, Any]
) -> optuna.Study:
    """Create the confirmation study with ``settings``, or open it (its stored settings
    kept)."""
    # Every run is enqueued with its parameters: the sampler never chooses anything.
    confirm_study = open_study(storage, target_name, settings=settings,
                               sampler=optuna.samplers.RandomSampler(seed=0),
                               pruner=optuna.pruners.NopPruner())
    if confirm_study.metric_names is None:
        confirm_study.set_metric_names(list(records.METRIC_NAMES))
    return confirm_study


def _seeds(
    confirm_study: optuna.Study, source_trials: Iterable[optuna.trial.FrozenTrial], *,
    count: int
) -> list[int]:
    """The confirmation's first ``count`` seeds: those it stores, and as many fresh ones as
    it lacks (above every seed the source study or the confirmation used), stored."""
    seeds = list(confirm_study.user_attrs.get(records.SEEDS, []))
    if len(seeds) < count:
        used = _used_seeds(source_trials) | set(seeds)
        fresh = max(used, default=-1) + 1
        seeds += list(range(fresh, fresh + count - len(seeds)))
        confirm_study.set_user_attr(records.SEEDS, seeds)
    return seeds[:count]


def _enqueue_missing(
    confirm_study: optuna.Study,
    wanted: Sequence[tuple[int, int]],
    source_trials: Mapping[int, optuna.trial.FrozenTrial],
) -> int:
    """Enqueue each wanted (source trial, seed) run the study has neither finished, running
    nor queued; the number of runs queued, those an interrupted run left queued included
    (they run first)."""
    optuna.storages.fail_stale_trials(confirm_study)
    have = {(t.user_attrs.get(records.SOURCE_TRIAL), t.user_attrs.get(records.SEED))
            for t in confirm_study.get_trials(
                deepcopy=False, states=(*FINISHED, optuna.trial.TrialState.RUNNING,
                                        optuna.trial.TrialState.WAITING))}
    for number, seed in wanted:
        if (number, seed) not in have:
            confirm_study.enqueue_trial(
                dict(source_trials[number].params),
                user_attrs={records.SOURCE_TRIAL: number, records.SEED: seed},
                skip_if_exists=False,
            )
    return len(confirm_study.get_trials(deepcopy=False,
                                        states=(optuna.trial.TrialState.WAITING,)))


def _proposer(
    source_trials: Mapping[int, optuna.trial.FrozenTrial],
) -> Callable[[optuna.Trial], TrialConfig]:
    """What a confirmation trial trains: its source trial's configuration with its seed."""

    def propose(trial: optuna.Trial) -> TrialConfig:
        number = trial.user_attrs[records.SOURCE_TRIAL]
        original = source_trials[number]
        for param, distribution in original.distributions.items():
            suggest(trial, param, distribution)  # the enqueued values: Optuna tools see them
        config = TrialConfig.from_dict(original.user_attrs[records.CONFIG])
        return config.replace(seed=trial.user_attrs[records.SEED])

    return propose


def _run_queued(
    confirm_study: optuna.Study,
    source_trials: Mapping[int, optuna.trial.FrozenTrial],
    data: Dataset,
    *,
    epochs: int,
    queued: int,
    cohort: int = 1,
) -> bool:
    """Train the ``queued`` runs to the last epoch, ``cohort`` at a time; whether Ctrl-C
    stopped them."""
    finished = len(confirm_study.get_trials(deepcopy=False, states=FINISHED))
    interrupted, _ = run_trials(confirm_study, _proposer(source_trials), data, epochs=epochs,
                                target=finished + queued, finished=finished, cohort=cohort)
    return interrupted


def _run_count(trials: pd.DataFrame, wanted: int) -> str:
    """The finished runs against the ``wanted`` ones of this command; runs an interruption
    failed (each run again) are said apart, never counted as runs."""
    finished = int(trials["state"].isin([records.STATE_NAMES[s] for s in FINISHED]).sum())
    failed = int((trials["state"] == records.STATE_NAMES[optuna.trial.TrialState.FAIL]).sum())
    text = f"{finished} of {wanted} runs finished"
    if finished > wanted:
        text = f"{finished} runs finished ({wanted} asked for here, more by earlier commands)"
    if failed:
        text += f"; {failed} interrupted run{'s' if failed > 1 else ''} failed, not counted"
    return text


def _summary(
    storage: Any, name: str, shown_url: str, storage_option: str | None, *, wanted: int
) -> str:
    trials = load_trials(storage, name)
    table = confirmation(trials)
    lines = ["", f"Confirmation study {name!r} ({shown_url}): {_run_count(trials, wanted)}"]
    if not table.empty:
        columns = ["optimizer", "source_trial", "lr", "n", "mean", "std", "mean_lo", "mean_hi"]
        lines.append(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        for verdict in seed_noise_verdicts(trials)["verdict"]:
            lines.append(verdict)
    source = name.removesuffix(CONFIRM_SUFFIX)
    lines.append("Report: " + report_command(source, storage_option=storage_option and shown_url))
    return "\n".join(lines + password_hint(shown_url))


if __name__ == "__main__":
    sys.exit(main())

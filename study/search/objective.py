"""The thin glue between a search space, training and Optuna.

Per trial the objective records what :mod:`study.store.records` lists, through Optuna's own API
(user attributes and one intermediate value per epoch), so any Optuna tool reads it. With
``repeats`` K it trains the trial's configuration with K seeds, interleaved epoch by epoch:
the value reported each epoch (what the pruner sees) is the mean over the seeds, a diverged
seed counting as chance.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from pathlib import Path

import optuna

from study.search.interrupts import STOP
from study.store import records
from study.store.storage import file_name
from study.train.checkpoint import save_checkpoint
from study.train.config import TrialConfig
from study.train.data import Dataset
from study.train.loop import EpochStats, FitResult, TrainingRun

__all__ = [
    "Objective",
    "TrialCurves",
    "begin_trial",
    "checkpoint_folder",
    "finish_trial",
    "keep_best_checkpoints",
    "pruned_message",
]

#: The names :meth:`Objective._save` gives checkpoint files, the only ones ever deleted.
_CHECKPOINT_NAME = re.compile(r"trial-\d{5,}(-seed-\d+)?\.pt")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


class Objective:
    """``objective(trial) -> accuracy``: propose a config, train it, report every epoch.

    Args:
        propose: ``trial -> TrialConfig`` (a search space's ``config_for`` with what the
            command line fixes); its seed is the trial's first seed.
        data: the tensors every trial trains on (loaded once per process).
        repeats: seeds per trial: ``config.seed``, ``config.seed + 1``, ...
        on_epoch: also called after each epoch with the trial and the first seed's stats
            (progress display).
        make_run: ``(config, data) -> run`` with :class:`~study.train.loop.TrainingRun`'s
            interface (``train_epoch``, ``finished``, ``result``); the benchmark swaps in
            one that does not train, to time the study's own overhead.
        checkpoints: a folder: each trial that completes or is pruned writes a checkpoint
            per seed there (:func:`study.train.checkpoint.save_checkpoint`, the state at the end
            of the trial), its path recorded as the trial's ``checkpoint`` attribute.
    """

    def __init__(
        self,
        propose: Callable[[optuna.Trial], TrialConfig],
        data: Dataset,
        *,
        repeats: int = 1,
        on_epoch: Callable[[optuna.Trial, EpochStats], None] | None = None,
        make_run: Callable[[TrialConfig, Dataset], TrainingRun] = TrainingRun,
        checkpoints: Path | None = None,
    ) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, but got {repeats=}.")
        self.propose = propose
        self.data = data
        self.repeats = repeats
        self.on_epoch = on_epoch
        self.make_run = make_run
        self.checkpoints = checkpoints
        #: numbers of the trials this objective has started (an interrupted run closes
        #: those still RUNNING).
        self.started: list[int] = []

    def __call__(self, trial: optuna.Trial) -> float:
        self.started.append(trial.number)
        STOP.check()  # a stop asked for while the trial was being created: fail it now
        config = self.propose(trial)
        seeds = begin_trial(trial, config, self.repeats, self.data)
        runs = [self.make_run(config.replace(seed=s), self.data) for s in seeds]
        curves = TrialCurves(len(runs))

        for epoch in range(1, config.epochs + 1):
            # Ctrl-C or SIGTERM interrupts training at once; anywhere else (storage writes)
            # it waits for the next epoch (study.search.interrupts).
            with STOP.interruptible():
                stats = [run.train_epoch() if not run.finished else None for run in runs]
            alive = [s for s in stats if s is not None]
            if not alive:
                break  # every seed has diverged
            accuracy = curves.record(trial, epoch, stats)
            if self.on_epoch is not None:
                self.on_epoch(trial, alive[0])
            # A trial that has run every epoch is complete, whatever the pruner says of it.
            if epoch < config.epochs and trial.should_prune():
                self._save(trial, runs)
                raise optuna.TrialPruned(pruned_message(epoch, accuracy))
        self._save(trial, runs)
        return finish_trial(trial, [run.result() for run in runs])

    def _save(self, trial: optuna.Trial, runs: list[TrainingRun]) -> None:
        """Write each seed's checkpoint (not a diverged one's: its weights are lost)."""
        if self.checkpoints is None or all(run.diverged for run in runs):
            return
        name = f"trial-{trial.number:05d}"
        paths = [str(save_checkpoint(run, self.checkpoints.absolute() / (
            f"{name}.pt" if len(runs) == 1 else f"{name}-seed-{k}.pt")))
            for k, run in enumerate(runs) if not run.diverged]
        trial.set_user_attr(records.CHECKPOINT, paths[0])
        if len(runs) > 1:
            trial.set_user_attr(records.SEED_CHECKPOINTS, paths)

def begin_trial(trial: optuna.Trial, config: TrialConfig, repeats: int,
                data: Dataset) -> list[int]:
    """Record what a trial trains (its config, seeds and evaluation set); returns its seeds:
    ``config.seed``, ``config.seed + 1``, ... (``repeats`` of them)."""
    seeds = [config.seed + k for k in range(repeats)]
    trial.set_user_attr(records.CONFIG, config.to_dict())
    trial.set_user_attr(records.SEED, config.seed)
    trial.set_user_attr(records.SEEDS, seeds)
    trial.set_user_attr(records.EVAL_SET, data.eval_set)
    trial.set_user_attr(records.DIVERGED, False)
    return seeds


class TrialCurves:
    """A trial's per-epoch curves over its seeds, as :mod:`study.store.records` lists them."""

    def __init__(self, seeds: int) -> None:
        self.curves: dict[str, list[float]] = {attr: [] for attr in records.CURVES}
        self.per_seed: list[list[float]] = [[] for _ in range(seeds)]

    def record(self, trial: optuna.Trial, epoch: int, stats: list[EpochStats | None]) -> float:
        """Store one epoch of the seeds' ``stats`` (None: a seed that has diverged, counted
        as chance) and report their mean accuracy, which it returns."""
        alive = [s for s in stats if s is not None]
        accuracies = [s.eval_accuracy if s else records.CHANCE for s in stats]
        for seed_curve, accuracy in zip(self.per_seed, accuracies, strict=True):
            seed_curve.append(accuracy)
        # what the schedule set (lr, lr_min, lr_max, momentum, batch size) from the first
        # live seed: the seeds share it, except plateau's, which follows each seed's own
        # accuracy; what the seeds measured, their mean
        mean = {attr: getattr(alive[0], name) for attr, name in records.CURVES.items()}
        mean.update({
            "train_loss": _mean([s.train_loss for s in alive]),
            "train_accuracy": _mean([s.train_accuracy for s in alive]),
            "eval_accuracy": _mean(accuracies),
            "epoch_seconds": sum(s.seconds for s in alive),
        })
        for attr in records.CURVES:
            self.curves[attr].append(mean[attr])
            trial.set_user_attr(attr, self.curves[attr])
        trial.set_user_attr(records.SEED_EVAL_ACCURACY, self.per_seed)
        trial.report(mean["eval_accuracy"], epoch)
        return mean["eval_accuracy"]


def pruned_message(epoch: int, accuracy: float) -> str:
    """Why a trial was pruned, as Optuna logs it."""
    return f"epoch {epoch}: accuracy {accuracy:.4f}"


def finish_trial(trial: optuna.Trial, results: list[FitResult]) -> float:
    """Record the seeds' final results; returns the trial's value: their mean accuracy (a
    diverged seed counted as chance), or ``records.DIVERGED_VALUE`` when every seed
    diverged."""
    finals = [records.CHANCE if r.diverged else r.final_accuracy for r in results]
    trial.set_user_attr(records.SEED_ACCURACIES, finals)
    trial.set_user_attr(records.SEED_DIVERGED, [r.diverged for r in results])
    if all(r.diverged for r in results):
        first = min(results, key=lambda r: (r.diverged_epoch, r.diverged_lr))
        trial.set_user_attr(records.DIVERGED, True)
        trial.set_user_attr(records.DIVERGED_LR, first.diverged_lr)
        trial.set_user_attr(records.DIVERGED_EPOCH, first.diverged_epoch)
        trial.set_user_attr(records.DIVERGED_REASON, first.diverged_reason)
        return records.DIVERGED_VALUE
    tests = [records.CHANCE if r.diverged else r.test_accuracy for r in results]
    trial.set_user_attr(records.TEST_ACCURACY, _mean(tests))
    return _mean(finals)


def checkpoint_folder(root: Path, study_name: str) -> Path:
    """Where ``--checkpoints ROOT`` puts a study's files: ``ROOT/<study name>/``. A name that
    is not a safe folder name as it is gets the safe form of :func:`study.store.storage.
    file_name` and a short hash of the name, so two names that make the same safe form
    ("a b", "a_b") never share a folder, nor delete each other's files."""
    safe = file_name(study_name)
    if safe != study_name:
        safe += "-" + hashlib.sha256(study_name.encode()).hexdigest()[:8]
    return Path(root) / safe


def keep_best_checkpoints(optuna_study: optuna.Study, keep: int, *, folder: Path) -> list[str]:
    """Delete the checkpoint files of all but the best ``keep`` trials (complete trials by
    accuracy, then pruned ones by the accuracy they were stopped at); returns the deleted
    paths. The trials' ``checkpoint`` attributes stay: a path whose file is gone was not
    among the best.

    A path comes from the database, which anyone who can write to it may fill: only a file
    this toolkit names (``trial-NNNNN.pt``, ``trial-NNNNN-seed-K.pt``) that, links resolved,
    lies in ``folder`` itself (the run's own checkpoint folder) is ever deleted.
    """
    trials = optuna_study.get_trials(deepcopy=False, states=(
        optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    with_files = [t for t in trials if t.user_attrs.get(records.CHECKPOINT)]
    ranked = sorted(with_files, key=lambda t: (
        t.state == optuna.trial.TrialState.COMPLETE and not t.user_attrs.get(records.DIVERGED),
        t.value if t.value is not None else -math.inf), reverse=True)
    own = Path(folder).resolve()
    deleted = []
    for trial in ranked[keep:]:
        paths = trial.user_attrs.get(records.SEED_CHECKPOINTS) or [
            trial.user_attrs[records.CHECKPOINT]]
        for path in paths:
            real = Path(str(path)).resolve()
            if real.parent == own and _CHECKPOINT_NAME.fullmatch(real.name) and real.is_file():
                real.unlink(missing_ok=True)
                deleted.append(path)
    return deleted

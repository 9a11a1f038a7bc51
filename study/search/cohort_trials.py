"""Several trials trained at once as one stacked model (``--cohort N``).

:class:`CohortRunner` takes trials the loop has asked for (Optuna's ask-and-tell; each trial's
parameters are suggested right after its ask, so the balanced sampler and TPE's constant
liar see the trials asked before it), trains every seed of every trial as one
:func:`~study.train.cohort.train_cohort` and stores each trial exactly as
:class:`~study.search.objective.Objective` does: the same attributes, one report per epoch
(the seeds' mean), the study's pruner asked per trial after each epoch. A pruned trial's
members leave the stack and the trial is stored at once; a trial is stored as soon as all its
members have left. Each trial has its own heartbeat, stopped when it is stored.

Ctrl-C and SIGTERM interrupt training at once; storing is never cut (the signal is only
recorded there) and the stop comes after it, so a trial whose training has finished is
stored, and the caller fails the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import optuna

# Optuna's trial loop runs each objective under one of these; ask-and-tell trials need their
# own (there is no public way to start one).
from optuna.storages._heartbeat import BaseHeartbeatThread, get_heartbeat_thread

from study.search.interrupts import STOP
from study.search.objective import TrialCurves, begin_trial, finish_trial, pruned_message
from study.train.cohort import stack_key, train_cohort
from study.train.config import TrialConfig
from study.train.data import Dataset
from study.train.loop import EpochStats, FitResult

__all__ = ["CohortRunner", "finished_elsewhere"]

#: How Optuna refuses to store into a trial another process has already finished: while it
#: trains (``UpdateFinishedTrialError``) or when its value is told (``Cannot tell a FAIL
#: trial``).
_TOLD_ELSEWHERE = "Cannot tell a "

logger = logging.getLogger(__name__)

StoredCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def finished_elsewhere(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it arose from) is Optuna refusing to write into a trial that
    is no longer RUNNING."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, optuna.exceptions.UpdateFinishedTrialError) or (
                isinstance(exc, ValueError) and str(exc).startswith(_TOLD_ELSEWHERE)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def say_taken_over(number: int) -> None:
    """The one line for a trial another process failed as dead while this one was paused."""
    logger.warning(
        "trial %d went without a heartbeat for longer than --grace while this process was "
        "paused, so another process marked it failed (and retried it, on a server "
        "database); its result is dropped and the run carries on.", number)


@dataclass
class _CohortTrial:
    """One trial of the cohort: its members (one per seed) and what it has recorded."""

    trial: optuna.Trial
    members: list[int]
    curves: TrialCurves
    heartbeat: BaseHeartbeatThread
    results: dict[int, FitResult] = field(default_factory=dict)
    done: bool = False


class CohortRunner:
    """Train asked trials together and store each (see the module's docstring).

    Args:
        optuna_study: the study the trials were asked from.
        propose: ``trial -> TrialConfig``, as :class:`~study.search.objective.Objective`
            takes it; the configs of one cohort share batch size, epochs and precision.
        data: the tensors every trial trains on.
        repeats: seeds per trial.
        callbacks: called with the study and the stored trial after each trial is stored
            (Optuna's ``optimize`` callbacks).
        on_epoch: ``(trial numbers, epoch, stats)`` after each epoch, with the numbers of
            the trials still training and the stats of the member with the best accuracy.
        moment: told ``"started"``, ``"trained"`` (before a trial is stored) and the epochs
            (:data:`study.search.trial_loop.MOMENT_OBSERVERS`).
    """

    def __init__(
        self, optuna_study: optuna.Study, propose: Callable[[optuna.Trial], TrialConfig],
        data: Dataset, *, repeats: int, callbacks: list[StoredCallback],
        on_epoch: Callable[[list[int], int, EpochStats], None] | None = None,
        moment: Callable[[str], None] = lambda name: None,
    ) -> None:
        self.study, self.propose, self.data, self.repeats = optuna_study, propose, data, repeats
        self.callbacks, self.on_epoch, self.moment = callbacks, on_epoch, moment
        #: numbers of the trials this runner has begun (an interrupted run closes those
        #: still RUNNING).
        self.started: list[int] = []
        self._configs: list[TrialConfig] = []  # the members added, one per seed
        self._running: dict[int, _CohortTrial] = {}  # member -> its trial, in training
        self._epochs = 0  # of the group in training
        self._owner: dict[int, _CohortTrial] = {}  # member -> its trial, for the added ones
        self._added: list[_CohortTrial] = []

    def add(self, trial: optuna.Trial) -> None:
        """Start ``trial``'s heartbeat, suggest its parameters and record what it will train;
        it trains at the next :meth:`run`. On any exception call :meth:`abandon`."""
        self.started.append(trial.number)
        heartbeat = get_heartbeat_thread(trial._trial_id, self.study._storage)
        heartbeat.start()  # at once, as optimize does: a killed run's trial is failed later
        entry = _CohortTrial(trial, [], TrialCurves(self.repeats), heartbeat)
        self._added.append(entry)
        STOP.check()  # a stop asked for while the trial was being created: fail it now
        config = self.propose(trial)
        seeds = begin_trial(trial, config, self.repeats, self.data)
        entry.members = list(range(len(self._configs), len(self._configs) + len(seeds)))
        self._configs += [config.replace(seed=s) for s in seeds]
        self._owner.update(dict.fromkeys(entry.members, entry))

    def abandon(self) -> None:
        """Fail the trials added since the last run (where the database still allows it)
        and stop their heartbeats: asking or proposing failed."""
        added, self._added, self._configs, self._owner = self._added, [], [], {}
        self._fail(added)

    def run(self) -> None:
        """Train the trials added since the last run and store each: one cohort per group
        of configs that can share a stack (:func:`~study.train.cohort.stack_key`), one
        group after another.

        Raises:
            KeyboardInterrupt: a stop was asked for; the trials whose training had finished
                are stored, the others are failed.
        """
        trials, configs, owner = self._added, self._configs, self._owner
        self._added, self._configs, self._owner = [], [], {}
        if not trials:
            return
        groups: dict[tuple, list[int]] = {}
        for member, config in enumerate(configs):
            groups.setdefault(stack_key(config), []).append(member)
        self.moment("started")
        try:
            for members in groups.values():
                self._train(members, [configs[m] for m in members], owner)
        finally:
            self._fail(trials)  # those not stored: an exception, or a stop

    def _train(self, members: list[int], configs: list[TrialConfig],
               owner: dict[int, _CohortTrial]) -> None:
        """Train one group: ``members`` (their indices among the added), their configs."""
        self._running = {m: owner[m] for m in members}
        self._epochs = configs[0].epochs

        def on_epoch(epoch: int, stats: Mapping[int, EpochStats]) -> list[int]:
            pruned = self._epoch_done(epoch, {members[i]: s for i, s in stats.items()})
            return [members.index(m) for m in pruned]

        with STOP.interruptible():
            train_cohort(configs, self.data, on_epoch=on_epoch, on_leave=lambda results:
                         self._left({members[i]: r for i, r in results.items()}))

    def _epoch_done(self, epoch: int, stats: Mapping[int, EpochStats]) -> Collection[int]:
        """Record and report each trial's epoch, ask the pruner; returns the members of the
        pruned trials (stored here: a pruned trial needs nothing more from training)."""
        pruned: list[int] = []
        with STOP.shielded():
            training = []
            for entry in {id(e): e for e in self._running.values()}.values():
                seed_stats = [stats.get(m) for m in entry.members]
                if entry.done or not any(seed_stats):
                    continue
                try:
                    accuracy = entry.curves.record(entry.trial, epoch, seed_stats)
                    if epoch < self._epochs and entry.trial.should_prune():
                        pruned += entry.members
                        self._store(entry, state=optuna.trial.TrialState.PRUNED,
                                    why=pruned_message(epoch, accuracy))
                    else:
                        training.append(entry.trial.number)
                except Exception as exc:
                    if not self._dropped(entry, exc):
                        raise
                    pruned += entry.members
            if self.on_epoch is not None and training:
                best = max(stats.values(), key=lambda s: s.eval_accuracy)
                self.on_epoch(training, epoch, best)
        if epoch < self._epochs:
            STOP.check()
        else:  # training is over: the members leave and their trials are stored (_left)
            STOP.disarm()
        return pruned

    def _left(self, results: Mapping[int, FitResult]) -> None:
        """Store each trial whose members have all left the stack."""
        with STOP.shielded():
            finished = []
            for member, result in results.items():
                entry = self._running[member]
                entry.results[member] = result
                if not entry.done and len(entry.results) == len(entry.members):
                    finished.append(entry)
            for entry in finished:
                try:
                    value = finish_trial(entry.trial, [entry.results[m] for m in entry.members])
                    self._store(entry, value=value)
                except Exception as exc:
                    if not self._dropped(entry, exc):
                        raise
        STOP.check()

    def _store(self, entry: _CohortTrial, *, value: float | None = None,
               state: optuna.trial.TrialState | None = None, why: str = "") -> None:
        entry.done = True
        entry.heartbeat.join()
        self.moment("trained")
        frozen = self.study.tell(entry.trial, value, state=state)
        if why:
            logger.debug("trial %d pruned: %s", entry.trial.number, why)
        for callback in self.callbacks:
            callback(self.study, frozen)

    def _dropped(self, entry: _CohortTrial, exc: Exception) -> bool:
        """Whether ``exc`` means another process failed ``entry``'s trial as dead while this
        one was paused; if so the trial is dropped (said in one line) and the rest go on."""
        if not finished_elsewhere(exc):
            return False
        number = entry.trial.number
        trial = next(t for t in self.study.get_trials(deepcopy=False) if t.number == number)
        if trial.state != optuna.trial.TrialState.FAIL:
            return False
        entry.done = True
        entry.heartbeat.join()
        say_taken_over(number)
        return True

    def _fail(self, trials: list[_CohortTrial]) -> None:
        """Stop the heartbeats of ``trials`` and fail those not yet stored, where the
        database still allows it."""
        for entry in trials:
            entry.heartbeat.join()
            if entry.done:
                continue
            entry.done = True
            try:
                self.study.tell(entry.trial, state=optuna.trial.TrialState.FAIL)
            except Exception:  # noqa: BLE001 - the database is failing: the grace period does it
                pass

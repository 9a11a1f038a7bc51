"""Running trials until a study reaches its target, with progress bars and clean stops.

Ctrl-C and SIGTERM stop the run where nothing is lost (:mod:`study.search.interrupts`): the trial
being trained is marked failed, a trial whose training has finished is stored, none of this
worker's trials is left RUNNING, and the caller prints the summary.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import optuna
from tqdm.auto import tqdm

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

from study.search.interrupts import STOP
from study.search.objective import Objective, keep_best_checkpoints
from study.search.progress import PlainProgress, trial_label, trial_line
from study.store.storage import storage_failure
from study.train.config import TrialConfig
from study.train.data import Dataset
from study.train.loop import EpochStats

__all__ = ["FINISHED", "run_trials", "waiting_retries"]

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
RUNNING = optuna.trial.TrialState.RUNNING


class _Claim:
    """An exclusive lock shared by the processes of one machine (a file lock in the temporary
    folder, named after ``key``); a no-op where the platform has no ``fcntl``."""

    def __init__(self, key: str) -> None:
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        self.path = Path(tempfile.gettempdir()) / f"optstudy-{digest}.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        if fcntl is None or self._file is not None:
            return
        self._file = open(self.path, "a")  # held from acquire to release
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._file is None:
            return
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None


#: For tests: ``STUDY_TEST_SIGNAL=<moment>:<SIGNAL>`` makes the process send itself SIGNAL
#: once, at the first trial's ``created`` (just after the storage made it, before its
#: heartbeat), ``started`` (the objective begins), ``trained`` (the objective returned, the
#: value not yet stored) or ``stored`` (after Optuna stored it) moment.
SIGNAL_HOOK = "STUDY_TEST_SIGNAL"
_signalled: list[str] = []


def _signal_self_at(moment: str) -> None:
    hook = os.environ.get(SIGNAL_HOOK)
    if not hook or _signalled:
        return
    when, _, name = hook.partition(":")
    if when == moment:
        _signalled.append(moment)
        os.kill(os.getpid(), getattr(signal, name or "SIGTERM"))


def _close_running(optuna_study: optuna.Study, started: list[int]) -> None:
    """Mark this worker's trials still RUNNING failed, where the database allows it."""
    try:
        for trial in optuna_study.get_trials(deepcopy=False, states=(RUNNING,)):
            if trial.number in started:
                optuna_study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    except Exception:  # noqa: BLE001 - the database is failing: the grace period closes it
        pass


def waiting_retries(optuna_study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The WAITING retries of trials whose worker died (queued by the heartbeat's retry
    callback on a server database)."""
    retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    waiting = optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    return [t for t in waiting if retried(t) is not None]


def _best_value(optuna_study: optuna.Study) -> float | None:
    complete = optuna_study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max((t.value for t in complete), default=None)


def run_trials(
    optuna_study: optuna.Study,
    propose: Callable[[optuna.Trial], TrialConfig],
    data: Dataset,
    *,
    epochs: int,
    repeats: int = 1,
    target: int,
    finished: int,
    quiet: bool = False,
    done: Callable[[optuna.Study], int] | None = None,
    checkpoints: Path | None = None,
    keep_checkpoints: int | None = None,
    claim_key: str | None = None,
    url: str | None = None,
) -> tuple[bool, float]:
    """Run trials until ``target`` are finished; returns (interrupted, wall seconds).

    Each trial trains ``propose(trial)`` with ``repeats`` seeds (see
    :class:`study.search.objective.Objective`). Shows a bar over trials (best accuracy so far) and
    one over the running trial's epochs, and one line per finished trial on stderr (where
    stderr is not a terminal, a plain progress line every few seconds instead of the bars;
    see :mod:`study.search.progress`); nothing when ``quiet`` (a worker of ``--workers``, whose
    parent shows the progress).
    ``done(study)`` counts what the target counts (default: finished trials; a grid counts
    its distinct points). With ``checkpoints`` (a folder) each trial that completes or is
    pruned leaves a checkpoint per seed there, and with ``keep_checkpoints`` K only the best
    K trials' files are kept. ``claim_key`` (the storage URL and study name) names the lock
    the workers of one machine start their trials under.

    Raises:
        StorageError: the database (``url``) failed during the run, a full disk for example;
            this worker's running trial is closed as failed where the database still allows.
    """
    trial_bar = tqdm(total=target, initial=finished, unit="trial", desc=optuna_study.study_name,
                     dynamic_ncols=True, disable=True if quiet else None)
    epoch_bar = tqdm(total=epochs, unit="epoch", leave=False, position=1,
                     dynamic_ncols=True, disable=True if quiet else None)
    plain = PlainProgress(enabled=False if quiet else None)
    progress = {"finished": finished}  # the bars count nothing when they are off

    def on_epoch(trial: optuna.Trial, stats: EpochStats) -> None:
        name = f"trial {trial.number} {trial_label(trial)}"
        plain(lambda: f"{optuna_study.study_name}: {progress['finished']} of {target} trials "
                      f"finished; {name} epoch {stats.epoch}/{epochs}: loss "
                      f"{stats.train_loss:.3f}, accuracy {stats.eval_accuracy:.4f}")
        if stats.epoch == 1:
            epoch_bar.reset(total=epochs)
            epoch_bar.set_description(name)
        epoch_bar.update(1)
        epoch_bar.set_postfix(loss=f"{stats.train_loss:.3f}", acc=f"{stats.eval_accuracy:.4f}")

    def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state in FINISHED:
            trial_bar.update(1)
            progress["finished"] += 1
        best = _best_value(study)
        if best is not None:
            trial_bar.set_postfix(best=f"{best:.4f}")
        if not quiet:
            tqdm.write(trial_line(trial), file=sys.stderr)

    objective = Objective(propose, data, repeats=repeats, on_epoch=on_epoch,
                          checkpoints=checkpoints)
    count = done or (lambda study: len(study.get_trials(deepcopy=False, states=FINISHED)))
    # A worker of --workers claims each new trial under a lock its siblings share, so "is
    # the target reached?" and "start a trial" happen as one step: the study never runs more
    # trials than the target (nor a grid point twice), however short the trials.
    claim = _Claim(claim_key) if quiet and claim_key else None

    def claimed(trial: optuna.Trial) -> float:
        if claim is not None:
            claim.release()  # the trial exists, RUNNING: the siblings count it from now on
        _signal_self_at("started")
        value = objective(trial)
        _signal_self_at("trained")
        return value

    def target_reached() -> bool:
        # A worker also counts what its siblings are running: it does not begin a trial the
        # study will not need. Alone, only what is done counts (a RUNNING trial may be a
        # crashed run's).
        running = (len(optuna_study.get_trials(deepcopy=False, states=(RUNNING,)))
                   if quiet else 0)
        # A retry of a dead worker's trial is run even past the target: left alone it would
        # wait for ever (optimize takes waiting trials first).
        return count(optuna_study) + running >= target and not waiting_retries(optuna_study)

    callbacks = [on_trial, lambda study, trial: _signal_self_at("stored")]
    if os.environ.get(SIGNAL_HOOK):
        sampler = optuna_study.sampler
        before_trial = sampler.before_trial

        def created(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            before_trial(study, trial)
            _signal_self_at("created")

        sampler.before_trial = created  # type: ignore[method-assign]
    if checkpoints is not None and keep_checkpoints is not None:
        callbacks.append(lambda study, trial: keep_best_checkpoints(study, keep_checkpoints))
    start = time.perf_counter()
    interrupted = False
    with STOP.handling():
        try:
            while not STOP.requested:
                if claim is not None:
                    claim.acquire()
                try:
                    if STOP.requested or target_reached():
                        break
                    # One trial per call: the check above comes before every trial.
                    optuna_study.optimize(claimed, n_trials=1, callbacks=callbacks,
                                          gc_after_trial=False)
                finally:
                    if claim is not None:
                        claim.release()
        except KeyboardInterrupt:
            interrupted = True
            # Optuna marks a trial failed when the interrupt hits its objective; close any
            # of this worker's trials still RUNNING all the same.
            _close_running(optuna_study, objective.started)
        except Exception as exc:
            failure = storage_failure(exc, url or "")
            if failure is None:
                raise
            _close_running(optuna_study, objective.started)
            raise failure from None
        finally:
            epoch_bar.close()
            trial_bar.close()
        interrupted = interrupted or STOP.requested
    return interrupted, time.perf_counter() - start

"""Running trials until a study reaches its target, with progress bars and clean stops.

Ctrl-C and SIGTERM stop the run where nothing is lost (:mod:`study.search.interrupts`): the trial
being trained is marked failed, a trial whose training has finished is stored, none of this
worker's trials is left RUNNING, and the caller prints the summary.

A worker paused for longer than ``--grace`` (a suspended laptop, a migrated VM) finds its trial
failed by another process as dead (and retried, on a server database): it says so in one line,
drops that trial's result and carries on.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled
from tqdm.auto import tqdm

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

from study.search.cohort_trials import CohortRunner, finished_elsewhere, say_taken_over
from study.search.interrupts import STOP
from study.search.objective import Objective, keep_best_checkpoints
from study.search.progress import PlainProgress, trial_label, trial_line
from study.store.storage import storage_failure
from study.train.config import TrialConfig
from study.train.data import Dataset
from study.train.loop import EpochStats, TrainingRun

__all__ = ["FINISHED", "MOMENT_OBSERVERS", "run_trials", "waiting_retries"]

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
RUNNING = optuna.trial.TrialState.RUNNING

logger = logging.getLogger(__name__)


class _Claim:
    """An exclusive lock shared by the processes of one machine (a file lock in the temporary
    folder, named after ``key``); a no-op where the platform has no ``fcntl``."""

    def __init__(self, key: str) -> None:
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        self.path = Path(tempfile.gettempdir()) / f"optstudy-{digest}.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Wait for the lock. A wait cut short (Ctrl-C, a signal whose handler raises)
        holds nothing and leaves no file open, so a later call waits again."""
        if fcntl is None or self._file is not None:
            return
        file = open(self.path, "a")  # held from acquire to release
        try:
            fcntl.flock(file, fcntl.LOCK_EX)
        except BaseException:
            file.close()
            raise
        self._file = file

    def release(self) -> None:
        if self._file is None:
            return
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __enter__(self) -> _Claim:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


#: Observers of a trial's moments in this process, each called with the moment's name:
#: ``"started"`` (the objective begins), ``"epoch"`` (an epoch's result is reported, the
#: objective still running), ``"trained"`` (the objective returned, its value not yet stored)
#: and ``"stored"`` (Optuna stored the trial). Runs leave it empty; the signal
#: tests add an observer (``tests/hooked_run.py``) that signals the process at one moment.
MOMENT_OBSERVERS: list[Callable[[str], None]] = []


def _moment(name: str) -> None:
    for observe in MOMENT_OBSERVERS:
        observe(name)


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


def _count_finished(optuna_study: optuna.Study) -> int:
    return len(optuna_study.get_trials(deepcopy=False, states=FINISHED))


class _Progress:
    """What a run shows on stderr: a bar over trials (best accuracy so far), one over the
    running trial's epochs and one line per finished trial; where stderr is not a terminal, a
    plain progress line every few seconds instead of the bars (:mod:`study.search.progress`).
    Nothing at all when not ``enabled``."""

    def __init__(self, optuna_study: optuna.Study, *, epochs: int, target: int, finished: int,
                 enabled: bool) -> None:
        disable = None if enabled else True
        self.name = optuna_study.study_name
        self.epochs, self.target, self.enabled = epochs, target, enabled
        self.finished = finished  # counted here too: the bars count nothing when they are off
        self.trial_bar = tqdm(total=target, initial=finished, unit="trial", desc=self.name,
                              dynamic_ncols=True, disable=disable)
        self.epoch_bar = tqdm(total=epochs, unit="epoch", leave=False, position=1,
                              dynamic_ncols=True, disable=disable)
        self.plain = PlainProgress(enabled=None if enabled else False)

    def on_epoch(self, trial: optuna.Trial, stats: EpochStats) -> None:
        """The objective's per-epoch callback."""
        self._show_epoch(f"trial {trial.number} {trial_label(trial)}", stats)

    def on_cohort_epoch(self, numbers: list[int], epoch: int, best: EpochStats) -> None:
        """A cohort's per-epoch callback: the trials still training, the best member's
        stats."""
        name = (f"trial {numbers[0]}" if len(numbers) == 1 else
                f"trials {', '.join(map(str, numbers[:3]))}{', ...' if len(numbers) > 3 else ''}"
                f" ({len(numbers)} at once)")
        self._show_epoch(name, best, best="best ")

    def _show_epoch(self, name: str, stats: EpochStats, best: str = "") -> None:
        self.plain(lambda: f"{self.name}: {self.finished} of {self.target} trials finished; "
                           f"{name} epoch {stats.epoch}/{self.epochs}: loss "
                           f"{stats.train_loss:.3f}, {best}accuracy {stats.eval_accuracy:.4f}")
        if stats.epoch == 1:
            self.epoch_bar.reset(total=self.epochs)
        self.epoch_bar.set_description(name)
        self.epoch_bar.update(1)
        self.epoch_bar.set_postfix({"loss": f"{stats.train_loss:.3f}",
                                    f"{best.replace(' ', '_')}acc": f"{stats.eval_accuracy:.4f}"})
        _moment("epoch")

    def on_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Optuna's callback after each trial is stored."""
        if trial.state in FINISHED:
            self.trial_bar.update(1)
            self.finished += 1
        best = _best_value(study)
        if best is not None:
            self.trial_bar.set_postfix(best=f"{best:.4f}")
        if self.enabled:
            tqdm.write(trial_line(trial), file=sys.stderr)

    def close(self) -> None:
        self.epoch_bar.close()
        self.trial_bar.close()


def _claimed(objective: Objective, claim: _Claim | None) -> Callable[[optuna.Trial], float]:
    """``objective``, releasing ``claim`` first (the trial exists, RUNNING: the sibling workers
    count it from now on) and telling the observers when it starts and when it returns."""

    def run(trial: optuna.Trial) -> float:
        if claim is not None:
            claim.release()
        _moment("started")
        value = objective(trial)
        _moment("trained")
        return value

    return run


def _room(
    optuna_study: optuna.Study, *, count: Callable[[optuna.Study], int], target: int,
    siblings: int,
) -> int:
    """How many more trials this worker may ask for, between its cohorts: what the study
    still needs less the trials running elsewhere, shared with the ``siblings - 1`` other
    workers that may still ask; at least the waiting retries.

    Running trials count with siblings, and on a storage with heartbeats: called right after
    ``fail_stale_trials``, a RUNNING trial there is another command's, alive or dead for less
    than the grace period. So separate commands on one database do not each ask for a cohort
    the others already train. (A RUNNING trial that never had a heartbeat, asked outside
    ``study.run`` or killed before its first one, is never failed and keeps counting: cohorts
    get smaller, and the run goes on, at least one trial at a time.) Alone on a storage
    without heartbeats a RUNNING trial may be a crashed run's: it does not count."""
    counted = siblings > 1 or is_heartbeat_enabled(optuna_study._storage)
    running = len(optuna_study.get_trials(deepcopy=False, states=(RUNNING,))) if counted else 0
    needed = target - count(optuna_study) - running
    return max(-(-needed // siblings), len(waiting_retries(optuna_study)))


def _target_reached(
    optuna_study: optuna.Study, *, count: Callable[[optuna.Study], int], target: int,
    siblings: bool,
) -> bool:
    """Whether the study needs no further trial from this worker."""
    # With siblings a worker also counts what they are running: it does not begin a trial the
    # study will not need. Alone, only what is done counts (a RUNNING trial may be a crashed
    # run's).
    running = (len(optuna_study.get_trials(deepcopy=False, states=(RUNNING,)))
               if siblings else 0)
    # A retry of a dead worker's trial is run even past the target: left alone it would wait
    # for ever (optimize takes waiting trials first).
    return count(optuna_study) + running >= target and not waiting_retries(optuna_study)


def _callbacks(
    progress: _Progress, keep_checkpoints: int | None, checkpoints: Path | None
) -> list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]]:
    """Optuna's callbacks after each stored trial: the progress, the observers' ``stored``
    moment, and with ``keep_checkpoints`` K the pruning of all but the best K trials' files
    (only ever files in the ``checkpoints`` folder)."""
    callbacks = [progress.on_trial, lambda study, trial: _moment("stored")]
    if keep_checkpoints is not None and checkpoints is not None:
        callbacks.append(lambda study, trial: keep_best_checkpoints(
            study, keep_checkpoints, folder=checkpoints))
    return callbacks


def _taken_over(optuna_study: optuna.Study, begun: list[int], exc: Exception) -> bool:
    """Whether ``exc`` means that the trial this worker had begun (the last of ``begun``) was
    failed as dead by another process while this one was paused past the grace period; if
    so, says it in one line."""
    if not begun or not finished_elsewhere(exc):
        return False
    number = begun[-1]
    trial = next(t for t in optuna_study.get_trials(deepcopy=False) if t.number == number)
    if trial.state != optuna.trial.TrialState.FAIL:
        return False
    say_taken_over(number)
    return True


def _optimize_until(
    optuna_study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]],
    *,
    reached: Callable[[], bool],
    claim: _Claim | None,
    started: list[int],
) -> None:
    """Run trials one per ``optimize`` call until ``reached()`` or a stop is requested: the
    check comes before every trial. With ``claim`` the check and the trial's creation happen
    under the lock the sibling workers share, as one step: the study never runs more trials
    than the target (nor a grid point twice), however short the trials. ``started``: the
    numbers of the trials the objective began; one that another process failed as dead
    meanwhile (:func:`_taken_over`) is dropped, and the loop goes on."""
    while not STOP.requested:
        with claim or contextlib.nullcontext():
            if STOP.requested or reached():
                break
            before = len(started)
            try:
                optuna_study.optimize(objective, n_trials=1, callbacks=callbacks,
                                      gc_after_trial=False)
            except Exception as exc:
                if not _taken_over(optuna_study, started[before:], exc):
                    raise


def _optimize_cohorts_until(
    optuna_study: optuna.Study,
    runner: CohortRunner,
    *,
    size: int,
    room: Callable[[], int],
    reached: Callable[[], bool],
    claim: _Claim | None,
) -> None:
    """:func:`_optimize_until` for cohorts: ask up to ``size`` trials (no more than
    ``room()``, the trials the target still needs, but at least one: a waiting retry is run
    even past it), suggest each one's parameters before the next is asked, and train them
    together; until ``reached()`` or a stop is requested. With ``claim`` the check and the
    asks happen under the lock the sibling workers share."""
    while not STOP.requested:
        with claim or contextlib.nullcontext():
            if STOP.requested or reached():
                break
            with warnings.catch_warnings():
                # what optimize does before each trial; and the cohort runs a heartbeat for
                # each trial it asks for (Optuna warns that ask alone would not)
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.filterwarnings("ignore", "Heartbeat of storage is supposed")
                optuna.storages.fail_stale_trials(optuna_study)
                try:
                    for _ in range(max(1, min(size, room()))):
                        runner.add(optuna_study.ask())
                except BaseException:
                    runner.abandon()
                    raise
        runner.run()


def _closing_running_trials(
    loop: Callable[[], None], optuna_study: optuna.Study, *, started: list[int], url: str | None
) -> bool:
    """Run ``loop``; returns whether Ctrl-C or SIGTERM interrupted it. Either that or the
    database failing closes this worker's trials (``started``) still RUNNING as failed.

    Raises:
        StorageError: the database (``url``) failed.
    """
    try:
        loop()
    except KeyboardInterrupt:
        # Optuna marks a trial failed when the interrupt hits its objective; close any of
        # this worker's trials still RUNNING all the same.
        _close_running(optuna_study, started)
        return True
    except Exception as exc:
        failure = storage_failure(exc, url or "")
        if failure is None:
            raise
        _close_running(optuna_study, started)
        raise failure from None
    return False


def run_trials(
    optuna_study: optuna.Study,
    propose: Callable[[optuna.Trial], TrialConfig],
    data: Dataset,
    *,
    epochs: int,
    repeats: int = 1,
    target: int,
    finished: int,
    show_progress: bool = True,
    siblings: bool = False,
    done: Callable[[optuna.Study], int] | None = None,
    checkpoints: Path | None = None,
    keep_checkpoints: int | None = None,
    claim_key: str | None = None,
    url: str | None = None,
    make_run: Callable[[TrialConfig, Dataset], TrainingRun] = TrainingRun,
    cohort: int = 1,
    workers: int = 1,
) -> tuple[bool, float]:
    """Run trials until ``target`` are finished; returns (interrupted, wall seconds).

    Each trial trains ``propose(trial)`` with ``repeats`` seeds (:class:`Objective`).
    ``show_progress``: bars and a line per finished trial on stderr (off in a worker, whose
    parent shows them). ``siblings``: this process is one of ``workers`` workers; it counts
    their running trials towards the target and starts each trial under the lock they share,
    named by ``claim_key`` (the storage URL and study name). ``done(study)`` counts what the
    target counts (default: finished trials; a grid counts its distinct points). With
    ``checkpoints`` (a folder) each trial that completes or is pruned leaves a checkpoint per
    seed there; with ``keep_checkpoints`` K only the best K trials' files stay. ``make_run``:
    ``(config, data) -> run``, as ``Objective`` takes it (another model: ``partial(TrainingRun,
    model=factory)``). ``cohort`` N above 1 trains up to N trials at a time as one stacked
    model (the lab's MLP, without ``make_run`` and ``checkpoints``), each stored as one trained
    alone would be; each sibling asks for at most its share.

    Raises:
        StorageError: the database (``url``) failed during the run (a full disk, say); this
            worker's running trial is closed as failed where the database still allows.
    """
    if cohort > 1 and (make_run is not TrainingRun or checkpoints is not None):
        raise ValueError("cohorts train the lab's MLP without checkpoints: give cohort=1")
    progress = _Progress(optuna_study, epochs=epochs, target=target, finished=finished,
                         enabled=show_progress)
    claim = _Claim(claim_key) if siblings and claim_key else None
    callbacks = _callbacks(progress, keep_checkpoints, checkpoints)
    count = done or _count_finished
    reached = partial(_target_reached, optuna_study, count=count, target=target, siblings=siblings)
    if cohort > 1:
        runner = CohortRunner(optuna_study, propose, data, repeats=repeats, callbacks=callbacks,
                              on_epoch=progress.on_cohort_epoch, moment=_moment)
        room = partial(_room, optuna_study, count=count, target=target,
                       siblings=workers if siblings else 1)
        loop = partial(_optimize_cohorts_until, optuna_study, runner, size=cohort, room=room,
                       reached=reached, claim=claim)
        return _run_loop(loop, optuna_study, progress, started=runner.started, url=url)
    objective = Objective(propose, data, repeats=repeats, on_epoch=progress.on_epoch,
                          make_run=make_run, checkpoints=checkpoints)
    loop = partial(_optimize_until, optuna_study, _claimed(objective, claim), callbacks,
                   reached=reached, claim=claim, started=objective.started)
    return _run_loop(loop, optuna_study, progress, started=objective.started, url=url)


def _run_loop(
    loop: Callable[[], None], optuna_study: optuna.Study, progress: _Progress, *,
    started: list[int], url: str | None,
) -> tuple[bool, float]:
    """Run the trial ``loop`` with Ctrl-C and SIGTERM handled, closing the trials it
    ``started`` that are left running, then the progress display; returns (interrupted,
    wall seconds)."""
    start = time.perf_counter()
    with STOP.handling():
        try:
            interrupted = _closing_running_trials(loop, optuna_study, started=started, url=url)
        finally:
            progress.close()
        interrupted = interrupted or STOP.requested
    return interrupted, time.perf_counter() - start

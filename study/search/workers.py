"""``--workers W``: W local worker processes on one study, one progress display.

Each worker is ``python -m study.run`` itself with the same options, ``--workers 1``, its own
sampler seed and ``cores / W`` torch threads, running quietly; they share the study through
its storage (SQLite or PostgreSQL), and each stops when the study reaches its target. This
process shows one bar over the study's finished trials, a line per finished trial and the
running trials' epochs. Ctrl-C or SIGTERM stops every worker (each marks its running trial
failed) and a re-run continues.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO

import optuna
from tqdm.auto import tqdm

from study.search.interrupts import STOP
from study.search.progress import PlainProgress, trial_label, trial_line
from study.search.trial_loop import FINISHED
from study.store import records

__all__ = ["WorkerFailed", "run_workers", "default_workers", "cpu_cores"]

#: Seconds between looks at the storage.
POLL = 1.0
#: Seconds a worker gets to close its running trial after SIGTERM before it is killed.
STOP_TIMEOUT = 60.0


class WorkerFailed(Exception):
    """A worker exited with an error; the message is its own one-line error."""


def cpu_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(device: str) -> int:
    """Two workers on a CPU with two cores or more; on a GPU, one per two CPU cores, at most
    eight, sharing the GPU.

    On a CPU, separate single-threaded processes train more epochs per second than one
    process whose torch threads split each small matrix product. On a GPU an MLP at batch 64
    is bound by kernel launches, which one process issues one at a time, so several processes
    keep the GPU busy. The measurements are in docs/speed.md and ``python -m bench.study_time``.
    """
    if device != "cpu":
        return max(1, min(8, cpu_cores() // 2))
    return 2 if cpu_cores() >= 2 else 1


@dataclass
class _Worker:
    process: subprocess.Popen
    stderr: IO[bytes]

    def error(self) -> str:
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {self.process.returncode}"


def run_workers(
    argv: list[str],
    optuna_study: optuna.Study,
    *,
    workers: int,
    threads: int,
    seed: int,
    target: int,
    finished: int,
) -> tuple[bool, float]:
    """Run ``python -m study.run argv`` as ``workers`` quiet worker processes until the
    study has ``target`` finished trials; returns (interrupted, wall seconds).

    Raises:
        WorkerFailed: a worker stopped with an error (the others are stopped too).
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    pool: list[_Worker] = []
    start = time.perf_counter()
    bar = tqdm(total=target, initial=finished, unit="trial", desc=optuna_study.study_name,
               dynamic_ncols=True, disable=None)
    shown = {t.number for t in optuna_study.get_trials(deepcopy=False, states=FINISHED)}
    plain = PlainProgress()
    with STOP.handling():
        interrupted = _watch(pool, argv, optuna_study, bar, shown, plain, workers=workers,
                             threads=threads, seed=seed, env=env)
    return interrupted, time.perf_counter() - start


def _watch(
    pool: list[_Worker],
    argv: list[str],
    optuna_study: optuna.Study,
    bar: tqdm,
    shown: set[int],
    plain: PlainProgress,
    *,
    workers: int,
    threads: int,
    seed: int,
    env: dict[str, str],
) -> bool:
    """Start the workers and show their progress until they end or a stop is asked for
    (then stop them); returns whether the run was interrupted."""
    interrupted = False
    try:
        for k in range(workers):
            cmd = [sys.executable, "-m", "study.run", *argv, "--workers", "1",
                   "--threads", str(threads), "--seed", str(seed + k), "--worker"]
            err = tempfile.TemporaryFile()
            # A session of its own: a Ctrl-C at the terminal reaches this process only, which
            # stops each worker once (a second signal could cut a worker's clean-up short).
            pool.append(_Worker(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                                 env=env, start_new_session=True), err))
        while True:
            done = all(w.process.poll() is not None for w in pool)
            _show_progress(optuna_study, bar, shown, plain)
            failed = [w for w in pool if w.process.returncode not in (None, 0, 130)]
            if failed:
                _stop(pool)
                raise WorkerFailed(failed[0].error())
            if done:
                interrupted = any(w.process.returncode == 130 for w in pool)
                break
            deadline = time.monotonic() + POLL
            while time.monotonic() < deadline and not STOP.requested:
                time.sleep(0.05)
            if STOP.requested:
                interrupted = True
                _stop(pool)  # further signals are absorbed: each worker is stopped once
                _show_progress(optuna_study, bar, shown, plain)
                break
    except BaseException:
        _stop(pool)  # never leave workers running without this process
        raise
    finally:
        bar.close()
        for worker in pool:
            worker.stderr.close()
    return interrupted


def _stop(pool: list[_Worker]) -> None:
    """SIGTERM every worker still running (each marks its trial failed), then wait."""
    for worker in pool:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for worker in pool:
        try:
            worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def _show_progress(
    optuna_study: optuna.Study, bar: tqdm, shown: set[int], plain: PlainProgress
) -> None:
    trials = optuna_study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state.is_finished() and trial.number not in shown:
            shown.add(trial.number)
            if trial.state in FINISHED:
                bar.update(1)
            tqdm.write(trial_line(trial), file=sys.stderr)
    complete = [t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    postfix = {"best": f"{max(complete):.4f}"} if complete else {}
    for t in running:
        epochs = len(t.user_attrs.get(records.EVAL_ACCURACY, []))
        postfix[f"#{t.number}"] = f"{trial_label(t)} epoch {epochs + 1}"
    bar.set_postfix(postfix, refresh=True)
    n_finished = sum(t.state in FINISHED for t in trials)
    plain(lambda: f"{optuna_study.study_name}: {n_finished} of {bar.total} trials finished"
                  + "".join(f"; {k} {v}" for k, v in postfix.items()))

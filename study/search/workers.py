"""``--workers W``: W local worker processes on one study, one progress display.

Each worker is ``python -m study.run`` itself with the same options, ``--workers 1``, its own
sampler seed and ``cores / W`` torch threads, running quietly; they share the study through
its storage (SQLite or PostgreSQL), and each stops when the study reaches its target. This
process shows one bar over the study's finished trials, a line per finished trial and the
running trials' epochs. Ctrl-C or SIGTERM stops every worker (each marks its running trial
failed) and a re-run continues.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import IO

import optuna
from tqdm.auto import tqdm

from study.search.interrupts import STOP
from study.search.progress import PlainProgress, running_label, trial_line
from study.search.trial_loop import FINISHED

__all__ = [
    "WorkerFailed", "run_workers", "default_workers", "default_cohort", "COHORT_NETWORKS",
    "MAX_COHORT", "COHORT_LIMIT", "NETWORK_BYTES", "cohort_memory_cap",
    "cpu_cores", "stop_with_parent", "worker_storage", "sibling_workers", "STORAGE_ENV",
]

#: Seconds between looks at the storage.
POLL = 1.0
#: Seconds a worker gets to close its running trial after SIGTERM before it is killed.
STOP_TIMEOUT = 60.0
#: The environment variable that gives a worker the ``--storage`` URL: on its command line
#: the URL's password would show to every user of the machine (``ps``).
STORAGE_ENV = "OPTSTUDY_WORKER_STORAGE"
#: How many workers share the study, for each of them: a worker training cohorts asks for
#: no more than its share of the trials left.
WORKERS_ENV = "OPTSTUDY_WORKERS"
#: The environment variable that gives a worker its parent's process id.
PARENT_ENV = "OPTSTUDY_WORKER_PARENT"
#: The prefix of the one-line error a worker prints; the parent prints its own.
_ERROR_PREFIX = re.compile(r"^python -m study\.run: error: ")
#: ``prctl`` option: the signal the kernel sends this process when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


class WorkerFailed(Exception):
    """A worker exited with an error; the message is its own one-line error."""


def cpu_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: Networks one cohort trains at once (``--cohort``): by default on a CPU, where a stack of 4
#: to 8 trains about 1.5x the member-epochs per second of one network per process
#: (docs/speed.md, ``python -m bench.cohort_speed``) and pruning shrinks it; on a GPU, what
#: ``--cohort`` is sized against in the docs (cohorts are not the default there: the cohort
#: trainer has not been measured on a GPU yet).
COHORT_NETWORKS = {"cpu": 8, "cuda": 64}
#: The most trials ``--cohort`` takes, and why (the refusal of more says it).
MAX_COHORT = 1024
COHORT_LIMIT = ("each network of a cohort holds its weights, gradients and optimizer state "
                "in memory at once (about 9 MB for the lab's MLP)")


#: Device memory one network of a cohort needs, rounded up: the lab's MLP's 535,818
#: parameters with their gradients, two optimizer moments and a bf16 copy (4.5 x 4 bytes
#: each, 9.6 MB), and its batch order and losses over an epoch (1.2 MB). The data and the
#: chunked evaluation (80 MB for the whole cohort) are shared.
NETWORK_BYTES = 16 * 2**20
#: The share of the free device memory a cohort may plan to take.
MEMORY_SHARE = 0.8


def cohort_memory_cap(free_bytes: int, repeats: int) -> int:
    """The most trials of ``repeats`` networks each that fit in :data:`MEMORY_SHARE` of
    ``free_bytes`` of device memory (at least one: a single trial is never refused here)."""
    return max(1, int(free_bytes * MEMORY_SHARE) // (NETWORK_BYTES * repeats))


def default_cohort(device: str, repeats: int) -> int:
    """Trials one cohort trains at once by default: on a CPU, :data:`COHORT_NETWORKS`
    networks over the seeds per trial, at least two (a cohort); on a GPU one (the workers
    measured there; ``--cohort`` asks for cohorts)."""
    if device != "cpu":
        return 1
    return max(2, COHORT_NETWORKS["cpu"] // repeats)


def default_workers(device: str, cohort: int = 1, *, independent: bool = False) -> int:
    """Worker processes by default.

    One trial at a time: two on a CPU with two cores or more; on a GPU, one per two CPU
    cores, at most eight, sharing the GPU. On a CPU, separate single-threaded processes train
    more epochs per second than one process whose torch threads split each small matrix
    product. On a GPU an MLP at batch 64 is bound by kernel launches, which one process
    issues one at a time, so several processes keep the GPU busy.

    In cohorts (``cohort`` above 1): one process, which keeps a study whose sampler learns
    from its trials reproducible from its seed; but where no trial depends on another's
    result (``independent``: a grid, fixed configurations), on a CPU the two single-threaded
    processes of one trial at a time, each training cohorts, which is faster there. The
    measurements are in docs/speed.md, ``python -m bench.study_time`` and
    ``python -m bench.cohort_speed``.
    """
    if cohort > 1 and not (independent and device == "cpu"):
        return 1
    if device != "cpu":
        return max(1, min(8, cpu_cores() // 2))
    return 2 if cpu_cores() >= 2 else 1


def sibling_workers() -> int:
    """In a worker: how many workers share the study (itself included); 1 elsewhere."""
    value = os.environ.get(WORKERS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def worker_storage() -> str | None:
    """In a worker: the ``--storage`` URL its parent passed through the environment."""
    return os.environ.get(STORAGE_ENV) or None


def stop_with_parent() -> None:
    """In a worker: be sent SIGTERM (a clean stop: the running trial is marked failed) when
    the parent process dies, even by SIGKILL, and stop at once if it is already gone.

    Linux has the kernel send the signal (``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread
    looks for the parent every second.
    """
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    else:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it died before the kernel was asked to tell
        os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class _Worker:
    number: int  # 1, 2, ... as the messages name it
    process: subprocess.Popen
    stderr: IO[bytes]
    read: int = 0  # bytes of its stderr already looked through for warnings

    def warnings(self) -> list[str]:
        """The warnings the worker logged since the last call, whole lines only. Read at an
        offset (``pread``): the worker writes through the same open file, and moving its
        position would move where the worker writes."""
        if not hasattr(os, "pread"):
            return []
        data = os.pread(self.stderr.fileno(), 1 << 20, self.read)
        end = data.rfind(b"\n") + 1
        self.read += end
        lines = data[:end].decode(errors="replace").splitlines()
        return [line for line in lines if line.startswith("WARNING ")]

    def error(self) -> str:
        """Why the worker stopped, one line: its own error, without its prefix, or the
        signal that killed it."""
        code = self.process.returncode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else "?"
            return (f"worker {self.number} was killed (signal {-code}, {name}); the other "
                    "workers were stopped. Run the same command to continue.")
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        if not lines:
            return f"worker {self.number} stopped with exit code {code}."
        return _ERROR_PREFIX.sub("", lines[-1])


def run_workers(
    argv: list[str],
    optuna_study: optuna.Study,
    *,
    workers: int,
    threads: int,
    seed: int,
    target: int,
    finished: int,
    storage: str | None = None,
) -> tuple[bool, float]:
    """Run ``python -m study.run argv`` as ``workers`` quiet worker processes until the
    study has ``target`` finished trials; returns (interrupted, wall seconds).

    ``storage`` (the ``--storage`` URL, left out of ``argv``) reaches the workers through
    their environment, never their command line. Each worker stops when this process dies.

    Raises:
        WorkerFailed: a worker stopped with an error (the others are stopped too).
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid()),
           WORKERS_ENV: str(workers)}
    env.pop(STORAGE_ENV, None)
    if storage:
        env[STORAGE_ENV] = storage
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
            pool.append(_Worker(k + 1, subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True),
                err))
        while True:
            # Every worker polled (not all(), which stops at the first one running): a
            # failed worker is noticed at once, whichever it is.
            done = all([w.process.poll() is not None for w in pool])
            _show_progress(optuna_study, bar, shown, plain)
            for worker in pool:  # this process shows what its quiet workers warn of
                for line in worker.warnings():
                    tqdm.write(f"worker {worker.number}: {line}", file=sys.stderr)
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
        postfix[f"#{t.number}"] = running_label(t)
    bar.set_postfix(postfix, refresh=True)
    n_finished = sum(t.state in FINISHED for t in trials)
    plain(lambda: f"{optuna_study.study_name}: {n_finished} of {bar.total} trials finished"
                  + "".join(f"; {k} {v}" for k, v in postfix.items()))

"""What the tests that start real ``python -m study.run`` processes share: the command, the
child's environment and the least training a real process needs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: ``python -m study.run`` with test hooks (``--signal-at``, ``--start-file``): see its
#: docstring.
HOOKED_RUN = Path(__file__).resolve().parent / "hooked_run.py"
#: One epoch of 500 examples, one worker on one thread, one trial at a time: a trial that
#: costs little more than the process start. (``COHORT`` trains them in cohorts.)
TINY = [
    "--epochs", "1", "--train-size", "500", "--batch-size", "100",
    "--workers", "1", "--threads", "1", "--cohort", "1",
]
#: TINY's trials trained two at a time as one cohort.
COHORT = [*TINY[:-1], "2"]


def child_env(**extra: str) -> dict[str, str]:
    """A child's environment: this checkout importable, output unbuffered."""
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **extra}


def study_run(*args: str) -> list[str]:
    """The command ``python -m study.run ARGS`` in this interpreter."""
    return [sys.executable, "-m", "study.run", *args]


def hooked_run(*hooks: str, args: list[str]) -> list[str]:
    """``study.run`` with ``args`` under the test hooks ``hooks`` (``tests/hooked_run.py``)."""
    return [sys.executable, str(HOOKED_RUN), *hooks, "--", *args]


def paused_past_grace(
    moment: str, args: list[str], *, cwd: Path, url: str, study_name: str,
    dead: Callable[[list], bool],
) -> tuple[int, str, str]:
    """Run ``study.run`` with ``args`` (``--heartbeat 1 --grace 2`` among them) stopped by
    SIGSTOP at ``moment``; meanwhile this process, as another worker would, fails the
    trials silent past their grace until ``dead(trials)`` holds; then let the run go on
    and wait for its end. Returns its exit code, stdout and stderr."""
    import optuna

    from study.store.storage import open_storage

    run = subprocess.Popen(hooked_run("--signal-at", f"{moment}:SIGSTOP", args=args),
                           cwd=cwd, env=child_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            pid, status = os.waitpid(run.pid, os.WNOHANG | os.WUNTRACED)
            if pid and os.WIFSTOPPED(status):
                break
            assert not pid, f"the run ended (status {status}) before it paused"
            assert time.monotonic() < deadline, "it never paused"
            time.sleep(0.02)
        optuna_study = optuna.load_study(study_name=study_name,
                                         storage=open_storage(url, heartbeat=1, grace=2))
        while not dead(optuna_study.get_trials()):
            assert time.monotonic() < deadline, "the trials never counted as dead"
            optuna.storages.fail_stale_trials(optuna_study)
            time.sleep(0.2)
        os.kill(run.pid, signal.SIGCONT)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    return run.returncode, out, err

"""What the tests that start real ``python -m study.run`` processes share: the command, the
child's environment and the least training a real process needs."""

from __future__ import annotations

import os
import sys
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

"""Ctrl-C and SIGTERM as a request to stop, acted on only where stopping loses nothing.

A signal that raised ``KeyboardInterrupt`` wherever it landed could cut Optuna's own
bookkeeping short: after the objective returned but before the value was stored (the trial
left RUNNING, its result lost), between a trial's creation and its objective, or in the middle
of a storage write. Inside :meth:`Interrupts.handling` a signal only records the request;
it raises ``KeyboardInterrupt`` at once only inside :meth:`Interrupts.interruptible` (pure
training, where Optuna marks the trial failed), and :meth:`Interrupts.check` raises it at the
next safe point. A second signal while the first is being handled is absorbed.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna

from study.store.storage import storage_failure

__all__ = ["Interrupts", "STOP", "SIGNALS"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """The process's stop request (one instance, :data:`STOP`)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._depth = 0
        self._armed = False
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """A signal arrived since the outermost :meth:`handling` began."""
        return self.signum is not None

    @property
    def name(self) -> str:
        """The signal's name (``SIGINT``, ``SIGTERM``), or ``""``."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @contextmanager
    def handling(self) -> Iterator[Interrupts]:
        """SIGINT and SIGTERM record a stop request while inside (nestable; the outermost
        installs the handlers and restores the previous ones). Outside the main thread, where
        Python cannot install handlers, it changes nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        if self._depth == 0:
            self.signum = None
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
            _OPTUNA_LOG.addFilter(_HIDE)
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if self._depth == 0:
                for sig, handler in self._previous.items():
                    signal.signal(sig, handler)
                self._previous = {}
                self._armed = False
                _OPTUNA_LOG.removeFilter(_HIDE)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        if self._armed:
            self._armed = False
            raise KeyboardInterrupt(signal.Signals(signum).name)

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a stop was requested."""
        if self.signum is not None:
            raise KeyboardInterrupt(self.name)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """A region a signal may interrupt at once (training: Optuna fails the trial)."""
        self.check()
        self._armed = self._depth > 0
        try:
            yield
        finally:
            self._armed = False

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """Inside :meth:`interruptible`, a region a signal must not cut (storing a trial
        between a cohort's epochs): a signal is only recorded there, and the caller calls
        :meth:`check` at its next safe point."""
        armed, self._armed = self._armed, False
        try:
            yield
        finally:
            # a signal recorded here leaves the rest unarmed: a second one cannot cut what
            # the caller does before its check
            self._armed = armed and self.signum is None

    def disarm(self) -> None:
        """Inside :meth:`interruptible`: from here to its end a signal is only recorded (the
        training it guards is over)."""
        self._armed = False


#: The one stop request of this process.
STOP = Interrupts()


class _HideInterruptedTrials(logging.Filter):
    """Drop Optuna's warning (with a traceback) for a trial failed by Ctrl-C, SIGTERM, the
    database failing or another process (which failed it as dead while this one was paused),
    and its "failed with value None" line: the command says it in one line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, KeyboardInterrupt | optuna.exceptions.UpdateFinishedTrialError) or (
            exc is not None and storage_failure(exc, "") is not None):
            return False
        return "failed with value None" not in record.getMessage()


_OPTUNA_LOG = logging.getLogger("optuna.study._optimize")
_HIDE = _HideInterruptedTrials()

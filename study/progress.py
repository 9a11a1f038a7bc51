"""Progress where tqdm's bars are off: stderr is not a terminal (a log file, CI, ``nohup``).

tqdm draws nothing there, so without this a run would be silent until its first trial ends
(minutes on a busy machine). :class:`PlainProgress` prints one plain line at most every
:data:`EVERY` seconds instead, and nothing when stderr is a terminal (the bars show it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["EVERY", "PlainProgress"]

#: Seconds between two plain progress lines.
EVERY = 10.0


class PlainProgress:
    """Plain progress lines, throttled: ``progress(lambda: "...")`` prints the line only
    when :data:`EVERY` seconds have passed since the last one (the text is built only then).

    Args:
        enabled: print at all; default when ``stream`` is not a terminal.
        every: the least seconds between two lines.
        stream: where to print (default stderr).
    """

    def __init__(
        self, *, enabled: bool | None = None, every: float = EVERY, stream: TextIO | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = not (isatty and isatty())
        self.enabled = enabled
        self.every = every
        self.start = time.monotonic()
        self._last = -float("inf")

    def __call__(self, text: Callable[[], str]) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        minutes, seconds = divmod(int(now - self.start), 60)
        print(f"[{minutes}m{seconds:02d}s] {text()}", file=self.stream, flush=True)

"""What a run shows while it works: one line per finished trial, and plain progress lines
where tqdm's bars are off.

Progress where tqdm's bars are off: stderr is not a terminal (a log file, CI, ``nohup``).

tqdm draws nothing there, so without this a run would be silent until its first trial ends
(minutes on a busy machine). :class:`PlainProgress` prints one plain line at most every
:data:`EVERY` seconds instead, and nothing when stderr is a terminal (the bars show it).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

import optuna

from study.store import records

__all__ = ["EVERY", "PlainProgress", "running_label", "trial_label", "trial_line"]

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


def trial_label(trial: optuna.trial.FrozenTrial | optuna.Trial) -> str:
    """What a trial runs, in a word: its fixed configuration's name in a space of fixed runs
    (``sgd-multistep``), else its optimizer (``adam``); empty before it has either."""
    fixed = trial.user_attrs.get(records.FIXED_TRIAL)
    if fixed:
        return str(fixed).partition("=")[2]
    return (trial.user_attrs.get(records.CONFIG, {}).get("optimizer")
            or trial.params.get("optimizer", ""))


def running_label(trial: optuna.trial.FrozenTrial) -> str:
    """A running trial as the progress display shows it: ``adam epoch 3/5`` (the epoch it
    trains now, of its epochs), ``adam finishing`` once every epoch has run (the test set,
    the checkpoint), ``starting`` before it has a configuration."""
    label = trial_label(trial)
    if not label:
        return "starting"
    done = len(trial.user_attrs.get(records.EVAL_ACCURACY, []))
    total = trial.user_attrs.get(records.CONFIG, {}).get("epochs")
    if total is None:
        return f"{label} epoch {done + 1}"
    return f"{label} finishing" if done >= total else f"{label} epoch {done + 1}/{total}"


def trial_line(trial: optuna.trial.FrozenTrial) -> str:
    """``trial   3 adam    lr 1.20e-04  accuracy 0.9676  (5 epochs, 18.7 s)``."""
    attrs = trial.user_attrs
    config = attrs.get(records.CONFIG, {})
    epochs = len(attrs.get(records.EVAL_ACCURACY, []))
    seconds = sum(attrs.get(records.EPOCH_SECONDS, []))
    head = f"trial {trial.number:>3} {trial_label(trial) or '?':<7} "
    head += f"lr {config.get('lr', math.nan):.2e}"
    if attrs.get(records.DIVERGED):
        outcome = (f"diverged at lr {attrs[records.DIVERGED_LR]:.2e} "
                   f"(epoch {attrs[records.DIVERGED_EPOCH]})")
    elif trial.state == optuna.trial.TrialState.PRUNED:
        outcome = f"pruned after epoch {epochs}: {trial.value:.4f}"
    elif trial.state == optuna.trial.TrialState.COMPLETE:
        outcome = f"accuracy {trial.value:.4f}"
    else:
        outcome = trial.state.name.lower()
    return f"{head}  {outcome}  ({epochs} epoch{'' if epochs == 1 else 's'}, {seconds:.1f} s)"

"""``python -m study.run`` with test hooks, for the tests that run it as a real process::

    python tests/hooked_run.py [--signal-at MOMENT:SIGNAL] [--start-file PATH] -- ARGS

runs ``study.run.main(ARGS)`` after installing the hooks asked for:

``--signal-at MOMENT:SIGNAL``
    the process sends itself SIGNAL (``SIGINT``, ``SIGTERM``, or ``SIGSTOP``: it pauses until
    the test sends ``SIGCONT``) once, at the first trial's
    MOMENT: ``created`` (the storage made the trial, before its heartbeat), ``started`` (the
    objective begins), ``epoch`` (an epoch is reported, the objective still running),
    ``trained`` (the objective returned, its value not yet stored) or ``stored`` (Optuna
    stored the trial).
``--start-file PATH``
    when about to open the storage, the process touches ``PATH.<pid>`` and waits until
    ``PATH`` exists: a test starts several processes, waits for all of them to be ready, then
    creates ``PATH`` to let them open the storage at the same instant.

The hooks act in this process only. With ``--workers N`` (N > 1) this process trains nothing
and its workers run ``python -m study.run`` without hooks, so the tests that use a hook run
``--workers 1``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

MOMENTS = ("created", "started", "epoch", "trained", "stored")


def _moment_and_signal(value: str) -> tuple[str, signal.Signals]:
    moment, _, name = value.partition(":")
    if moment not in MOMENTS or name not in ("SIGINT", "SIGTERM", "SIGSTOP"):
        raise argparse.ArgumentTypeError(
            f"expected MOMENT:SIGNAL with MOMENT one of {', '.join(MOMENTS)} and SIGNAL SIGINT, "
            f"SIGTERM or SIGSTOP, but got {value!r}"
        )
    return moment, signal.Signals[name]


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The hooks' options, and the arguments after ``--`` for ``study.run``."""
    parser = argparse.ArgumentParser(prog="tests/hooked_run.py")
    parser.add_argument("--signal-at", type=_moment_and_signal, metavar="MOMENT:SIGNAL")
    parser.add_argument("--start-file", type=Path, metavar="PATH")
    if "--" not in argv:
        parser.error("put the study.run arguments after --")
    split = argv.index("--")
    return parser.parse_args(argv[:split]), argv[split + 1:]


def _signal_once_at(moment: str, signum: signal.Signals) -> None:
    """Send ``signum`` to this process at the first ``moment`` of a trial."""
    import optuna

    from study.search import trial_loop

    fired: list[str] = []

    def observe(name: str) -> None:
        if name == moment and not fired:
            fired.append(name)
            os.kill(os.getpid(), signum)

    trial_loop.MOMENT_OBSERVERS.append(observe)
    # Optuna's trial loop asks for the trial (the storage creates it) and only then starts
    # its heartbeat: the end of ``ask`` is the ``created`` moment.
    ask: Callable[..., optuna.Trial] = optuna.study.Study.ask

    def ask_then_observe(self: optuna.Study, *args: object, **kwargs: object) -> optuna.Trial:
        trial = ask(self, *args, **kwargs)
        observe("created")
        return trial

    optuna.study.Study.ask = ask_then_observe  # type: ignore[method-assign]


def _start_together(path: Path) -> None:
    """Make ``open_storage`` touch ``PATH.<pid>`` and wait for ``path`` before it opens.

    ``study.run`` imports the function by name, so this must run before ``study.run`` is
    imported."""
    from study.store import storage

    open_storage = storage.open_storage

    def open_when_told(url: str, **kwargs: object) -> object:
        Path(f"{path}.{os.getpid()}").touch()
        while not path.exists():
            time.sleep(0.001)
        return open_storage(url, **kwargs)

    storage.open_storage = open_when_told  # type: ignore[assignment]


def main(argv: list[str]) -> int:
    hooks, run_argv = _parse(argv)
    if hooks.start_file is not None:
        _start_together(hooks.start_file)
    if hooks.signal_at is not None:
        _signal_once_at(*hooks.signal_at)
    import study.run  # after the hooks: see _start_together

    code = study.run.main(run_argv)
    # As ``python -m study.run`` exits: a late Ctrl-C (a second one) changes nothing now.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

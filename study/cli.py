"""What the command-line entry points share: one-line usage errors, help that shows every
default, argument types that name the bad value, the device and the toolkit version."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import optuna
import torch

from study.search.workers import cpu_cores, default_cohort, default_workers
from study.store.storage import StorageError
from study.train.config import ConfigError
from study.train.data import DATA_DIR_ENV, DataError

__all__ = [
    "UsageError",
    "HelpFormatter",
    "Parser",
    "registry_name",
    "positive_int",
    "int_in",
    "float_in",
    "positive_float",
    "number",
    "resolve_device",
    "toolkit_version",
    "torch_threads",
    "set_training_threads",
    "add_machine_options",
]


class UsageError(Exception):
    """A bad command-line value; exits with code 2 and one line."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        # Options whose default is computed say so in their help; don't add "(default: None)".
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other user mistake, instead of usage + error.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def registry_name(lookup: Any) -> Any:
    def convert(value: str) -> str:
        try:
            lookup(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return convert


def _number_type(
    parse: Callable[[str], Any], accepts: Callable[[Any], bool], wanted: str
) -> Callable[[str], Any]:
    """An argument type: ``parse(value)`` where ``accepts`` it, else an error that says what
    is ``wanted`` and names the value given."""

    def convert(value: str) -> Any:
        try:
            number = parse(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, but got {value!r}") from None
        if not accepts(number):
            raise argparse.ArgumentTypeError(f"must be {wanted}, but got {value!r}")
        return number

    return convert


def int_in(low: int, high: int | None = None, *, why: str = "") -> Callable[[str], int]:
    """An argument type: an integer from ``low`` to ``high`` (no upper bound when ``high`` is
    None); ``why``, when given, follows the range in brackets in the error (the reason for
    the bounds)."""
    wanted = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    top = math.inf if high is None else high
    return _number_type(int, lambda n: low <= n <= top, wanted + (f" ({why})" if why else ""))


def float_in(
    low: float, high: float = math.inf, *, above: bool = False
) -> Callable[[str], float]:
    """An argument type: a finite number from ``low`` (only above it, where ``above``) to
    ``high``; NaN and infinities are refused."""
    if math.isinf(high):
        wanted = f"a finite number {'>' if above else '>='} {low:g}"
    else:
        wanted = f"a number in {'(' if above else '['}{low:g}, {high:g}]"

    def accepts(number: float) -> bool:
        inside = low < number if above else low <= number
        return math.isfinite(number) and inside and number <= high

    return _number_type(float, accepts, wanted)


#: An argument type: an integer >= 1.
positive_int = int_in(1)
#: An argument type: a finite number > 0.
positive_float = float_in(0, above=True)
#: An argument type: any number (the command checks its range, naming the setting).
number = _number_type(float, lambda _: True, "a number")


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but torch sees no CUDA device; use --device cpu.")
    return name




def toolkit_version() -> str:
    """The installed version of this toolkit, recorded with every study."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("optstudy")
    except PackageNotFoundError:
        return "unknown"


def torch_threads(threads: int | None, *, workers: int) -> int:
    """The torch threads of each of ``workers`` training processes: ``threads`` (the
    ``--threads`` given), else an equal share of the CPU cores this process may use, at
    least 1. Never torch's own default, which takes every core of the machine."""
    return threads or max(1, cpu_cores() // workers)


def set_training_threads(threads: int | None, device: str, *, cohort: int | None = None
                         ) -> int:
    """Set torch's threads for a command that trains in one process (``study.confirm``,
    ``study.lr_range``) as ``study.run`` sets them for a sampled study trained ``cohort``
    trials at a time (default: ``study.run``'s cohort): one at a time, 1 thread on a 2-core
    CPU (each of two workers); in cohorts, one process with every core. Returns the number
    set.

    One process whose threads split each small matrix product of this MLP trains slower
    than one thread per process, and several times slower while anything else runs on the
    machine (its threads wait for each other)."""
    if cohort is None:
        cohort = default_cohort(device, 1)
    count = torch_threads(threads, workers=default_workers(device, cohort))
    torch.set_num_threads(count)
    return count


def add_machine_options(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, ``--device`` and ``--threads``, as every command that trains in one
    process takes them (``study.run`` has its own ``--threads``, per worker)."""
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="folder with the four MNIST .gz IDX files (default: "
                        f"${DATA_DIR_ENV} if set, else the copy installed with the package)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where training runs; auto picks cuda when available")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch (default: as each of study.run's default "
                        "workers has, CORES/W: 1 on a 2-core CPU)")


def run_command(
    prog: str,
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None,
    *,
    errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Parse ``argv`` and run ``body(args)`` as a command: logging to stderr, Optuna's own
    chatter quiet, and a user mistake (``UsageError``, ``ConfigError``, ``DataError``,
    ``StorageError`` or one of ``errors``) one line and exit code 2, never a traceback."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option (already printed)
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return body(args)
    except (UsageError, ConfigError, DataError, StorageError, *errors) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2

"""What the command-line entry points share: one-line usage errors, help that shows every
default, argument types that name the bad value, the device and the toolkit version."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

import torch

__all__ = [
    "UsageError",
    "HelpFormatter",
    "Parser",
    "registry_name",
    "positive_int",
    "resolve_device",
    "toolkit_version",
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


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, but got {value!r}")
    return number


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

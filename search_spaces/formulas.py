"""Values that follow a study's epochs, written as arithmetic in ``epochs``.

A range that depends on the run's length (a warm-up of at most half the run, a step size up
to the last epoch) is declared as data, so that a space written to a TOML file keeps it a
function of the epochs instead of the numbers of one run length::

    Range(0.0, Formula("min(1.0, epochs / 2)"))          # in Python
    warmup_epochs = { low = 0.0, high = "min(1.0, epochs / 2)" }   # in a space file

A formula uses numbers, ``epochs``, ``+ - * / //``, parentheses, ``min``, ``max`` and
``round``; nothing else is evaluated. :func:`at_epochs` turns any declared value (a
formula, a :class:`Range`, :class:`Choices`, a function of the epochs, or a list or table
holding them) into its value for a run of so many epochs.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

__all__ = ["Formula", "Range", "Choices", "at_epochs", "mentions_epochs"]

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv}
_SIGNS = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCTIONS = {"min": min, "max": max, "round": round}
_ALLOWED = "numbers, epochs, + - * / //, parentheses, min, max and round"


def mentions_epochs(text: str) -> bool:
    """Whether ``text`` uses the name ``epochs`` (a space file's formula does)."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return "epochs" in text
    return any(isinstance(node, ast.Name) and node.id == "epochs" for node in ast.walk(tree))


def _refused(tree: ast.AST) -> str | None:
    """The first part of a parsed formula it may not hold, as text; ``None`` when none."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            allowed = type(node.value) in (int, float)
        elif isinstance(node, ast.Name):
            allowed = node.id == "epochs" or (id(node) in called and node.id in _FUNCTIONS)
        elif isinstance(node, ast.Call):
            allowed = (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
                       and not node.keywords and bool(node.args))
        else:
            allowed = isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Load, *_OPERATORS,
                                        *_SIGNS))
        if not allowed:
            return ast.unparse(node) or type(node).__name__
    return None


def _evaluate(node: ast.AST, epochs: int) -> Any:
    """``node`` of a checked formula, for ``epochs``; raises ValueError on what it refuses."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id == "epochs":
        return epochs
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left, epochs),
                                         _evaluate(node.right, epochs))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _SIGNS:
        return _SIGNS[type(node.op)](_evaluate(node.operand, epochs))
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS and not node.keywords and node.args):
        return _FUNCTIONS[node.func.id](*(_evaluate(a, epochs) for a in node.args))
    raise ValueError(f"cannot evaluate {ast.unparse(node)!r}")


@dataclass(frozen=True)
class Formula:
    """A number that follows the run's length: ``Formula("epochs / 4")(8) == 2.0``.

    Raises:
        ValueError: ``text`` is not arithmetic in ``epochs``; the message says what is.
    """

    text: str

    def __post_init__(self) -> None:
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError:
            tree = None
        refused = "not a formula" if tree is None else _refused(tree.body)
        if refused is not None:
            raise ValueError(f"{self.text!r} is not arithmetic in epochs ({refused}); use "
                             f"{_ALLOWED}, e.g. 'min(1.0, epochs / 2)'.")

    def __call__(self, epochs: int) -> Any:
        try:
            return _evaluate(ast.parse(self.text, mode="eval").body, epochs)
        except ZeroDivisionError:
            raise ValueError(f"{self.text!r} divides by zero at {epochs} epochs") from None


@dataclass(frozen=True)
class Range:
    """A range whose ends may follow the epochs: called with the epochs, an Optuna
    ``FloatDistribution`` (``IntDistribution`` with ``integer``)."""

    low: float | Formula
    high: float | Formula
    log: bool = False
    step: float | None = None
    integer: bool = False

    def __call__(self, epochs: int) -> FloatDistribution | IntDistribution:
        low, high = at_epochs(self.low, epochs), at_epochs(self.high, epochs)
        if not self.integer:
            return FloatDistribution(low, high, log=self.log, step=self.step)
        for end, value in (("low", low), ("high", high)):
            if value != int(value):
                raise ValueError(f"an integer range needs whole ends, but {end} is {value!r} "
                                 f"at {epochs} epochs (use round(...) or //)")
        return IntDistribution(int(low), int(high), log=self.log, step=int(self.step or 1))


@dataclass(frozen=True)
class Choices:
    """A choice among values that may follow the epochs: called with the epochs, an Optuna
    ``CategoricalDistribution``."""

    values: tuple[Any, ...]

    def __call__(self, epochs: int) -> CategoricalDistribution:
        return CategoricalDistribution(tuple(at_epochs(v, epochs) for v in self.values))


def at_epochs(value: Any, epochs: int) -> Any:
    """``value`` for runs of ``epochs`` epochs: a formula, range, choice or any function of
    the epochs called, lists and tables resolved inside, anything else as it is."""
    if callable(value):
        return at_epochs(value(epochs), epochs)
    if isinstance(value, Mapping):
        return {k: at_epochs(v, epochs) for k, v in value.items()}
    if isinstance(value, list):
        return [at_epochs(v, epochs) for v in value]
    return value

"""Package exports imported on first use (PEP 562), so importing a light module of a package
does not load the heavy ones (torch, seaborn, SciPy) that its other exports need."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, modules: Mapping[str, tuple[str, ...]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__all__``, ``__getattr__`` and ``__dir__`` of a package whose public names are
    imported from their modules on first use.

    Args:
        package: the package's ``__name__``.
        modules: each module that defines public names -> those names.

    Raises:
        ValueError: a name is listed twice (a package exports each name from one module).
    """
    exports = {name: module for module, names in modules.items() for name in names}
    listed = [name for names in modules.values() for name in names]
    if len(listed) != len(exports):
        twice = sorted({name for name in listed if listed.count(name) > 1})
        raise ValueError(f"{package} exports {twice} more than once; list each name once")

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        vars(sys.modules[package])[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return listed, __getattr__, __dir__

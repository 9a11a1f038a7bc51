"""Pruners chosen by name from a registry (``--pruner``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from study.registry import Registry

__all__ = ["PrunerInfo", "list_pruners", "get_pruner_info", "create_pruner"]


@dataclass(frozen=True)
class PrunerInfo:
    """A registered pruner: ``factory(epochs)`` builds it."""

    name: str
    description: str
    factory: Callable[[int], optuna.pruners.BasePruner]


_PRUNERS: Registry[PrunerInfo] = Registry("pruner")
_PRUNERS.register(PrunerInfo(
    "median", "stop a trial below the median of earlier trials at the same epoch (from epoch "
    "2, after 5 trials)",
    lambda epochs: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)))
_PRUNERS.register(PrunerInfo(
    "hyperband", "Hyperband over epochs (min 1, reduction factor 3)",
    lambda epochs: optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=epochs, reduction_factor=3)))
_PRUNERS.register(PrunerInfo("none", "never prune", lambda epochs: optuna.pruners.NopPruner()))

#: Names of the registered pruners, in registration order.
list_pruners = _PRUNERS.names
#: The registry entry for a name; an unknown name lists the registered ones (ValueError).
get_pruner_info = _PRUNERS.get


def create_pruner(name: str, *, epochs: int) -> optuna.pruners.BasePruner:
    """The pruner registered as ``name`` for runs of ``epochs`` epochs."""
    return get_pruner_info(name).factory(epochs)

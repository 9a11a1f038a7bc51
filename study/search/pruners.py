"""Pruners chosen by name from a registry (``--pruner``), and pruning within each optimizer.

:class:`GroupedPruner` wraps any registered pruner so that it compares a trial only with
trials of the same optimizer (``--prune-within optimizer``, the default for spaces that
choose an optimizer). Without it the median pruner stops Adam trials for not matching SGD's
curves, and the comparison loses exactly the trials it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from study.train.registry import Registry

__all__ = [
    "PrunerInfo",
    "list_pruners",
    "get_pruner_info",
    "create_pruner",
    "GroupedPruner",
    "PRUNE_WITHIN",
]

#: ``--prune-within``: compare a trial with trials of its ``optimizer``, or of the ``study``.
PRUNE_WITHIN = ("optimizer", "study")


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
    "asha", "asynchronous successive halving: at epochs 1, 3, 9, ... keep the top third "
    "(reduction factor 3)",
    lambda epochs: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=3)))
_PRUNERS.register(PrunerInfo(
    "hyperband", "Hyperband over epochs (min 1, reduction factor 3)",
    lambda epochs: optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=epochs, reduction_factor=3)))
_PRUNERS.register(PrunerInfo("none", "never prune", lambda epochs: optuna.pruners.NopPruner()))

#: Names of the registered pruners, in registration order.
list_pruners = _PRUNERS.names
#: The registry entry for a name; an unknown name lists the registered ones (ValueError).
get_pruner_info = _PRUNERS.get


def optimizer_of(trial: FrozenTrial) -> Any:
    """The trial's ``optimizer`` parameter (``None`` for spaces that choose none)."""
    return trial.params.get("optimizer")


class _FilteredStorage:
    """A storage seen through a filter: ``get_all_trials`` returns only the trials ``keep``
    accepts; everything else (writes included) goes to the real storage.

    Optuna's pruners read the trials they compare through ``study._storage.get_all_trials``
    (directly or through ``study.get_trials``), and ``HyperbandPruner`` builds its bracket
    studies on ``study._storage``: filtering here reaches all of them.
    """

    def __init__(self, storage: Any, keep: Callable[[FrozenTrial], bool]) -> None:
        self._storage = storage
        self._keep = keep

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        trials = self._storage.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        return [t for t in trials if self._keep(t)]

    def get_n_trials(self, study_id: int, state: Any = None) -> int:
        states = None if state is None else (state if isinstance(state, tuple) else (state,))
        return len(self.get_all_trials(study_id, deepcopy=False, states=states))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


class GroupedPruner(optuna.pruners.BasePruner):
    """Prune a trial by comparing it only with the trials of its own group.

    ``pruner`` sees a view of the study holding only the trials whose ``key`` equals the
    pruned trial's (its optimizer, by default): its startup count, warm-up, median or
    brackets are all per group. The pattern is Optuna's own ``HyperbandPruner``, which runs
    each bracket's pruner on a filtered view of the study; here it wraps any pruner without
    copying its logic.

    Args:
        pruner: the pruner to run within each group.
        key: ``trial -> group``.
    """

    def __init__(
        self,
        pruner: optuna.pruners.BasePruner,
        *,
        key: Callable[[FrozenTrial], Any] = optimizer_of,
    ) -> None:
        self.pruner = pruner
        self.key = key

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        group = self.key(trial)
        view = optuna.study.Study(
            study_name=study.study_name,
            storage=_FilteredStorage(study._storage, lambda t: self.key(t) == group),
            sampler=study.sampler,
            pruner=self.pruner,
        )
        return self.pruner.prune(view, trial)


def create_pruner(
    name: str, *, epochs: int, within: str | None = None
) -> optuna.pruners.BasePruner:
    """The pruner registered as ``name`` for runs of ``epochs`` epochs.

    Args:
        within: ``"optimizer"`` compares a trial only with trials of the same optimizer
            (:class:`GroupedPruner`); ``None`` or ``"study"`` with every trial.

    Raises:
        ValueError: an unknown name or ``within``; the message lists the valid ones.
    """
    if within not in (None, *PRUNE_WITHIN):
        raise ValueError(
            f"unknown within={within!r}; choose one of: {', '.join(PRUNE_WITHIN)}."
        )
    pruner = get_pruner_info(name).factory(epochs)
    if within == "optimizer" and not isinstance(pruner, optuna.pruners.NopPruner):
        return GroupedPruner(pruner)
    return pruner

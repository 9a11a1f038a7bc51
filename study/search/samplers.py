"""Samplers chosen by name from a registry (``--sampler``), and balanced allocation.

:class:`BalancedSampler` wraps any of them so that each new trial gets the optimizer with the
fewest trials so far, and the wrapped sampler chooses everything else given that optimizer
(``--allocation balanced``, the default for spaces that choose an optimizer). Without it TPE
piles onto whichever optimizer looked best early, and the comparison starves the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from study.train.registry import Registry

__all__ = [
    "SamplerInfo",
    "list_samplers",
    "get_sampler_info",
    "create_sampler",
    "BalancedSampler",
    "GridPointSampler",
    "ALLOCATIONS",
]

#: ``--allocation``: ``balanced`` (:class:`BalancedSampler`) or ``sampler`` (the sampler
#: chooses the optimizer like any other parameter).
ALLOCATIONS = ("balanced", "sampler")
#: Trials that count towards an optimizer's share: finished ones and those running now.
_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


@dataclass(frozen=True)
class SamplerInfo:
    """A registered sampler: ``factory(seed)`` builds it.

    ``reseed_on_resume``: a resumed study offsets the seed by its number of trials, so a
    random sampler does not replay the points it drew before. Off for QMC, whose sequence
    position is kept in the study and continues under the same seed.
    """

    name: str
    description: str
    factory: Callable[[int | None], optuna.samplers.BaseSampler]
    reseed_on_resume: bool = True


def _tpe(seed: int | None) -> optuna.samplers.BaseSampler:
    # group=True: momentum only exists for SGD, beta1 only for Adam(W); without it Optuna 5's
    # multivariate TPE samples such conditional parameters independently.
    # constant_liar: parallel workers do not all sample the same point.
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, group=True, constant_liar=True
    )


def _qmc(seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.QMCSampler(
        seed=seed, scramble=True, warn_independent_sampling=False, warn_asynchronous_seeding=False
    )


_SAMPLERS: Registry[SamplerInfo] = Registry("sampler")
_SAMPLERS.register(SamplerInfo(
    "tpe", "multivariate TPE with group=True (conditional parameters)", _tpe))
_SAMPLERS.register(SamplerInfo(
    "random", "independent uniform / log-uniform sampling",
    lambda seed: optuna.samplers.RandomSampler(seed=seed)))
_SAMPLERS.register(SamplerInfo(
    "qmc", "scrambled Sobol sequence for the shared parameters", _qmc, reseed_on_resume=False))

#: Names of the registered samplers, in registration order.
list_samplers = _SAMPLERS.names
#: The registry entry for a name; an unknown name lists the registered ones (ValueError).
get_sampler_info = _SAMPLERS.get


def create_sampler(
    name: str, *, seed: int | None = None, n_existing_trials: int = 0
) -> optuna.samplers.BaseSampler:
    """The sampler registered as ``name``, seeded with ``seed``.

    ``n_existing_trials`` is how many trials the study already has (see
    :class:`SamplerInfo`'s ``reseed_on_resume``).
    """
    info = get_sampler_info(name)
    if seed is not None and info.reseed_on_resume:
        seed += n_existing_trials
    return info.factory(seed)


class GridPointSampler(optuna.samplers.GridSampler):
    """Optuna's ``GridSampler``, except that it never stops the study: the run stops when its
    target of grid points is reached (it counts them itself), and trials trained in cohorts
    are told outside ``optimize``, where ``study.stop`` is an error."""

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        pass


class BalancedSampler(optuna.samplers.BaseSampler):
    """Give each new trial the least-used choice of one categorical parameter.

    The choice of ``param`` (the optimizer) is the one with the fewest trials so far,
    finished or running, counted from the storage (so a resumed study and parallel workers
    stay balanced; with W workers the counts differ by at most W); ties go to the first in
    the distribution's order (the registry's). Every other parameter is left to
    ``base_sampler``, which never samples ``param`` itself (the pattern of Optuna's
    ``PartialFixedSampler``): TPE still models each optimizer's own parameters from that
    optimizer's trials.

    Args:
        base_sampler: samples everything else.
        param: the categorical parameter to balance.
    """

    def __init__(self, base_sampler: optuna.samplers.BaseSampler, *, param: str = "optimizer"):
        self.base_sampler = base_sampler
        self.param = param

    def counts(self, study: optuna.Study, choices: Sequence[Any]) -> Counter:
        """Trials so far per choice (finished and running)."""
        trials = study.get_trials(deepcopy=False, states=_COUNTED)
        counts = Counter({choice: 0 for choice in choices})
        counts.update(t.params[self.param] for t in trials if self.param in t.params)
        return counts

    def reseed_rng(self) -> None:
        self.base_sampler.reseed_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        space = self.base_sampler.infer_relative_search_space(study, trial)
        space.pop(self.param, None)  # chosen here, never by the base sampler
        return space

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.base_sampler.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if param_name != self.param or not isinstance(param_distribution, CategoricalDistribution):
            return self.base_sampler.sample_independent(
                study, trial, param_name, param_distribution
            )
        choices = param_distribution.choices
        counts = self.counts(study, choices)
        return min(choices, key=lambda choice: (counts[choice], choices.index(choice)))

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base_sampler.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.base_sampler.after_trial(study, trial, state, values)

"""Samplers chosen by name from a registry (``--sampler``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from study.registry import Registry

__all__ = ["SamplerInfo", "list_samplers", "get_sampler_info", "create_sampler"]


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

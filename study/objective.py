"""The thin glue between a search space, ``fit`` and Optuna; sampler and pruner registries.

Per trial the objective records, as Optuna user attributes (so any Optuna tool reads them):

==================  ======================================================================
``config``          the full ``TrialConfig`` as a dict
``seed``            the trial's seed
``eval_set``        ``"test"`` or ``"validation"``: what ``eval_accuracy`` measured
``train_loss``      per-epoch list, running average over the epoch's batches
``train_accuracy``  per-epoch list, running average (dropout active)
``eval_accuracy``   per-epoch list, also reported as the intermediate value (epoch 1, 2, ...)
``lr``              per-epoch list, learning rate of the epoch's last update
``batch_size``      per-epoch list, batch size in effect
``epoch_seconds``   per-epoch list, wall time of training plus evaluation
``diverged``        bool; when true also ``diverged_lr`` and ``diverged_epoch``
``test_accuracy``   test-set accuracy at the end (complete, non-diverged trials)
==================  ======================================================================

A diverged trial is complete with value 0.0, the worst accuracy, so the sampler learns that
region is bad; it is not an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from search_spaces.config import TrialConfig
from search_spaces.spaces import SearchSpace
from study.data import Dataset
from study.registry import Registry
from study.train import EpochStats, fit

__all__ = [
    "Objective",
    "DIVERGED_VALUE",
    "CURVE_ATTRS",
    "SamplerInfo",
    "PrunerInfo",
    "list_samplers",
    "list_pruners",
    "create_sampler",
    "create_pruner",
    "get_sampler_info",
    "get_pruner_info",
]

DIVERGED_VALUE = 0.0
#: user attribute -> EpochStats field, one list entry per epoch.
CURVE_ATTRS = {
    "train_loss": "train_loss",
    "train_accuracy": "train_accuracy",
    "eval_accuracy": "eval_accuracy",
    "lr": "lr",
    "batch_size": "batch_size",
    "epoch_seconds": "seconds",
}


class Objective:
    """``objective(trial) -> accuracy``: suggest a config, train it, report every epoch.

    Args:
        space: turns the trial into a ``TrialConfig``.
        data: the tensors every trial trains on (loaded once per process).
        base: what the command line fixes (epochs, batch size); its ``seed`` plus the trial
            number seeds each trial.
        on_epoch: also called after each epoch (progress display).
    """

    def __init__(
        self,
        space: SearchSpace,
        data: Dataset,
        base: TrialConfig,
        *,
        on_epoch: Callable[[optuna.Trial, EpochStats], None] | None = None,
    ) -> None:
        self.space = space
        self.data = data
        self.base = base
        self.on_epoch = on_epoch
        #: the number of the trial this objective is running, ``None`` between trials.
        self.current_trial: int | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        self.current_trial = trial.number
        try:
            return self._run(trial)
        finally:
            self.current_trial = None

    def _run(self, trial: optuna.Trial) -> float:
        seed = self.base.seed + trial.number
        config = self.space.config_for(trial, self.base.replace(seed=seed))
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("eval_set", self.data.eval_set)
        trial.set_user_attr("diverged", False)
        curves: dict[str, list[float]] = {attr: [] for attr in CURVE_ATTRS}

        def record(stats: EpochStats) -> None:
            for attr, name in CURVE_ATTRS.items():
                curves[attr].append(getattr(stats, name))
                trial.set_user_attr(attr, curves[attr])
            trial.report(stats.eval_accuracy, stats.epoch)
            if self.on_epoch is not None:
                self.on_epoch(trial, stats)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"epoch {stats.epoch}: accuracy {stats.eval_accuracy:.4f}"
                )

        result = fit(config, self.data, on_epoch=record)
        if result.diverged:
            trial.set_user_attr("diverged", True)
            trial.set_user_attr("diverged_lr", result.diverged_lr)
            trial.set_user_attr("diverged_epoch", result.diverged_epoch)
            return DIVERGED_VALUE
        trial.set_user_attr("test_accuracy", result.test_accuracy)
        return result.final_accuracy


# --- samplers and pruners, chosen by name -------------------------------------------------


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


@dataclass(frozen=True)
class PrunerInfo:
    """A registered pruner: ``factory(epochs)`` builds it."""

    name: str
    description: str
    factory: Callable[[int], optuna.pruners.BasePruner]


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

#: Names of the registered samplers / pruners; their registry entries by name (an unknown
#: name is a ValueError listing the registered ones).
list_samplers = _SAMPLERS.names
list_pruners = _PRUNERS.names
get_sampler_info = _SAMPLERS.get
get_pruner_info = _PRUNERS.get


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


def create_pruner(name: str, *, epochs: int) -> optuna.pruners.BasePruner:
    """The pruner registered as ``name`` for runs of ``epochs`` epochs."""
    return get_pruner_info(name).factory(epochs)

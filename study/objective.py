"""The thin glue between a search space, ``fit`` and Optuna.

Per trial the objective records what :mod:`study.records` lists, through Optuna's own API
(user attributes and one intermediate value per epoch), so any Optuna tool reads it.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from search_spaces.spaces import SearchSpace
from study import records
from study.config import TrialConfig
from study.data import Dataset
from study.train import EpochStats, fit

__all__ = ["Objective"]


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
        #: numbers of the trials this objective has started (an interrupted run closes
        #: those still RUNNING).
        self.started: list[int] = []

    def __call__(self, trial: optuna.Trial) -> float:
        self.started.append(trial.number)
        seed = self.base.seed + trial.number
        config = self.space.config_for(trial, self.base.replace(seed=seed))
        trial.set_user_attr(records.CONFIG, config.to_dict())
        trial.set_user_attr(records.SEED, seed)
        trial.set_user_attr(records.EVAL_SET, self.data.eval_set)
        trial.set_user_attr(records.DIVERGED, False)
        curves: dict[str, list[float]] = {attr: [] for attr in records.CURVES}

        def record(stats: EpochStats) -> None:
            for attr, name in records.CURVES.items():
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
            trial.set_user_attr(records.DIVERGED, True)
            trial.set_user_attr(records.DIVERGED_LR, result.diverged_lr)
            trial.set_user_attr(records.DIVERGED_EPOCH, result.diverged_epoch)
            return records.DIVERGED_VALUE
        trial.set_user_attr(records.TEST_ACCURACY, result.test_accuracy)
        return result.final_accuracy

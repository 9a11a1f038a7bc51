"""Running studies: training (config, data, model, optimizers, schedules, ``fit``), the
study database (storage and the record names) and the ``python -m study.run`` command.

The names below are imported on first use (PEP 562), so ``import study.storage`` or
``import study.records`` (what ``analysis`` reads through) loads neither torch nor Optuna's
samplers, and ``from study import fit`` loads no Optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it.
_EXPORTS = {
    "Checkpoint": "study.checkpoint",
    "load_checkpoint": "study.checkpoint",
    "save_checkpoint": "study.checkpoint",
    "ConfigError": "study.config",
    "TrialConfig": "study.config",
    "DataError": "study.data",
    "Dataset": "study.data",
    "load_mnist": "study.data",
    "MLP": "study.model",
    "LabMomentumSGD": "study.optim",
    "OptimInfo": "study.optim",
    "create_optimizer": "study.optim",
    "get_optimizer_info": "study.optim",
    "head_parameters": "study.optim",
    "list_optimizers": "study.optim",
    "param_groups": "study.optim",
    "param_groups_weight_decay": "study.optim",
    "ScheduleInfo": "study.schedules",
    "build_lr_lambda": "study.schedules",
    "get_schedule_info": "study.schedules",
    "list_schedules": "study.schedules",
    "LrRangeResult": "study.lr_range",
    "lr_range_test": "study.lr_range",
    "EpochStats": "study.train",
    "FitResult": "study.train",
    "TrainingRun": "study.train",
    "evaluate": "study.train",
    "fit": "study.train",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'study' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

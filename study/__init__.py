"""Running studies: training (config, data, model, optimizers, schedules, ``fit``), the
study database (storage and the record names) and the ``python -m study.run`` command.

The names below are imported on first use (PEP 562), so ``import study.store.storage`` or
``import study.store.records`` (what ``analysis`` reads through) loads neither torch nor Optuna's
samplers, and ``from study import fit`` loads no Optuna.
"""

from __future__ import annotations

from study.lazy import lazy_exports

#: public name -> the module that defines it.
_EXPORTS = {
    "Checkpoint": "study.train.checkpoint",
    "load_checkpoint": "study.train.checkpoint",
    "save_checkpoint": "study.train.checkpoint",
    "ConfigError": "study.train.config",
    "TrialConfig": "study.train.config",
    "DataError": "study.train.data",
    "Dataset": "study.train.data",
    "load_mnist": "study.train.data",
    "MLP": "study.train.model",
    "LabMomentumSGD": "study.train.optim",
    "OptimInfo": "study.train.optim",
    "create_optimizer": "study.train.optim",
    "get_optimizer_info": "study.train.optim",
    "head_parameters": "study.train.optim",
    "list_optimizers": "study.train.optim",
    "param_groups": "study.train.optim",
    "param_groups_weight_decay": "study.train.optim",
    "ScheduleInfo": "study.train.schedules",
    "build_lr_lambda": "study.train.schedules",
    "get_schedule_info": "study.train.schedules",
    "list_schedules": "study.train.schedules",
    "LrRangeResult": "study.train.range_test",
    "lr_range_test": "study.train.range_test",
    "EpochStats": "study.train.loop",
    "FitResult": "study.train.loop",
    "TrainingRun": "study.train.loop",
    "evaluate": "study.train.loop",
    "fit": "study.train.loop",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

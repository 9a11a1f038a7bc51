"""Running studies: training (config, data, model, optimizers, schedules, ``fit``), the
study database (storage and the record names) and the ``python -m study.run`` command.

The names below are imported on first use (PEP 562), so ``import study.store.storage`` or
``import study.store.records`` (what ``analysis`` reads through) loads neither torch nor Optuna's
samplers, and ``from study import fit`` loads no Optuna.
"""

from __future__ import annotations

from study.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "study.train.checkpoint": ("Checkpoint", "load_checkpoint", "save_checkpoint"),
    "study.train.config": ("ConfigError", "TrialConfig"),
    "study.train.data": ("DataError", "Dataset", "load_mnist", "tensor_dataset"),
    "study.train.model": ("MLP",),
    "study.train.optim": (
        "LabMomentumSGD", "OptimInfo", "create_optimizer", "get_optimizer_info", "head_parameters",
        "list_optimizers", "param_groups", "param_groups_weight_decay",
    ),
    "study.train.schedules": (
        "ScheduleInfo", "build_lr_lambda", "get_schedule_info", "list_schedules",
    ),
    "study.train.range_test": ("LrRangeResult", "lr_range_test"),
    "study.train.loop": ("EpochStats", "FitResult", "TrainingRun", "evaluate", "fit"),
})

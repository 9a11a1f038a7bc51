"""Running studies: data, model, optimizers, schedules, training and storage.

``study.objective`` and ``study.run`` (the CLI) are imported on their own; they need the
search spaces, which build on this package.
"""

from study.data import DataError, Dataset, load_mnist
from study.model import MLP
from study.optim import (
    LabMomentumSGD,
    OptimInfo,
    create_optimizer,
    get_optimizer_info,
    list_optimizers,
    param_groups_weight_decay,
)
from study.schedules import ScheduleInfo, build_lr_lambda, get_schedule_info, list_schedules
from study.train import EpochStats, FitResult, evaluate, fit

__all__ = [
    "DataError",
    "Dataset",
    "load_mnist",
    "MLP",
    "LabMomentumSGD",
    "OptimInfo",
    "create_optimizer",
    "get_optimizer_info",
    "list_optimizers",
    "param_groups_weight_decay",
    "ScheduleInfo",
    "build_lr_lambda",
    "get_schedule_info",
    "list_schedules",
    "EpochStats",
    "FitResult",
    "evaluate",
    "fit",
]

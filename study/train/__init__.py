"""Training, with no Optuna: the run's configuration, MNIST in memory, the lab's MLP, the
optimizer and schedule registries, the training loop (``fit``) and checkpoints.

The names below are imported on first use (PEP 562).
"""

from __future__ import annotations

from study.lazy import lazy_exports

#: public name -> the module that defines it.
_EXPORTS = {
    "Registry": "study.train.registry",
    "TrialConfig": "study.train.config",
    "ConfigError": "study.train.config",
    "PRECISIONS": "study.train.config",
    "DataError": "study.train.data",
    "MNIST_FILES": "study.train.data",
    "PACKAGED_ROOT": "study.train.data",
    "MNIST_TRAIN": "study.train.data",
    "DATA_DIR_ENV": "study.train.data",
    "data_root": "study.train.data",
    "MEAN": "study.train.data",
    "STD": "study.train.data",
    "Dataset": "study.train.data",
    "read_idx": "study.train.data",
    "check_files": "study.train.data",
    "load_mnist": "study.train.data",
    "epoch_permutation": "study.train.data",
    "iter_batches": "study.train.data",
    "MLP": "study.train.model",
    "Dropout": "study.train.model",
    "HPARAMS": "study.train.optim",
    "OptimInfo": "study.train.optim",
    "LabMomentumSGD": "study.train.optim",
    "unregister": "study.train.optim",
    "get_optimizer_info": "study.train.optim",
    "list_optimizers": "study.train.optim",
    "param_groups_weight_decay": "study.train.optim",
    "param_groups": "study.train.optim",
    "head_parameters": "study.train.optim",
    "create_optimizer": "study.train.optim",
    "batch_factor": "study.train.schedules",
    "build_batch_factor": "study.train.schedules",
    "ScheduleParam": "study.train.schedules",
    "ScheduleInfo": "study.train.schedules",
    "list_schedules": "study.train.schedules",
    "get_schedule_info": "study.train.schedules",
    "validate_schedule_params": "study.train.schedules",
    "build_lr_lambda": "study.train.schedules",
    "build_momentum_fn": "study.train.schedules",
    "build_epoch_hook": "study.train.schedules",
    "create_scheduler": "study.train.schedules",
    "scale_lr": "study.train.schedules",
    "EpochHook": "study.train.schedules",
    "ReduceOnPlateau": "study.train.schedules",
    "constant_factor": "study.train.schedules",
    "step_factor": "study.train.schedules",
    "multistep_factor": "study.train.schedules",
    "exponential_factor": "study.train.schedules",
    "cosine_factor": "study.train.schedules",
    "linear_factor": "study.train.schedules",
    "cosine_restarts_factor": "study.train.schedules",
    "cyclic_factor": "study.train.schedules",
    "one_cycle_factor": "study.train.schedules",
    "one_cycle_momentum": "study.train.schedules",
    "warmup_factor": "study.train.schedules",
    "EpochStats": "study.train.loop",
    "FitResult": "study.train.loop",
    "TrainingRun": "study.train.loop",
    "fit": "study.train.loop",
    "evaluate": "study.train.loop",
    "fast_bf16_available": "study.train.loop",
    "FORMAT": "study.train.checkpoint",
    "Checkpoint": "study.train.checkpoint",
    "save_checkpoint": "study.train.checkpoint",
    "load_checkpoint": "study.train.checkpoint",
    "LrRangeResult": "study.train.range_test",
    "lr_range_test": "study.train.range_test",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

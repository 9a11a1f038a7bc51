"""Training, with no Optuna: the run's configuration, MNIST in memory, the lab's MLP, the
optimizer and schedule registries, the training loop (``fit``), the cohort trainer
(``train_cohort``) and checkpoints.

The names below are imported on first use (PEP 562).
"""

from __future__ import annotations

from study.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "study.train.registry": ("Registry",),
    "study.train.config": ("TrialConfig", "ConfigError", "PRECISIONS"),
    "study.train.data": (
        "DataError", "MNIST_FILES", "PACKAGED_ROOT", "MNIST_TRAIN", "DATA_DIR_ENV", "data_root",
        "MEAN", "STD", "Dataset", "read_idx", "check_files", "load_mnist", "tensor_dataset",
        "epoch_permutation",
        "iter_batches",
    ),
    "study.train.model": ("MLP", "Dropout"),
    "study.train.optim": (
        "HPARAMS", "OptimInfo", "LabMomentumSGD", "unregister", "get_optimizer_info",
        "list_optimizers", "param_groups_weight_decay", "param_groups", "head_parameters",
        "create_optimizer",
    ),
    "study.train.schedules": (
        "batch_factor", "build_batch_factor", "ScheduleParam", "ScheduleInfo", "list_schedules",
        "get_schedule_info", "validate_schedule_params", "build_lr_lambda", "build_momentum_fn",
        "build_epoch_hook", "create_scheduler", "scale_lr", "EpochHook", "ReduceOnPlateau",
        "constant_factor", "step_factor", "multistep_factor", "exponential_factor",
        "cosine_factor", "linear_factor", "cosine_restarts_factor", "cyclic_factor",
        "one_cycle_factor", "one_cycle_momentum", "warmup_factor",
    ),
    "study.train.loop": (
        "EpochStats", "FitResult", "TrainingRun", "fit", "evaluate", "collapse_levels",
        "fast_bf16_available",
    ),
    "study.train.cohort": ("train_cohort", "stack_key", "OnCohortEpoch", "OnLeave"),
    "study.train.stacked": ("StackedMLP",),
    "study.train.cohort_optim": ("StackedOptimizer", "stacked_optimizer_class"),
    "study.train.checkpoint": ("FORMAT", "Checkpoint", "save_checkpoint", "load_checkpoint"),
    "study.train.range_test": ("LrRangeResult", "lr_range_test"),
})

"""The study database, with no torch: the names of what a trial records (``records``) and
opening a storage or a study (``storage``), which every command and ``analysis`` share.

The names below are imported on first use (PEP 562).
"""

from __future__ import annotations

from study.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "study.store.records": (
        "CONFIG", "SEED", "EVAL_SET", "DIVERGED", "DIVERGED_LR", "DIVERGED_EPOCH",
        "DIVERGED_REASON", "TEST_ACCURACY", "FIXED_TRIAL", "SEEDS", "SEED_ACCURACIES",
        "SEED_EVAL_ACCURACY", "SEED_DIVERGED", "SAMPLER", "INDEPENDENT_SAMPLERS", "CHECKPOINT",
        "SEED_CHECKPOINTS", "SOURCE_TRIAL", "CONFIRM_SUFFIX", "CURVES", "EVAL_ACCURACY",
        "EPOCH_SECONDS", "DIVERGED_VALUE", "METRIC_NAMES", "CHANCE", "SETTINGS",
        "CHECKED_SETTINGS", "LEGACY_SETTINGS", "STATE_NAMES", "OUTCOMES", "outcome", "grid_point",
        "schedule_param", "format_schedule_params", "encode_distribution", "decode_distribution",
    ),
    "study.store.storage": (
        "StorageError", "DEFAULT_STUDY_DIR", "default_storage_url", "display_url", "file_name",
        "resolve_sqlite_url", "open_storage", "open_study", "storage_failure", "stored_settings",
        "SETTINGS_COMPLETE", "HEARTBEAT_INTERVAL", "GRACE_PERIOD", "check_direction",
    ),
    "study.store.range_tests": ("open_range_study", "store_range_test"),
})

"""The study database, with no torch: the names of what a trial records (``records``) and
opening a storage or a study (``storage``), which every command and ``analysis`` share.

The names below are imported on first use (PEP 562).
"""

from __future__ import annotations

from study.lazy import lazy_exports

#: public name -> the module that defines it.
_EXPORTS = {
    "CONFIG": "study.store.records",
    "SEED": "study.store.records",
    "EVAL_SET": "study.store.records",
    "DIVERGED": "study.store.records",
    "DIVERGED_LR": "study.store.records",
    "DIVERGED_EPOCH": "study.store.records",
    "DIVERGED_REASON": "study.store.records",
    "TEST_ACCURACY": "study.store.records",
    "FIXED_TRIAL": "study.store.records",
    "SEEDS": "study.store.records",
    "SEED_ACCURACIES": "study.store.records",
    "SEED_EVAL_ACCURACY": "study.store.records",
    "SEED_DIVERGED": "study.store.records",
    "SAMPLER": "study.store.records",
    "INDEPENDENT_SAMPLERS": "study.store.records",
    "CHECKPOINT": "study.store.records",
    "SEED_CHECKPOINTS": "study.store.records",
    "SOURCE_TRIAL": "study.store.records",
    "CONFIRM_SUFFIX": "study.store.records",
    "CURVES": "study.store.records",
    "EVAL_ACCURACY": "study.store.records",
    "EPOCH_SECONDS": "study.store.records",
    "DIVERGED_VALUE": "study.store.records",
    "METRIC_NAMES": "study.store.records",
    "CHANCE": "study.store.records",
    "SETTINGS": "study.store.records",
    "CHECKED_SETTINGS": "study.store.records",
    "LEGACY_SETTINGS": "study.store.records",
    "STATE_NAMES": "study.store.records",
    "OUTCOMES": "study.store.records",
    "outcome": "study.store.records",
    "grid_point": "study.store.records",
    "schedule_param": "study.store.records",
    "format_schedule_params": "study.store.records",
    "encode_distribution": "study.store.records",
    "decode_distribution": "study.store.records",
    "StorageError": "study.store.storage",
    "DEFAULT_STUDY_DIR": "study.store.storage",
    "default_storage_url": "study.store.storage",
    "display_url": "study.store.storage",
    "resolve_sqlite_url": "study.store.storage",
    "open_storage": "study.store.storage",
    "open_study": "study.store.storage",
    "storage_failure": "study.store.storage",
    "stored_settings": "study.store.storage",
    "SETTINGS_COMPLETE": "study.store.storage",
    "HEARTBEAT_INTERVAL": "study.store.storage",
    "GRACE_PERIOD": "study.store.storage",
    "open_range_study": "study.store.range_tests",
    "store_range_test": "study.store.range_tests",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""The search: the objective that trains one trial, the trial loop, samplers, pruners,
parallel workers, interrupts and progress lines.

The names below are imported on first use (PEP 562), so installing the Ctrl-C handler
(``study.search.interrupts``) loads no torch.
"""

from __future__ import annotations

from study.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "study.search.interrupts": ("Interrupts", "STOP", "SIGNALS"),
    "study.search.progress": (
        "EVERY", "PlainProgress", "running_label", "trial_label", "trial_line",
    ),
    "study.search.samplers": (
        "SamplerInfo", "list_samplers", "get_sampler_info", "create_sampler", "BalancedSampler",
        "ALLOCATIONS",
    ),
    "study.search.pruners": (
        "PrunerInfo", "list_pruners", "get_pruner_info", "create_pruner", "GroupedPruner",
        "PRUNE_WITHIN",
    ),
    "study.search.objective": ("Objective", "checkpoint_folder", "keep_best_checkpoints"),
    "study.search.trial_loop": ("FINISHED", "run_trials", "waiting_retries"),
    "study.search.workers": (
        "WorkerFailed", "run_workers", "default_workers", "cpu_cores", "stop_with_parent",
        "worker_storage", "STORAGE_ENV",
    ),
})

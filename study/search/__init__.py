"""The search: the objective that trains one trial, the trial loop, samplers, pruners,
parallel workers, interrupts and progress lines.

The names below are imported on first use (PEP 562), so installing the Ctrl-C handler
(``study.search.interrupts``) loads no torch.
"""

from __future__ import annotations

from study.lazy import lazy_exports

#: public name -> the module that defines it.
_EXPORTS = {
    "Interrupts": "study.search.interrupts",
    "STOP": "study.search.interrupts",
    "SIGNALS": "study.search.interrupts",
    "EVERY": "study.search.progress",
    "PlainProgress": "study.search.progress",
    "trial_label": "study.search.progress",
    "trial_line": "study.search.progress",
    "SamplerInfo": "study.search.samplers",
    "list_samplers": "study.search.samplers",
    "get_sampler_info": "study.search.samplers",
    "create_sampler": "study.search.samplers",
    "BalancedSampler": "study.search.samplers",
    "ALLOCATIONS": "study.search.samplers",
    "PrunerInfo": "study.search.pruners",
    "list_pruners": "study.search.pruners",
    "get_pruner_info": "study.search.pruners",
    "create_pruner": "study.search.pruners",
    "GroupedPruner": "study.search.pruners",
    "PRUNE_WITHIN": "study.search.pruners",
    "Objective": "study.search.objective",
    "checkpoint_folder": "study.search.objective",
    "keep_best_checkpoints": "study.search.objective",
    "FINISHED": "study.search.trial_loop",
    "run_trials": "study.search.trial_loop",
    "waiting_retries": "study.search.trial_loop",
    "WorkerFailed": "study.search.workers",
    "run_workers": "study.search.workers",
    "default_workers": "study.search.workers",
    "cpu_cores": "study.search.workers",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

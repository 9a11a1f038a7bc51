"""Reading studies: tidy tables, learning-rate sensitivity, plots and the HTML report.

The names below are imported on first use (PEP 562): ``import analysis.load`` (what the
end-of-run summary reads through) loads neither seaborn nor SciPy, which the plots and
the budget curves need.
"""

from __future__ import annotations

from study.lazy import lazy_exports

#: public name -> the module that defines it.
_EXPORTS = {
    "compare_with_study": "analysis.range_test",
    "load_lr_range": "analysis.range_test",
    "lr_range_plot": "analysis.range_test",
    "RANGE_WARNING_COLUMNS": "analysis.diagnostics",
    "TIME_TO_TARGET_OUTCOMES": "analysis.diagnostics",
    "range_warnings": "analysis.diagnostics",
    "time_to_target": "analysis.diagnostics",
    "time_to_target_plot": "analysis.diagnostics",
    "time_to_target_summary": "analysis.diagnostics",
    "NOT_INDEPENDENT": "analysis.budget",
    "budget_values": "analysis.budget",
    "expected_max": "analysis.budget",
    "trials_to_reach": "analysis.budget",
    "tunability": "analysis.budget",
    "tuning_curve": "analysis.budget",
    "tuning_curve_plot": "analysis.budget",
    "HPARAM_COLUMNS": "analysis.load",
    "StudyNotFoundError": "analysis.load",
    "list_study_names": "analysis.load",
    "load_curves": "analysis.load",
    "load_studies": "analysis.load",
    "load_trials": "analysis.load",
    "open_readonly": "analysis.load",
    "CHANCE": "analysis.tables",
    "PRUNED_AS_LOWER_BOUNDS": "analysis.tables",
    "PRUNED_LEFT_OUT": "analysis.tables",
    "counted_accuracy": "analysis.tables",
    "is_complete": "analysis.tables",
    "outcome_counts": "analysis.tables",
    "lr_bin_centres": "analysis.tables",
    "lr_bins": "analysis.tables",
    "best_trials": "analysis.tables",
    "ci_separation": "analysis.tables",
    "confirmation": "analysis.tables",
    "seed_noise_verdicts": "analysis.tables",
    "lr_sensitivity": "analysis.tables",
    "param_importance": "analysis.tables",
    "sensitivity_metrics": "analysis.tables",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

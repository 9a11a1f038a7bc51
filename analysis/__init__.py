"""Reading studies: tidy tables, learning-rate sensitivity, plots and the HTML report.

The names below are imported on first use (PEP 562): ``import analysis.load`` (what the
end-of-run summary reads through) loads neither seaborn nor SciPy, which the plots and
the budget curves need.
"""

from __future__ import annotations

from study.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "analysis.range_test": ("compare_with_study", "load_lr_range", "lr_range_plot"),
    "analysis.diagnostics": (
        "RANGE_WARNING_COLUMNS", "TIME_TO_TARGET_OUTCOMES", "range_warnings", "time_to_target",
        "time_to_target_plot", "time_to_target_summary",
    ),
    "analysis.budget": (
        "NOT_INDEPENDENT", "budget_values", "expected_max", "trials_to_reach", "tunability",
        "tuning_curve", "tuning_curve_plot",
    ),
    "analysis.load": (
        "HPARAM_COLUMNS", "StudyNotFoundError", "list_study_names", "load_curves", "load_studies",
        "load_trials", "open_readonly",
    ),
    "analysis.tables": (
        "CHANCE", "PRUNED_AS_LOWER_BOUNDS", "PRUNED_LEFT_OUT", "counted_accuracy", "is_complete",
        "outcome_counts", "lr_bin_centres", "lr_bins", "best_trials", "ci_separation",
        "confirmation", "seed_noise_verdicts", "lr_sensitivity", "param_importance",
        "sensitivity_metrics",
    ),
})

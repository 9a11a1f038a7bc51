"""Reading studies: tidy tables, learning-rate sensitivity, plots and the HTML report."""

from analysis.load import (
    HPARAM_COLUMNS,
    StudyNotFoundError,
    list_study_names,
    load_curves,
    load_studies,
    load_trials,
    open_readonly,
)
from analysis.tables import (
    CHANCE,
    best_trials,
    ci_separation,
    counted_accuracy,
    is_complete,
    lr_bin_centres,
    lr_bins,
    lr_sensitivity,
    param_importance,
    sensitivity_metrics,
)

__all__ = [
    "HPARAM_COLUMNS",
    "StudyNotFoundError",
    "list_study_names",
    "load_curves",
    "load_studies",
    "load_trials",
    "open_readonly",
    "CHANCE",
    "counted_accuracy",
    "is_complete",
    "lr_bin_centres",
    "lr_bins",
    "best_trials",
    "ci_separation",
    "lr_sensitivity",
    "param_importance",
    "sensitivity_metrics",
]

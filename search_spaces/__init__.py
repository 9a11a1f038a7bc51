"""Search spaces: the registry of named spaces, each an ``optuna.Trial`` -> ``TrialConfig``."""

from search_spaces.formulas import Choices, Formula, Range
from search_spaces.spaces import (
    LAB_CONFIGS,
    SEARCHED_OPTIMIZERS,
    WIDE_LR_RANGES,
    SearchSpace,
    drop_inapplicable,
    get_space,
    list_spaces,
    register,
    suggest,
)

__all__ = [
    "Choices",
    "Formula",
    "Range",
    "LAB_CONFIGS",
    "SEARCHED_OPTIMIZERS",
    "WIDE_LR_RANGES",
    "SearchSpace",
    "drop_inapplicable",
    "get_space",
    "list_spaces",
    "register",
    "suggest",
]

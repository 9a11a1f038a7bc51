"""Search spaces: ``TrialConfig`` and the registry of named spaces."""

from search_spaces.config import ConfigError, TrialConfig
from search_spaces.spaces import LAB_CONFIGS, SearchSpace, get_space, list_spaces, register

__all__ = [
    "ConfigError",
    "TrialConfig",
    "LAB_CONFIGS",
    "SearchSpace",
    "get_space",
    "list_spaces",
    "register",
]

"""Learning-rate range tests in the study database (no torch): the study they go to and one
finished trial per test, from plain values.

``python -m study.lr_range`` writes them through here; ``analysis.range_test`` reads them back
by the record names ``records.LR_RANGE_*``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from study.store import records
from study.store.storage import StorageError, display_url, open_study

__all__ = ["RANGE_TEST_KIND", "VALUE_RULES", "open_range_study", "store_range_test"]

#: The value of the study attribute ``records.LR_RANGE_KIND`` that marks a range-test study.
RANGE_TEST_KIND = "learning-rate range test"
#: The rules whose suggestion becomes the trial's value (what Optuna tools show), in order
#: of preference: the first that is defined.
VALUE_RULES = ("valley", "min_div_10")
#: A range-test study's direction. Its value is a learning rate, which nothing optimises:
#: Optuna's default (minimise), the direction range-test studies are stored with.
RANGE_STUDY_DIRECTION = "minimize"


def _refuse_other_studies(
    storage: optuna.storages.BaseStorage, study_name: str, url: str | None
) -> None:
    """Refuse an existing study without the range-test mark (before anything is written)."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return
    if records.LR_RANGE_KIND not in storage.get_study_user_attrs(study_id):
        where = f" in {display_url(url)}" if url else ""
        raise StorageError(f"study {study_name!r}{where} is not a range-test study; pass "
                           "another --study-name.")


def open_range_study(
    storage: optuna.storages.BaseStorage, study_name: str, *, url: str | None = None
) -> optuna.Study:
    """Create the range-test study ``study_name`` or open it, through
    :func:`study.store.storage.open_study`: marked with ``records.LR_RANGE_KIND``, its value
    named ``records.LR_RANGE_METRIC``.

    Args:
        storage: an open storage (:func:`study.store.storage.open_storage`).
        study_name: the study's name.
        url: the storage's URL, named (password masked) in messages.

    Raises:
        StorageError: a study of that name exists and is not a range-test study.
    """
    _refuse_other_studies(storage, study_name, url)
    optuna_study = open_study(storage, study_name,
                              settings={records.LR_RANGE_KIND: RANGE_TEST_KIND},
                              direction=RANGE_STUDY_DIRECTION)
    if optuna_study.metric_names is None:
        optuna_study.set_metric_names([records.LR_RANGE_METRIC])
    return optuna_study


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def store_range_test(
    optuna_study: optuna.Study,
    *,
    config: Mapping[str, Any],
    optimizer: str,
    lrs: Sequence[float],
    losses: Sequence[float],
    smoothed: Sequence[float],
    suggestions: Mapping[str, float],
    stopped_at: float,
    why: str,
    settings: Mapping[str, Any],
    seconds: float,
) -> optuna.trial.FrozenTrial:
    """Add one range test to ``optuna_study`` as a finished trial and return it.

    User attributes: the names ``records.LR_RANGE_*`` (optimizer, lrs, losses, smoothed,
    suggestions with ``null`` for an undefined one, stopped_at, why, and ``settings`` with
    the test's ``seconds`` added) and ``config`` (the tested configuration as a dict). Its
    value is the first defined suggestion of :data:`VALUE_RULES`, so Optuna's tools show a
    learning rate; state COMPLETE, or FAIL when there is none (the first loss was already
    non-finite).
    """
    shown = {rule: _json_number(lr) for rule, lr in suggestions.items()}
    value = next((shown[r] for r in VALUE_RULES if shown.get(r) is not None), None)
    attrs = {
        records.CONFIG: dict(config),
        records.LR_RANGE_OPTIMIZER: optimizer,
        records.LR_RANGE_LRS: list(lrs),
        records.LR_RANGE_LOSSES: list(losses),
        records.LR_RANGE_SMOOTHED: list(smoothed),
        records.LR_RANGE_SUGGESTIONS: shown,
        records.LR_RANGE_STOPPED_AT: stopped_at,
        records.LR_RANGE_WHY: why,
        records.LR_RANGE_SETTINGS: {**settings, "seconds": round(seconds, 3)},
    }
    state = (optuna.trial.TrialState.COMPLETE if value is not None
             else optuna.trial.TrialState.FAIL)
    optuna_study.add_trial(optuna.trial.create_trial(state=state, value=value,
                                                     user_attrs=attrs))
    return optuna_study.get_trials(deepcopy=False)[-1]

"""Study database -> tidy pandas DataFrames.

Reads only the study database, through Optuna's public API (``load_study``,
``get_trials``), so it works on a study that is still running and on any storage URL.
Several studies load into one frame with a ``study`` column, to compare them in one table or
plot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd

from study.store import records
from study.store.storage import open_storage

__all__ = [
    "StudyNotFoundError",
    "HPARAM_COLUMNS",
    "load_studies",
    "load_trials",
    "load_curves",
    "list_study_names",
    "open_readonly",
]

#: Hyperparameter columns of :func:`load_trials` (NaN where one does not apply).
HPARAM_COLUMNS = (
    "optimizer", "lr", "momentum", "nesterov", "dampening", "beta1", "beta2", "alpha",
    "centered", "weight_decay", "no_decay_1d", "head_lr_mult", "head_weight_decay",
    "schedule", "schedule_params", "warmup_epochs", "batch_size", "epochs", "seed",
)
_CURVES = tuple(records.CURVES)


class StudyNotFoundError(LookupError):
    """No study of that name in the storage; the message lists the ones there are."""


def open_readonly(storage: str | optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """The storage at URL ``storage`` for reading; a storage object is returned as it is.
    Open once, pass it to several loads.

    A relative SQLite path is read from the working directory; to read it from another folder
    (the notebooks read it from the project root) pass
    ``study.store.storage.resolve_sqlite_url(url, folder)``.

    Raises:
        study.store.storage.StorageError: the URL or database cannot be read; a missing SQLite
            file (never created here) is named by its absolute path.
    """
    if isinstance(storage, str):
        return open_storage(storage, create=False)
    return storage


def list_study_names(storage: str | optuna.storages.BaseStorage) -> list[str]:
    """Names of the studies in ``storage``."""
    return optuna.study.get_all_study_names(open_readonly(storage))


def load_studies(
    storage: str | optuna.storages.BaseStorage, study_names: str | Sequence[str] | None = None
) -> list[optuna.Study]:
    """The studies ``study_names`` (one name, several, or ``None`` for all) in ``storage``.

    Raises:
        StudyNotFoundError: a name is not in the storage; the message lists those that are.
        study.store.storage.StorageError: the URL or database cannot be read.
    """
    backend = open_readonly(storage)
    available = optuna.study.get_all_study_names(backend)
    if study_names is None:
        names = available
    elif isinstance(study_names, str):
        names = [study_names]
    else:
        names = list(study_names)
    for name in names:
        if name not in available:
            listed = ", ".join(repr(n) for n in available) or "none"
            raise StudyNotFoundError(
                f"no study {name!r} in this storage; its studies: {listed}."
            )
    return [optuna.load_study(study_name=name, storage=backend) for name in names]


def _nan_if_none(value: Any) -> Any:
    return math.nan if value is None else value


def _state(trial: optuna.trial.FrozenTrial) -> str:
    return records.STATE_NAMES.get(trial.state, trial.state.name.lower())


def _chosen_by(optuna_study: optuna.Study) -> str:
    """How the study chose trials that do not record their sampler, where its stored space
    tells: ``grid`` (an LR grid), ``fixed`` (fixed runs); else unknown (``""``)."""
    definition = optuna_study.user_attrs.get(records.SPACE_DEFINITION) or {}
    return "grid" if "grid" in definition else "fixed" if "configs" in definition else ""


def _trial_row(
    study_name: str, trial: optuna.trial.FrozenTrial, eval_set: str, chosen_by: str = ""
) -> dict:
    attrs = trial.user_attrs
    config = attrs.get(records.CONFIG) or {}
    curve = attrs.get(records.EVAL_ACCURACY) or []
    diverged = bool(attrs.get(records.DIVERGED, False))
    duration = trial.duration.total_seconds() if trial.duration is not None else math.nan
    state = _state(trial)
    row: dict[str, Any] = {
        "study": study_name,
        "number": trial.number,
        "state": state,
        "outcome": records.outcome(state, diverged),
        "value": _nan_if_none(trial.value),
    }
    for column in HPARAM_COLUMNS:
        row[column] = _nan_if_none(config.get(column))
    row["optimizer"] = config.get("optimizer") or trial.params.get("optimizer") or ""
    row["schedule"] = config.get("schedule") or ""
    row["schedule_params"] = records.format_schedule_params(config.get("schedule_params"))
    row["seed"] = _nan_if_none(attrs.get(records.SEED, row["seed"]))  # else the config's
    row.update({
        "final_accuracy": curve[-1] if curve and not diverged else math.nan,
        "best_accuracy": max(curve) if curve else math.nan,
        "test_accuracy": _nan_if_none(attrs.get(records.TEST_ACCURACY)),
        "epochs_run": len(curve),
        "diverged": diverged,
        "diverged_lr": _nan_if_none(attrs.get(records.DIVERGED_LR)),
        "diverged_epoch": _nan_if_none(attrs.get(records.DIVERGED_EPOCH)),
        "duration_s": duration,
        "eval_set": attrs.get(records.EVAL_SET, eval_set),
        "diverged_reason": attrs.get(records.DIVERGED_REASON, "") if diverged else "",
        "seed_accuracies": _seed_accuracies(attrs, diverged),
        "source_trial": _nan_if_none(attrs.get(records.SOURCE_TRIAL)),
        "sampler": attrs.get(records.SAMPLER, chosen_by),
    })
    row["n_seeds"] = len(row["seed_accuracies"])
    return row


def _seed_accuracies(attrs: dict, diverged: bool) -> list[float]:
    """Final accuracy per seed (chance for a diverged seed); for a trial stopped early, each
    seed's last evaluated accuracy."""
    if records.SEED_ACCURACIES in attrs:
        return list(attrs[records.SEED_ACCURACIES])
    per_seed = attrs.get(records.SEED_EVAL_ACCURACY)
    if per_seed and all(per_seed):
        return [curve[-1] for curve in per_seed]
    curve = attrs.get(records.EVAL_ACCURACY) or []
    if diverged:
        return [records.CHANCE]
    return [curve[-1]] if curve else []


def load_trials(
    storage: str | optuna.storages.BaseStorage, study_name: str | Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per trial.

    Columns: ``study``, ``number``, ``state`` (complete / pruned / failed / running /
    waiting), ``outcome`` (the state, except ``diverged`` for a complete trial that
    diverged: the one counting rule of the summary, the tables and the report),
    ``value`` (what Optuna holds: the last evaluation accuracy; for a diverged trial chance,
    0.1, or 0.0 in some studies: read ``diverged``, never the value, to tell),
    the hyperparameters ``optimizer``, ``lr``, ``momentum``, ``nesterov``, ``beta1``,
    ``beta2``, ``alpha``, ``weight_decay``, ``schedule``, ``schedule_params`` (text),
    ``warmup_epochs``, ``batch_size``, ``epochs``, ``seed`` (NaN where one does not apply),
    ``final_accuracy`` (evaluation accuracy after the last epoch run; NaN for a diverged
    trial), ``best_accuracy`` (best epoch), ``test_accuracy`` (test set at the end of a
    complete trial), ``epochs_run``, ``diverged``, ``diverged_lr``, ``diverged_epoch``,
    ``diverged_reason`` (non-finite loss, loss blew up, collapsed to chance), ``duration_s``,
    ``eval_set`` (``test`` or ``validation``), ``n_seeds`` and ``seed_accuracies`` (the
    final accuracy of each seed the trial trained, chance for a diverged one; with
    ``--repeats K`` there are K), ``source_trial`` (in a confirmation study, the trial
    whose configuration the run repeats) and ``sampler`` (how the configuration was chosen:
    ``tpe``, ``random``, ``qmc``, ``grid`` or ``fixed``; empty where the trial does not
    record it and the study's space does not tell).

    Args:
        storage: a storage URL (``sqlite:///studies/default.db``) or Optuna storage.
        study_name: one study, several (a ``study`` column tells them apart) or ``None``
            for every study in the storage.
    """
    rows = []
    for optuna_study in load_studies(storage, study_name):
        eval_set = optuna_study.user_attrs.get(records.EVAL_SET, "test")
        chosen_by = _chosen_by(optuna_study)
        rows += [_trial_row(optuna_study.study_name, t, eval_set, chosen_by)
                 for t in optuna_study.get_trials(deepcopy=False)]
    columns = ["study", "number", "state", "outcome", "value", *HPARAM_COLUMNS, "final_accuracy",
               "best_accuracy", "test_accuracy", "epochs_run", "diverged", "diverged_lr",
               "diverged_epoch", "diverged_reason", "duration_s", "eval_set", "n_seeds", "sampler",
               "seed_accuracies", "source_trial"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"diverged": bool, "epochs_run": int, "n_seeds": int})


def load_curves(
    storage: str | optuna.storages.BaseStorage, study_name: str | Sequence[str] | None = None
) -> pd.DataFrame:
    """Long format, one row per trial and epoch.

    Columns: ``study``, ``number``, ``state``, ``optimizer``, ``schedule``, ``epoch``
    (1-based), ``train_loss``, ``train_accuracy`` (running averages over the epoch),
    ``eval_accuracy`` (after the epoch, on the evaluation set), ``lr`` (learning rate in
    effect at the epoch's last update), ``batch_size`` (in effect) and ``epoch_seconds``.
    """
    rows = []
    for optuna_study in load_studies(storage, study_name):
        for trial in optuna_study.get_trials(deepcopy=False):
            rows += list(_curve_rows(optuna_study.study_name, trial))
    columns = ["study", "number", "state", "optimizer", "schedule", "epoch", *_CURVES]
    return pd.DataFrame(rows, columns=columns)


def _curve_rows(study_name: str, trial: optuna.trial.FrozenTrial) -> Iterable[dict]:
    attrs = trial.user_attrs
    config = attrs.get(records.CONFIG) or {}
    n = len(attrs.get(records.EVAL_ACCURACY) or [])
    state = _state(trial)
    for i in range(n):
        row = {
            "study": study_name,
            "number": trial.number,
            "state": state,
            "optimizer": config.get("optimizer", ""),
            "schedule": config.get("schedule", ""),
            "epoch": i + 1,
        }
        for key in _CURVES:
            values = attrs.get(key) or []
            row[key] = values[i] if i < len(values) else np.nan
        yield row



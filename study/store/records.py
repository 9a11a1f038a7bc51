"""What a study database holds: the names its writers and readers share (no torch).

``study.search.objective`` and ``study.run`` write these records through Optuna's own API
(trial and study user attributes, intermediate values); ``analysis`` and ``study.summary``
read them. Both sides take the names from here, so a record is named once. Importing this
module loads neither torch nor the training code: a report runs where only the database,
pandas and seaborn are.

Per trial (user attributes):

==================  ======================================================================
``config``          the full ``TrialConfig`` as a dict
``seed``            the trial's seed (the first one when it trains several)
``eval_set``        ``"test"`` or ``"validation"``: what ``eval_accuracy`` measured
``train_loss``      per-epoch list, running average over the epoch's batches
``train_accuracy``  per-epoch list, running average (dropout active)
``eval_accuracy``   per-epoch list, also reported as the intermediate value (epoch 1, 2, ...)
``lr``              per-epoch list, learning rate of the epoch's last update
``lr_min``          per-epoch list, lowest learning rate of the epoch's updates
``lr_max``          per-epoch list, highest learning rate of the epoch's updates (a
                    cyclic schedule's trough and peak within the epoch)
``momentum``        per-epoch list, momentum (beta1 for an optimizer with betas) of the
                    epoch's last update; ``null`` entries for an optimizer with neither
``batch_size``      per-epoch list, batch size in effect
``epoch_seconds``   per-epoch list, wall time of training plus evaluation
``diverged``        bool; when true also ``diverged_lr``, ``diverged_epoch`` and
                    ``diverged_reason`` (``"non-finite loss"``, ``"loss blew up"`` or
                    ``"collapsed to chance"``)
``test_accuracy``   test-set accuracy at the end (complete, non-diverged trials)
``seeds``           with ``--repeats K``: the K seeds, and ``seed_accuracies`` (final
                    accuracy per seed, chance for a diverged seed), ``seed_eval_accuracy``
                    (per seed, the per-epoch list) and ``seed_diverged`` (per seed)
==================  ======================================================================

A diverged trial is complete with value :data:`DIVERGED_VALUE` (chance, 0.1: what a network
that lost its weights scores, and where the plots draw it), so the sampler learns that region
is bad; it is not an error. The analysis tells a diverged trial by its ``diverged``
attribute, never by its value, so a diverged trial stored with another value (0.0, in studies
of earlier versions of the toolkit) reads the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import optuna

__all__ = [
    "CONFIG",
    "SEED",
    "EVAL_SET",
    "DIVERGED",
    "DIVERGED_LR",
    "DIVERGED_EPOCH",
    "DIVERGED_REASON",
    "TEST_ACCURACY",
    "FIXED_TRIAL",
    "SEEDS",
    "SEED_ACCURACIES",
    "SEED_EVAL_ACCURACY",
    "SEED_DIVERGED",
    "SAMPLER",
    "INDEPENDENT_SAMPLERS",
    "CHECKPOINT",
    "SEED_CHECKPOINTS",
    "SOURCE_TRIAL",
    "CONFIRM_SUFFIX",
    "SPACE_DEFINITION",
    "EPOCHS",
    "BATCH_SIZE",
    "VALIDATION",
    "TRAIN_SIZE",
    "PRECISION",
    "STUDY_SEED",
    "TOOLKIT_VERSION",
    "SOURCE_STUDY",
    "SPACE",
    "ALLOCATION",
    "PRUNE_WITHIN",
    "REPEATS",
    "COHORT",
    "CURVES",
    "EVAL_ACCURACY",
    "EPOCH_SECONDS",
    "DIVERGED_VALUE",
    "METRIC_NAMES",
    "CHANCE",
    "SETTINGS",
    "CHECKED_SETTINGS",
    "LEGACY_SETTINGS",
    "STATE_NAMES",
    "OUTCOMES",
    "outcome",
    "grid_point",
    "schedule_param",
    "format_schedule_params",
    "encode_distribution",
    "decode_distribution",
]

# --- per trial ---------------------------------------------------------------------------

CONFIG = "config"
SEED = "seed"
EVAL_SET = "eval_set"
DIVERGED = "diverged"
DIVERGED_LR = "diverged_lr"
DIVERGED_EPOCH = "diverged_epoch"
DIVERGED_REASON = "diverged_reason"
TEST_ACCURACY = "test_accuracy"
#: Which fixed configuration an enqueued trial runs (the ``lab`` space).
FIXED_TRIAL = "fixed_trial"
SEEDS = "seeds"
SEED_ACCURACIES = "seed_accuracies"
SEED_EVAL_ACCURACY = "seed_eval_accuracy"
SEED_DIVERGED = "seed_diverged"
#: In a confirmation study (``python -m study.confirm``): the trial of the source study
#: whose configuration a run repeats with a fresh seed.
SOURCE_TRIAL = "source_trial"
#: How the trial's configuration was chosen: ``tpe``, ``random``, ``qmc`` (a sampler),
#: ``grid`` (an LR grid) or ``fixed`` (a space of fixed runs). Tuning curves are only valid
#: for independently chosen trials (all but ``tpe``).
SAMPLER = "sampler"
INDEPENDENT_SAMPLERS = ("random", "qmc", "grid", "fixed")
#: With ``--checkpoints DIR``: the path of the trial's checkpoint (its first seed's), and with
#: ``--repeats K`` the list of every seed's as ``seed_checkpoints``.
CHECKPOINT = "checkpoint"
SEED_CHECKPOINTS = "seed_checkpoints"
#: The confirmation study of study S is named S + CONFIRM_SUFFIX, in the same storage.
CONFIRM_SUFFIX = ".confirm"

#: Per-epoch lists: user attribute -> the ``study.train.loop.EpochStats`` field it records.
#: A trial may lack ``lr_min``, ``lr_max`` and ``momentum`` (earlier versions of the toolkit
#: did not record them): a reader takes a missing list as missing values.
CURVES: Mapping[str, str] = {
    "train_loss": "train_loss",
    "train_accuracy": "train_accuracy",
    "eval_accuracy": "eval_accuracy",
    "lr": "lr",
    "lr_min": "lr_min",
    "lr_max": "lr_max",
    "momentum": "momentum",
    "batch_size": "batch_size",
    "epoch_seconds": "seconds",
}
EVAL_ACCURACY = "eval_accuracy"
EPOCH_SECONDS = "epoch_seconds"

#: Accuracy of guessing among MNIST's ten classes: what a diverged run counts as in the
#: sensitivity metrics and plots, and the level a collapsed run falls back to.
CHANCE = 0.10
#: The fewest seeds the report gives a t-interval from (fewer: no interval), and the fewest
#: seeds per learning rate it bootstraps a band width from; the commands warn below them.
MIN_SEEDS = 3
MIN_BOOTSTRAP_SEEDS = 5
#: The value a diverged trial is told to Optuna with: chance, as the plots show it, so
#: optuna-dashboard and ``optuna.visualization`` draw it where the report does.
DIVERGED_VALUE = CHANCE
#: The objective's name, stored with the study (optuna-dashboard shows it).
METRIC_NAMES = ("accuracy",)
#: A learning-rate range test (``python -m study.lr_range``), one trial per test: the
#: optimizer tested, the learning rate of each update, its loss and smoothed loss (lists),
#: the suggestions (rule -> learning rate, ``null`` where undefined), the learning rate it
#: stopped at and why (``diverged``, ``non-finite loss`` or ``reached end_lr``), and its
#: settings (start_lr, end_lr, num_updates, smooth, diverge_factor, train_size, device,
#: toolkit_version, seconds).
LR_RANGE_OPTIMIZER = "optimizer"
LR_RANGE_LRS = "lrs"
LR_RANGE_LOSSES = "losses"
LR_RANGE_SMOOTHED = "smoothed"
LR_RANGE_SUGGESTIONS = "suggestions"
LR_RANGE_STOPPED_AT = "stopped_at"
LR_RANGE_WHY = "why"
LR_RANGE_SETTINGS = "lr_range_settings"

# --- per study ---------------------------------------------------------------------------

#: Settings a study keeps for life: its trials are only comparable under the same ones.
CHECKED_SETTINGS = (
    "space",
    "optimizers",
    "epochs",
    "batch_size",
    "validation",
    "train_size",
    "allocation",
    "prune_within",
    "repeats",
    "precision",
    "lr_grid",
)
#: The study's settings, stored as one user attribute each when it is created: the kept
#: ones, and what describes the study (its space, seed, evaluation set, toolkit version).
SETTINGS = (
    *CHECKED_SETTINGS,
    "cohort",
    "space_description",
    "space_definition",
    "seed",
    "eval_set",
    "toolkit_version",
)
#: Settings a study may lack (earlier versions of the toolkit did not store them), each with
#: the value such a study ran with: a missing setting is read as it.
LEGACY_SETTINGS = {
    "allocation": "sampler",
    "prune_within": "study",
    "repeats": 1,
    "precision": "fp32",
    "lr_grid": None,
    "cohort": 1,
}
#: The study ``python -m study.lr_range`` writes to unless told another name, the study
#: attribute that marks a study as one of range tests, and the name of its trials' value
#: (the suggested learning rate).
LR_RANGE_STUDY = "lr-range"
LR_RANGE_KIND = "lr_range_test"
LR_RANGE_METRIC = "suggested_lr"
#: Settings of :data:`SETTINGS` the readers look up by name: the stored search space (its
#: ranges, or an LR grid's points, or fixed configurations) and the epochs per trial.
SPACE_DEFINITION = "space_definition"
EPOCHS = "epochs"
#: More settings of :data:`SETTINGS` read by name (``python -m study.confirm`` trains as its
#: source study did): batch size, validation share, training images, precision, the study's
#: seed (its validation split's) and the toolkit version that made it. A confirmation study
#: also names its source study.
BATCH_SIZE = "batch_size"
VALIDATION = "validation"
TRAIN_SIZE = "train_size"
PRECISION = "precision"
STUDY_SEED = "seed"
TOOLKIT_VERSION = "toolkit_version"
SOURCE_STUDY = "source_study"
#: The space's name, and with :data:`PRECISION` the settings an existing study keeps for the
#: options a run leaves out (``python -m study.run`` reads them back by name).
SPACE = "space"
ALLOCATION = "allocation"
PRUNE_WITHIN = "prune_within"
REPEATS = "repeats"
#: Trials trained at once (``--cohort``): kept for the runs that resume the study, but not
#: checked (a trial trained in a cohort is stored as it would be alone; the size changes only
#: how many trials the sampler proposes at a time).
COHORT = "cohort"

# --- how a trial ended: one counting rule for the summary, the tables and the report -----

#: Optuna's trial states as the tables write them.
STATE_NAMES: Mapping[optuna.trial.TrialState, str] = {
    optuna.trial.TrialState.COMPLETE: "complete",
    optuna.trial.TrialState.PRUNED: "pruned",
    optuna.trial.TrialState.FAIL: "failed",
    optuna.trial.TrialState.RUNNING: "running",
    optuna.trial.TrialState.WAITING: "waiting",
}
#: Every outcome :func:`outcome` returns, in the order summaries list them.
OUTCOMES = ("complete", "pruned", "diverged", "failed", "running", "waiting")


def outcome(state: str, diverged: bool) -> str:
    """How a trial ended: its state name, except that a complete diverged trial is
    ``"diverged"`` (it is finished, but its accuracy is not a final accuracy)."""
    if state == "complete" and diverged:
        return "diverged"
    return state


# --- formatting the readers need -----------------------------------------------------------


def schedule_param(schedule: str, param: str) -> str:
    """The Optuna name of a schedule's sampled parameter: ``<schedule>_<param>``, except a
    parameter already named after its schedule (``step``'s ``step_epochs`` stays
    ``step_epochs``; its ``gamma`` becomes ``step_gamma``)."""
    return param if param.startswith(f"{schedule}_") else f"{schedule}_{param}"


def grid_point(optimizer: Any, lr: Any) -> tuple[Any, Any]:
    """A point of an LR grid as a comparable key: learning rates to 6 significant digits
    (how the grid writes them), so a stored value and a grid value match."""
    return optimizer, (float(f"{lr:.6g}") if isinstance(lr, float) else lr)


def format_schedule_params(params: Mapping[str, Any] | None) -> str:
    """``step_epochs=2, gamma=0.1``: a schedule's parameters as short text for tables."""
    if not params:
        return ""
    parts = []
    for key, value in params.items():
        if isinstance(value, (list, tuple)):
            parts.append(f"{key}=" + ",".join(f"{v:g}" for v in value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key}={value:.3g}")
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def encode_distribution(distribution: optuna.distributions.BaseDistribution) -> dict:
    """An Optuna distribution as the JSON-ready dict stored in a study's space definition
    (``optuna.distributions.distribution_to_json``, parsed)."""
    return json.loads(optuna.distributions.distribution_to_json(distribution))


def decode_distribution(data: Mapping[str, Any]) -> optuna.distributions.BaseDistribution:
    """The inverse of :func:`encode_distribution`."""
    return optuna.distributions.json_to_distribution(json.dumps(data))

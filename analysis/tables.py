"""Tables from :func:`analysis.load.load_trials`: best trials, learning-rate sensitivity,
hyperparameter importance.

All functions take the tidy trials frame; with several studies in it (a ``study`` column of
more than one value) every table is computed per study.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import optuna
import pandas as pd

from study.records import CHANCE

__all__ = [
    "CHANCE",
    "is_complete",
    "lr_bins",
    "lr_bin_centres",
    "counted_accuracy",
    "best_trials",
    "lr_sensitivity",
    "sensitivity_metrics",
    "ci_separation",
    "param_importance",
]

_CONFIG_COLUMNS = ("lr", "momentum", "nesterov", "beta1", "weight_decay", "schedule",
                   "schedule_params", "warmup_epochs", "batch_size")


def is_complete(trials: pd.DataFrame) -> pd.Series:
    """Rows of trials that ran to the end without diverging (their accuracy is final)."""
    return trials["outcome"] == "complete"


def lr_bins(lr: np.ndarray | pd.Series, bins_per_decade: int = 2) -> np.ndarray:
    """The log-LR bin of each learning rate: ``floor(log10(lr) * bins_per_decade)``."""
    return np.floor(np.log10(np.asarray(lr, dtype=float)) * bins_per_decade)


def lr_bin_centres(bins: np.ndarray, bins_per_decade: int = 2) -> np.ndarray:
    """The learning rate at the middle (log scale) of each bin of :func:`lr_bins`."""
    return 10 ** ((np.asarray(bins, dtype=float) + 0.5) / bins_per_decade)


def counted_accuracy(
    accuracy: np.ndarray | pd.Series, diverged: np.ndarray | pd.Series, chance: float = CHANCE
) -> np.ndarray:
    """Accuracy as the sensitivity metric counts it: diverged runs (and NaN) at ``chance``,
    every run floored at ``chance`` (below chance is no worse than guessing)."""
    acc = np.nan_to_num(np.asarray(accuracy, dtype=float), nan=chance)
    return np.where(np.asarray(diverged, dtype=bool), chance, np.maximum(acc, chance))


def _groups(trials: pd.DataFrame, by: Sequence[str]) -> list[str]:
    return (["study"] if trials["study"].nunique() > 1 else []) + list(by)


def best_trials(trials: pd.DataFrame, by: Sequence[str] = ("optimizer",)) -> pd.DataFrame:
    """The best complete, non-diverged trial of each group (per optimizer by default; pass
    ``by=("optimizer", "schedule")`` for optimizer x schedule).

    Columns: the group keys, ``number``, ``final_accuracy``, ``test_accuracy`` and the
    configuration (columns empty for every row are dropped); best first.
    """
    keys = _groups(trials, by)
    done = trials[is_complete(trials)]
    done = done.dropna(subset=["final_accuracy"])
    if done.empty:
        return pd.DataFrame(columns=[*keys, "number", "final_accuracy"])
    best = done.loc[done.groupby(keys, sort=False)["final_accuracy"].idxmax()]
    columns = [*keys, "number", "final_accuracy", "test_accuracy",
               *(c for c in _CONFIG_COLUMNS if c not in keys)]
    table = best[columns].sort_values("final_accuracy", ascending=False)
    table = table.loc[:, table.notna().any() | table.columns.isin(keys)]
    return table.reset_index(drop=True)


def sensitivity_metrics(
    lr: np.ndarray,
    accuracy: np.ndarray,
    *,
    tolerance: float = 0.01,
    bins_per_decade: int = 2,
    chance: float = CHANCE,
) -> dict[str, float]:
    """Learning-rate sensitivity of one optimizer from its sampled (lr, accuracy) pairs.

    Diverged runs enter with accuracy ``chance`` (or NaN, treated the same).

    - ``best_lr``, ``best_accuracy``: the best run.
    - ``good_lr_width``: decades of learning rate spanned by the runs within ``tolerance``
      of the best, ``log10(max good lr) - log10(min good lr)`` (0 with one good run).
    - ``sensitivity``: after Wortsman et al. 2023 ("Small-scale proxies for large-scale
      Transformer training instabilities", arXiv 2309.14322), who define LR sensitivity as
      the expected excess of the final loss over the best one across a learning-rate sweep,
      each loss clipped at the loss at initialisation. Adapted to accuracy::

          a_i = max(accuracy_i, chance)                  (diverged: a_i = chance)
          b   = floor(log10(lr_i) * bins_per_decade)     (log-LR bins)
          sensitivity = best_accuracy - mean over non-empty bins b of mean(a_i in b)

      The binning makes every occupied part of the LR range count once, so a sampler that
      crowds around the optimum does not hide how bad the rest of the range is. 0 means
      every learning rate tried is as good as the best; ``best_accuracy - chance`` means
      nothing but the best learned anything.
    """
    lr = np.asarray(lr, dtype=float)
    acc = counted_accuracy(accuracy, np.zeros(lr.size, dtype=bool), chance)
    if lr.size == 0:
        return {"best_lr": math.nan, "best_accuracy": math.nan, "good_lr_width": math.nan,
                "sensitivity": math.nan}
    best = int(np.argmax(acc))
    good = lr[acc >= acc[best] - tolerance - 1e-12]
    _, inverse = np.unique(lr_bins(lr, bins_per_decade), return_inverse=True)
    bin_means = np.bincount(inverse, weights=acc) / np.bincount(inverse)
    return {
        "best_lr": float(lr[best]),
        "best_accuracy": float(acc[best]),
        "good_lr_width": float(np.log10(good.max()) - np.log10(good.min())),
        "sensitivity": float(acc[best] - bin_means.mean()),
    }


def lr_sensitivity(
    trials: pd.DataFrame,
    *,
    tolerance: float = 0.01,
    bins_per_decade: int = 2,
    chance: float = CHANCE,
    include_pruned: bool = False,
    n_boot: int = 1000,
    min_trials: int = 5,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Learning-rate sensitivity per optimizer: the question the toolkit exists to answer.

    Uses complete trials (their final accuracy) and diverged ones (at ``chance``); pruned
    trials stopped early, so their accuracy is not comparable and they are left out unless
    ``include_pruned``. See :func:`sensitivity_metrics` for the formulas.

    Columns per optimizer: ``n`` (runs used), ``best_lr``, ``best_accuracy``,
    ``good_lr_width`` (decades within ``tolerance`` of the best), ``sensitivity``,
    ``min_diverged_lr`` (smallest learning rate that diverged), ``n_complete``,
    ``n_pruned``, ``n_diverged``, ``n_failed``; for ``best_accuracy``, ``good_lr_width``
    and ``sensitivity`` a bootstrap percentile interval ``*_lo`` / ``*_hi`` (``n_boot``
    resamples of the runs, ``confidence`` level), and ``note``: empty, or "n too small"
    when fewer than ``min_trials`` runs (then the intervals are NaN).
    """
    keys = _groups(trials, ("optimizer",))
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2
    rows = []
    for key, group in trials.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        states = group["state"]
        used_states = ["complete", "pruned"] if include_pruned else ["complete"]
        used = group[states.isin(used_states) & group["lr"].notna()]
        accuracy = counted_accuracy(used["final_accuracy"], used["diverged"], chance)
        lr = used["lr"].to_numpy(dtype=float)
        kwargs = {"tolerance": tolerance, "bins_per_decade": bins_per_decade, "chance": chance}
        row = dict(zip(keys, key, strict=True))
        row["n"] = len(used)
        row.update(sensitivity_metrics(lr, accuracy, **kwargs))
        diverged_lrs = group.loc[group["diverged"], "lr"]
        row["min_diverged_lr"] = diverged_lrs.min() if len(diverged_lrs) else math.nan
        row["n_complete"] = int(is_complete(group).sum())
        row["n_pruned"] = int((states == "pruned").sum())
        row["n_diverged"] = int(group["diverged"].sum())
        row["n_failed"] = int((states == "failed").sum())
        metrics = ("best_accuracy", "good_lr_width", "sensitivity")
        if len(used) >= min_trials:
            boot = np.array([
                [m[k] for k in metrics]
                for m in (sensitivity_metrics(lr[idx], accuracy[idx], **kwargs)
                          for idx in rng.integers(0, len(used), size=(n_boot, len(used))))
            ])
            for j, name in enumerate(metrics):
                row[f"{name}_lo"], row[f"{name}_hi"] = np.quantile(boot[:, j], [alpha, 1 - alpha])
            row["note"] = ""
        else:
            for name in metrics:
                row[f"{name}_lo"] = row[f"{name}_hi"] = math.nan
            row["note"] = f"n too small ({len(used)} < {min_trials})"
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values([*keys[:-1], "best_accuracy"],
                             ascending=[True] * (len(keys) - 1) + [False]).reset_index(drop=True)


def ci_separation(sensitivity: pd.DataFrame, metric: str = "best_accuracy") -> pd.DataFrame:
    """Which optimizers' intervals for ``metric`` do not overlap.

    One row per pair (``a`` ranked above ``b`` by ``metric``), with ``difference`` and
    ``separated`` (True when a's interval lies wholly above b's; False when they overlap;
    NaN when either has no interval).
    """
    rows = []
    ranked = sensitivity.sort_values(metric, ascending=False)
    group_keys = ["study"] if "study" in ranked else []
    for _, part in (ranked.groupby(group_keys) if group_keys else [((), ranked)]):
        records = part.to_dict("records")
        for i, a in enumerate(records):
            for b in records[i + 1:]:
                lo_a, hi_b = a.get(f"{metric}_lo"), b.get(f"{metric}_hi")
                known = not (pd.isna(lo_a) or pd.isna(hi_b))
                rows.append({
                    **{k: a[k] for k in group_keys},
                    "a": a["optimizer"],
                    "b": b["optimizer"],
                    "difference": a[metric] - b[metric],
                    "separated": bool(lo_a > hi_b) if known else math.nan,
                })
    return pd.DataFrame(rows, columns=[*group_keys, "a", "b", "difference", "separated"])


def param_importance(optuna_study: optuna.Study) -> pd.DataFrame:
    """Hyperparameter importance by Optuna's default evaluator (PED-ANOVA in Optuna 5, which
    handles conditional parameters such as ``sgd_momentum``).

    Columns ``param`` and ``importance`` (summing to 1), most important first; empty with
    fewer than two complete trials.
    """
    complete = optuna_study.get_trials(deepcopy=False,
                                       states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return pd.DataFrame(columns=["param", "importance"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # PED-ANOVA warns per conditional parameter seen in few trials; the table says n.
        warnings.filterwarnings("ignore", message="Some regimes for parameter")
        importances = optuna.importance.get_param_importances(optuna_study)
    return pd.DataFrame(list(importances.items()), columns=["param", "importance"])

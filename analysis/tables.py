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

from study.store.records import CHANCE, OUTCOMES

__all__ = [
    "CHANCE",
    "is_complete",
    "outcome_counts",
    "lr_bins",
    "lr_bin_centres",
    "counted_accuracy",
    "best_trials",
    "lr_sensitivity",
    "sensitivity_metrics",
    "PRUNED_AS_LOWER_BOUNDS",
    "PRUNED_LEFT_OUT",
    "ci_separation",
    "confirmation",
    "seed_noise_verdicts",
    "param_importance",
]

_CONFIG_COLUMNS = ("lr", "momentum", "nesterov", "dampening", "beta1", "weight_decay",
                   "head_lr_mult", "head_weight_decay", "schedule", "schedule_params",
                   "warmup_epochs", "batch_size")


def is_complete(trials: pd.DataFrame) -> pd.Series:
    """Rows of trials that ran to the end without diverging (their accuracy is final)."""
    return trials["outcome"] == "complete"


def outcome_counts(trials: pd.DataFrame, by: Sequence[str] = ("optimizer",)) -> pd.DataFrame:
    """Trials per group and ``outcome``, counted as the command-line summary counts them.

    One column per outcome of :data:`study.store.records.OUTCOMES` (``waiting`` only when some
    trial waits), then ``total``; one row per group (per optimizer by default), then a row
    ``all`` with the study's totals (a diverged trial is ``diverged``, never ``complete``).
    """
    keys = _groups(trials, by)
    outcomes = [o for o in OUTCOMES if o != "waiting" or (trials["outcome"] == o).any()]
    if trials.empty:
        return pd.DataFrame(columns=[*keys, *outcomes, "total"])
    table = pd.crosstab([trials[k] for k in keys], trials["outcome"])
    table = table.reindex(columns=outcomes, fill_value=0)
    table["total"] = table.sum(axis=1)
    table.columns.name = None
    table = table.reset_index()
    totals = {k: "all" if i == 0 else "" for i, k in enumerate(keys)}
    totals.update({c: int(table[c].sum()) for c in [*outcomes, "total"]})
    return pd.concat([table, pd.DataFrame([totals])], ignore_index=True)


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


def best_trials(
    trials: pd.DataFrame, by: Sequence[str] = ("optimizer",), *, n: int = 1
) -> pd.DataFrame:
    """The best ``n`` complete, non-diverged trials of each group (per optimizer by default;
    pass ``by=("optimizer", "schedule")`` for optimizer x schedule).

    Columns: the group keys, ``number``, ``final_accuracy``, ``test_accuracy`` and the
    configuration (columns empty for every row are dropped); best first.
    """
    keys = _groups(trials, by)
    done = trials[is_complete(trials)]
    done = done.dropna(subset=["final_accuracy"])
    if done.empty:
        return pd.DataFrame(columns=[*keys, "number", "final_accuracy"])
    ranked = done.sort_values(["final_accuracy", "number"], ascending=[False, True])
    best = ranked.groupby(keys, sort=False).head(n)
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


#: How ``lr_sensitivity`` counts pruned trials, said in its table's ``attrs`` and the report.
PRUNED_AS_LOWER_BOUNDS = "pruned runs at the accuracy they were stopped at (lower bounds)"
PRUNED_LEFT_OUT = "pruned runs left out"


def lr_sensitivity(
    trials: pd.DataFrame,
    *,
    tolerance: float = 0.01,
    bins_per_decade: int = 2,
    chance: float = CHANCE,
    include_pruned: bool = True,
    interval: str = "auto",
    n_boot: int = 1000,
    min_trials: int = 5,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Learning-rate sensitivity per optimizer: the question the toolkit exists to answer.

    Uses complete trials (their final accuracy), diverged ones (at ``chance``) and, unless
    ``include_pruned`` is false, pruned ones at the accuracy they were stopped at: pruned
    trials are the bad learning rates, and leaving them out makes every optimizer look less
    sensitive than it is; their accuracy is a lower bound of what they would have reached.
    With several seeds per trial (``--repeats``), a trial's accuracy is the mean over its
    seeds. See :func:`sensitivity_metrics` for the formulas.

    Columns per optimizer: ``n`` (runs used), ``best_lr``, ``best_accuracy``,
    ``good_lr_width`` (decades within ``tolerance`` of the best), ``sensitivity``,
    ``min_diverged_lr`` (smallest learning rate that diverged), ``n_complete``,
    ``n_pruned``, ``n_diverged``, ``n_failed``; for ``best_accuracy``, ``good_lr_width``
    and ``sensitivity`` a bootstrap percentile interval ``*_lo`` / ``*_hi`` (``n_boot``
    resamples, ``confidence`` level); ``interval``: what was resampled, and ``note``: empty,
    or why there is no interval. ``table.attrs["pruned"]`` says how pruned runs counted.

    Args:
        interval: ``"seeds"`` resamples the seeds of each trial (its training noise at fixed
            learning rates: the interval an LR grid with ``--repeats`` is for; every trial
            needs two seeds or more); ``"trials"`` resamples the trials (the sampled
            learning rates, for a study with one seed per trial); ``"auto"`` picks seeds
            where every used trial has two or more, trials otherwise.
    """
    if interval not in ("auto", "seeds", "trials"):
        raise ValueError(f"interval must be auto, seeds or trials, but got {interval=}.")
    keys = _groups(trials, ("optimizer",))
    rng = np.random.default_rng(seed)
    options = {"tolerance": tolerance, "bins_per_decade": bins_per_decade, "chance": chance}
    used_states = ["complete", "pruned"] if include_pruned else ["complete"]
    rows = []
    for key, group in trials.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        used = group[group["state"].isin(used_states) & group["lr"].notna()]
        accuracy = counted_accuracy(used["final_accuracy"], used["diverged"], chance)
        lr = used["lr"].to_numpy(dtype=float)
        row = {**dict(zip(keys, key, strict=True)), "n": len(used),
               **sensitivity_metrics(lr, accuracy, **options), **_outcome_columns(group)}
        boot, row["interval"], row["note"] = _sensitivity_draws(
            lr, accuracy, _seed_matrix(used, chance), interval=interval, min_trials=min_trials,
            n_boot=n_boot, rng=rng, options=options)
        row.update(_interval_columns(boot, confidence))
        rows.append(row)
    table = _best_first(pd.DataFrame(rows), keys)
    table.attrs["pruned"] = PRUNED_AS_LOWER_BOUNDS if include_pruned else PRUNED_LEFT_OUT
    return table


def _best_first(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per study (where there are several), the optimizers by ``best_accuracy``, best first."""
    if table.empty:
        return table
    table = table.sort_values([*keys[:-1], "best_accuracy"],
                              ascending=[True] * (len(keys) - 1) + [False])
    return table.reset_index(drop=True)


#: The metrics of :func:`sensitivity_metrics` that :func:`lr_sensitivity` gives intervals.
_INTERVAL_METRICS = ("best_accuracy", "good_lr_width", "sensitivity")


def _outcome_columns(group: pd.DataFrame) -> dict[str, float | int]:
    """``min_diverged_lr`` and the trials per outcome of one optimizer's trials."""
    diverged_lrs = group.loc[group["diverged"], "lr"]
    row: dict[str, float | int] = {
        "min_diverged_lr": diverged_lrs.min() if len(diverged_lrs) else math.nan}
    counts = group["outcome"].value_counts()
    for name in ("complete", "pruned", "diverged", "failed"):
        row[f"n_{name}"] = int(counts.get(name, 0))
    return row


def _sensitivity_draws(
    lr: np.ndarray,
    accuracy: np.ndarray,
    seeds: np.ndarray | None,
    *,
    interval: str,
    min_trials: int,
    n_boot: int,
    rng: np.random.Generator,
    options: dict,
) -> tuple[np.ndarray | None, str, str]:
    """The bootstrap draws (resamples x :data:`_INTERVAL_METRICS`) of one optimizer's runs,
    what was resampled, and why there are none (``None``) where there are none."""
    by_seeds = interval == "seeds" or (interval == "auto" and seeds is not None)
    if by_seeds and seeds is not None and lr.size >= 2:
        # Resample each trial's seeds: the learning rates stay where they were run.
        idx = rng.integers(0, seeds.shape[1], size=(n_boot, *seeds.shape))
        means = np.take_along_axis(seeds[None, :, :], idx, axis=2).mean(axis=2)
        draws = ((lr, mean) for mean in means)
        resampled = f"over seeds ({seeds.shape[1]} per run)"
    elif by_seeds:
        return None, "", "fewer than 2 seeds per run" if seeds is None else "fewer than 2 runs"
    elif lr.size >= min_trials:
        draws = ((lr[idx], accuracy[idx])
                 for idx in rng.integers(0, lr.size, size=(n_boot, lr.size)))
        resampled = "over sampled runs"
    else:
        return None, "", f"n too small ({lr.size} < {min_trials})"
    boot = np.array([[m[k] for k in _INTERVAL_METRICS] for m in (
        sensitivity_metrics(x, y, **options) for x, y in draws)])
    return boot, resampled, ""


def _interval_columns(boot: np.ndarray | None, confidence: float) -> dict[str, float]:
    """``<metric>_lo`` / ``<metric>_hi``: the ``confidence`` percentile interval of each
    metric's draws (NaN without draws)."""
    alpha = (1 - confidence) / 2
    row = {}
    for j, name in enumerate(_INTERVAL_METRICS):
        if boot is None:
            row[f"{name}_lo"] = row[f"{name}_hi"] = math.nan
        else:
            row[f"{name}_lo"], row[f"{name}_hi"] = np.quantile(boot[:, j], [alpha, 1 - alpha])
    return row


def _seed_matrix(used: pd.DataFrame, chance: float) -> np.ndarray | None:
    """Runs x seeds accuracies as the metric counts them, or ``None`` unless every run has
    the same number (two or more) of seeds."""
    if "seed_accuracies" not in used or used.empty:
        return None
    counts = used["seed_accuracies"].map(len)
    if counts.nunique() != 1 or counts.iloc[0] < 2:
        return None
    matrix = np.array(used["seed_accuracies"].tolist(), dtype=float)
    return counted_accuracy(matrix, np.zeros(matrix.shape, dtype=bool), chance)


def ci_separation(
    sensitivity: pd.DataFrame, metric: str = "best_accuracy", *, higher_is_better: bool = True
) -> pd.DataFrame:
    """Which optimizers' intervals for ``metric`` do not overlap.

    One row per pair (``a`` ranked ahead of ``b`` by ``metric``: higher first, or lower
    first when ``higher_is_better`` is false, as for ``sensitivity``), with ``difference``,
    ``separated`` (True when the intervals do not overlap; False when they do; NaN when
    either has no interval) and ``note`` (empty, or which optimizer has no interval and
    why, from the ``note`` of :func:`lr_sensitivity`).
    """
    rows = []
    ranked = sensitivity.sort_values(metric, ascending=not higher_is_better)
    group_keys = ["study"] if "study" in ranked else []
    for _, part in (ranked.groupby(group_keys) if group_keys else [((), ranked)]):
        records = part.to_dict("records")
        for i, a in enumerate(records):
            for b in records[i + 1:]:
                if higher_is_better:
                    edge_a, edge_b = a.get(f"{metric}_lo"), b.get(f"{metric}_hi")
                else:
                    edge_a, edge_b = b.get(f"{metric}_lo"), a.get(f"{metric}_hi")
                known = not (pd.isna(edge_a) or pd.isna(edge_b))
                missing = [f"{r['optimizer']}: {r.get('note') or 'none computed'}"
                           for r in (a, b) if pd.isna(r.get(f"{metric}_lo"))]
                rows.append({
                    **{k: a[k] for k in group_keys},
                    "a": a["optimizer"],
                    "b": b["optimizer"],
                    "difference": a[metric] - b[metric],
                    "separated": bool(edge_a > edge_b) if known else math.nan,
                    "note": "no interval for " + "; ".join(missing) if missing else "",
                })
    columns = [*group_keys, "a", "b", "difference", "separated", "note"]
    return pd.DataFrame(rows, columns=columns)


def _bootstrap_mean(values: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    return values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)


def confirmation(
    trials: pd.DataFrame, *, chance: float = CHANCE, confidence: float = 0.95,
    n_boot: int = 10_000, seed: int = 0,
) -> pd.DataFrame:
    """Per configuration of a confirmation study (``python -m study.confirm``): its final
    accuracy over fresh seeds.

    One row per optimizer and ``source_trial`` (the study's trial the configuration comes
    from): ``lr``, ``n`` (finished seeds), ``mean``, ``std``, ``mean_lo`` / ``mean_hi`` (a
    ``confidence`` bootstrap percentile interval of the mean over seeds) and
    ``n_diverged`` (diverged seeds count at ``chance``); best mean first. The accuracy is the
    test set's: where the study evaluated on a validation split (which chose these
    configurations), the test accuracy measured at the end of each run.
    """
    done = _finished(trials)
    keys = _groups(done, ("optimizer", "source_trial"))
    columns = [*keys, "lr", "n", "mean", "std", "mean_lo", "mean_hi", "n_diverged"]
    if done.empty:
        return pd.DataFrame(columns=columns)
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2
    rows = []
    for key, group in done.groupby(keys, sort=True):
        values = _test_accuracy(group, chance)
        boot = _bootstrap_mean(values, rng, n_boot)
        rows.append({
            **dict(zip(keys, key, strict=True)),
            "lr": group["lr"].iloc[0],
            "n": len(values),
            "mean": values.mean(),
            "std": values.std(ddof=1) if len(values) > 1 else math.nan,
            "mean_lo": np.quantile(boot, alpha),
            "mean_hi": np.quantile(boot, 1 - alpha),
            "n_diverged": int(group["diverged"].sum()),
        })
    table = pd.DataFrame(rows, columns=columns).astype({"source_trial": int})
    return table.sort_values("mean", ascending=False).reset_index(drop=True)


def _finished(trials: pd.DataFrame) -> pd.DataFrame:
    """The runs of a confirmation study that ran to the end (diverged ones included)."""
    return trials[trials["outcome"].isin(["complete", "diverged"])]


def _test_accuracy(runs: pd.DataFrame, chance: float) -> np.ndarray:
    """Each run's final test accuracy as the metrics count it (diverged at chance)."""
    accuracy = np.where(runs["eval_set"] == "validation", runs["test_accuracy"],
                        runs["final_accuracy"])
    return counted_accuracy(accuracy, runs["diverged"], chance)


def seed_noise_verdicts(
    trials: pd.DataFrame, *, chance: float = CHANCE, confidence: float = 0.95,
    n_boot: int = 10_000, seed: int = 0,
) -> pd.DataFrame:
    """Does the leader's margin exceed seed noise? Each pair of optimizers in a confirmation
    study, each at its best configuration (by mean over seeds).

    The test is a bootstrap over seeds: both optimizers' seeds are resampled ``n_boot``
    times and the ``confidence`` percentile interval of the difference of means is taken;
    the margin exceeds seed noise when that interval excludes 0. One row per pair (``a``
    ahead of ``b``): ``difference``, ``difference_lo``, ``difference_hi``,
    ``exceeds_noise`` and ``verdict`` (a sentence saying so); per study when the frame holds
    several (a ``study`` column first).
    """
    if "study" in trials and trials["study"].nunique() > 1:
        parts = [seed_noise_verdicts(part, chance=chance, confidence=confidence, n_boot=n_boot,
                                     seed=seed).assign(study=name)
                 for name, part in trials.groupby("study", sort=True)]
        frame = pd.concat(parts, ignore_index=True)
        return frame[["study", *frame.columns.drop("study")]]
    table = confirmation(trials, chance=chance, confidence=confidence, n_boot=10, seed=seed)
    if table.empty:
        return pd.DataFrame(columns=_VERDICT_COLUMNS)
    best = table.drop_duplicates("optimizer")  # sorted by mean: each optimizer's best
    done = _finished(trials)
    values = {
        row.optimizer: _test_accuracy(done[done["source_trial"] == row.source_trial], chance)
        for row in best.itertuples()
    }
    rng = np.random.default_rng(seed)
    leaders = list(best["optimizer"])
    rows = [_verdict(a, b, values[a], values[b], rng=rng, n_boot=n_boot, confidence=confidence)
            for i, a in enumerate(leaders) for b in leaders[i + 1:]]
    return pd.DataFrame(rows, columns=_VERDICT_COLUMNS)


_VERDICT_COLUMNS = ["a", "b", "difference", "difference_lo", "difference_hi", "exceeds_noise",
                    "verdict"]


def _verdict(
    a: str,
    b: str,
    va: np.ndarray,
    vb: np.ndarray,
    *,
    rng: np.random.Generator,
    n_boot: int,
    confidence: float,
) -> dict[str, object]:
    """One row of :func:`seed_noise_verdicts`: ``a`` (seeds' accuracies ``va``) against ``b``
    (``vb``), by a bootstrap over each one's seeds."""
    diff = va.mean() - vb.mean()
    if min(len(va), len(vb)) < 2:
        lo = hi = exceeds = math.nan
        verdict = (f"{a} leads {b} by {diff:+.4f}, but with fewer than 2 seeds each the seed "
                   "noise cannot be told.")
    else:
        alpha = (1 - confidence) / 2
        boot = _bootstrap_mean(va, rng, n_boot) - _bootstrap_mean(vb, rng, n_boot)
        lo, hi = np.quantile(boot, [alpha, 1 - alpha])
        exceeds = bool(lo > 0)
        said = "exceeds" if exceeds else "is within"
        level = f"{confidence:.0%}".replace("%", " %")
        verdict = (
            f"{a} leads {b} by {diff:+.4f} (mean over {len(va)} and {len(vb)} seeds; {level} "
            f"interval {lo:+.4f} to {hi:+.4f}, bootstrap over seeds): the margin {said} seed "
            "noise."
        )
    return {"a": a, "b": b, "difference": diff, "difference_lo": lo, "difference_hi": hi,
            "exceeds_noise": exceeds, "verdict": verdict}


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

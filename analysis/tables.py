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
from scipy import stats

from analysis.statistics import (
    MIN_BOOTSTRAP_SEEDS,
    MIN_SEEDS,
    bca_interval,
    holm,
    level,
    t_interval,
    welch_p,
)
from study.store.records import CHANCE, OUTCOMES

__all__ = [
    "CHANCE",
    "is_complete",
    "outcome_counts",
    "lr_bins",
    "lr_bin_centres",
    "lr_curve",
    "good_lr_band",
    "counted_accuracy",
    "best_trials",
    "lr_sensitivity",
    "sensitivity_metrics",
    "curve_metrics",
    "PRUNED_AS_LOWER_BOUNDS",
    "PRUNED_LEFT_OUT",
    "ci_separation",
    "confirmation",
    "seed_noise_verdicts",
    "param_importance",
    "MIN_IMPORTANCE_TRIALS",
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


def lr_curve(
    lr: np.ndarray | pd.Series, seeds: Sequence[Sequence[float]],
    configs: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The learning rates tried, ascending, and the pooled seed accuracies at each: every
    run at the same learning rate (its seeds, or its one accuracy) in one array. With
    ``configs`` (one label per run for the rest of its configuration), only runs of the same
    configuration pool: two configurations at one learning rate are two points."""
    lr = np.asarray(lr, dtype=float)
    labels = list(configs) if configs is not None else [""] * lr.size
    keys = sorted(set(zip(lr.tolist(), labels, strict=True)))
    index = {key: i for i, key in enumerate(keys)}
    pools: list[list[float]] = [[] for _ in keys]
    for key, values in zip(zip(lr.tolist(), labels, strict=True), seeds, strict=True):
        pools[index[key]].extend(values)
    return np.array([k[0] for k in keys], dtype=float), [np.asarray(p, dtype=float)
                                                          for p in pools]


def good_lr_band(
    lr: np.ndarray, accuracy: np.ndarray, tolerance: float = 0.01
) -> tuple[float, float, float, bool]:
    """The good learning-rate band of a curve (``accuracy`` at the ascending ``lr``).

    The band is the run of neighbouring learning rates around the best one whose accuracy
    stays within ``tolerance`` of the best; it stops at the first one that falls below.
    Returns ``(low, high, width, at_edge)``: its end points, its width in decades
    ``log10(high / low)`` and whether it reaches the first or last learning rate tried
    (then the width is a lower bound: the band may go on outside the range). A curve of one
    learning rate has no width (NaN).
    """
    if len(lr) == 0:
        return math.nan, math.nan, math.nan, False
    best = int(np.argmax(accuracy))
    good = accuracy >= accuracy[best] - tolerance - 1e-12
    low = high = best
    while low > 0 and good[low - 1]:
        low -= 1
    while high < len(lr) - 1 and good[high + 1]:
        high += 1
    width = math.nan if len(lr) < 2 else float(np.log10(lr[high]) - np.log10(lr[low]))
    return float(lr[low]), float(lr[high]), width, low == 0 or high == len(lr) - 1


def sensitivity_metrics(
    lr: np.ndarray,
    accuracy: np.ndarray,
    *,
    tolerance: float = 0.01,
    strict_tolerance: float = 0.005,
    bins_per_decade: int = 2,
    chance: float = CHANCE,
    configs: Sequence[str] | None = None,
) -> dict[str, float]:
    """Learning-rate sensitivity of one optimizer from its runs' (lr, accuracy) pairs.

    Runs at the same learning rate (and, with ``configs``, of the same configuration: see
    :func:`lr_curve`) are averaged first (the seeds' mean curve); accuracies below
    ``chance`` (or NaN) count at ``chance``.

    - ``best_lr``, ``best_accuracy``: the best point of the curve.
    - ``good_lr_width`` (the headline): decades of the good band of :func:`good_lr_band`
      within ``tolerance`` of the best, with ``good_lr_low`` / ``good_lr_high`` and
      ``good_lr_width_at_edge``; ``good_lr_width_strict`` (and ``_at_edge``) within
      ``strict_tolerance``. It does not depend on how far the searched range reaches beyond
      the band: learning rates outside it can be added or removed without changing it.
    - ``sensitivity``: after Wortsman et al. 2023 (arXiv 2309.14322), the best accuracy
      minus the mean over occupied log-LR bins (``bins_per_decade``) of the runs' mean
      accuracy. It averages over the searched range, so it changes with that range
      (``range_low`` .. ``range_high``) and is only comparable between optimizers searched
      over equally wide ranges.
    """
    lr = np.asarray(lr, dtype=float)
    acc = counted_accuracy(accuracy, np.zeros(lr.size, dtype=bool), chance)
    points, pools = lr_curve(lr, [[a] for a in acc], configs)
    return curve_metrics(points, np.array([p.mean() for p in pools]), tolerance=tolerance,
                         strict_tolerance=strict_tolerance, bins_per_decade=bins_per_decade)


def curve_metrics(
    points: np.ndarray, curve: np.ndarray, *, tolerance: float, strict_tolerance: float,
    bins_per_decade: int,
) -> dict[str, float]:
    """:func:`sensitivity_metrics` of a curve already pooled (:func:`lr_curve`): the mean
    accuracy ``curve`` at the ascending learning rates ``points``."""
    if len(points) == 0:
        return dict.fromkeys(_METRIC_COLUMNS, math.nan) | {
            "good_lr_width_at_edge": False, "good_lr_width_strict_at_edge": False}
    best = int(np.argmax(curve))
    low, high, width, at_edge = good_lr_band(points, curve, tolerance)
    *_, strict, strict_edge = good_lr_band(points, curve, strict_tolerance)
    _, inverse = np.unique(lr_bins(points, bins_per_decade), return_inverse=True)
    bin_means = np.bincount(inverse, weights=curve) / np.bincount(inverse)
    return {
        "best_lr": float(points[best]), "best_accuracy": float(curve[best]),
        "good_lr_low": low, "good_lr_high": high, "good_lr_width": width,
        "good_lr_width_at_edge": at_edge, "good_lr_width_strict": strict,
        "good_lr_width_strict_at_edge": strict_edge,
        "sensitivity": float(curve[best] - bin_means.mean()),
        "range_low": float(points[0]), "range_high": float(points[-1]),
    }


_METRIC_COLUMNS = ("best_lr", "best_accuracy", "good_lr_low", "good_lr_high", "good_lr_width",
                   "good_lr_width_strict", "sensitivity", "range_low", "range_high")

#: How ``lr_sensitivity`` counts pruned trials, said in its table's ``attrs`` and the report.
PRUNED_AS_LOWER_BOUNDS = "pruned runs at the accuracy they were stopped at (lower bounds)"
PRUNED_LEFT_OUT = "pruned runs left out"


def lr_sensitivity(
    trials: pd.DataFrame,
    *,
    tolerance: float = 0.01,
    strict_tolerance: float = 0.005,
    bins_per_decade: int = 2,
    chance: float = CHANCE,
    include_pruned: bool = True,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Learning-rate sensitivity per optimizer: the question the toolkit exists to answer.

    Uses complete trials (their final accuracy), diverged ones (at ``chance``) and, unless
    ``include_pruned`` is false, pruned ones at the accuracy they were stopped at (lower
    bounds of what they would have reached). A trial of several seeds (``--repeats``)
    counts each seed; runs at the same learning rate pool their seeds into one point of the
    curve. See :func:`sensitivity_metrics` for the metrics.

    Intervals come only from seeds, never from runs a sampler chose (their spread is not
    the uncertainty of anything): ``best_accuracy_lo`` / ``_hi`` is a Student t interval
    over the seeds at the best learning rate (from 3 seeds; ``best_accuracy_method`` ``t``
    or ``none``); ``good_lr_width_lo`` / ``_hi`` a BCa bootstrap over each learning rate's
    seeds (from 5 seeds per learning rate; ``interval_method`` ``bca`` or ``none``).
    ``n_seeds`` is the fewest seeds at any learning rate, ``best_seed_accuracies`` the
    seeds at the best one (for :func:`ci_separation`), ``note`` says why an interval is
    missing. Other columns: ``n`` (runs used), ``n_lrs`` (points of the curve: the learning
    rates tried, two configurations at one learning rate counting twice), ``lr_step``
    (the median step between them in decades: a grid's resolution),
    ``min_diverged_lr`` and the trials per outcome. Best accuracy first.
    ``table.attrs`` holds ``pruned``, ``tolerance`` and ``strict_tolerance``.
    """
    keys = _groups(trials, ("optimizer",))
    rng = np.random.default_rng(seed)
    used_states = ["complete", "pruned"] if include_pruned else ["complete"]
    rows = []
    for key, group in trials.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        used = group[group["state"].isin(used_states) & group["lr"].notna()]
        rows.append({**dict(zip(keys, key, strict=True)), "n": len(used),
                     **_optimizer_row(used, tolerance=tolerance, chance=chance,
                                      strict_tolerance=strict_tolerance,
                                      bins_per_decade=bins_per_decade, n_boot=n_boot,
                                      confidence=confidence, rng=rng),
                     **_outcome_columns(group)})
    table = _best_first(pd.DataFrame(rows), keys)
    table.attrs.update(pruned=PRUNED_AS_LOWER_BOUNDS if include_pruned else PRUNED_LEFT_OUT,
                       tolerance=tolerance, strict_tolerance=strict_tolerance)
    return table


def _optimizer_row(
    used: pd.DataFrame, *, tolerance: float, strict_tolerance: float, bins_per_decade: int,
    chance: float, n_boot: int, confidence: float, rng: np.random.Generator,
) -> dict[str, object]:
    """One optimizer's columns of :func:`lr_sensitivity` from the runs it uses."""
    seeds = _run_seeds(used, chance)
    lr = used["lr"].to_numpy(dtype=float)
    rest = [c for c in _CONFIG_COLUMNS if c != "lr" and c in used]
    configs = ["|".join(map(str, row)) for row in used[rest].itertuples(index=False)]
    points, pools = lr_curve(lr, seeds, configs)
    means = np.array([p.mean() for p in pools])
    row: dict[str, object] = {
        "n_lrs": len(points), "n_seeds": min((p.size for p in pools), default=0),
        "lr_step": float(np.median(np.diff(np.log10(points)))) if len(points) > 1 else math.nan,
        **curve_metrics(points, means, tolerance=tolerance, strict_tolerance=strict_tolerance,
                        bins_per_decade=bins_per_decade)}
    best = pools[int(np.argmax(means))] if len(pools) else np.array([])
    row["best_seed_accuracies"] = best.tolist()
    row["best_accuracy_lo"], row["best_accuracy_hi"] = _accuracy_interval(best, confidence)
    row["best_accuracy_method"] = "t" if best.size >= MIN_SEEDS else "none"
    if math.isnan(row["good_lr_width"]):
        row["good_lr_width_lo"] = row["good_lr_width_hi"] = math.nan
    else:
        row["good_lr_width_lo"], row["good_lr_width_hi"] = bca_interval(
            lambda groups: good_lr_band(points, np.array([g.mean() for g in groups]),
                                        tolerance)[2],
            pools, confidence=confidence, n_boot=n_boot, rng=rng)
    row["interval_method"] = "none" if math.isnan(row["good_lr_width_lo"]) else "bca"
    row["note"] = _interval_note(row, used)
    return row


def _accuracy_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The t interval of a mean accuracy, within 0 and 1 (where the mean must lie)."""
    lo, hi = t_interval(values, confidence)
    return (lo, hi) if math.isnan(lo) else (max(lo, 0.0), min(hi, 1.0))


def _run_seeds(used: pd.DataFrame, chance: float) -> list[list[float]]:
    """Each run's seed accuracies as the metrics count them: its seeds where it recorded
    them, else its one accuracy; every seed of a diverged run at ``chance``."""
    out = []
    for final, diverged, seeds in zip(used["final_accuracy"], used["diverged"],
                                      used.get("seed_accuracies", [None] * len(used)),
                                      strict=True):
        values = seeds if isinstance(seeds, list) and seeds else [final]
        out.append(list(counted_accuracy(values, np.full(len(values), bool(diverged)), chance)))
    return out


def _interval_note(row: dict[str, object], used: pd.DataFrame) -> str:
    """Why a row of :func:`lr_sensitivity` lacks an interval, or ``""``."""
    seeds, n_lrs = int(row["n_seeds"]), int(row["n_lrs"])
    if n_lrs == 0:
        return "no runs"
    parts = []
    if seeds < MIN_SEEDS:
        chosen = set(used.get("sampler", pd.Series(dtype=str)).dropna()) - {""}
        how = f", chosen by {', '.join(sorted(chosen))}" if chosen else ""
        parts.append(f"{seeds} seed{'' if seeds == 1 else 's'} per learning rate{how}: "
                     f"no interval (needs {MIN_SEEDS} seeds); the figures describe these "
                     "runs only")
    elif row["interval_method"] == "none" and n_lrs > 1:
        parts.append(f"{seeds} seeds per learning rate: no interval for the width (the "
                     f"bootstrap needs {MIN_BOOTSTRAP_SEEDS})")
    if n_lrs == 1:
        parts.append("one learning rate: no band width")
    return "; ".join(parts)


def _best_first(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per study (where there are several), the optimizers by ``best_accuracy``, best first."""
    if table.empty:
        return table
    table = table.sort_values([*keys[:-1], "best_accuracy"],
                              ascending=[True] * (len(keys) - 1) + [False])
    return table.reset_index(drop=True)


def _outcome_columns(group: pd.DataFrame) -> dict[str, float | int]:
    """``min_diverged_lr`` and the trials per outcome of one optimizer's trials."""
    diverged_lrs = group.loc[group["diverged"], "lr"]
    row: dict[str, float | int] = {
        "min_diverged_lr": diverged_lrs.min() if len(diverged_lrs) else math.nan}
    counts = group["outcome"].value_counts()
    for name in ("complete", "pruned", "diverged", "failed"):
        row[f"n_{name}"] = int(counts.get(name, 0))
    return row


_SEPARATION_COLUMNS = ["a", "b", "difference", "p_value", "p_holm", "separated", "method",
                       "pairs_tested", "note"]


def ci_separation(
    sensitivity: pd.DataFrame, metric: str = "best_accuracy", *,
    higher_is_better: bool = True, alpha: float = 0.05,
) -> pd.DataFrame:
    """Which optimizers differ in ``metric`` by more than seed noise, every pair tested.

    One row per pair (``a`` ranked ahead of ``b``), per study where there are several.
    ``best_accuracy``: Welch's t-test on the seeds at each one's best learning rate
    (``p_value``), Holm-adjusted over the pairs tested (``p_holm``); ``separated`` when
    ``p_holm < alpha``. Any other metric (``good_lr_width``): ``separated`` when the two
    intervals of :func:`lr_sensitivity` do not overlap. ``separated`` is NaN where a side
    lacks the seeds, and ``note`` says which; ``pairs_tested`` counts the pairs that could
    be tested, ``method`` says how.
    """
    ranked = sensitivity.sort_values(metric, ascending=not higher_is_better)
    group_keys = ["study"] if "study" in ranked else []
    frames = []
    for _, part in (ranked.groupby(group_keys) if group_keys else [((), ranked)]):
        records = part.to_dict("records")
        rows = [{**{k: a[k] for k in group_keys},
                 **_pair(a, b, metric, higher_is_better=higher_is_better)}
                for i, a in enumerate(records) for b in records[i + 1:]]
        frame = pd.DataFrame(rows, columns=[*group_keys, *_SEPARATION_COLUMNS])
        frame["p_holm"] = holm(frame["p_value"].to_numpy(dtype=float))
        tested = frame["separated"].notna() | frame["p_value"].notna()
        frame["pairs_tested"] = int(tested.sum())
        if metric == "best_accuracy":
            frame["separated"] = [p < alpha if not math.isnan(p) else math.nan
                                  for p in frame["p_holm"]]
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*group_keys, *_SEPARATION_COLUMNS])
    return pd.concat(frames, ignore_index=True).astype({"separated": object})


def _pair(a: dict, b: dict, metric: str, *, higher_is_better: bool) -> dict[str, object]:
    """One row of :func:`ci_separation` before the Holm step: ``a`` ahead of ``b``."""
    missing = [f"{r['optimizer']}: {r.get('note') or 'no interval'}" for r in (a, b)
               if (len(r.get("best_seed_accuracies") or []) < MIN_SEEDS
                   if metric == "best_accuracy" else pd.isna(r.get(f"{metric}_lo")))]
    row = {"a": a["optimizer"], "b": b["optimizer"], "difference": a[metric] - b[metric],
           "p_value": math.nan, "p_holm": math.nan, "separated": math.nan,
           "note": "cannot tell: " + "; ".join(missing) if missing else ""}
    if metric == "best_accuracy":
        row["method"] = "Welch t-test over seeds, Holm-adjusted"
        if not missing:
            row["p_value"] = welch_p(a["best_seed_accuracies"], b["best_seed_accuracies"])
        return row
    row["method"] = "95 % intervals apart"
    if not missing:
        ahead, behind = (a, b) if higher_is_better else (b, a)
        row["separated"] = bool(ahead[f"{metric}_lo"] > behind[f"{metric}_hi"])
    return row


def confirmation(
    trials: pd.DataFrame, *, chance: float = CHANCE, confidence: float = 0.95,
) -> pd.DataFrame:
    """Per configuration of a confirmation study (``python -m study.confirm``): its final
    accuracy over fresh seeds.

    One row per optimizer and ``source_trial`` (the study's trial the configuration comes
    from): ``lr``, ``n`` (finished seeds), ``mean``, ``std``, ``mean_lo`` / ``mean_hi`` (a
    ``confidence`` Student t interval of the mean over seeds; none below 3 seeds),
    ``interval_method`` (``t`` or ``none``) and ``n_diverged`` (diverged seeds count at
    ``chance``); best mean first. The accuracy is the test set's: where the study evaluated
    on a validation split (which chose these configurations), the test accuracy measured at
    the end of each run.
    """
    done = _finished(trials)
    keys = _groups(done, ("optimizer", "source_trial"))
    columns = [*keys, "lr", "n", "mean", "std", "mean_lo", "mean_hi", "interval_method",
               "n_diverged"]
    if done.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, group in done.groupby(keys, sort=True):
        values = _test_accuracy(group, chance)
        lo, hi = _accuracy_interval(values, confidence)
        rows.append({
            **dict(zip(keys, key, strict=True)),
            "lr": group["lr"].iloc[0],
            "n": len(values),
            "mean": values.mean(),
            "std": values.std(ddof=1) if len(values) > 1 else math.nan,
            "mean_lo": lo, "mean_hi": hi,
            "interval_method": "t" if len(values) >= MIN_SEEDS else "none",
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
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Does the leader's margin exceed seed noise? Each pair of optimizers in a confirmation
    study, each at its best configuration (by mean over seeds).

    Welch's t-test on the two optimizers' seeds gives ``p_value``, Holm-adjusted over all
    the pairs (``p_holm``); the margin exceeds seed noise when ``p_holm < alpha``.
    ``difference_lo`` / ``difference_hi``: the Welch ``confidence`` interval of the
    difference (unadjusted). One row per pair (``a`` ahead of ``b``) with ``verdict``, a
    sentence naming n, the method and the number of pairs; per study when the frame holds
    several (a ``study`` column first).
    """
    if "study" in trials and trials["study"].nunique() > 1:
        parts = [seed_noise_verdicts(part, chance=chance, confidence=confidence,
                                     alpha=alpha).assign(study=name)
                 for name, part in trials.groupby("study", sort=True)]
        frame = pd.concat(parts, ignore_index=True)
        return frame[["study", *frame.columns.drop("study")]]
    table = confirmation(trials, chance=chance, confidence=confidence)
    if table.empty:
        return pd.DataFrame(columns=_VERDICT_COLUMNS)
    best = table.drop_duplicates("optimizer")  # sorted by mean: each optimizer's best
    done = _finished(trials)
    values = {
        row.optimizer: _test_accuracy(done[done["source_trial"] == row.source_trial], chance)
        for row in best.itertuples()
    }
    leaders = list(best["optimizer"])
    pairs = [(a, b) for i, a in enumerate(leaders) for b in leaders[i + 1:]]
    p = holm([welch_p(values[a], values[b]) for a, b in pairs])
    tested = int(np.sum(~np.isnan(p)))
    rows = [_verdict(a, b, values[a], values[b], p_holm=p_holm, tested=tested, alpha=alpha,
                     confidence=confidence)
            for (a, b), p_holm in zip(pairs, p, strict=True)]
    return pd.DataFrame(rows, columns=_VERDICT_COLUMNS)


_VERDICT_COLUMNS = ["a", "b", "difference", "difference_lo", "difference_hi", "p_holm",
                    "exceeds_noise", "verdict"]


def _verdict(
    a: str, b: str, va: np.ndarray, vb: np.ndarray, *, p_holm: float, tested: int,
    alpha: float, confidence: float,
) -> dict[str, object]:
    """One row of :func:`seed_noise_verdicts`: ``a`` (seeds' accuracies ``va``) against ``b``
    (``vb``)."""
    diff = va.mean() - vb.mean()
    n = f"mean over {len(va)} and {len(vb)} seeds"
    if math.isnan(p_holm):
        lo = hi = exceeds = math.nan
        verdict = (f"{a} leads {b} by {diff:+.4f} ({n}), but with fewer than {MIN_SEEDS} "
                   "seeds each the seed noise cannot be told: no interval.")
    else:
        lo, hi = _welch_interval(va, vb, confidence)
        exceeds = bool(p_holm < alpha)
        said = "exceeds" if exceeds else "is within"
        verdict = (
            f"{a} leads {b} by {diff:+.4f} ({n}; {level(confidence)} Welch t-interval "
            f"{lo:+.4f} to {hi:+.4f}; Holm-adjusted p = {p_holm:.2g} over {tested} pair"
            f"{'' if tested == 1 else 's'} tested): the margin {said} seed noise."
        )
    return {"a": a, "b": b, "difference": diff, "difference_lo": lo, "difference_hi": hi,
            "p_holm": p_holm, "exceeds_noise": exceeds, "verdict": verdict}


def _welch_interval(va: np.ndarray, vb: np.ndarray, confidence: float) -> tuple[float, float]:
    """Welch's ``confidence`` interval of ``mean(va) - mean(vb)``."""
    result = stats.ttest_ind(va, vb, equal_var=False)
    if va.std() == 0 and vb.std() == 0:
        diff = float(va.mean() - vb.mean())
        return diff, diff
    ci = result.confidence_interval(confidence)
    return float(ci.low), float(ci.high)


#: The fewest complete trials :func:`param_importance` ranks parameters from: PED-ANOVA
#: compares the top share of the trials with the rest, which says nothing from a handful.
MIN_IMPORTANCE_TRIALS = 10


def param_importance(
    optuna_study: optuna.Study, *, min_trials: int = MIN_IMPORTANCE_TRIALS
) -> pd.DataFrame:
    """Hyperparameter importance by Optuna's default evaluator (PED-ANOVA in Optuna 5, which
    handles conditional parameters such as ``sgd_momentum``).

    Columns ``param`` and ``importance`` (summing to 1), most important first; empty with
    fewer than ``min_trials`` complete trials (``attrs["note"]`` says so).
    """
    complete = optuna_study.get_trials(deepcopy=False,
                                       states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < max(2, min_trials):
        table = pd.DataFrame(columns=["param", "importance"])
        table.attrs["note"] = (f"too few complete trials for importance ({len(complete)} < "
                               f"{max(2, min_trials)})")
        return table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # PED-ANOVA warns per conditional parameter seen in few trials; the table says n.
        warnings.filterwarnings("ignore", message="Some regimes for parameter")
        importances = optuna.importance.get_param_importances(optuna_study)
    return pd.DataFrame(list(importances.items()), columns=["param", "importance"])

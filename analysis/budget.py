"""Tuning-budget curves: what an optimizer reaches for a budget of n trials.

After Dodge et al. 2019 ("Show your work: improved reporting of experimental results",
arXiv 1909.03004): the expected best accuracy after n trials, estimated from the N trials
sampled, and after Sivaprasad et al. 2020 ("Optimizer benchmarking needs to account for
hyperparameter tuning", arXiv 1910.11758): the area under that curve, its tunability.

The estimates treat an optimizer's trials as independent draws from one distribution of
configurations. That holds for the samplers of :data:`study.store.records.INDEPENDENT_SAMPLERS`
(random, qmc, grid, fixed), not for TPE, which chose each trial from the ones before: every
table here still computes, but says so in ``valid`` and ``note``, and the plot in its title.

All functions take the tidy trials frame of :func:`analysis.load.load_trials`; with several
studies in it (a ``study`` column of more than one value) everything is per study.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from analysis.plots import ERROR_FLOOR, eval_set_name, optimizer_palette, readable_log_ticks
from analysis.tables import CHANCE, counted_accuracy
from study.store.records import INDEPENDENT_SAMPLERS

__all__ = [
    "PRUNED_POLICIES",
    "TUNABILITY_WEIGHTS",
    "NOT_INDEPENDENT",
    "expected_max",
    "budget_values",
    "tuning_curve",
    "trials_to_reach",
    "tunability",
    "tuning_curve_plot",
]

#: How pruned trials count: ``last`` at the accuracy they were stopped at (their ``value``,
#: a lower bound of what they would have reached), ``drop`` left out.
PRUNED_POLICIES = ("last", "drop")
#: Weights of :func:`tunability` over the budgets n = 1 .. N.
TUNABILITY_WEIGHTS = ("uniform", "early")
#: The ``note`` of a group some of whose trials TPE chose.
NOT_INDEPENDENT = (
    "TPE chose each trial from the ones before: the trials are not independent draws, so the "
    "curve is optimistic or pessimistic in unknown ways"
)
#: The ``note`` of a group with trials that do not record their sampler.
_UNRECORDED = (
    "the sampler was not recorded with the trials: they may not be independent draws, so "
    "the curve may be optimistic or pessimistic in unknown ways"
)
_CURVE_COLUMNS = ("n", "expected_best", "lo", "hi", "n_trials", "n_pruned", "n_diverged",
                  "extrapolated", "valid", "note", "interval")


def expected_max(values: Sequence[float] | np.ndarray, n_max: int) -> np.ndarray:
    """Expected maximum of n draws with replacement from ``values``, for n = 1 .. ``n_max``.

    With the N values sorted ascending, v(1) <= ... <= v(N)::

        E[max of n] = sum_i v(i) * ((i / N)^n - ((i - 1) / N)^n)

    (Dodge et al. 2019, eq. 1): n = 1 gives the mean, and as n grows it tends to the largest
    value. Returns an array of ``n_max`` values; NaN for no values.
    """
    values = np.sort(np.asarray(values, dtype=float))
    if values.size == 0:
        return np.full(n_max, math.nan)
    return _max_weights(values.size, n_max) @ values


def _max_weights(n_values: int, n_max: int) -> np.ndarray:
    """(n_max, N) matrix: row n-1 holds P(the i-th smallest value is the max of n draws)."""
    cdf = np.arange(n_values + 1) / n_values
    powers = cdf[None, :] ** np.arange(1, n_max + 1)[:, None]
    return np.diff(powers, axis=1)


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, but got {value!r}.")


def _keys(trials: pd.DataFrame, by: Sequence[str]) -> list[str]:
    several = "study" in trials and trials["study"].nunique() > 1
    return (["study"] if several else []) + list(by)


def budget_values(
    trials: pd.DataFrame, *, pruned: str = "last", chance: float = CHANCE
) -> pd.DataFrame:
    """The trials a budget curve counts, with ``budget_value``: the accuracy each counts at.

    Complete trials at their ``final_accuracy``, diverged ones at ``chance``, pruned ones
    (with ``pruned="last"``) at their ``value``, the accuracy they were stopped at; every
    value floored at ``chance``, as :func:`analysis.tables.counted_accuracy` counts it.
    Failed, running and waiting trials are left out, and pruned ones with ``pruned="drop"``.

    Raises:
        ValueError: ``pruned`` is not one of :data:`PRUNED_POLICIES`.
    """
    _check_choice("pruned", pruned, PRUNED_POLICIES)
    counted = ["complete", "diverged"] + (["pruned"] if pruned == "last" else [])
    used = trials[trials["outcome"].isin(counted)]
    is_pruned = used["outcome"] == "pruned"
    accuracy = used["final_accuracy"].where(~is_pruned, used["value"])
    value = counted_accuracy(accuracy, used["outcome"] == "diverged", chance)
    sampler = used["sampler"] if "sampler" in used else pd.Series("", index=used.index)
    return used.assign(budget_value=value, sampler=sampler.fillna(""))


def _validity(samplers: pd.Series) -> tuple[bool, str]:
    """Whether every trial was an independent draw, and if not, why not."""
    others = sorted(set(samplers) - set(INDEPENDENT_SAMPLERS))
    notes = []
    if "tpe" in others:
        notes.append(NOT_INDEPENDENT)
    if "" in others:
        notes.append(_UNRECORDED)
    named = [s for s in others if s not in ("tpe", "")]
    if named:
        notes.append(f"sampler {', '.join(named)} is not one of the independent samplers "
                     f"({', '.join(INDEPENDENT_SAMPLERS)}): the curve may be biased")
    return not others, "; ".join(notes)


def _counts(group: pd.DataFrame) -> dict[str, object]:
    valid, note = _validity(group["sampler"])
    return {
        "n_trials": len(group),
        "n_pruned": int((group["outcome"] == "pruned").sum()),
        "n_diverged": int((group["outcome"] == "diverged").sum()),
        "valid": valid,
        "note": note,
    }


def tuning_curve(
    trials: pd.DataFrame,
    *,
    by: Sequence[str] = ("optimizer",),
    n_max: int | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    pruned: str = "last",
    chance: float = CHANCE,
) -> pd.DataFrame:
    """Expected best accuracy after a budget of n trials, per optimizer (Dodge et al. 2019).

    From each group's N trials (counted as :func:`budget_values` counts them), the expected
    maximum of n draws with replacement (:func:`expected_max`) for n = 1 .. N, or 1 ..
    ``n_max``. Beyond N (``extrapolated``) the curve only approaches the best trial seen.
    The interval ``lo`` / ``hi`` is a ``confidence`` percentile bootstrap over the trials
    (``n_boot`` resamples of the N trials, the curve recomputed on each); it cannot reach
    above the best trial seen, so for n near N it understates how much better a new study
    could do.

    Columns: the group keys (``study`` first with several studies, then ``by``), ``n``,
    ``expected_best``, ``lo``, ``hi``, ``n_trials`` (N), ``n_pruned`` (pruned trials counted
    at the accuracy they were stopped at: lower bounds), ``n_diverged`` (counted at
    ``chance``), ``extrapolated`` (n > N), ``valid`` (every trial an independent draw),
    ``note`` (why not, or empty) and ``interval`` (what the interval is). ``attrs`` holds
    ``pruned`` and ``eval_set``.

    Raises:
        ValueError: ``pruned``, ``n_max``, ``n_boot`` or ``confidence`` out of range.
    """
    _check_curve_options(n_max=n_max, n_boot=n_boot, confidence=confidence)
    used = budget_values(trials, pruned=pruned, chance=chance)
    keys = _keys(trials, by)
    rng = np.random.default_rng(seed)
    parts = [
        pd.DataFrame({
            **dict(zip(keys, key, strict=True)),
            **_expected_best(group["budget_value"].to_numpy(dtype=float), n_max=n_max,
                             n_boot=n_boot, confidence=confidence, rng=rng),
            **_counts(group),
        })
        for key, group in used.groupby(keys, sort=True)
    ]
    columns = [*keys, *_CURVE_COLUMNS]
    table = pd.concat(parts, ignore_index=True)[columns] if parts else (
        pd.DataFrame(columns=columns))
    table.attrs.update(pruned=pruned, eval_set=eval_set_name(trials))
    return table


def _check_curve_options(*, n_max: int | None, n_boot: int, confidence: float) -> None:
    if n_max is not None and n_max < 1:
        raise ValueError(f"n_max must be a budget of 1 trial or more, or None, but got {n_max=}.")
    if n_boot < 1:
        raise ValueError(f"n_boot must be 1 or more, but got {n_boot=}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, but got {confidence=}.")


def _expected_best(
    values: np.ndarray,
    *,
    n_max: int | None,
    n_boot: int,
    confidence: float,
    rng: np.random.Generator,
) -> dict[str, object]:
    """One group's curve columns of :func:`tuning_curve` from its trials' ``values``: ``n``,
    ``expected_best``, ``lo``, ``hi``, ``extrapolated`` and ``interval``."""
    size = len(values)
    top = n_max or size
    weights = _max_weights(size, top)
    if size >= 2:
        alpha = (1 - confidence) / 2
        resampled = np.sort(values[rng.integers(0, size, size=(n_boot, size))], axis=1)
        lo, hi = np.quantile(resampled @ weights.T, [alpha, 1 - alpha], axis=0)
        level = f"{confidence:.0%}".replace("%", " %")
        interval = f"{level} percentile bootstrap over the {size} trials ({n_boot} resamples)"
    else:
        lo = hi = np.full(top, math.nan)
        interval = "none: fewer than 2 trials"
    n = np.arange(1, top + 1)
    return {"n": n, "expected_best": weights @ np.sort(values), "lo": lo, "hi": hi,
            "extrapolated": n > size, "interval": interval}


def _smallest_n(below: float, p: float) -> float:
    """Smallest n with 1 - below^n >= p; inf when no n does."""
    if below <= 0:
        return 1
    if below >= 1 or p >= 1:
        return math.inf
    n = max(1, math.ceil(math.log1p(-p) / math.log(below)))
    # The logarithms can miss an exact boundary (below = 0.5, p = 0.75 needs n = 2) by a
    # rounding error either way: settle n on the inequality itself.
    while n > 1 and 1 - below ** (n - 1) >= p - 1e-12:
        n -= 1
    while 1 - below**n < p - 1e-12:
        n += 1
    return n


def trials_to_reach(
    trials: pd.DataFrame,
    target: float | Sequence[float],
    *,
    p: float = 0.9,
    by: Sequence[str] = ("optimizer",),
    pruned: str = "last",
    chance: float = CHANCE,
) -> pd.DataFrame:
    """Trials needed to reach ``target`` accuracy with probability ``p``, per optimizer.

    With F the share of the group's trials below ``target`` (the empirical distribution
    function just below it), P(max of n >= target) = 1 - F^n, and ``n_trials_needed`` is the
    smallest n with 1 - F^n >= p: 1 when every trial reached the target, ``math.inf`` when
    none did. Trials count as :func:`budget_values` counts them (a pruned trial at the
    accuracy it was stopped at, so ``share_reaching`` is a lower bound).

    Columns: the group keys, ``target``, ``p``, ``share_reaching`` (1 - F),
    ``n_trials_needed``, ``n_trials``, ``n_pruned``, ``n_diverged``, ``valid``, ``note``
    (as in :func:`tuning_curve`); one row per group and target (several targets may be
    given).

    Raises:
        ValueError: ``p`` is not in (0, 1], or ``pruned`` is unknown.
    """
    if not 0 < p <= 1:
        raise ValueError(f"p must be a probability in (0, 1], but got {p=}.")
    targets = np.atleast_1d(np.asarray(target, dtype=float))
    used = budget_values(trials, pruned=pruned, chance=chance)
    keys = _keys(trials, by)
    rows = []
    for key, group in used.groupby(keys, sort=True):
        values = group["budget_value"].to_numpy(dtype=float)
        for goal in targets:
            below = float(np.mean(values < goal))
            rows.append({
                **dict(zip(keys, key, strict=True)),
                "target": float(goal),
                "p": p,
                "share_reaching": 1 - below,
                "n_trials_needed": float(_smallest_n(below, p)),
                **_counts(group),
            })
    columns = [*keys, "target", "p", "share_reaching", "n_trials_needed", "n_trials",
               "n_pruned", "n_diverged", "valid", "note"]
    return pd.DataFrame(rows, columns=columns)


def _curve_keys(curve: pd.DataFrame) -> list[str]:
    """The group keys of a :func:`tuning_curve` frame: its columns before ``n``."""
    return list(curve.columns[: curve.columns.get_loc("n")])


def tunability(curve: pd.DataFrame, *, weights: str = "uniform") -> pd.DataFrame:
    """Tunability per optimizer (Sivaprasad et al. 2020): the weighted mean of a tuning curve.

    The mean of ``expected_best`` over the budgets n = 1 .. N of ``curve`` (a
    :func:`tuning_curve` frame; N is its largest n) with weights w_n:

    - ``uniform``: w_n = 1, every budget counts the same (the area under the curve / N);
    - ``early``: w_n proportional to 1 / n, favouring small budgets: an optimizer that is
      good after a few trials scores higher than one that needs many to catch up.

    Columns: the group keys, ``tunability``, ``weights``, ``n_max`` (N), ``valid`` and
    ``note`` (from the curve). No interval: the curve's intervals are per budget, not joint.

    Raises:
        ValueError: ``weights`` is not one of :data:`TUNABILITY_WEIGHTS`.
    """
    _check_choice("weights", weights, TUNABILITY_WEIGHTS)
    keys = _curve_keys(curve)
    columns = [*keys, "tunability", "weights", "n_max", "valid", "note"]
    rows = []
    for key, group in curve.groupby(keys, sort=True):
        n = group["n"].to_numpy(dtype=float)
        w = np.ones_like(n) if weights == "uniform" else 1 / n
        rows.append({
            **dict(zip(keys, key, strict=True)),
            "tunability": float(np.average(group["expected_best"], weights=w)),
            "weights": weights,
            "n_max": int(n.max()),
            "valid": bool(group["valid"].all()),
            "note": group["note"].iloc[0],
        })
    return pd.DataFrame(rows, columns=columns)


def tuning_curve_plot(
    curve: pd.DataFrame, *, error: bool = True, ax: Axes | None = None, **kwargs
) -> Axes:
    """Expected best of n trials against the budget n (log axis), one line and interval
    band per optimizer, from a :func:`tuning_curve` frame.

    ``error``: plot the error, 1 - accuracy, on a log axis (differences near 98 % accuracy
    stay readable); otherwise the accuracy. A group whose trials were not independent draws
    (``valid`` false, e.g. chosen by TPE) is dashed, marked in the legend and named in the
    title. Where the curve goes past its N trials (``extrapolated``), a dot marks n = N.
    ``kwargs`` go to ``Axes.plot``.
    """
    ax = ax if ax is not None else plt.gca()
    keys = _curve_keys(curve)
    groups = list(curve.groupby(keys, sort=True))
    labels = [" / ".join(str(k) for k in key) for key, _ in groups]
    if keys == ["optimizer"]:
        palette = optimizer_palette(labels)
    else:
        palette = dict(zip(labels, sns.color_palette("tab10", len(labels)), strict=True))
    invalid = []
    for label, (_, group) in zip(labels, groups, strict=True):
        valid = bool(group["valid"].all())
        mean, lo, hi = (group[c].to_numpy(dtype=float) for c in ("expected_best", "lo", "hi"))
        if error:
            mean, lo, hi = (np.maximum(1 - v, ERROR_FLOOR) for v in (mean, hi, lo))
        style = {"color": palette[label], "linestyle": "-" if valid else "--"}
        if group["extrapolated"].any():
            style.update(marker="o", markevery=[int(group["n_trials"].iloc[0]) - 1])
        if not valid:
            invalid.append(label)
        (line,) = ax.plot(group["n"], mean, **{**style, **kwargs},
                          label=label if valid else f"{label} (not independent draws)")
        if np.isfinite(lo).any():
            ax.fill_between(group["n"], lo, hi, color=line.get_color(), alpha=0.2,
                            linewidth=0)
    ax.set_xscale("log")
    if groups:
        readable_log_ticks(ax.xaxis, 1, curve["n"].max())
    accuracy = f"{curve.attrs.get('eval_set', 'evaluation')} accuracy"
    if error:
        ax.set_yscale("log")
        low, high = ax.dataLim.intervaly
        readable_log_ticks(ax.yaxis, low, high)
        ax.set_ylabel(f"expected best {accuracy.replace('accuracy', 'error')} "
                      "(1 - accuracy)")
    else:
        ax.set_ylabel(f"expected best {accuracy}")
    ax.set_xlabel("budget: number of trials")
    title = "Expected best of n trials (band: bootstrap over trials)"
    if invalid:
        title += (f"\nnot valid for {', '.join(invalid)}: trials not independent draws "
                  "(TPE or sampler unknown)")
    ax.set_title(title)
    if groups:
        ax.legend(fontsize="small")
    return ax

"""Answers the tables do not give: how fast each optimizer gets there, and whether a search
range cut off its best trial.

- :func:`time_to_target` / :func:`time_to_target_summary` / :func:`time_to_target_plot`:
  the first epoch (and the seconds) at which each trial's evaluated accuracy reaches a
  target, per optimizer the share of trials that ever do and how soon.
- :func:`range_warnings`: an optimizer whose best trial sits at the edge of a sampled range
  (the study's stored ``space_definition``) may do better outside it; each row says which
  range to widen and to what.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
from matplotlib.axes import Axes
from optuna.distributions import FloatDistribution, IntDistribution

from analysis.plots import axis_label, eval_set_name, optimizer_palette
from analysis.tables import best_trials
from study.store import records

__all__ = [
    "TIME_TO_TARGET_OUTCOMES",
    "RANGE_WARNING_COLUMNS",
    "time_to_target",
    "time_to_target_summary",
    "time_to_target_plot",
    "range_warnings",
]

#: Trials that time to target counts: finished ones. A diverged trial never reaches the
#: target; a pruned one counts with the epochs it ran (it may have reached it before it was
#: stopped). Failed, running and waiting trials have no result yet and are left out.
TIME_TO_TARGET_OUTCOMES = ("complete", "pruned", "diverged")

_PER_TRIAL_COLUMNS = ["study", "number", "optimizer", "outcome", "eval_set", "epochs_run",
                      "target", "reached", "epoch", "seconds"]


def _check_target(target: float) -> None:
    if not 0 < target <= 1:
        raise ValueError(f"target is an accuracy from 0 to 1 (0.97 for 97 %), but got "
                         f"{target=}.")


def time_to_target(
    curves: pd.DataFrame, trials: pd.DataFrame, target: float = 0.97
) -> pd.DataFrame:
    """Per trial, the first epoch at which its evaluated accuracy reached ``target``.

    Args:
        curves: :func:`analysis.load.load_curves` (``eval_accuracy`` per epoch; the seconds
            come from ``epoch_seconds`` where the study recorded them).
        trials: :func:`analysis.load.load_trials` of the same studies.
        target: the accuracy to reach, from 0 to 1.

    Returns:
        One row per finished trial (outcomes :data:`TIME_TO_TARGET_OUTCOMES`): ``study``,
        ``number``, ``optimizer``, ``outcome``, ``eval_set``, ``epochs_run``, ``target``,
        ``reached`` (bool), ``epoch`` (1-based; NaN if never reached) and ``seconds``
        (training plus evaluation time summed up to that epoch; NaN if never reached or
        not recorded).

    Raises:
        ValueError: ``target`` is not in (0, 1].
    """
    _check_target(target)
    finished = trials[trials["outcome"].isin(TIME_TO_TARGET_OUTCOMES)]
    per_trial = finished.reindex(columns=_PER_TRIAL_COLUMNS[:6]).reset_index(drop=True)
    keys = ["study", "number"]
    curve = curves.sort_values([*keys, "epoch"])
    if "epoch_seconds" in curve:
        seconds = curve["epoch_seconds"].astype(float)
    else:
        seconds = pd.Series(np.nan, index=curve.index)
    # Any epoch without a time makes the total unknown, not smaller.
    unknown = seconds.isna().astype(int).groupby([curve[k] for k in keys]).cumsum()
    elapsed = seconds.fillna(0.0).groupby([curve[k] for k in keys]).cumsum()
    curve = curve.assign(elapsed=elapsed.where(unknown == 0))
    hits = curve[curve["eval_accuracy"] >= target]
    first = hits.groupby(keys, sort=False).head(1)[[*keys, "epoch", "elapsed"]]
    per_trial = per_trial.merge(first, on=keys, how="left")
    never = per_trial["outcome"] == "diverged"  # its accuracy before it broke is no result
    per_trial.loc[never, ["epoch", "elapsed"]] = np.nan
    per_trial = per_trial.rename(columns={"elapsed": "seconds"})
    per_trial["target"] = float(target)
    per_trial["reached"] = per_trial["epoch"].notna()
    per_trial["epoch"] = per_trial["epoch"].astype(float)
    per_trial["seconds"] = per_trial["seconds"].astype(float)
    return per_trial[_PER_TRIAL_COLUMNS]


def time_to_target_summary(
    per_trial: pd.DataFrame, by: Sequence[str] = ("optimizer",)
) -> pd.DataFrame:
    """Per optimizer (per ``by`` group, and per study when there are several), from
    :func:`time_to_target`.

    Columns: the group keys, ``target``, ``n`` (finished trials), ``n_reached``, ``share``
    (``n_reached / n``: pruned trials count with what they ran, so it is a lower bound),
    ``median_epoch`` and ``median_seconds`` (over the trials that reached it; NaN if none).
    """
    keys = (["study"] if per_trial["study"].nunique() > 1 else []) + list(by)
    columns = [*keys, "target", "n", "n_reached", "share", "median_epoch", "median_seconds"]
    if per_trial.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, group in per_trial.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        reached = group[group["reached"]]
        rows.append({
            **dict(zip(keys, key, strict=True)),
            "target": group["target"].iloc[0],
            "n": len(group),
            "n_reached": len(reached),
            "share": len(reached) / len(group),
            "median_epoch": reached["epoch"].median() if len(reached) else math.nan,
            "median_seconds": reached["seconds"].median() if len(reached) else math.nan,
        })
    return pd.DataFrame(rows, columns=columns)


def time_to_target_plot(
    per_trial: pd.DataFrame, *, x: str = "epoch", hue: str = "optimizer",
    ax: Axes | None = None, palette: dict | None = None, title: str | None = None,
    legend: bool = True, **kwargs,
) -> Axes:
    """ECDF of the epoch (``x="seconds"``: the time) at which each trial reached the target,
    one line per ``hue`` value (optimizer), from :func:`time_to_target`.

    Every finished trial counts in the denominator, so a line ends at the share of trials
    that ever reached the target, not at 1 (a trial that never did is at +inf). A trial
    that reached it but whose ``x`` is unknown (seconds not recorded) is left out.
    ``kwargs`` go to ``Axes.step``. Returns the Axes.
    """
    if x not in ("epoch", "seconds"):
        raise ValueError(f"x must be 'epoch' or 'seconds', but got {x=}.")
    ax = ax if ax is not None else plt.gca()
    known = per_trial[~(per_trial["reached"] & per_trial[x].isna())]
    palette = palette or optimizer_palette(known[hue].dropna())
    end = float(known[x].max()) if known[x].notna().any() else 1.0
    if x == "epoch":
        end = max(end, float(known["epochs_run"].max()) if len(known) else 1.0)
    for name, group in known.groupby(hue, sort=True):
        values = np.sort(group[x].dropna().to_numpy(dtype=float))
        n = len(group)
        xs = np.concatenate([[0.0], values, [end]])
        ys = np.concatenate([[0.0], np.arange(1, len(values) + 1) / n, [len(values) / n]])
        ax.step(xs, ys, where="post", color=palette.get(name),
                label=f"{name} ({len(values)}/{n} reached)", **kwargs)
    target = per_trial["target"].iloc[0] if len(per_trial) else math.nan
    eval_set = eval_set_name(per_trial)
    ax.set_xlim(left=0)
    ax.set_ylim(0, 1.02)
    if x == "epoch":
        ax.set_xlabel(f"epoch at which {eval_set} accuracy first reached {target:g}")
    else:
        ax.set_xlabel(f"seconds of training until {eval_set} accuracy first reached {target:g}")
    ax.set_ylabel("share of trials that reached it")
    default = f"Time to {target:g} {eval_set} accuracy" if len(per_trial) else "Time to target"
    ax.set_title(title if title is not None else default)
    if legend and ax.get_lines():
        # Outside the axes, so that it never covers a line.
        ax.legend(title=axis_label(hue), fontsize="small", loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return ax


# --- search-range warnings ------------------------------------------------------------------

RANGE_WARNING_COLUMNS = ["study", "optimizer", "number", "parameter", "shown", "value", "low",
                         "high", "edge", "suggested_low", "suggested_high", "value_text",
                         "range_text", "suggested_text", "message"]

#: The widest sensible range of a parameter, by its field name (``None``: no bound beyond
#: staying positive). Decay and averaging coefficients stay below 1; a schedule's
#: multiplicative factors at 1 or below. Learning rates and weight decays are unbounded.
_SANE: Mapping[str, tuple[float | None, float | None]] = {
    "momentum": (0.0, 0.999),
    "dampening": (0.0, 0.99),
    "beta1": (0.0, 0.999),
    "beta2": (0.9, 0.9999),
    "alpha": (0.9, 0.9999),
    "gamma": (None, 1.0),
    "factor": (None, 0.9),
    "base_ratio": (None, 1.0),
    "floor": (0.0, 1.0),
    "pct_start": (0.05, 0.9),
    "step_epochs": (1, None),
    "period_mult": (1, None),
    "patience": (0, None),
}


def _ranges(
    definition: Mapping[str, Any], optimizer: str, schedule: str
) -> Iterator[tuple[str, str, Any]]:
    """(Optuna name, field, encoded spec) of every parameter a trial of ``optimizer`` and
    ``schedule`` may have sampled: its own, its schedule's and the shared ones."""
    for field, spec in (definition.get("optimizers") or {}).get(optimizer, {}).items():
        yield f"{optimizer}_{field}", field, spec
    for field, spec in (definition.get("schedules") or {}).get(schedule, {}).items():
        yield records.schedule_param(schedule, field), field, spec
    for field, spec in (definition.get("shared") or {}).items():
        yield field, field, spec


def _numeric(spec: Any) -> FloatDistribution | IntDistribution | None:
    """The sampled numeric range ``spec`` encodes; ``None`` for a fixed value or a
    categorical one."""
    if not (isinstance(spec, Mapping) and "name" in spec and "attributes" in spec):
        return None
    distribution = records.decode_distribution(spec)
    if isinstance(distribution, FloatDistribution | IntDistribution):
        return distribution
    return None


def _position(value: float, dist: FloatDistribution | IntDistribution) -> float:
    """Where ``value`` lies in the range: 0 at ``low``, 1 at ``high`` (log scale for a log
    range)."""
    if dist.log:
        return (math.log(value) - math.log(dist.low)) / (math.log(dist.high) - math.log(dist.low))
    return (value - dist.low) / (dist.high - dist.low)


def _wider(dist: FloatDistribution | IntDistribution, edge: str, field: str,
           epochs: int | None) -> tuple[float, float]:
    """The range one decade further out (log) or half its width further (linear) at
    ``edge``, clipped to the field's sensible bounds."""
    low, high = float(dist.low), float(dist.high)
    if dist.log:
        new_low, new_high = (low / 10, high) if edge == "low" else (low, high * 10)
    else:
        half = 0.5 * (high - low)
        new_low, new_high = (low - half, high) if edge == "low" else (low, high + half)
    floor, ceiling = _SANE.get(field, (None, None))
    if field == "warmup_epochs" and epochs:
        ceiling = float(epochs) / 2  # warm-up over more than half the run leaves no run
    if field == "step_epochs" and epochs:
        ceiling = float(epochs - 1)
    new_low = max(new_low, floor if floor is not None else 0.0)  # every quantity is >= 0
    if ceiling is not None:
        new_high = min(new_high, ceiling)
    if isinstance(dist, IntDistribution):
        new_low, new_high = float(math.floor(new_low)), float(math.ceil(new_high))
    # Clipping never narrows the range that was searched.
    return min(new_low, low), max(new_high, high)


def _fmt(value: float, log: bool) -> str:
    if not log:
        return f"{value:g}"
    short = f"{value:.0e}"
    return short if math.isclose(float(short), value, rel_tol=1e-9) else f"{value:.1e}"


def _message(optimizer: str, name: str, value: float, dist: FloatDistribution | IntDistribution,
             edge: str, wider: tuple[float, float]) -> str:
    log = dist.log
    shown = f"{value:.1e}" if log else f"{value:.3g}"
    place = "top" if edge == "high" else "bottom"
    text = (f"{optimizer}'s best {name} {shown} is at the {place} of its range "
            f"{_fmt(dist.low, log)}..{_fmt(dist.high, log)}")
    if edge == "high":
        return f"{text}: try up to {_fmt(wider[1], log)}"
    return f"{text}: try down to {_fmt(wider[0], log)}"


def range_warnings(
    optuna_study: optuna.Study, trials: pd.DataFrame, *, edge: float = 0.1
) -> pd.DataFrame:
    """Parameters whose best value per optimizer lies at the edge of the searched range.

    For each optimizer, its best trial (highest ``final_accuracy`` among complete,
    non-diverged trials: :func:`analysis.tables.best_trials`) is checked against the ranges
    of the study's stored ``space_definition``: every numeric parameter it sampled (its own
    ``<optimizer>_<field>``, its schedule's and the shared ones; categorical ones never).
    A value in the outer ``edge`` of its range (on the log scale for a log range) gives a
    row where the range could sensibly be widened that way (the best may lie outside it); an
    end that already is the smallest or largest sensible value (a warm-up of 0, a momentum
    of 0.999) gives none.

    Args:
        optuna_study: the study (:func:`analysis.load.load_studies`); its user attribute
            ``space_definition`` holds the ranges, its trials the sampled values.
        trials: :func:`analysis.load.load_trials` (rows of other studies are ignored).
        edge: the share of the range at either end that counts as its edge.

    Returns:
        Columns :data:`RANGE_WARNING_COLUMNS`: ``study``, ``optimizer``, ``number`` (its
        best trial), ``parameter`` (the Optuna name), ``shown`` (the name in words),
        ``value``, ``low``, ``high``, ``edge`` (``"low"`` or ``"high"``), ``suggested_low``
        / ``suggested_high`` (one decade further out for a log range, half the width further
        for a linear one, clipped to sensible bounds such as momentum below 1), the same as
        text (``value_text``, ``range_text``, ``suggested_text``) and ``message``, one line
        in words (:func:`analysis.findings.grouped_range_messages` joins optimizers). Empty
        for a study without a stored definition, or one of fixed configurations or an LR
        grid (nothing was sampled from a range).

    Raises:
        ValueError: ``edge`` is not between 0 and 0.5.
    """
    if not 0 < edge < 0.5:
        raise ValueError(f"edge is the share of a range at either end, between 0 and 0.5 "
                         f"(0.1 for the outer 10 %), but got {edge=}.")
    empty = pd.DataFrame(columns=RANGE_WARNING_COLUMNS)
    definition = optuna_study.user_attrs.get(records.SPACE_DEFINITION)
    if not definition or "configs" in definition or "grid" in definition:
        return empty
    name = optuna_study.study_name
    mine = trials[trials["study"] == name] if "study" in trials else trials
    if mine.empty:
        return empty
    frozen = {t.number: t for t in optuna_study.get_trials(deepcopy=False)}
    epochs = optuna_study.user_attrs.get(records.EPOCHS)
    rows = []
    for row in best_trials(mine, by=("optimizer",)).itertuples(index=False):
        trial = frozen.get(int(row.number))
        if trial is None or row.optimizer not in (definition.get("optimizers") or {}):
            continue
        rows += [{"study": name, "optimizer": row.optimizer, "number": int(row.number), **warning}
                 for warning in _edge_warnings(trial, row.optimizer, definition, edge=edge,
                                               epochs=epochs)]
    if not rows:
        return empty
    return pd.DataFrame(rows, columns=RANGE_WARNING_COLUMNS)


def _edge_warnings(
    trial: optuna.trial.FrozenTrial,
    optimizer: str,
    definition: Mapping[str, Any],
    *,
    edge: float,
    epochs: int | None,
) -> Iterator[dict[str, Any]]:
    """The columns from ``parameter`` on of each numeric parameter ``trial`` sampled in the
    outer ``edge`` of its range (see :func:`range_warnings`)."""
    config = trial.user_attrs.get(records.CONFIG) or {}
    schedule = config.get("schedule") or trial.params.get("schedule", "")
    for param, field, spec in _ranges(definition, optimizer, schedule):
        dist = _numeric(spec)
        value = trial.params.get(param)
        if dist is None or value is None or dist.high <= dist.low:
            continue
        if isinstance(dist, IntDistribution) and (dist.high - dist.low) / dist.step < 2:
            continue  # two values have no middle: one of them is always at an edge
        position = _position(float(value), dist)
        if edge < position < 1 - edge:
            continue
        side = "low" if position <= edge else "high"
        wider = _wider(dist, side, field, epochs)
        if (wider[0] if side == "low" else wider[1]) == (dist.low if side == "low" else
                                                         dist.high):
            continue  # that end is already the smallest or largest sensible value
        shown = field if param == f"{optimizer}_{field}" else param
        log = dist.log
        yield {
            "parameter": param, "shown": shown, "value": float(value),
            "low": float(dist.low), "high": float(dist.high), "edge": side,
            "suggested_low": wider[0], "suggested_high": wider[1],
            "value_text": f"{float(value):.1e}" if log else f"{float(value):.3g}",
            "range_text": f"{_fmt(dist.low, log)}..{_fmt(dist.high, log)}",
            "suggested_text": _fmt(wider[0] if side == "low" else wider[1], log),
            "message": _message(optimizer, shown, float(value), dist, side, wider),
        }

"""Learning-rate range tests (``python -m study.lr_range``) read back, plotted, and set beside
what a study measured: does a 200-update test point at the learning rates that train best?

Reads the study database only (no torch): :func:`load_lr_range` gives tidy frames,
:func:`lr_range_plot` draws them, :func:`compare_with_study` puts each suggestion beside the
best learning rate and the good-LR band of a study of full runs (an LR grid, a sweep).
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from analysis.load import load_studies
from analysis.plots import LABELS, optimizer_palette
from analysis.tables import counted_accuracy, is_complete, sensitivity_metrics
from study.store import records

__all__ = [
    "newest_tests",
    "RULE_MARKERS",
    "load_lr_range",
    "lr_range_plot",
    "compare_with_study",
]

#: The marker of each suggestion rule in :func:`lr_range_plot`, in the order the tables use.
RULE_MARKERS: dict[str, str] = {"steepest": "v", "valley": "o", "min_div_10": "s"}

_CURVE_COLUMNS = ["optimizer", "update", "lr", "loss", "smoothed"]
_SUGGESTION_COLUMNS = ["optimizer", "rule", "lr", "stopped_at", "why", "number"]
_COMPARISON_COLUMNS = ["optimizer", "rule", "suggested_lr", "best_lr", "best_accuracy",
                       "good_lr_low", "good_lr_high", "inside", "decades_off", "n_runs"]


def newest_tests(optuna_study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    """The newest finished test of each optimizer, in the order optimizers were first
    tested."""
    newest: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in optuna_study.get_trials(deepcopy=False):
        name = trial.user_attrs.get(records.LR_RANGE_OPTIMIZER)
        if name is not None and trial.state.is_finished():
            newest[name] = trial
    return newest


def load_lr_range(
    storage: str | optuna.storages.BaseStorage, study_name: str = records.LR_RANGE_STUDY
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The range tests of ``study_name``: the newest test of each optimizer (a test repeated
    with ``--again`` replaces the older one here).

    Returns:
        ``(curves, suggestions)``. ``curves``: one row per update, columns ``optimizer``,
        ``update`` (1-based), ``lr``, ``loss`` (the batch's training loss) and ``smoothed``
        (its debiased moving average). ``suggestions``: one row per optimizer and rule,
        columns ``optimizer``, ``rule`` (``steepest``, ``valley``, ``min_div_10``), ``lr``
        (NaN where the rule had too few points), ``stopped_at``, ``why`` and ``number``
        (the trial).

    Raises:
        analysis.load.StudyNotFoundError: no such study; the message lists those there are.
        study.store.storage.StorageError: the URL or database cannot be read.
    """
    (optuna_study,) = load_studies(storage, study_name)
    curves, suggestions = [], []
    for name, trial in newest_tests(optuna_study).items():
        attrs = trial.user_attrs
        lrs = attrs.get(records.LR_RANGE_LRS) or []
        losses = attrs.get(records.LR_RANGE_LOSSES) or []
        smoothed = attrs.get(records.LR_RANGE_SMOOTHED) or []
        curves += [{"optimizer": name, "update": i + 1, "lr": lr, "loss": loss,
                    "smoothed": smooth}
                   for i, (lr, loss, smooth) in enumerate(zip(lrs, losses, smoothed,
                                                              strict=True))]
        for rule, lr in (attrs.get(records.LR_RANGE_SUGGESTIONS) or {}).items():
            suggestions.append({
                "optimizer": name, "rule": rule, "lr": math.nan if lr is None else lr,
                "stopped_at": attrs.get(records.LR_RANGE_STOPPED_AT, math.nan),
                "why": attrs.get(records.LR_RANGE_WHY, ""), "number": trial.number,
            })
    return (pd.DataFrame(curves, columns=_CURVE_COLUMNS),
            pd.DataFrame(suggestions, columns=_SUGGESTION_COLUMNS))


def _on_curve(curve: pd.DataFrame, x: str, y: str, at: float) -> float:
    """The curve's ``y`` at ``x == at``, interpolated in log ``x`` (NaN outside it)."""
    curve = curve.sort_values(x)
    return float(np.interp(np.log10(at), np.log10(curve[x]), curve[y],
                           left=math.nan, right=math.nan))


def lr_range_plot(
    curves: pd.DataFrame,
    suggestions: pd.DataFrame | None = None,
    *,
    x: str = "lr",
    y: str = "smoothed",
    hue: str = "optimizer",
    markers: dict[str, str] | None = None,
    clip: bool = True,
    ax: Axes | None = None,
    **kwargs,
) -> Axes:
    """Smoothed training loss against learning rate (log axis), one line per optimizer,
    each suggestion a marker on its optimizer's line (the shape says the rule).

    Args:
        curves, suggestions: the frames of :func:`load_lr_range` (``suggestions`` optional).
        x, y, hue: columns of ``curves``.
        markers: rule -> matplotlib marker (default :data:`RULE_MARKERS`).
        clip: the y axis from just below the lowest loss to a little above the highest
            loss any curve has before its minimum: the descents fill the axes and the
            blow-ups leave them at the top (a diverging loss is often 10-100 times the
            rest). ``False``: matplotlib's limits.
        ax: the Axes to draw on (default: the current one).
        **kwargs: passed on to ``seaborn.lineplot``.

    Returns:
        The Axes drawn on.
    """
    markers = {**RULE_MARKERS, **(markers or {})}
    names = list(dict.fromkeys(curves[hue]))
    palette = kwargs.pop("palette", optimizer_palette(names))
    # A dash pattern per optimizer as well as a colour: curves that coincide (Adam and AdamW
    # without weight decay) stay visible one over the other.
    ax = sns.lineplot(data=curves, x=x, y=y, hue=hue, hue_order=names, palette=palette,
                      style=hue, style_order=names, estimator=None, sort=True, ax=ax, **kwargs)
    ax.set_xscale("log")
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel("smoothed training loss" if y == "smoothed" else LABELS.get(y, y))
    if clip and not curves.empty:
        ax.set_ylim(*_descent_limits(curves, y, hue))
    handles, labels = ax.get_legend_handles_labels()
    rules = [] if suggestions is None else _mark_suggestions(
        ax, curves, suggestions, x=x, y=y, hue=hue, markers=markers, palette=palette)
    for rule in rules:
        handles.append(Line2D([], [], marker=markers.get(rule, "D"), linestyle="none",
                              color="grey", markeredgecolor="black", markersize=8))
        labels.append(rule)
    if handles:
        ax.legend(handles, labels, title=None, fontsize="small")
    return ax


def _descent_limits(curves: pd.DataFrame, y: str, hue: str) -> tuple[float, float]:
    """y limits from just below the lowest loss to a little above the highest loss any curve
    has up to its minimum (the blow-ups after it are left above)."""
    before_min = [curve[y].iloc[: int(np.argmin(curve[y].to_numpy())) + 1]
                  for _, curve in curves.groupby(hue, sort=False)]
    low = min(float(part.min()) for part in before_min)
    high = max(float(part.max()) for part in before_min)
    pad = 0.1 * (high - low) or 0.1 * abs(high) or 1.0
    return low - pad, high + pad


def _mark_suggestions(
    ax: Axes,
    curves: pd.DataFrame,
    suggestions: pd.DataFrame,
    *,
    x: str,
    y: str,
    hue: str,
    markers: dict[str, str],
    palette: dict,
) -> list[str]:
    """Each finite suggestion of a plotted optimizer as a marker on its curve; returns the
    rules marked, in the order first seen."""
    names = set(curves[hue])
    rules: list[str] = []
    for row in suggestions.itertuples(index=False):
        if row.optimizer not in names or not np.isfinite(row.lr):
            continue
        curve = curves[curves[hue] == row.optimizer]
        ax.plot([row.lr], [_on_curve(curve, x, y, row.lr)],
                marker=markers.get(row.rule, "D"), linestyle="none", markersize=8,
                color=palette[row.optimizer], markeredgecolor="black", zorder=3)
        if row.rule not in rules:
            rules.append(row.rule)
    return rules


def compare_with_study(
    suggestions: pd.DataFrame, trials: pd.DataFrame, *, tolerance: float = 0.01
) -> pd.DataFrame:
    """Each range-test suggestion beside what a study of full runs measured.

    For each optimizer of ``suggestions``, from ``trials`` (:func:`analysis.load.load_trials`
    of one study, e.g. an LR grid): ``best_lr`` and ``best_accuracy`` (its best complete
    run; with ``--repeats``, the seeds' mean) and its good-LR band ``good_lr_low`` ..
    ``good_lr_high`` of its complete runs, as ``analysis.tables.sensitivity_metrics``
    measures ``good_lr_width`` (neighbouring learning rates within ``tolerance`` of the
    best; diverged and pruned runs are never good). Then for each suggestion ``inside`` (in the
    band, ends included) and ``decades_off``: 0 inside, else ``log10(lr / good_lr_low)``
    below the band (negative) or ``log10(lr / good_lr_high)`` above it (positive).

    Only what can be compared gets a row: an optimizer the study has no complete run of
    (or never searched) and a rule that made no suggestion (too few points) are left out,
    so ``inside`` is always a real bool (the report names the optimizers left out).

    Returns:
        Columns ``optimizer``, ``rule``, ``suggested_lr``, ``best_lr``, ``best_accuracy``,
        ``good_lr_low``, ``good_lr_high``, ``inside`` (bool), ``decades_off`` and ``n_runs``
        (complete runs of the optimizer in the study).

    Raises:
        ValueError: ``trials`` holds several studies (compare with one at a time).
    """
    if "study" in trials and trials["study"].nunique() > 1:
        names = ", ".join(sorted(trials["study"].unique()))
        raise ValueError(f"trials holds several studies ({names}); pass one study's trials, "
                         "e.g. trials[trials['study'] == NAME].")
    done = trials[is_complete(trials) & trials["lr"].notna() & trials["final_accuracy"].notna()]
    rows = []
    for row in suggestions.itertuples(index=False):
        runs = done[done["optimizer"] == row.optimizer]
        suggested = float(row.lr)
        if runs.empty or not np.isfinite(suggested):
            continue
        lr = runs["lr"].to_numpy(dtype=float)
        accuracy = counted_accuracy(runs["final_accuracy"], runs["diverged"])
        metrics = sensitivity_metrics(lr, accuracy, tolerance=tolerance)
        low, high = metrics["good_lr_low"], metrics["good_lr_high"]
        below = np.log10(suggested) - np.log10(low)
        above = np.log10(suggested) - np.log10(high)
        inside = bool(below >= -1e-9 and above <= 1e-9)
        rows.append({
            "optimizer": row.optimizer, "rule": row.rule, "suggested_lr": suggested,
            "best_lr": metrics["best_lr"], "best_accuracy": metrics["best_accuracy"],
            "good_lr_low": low, "good_lr_high": high, "inside": inside,
            "decades_off": 0.0 if inside else float(below if below < 0 else above),
            "n_runs": int(lr.size),
        })
    return pd.DataFrame(rows, columns=_COMPARISON_COLUMNS).astype({"inside": bool})


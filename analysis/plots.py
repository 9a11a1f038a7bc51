"""Seaborn plots of a study, from the tidy frames of :mod:`analysis.load`.

Axes-level functions take ``ax=None`` (the current Axes) and return the Axes they drew on;
figure-level functions facet and return the ``FacetGrid``. None calls ``plt.show()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from analysis.statistics import t_interval
from analysis.tables import CHANCE, counted_accuracy, is_complete, lr_bins

__all__ = [
    "LABELS",
    "axis_label",
    "eval_set_name",
    "optimizer_palette",
    "binned_error",
    "colour_range",
    "readable_log_ticks",
    "lr_sensitivity_plot",
    "lr_sensitivity_grid",
    "seed_frame",
    "lr_seed_plot",
    "learning_curves",
    "lr_schedule_plot",
    "hparam_scatter",
    "importance_plot",
    "best_so_far_plot",
]


#: Axis labels, one wording in every plot ("learning rate", never "lr").
LABELS: dict[str, str] = {
    "lr": "learning rate",
    "weight_decay": "weight decay",
    "momentum": "momentum",
    "nesterov": "Nesterov momentum",
    "beta1": "beta1",
    "beta2": "beta2",
    "alpha": "alpha",
    "batch_size": "batch size",
    "warmup_epochs": "warm-up epochs",
    "epoch": "epoch",
    "number": "trial number",
    "train_loss": "training loss",
    "train_accuracy": "training accuracy",
    "eval_accuracy": "evaluation accuracy",
    "final_accuracy": "final accuracy",
    "test_accuracy": "test accuracy",
}

#: The smallest error a log axis shows (one image of MNIST's 10 000 test images).
ERROR_FLOOR = 1e-4
#: Height of the strip of diverged runs above chance error, as a factor on the log axis.
_STRIP = 1.8
_MARKERS = ("o", "X", "s", "P", "D", "^", "v", "<", ">", "*")


def axis_label(column: str) -> str:
    """The axis label of ``column`` (a trials or curves column, or an Optuna parameter name
    such as ``sgd_weight_decay``, labelled "weight decay (sgd)")."""
    if column in LABELS:
        return LABELS[column]
    head, _, rest = column.partition("_")
    if rest in LABELS:
        return f"{LABELS[rest]} ({head})"
    return column.replace("_", " ")


def optimizer_palette(names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per optimizer, the same in every plot of a report."""
    ordered = sorted(set(names))
    return dict(zip(ordered, sns.color_palette("tab10", len(ordered)), strict=True))


def eval_set_name(frame: pd.DataFrame) -> str:
    """The set ``frame``'s accuracies were measured on (``test`` or ``validation``), or
    ``evaluation`` where its rows mix sets or do not say: the word the plots and the report
    put before "accuracy" and "error"."""
    sets = frame["eval_set"].dropna().unique() if "eval_set" in frame else ()
    return str(sets[0]) if len(sets) == 1 else "evaluation"


def _ax(ax: Axes | None) -> Axes:
    return ax if ax is not None else plt.gca()


def _bin_words(bins_per_decade: int) -> str:
    return {1: "decade", 2: "half-decade"}.get(bins_per_decade, f"1/{bins_per_decade}-decade")


def _runs(trials: pd.DataFrame, chance: float) -> pd.DataFrame:
    """One row per trained model (each seed of a trial): ``lr``, ``error`` as the metric
    counts it (diverged at chance) and the trial's ``optimizer``/``number``/``study``."""
    rows = []
    for trial in trials.itertuples(index=False):
        seeds = list(trial.seed_accuracies) or [trial.final_accuracy]
        if trial.diverged:
            seeds = [chance] * len(seeds)
        for value in seeds:
            rows.append((trial.study, trial.number, trial.optimizer, trial.lr, value))
    frame = pd.DataFrame(rows, columns=["study", "number", "optimizer", "lr", "accuracy"])
    accuracy = counted_accuracy(frame["accuracy"], np.zeros(len(frame), dtype=bool), chance)
    return frame.assign(error=np.maximum(1.0 - accuracy, ERROR_FLOOR))


def binned_error(
    runs: pd.DataFrame,
    *,
    bins_per_decade: int = 2,
    min_runs: int = 3,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Mean ``error`` per log-LR bin of ``runs`` (columns ``lr`` and ``error``), for the bins
    with at least ``min_runs`` runs.

    Columns: ``bin`` (as :func:`analysis.tables.lr_bins`), ``lr_lo`` / ``lr_hi`` (its
    edges), ``n``, ``error`` (the mean) and ``error_lo`` / ``error_hi`` (a ``confidence``
    Student t interval of the mean; NaN below 3 runs). The runs of a bin are at different
    learning rates, so the band shows their spread around the bin's mean, not seed noise.
    """
    if min_runs < 1:
        raise ValueError(f"min_runs must be 1 or more, but got {min_runs=}.")
    columns = ["bin", "lr_lo", "lr_hi", "n", "error", "error_lo", "error_hi"]
    rows = []
    bins = lr_bins(runs["lr"], bins_per_decade)
    for b, part in runs.groupby(bins, sort=True):
        values = part["error"].to_numpy(dtype=float)
        if len(values) < min_runs:
            continue
        lo, hi = t_interval(values, confidence)
        rows.append((b, 10 ** (b / bins_per_decade), 10 ** ((b + 1) / bins_per_decade),
                     len(values), values.mean(), lo, hi))
    return pd.DataFrame(rows, columns=columns)


def _stairs(trend: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Step coordinates over each bin's width, broken (NaN) between bins that do not touch."""
    xs: list[float] = []
    ys: list[float] = []
    previous = None
    for row in trend.itertuples(index=False):
        if previous is not None and row.bin != previous + 1:
            xs.append(np.nan)
            ys.append(np.nan)
        xs += [row.lr_lo, row.lr_hi]
        ys += [row.error, row.error]
        previous = row.bin
    return np.asarray(xs), np.asarray(ys)


def _error_ticks(ax: Axes, bottom: float, chance: float) -> None:
    """Log error axis from ``bottom`` to a strip above chance error; ticks 1-2-5 and chance."""
    ceiling = 1.0 - chance
    ax.set_yscale("log")
    ax.set_ylim(bottom, ceiling * _STRIP)
    ticks = [m * 10.0**e for e in range(-5, 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if bottom <= t < ceiling / 1.3] + [ceiling]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks[:-1]] + [f"{ceiling:g} (chance)"])
    ax.yaxis.set_minor_locator(NullLocator())


def _error_bottom(errors: Sequence[float] | np.ndarray) -> float:
    errors = np.asarray(errors, dtype=float)
    errors = errors[np.isfinite(errors)]
    return float(errors.min()) / 1.6 if errors.size else 0.005


def lr_sensitivity_plot(
    trials: pd.DataFrame,
    *,
    ax: Axes | None = None,
    hue: str = "optimizer",
    palette: dict | None = None,
    bins_per_decade: int = 2,
    chance: float = CHANCE,
    trend: bool = True,
    include_pruned: bool = True,
    min_runs: int = 3,
    legend: bool = True,
    title: str | None = None,
    **kwargs,
) -> Axes:
    """Final error (1 - accuracy) against learning rate, both on log axes, one colour per
    ``hue`` value.

    Log error spreads the region every good run lies in (1.5 % and 3 % error are as far apart
    as 15 % and 30 %). Complete trials are filled circles, pruned ones hollow circles at the
    error they were stopped at, diverged ones crosses in a grey strip of their own above
    chance error (the metric counts them at ``chance``). The trend is a step over each log-LR
    bin (``bins_per_decade``): the mean error of the runs ``lr_sensitivity`` counts (pruned
    ones at the accuracy they were stopped at unless ``include_pruned`` is false; each seed of
    a trial one run) with its 95 % t band (the spread of the bin's runs), drawn only for
    bins with at least ``min_runs`` runs: fewer say nothing about the mean. ``title``:
    ``None`` for the default one, ``""`` for none. ``kwargs`` go to ``Axes.scatter`` for the
    runs' markers.
    """
    ax = _ax(ax)
    runs = _plotted_runs(trials, chance)
    palette = palette or optimizer_palette(runs[hue].dropna())
    names = sorted(runs[hue].dropna().unique())
    counted_states = ["complete", "diverged", *(["pruned"] if include_pruned else [])]
    bottoms = list(runs.loc[~runs["diverged"], "error"])
    style = {"s": 28, "zorder": 3, **kwargs}
    for name, group in runs.groupby(hue, sort=True):
        colour = palette.get(name, "grey")
        _scatter_runs(ax, group, name, colour, style,
                      row=(names.index(name) + 1) / (len(names) + 1), chance=chance)
        if trend:
            per_run = _runs(group[group["outcome"].isin(counted_states)], chance)
            bottoms += list(per_run["error"])
            _draw_trend(ax, per_run, name, colour, bins_per_decade=bins_per_decade,
                        min_runs=min_runs)
    _diverged_strip(ax, chance)
    _error_ticks(ax, _error_bottom(bottoms), chance)
    ax.set_xscale("log")
    ax.set_xlabel(axis_label("lr"))
    ax.set_ylabel(_error_label(trials))
    if title is None:
        title = f"Final {eval_set_name(trials)} error against learning rate"
    ax.set_title(title)
    if legend:
        _sensitivity_legend(ax, [n for n in names if n in palette], palette, chance=chance,
                            trend=trend, bins_per_decade=bins_per_decade, min_runs=min_runs)
    return ax


def _plotted_runs(trials: pd.DataFrame, chance: float) -> pd.DataFrame:
    """The finished trials with a learning rate, with ``error`` as the metric counts it
    (diverged at chance), floored where a log axis can show it."""
    runs = trials[trials["lr"].notna() & trials["outcome"].isin(["complete", "pruned",
                                                                  "diverged"])]
    error = np.maximum(1.0 - counted_accuracy(runs["final_accuracy"], runs["diverged"], chance),
                       ERROR_FLOOR)
    return runs.assign(error=error)


def _scatter_runs(ax: Axes, group: pd.DataFrame, name: object, colour: object, style: dict,
                  *, row: float, chance: float) -> None:
    """One hue value's runs: complete filled, pruned hollow, diverged crosses in the strip
    above chance error at height ``row`` (0 to 1) of it."""
    complete = group[group["outcome"] == "complete"]
    pruned = group[group["outcome"] == "pruned"]
    diverged = group[group["outcome"] == "diverged"]
    ax.scatter(complete["lr"], complete["error"], color=colour, label=f"{name}", **style)
    ax.scatter(pruned["lr"], pruned["error"], facecolors="none", edgecolors=colour,
               linewidths=1.2, label=f"{name} pruned", **style)
    # Each hue value its own row in the strip, so crosses at one learning rate stay apart.
    row_y = (1.0 - chance) * _STRIP**row
    ax.scatter(diverged["lr"], np.full(len(diverged), row_y), marker="x", color=colour,
               label=f"{name} diverged", **{**style, "s": 40})


def _draw_trend(ax: Axes, per_run: pd.DataFrame, name: object, colour: object, *,
                bins_per_decade: int, min_runs: int) -> None:
    """The mean error per log-LR bin of ``per_run`` as steps, each with its bootstrap band."""
    line = binned_error(per_run, bins_per_decade=bins_per_decade, min_runs=min_runs)
    if line.empty:
        return
    x, y = _stairs(line)
    ax.plot(x, y, color=colour, linewidth=1.8, label=f"{name} mean", gid="trend")
    for row in line.itertuples(index=False):
        ax.fill_between([row.lr_lo, row.lr_hi], row.error_lo, row.error_hi, color=colour,
                        alpha=0.18, linewidth=0, zorder=1)


def _diverged_strip(ax: Axes, chance: float) -> None:
    """The grey strip above chance error where diverged runs are drawn, and its label."""
    ceiling = 1.0 - chance
    ax.axhspan(ceiling, ceiling * _STRIP * 10, color="0.93", zorder=0)
    ax.axhline(ceiling, color="0.6", linewidth=0.8, linestyle=":", zorder=1)
    ax.text(0.01, ceiling * np.sqrt(_STRIP), "diverged", transform=ax.get_yaxis_transform(),
            va="center", ha="left", fontsize="small", color="0.4")


def _sensitivity_legend(ax: Axes, names: Sequence[str], palette: dict, *, chance: float,
                        trend: bool, bins_per_decade: int, min_runs: int) -> None:
    """One entry per hue value, then what the marker shapes (and the trend line) mean."""
    handles = [Line2D([], [], color=palette[n], marker="o", linestyle="", label=n)
               for n in names]
    handles += [
        Line2D([], [], color="grey", marker="o", linestyle="", label="complete"),
        Line2D([], [], color="grey", marker="o", markerfacecolor="none", linestyle="",
               label="pruned (where stopped)"),
        Line2D([], [], color="grey", marker="x", linestyle="",
               label=f"diverged (counted at {chance:g})"),
    ]
    if trend:
        handles.append(Line2D([], [], color="grey", linewidth=1.8,
                              label=f"mean per {_bin_words(bins_per_decade)},\n"
                              f"bins of {min_runs}+ runs (95 % t band)"))
    ax.legend(handles=handles, fontsize="small", loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False)


def _error_label(trials: pd.DataFrame) -> str:
    return f"final {eval_set_name(trials)} error (1 - accuracy)"


def seed_frame(trials: pd.DataFrame, *, chance: float = CHANCE) -> pd.DataFrame:
    """One row per trial and seed: the trials' ``seed_accuracies`` in long form, with
    ``accuracy`` as the sensitivity metric counts it and ``error`` (1 - accuracy)."""
    finished = trials["state"].isin(["complete", "pruned"])  # running and failed runs are no
    runs = trials[finished & (trials["n_seeds"] > 0) & trials["lr"].notna()]  # results yet
    long = runs.explode("seed_accuracies").rename(columns={"seed_accuracies": "accuracy"})
    long["seed_index"] = long.groupby(["study", "number"]).cumcount()
    long["accuracy"] = np.maximum(long["accuracy"].astype(float), chance)
    long["error"] = 1.0 - long["accuracy"]
    return long.reset_index(drop=True)


def lr_seed_plot(
    trials: pd.DataFrame,
    *,
    ax: Axes | None = None,
    hue: str = "optimizer",
    palette: dict | None = None,
    chance: float = CHANCE,
    **kwargs,
) -> Axes:
    """Test error against learning rate, both on log axes, with the band the seeds span.

    For studies with several seeds per trial (an LR grid run with ``--repeats``): the line is
    the mean over seeds at each learning rate, the band its 95 % Student t interval over
    seeds (none below 3 seeds), the dots the seeds themselves. Diverged seeds count at chance
    (error 0.9). Log error makes 1.5 % and 3 % error as far apart as 15 % and 30 %.
    ``kwargs`` go to ``seaborn.lineplot``.
    """
    ax = _ax(ax)
    frame = seed_frame(trials, chance=chance)
    palette = palette or optimizer_palette(frame[hue].dropna())
    if not frame.empty:
        sns.lineplot(data=frame, x="lr", y="error", hue=hue, palette=palette, marker="o",
                     errorbar=t_interval, ax=ax, **kwargs)
        sns.scatterplot(data=frame, x="lr", y="error", hue=hue, palette=palette, s=10,
                        alpha=0.4, legend=False, ax=ax)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(axis_label("lr"))
    ax.set_ylabel(_error_label(trials))
    seeds = int(trials["n_seeds"].max()) if len(trials) else 0
    ax.set_title(f"Error against learning rate, band: 95 % t-interval over {seeds} seeds "
                 "per point")
    return ax


def _facets(frame: pd.DataFrame, col: str, col_wrap: int | None, height: float,
            ) -> sns.FacetGrid:
    order = sorted(frame[col].dropna().unique())
    if col_wrap is None and len(order) > 3:
        col_wrap = 3
    return sns.FacetGrid(frame, col=col, col_order=order, col_wrap=col_wrap, height=height,
                         aspect=1.3, sharex=True, sharey=True)


def lr_sensitivity_grid(
    trials: pd.DataFrame,
    *,
    col: str = "schedule",
    col_wrap: int | None = None,
    height: float = 3.5,
    chance: float = CHANCE,
    **kwargs,
) -> sns.FacetGrid:
    """:func:`lr_sensitivity_plot` faceted by ``col`` (the schedule by default), one legend
    beside the last panel and one error scale for all."""
    palette = optimizer_palette(trials["optimizer"].dropna())
    grid = _facets(trials, col, col_wrap, height)
    names = list(grid.axes_dict)
    for name, ax in grid.axes_dict.items():
        lr_sensitivity_plot(trials[trials[col] == name], ax=ax, palette=palette, chance=chance,
                            legend=name == names[-1], title=f"{col} = {name}", **kwargs)
    # Each panel scaled to its own runs; the shared axis takes the lowest of them.
    bottom = min((ax.get_ylim()[0] for ax in grid.axes.flat if ax.has_data()), default=0.005)
    for ax in grid.axes.flat:
        _error_ticks(ax, bottom, chance)
    grid.figure.suptitle(f"Final {eval_set_name(trials)} error against learning rate, "
                         f"by {axis_label(col)}", y=1.0, va="bottom")
    return grid


def learning_curves(
    curves: pd.DataFrame,
    *,
    y: str = "eval_accuracy",
    col: str = "optimizer",
    col_wrap: int | None = None,
    height: float = 3.0,
    ylabel: str | None = None,
) -> sns.FacetGrid:
    """``y`` per epoch, one line per trial, faceted by ``col``; pruned trials faded.
    ``ylabel``: the y axis label (default from :data:`LABELS`)."""
    palette = optimizer_palette(curves["optimizer"].dropna())
    grid = _facets(curves, col, col_wrap, height)
    for name, ax in grid.axes_dict.items():
        part = curves[curves[col] == name]
        for (_, state), trial in part.groupby(["number", "state"], sort=True):
            colour = palette.get(trial["optimizer"].iloc[0], "grey")
            ax.plot(trial["epoch"], trial[y], color=colour,
                    alpha=0.25 if state == "pruned" else 0.9,
                    linestyle="--" if state == "pruned" else "-")
        ax.set_title(f"{col} = {name}")
    grid.set_axis_labels(axis_label("epoch"), ylabel or axis_label(y))
    return grid


#: Decades of learning rate the schedule plot shows below the highest rate drawn.
SCHEDULE_DECADES = 4


def lr_schedule_plot(
    curves: pd.DataFrame, trials: pd.DataFrame, *, ax: Axes | None = None
) -> Axes:
    """Learning rate in effect per epoch for the best complete trial of each schedule: the
    rate of the epoch's last update, and a band from its lowest to its highest rate within
    the epoch (a cyclic schedule sweeps it every epoch) where the study recorded them."""
    ax = _ax(ax)
    done = trials[is_complete(trials)].dropna(
        subset=["final_accuracy"])
    for schedule, group in done.groupby("schedule", sort=True):
        best = group.loc[group["final_accuracy"].idxmax()]
        curve = curves[(curves["study"] == best["study"]) & (curves["number"] == best["number"])]
        (line,) = ax.plot(curve["epoch"], curve["lr"], marker="o",
                          label=f"{schedule} (trial {best['number']}, {best['optimizer']})")
        swept = {"lr_min", "lr_max"} <= set(curve)
        if swept and curve[["lr_min", "lr_max"]].notna().to_numpy().all():
            ax.fill_between(curve["epoch"], curve["lr_min"], curve["lr_max"],
                            color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_yscale("log")
    low, high = ax.dataLim.intervaly
    if np.isfinite(high) and high > 0:
        # A warm-up starts near 0: show SCHEDULE_DECADES below the highest rate, not 1e-10.
        ax.set_ylim(max(low, high * 10.0**-SCHEDULE_DECADES), high * 1.5)
    ax.set_xlabel(axis_label("epoch"))
    ax.set_ylabel("learning rate (line: last update; band: lowest to highest in the epoch)")
    if ax.get_lines():
        ax.legend(fontsize="small")
    return ax


def readable_log_ticks(axis: Axis, low: float, high: float) -> None:
    """Over less than two decades, ticks at 1, 2 and 5 times powers of ten written plainly
    (0.02, 0.05, 0.1) instead of crowded minor labels (2x10^-2, 3x10^-2, 4x10^-2)."""
    if not (0 < low < high) or np.log10(high / low) >= 2:
        return
    axis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def colour_range(values: Sequence[float] | np.ndarray, *, robust: bool = True,
                 ) -> tuple[float, float]:
    """The range a colour scale of ``values`` spans: their minimum to maximum or, when
    ``robust``, from the lowest value inside Tukey's outer fence (first quartile - 3 x
    interquartile range) up, so one run far below the rest (one that learned little without
    diverging) does not give every good run the same colour. Needs four values to clip."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    if robust and values.size >= 4:
        q1, q3 = np.percentile(values, [25, 75])
        lo = float(values[values >= q1 - 3.0 * (q3 - q1)].min())  # the lowest run inside
    if hi - lo < 1e-9:
        lo, hi = lo - 0.005, hi + 0.005
    return lo, hi


def hparam_scatter(
    trials: pd.DataFrame,
    *,
    x: str = "lr",
    y: str = "weight_decay",
    ax: Axes | None = None,
    log_y: bool | None = None,
    hue: str = "final_accuracy",
    style: str = "optimizer",
    cmap: str = "viridis",
    robust: bool = True,
    cbar: bool = True,
    **kwargs,
) -> Axes:
    """``x`` against ``y`` (log axes for rates) of the complete trials, coloured by ``hue``
    (final accuracy), one marker per ``style`` value (optimizer).

    The colour scale spans the plotted runs (:func:`colour_range`; ``robust``: from the
    outer Tukey fence up): a run below it takes the lowest colour, and the colour bar says
    how many did. ``kwargs`` go to ``Axes.scatter``.
    """
    ax = _ax(ax)
    done = trials[is_complete(trials)].dropna(subset=[x, y, hue])
    log_y = log_y if log_y is not None else y in ("lr", "weight_decay")
    if log_y:
        done = done[done[y] > 0]  # no weight decay has no place on a log axis
    lo, hi = colour_range(done[hue], robust=robust)
    norm = Normalize(lo, hi)
    names = sorted(done[style].dropna().unique())
    markers = dict(zip(names, _MARKERS * (len(names) // len(_MARKERS) + 1), strict=False))
    for name in names:
        part = done[done[style] == name]
        ax.scatter(part[x], part[y], c=part[hue], cmap=cmap, norm=norm, marker=markers[name],
                   label=name, **{"s": 50, "edgecolors": "0.3", "linewidths": 0.4, **kwargs})
    below = int((done[hue] < lo).sum())
    if names:
        ax.legend(handles=[Line2D([], [], color="0.4", marker=markers[n], linestyle="",
                                  label=n) for n in names], title=axis_label(style),
                  fontsize="small", loc="best")
        if cbar:
            label = f"final {eval_set_name(trials)} accuracy" if hue == "final_accuracy" else (
                axis_label(hue))
            if below:
                runs = f"{below} run{'' if below == 1 else 's'}"
                label += f"\n({runs} below {lo:.3f}: lowest colour)"
            ax.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=label,
                               extend="min" if below else "neither")
    ax.set_xscale("log")
    if not done.empty:
        readable_log_ticks(ax.xaxis, done[x].min(), done[x].max())
    if log_y and not done.empty:
        ax.set_yscale("log")
        readable_log_ticks(ax.yaxis, done[y].min(), done[y].max())
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    return ax


def importance_plot(importance: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Horizontal bars of :func:`analysis.tables.param_importance`."""
    ax = _ax(ax)
    if not importance.empty:
        labelled = importance.assign(param=importance["param"].map(axis_label))
        sns.barplot(data=labelled, x="importance", y="param", color="C0", ax=ax)
    ax.set_xlabel("importance (PED-ANOVA)")
    ax.set_ylabel("")
    return ax


def best_so_far_plot(trials: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Best final accuracy so far against trial number, per optimizer and over all: does
    tuning one optimizer beat trying several?"""
    ax = _ax(ax)
    palette = optimizer_palette(trials["optimizer"].dropna())
    ordered = trials.sort_values("number")
    accuracy = ordered["final_accuracy"].where(is_complete(ordered))
    for name, group in ordered.assign(acc=accuracy).groupby("optimizer", sort=True):
        running = group["acc"].cummax().ffill()
        ax.step(group["number"], running, where="post", color=palette[name], label=name)
    ax.step(ordered["number"], accuracy.cummax().ffill(), where="post", color="black",
            linewidth=2, label="any optimizer")
    ax.set_xlabel(axis_label("number"))
    ax.set_ylabel(f"best final {eval_set_name(trials)} accuracy so far")
    ax.legend(fontsize="small")
    return ax

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
from matplotlib.lines import Line2D

from analysis.tables import CHANCE, counted_accuracy, is_complete, lr_bin_centres, lr_bins

__all__ = [
    "optimizer_palette",
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


def optimizer_palette(names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per optimizer, the same in every plot of a report."""
    ordered = sorted(set(names))
    return dict(zip(ordered, sns.color_palette("tab10", len(ordered)), strict=True))


def _ax(ax: Axes | None) -> Axes:
    return ax if ax is not None else plt.gca()


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
) -> Axes:
    """Final accuracy against learning rate (log x), one colour per ``hue`` value.

    Complete trials are filled circles, pruned ones hollow circles at the accuracy they were
    stopped at, diverged ones crosses at the bottom (at ``chance``, how the sensitivity
    metric counts them). The trend is the mean accuracy per log-LR bin with its 95 %
    bootstrap band, over the runs ``lr_sensitivity`` counts (pruned ones at the accuracy
    they were stopped at, unless ``include_pruned`` is false).
    """
    ax = _ax(ax)
    palette = palette or optimizer_palette(trials[hue].dropna())
    runs = trials[trials["lr"].notna()]
    for name, group in runs.groupby(hue, sort=True):
        colour = palette.get(name, "grey")
        complete = group[is_complete(group)]
        pruned = group[group["state"] == "pruned"]
        diverged = group[group["diverged"]]
        ax.scatter(complete["lr"], complete["final_accuracy"], color=colour, s=28,
                   label=f"{name}", zorder=3)
        ax.scatter(pruned["lr"], pruned["final_accuracy"], facecolors="none",
                   edgecolors=colour, s=28, linewidths=1.2, label=f"{name} pruned", zorder=3)
        ax.scatter(diverged["lr"], np.full(len(diverged), chance), marker="x", color=colour,
                   s=40, label=f"{name} diverged", zorder=3)
        # The runs the sensitivity table counts: pruned ones at their last accuracy.
        counted = pd.concat([complete, diverged, *([pruned] if include_pruned else [])])
        if trend and counted["lr"].nunique() >= 2:
            bins = lr_bins(counted["lr"], bins_per_decade)
            frame = pd.DataFrame({
                "lr_bin": lr_bin_centres(bins, bins_per_decade),
                "accuracy": counted_accuracy(counted["final_accuracy"], counted["diverged"],
                                             chance),
            })
            sns.lineplot(data=frame, x="lr_bin", y="accuracy", color=colour, ax=ax,
                         errorbar=("ci", 95), n_boot=200, seed=0, legend=False)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"final {_eval_set(trials)} accuracy")
    handles = [Line2D([], [], color=palette[n], marker="o", linestyle="", label=n)
               for n in sorted(runs[hue].dropna().unique()) if n in palette]
    handles += [
        Line2D([], [], color="grey", marker="o", linestyle="", label="complete"),
        Line2D([], [], color="grey", marker="o", markerfacecolor="none", linestyle="",
               label="pruned"),
        Line2D([], [], color="grey", marker="x", linestyle="", label=f"diverged (at {chance:g})"),
    ]
    ax.legend(handles=handles, fontsize="small", loc="best")
    return ax


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
    the mean over seeds at each learning rate, the band its 95 % bootstrap interval over
    seeds, the dots the seeds themselves. Diverged seeds count at chance (error 0.9). Log
    error makes 1.5 % and 3 % error as far apart as 15 % and 30 %. ``kwargs`` go to
    ``seaborn.lineplot``.
    """
    ax = _ax(ax)
    frame = seed_frame(trials, chance=chance)
    palette = palette or optimizer_palette(frame[hue].dropna())
    if not frame.empty:
        sns.lineplot(data=frame, x="lr", y="error", hue=hue, palette=palette, marker="o",
                     errorbar=("ci", 95), n_boot=1000, seed=0, ax=ax, **kwargs)
        sns.scatterplot(data=frame, x="lr", y="error", hue=hue, palette=palette, s=10,
                        alpha=0.4, legend=False, ax=ax)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"final {_eval_set(trials)} error (1 - accuracy)")
    seeds = int(trials["n_seeds"].max()) if len(trials) else 0
    ax.set_title(f"Error against learning rate, band over {seeds} seeds per point")
    return ax


def _eval_set(frame: pd.DataFrame) -> str:
    if "eval_set" in frame and frame["eval_set"].nunique() == 1:
        return str(frame["eval_set"].iloc[0])
    return "evaluation"


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
    **kwargs,
) -> sns.FacetGrid:
    """:func:`lr_sensitivity_plot` faceted by ``col`` (the schedule by default)."""
    palette = optimizer_palette(trials["optimizer"].dropna())
    grid = _facets(trials, col, col_wrap, height)
    for name, ax in grid.axes_dict.items():
        lr_sensitivity_plot(trials[trials[col] == name], ax=ax, palette=palette, **kwargs)
        ax.set_title(f"{col} = {name}")
    return grid


def learning_curves(
    curves: pd.DataFrame,
    *,
    y: str = "eval_accuracy",
    col: str = "optimizer",
    col_wrap: int | None = None,
    height: float = 3.0,
) -> sns.FacetGrid:
    """``y`` per epoch, one line per trial, faceted by ``col``; pruned trials faded."""
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
    grid.set_axis_labels("epoch", y.replace("_", " "))
    return grid


def lr_schedule_plot(
    curves: pd.DataFrame, trials: pd.DataFrame, *, ax: Axes | None = None
) -> Axes:
    """Learning rate in effect per epoch for the best complete trial of each schedule."""
    ax = _ax(ax)
    done = trials[is_complete(trials)].dropna(
        subset=["final_accuracy"])
    for schedule, group in done.groupby("schedule", sort=True):
        best = group.loc[group["final_accuracy"].idxmax()]
        curve = curves[(curves["study"] == best["study"]) & (curves["number"] == best["number"])]
        ax.plot(curve["epoch"], curve["lr"], marker="o",
                label=f"{schedule} (trial {best['number']}, {best['optimizer']})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate at the epoch's last update")
    if ax.get_lines():
        ax.legend(fontsize="small")
    return ax


def hparam_scatter(
    trials: pd.DataFrame,
    *,
    x: str = "lr",
    y: str = "weight_decay",
    ax: Axes | None = None,
    log_y: bool | None = None,
) -> Axes:
    """``x`` against ``y`` (log axes for rates), coloured by final accuracy, one marker per
    optimizer; complete trials only."""
    ax = _ax(ax)
    done = trials[is_complete(trials)].dropna(
        subset=[x, y, "final_accuracy"])
    log_y = log_y if log_y is not None else y in ("lr", "weight_decay")
    if log_y:
        done = done[done[y] > 0]  # no weight decay has no place on a log axis
    if not done.empty:
        sns.scatterplot(data=done, x=x, y=y, hue="final_accuracy", style="optimizer",
                        palette="viridis", ax=ax, s=50)
        ax.legend(fontsize="x-small", loc="best")
    ax.set_xscale("log")
    if log_y and not done.empty:
        ax.set_yscale("log")
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    return ax


def importance_plot(importance: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Horizontal bars of :func:`analysis.tables.param_importance`."""
    ax = _ax(ax)
    if not importance.empty:
        sns.barplot(data=importance, x="importance", y="param", color="C0", ax=ax)
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
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"best final {_eval_set(trials)} accuracy so far")
    ax.legend(fontsize="small")
    return ax

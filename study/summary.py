"""What ``python -m study.run`` prints: one line per finished trial and the end-of-run
summary, counted and ranked by ``analysis``' own rules (one counting rule everywhere)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from analysis.load import load_trials
from analysis.tables import best_trials
from study.store import records

__all__ = ["summarize", "format_duration", "next_steps", "report_command", "password_hint"]


def format_duration(seconds: float) -> str:
    """``8m43s``, or ``12.5s`` under a minute."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def summarize(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    *,
    target: int,
    shown_url: str,
    storage_option: str | None = None,
    wall_seconds: float | None = None,
) -> str:
    """The end-of-run summary: counts, best trial overall and per optimizer, how to open it.

    Args:
        storage, study_name: the study.
        target: the ``--trials`` target.
        shown_url: the storage URL as messages show it (password masked).
        storage_option: the ``--storage`` value to repeat in the printed commands; ``None``
            when the study is in its default place.
        wall_seconds: this run's wall time, when it ran trials.
    """
    trials = load_trials(storage, study_name)
    attrs = optuna.load_study(study_name=study_name, storage=storage).user_attrs
    counts = _counts(trials)
    finished = counts["complete"] + counts["pruned"] + counts["diverged"]
    lines = [
        "",
        f"Study {study_name!r} ({shown_url}): {finished} finished of target {target}"
        + (" (beyond it: commands side by side, retried trials or an earlier larger --trials)"
           if finished > target else ""),
        "  " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        *_grid_lines(trials, attrs),
        *_pruning_lines(trials, attrs, finished=finished),
    ]
    if wall_seconds is not None:
        lines.append(f"  wall time this run: {format_duration(wall_seconds)}")
    lines += _best_lines(trials, eval_set=attrs.get(records.EVAL_SET, "test"))
    lines += next_steps(study_name, shown_url, storage_option=storage_option)
    return "\n".join(lines)


def _counts(trials: pd.DataFrame) -> dict[str, int]:
    """Trials per outcome, in :data:`records.OUTCOMES` order; ``waiting`` only when some are."""
    counts = {name: int((trials["outcome"] == name).sum()) for name in records.OUTCOMES}
    if not counts["waiting"]:
        del counts["waiting"]
    return counts


def _grid_lines(trials: pd.DataFrame, attrs: dict[str, Any]) -> list[str]:
    """For a grid study: how many of its points no finished trial has visited yet."""
    grid = (attrs.get(records.SPACE_DEFINITION) or {}).get("grid")
    if not grid:
        return []
    size = len(grid["optimizer"]) * len(grid["lr"])
    points = {records.grid_point(o, lr) for o in grid["optimizer"] for lr in grid["lr"]}
    done = trials[trials["outcome"].isin(["complete", "pruned", "diverged"])]
    visited = {records.grid_point(o, lr)
               for o, lr in zip(done["optimizer"], done["lr"], strict=True)}
    return [f"  {len(points - visited)} grid points left of {size}"]


def _pruning_lines(trials: pd.DataFrame, attrs: dict[str, Any], *, finished: int) -> list[str]:
    """The trial-epochs the pruned trials did not train, of all the finished ones'."""
    epochs = attrs.get(records.EPOCHS)
    pruned = trials[trials["outcome"] == "pruned"]
    if not (epochs and len(pruned)):
        return []
    saved = int((epochs - pruned["epochs_run"]).sum())
    return [f"  pruning saved {saved} of {epochs * finished} trial-epochs"]


def _best_lines(trials: pd.DataFrame, *, eval_set: str) -> list[str]:
    """The best trial, and the table of the best trial per optimizer."""
    best = best_trials(trials) if len(trials) else trials
    if not len(best):
        return ["No complete trial yet."]
    top = best.iloc[0]
    table = best.rename(columns={"number": "trial", "final_accuracy": "accuracy"})
    table = table.drop(columns=["test_accuracy"], errors="ignore")
    return [f"Best trial: #{top['number']} {top['optimizer']} accuracy "
            f"{top['final_accuracy']:.4f} at lr {top['lr']:.3g} ({eval_set} set)",
            "Best trial per optimizer:",
            table.to_string(index=False, float_format=lambda v: f"{v:.4g}")]


def _program(name: str) -> str:
    """How to call ``name`` (``python``, ``optuna``) from this environment as the user can
    type it: the bare name when the shell finds this environment's, else its path (relative
    when under the current folder: ``.venv/bin/python`` for a venv that is not activated)."""
    here = Path(sys.executable).absolute().parent / name
    found = shutil.which(name)
    if found and Path(found).absolute() == here:
        return name
    try:
        return str(here.relative_to(Path.cwd()))
    except ValueError:
        return str(here)


def next_steps(study_name: str, shown_url: str, *, storage_option: str | None = None) -> list[str]:
    """The summary's closing lines: commands that open the study, working as printed.

    Under ``make`` (``make run``) they are the Makefile's own targets; otherwise they call
    this environment's ``python`` and ``optuna`` the way the shell will find them, so they
    work whether or not the virtual environment is activated. Every word is quoted for the
    shell (:func:`shlex.join`): a study name pasted back is that name, never shell code.
    """
    if os.environ.get("MAKELEVEL") and not storage_option:
        study = "" if study_name == "default" else f" {shlex.quote(f'STUDY={study_name}')}"
        return [f"Report: make report{study}",
                f"Dashboard: make dashboard{study}   (installs optuna-dashboard on first use)"]
    lines = [f"Report: {report_command(study_name, storage_option=storage_option)}",
             "Best trial: " + shlex.join([_program("optuna"), "best-trial", "--study-name",
                                          study_name, "--storage", shown_url, "-f", "yaml"])]
    if shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)):
        lines.append("Dashboard: " + shlex.join([_program("optuna-dashboard"), shown_url]))
    return lines + password_hint(shown_url)


def report_command(study_name: str, *, storage_option: str | None = None) -> str:
    """The shell command that writes ``study_name``'s report, every word quoted; with
    ``storage_option`` (a URL as messages show it) it names the storage too."""
    option = ["--storage", storage_option] if storage_option else []
    return shlex.join([_program("python"), "-m", "analysis.report", "--study-name", study_name,
                       *option])


def password_hint(shown_url: str) -> list[str]:
    """Where the password goes, when :func:`display_url` masked it in the printed commands."""
    if ":***@" not in shown_url:
        return []
    return ["(The database password is shown as ***: put yours in its place.)"]

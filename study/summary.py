"""What ``python -m study.run`` prints: one line per finished trial and the end-of-run
summary, counted and ranked by ``analysis``' own rules (one counting rule everywhere)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import optuna

from analysis.load import load_trials
from analysis.tables import best_trials
from study.store import records

__all__ = ["summarize", "format_duration", "next_steps"]


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
    optuna_study = optuna.load_study(study_name=study_name, storage=storage)
    counts = {name: int((trials["outcome"] == name).sum()) for name in records.OUTCOMES}
    if not counts["waiting"]:
        del counts["waiting"]
    finished = counts["complete"] + counts["pruned"] + counts["diverged"]
    lines = [
        "",
        f"Study {study_name!r} ({shown_url}): {finished} finished of target {target}"
        + (" (parallel workers can overshoot by at most workers - 1)"
           if finished > target else ""),
        "  " + ", ".join(f"{k} {v}" for k, v in counts.items()),
    ]
    grid = (optuna_study.user_attrs.get("space_definition") or {}).get("grid")
    if grid:
        size = len(grid["optimizer"]) * len(grid["lr"])
        points = {records.grid_point(o, lr) for o in grid["optimizer"] for lr in grid["lr"]}
        done = trials[trials["outcome"].isin(["complete", "pruned", "diverged"])]
        visited = {records.grid_point(o, lr)
                   for o, lr in zip(done["optimizer"], done["lr"], strict=True)}
        lines.append(f"  {len(points - visited)} grid points left of {size}")
    epochs = optuna_study.user_attrs.get("epochs")
    pruned = trials[trials["outcome"] == "pruned"]
    if epochs and len(pruned):
        saved = int((epochs - pruned["epochs_run"]).sum())
        lines.append(f"  pruning saved {saved} of {epochs * finished} trial-epochs")
    if wall_seconds is not None:
        lines.append(f"  wall time this run: {format_duration(wall_seconds)}")
    best = best_trials(trials) if len(trials) else trials
    if len(best):
        top = best.iloc[0]
        eval_set = optuna_study.user_attrs.get(records.EVAL_SET, "test")
        lines.append(f"Best trial: #{top['number']} {top['optimizer']} accuracy "
                     f"{top['final_accuracy']:.4f} at lr {top['lr']:.3g} ({eval_set} set)")
        lines.append("Best trial per optimizer:")
        table = best.rename(columns={"number": "trial", "final_accuracy": "accuracy"})
        table = table.drop(columns=["test_accuracy"], errors="ignore")
        lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    else:
        lines.append("No complete trial yet.")
    lines += next_steps(study_name, shown_url, storage_option=storage_option)
    return "\n".join(lines)


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
    work whether or not the virtual environment is activated.
    """
    name = _quote(study_name)
    if os.environ.get("MAKELEVEL") and not storage_option:
        study = "" if study_name == "default" else f" STUDY={name}"
        return [f"Report: make report{study}",
                f"Dashboard: make dashboard{study}   (installs optuna-dashboard on first use)"]
    option = f" --storage {storage_option}" if storage_option else ""
    lines = [f"Report: {_program('python')} -m analysis.report --study-name {name}{option}",
             f"Trials: {_program('optuna')} trials --study-name {name} --storage {shown_url}"]
    if shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)):
        lines.append(f"Dashboard: {_program('optuna-dashboard')} {shown_url}")
    if ":***@" in shown_url:  # display_url hid the password: the commands need it back
        lines.append("(The database password is shown as ***: put yours in its place.)")
    return lines


def _quote(text: str) -> str:
    return f"'{text}'" if any(c in text for c in " \t'\"$&|;<>()*?") else text

"""``python -m analysis.report``: one HTML page of tables and plots for a study.

Writes ``DIR/index.html``, the plots as PNG files it references and every table as CSV, then
prints where. Reads only the study database, so it also works while the study runs.
"""

from __future__ import annotations

import argparse
import html
import logging
import math
import shlex
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import matplotlib
import matplotlib.pyplot as plt
import optuna
import pandas as pd

from analysis import plots
from analysis.budget import trials_to_reach, tunability, tuning_curve, tuning_curve_plot
from analysis.diagnostics import (
    range_warnings,
    time_to_target,
    time_to_target_plot,
    time_to_target_summary,
)
from analysis.findings import (
    OWN_BEST,
    Finding,
    accuracy_finding,
    findings,
    grouped_range_messages,
    sensitivity_finding,
)
from analysis.load import (
    StudyNotFoundError,
    list_study_names,
    load_curves,
    load_studies,
    load_trials,
    open_readonly,
)
from analysis.range_test import compare_with_study, load_lr_range, lr_range_plot
from analysis.tables import (
    MIN_IMPORTANCE_TRIALS,
    best_trials,
    ci_separation,
    confirmation,
    is_complete,
    lr_sensitivity,
    outcome_counts,
    param_importance,
    seed_noise_verdicts,
)
from study.store.records import CONFIRM_SUFFIX, LR_RANGE_STUDY, SETTINGS, SPACE_DEFINITION
from study.store.storage import (
    StorageError,
    check_output_folder,
    check_storage_url,
    checked_url,
    default_storage_url,
    display_url,
    file_name,
)

__all__ = ["main", "write_report", "ReportError", "ForeignStudyError"]

PROG = "python -m analysis.report"
#: The accuracy the time-to-target table and plot count epochs to.
TIME_TARGET = 0.97
#: The fixed accuracies the trials-to-reach table counts trials to (each optimizer's own
#: best less half a point is the other target).
BUDGET_TARGETS = (0.97, 0.975, 0.98)
logger = logging.getLogger(__name__)


class ReportError(Exception):
    """Nothing to report (empty study, no complete trial); the message says why."""


class ForeignStudyError(Exception):
    """A study this toolkit did not write (no optimizer or learning rate recorded); the
    message names it."""


def _range_test(storage: str, range_test: str | None) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The LR range tests to compare the study with (``python -m study.lr_range``): from
    ``range_test`` when given, else from :func:`_beside` the study; ``None`` when there are
    none."""
    for url in [range_test] if range_test else _beside(storage):
        try:
            if LR_RANGE_STUDY in list_study_names(url):
                return load_lr_range(url)
        except StorageError:
            if range_test:
                raise
    if range_test:
        raise StorageError(
            f"{display_url(range_test)} holds no study {LR_RANGE_STUDY!r}; run `python -m "
            f"study.lr_range --optimizer adam --storage {shlex.quote(display_url(range_test))}` "
            "first.")
    return None


def _beside(storage: str) -> list[str]:
    """Where range tests are looked for without ``--range-test``: the study's own storage,
    and for a SQLite file the ``lr-range.db`` in its folder where that file exists (where
    ``python -m study.lr_range`` writes by default beside ``studies/<study>.db``). Never
    the working folder's own ``studies/`` for a study stored elsewhere."""
    database = storage.removeprefix("sqlite:///").partition("?")[0]
    if database == storage or database in ("", ":memory:"):
        return [storage]
    beside = Path(database).parent / f"{LR_RANGE_STUDY}.db"
    if not beside.is_file() or beside == Path(database):
        return [storage]
    return [storage, default_storage_url(LR_RANGE_STUDY, directory=beside.parent)]


def _range_comparison(
    suggestions: pd.DataFrame, trials: pd.DataFrame, first: str
) -> pd.DataFrame:
    """The range test against the study ``first`` (:func:`compare_with_study`), with what it
    leaves out said in ``attrs["note"]`` (shown under the table) and logged."""
    table = compare_with_study(suggestions, trials[trials["study"] == first])
    notes = []
    if trials["study"].nunique() > 1:
        notes.append(f"Compared with the first study, {first!r}.")
    missing = [n for n in dict.fromkeys(suggestions["optimizer"])
               if n not in set(table["optimizer"])]
    if missing:
        notes.append(f"Range-tested but left out (no complete run in {first!r}, or no "
                     f"suggestion): {', '.join(missing)}.")
    table.attrs["note"] = " ".join(notes)
    if notes:
        logger.info("LR range test: %s", " ".join(notes))
    return table


def write_report(
    storage: str | Sequence[str], study_names: Sequence[str], out: Path, *,
    range_test: str | None = None,
) -> Path:
    """Write the report of ``study_names`` to ``out``; returns index.html.

    ``storage``: one database URL holding every study, or one URL per study (in the order
    of ``study_names``), so that studies from different files are compared in one report.
    ``range_test``: the storage of LR range tests to compare with (default: the first
    study's own storage, or ``lr-range.db`` beside its SQLite file, where either holds the
    study ``lr-range``); they are compared with the first study.

    Logs one line (INFO, logger ``analysis.report``) per table and plot written.

    Raises:
        ReportError: the studies have no trial, or no complete one.
        ForeignStudyError: a study was not written by ``python -m study.run``.
        analysis.load.StudyNotFoundError, study.store.storage.StorageError: as from loading,
            or two studies of the same name from different storages.
    """
    sources = _sources(storage, study_names)
    storage = sources[0][0]
    loaded = [(open_readonly(url), names) for url, names in sources]
    parts = [_load_ours(backend, names) for backend, names in loaded]
    studies = [s for part in parts for s in part[0]]
    trials = pd.concat([part[1] for part in parts], ignore_index=True)
    curves = pd.concat([load_curves(backend, names) for backend, names in loaded],
                       ignore_index=True)
    ranges = _range_test(storage, range_test)  # a --range-test without one: before writing
    out.mkdir(parents=True, exist_ok=True)
    tables = _sensitivity_tables(trials)
    tables.update(_confirmation_tables(loaded))
    tables["importance"] = pd.concat(
        [param_importance(s).assign(study=s.study_name) for s in studies], ignore_index=True)
    tables["outcomes"] = outcome_counts(trials)
    tables.update(_budget_tables(trials, tables["lr_sensitivity"]))
    if ranges is not None:
        tables["lr_range"] = _range_comparison(ranges[1], trials, study_names[0])
    tables.update(_diagnostic_tables(studies, trials, curves))
    tables["trials"] = trials
    tables["curves"] = curves
    for name, frame in tables.items():
        frame.to_csv(out / f"{name}.csv", index=False)
        logger.info("table %s.csv (%d rows)", name, len(frame))
    images = _draw(_figures(trials, curves, tables, ranges), out)
    found = _findings(trials, tables)
    (out / "findings.txt").write_text("".join(f"- {f.text}\n" for f in found), encoding="utf-8")
    index = out / "index.html"
    shown = ", ".join(dict.fromkeys(display_url(url) for url, _ in sources))
    index.write_text(_html(shown, study_names, trials, tables, images, found),
                     encoding="utf-8")
    return index


def _load_ours(
    backend: optuna.storages.BaseStorage, study_names: Sequence[str]
) -> tuple[list[optuna.Study], pd.DataFrame]:
    """The studies and their trials, once it is sure there is something to report.

    Raises:
        ReportError: no trial, or no complete one.
        ForeignStudyError: a study was not written by ``python -m study.run``.
    """
    studies = load_studies(backend, study_names)
    trials = load_trials(backend, study_names)
    label = ", ".join(repr(n) for n in study_names)
    if trials.empty:
        raise ReportError(f"study {label} has no trials yet; run `python -m study.run` first.")
    for optuna_study in studies:
        _check_ours(optuna_study, trials[trials["study"] == optuna_study.study_name])
    if not is_complete(trials).any():
        counts = trials["outcome"].value_counts().to_dict()
        raise ReportError(
            f"study {label} has no complete, non-diverged trial yet ({counts}); nothing to "
            "compare. Let the study run longer."
        )
    return studies, trials


def _sensitivity_tables(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Learning-rate sensitivity, the best trials, and which intervals are apart."""
    sensitivity = lr_sensitivity(trials)
    return {
        "lr_sensitivity": sensitivity,
        "best_per_optimizer": best_trials(trials),
        "best_per_optimizer_schedule": best_trials(trials, by=("optimizer", "schedule")),
        "ci_separation": ci_separation(sensitivity),
        "sensitivity_separation": ci_separation(sensitivity, "good_lr_width"),
    }


def _sources(storage: str | Sequence[str], study_names: Sequence[str],
             ) -> list[tuple[str, list[str]]]:
    """``(url, names)`` per storage, in the order of the studies: one storage for all, or
    one per study.

    Raises:
        StorageError: the counts do not match, or one name comes from two storages.
    """
    urls = [storage] * len(study_names) if isinstance(storage, str) else list(storage)
    if len(urls) != len(study_names):
        raise StorageError(f"{len(urls)} storages for {len(study_names)} studies: give one "
                           "--storage for all of them, or one per --study-name.")
    if len(set(study_names)) < len(study_names):
        twice = sorted({n for n in study_names if study_names.count(n) > 1})
        raise StorageError(f"study {twice[0]!r} is named twice; a report tells studies apart "
                           "by name, so give it a copy with another name "
                           "(optuna.copy_study) to compare them.")
    grouped: dict[str, list[str]] = {}
    for url, name in zip(urls, study_names, strict=True):
        grouped.setdefault(url, []).append(name)
    return list(grouped.items())


def _confirmation_tables(
    loaded: Sequence[tuple[optuna.storages.BaseStorage, Sequence[str]]],
) -> dict[str, pd.DataFrame]:
    """The confirmation studies' tables (``python -m study.confirm``), where there are any:
    ``S.confirm`` read from the storage of ``S``."""
    frames = []
    for backend, names in loaded:
        available = list_study_names(backend)
        confirms = [n + CONFIRM_SUFFIX for n in names if n + CONFIRM_SUFFIX in available]
        if confirms:
            frames.append(load_trials(backend, confirms))
    if not frames:
        return {}
    confirm_trials = pd.concat(frames, ignore_index=True)
    tables = {"confirmation": [], "seed_noise": []}
    for name, runs in confirm_trials.groupby("study", sort=False):
        study = name.removesuffix(CONFIRM_SUFFIX)  # the study it confirms
        tables["confirmation"].append(confirmation(runs).assign(study=study))
        tables["seed_noise"].append(seed_noise_verdicts(runs).assign(study=study))
    return {key: _study_first(pd.concat(parts, ignore_index=True))
            for key, parts in tables.items()}


def _study_first(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its ``study`` column first."""
    return frame[["study", *frame.columns.drop("study")]]


def _budget_tables(trials: pd.DataFrame, sensitivity: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Tuning curves, tunability (uniform and early weights) and the trials needed to reach
    the fixed :data:`BUDGET_TARGETS` and each optimizer's own best less half a point. The
    curves say where the trials were not independent draws."""
    curve = tuning_curve(trials)
    uniform = tunability(curve)
    keys = [c for c in ("study", "optimizer") if c in uniform.columns]
    early = tunability(curve, weights="early")[[*keys, "tunability"]]
    best = sensitivity[[*keys, "best_accuracy"]].rename(columns={"best_accuracy": "best"})
    own = [trials_to_reach(_rows_of(trials, row, keys), round(row["best"] - 0.005, 4))
           .assign(**{k: row[k] for k in keys}) for row in best.to_dict("records")]
    reach = pd.concat([trials_to_reach(trials, BUDGET_TARGETS).assign(target_kind="fixed"),
                       *(r.assign(target_kind=OWN_BEST) for r in own)], ignore_index=True)
    return {
        "tuning_curve": curve,
        "tunability": uniform.merge(early, on=keys, suffixes=("", "_early")),
        "trials_to_reach": reach.merge(best, on=keys, how="left"),
    }


def _rows_of(trials: pd.DataFrame, row: dict, keys: list[str]) -> pd.DataFrame:
    """The trials of one group (``keys`` valued as in ``row``)."""
    mask = pd.Series(True, index=trials.index)
    for key in keys:
        mask &= trials[key] == row[key]
    return trials[mask]


def _diagnostic_tables(
    studies: Sequence[optuna.Study], trials: pd.DataFrame, curves: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Time to :data:`TIME_TARGET`, per trial and per optimizer, and the search-range
    warnings of the studies that stored their ranges."""
    per_trial = time_to_target(curves, trials, target=TIME_TARGET)
    tables = {"time_to_target_trials": per_trial,
              "time_to_target": time_to_target_summary(per_trial)}
    if any(s.user_attrs.get(SPACE_DEFINITION) for s in studies):
        tables["range_warnings"] = pd.concat(
            [range_warnings(s, trials[trials["study"] == s.study_name]) for s in studies],
            ignore_index=True)
    return tables


def _figures(
    trials: pd.DataFrame,
    curves: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    ranges: tuple[pd.DataFrame, pd.DataFrame] | None,
) -> list[tuple[str, str, Callable[[], object]]]:
    """(file name, title, draw) of each plot the report shows, in page order; a plot whose
    data would say nothing (one seed per trial, one study, a parameter never varied, no
    range test) is left out."""
    complete = trials[is_complete(trials)]
    return [
        ("lr_sensitivity", "Final error against learning rate (log scales)",
         lambda: _axes(lambda ax: plots.lr_sensitivity_plot(trials, ax=ax), (8, 5))),
        *([("lr_seeds", "Error against learning rate, with the band over seeds",
            lambda: _axes(lambda ax: plots.lr_seed_plot(trials, ax=ax), (8, 5)))]
          if (trials["n_seeds"] > 1).any() else []),
        ("lr_sensitivity_by_schedule", "The same, one panel per schedule",
         lambda: plots.lr_sensitivity_grid(trials)),
        *([("lr_sensitivity_by_study", "The same, one panel per study",
            lambda: plots.lr_sensitivity_grid(trials, col="study"))]
          if trials["study"].nunique() > 1 else []),
        ("learning_curves", "Accuracy per epoch (pruned trials dashed and faded)",
         lambda: plots.learning_curves(curves,
                                       ylabel=f"{plots.eval_set_name(trials)} accuracy")),
        ("lr_schedules", "Learning rate in effect, best trial of each schedule",
         lambda: _axes(lambda ax: plots.lr_schedule_plot(curves, trials, ax=ax))),
        *([("lr_weight_decay", "Learning rate x weight decay",
            lambda: _axes(lambda ax: plots.hparam_scatter(trials, y="weight_decay", ax=ax)))]
          if _varies(complete, "weight_decay") else []),
        *([("lr_momentum", "Learning rate x momentum (SGD)",
            lambda: _axes(lambda ax: plots.hparam_scatter(trials, y="momentum", ax=ax)))]
          if _varies(complete, "momentum") else []),
        *([("importance", "Hyperparameter importance (PED-ANOVA)",
            lambda: _axes(lambda ax: plots.importance_plot(
                tables["importance"].groupby("param", as_index=False)["importance"].mean()
                .sort_values("importance", ascending=False), ax=ax), (6, 5)))]
          if len(tables["importance"]) else []),
        ("best_so_far", "Best accuracy so far against trial number",
         lambda: _axes(lambda ax: plots.best_so_far_plot(trials, ax=ax))),
        ("time_to_target", f"Time to {TIME_TARGET:.2f} accuracy: share of trials that got "
         "there by each epoch",
         lambda: _axes(lambda ax: time_to_target_plot(tables["time_to_target_trials"], ax=ax))),
        *([("lr_range", "LR range test: smoothed loss against learning rate",
            lambda: _axes(lambda ax: lr_range_plot(*ranges, ax=ax), (8, 5)))]
          if ranges is not None else []),
        ("tuning_curves", "Tuning-budget curves: expected best after n trials",
         lambda: _axes(lambda ax: tuning_curve_plot(tables["tuning_curve"], ax=ax), (8, 5))),
    ]


def _draw(figures: list[tuple[str, str, Callable[[], object]]], out: Path,
          ) -> list[tuple[str, str]]:
    """Draw each figure to ``out/<name>.png``, logging one line per plot; returns
    (name, title) of each."""
    images = []
    for i, (name, title, draw) in enumerate(figures, start=1):
        logger.info("plot %d/%d: %s.png", i, len(figures), name)
        figure = draw()
        figure.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
        plt.close(figure.figure if hasattr(figure, "figure") else figure)
        images.append((name, title))
    return images


def _findings(trials: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> list[Finding]:
    """The findings the report's tables support."""
    return findings(
        trials=trials,
        best=tables["best_per_optimizer"],
        sensitivity=tables["lr_sensitivity"],
        accuracy_separation=tables["ci_separation"],
        sensitivity_separation=tables["sensitivity_separation"],
        confirmation=tables.get("confirmation"),
        seed_noise=tables.get("seed_noise"),
        reach=tables["trials_to_reach"],
        range_warnings=tables.get("range_warnings"),
        range_test=tables.get("lr_range"),
    )


def _check_ours(optuna_study: optuna.Study, trials: pd.DataFrame) -> None:
    """Raise ForeignStudyError unless ``python -m study.run`` wrote the study: it stores its
    settings with the study and each trial's optimizer and learning rate; either is enough
    (a study may lack the stored settings)."""
    settings = set(optuna_study.user_attrs) & set(SETTINGS)
    ours = trials["optimizer"].ne("") & trials["lr"].notna()
    if settings or ours.any() or trials.empty:
        return
    params = sorted({p for t in optuna_study.get_trials(deepcopy=False) for p in t.params})
    raise ForeignStudyError(
        f"study {optuna_study.study_name!r} was not made by `python -m study.run`: none of "
        f"its {len(trials)} trials records an optimizer and a learning rate (its parameters: "
        f"{', '.join(params) or 'none'}), so there is nothing this report can show; use "
        "Optuna's own tools (`optuna trials`, optuna.visualization) for it."
    )


def _varies(trials: pd.DataFrame, column: str) -> bool:
    """Whether the study searched ``column`` (a plot against it would say something)."""
    return trials[column].dropna().nunique() > 1


def _axes(draw: Callable[[plt.Axes], object], size: tuple[float, float] = (7, 4.5)):
    figure, ax = plt.subplots(figsize=size)
    draw(ax)
    figure.tight_layout()
    return figure


def _with_interval(value: float, lo: float, hi: float, digits: int, prefix: str = "") -> str:
    if pd.isna(value):
        return ""
    text = f"{prefix}{value:.{digits}f}"
    return text if pd.isna(lo) else f"{text} ({lo:.{digits}f} to {hi:.{digits}f})"


def _sensitivity_view(table: pd.DataFrame) -> pd.DataFrame:
    """The sensitivity table as the page shows it: each metric with its interval and n, the
    range-averaged score with the range it averages over; lr_sensitivity.csv has every
    column."""
    rows = []
    for r in table.to_dict("records"):
        rows.append({
            **({"study": r["study"]} if "study" in r else {}),
            "optimizer": r["optimizer"],
            "runs": r["n"],
            "seeds per lr": r["n_seeds"],
            "best lr": f"{r['best_lr']:.3g}",
            "best accuracy": _with_interval(r["best_accuracy"], r["best_accuracy_lo"],
                                            r["best_accuracy_hi"], 4),
            "good lr band": "" if pd.isna(r["good_lr_width"]) else (
                f"{r['good_lr_low']:.2g} to {r['good_lr_high']:.2g}"),
            "good lr width (decades)": _with_interval(
                r["good_lr_width"], r["good_lr_width_lo"], r["good_lr_width_hi"], 2,
                ">= " if r["good_lr_width_at_edge"] else ""),
            "within 0.5 point": _with_interval(r["good_lr_width_strict"], math.nan, math.nan,
                                               2, ">= " if r["good_lr_width_strict_at_edge"]
                                               else ""),
            "sensitivity (range-averaged)": f"{r['sensitivity']:.3f} over "
            f"{r['range_low']:.2g} to {r['range_high']:.2g}",
            "smallest diverged lr": "" if pd.isna(r["min_diverged_lr"]) else (
                f"{r['min_diverged_lr']:.3g}"),
            "intervals": f"accuracy: {r['best_accuracy_method']}, width: "
            f"{r['interval_method']}" + (f" ({r['note']})" if r["note"] else ""),
        })
    return pd.DataFrame(rows)


def _separation_view(separation: pd.DataFrame) -> pd.DataFrame:
    """``separated`` in words: yes, no, or why it cannot be told (never a blank cell)."""
    said = [
        (note if pd.isna(apart) else "yes" if apart else "no: within seed noise")
        for apart, note in zip(separation["separated"], separation["note"], strict=True)
    ]
    return separation.drop(columns=["note", "pairs_tested"]).assign(separated=said)


def _table(frame: pd.DataFrame, classes: str = "t") -> str:
    """``frame`` as an HTML table in a box that scrolls sideways when it is wider than the
    page."""
    return '<div class="scroll">' + frame.to_html(
        index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0, classes=classes
    ) + "</div>"


def _html(
    storage: str,
    study_names: Sequence[str],
    trials: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    images: list[tuple[str, str]],
    found: list[Finding],
) -> str:
    """The report page: the study and its findings, the tables, then each plot with the
    tables that go with it, and the search-range warnings."""
    body = [*_head(storage, study_names, trials, found), _table(tables["outcomes"]),
            *_sensitivity_section(trials, tables)]
    if "confirmation" in tables:
        body += [
            "<h2>Confirmation over fresh seeds</h2>",
            "<p>Each optimizer's best configurations re-run with new seeds, to the last epoch "
            "(python -m study.confirm). mean_lo / mean_hi: 95 % Student t interval of the "
            "mean over the n seeds (none below 3 seeds). Pairs: Welch's t-test, "
            "Holm-adjusted over the pairs tested.</p>",
            _table(tables["confirmation"]),
            *[f"<p><b>{html.escape(v)}</b></p>" for v in tables["seed_noise"]["verdict"]],
        ]
    for name, title in images:
        body.append(f'<h2>{html.escape(title)}</h2><img src="{name}.png" '
                    f'alt="{html.escape(title)}">')
        body += _beside_plot(name, tables)
    if tables["importance"].empty:
        body.append("<h2>Hyperparameter importance</h2><p>Not computed: too few complete "
                    f"trials (PED-ANOVA needs {MIN_IMPORTANCE_TRIALS} or more in a study).</p>")
    if "range_warnings" in tables:
        warned = tables["range_warnings"]
        body.append("<h2>Search-range warnings</h2>")
        body.append("<ul>" + "".join(f"<li>{html.escape(m)}</li>"
                                     for m in grouped_range_messages(warned))
                    + "</ul>" if len(warned) else
                    "<p>No best trial sits at an edge of a searched range that could "
                    "sensibly be widened.</p>")
    body.append("<p>All tables are also in this folder as CSV (trials.csv, curves.csv, "
                "lr_sensitivity.csv, ...).</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Study report</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")


_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
          "div.scroll{max-width:100%;overflow-x:auto}"
          "table.t{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
          "table.t td,table.t th{padding:2px 8px;border-bottom:1px solid #ddd;"
          "text-align:right;vertical-align:top}"
          "table.t th{white-space:normal}"
          "table.notes td:last-child{text-align:left;min-width:12em}"
          "img{max-width:100%}")


def _head(storage: str, study_names: Sequence[str], trials: pd.DataFrame,
          found: list[Finding]) -> list[str]:
    """The title, where the accuracies come from, the findings and the trials per outcome."""
    esc = html.escape
    eval_sets = ", ".join(sorted(trials["eval_set"].dropna().unique()))
    return [
        f"<h1>Study {esc(', '.join(study_names))}</h1>",
        f"<p>Storage <code>{esc(storage)}</code>. {len(trials)} trials. "
        f"Accuracies are measured on the <b>{esc(eval_sets)}</b> set"
        + (" (held out of the training set; the test set is measured once per trial, column "
           "test_accuracy)" if "validation" in eval_sets else "") + ".</p>",
        "<h2>Findings</h2>",
        "<ul>" + "".join(f"<li>{esc(f.text)} <i>(see: {esc(f.backed_by)})</i></li>"
                         for f in found) + "</ul>",
        "<h2>Trials per optimizer</h2>",
        "<p>By outcome, counted as the command-line summary counts them: a trial that "
        "diverged is <i>diverged</i>, not <i>complete</i>; complete, pruned and diverged "
        "trials are finished.</p>",
    ]


def _sensitivity_section(trials: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> list[str]:
    """Learning-rate sensitivity: its two findings, what the columns mean, the table, and
    which optimizers' intervals are apart."""
    esc = html.escape
    accuracy = accuracy_finding(tables["lr_sensitivity"], tables["ci_separation"])
    sensitivity = sensitivity_finding(tables["lr_sensitivity"],
                                      tables["sensitivity_separation"])
    pruned = int((trials["outcome"] == "pruned").sum())
    counted = tables["lr_sensitivity"].attrs.get("pruned", "")
    tolerance = f"{tables['lr_sensitivity'].attrs.get('tolerance', 0.01) * 100:g} point"
    return [
        "<h2>Learning-rate sensitivity</h2>",
        f"<p><b>{esc(accuracy.text)}</b></p>" if accuracy else "",
        f"<p><b>{esc(sensitivity.text)}</b></p>" if sensitivity else "",
        "<p>runs: complete, pruned and diverged trials, each seed of a trial counted at "
        "its learning rate. best lr / best accuracy: the best point of the seeds' mean "
        "curve, in brackets its 95 % Student t interval over the seeds at that learning "
        "rate (from 3 seeds). good lr width: decades of the band of neighbouring learning "
        f"rates whose mean accuracy stays within {tolerance} of the best (and within 0.5 "
        "point), in brackets its 95 % BCa bootstrap interval over each learning rate's seeds "
        "(from 5 seeds); '>=' where the band reaches the first or last learning rate tried, "
        "so it may be wider. It does not depend on how far the searched range reaches "
        "beyond the band. sensitivity: best accuracy minus the mean over half-decade log-LR "
        "bins, after Wortsman et al. 2023 (0 means insensitive); it averages over the range "
        "beside it and changes with it. With one seed per learning rate there are no "
        "intervals: the figures describe those runs. "
        f"{pruned} pruned run{'' if pruned == 1 else 's'}: {esc(counted)}. Every column, "
        "with the counts per outcome, is in lr_sensitivity.csv.</p>",
        _table(_sensitivity_view(tables["lr_sensitivity"]), "t notes"),
        "<h3>Do the differences exceed seed noise?</h3>",
        "<p>Best accuracy (higher first): Welch's t-test on the seeds at each optimizer's "
        "best learning rate, p Holm-adjusted over the pairs tested; separated where the "
        "adjusted p is below 0.05.</p>",
        _table(_separation_view(tables["ci_separation"]), "t notes"),
        "<p>Good lr width (wider first): separated where the two 95 % BCa intervals do not "
        "overlap.</p>",
        _table(_separation_view(tables["sensitivity_separation"]), "t notes"),
    ]


def _beside_plot(name: str, tables: dict[str, pd.DataFrame]) -> list[str]:
    """What the page shows under the plot ``name``: the tables that go with it."""
    if name == "lr_sensitivity":
        return ["<h2>Best trial per optimizer</h2>", _table(tables["best_per_optimizer"]),
                "<h2>Best trial per optimizer and schedule</h2>",
                _table(tables["best_per_optimizer_schedule"])]
    if name == "importance":
        return [_table(tables["importance"])]
    if name == "lr_range":
        return [
            "<p>Each optimizer's range-test suggestions (python -m study.lr_range) beside "
            "this study's best learning rate and its good-LR band (runs within 1 "
            "percentage point of the best): inside the band or not, and by how many "
            "decades a suggestion misses it (negative: below).</p>",
            _table(tables["lr_range"]),
            *([f"<p>{html.escape(tables['lr_range'].attrs['note'])}</p>"]
              if tables["lr_range"].attrs.get("note") else []),
        ]
    if name == "time_to_target":
        return [
            "<p>Per optimizer: finished trials (n), how many reached the target, the "
            "median epoch and seconds of those that did. Pruned trials count with the "
            "epochs they ran, so the share is a lower bound; diverged ones never reach "
            "it.</p>",
            _table(tables["time_to_target"]),
        ]
    if name == "tuning_curves":
        return _budget_section(tables)
    return []


def _budget_section(tables: dict[str, pd.DataFrame]) -> list[str]:
    """Under the tuning curves: whether they are valid, what they are, tunability and the
    trials needed to reach a target; the note once, and no tables where no optimizer's trials
    were independent draws (the CSV files still hold them)."""
    curve = tables["tuning_curve"]
    body = []
    if not curve["valid"].all():
        body.append(f"<p><b>Not independent draws:</b> "
                    f"{html.escape(str(curve.loc[~curve['valid'], 'note'].iloc[0]))}</p>")
    if not curve["valid"].any():
        return body + ["<p>The tunability and trials-to-target tables are left out: they "
                       "assume independent draws (tunability.csv and trials_to_reach.csv hold "
                       "them).</p>"]
    return body + [
        "<p>Expected best accuracy after n trials of each optimizer (Dodge et al. "
        "2019), from its trials by the with-replacement estimator; band: "
        f"{html.escape(str(curve['interval'].iloc[0]))}. Tunability: the mean of the curve "
        "over n = 1 .. N (Sivaprasad et al. 2020), uniform weights, and weights 1/n "
        "(early) favouring small budgets.</p>",
        _table(tables["tunability"].drop(columns=["note"])),
        "<p>Trials needed to reach a target accuracy with probability 90 %, if trials are "
        "drawn at random from the ones the study ran: fixed targets, and each optimizer's "
        "own best less half a point:</p>",
        _table(tables["trials_to_reach"].drop(columns=["note"])),
    ]


class _Parser(argparse.ArgumentParser):
    """study.cli's one-line usage error, which this command cannot import: the analysis
    reads a study without loading torch."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Write an HTML report (tables, plots, CSV) of one or more studies.",
    )
    parser.add_argument("--study-name", action="append", required=True, dest="study_names",
                        help="study to report; repeat to compare several in one report")
    parser.add_argument("--storage", action="append", default=None, metavar="URL",
                        help="database URL of the studies; repeat it, one per --study-name in "
                        "the same order, to compare studies from different files (default: "
                        "sqlite:///studies/<study-name>.db of each study)")
    parser.add_argument("--range-test", default=None, metavar="URL",
                        help="storage of LR range tests (python -m study.lr_range) to compare "
                        "with (default: the study's storage, or lr-range.db in the folder of "
                        "a SQLite study file, where either holds the study 'lr-range')")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output folder (default: reports/<study-name>)")
    return parser


def _checked_storages(args: argparse.Namespace) -> list[str]:
    """Each study's storage URL, once every study name and URL given passes the checks of
    ``study.store.storage`` (before anything is read): the one --storage for all, one per
    --study-name, or each study's default file."""
    names, given = args.study_names, args.storage or []
    if args.range_test is not None:
        check_storage_url(args.range_test, option="--range-test")
    if len(given) not in (0, 1, len(names)):
        raise StorageError(f"{len(given)} --storage options for {len(names)} studies: give "
                           "one for all of them, or one per --study-name, in the same order.")
    if len(given) == 1:
        given = given * len(names)
    return [checked_url(name, given[i] if given else None) for i, name in enumerate(names)]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv``; 0 on success, 1 when there is nothing to report, 2 for
    a usage error, an unknown study or one this toolkit did not write."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    matplotlib.use("Agg")  # files only, no window
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    names = args.study_names
    handler = logging.StreamHandler(sys.stderr)  # progress lines, for this command only
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        storage = _checked_storages(args)
        out = args.out or Path("reports") / "-".join(file_name(name) for name in names)
        check_output_folder(out, option="--out")
        index = write_report(storage, names, out, range_test=args.range_test)
    except ReportError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except (StudyNotFoundError, StorageError, ForeignStudyError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    print(f"wrote {index} (open it in a browser; plots and CSV tables beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

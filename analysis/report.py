"""``python -m analysis.report``: one HTML page of tables and plots for a study.

Writes ``DIR/index.html``, the plots as PNG files it references and every table as CSV, then
prints where. Reads only the study database, so it also works while the study runs.
"""

from __future__ import annotations

import argparse
import html
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

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
from analysis.findings import Finding, accuracy_finding, findings, sensitivity_finding
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
from study.store.storage import StorageError, default_storage_url, display_url

__all__ = ["main", "write_report", "ReportError", "ForeignStudyError"]

PROG = "python -m analysis.report"
#: The accuracy the time-to-target table and plot count epochs to.
TIME_TARGET = 0.97
logger = logging.getLogger(__name__)


class ReportError(Exception):
    """Nothing to report (empty study, no complete trial); the message says why."""


class ForeignStudyError(Exception):
    """A study this toolkit did not write (no optimizer or learning rate recorded); the
    message names it."""


def _range_test(storage: str, range_test: str | None) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The LR range tests to compare the study with (``python -m study.lr_range``): from
    ``range_test`` when given, else from the study's storage or ``studies/lr-range.db``
    where either holds them; ``None`` when there are none."""
    candidates = [range_test] if range_test else [storage, default_storage_url(LR_RANGE_STUDY)]
    for url in candidates:
        if not range_test and url.startswith("sqlite:///") and not Path(
                url.removeprefix("sqlite:///")).exists():
            continue
        try:
            if LR_RANGE_STUDY in list_study_names(url):
                return load_lr_range(url)
        except StorageError:
            if range_test:
                raise
    if range_test:
        raise StorageError(
            f"{display_url(range_test)} holds no study {LR_RANGE_STUDY!r}; run `python -m "
            f"study.lr_range --optimizer adam --storage {display_url(range_test)}` first.")
    return None


def write_report(
    storage: str, study_names: Sequence[str], out: Path, *, range_test: str | None = None
) -> Path:
    """Write the report of ``study_names`` in ``storage`` to ``out``; returns index.html.

    ``range_test``: the storage of LR range tests to compare with (default: the study's own
    storage or ``studies/lr-range.db``, where either holds the study ``lr-range``).

    Logs one line (INFO, logger ``analysis.report``) per table and plot written.

    Raises:
        ReportError: the studies have no trial, or no complete one.
        ForeignStudyError: a study was not written by ``python -m study.run``.
        analysis.load.StudyNotFoundError, study.store.storage.StorageError: as from loading.
    """
    backend = open_readonly(storage)  # one storage for every read below
    studies, trials = _load_ours(backend, study_names)
    curves = load_curves(backend, study_names)
    out.mkdir(parents=True, exist_ok=True)
    tables = _sensitivity_tables(trials)
    tables.update(_confirmation_tables(backend, study_names))
    tables["importance"] = pd.concat(
        [param_importance(s).assign(study=s.study_name) for s in studies], ignore_index=True)
    tables["outcomes"] = outcome_counts(trials)
    tables.update(_budget_tables(trials, tables["lr_sensitivity"]))
    ranges = _range_test(storage, range_test)
    if ranges is not None:
        tables["lr_range"] = compare_with_study(ranges[1], trials)
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
    index.write_text(_html(storage, study_names, trials, tables, images, found),
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
        "sensitivity_separation": ci_separation(sensitivity, "sensitivity",
                                                higher_is_better=False),
    }


def _confirmation_tables(
    backend: optuna.storages.BaseStorage, study_names: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """The confirmation studies' tables (``python -m study.confirm``), where there are any."""
    available = list_study_names(backend)
    confirms = [n + CONFIRM_SUFFIX for n in study_names if n + CONFIRM_SUFFIX in available]
    if not confirms:
        return {}
    confirm_trials = load_trials(backend, confirms)
    return {"confirmation": confirmation(confirm_trials),
            "seed_noise": seed_noise_verdicts(confirm_trials)}


def _budget_tables(trials: pd.DataFrame, sensitivity: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Tuning curves, tunability (uniform and early weights) and the trials needed to reach
    the best accuracy less a point and the optimizers' median best. The curves say where
    the trials were not independent draws."""
    curve = tuning_curve(trials)
    uniform = tunability(curve)
    keys = [c for c in ("study", "optimizer") if c in uniform.columns]
    early = tunability(curve, weights="early")[[*keys, "tunability"]]
    best = sensitivity["best_accuracy"]
    targets = sorted({round(float(best.max()) - 0.01, 4), round(float(best.median()), 4)})
    return {
        "tuning_curve": curve,
        "tunability": uniform.merge(early, on=keys, suffixes=("", "_early")),
        "trials_to_reach": trials_to_reach(trials, targets),
    }


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
        ("importance", "Hyperparameter importance (PED-ANOVA)",
         lambda: _axes(lambda ax: plots.importance_plot(
             tables["importance"].groupby("param", as_index=False)["importance"].mean()
             .sort_values("importance", ascending=False), ax=ax), (6, 5))),
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
    """The findings the report's tables support (the trials to reach the higher target)."""
    reach = tables["trials_to_reach"]
    return findings(
        trials=trials,
        best=tables["best_per_optimizer"],
        sensitivity=tables["lr_sensitivity"],
        accuracy_separation=tables["ci_separation"],
        sensitivity_separation=tables["sensitivity_separation"],
        seed_noise=list(tables["seed_noise"]["verdict"]) if "seed_noise" in tables else None,
        reach=reach[reach["target"] == reach["target"].max()],
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


def _with_interval(value: float, lo: float, hi: float, digits: int) -> str:
    if pd.isna(value):
        return ""
    text = f"{value:.{digits}f}"
    return text if pd.isna(lo) else f"{text} ({lo:.{digits}f} to {hi:.{digits}f})"


def _sensitivity_view(table: pd.DataFrame) -> pd.DataFrame:
    """The sensitivity table as the page shows it: each metric with its interval in one
    column, the outcome counts left to the trials table (lr_sensitivity.csv has them all)."""
    rows = []
    for r in table.to_dict("records"):
        rows.append({
            **({"study": r["study"]} if "study" in r else {}),
            "optimizer": r["optimizer"],
            "trials used": r["n"],
            "best lr": f"{r['best_lr']:.3g}",
            "best accuracy": _with_interval(r["best_accuracy"], r["best_accuracy_lo"],
                                            r["best_accuracy_hi"], 4),
            "good lr width (decades)": _with_interval(r["good_lr_width"], r["good_lr_width_lo"],
                                                      r["good_lr_width_hi"], 2),
            "sensitivity": _with_interval(r["sensitivity"], r["sensitivity_lo"],
                                          r["sensitivity_hi"], 3),
            "smallest diverged lr": "" if pd.isna(r["min_diverged_lr"]) else (
                f"{r['min_diverged_lr']:.3g}"),
            "interval": r["interval"] or f"none: {r['note']}",
        })
    return pd.DataFrame(rows)


def _separation_view(separation: pd.DataFrame) -> pd.DataFrame:
    """``separated`` in words: yes, no, or why it cannot be told (never a blank cell)."""
    said = [
        (f"cannot tell: {note}" if pd.isna(apart) else
         "yes: the intervals do not overlap" if apart else "no: the intervals overlap")
        for apart, note in zip(separation["separated"], separation["note"], strict=True)
    ]
    return separation.drop(columns=["note"]).assign(separated=said)


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
            "(python -m study.confirm). mean_lo / mean_hi: 95 % bootstrap interval of the "
            "mean over seeds.</p>",
            _table(tables["confirmation"]),
            *[f"<p><b>{html.escape(v)}</b></p>" for v in tables["seed_noise"]["verdict"]],
        ]
    for name, title in images:
        body.append(f'<h2>{html.escape(title)}</h2><img src="{name}.png" '
                    f'alt="{html.escape(title)}">')
        body += _beside_plot(name, tables)
    if "range_warnings" in tables:
        warned = tables["range_warnings"]
        body.append("<h2>Search-range warnings</h2>")
        body.append("<ul>" + "".join(f"<li>{html.escape(m)}</li>" for m in warned["message"])
                    + "</ul>" if len(warned) else
                    "<p>No best trial sits at the edge of a searched range.</p>")
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
        f"<p>Storage <code>{esc(display_url(storage))}</code>. {len(trials)} trials. "
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
    return [
        "<h2>Learning-rate sensitivity</h2>",
        f"<p><b>{esc(accuracy.text)}</b></p>" if accuracy else "",
        f"<p><b>{esc(sensitivity.text)}</b></p>" if sensitivity else "",
        "<p>trials used: complete, pruned and diverged trials. best lr / best accuracy: the "
        "best run. good lr width: decades of learning rate whose runs reach within 1 "
        "percentage point of the best. sensitivity: best accuracy minus the mean accuracy "
        "over log-LR bins (half a decade), diverged runs counted at chance (10 %), after "
        "Wortsman et al. 2023: 0 means insensitive. In brackets: 95 % bootstrap intervals; "
        "the interval column says what was resampled (the seeds of each run, or the sampled "
        "runs, from 5 runs on) or why there is none. "
        f"{pruned} pruned run{'' if pruned == 1 else 's'}: {esc(counted)}. Every column, "
        "with the counts per outcome, is in lr_sensitivity.csv.</p>",
        _table(_sensitivity_view(tables["lr_sensitivity"]), "t notes"),
        "<h3>Do the differences exceed the intervals?</h3>",
        "<p>Separated: whether the two optimizers' 95 % intervals above do not overlap.</p>",
        "<p>Best accuracy (higher first):</p>",
        _table(_separation_view(tables["ci_separation"]), "t notes"),
        "<p>Sensitivity (lower first):</p>",
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
    trials needed to reach a target."""
    curve = tables["tuning_curve"]
    body = []
    if not curve["valid"].all():
        body.append(f"<p><b>Not independent draws:</b> "
                    f"{html.escape(str(curve.loc[~curve['valid'], 'note'].iloc[0]))}</p>")
    return body + [
        "<p>Expected best accuracy after n trials of each optimizer (Dodge et al. "
        "2019), from its trials by the with-replacement estimator; band: "
        f"{html.escape(str(curve['interval'].iloc[0]))}. Tunability: the mean of the curve "
        "over n = 1 .. N (Sivaprasad et al. 2020), uniform weights, and weights 1/n "
        "(early) favouring small budgets.</p>",
        _table(tables["tunability"]),
        "<p>Trials needed to reach a target accuracy with probability 90 %:</p>",
        _table(tables["trials_to_reach"]),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write an HTML report (tables, plots, CSV) of one or more studies.",
    )
    parser.add_argument("--study-name", action="append", required=True, dest="study_names",
                        help="study to report; repeat to compare several in one report")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="database URL (default: sqlite:///studies/<study-name>.db of the "
                        "first study)")
    parser.add_argument("--range-test", default=None, metavar="URL",
                        help="storage of LR range tests (python -m study.lr_range) to compare "
                        "with (default: the study's storage or sqlite:///studies/lr-range.db, "
                        "where either holds the study 'lr-range')")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output folder (default: reports/<study-name>)")
    return parser


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
        storage = args.storage or default_storage_url(names[0])
        out = args.out or Path("reports") / "-".join(names)
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

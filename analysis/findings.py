"""The report's "Findings": plain sentences computed from the tables, never hand-written.

Each :class:`Finding` is one sentence with its interval or its sample size, and names the
table or plot below it in the report that backs it (``backed_by``). :func:`findings` builds
them from what the report has already computed; a part whose table is missing (no
confirmation study, no range test) is left out, and what the data cannot say is said.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

__all__ = [
    "Finding",
    "findings",
    "best_finding",
    "accuracy_finding",
    "sensitivity_finding",
    "budget_finding",
    "range_test_finding",
    "range_warning_findings",
    "limits_findings",
]

#: Fewer runs than this per optimizer and its figures get no interval (as in the tables).
MIN_RUNS = 5


@dataclass(frozen=True)
class Finding:
    """One sentence of the findings and the table or plot of the report that backs it."""

    text: str
    backed_by: str


def _split(pairs: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The optimizers ``b`` whose interval is apart from ``a``'s, and those it overlaps
    (``separated`` is True, False, or NaN where it cannot be told)."""
    apart = pairs.loc[pairs["separated"].eq(True), "b"].tolist()
    close = pairs.loc[pairs["separated"].eq(False), "b"].tolist()
    return apart, close


def _interval(row: pd.Series, metric: str, digits: int) -> str:
    """The end of a finding's first sentence: ``row``'s interval of ``metric`` and what was
    resampled for it."""
    return (f", 95 % interval {row[f'{metric}_lo']:.{digits}f} to "
            f"{row[f'{metric}_hi']:.{digits}f}, {row['interval']}).")


def _compared(head: str, pairs: pd.DataFrame, *, apart: str, close: str) -> str:
    """``head``, then ``apart`` naming the optimizers whose intervals are apart from the
    leader's and ``close`` naming those that overlap it (each left out where it names none;
    ``{names}`` marks where the names go)."""
    apart_names, close_names = _split(pairs)
    parts = [head]
    if apart_names:
        parts.append(apart.format(names=", ".join(apart_names)))
    if close_names:
        parts.append(close.format(names=", ".join(close_names)))
    return " ".join(parts)


def best_finding(best: pd.DataFrame, trials: pd.DataFrame) -> Finding | None:
    """The best configuration of each optimizer, with how many trials it was chosen from."""
    if best.empty:
        return None
    counted = trials[trials["outcome"].isin(["complete", "pruned", "diverged"])]
    n = counted.groupby("optimizer").size()
    parts = [f"{r['optimizer']} {r['final_accuracy']:.4f} at lr {r['lr']:.3g} (trial "
             f"{int(r['number'])}, best of {int(n.get(r['optimizer'], 0))})"
             for r in best.to_dict("records")]
    return Finding("Best configuration per optimizer: " + "; ".join(parts) + ".",
                   "Best trial per optimizer")


def accuracy_finding(sensitivity: pd.DataFrame, separation: pd.DataFrame) -> Finding | None:
    """Which optimizer reached the best accuracy, and whether that exceeds the intervals."""
    if len(sensitivity) < 2:
        return Finding("Only one optimizer has results: nothing to compare yet.",
                       "Learning-rate sensitivity")
    top = sensitivity.iloc[0]
    pairs = separation[separation["a"] == top["optimizer"]]
    head = f"{top['optimizer']} has the best accuracy ({top['best_accuracy']:.4f}"
    if pairs["separated"].isna().all():
        return Finding(head + "), but the study has too few runs per optimizer for "
                       "confidence intervals; whether the differences are real cannot be "
                       "told yet.", "Learning-rate sensitivity")
    text = _compared(
        head + _interval(top, "best_accuracy", 4), pairs,
        apart="Its interval lies above those of {names}: that difference is real at this "
        "sample size.",
        close="It overlaps those of {names}: those differences are within the noise.")
    return Finding(text, "Do the differences exceed the intervals?")


def sensitivity_finding(sensitivity: pd.DataFrame, separation: pd.DataFrame) -> Finding | None:
    """Which optimizer is least sensitive to its learning rate, and whether that exceeds
    the noise (of the seeds where the trials trained several, else of the sampled runs)."""
    if len(sensitivity) < 2:
        return None
    least = sensitivity.sort_values("sensitivity").iloc[0]
    name, value = least["optimizer"], least["sensitivity"]
    head = f"{name} is the least sensitive to its learning rate (sensitivity {value:.3f}"
    pairs = separation[separation["a"] == name]
    if pairs["separated"].isna().all():
        return Finding(head + "), but without intervals for every optimizer it cannot be told "
                       "whether that exceeds the noise.", "Learning-rate sensitivity")
    noise = "seed noise" if str(least["interval"]).startswith("over seeds") else (
        "the noise of the sampled runs")
    text = _compared(
        head + _interval(least, "sensitivity", 3), pairs,
        apart=f"Against {{names}} the difference exceeds {noise}: the intervals do not overlap.",
        close="Against {names} it does not: the intervals overlap.")
    return Finding(text, "Learning-rate sensitivity")


def budget_finding(reach: pd.DataFrame) -> Finding | None:
    """How many independently sampled trials each optimizer needs to reach the target.

    ``reach`` is :func:`analysis.budget.trials_to_reach`'s frame (``optimizer``, ``target``,
    ``p``, ``n_trials_needed``, ``share_reaching``, ``valid``)."""
    if reach is None or reach.empty:
        return None
    target, p = float(reach["target"].iloc[0]), float(reach["p"].iloc[0])
    if not reach["valid"].all():
        notes = reach.loc[~reach["valid"].astype(bool), "note"] if "note" in reach else []
        why = str(notes.iloc[0]).rstrip(".") if len(notes) else (
            "its trials are not independent draws")
        return Finding(
            f"How many trials each optimizer needs to reach {target:.4g} cannot be said from "
            f"this study: {why}. Run a random or QMC study, or the LR grid, for that.",
            "Tuning-budget curves")
    parts = []
    for r in reach.sort_values("n_trials_needed").to_dict("records"):
        needed = r["n_trials_needed"]
        parts.append(f"{r['optimizer']} never did" if math.isinf(needed) else
                     f"{r['optimizer']} {int(needed)} (share of its trials reaching it "
                     f"{r['share_reaching']:.0%})")
    return Finding(f"Trials needed to reach {target:.4g} with probability {p:.0%}: "
                   + "; ".join(parts) + ".", "Tuning-budget curves")


def range_test_finding(comparison: pd.DataFrame) -> Finding | None:
    """Whether the LR range test's suggestions fall inside the study's good-LR band.

    ``comparison`` is :func:`analysis.range_test.compare_with_study`'s frame (``optimizer``,
    ``rule``, ``lr``, ``inside``, ``decades_off``)."""
    if comparison is None or comparison.empty:
        return None
    parts = []
    for rule, group in comparison.groupby("rule", sort=False):
        inside = int(group["inside"].sum())
        misses = group[~group["inside"].astype(bool)]
        worst = ""
        if len(misses):
            far = misses.loc[misses["decades_off"].abs().idxmax()]
            worst = (f"; it misses most for {far['optimizer']} "
                     f"({abs(far['decades_off']):.1f} decades)")
        parts.append(f"'{rule}' falls inside the good-LR band for {inside} of {len(group)} "
                     f"optimizers{worst}")
    return Finding("The LR range test against this study: " + "; ".join(parts) + ".",
                   "LR range test")


def range_warning_findings(warnings: pd.DataFrame) -> list[Finding]:
    """One sentence per best trial at the edge of its searched range, or that none is."""
    if warnings is None:
        return []
    if warnings.empty:
        return [Finding("No optimizer's best trial sits at the edge of a searched range.",
                        "Search-range warnings")]
    return [Finding(str(m), "Search-range warnings") for m in warnings["message"]]


def limits_findings(trials: pd.DataFrame, sensitivity: pd.DataFrame) -> list[Finding]:
    """What the data cannot say: optimizers with too few runs for an interval."""
    out = []
    short = sensitivity[sensitivity["n"] < MIN_RUNS]
    if len(short):
        names = ", ".join(f"{r['optimizer']} ({int(r['n'])})" for r in short.to_dict("records"))
        out.append(Finding(f"Too few runs for an interval (fewer than {MIN_RUNS}): {names}; "
                           "their figures are single observations.",
                           "Learning-rate sensitivity"))
    return out


def findings(
    *,
    trials: pd.DataFrame,
    best: pd.DataFrame,
    sensitivity: pd.DataFrame,
    accuracy_separation: pd.DataFrame,
    sensitivity_separation: pd.DataFrame,
    seed_noise: list[str] | None = None,
    reach: pd.DataFrame | None = None,
    range_test: pd.DataFrame | None = None,
    range_warnings: pd.DataFrame | None = None,
) -> list[Finding]:
    """Every finding the tables support, most important first."""
    out = [
        best_finding(best, trials),
        accuracy_finding(sensitivity, accuracy_separation),
        sensitivity_finding(sensitivity, sensitivity_separation),
        *[Finding(v, "Confirmation over fresh seeds") for v in seed_noise or []],
        budget_finding(reach),
        range_test_finding(range_test),
        *range_warning_findings(range_warnings),
        *limits_findings(trials, sensitivity),
    ]
    return [f for f in out if f is not None]

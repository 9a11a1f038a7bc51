"""The report's "Findings": plain sentences computed from the tables, never hand-written.

Each :class:`Finding` is one sentence with its interval or its sample size, and names the
table or plot below it in the report that backs it (``backed_by``). :func:`findings` builds
them from what the report has already computed; a part whose table is missing (no
confirmation study, no range test) is left out, and what the data cannot say is said.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.statistics import MIN_SEEDS

__all__ = [
    "Finding",
    "findings",
    "best_finding",
    "accuracy_finding",
    "sensitivity_finding",
    "confirmation_findings",
    "budget_finding",
    "range_test_finding",
    "range_warning_findings",
    "grouped_range_messages",
    "limits_findings",
]

#: How far each optimizer's best moved between repeated runs of the default study (50
#: TPE-chosen single-seed trials, two workers) on one 2-core machine: the largest minus the
#: smallest of its best accuracy over :data:`REPEAT_RUNS` runs, measured with
#: ``python -m bench.repeat_default --runs 5`` (docs/statistics.md). A TPE study's
#: differences smaller than this are not evidence.
REPEAT_SPREAD: dict[str, float] = {"adam": 0.0019, "adamw": 0.0031, "rmsprop": 0.0078,
                                   "sgd": 0.0040}
REPEAT_RUNS = 5


@dataclass(frozen=True)
class Finding:
    """One sentence of the findings and the table or plot of the report that backs it."""

    text: str
    backed_by: str


def _names(values: list[str]) -> str:
    return ", ".join(values)


def _ci(lo: float, hi: float, digits: int, method: str, n: int, confidence: str = "95 %",
        ) -> str:
    """``95 % t-interval 0.97 to 0.98, n=5``."""
    return f"{confidence} {method}-interval {lo:.{digits}f} to {hi:.{digits}f}, n={n}"


def _seeds(n: int) -> str:
    return f"{n} seed{'' if n == 1 else 's'}"


def best_finding(best: pd.DataFrame, trials: pd.DataFrame) -> Finding | None:
    """The best configuration of each optimizer, with how many trials it was chosen from."""
    if best.empty:
        return None
    counted = trials[trials["outcome"].isin(["complete", "pruned", "diverged"])]
    n = counted.groupby("optimizer").size()
    parts = [f"{r['optimizer']} {r['final_accuracy']:.4f} at lr {r['lr']:.3g} (trial "
             f"{int(r['number'])}, best of {int(n.get(r['optimizer'], 0))})"
             for r in best.to_dict("records")]
    seeds = int(counted["n_seeds"].max()) if "n_seeds" in counted and len(counted) else 1
    what = (f"each the mean of its trial's {seeds} seeds" if seeds > 1 else
            "each a single run, no interval")
    return Finding(f"Best configuration per optimizer ({what}): " + "; ".join(parts) + ".",
                   "Best trial per optimizer")


#: The ``target_kind`` of a target that is an optimizer's own best accuracy less half a
#: point (every optimizer reaches its own: how many trials it takes is the question).
OWN_BEST = "own best - 0.005"

#: What answers the question where the search's runs cannot.
_WHAT_ANSWERS = ("re-run the best configurations over seeds (`python -m study.confirm`) or "
                 "run the LR grid with seeds (`--space lr-grid --repeats 5`)")


def accuracy_finding(sensitivity: pd.DataFrame, separation: pd.DataFrame) -> Finding | None:
    """Which optimizer reached the best accuracy, with its n and interval, and against which
    others the difference exceeds seed noise (Welch, Holm-adjusted)."""
    if sensitivity.empty:
        return None
    top = sensitivity.iloc[0]
    seeds = len(top["best_seed_accuracies"])
    head = (f"{top['optimizer']} has the best accuracy: {top['best_accuracy']:.4f} at lr "
            f"{top['best_lr']:.3g}")
    if len(sensitivity) < 2:
        return Finding(head + "; only one optimizer has results, nothing to compare yet.",
                       "Learning-rate sensitivity")
    if top["best_accuracy_method"] != "t":
        what = "one run" if seeds == 1 else f"mean of {_seeds(seeds)}, no interval"
        return Finding(
            f"{head} ({what}). With fewer than {MIN_SEEDS} seeds per run there is no "
            "interval, and whether the optimizers differ beyond seed noise cannot be told: "
            f"{_WHAT_ANSWERS}.", "Learning-rate sensitivity")
    head += (f" (mean of {_seeds(seeds)}; "
             f"{_ci(top['best_accuracy_lo'], top['best_accuracy_hi'], 4, 't', seeds)}; the "
             "same seeds chose this learning rate, so it leans high: python -m study.confirm "
             "measures the best configurations on fresh seeds)")
    pairs = separation[separation["a"] == top["optimizer"]]
    tested = int(separation["pairs_tested"].max()) if len(separation) else 0
    apart = pairs.loc[pairs["separated"].eq(True), "b"].tolist()
    close = pairs.loc[pairs["separated"].eq(False), "b"].tolist()
    parts = [head + "."]
    if apart:
        parts.append(f"Against {_names(apart)} the difference exceeds seed noise.")
    if close:
        parts.append(f"Against {_names(close)} the difference is within seed noise.")
    parts.append(f"(Welch t-test on the seeds at each best learning rate, Holm-adjusted over "
                 f"{tested} pair{'' if tested == 1 else 's'} tested, 5 % level.)")
    return Finding(" ".join(parts), "Do the differences exceed seed noise?")


def _width_text(row: pd.Series) -> str:
    """``sgd 2.00 decades (1e-3 to 1e-1; ...)``: one optimizer's good-band width, marked as a
    lower bound at the range's edge, with its interval or n."""
    width = row["good_lr_width"]
    bound = "at least " if row["good_lr_width_at_edge"] else ""
    low, high = row["good_lr_low"], row["good_lr_high"]
    where = f"{low:.2g} only" if low == high else f"{low:.2g} to {high:.2g}"
    text = f"{row['optimizer']} {bound}{width:.2f} decades ({where}"
    if row["interval_method"] == "bca":
        text += "; " + _ci(row["good_lr_width_lo"], row["good_lr_width_hi"], 2, "BCa",
                           int(row["n_seeds"])) + " seeds"
    else:
        text += f"; {_seeds(int(row['n_seeds']))} per lr, no interval"
    return text + ")"


def sensitivity_finding(sensitivity: pd.DataFrame, separation: pd.DataFrame) -> Finding | None:
    """Which optimizer is least sensitive to its learning rate: the widest good-LR band
    (range-free), each width with its interval or n, the edge flag, and which pairs' intervals
    are apart."""
    known = sensitivity[sensitivity["good_lr_width"].notna()]
    if len(known) < 2:
        return None
    ranked = known.sort_values("good_lr_width", ascending=False)
    tolerance = sensitivity.attrs.get("tolerance", 0.01)
    top = ranked.iloc[0]
    widths = "; ".join(_width_text(r) for _, r in ranked.iterrows())
    single = bool((ranked["n_seeds"] < MIN_SEEDS).all())
    leaders = ranked.loc[np.isclose(ranked["good_lr_width"], top["good_lr_width"]), "optimizer"]
    names = " and ".join(leaders)
    if len(leaders) == len(ranked):
        head = "No optimizer's good learning-rate band is wider than another's"
    elif single:
        head = f"Among these runs, the widest good learning-rate band is {names}'s"
    else:
        head = (f"{names} is the least sensitive to its learning rate" if len(leaders) == 1
                else f"{names} are the least sensitive to their learning rates")
    text = (f"{head}: widths of the band of neighbouring learning rates whose mean "
            f"accuracy stays within {tolerance * 100:g} point{'' if tolerance == 0.01 else 's'}"
            f" of the optimizer's best: {widths}{_step(ranked)}.")
    if ranked["good_lr_width_at_edge"].any():
        text += (" 'At least': the band reaches the edge of the learning rates tried, so it "
                 "may go on beyond them.")
    if separation["separated"].notna().any():
        apart = separation[separation["separated"].eq(True)]
        tested = int(separation["pairs_tested"].max())
        said = _names([f"{r.a} over {r.b}" for r in apart.itertuples()]) or "none"
        text += (f" Of {tested} pairs tested, the widths' intervals are apart for: {said}; "
                 "the others are within seed noise.")
    elif single:
        text += f" These are single runs, a description only: {_WHAT_ANSWERS}."
    else:
        text += " Whether the widths differ beyond seed noise needs intervals (5 seeds)."
    return Finding(text, "Learning-rate sensitivity")


def _step(ranked: pd.DataFrame) -> str:
    """`` (in steps of the grid, 0.33 decade)`` where every optimizer ran one grid."""
    steps = ranked["lr_step"].dropna() if "lr_step" in ranked else pd.Series(dtype=float)
    if steps.empty or not np.allclose(steps, steps.iloc[0], rtol=1e-3):
        return ""
    return f" (measured in steps of the grid, {steps.iloc[0]:.2g} decade)"


def confirmation_findings(confirmation: pd.DataFrame | None,
                          verdicts: pd.DataFrame | None) -> list[Finding]:
    """The confirmation study's answer (``python -m study.confirm``), which leads the findings
    where it exists: each optimizer's best configuration over fresh seeds, then whether the
    leader's margins exceed seed noise."""
    if confirmation is None or confirmation.empty:
        return []
    best = confirmation.drop_duplicates("optimizer")
    parts = []
    for r in best.to_dict("records"):
        text = f"{r['optimizer']} {r['mean']:.4f} at lr {r['lr']:.3g}"
        text += (f" ({_ci(r['mean_lo'], r['mean_hi'], 4, 't', int(r['n']))})"
                 if r["interval_method"] == "t" else f" ({_seeds(int(r['n']))}, no interval)")
        parts.append(text)
    out = [Finding("Over fresh seeds (python -m study.confirm), test accuracy of each "
                   "optimizer's best configuration: " + "; ".join(parts) + ".",
                   "Confirmation over fresh seeds")]
    if verdicts is not None:
        leader = best["optimizer"].iloc[0]
        out += [Finding(v, "Confirmation over fresh seeds")
                for v in verdicts.loc[verdicts["a"] == leader, "verdict"]]
    return out


def budget_finding(reach: pd.DataFrame) -> Finding | None:
    """How many independently drawn trials each optimizer needs to reach fixed targets and
    its own best less half a point.

    ``reach`` is :func:`analysis.budget.trials_to_reach`'s frame; ``target_kind``
    (``fixed`` or :data:`OWN_BEST`) and ``best`` (the optimizer's best accuracy) where
    :mod:`analysis.report` adds them."""
    if reach is None or reach.empty:
        return None
    if not reach["valid"].all():
        notes = reach.loc[~reach["valid"].astype(bool), "note"] if "note" in reach else []
        why = str(notes.iloc[0]).rstrip(".") if len(notes) else (
            "its trials are not independent draws")
        return Finding(
            f"How many trials each optimizer needs to reach a target accuracy cannot be said "
            f"from this study: {why}. Run a random or QMC study, or the LR grid, for that.",
            "Tuning-budget curves")
    p = float(reach["p"].iloc[0])
    kinds = reach["target_kind"] if "target_kind" in reach else pd.Series("fixed", reach.index)
    parts = []
    for target, rows in reach[kinds == "fixed"].groupby("target", sort=True):
        said = [_reached(r) for r in rows.sort_values("n_trials_needed").to_dict("records")]
        parts.append(f"{target:.4g}: " + ", ".join(said))
    own = reach[kinds == OWN_BEST].sort_values("n_trials_needed")
    if len(own):
        parts.append("its own best less 0.5 point: " + ", ".join(
            f"{_reached(r)} (target {r['target']:.4f})" for r in own.to_dict("records")))
    return Finding(
        f"Trials needed to reach a target with probability {p:.0%}, if trials are drawn at "
        "random from the ones this study ran (its sampler drew them independently): "
        + "; ".join(parts) + ".", "Tuning-budget curves")


def _reached(row: dict) -> str:
    """One optimizer's part of :func:`budget_finding`."""
    needed = row["n_trials_needed"]
    if not math.isinf(needed):
        return f"{row['optimizer']} {int(needed)}"
    best = row.get("best", math.nan)
    return (f"{row['optimizer']} none of its trials (best {best:.4f})" if not pd.isna(best)
            else f"{row['optimizer']} none of its trials")


def range_test_finding(comparison: pd.DataFrame) -> Finding | None:
    """Whether the LR range test's suggestions fall inside the study's good-LR band.

    ``comparison`` is :func:`analysis.range_test.compare_with_study`'s frame (``optimizer``,
    ``rule``, ``lr``, ``inside``, ``decades_off``); rows without a verdict (an optimizer the
    study lacks) are left out."""
    if comparison is None or comparison.empty:
        return None
    comparison = comparison[comparison["inside"].notna()]
    parts = []
    for rule, group in comparison.groupby("rule", sort=False):
        inside = group["inside"].astype(bool)
        misses = group[~inside]
        worst = ""
        if len(misses):
            far = misses.loc[misses["decades_off"].abs().idxmax()]
            worst = (f"; it misses most for {far['optimizer']} "
                     f"({abs(far['decades_off']):.1f} decades)")
        parts.append(f"'{rule}' falls inside the good-LR band for {int(inside.sum())} of "
                     f"{len(group)} optimizers{worst}")
    if not parts:
        return None
    return Finding("The LR range test against this study: " + "; ".join(parts) + ".",
                   "LR range test")


def range_warning_findings(warnings: pd.DataFrame) -> list[Finding]:
    """One sentence per parameter whose best values sit at an edge that could be widened, or
    that none does."""
    if warnings is None:
        return []
    if warnings.empty:
        return [Finding("No optimizer's best trial sits at an edge of a searched range that "
                        "could sensibly be widened.", "Search-range warnings")]
    return [Finding(m, "Search-range warnings") for m in grouped_range_messages(warnings)]


def grouped_range_messages(warnings: pd.DataFrame) -> list[str]:
    """The rows of :func:`analysis.diagnostics.range_warnings`, one line per parameter and
    direction, naming every optimizer whose best sits there."""
    lines = []
    for (shown, edge), rows in warnings.groupby(["shown", "edge"], sort=False):
        which = "top" if edge == "high" else "bottom"
        way = "up to" if edge == "high" else "down to"
        bests = [f"{r['optimizer']}'s ({r['value_text']} in {r['range_text']}, try {way} "
                 f"{r['suggested_text']})" for r in rows.to_dict("records")]
        lines.append(f"The best {shown} sits at the {which} of its range for "
                     f"{len(bests)} optimizer{'' if len(bests) == 1 else 's'}: "
                     + "; ".join(bests) + ". Widening the range that way may find better.")
    return lines


def limits_findings(trials: pd.DataFrame, sensitivity: pd.DataFrame) -> list[Finding]:
    """What the data cannot say: optimizers run at one learning rate, and how much a study
    of single runs chosen by TPE changes when it is run again."""
    out = []
    single = sensitivity[sensitivity["n_lrs"] == 1]
    if len(single):
        out.append(Finding(f"Run at one learning rate only: {_names(list(single['optimizer']))}"
                           "; no band width or sensitivity ranking for them.",
                           "Learning-rate sensitivity"))
    tpe = "sampler" in trials and trials["sampler"].eq("tpe").any()
    if tpe and (sensitivity["n_seeds"] < MIN_SEEDS).all() and REPEAT_SPREAD:
        spread = ", ".join(f"{k} {v * 100:.1f}" for k, v in REPEAT_SPREAD.items())
        out.append(Finding(
            f"Expect differences between runs: over {REPEAT_RUNS} runs of the default study "
            f"on one machine, each optimizer's best accuracy moved by up to {spread} points; "
            "differences between optimizers smaller than that are not evidence.",
            "Learning-rate sensitivity"))
    return out


def findings(
    *,
    trials: pd.DataFrame,
    best: pd.DataFrame,
    sensitivity: pd.DataFrame,
    accuracy_separation: pd.DataFrame,
    sensitivity_separation: pd.DataFrame,
    confirmation: pd.DataFrame | None = None,
    seed_noise: pd.DataFrame | None = None,
    reach: pd.DataFrame | None = None,
    range_test: pd.DataFrame | None = None,
    range_warnings: pd.DataFrame | None = None,
) -> list[Finding]:
    """Every finding the tables support, most important first: the confirmation over fresh
    seeds leads where it exists.

    With several studies (a ``study`` column of more than one value in ``sensitivity``),
    each study's findings in turn, each sentence opening with its study's name: optimizers
    are ranked and compared within a study, never across. ``confirmation`` and
    ``seed_noise`` then carry the ``study`` they confirm; the range test goes with the first.
    """
    if "study" in sensitivity and sensitivity["study"].nunique() > 1:
        tables = {"trials": trials, "best": best, "sensitivity": sensitivity,
                  "accuracy_separation": accuracy_separation,
                  "sensitivity_separation": sensitivity_separation,
                  "confirmation": confirmation, "seed_noise": seed_noise, "reach": reach,
                  "range_warnings": range_warnings}
        out = []
        for k, name in enumerate(dict.fromkeys(sensitivity["study"])):
            mine = {key: _of_study(frame, name) for key, frame in tables.items()}
            found = findings(**mine, range_test=range_test if k == 0 else None)
            out += [Finding(f"{name}: {f.text}", f.backed_by) for f in found]
        return out
    out = [
        *confirmation_findings(confirmation, seed_noise),
        best_finding(best, trials),
        accuracy_finding(sensitivity, accuracy_separation),
        sensitivity_finding(sensitivity, sensitivity_separation),
        *limits_findings(trials, sensitivity),
        budget_finding(reach),
        range_test_finding(range_test),
        *range_warning_findings(range_warnings),
    ]
    return [f for f in out if f is not None]


def _of_study(frame: pd.DataFrame | None, name: str) -> pd.DataFrame | None:
    """The rows of ``frame`` for study ``name``; the frame as it is when it has no ``study``
    column."""
    if frame is None or "study" not in frame:
        return frame
    return frame[frame["study"] == name].reset_index(drop=True)

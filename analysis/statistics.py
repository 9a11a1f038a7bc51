"""Intervals and tests that hold at the few seeds a study affords.

Every interval the report gives comes from here, with its method and its n:

- :func:`t_interval`: Student's t on the mean of n seeds (n >= :data:`MIN_SEEDS`). Its
  coverage is exact for normal seed noise at any n, and close to nominal for the mild,
  bounded noise of final accuracies; a percentile bootstrap of the same mean under-covers
  badly below ten seeds.
- :func:`bca_interval`: a bias-corrected and accelerated bootstrap (Efron 1987) for a
  statistic that is not a mean (the width of the good learning-rate band), over each
  learning rate's seeds, from :data:`MIN_BOOTSTRAP_SEEDS` seeds on.
- :func:`welch_p` and :func:`holm`: whether two optimizers differ by more than seed noise,
  with the family of pairs corrected for multiplicity (Holm 1979).

Fewer seeds give no interval: two values have one degree of freedom, and an interval from
them is either the two values (far too narrow) or more than ten standard errors wide.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

from study.store.records import MIN_BOOTSTRAP_SEEDS, MIN_SEEDS

__all__ = [
    "MIN_SEEDS",
    "MIN_BOOTSTRAP_SEEDS",
    "INTERVAL_METHODS",
    "level",
    "t_interval",
    "bca_interval",
    "welch_p",
    "holm",
]

#: The values of the tables' ``interval_method`` column.
INTERVAL_METHODS = ("t", "bca", "none")


def level(confidence: float) -> str:
    """``0.95`` as ``"95 %"``."""
    return f"{confidence:.0%}".replace("%", " %")


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95,
               ) -> tuple[float, float]:
    """Student's t interval of the mean of ``values``: mean +- t(n-1) * sd / sqrt(n).

    ``(nan, nan)`` below :data:`MIN_SEEDS` values. A zero spread gives a zero-width
    interval (every seed agreed).
    """
    x = np.asarray(values, dtype=float)
    if x.size < MIN_SEEDS:
        return math.nan, math.nan
    half = stats.t.ppf((1 + confidence) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def bca_interval(
    statistic: Callable[[list[np.ndarray]], float],
    samples: Sequence[np.ndarray],
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    rng: np.random.Generator | None = None,
) -> tuple[float, float]:
    """BCa bootstrap interval of ``statistic(samples)``, resampling each sample's values.

    ``samples`` are independent groups (the seeds at each learning rate); each bootstrap
    draw resamples every group with replacement and recomputes the statistic. The bias
    correction counts ties with the estimate half below (a width on a grid ties often);
    the acceleration comes from the jackknife that leaves out one value of one group at a
    time. ``(nan, nan)`` when a group has fewer than :data:`MIN_BOOTSTRAP_SEEDS` values.
    """
    groups = [np.asarray(s, dtype=float) for s in samples]
    if not groups or min(g.size for g in groups) < MIN_BOOTSTRAP_SEEDS:
        return math.nan, math.nan
    rng = rng if rng is not None else np.random.default_rng(0)
    estimate = statistic(groups)
    draws = np.array([statistic([g[rng.integers(0, g.size, g.size)] for g in groups])
                      for _ in range(n_boot)])
    below = (np.sum(draws < estimate) + 0.5 * np.sum(draws == estimate)) / n_boot
    z0 = stats.norm.ppf(np.clip(below, 1 / n_boot, 1 - 1 / n_boot))
    jack = np.array([statistic([np.delete(g, j) if k == i else g for k, g in enumerate(groups)])
                     for i, group in enumerate(groups) for j in range(group.size)])
    spread = jack.mean() - jack
    denominator = 6 * np.sum(spread**2) ** 1.5
    accel = float(np.sum(spread**3) / denominator) if denominator > 0 else 0.0
    ends = []
    for z in stats.norm.ppf([(1 - confidence) / 2, (1 + confidence) / 2]):
        adjusted = stats.norm.cdf(z0 + (z0 + z) / (1 - accel * (z0 + z)))
        ends.append(float(np.quantile(draws, adjusted)))
    return ends[0], ends[1]


def welch_p(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test that ``a`` and ``b`` have the same mean.

    NaN when either has fewer than :data:`MIN_SEEDS` values; 1 when neither varies and the
    means agree, 0 when neither varies and they differ.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(a.size, b.size) < MIN_SEEDS:
        return math.nan
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted in the family).

    Rejecting where the adjusted p is below alpha keeps the chance of any false rejection
    among the family at alpha or less.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    known = np.flatnonzero(~np.isnan(p))
    order = known[np.argsort(p[known], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted

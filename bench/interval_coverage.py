"""Coverage of the report's 95 % intervals, by simulation (no training).

``python -m bench.interval_coverage`` draws seed sets from known distributions many times
and counts how often each interval covers the true value:

- the Student t interval of a mean (best accuracy, confirmation runs) at n = 3, 5, 10 seeds,
  normal noise;
- the BCa interval of the good learning-rate band's width over a grid of 4 points per decade
  (1e-4 to 1), for curves of known shape (a parabola in log-LR, peak 0.98) with normal seed
  noise, at n = 5 and 10 seeds per point. The true width is the width of the noise-free
  curve's band.

It prints one line per case: the method, n, the case and the share covered with its
binomial standard error. docs/statistics.md gives the figures of one run.
"""

from __future__ import annotations

import argparse

import numpy as np

from analysis.statistics import bca_interval, t_interval
from analysis.tables import good_lr_band

GRID = 10 ** np.arange(-4, 0.01, 0.25)
#: (peak log10 lr, curvature per decade squared, seed noise sd): bands of 1 to 2.5 decades.
CURVES = ((-2.0, 0.02, 0.003), (-2.1, 0.02, 0.003), (-2.0, 0.005, 0.003), (-2.3, 0.01, 0.004))


def t_coverage(n: int, reps: int, rng: np.random.Generator) -> float:
    true_mean, sd = 0.975, 0.004
    hits = 0
    for _ in range(reps):
        lo, hi = t_interval(true_mean + sd * rng.standard_normal(n))
        hits += lo <= true_mean <= hi
    return hits / reps


def width_coverage(curve: tuple[float, float, float], n: int, reps: int, n_boot: int,
                   rng: np.random.Generator) -> float:
    peak, curvature, sd = curve
    truth = 0.98 - curvature * (np.log10(GRID) - peak) ** 2
    true_width = good_lr_band(GRID, truth)[2]
    hits = 0
    for _ in range(reps):
        pools = [m + sd * rng.standard_normal(n) for m in truth]
        lo, hi = bca_interval(
            lambda groups: good_lr_band(GRID, np.array([g.mean() for g in groups]))[2],
            pools, n_boot=n_boot, rng=rng)
        hits += lo - 1e-9 <= true_width <= hi + 1e-9
    return hits / reps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.interval_coverage",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000, help="repetitions for the t interval")
    parser.add_argument("--width-reps", type=int, default=300,
                        help="repetitions for the width's BCa interval")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap draws per interval")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    for n in (3, 5, 10):
        share = t_coverage(n, args.reps, rng)
        print(f"t    n={n:<3} mean of normal seeds          covered {share:.3f} "
              f"(+- {(share * (1 - share) / args.reps) ** 0.5:.3f})", flush=True)
    for curve in CURVES:
        for n in (5, 10):
            share = width_coverage(curve, n, args.width_reps, args.boot, rng)
            print(f"bca  n={n:<3} width, peak 1e{curve[0]:+.1f}, curvature {curve[1]}, "
                  f"sd {curve[2]}: covered {share:.3f} "
                  f"(+- {(share * (1 - share) / args.width_reps) ** 0.5:.3f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

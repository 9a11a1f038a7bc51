"""Where a cohort's update goes: one epoch of :func:`~study.train.cohort.train_cohort`, timed
part by part.

``python -m bench.cohort_parts`` (from the repository root) trains, for each optimizer of
``--optimizers``, ``--members`` networks as one stack (the first half at the optimizer's
default learning rate, the rest at a third of it, as a grid's cohort of two trials holds
them; seeds 0, 1, ...) for one epoch of ``--train-size`` images at ``--threads`` threads,
after one epoch of warm-up. Wrappers around the trainer's functions add up their time, and
it prints each part in milliseconds per update: the forward and backward (the batched
products, the dropout masks, and the casts of the weights and their gradients: the step
less what it calls, so also the batch's cast and, after members leave, the buffers made
anew), the optimizer's update, and the evaluation after the epoch spread over its updates.
The wrappers cost a few microseconds per call; the parts are for comparing, not for the
epoch's wall time (``bench.cohort_speed``).
"""

from __future__ import annotations

import argparse
import collections
import functools
import math
import sys
import time

import torch

import study.train.cohort as cohort_module
import study.train.cohort_optim as optim_module
import study.train.model as model_module
import study.train.stacked as stacked_module
from study.train.config import TrialConfig
from study.train.data import load_mnist
from study.train.loop import fast_bf16_available
from study.train.optim import get_optimizer_info

#: (module or class, function name, the part it is counted in)
_TIMED = [
    (model_module, "linear_forward", "products"),
    (model_module, "linear_backward", "products"),
    (model_module, "random_bits", "dropout masks"),
    (model_module, "mask_from_bits", "dropout masks"),
    (stacked_module.StackedMLP, "train_step", "step"),
    (optim_module.StackedOptimizer, "step", "optimizer update"),
    (cohort_module._Cohort, "step", "whole update"),
    (cohort_module, "stacked_evaluate", "evaluation"),
]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", default="adam,rmsprop,sgd")
    parser.add_argument("--members", type=int, default=6)
    parser.add_argument("--train-size", type=int, default=12_800)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    for name in ("members", "train_size", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, but got "
                         f"{getattr(args, name)}")
    return args


def _wrap(totals: collections.Counter, part: str, function):
    @functools.wraps(function)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[part] += time.perf_counter() - start
    return timed


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    totals: collections.Counter = collections.Counter()
    for owner, name, part in _TIMED:
        setattr(owner, name, _wrap(totals, part, getattr(owner, name)))
    stacked_module.mlp_gradients = _wrap(totals, "forward and backward",
                                         stacked_module.mlp_gradients)
    data = load_mnist(device="cpu", train_size=args.train_size)
    precision = "bf16" if fast_bf16_available("cpu") else "fp32"
    print(f"ms per update of {args.members} networks as one stack ({precision}, "
          f"{args.threads} thread(s), {args.train_size} images):")
    for name in args.optimizers.split(","):
        lr = get_optimizer_info(name).default_lr
        half = (args.members + 1) // 2
        configs = [TrialConfig(optimizer=name, lr=lr if k < half else lr / 3, seed=k,
                               epochs=1, precision=precision)
                   for k in range(args.members)]
        updates = math.ceil(args.train_size / configs[0].batch_size)
        cohort_module.train_cohort(configs, data)  # warm-up
        totals.clear()
        cohort_module.train_cohort(configs, data)
        ms = {part: 1e3 * seconds / updates for part, seconds in totals.items()}
        casts = ms["step"] - ms["forward and backward"]
        print(f"  {name}: {ms['whole update']:.2f} = forward and backward "
              f"{ms['step']:.2f} (products {ms['products']:.2f}, dropout masks "
              f"{ms['dropout masks']:.2f}, casts {casts:.2f}) + optimizer update "
              f"{ms['optimizer update']:.2f} + the rest "
              f"{ms['whole update'] - ms['step'] - ms['optimizer update']:.2f}; "
              f"evaluation {ms['evaluation']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Whether a fused update would make a CPU cohort much faster: Adam's update of a stack of
networks with the bf16 casts around it, as the cohort runs it and as one compiled pass.

``python -m bench.fused_update`` (from the repository root) builds ``--members`` of the lab's
MLPs as one stack (the first half at Adam's default learning rate, the rest at a third of
it, as a grid's cohort of two trials holds them) and times, at ``--threads`` threads, medians
of ``--repeats`` blocks of 50 updates:

- **cohort**: what :class:`~study.train.stacked.StackedMLP` and
  :class:`~study.train.cohort_optim.StackedAdam` do at each update: the weight gradients cast
  from bf16 to float32, torch's fused Adam kernel, the weights cast to bf16 for the next
  products (28 + 12 bytes per weight);
- **compiled**: the same update written once and compiled by ``torch.compile`` (Inductor,
  which needs a C++ compiler), reading the bf16 gradient and writing the bf16 copy in the
  update's pass (28 bytes per weight, the least Adam can move);
- **copy**: a plain copy of as many bytes as the compiled pass moves, parameter by
  parameter: the memory's speed.

It checks that both updates give the same weights after 20 updates (to 1e-5; otherwise it
says so and exits with 1) and prints each time, and how much of the update and casts a
perfectly fused pass could save at most.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time

import torch

from study.train.cohort_optim import StackedAdam, groups_by_parameter
from study.train.model import MLP
from study.train.stacked import StackedMLP

_BETAS, _EPS, _UPDATES = (0.9, 0.999), 1e-8, 50


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    for name in ("members", "threads", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, but got {getattr(args, name)}")
    # the compiler Inductor calls: $CXX, else g++ (clang++ on macOS)
    compiler = os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")
    if not shutil.which(compiler):
        parser.error(f"torch.compile needs a C++ compiler on a CPU, and {compiler!r} was not "
                     f"found; install it (apt install g++) or set CXX, and run it again")
    return args


def _adam_pass(params, grads, exp_avgs, exp_avg_sqs, casts, lrs, bias1, bias2_sqrt):
    """Adam (torch's fused kernel's arithmetic) and the bf16 copy, one pass per tensor."""
    for p, g, m, v, c in zip(params, grads, exp_avgs, exp_avg_sqs, casts, strict=True):
        lr = lrs.view(-1, *([1] * (p.dim() - 1)))
        g = g.float()
        m.lerp_(g, 1 - _BETAS[0])
        v.mul_(_BETAS[1]).addcmul_(g, g, value=1 - _BETAS[1])
        p.sub_(lr / bias1 * m / (v.sqrt() / bias2_sqrt + _EPS))
        c.copy_(p)


def _median_ms(update, repeats: int) -> float:
    for _ in range(3):
        update()
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(_UPDATES):
            update()
        blocks.append((time.perf_counter() - start) / _UPDATES * 1e3)
    return statistics.median(blocks)


def _stacks(members: int) -> tuple[list[list[torch.Tensor]], list[float], StackedAdam]:
    """Two copies of ``members`` MLPs' stacked parameters, their learning rates, and the
    cohort's Adam for the first copy."""
    lr = torch.optim.Adam([torch.zeros(1)]).defaults["lr"]
    lrs = [lr if k < (members + 1) // 2 else lr / 3 for k in range(members)]
    models = []
    for k in range(members):
        torch.manual_seed(k)
        models.append(MLP())
    groups = [groups_by_parameter(torch.optim.Adam(m.parameters(), lr=rate, fused=True),
                                  list(m.parameters()))
              for m, rate in zip(models, lrs, strict=True)]
    params = [StackedMLP.from_mlps(models).parameters() for _ in range(2)]
    return params, lrs, StackedAdam(groups, params[0])


def _copy_of(params: list[torch.Tensor]):
    """A plain copy of 28 bytes per weight (read 14, write 14), parameter by parameter as
    the update goes."""
    sources = [torch.ones(p.numel() * 7 // 2) for p in params]  # pages in memory
    targets = [torch.empty_like(s) for s in sources]

    def copy() -> None:
        for target, source in zip(targets, sources, strict=True):
            target.copy_(source)
    return copy


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    params, lrs, optimizer = _stacks(args.members)
    staged = [[torch.randn_like(p).mul_(1e-3).bfloat16() for p in params[0]] for _ in range(4)]
    grads32 = [torch.empty_like(p) for p in params[0]]
    casts = [[torch.empty_like(p, dtype=torch.bfloat16) for p in ps] for ps in params]
    moments = [[torch.zeros_like(p) for p in params[1]] for _ in range(2)]
    compiled, rates, steps = torch.compile(_adam_pass, dynamic=False), torch.tensor(lrs), [0, 0]

    def cohort() -> None:
        for target, g in zip(grads32, staged[steps[0] % 4], strict=True):
            target.copy_(g)
        optimizer.step(params[0], grads32, [1.0] * args.members)
        for target, p in zip(casts[0], params[0], strict=True):
            target.copy_(p)
        steps[0] += 1

    def fused() -> None:
        steps[1] += 1
        t = steps[1]
        compiled(params[1], staged[(t - 1) % 4], *moments, casts[1], rates,
                 torch.tensor(1 - _BETAS[0] ** t), torch.tensor((1 - _BETAS[1] ** t) ** 0.5))

    for _ in range(20):  # the same 20 updates both ways, then compare
        cohort()
        fused()
    worst = max((a - b).abs().max().item() for a, b in zip(params[0], params[1], strict=True))
    if worst > 1e-5:
        print(f"the compiled update differs from the cohort's by {worst:.1e} after 20 updates:"
              f" not the same arithmetic, so its time says nothing", file=sys.stderr)
        return 1
    times = {"cohort": _median_ms(cohort, args.repeats),
             "compiled": _median_ms(fused, args.repeats),
             "copy": _median_ms(_copy_of(params[0]), args.repeats)}
    _report(times, worst, sum(p.numel() for p in params[0]), args)
    return 0


def _report(times: dict[str, float], worst: float, weights: int,
            args: argparse.Namespace) -> None:
    print(f"Adam's update of {args.members} networks as one stack ({weights:,} weights), "
          f"{args.threads} thread(s), ms per update, medians of {args.repeats} x {_UPDATES}:")
    print(f"  cohort (casts + fused kernel, 40 bytes per weight): {times['cohort']:.2f}")
    print(f"  compiled (one pass, 28 bytes per weight):           {times['compiled']:.2f}")
    print(f"  plain copy of 28 bytes per weight:                  {times['copy']:.2f} "
          f"({weights * 28 / times['copy'] / 1e6:.1f} GB/s)")
    print(f"  the two updates' weights differ by at most {worst:.1e} after 20 updates")
    print(f"  a pass at the copy's speed would save at most "
          f"{times['cohort'] - times['copy']:.2f} ms per update")


if __name__ == "__main__":
    sys.exit(main())

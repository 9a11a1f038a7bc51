"""One process or two on a CPU: the same cohort networks trained by one process with two
torch threads, or split between two single-threaded processes running at once.

``python -m bench.cohort_layout`` (from the repository root) builds the networks a grid
cohort holds: for each optimizer of ``--optimizers`` (default the ``lr-grid`` space's four)
``--seeds`` networks at its default learning rate, bf16 where the CPU has fast bf16. It
trains one epoch of all of them with :func:`~study.train.cohort.train_cohort` in one
process at ``--threads`` threads, then, in two processes started together at one thread
each, one epoch of half of them each (the optimizers alternately, a trial's seeds staying
together as in a grid's cohorts). Each process repeats its epoch ``--repeats`` times; the
figures are medians. It prints member-epochs per second of both layouts and their ratio,
and writes them as JSON (``bench/results/cohort_layout.json``, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "cohort_layout.json"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", default="sgd,rmsprop,adam,adamw")
    parser.add_argument("--seeds", type=int, default=3, help="networks per optimizer")
    parser.add_argument("--train-size", type=int, default=12_800)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="threads of the one process")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("seeds", "train_size", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, but got "
                         f"{getattr(args, name)}")
    return args


def _child(args: argparse.Namespace) -> None:
    """Train this process's networks; print the median epoch's seconds as JSON."""
    from search_spaces import get_space
    from study.train.cohort import train_cohort
    from study.train.config import TrialConfig
    from study.train.data import load_mnist
    from study.train.loop import fast_bf16_available
    from study.train.optim import get_optimizer_info

    torch.set_num_threads(args.threads)
    fixed = get_space("lr-grid").optimizers
    precision = "bf16" if fast_bf16_available("cpu") else "fp32"
    configs = [TrialConfig(optimizer=name, lr=get_optimizer_info(name).default_lr, seed=seed,
                           epochs=1, precision=precision, **fixed.get(name, {}))
               for name in args.optimizers.split(",") for seed in range(args.seeds)]
    data = load_mnist(device="cpu", train_size=args.train_size)
    train_cohort(configs, data)  # warm-up: first-call allocations, the data's bf16 copy
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        train_cohort(configs, data)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"members": len(configs), "precision": precision,
                      "seconds": statistics.median(seconds)}))


def _start(args: argparse.Namespace, optimizers: list[str], threads: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "bench.cohort_layout", "--child",
               "--optimizers", ",".join(optimizers), "--seeds", str(args.seeds),
               "--train-size", str(args.train_size), "--repeats", str(args.repeats),
               "--threads", str(threads)]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a benchmark process failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.child:
        _child(args)
        return 0
    optimizers = args.optimizers.split(",")
    one = _result(_start(args, optimizers, args.threads))
    halves = [_start(args, optimizers[i::2], 1) for i in range(2)]
    two = [_result(p) for p in halves]
    one_rate = one["members"] / one["seconds"]
    two_rate = sum(r["members"] / r["seconds"] for r in two)
    figures = {
        "optimizers": optimizers, "seeds": args.seeds, "train_size": args.train_size,
        "repeats": args.repeats, "precision": one["precision"],
        "one_process": {"threads": args.threads, "members": one["members"],
                        "epoch_s": round(one["seconds"], 3),
                        "member_epochs_per_s": round(one_rate, 3)},
        "two_processes": {"threads": 1, "members": [r["members"] for r in two],
                          "epoch_s": [round(r["seconds"], 3) for r in two],
                          "member_epochs_per_s": round(two_rate, 3)},
        "two_over_one": round(two_rate / one_rate, 3),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))
    print(f"one epoch of {one['members']} networks ({', '.join(optimizers)} x {args.seeds} "
          f"seeds, {args.train_size} images, {one['precision']}), median of {args.repeats}:")
    print(f"  one process, {args.threads} threads: {one['seconds']:.2f} s, "
          f"{one_rate:.2f} member-epochs/s")
    epochs = ", ".join(f"{r['seconds']:.2f} s" for r in two)
    sizes = " + ".join(str(r["members"]) for r in two)
    print(f"  two processes, 1 thread each: {epochs} ({sizes} networks), {two_rate:.2f} "
          f"member-epochs/s")
    print(f"  two processes / one: {two_rate / one_rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One process or two on a CPU: the same cohort networks trained by one process with two
torch threads, or split between two single-threaded processes running at once.

``python -m bench.cohort_layout`` (from the repository root) builds the networks a grid
cohort holds: for each optimizer of ``--optimizers`` (default the ``lr-grid`` space's four)
``--seeds`` networks at its default learning rate, bf16 where the CPU has fast bf16. It
trains one epoch of all of them with :func:`~study.train.cohort.train_cohort` in one
process at ``--threads`` threads, then, in two processes at one thread each, one epoch of
half of them each (the optimizers alternately, a trial's seeds staying together as in a
grid's cohorts). The two start their timed epochs together, once both are warm, and each
keeps training until both have finished theirs, so that every timed epoch shares the
machine with the other process, as two workers of a study do. Each process times
``--repeats`` epochs; the figures are medians. It prints member-epochs per second of both
layouts and their ratio, and writes them as JSON (``bench/results/cohort_layout.json``,
git-ignored).
"""

from __future__ import annotations

import argparse
import json
import select
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
    if not args.child:
        _check_optimizers(parser, args.optimizers)
    for name in ("seeds", "train_size", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, but got "
                         f"{getattr(args, name)}")
    return args


def _check_optimizers(parser: argparse.ArgumentParser, value: str) -> None:
    from study.train.cohort_optim import stacked_optimizer_class

    names = value.split(",")
    if len(names) < 2 or "" in names:
        parser.error(f"--optimizers needs at least two names, comma-separated (one half for "
                     f"each process), but got {value!r}")
    for name in names:
        try:
            stacked_optimizer_class(name)
        except ValueError as exc:
            parser.error(f"--optimizers: {exc}")


def _child(args: argparse.Namespace) -> None:
    """Train this process's networks: say "ready" once warm, wait for "go", time
    ``repeats`` epochs and print the median's seconds as JSON, then keep training until
    told "stop" (the other process's timed epochs then never run alone)."""
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
    print("ready", flush=True)
    sys.stdin.readline()
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        train_cohort(configs, data)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"members": len(configs), "precision": precision,
                      "seconds": statistics.median(seconds)}), flush=True)
    while not select.select([sys.stdin], [], [], 0)[0]:
        train_cohort(configs, data)


def _start(args: argparse.Namespace, optimizers: list[str], threads: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "bench.cohort_layout", "--child",
               "--optimizers", ",".join(optimizers), "--seeds", str(args.seeds),
               "--train-size", str(args.train_size), "--repeats", str(args.repeats),
               "--threads", str(threads)]
    return subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)


def _line(process: subprocess.Popen) -> str:
    """The child's next line; a child that died is a failed benchmark."""
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"a benchmark process failed (exit {process.wait()})")
    return line.strip()


def _tell(processes: list[subprocess.Popen], word: str) -> None:
    for process in processes:
        process.stdin.write(word + "\n")
        process.stdin.flush()


def _run(args: argparse.Namespace, groups: list[list[str]], threads: int) -> list[dict]:
    """Run one child per group of optimizers, their timed epochs started together; each
    child's record."""
    processes = [_start(args, group, threads) for group in groups]
    try:
        for process in processes:
            if _line(process) != "ready":
                raise SystemExit("a benchmark process said something unexpected")
        _tell(processes, "go")
        results = [json.loads(_line(process)) for process in processes]
        _tell(processes, "stop")
        for process in processes:
            process.wait()
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.child:
        _child(args)
        return 0
    optimizers = args.optimizers.split(",")
    [one] = _run(args, [optimizers], args.threads)
    two = _run(args, [optimizers[0::2], optimizers[1::2]], 1)
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

"""Member-epochs per second of the cohort trainer against today's one-trial path.

``python -m bench.cohort_speed`` (from the repository root) trains, in one process, one
epoch (the training set, then the evaluation set) of the lab's SGD configuration with
``fit`` and with :func:`~study.train.cohort.train_cohort` for each cohort size K (1, 2, 4,
8, 16, 32; 64 and 128 too on a GPU), members differing in seed, in float32 and in bf16
(where the hardware has fast bf16). The loops alternate within each repeat, so a busy
machine slows them alike; the figures are medians over ``--repeats``. For each it reports
member-epochs per second (K over the cohort's epoch time; 1 over ``fit``'s), the speed-up
over ``fit`` and the median test accuracy of the members.

It prints a table and writes the figures as JSON (``bench/results/cohort_speed.json``,
git-ignored). ``--train-size N`` trains on the first N images only, for a first look.
``--threads 1`` times what one study worker gets on a 2-core machine. ``--optimizer NAME``
trains another registered optimizer instead (the lab's configuration where the lab has one,
else the optimizer's defaults). :func:`measure` gives the same record to ``make bench``
(``bench.epoch_speed``'s ``cohort`` key).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from search_spaces import LAB_CONFIGS
from study.train.cohort import train_cohort
from study.train.config import TrialConfig
from study.train.data import load_mnist
from study.train.loop import fast_bf16_available, fit
from study.train.optim import get_optimizer_info, list_optimizers

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "cohort_speed.json"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per loop")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ks", default=None,
                        help="cohort sizes, comma-separated (default 1,2,4,8,16,32; on a GPU"
                             " also 64,128)")
    parser.add_argument("--train-size", type=int, default=None,
                        help="train on the first N images (default: all 60,000)")
    parser.add_argument("--precisions", default=None,
                        help="fp32 and/or bf16, comma-separated (default: both where bf16 is"
                             " fast)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--optimizer", default="sgd",
                        help="a registered optimizer (default: the lab's SGD configuration)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.optimizer not in list_optimizers():
        parser.error(f"--optimizer must be one of {', '.join(list_optimizers())}, but got "
                     f"{args.optimizer!r}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, but got {args.threads}")
        torch.set_num_threads(args.threads)
    gpu = args.device.startswith("cuda")
    args.ks = [int(k) for k in (args.ks or ("1,2,4,8,16,32" + (",64,128" if gpu else ""))
                                ).split(",")]
    bf16 = fast_bf16_available(args.device)
    args.precisions = (args.precisions or ("fp32,bf16" if bf16 else "fp32")).split(",")
    return args


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(device: str, train) -> tuple[float, list[float]]:
    """Seconds of ``train()`` and the test accuracies of the results it returns."""
    _sync(device)
    start = time.perf_counter()
    results = train()
    _sync(device)
    return time.perf_counter() - start, [r.final_accuracy for r in results]


def _config(optimizer: str) -> dict:
    """The lab's configuration of ``optimizer``, else its defaults."""
    return LAB_CONFIGS.get(optimizer) or {"optimizer": optimizer,
                                          "lr": get_optimizer_info(optimizer).default_lr}


def _measure(data, *, device: str, batch_size: int, ks: Sequence[int],
             precisions: Sequence[str], repeats: int,
             optimizer: str) -> dict[str, dict[str, list]]:
    """Per loop (``fit`` and each K, per precision): seconds and accuracies per repeat."""
    base = TrialConfig(**_config(optimizer), epochs=1, batch_size=batch_size)
    loops = {}
    for precision in precisions:
        config = base.replace(precision=precision)
        fit(config, data)  # warm-up: the data's bf16 copy, first-call allocations
        loops[f"fit_{precision}"] = (1, lambda c=config: [fit(c, data)])
        for k in ks:
            configs = [config.replace(seed=s) for s in range(k)]
            loops[f"cohort{k}_{precision}"] = (k, lambda cs=configs: train_cohort(cs, data))
    out = {name: {"members": k, "seconds": [], "accuracy": []}
           for name, (k, _) in loops.items()}
    for r in range(repeats):
        for name, (_, train) in loops.items():
            seconds, accuracy = _time(device, train)
            out[name]["seconds"].append(seconds)
            out[name]["accuracy"] += accuracy
        print(f"repeat {r + 1}/{repeats}: " + ", ".join(
            f"{name} {v['seconds'][-1]:.2f} s" for name, v in out.items()), file=sys.stderr)
    return out


def measure(data, *, device: str, batch_size: int = 64, ks: Sequence[int] = (4, 8),
            precisions: Sequence[str] = ("fp32",), repeats: int = 3,
            optimizer: str = "sgd") -> dict:
    """The JSON record of cohorts of ``ks`` members of ``optimizer`` against ``fit`` on
    ``data``: member-epochs/s, speed-up over fit and accuracy per loop, and the best K of
    each precision (``best_k``: K and its speed-up)."""
    measured = _measure(data, device=device, batch_size=batch_size, ks=ks,
                        precisions=precisions, repeats=repeats, optimizer=optimizer)
    rows = {}
    for name, m in measured.items():
        precision = name.rsplit("_", 1)[1]
        rate = m["members"] / statistics.median(m["seconds"])
        fit_rate = 1 / statistics.median(measured[f"fit_{precision}"]["seconds"])
        rows[name] = {"members": m["members"], "precision": precision,
                      "member_epochs_per_s": round(rate, 3),
                      "speedup_over_fit": round(rate / fit_rate, 3),
                      "median_accuracy": round(statistics.median(m["accuracy"]), 4),
                      "samples_s": [round(s, 3) for s in m["seconds"]]}
    best = {}
    for precision in precisions:
        cohorts = [r for n, r in rows.items() if n.startswith("cohort")
                   and r["precision"] == precision]
        top = max(cohorts, key=lambda r: r["speedup_over_fit"], default=None)
        best[precision] = top and {"k": top["members"], "speedup": top["speedup_over_fit"]}
    return {"device": device,
            "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
            "cpu_threads": torch.get_num_threads(), "batch_size": batch_size,
            "optimizer": optimizer,
            "train_size": data.num_train, "repeats": repeats, "loops": rows,
            "best_k": best}


def _print_table(figures: dict) -> None:
    print(f"{figures['optimizer']}, one epoch ({figures['train_size']} training images, then"
          f" the test set), median of {figures['repeats']}, {figures['device']}, batch"
          f" {figures['batch_size']}, {figures['cpu_threads']} threads:")
    print(f"  {'loop':<16} {'K':>4} {'member-epochs/s':>16} {'x fit':>7} {'accuracy':>9}")
    for name, row in figures["loops"].items():
        print(f"  {name:<16} {row['members']:>4} {row['member_epochs_per_s']:>16.3f}"
              f" {row['speedup_over_fit']:>7.2f} {row['median_accuracy']:>9.4f}")
    for precision, best in figures["best_k"].items():
        if best:
            print(f"  best K, {precision}: {best['k']} ({best['speedup']:.2f} x fit)")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    data = load_mnist(device=args.device, train_size=args.train_size)
    figures = measure(data, device=args.device, batch_size=args.batch_size, ks=args.ks,
                      precisions=args.precisions, repeats=args.repeats,
                      optimizer=args.optimizer)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))
    _print_table(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

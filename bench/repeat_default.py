"""How much the default study's answer moves when it is run again on the same machine.

``python -m bench.repeat_default --runs 5`` runs ``python -m study.run --trials 50`` (the
default study: TPE, single-seed trials) ``--runs`` times, run k with ``--seed k`` (the
default study reproduces itself exactly from its seed, so only another seed draws it again),
each into its own database in ``--folder``, then prints each optimizer's best accuracy per
run and its spread (largest minus smallest). ``--only-summarise`` reads the databases
already in the folder.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from analysis import best_trials, load_trials


def run(folder: Path, runs: int, extra: list[str]) -> None:
    for k in range(1, runs + 1):
        url = f"sqlite:///{folder / f'rep{k}.db'}"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "study.run", "--trials", "50", "--study-name",
                        f"rep{k}", "--storage", url, "--seed", str(k), *extra], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"run {k}: {time.perf_counter() - start:.0f} s", flush=True)


def summarise(folder: Path) -> dict[str, tuple[float, list[float]]]:
    """Per optimizer: the spread of its best over the runs, and the bests."""
    bests: dict[str, list[float]] = {}
    for db in sorted(folder.glob("rep*.db")):
        best = best_trials(load_trials(f"sqlite:///{db}", db.stem)).set_index("optimizer")
        for optimizer, value in best["final_accuracy"].items():
            bests.setdefault(optimizer, []).append(float(value))
    return {k: (max(v) - min(v), v) for k, v in sorted(bests.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.repeat_default",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=Path("bench/results/repeat_default"))
    parser.add_argument("--only-summarise", action="store_true")
    args, extra = parser.parse_known_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    if not args.only_summarise:
        run(args.folder, args.runs, extra)
    for optimizer, (spread, values) in summarise(args.folder).items():
        shown = ", ".join(f"{v:.4f}" for v in values)
        print(f"{optimizer:8} best per run {shown}; spread {spread * 100:.2f} points")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Wall time of a whole study, for several worker counts and cohort sizes: are ``--workers``
and ``--cohort`` worth it here?

``python -m bench.study_time --workers 1,4 --cohorts 1,auto --trials 50`` runs ``python -m
study.run --trials N --workers W --cohort C`` once per W and C (``auto``: ``--cohort`` left
out, the default), each from an empty folder (a fresh study), one after another, and prints
a table: wall time, trials per minute, the outcome counts and the best accuracy, so speed
never hides a worse answer. Extra options after ``--`` go to ``study.run`` (``-- --device
cuda --epochs 3``, ``-- --space lr-grid --repeats 3``; ``--trials 0`` leaves ``--trials``
out, for a grid's default of every point). The figures are also written as JSON
(``bench/results/study_time.json``, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from analysis.load import load_trials

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "study_time.json"


def _device_name(extra: list[str]) -> str:
    import torch

    asked = extra[extra.index("--device") + 1] if "--device" in extra[:-1] else "auto"
    if torch.cuda.is_available() and asked != "cpu":
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"


def time_study(workers: int, cohort: str, trials: int, extra: list[str]) -> dict:
    """One fresh study with ``workers`` workers training ``cohort`` trials at a time
    (``auto``: the default); its wall time and its answer."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "study.run", "--workers", str(workers),
               "--study-name", "default", *extra]
        cmd += ["--trials", str(trials)] if trials else []
        cmd += ["--cohort", cohort] if cohort != "auto" else []
        start = time.perf_counter()
        run = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if run.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{run.stdout}\n{run.stderr}")
        trials_frame = load_trials(f"sqlite:///{folder}/studies/default.db", "default")
    counts = trials_frame["outcome"].value_counts().to_dict()
    complete = trials_frame[trials_frame["outcome"] == "complete"]
    per_optimizer = complete.groupby("optimizer")["final_accuracy"].max().round(4).to_dict()
    return {
        "workers": workers,
        "cohort": cohort,
        "trials": len(trials_frame),
        "wall_s": round(wall, 1),
        "trials_per_min": round(60 * len(trials_frame) / wall, 1),
        "outcomes": {k: int(v) for k, v in counts.items()},
        "best_accuracy": round(float(complete["final_accuracy"].max()), 4),
        "best_per_optimizer": per_optimizer,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--cohorts", default="auto",
                        help="comma-separated cohort sizes, 'auto' for the default")
    parser.add_argument("--trials", type=int, default=50, help="0: leave --trials out")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = _device_name(extra)
    rows = []
    args.json.parent.mkdir(parents=True, exist_ok=True)
    setups = [(int(w), c) for w in args.workers.split(",") for c in args.cohorts.split(",")]
    for workers, cohort in setups:
        row = time_study(workers, cohort, args.trials, extra)
        rows.append(row)
        print(f"{device}: workers {workers:>2} cohort {cohort:>4}  {row['wall_s']:>7.1f} s  "
              f"{row['trials_per_min']:>5.1f} trials/min  best {row['best_accuracy']:.4f}  "
              f"{row['outcomes']}  {row['best_per_optimizer']}", flush=True)
        # written after each study: a run stopped early keeps what it measured
        args.json.write_text(
            json.dumps({"device": device, "extra": extra, "runs": rows}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

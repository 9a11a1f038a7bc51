"""Trials per second a study database sustains with many workers and a near-zero objective.

    python -m bench.storage_throughput [--workers 8] [--trials 25] [--postgres URL]

W processes (started first, then released together) each run ``--trials`` trials on one
study through :func:`study.store.storage.open_storage` (heartbeat on, as ``study.run`` opens it).
Each trial writes what one of ours writes for a 5-epoch run: the sampled parameters, five
intermediate values and a dozen user attributes, and no training. Random sampling, so the
sampler's own cost stays out. SQLite is a fresh file in a temporary folder; PostgreSQL a
fresh study in the database ``--postgres`` names (deleted afterwards).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
import uuid

import optuna

from study.store.storage import open_storage


def objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
    trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    trial.suggest_categorical("schedule", ["constant", "cosine", "step"])
    for attr in ("config", "seed", "seeds", "eval_set", "diverged", "train_loss",
                 "train_accuracy", "eval_accuracy", "lr_curve", "epoch_seconds",
                 "seed_accuracies", "seed_diverged"):
        trial.set_user_attr(attr, [lr] * 5)
    for epoch in range(1, 6):
        trial.report(0.9 + epoch / 100, epoch)
    return 0.95


def worker(url: str, name: str, trials: int, seed: int, go, done) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=optuna.samplers.RandomSampler(seed=seed))
    go.wait()
    study.optimize(objective, n_trials=trials)
    done.put(time.perf_counter())


def measure(url: str, workers: int, trials: int) -> float:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    optuna.create_study(storage=open_storage(url), study_name=name, direction="maximize")
    ctx = mp.get_context("spawn")
    go, done = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(url, name, trials, k, go, done))
             for k in range(workers)]
    for p in procs:
        p.start()
    time.sleep(8.0)  # every worker has imported and opened the storage
    start = time.perf_counter()
    go.set()
    ends = [done.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    n = len(optuna.load_study(study_name=name, storage=url).get_trials())
    assert n == workers * trials, n
    if not url.startswith("sqlite"):
        optuna.delete_study(study_name=name, storage=url)
    return n / (max(ends) - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--trials", type=int, default=25, help="trials per worker")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", help="a PostgreSQL URL to measure too")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        backends = [("SQLite", lambda k: f"sqlite:///{tmp}/bench-{k}.db")]
        if args.postgres:
            backends.append(("PostgreSQL", lambda k: args.postgres))
        for label, url_for in backends:
            rates = sorted(measure(url_for(k), args.workers, args.trials)
                           for k in range(args.repeats))
            rows.append((label, rates))
    print(f"{args.workers} workers x {args.trials} trials, near-zero objective, "
          f"{args.repeats} repeats (trials per second: median, min-max)")
    for label, rates in rows:
        print(f"  {label:<11} {rates[len(rates) // 2]:6.1f}   ({rates[0]:.1f}-{rates[-1]:.1f})")


if __name__ == "__main__":
    main()

"""Speed of one training epoch against the lab's loop and against the machine's own ceiling.

``make bench`` (or ``python -m bench.epoch_speed`` from the repository root) measures, in
one process, medians over ``--repeats`` (the three loops alternate, so a busy machine slows
them alike):

- seconds per epoch (60,000 training images, then the 10,000 test images) of the lab's loop
  (torchvision ``MNIST`` with per-item ``ToTensor``/``Normalize``, a ``DataLoader``,
  ``loss.item()`` per batch), of ``fit`` in float32 and of ``fit`` in bfloat16 (autocast,
  where the hardware has fast bf16), with the test accuracy each reached (the lab's SGD);
- the ceiling: the forward and backward matrix products of the MLP's own shapes at the same
  batch size, timed alone, and ``fit``'s share of it;
- the cohort trainer (``cohort`` key): member-epochs per second of cohorts of
  ``--cohort-ks`` members against ``fit``, per precision (:func:`bench.cohort_speed.measure`);
- overheads that add up over a study: starting a trial (data loaded), the evaluation's share
  of an epoch, the study's own cost per trial (sampler, pruner and storage writes on SQLite,
  with an objective that records five epochs but does not train), and the peak memory of a
  50-trial study process.

It prints a table and writes the figures as JSON (``bench/results/epoch_speed.json``,
git-ignored). ``--quick`` does the same with fewer repeats and trials, for a first look.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F
from torchvision import datasets, transforms

from bench import cohort_speed
from search_spaces import LAB_CONFIGS, get_space
from study.search.objective import Objective
from study.search.pruners import create_pruner
from study.search.samplers import BalancedSampler, create_sampler
from study.train.config import TrialConfig
from study.train.data import MEAN, MNIST_FILES, PACKAGED_ROOT, STD, load_mnist
from study.train.loop import EpochStats, FitResult, TrainingRun, evaluate, fast_bf16_available
from study.train.model import MLP

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "epoch_speed.json"


class AverageMeter:
    """The lab's running average."""

    def __init__(self) -> None:
        self.sum = 0.0
        self.count = 0

    def update(self, val: float, n: int = 1) -> None:
        self.sum += val * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / self.count


def accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    return (y_hat.argmax(dim=1) == y).float().mean().item()


def lab_loaders(root: Path, batch_size: int) -> tuple[torch.utils.data.DataLoader, ...]:
    """The lab's data path: torchvision MNIST over the raw IDX files, per-item transforms."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name.removesuffix(".gz")).write_bytes(
            gzip.decompress((PACKAGED_ROOT / name).read_bytes())
        )
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    train = datasets.MNIST(root, train=True, download=False, transform=tf)
    test = datasets.MNIST(root, train=False, download=False, transform=tf)
    return (
        torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True),
        torch.utils.data.DataLoader(test, batch_size=batch_size, shuffle=False),
    )


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def lab_epoch(trainloader, testloader, device: str, seed: int) -> tuple[float, float]:
    """One epoch of the lab's train_epoch + test_model; returns (seconds, test accuracy)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(*MLP().layers).to(device)  # the lab's plain nn.Dropout
    for i, layer in enumerate(model):
        if isinstance(layer, torch.nn.Dropout):
            model[i] = torch.nn.Dropout(layer.p)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=5e-4, momentum=0.9)
    start = time.perf_counter()
    model.train()
    loss_meter, perf_meter = AverageMeter(), AverageMeter()
    for x, y in trainloader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        y_hat = model(x)
        loss = F.cross_entropy(y_hat, y)
        loss.backward()
        optimizer.step()
        loss_meter.update(loss.item(), x.shape[0])
        perf_meter.update(accuracy(y_hat, y), x.shape[0])
    model.eval()
    test_meter = AverageMeter()
    with torch.no_grad():
        for x, y in testloader:
            x, y = x.to(device), y.to(device)
            test_meter.update(accuracy(model(x), y), x.shape[0])
    _sync(device)
    return time.perf_counter() - start, test_meter.avg


def ceiling_epoch(batch_size: int, steps: int, device: str, dtype: torch.dtype) -> float:
    """Seconds for one epoch of the MLP's own matrix products alone: per update, the forward
    (3), the weight gradients (3) and the input gradients of the two upper layers (2)."""
    shapes = [(784, 512), (512, 256), (256, 10)]
    make = lambda *s: torch.randn(*s, device=device, dtype=dtype)  # noqa: E731
    weights = [make(i, o) for i, o in shapes]
    inputs = [make(batch_size, i) for i, _ in shapes]
    grads = [make(batch_size, o) for _, o in shapes]
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        for x, w in zip(inputs, weights, strict=True):
            x @ w
        for x, g in zip(inputs, grads, strict=True):
            x.T @ g
        grads[2] @ weights[2].T
        grads[1] @ weights[1].T
    _sync(device)
    return time.perf_counter() - start


class _NoTraining:
    """A run with TrainingRun's interface that records epochs without training: what is
    left of a trial is the study's own cost (sampler, pruner, storage writes)."""

    def __init__(self, config: TrialConfig, data) -> None:
        self.config = config
        self.history: list[EpochStats] = []

    @property
    def finished(self) -> bool:
        return len(self.history) >= self.config.epochs

    def train_epoch(self) -> EpochStats:
        epoch = len(self.history) + 1
        # An accuracy that depends on the configuration, so the pruner has work to do.
        acc = min(0.99, 0.9 + 0.01 * epoch + (hash((self.config.lr, epoch)) % 100) / 2000)
        stats = EpochStats(epoch, 0.1, acc, 0.1, acc, self.config.lr, 64, 0.0)
        self.history.append(stats)
        return stats

    def result(self) -> FitResult:
        last = self.history[-1].eval_accuracy
        return FitResult(self.config, tuple(self.history), False, None, None, None, last,
                         last, "test", MLP())


def study_overhead(n_trials: int, data) -> float:
    """Seconds per trial of a default study (balanced TPE, median pruner per optimizer,
    SQLite) whose objective records 5 epochs but does not train."""
    space = get_space("default")
    base = TrialConfig(epochs=5)
    with tempfile.TemporaryDirectory() as tmp:
        optuna_study = optuna.create_study(
            storage=f"sqlite:///{tmp}/overhead.db", direction="maximize",
            sampler=BalancedSampler(create_sampler("tpe", seed=0)),
            pruner=create_pruner("median", epochs=5, within="optimizer"),
        )
        objective = Objective(lambda t: space.config_for(t, base.replace(seed=t.number)), data,
                              make_run=_NoTraining)
        start = time.perf_counter()
        optuna_study.optimize(objective, n_trials=n_trials)
        return (time.perf_counter() - start) / n_trials


def peak_rss_of_a_study(n_trials: int, threads: int) -> float:
    """Peak resident memory (MiB) of a ``python -m study.run`` process of ``n_trials``
    one-epoch trials. Training on 640 images keeps it quick; the footprint is the same as a
    full study's: all 60,000 images are loaded, and one model trains at a time."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "study.run", "--trials", str(n_trials), "--epochs", "1",
               "--train-size", "640", "--storage", f"sqlite:///{tmp}/rss.db",
               "--study-name", "rss", "--workers", "1", "--threads", str(threads)]
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, timeout=1200)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux


@dataclass
class _Measured:
    """What :func:`main` measured, for the JSON figures and the table."""

    seconds: dict[str, list[float]]  # per loop, one epoch per repeat
    accuracy: dict[str, list[float]]
    ceiling: dict[str, float | None]  # the matmuls alone, per precision
    starts: list[float]
    evals: list[float]
    overhead: float
    overhead_trials: int
    rss: float
    rss_trials: int

    @property
    def median(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.seconds.items()}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per loop")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and trials: the same figures, less precise")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice, one per core); the "
                        "study's workers run with CORES/W each, 1 on a 2-core machine")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the figures")
    parser.add_argument("--cohort-ks", default="4,8",
                        help="cohort sizes timed against fit, comma-separated ('' skips them)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, but got {args.threads}")
        torch.set_num_threads(args.threads)
    return args


def _time_epochs(
    loops: dict[str, TrialConfig], data, args: argparse.Namespace, repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds and test accuracy of one epoch per repeat: the lab's loop, then each of
    ``loops`` (alternating, so a busy machine slows them alike)."""
    seconds: dict[str, list[float]] = {"lab": [], **{k: [] for k in loops}}
    acc: dict[str, list[float]] = {"lab": [], **{k: [] for k in loops}}
    with tempfile.TemporaryDirectory() as tmp:
        trainloader, testloader = lab_loaders(Path(tmp), args.batch_size)
        for c in loops.values():
            TrainingRun(c, data).train_epoch()  # warm-up: first-call allocations
        for r in range(repeats):
            s, a = lab_epoch(trainloader, testloader, args.device, seed=r)
            seconds["lab"].append(s)
            acc["lab"].append(a)
            for name, c in loops.items():
                stats = TrainingRun(c.replace(seed=r), data).train_epoch()
                seconds[name].append(stats.seconds)
                acc[name].append(stats.eval_accuracy)
            print(f"repeat {r + 1}/{repeats}: " + ", ".join(
                f"{k} {v[-1]:.2f} s" for k, v in seconds.items()), file=sys.stderr)
    return seconds, acc


def _time_ceilings(
    args: argparse.Namespace, steps: int, repeats: int, bf16: bool
) -> dict[str, float | None]:
    """The median :func:`ceiling_epoch` per precision (``None`` where not measured)."""
    ceilings: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(repeats):
        ceilings["fp32"].append(ceiling_epoch(args.batch_size, steps, args.device, torch.float32))
        if bf16:
            ceilings["bf16"].append(
                ceiling_epoch(args.batch_size, steps, args.device, torch.bfloat16))
    return {k: statistics.median(v) if v else None for k, v in ceilings.items()}


def _time_start_and_eval(
    config: TrialConfig, data, device: str, repeats: int
) -> tuple[list[float], list[float]]:
    """Seconds to start a trial (data loaded) and to evaluate a model."""
    starts = []
    for r in range(10):
        start = time.perf_counter()
        TrainingRun(config.replace(seed=r), data)
        starts.append(time.perf_counter() - start)
    model = MLP().to(device)
    evals = []
    for _ in range(max(3, repeats)):
        _sync(device)
        start = time.perf_counter()
        evaluate(model, data.eval_x, data.eval_y)
        evals.append(time.perf_counter() - start)
    return starts, evals


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _figures(args: argparse.Namespace, repeats: int, bf16: bool, m: _Measured) -> dict:
    """The JSON record of one benchmark run."""
    med, ceiling, acc = m.median, m.ceiling, m.accuracy
    return {
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "repeats": repeats,
        "lab_epoch_s": round(med["lab"], 3),
        "fit_fp32_epoch_s": round(med["fit_fp32"], 3),
        "fit_bf16_epoch_s": round(med["fit_bf16"], 3) if bf16 else None,
        "ceiling_fp32_epoch_s": round(ceiling["fp32"], 3),
        "ceiling_bf16_epoch_s": round(ceiling["bf16"], 3) if bf16 else None,
        "speedup_fp32": _ratio(med["lab"], med["fit_fp32"]),
        "speedup_bf16": _ratio(med["fit_fp32"], med.get("fit_bf16")),
        "speedup_bf16_vs_lab": _ratio(med["lab"], med.get("fit_bf16")),
        "ceiling_share_fp32": _ratio(ceiling["fp32"], med["fit_fp32"]),
        "ceiling_share_bf16": _ratio(ceiling["bf16"], med.get("fit_bf16")),
        "accuracy_lab": round(statistics.median(acc["lab"]), 4),
        "accuracy_fp32": round(statistics.median(acc["fit_fp32"]), 4),
        "accuracy_bf16": round(statistics.median(acc["fit_bf16"]), 4) if bf16 else None,
        "trial_startup_s": round(statistics.median(m.starts), 4),
        "eval_share_of_epoch": _ratio(statistics.median(m.evals), med["fit_fp32"]),
        "study_overhead_per_trial_s": round(m.overhead, 4),
        "study_overhead_trials": m.overhead_trials,
        "peak_rss_mib_50_trial_study" if m.rss_trials == 50 else
        f"peak_rss_mib_{m.rss_trials}_trial_study": round(m.rss, 1),
        "samples": {k: [round(x, 3) for x in v] for k, v in m.seconds.items()},
    }


def _row(label: str, value: float | None, unit: str = "s") -> str:
    shown = "n/a" if value is None else (f"{value:.3f} {unit}" if unit else f"{value:.2f}")
    return f"  {label:<44} {shown}"


def _print_table(
    args: argparse.Namespace, repeats: int, bf16: bool, m: _Measured, figures: dict
) -> None:
    med = m.median
    print(f"one epoch (train 60k + test 10k), median of {repeats}, {args.device}, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads:")
    print(_row("lab loop", med["lab"]) + f"   (accuracy {figures['accuracy_lab']:.4f})")
    print(_row("fit, float32", med["fit_fp32"])
          + f"   (accuracy {figures['accuracy_fp32']:.4f})")
    print(_row("fit, bf16 autocast", med.get("fit_bf16"))
          + (f"   (accuracy {figures['accuracy_bf16']:.4f})" if bf16 else ""))
    print(_row("ceiling: the MLP's matmuls alone, float32", m.ceiling["fp32"]))
    print(_row("ceiling: the MLP's matmuls alone, bf16", m.ceiling["bf16"]))
    print(_row("speed-up fp32 over the lab loop", figures["speedup_fp32"], "") + " x")
    print(_row("speed-up bf16 over fp32", figures["speedup_bf16"], "") + " x")
    print(_row("ceiling share fp32 (ceiling / fit)", figures["ceiling_share_fp32"], ""))
    print(_row("ceiling share bf16", figures["ceiling_share_bf16"], ""))
    print(_row("trial start-up (data loaded)", figures["trial_startup_s"]))
    print(_row("evaluation share of an epoch", figures["eval_share_of_epoch"], ""))
    print(_row(f"study overhead per trial (SQLite, {m.overhead_trials} trials)", m.overhead))
    print(_row(f"peak RSS of a {m.rss_trials}-trial study", m.rss, "MiB"))
    for precision, best in figures.get("cohort", {}).get("best_k", {}).items():
        if best:
            print(_row(f"best cohort, {precision}: K={best['k']}, member-epochs/s",
                       best["speedup"], "") + " x fit")
    print(f"wrote {args.json.relative_to(REPO) if args.json.is_relative_to(REPO) else args.json}")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    repeats = 2 if args.quick else args.repeats
    overhead_trials = 20 if args.quick else 50
    rss_trials = 20 if args.quick else 50

    data = load_mnist(device=args.device)
    steps = -(-data.num_train // args.batch_size)
    config = TrialConfig(**LAB_CONFIGS["sgd"], epochs=1, batch_size=args.batch_size)
    bf16 = fast_bf16_available(args.device)
    loops = {"fit_fp32": config, **({"fit_bf16": config.replace(precision="bf16")} if bf16
                                     else {})}
    seconds, acc = _time_epochs(loops, data, args, repeats)
    ceiling = _time_ceilings(args, steps, repeats, bf16)
    starts, evals = _time_start_and_eval(config, data, args.device, repeats)
    print("timing the study's own overhead and a study's memory ...", file=sys.stderr)
    overhead = study_overhead(overhead_trials, data)
    rss = peak_rss_of_a_study(rss_trials, torch.get_num_threads())
    measured = _Measured(seconds, acc, ceiling, starts, evals, overhead, overhead_trials, rss,
                         rss_trials)
    figures = _figures(args, repeats, bf16, measured)
    if args.cohort_ks:
        print("timing the cohort trainer against fit ...", file=sys.stderr)
        figures["cohort"] = cohort_speed.measure(
            data, device=args.device, batch_size=args.batch_size,
            ks=[int(k) for k in args.cohort_ks.split(",")],
            precisions=["fp32", "bf16"] if bf16 else ["fp32"], repeats=repeats)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))
    _print_table(args, repeats, bf16, measured, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

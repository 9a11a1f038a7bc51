"""Seconds per training epoch: ``study.train.fit`` against the lab's DataLoader loop.

Both train the same MLP with the lab's SGD (lr 0.1, momentum 0.9, weight decay 5e-4) for one
epoch over the 60,000 training images, then evaluate on the 10,000 test images, in the same
process, alternating, ``--repeats`` times each. The lab loop is the course's: a torchvision
``MNIST`` dataset with per-item ``ToTensor`` + ``Normalize`` transforms, a shuffling
``DataLoader``, ``loss.item()`` and the accuracy per batch into AverageMeters. Prints the
median seconds of each and their ratio.

    python bench/epoch_speed.py [--repeats 5] [--device cpu|cuda] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets, transforms

from search_spaces import LAB_CONFIGS
from study.config import TrialConfig
from study.data import DEFAULT_ROOT, MEAN, MNIST_FILES, STD, load_mnist
from study.model import MLP
from study.train import fit


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
            gzip.decompress((DEFAULT_ROOT / name).read_bytes())
        )
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    train = datasets.MNIST(root, train=True, download=False, transform=tf)
    test = datasets.MNIST(root, train=False, download=False, transform=tf)
    return (
        torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True),
        torch.utils.data.DataLoader(test, batch_size=batch_size, shuffle=False),
    )


def lab_epoch(trainloader, testloader, device: str, seed: int) -> tuple[float, float]:
    """One epoch of the lab's train_epoch + test_model; returns (seconds, test accuracy)."""
    torch.manual_seed(seed)
    model = MLP().to(device)
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
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, test_meter.avg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per loop")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    data = load_mnist(device=args.device)
    config = TrialConfig(**LAB_CONFIGS["sgd"], epochs=1, batch_size=args.batch_size)
    ours, lab = [], []
    with tempfile.TemporaryDirectory() as tmp:
        trainloader, testloader = lab_loaders(Path(tmp), args.batch_size)
        fit(config, data)  # warm-up: first-call allocations, CUDA context
        for r in range(args.repeats):
            result = fit(config.replace(seed=r), data)
            ours.append(result.history[0].seconds)
            seconds, lab_acc = lab_epoch(trainloader, testloader, args.device, seed=r)
            lab.append(seconds)
            print(
                f"repeat {r + 1}/{args.repeats}: fit {ours[-1]:.2f} s "
                f"(acc {result.final_accuracy:.4f}), lab loop {seconds:.2f} s "
                f"(acc {lab_acc:.4f})",
                file=sys.stderr,
            )
    ours_median, lab_median = statistics.median(ours), statistics.median(lab)
    figures = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "fit_epoch_s_median": round(ours_median, 3),
        "lab_epoch_s_median": round(lab_median, 3),
        "speedup": round(lab_median / ours_median, 2),
    }
    print(
        f"seconds per epoch (train 60k + test 10k), median of {args.repeats}, "
        f"{args.device}, batch {args.batch_size}:"
    )
    print(f"  study.train.fit   {ours_median:7.2f} s")
    print(f"  lab DataLoader    {lab_median:7.2f} s")
    print(f"  speed-up          {lab_median / ours_median:7.2f} x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

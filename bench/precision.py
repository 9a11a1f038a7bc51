"""bf16 against float32: final accuracy and seconds per epoch of the lab's SGD and Adam runs.

``python -m bench.precision`` trains each of the lab's SGD and Adam configurations for 5
epochs with 3 seeds in float32 and in bf16 autocast (runs alternate, so a busy machine slows
both alike) and prints the median final test accuracy and epoch time of each, with the
difference in accuracy points: the check that bf16's speed hides no quality loss.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from search_spaces import LAB_CONFIGS
from study.train.config import TrialConfig
from study.train.data import load_mnist
from study.train.loop import fast_bf16_available, fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not fast_bf16_available(args.device):
        print(f"{args.device} has no fast bf16: nothing to compare.")
        return 0
    data = load_mnist(device=args.device)
    print(f"{'optimizer':<9} {'precision':<9} {'accuracy (median)':>18} {'per seed':<26} "
          f"{'s/epoch':>8}")
    for name in ("sgd", "adam"):
        results: dict[str, tuple[list[float], list[float]]] = {"fp32": ([], []), "bf16": ([], [])}
        for seed in range(args.seeds):
            for precision in ("fp32", "bf16"):
                config = TrialConfig(**LAB_CONFIGS[name], epochs=args.epochs, seed=seed,
                                     precision=precision)
                result = fit(config, data)
                results[precision][0].append(result.final_accuracy)
                results[precision][1].extend(s.seconds for s in result.history)
        for precision, (accs, secs) in results.items():
            shown = ", ".join(f"{a:.4f}" for a in accs)
            print(f"{name:<9} {precision:<9} {statistics.median(accs):>18.4f} {shown:<26} "
                  f"{statistics.median(secs):>8.2f}")
        delta = statistics.median(results["bf16"][0]) - statistics.median(results["fp32"][0])
        ratio = statistics.median(results["fp32"][1]) / statistics.median(results["bf16"][1])
        print(f"{name:<9} bf16 - fp32: {100 * delta:+.2f} points, bf16 {ratio:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Head-fitting time on BloodMNIST-scale cached features: the full logreg / linear / knn sweeps.

    python -m benchmarks.heads --n-train 12000 --dim 768 --classes 8

Synthetic float16 features (what the cache stores) with class structure; val and test at
BloodMNIST's proportions. Prints one markdown row per head.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date

import numpy as np

from benchmarks.common import machine
from probe.fit import fit_probe


def features(n: int, dim: int, n_classes: int, seed: int, separation: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes; `separation` scales the class means (0.05 gives ~0.8 accuracy, like a
    middling backbone, so every grid point has real work to do)."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(1234).normal(size=(n_classes, dim))
    y = rng.integers(0, n_classes, (n, 1))
    return (separation * centers[y[:, 0]] + rng.normal(size=(n, dim))).astype(np.float16), y


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-train", type=int, default=12000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--heads", default="logreg,linear,knn")
    parser.add_argument("--separation", type=float, default=0.05)
    args = parser.parse_args()
    n = args.n_train
    shape = dict(dim=args.dim, n_classes=args.classes, separation=args.separation)
    train, val, test = (
        features(n, seed=0, **shape),
        features(n // 7, seed=1, **shape),
        features(n * 2 // 7, seed=2, **shape),
    )
    command = " ".join(["python -m benchmarks.heads", *sys.argv[1:]])
    for head in args.heads.split(","):
        start = time.perf_counter()
        fit = fit_probe(train, val, test, head=head, task="multi-class", n_classes=args.classes)
        seconds = time.perf_counter() - start
        print(
            f"| {date.today()} | {machine()} | {head} | {n}x{args.dim} fp16, {args.classes} classes "
            f"| {len(fit.val_scores)} | {seconds:.1f} | {fit.params} | {fit.test['acc']:.3f} | `{command}` |"
        )


if __name__ == "__main__":
    main()

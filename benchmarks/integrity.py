"""What the cache's checksums cost a fit.

Checking every array of a BloodMNIST-scale entry on read, against fitting the logreg head on the
same features.

    python -m benchmarks.integrity --rows 17092 --dim 384 --kinds 2

Writes a real entry (synthetic float16 features, two kinds as a ViT stores them, BloodMNIST's
split sizes), then times `read_split` of all splits with the checks and the plain HDF5 reads
without them, and `fit_probe` logreg on cls+mean. Prints one markdown row.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import h5py
import numpy as np

from benchmarks.common import machine
from benchmarks.heads import features
from cache.key import CacheKey
from cache.store import read_split
from cache.writer import open_partial
from probe.fit import fit_probe

SPLIT_SHARES = {"train": 11959, "val": 1712, "test": 3421}  # BloodMNIST


def build_entry(folder: Path, rows: int, dim: int, kinds: tuple[str, ...]) -> Path:
    total = sum(SPLIT_SHARES.values())
    counts = {s: max(1, round(rows * n / total)) for s, n in SPLIT_SHARES.items()}
    data = {
        s: features(n, dim, 8, seed=i, separation=0.05) for i, (s, n) in enumerate(counts.items())
    }
    key = CacheKey(
        "bench",
        "bench",
        "random-init:seed0",
        "bloodmnist",
        28,
        "0" * 32,
        {},
        kinds,
        tuple(counts),
        "fp32",
    )
    path = folder / "entry.h5"
    entry = open_partial(
        path, key, labels={s: y for s, (_, y) in data.items()}, dims=dict.fromkeys(kinds, dim)
    )
    for split, (x, _) in data.items():
        entry.write(split, 0, dict.fromkeys(kinds, x))
        entry.mark_done(split, 0, len(x))
    return entry.finalize({})


def timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=sum(SPLIT_SHARES.values()))
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--kinds", type=int, default=2)
    args = parser.parse_args()
    kinds = ("cls", "mean", "pool")[: args.kinds]
    with tempfile.TemporaryDirectory() as folder:
        path = build_entry(Path(folder), args.rows, args.dim, kinds)
        checked_s, splits = timed(lambda: {s: read_split(path, s) for s in SPLIT_SHARES})
        plain_s, _ = timed(lambda: _plain_reads(path))
    data = {s: (np.concatenate([f[k] for k in kinds], axis=1), y) for s, (f, y) in splits.items()}
    fit_s, _ = timed(
        lambda: fit_probe(
            data["train"], data["val"], data["test"], head="logreg", task="multi-class", n_classes=8
        )
    )
    overhead = max(checked_s - plain_s, 0.0)
    command = " ".join(["python -m benchmarks.integrity", *sys.argv[1:]])
    print(
        f"| {date.today()} | {machine()} | {args.rows}x{args.dim}x{len(kinds)} fp16 | "
        f"{plain_s:.3f} | {checked_s:.3f} | {fit_s:.2f} | {100 * overhead / fit_s:.1f}% | "
        f"`{command}` |"
    )


def _plain_reads(path: Path) -> None:
    with h5py.File(path) as f:
        for split in SPLIT_SHARES:
            for dataset in f[split]["features"].values():
                dataset[...].astype(np.float32)
            f[split]["labels"][...]


if __name__ == "__main__":
    main()

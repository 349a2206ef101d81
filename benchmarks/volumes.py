"""A frozen 2D backbone on a 3D dataset's slices: each aggregation, and slices/s against images/s.

    python -m benchmarks.volumes --data-root ../shared/data --img-size 56
        --weights ../shared/weights/dinov2_vits14.safetensors   # (one line)

Extracts the 2D reference (BreastMNIST-28's images) and the volumes' slices (AdrenalMNIST3D-28,
all three axes) with the same backbone, input size and precision, each from a fresh cache; fits
the logreg probe (C chosen on the val log-loss) for every `--axes` x `--slices` aggregation on
the one cached entry (attention: learned on train with seed 0); prints one markdown row per
aggregation with test AUC and ACC and their 95% bootstrap intervals, the slices/s and their
ratio to the 2D images/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.common import emit, machine, without_append
from cache.extract import extract
from cache.options import ExtractOptions
from cache.slices import AGGREGATIONS, AXES, LEARNED
from cache.store import read_attrs
from medprobe.data import SPLITS, get_dataset, open_split
from probe.options import ProbeOptions
from probe.run import run_probe

SECTION = "## 3D datasets: a frozen 2D backbone on slices (issue #29)"


def rate(path: Path) -> float:
    """Images (slices) per second of an entry's extraction."""
    return read_attrs(path)["extraction"]["images_per_second"]


def slices_as_images(dataset: str, size: int, data_root, path: Path) -> Path:
    """A 2D npz of a 3D dataset's first-axis slices, each labelled as its volume."""
    spec, arrays = get_dataset(dataset), {}
    for split in SPLITS:
        source = open_split(spec, split, size=size, root=data_root, download=False)
        volumes = source.load()
        arrays[f"{split}_images"] = volumes.reshape(-1, *volumes.shape[2:])
        arrays[f"{split}_labels"] = np.repeat(source.labels, volumes.shape[1], axis=0)
    np.savez(path, **arrays)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="adrenalmnist3d")
    parser.add_argument("--size", type=int, default=28, help="The 3D dataset's (28 or 64).")
    parser.add_argument(
        "--reference",
        default="breastmnist",
        help="The 2D dataset timed beside; `slices`: the 3D dataset's first-axis slices as a 2D "
        "npz (the same pixels, and a run as long as a third of the 3D one).",
    )
    parser.add_argument("--backbone", default="dinov2_small")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--random-init", action="store_true", help="A seeded random init.")
    parser.add_argument("--img-size", type=int, default=None)
    parser.add_argument("--data-root", default=None)
    parser.add_argument(
        "--slices",
        default=",".join((*AGGREGATIONS, *LEARNED)),
        help="Comma-separated aggregations to fit (attention: seed 0).",
    )
    parser.add_argument("--append", type=Path, default=None)
    args = parser.parse_args(argv)
    options = ExtractOptions(
        weights=args.weights, img_size=args.img_size, pretrained=not args.random_init
    )
    with tempfile.TemporaryDirectory() as tmp:
        where = {"data_root": args.data_root, "cache_root": Path(tmp) / "cache"}
        if args.reference == "slices":
            npz = slices_as_images(args.dataset, args.size, args.data_root, Path(tmp) / "flat.npz")
            task = get_dataset(args.dataset).task
            flat = extract(args.backbone, str(npz), task=task, options=options, **where)
        else:
            flat = extract(args.backbone, args.reference, options=options, **where)
        volumes = extract(args.backbone, args.dataset, size=args.size, options=options, **where)
        ratio = rate(volumes.path) / rate(flat.path)
        for axes in AXES:
            for how in args.slices.split(","):
                probe = ProbeOptions(axes=axes, slices=how)
                [result] = run_probe(
                    args.dataset,
                    size=args.size,
                    backbone=args.backbone,
                    options=probe,
                    out=Path(tmp) / "runs",
                    **where,
                )
                test, ci = result.metrics["test"], result.metrics["test"]["ci95"]
                emit(
                    f"| {date.today()} | {machine()} | {args.dataset}_{args.size} | "
                    f"{args.backbone} {args.img_size or ''} | {axes} | {how} | "
                    f"{test['auc']:.3f} [{ci['auc'][0]:.3f}, {ci['auc'][1]:.3f}] | "
                    f"{test['acc']:.3f} [{ci['acc'][0]:.3f}, {ci['acc'][1]:.3f}] | "
                    f"{rate(volumes.path):.0f} | {ratio:.2f} | "
                    f"`python -m benchmarks.volumes {' '.join(without_append(sys.argv[1:]))}` |",
                    args.append,
                    section=SECTION,
                )


if __name__ == "__main__":
    main()

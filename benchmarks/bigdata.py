"""Peak memory and throughput of `probe extract` and `finetune run` against a 224 px dataset's size.

    python -m benchmarks.bigdata --gb 0.3,3,10 [--work DIR]

Each size gets a synthetic MedMNIST-layout npz of 224 px RGB images (deflated, like MedMNIST's
files), written member by member without ever holding a split in memory. Then, as whole
processes, with tiny models (the point is the data path, not the network): `probe extract`
(streamed), `finetune run --epochs 1 --data-mode disk` (the uncompressed copy, read per batch) and,
for contrast, `finetune run --data-mode memory` (all splits in memory, what every run did before
issue #13) while it fits. Peak RSS is each process's `ru_maxrss`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from benchmarks.common import machine

IMAGE_BYTES = 224 * 224 * 3
SPLIT_SHARES = {"train": 0.7, "val": 0.1, "test": 0.2}


def write_npz(path: Path, gb: float, *, chunk: int = 512, seed: int = 0) -> int:
    """A compressed npz of ~`gb` GB of uint8 224 px RGB images and their labels.

    Returns the images.
    """
    rng = np.random.default_rng(seed)
    total = int(gb * 1e9 / IMAGE_BYTES)
    # renamed when whole: a killed run leaves no npz
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(
        partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1
    ) as archive:
        for split, share in SPLIT_SHARES.items():
            n = max(8, int(total * share))
            labels = rng.integers(0, 8, (n, 1)).astype(np.uint8)
            with archive.open(f"{split}_labels.npy", "w") as f:
                np.lib.format.write_array(f, labels)
            header = {"descr": "|u1", "fortran_order": False, "shape": (n, 224, 224, 3)}
            with archive.open(f"{split}_images.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_2_0(f, header)
                for start in range(0, n, chunk):
                    rows = labels[start : start + chunk, 0]
                    block = rng.integers(0, 30, (len(rows), 224, 224, 3), dtype=np.uint8)
                    block += (rows * 25)[:, None, None, None]
                    f.write(block.tobytes())
    partial.replace(path)
    return total


def measure(args: list[str], cwd: Path) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one whole process."""
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *args], cwd=cwd, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    kb, seconds = done.stdout.split()
    return int(kb) / 1024, float(seconds)


def run_size(gb: float, work: Path) -> list[str]:
    root = work / f"{gb:g}gb"
    root.mkdir(parents=True, exist_ok=True)
    npz = root / "bloodmnist.npz"
    n = write_npz(npz, gb) if not npz.exists() else int(gb * 1e9 / IMAGE_BYTES)
    common = [
        "--dataset",
        "bloodmnist",
        "--data-root",
        str(root),
        "--cache-root",
        str(root / "cache"),
    ]
    py = [sys.executable, "-m"]
    extract = [
        *py,
        "probe",
        "extract",
        "--backbone",
        "timm:test_vit",
        "--no-pretrained",
        "--img-size",
        "32",
        "--precision",
        "fp32",
        "--overwrite",
        *common,
    ]
    finetune = [
        *py,
        "finetune",
        "run",
        "--backbone",
        "timm:test_resnet",
        "--no-pretrained",
        "--img-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "128",
        "--precision",
        "fp32",
        *common,
    ]
    rows = []
    for label, args in (
        ("probe extract (streamed)", extract),
        (
            "finetune run --data-mode disk",
            [*finetune, "--data-mode", "disk", "--out", str(root / "disk")],
        ),
        (
            "finetune run --data-mode memory",
            [*finetune, "--data-mode", "memory", "--out", str(root / "mem")],
        ),
    ):
        if "memory" in label and gb * 1e9 * 1.3 > _available():
            rows.append(f"| {gb:g} GB ({n:,} images) | {label} | does not fit | | {machine()} |")
            continue
        peak, seconds = measure(args, Path(__file__).resolve().parents[1])
        rows.append(
            f"| {gb:g} GB ({n:,} images) | {label} | {peak:,.0f} MB | {n / seconds:,.0f} | "
            f"{machine()} |"
        )
        print(rows[-1], flush=True)
    return rows


def _available() -> int:
    from medprobe.data.disk_copy import available_memory

    return available_memory() or 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", default="0.3,3,10", help="Comma-separated dataset sizes in GB.")
    parser.add_argument(
        "--work", type=Path, default=None, help="Folder for the data [default: a temp dir]."
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="medprobe-bigdata-"))
    started = time.perf_counter()
    print(
        "| data (224 px, uncompressed) | command | peak RSS | images/s (whole process) | machine |"
    )
    print("| --- | --- | --- | --- | --- |")
    for gb in (float(g) for g in args.gb.split(",")):
        run_size(gb, work)
    print(f"({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()

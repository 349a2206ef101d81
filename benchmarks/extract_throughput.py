"""Extraction throughput: bare forward vs `probe extract` end to end vs the notebook path.

    python -m benchmarks.extract_throughput --backbone vit_tiny --images 2048

Each path runs in its own child process, so its peak memory (max RSS) is its own. Prints one
markdown row per backbone; `--append BENCHMARKS.md` also appends it there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from benchmarks import notebook
from benchmarks.common import emit, machine, without_append
from benchmarks.synthetic import write_npz
from cache.extract import extract
from cache.forward import FeatureRunner, default_batch_size
from cache.options import ExtractOptions
from medprobe.backbones.factory import create_backbone
from medprobe.backbones.registry import get_backbone
from medprobe.device import resolve_device, resolve_precision


def bare_forward(args) -> dict:
    """Model forward alone on preprocessed input already in memory (the ceiling)."""
    spec = get_backbone(args.backbone)
    device = resolve_device(args.device)
    model, cfg = create_backbone(spec, pretrained=False)
    model = model.to(device)
    args.batch_size = args.batch_size or default_batch_size(device)
    run = FeatureRunner(model, cfg, spec.family, device, resolve_precision(args.precision, device))
    x = torch.randn(args.batch_size, 3, cfg.input_size, cfg.input_size, device=device)
    run.forward(x)  # warm-up
    n_batches = max(1, args.images // args.batch_size)
    start = time.perf_counter()
    for _ in range(n_batches):
        run.forward(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"images": n_batches * args.batch_size, "seconds": time.perf_counter() - start}


def end_to_end(args) -> dict:
    """`probe extract`: npz on disk -> complete cache entry on disk, timed as a whole."""
    start = time.perf_counter()
    result = extract(
        args.backbone,
        "bloodmnist",
        data_root=args.data_root,
        cache_root=args.cache_root,
        progress=False,
        options=ExtractOptions(
            weights=args.weights,
            pretrained=args.weights is not None,
            batch_size=args.batch_size,
            precision=args.precision,
            device=args.device,
            overwrite=True,
        ),
    )
    seconds = time.perf_counter() - start
    n = sum(
        len(v) for k, v in np.load(Path(args.data_root) / "bloodmnist.npz").items() if "labels" in k
    )
    return {"images": n, "seconds": seconds, "path": str(result.path)}


def notebook_path(args) -> dict:
    """PIL + timm eval transform + DataLoader(128, 2 workers), fp32, over the train split."""
    model, cfg = create_backbone(args.backbone, pretrained=False)
    model = model.to(notebook.DEVICE)
    with np.load(Path(args.data_root) / "bloodmnist.npz") as npz:
        images, labels = npz["train_images"][: args.notebook_images], npz["train_labels"]
    start = time.perf_counter()
    feats, _ = notebook.frozen_features(
        model, notebook.loader(model, images, labels, input_size=cfg.input_size)
    )
    if notebook.DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return {"images": len(feats), "seconds": time.perf_counter() - start}


MODES = {"bare": bare_forward, "e2e": end_to_end, "notebook": notebook_path}


def run_child(mode: str, argv: list[str]) -> dict:
    """Run one mode in a fresh process; returns its figures plus its peak RSS."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.extract_throughput", "--child", mode, *argv],
        stdout=subprocess.PIPE,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"{mode} failed with status {status}")
    figures = json.loads(out.decode().strip().splitlines()[-1])
    return figures | {
        "peak_rss_gb": usage.ru_maxrss / 2**20,
        "rate": figures["images"] / figures["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="vit_tiny")
    parser.add_argument("--images", type=int, default=2048, help="images through bare and e2e")
    parser.add_argument("--notebook-images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=None, help="default: probe extract's")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--append", type=Path, default=None, help="append the row to this markdown file"
    )
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--data-root", help=argparse.SUPPRESS)
    parser.add_argument("--cache-root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(MODES[args.child](args)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        n = args.images
        write_npz(
            Path(tmp) / "bloodmnist.npz", n_train=n * 7 // 10, n_val=n // 10, n_test=n - n * 8 // 10
        )
        argv = without_append(sys.argv[1:])
        argv += ["--data-root", tmp, "--cache-root", str(Path(tmp) / "cache")]
        results = {mode: run_child(mode, argv) for mode in MODES}
    dataset_gb = n * 28 * 28 * 3 / 2**30
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    args.batch_size = args.batch_size or default_batch_size(device)
    command = " ".join(["python -m benchmarks.extract_throughput", *without_append(sys.argv[1:])])
    row = (
        f"| {date.today()} | {machine()} | {args.backbone} | {precision} | {args.batch_size} | "
        f"{results['bare']['rate']:.1f} | {results['e2e']['rate']:.1f} | "
        f"{results['notebook']['rate']:.1f} | "
        f"{results['e2e']['rate'] / results['bare']['rate']:.2f} | "
        f"{results['e2e']['rate'] / results['notebook']['rate']:.2f} | "
        f"{results['e2e']['peak_rss_gb']:.2f} (data {dataset_gb:.3f}) | `{command}` |"
    )
    print(json.dumps(results, indent=2))
    emit(row, args.append)


if __name__ == "__main__":
    main()

"""Training throughput: `finetune run` against the same model fed by the notebook path.

    python -m benchmarks.finetune_throughput --model resnet18 --images 2048
    python -m benchmarks.finetune_throughput --model vit_tiny --images 512

medprobe: uint8 tensors in memory, augmentation and resizing on the device, bf16 autocast where
supported. Notebook: PIL images through timm's transform to the same input size, DataLoader
(batch 128, 2 workers), fp32, the same AdamW. One epoch of training each, images/s.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import timm.optim
import torch
import torch.nn.functional as F

from benchmarks import notebook
from benchmarks.common import machine
from benchmarks.synthetic import write_npz
from finetune.config import TrainConfig
from finetune.train import train
from medprobe.backbones.factory import create_backbone
from medprobe.backbones.registry import get_backbone


def medprobe_rate(model: str, data_root: str, out: str, img_size: int | None, **options) -> float:
    """Images/s of `finetune run`'s training phase.

    Of the last epoch when there are several (so that --compile's first epoch, which compiles, is
    left out).
    """
    cfg = TrainConfig(
        model=model,
        pretrained=False,
        dataset="bloodmnist",
        data_root=data_root,
        img_size=img_size,
        out=out,
        **options,
    )
    run = train(cfg)
    history = json.loads((Path(out) / run.run_name / "history.json").read_text())
    return (
        history[-1]["train_images_per_s"] if len(history) > 1 else run.timings["train_images_per_s"]
    )


def notebook_rate(model_name: str, data_root: str, img_size: int) -> float:
    model, _ = create_backbone(model_name, pretrained=False, num_classes=8, img_size=img_size)
    model = model.to(notebook.DEVICE)
    optimizer = timm.optim.create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=1e-5)
    with np.load(Path(data_root) / "bloodmnist.npz") as npz:
        images, labels = npz["train_images"], npz["train_labels"]
    batches = notebook.loader(model, images, labels, input_size=img_size, shuffle=True)
    model.train()
    start = time.perf_counter()
    for x, y in batches:
        x, y = x.to(notebook.DEVICE), y.to(notebook.DEVICE)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if notebook.DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument(
        "--batch-size", type=int, default=128, help="medprobe's (the notebook's is 128)"
    )
    parser.add_argument("--epochs", type=int, default=1, help="> 1: the last epoch's rate")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--no-notebook", dest="notebook", action="store_false", help="medprobe only"
    )
    args = parser.parse_args()
    spec = get_backbone(args.model)
    # As `finetune run` defaults: a CNN from scratch at the data's 28 px, a ViT at its native size.
    img_size = 28 if spec.family == "cnn" else (spec.img_size or 224)
    with tempfile.TemporaryDirectory() as tmp:
        write_npz(Path(tmp) / "bloodmnist.npz", n_train=args.images, n_val=64, n_test=64)
        options = dict(batch_size=args.batch_size, epochs=args.epochs, compile=args.compile)
        ours = medprobe_rate(args.model, tmp, str(Path(tmp) / "runs"), img_size, **options)
        baseline = notebook_rate(args.model, tmp, img_size) if args.notebook else math.nan
    command = " ".join(["python -m benchmarks.finetune_throughput", *sys.argv[1:]])
    print(json.dumps({"medprobe_img_s": ours, "notebook_img_s": baseline}))
    print(
        f"| {date.today()} | {machine()} | {args.model} @ {img_size} px, batch {args.batch_size}"
        f"{', compiled' if args.compile else ''} | {ours:.1f} | {baseline:.1f} "
        f"| {ours / baseline:.2f} | `{command}` |"
    )


if __name__ == "__main__":
    main()

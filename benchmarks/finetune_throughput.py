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
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import timm.optim
import torch.nn.functional as F

from benchmarks import notebook
from benchmarks.common import machine
from benchmarks.synthetic import write_npz
from finetune.train import TrainConfig, train
from medprobe.backbones import create_backbone
from medprobe.registry import get_backbone


def medprobe_rate(model: str, data_root: str, out: str, img_size: int | None) -> float:
    cfg = TrainConfig(
        model=model,
        pretrained=False,
        dataset="bloodmnist",
        data_root=data_root,
        epochs=1,
        img_size=img_size,
        out=out,
    )
    return train(cfg).timings["train_images_per_s"]


def notebook_rate(model_name: str, data_root: str, img_size: int) -> float:
    model, _ = create_backbone(model_name, pretrained=False, num_classes=8, img_size=img_size)
    optimizer = timm.optim.create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=1e-5)
    with np.load(Path(data_root) / "bloodmnist.npz") as npz:
        images, labels = npz["train_images"], npz["train_labels"]
    batches = notebook.loader(model, images, labels, input_size=img_size, shuffle=True)
    model.train()
    start = time.perf_counter()
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=2048)
    args = parser.parse_args()
    spec = get_backbone(args.model)
    # As `finetune run` defaults: a CNN from scratch at the data's 28 px, a ViT at its native size.
    img_size = 28 if spec.family == "cnn" else (spec.img_size or 224)
    with tempfile.TemporaryDirectory() as tmp:
        write_npz(Path(tmp) / "bloodmnist.npz", n_train=args.images, n_val=64, n_test=64)
        ours = medprobe_rate(args.model, tmp, str(Path(tmp) / "runs"), img_size)
        baseline = notebook_rate(args.model, tmp, img_size)
    command = " ".join(["python -m benchmarks.finetune_throughput", *sys.argv[1:]])
    print(json.dumps({"medprobe_img_s": ours, "notebook_img_s": baseline}))
    print(
        f"| {date.today()} | {machine()} | {args.model} @ {img_size} px | {ours:.1f} | {baseline:.1f} "
        f"| {ours / baseline:.2f} | `{command}` |"
    )


if __name__ == "__main__":
    main()

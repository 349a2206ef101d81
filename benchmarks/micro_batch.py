"""Training in micro-batches: speed and peak memory of one batch's step, whole or in parts.

    python -m benchmarks.micro_batch --backbone dinov2_small --batch-size 128 --micro-batches 128 32

Each micro-batch size runs in a fresh process (so its peak memory is its own): a random-init
network at the model's native input size, the same AdamW step `finetune run` takes, `--steps`
batches of random uint8 images, the last one timed. Peak memory is the process's peak resident set
on the CPU, the peak allocated memory on a GPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import date

import torch

from benchmarks.common import machine
from finetune.steps import TrainSteps
from medprobe.backbones.factory import create_backbone
from medprobe.backbones.registry import get_backbone
from medprobe.device import resolve_device, resolve_precision
from medprobe.outputs import TaskLoss


def step_rate(
    backbone: str, img_size: int | None, batch_size: int, micro_batch: int, steps: int
) -> dict:
    """Images/s of the last of `steps` training steps, and the peak memory in GiB."""
    device = resolve_device(None)
    model, pcfg = create_backbone(
        get_backbone(backbone), pretrained=False, num_classes=2, img_size=img_size
    )
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    precision = resolve_precision("auto", device)
    steps_ = TrainSteps(
        net=model,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=TaskLoss("multi-class"),
        pcfg=pcfg,
        channels_last=False,
        device=device,
        precision=precision,
        flips="none",
        micro_batch=micro_batch,
    )
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        images = torch.randint(
            0, 256, (batch_size, 28, 28, 3), dtype=torch.uint8, generator=generator
        )
        labels = torch.randint(0, 2, (batch_size,), generator=generator)
        started = time.perf_counter()
        float(steps_.step(images.to(device), labels.to(device), None))  # waits for the step
        seconds = time.perf_counter() - started
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return {
        "img_s": batch_size / seconds,
        "peak_gib": peak,
        "input": pcfg.input_size,
        "precision": precision,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="dinov2_small")
    parser.add_argument("--img-size", type=int, help="input size [default: the model's]")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[128, 32])
    parser.add_argument("--steps", type=int, default=2, help="the last one is timed")
    # one micro-batch size, as JSON
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(
                step_rate(args.backbone, args.img_size, args.batch_size, args.child, args.steps)
            )
        )
        return
    command = " ".join(["python -m benchmarks.micro_batch", *sys.argv[1:]])
    for micro in args.micro_batches:
        child = [
            sys.executable,
            "-m",
            "benchmarks.micro_batch",
            *sys.argv[1:],
            "--child",
            str(micro),
        ]
        done = subprocess.run(child, capture_output=True, text=True, check=True)
        got = json.loads(done.stdout.strip().splitlines()[-1])
        network = f"{args.backbone} @ {got['input']} px, {got['precision']}"
        figures = [f"{got['img_s']:.2f}", f"{got['peak_gib']:.1f}"]
        cells = [date.today(), machine(), network, args.batch_size, micro, *figures, f"`{command}`"]
        print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()

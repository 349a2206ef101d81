"""How far each augmentation moves a frozen backbone's head input, and what that costs its probe.

    python -m benchmarks.augment_shift --backbone dinov2_small \
        --weights ../shared/weights/dinov2_vits14.safetensors --dataset breastmnist \
        --data-root ../shared/data --n 48

Fits the logistic-regression probe on the clean cached features of the network's head input (what
`finetune run --init-head probe` starts from, without augmented passes), then, for the first n train
and n test images, prints one row per augmentation: the mean relative change of the head input and
the probe's cross-entropy and accuracy. The augmentations are `finetune.augment`'s, one part at a
time at its largest draw, then random draws as training makes them.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

import torch
import torch.nn.functional as F

from benchmarks.common import machine
from finetune.augment import N_DRAWS, augment, draw_params
from finetune.build import build_model
from finetune.config import TrainConfig
from medprobe.backbones.registry import get_backbone
from medprobe.data import get_dataset
from medprobe.data.splits import open_split
from suite.lpft import head_input, probe_head

IDENTITY = 0.5  # the draw of no rotation, scale or shift (flips: a draw below 0.5 flips)
# name -> (draw column set to 0: flip / 1: largest affine, flips allowed)
PARTS = {
    "none": ({}, "none"),
    "flip left-right": ({0: 0.0}, "h"),
    "flip up-down": ({1: 0.0}, "v"),
    "rotate 10 degrees": ({2: 1.0}, "none"),
    "scale +5%": ({3: 1.0}, "none"),
    "shift 5%": ({4: 1.0}, "none"),
}


def variants(n: int, dataset_flips: str) -> dict[str, tuple[torch.Tensor, str]]:
    """Name -> (draws, flips) for every part alone, then random draws as training makes them."""
    out = {}
    for name, (columns, flips) in PARTS.items():
        draws = torch.full((n, N_DRAWS), IDENTITY)
        draws[:, :2] = 1.0  # no flip unless asked
        for column, value in columns.items():
            draws[:, column] = value
        out[name] = (draws, flips)
    random = draw_params(n, torch.Generator().manual_seed(0))
    out[f"random, flips {dataset_flips}"] = (random, dataset_flips)
    out["random, flips hv"] = (random, "hv")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="dinov2_small")
    parser.add_argument("--weights")
    parser.add_argument("--no-pretrained", action="store_true", help="random init (for tests)")
    parser.add_argument("--img-size", type=int, help="input size [default: the model's]")
    parser.add_argument("--dataset", default="breastmnist")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--data-root")
    parser.add_argument("--cache-root")
    parser.add_argument("--n", type=int, default=48)
    args = parser.parse_args()
    network = dict(model=args.backbone, weights=args.weights, img_size=args.img_size)
    data = dict(
        dataset=args.dataset, size=args.size, data_root=args.data_root, cache_root=args.cache_root
    )
    pretrained = False if args.no_pretrained else None
    cfg = TrainConfig(
        **network,
        **data,
        pretrained=pretrained,
        augment="none",
        init_head="probe",
        precision="fp32",
    )
    spec, dspec = get_backbone(cfg.model), get_dataset(cfg.dataset)
    model, pcfg, _ = build_model(cfg, spec, dspec, probe_head)
    model.eval()
    command = " ".join(["python -m benchmarks.augment_shift", *sys.argv[1:]])
    for split in ("train", "test"):
        source = open_split(dspec, split, size=cfg.size, root=cfg.data_root)
        images = torch.from_numpy(source.head(args.n))
        labels = torch.from_numpy(source.labels[: len(images)]).reshape(-1).long()
        clean = None
        for name, (draws, flips) in variants(len(images), dspec.flips).items():
            with torch.inference_mode():
                features = head_input(model, augment(images, draws, flips=flips), pcfg)
                logits = model.get_classifier()(features)
            clean = features if clean is None else clean
            change = float(((features - clean).norm(dim=1) / clean.norm(dim=1)).mean())
            loss = float(F.cross_entropy(logits, labels))
            acc = float((logits.argmax(1) == labels).float().mean())
            cells = [
                date.today(),
                machine(),
                spec.name,
                f"{dspec.flag} {split} ({len(images)})",
                name,
                f"{change:.2f}",
                f"{loss:.3f}",
                f"{acc:.3f}",
                f"`{command}`",
            ]
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()

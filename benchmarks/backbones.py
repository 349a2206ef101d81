"""Extraction speed and cost of each backbone from its card, beside timm's DINOv2-S (issue #30).

    python -m benchmarks.backbones                       # every default backbone, ~3 min on 2 cores
    python -m benchmarks.backbones --names dinov2_small,rad_dino --seconds 5 --append BENCHMARKS.md

Speed is the extraction forward (`cache.forward.FeatureRunner`: every feature kind, the precision
"auto" picks) on batches of preprocessed images at the backbone's input size, timed after one
warm-up batch for at least `--seconds`. Params and GFLOPs are the backbone's card
(`medprobe.backbones.cards`). The hub models cannot be downloaded here, so each runs as a stand-in:
its architecture as its hub config gives it (`STAND_INS`), random weights; speed and cost do not
depend on the weights' values. Prints one markdown row per backbone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from benchmarks.common import emit, machine, without_append
from cache.forward import FeatureRunner, default_batch_size
from medprobe.backbones.cards import backbone_card
from medprobe.backbones.factory import create_backbone
from medprobe.backbones.registry import get_backbone
from medprobe.device import resolve_device, resolve_precision

NAMES = "dinov2_small,dinov3_small,vit_base,rad_dino,biomedclip,siglip2_base,medsiglip"
SECTION = "## Backbones: extraction speed and cost per image"

# The architectures of the hub models (their config.json / open_clip_config.json), for stand-ins.
STAND_INS = {
    # microsoft/rad-dino: DINOv2 ViT-B/14 (config as facebook/dinov2-base: 518 px position grid)
    "rad_dino": ("hf", {"model_type": "dinov2", "image_size": 518, "patch_size": 14}),
    # google/siglip2-base-patch16-224: SigLIP's ViT-B/16 at 224 (the vision config's defaults)
    "siglip2_base": ("hf", {"model_type": "siglip_vision_model"}),
    # google/medsiglip-448: SigLIP's So400m/14 at 448
    "medsiglip": (
        "hf",
        {
            "model_type": "siglip_vision_model",
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": 27,
            "num_attention_heads": 16,
            "patch_size": 14,
            "image_size": 448,
        },
    ),
    # microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224: timm's ViT-B/16 as the image tower
    "biomedclip": (
        "open_clip",
        {
            "embed_dim": 512,
            "vision_cfg": {
                "timm_model_name": "vit_base_patch16_224",
                "timm_model_pretrained": False,
                "timm_pool": "",
                "timm_proj": "linear",
                "image_size": 224,
            },
        },
    ),
}


def stand_in(name: str, folder: Path) -> str:
    """A saved random-weights copy of a hub model's architecture; its `hf:`/`open_clip:` name."""
    source, config = STAND_INS[name]
    folder.mkdir(parents=True)
    if source == "hf":
        import transformers

        transformers.AutoModel.from_config(
            transformers.AutoConfig.for_model(**config)
        ).save_pretrained(folder)
        return f"hf:{folder}"
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    return f"open_clip:{folder}"


def measure(name: str, args, folder: Path) -> dict:
    """One backbone's card and extraction images per second."""
    spec = get_backbone(name)
    runs_as = stand_in(name, folder / name) if name in STAND_INS else name
    model, pcfg = create_backbone(runs_as, pretrained=False, img_size=spec.img_size)
    card = backbone_card(runs_as, img_size=spec.img_size)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    run = FeatureRunner(model.to(device), pcfg, spec.family, device, precision)
    batch = args.batch_size or default_batch_size(device)
    x = torch.randn(batch, 3, pcfg.input_size, pcfg.input_size, device=device)
    run.forward(x)  # warm-up
    done, start = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - start < args.seconds:
        run.forward(x)
        done += batch
    if device.type == "cuda":
        torch.cuda.synchronize()
    return card | {"img_per_s": done / (time.perf_counter() - start), "precision": precision}


def row(name: str, result: dict, reference: float) -> str:
    stand = " (stand-in)" if name in STAND_INS else ""
    dims = result["feature_dims"]
    return (
        f"| {date.today()} | {machine()} | {name}{stand} | {result['source']} | "
        f"{result['input_size']} | {result['params_m']:.1f} | {result['gflops']:.2f} | "
        f"{dims['cls']} / {dims['last4']} | {result['precision']} | {result['img_per_s']:.1f} | "
        f"{result['img_per_s'] / reference:.2f}x | "
        f"`python -m benchmarks.backbones {' '.join(without_append(sys.argv[1:]))}`".rstrip()
        + " |"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", default=NAMES, help="Comma-separated; DINOv2-S is the 1.00x.")
    parser.add_argument("--seconds", type=float, default=15.0, help="Timed seconds per backbone.")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default=None, help="Default: the GPU if any, else the CPU.")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--append", type=Path, default=None)
    args = parser.parse_args(argv)
    names = args.names.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: measure(name, args, Path(tmp)) for name in names}
    reference = results.get("dinov2_small", next(iter(results.values())))["img_per_s"]
    for name, result in results.items():
        emit(row(name, result, reference), args.append, section=SECTION)


if __name__ == "__main__":
    main()

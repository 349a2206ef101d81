"""The backbone registry.

Named timm models, the features they yield and how they are run and fed, importable without torch.

`medprobe.backbones.factory` builds the models; this module only names them, so listing backbones
and checking a suite's recipe cost no import of torch or timm (only `timm:<model>` names load timm,
to check them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from medprobe.errors import WeightsError, did_you_mean

# What extraction writes per family. `last4` is DINOv2's linear-evaluation input: the class tokens
# of
# the last 4 blocks, then the mean patch token, concatenated (facebookresearch/dinov2,
# dinov2/eval/linear.py, `create_linear_input`); written in the same pass, fitted only when asked.
# How a backbone is run and fed: the words --precision and --resize take (`medprobe.device` and
# `medprobe.backbones.preprocess` act on them; listed here, without torch, for the CLIs' help).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
RESIZE_MODES = ("bicubic", "bilinear", "nearest", "pad")

VIT_FEATURES = ("cls", "mean", "last4")
CNN_FEATURES = ("pool",)
EXTRA_KINDS = ("last4",)
LAST_BLOCKS = 4


def default_kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The kinds a probe fits unless `--features` says otherwise.

    All an entry holds but the extras.
    """
    return tuple(k for k in kinds if k not in EXTRA_KINDS)


@dataclass(frozen=True)
class About:
    """What a named backbone's card says besides what is measured: where it comes from."""

    pretraining: str  # the data its weights were trained on
    medical: bool  # whether that data is medical
    licence: str
    gated: bool  # whether the hub asks users to accept terms before downloading
    page: str  # its model page


@dataclass(frozen=True)
class BackboneSpec:
    """A named backbone: the model it builds, from which library, and how it is fed and read.

    `img_size` overrides the model's native input size (DINOv2 is run at 224, not 518);
    None keeps the library's default.
    """

    name: str
    model_id: str  # timm's name, or `hf:<repo>` / `open_clip:<model>[:<tag>]`
    family: str  # "vit" or "cnn"
    img_size: int | None = None
    source: str = "timm"  # or "hf" (`medprobe.backbones.hf`), "open_clip" (`.openclip`)
    about: About | None = None

    @property
    def features(self) -> tuple[str, ...]:
        """The feature kinds this backbone's entries hold."""
        return VIT_FEATURES if self.family == "vit" else CNN_FEATURES


def _timm_page(model_id: str) -> str:
    return f"https://huggingface.co/timm/{model_id}"


IN1K = About("ImageNet-1k", False, "Apache-2.0", False, "")
IN21K = About("ImageNet-21k (AugReg)", False, "Apache-2.0", False, "")
LVD142M = About("LVD-142M (curated web images, self-supervised)", False, "Apache-2.0", False, "")
LVD1689M = About("LVD-1689M (web images, self-supervised)", False, "DINOv3 License", False, "")


def _timm(name: str, model_id: str, family: str, about: About, **kwargs) -> BackboneSpec:
    return BackboneSpec(
        name, model_id, family, about=replace(about, page=_timm_page(model_id)), **kwargs
    )


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        _timm("resnet18", "resnet18.a1_in1k", "cnn", IN1K),
        _timm("resnet50", "resnet50.a1_in1k", "cnn", IN1K),
        _timm("efficientnet_lite0", "tf_efficientnet_lite0.in1k", "cnn", IN1K),
        _timm("vit_tiny", "vit_tiny_patch16_224.augreg_in21k", "vit", IN21K),
        _timm("vit_small", "vit_small_patch16_224.augreg_in21k", "vit", IN21K),
        _timm("vit_base", "vit_base_patch16_224.augreg_in21k", "vit", IN21K),
        _timm("dinov2_small", "vit_small_patch14_dinov2.lvd142m", "vit", LVD142M, img_size=224),
        _timm("dinov2_base", "vit_base_patch14_dinov2.lvd142m", "vit", LVD142M, img_size=224),
        # DINOv3's native 256 px lowered to 224 like DINOv2's 518: above MedMNIST+'s largest size
        _timm("dinov3_small", "vit_small_patch16_dinov3.lvd1689m", "vit", LVD1689M, img_size=224),
        _timm("dinov3_base", "vit_base_patch16_dinov3.lvd1689m", "vit", LVD1689M, img_size=224),
        # The field's foundation models, from their own libraries (optional extras).
        BackboneSpec(
            "rad_dino",
            "hf:microsoft/rad-dino",
            "vit",
            img_size=224,  # trained at 518; run at 224 like DINOv2, above MedMNIST+'s largest
            source="hf",
            about=About(
                "chest X-rays (DINOv2 continued on public and private CXR collections)",
                True,
                "MIT",
                False,
                "https://huggingface.co/microsoft/rad-dino",
            ),
        ),
        BackboneSpec(
            "biomedclip",
            "open_clip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
            "vit",
            source="open_clip",
            about=About(
                "PMC-15M (15M figure-caption pairs from PubMed Central)",
                True,
                "MIT",
                False,
                "https://huggingface.co/microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
            ),
        ),
        BackboneSpec(
            "siglip2_base",
            "hf:google/siglip2-base-patch16-224",
            "vit",
            source="hf",
            about=About(
                "WebLI (web image-text pairs)",
                False,
                "Apache-2.0",
                False,
                "https://huggingface.co/google/siglip2-base-patch16-224",
            ),
        ),
        BackboneSpec(
            "medsiglip",
            "hf:google/medsiglip-448",
            "vit",
            source="hf",
            about=About(
                "medical image-text pairs (chest X-ray, dermatology, ophthalmology, pathology, "
                "CT and MRI slices) with natural ones",
                True,
                "Health AI Developer Foundations terms of use",
                True,
                "https://huggingface.co/google/medsiglip-448",
            ),
        ),
    )
}

TIMM_PREFIX = "timm:"
HF_PREFIX = "hf:"
OPEN_CLIP_PREFIX = "open_clip:"


def get_backbone(name: str) -> BackboneSpec:
    """Look up a registered backbone, or wrap any timm model given as `timm:<model_name>`."""
    if name in BACKBONES:
        return BACKBONES[name]
    for prefix, source in ((HF_PREFIX, "hf"), (OPEN_CLIP_PREFIX, "open_clip")):
        if name.startswith(prefix) and len(name) > len(prefix):
            return BackboneSpec(name, name, "vit", source=source)  # its config says the rest
    if name.startswith(TIMM_PREFIX):
        import timm  # only here: a registered name needs no timm

        model_id = name[len(TIMM_PREFIX) :]
        if not timm.is_model(model_id):
            raise ValueError(f"timm has no model {model_id!r} (see timm.list_models())")
        return BackboneSpec(name, model_id, _family_of(model_id))
    raise ValueError(
        f"unknown backbone {name!r}; {did_you_mean(name, BACKBONES)}choose one of "
        f"{', '.join(BACKBONES)}, timm:<model_name>, hf:<repo id or saved folder> or "
        "open_clip:<model>[:<pretrained tag>]"
    )


def _family_of(model_id: str) -> str:
    import timm
    import torch

    with torch.device("meta"):  # build the module tree only; no memory, no init cost
        model = timm.create_model(model_id, pretrained=False, num_classes=0)
    return "vit" if hasattr(model, "num_prefix_tokens") else "cnn"


def check_weights_file(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Refuse a `--weights` path that is not a file (an `hf:` model's: a folder); light."""
    if folder and Path(path).is_dir():
        return
    if not Path(path).is_file():
        what = "a .safetensors/.pth file" + (" or a saved model's folder" if folder else "")
        raise WeightsError(f"weights file {path} does not exist; give {what}")

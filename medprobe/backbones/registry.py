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
    # or "hf" (`medprobe.backbones.hf`), "open_clip" (`.openclip`), "medprobe" (`.volumes`)
    source: str = "timm"
    about: About | None = None
    conv: str | None = None  # a network for volumes: its convolutions ("3d", "2.5d", "acs")

    @property
    def volumetric(self) -> bool:
        """Whether the network takes volumes (N, D, H, W), not images: a 3D dataset's."""
        return self.conv is not None

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
# How a volume network's 2D convolutions become 3D (`medprobe.backbones.volumes`).
VOLUME_CONVS = ("3d", "2.5d", "acs")
VOLUMES = About(
    "none: trained from scratch on volumes (MedMNIST v2's ResNet-18 + 3D / 2.5D / ACS)",
    False,
    "n/a: no pretrained weights",
    False,
    "https://github.com/MedMNIST/experiments/tree/main/MedMNIST3D",
)


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
        # MedMNIST v2's 3D baselines, trained from scratch on volumes (`.volumes`).
        *(
            BackboneSpec(
                f"resnet18_{conv}",
                "resnet18",
                "cnn",
                source="medprobe",
                conv=conv,
                about=VOLUMES,
            )
            for conv in VOLUME_CONVS
        ),
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


def check_pairing(spec: BackboneSpec, *, dataset: str, volumes: bool, training: bool) -> None:
    """Refuse a backbone that cannot run on `dataset` the way asked, naming what can.

    Networks for volumes train on 3D datasets only, and never extract frozen features; a 3D
    dataset fine-tunes a network for volumes and probes a 2D backbone on its slices.
    """
    three_d = ", ".join(n for n, s in BACKBONES.items() if s.volumetric)
    if spec.volumetric and not training:
        raise ValueError(
            f"{spec.name} is a network for volumes that trains from scratch (`finetune run "
            f"--backbone {spec.name}`); probe a 2D backbone (e.g. dinov2_small), which a 3D "
            "dataset's slices go through"
        )
    if spec.volumetric and not volumes:
        raise ValueError(
            f"{spec.name} trains on volumes and {dataset} is a 2D dataset; use a 2D backbone "
            "(e.g. resnet18) or a 3D dataset"
        )
    if training and volumes and not spec.volumetric:
        raise ValueError(
            f"{dataset} is a 3D dataset: train a network for volumes ({three_d}), or probe "
            f"{spec.name} on its slices with `probe fit --extract --backbone {spec.name} "
            f"--dataset {dataset}`"
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

"""The backbone registry.

Named timm models, the features they yield and how they are run and fed, importable without torch.

`medprobe.backbones.factory` builds the models; this module only names them, so listing backbones
and checking a suite's recipe cost no import of torch or timm (only `timm:<model>` names load timm,
to check them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
class BackboneSpec:
    """A named backbone: the timm model it builds and how it is fed and read.

    `img_size` overrides the model's native input size (DINOv2 is run at 224, not 518);
    None keeps timm's default.
    """

    name: str
    model_id: str
    family: str  # "vit" or "cnn"
    img_size: int | None = None

    @property
    def features(self) -> tuple[str, ...]:
        """The feature kinds this backbone's entries hold."""
        return VIT_FEATURES if self.family == "vit" else CNN_FEATURES


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("resnet18", "resnet18.a1_in1k", "cnn"),
        BackboneSpec("resnet50", "resnet50.a1_in1k", "cnn"),
        BackboneSpec("efficientnet_lite0", "tf_efficientnet_lite0.in1k", "cnn"),
        BackboneSpec("vit_tiny", "vit_tiny_patch16_224.augreg_in21k", "vit"),
        BackboneSpec("vit_small", "vit_small_patch16_224.augreg_in21k", "vit"),
        BackboneSpec("vit_base", "vit_base_patch16_224.augreg_in21k", "vit"),
        BackboneSpec("dinov2_small", "vit_small_patch14_dinov2.lvd142m", "vit", img_size=224),
        BackboneSpec("dinov2_base", "vit_base_patch14_dinov2.lvd142m", "vit", img_size=224),
    )
}

TIMM_PREFIX = "timm:"


def get_backbone(name: str) -> BackboneSpec:
    """Look up a registered backbone, or wrap any timm model given as `timm:<model_name>`."""
    if name in BACKBONES:
        return BACKBONES[name]
    if name.startswith(TIMM_PREFIX):
        import timm  # only here: a registered name needs no timm

        model_id = name[len(TIMM_PREFIX) :]
        if not timm.is_model(model_id):
            raise ValueError(f"timm has no model {model_id!r} (see timm.list_models())")
        return BackboneSpec(name, model_id, _family_of(model_id))
    raise ValueError(
        f"unknown backbone {name!r}; {did_you_mean(name, BACKBONES)}choose one of "
        f"{', '.join(BACKBONES)} or timm:<model_name>"
    )


def _family_of(model_id: str) -> str:
    import timm
    import torch

    with torch.device("meta"):  # build the module tree only; no memory, no init cost
        model = timm.create_model(model_id, pretrained=False, num_classes=0)
    return "vit" if hasattr(model, "num_prefix_tokens") else "cnn"


def check_weights_file(path: str | os.PathLike) -> None:
    """Refuse a `--weights` path that is not a file (light: before torch loads)."""
    if not Path(path).is_file():
        raise WeightsError(f"weights file {path} does not exist; give a .safetensors/.pth file")

"""The backbone factory.

Registry models built by timm, their preprocessing and the features they yield.

The names live in `medprobe.backbones.registry`, which lists them without importing torch.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import timm
import torch
from timm.data import resolve_model_data_config

from medprobe.backbones import hf, volumes
from medprobe.backbones.hub import offline_if_unreachable
from medprobe.backbones.preprocess import PreprocessConfig
from medprobe.backbones.registry import LAST_BLOCKS, BackboneSpec, get_backbone
from medprobe.backbones.towers import TokenEncoder
from medprobe.backbones.weights import load_local_weights, model_from_file
from medprobe.errors import UserError

log = logging.getLogger(__name__)

RANDOM_INIT_SEED = 0


class WeightsUnavailableError(UserError, RuntimeError):
    """Pretrained weights could not be fetched (offline hub) or read from a local file."""


def create_backbone(
    name: str | BackboneSpec,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    img_size: int | None = None,
    resize: str = "bicubic",
    num_classes: int = 0,
    init_seed: int = RANDOM_INIT_SEED,
    drop_path: float = 0.0,
) -> tuple[torch.nn.Module, PreprocessConfig]:
    """Build a headless backbone in eval mode and the preprocessing its weights expect.

    Args:
        name: a registry key, `timm:<model>`, or a spec.
        pretrained: load hub weights (ignored when `weights` is given); False gives a random
            init from a fixed seed, the same model every time.
        weights: a local .safetensors / .pth file in the timm layout of the model; it must cover
            every parameter but the classifier (`medprobe.backbones.weights.load_local_weights`).
        img_size: input size override; defaults to the spec's, else timm's.
        resize: how stored images reach the input size (see
            `medprobe.backbones.registry.RESIZE_MODES`).
        num_classes: 0 for a headless feature extractor; else a fresh classifier head of that size.
        init_seed: seeds whatever is initialised at random (all of a random-init model, a fresh
            head), so the same seed builds the same model.
        drop_path: stochastic depth rate for training (timm's `drop_path_rate`); 0 leaves it off.

    Returns:
        (model, preprocess config). With num_classes=0 the model outputs features, not logits.
    """
    spec = get_backbone(name) if isinstance(name, str) else name
    if spec.volumetric:
        return volumes.create(
            spec,
            pretrained=pretrained,
            weights=weights,
            side=img_size,
            num_classes=num_classes,
            seed=init_seed,
        )
    if spec.source != "timm":
        return _create_other(
            spec, pretrained, weights, img_size, resize, num_classes, init_seed, drop_path
        )
    size, kwargs = _input_size(spec, img_size)
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    model = None
    if weights is not None and not num_classes:  # no random init only to be overwritten
        model = model_from_file(spec.model_id, weights, name=spec.name, **kwargs)
    if model is None:
        with torch.random.fork_rng():
            torch.manual_seed(init_seed)
            # Headless first, then the head: a random-init backbone is the same network whatever
            # head it gets (and so the one a cache entry of that seed holds).
            hub = pretrained and weights is None
            model = _create(spec, pretrained=hub, num_classes=0, **kwargs)
            if num_classes:
                model.reset_classifier(num_classes)
        if weights is not None:
            load_local_weights(model, weights, name=spec.name)
    return model.eval(), _preprocess_of(model, size, resize)


def preprocess_config(
    name: str | BackboneSpec,
    *,
    img_size: int | None = None,
    resize: str = "bicubic",
    weights: str | os.PathLike | None = None,
) -> PreprocessConfig:
    """The preprocessing `create_backbone` would return, without loading any weights.

    The module tree is built on the meta device (no memory, no download), so a cache key can be
    computed, and a cached entry reused, offline and instantly (an `hf:` model: from its
    processor config, in `weights` or its folder).
    """
    spec = get_backbone(name) if isinstance(name, str) else name
    if spec.volumetric:
        return volumes.preprocess_config(img_size)
    if spec.source != "timm":
        return _library(spec).preprocess_config(
            spec.model_id, weights=weights, img_size=img_size or spec.img_size, resize=resize
        )
    size, kwargs = _input_size(spec, img_size)
    with torch.device("meta"):
        model = timm.create_model(spec.model_id, pretrained=False, num_classes=0, **kwargs)
    return _preprocess_of(model, size, resize)


def feature_dims(
    name: str | BackboneSpec,
    *,
    img_size: int | None = None,
    weights: str | os.PathLike | None = None,
) -> dict[str, int]:
    """The width of each feature kind (`extract_features`), from the module tree on `meta`."""
    spec = get_backbone(name) if isinstance(name, str) else name
    with torch.device("meta"):
        model = meta_model(spec, img_size=img_size, weights=weights)
    blocks = min(LAST_BLOCKS, len(getattr(model, "blocks", ())))
    return {
        kind: model.num_features * (blocks + 1 if kind == "last4" else 1) for kind in spec.features
    }


def meta_model(
    spec: BackboneSpec, *, img_size: int | None = None, weights: str | os.PathLike | None = None
) -> Any:
    """The headless backbone's module tree, without weights (under `torch.device("meta")`: free).

    An `hf:` or `open_clip:` model reads its config (from `weights`, its folder or the hub).
    """
    if spec.conv is not None:  # a network for volumes
        return volumes.resnet18_volumes(spec.conv, num_classes=0)
    if spec.source == "hf":
        return hf.from_config(spec.model_id, weights=weights)
    if spec.source == "open_clip":
        from medprobe.backbones import openclip

        return openclip.as_backbone(openclip.build_tower(spec.model_id, weights=weights))
    _, kwargs = _input_size(spec, img_size)
    return timm.create_model(spec.model_id, pretrained=False, num_classes=0, **kwargs)


def _input_size(spec: BackboneSpec, img_size: int | None) -> tuple[int | None, dict]:
    """The input size to run at (None: timm's) and the create_model kwargs that set it (ViTs)."""
    size = img_size or spec.img_size
    return size, {"img_size": size} if size is not None and spec.family == "vit" else {}


def _preprocess_of(model: torch.nn.Module, size: int | None, resize: str) -> PreprocessConfig:
    _check_patch_multiple(model, size)
    data_cfg = resolve_model_data_config(model)
    return PreprocessConfig(
        input_size=size or data_cfg["input_size"][-1],
        mean=tuple(data_cfg["mean"]),
        std=tuple(data_cfg["std"]),
        resize=resize,
    )


def _check_patch_multiple(model: torch.nn.Module, size: int | None) -> None:
    """A ViT input must tile into whole patches; timm would silently drop the remainder."""
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    patch = patch[0] if isinstance(patch, tuple | list) else patch
    if size is not None and patch and size % patch:
        fit = -(-size // patch) * patch
        raise ValueError(
            f"--img-size {size} is not a multiple of the patch size {patch}; use e.g. {fit}"
        )


def extract_features(
    model: Any,
    x: torch.Tensor,
    family: str,  # a timm model: its own methods are used
) -> dict[str, torch.Tensor]:
    """All feature kinds of one forward pass.

    Args:
        x: (B, 3, S, S) preprocessed input.
        family: "vit" gives `cls` (class token), `mean` (mean of patch tokens, without class and
            register tokens), both after the final norm, and `last4` (the normed class tokens of
            the last 4 blocks, then `mean`: DINOv2's linear-evaluation input); "cnn" gives `pool`
            (the model's global pooling).

    Returns:
        kind -> (B, D) features (`last4`: (B, 5 D)).
    """
    if isinstance(model, TokenEncoder):
        return model.features(x)
    if family != "vit":
        return {"pool": model.forward_head(model.forward_features(x), pre_logits=True)}
    blocks = min(LAST_BLOCKS, len(model.blocks))
    # One pass: the final tokens equal forward_features', the intermediates come normed like them.
    tokens, intermediates = model.forward_intermediates(
        x, indices=blocks, norm=True, return_prefix_tokens=True, output_fmt="NLC"
    )
    n_prefix = getattr(model, "num_prefix_tokens", 1)
    mean = tokens[:, n_prefix:].mean(dim=1)
    if not n_prefix or getattr(model, "cls_token", True) is None:  # no class token (SigLIP)
        cls = model.forward_head(tokens, pre_logits=True)  # its own pooling (attention, mean)
        summaries = [_patches(item).mean(dim=1) for item in intermediates]
    else:
        cls = tokens[:, 0]
        summaries = [prefix[:, 0] for _, prefix in intermediates]
    return {"cls": cls, "mean": mean, "last4": torch.cat([*summaries, mean], dim=1)}


def _patches(item: Any) -> torch.Tensor:
    """An intermediate's patch tokens (timm pairs them with prefix tokens where there are any)."""
    return item[0] if isinstance(item, tuple) else item


def _create_other(spec, pretrained, weights, img_size, resize, num_classes, seed, drop_path):
    """An `hf:` or `open_clip:` backbone: a timm ViT or one behind its surface (`towers`)."""
    library, img_size = _library(spec), img_size or spec.img_size
    if pretrained and weights is None and not library.is_local(spec.model_id):
        offline_if_unreachable()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = library.load(
            spec.model_id, pretrained=pretrained, weights=weights, drop_path=drop_path
        )
        model.reset_classifier(num_classes)
    pcfg = library.preprocess_config(
        spec.model_id, weights=weights, img_size=img_size, resize=resize
    )
    return model, pcfg


def _library(spec: BackboneSpec) -> Any:
    """The module that builds a backbone of another source than timm."""
    from medprobe.backbones import openclip

    return {"hf": hf, "open_clip": openclip}[spec.source]


def _create(spec: BackboneSpec, *, pretrained: bool, **kwargs) -> Any:  # a timm model
    if not pretrained:
        return timm.create_model(spec.model_id, pretrained=False, **kwargs)
    offline_if_unreachable()
    try:
        return timm.create_model(spec.model_id, pretrained=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as e:
        raise WeightsUnavailableError(
            f"could not load pretrained weights for {spec.name} from the hub ({spec.model_id}): "
            f"{e}. Offline? Pass --weights PATH to a local .safetensors/.pth file, or "
            "--no-pretrained for random init"
        ) from e


def model_cost(
    model: torch.nn.Module, input_size: int, *, volumes: bool = False
) -> dict[str, float]:
    """Parameters (millions) and GFLOPs of one forward pass of one image at `input_size` px.

    With `volumes`, of one volume of `input_size` voxels a side, in one channel. FLOPs as
    `torch.utils.flop_counter` counts them: two per multiply-accumulate.
    """
    from torch.utils.flop_counter import FlopCounterMode

    device, training = next(model.parameters()).device, model.training
    shape = (1, 1, *[input_size] * 3) if volumes else (1, 3, input_size, input_size)
    x = torch.zeros(shape, device=device)
    model.eval()  # BatchNorm must not learn from the zeros
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(training)
    return {
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "gflops": round(counter.get_total_flops() / 1e9, 3),
    }

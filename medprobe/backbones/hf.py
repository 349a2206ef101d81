"""Hugging Face transformers vision encoders as backbones: `hf:<repo id or local folder>`.

The encoder (or the vision tower of a vision-language model, e.g. SigLIP) is wrapped so that
medprobe reads the same feature kinds as from a timm ViT: `cls` (the normed class token), `mean`
(the mean of the normed patch tokens, register tokens left out) and `last4` (the normed class
tokens of the last 4 layers, then `mean`). SigLIP has no class token: its attention-pooled output
is `cls`, and `last4` holds the normed mean tokens of its last 4 layers. The preprocessing comes
from the model's own `preprocessor_config.json` (input size, mean, std). Offline, `--weights
FOLDER` (or the folder as the name) loads a saved copy (`save_pretrained`); its identity is the
sha256 of its files. transformers is an optional extra (`pip install 'medprobe[hf]'`), imported
only here.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from medprobe.backbones.preprocess import PreprocessConfig
from medprobe.backbones.towers import TokenEncoder
from medprobe.errors import UserError, WeightsError

log = logging.getLogger(__name__)

HF_PREFIX = "hf:"
DEFAULT_MEAN = (0.5, 0.5, 0.5)  # what a processor config without image_mean means in transformers
DEFAULT_STD = (0.5, 0.5, 0.5)


class HFVision(TokenEncoder):
    """A transformers vision encoder (or a vision-language model's vision tower)."""

    def __init__(self, encoder: Any):
        config = encoder.config
        pooled = "siglip" in getattr(config, "model_type", "")  # no class token: pooled by a head
        super().__init__(
            encoder,
            width=config.hidden_size,
            prefix_tokens=0 if pooled else 1 + getattr(config, "num_register_tokens", 0),
            stem=("embeddings",),
            blocks=_blocks_path(encoder, config.num_hidden_layers),
        )
        # Run at another size than trained: SigLIP resamples its position embeddings when asked,
        # DINOv2 always does.
        takes = inspect.signature(encoder.forward).parameters
        self._resample = (
            {"interpolate_pos_encoding": True} if "interpolate_pos_encoding" in takes else {}
        )
        for name, param in encoder.named_parameters():
            if "mask_token" in name:  # used only for masked pretraining: never trained here
                param.requires_grad_(False)

    def run(self, x: torch.Tensor, keep: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The final normed tokens and the last `keep` hidden states."""
        out = self.tower(pixel_values=x, output_hidden_states=bool(keep), **self._resample)
        return out.last_hidden_state, list(out.hidden_states[-keep:]) if keep else []

    @property
    def norm(self) -> torch.nn.Module:
        """The encoder's final layer norm."""
        for name in ("layernorm", "post_layernorm", "norm"):
            norm = getattr(self.tower, name, None)
            if isinstance(norm, torch.nn.Module):
                return norm
        raise ValueError(f"{type(self.tower).__name__} has no final norm medprobe knows")

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The class token; SigLIP's attention-pooled vector (its `head`)."""
        if self.num_prefix_tokens:
            return tokens[:, 0]
        head = getattr(self.tower, "head", None)
        return head(tokens) if head is not None else tokens.mean(dim=1)


def load(
    spec_id: str,
    *,
    pretrained: bool,
    weights: str | os.PathLike | None,
    drop_path: float = 0.0,
) -> HFVision:
    """The encoder of `hf:<id>`: from `weights` (a saved folder), the hub, or a random init.

    The caller seeds the init.
    """
    transformers = _transformers()
    source = _source(spec_id, weights)
    try:
        config = transformers.AutoConfig.from_pretrained(source)
        _set_drop_path(config, drop_path)
        if pretrained or weights is not None or Path(source).is_dir():
            model = transformers.AutoModel.from_pretrained(source, config=config)
        else:
            model = transformers.AutoModel.from_config(config)
    except OSError as e:
        raise WeightsError(
            f"could not load {spec_id} ({e.__class__.__name__}: {str(e).splitlines()[0]}); "
            f"{offline_fix(source)}"
        ) from e
    return HFVision(getattr(model, "vision_model", model)).eval()


def _set_drop_path(config: Any, rate: float) -> None:
    """Stochastic depth where the model has it (DINOv2 does, SigLIP does not: then say so)."""
    config = getattr(config, "vision_config", config)
    if hasattr(config, "drop_path_rate"):
        config.drop_path_rate = rate
    elif rate:
        log.info(
            "%s has no stochastic depth: --drop-path %g has no effect", config.model_type, rate
        )


def preprocess_config(
    spec_id: str, *, weights: str | os.PathLike | None, img_size: int | None, resize: str
) -> PreprocessConfig:
    """The input size, mean and std of the model's own processor config."""
    processor = _json(spec_id, weights, "preprocessor_config.json")
    crop = processor.get("crop_size") or processor.get("size") or {}
    native = crop.get("height") or crop.get("shortest_edge") if isinstance(crop, dict) else crop
    if native is None:
        config = _json(spec_id, weights, "config.json")
        native = config.get("vision_config", config).get("image_size", 224)
    return PreprocessConfig(
        input_size=int(img_size or native),
        mean=tuple(processor.get("image_mean", DEFAULT_MEAN)),
        std=tuple(processor.get("image_std", DEFAULT_STD)),
        resize=resize,
    )


def from_config(spec_id: str, *, weights: str | os.PathLike | None = None) -> HFVision:
    """The encoder built from its config alone, randomly initialised (or on `meta`: free)."""
    transformers = _transformers()
    config = transformers.AutoConfig.for_model(**_json(spec_id, weights, "config.json"))
    model = transformers.AutoModel.from_config(config)
    return HFVision(getattr(model, "vision_model", model))


def identity(spec_id: str, *, pretrained: bool, weights, seed: int) -> str:
    """What fixes the encoder's numbers: its files' sha256, the hub id, or a seeded init."""
    source = _source(spec_id, weights)
    if Path(source).is_dir():
        return "sha256:" + folder_digest(Path(source))
    return spec_id if pretrained else f"random-init:seed{seed}"


def folder_digest(folder: Path) -> str:
    """The sha256 over a saved model's files (names and bytes), whatever their order on disk."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def offline_fix(repo: str, local: str = "FOLDER, a copy saved with save_pretrained") -> str:
    """What to do when a hub model cannot be read: its page (gated: accept its terms), --weights."""
    return (
        f"offline, absent or gated (https://huggingface.co/{repo}: accept its terms there, then "
        f"`hf auth login`)? Or pass --weights {local}"
    )


def is_local(spec_id: str) -> bool:
    """Whether `hf:<x>` names a saved folder rather than a hub repository."""
    return Path(spec_id.removeprefix(HF_PREFIX)).is_dir()


def _source(spec_id: str, weights) -> str:
    return str(weights) if weights is not None else spec_id.removeprefix(HF_PREFIX)


def _json(spec_id: str, weights, name: str) -> dict:
    """A config file of the model: from its folder, else from the hub (cached)."""
    source = _source(spec_id, weights)
    if Path(source).is_dir():
        path = Path(source) / name
        if not path.exists():
            if name == "preprocessor_config.json":
                return {}
            raise WeightsError(f"{source} has no {name}: save the model with save_pretrained")
        return json.loads(path.read_text())
    from huggingface_hub import hf_hub_download

    from medprobe.backbones.hub import offline_if_unreachable

    offline_if_unreachable()  # no minute of retries where there is no network
    try:
        return json.loads(Path(hf_hub_download(source, name)).read_text())
    except Exception as e:  # offline, gated, absent: all one line for the user
        raise WeightsError(
            f"could not read {name} of {spec_id} from the hub ({e.__class__.__name__}); "
            f"{offline_fix(source)}"
        ) from e


def _blocks_path(encoder: Any, layers: int) -> str:
    """The path of the encoder's list of `layers` blocks (`encoder.layer`, `encoder.layers`)."""
    for name, module in encoder.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == layers:
            return name
    raise ValueError(f"{type(encoder).__name__}: no list of {layers} blocks")


def _transformers():
    try:
        import transformers
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise UserError(
            "hf: backbones need transformers: pip install transformers (from a clone: "
            "pip install -e '.[hf]')"
        ) from e
    hf_logging.disable_progress_bar()  # one bar per weights load is noise in every log
    return transformers

"""open_clip image towers as backbones: `open_clip:<model>[:<pretrained tag>]`.

`<model>` is an open_clip model name (`ViT-B-16`, with a tag such as `laion2b_s34b_b88k`) or
`hf-hub:<org/repo>` (BiomedCLIP). Only the image tower is built, from the model's config: the text
tower, which may need a download of its own (BiomedCLIP's PubMedBERT), never is. Its features are
those before the projection into the joint text space, the encoder's own:

- a tower that is a timm model (BiomedCLIP's `timm_model_name`) is returned as that timm ViT, so
  feature kinds, fine-tuning and LP-FT are timm's own;
- a native open_clip ViT is wrapped in `OpenCLIPVision` (`medprobe.backbones.towers`).

Offline, `--weights` loads a local copy: a folder as `hf-hub:` repos hold it
(`open_clip_config.json` and the weights) or a checkpoint file of a named model. open_clip is an
optional extra (`pip install 'medprobe[openclip]'`), imported only here.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from medprobe.backbones.hf import offline_fix
from medprobe.backbones.preprocess import PreprocessConfig
from medprobe.backbones.towers import TokenEncoder
from medprobe.errors import UserError, WeightsError, did_you_mean

log = logging.getLogger(__name__)

OPEN_CLIP_PREFIX = "open_clip:"
HUB = "hf-hub:"
CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class OpenCLIPVision(TokenEncoder):
    """A native open_clip ViT image tower (class-token pooled, its projection left out)."""

    def __init__(self, tower: Any):
        if getattr(tower, "attn_pool", None) is not None or tower.pool_type != "tok":
            raise UserError(
                "open_clip: only class-token ViT towers are supported (this one pools with "
                f"{tower.pool_type!r} or attention)"
            )
        tower.proj = None  # the projection into the text space: not the encoder's features
        super().__init__(
            tower,
            width=tower.ln_post.normalized_shape[0],
            prefix_tokens=1,
            stem=("conv1", "class_embedding", "positional_embedding", "ln_pre"),
            blocks="transformer.resblocks",
        )

    def run(self, x: torch.Tensor, keep: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The final tokens through `ln_post`, and the outputs of the last `keep` blocks."""
        tokens = self.tower._embeds(x)
        if not keep:
            return self.tower.ln_post(self.tower.transformer(tokens)), []
        indices = list(range(len(self.blocks) - keep, len(self.blocks)))
        tokens, hidden = self.tower.transformer.forward_intermediates(tokens, indices=indices)
        return self.tower.ln_post(tokens), hidden

    @property
    def norm(self) -> torch.nn.Module:
        """The tower's `ln_post`."""
        return self.tower.ln_post


def parse(spec_id: str) -> tuple[str, str | None]:
    """`open_clip:<model>[:<tag>]` -> (model name, pretrained tag or None)."""
    rest = spec_id.removeprefix(OPEN_CLIP_PREFIX)
    if rest.startswith(HUB):
        return rest, None
    name, _, tag = rest.partition(":")
    return name, tag or None


def load(
    spec_id: str, *, pretrained: bool, weights: str | os.PathLike | None, drop_path: float = 0.0
) -> torch.nn.Module:
    """The image tower of `open_clip:<id>` as a backbone, weights loaded unless `pretrained` is off.

    The caller seeds the init.
    """
    tower = build_tower(spec_id, weights=weights, drop_path=drop_path)
    if pretrained or weights is not None:
        state = _visual_state(_checkpoint(spec_id, weights))
        tower.load_state_dict(state)
    return as_backbone(tower).eval()


def build_tower(
    spec_id: str, *, weights: str | os.PathLike | None, drop_path: float = 0.0
) -> torch.nn.Module:
    """open_clip's image tower of the model's config, randomly initialised."""
    open_clip = _open_clip()
    config = model_config(spec_id, weights)
    vision = dict(config["vision_cfg"])
    if "timm_model_name" in vision:
        vision["timm_drop_path"] = drop_path or None
    elif drop_path:
        log.info(
            "open_clip's own ViT has no stochastic depth: --drop-path %g has no effect", drop_path
        )
    quick_gelu = config.get("quick_gelu", False) or _pretrained_cfg(spec_id).get(
        "quick_gelu", False
    )
    return open_clip.model._build_vision_tower(config["embed_dim"], vision, quick_gelu=quick_gelu)


def as_backbone(tower: Any) -> torch.nn.Module:
    """A timm tower's trunk (class-token pooled, headless), or a native tower wrapped."""
    open_clip = _open_clip()
    if isinstance(tower, open_clip.timm_model.TimmModel):
        trunk = tower.trunk
        trunk.reset_classifier(0, **({"global_pool": "token"} if _has_class_token(trunk) else {}))
        return trunk
    if isinstance(tower, open_clip.transformer.VisionTransformer):
        return OpenCLIPVision(tower)
    raise UserError(
        f"open_clip: a {type(tower).__name__} image tower is not supported; use a ViT model"
    )


def preprocess_config(
    spec_id: str, *, weights: str | os.PathLike | None, img_size: int | None, resize: str
) -> PreprocessConfig:
    """The tower's input size, and the mean and std its weights were trained with."""
    open_clip = _open_clip()
    config = model_config(spec_id, weights)
    given = {**_pretrained_cfg(spec_id), **config.get("preprocess_cfg", {})}
    size = config["vision_cfg"].get("image_size", 224)
    return PreprocessConfig(
        input_size=int(img_size or (size if isinstance(size, int) else size[0])),
        mean=tuple(given.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(given.get("std", open_clip.OPENAI_DATASET_STD)),
        resize=resize,
    )


def model_config(spec_id: str, weights: str | os.PathLike | None) -> dict:
    """The model's config: from a local folder, the hub, or open_clip's named configs."""
    name, _ = parse(spec_id)
    folder = _folder(spec_id, weights)
    if folder is not None:
        return _read_config(folder / CONFIG_FILE)
    if name.startswith(HUB):
        return _read_config(Path(_hub_file(name, CONFIG_FILE, spec_id)))
    config = _open_clip().get_model_config(name)
    if config is None:
        known = _open_clip().list_models()
        raise UserError(
            f"open_clip has no model {name!r}; {did_you_mean(name, known)}see "
            "open_clip.list_models(), or give hf-hub:<org/repo>"
        )
    return config


def identity(spec_id: str, *, pretrained: bool, weights, seed: int) -> str:
    """What fixes the tower's numbers: its files' sha256, the model and tag, or a seeded init."""
    from medprobe.backbones.hf import folder_digest
    from medprobe.data.files import file_digest

    if weights is not None:
        path = Path(weights)
        return "sha256:" + (folder_digest(path) if path.is_dir() else file_digest(path))
    return spec_id if pretrained else f"random-init:seed{seed}"


def is_local(spec_id: str) -> bool:
    """Whether `open_clip:<x>` names a local folder rather than a hub repo or a named model."""
    return _folder(spec_id, None) is not None


def _checkpoint(spec_id: str, weights: str | os.PathLike | None) -> Path:
    """The file holding the weights: a local one, a hub repo's, or a named model's tag."""
    name, tag = parse(spec_id)
    folder = _folder(spec_id, weights)
    if folder is not None:
        found = [folder / f for f in WEIGHT_FILES if (folder / f).exists()]
        if not found:
            raise WeightsError(f"{folder} has none of {', '.join(WEIGHT_FILES)}")
        return found[0]
    if weights is not None:
        return Path(weights)
    if name.startswith(HUB):
        return Path(_hub_file(name, WEIGHT_FILES, spec_id))
    open_clip = _open_clip()
    cfg = _pretrained_cfg(spec_id)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise UserError(
            f"{spec_id}: name a pretrained tag, open_clip:{name}:<tag>, one of "
            f"{', '.join(tags) or '(none: this model has no published weights)'}"
        )
    try:
        return Path(open_clip.pretrained.download_pretrained(cfg))
    except Exception as e:  # offline: one line, as for the hub
        raise WeightsError(
            f"could not download {spec_id} ({type(e).__name__}); offline? Pass --weights FILE, "
            f"a checkpoint of {name}"
        ) from e


def _visual_state(path: Path) -> dict[str, torch.Tensor]:
    """The image tower's part of a CLIP checkpoint, its `visual.` prefix dropped."""
    state = _open_clip().factory.load_state_dict(str(path))
    visual = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise WeightsError(f"{path} holds no image tower (no 'visual.' parameters)")
    return visual


def _pretrained_cfg(spec_id: str) -> dict:
    name, tag = parse(spec_id)
    return _open_clip().get_pretrained_cfg(name, tag) if tag else {}


def _folder(spec_id: str, weights) -> Path | None:
    if weights is not None and Path(weights).is_dir():
        return Path(weights)
    name, _ = parse(spec_id)
    return Path(name) if Path(name).is_dir() else None


def _read_config(path: Path) -> dict:
    if not path.exists():
        raise WeightsError(f"{path} does not exist; a model folder holds {CONFIG_FILE}")
    data = json.loads(path.read_text())
    return {**data["model_cfg"], "preprocess_cfg": data.get("preprocess_cfg", {})}


def _hub_file(name: str, files: str | tuple[str, ...], spec_id: str) -> str:
    """The first of `files` that the hub repo has, downloaded (or from the hub's cache)."""
    from huggingface_hub import hf_hub_download

    from medprobe.backbones.hub import offline_if_unreachable

    offline_if_unreachable()  # no minute of retries where there is no network
    repo = name.removeprefix(HUB)
    error: Exception | None = None
    for file in (files,) if isinstance(files, str) else files:
        try:
            return hf_hub_download(repo, file)
        except Exception as e:  # absent file, offline, gated: try the next, then say it once
            error = e
    raise WeightsError(
        f"could not read {spec_id} from the hub ({type(error).__name__}); "
        f"{offline_fix(repo, 'FOLDER (a copy of the repo) or FILE (a checkpoint)')}"
    )


def _has_class_token(model: Any) -> bool:
    return getattr(model, "cls_token", None) is not None


def _open_clip():
    try:
        import open_clip
    except ImportError as e:
        raise UserError(
            "open_clip: backbones need open_clip: pip install open_clip_torch (from a clone: "
            "pip install -e '.[openclip]')"
        ) from e
    return open_clip

"""Local weights files: read, fitted to a timm model strictly, and identified by their bytes.

timm loads a local file non-strictly whenever the classifier is replaced (always, for a feature
extractor), so a file of another architecture would load nothing and leave a random model that
is then reported as pretrained. Here every parameter of the backbone must come from the file; only
the classifier may be missing or of another shape.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import timm
import torch
from timm.models import load_state_dict

from medprobe.backbones.registry import HF_PREFIX, OPEN_CLIP_PREFIX, check_weights_file
from medprobe.data.files import file_digest
from medprobe.errors import WeightsError

EXAMPLES = 3
# BatchNorm step counters: not weights; ported checkpoints lack them
COUNTERS = "num_batches_tracked"


def weights_identity(
    model_id: str, *, pretrained: bool, weights: str | os.PathLike | None, seed: int
) -> str:
    """What fixes a backbone's numbers.

    A local file's sha256, a timm tag, or a seeded random init.
    """
    if model_id.startswith(HF_PREFIX):
        from medprobe.backbones import hf

        return hf.identity(model_id, pretrained=pretrained, weights=weights, seed=seed)
    if model_id.startswith(OPEN_CLIP_PREFIX):
        from medprobe.backbones import openclip

        return openclip.identity(model_id, pretrained=pretrained, weights=weights, seed=seed)
    if weights is not None:
        check_weights_file(weights)
        return "sha256:" + file_digest(weights)
    return f"timm:{model_id}" if pretrained else f"random-init:seed{seed}"


def load_local_weights(
    model: torch.nn.Module, path: str | os.PathLike, *, name: str, assign: bool = False
) -> None:
    """Load `path` (.safetensors or .pth in timm's layout) into `model`, covering every parameter.

    With `assign`, the file's tensors (in the model's dtypes) become the model's, as a model
    built on the meta device needs.

    Raises:
        WeightsError: the file cannot be read, or it leaves backbone parameters missing, brings
            unexpected ones, or has other shapes; the message counts them and names a few.
    """
    path = Path(path)
    state = _read(path)
    _check_finite(path, state)
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:  # timm's own adaptation (e.g. DINOv2's 518 px pos_embed to 224)
        try:
            state = filter_fn(state, model)
        except (KeyError, RuntimeError, ValueError, IndexError) as e:
            raise WeightsError(f"{path} does not fit {name}: {e!r}") from e
    own = model.state_dict()
    classifier = _classifier_keys(model)
    # A classifier the model lacks or has for another class count is left out; the rest must fit.
    state = {
        k: v
        for k, v in state.items()
        if k not in classifier or (k in own and own[k].shape == v.shape)
    }
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [
        k for k in own if k not in state and k not in classifier and not k.endswith(COUNTERS)
    ]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or mismatched:
        raise WeightsError(_mismatch_message(path, name, len(own), missing, unexpected, mismatched))
    if assign:  # the model's dtype and a layout of its own, as copying into it would give
        state = {k: v.to(own[k].dtype).contiguous() for k, v in state.items()}
    model.load_state_dict(state, strict=False, assign=assign)


def model_from_file(
    model_id: str, path: str | os.PathLike, *, name: str, **kwargs
) -> torch.nn.Module | None:
    """The headless timm model built on `meta` and given the file's tensors: no random init.

    A random init only to be overwritten is most of building a model from a file (BENCHMARKS.md,
    "Where `probe fit --extract`'s seconds go"). None, before the file is read, for a model with
    buffers no file holds (non-persistent ones): build it as usual then.
    """
    with torch.device("meta"):
        model = timm.create_model(model_id, pretrained=False, num_classes=0, **kwargs)
    saved = model.state_dict()
    if any(b.is_meta and n not in saved for n, b in model.named_buffers()):
        return None
    load_local_weights(model, path, name=name, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        return None
    return model


def _read(path: Path) -> dict[str, torch.Tensor]:
    check_weights_file(path)
    try:
        return load_state_dict(str(path), weights_only=True)
    except Exception as e:  # safetensors, zip and unpickling errors have no common base class
        raise WeightsError(
            f"cannot read weights file {path} ({type(e).__name__}: {e}); "
            "is it a complete .safetensors or .pth state dict?"
        ) from e


def _check_finite(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Weights holding NaN or inf give NaN features and losses; refuse them by name, up front."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(
            f"{path} holds non-finite values (NaN or inf) in {len(bad)} of its {len(state)} "
            f"tensors (e.g. {', '.join(bad[:EXAMPLES])}); it is damaged, or the training that made "
            "it diverged"
        )


def _classifier_keys(model: torch.nn.Module) -> set[str]:
    config: dict = getattr(model, "pretrained_cfg", {})  # timm's models carry it
    names = config.get("classifier") or ()
    names = (names,) if isinstance(names, str) else names
    return {f"{name}.{part}" for name in names for part in ("weight", "bias")}


def _mismatch_message(path, name, n_params, missing, unexpected, mismatched) -> str:
    parts = []
    for what, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("of another shape", mismatched),
    ):
        if keys:
            parts.append(f"{len(keys)} {what} (e.g. {', '.join(keys[:EXAMPLES])})")
    return (
        f"{path} does not fit {name}: of its {n_params} tensors, {'; '.join(parts)}. "
        "Give the weights of this architecture, or the --backbone / --model they belong to"
    )

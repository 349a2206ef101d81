"""A card per backbone: where it comes from, what it costs, what it yields.

`probe backbones --details` prints them. Params and GFLOPs are measured on the module tree built on
the `meta` device (no weights, no memory) with `factory.model_cost`, the function that gives an
extraction's or a run's figures in the report's compute table, so the two agree. An `hf:` or
`open_clip:` model needs its config for that (its folder, `--weights`, or the hub); without it its
measured fields stay empty and `unavailable` says why.
"""

from __future__ import annotations

import os

import torch

from medprobe.backbones.factory import feature_dims, meta_model, model_cost, preprocess_config
from medprobe.backbones.registry import BackboneSpec, get_backbone
from medprobe.errors import UserError


def backbone_card(
    name: str | BackboneSpec,
    *,
    img_size: int | None = None,
    weights: str | os.PathLike | None = None,
) -> dict:
    """One backbone's card (a JSON-ready dict)."""
    spec = get_backbone(name) if isinstance(name, str) else name
    about = spec.about
    card: dict = {
        "name": spec.name,
        "source": spec.source,
        "id": spec.model_id,
        "pretraining": about.pretraining if about else None,
        "medical": about.medical if about else None,
        "licence": about.licence if about else None,
        "gated": about.gated if about else None,
        "page": about.page if about else None,
    }
    try:
        card |= _measured(spec, img_size=img_size, weights=weights)
    except UserError as e:  # no config offline, or the library not installed
        card |= {"input_size": None, "params_m": None, "gflops": None, "feature_dims": None}
        card["unavailable"] = " ".join(str(e).split())
    return card


def _measured(spec: BackboneSpec, *, img_size: int | None, weights) -> dict:
    size = preprocess_config(spec, img_size=img_size, weights=weights).input_size
    with torch.device("meta"):
        model = meta_model(spec, img_size=img_size, weights=weights)
        cost = model_cost(model, size, volumes=spec.volumetric)
    dims = feature_dims(spec, img_size=img_size, weights=weights)
    return {"input_size": size, **cost, "feature_dims": dims}

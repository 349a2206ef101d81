"""medprobe.backbones: registry, factory, local weights, offline errors, feature kinds."""

from __future__ import annotations

import pytest
import torch

from medprobe.backbones.factory import (
    WeightsUnavailableError,
    create_backbone,
    extract_features,
    feature_dims,
)
from medprobe.backbones.preprocess import preprocess
from medprobe.backbones.registry import BACKBONES, get_backbone
from medprobe.backbones.weights import weights_identity
from medprobe.errors import WeightsError
from tests.support import DINOV2_WEIGHTS, EFFNET_WEIGHTS, needs_shared, per_family

EXPECTED_DIMS = {
    "resnet18": {"pool": 512},
    "resnet50": {"pool": 2048},
    "efficientnet_lite0": {"pool": 1280},
    "vit_tiny": {"cls": 192, "mean": 192, "last4": 5 * 192},
    "vit_small": {"cls": 384, "mean": 384, "last4": 5 * 384},
    "vit_base": {"cls": 768, "mean": 768, "last4": 5 * 768},
    "dinov2_small": {"cls": 384, "mean": 384, "last4": 5 * 384},
    "dinov2_base": {"cls": 768, "mean": 768, "last4": 5 * 768},
    "dinov3_small": {"cls": 384, "mean": 384, "last4": 5 * 384},
    "dinov3_base": {"cls": 768, "mean": 768, "last4": 5 * 768},
}


def features_of(name, *, img_size=None, **kwargs):
    spec = get_backbone(name)
    model, cfg = create_backbone(name, img_size=img_size, **kwargs)
    batch = torch.randint(0, 256, (2, 28, 28, 1), dtype=torch.uint8)
    with torch.inference_mode():
        return extract_features(model, preprocess(batch, cfg), spec.family), cfg


def test_registry_lists_what_the_issue_names():
    assert set(EXPECTED_DIMS) <= set(BACKBONES)
    hub = {"rad_dino", "biomedclip", "siglip2_base", "medsiglip"}  # issue #30
    assert {n for n, s in BACKBONES.items() if s.source not in ("timm", "medprobe")} == hub
    assert all(BACKBONES[n].about is not None for n in BACKBONES)  # every entry has its card
    assert BACKBONES["vit_tiny"].model_id == "vit_tiny_patch16_224.augreg_in21k"
    assert BACKBONES["dinov2_small"].model_id == "vit_small_patch14_dinov2.lvd142m"


@pytest.mark.parametrize("name", per_family(EXPECTED_DIMS))
def test_every_backbone_builds_and_yields_its_features(name):
    # A small input (a multiple of the patch size) keeps this quick.
    small = 28 if name.startswith("dinov2") else 32
    feats, cfg = features_of(name, pretrained=False, img_size=small)
    assert {k: v.shape for k, v in feats.items()} == {
        k: torch.Size([2, d]) for k, d in EXPECTED_DIMS[name].items()
    }


def test_input_size_comes_from_the_spec_else_timm():
    assert create_backbone("dinov2_small", pretrained=False)[1].input_size == 224  # not 518
    assert create_backbone("timm:test_vit", pretrained=False)[1].input_size == 160  # timm's


@pytest.mark.parametrize(
    "name,kinds", [("timm:test_vit", {"cls", "mean", "last4"}), ("timm:test_resnet", {"pool"})]
)
def test_any_timm_model_works_with_the_prefix(name, kinds):
    feats, cfg = features_of(name, pretrained=False, img_size=32)
    assert set(feats) == set(get_backbone(name).features) == kinds


def test_mean_excludes_prefix_tokens():
    spec = get_backbone("timm:test_vit")
    model, cfg = create_backbone(spec, pretrained=False, img_size=32)
    x = preprocess(torch.randint(0, 256, (2, 28, 28, 3), dtype=torch.uint8), cfg)
    with torch.inference_mode():
        tokens = model.forward_features(x)
        feats = extract_features(model, x, "vit")
    torch.testing.assert_close(feats["mean"], tokens[:, model.num_prefix_tokens :].mean(1))
    torch.testing.assert_close(feats["cls"], tokens[:, 0])


def test_last4_is_dinov2s_linear_eval_input_from_the_same_pass():
    """`last4` is DINOv2's linear-eval input, computed here block by block.

    The class tokens of the last 4 blocks, each through the final norm, then the mean patch
    token (dinov2/eval/linear.py, create_linear_input); cls and mean are forward_features' own,
    bit for bit.
    """
    from medprobe.backbones.factory import feature_dims

    spec = get_backbone("timm:test_vit")
    model, cfg = create_backbone(spec, pretrained=False, img_size=32)
    x = preprocess(torch.randint(0, 256, (3, 28, 28, 3), dtype=torch.uint8), cfg)
    with torch.inference_mode():
        feats = extract_features(model, x, "vit")
        tokens = model.norm_pre(model._pos_embed(model.patch_embed(x)))
        class_tokens = []
        for block in model.blocks:
            tokens = block(tokens)
            class_tokens.append(model.norm(tokens)[:, 0])
        final = model.forward_features(x)
    mean = final[:, model.num_prefix_tokens :].mean(1)
    assert torch.equal(feats["cls"], final[:, 0]) and torch.equal(feats["mean"], mean)
    torch.testing.assert_close(
        feats["last4"], torch.cat([*class_tokens[-4:], mean], dim=1), rtol=0, atol=1e-6
    )
    assert {k: v.shape[1] for k, v in feats.items()} == feature_dims(spec, img_size=32)


def test_unknown_backbone_names_the_valid_ones():
    with pytest.raises(ValueError, match="dinov2_small.*timm:<model_name>"):
        get_backbone("dino")
    with pytest.raises(ValueError, match="timm has no model"):
        get_backbone("timm:not_a_model")


def test_offline_hub_error_names_the_fixes(offline_hub):
    with pytest.raises(WeightsUnavailableError, match="--weights.*--no-pretrained"):
        create_backbone("timm:test_vit", pretrained=True)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="nope.safetensors does not exist"):
        create_backbone("vit_tiny", weights=tmp_path / "nope.safetensors")


def test_weights_identity_tells_hub_file_and_random_apart(tmp_path):
    spec = get_backbone("vit_tiny")
    file = tmp_path / "w.pth"
    file.write_bytes(b"abc")
    identity = dict(pretrained=True, weights=None, seed=0)
    assert weights_identity(spec.model_id, **identity) == f"timm:{spec.model_id}"
    assert (
        weights_identity(spec.model_id, **identity | {"pretrained": False}) == "random-init:seed0"
    )
    assert weights_identity(spec.model_id, **identity | {"weights": file}).startswith(
        "sha256:ba7816bf"
    )


@pytest.mark.parametrize(
    "name, file_change",
    [
        ("timm:test_vit", "none"),
        ("timm:test_resnet", "none"),
        ("timm:test_vit", "half precision"),
        ("timm:test_resnet", "no BatchNorm counters"),
        ("timm:test_vit_relpos", "none"),  # buffers no file holds (non-persistent): built as before
    ],
)
def test_a_model_built_from_a_file_equals_one_initialised_then_loaded(name, file_change, tmp_path):
    """A file's model built on `meta` equals one randomly initialised and then loaded, bitwise.

    The same tensors in the same dtypes; a model with buffers no file holds is built as before.
    """
    from safetensors.torch import save_file

    from medprobe.backbones.weights import load_local_weights, model_from_file

    source, cfg = create_backbone(name, pretrained=False, init_seed=3)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    if file_change == "half precision":
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    if file_change == "no BatchNorm counters":
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    save_file(state, tmp_path / "w.safetensors")
    spec = get_backbone(name)
    on_meta = model_from_file(spec.model_id, tmp_path / "w.safetensors", name=name) is not None
    assert on_meta == (name != "timm:test_vit_relpos")
    built, _ = create_backbone(name, weights=tmp_path / "w.safetensors")
    loaded = create_backbone(name, pretrained=False)[0]
    load_local_weights(loaded, tmp_path / "w.safetensors", name=name)
    ours, theirs = built.state_dict(), loaded.state_dict()
    assert list(ours) == list(theirs)
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key
    x = torch.randn(2, 3, cfg.input_size, cfg.input_size)
    with torch.inference_mode():
        assert torch.equal(built(x), loaded.eval()(x))


@pytest.mark.real
@needs_shared(DINOV2_WEIGHTS)
def test_real_dinov2_weights_load_offline(offline_hub):
    model, cfg = create_backbone("dinov2_small", weights=DINOV2_WEIGHTS)
    init_value = create_backbone("dinov2_small", pretrained=False)[0].blocks[-1].ls1.gamma
    trained = model.blocks[-1].ls1.gamma
    # LayerScale starts at a constant 1e-5; trained DINOv2 has moved it by orders of magnitude.
    assert init_value.abs().max() < 1e-4 < trained.abs().mean()
    assert cfg.input_size == 224 and cfg.mean == pytest.approx((0.485, 0.456, 0.406))
    from medprobe.backbones.weights import load_local_weights

    loaded = create_backbone("dinov2_small", pretrained=False)[0]  # built on meta above: the same
    load_local_weights(loaded, DINOV2_WEIGHTS, name="dinov2_small")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.real
@needs_shared(EFFNET_WEIGHTS)
def test_real_efficientnet_weights_load_offline(offline_hub):
    feats, _ = features_of("efficientnet_lite0", weights=EFFNET_WEIGHTS)
    assert feats["pool"].shape == (2, 1280) and feats["pool"].abs().sum() > 0


@pytest.mark.parametrize("name", [*per_family(EXPECTED_DIMS), "timm:test_vit", "timm:test_resnet"])
def test_preprocess_config_without_weights_matches_the_built_model(name):
    from medprobe.backbones.factory import preprocess_config

    # The cache key is computed from this before any weights load; it must not drift.
    assert (
        preprocess_config(name, resize="pad")
        == create_backbone(name, pretrained=False, resize="pad")[1]
    )


def test_feature_dims_without_weights_are_what_extraction_yields():
    from medprobe.backbones.factory import feature_dims

    assert {name: feature_dims(name) for name in EXPECTED_DIMS} == EXPECTED_DIMS


@pytest.mark.parametrize(
    "name,prefix", [("dinov3_small", 5), ("timm:vit_base_patch16_siglip_224", 0)]
)
def test_class_token_registers_and_none(name, prefix):
    """DINOv3: a class token and 4 registers; SigLIP: no class token, `cls` is its own pooling."""
    model, _ = create_backbone(name, pretrained=False, img_size=32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = extract_features(model, x, "vit")
        tokens = model.forward_features(x)
        pooled = model.forward_head(tokens, pre_logits=True)
    assert model.num_prefix_tokens == prefix
    torch.testing.assert_close(features["cls"], tokens[:, 0] if prefix else pooled)
    torch.testing.assert_close(features["mean"], tokens[:, prefix:].mean(1))
    assert {k: v.shape[1] for k, v in features.items()} == feature_dims(name, img_size=32)

"""`open_clip:` backbones: tiny CLIP models saved as hub repos hold them, read back offline."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

open_clip = pytest.importorskip("open_clip")  # the `openclip` extra; `make test` installs it

from safetensors.torch import save_file  # noqa: E402

from medprobe.backbones.factory import (  # noqa: E402
    create_backbone,
    extract_features,
    feature_dims,
    preprocess_config,
)
from medprobe.backbones.openclip import OpenCLIPVision, parse  # noqa: E402
from medprobe.backbones.weights import weights_identity  # noqa: E402
from medprobe.errors import UserError  # noqa: E402
from medprobe.results import load_results  # noqa: E402
from suite.programs import finetune as finetune_main  # noqa: E402
from suite.programs import probe as probe_main  # noqa: E402

MEAN, STD = [0.1, 0.2, 0.3], [0.4, 0.5, 0.6]
TEXT = {"context_length": 8, "vocab_size": 50, "width": 16, "heads": 2, "layers": 1}
NATIVE = {"image_size": 32, "layers": 3, "width": 32, "head_width": 16, "patch_size": 8}
TIMM = {"timm_model_name": "test_vit", "timm_model_pretrained": False, "image_size": 32}
TIMM |= {"timm_pool": "", "timm_proj": "linear"}  # BiomedCLIP's: pooled and projected by open_clip


def save_clip(folder, vision: dict, seed: int = 0):
    """A tiny CLIP as a hub repo holds it: open_clip_config.json and the weights."""
    torch.manual_seed(seed)
    model = open_clip.CLIP(embed_dim=16, vision_cfg=vision, text_cfg=TEXT)
    folder.mkdir(parents=True)
    save_file(model.state_dict(), folder / "open_clip_model.safetensors")
    config = {"model_cfg": {"embed_dim": 16, "vision_cfg": vision, "text_cfg": TEXT}}
    config["preprocess_cfg"] = {"mean": MEAN, "std": STD}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    return folder


def reference(folder):
    """The image tower as open_clip itself loads it."""
    return open_clip.create_model(f"local-dir:{folder}").visual.eval()


def test_a_native_tower_reads_as_open_clip_computes_it(tmp_path):
    folder = save_clip(tmp_path / "native", NATIVE)
    model, pcfg = create_backbone(f"open_clip:{folder}")
    assert isinstance(model, OpenCLIPVision)
    assert (pcfg.input_size, list(pcfg.mean), list(pcfg.std)) == (32, MEAN, STD)
    x = torch.randn(2, 3, 32, 32)
    ref = reference(folder)
    with torch.no_grad():
        ours = extract_features(model, x, "vit")
        tokens = ref.ln_post(ref.transformer(ref._embeds(x)))
        ref.proj = None  # the tower's pooled output before the projection into the text space
        pooled = ref(x)
    torch.testing.assert_close(ours["cls"], pooled)
    torch.testing.assert_close(ours["mean"], tokens[:, 1:].mean(1))
    assert {k: v.shape[1] for k, v in ours.items()} == feature_dims(f"open_clip:{folder}")
    assert feature_dims(f"open_clip:{folder}") == {"cls": 32, "mean": 32, "last4": 32 * 4}


def test_a_timm_tower_is_its_timm_trunk(tmp_path):
    folder = save_clip(tmp_path / "timm", TIMM)
    model, _ = create_backbone(f"open_clip:{folder}")
    ref = reference(folder)
    assert type(model) is type(ref.trunk) and model.global_pool == "token"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = extract_features(model, x, "vit")
        tokens = ref.trunk.forward_features(x)
    torch.testing.assert_close(ours["cls"], tokens[:, 0], rtol=0, atol=0)
    classifier, _ = create_backbone(f"open_clip:{folder}", num_classes=3, drop_path=0.1)
    assert classifier(x).shape == (2, 3)
    assert classifier.blocks[-1].drop_path1.drop_prob > 0  # stochastic depth, up to 0.1


def test_identity_weights_and_names(tmp_path):
    one = save_clip(tmp_path / "one", NATIVE, seed=0)
    two = save_clip(tmp_path / "two", NATIVE, seed=1)
    ids = [
        weights_identity("open_clip:ViT-B-16", pretrained=True, weights=w, seed=0)
        for w in (one, two, one / "open_clip_model.safetensors")
    ]
    assert ids[0].startswith("sha256:") and len(set(ids)) == 3
    assert parse("open_clip:ViT-B-16:laion2b_s34b_b88k") == ("ViT-B-16", "laion2b_s34b_b88k")
    assert parse("open_clip:hf-hub:org/repo") == ("hf-hub:org/repo", None)
    with pytest.raises(UserError, match="ViT-B-16"):
        preprocess_config("open_clip:ViT-B-61")  # a typo: the names open_clip knows
    with pytest.raises(UserError, match="pretrained tag"):
        create_backbone("open_clip:ViT-B-16")  # weights, but which?
    named = preprocess_config("open_clip:ViT-B-16:openai")  # open_clip's own table, offline
    assert named.input_size == 224 and named.mean == open_clip.OPENAI_DATASET_MEAN


def test_probe_fit_and_lpft_end_to_end(tmp_path, data_root):
    folder = save_clip(tmp_path / "native", NATIVE)
    where = ["--dataset", "breastmnist", "--data-root", str(data_root)]
    where += ["--cache-root", str(tmp_path / "cache")]
    fit = ["fit", "--extract", "--backbone", f"open_clip:{folder}", "--bootstrap", "0", *where]
    done = CliRunner().invoke(probe_main, [*fit, "--out", str(tmp_path / "probe")])
    assert done.exit_code == 0, done.output
    run = ["run", "--backbone", f"open_clip:{folder}", "--epochs", "1", "--init-head", "probe"]
    done = CliRunner().invoke(finetune_main, [*run, *where, "--out", str(tmp_path / "ft")])
    assert done.exit_code == 0, done.output
    [record] = load_results(tmp_path / "ft")
    assert record.hparams["head_init"]["features"] == "cls"


def test_cards_measure_what_the_model_has(tmp_path):
    from medprobe.backbones.cards import backbone_card

    folder = save_clip(tmp_path / "native", NATIVE)
    model, _ = create_backbone(f"open_clip:{folder}")
    card = backbone_card(f"open_clip:{folder}")
    assert card["params_m"] == round(sum(p.numel() for p in model.parameters()) / 1e6, 3)
    assert card["gflops"] > 0 and card["feature_dims"]["last4"] == 128
    named = backbone_card("biomedclip")  # offline here: what is known, and why the rest is not
    assert named["medical"] and named["licence"] == "MIT" and named["params_m"] is None
    assert "--weights" in named["unavailable"]

"""`hf:` backbones: tiny transformers models saved to a folder, read back as medprobe reads them."""

from __future__ import annotations

import logging

import pytest
import torch
from click.testing import CliRunner

transformers = pytest.importorskip("transformers")  # the `hf` extra; `make test` installs it

from medprobe.backbones import hf  # noqa: E402
from medprobe.backbones.factory import (  # noqa: E402
    create_backbone,
    extract_features,
    feature_dims,
    preprocess_config,
)
from medprobe.backbones.weights import weights_identity  # noqa: E402
from medprobe.errors import WeightsError  # noqa: E402
from medprobe.results import load_results  # noqa: E402
from suite.programs import probe as probe_main  # noqa: E402
from tests.support import BREASTMNIST, needs_shared  # noqa: E402

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def save_tiny_dinov2(folder, seed: int = 0):
    """A 3-layer DINOv2 of width 32 at 32 px, saved with its processor config."""
    torch.manual_seed(seed)
    config = transformers.Dinov2Config(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    transformers.Dinov2Model(config).save_pretrained(folder)
    transformers.BitImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=MEAN,
        image_std=STD,
    ).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny(tmp_path):
    return save_tiny_dinov2(tmp_path / "tiny")


def test_features_are_the_library_s_own(tiny):
    model, pcfg = create_backbone(f"hf:{tiny}")
    assert (pcfg.input_size, list(pcfg.mean), list(pcfg.std)) == (32, MEAN, STD)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours = extract_features(model, x, "vit")
        direct = transformers.Dinov2Model.from_pretrained(tiny).eval()(
            pixel_values=x, output_hidden_states=True
        )
    tokens = direct.last_hidden_state
    torch.testing.assert_close(ours["cls"], tokens[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(ours["mean"], tokens[:, 1:].mean(1), rtol=0, atol=0)
    norm = transformers.Dinov2Model.from_pretrained(tiny).layernorm
    last = [norm(h[:, 0]) for h in direct.hidden_states[-3:]]  # 3 layers: all of them
    torch.testing.assert_close(ours["last4"], torch.cat([*last, tokens[:, 1:].mean(1)], 1))
    dims = feature_dims(f"hf:{tiny}")
    assert {k: v.shape[1] for k, v in ours.items()} == dims == {"cls": 32, "mean": 32, "last4": 128}
    assert preprocess_config(f"hf:{tiny}", resize="pad").resize == "pad"


def test_the_identity_is_the_files_and_changes_with_the_weights(tmp_path):
    one, two = save_tiny_dinov2(tmp_path / "one", 0), save_tiny_dinov2(tmp_path / "two", 1)
    again = save_tiny_dinov2(tmp_path / "again", 0)
    identity = {
        name: weights_identity(f"hf:{folder}", pretrained=True, weights=None, seed=0)
        for name, folder in (("one", one), ("two", two), ("again", again))
    }
    assert identity["one"].startswith("sha256:") and identity["one"] == identity["again"]
    assert identity["one"] != identity["two"]
    via_weights = weights_identity("hf:org/model", pretrained=True, weights=one, seed=0)
    assert via_weights == identity["one"]
    assert weights_identity("hf:org/model", pretrained=False, weights=None, seed=3) == (
        "random-init:seed3"
    )


def test_probe_fit_extract_end_to_end(tiny, data_root, tmp_path):
    args = ["fit", "--dataset", "breastmnist", "--data-root", str(data_root), "--extract"]
    args += ["--backbone", f"hf:{tiny}", "--head", "logreg,knn", "--bootstrap", "0"]
    done = CliRunner().invoke(
        probe_main, [*args, "--cache-root", str(tmp_path / "cache"), "--out", str(tmp_path / "r")]
    )
    assert done.exit_code == 0, done.output
    records = load_results(tmp_path / "r")
    assert {r.method for r in records} == {"logreg", "knn"}
    assert records[0].config["entry"]["weights"].startswith("sha256:")


def test_an_absent_hub_model_fails_in_one_line_naming_weights(monkeypatch, caplog):
    import huggingface_hub.constants

    import medprobe.backbones.hub as hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def unreachable(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(hub.socket, "create_connection", unreachable)
    page = "https://huggingface.co/medprobe-tests/no-such-model: accept its terms"
    with caplog.at_level(logging.DEBUG), pytest.raises(WeightsError, match=f"{page}.*--weights"):
        create_backbone("hf:medprobe-tests/no-such-model")
    assert not any("Retrying" in r.getMessage() for r in caplog.records)


def save_tiny_siglip(folder):
    """A 2-layer SigLIP vision-language model of width 32 at 32 px (no class token)."""
    torch.manual_seed(0)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    text = dict(vision, vocab_size=99, max_position_embeddings=16, bos_token_id=1, eos_token_id=2)
    config = transformers.SiglipConfig(
        vision_config=vision | {"image_size": 32, "patch_size": 8}, text_config=text
    )
    transformers.SiglipModel(config).save_pretrained(folder)
    return folder


def test_a_siglip_tower_is_read_through_its_attention_pooling(tmp_path):
    folder = save_tiny_siglip(tmp_path / "siglip")
    model, pcfg = create_backbone(f"hf:{folder}")
    assert (pcfg.input_size, pcfg.mean) == (32, hf.DEFAULT_MEAN)  # no processor config saved
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = extract_features(model, x, "vit")
        direct = transformers.SiglipVisionModel.from_pretrained(folder).eval()(
            pixel_values=x, output_hidden_states=True
        )
    torch.testing.assert_close(ours["cls"], direct.pooler_output, rtol=0, atol=0)
    torch.testing.assert_close(ours["mean"], direct.last_hidden_state.mean(1), rtol=0, atol=0)
    assert {k: v.shape[1] for k, v in ours.items()} == feature_dims(f"hf:{folder}")
    assert ours["last4"].shape[1] == 32 * 3  # two blocks, then the mean


def test_fine_tuning_surface_layer_decay_and_freeze(tiny, caplog):
    from timm.optim import param_groups_layer_decay

    from finetune.model import apply_freeze, classifier_of

    model, _ = create_backbone(f"hf:{tiny}", num_classes=3, drop_path=0.1)
    assert model.tower.config.drop_path_rate == 0.1
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    nwd = model.no_weight_decay()  # as timm's create_optimizer_v2 passes it
    groups = param_groups_layer_decay(model, layer_decay=0.5, no_weight_decay_list=nwd)
    name = {id(p): n for n, p in model.named_parameters()}
    scale = {name[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
    # stem, 3 blocks, then the final norm with the last block and the head at the full lr
    assert scale["tower.embeddings.cls_token"] == 0.5**4
    assert scale["tower.encoder.layer.0.norm1.weight"] == 0.5**3
    assert scale["tower.encoder.layer.2.mlp.fc1.weight"] == 0.5
    assert scale["tower.layernorm.weight"] == 0.5 and scale["head.weight"] == 1.0
    decayed = {name[id(p)] for g in groups if g["weight_decay"] for p in g["params"]}
    assert "tower.embeddings.position_embeddings" not in decayed
    apply_freeze(model, "last:1")
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {
        n
        for n, _ in model.named_parameters()
        if n.startswith(("head.", "tower.layernorm.", "tower.encoder.layer.2."))
    }
    assert classifier_of(model) is model.head
    with caplog.at_level(logging.INFO):
        siglip = create_backbone(f"hf:{save_tiny_siglip(tiny.parent / 's')}", drop_path=0.1)[0]
    assert siglip.tower.config.model_type == "siglip_vision_model"
    assert "no stochastic depth" in caplog.text


def test_lpft_through_finetune_run(tiny, data_root, tmp_path):
    from suite.programs import finetune as finetune_main

    args = ["run", "--backbone", f"hf:{tiny}", "--dataset", "breastmnist", "--epochs", "1"]
    args += ["--data-root", str(data_root), "--init-head", "probe", "--precision", "fp32"]
    args += ["--cache-root", str(tmp_path / "cache"), "--out", str(tmp_path / "runs")]
    done = CliRunner().invoke(finetune_main, args)
    assert done.exit_code == 0, done.output
    [record] = load_results(tmp_path / "runs")
    assert record.hparams["head_init"]["features"] == "cls"
    assert record.hparams["layer_decay"] == 0.65  # the pretrained ViT defaults apply


@pytest.mark.real
@needs_shared(BREASTMNIST)
def test_probe_and_finetune_on_the_real_breastmnist(tiny, tmp_path):
    from suite.programs import finetune as finetune_main

    common = ["--dataset", "breastmnist", "--data-root", str(BREASTMNIST.parent)]
    common += ["--cache-root", str(tmp_path / "cache")]
    fit = ["fit", "--extract", "--backbone", f"hf:{tiny}", "--bootstrap", "0", *common]
    done = CliRunner().invoke(probe_main, [*fit, "--out", str(tmp_path / "probe")])
    assert done.exit_code == 0, done.output
    run = ["run", "--backbone", f"hf:{tiny}", "--epochs", "1", "--init-head", "probe", *common]
    done = CliRunner().invoke(finetune_main, [*run, "--out", str(tmp_path / "ft")])
    assert done.exit_code == 0, done.output
    [record] = load_results(tmp_path / "ft")
    assert record.metrics["test"]["auc"] > 0  # scored on the 156 real test images
    assert len(record.predictions["test_score"]) == 156


def test_preprocessing_equals_the_model_s_own_processor(tiny):
    from medprobe.backbones.preprocess import preprocess

    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    processor = transformers.AutoImageProcessor.from_pretrained(tiny)
    theirs = processor(list(images.numpy()), return_tensors="pt")["pixel_values"]
    ours = preprocess(images, preprocess_config(f"hf:{tiny}"))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)

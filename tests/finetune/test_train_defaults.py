"""Fine-tuning that beats the frozen probe (#16).

Per-family training defaults, class weights, LP-FT.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from cache.store import read_split
from finetune.build import build_model, build_optimizer
from finetune.cli import main as finetune_cli
from finetune.config import TrainConfig
from finetune.defaults import TRAIN_DEFAULTS
from finetune.train import train
from medprobe.backbones.factory import create_backbone
from medprobe.backbones.preprocess import preprocess
from medprobe.backbones.registry import get_backbone
from medprobe.data import get_dataset
from medprobe.data.splits import open_split
from medprobe.errors import UserError
from medprobe.outputs import class_weights, loss, probabilities
from medprobe.results import load_results
from probe.fit import make_scorer
from probe.heads import LogRegHead
from suite.lpft import AUGMENTED_PASSES, augmented_head_inputs, probe_head
from suite.programs import finetune as finetune_with_lpft
from tests.support import TINY_VIT


def test_each_family_gets_its_defaults_and_explicit_options_win():
    scratch = TrainConfig()
    assert (scratch.defaults, scratch.lr, scratch.weight_decay, scratch.class_weights) == (
        "scratch",
        1e-3,
        1e-5,
        "none",
    )
    vit = TrainConfig(model="dinov2_small", batch_size=64)
    defaults = TRAIN_DEFAULTS["pretrained_vit"]
    assert vit.defaults == "pretrained_vit" and vit.lr == pytest.approx(defaults.lr * 64 / 256)
    assert (vit.layer_decay, vit.drop_path, vit.class_weights) == (
        defaults.layer_decay,
        defaults.drop_path,
        "balanced",
    )
    assert TrainConfig(model="resnet18", pretrained=True).defaults == "pretrained_cnn"
    mine = TrainConfig(
        model="dinov2_small", lr=0.01, layer_decay=1.0, class_weights="none", select="f1"
    )
    assert (mine.lr, mine.layer_decay, mine.class_weights, mine.select) == (0.01, 1.0, "none", "f1")


def test_auto_selection_is_the_defaults_and_part_of_the_identity():
    assert (TrainConfig().select, TrainConfig(model="resnet18", pretrained=True).select) == (
        "auc",
        "auc",
    )
    vit = TrainConfig(model="dinov2_small")
    assert vit.select == TRAIN_DEFAULTS["pretrained_vit"].select == "loss"
    # The identity holds what "auto" stood for: the same run as asking for it, not as another rule.
    assert asdict(vit) == asdict(TrainConfig(model="dinov2_small", select="loss"))
    assert asdict(vit) != asdict(TrainConfig(model="dinov2_small", select="auc"))
    assert "best epoch on val loss" in TRAIN_DEFAULTS["pretrained_vit"].describe()


def test_the_defaults_reach_the_optimizer_lr_per_layer_and_decay():
    cfg = TrainConfig(model="timm:test_vit", pretrained=True, batch_size=256)
    model, _ = create_backbone("timm:test_vit", pretrained=False, num_classes=3)
    optimizer, scheduler = build_optimizer(cfg, model, torch.device("cpu"), steps_per_epoch=4)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    lr_of = {name: group_of[id(p)]["initial_lr"] for name, p in model.named_parameters()}
    depth = len(model.blocks)
    assert lr_of["head.weight"] == pytest.approx(cfg.lr)  # the head trains at the defaults' lr
    assert lr_of["blocks.0.attn.qkv.weight"] == pytest.approx(cfg.lr * cfg.layer_decay**depth)
    assert lr_of["patch_embed.proj.weight"] == pytest.approx(
        cfg.lr * cfg.layer_decay ** (depth + 1)
    )
    decay = {
        group_of[id(p)]["weight_decay"] for n, p in model.named_parameters() if n.endswith("weight")
    }
    assert (
        cfg.weight_decay in decay
        and cfg.weight_decay == TRAIN_DEFAULTS["pretrained_vit"].weight_decay
    )
    # The schedule scales every group from its own lr: warmup's first step is 1/4 of each.
    first = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    head = dict(model.named_parameters())["head.weight"]
    assert first[id(head)] == pytest.approx(cfg.lr / 4) and scheduler.get_last_lr()


def test_drop_path_reaches_the_model(data_root):
    cfg = TrainConfig(
        model="timm:test_vit", pretrained=False, drop_path=0.2, data_root=str(data_root)
    )
    spec, dspec = get_backbone(cfg.model), get_dataset("bloodmnist")
    model, _, _ = build_model(cfg, spec, dspec, None)
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)


def test_balanced_class_weights_weigh_the_loss_by_inverse_frequency():
    labels = np.array([0] * 9 + [1])  # 9:1
    weights = class_weights(labels, "binary-class", 2)
    assert weights.tolist() == pytest.approx([10 / 18, 10 / 2])
    logits = torch.tensor([[2.0, -2.0]] * 10)  # always the majority class
    targets = torch.as_tensor(labels)
    per_sample = F.cross_entropy(logits, targets, reduction="none")
    expected = (weights[targets] * per_sample).sum() / weights[targets].sum()
    weighted = loss(logits, targets, "binary-class", weight=weights)
    assert weighted == pytest.approx(float(expected))
    # the minority's errors now count 9x more
    assert weighted > loss(logits, targets, "binary-class")
    multi = np.array([[1, 0], [0, 0], [0, 1], [0, 0]])
    assert class_weights(multi, "multi-label, binary-class", 2).tolist() == [3.0, 3.0]


def test_a_run_records_its_defaults_and_class_weights(data_root, tmp_path):
    common = dict(data_root=str(data_root), dataset="bloodmnist", epochs=1, out=str(tmp_path))
    plain = train(TrainConfig(**TINY_VIT, **common))
    balanced = train(TrainConfig(**TINY_VIT, **common, class_weights="balanced"))
    assert plain.hparams["defaults"] == "scratch" and plain.hparams["selected_on"] == "auc"
    assert (
        plain.hparams["class_weights"] == "none" and balanced.hparams["class_weights"] == "balanced"
    )
    assert plain.run_name != balanced.run_name  # the weights change the numbers, hence the identity


@pytest.mark.parametrize(
    "model,augment",
    [("timm:test_vit", "none"), ("timm:test_resnet", "none"), ("timm:test_vit", "basic")],
)
def test_lpft_head_reproduces_the_probes_val_predictions(model, augment, data_root, tmp_path):
    where = dict(data_root=str(data_root), cache_root=str(tmp_path / "cache"))
    cfg = TrainConfig(
        **(TINY_VIT | {"model": model, "augment": augment}),
        dataset="bloodmnist",
        **where,
        init_head="probe",
    )
    spec, dspec = get_backbone(cfg.model), get_dataset("bloodmnist")
    net, pcfg, info = build_model(cfg, spec, dspec, probe_head)
    assert info["from"] == "probe" and info["features"] == ("cls" if "vit" in model else "pool")
    # The probe, fitted again on the entry it was fitted on (and, when the run augments, on the
    # augmented passes over train), against the network before any step.
    entry = tmp_path / "cache" / info["cache_entry"]
    (x, y), (x_val, y_val) = (
        (f[info["features"]], y) for f, y in (read_split(entry, s) for s in ("train", "val"))
    )
    passes = AUGMENTED_PASSES if augment == "basic" else 0
    assert info["augmented_passes"] == passes
    if passes:
        train_split = open_split(dspec, "train", root=str(data_root))
        augmented = augmented_head_inputs(
            net, pcfg, train_split, passes, flips="hv", precision="fp32", cfg=cfg
        )
        # other images than the clean ones
        assert not any(np.allclose(a, x, atol=1e-3) for a in augmented)
        x, y = np.concatenate([x, *augmented]), np.concatenate([y] * (1 + passes))
    score = make_scorer(y_val, task=dspec.task, metric="log_loss")
    sweep = LogRegHead.sweep(x, y, x_val, score, task=dspec.task, n_classes=dspec.n_classes)
    assert sweep.params == info["params"] and info["selected_on"] == "log_loss"
    images = open_split(dspec, "val", root=str(data_root)).load()
    with torch.no_grad():
        logits = net(preprocess(torch.from_numpy(images), pcfg))
    np.testing.assert_allclose(
        probabilities(logits, dspec.task), sweep.best.predict_proba(x_val), atol=1e-4
    )


def test_lpft_through_the_finetune_command(data_root, tmp_path):
    args = [
        "run",
        "--backbone",
        "timm:test_vit",
        "--no-pretrained",
        "--img-size",
        "32",
        "--precision",
        "fp32",
        "--dataset",
        "bloodmnist",
        "--data-root",
        str(data_root),
        "--cache-root",
        str(tmp_path / "cache"),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--init-head",
        "probe",
        "--out",
        str(tmp_path / "runs"),
    ]
    done = CliRunner().invoke(finetune_with_lpft, args)
    assert done.exit_code == 0, done.output
    [record] = load_results(tmp_path / "runs")
    assert (
        record.hparams["head_init"]["head"] == "logreg" and record.hparams["init_head"] == "probe"
    )
    # finetune.cli alone has no probe to start from
    without = CliRunner().invoke(finetune_cli, args)
    assert without.exit_code == 1 and "head initializer" in without.output


def test_lpft_refuses_features_of_another_network(data_root, tmp_path):
    """A random init of seed 1 is not the seed-0 network a random-init cache entry holds."""
    cfg = TrainConfig(
        **TINY_VIT,
        seed=1,
        dataset="bloodmnist",
        data_root=str(data_root),
        cache_root=str(tmp_path / "cache"),
        init_head="probe",
    )
    with pytest.raises(UserError, match="built from another network"):
        build_model(cfg, get_backbone(cfg.model), get_dataset("bloodmnist"), probe_head)


def test_lpft_fine_tunes_at_a_tenth_of_the_lr_without_drop_path_unless_asked():
    lpft = TrainConfig(model="dinov2_small", init_head="probe")
    assert lpft.lr == pytest.approx(TrainConfig(model="dinov2_small").lr / 10)
    assert TrainConfig(model="dinov2_small", init_head="probe", lr=1e-3).lr == 1e-3
    assert (
        lpft.drop_path == 0.0
        and TrainConfig(model="dinov2_small").drop_path
        == TRAIN_DEFAULTS["pretrained_vit"].drop_path
    )
    assert TrainConfig(model="dinov2_small", init_head="probe", drop_path=0.1).drop_path == 0.1

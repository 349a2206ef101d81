"""finetune.

Best-epoch selection, exact resume after kill -9, torchrun, every model, every task type.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from finetune.checkpoint import load_checkpoint
from finetune.cli import main as finetune_main
from finetune.config import TrainConfig
from finetune.model import apply_freeze
from finetune.steps import warmup_cosine
from finetune.train import train
from medprobe.backbones.registry import BACKBONES
from medprobe.data.splits import load_split
from medprobe.metrics import evaluate
from medprobe.results import load_results
from tests.support import BREASTMNIST, TINY_RESNET, TORCHRUN_2, make_npz, needs_shared, per_family

TINY = TINY_RESNET


def test_run_writes_history_curves_weights_and_one_record(data_root, tmp_path):
    common = dict(
        dataset="breastmnist", data_root=str(data_root), epochs=2, out=str(tmp_path), **TINY
    )
    cfg = TrainConfig(keep_checkpoint=True, layer_decay=0.5, **common)
    result = train(cfg)
    run_dir = tmp_path / result.run_name
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(
        h["train_images_per_s"] > 0 for h in history
    )
    assert history[0]["lr"] == pytest.approx(
        cfg.lr
    )  # the head's, at the end of warmup (not a decayed layer's)
    assert (run_dir / "curves.png").stat().st_size > 1000
    assert load_file(run_dir / "weights.safetensors")
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 2  # loads with weights_only=True
    [record] = load_results(tmp_path)
    assert (
        record.method == "scratch"
        and record.hparams["best_epoch"] in (1, 2)
        and "ci95" in record.metrics["test"]
    )


def test_the_best_epoch_is_what_gets_scored(tmp_path):
    # Train labels are the inverse of the pixel rule that val and test follow: the more the model
    # learns, the worse val gets. A runner that kept references to the live weights (or the last
    # epoch) would report the late, bad model.
    root = tmp_path / "data"
    path = make_npz(root / "breastmnist.npz", n=(120, 40, 40), n_classes=2)
    arrays = dict(np.load(path))
    arrays["train_labels"] = 1 - arrays["train_labels"]
    np.savez(path, **arrays)
    cfg = TrainConfig(
        dataset="breastmnist",
        data_root=str(root),
        epochs=6,
        lr=3e-2,
        warmup=0,
        out=str(tmp_path / "r"),
        **TINY,
    )
    result = train(cfg)
    history = json.loads((tmp_path / "r" / result.run_name / "history.json").read_text())
    best = result.hparams["best_epoch"]
    assert history[-1]["val_acc"] < history[best - 1]["val_acc"] - 0.2, history
    assert result.metrics["val"]["acc"] == pytest.approx(history[best - 1]["val_acc"])
    # Test follows val's rule: scored with the early weights it is far better than the last epoch.
    assert result.metrics["test"]["acc"] > history[-1]["val_acc"] + 0.15, (
        result.metrics["test"],
        history,
    )


def test_the_val_loss_or_a_val_metric_picks_the_epoch(tmp_path):
    # Labels 30% noisy, so val loss and val AUC disagree about the best epoch: lowest loss at
    # epoch 1, highest AUC at epoch 3 (the same trajectory under both rules).
    root = tmp_path / "data"
    path = make_npz(root / "breastmnist.npz", n=(120, 40, 40), n_classes=2)
    arrays, rng = dict(np.load(path)), np.random.default_rng(0)
    for split in ("train", "val", "test"):
        labels = arrays[f"{split}_labels"]
        noisy = rng.random(len(labels)) < 0.3
        labels[noisy] = 1 - labels[noisy]
    np.savez(path, **arrays)
    common = dict(dataset="breastmnist", data_root=str(root), epochs=6, lr=3e-3, warmup=0, **TINY)
    runs = {
        select: train(TrainConfig(select=select, out=str(tmp_path / select), **common))
        for select in ("auc", "loss")
    }
    history = {
        select: json.loads((tmp_path / select / run.run_name / "history.json").read_text())
        for select, run in runs.items()
    }
    steps = history["loss"]
    assert [h["val_loss"] for h in history["auc"]] == pytest.approx(
        [h["val_loss"] for h in steps], rel=1e-6
    )
    by_loss = 1 + int(np.argmin([h["val_loss"] for h in steps]))
    by_auc = 1 + int(np.argmax([h["val_auc"] for h in steps]))
    assert by_loss != by_auc, steps  # else this test could not tell the rules apart
    for select, best in (("loss", by_loss), ("auc", by_auc)):
        result = runs[select]
        assert result.hparams["best_epoch"] == best and result.hparams["selected_on"] == select
        # its weights
        assert result.metrics["val"]["auc"] == pytest.approx(steps[best - 1]["val_auc"])
    assert runs["auc"].run_name != runs["loss"].run_name


def finetune_cmd(root, out, *extra):
    return [
        sys.executable,
        "-m",
        "finetune",
        "run",
        "--model",
        "timm:test_vit",
        "--no-pretrained",
        "--img-size",
        "32",
        "--dataset",
        "bloodmnist",
        "--data-root",
        str(root),
        "--out",
        str(out),
        "--batch-size",
        "16",
        "--precision",
        "fp32",
        "--epochs",
        "6",
        "--seed",
        "3",
        *extra,
    ]


@pytest.mark.slow
def test_kill_9_then_resume_ends_like_an_uninterrupted_run(tmp_path):
    root = tmp_path / "data"
    make_npz(root / "bloodmnist.npz", channels=3, n_classes=8, n=(600, 64, 64))
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        finetune_cmd(root, out), stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and not list(out.glob("*/checkpoint.pt")):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(out.glob("*.json")), "a killed run must not leave a result record"
    killed_after = load_checkpoint(next(out.glob("*/checkpoint.pt")))["epoch"]
    assert 1 <= killed_after < 6

    resumed = subprocess.run(finetune_cmd(root, out, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    clean = subprocess.run(finetune_cmd(root, tmp_path / "clean"), capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr[-2000:]
    [a], [b] = load_results(out), load_results(tmp_path / "clean")
    assert a.metrics["test"] == b.metrics["test"] and a.metrics["val"] == b.metrics["val"]
    assert a.hparams["best_epoch"] == b.hparams["best_epoch"]


@pytest.mark.slow
def test_torchrun_two_processes_write_one_record(tmp_path):
    root = tmp_path / "data"
    make_npz(root / "bloodmnist.npz", channels=3, n_classes=8, n=(64, 32, 32))
    torchrun = TORCHRUN_2
    records = []
    # ranks sync on the last part
    for name, extra in (("whole", ()), ("micro", ("--micro-batch", "3"))):
        cmd = [*torchrun, *finetune_cmd(root, tmp_path / name, "--epochs", "2", *extra)[1:]]
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=os.environ | {"OMP_NUM_THREADS": "1"},
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("test ACC") == 1
        [record] = load_results(tmp_path / name)
        records.append(record)
    whole, micro = records
    assert whole.hparams["world_size"] == 2 and whole.metrics["test"]["n"] == 32
    assert (whole.hparams["micro_batch"], micro.hparams["micro_batch"]) == (16, 3)
    assert micro.run_name == whole.run_name
    np.testing.assert_allclose(
        micro.predictions["test_score"], whole.predictions["test_score"], atol=1e-4
    )


@pytest.mark.parametrize("name", per_family(BACKBONES))
def test_every_registry_model_trains_one_tiny_step(name, data_root, tmp_path):
    small = 28 if name.startswith("dinov2") else 32
    cfg = TrainConfig(
        model=name,
        pretrained=False,
        img_size=small,
        dataset="bloodmnist",
        data_root=str(data_root),
        epochs=1,
        batch_size=40,
        precision="fp32",
        out=str(tmp_path),
    )
    result = train(cfg)
    assert result.metrics["test"]["n"] == 16 and result.hparams["trainable_params"] > 0


@pytest.mark.parametrize(
    "flag,npz",
    [
        ("chestmnist", dict(n_classes=14, multi_label=True)),
        ("retinamnist", dict(n_classes=5, channels=3)),
    ],
)
def test_multi_label_and_ordinal_datasets_train(flag, npz, tmp_path):
    root = tmp_path / "data"
    make_npz(root / f"{flag}.npz", n=(64, 24, 24), **npz)
    result = train(
        TrainConfig(dataset=flag, data_root=str(root), epochs=2, out=str(tmp_path / "r"), **TINY)
    )
    test = result.metrics["test"]
    assert test["n"] == 24 and 0 <= test["auc"] <= 1
    assert ("qwk" in test) == (flag == "retinamnist")


def test_freeze_backbone_trains_only_the_head():
    from medprobe.backbones.factory import create_backbone

    model, _ = create_backbone("timm:test_vit", pretrained=False, num_classes=3)
    head = sum(p.numel() for p in model.get_classifier().parameters())
    assert apply_freeze(model, "backbone") == head
    assert apply_freeze(model, "last:1") > head
    assert (
        TrainConfig(model="timm:test_vit", freeze="backbone", pretrained=False).method
        == "frozen-sgd"
    )
    with pytest.raises(ValueError, match="last:K"):
        TrainConfig(freeze="half")


def test_resume_of_another_configuration_starts_it_beside_the_first(data_root, tmp_path):
    common = dict(dataset="breastmnist", data_root=str(data_root), out=str(tmp_path), **TINY)
    first = train(TrainConfig(epochs=1, **common))
    second = train(TrainConfig(epochs=1, resume=True, **(common | {"lr": 0.5})))
    assert second.run_name != first.run_name and second.hparams["lr"] == 0.5
    assert {r.run_name for r in load_results(tmp_path)} == {first.run_name, second.run_name}


def test_skip_existing_returns_the_record_without_training(data_root, tmp_path):
    common = dict(
        dataset="breastmnist", data_root=str(data_root), out=str(tmp_path), epochs=1, **TINY
    )
    first = train(TrainConfig(**common))
    again = train(TrainConfig(skip_existing=True, **common))
    assert (
        again.created == first.created and again.metrics == json.loads(first.to_json())["metrics"]
    )


def test_warmup_then_cosine():
    factor = warmup_cosine(total_steps=100, warmup_steps=10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5) and factor(100) == pytest.approx(0.0)


def test_cli_run_prints_the_result_and_names_errors(data_root, tmp_path):
    args = [
        "run",
        "--model",
        "timm:test_resnet",
        "--no-pretrained",
        "--img-size",
        "32",
        "--dataset",
        "breastmnist",
        "--data-root",
        str(data_root),
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(finetune_main, args)
    assert result.exit_code == 0, result.output
    assert "test ACC" in result.output
    bad = CliRunner().invoke(
        finetune_main, ["run", "--model", "nope", "--data-root", str(data_root)]
    )
    assert bad.exit_code == 1 and "choose one of" in bad.output


@pytest.mark.real
@pytest.mark.slow
@needs_shared(BREASTMNIST)
def test_real_resnet18_from_scratch_on_breastmnist(tmp_path):
    # The command in BENCHMARKS.md: finetune run --model resnet18 --dataset breastmnist
    #   --data-root ../shared/data --epochs 40 --batch-size 64 --select auc
    result = train(
        TrainConfig(
            model="resnet18",
            dataset="breastmnist",
            data_root=str(BREASTMNIST.parent),
            epochs=40,
            batch_size=64,
            select="auc",
            out=str(tmp_path),
        )
    )
    test = result.metrics["test"]
    print(
        f"ResNet-18 (28) scratch on BreastMNIST: test ACC {test['acc']:.3f}, AUC "
        f"{test['auc']:.3f}, best epoch {result.hparams['best_epoch']}, "
        f"{result.timings['train_s']:.0f} s"
    )
    assert test["acc"] >= 0.80 and test["auc"] >= 0.85
    _, labels = load_split("breastmnist", "test", root=BREASTMNIST.parent)
    assert (
        evaluate(labels, result.predictions["test_score"], task="binary-class")["acc"]
        == test["acc"]
    )


def test_epoch_loss_is_the_image_weighted_mean_of_its_steps(capsys):
    # lr 0: every step sees the same weights, so the epoch's loss can be recomputed batch by batch.
    import torch

    from finetune.steps import TrainSteps, to_input
    from medprobe.backbones.factory import create_backbone
    from medprobe.outputs import TaskLoss

    model, pcfg = create_backbone("timm:test_resnet", pretrained=False, num_classes=2, img_size=32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loss_fn, device = TaskLoss("binary-class"), torch.device("cpu")
    parts = dict(
        optimizer=optimizer, scheduler=scheduler, loss_fn=loss_fn, pcfg=pcfg, device=device
    )
    steps = TrainSteps(
        net=model, model=model, channels_last=True, precision="fp32", flips="none", **parts
    )
    images = torch.randint(0, 256, (10, 28, 28, 1), dtype=torch.uint8)
    labels = torch.randint(0, 2, (10, 1))
    order = torch.arange(10)
    mean_loss, seen = steps.epoch(images, labels, order, None, batch_size=4)
    with torch.no_grad():
        losses = [
            loss_fn(model(to_input(images[b], pcfg, True)), labels[b]) * len(b)
            for b in order.split(4)
        ]
    assert seen == 10 and mean_loss == pytest.approx(float(sum(losses)) / 10, rel=1e-5)
    # progress=False; and None is quiet when stderr is no terminal
    assert capsys.readouterr().err == ""
    steps.epoch(images, labels, order, None, batch_size=4, progress=None)
    assert capsys.readouterr().err == ""
    steps.epoch(images, labels, order, None, batch_size=4, progress=True, desc="epoch 1/3")
    bar = capsys.readouterr().err
    assert "epoch 1/3" in bar and "/10 " in bar and "img/s" in bar


@pytest.mark.slow
def test_compile_trains_the_same_run(data_root, tmp_path):
    common = dict(dataset="breastmnist", data_root=str(data_root), epochs=1, **TINY)
    eager = train(TrainConfig(out=str(tmp_path / "eager"), **common))
    compiled = train(TrainConfig(out=str(tmp_path / "compiled"), compile=True, **common))
    assert compiled.run_name == eager.run_name  # how it runs is not part of what it is
    np.testing.assert_allclose(
        compiled.predictions["test_score"], eager.predictions["test_score"], atol=1e-4
    )

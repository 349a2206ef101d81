"""Networks for volumes: MedMNIST v2's ResNet-18 made 3D, 2.5D or ACS, trained by `finetune`."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import finetune.train as train_module
from finetune.augment import augment_volumes
from finetune.config import TrainConfig
from finetune.train import train
from medprobe.backbones.factory import create_backbone, model_cost
from medprobe.backbones.registry import BACKBONES
from medprobe.backbones.volumes import PlaneConv, resnet18_volumes
from medprobe.device import resolve_precision
from medprobe.results import load_results
from suite.programs import finetune as finetune_main
from suite.programs import probe as probe_main
from tests.support import TORCHRUN_2, make_npz

# One network in every run, the others `slow`.
NETWORKS = [
    name if name == "resnet18_2.5d" else pytest.param(name, marks=pytest.mark.slow)
    for name, spec in BACKBONES.items()
    if spec.volumetric
]


@pytest.fixture
def volumes(tmp_path):
    """A user's npz of 8-voxel volumes (binary) and an official-layout 3D and 2D file."""
    root = tmp_path / "data"
    make_npz(root / "cubes.npz", n=(24, 8, 8), size=8, n_classes=2, volumes=True)
    make_npz(root / "adrenalmnist3d.npz", n=(4, 2, 2), n_classes=2, volumes=True)
    make_npz(root / "breastmnist.npz", n_classes=2)
    return root


def config(root, out, **kwargs) -> TrainConfig:
    common = dict(
        model="resnet18_2.5d",
        dataset=str(root / "cubes.npz"),
        task="binary-class",
        epochs=2,
        batch_size=8,
        out=str(out),
    )
    return TrainConfig(**(common | kwargs))


def slices_through_conv2d(x: torch.Tensor, conv: torch.nn.Conv2d, axis: int) -> torch.Tensor:
    """The 2D convolution applied to every slice across `axis` (0: D, 1: H, 2: W), by hand."""
    moved = x.movedim(2 + axis, 1)  # (B, n, C, a, b): one 2D image per slice
    b, n = moved.shape[:2]
    out = conv(moved.reshape(b * n, *moved.shape[2:]))
    return out.reshape(b, n, *out.shape[1:]).movedim(1, 2 + axis)


@pytest.mark.parametrize("stride", [1, 2])
def test_each_plane_group_is_the_2d_kernel_on_the_slices_of_its_axis(stride):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 7, 3, stride=stride, padding=1, bias=True)
    x = torch.randn(2, 4, 6, 6, 6)
    acs = PlaneConv(conv, (0, 1, 2))
    assert acs.splits == [3, 2, 2]  # ACSConv's split: the first groups take the remainder
    out = acs(x)
    for group, (axis, rows) in enumerate(zip((0, 1, 2), ([0, 1, 2], [3, 4], [5, 6]), strict=True)):
        part = torch.nn.Conv2d(4, len(rows), 3, stride=stride, padding=1)
        part.weight.data, part.bias.data = conv.weight[rows], conv.bias[rows]
        # a stride also steps across the slices: every stride-th slice
        by_hand = slices_through_conv2d(x, part, axis).index_select(
            2 + axis, torch.arange(0, 6, stride)
        )
        torch.testing.assert_close(out[:, rows], by_hand, rtol=1e-5, atol=1e-5, msg=f"{group}")
    two_half = PlaneConv(conv, (0,))
    expected = slices_through_conv2d(x, conv, 0)[:, :, ::stride]
    torch.testing.assert_close(two_half(x), expected, rtol=1e-5, atol=1e-5)


def test_networks_take_volumes_and_have_the_v2_shapes():
    x = torch.rand(2, 1, 12, 12, 12)
    sizes = {}
    for conv in ("3d", "2.5d", "acs"):
        model = resnet18_volumes(conv, num_classes=3).eval()
        with torch.no_grad():
            assert model(x).shape == (2, 3)
            assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 512)
        sizes[conv] = sum(p.numel() for p in model.parameters())
        assert model.conv1.weight.shape[1] == 1 and isinstance(model.maxpool, torch.nn.Identity)
    # 2.5D and ACS keep the 2D weights: as many as MedMNIST/experiments' own network,
    # MedMNIST3D/models.py ResNet18(in_channels=1, num_classes=3), has (counted at 70b6b3a)
    assert sizes["2.5d"] == sizes["acs"] == 11_169_219
    assert sizes["3d"] > 2.9 * sizes["2.5d"]


def test_the_same_seed_builds_the_same_network():
    a, _ = create_backbone("resnet18_acs", pretrained=False, num_classes=2, init_seed=3)
    b, _ = create_backbone("resnet18_acs", pretrained=False, num_classes=2, init_seed=3)
    c, _ = create_backbone("resnet18_acs", pretrained=False, num_classes=2, init_seed=4)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_volume_flips_mirror_the_last_two_axes():
    volumes = torch.arange(2 * 3 * 4 * 5, dtype=torch.uint8).reshape(2, 3, 4, 5)
    draws = torch.tensor([[0.2, 0.7], [0.9, 0.1]])
    assert torch.equal(augment_volumes(volumes, draws, flips="none"), volumes)
    h = augment_volumes(volumes, draws, flips="h")
    assert torch.equal(h[0], volumes[0].flip(-1)) and torch.equal(h[1], volumes[1])
    hv = augment_volumes(volumes, draws, flips="hv")
    assert torch.equal(hv[0], volumes[0].flip(-1)) and torch.equal(hv[1], volumes[1].flip(-2))


def test_only_nodules_draw_volume_flips_by_default():
    from medprobe.data import FLAGS_3D, FLIPS

    assert {flag: FLIPS[flag] for flag in FLAGS_3D if FLIPS[flag] != "none"} == {
        "nodulemnist3d": "hv"
    }


def test_auto_precision_trains_volumes_in_fp32_on_the_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, volumes=True) == "fp32"
    assert resolve_precision("bf16", cpu, volumes=True) == "bf16"  # asked for: as asked


@pytest.mark.parametrize("name", NETWORKS)
def test_each_network_trains_on_volumes(name, volumes, tmp_path):
    result = train(config(volumes, tmp_path, model=name, epochs=1))
    assert result.metrics["test"]["n"] == 8 and result.hparams["precision"] == "fp32"
    cost = model_cost(resnet18_volumes(name.split("_")[1], num_classes=2), 8, volumes=True)
    assert result.timings["gflops"] == cost["gflops"] > 0
    assert result.run_name.startswith(f"cubes_28__{name}__scratch__")


def test_an_interrupted_run_resumes_to_the_same_record(volumes, tmp_path, monkeypatch):
    clean = train(config(volumes, tmp_path / "clean", augment="basic", flips="hv"))
    whole_epoch = train_module._train_epoch

    def stop_after_first(run, state, epoch):
        whole_epoch(run, state, epoch)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_train_epoch", stop_after_first)
    cfg = config(volumes, tmp_path / "cut", augment="basic", flips="hv")
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(train_module, "_train_epoch", whole_epoch)
    resumed = train(config(volumes, tmp_path / "cut", augment="basic", flips="hv", resume=True))
    assert resumed.run_name == clean.run_name
    for split, scores in clean.predictions.items():
        np.testing.assert_array_equal(resumed.predictions[split], scores, err_msg=split)
    assert resumed.metrics == clean.metrics
    assert resumed.hparams["best_epoch"] == clean.hparams["best_epoch"]


def test_volumes_read_from_disk_train_like_volumes_in_memory(volumes, tmp_path):
    memory = train(config(volumes, tmp_path / "m", data_mode="memory", epochs=1))
    disk = train(
        config(volumes, tmp_path / "d", data_mode="disk", epochs=1, cache_root=str(tmp_path / "c"))
    )
    assert disk.run_name == memory.run_name and disk.metrics == memory.metrics
    for split, scores in memory.predictions.items():
        np.testing.assert_array_equal(disk.predictions[split], scores, err_msg=split)
    assert list((tmp_path / "c").rglob("*.npy")), "disk mode reads a copy of the volumes"


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--backbone", "resnet18", "--dataset", "adrenalmnist3d"],
            "adrenalmnist3d is a 3D dataset: train a network for volumes (resnet18_3d",
        ),
        (
            ["--backbone", "resnet18_3d", "--dataset", "breastmnist"],
            "resnet18_3d trains on volumes and breastmnist is a 2D dataset",
        ),
        (
            ["--backbone", "resnet18_acs", "--dataset", "adrenalmnist3d", "--init-head", "probe"],
            "--init-head probe: resnet18_acs trains from scratch",
        ),
        (
            ["--backbone", "resnet18_3d", "--dataset", "adrenalmnist3d", "--img-size", "32"],
            "--img-size 32: resnet18_3d runs at the volumes' own side (28)",
        ),
        (
            ["--backbone", "resnet18_3d", "--dataset", "adrenalmnist3d", "--pretrained"],
            "resnet18_3d has no pretrained weights",
        ),
    ],
)
def test_wrong_pairings_are_one_line(args, message, volumes, tmp_path):
    out = CliRunner().invoke(
        finetune_main, ["run", *args, "--data-root", str(volumes), "--out", str(tmp_path)]
    )
    assert out.exit_code != 0 and message in out.output and "Traceback" not in out.output
    assert len(out.output.strip().splitlines()) == 1, out.output


def test_probe_refuses_a_network_for_volumes(volumes):
    args = ["extract", "--backbone", "resnet18_acs", "--dataset", "adrenalmnist3d"]
    out = CliRunner().invoke(probe_main, [*args, "--data-root", str(volumes)])
    assert out.exit_code != 0 and "resnet18_acs is a network for volumes" in out.output
    assert "probe a 2D backbone" in out.output


@pytest.mark.slow
def test_torchrun_two_processes_train_volumes(volumes, tmp_path):
    cmd = [
        *TORCHRUN_2,
        "-m",
        "finetune",
        "run",
        "--backbone",
        "resnet18_acs",
        "--dataset",
        str(volumes / "cubes.npz"),
        "--task",
        "binary-class",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--out",
        str(tmp_path / "ddp"),
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    [record] = load_results(tmp_path / "ddp")
    assert record.hparams["world_size"] == 2 and record.metrics["test"]["n"] == 8
    assert np.isfinite(record.predictions["test_score"]).all()

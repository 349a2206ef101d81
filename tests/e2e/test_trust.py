"""Every number bound to exactly what produced it.

Run identity, content-matched entries, strict weights, validated labels, meaningful seeds, defined
selection, honest throughput.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from cache.extract import extract
from cache.options import ExtractOptions
from finetune.cli import main as finetune_main
from finetune.config import TrainConfig
from finetune.train import train
from medprobe.backbones.factory import create_backbone
from medprobe.errors import DataError, WeightsError
from medprobe.report import build_rows, write_report
from medprobe.results import load_results
from probe.cli import main as probe_main
from probe.fit import fit_probe
from tests.support import DINOV2_WEIGHTS, EFFNET_WEIGHTS, make_npz, needs_shared

TINY_VIT = ExtractOptions(pretrained=False, img_size=32)


def fit_cli(*args):
    return CliRunner().invoke(probe_main, ["fit", "--bootstrap", "0", *map(str, args)])


def one_line_error(result, *needles):
    """A user error: exit 1, one line, no traceback, naming what is wrong."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1, result.output
    for needle in needles:
        assert needle in result.output, result.output


# --- entries are matched by content, never by name or age -----------------------------------------


def test_same_file_name_in_two_folders_scores_the_named_file(tmp_path):
    a = make_npz(tmp_path / "a" / "set.npz", n_classes=3, seed=1)
    b = make_npz(tmp_path / "b" / "set.npz", n_classes=3, seed=2)
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    extract(
        "timm:test_vit",
        str(a),
        task="multi-class",
        cache_root=cache,
        options=TINY_VIT,
    )

    refused = fit_cli("--dataset", b, "--task", "multi-class", "--cache-root", cache, "--out", runs)
    one_line_error(refused, "other bytes", str(b))

    extract(
        "timm:test_vit",
        str(b),
        task="multi-class",
        cache_root=cache,
        options=TINY_VIT,
    )
    done = fit_cli("--dataset", b, "--task", "multi-class", "--cache-root", cache, "--out", runs)
    assert done.exit_code == 0, done.output
    [record] = load_results(runs)
    with np.load(b) as npz:
        np.testing.assert_array_equal(record.predictions["test_true"], npz["test_labels"])


def test_labels_edited_after_extraction_are_never_scored(tmp_path):
    path = make_npz(tmp_path / "own.npz", n_classes=3)
    cache = tmp_path / "cache"
    extract(
        "timm:test_vit",
        str(path),
        task="multi-class",
        cache_root=cache,
        options=TINY_VIT,
    )
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["test_labels"] = (arrays["test_labels"] + 1) % 3
    np.savez(path, **arrays)
    result = fit_cli("--dataset", path, "--task", "multi-class", "--cache-root", cache)
    one_line_error(result, "other bytes")


def test_bicubic_and_pad_entries_give_two_records_and_two_report_rows(data_root, tmp_path):
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    for resize in ("bicubic", "pad"):
        extract(
            "timm:test_vit",
            "breastmnist",
            data_root=data_root,
            cache_root=cache,
            options=dataclasses.replace(TINY_VIT, resize=resize),
        )
    common = (
        "--dataset",
        "breastmnist",
        "--data-root",
        data_root,
        "--cache-root",
        cache,
        "--out",
        runs,
    )
    assert fit_cli(*common).exit_code == 0
    records = load_results(runs)
    assert len(records) == 2 and len({r.run_name for r in records}) == 2
    assert {r.config["entry"]["preprocess"]["resize"] for r in records} == {"bicubic", "pad"}
    labels = sorted(row.label for row in build_rows(records, n_resamples=0))
    assert labels == [
        "timm:test_vit · logreg [resize=bicubic]",
        "timm:test_vit · logreg [resize=pad]",
    ]

    only_pad = fit_cli(*common, "--resize", "pad", "--out", tmp_path / "pad")
    assert only_pad.exit_code == 0, only_pad.output
    [record] = load_results(tmp_path / "pad")
    assert record.config["entry"]["preprocess"]["resize"] == "pad"


def test_rerunning_one_configuration_rewrites_its_own_record(data_root, tmp_path):
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    extract(
        "timm:test_vit",
        "breastmnist",
        data_root=data_root,
        cache_root=cache,
        options=TINY_VIT,
    )
    common = (
        "--dataset",
        "breastmnist",
        "--data-root",
        data_root,
        "--cache-root",
        cache,
        "--out",
        runs,
    )
    for _ in range(2):
        assert fit_cli(*common).exit_code == 0
    assert fit_cli(*common, "--select", "auc").exit_code == 0
    names = sorted(p.name for p in runs.glob("*.json"))
    assert len(names) == 2 and all(
        n.startswith("breastmnist_28__timm-test_vit__logreg__seed0__") for n in names
    )


def test_finetune_configurations_never_share_a_record(data_root, tmp_path):
    common = dict(
        model="timm:test_resnet",
        dataset="breastmnist",
        data_root=str(data_root),
        epochs=1,
        batch_size=16,
        img_size=32,
        precision="fp32",
        out=str(tmp_path),
    )
    scratch = train(TrainConfig(pretrained=False, **common))
    other_lr = train(TrainConfig(pretrained=False, lr=0.01, **common))
    assert scratch.run_name != other_lr.run_name
    assert len(list(tmp_path.glob("*.json"))) == 2 and scratch.task == "binary-class"


# --- strict weights
# ----------------------------------------------------------------------------------


def test_weights_of_another_architecture_fail_with_counts(data_root, tmp_path):
    resnet, _ = create_backbone("timm:test_resnet", pretrained=False)
    path = tmp_path / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in resnet.state_dict().items()}, str(path))
    with pytest.raises(
        WeightsError, match=r"does not fit timm:test_vit: of its \d+ tensors, \d+ missing"
    ):
        create_backbone("timm:test_vit", weights=path)
    result = CliRunner().invoke(
        probe_main,
        [
            "extract",
            "--backbone",
            "timm:test_vit",
            "--weights",
            str(path),
            "--img-size",
            "32",
            "--data-root",
            str(data_root),
            "--cache-root",
            str(tmp_path / "c"),
        ],
    )
    one_line_error(result, "resnet.safetensors", "missing")


def test_weights_of_the_same_architecture_load_every_tensor(tmp_path):
    source, _ = create_backbone("timm:test_vit", pretrained=False, init_seed=3)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded, _ = create_backbone("timm:test_vit", weights=path, num_classes=5)
    for name, tensor in source.state_dict().items():
        if not name.startswith("head."):
            torch.testing.assert_close(loaded.state_dict()[name], tensor)


def test_corrupt_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match="cannot read weights file"):
        create_backbone("timm:test_vit", weights=path)


@needs_shared(EFFNET_WEIGHTS)
@pytest.mark.real
def test_real_efficientnet_weights_refused_for_dinov2():
    with pytest.raises(WeightsError, match="does not fit dinov2_small"):
        create_backbone("dinov2_small", weights=EFFNET_WEIGHTS)


@needs_shared(DINOV2_WEIGHTS)
@pytest.mark.real
def test_real_dinov2_weights_load_exactly_as_timm_loads_them():
    import timm

    ours, _ = create_backbone("dinov2_small", weights=DINOV2_WEIGHTS)
    theirs = timm.create_model(
        "vit_small_patch14_dinov2.lvd142m",
        pretrained=True,
        num_classes=0,
        img_size=224,
        pretrained_cfg_overlay={"file": str(DINOV2_WEIGHTS)},
    )
    for name, tensor in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], tensor), name


# --- labels are validated at load
# ----------------------------------------------------------------------


def corrupt_labels(tmp_path, edit, *, n_classes=3, multi_label=False):
    path = make_npz(tmp_path / "own.npz", n_classes=n_classes, multi_label=multi_label)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["val_labels"] = edit(arrays["val_labels"].astype(np.float64))
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "edit,task,needle",
    [
        (
            lambda y: np.where(np.arange(len(y))[:, None] == 5, -1, y),
            "multi-class",
            "label -1 at row 5",
        ),
        (
            lambda y: np.where(np.arange(len(y))[:, None] == 2, 0.5, y),
            "multi-class",
            "row 2 is [0.5]",
        ),
        (
            lambda y: np.where(np.arange(len(y))[:, None] == 4, np.nan, y),
            "multi-class",
            "row 4 is [nan]",
        ),
        (
            lambda y: np.where(np.arange(len(y))[:, None] == 1, 2, y),
            "binary-class",
            "label 2 at row 1",
        ),
        (lambda y: np.hstack([y, y]), "multi-class", "2 columns"),
        (lambda y: y * 3, "multi-label, binary-class", "must be 0 or 1"),
    ],
    ids=[
        "negative",
        "fractional",
        "nan",
        "task-contradicted",
        "two-columns",
        "multi-label-not-0-1",
    ],
)
def test_bad_labels_are_one_line_naming_file_split_and_row(tmp_path, edit, task, needle):
    multi_label = task.startswith("multi-label")
    path = corrupt_labels(
        tmp_path, edit, n_classes=2 if task == "binary-class" else 3, multi_label=multi_label
    )
    result = CliRunner().invoke(
        probe_main,
        [
            "extract",
            "--backbone",
            "timm:test_vit",
            "--no-pretrained",
            "--img-size",
            "32",
            "--dataset",
            str(path),
            "--task",
            task,
            "--cache-root",
            str(tmp_path / "c"),
        ],
    )
    one_line_error(result, "own.npz val", needle)
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").rglob("*.h5"))


def test_out_of_range_label_of_an_official_dataset_is_refused(tmp_path):
    root = tmp_path / "data"
    path = make_npz(root / "breastmnist.npz", n_classes=2)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["train_labels"][7] = 2
    np.savez(path, **arrays)
    result = CliRunner().invoke(
        finetune_main,
        [
            "run",
            "--model",
            "timm:test_resnet",
            "--dataset",
            "breastmnist",
            "--data-root",
            str(root),
        ],
    )
    one_line_error(result, "breastmnist.npz train", "label 2 at row 7", "0 or 1")


def test_empty_split_and_wrong_image_dtype_are_refused(tmp_path):
    from medprobe.data import get_dataset
    from medprobe.data.splits import load_split

    path = make_npz(tmp_path / "own.npz", n_classes=3)
    with np.load(path) as npz:
        arrays = dict(npz)
    np.savez(
        path,
        **(
            arrays
            | {"val_images": arrays["val_images"][:0], "val_labels": arrays["val_labels"][:0]}
        ),
    )
    with pytest.raises(DataError, match="own.npz val.*empty"):
        get_dataset(str(path), task="multi-class")
    np.savez(path, **(arrays | {"test_images": arrays["test_images"].astype(np.float32)}))
    with pytest.raises(DataError, match="own.npz test: images must be uint8"):
        load_split(get_dataset(str(path), task="multi-class"), "test")


# --- records keep the task, so every report feature works for own data
# ---------------------------------


def test_own_data_report_has_ties_and_a_confusion_figure(tmp_path):
    path = make_npz(tmp_path / "own.npz", n_classes=3, n=(60, 30, 30))
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    extract(
        "timm:test_vit",
        str(path),
        task="multi-class",
        cache_root=cache,
        options=TINY_VIT,
    )
    result = fit_cli(
        "--dataset",
        path,
        "--task",
        "multi-class",
        "--head",
        "logreg,knn",
        "--cache-root",
        cache,
        "--out",
        runs,
    )
    assert result.exit_code == 0, result.output
    records = load_results(runs)
    assert {r.task for r in records} == {"multi-class"} and records[0].class_names == [
        "0",
        "1",
        "2",
    ]
    write_report(runs, tmp_path / "report", n_resamples=200)
    assert (tmp_path / "report" / "figures" / "own_confusion.png").exists()
    rows = build_rows(records, n_resamples=200)
    assert any(row.tied or len(row.best) == 4 for row in rows)  # the paired test ran on own data


# --- seeds vary what is random, nothing else
# ---------------------------------------------------------------


def test_seeds_on_deterministic_heads_give_one_run(data_root, tmp_path):
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    extract(
        "timm:test_vit",
        "bloodmnist",
        data_root=data_root,
        cache_root=cache,
        options=TINY_VIT,
    )
    common = ("--data-root", data_root, "--cache-root", cache, "--seeds", "0,1,2")
    result = fit_cli(*common, "--head", "logreg,knn,linear", "--out", runs)
    assert result.exit_code == 0, result.output
    records = load_results(runs)
    assert sorted((r.method, r.seed) for r in records) == [
        ("knn", 0),
        ("linear", 0),
        ("linear", 1),
        ("linear", 2),
        ("logreg", 0),
    ]
    assert "deterministic" in result.output
    sub = fit_cli(*common, "--head", "logreg", "--train-fraction", "0.5", "--out", tmp_path / "sub")
    assert sub.exit_code == 0 and len(load_results(tmp_path / "sub")) == 3


def test_finetune_seed_changes_the_initialisation(data_root, tmp_path):
    a, _ = create_backbone("timm:test_resnet", pretrained=False, init_seed=0, num_classes=2)
    b, _ = create_backbone("timm:test_resnet", pretrained=False, init_seed=1, num_classes=2)
    assert not torch.equal(next(a.parameters()), next(b.parameters()))


# --- selection with a class missing from val
# ---------------------------------------------------------------


def val_without_class_2():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 3

    def blobs(y):
        return (centers[y[:, 0]] + rng.normal(size=(len(y), 8))).astype(np.float32), y

    train = blobs(rng.integers(0, 3, (90, 1)))
    val = blobs(rng.integers(0, 2, (30, 1)))
    test = blobs(rng.integers(0, 3, (30, 1)))
    return train, val, test


@pytest.mark.parametrize("head", ["logreg", "linear", "knn"])
def test_auc_selection_falls_back_to_acc_when_a_class_is_missing_from_val(head):
    train, val, test = val_without_class_2()
    fit = fit_probe(train, val, test, head=head, task="multi-class", n_classes=3, select="auc")
    assert fit.selected_on == "acc" and "class 2" in fit.selection_note
    assert fit.test["acc"] > 0.6
    if head == "knn":
        assert fit.params["k"] > 1 or max(s for _, s in fit.val_scores) == fit.val_scores[0][1]


def test_finetune_auc_selection_falls_back_and_says_so(tmp_path):
    root = tmp_path / "data"
    path = make_npz(root / "bloodmnist.npz", channels=3, n_classes=8, n=(40, 16, 16))
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["val_labels"] = np.minimum(arrays["val_labels"], 6)  # class 7 absent from val
    np.savez(path, **arrays)
    result = train(
        TrainConfig(
            model="timm:test_resnet",
            pretrained=False,
            img_size=32,
            data_root=str(root),
            epochs=2,
            batch_size=16,
            select="auc",
            precision="fp32",
            out=str(tmp_path / "r"),
        )
    )
    assert result.hparams["selected_on"] == "acc" and "class 7" in result.hparams["selection_note"]
    assert result.hparams["best_epoch"] >= 1


# --- throughput is images over the wall time of its phase
# ---------------------------------------------


def test_train_throughput_is_images_over_train_time(data_root, tmp_path):
    result = train(
        TrainConfig(
            model="timm:test_resnet",
            pretrained=False,
            img_size=32,
            dataset="breastmnist",
            data_root=str(data_root),
            epochs=3,
            batch_size=8,
            precision="fp32",
            out=str(tmp_path),
        )
    )
    history = json.loads((tmp_path / result.run_name / "history.json").read_text())
    images = sum(h["train_images"] for h in history)
    seconds = sum(h["train_seconds"] for h in history)
    assert result.timings["train_images_per_s"] == pytest.approx(images / seconds)

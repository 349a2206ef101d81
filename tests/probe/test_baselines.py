"""Null baselines: computed on the run's own data, written as records of their own."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from medprobe.results import load_results
from probe.cli import main as probe_main
from suite.recipe import load_recipe

TINY = ["--backbone", "timm:test_vit", "--no-pretrained", "--img-size", "32", "--extract"]


def test_probe_fit_baselines_writes_the_three_nulls_beside_the_run(data_root, tmp_path):
    runs = tmp_path / "runs"
    common = ["--dataset", "breastmnist", "--data-root", data_root, "--cache-root", tmp_path]
    done = CliRunner().invoke(
        probe_main, ["fit", *common, *TINY, "--baselines", "--out", runs, "--bootstrap", "50"]
    )
    assert done.exit_code == 0, done.output
    records = {r.baseline: r for r in load_results(runs)}
    assert set(records) == {None, "majority", "pixels", "random-init"}

    with np.load(data_root / "breastmnist.npz") as npz:
        train, test = npz["train_labels"][:, 0], npz["test_labels"][:, 0]
    majority = records["majority"]
    expected_acc = np.mean(test == np.bincount(train).argmax())
    assert majority.metrics["test"]["acc"] == expected_acc
    assert majority.metrics["test"]["auc"] == 0.5
    np.testing.assert_allclose(
        majority.hparams["train_frequencies"], np.bincount(train) / len(train), atol=1e-6
    )

    pixels = records["pixels"]
    assert (pixels.model, pixels.method) == ("pixels", "logreg") and "C" in pixels.hparams
    assert pixels.hparams["pixels"] == 28 * 28  # grayscale at 28 px: every pixel a feature

    twin = records["random-init"]
    assert twin.model == "timm:test_vit" and twin.tag == "random-init"
    assert twin.run_name != records[None].run_name
    assert twin.config["baseline"] == "random-init" and "baseline" not in records[None].config


def test_a_recipe_asks_for_baselines_by_key(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[probe]]\nbackbone = "vit_tiny"\nbaselines = true\n')
    assert load_recipe(recipe).probes[0]["baselines"] is True
    recipe.write_text('[[probe]]\nbackbone = "vit_tiny"\nbaselines = "yes"\n')
    try:
        load_recipe(recipe)
    except ValueError as e:
        assert "baselines" in str(e)
    else:
        raise AssertionError("a string for a boolean key was accepted")


def test_baselines_without_a_backbone_skip_only_the_random_init_twin(data_root, tmp_path):
    from probe.baselines import run_baselines
    from probe.options import ProbeOptions

    results = run_baselines(
        "bloodmnist",
        size=28,
        backbone=None,
        options=ProbeOptions(bootstrap=0),
        data_root=data_root,
        cache_root=tmp_path,
        out=tmp_path / "runs",
    )
    assert [r.baseline for r in results] == ["majority", "pixels"]
    # RGB at 28 px: three channels of pixels; multi-class majority from train's counts
    assert results[1].hparams["pixels"] == 28 * 28 * 3
    saved = json.loads(next((tmp_path / "runs").glob("*majority*.json")).read_text())
    assert saved["baseline"] == "majority"

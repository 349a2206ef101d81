"""`probe suite`.

Recipes are checked before any run, run end to end, and re-runs skip finished work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medprobe.results import load_results
from suite.programs import probe as probe_main
from suite.recipe import RecipeError, load_recipe
from suite.runner import run_suite
from tests.support import BREASTMNIST, DINOV2_WEIGHTS, make_npz

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    root = tmp_path / "data"
    make_npz(root / "bloodmnist.npz", channels=3, n_classes=8, n=(48, 16, 16))
    return root


@pytest.mark.slow
def test_tiny_recipe_runs_end_to_end_and_rerun_skips_everything(tiny_data, tmp_path):
    args = [
        "suite",
        str(RECIPES / "tiny.toml"),
        "--data-root",
        str(tiny_data),
        "--cache-root",
        str(tmp_path / "c"),
        "--out",
        str(tmp_path / "runs"),
        "--report",
        str(tmp_path / "report"),
    ]
    first = CliRunner().invoke(probe_main, args)
    assert first.exit_code == 0, first.output
    records = load_results(tmp_path / "runs")
    assert {(r.model, r.method) for r in records} == {
        ("timm:test_vit", "logreg"),
        ("timm:test_vit", "knn"),
        ("timm:test_resnet", "scratch"),
    }
    assert (tmp_path / "report" / "report.html").exists()
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*") if p.is_file()}

    again = CliRunner().invoke(probe_main, args)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing was re-run or rewritten


def test_shipped_recipes_are_valid():
    for name in ("notebook_bloodmnist", "resolution_sweep"):
        recipe = load_recipe(RECIPES / f"{name}.toml")
        assert recipe.datasets == ["bloodmnist"] and recipe.probes and len(recipe.finetunes) == 5
        assert all(
            f["epochs"] == 20 and f["lr"] == 1e-3 and f["batch_size"] == 128
            for f in recipe.finetunes
        )
    assert load_recipe(RECIPES / "resolution_sweep.toml").sizes == [28, 64, 128, 224]


@pytest.mark.parametrize(
    "body,match",
    [
        (
            '[suite]\ndatasets = ["bloodmnist"]\nepochz = 3\n',
            r":3: unknown key 'epochz' in \[suite\]; valid keys",
        ),
        (
            '[[probe]]\nbackbone = "vit_tiny"\nheads = ["svm"]\n',
            r":3: heads in \[\[probe\]\] must be a non-empty list of logreg, linear, knn; "
            r"got \['svm'\]",
        ),
        (
            '[[probe]]\nbackbone = "dino"\n',
            r":2: unknown backbone 'dino'; .*choose one of .*dinov2_small",
        ),
        (
            '[suite]\ndatasets = ["bloodmnistt"]\n',
            r":2: unknown dataset 'bloodmnistt'; did you mean 'bloodmnist'\? choose one of",
        ),
        ("[suite]\nsizes = [32]\n", r":2: sizes \[32\] not available"),
        (
            '[[finetune]]\nmodel = "vit_tiny"\nepochz = 2\n',
            r":3: unknown key 'epochz' in \[\[finetune\]\] model 'vit_tiny'; "
            r"valid keys: augment, batch_size",
        ),
        (
            '[[finetune]]\nmodel = "nope"\n',
            r":2: \[\[finetune\]\] model 'nope': .*unknown backbone",
        ),
        (
            '[[finetune]]\nbackbone = "nope"\n',
            r":2: \[\[finetune\]\] model 'nope': .*unknown backbone",
        ),
        (
            '[[finetune]]\nmodel = "vit_tiny"\nepochs = 0\n',
            r":3: epochs in \[\[finetune\]\] .* must be an integer >= 1",
        ),
        (
            '[[finetune]]\nmodel = "vit_tiny"\nlr = "fast"\n',
            r":3: lr in .* must be a number; got 'fast'",
        ),
        (
            '[[probe]]\nbackbone = "vit_tiny"\nresize = "lanczos"\n',
            r":3: resize in \[\[probe\]\] must be one of bicubic",
        ),
    ],
)
def test_bad_recipes_fail_before_any_run_naming_line_and_choices(body, match, tmp_path):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(body)
    with pytest.raises(RecipeError, match=match):
        load_recipe(recipe, out=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


@pytest.mark.real
@pytest.mark.slow
def test_real_recipe_on_breastmnist_with_real_dinov2(real_dinov2_cache, tmp_path):
    cache, _ = real_dinov2_cache
    recipe = tmp_path / "real.toml"
    recipe.write_text(
        f'[suite]\ndatasets = ["breastmnist"]\ndata_root = "{BREASTMNIST.parent}"\n'
        f'cache_root = "{cache}"\n'
        f'out = "{tmp_path / "runs"}"\nreport = "{tmp_path / "report"}"\n\n'
        f'[[probe]]\nbackbone = "dinov2_small"\nweights = "{DINOV2_WEIGHTS}"\n'
        'heads = ["logreg", "knn"]\n\n'
        f'[[finetune]]\nmodel = "resnet18"\nepochs = 3\nbatch_size = 64\n'
    )
    report = run_suite(load_recipe(recipe))
    records = {(r.model, r.method): r for r in load_results(tmp_path / "runs")}
    assert set(records) == {
        ("dinov2_small", "logreg"),
        ("dinov2_small", "knn"),
        ("resnet18", "scratch"),
    }
    assert records["dinov2_small", "logreg"].metrics["test"]["acc"] > 0.75
    assert "breastmnist" in report.read_text()


def test_plan_lists_runs_data_and_cache_space_and_runs_nothing(tiny_data, tmp_path):
    args = ["suite", str(RECIPES / "tiny.toml"), "--plan", "--data-root", str(tiny_data)]
    result = CliRunner().invoke(probe_main, [*args, "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "probe    timm:test_vit [logreg,knn] on bloodmnist_28" in lines
    given = "pretrained=False img_size=32 epochs=1 batch_size=16"
    assert (
        f"finetune timm:test_resnet on bloodmnist_28 seed 0 [{given}]" in lines
        and "2 run(s)" in lines
    )
    assert "data: 1 file(s), 1 present" in result.output
    # 80 images x (64 cls + 64 mean + 5 x 64 last4) float16 values: what the entry will hold
    assert f"feature cache: {80 * 448 * 2 / 1e6:.1f} MB" in result.output
    assert not (tmp_path / "runs").exists() and not list(tiny_data.glob("cache*"))


def test_medmnist_plus_recipe_plans_every_dataset_and_size(tmp_path):
    recipe = load_recipe(RECIPES / "medmnist_plus.toml")
    assert len(recipe.datasets) == 12 and recipe.sizes == [28, 64, 128, 224]
    assert all(p["resize"] == "pad" and p["heads"] == ["linear", "knn"] for p in recipe.probes)
    result = CliRunner().invoke(
        probe_main,
        ["suite", str(RECIPES / "medmnist_plus.toml"), "--plan", "--data-root", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert f"{12 * 4 * len(recipe.probes)} run(s)" in result.output
    assert "48 to download" in result.output and "missing" in result.output


def test_medmnist3d_recipe_plans_slice_probes_and_3d_networks(tmp_path):
    recipe = load_recipe(RECIPES / "medmnist3d.toml")
    assert len(recipe.datasets) == 6 and recipe.sizes == [28, 64]
    assert [f["model"] for f in recipe.finetunes] == [
        "resnet18_2.5d",
        "resnet18_3d",
        "resnet18_acs",
    ]
    make_npz(tmp_path / "adrenalmnist3d.npz", n=(4, 2, 2), n_classes=2, volumes=True)
    args = ["suite", "medmnist3d", "--plan", "--json", "--data-root", str(tmp_path)]
    result = CliRunner().invoke(
        probe_main, [*args, "--datasets", "adrenalmnist3d", "--sizes", "28"]
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["runs"] == 4 and plan["images_bytes"] == 8 * 28**3
    # 8 volumes x 3 axes x 28 slices, each (384 cls + 384 mean + 5 x 384 last4) float16 values
    assert plan["cache_bytes"] == 8 * 84 * 2688 * 2


def test_a_recipe_refuses_a_network_for_volumes_as_a_probe(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(
        '[suite]\ndatasets = ["adrenalmnist3d"]\n\n[[probe]]\nbackbone = "resnet18_3d"\n'
    )
    with pytest.raises(RecipeError, match=r"r.toml:5: .*resnet18_3d is a network for volumes"):
        load_recipe(path)


@pytest.mark.slow
def test_a_3d_suite_probes_slices_trains_a_3d_network_and_reports_both(tmp_path):
    data = tmp_path / "data"
    make_npz(data / "adrenalmnist3d.npz", n=(12, 6, 6), n_classes=2, volumes=True)
    path = tmp_path / "r.toml"
    path.write_text(
        '[suite]\ndatasets = ["adrenalmnist3d"]\nsizes = [28]\nseeds = [0]\n'
        f'out = "{tmp_path / "runs"}"\nreport = "{tmp_path / "report"}"\n\n'
        '[[probe]]\nbackbone = "timm:test_vit"\npretrained = false\nimg_size = 32\n'
        'heads = ["logreg"]\nslices = "max"\n\n'
        '[[finetune]]\nbackbone = "resnet18_2.5d"\nepochs = 1\nbatch_size = 6\n'
    )
    args = ["suite", str(path), "--data-root", str(data), "--cache-root", str(tmp_path / "c")]
    result = CliRunner().invoke(probe_main, args)
    assert result.exit_code == 0, result.output
    records = {r.model: r for r in load_results(tmp_path / "runs")}
    assert set(records) == {"timm:test_vit", "resnet18_2.5d"}
    assert records["timm:test_vit"].config["slices"] == "max"
    assert all(r.metrics["test"]["n"] == 6 for r in records.values())
    report = (tmp_path / "report" / "report.md").read_text()
    assert "resnet18_2.5d" in report and "test_vit" in report

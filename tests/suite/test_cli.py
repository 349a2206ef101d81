"""The console scripts: help, version, listings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from finetune.cli import main as finetune_main
from probe.cli import main as probe_main
from suite.programs import probe as suite_main


def test_probe_help_lists_its_commands():
    result = CliRunner().invoke(probe_main, ["--help"])
    assert result.exit_code == 0
    for command in ("datasets", "backbones"):
        assert command in result.output


def test_finetune_help_lists_its_commands():
    result = CliRunner().invoke(finetune_main, ["--help"])
    assert result.exit_code == 0 and "backbones" in result.output


def test_one_vocabulary_with_the_old_spellings_hidden():
    """`--backbone` and `backbones` in both programs.

    Finetune's `--model` and `models` still work.
    """
    commands = CliRunner().invoke(finetune_main, ["--help"]).output
    run_help = CliRunner().invoke(finetune_main, ["run", "--help"]).output
    assert "models" not in commands and "--backbone" in run_help and "--model" not in run_help
    old = CliRunner().invoke(finetune_main, ["models", "--json"])
    assert old.exit_code == 0 and json.loads(old.output)[0]["name"] == "resnet18"
    from finetune.config import TrainConfig
    from medprobe.cli.options import click_options

    @click.command()
    @click_options(TrainConfig)
    def show(**options):
        click.echo(options["model"])

    for flag in ("--backbone", "--model"):
        assert CliRunner().invoke(show, [flag, "vit_tiny"]).output == "vit_tiny\n"


def test_version_of_both():
    for main in (probe_main, finetune_main):
        result = CliRunner().invoke(main, ["--version"])
        assert result.exit_code == 0 and "version 0." in result.output


def test_listings_name_datasets_and_backbones():
    runner = CliRunner()
    assert "bloodmnist" in runner.invoke(probe_main, ["datasets"]).output
    assert "dinov2_small" in runner.invoke(probe_main, ["backbones"]).output


@pytest.mark.parametrize(
    "main,args,first",
    [
        (probe_main, ["datasets"], "pathmnist"),
        (probe_main, ["backbones"], "resnet18"),
        (finetune_main, ["backbones"], "resnet18"),
        (finetune_main, ["datasets"], "pathmnist"),
    ],
)
def test_listings_have_json_and_a_header_over_aligned_columns(main, args, first):
    rows = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)
    assert rows[0][next(iter(rows[0]))] == first and len({tuple(r) for r in rows}) == 1
    table = CliRunner().invoke(main, args).output.splitlines()
    columns = list(rows[0])
    assert table[0].split()[: len(columns)][:2] == columns[:2]
    starts = [table[0].index(c) for c in columns if c in table[0]]
    long_name = next(line for line in table[1:] if line.split()[0] == rows[-1][columns[0]])
    assert all(long_name[s - 1] == " " for s in starts[1:])  # every column starts at its header


@pytest.mark.parametrize("script", ["probe", "finetune"])
def test_console_scripts_are_installed(script):
    installed = Path(sys.executable).parent / script  # pip puts entry points beside the interpreter
    assert installed.exists(), f"{installed} missing: pip install -e ."
    out = subprocess.run([installed, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "Usage" in out.stdout


HEAVY = ("torch", "timm", "sklearn", "matplotlib", "scipy", "medmnist", "torchvision")
HEAVY += ("transformers", "open_clip")


def modules_loaded_by(code: str) -> list[str]:
    """The heavy top-level modules a fresh interpreter has imported after running `code`."""
    probe_code = f"import sys\n{code}\nprint(__import__('json').dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe_code], capture_output=True, text=True, check=True
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    return sorted({name.split(".")[0] for name in loaded} & set(HEAVY))


@pytest.mark.parametrize("module", ["probe.cli", "finetune.cli", "suite.cli", "suite.programs"])
def test_importing_a_cli_loads_no_heavy_library(module):
    assert modules_loaded_by(f"import {module}") == []


@pytest.mark.parametrize(
    "argv",
    [
        ["probe", "--help"],
        ["probe", "datasets"],
        ["probe", "backbones"],
        ["probe", "cache", "ls"],
        ["probe", "cache", "verify"],
        ["finetune", "--help"],
        ["finetune", "models"],
    ],
)
def test_listings_and_help_load_no_heavy_library(argv, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPROBE_CACHE", str(tmp_path))
    run = "try:\n    main()\nexcept SystemExit:\n    pass"
    code = f"import sys; sys.argv = {argv!r}\nfrom suite.programs import {argv[0]} as main\n{run}"
    assert modules_loaded_by(code) == []


def test_fitting_a_probe_loads_no_plotting_or_sklearn():
    """`probe fit`'s modules (the run, its summary table) leave matplotlib to the report."""
    loaded = modules_loaded_by("import probe.run, probe.summary, probe.fit")
    assert "matplotlib" not in loaded and "sklearn" not in loaded


def test_head_names_are_the_heads():
    from probe.heads import HEADS
    from probe.options import HEAD_NAMES

    assert tuple(HEADS) == HEAD_NAMES


def test_verbose_and_quiet_work_after_the_subcommand(tmp_path):
    runner = CliRunner()
    assert runner.invoke(probe_main, ["datasets", "-q"]).exit_code == 0
    assert runner.invoke(finetune_main, ["models", "--quiet"]).exit_code == 0
    args = ["fit", "--dataset", "nope", "--cache-root", str(tmp_path)]
    clean = runner.invoke(probe_main, args)
    # one line, no traceback
    assert clean.exit_code == 1 and "unknown dataset 'nope'" in clean.output
    verbose = runner.invoke(probe_main, [*args, "-v"])
    # -v keeps the traceback, after the subcommand too
    assert isinstance(verbose.exception, ValueError)


@pytest.mark.parametrize("program", ["probe", "finetune"])
def test_python_m_runs_from_a_folder_with_its_own_core_package(program, tmp_path):
    """Research code often has a `core/` package of its own in its working folder."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "__init__.py").write_text(
        "raise ImportError('the user's own core package')\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", program, "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0 and "Usage" in out.stdout, out.stderr


def test_packaged_recipes_run_by_name(tmp_path):
    from suite.recipe import find_recipe, packaged_recipes

    assert {"tiny", "notebook_bloodmnist", "lpft_breastmnist"} <= set(packaged_recipes())
    assert find_recipe("tiny").name == "tiny.toml" and find_recipe("tiny.toml").is_file()
    result = CliRunner().invoke(suite_main, ["suite", "no_such_recipe", "--plan"])
    assert (
        result.exit_code == 1
        and "packaged: breastmnist_in_context, lpft_breastmnist" in result.output
    )


def test_fit_and_run_summaries_as_json(data_root, tmp_path, monkeypatch):
    """`--json` prints only JSON on stdout (standard: no NaN), one entry per record written."""
    monkeypatch.setenv("MEDPROBE_CACHE", str(tmp_path / "cache"))
    model = [
        "--no-pretrained",
        "--img-size",
        "32",
        "--dataset",
        "breastmnist",
        "--data-root",
        str(data_root),
    ]
    out = ["--out", str(tmp_path / "runs"), "--json"]
    fit = CliRunner().invoke(
        suite_main,
        ["fit", "--backbone", "timm:test_vit", *model, "--extract", "--head", "logreg,knn", *out],
    )
    assert fit.exit_code == 0, fit.output
    runs = json.loads(fit.stdout, parse_constant=pytest.fail)
    assert [r["method"] for r in runs] == ["logreg", "knn"] and all(
        Path(r["record"]).is_file() for r in runs
    )
    assert set(runs[0]["test"]) >= {"acc", "auc", "macro_f1", "balanced_acc", "ci95"}
    tiny = [
        "--model",
        "timm:test_resnet",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--precision",
        "fp32",
    ]
    run = CliRunner().invoke(finetune_main, ["run", *tiny, *model, *out])
    assert run.exit_code == 0, run.output
    brief = json.loads(run.stdout, parse_constant=pytest.fail)
    assert (
        brief["best_epoch"] == 1
        and brief["defaults"] == "scratch"
        and Path(brief["record"]).is_file()
    )

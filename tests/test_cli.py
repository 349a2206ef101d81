"""The console scripts: help, version, listings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from finetune.cli import main as finetune_main
from probe.cli import main as probe_main


def test_probe_help_lists_its_commands():
    result = CliRunner().invoke(probe_main, ["--help"])
    assert result.exit_code == 0
    for command in ("datasets", "backbones"):
        assert command in result.output


def test_finetune_help_lists_its_commands():
    result = CliRunner().invoke(finetune_main, ["--help"])
    assert result.exit_code == 0 and "models" in result.output


def test_version_of_both():
    for main in (probe_main, finetune_main):
        result = CliRunner().invoke(main, ["--version"])
        assert result.exit_code == 0 and "version 0." in result.output


def test_listings_name_datasets_and_backbones():
    runner = CliRunner()
    assert "bloodmnist" in runner.invoke(probe_main, ["datasets"]).output
    assert "dinov2_small" in runner.invoke(probe_main, ["backbones"]).output


@pytest.mark.parametrize("script", ["probe", "finetune"])
def test_console_scripts_are_installed(script):
    installed = Path(sys.executable).parent / script  # pip puts entry points beside the interpreter
    assert installed.exists(), f"{installed} missing: pip install -e ."
    out = subprocess.run([installed, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "Usage" in out.stdout


HEAVY = ("torch", "timm", "sklearn", "matplotlib", "scipy", "medmnist", "torchvision")


def modules_loaded_by(code: str) -> list[str]:
    """The heavy top-level modules a fresh interpreter has imported after running `code`."""
    probe_code = f"import sys\n{code}\nprint(__import__('json').dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe_code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    return sorted({name.split(".")[0] for name in loaded} & set(HEAVY))


@pytest.mark.parametrize("module", ["probe.cli", "finetune.cli"])
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
    code = f"import sys; sys.argv = {argv!r}\nfrom {argv[0]}.cli import main\n{run}"
    assert modules_loaded_by(code) == []


def test_head_names_are_the_heads():
    from medprobe.choices import HEAD_NAMES
    from probe.heads import HEADS

    assert tuple(HEADS) == HEAD_NAMES

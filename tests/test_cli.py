"""The console scripts: help, version, listings."""

from __future__ import annotations

import subprocess
import sys

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


def test_console_scripts_are_installed():
    out = subprocess.run([sys.executable, "-m", "probe", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "Usage" in out.stdout

"""What a new user trips over (#31): each case as they met it, and what they see now."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from medprobe.backbones.factory import WeightsUnavailableError, create_backbone
from suite.programs import finetune as finetune_main
from suite.programs import probe as probe_main

IN_A_FRESH_PROCESS = """
import sys
from click.testing import CliRunner
from suite.programs import probe
result = CliRunner().invoke(probe, {args!r})
print(result.exit_code, "torch" in sys.modules)
print(result.output)
"""


def fresh(args: list[str]) -> tuple[int, bool, str]:
    """(exit code, whether torch was imported, output) of a command in a new interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", IN_A_FRESH_PROCESS.format(args=args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    first, _, output = done.stdout.partition("\n")
    code, torch_loaded = first.split()
    return int(code), torch_loaded == "True", output


def test_a_typo_is_refused_before_torch_loads_with_the_close_name():
    code, torch_loaded, output = fresh(["extract", "--backbone", "dinov2_smal"])
    assert code == 1 and not torch_loaded
    assert "unknown backbone 'dinov2_smal'; did you mean 'dinov2_small'?" in output
    code, torch_loaded, output = fresh(["fit", "--dataset", "breastmnst"])
    assert code == 1 and not torch_loaded
    assert "did you mean 'breastmnist'?" in output
    code, torch_loaded, output = fresh(
        ["extract", "--backbone", "vit_tiny", "--weights", "/no/such/w.safetensors"]
    )
    assert (
        code == 1
        and not torch_loaded
        and "weights file /no/such/w.safetensors does not exist" in output
    )


def test_no_network_switches_the_hub_off_at_once(monkeypatch, caplog):
    import huggingface_hub.constants

    import medprobe.backbones.hub as hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    for proxy in hub.PROXIES:
        monkeypatch.delenv(proxy, raising=False)

    def unreachable(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(hub.socket, "create_connection", unreachable)
    with caplog.at_level(logging.DEBUG):
        try:
            create_backbone("timm:test_vit", pretrained=True)
        except WeightsUnavailableError as e:
            assert "--weights" in str(e)
        else:  # a hub cache on this machine may hold it; the switch is what matters
            pass
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    assert any("no network to huggingface.co" in r.message for r in caplog.records)
    assert not any("Retrying" in r.getMessage() for r in caplog.records)


def test_a_fix_hint_keeps_the_options_the_user_gave(data_root, tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"not read: the entry is missing first")
    args = ["fit", "--backbone", "vit_tiny", "--dataset", "breastmnist", "--data-root",
            data_root, "--cache-root", tmp_path / "cache", "--weights", weights,
            "--resize", "pad"]  # fmt: skip
    result = CliRunner().invoke(probe_main, [str(a) for a in args])
    assert result.exit_code == 1
    hint = result.output[result.output.index("`probe extract") :]
    for flag in (f"--data-root {data_root}", f"--cache-root {tmp_path / 'cache'}",
                 f"--weights {weights}", "--resize pad", "--backbone vit_tiny"):  # fmt: skip
        assert flag in hint, hint


def test_every_run_says_which_dataset_it_uses(data_root, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        CliRunner().invoke(
            probe_main,
            ["fit", "--data-root", str(data_root), "--cache-root", str(tmp_path / "cache")],
        )
    assert "dataset: bloodmnist at 28 px" in caplog.text  # the default, said out loud


def test_suite_overrides_the_recipe_s_datasets_and_sizes():
    args = ["suite", "tiny", "--plan", "--json", "--datasets", "breastmnist,retinamnist"]
    result = CliRunner().invoke(probe_main, [*args, "--sizes", "28,64"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["runs"] == 8 and list(plan)[0] == "runs"  # the totals first
    assert any("retinamnist_64" in run for run in plan["run_list"])
    bad = CliRunner().invoke(probe_main, ["suite", "tiny", "--plan", "--sizes", "28,big"])
    assert bad.exit_code == 2 and "comma-separated" in bad.output


def test_plan_prints_its_totals_before_the_runs():
    lines = CliRunner().invoke(probe_main, ["suite", "tiny", "--plan"]).output.splitlines()
    assert lines[1] == "2 run(s)" and lines[2].startswith("data: ")


def test_third_party_info_lines_are_quiet_unless_verbose():
    from medprobe.cli.common import setup_logging

    setup_logging(verbose=False)
    assert logging.getLogger("timm").getEffectiveLevel() == logging.WARNING
    setup_logging(verbose=True)
    assert logging.getLogger("timm").getEffectiveLevel() == logging.DEBUG
    setup_logging(verbose=False)


def test_listings_and_help_read_well():
    datasets = json.loads(CliRunner().invoke(probe_main, ["datasets", "--json"]).output)
    assert datasets[0]["train"] == 89996 and "train/val/test" not in datasets[0]
    fit_help = CliRunner().invoke(probe_main, ["fit", "--help"]).output
    assert "Folder of the result records" in fit_help and "medprobe[tensorboard]" not in fit_help
    run_help = CliRunner().invoke(finetune_main, ["run", "--help"]).output
    assert "pip install tensorboard" in " ".join(run_help.split())
    version = CliRunner().invoke(probe_main, ["--version"]).output
    assert "0.2.0" in version  # as the CHANGELOG's unreleased section


def test_short_training_curves_tick_whole_epochs():
    from medprobe.report.draw import training_curves

    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e, "val_acc": 0.5, "val_auc": 0.5}
        for e in (1, 2, 3)
    ]
    fig = training_curves(history, 2, title="three epochs")
    for ax in fig.axes:
        ticks = ax.get_xticks()
        assert np.allclose(ticks, np.round(ticks)), ticks


def test_shell_completion_completes_subcommands():
    import os
    import shutil

    probe = shutil.which("probe", path=os.path.dirname(sys.executable))
    env = {**os.environ, "COMP_WORDS": "probe ex", "COMP_CWORD": "1"}
    done = subprocess.run(
        [probe, *()],
        env=env | {"_PROBE_COMPLETE": "bash_complete"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "extract" in done.stdout

"""`probe suite --jobs N`: units side by side in processes of their own, the same records."""

from __future__ import annotations

import json
import os

import pytest

from medprobe.device import torch_threads
from suite.recipe import load_recipe
from suite.runner import run_suite
from suite.units import units, worker_environment


def test_the_environment_pins_one_gpu_per_worker_round_robin():
    assert worker_environment(0, ["0", "1"], jobs=4, cpus=16)["CUDA_VISIBLE_DEVICES"] == "0"
    assert worker_environment(3, ["0", "1"], jobs=4, cpus=16)["CUDA_VISIBLE_DEVICES"] == "1"
    assert worker_environment(1, ["2", "5"], jobs=2, cpus=16)["CUDA_VISIBLE_DEVICES"] == "5"
    cpu_only = worker_environment(1, [], jobs=2, cpus=2)
    assert "CUDA_VISIBLE_DEVICES" not in cpu_only and cpu_only["OMP_NUM_THREADS"] == "1"
    assert worker_environment(0, [], jobs=4, cpus=16)["OMP_NUM_THREADS"] == "4"


def test_units_cover_the_matrix_once(tmp_path):
    recipe = load_recipe("tiny", datasets=["breastmnist", "bloodmnist"], sizes=[28])
    found = units(recipe)
    assert [(u.kind, u.dataset) for u in found] == [
        ("probe", "breastmnist"),
        ("finetune", "breastmnist"),
        ("probe", "bloodmnist"),
        ("finetune", "bloodmnist"),
    ]
    assert len({u.name(recipe) for u in found}) == len(found)


def _records(folder) -> dict[str, dict]:
    return {
        p.stem: {k: v for k, v in json.loads(p.read_text()).items() if k in ("metrics", "config")}
        for p in folder.glob("*.json")
    }


@pytest.mark.slow
def test_two_jobs_give_the_records_one_job_gives(data_root, tmp_path):
    common = {"datasets": ["breastmnist", "bloodmnist"], "data_root": str(data_root)}
    serial = load_recipe("tiny", out=tmp_path / "serial", report=tmp_path / "r1", **common)
    serial.cache_root = str(tmp_path / "cache1")
    parallel = load_recipe("tiny", out=tmp_path / "jobs", report=tmp_path / "r2", **common)
    parallel.cache_root = str(tmp_path / "cache2")
    # Each of 2 workers gets half the CPU threads; float sums depend on the thread count, so the
    # serial run gets as many (under `make test-slow` this process has them all).
    with torch_threads(max(1, (os.cpu_count() or 1) // 2)):
        run_suite(serial)
    run_suite(parallel, jobs=2)
    one, two = _records(tmp_path / "serial"), _records(tmp_path / "jobs")
    assert len(one) == 6 and one == two  # 2 datasets x (logreg, knn, a fine-tune)
    logs = sorted(p.name for p in (tmp_path / "jobs" / "logs").iterdir())
    assert logs == sorted(f"{u.name(parallel)}.log" for u in units(parallel))
    # a rerun finds every record and does nothing but the report
    run_suite(parallel, jobs=2)
    assert _records(tmp_path / "jobs") == two


def test_slurm_options_come_from_the_recipe_and_the_command_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import suite.slurm
    from suite.programs import probe as probe_main
    from suite.values import SlurmOptions

    with pytest.raises(ValueError, match="--slurm-opt 'account': give KEY=VALUE"):
        SlurmOptions(opts=("account",))
    assert SlurmOptions(opts=("account=lab", "--qos=high")).extra == {
        "account": "lab",
        "qos": "high",
    }

    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[executor]\npartition = "gpu"\ntime_min = 30\n\n[[probe]]\nbackbone = "vit_tiny"\n'
    )
    submitted = []
    monkeypatch.setattr(suite.slurm, "submit", lambda r, options: submitted.append(options) or {})
    args = ["suite", str(recipe), "--executor", "slurm", "--slurm-time", "5"]
    result = CliRunner().invoke(probe_main, [*args, "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    [options] = submitted
    assert (options.partition, options.time_min, options.gpus_per_job) == ("gpu", 5, 0)
    assert f"--out {tmp_path / 'runs'} --status" in result.output  # the hint keeps the flags

    recipe.write_text('[executor]\nparition = "gpu"\n\n[[probe]]\nbackbone = "vit_tiny"\n')
    bad = CliRunner().invoke(probe_main, ["suite", str(recipe), "--plan"])
    assert bad.exit_code == 1 and "r.toml:2: unknown key 'parition' in [executor]" in bad.output


def test_a_folder_without_file_locks_is_refused_before_any_submit(tmp_path, monkeypatch):
    import errno
    import fcntl

    from medprobe.errors import UserError
    from suite.slurm import check_locks

    check_locks(tmp_path)  # a local disk has them

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(UserError, match="has no working file locks .*--jobs N"):
        check_locks(tmp_path)


def test_the_slurm_plan_lists_its_jobs_and_what_each_asks_for():
    from click.testing import CliRunner

    from suite.programs import probe as probe_main

    args = ["suite", "tiny", "--plan", "--executor", "slurm", "--slurm-gpus-per-job", "1"]
    output = CliRunner().invoke(probe_main, [*args, "--slurm-opt", "account=lab"]).output
    assert "slurm: 2 job(s) in one array" in output and "1 GPU(s), account=lab" in output
    assert "  job  report" in output

"""`probe suite --executor slurm`: the tiny recipe through submitit to a real Slurm.

`.ci/slurm-up` starts a one-node Slurm in CI; elsewhere (no `sinfo`, or no daemon answering)
these tests skip, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from suite.programs import probe as probe_main
from tests.support import make_npz


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    done = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    return done.returncode == 0 and any(s in done.stdout for s in ("idle", "mix", "alloc"))


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(not _slurm_up(), reason="no Slurm answering here (.ci/slurm-up starts one)"),
]

RECIPE = """
[suite]
datasets = ["{data}"]
task = "multi-class"
sizes = [28]
seeds = [0]

[[probe]]
backbone = "timm:test_vit"
pretrained = false
img_size = 32
precision = "fp32"
batch_size = 16
heads = ["logreg"]
"""


def _suite(recipe: Path, out: Path, *extra: str):
    args = ["suite", str(recipe), "--out", str(out / "runs"), "--report", str(out / "report")]
    return CliRunner().invoke(probe_main, [*args, "--cache-root", str(out / "cache"), *extra])


def _wait(jobs: list[str], seconds: int = 300) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        queue = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
        if not any(job in queue.split() or job.split("_")[0] in queue for job in jobs):
            return
        time.sleep(1)
    raise AssertionError(f"jobs {jobs} still queued or running after {seconds} s")


def _metrics(runs: Path) -> dict:
    return {
        p.name: json.loads(p.read_text())["metrics"]["test"]["acc"] for p in runs.glob("*.json")
    }


def test_the_recipe_through_slurm_writes_the_records_a_local_run_writes(tmp_path):
    data = make_npz(tmp_path / "own.npz", n_classes=3, n=(60, 20, 30))
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(data=data))
    local = _suite(recipe, tmp_path / "local")
    assert local.exit_code == 0, local.output
    submitted = _suite(recipe, tmp_path / "slurm", "--executor", "slurm")
    assert submitted.exit_code == 0, submitted.output
    jobs = json.loads((tmp_path / "slurm" / "runs" / "slurm" / "jobs.json").read_text())
    _wait(list(jobs.values()))
    assert _metrics(tmp_path / "slurm" / "runs") == _metrics(tmp_path / "local" / "runs") != {}
    assert (tmp_path / "slurm" / "report" / "report.html").exists()  # the dependent report job
    status = _suite(recipe, tmp_path / "slurm", "--status", "--json")
    assert {row["state"] for row in json.loads(status.output)} == {"done"}


def test_a_job_cancelled_mid_extraction_resumes_to_the_identical_entry(tmp_path):
    data = make_npz(tmp_path / "own.npz", n_classes=3, n=(60000, 50, 50))
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(data=data))
    out = tmp_path / "slurm"
    assert _suite(recipe, out, "--executor", "slurm").exit_code == 0
    jobs = json.loads((out / "runs" / "slurm" / "jobs.json").read_text())
    unit = next(name for name in jobs if name.startswith("probe-"))
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "cache").rglob("*.progress-*.json")):
        time.sleep(0.05)  # the extraction has written its first chunk
    # Slurm sends SIGTERM, which submitit lets pass, then SIGKILL after KillWait (1 s in
    # .ci/slurm-up, as a preemption with a short grace): nothing gets to clean up
    subprocess.run(["scancel", jobs[unit], jobs["report"]], check=True)
    _wait(list(jobs.values()))
    assert list((out / "cache").rglob("*.h5.partial")) and not list((out / "cache").rglob("*.h5"))
    rows = {r["unit"]: r for r in json.loads(_suite(recipe, out, "--status", "--json").output)}
    assert rows[unit]["state"] == "cancelled"

    assert _suite(recipe, out, "--executor", "slurm").exit_code == 0
    _wait(list(json.loads((out / "runs" / "slurm" / "jobs.json").read_text()).values()))
    assert _suite(recipe, tmp_path / "local").exit_code == 0
    [resumed] = (out / "cache").rglob("*.h5")
    [reference] = (tmp_path / "local" / "cache").rglob("*.h5")
    with h5py.File(resumed) as a, h5py.File(reference) as b:
        for split in ("train", "val", "test"):
            for kind in a[split]["features"]:
                np.testing.assert_array_equal(
                    a[split]["features"][kind][...], b[split]["features"][kind][...]
                )

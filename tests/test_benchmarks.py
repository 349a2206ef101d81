"""The benchmark runners run end to end (on tiny models; their figures live in BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_compare_runs_both_paths_and_appends_a_row(tmp_path):
    table = tmp_path / "BENCH.md"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.compare",
        "--backbone",
        "timm:test_vit",
        "--no-pretrained",
        "--synthetic",
        "--limit",
        "60",
        "--epochs",
        "1",
        "--append",
        str(table),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout[: done.stdout.rindex("}") + 1])
    assert figures["rows"] == {"train": 60, "val": 9, "test": 18}
    assert (
        figures["notebook"]["extrapolated"]
        and figures["notebook"]["seconds"] > figures["notebook"]["measured_s"]
    )
    assert 0 <= figures["medprobe"]["logreg"]["acc"] <= 1
    row = table.read_text()
    assert "(extrapolated from 1 epochs)" in row and "python -m benchmarks.compare" in row

"""A suite's wall time one unit at a time, `--jobs N` at once, and through Slurm (issue #32).

    python -m benchmarks.suite_jobs --recipe tiny --datasets breastmnist --data-root ../shared/data
    python -m benchmarks.suite_jobs ... --modes serial,jobs2,slurm   # slurm: a Slurm must answer

Each mode runs the whole `probe suite` command from a fresh cache and output folder, start-up
included; `slurm` counts from the submit to the end of the report job. Prints one markdown row.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.common import machine

MODES = {"serial": [], "jobs2": ["--jobs", "2"], "slurm": ["--executor", "slurm"]}


def wall(mode: str, args: argparse.Namespace, folder: Path) -> float:
    """Seconds of one mode's whole suite, in `folder`."""
    command = [sys.executable, "-m", "probe", "-q", "suite", args.recipe]
    command += ["--datasets", args.datasets, "--data-root", args.data_root]
    command += ["--out", str(folder / "runs"), "--report", str(folder / "report")]
    command += ["--cache-root", str(folder / "cache"), *MODES[mode]]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    if mode == "slurm":
        jobs = json.loads((folder / "runs" / "slurm" / "jobs.json").read_text())
        _wait([str(job).split("_")[0] for job in jobs.values()])
    seconds = time.perf_counter() - started
    if not (folder / "report" / "report.html").exists():
        raise RuntimeError(f"{mode}: no report in {folder}")
    return seconds


def _wait(jobs: list[str]) -> None:
    while True:
        queue = subprocess.run(["squeue", "-h", "-o", "%F"], capture_output=True, text=True).stdout
        if not set(queue.split()) & set(jobs):
            return
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="tiny")
    parser.add_argument("--datasets", default="breastmnist")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--modes", default="serial,jobs2")
    args = parser.parse_args()
    modes = args.modes.split(",")
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            seconds[mode] = wall(mode, args, Path(tmp) / mode)
    command = shlex.join(["python", "-m", "benchmarks.suite_jobs", *sys.argv[1:]])
    cells = " | ".join(f"{seconds[m]:.1f}" for m in modes)
    suite = f"{args.recipe} on {args.datasets}"
    print(f"| {date.today()} | {machine()} | {suite} | {cells} | `{command}` |")


if __name__ == "__main__":
    main()

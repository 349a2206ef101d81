"""Where the seconds of `probe fit --extract` go, on an empty cache: one whole process, profiled.

    python -m benchmarks.profile_fit                  # BloodMNIST-sized data, dinov2_small
    python -m benchmarks.profile_fit --tiny           # tiny data and timm's test_vit (CI)
    python -m benchmarks.profile_fit --build dinov2_small=PATH/dinov2_vits14.safetensors

Runs the command a user types under cProfile (`python -m cProfile -m probe fit --extract ...`) on
BloodMNIST-sized synthetic data and a random-init backbone, then reads each phase's cumulative
seconds from the profile: imports, CUDA start-up, building the model, hashing the npz, reading
it, the extraction loop (upload, forward, copies back; the writes run on a background thread and
show here only where the loop waits for them), finishing the entry, the head's sweep, the test
bootstrap, writing the record. It runs the command once more without the profiler for the plain
wall time (cProfile slows Python-heavy parts). Phases nest (imports happen inside others too), so
they do not add up; the last row is the profiled wall minus every phase but the imports (so the
imports are in it).
"""

from __future__ import annotations

import argparse
import json
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine
from benchmarks.synthetic import write_npz

# phase -> (file suffix, function name) whose cumulative time it is
PHASES = {
    "imports (all, wherever made)": ("<frozen importlib._bootstrap>", "_find_and_load"),
    "CUDA start-up": ("torch/cuda/__init__.py", "_lazy_init"),
    "build the model (weights included)": ("medprobe/backbones/factory.py", "create_backbone"),
    "hash the npz (MD5)": ("medprobe/data/files.py", "_digest"),
    "open the npz's splits": ("medprobe/data/splits.py", "open_splits"),
    "extraction loop (upload, forward, copies)": ("cache/extract.py", "_fill"),
    "finish the entry (checksums, rename)": ("cache/writer.py", "finalize"),
    "read the entry's features": ("cache/store.py", "read_split"),
    "head sweep on val": ("probe/fit.py", "_fit"),
    "test metrics with bootstrap": ("medprobe/metrics/scores.py", "evaluate"),
    "write the record": ("medprobe/results.py", "save"),
}
OUTERMOST = (
    "build the model (weights included)",
    "hash the npz (MD5)",
    "open the npz's splits",
    "extraction loop (upload, forward, copies)",
    "finish the entry (checksums, rename)",
    "read the entry's features",
    "head sweep on val",
    "test metrics with bootstrap",
    "write the record",
)
SCALES = {"full": ((11959, 1712, 3421), "dinov2_small"), "tiny": ((48, 16, 16), "timm:test_vit")}


def timed_runs(work: Path, backbone: str, split: tuple[int, int, int]) -> tuple[float, float, Path]:
    """`probe fit --extract` on an empty cache twice: plain, then under cProfile.

    Returns (plain wall s, profiled wall s, the profile's path).
    """
    write_npz(work / "data" / "bloodmnist.npz", n_train=split[0], n_val=split[1], n_test=split[2])
    stats = work / "fit.prof"
    walls = []
    for run, profiler in enumerate(([], ["-m", "cProfile", "-o", str(stats)])):
        command = [sys.executable, *profiler, "-m", "probe", "fit", "--extract"]
        command += ["--backbone", backbone, "--no-pretrained", "--data-root", str(work / "data")]
        command += ["--cache-root", str(work / f"cache{run}"), "--out", str(work / f"runs{run}")]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
    return walls[0], walls[1], stats


def phase_seconds(stats_path: Path) -> dict[str, float]:
    """Each phase's cumulative seconds in the profile (0 where it never ran)."""
    stats = pstats.Stats(str(stats_path)).stats  # type: ignore[attr-defined]
    seconds = dict.fromkeys(PHASES, 0.0)
    for (filename, _, function), (_, _, _, cumulative, _) in stats.items():
        for phase, (suffix, name) in PHASES.items():
            if function == name and filename.replace("\\", "/").endswith(suffix):
                seconds[phase] += cumulative
    return seconds


def build_times(backbone: str, weights: str, rounds: int = 5) -> tuple[float, float]:
    """Median seconds to build `backbone` from a weights file, both ways, alternating.

    As `create_backbone` does (on `meta`, given the file's tensors), and initialised at random
    then loaded.
    """
    from medprobe.backbones.factory import create_backbone
    from medprobe.backbones.weights import load_local_weights

    def initialised_then_loaded():
        model = create_backbone(backbone, pretrained=False)[0]
        load_local_weights(model, weights, name=backbone)

    times: dict[str, list[float]] = {"meta": [], "init": []}
    for _ in range(rounds):
        for how, build in (
            ("meta", lambda: create_backbone(backbone, weights=weights)),
            ("init", initialised_then_loaded),
        ):
            start = time.perf_counter()
            build()
            times[how].append(time.perf_counter() - start)
    return float(statistics.median(times["meta"])), float(statistics.median(times["init"]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny data and timm's test_vit")
    parser.add_argument("--backbone", help="[default: dinov2_small; --tiny: timm:test_vit]")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--build", help="NAME=WEIGHTS: time building it from the file, both ways")
    args = parser.parse_args()
    if args.build:
        name, weights = args.build.split("=", 1)
        meta, init = build_times(name, weights)
        print(f"| {machine()} | {name} | {meta:.2f} | {init:.2f} | {init / meta:.1f}x |")
        return
    split, backbone = SCALES["tiny" if args.tiny else "full"]
    with tempfile.TemporaryDirectory(prefix="medprobe-profile-") as work:
        plain, wall, stats = timed_runs(Path(work), args.backbone or backbone, split)
        seconds = phase_seconds(stats)
    rest = wall - sum(seconds[p] for p in OUTERMOST)
    print(f"`probe fit --extract --backbone {args.backbone or backbone}`, {sum(split):,} images, ")
    print(f"{machine()}: {plain:.1f} s wall, {wall:.1f} s under cProfile\n")
    print("| phase | s (profiled) | share of the profiled wall |\n| --- | --- | --- |")
    for phase, value in [*seconds.items(), ("the rest: interpreter start, imports, CLI", rest)]:
        print(f"| {phase} | {value:.2f} | {value / wall:.0%} |")
    if args.json:
        figures = {"wall_s": plain, "profiled_wall_s": wall, "phases": seconds}
        args.json.write_text(json.dumps(figures | {"machine": machine()}))


if __name__ == "__main__":
    main()

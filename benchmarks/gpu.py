"""The GPU figures (issues #12, #33) as whole processes (start-up included), on the device here.

    python -m benchmarks.gpu --out gpu-figures      # on a GPU: the steps #33's goals need
    python -m benchmarks.gpu --steps all            # every step (#12's rows, 100-epoch volumes)
    python -m benchmarks.gpu --tiny --out figures   # anywhere, in a minute or two (CI runs this)

BloodMNIST-sized synthetic data (11,959 / 1,712 / 3,421 images of 28 px), random-init models
(throughput does not depend on the weights). Each step is a command a user would type; the
script prints one markdown row per figure and keeps them, with the raw numbers, in --out
(`rows.md`, `figures.json`), written after every step so an interrupted run keeps what it measured.
It also runs extraction and fine-tuning under `torchrun --standalone` with 1 process and, where two
GPUs (or none) allow it, 2, so the process-group path (NCCL on GPUs) runs.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine
from benchmarks.synthetic import write_npz, write_volumes

SCALES = {
    "full": dict(
        split=(11959, 1712, 3421),
        vit="vit_tiny",
        dino="dinov2_small",
        cnn="resnet18",
        vit_images=4096,
        volumes=(1188, 98, 298),  # AdrenalMNIST3D's splits
        volume_epochs=100,  # MedMNIST v2's 3D schedule (MedMNIST/experiments, MedMNIST3D)
        head_sizes="500x768 8-class,5000x768,12000x768,50000x768,12000x3072",
    ),
    "tiny": dict(
        split=(48, 16, 16),
        vit="timm:test_vit",
        dino="timm:test_vit",
        cnn="timm:test_resnet",
        vit_images=32,
        volumes=(8, 4, 4),
        volume_epochs=1,
        head_sizes="500x768 8-class",
    ),
}
PY = sys.executable


class Bench:
    """Runs commands in a scratch folder, times them, and keeps every figure as a row."""

    def __init__(self, scale: dict, work: Path, out: Path):
        self.scale, self.work, self.out = scale, work, out
        self.rows: list[str] = []
        self.figures: dict = {"machine": machine()}
        self.data = work / "data"
        self.volumes_root: Path | None = None  # the volumes step's real data, if any
        self.volume_epochs: int | None = None
        n_train, n_val, n_test = scale["split"]
        write_npz(self.data / "bloodmnist.npz", n_train=n_train, n_val=n_val, n_test=n_test)

    def run(self, *args: str, cache: str = "cache") -> tuple[float, str]:
        """Run a command (`probe ...`, `finetune ...`, `python ...`).

        Returns (wall seconds, stdout).
        """
        where = []
        if args[0] in ("probe", "finetune") and args[1] in ("extract", "fit", "run"):
            where = [] if "--data-root" in args else ["--data-root", str(self.data)]
            where += ["--cache-root", str(self.work / cache)] if args[0] == "probe" else []
        command = self._argv(args) + where
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=Path.cwd())
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        return seconds, done.stdout

    def _argv(self, args: tuple[str, ...]) -> list[str]:
        if args[0] in ("probe", "finetune"):
            return [PY, "-m", *args]
        if args[0] == "torchrun":  # ("torchrun", processes, module, ...)
            launch = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
            return [*launch, args[1], "-m", *args[2:]]
        if args[0] == "python":
            return [PY, *args[1:]]
        return list(args)

    def row(self, what: str, value: str, command: str, **raw) -> None:
        line = f"| {what} | {value} | `{command}` |"
        print(line, flush=True)
        self.rows.append(line)
        self.figures[what] = raw
        self.out.mkdir(parents=True, exist_ok=True)
        header = (
            f"Machine: {self.figures['machine']}\n\n"
            "| what | figure | command |\n| --- | --- | --- |\n"
        )
        (self.out / "rows.md").write_text(header + "\n".join(self.rows) + "\n")
        (self.out / "figures.json").write_text(json.dumps(self.figures, indent=2))


def start_up(b: Bench) -> None:
    helps = [b.run("probe", "--help")[0] for _ in range(3)]
    torch_import = [b.run("python", "-c", "import torch")[0] for _ in range(3)]
    b.row(
        "`probe --help` / `import torch` (s, best of 3)",
        f"{min(helps):.2f} / {min(torch_import):.2f}",
        "probe --help",
        help_s=helps,
        import_torch_s=torch_import,
    )


def frozen(b: Bench) -> None:
    dino = b.scale["dino"]
    wall, out = b.run("probe", "extract", "--backbone", dino, "--no-pretrained")
    rate = float(re.search(r"\(([\d.]+) img/s\)", out).group(1))
    b.row(
        f"`probe extract` {dino}, default batch",
        f"{wall:.1f} s wall, {rate:,.0f} img/s extracting",
        f"probe extract --backbone {dino} --no-pretrained",
        wall_s=wall,
        images_per_s=rate,
    )
    runs = b.work / "runs"
    wall, _ = b.run(
        "probe",
        "fit",
        "--backbone",
        dino,
        "--no-pretrained",
        "--head",
        "logreg,linear,knn",
        "--out",
        str(runs),
    )
    timings = {
        r["method"]: r["timings"] for r in map(json.loads, map(Path.read_text, runs.glob("*.json")))
    }
    parts = ", ".join(
        f"{h} {t['fit_s']:.1f} + {t['bootstrap_s']:.1f}" for h, t in sorted(timings.items())
    )
    b.row(
        "`probe fit --head logreg,linear,knn` (s: wall; fit + bootstrap per head)",
        f"{wall:.1f}; {parts}",
        f"probe fit --backbone {dino} --head logreg,linear,knn",
        wall_s=wall,
        heads=timings,
    )
    wall, _ = b.run(
        "probe",
        "fit",
        "--extract",
        "--backbone",
        dino,
        "--no-pretrained",
        "--out",
        str(b.work / "runs-once"),
        cache="cache-fresh",
    )
    b.row(
        f"`probe fit --extract` {dino} + logreg, empty cache (s)",
        f"{wall:.1f}",
        f"probe fit --extract --backbone {dino} --no-pretrained",
        wall_s=wall,
    )


def extraction(b: Bench) -> None:
    n = str(sum(b.scale["split"]))
    for backbone, batch in (
        (b.scale["dino"], None),
        (b.scale["vit"], "128"),
        (b.scale["vit"], "512"),
    ):
        args = ["--backbone", backbone, "--images", n, "--notebook-images", "512"]
        args += ["--batch-size", batch] if batch else []
        _, out = b.run("python", "-m", "benchmarks.extract_throughput", *args)
        res = json.loads(out[out.index("{") : out.rindex("}") + 1])
        bare, e2e = res["bare"]["rate"], res["e2e"]["rate"]
        b.row(
            f"extraction {backbone}, batch {batch or 'default'}: bare forward / `probe extract` / "
            "notebook (img/s)",
            f"{bare:,.0f} / {e2e:,.0f} ({e2e / bare:.0%}) / {res['notebook']['rate']:,.0f}",
            "python -m benchmarks.extract_throughput " + " ".join(args),
            **res,
        )


def finetuning(b: Bench) -> None:
    train = str(b.scale["split"][0])
    _finetune_row(b, b.scale["cnn"], train, ["--batch-size", "128"])
    _finetune_row(b, b.scale["cnn"], train, ["--batch-size", "512", "--no-notebook"])
    _finetune_row(b, b.scale["vit"], str(b.scale["vit_images"]), ["--batch-size", "128"])


def _finetune_row(b: Bench, model: str, images: str, extra: list[str]) -> None:
    """Medprobe's second epoch against one epoch of the notebook path.

    The first epoch carries cuDNN's autotuning, or compiling. `extra` with --no-notebook skips
    the notebook.
    """
    args = ["--model", model, "--images", images, "--epochs", "2", *extra]
    _, out = b.run("python", "-m", "benchmarks.finetune_throughput", *args)
    res = json.loads(out.splitlines()[-2])
    notebook = "" if "--no-notebook" in extra else f" / {res['notebook_img_s']:,.0f}"
    b.row(
        f"`finetune run` {model} {' '.join(extra)}: medprobe, epoch 2"
        f"{' / notebook' if notebook else ''} (img/s)",
        f"{res['medprobe_img_s']:,.0f}{notebook}",
        "python -m benchmarks.finetune_throughput " + " ".join(args),
        **res,
    )


def notebook(b: Bench) -> None:
    dino, n = b.scale["dino"], str(b.scale["split"][0])
    args = [
        "--backbone",
        dino,
        "--no-pretrained",
        "--synthetic",
        "--limit",
        n,
        "--epochs",
        "1",
        "--append",
        "",
    ]
    _, out = b.run("python", "-m", "benchmarks.compare", *args)
    res = json.loads(out[out.index("{") : out.rindex("}") + 1])
    nb, ours = res["notebook"], res["medprobe"]["logreg"]
    b.row(
        f"frozen experiment {dino}: notebook 20 epochs (from 1) / medprobe extract + logreg (s)",
        f"{nb['seconds']:.0f} / {ours['seconds']:.1f} ({nb['seconds'] / ours['seconds']:.0f}x)",
        "python -m benchmarks.compare " + " ".join(args[:-2]),
        **res,
    )


def distributed(b: Bench) -> None:
    """`probe extract` and `finetune run` under torchrun: 1 process, and 2 where they can run.

    Two need two GPUs (NCCL refuses two ranks on one GPU since NCCL 2.5: NVIDIA/nccl#418) or
    none (gloo on the CPU, as `--tiny` runs it).
    """
    commands = {
        "probe extract": f"probe extract --backbone {b.scale['vit']} --no-pretrained",
        "finetune run": f"finetune run --backbone {b.scale['cnn']} --no-pretrained --epochs 1",
    }
    counts = ("1",) if _gpus() == 1 else ("1", "2")
    for processes in counts:
        where = {
            "probe extract": ["--cache-root", str(b.work / f"cache-torchrun-{processes}")],
            "finetune run": ["--out", str(b.work / f"runs-torchrun-{processes}")],
        }
        for name, command in commands.items():
            extra = ["--data-root", str(b.data), *where[name]]
            wall, _ = b.run("torchrun", processes, *command.split(), *extra)
            launcher = f"torchrun --standalone --nproc_per_node {processes} -m"
            b.row(f"`{launcher} {name}` (s)", f"{wall:.1f}", f"{launcher} {command}", wall_s=wall)
    if counts == ("1",):
        b.row("torchrun with 2 processes", "not run: one GPU (NCCL: one rank per GPU)", "-")


def volumes(b: Bench) -> None:
    """MedMNIST v2's 3D ResNet-18s from scratch: real AdrenalMNIST3D-28 where given, else noise.

    Test AUC / ACC of the best val epoch, and training volumes/s.
    """
    if b.volumes_root is not None:
        data, where = "adrenalmnist3d", ["--data-root", str(b.volumes_root)]
    else:
        n_train, n_val, n_test = b.scale["volumes"]
        path = write_volumes(b.work / "volumes.npz", n_train=n_train, n_val=n_val, n_test=n_test)
        data, where = str(path), ["--task", "binary-class"]
    _volume_extraction(b, data, where)
    epochs = str(b.volume_epochs or b.scale["volume_epochs"])
    for network in ("resnet18_2.5d", "resnet18_3d", "resnet18_acs"):
        command = (
            f"finetune run --backbone {network} --dataset {data} --epochs {epochs} "
            "--batch-size 32 --json"
        )
        wall, out = b.run(*command.split(), *where, "--out", str(b.work / "runs-3d"))
        brief = json.loads(out)
        test, timings = brief["test"], json.loads(Path(brief["record"]).read_text())["timings"]
        b.row(
            f"`finetune run` {network} on {Path(data).stem}, {epochs} epochs: test AUC / ACC, "
            "train volumes/s, wall s",
            f"{test['auc']:.3f} / {test['acc']:.3f}, {timings['train_images_per_s']:.1f}, "
            f"{wall:.0f}",
            command,
            wall_s=wall,
            test=test,
            timings=timings,
        )


def _volume_extraction(b: Bench, data: str, where: list[str]) -> None:
    """The frozen 2D backbone on every slice of the volumes, along all three axes."""
    command = f"probe extract --backbone {b.scale['dino']} --no-pretrained --dataset {data}"
    wall, out = b.run(*command.split(), *where, cache="cache-3d")
    rate = float(re.search(r"\(([\d.]+) img/s\)", out).group(1))
    b.row(
        f"`probe extract` {b.scale['dino']} on {Path(data).stem}'s slices (3 axes)",
        f"{wall:.1f} s wall, {rate:,.0f} slices/s extracting",
        command,
        wall_s=wall,
        slices_per_s=rate,
    )


def heads(b: Bench) -> None:
    """Each head's sweep on the CPU and on the GPU (logreg also one C at a time on the CPU)."""
    devices = "cpu,cuda" if _gpus() else "cpu"
    args = ["--by-device", "--devices", devices, "--sizes", b.scale["head_sizes"]]
    _, out = b.run("python", "-m", "benchmarks.heads", *args)
    timings = [line for line in out.splitlines() if line.startswith("| ")]
    b.row(
        "head sweeps: size, head, path, device, seconds, chosen",
        "<br>".join(" ".join(cell.strip() for cell in t.split("|")[3:-1]) for t in timings),
        "python -m benchmarks.heads " + " ".join(args),
        rows=timings,
    )


def profiled(b: Bench) -> None:
    """Where `probe fit --extract`'s seconds go, phase by phase (`benchmarks.profile_fit`)."""
    args = ["--json", str(b.work / "profile.json")]
    args += ["--tiny"] if b.scale is SCALES["tiny"] else []
    _, out = b.run("python", "-m", "benchmarks.profile_fit", *args)
    figures = json.loads((b.work / "profile.json").read_text())
    top = sorted(figures["phases"].items(), key=lambda item: -item[1])[:6]
    b.row(
        f"`probe fit --extract` profiled: {figures['wall_s']:.1f} s wall; largest phases (s)",
        ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in top),
        "python -m benchmarks.profile_fit",
        **figures,
    )


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()


def compiled(b: Bench) -> None:
    train = str(b.scale["split"][0])
    for batch in ("128", "512"):
        _finetune_row(
            b, b.scale["cnn"], train, ["--batch-size", batch, "--compile", "--no-notebook"]
        )


STEPS = {
    "start-up": start_up,
    "frozen": frozen,
    "extraction": extraction,
    "finetune": finetuning,
    "notebook": notebook,
    "torchrun": distributed,
    "compile": compiled,
    "volumes": volumes,
    "heads": heads,
    "profile": profiled,
}
# What issue #33's goals need, in one run that fits its 8 minutes: #12's fine-tune, notebook and
# compile rows stand in BENCHMARKS.md, and v2's 100-epoch volumes are a run of their own.
GOALS = ("start-up", "frozen", "extraction", "torchrun", "heads", "profile")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny data and timm test models")
    parser.add_argument("--out", type=Path, default=Path("gpu-figures"))
    parser.add_argument(
        "--steps",
        default=",".join(GOALS),
        help=f"comma-separated, of {', '.join(STEPS)}; or all [default: {','.join(GOALS)}]",
    )
    parser.add_argument(
        "--volumes-root",
        type=Path,
        help="a folder with the real adrenalmnist3d.npz for the volumes step [default: noise]",
    )
    parser.add_argument("--volume-epochs", type=int, help="[default: 100; --tiny: 1]")
    args = parser.parse_args()
    steps = list(STEPS) if args.steps == "all" else args.steps.split(",")
    if unknown := [name for name in steps if name not in STEPS]:
        parser.error(f"unknown step {', '.join(unknown)}; choose from {', '.join(STEPS)} or all")
    work = Path(tempfile.mkdtemp(prefix="medprobe-bench-"))
    bench = Bench(SCALES["tiny" if args.tiny else "full"], work, args.out)
    bench.volumes_root, bench.volume_epochs = args.volumes_root, args.volume_epochs
    try:
        for name in steps:
            started = time.perf_counter()
            STEPS[name](bench)
            print(f"# {name}: {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

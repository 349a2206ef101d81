"""Device, precision and process-group choices shared by extraction and training."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

from medprobe.backbones.registry import PRECISIONS

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | None, *, rank: int = 0) -> torch.device:
    """`device` as given, else this rank's GPU (LOCAL_RANK under torchrun), else the CPU."""
    if device:
        try:
            chosen = torch.device(device)
        except RuntimeError as e:
            raise ValueError(f"unknown --device {device!r}; use cpu, cuda or cuda:N") from e
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"--device {device}: no CUDA device is available here; use --device cpu"
            )
        return chosen
    if torch.cuda.is_available():
        return torch.device(
            "cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
        )
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device, *, volumes: bool = False) -> str:
    """Resolve "auto": bf16 where it runs fast (CUDA, CPUs with AVX-512-BF16 or AMX), else fp32.

    A network for volumes (`volumes`) trains in fp32 on the CPU: there, bf16 3D convolutions
    (oneDNN, torch 2.14.1) gave NaN weight gradients now and then, at a few voxels a side.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    fast = device.type == "cpu" and cpu_has_fast_bf16() and not volumes
    return "bf16" if fast else "fp32"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 units (AVX-512-BF16 or AMX): bf16 autocast pays there."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast(device: torch.device, precision: str):
    """The autocast context for a resolved precision (a no-op for fp32)."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


DEVICE_SHARE = 0.25  # data may take this share of a GPU's free memory; the rest is the model's


@contextlib.contextmanager
def torch_threads(count: int):
    """Run a block on `count` torch threads (process-wide), then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether `nbytes` of input data may live on `device` for a whole run.

    On a GPU, when they take at most DEVICE_SHARE of its free memory (the model and its activations
    need the rest).
    """
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_SHARE * free


def init_distributed() -> tuple[int, int]:
    """(rank, world size). Under torchrun, even with one process, joins the process group.

    NCCL on GPUs (each rank on its LOCAL_RANK device), else gloo.
    """
    launched = all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))
    if launched and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank (a no-op without torch.distributed)."""
    if dist.is_initialized():
        dist.barrier()


def broadcast_flag(value: bool) -> bool:
    """Rank 0's value on every rank (the value itself without a process group)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def slowest_and_total(seconds: float, images: int) -> tuple[float, int]:
    """Wall time is the slowest rank's; images add up."""
    if not dist.is_initialized():
        return seconds, images
    values: list[tuple[float, int]] = [(0.0, 0)] * dist.get_world_size()
    dist.all_gather_object(values, (seconds, images))
    return max(s for s, _ in values), sum(n for _, n in values)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model and thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = "cpu"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model} ({torch.get_num_threads()} threads)"


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: the GPU's allocated tensors, or the process's resident set on the CPU."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 1e6, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux

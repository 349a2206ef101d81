"""Fill a cache entry: every split through the frozen backbone once, on the fast path.

uint8 batches go from memory to the device, are preprocessed there, and run under bf16 autocast
where the hardware supports it; the copy back and the write to disk happen on a background thread
while the next batch computes. Under `torchrun` each rank takes every world-th batch and writes its
own rows; rank 0 lays out and finalizes the entry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import filelock
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from cache.store import CacheKey, entry_path, inspect_entry
from cache.writer import BackgroundWriter, PartialEntry, attach_partial, open_partial
from medprobe.atomic import disk_errors
from medprobe.backbones import RANDOM_INIT_SEED, create_backbone, extract_features, preprocess_config
from medprobe.data import SPLITS, dataset_path, file_md5, get_dataset, load_split
from medprobe.device import (
    autocast,
    barrier,
    fits_on,
    init_distributed,
    resolve_device,
    resolve_precision,
)
from medprobe.preprocess import preprocess
from medprobe.registry import get_backbone
from medprobe.results import package_versions
from medprobe.weights import weights_identity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractResult:
    path: Path
    reused: bool
    images_per_second: float | None = None
    rank: int = 0


def extract(
    backbone: str,
    dataset: str = "bloodmnist",
    *,
    size: int = 28,
    task: str | None = None,
    splits: tuple[str, ...] = SPLITS,
    batch_size: int | None = None,
    precision: str = "auto",
    resize: str = "bicubic",
    img_size: int | None = None,
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
    dtype: str = "float16",
    data_root: str | os.PathLike | None = None,
    cache_root: str | os.PathLike | None = None,
    device: str | None = None,
    download: bool = True,
    overwrite: bool = False,
    lock_timeout: float = -1,
    progress: bool = True,
) -> ExtractResult:
    """Extract all feature kinds of `backbone` for `dataset` into a cache entry (or reuse it).

    Args:
        backbone: registry name or `timm:<model>`.
        dataset: MedMNIST flag, or a path to a MedMNIST-layout npz (then `task` is required).
        batch_size: images per forward; default `default_batch_size(device)`.
        precision: "auto" = bf16 on CUDA and on CPUs with AVX-512-BF16 / AMX, else fp32.
        dtype: storage dtype of the features, "float16" or "float32".
        lock_timeout: seconds to wait for another process extracting the same entry (-1: forever).

    Returns:
        the complete entry's path, whether it was reused, and the measured throughput.
    """
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ValueError(f"unknown --splits {','.join(unknown) or '(none)'}; choose from {', '.join(SPLITS)}")
    rank, world = init_distributed()
    spec, dspec = get_backbone(backbone), get_dataset(dataset, task=task)
    splits = tuple(s for s in SPLITS if s in splits)
    npz = dataset_path(dspec, size=size, root=data_root, download=download)
    device = resolve_device(device, rank=rank)
    precision = resolve_precision(precision, device)
    batch_size = batch_size or default_batch_size(device)
    pcfg = preprocess_config(spec, img_size=img_size, resize=resize)
    key = CacheKey(
        backbone=spec.name,
        model_id=spec.model_id,
        weights=weights_identity(
            spec.model_id, pretrained=pretrained, weights=weights, seed=RANDOM_INIT_SEED
        ),
        dataset=dspec.flag,
        size=size,
        data_md5=file_md5(npz),
        preprocess=pcfg.to_dict(),
        features=spec.features,
        splits=splits,
        precision=precision,
        dtype=dtype,
    )
    path = entry_path(key, cache_root)

    with (
        _entry_lock(path, rank, lock_timeout) as reusable,
        disk_errors(path.with_name(path.name + ".partial")),
    ):
        if _broadcast(reusable and not overwrite):
            return ExtractResult(path, reused=True, rank=rank)  # no weights loaded, no data read
        model, _ = create_backbone(spec, pretrained=pretrained, weights=weights, img_size=img_size)
        model = model.to(device)
        if spec.family == "cnn":
            model = model.to(memory_format=torch.channels_last)
        run = FeatureRunner(model, pcfg, spec.family, device, precision)
        data = {s: load_split(dspec, s, size=size, root=data_root, download=False) for s in splits}
        if rank == 0:
            labels = {split: labels for split, (_, labels) in data.items()}
            dims = {k: v.shape[1] for k, v in run(torch.from_numpy(data[splits[0]][0][:2])).items()}
            if overwrite:
                PartialEntry(path, key).discard()
            open_partial(path, key, labels=labels, dims=dims)
        barrier()
        entry = attach_partial(path, key)
        seconds, n_done = _fill(
            entry, run, data, batch_size=batch_size, rank=rank, world=world, progress=progress
        )
        seconds, n_done = _reduce_max_sum(seconds, n_done)
        throughput = n_done / seconds if seconds > 0 else None
        if rank == 0:
            entry.finalize(_attrs(key, device, batch_size, seconds, n_done, throughput, world))
            log.debug("wrote %s (%.0f img/s)", path, throughput or 0)
        barrier()
    return ExtractResult(path, reused=False, images_per_second=throughput, rank=rank)


def default_batch_size(device: torch.device) -> int:
    """512 on GPUs (an H100 runs ViT-Tiny at 224 2.2x faster than at 128); 16 on CPUs, where small
    batches keep ViT attention in cache (DINOv2-S at 224: ~35 img/s at 16 against ~23 at 128 on
    2 cores). Measured in BENCHMARKS.md."""
    return 512 if device.type == "cuda" else 16


class FeatureRunner:
    """Preprocess + forward one uint8 batch under the chosen precision; returns features on device."""

    def __init__(self, model, pcfg, family, device, precision):
        self.model, self.pcfg, self.family, self.device = model, pcfg, family, device
        self.precision = precision

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images: (B, H, W, C) uint8 on any device -> {kind: (B, D)} on the model's device."""
        return self.forward(preprocess(images.to(self.device, non_blocking=True), self.pcfg))

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, 3, S, S) preprocessed input -> {kind: (B, D)}."""
        if self.family == "cnn":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            return extract_features(self.model, x, self.family)


def _fill(
    entry: PartialEntry, run: FeatureRunner, data, *, batch_size, rank, world, progress
) -> tuple[float, int]:
    """Write this rank's share of the missing batches; returns (seconds, images)."""
    jobs = [(split, start, stop) for split in entry.rows for start, stop in entry.todo(split, batch_size)]
    mine = jobs[rank::world]
    total = sum(stop - start for _, start, stop in mine)
    storage = torch.float16 if entry.key.dtype == "float16" else torch.float32
    started = time.perf_counter()
    images_of = _image_source(data, run.device)
    with (
        BackgroundWriter(entry, rank) as writer,
        tqdm(
            total=total,
            unit="img",
            desc=f"{entry.key.backbone} {entry.key.dataset}_{entry.key.size}",
            disable=not progress or rank != 0,
            smoothing=0.1,
        ) as bar,
    ):
        for split, start, stop in mine:
            images = images_of(split, start, stop)
            features = {k: v.to(storage) for k, v in run(images).items()}
            writer.put(split, start, stop, _to_host(features))
            bar.update(stop - start)
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    return time.perf_counter() - started, total


def _image_source(data: dict, device: torch.device):
    """(split, start, stop) -> a uint8 batch ready for `device` without making the host wait: all
    splits uploaded once when they fit on the GPU, else each batch pinned so its copy is async."""
    if fits_on(device, sum(images.nbytes for images, _ in data.values())):
        on_device = {split: torch.from_numpy(images).to(device) for split, (images, _) in data.items()}
        return lambda split, start, stop: on_device[split][start:stop]
    if device.type == "cuda":
        return lambda split, start, stop: torch.from_numpy(data[split][0][start:stop]).pin_memory()
    return lambda split, start, stop: torch.from_numpy(data[split][0][start:stop])


def _to_host(features: dict[str, torch.Tensor]):
    """Start the device->host copy; returns (tensors, event to wait on, or None on CPU)."""
    first = next(iter(features.values()))
    if first.device.type != "cuda":
        return features, None
    host = {
        k: torch.empty(v.shape, dtype=v.dtype, pin_memory=True).copy_(v, non_blocking=True)
        for k, v in features.items()
    }
    ready = torch.cuda.Event()
    ready.record()
    return host, ready


@contextlib.contextmanager
def _entry_lock(path: Path, rank: int, timeout: float):
    """Rank 0 holds a file lock on the entry; yields whether a complete entry already exists."""
    if rank != 0:
        yield False
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        log.info("another process is extracting %s; waiting for it (lock %s.lock)", path.name, path)
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout as e:
            raise TimeoutError(f"{path} is being extracted by another process; try again later") from e
    try:
        yield path.exists() and inspect_entry(path).complete
    finally:
        lock.release()


def _attrs(key: CacheKey, device, batch_size, seconds, n_images, throughput, world) -> dict:
    return {
        "versions": package_versions(),
        "extraction": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "world_size": world,
            "batch_size": batch_size,
            "precision": key.precision,
            "seconds": round(seconds, 3),
            "images": n_images,
            "images_per_second": round(throughput, 1) if throughput else None,
        },
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _broadcast(value: bool) -> bool:
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _reduce_max_sum(seconds: float, images: int) -> tuple[float, int]:
    """Wall time is the slowest rank's; images add up."""
    if not dist.is_initialized():
        return seconds, images
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, (seconds, images))
    return max(s for s, _ in values), sum(n for _, n in values)

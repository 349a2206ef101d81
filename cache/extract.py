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

from cache.files import EntryFiles
from cache.forward import FeatureRunner, batches, default_batch_size, to_host
from cache.key import CacheKey
from cache.options import ExtractOptions
from cache.slices import AXES, SliceView
from cache.store import entry_path, inspect_entry
from cache.writer import BackgroundWriter, PartialEntry, attach_partial, open_partial
from medprobe.atomic import disk_errors
from medprobe.backbones.factory import (
    RANDOM_INIT_SEED,
    create_backbone,
    model_cost,
    preprocess_config,
)
from medprobe.backbones.registry import BackboneSpec, check_pairing, get_backbone
from medprobe.backbones.weights import weights_identity
from medprobe.data import (
    DEFAULT_DATASET,
    DEFAULT_SIZE,
    DatasetSpec,
    dataset_path,
    file_md5,
    get_dataset,
)
from medprobe.data.splits import SplitFile, open_splits
from medprobe.device import (
    barrier,
    broadcast_flag,
    device_name,
    init_distributed,
    peak_memory_mb,
    resolve_device,
    resolve_precision,
    slowest_and_total,
)
from medprobe.progress import progress_bar
from medprobe.results import package_versions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractResult:
    """What `extract` left: the entry's path, whether it was reused, and its speed."""

    path: Path
    reused: bool
    images_per_second: float | None = None
    rank: int = 0


def extract(
    backbone: str,
    dataset: str = DEFAULT_DATASET,
    *,
    size: int = DEFAULT_SIZE,
    task: str | None = None,
    data_root: str | os.PathLike | None = None,
    cache_root: str | os.PathLike | None = None,
    options: ExtractOptions | None = None,
    lock_timeout: float = -1,
    progress: bool | None = None,
) -> ExtractResult:
    """Extract all feature kinds of `backbone` for `dataset` into a cache entry (or reuse it).

    Args:
        backbone: registry name or `timm:<model>`.
        dataset: MedMNIST flag, or a path to a MedMNIST-layout npz (then `task` is required).
        options: what to build and how (`ExtractOptions`; None: its defaults).
        lock_timeout: seconds to wait for another process extracting the same entry (-1: forever).
        progress: a bar of images and img/s: True, False, or None when stderr is a terminal.

    Returns:
        the complete entry's path, whether it was reused, and the measured throughput.
    """
    options = options or ExtractOptions()
    rank, world = init_distributed()
    spec, dspec = get_backbone(backbone), get_dataset(dataset, task=task)
    check_pairing(spec, dataset=dspec.flag, volumes=dspec.volumetric, training=False)
    npz = dataset_path(dspec, size=size, root=data_root, download=options.download)
    device = resolve_device(options.device, rank=rank)
    key = entry_key(
        spec, dspec, size, file_md5(npz), options, resolve_precision(options.precision, device)
    )
    path = entry_path(key, cache_root)
    with (
        _entry_lock(path, rank, lock_timeout) as reusable,
        disk_errors(EntryFiles(path).partial),
    ):
        if broadcast_flag(reusable and not options.overwrite):
            return ExtractResult(path, reused=True, rank=rank)  # no weights loaded, no data read
        data = open_splits(dspec, key.splits, size=size, root=data_root, download=False)
        if key.slices is not None:  # a 3D dataset: its volumes' slices are the rows
            data = {s: SliceView(v, AXES[key.slices]) for s, v in data.items()}  # type: ignore[misc]
        job = _Job(key, spec, options, device, rank, world)
        throughput = _write_entry(path, job, data, progress=progress)
    return ExtractResult(path, reused=False, images_per_second=throughput, rank=rank)


def entry_key(
    spec: BackboneSpec,
    dspec: DatasetSpec,
    size: int,
    data_md5: str,
    options: ExtractOptions,
    precision: str,
) -> CacheKey:
    """The key of the entry `options` build: everything that changes its numbers."""
    weights = weights_identity(
        spec.model_id, pretrained=options.pretrained, weights=options.weights, seed=RANDOM_INIT_SEED
    )
    return CacheKey(
        backbone=spec.name,
        model_id=spec.model_id,
        weights=weights,
        dataset=dspec.flag,
        size=size,
        data_md5=data_md5,
        preprocess=preprocess_config(
            spec, img_size=options.img_size, resize=options.resize, weights=options.weights
        ).to_dict(),
        features=spec.features,
        splits=options.splits,
        precision=precision,
        dtype=options.dtype,
        slices="all" if dspec.volumetric else None,
    )


@dataclass(frozen=True)
class _Job:
    """One extraction: the entry's key, its backbone, the options, and where this rank runs."""

    key: CacheKey
    spec: BackboneSpec
    options: ExtractOptions
    device: torch.device
    rank: int
    world: int


def _write_entry(
    path: Path, job: _Job, data: dict[str, SplitFile], *, progress: bool | None
) -> float | None:
    """Run every split through the backbone into `path` (resuming a partial entry).

    Returns img/s.
    """
    options, spec = job.options, job.spec
    model, pcfg = create_backbone(
        spec,
        pretrained=options.pretrained,
        weights=options.weights,
        img_size=options.img_size,
        resize=options.resize,
    )
    model = model.to(job.device)
    if spec.family == "cnn":
        model = model.to(memory_format=torch.channels_last)
    cost = model_cost(model, pcfg.input_size) if job.rank == 0 else {}
    run = FeatureRunner(model, pcfg, spec.family, job.device, job.key.precision)
    if job.rank == 0:
        labels = {split: source.labels for split, source in data.items()}
        first = torch.from_numpy(data[job.key.splits[0]].head(2))
        if options.overwrite:
            PartialEntry(path, job.key).discard()
        open_partial(
            path, job.key, labels=labels, dims={k: v.shape[1] for k, v in run(first).items()}
        )
    barrier()
    entry = attach_partial(path, job.key)
    batch_size = options.batch_size or default_batch_size(job.device)
    seconds, n_done = slowest_and_total(
        *_fill(
            entry,
            run,
            data,
            batch_size=batch_size,
            rank=job.rank,
            world=job.world,
            progress=progress,
        )
    )
    throughput = n_done / seconds if seconds > 0 else None
    if job.rank == 0:
        attrs = _attrs(job, batch_size, seconds, n_done, throughput)
        attrs["extraction"] |= cost
        entry.finalize(attrs)
        log.debug("wrote %s (%.0f img/s)", path, throughput or 0)
    barrier()
    return throughput


def _fill(
    entry: PartialEntry,
    run: FeatureRunner,
    data: dict[str, SplitFile],
    *,
    batch_size,
    rank,
    world,
    progress,
) -> tuple[float, int]:
    """Write this rank's share of the missing batches; returns (seconds, images)."""
    jobs = [
        (split, start, stop)
        for split in entry.rows
        for start, stop in entry.todo(split, batch_size)
    ]
    mine = {
        split: [(start, stop) for s, start, stop in jobs[rank::world] if s == split]
        for split in data
    }
    total = sum(stop - start for ranges in mine.values() for start, stop in ranges)
    storage = torch.float16 if entry.key.dtype == "float16" else torch.float32
    started = time.perf_counter()
    with (
        BackgroundWriter(entry, rank) as writer,
        progress_bar(
            show=progress if rank == 0 else False,
            total=total,
            unit="img",
            desc=f"{entry.key.backbone} {entry.key.dataset}_{entry.key.size}",
            smoothing=0.1,
        ) as bar,
    ):
        for split, start, stop, images in batches(data, mine, run.device):
            features = {k: v.to(storage) for k, v in run(images).items()}
            writer.put(split, start, stop, to_host(features))
            bar.update(stop - start)
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    return time.perf_counter() - started, total


@contextlib.contextmanager
def _entry_lock(path: Path, rank: int, timeout: float):
    """Rank 0 holds a file lock on the entry; yields whether a complete entry already exists."""
    if rank != 0:
        yield False
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = EntryFiles(path).lock
    lock = filelock.FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        log.info("another process is extracting %s; waiting for it (lock %s)", path.name, lock_path)
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout as e:
            raise TimeoutError(
                f"{path} is being extracted by another process; try again later"
            ) from e
    try:
        yield path.exists() and inspect_entry(path).complete
    finally:
        lock.release()


def _attrs(job: _Job, batch_size, seconds, n_images, throughput) -> dict:
    device = job.device
    return {
        "versions": package_versions(),
        "extraction": {
            "device": device_name(device),
            "peak_memory_mb": peak_memory_mb(device),
            "world_size": job.world,
            "batch_size": batch_size,
            "precision": job.key.precision,
            "seconds": round(seconds, 3),
            "images": n_images,
            "images_per_second": round(throughput, 1) if throughput else None,
        },
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

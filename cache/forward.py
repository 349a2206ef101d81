"""The fast path of extraction.

Uint8 batches to the device without making the host wait, through the frozen backbone under the
chosen precision, and the features back to the host asynchronously.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from medprobe.backbones.factory import extract_features
from medprobe.backbones.preprocess import preprocess
from medprobe.data.splits import SplitFile
from medprobe.device import autocast, fits_on


def default_batch_size(device: torch.device) -> int:
    """512 on GPUs, where larger batches keep the device busy.

    16 on CPUs, where small batches keep ViT attention in cache (BENCHMARKS.md, "Extraction
    throughput" and "On a GPU").
    """
    return 512 if device.type == "cuda" else 16


class FeatureRunner:
    """Preprocess + forward one uint8 batch under the chosen precision.

    Returns features on device.
    """

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


def batches(data: dict[str, SplitFile], ranges: dict[str, list], device: torch.device) -> Iterator:
    """(split, start, stop, uint8 batch) for each range, ready for `device` as soon as it is needed.

    A split is streamed onto the GPU once when all of it fits there, else each batch is streamed
    from the file (and pinned, so its copy to a GPU is async). Host memory stays O(batch) either
    way.
    """
    on_gpu = fits_on(device, sum(source.nbytes for source in data.values()))
    for split, source in data.items():
        if on_gpu and ranges[split]:
            whole = torch.empty(source.shape, dtype=torch.uint8, device=device)
            for start, stop, rows in source.chunks(chunk=source.chunk_rows):
                whole[start:stop] = torch.from_numpy(rows).to(device)
            yield from ((split, start, stop, whole[start:stop]) for start, stop in ranges[split])
            continue
        for start, stop, rows in source.chunks(ranges[split]):
            batch = torch.from_numpy(rows)
            yield split, start, stop, batch.pin_memory() if device.type == "cuda" else batch


def to_host(features: dict[str, torch.Tensor]):
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

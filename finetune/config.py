"""What a fine-tune run is: its options as one dataclass, importable without torch.

`finetune run` declares its options from this module and `finetune.train` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from medprobe.metrics import SELECT_METRICS

AUGMENTS = ("none", "basic")
FREEZE_HELP = "none | backbone (train the head only) | last:K (the last K blocks, final norm and head)"
SCRATCH_BY_DEFAULT = ("resnet18",)
NOT_IDENTITY = (
    "out",
    "resume",
    "skip_existing",
    "keep_checkpoint",
    "device",
    "compile",
    "data_root",
    "dataset",
    "weights",
)


@dataclass
class TrainConfig:
    """Everything a fine-tune run depends on; stored in its checkpoint and result record."""

    model: str = "resnet18"
    dataset: str = "bloodmnist"
    size: int = 28
    task: str | None = None
    data_root: str | None = None
    img_size: int | None = None
    pretrained: bool | None = None  # None: scratch for resnet18, pretrained otherwise
    weights: str | None = None
    freeze: str = "none"
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup: float = 1.0  # epochs of linear warmup
    layer_decay: float | None = None
    label_smoothing: float = 0.0
    augment: str = "basic"
    precision: str = "auto"
    patience: int | None = None
    select: str = "acc"
    seed: int = 0
    out: str = "runs"
    resume: bool = False
    skip_existing: bool = False
    keep_checkpoint: bool = False
    device: str | None = None
    compile: bool = False  # torch.compile the network (how it runs, not what it computes)

    def __post_init__(self):
        parse_freeze(self.freeze)
        if self.augment not in AUGMENTS:
            raise ValueError(f"unknown --augment {self.augment!r}; choose one of {AUGMENTS}")
        if self.select not in SELECT_METRICS:
            raise ValueError(f"unknown --select {self.select!r}; choose one of {', '.join(SELECT_METRICS)}")
        if self.pretrained is None:
            self.pretrained = self.weights is not None or self.model not in SCRATCH_BY_DEFAULT

    @property
    def method(self) -> str:
        if self.freeze == "backbone":
            return "frozen-sgd"
        return "finetune" if self.pretrained else "scratch"


def parse_freeze(freeze: str) -> int | None:
    """none -> None (train all), backbone -> 0 blocks, last:K -> K blocks."""
    if freeze == "none":
        return None
    if freeze == "backbone":
        return 0
    if freeze.startswith("last:") and freeze[5:].isdigit():
        return int(freeze[5:])
    raise ValueError(f"unknown --freeze {freeze!r}; use {FREEZE_HELP}")

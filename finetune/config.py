"""What a fine-tune run is: its options as one dataclass, importable without torch.

Each field declares its flag (`medprobe.options.option`): `finetune run` builds its options from
this class, a recipe's `[[finetune]]` tables are checked against it, and `finetune.train` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from medprobe.choices import PRECISIONS
from medprobe.data import DEFAULT_DATASET, DEFAULT_SIZE
from medprobe.metrics import SELECT_METRICS
from medprobe.options import option

AUGMENTS = ("none", "basic")
FREEZE_HELP = "none | backbone (train the head only) | last:K (the last K blocks, final norm and head)"
SCRATCH_BY_DEFAULT = ("resnet18",)
# How a run is carried out, not what it computes: a checkpoint resumes across changes to these.
HOW_IT_RUNS = (
    "resume",
    "skip_existing",
    "keep_checkpoint",
    "out",
    "device",
    "compile",
    "data_mode",
    "cache_root",
)
# Left out of the record's identity too: where the data and weights are read from (the record keys
# them by their bytes, `data_md5` and the weights' identity) and the dataset's name for them.
NOT_IDENTITY = (*HOW_IT_RUNS, "data_root", "dataset", "weights")
DATA_MODES = ("auto", "memory", "disk")  # enforced by `finetune.data`, which takes them from here


@dataclass
class TrainConfig:
    """Everything a fine-tune run depends on; stored in its checkpoint and result record."""

    model: str = option("resnet18", "Registry name (see `finetune models`).")
    # The data: declared on the command line by `medprobe.cli_utils.dataset_options`, as in `probe`.
    dataset: str = option(DEFAULT_DATASET, cli=False)
    size: int = option(DEFAULT_SIZE, cli=False)
    task: str | None = option(None, cli=False)
    data_root: str | None = option(None, cli=False)
    cache_root: str | None = option(None, cli=False)  # memory-mapped copies go to {cache_root}/npy
    img_size: int | None = option(
        None, "Input size [default: dataset size for CNNs from scratch, else the model's].", min=1
    )
    pretrained: bool | None = option(None, "[default: scratch for resnet18, pretrained for the others]")
    weights: str | None = option(None, "Local .safetensors/.pth weights.")
    freeze: str = option("none", FREEZE_HELP)
    epochs: int = option(20, min=1)
    batch_size: int = option(128, min=1)
    lr: float = option(1e-3)
    weight_decay: float = option(1e-5)
    warmup: float = option(1.0, "Epochs of linear warmup.")
    layer_decay: float | None = option(None, "Layer-wise lr decay (ViTs), e.g. 0.75.")
    label_smoothing: float = option(0.0)
    augment: str = option("basic", choices=AUGMENTS)
    precision: str = option("auto", choices=PRECISIONS)
    patience: int | None = option(None, "Early stopping [default: off].", min=1)
    select: str = option("acc", "Val metric that picks the best epoch.", choices=tuple(SELECT_METRICS))
    seed: int = option(0)
    out: str = option("runs", "Folder of the result records.")
    resume: bool = option(False, "Continue an interrupted run from its last checkpoint.")
    skip_existing: bool = option(False, "Do nothing if this configuration's record exists.")
    keep_checkpoint: bool = option(False, "Keep checkpoint.pt after a successful run.")
    device: str | None = option(None, "cpu, cuda, cuda:1 ... [default: cuda if available].")
    compile: bool = option(False, "torch.compile the network: pays on a GPU for runs of many steps.")
    data_mode: str = option(
        "auto",
        "Images in memory, or on disk in an uncompressed copy in the cache, read a batch at a time (for "
        "data larger than memory); auto: disk when they would take over half the available memory.",
        choices=DATA_MODES,
    )

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

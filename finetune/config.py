"""What a fine-tune run is: its options as one dataclass, importable without torch.

Each field declares its flag (`medprobe.cli.options.option`): `finetune run` builds its options from
this class, a suite recipe's `[[finetune]]` tables are checked against it, and `finetune.train` runs
it.
"""

from __future__ import annotations

from dataclasses import dataclass

from finetune.defaults import TRAIN_DEFAULTS, defaults_for
from medprobe.backbones.registry import BACKBONES, PRECISIONS, get_backbone
from medprobe.cli.options import check_fields, option, refuse_contradicting_weights
from medprobe.data import DEFAULT_DATASET, DEFAULT_SIZE, FLIP_CHOICES
from medprobe.metrics import SELECT_METRICS
from medprobe.tracking import TRACKER_HELP, TRACKERS

AUGMENTS = ("none", "basic")
CLASS_WEIGHTS = ("none", "balanced")
INIT_HEADS = ("random", "probe")
# The best epoch is picked on a val metric, or on the val loss (the training loss on val: lower
# wins).
SELECT_CHOICES = (*SELECT_METRICS, "loss")
FROM_DEFAULTS = "[default: the model's training defaults, see below]"
# LP-FT fine-tunes at a tenth of the defaults' lr (Kumar et al., 2022, also fine-tune after LP with
# a
# smaller lr): at the full lr, a network started from the probe ran away in its first epochs
# (BENCHMARKS.md, "Fine-tuning a pretrained encoder against the frozen probe").
LPFT_LR_FACTOR = 0.1
FREEZE_HELP = (
    "none | backbone (train the head only) | last:K (the last K blocks, final norm and head)"
)
# ResNet-18 and the networks for volumes have no pretrained weights worth starting from here.
SCRATCH_BY_DEFAULT = ("resnet18", *(name for name, spec in BACKBONES.items() if spec.volumetric))
# How a run is carried out, not what it computes: a checkpoint resumes across changes to these.
HOW_IT_RUNS = (
    "resume",
    "skip_existing",
    "keep_checkpoint",
    "out",
    "device",
    "compile",
    "micro_batch",
    "data_mode",
    "cache_root",
    "progress",
    "tracker",
)
# Left out of the record's identity too: where the data and weights are read from (the record keys
# them by their bytes, `data_md5` and the weights' identity) and the dataset's name for them.
NOT_IDENTITY = (*HOW_IT_RUNS, "data_root", "dataset", "weights")
DATA_MODES = ("auto", "memory", "disk")  # enforced by `finetune.data`, which takes them from here


@dataclass
class TrainConfig:
    """Everything a fine-tune run depends on; stored in its checkpoint and result record."""

    model: str = option(
        "resnet18",
        "Registry name, timm:<model>, hf:<repo or folder> or open_clip:<model>[:<tag>] (see "
        "`finetune backbones`); every source fine-tunes, with drop path where the model has it "
        "(SigLIP's and open_clip's own ViTs have none).",
        flag="backbone",
        aliases=("--model",),
    )
    # The data: declared on the command line by `medprobe.cli.common.dataset_options`, as in
    # `probe`.
    dataset: str = option(DEFAULT_DATASET, cli=False)
    size: int = option(DEFAULT_SIZE, cli=False)
    task: str | None = option(None, cli=False)
    data_root: str | None = option(None, cli=False)
    cache_root: str | None = option(None, cli=False)  # memory-mapped copies go to {cache_root}/npy
    img_size: int | None = option(
        None, "Input size [default: dataset size for CNNs from scratch, else the model's].", min=1
    )
    pretrained: bool | None = option(
        None,
        "[default: scratch for resnet18 and the 3D networks (resnet18_3d, _2.5d, _acs), pretrained "
        "for the others]",
    )
    weights: str | None = option(None, "Local .safetensors/.pth weights.")
    freeze: str = option("none", FREEZE_HELP)
    epochs: int = option(20, min=1)
    batch_size: int = option(128, min=1)
    micro_batch: int | None = option(
        None,
        "Images per forward and backward pass; their gradients add up to the batch's, so the run "
        "is the same in less memory [default: the batch on a GPU; 32 on the CPU, where larger "
        "passes are no faster]. Not for networks that train BatchNorm (its statistics would "
        "change).",
        min=1,
    )
    lr: float | None = option(None, f"Peak learning rate {FROM_DEFAULTS}.", min=0)
    weight_decay: float | None = option(None, FROM_DEFAULTS, min=0)
    warmup: float | None = option(None, f"Epochs of linear warmup {FROM_DEFAULTS}.", min=0)
    layer_decay: float | None = option(
        None, f"Layer-wise lr decay, 1 for none {FROM_DEFAULTS}.", min=0
    )
    drop_path: float | None = option(None, f"Stochastic depth rate {FROM_DEFAULTS}.", min=0)
    class_weights: str | None = option(
        None,
        f"Weight the loss by inverse class frequency (balanced) {FROM_DEFAULTS}.",
        choices=CLASS_WEIGHTS,
    )
    init_head: str = option(
        "random",
        "probe: start from a logistic-regression probe fitted on the cached frozen features "
        "(LP-FT).",
        choices=INIT_HEADS,
    )
    label_smoothing: float = option(
        0.0, "Share of each target spread over the other classes.", min=0, max=1, max_open=True
    )
    augment: str = option(
        "basic",
        "basic: random flips (see --flips) and a small random affine; volumes: the flips only.",
        choices=AUGMENTS,
    )
    flips: str = option(
        "auto",
        "Mirror images --augment basic may draw: h (left-right), v (up-down); auto: those that "
        "keep the dataset's labels (`probe datasets`; none for your own npz).",
        choices=("auto", *FLIP_CHOICES),
    )
    precision: str = option("auto", choices=PRECISIONS)
    patience: int | None = option(None, "Early stopping [default: off].", min=1)
    select: str = option(
        "auto",
        "Val score that picks the best epoch (loss: the training loss on val, lower wins); auto: "
        "the model's training defaults' (see below).",
        choices=("auto", *SELECT_CHOICES),
    )
    seed: int = option(0)
    out: str = option("runs", "Folder of the result records.")
    resume: bool = option(False, "Continue an interrupted run from its last checkpoint.")
    skip_existing: bool = option(False, "Do nothing if this configuration's record exists.")
    keep_checkpoint: bool = option(False, "Keep checkpoint.pt after a successful run.")
    device: str | None = option(None, "cpu, cuda, cuda:1 ... [default: cuda if available].")
    compile: bool = option(
        False, "torch.compile the network: pays on a GPU for runs of many steps."
    )
    tracker: str | None = option(
        None,
        TRACKER_HELP,
        choices=TRACKERS,
    )
    progress: bool | None = option(
        None, "A bar within each epoch: images, img/s, ETA [default: when stderr is a terminal]."
    )
    data_mode: str = option(
        "auto",
        "Images in memory, or on disk in an uncompressed copy in the cache, read a batch at a "
        "time (for data larger than memory); auto: disk when they would take over half the "
        "available memory.",
        choices=DATA_MODES,
    )

    def __post_init__(self):
        check_fields(self)
        parse_freeze(self.freeze)
        refuse_contradicting_weights(self.weights, self.pretrained)
        if self.pretrained is None:
            self.pretrained = self.weights is not None or self.model not in SCRATCH_BY_DEFAULT
        self._fill_from_defaults()

    @property
    def defaults(self) -> str:
        """The name of the training defaults that unset options take (`TRAIN_DEFAULTS`)."""
        return defaults_for(get_backbone(self.model), pretrained=bool(self.pretrained)).name

    def _fill_from_defaults(self) -> None:
        """Options left unset take the defaults' value.

        The learning rate scaled to the batch size.
        """
        defaults = TRAIN_DEFAULTS[self.defaults]
        if self.init_head == "probe" and self.drop_path is None:
            # The probe fitted the features of the whole network; dropping blocks at random changes
            # them under it (BENCHMARKS.md, issue #16, has the losses with and without).
            self.drop_path = 0.0
        for name in ("weight_decay", "warmup", "layer_decay", "drop_path", "class_weights"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(defaults, name))
        if self.select == "auto":
            self.select = defaults.select
        if self.lr is None:
            factor = LPFT_LR_FACTOR if self.init_head == "probe" else 1.0
            self.lr = defaults.lr_for(self.batch_size) * factor

    def flips_for(self, dataset_flips: str) -> str:
        """The flips this run's augmentation draws.

        None without augmentation, else --flips or the dataset's (`medprobe.data.FLIPS`).
        """
        if self.augment == "none":
            return "none"
        return dataset_flips if self.flips == "auto" else self.flips

    @property
    def method(self) -> str:
        """The run's method: `scratch`, `finetune` or `frozen-sgd`."""
        if self.freeze == "backbone":
            return "frozen-sgd"
        return "finetune" if self.pretrained else "scratch"


def parse_freeze(freeze: str) -> int | None:
    """None -> None (train all), backbone -> 0 blocks, last:K -> K blocks."""
    if freeze == "none":
        return None
    if freeze == "backbone":
        return 0
    if freeze.startswith("last:") and freeze[5:].isdigit():
        return int(freeze[5:])
    raise ValueError(f"unknown --freeze {freeze!r}; use {FREEZE_HELP}")

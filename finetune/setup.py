"""A fine-tune run set up.

Its identity (`run_config`), its data, model, optimizer, schedule, loss and steps (`setup`), and
what picks its best epoch; `finetune.train` runs it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from finetune.build import build_loss, build_model, build_optimizer
from finetune.config import NOT_IDENTITY, TrainConfig
from finetune.data import place_data, training_data
from finetune.model import apply_freeze, micro_batch_size
from finetune.steps import TrainSteps
from medprobe.backbones.registry import BackboneSpec, check_pairing, get_backbone
from medprobe.backbones.weights import weights_identity
from medprobe.data import DatasetSpec, get_dataset
from medprobe.data.validate import check_trainable
from medprobe.device import resolve_device, resolve_precision
from medprobe.metrics import selection_metric
from medprobe.tracking import NoTracker

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Run:
    """A run set up to train.

    Its configuration and identity, data, model and steps, and where it is.
    """

    cfg: TrainConfig
    spec: BackboneSpec
    dspec: DatasetSpec
    name: str
    config: dict  # what changes its numbers (`run_config`); the record's name ends in its digest
    rank: int
    world: int
    data: dict  # split -> (uint8 images, labels) as tensors, on the device when they fit
    truth: dict  # split -> labels as numpy, for the metrics
    steps: TrainSteps
    generators: tuple[torch.Generator, torch.Generator]  # (shuffle, augment)
    select: str  # the val metric that picks the best epoch
    selection_note: str | None
    n_trainable: int
    head_init: dict = field(default_factory=dict)  # how the classifier started (`HeadInit`)
    tracker: NoTracker = field(default_factory=NoTracker)  # rank 0's TensorBoard, if asked for

    @property
    def dir(self) -> Path:
        """The run's folder under `--out`."""
        return Path(self.cfg.out) / self.name


def run_config(cfg: TrainConfig, spec: BackboneSpec, dspec: DatasetSpec, data_md5: str) -> dict:
    """Everything that changes a run's numbers.

    The options, the data's bytes, the weights' identity.
    """
    options = {k: v for k, v in asdict(cfg).items() if k not in NOT_IDENTITY}
    weights = weights_identity(
        spec.model_id, pretrained=bool(cfg.pretrained), weights=cfg.weights, seed=cfg.seed
    )
    # The identity holds the flips drawn, not "auto" (which stands for the dataset's).
    resolved = {"model": spec.name, "dataset": dspec.flag, "flips": cfg.flips_for(dspec.flips)}
    return options | resolved | {"data_md5": data_md5, "weights": weights}


def check_config(cfg: TrainConfig) -> None:
    """Fail now on what would fail a run later.

    An unknown model or dataset, a model that cannot train on the dataset, a missing weights file.
    """
    spec, dspec = get_backbone(cfg.model), get_dataset(cfg.dataset, task=cfg.task)
    check_pairing(spec, dataset=dspec.flag, volumes=dspec.volumetric, training=True)
    weights_identity(
        spec.model_id, pretrained=bool(cfg.pretrained), weights=cfg.weights, seed=cfg.seed
    )


def setup(cfg, spec, dspec, name, config, rank, world, init_head) -> Run:
    """Load the data, build the model, optimizer and schedule: everything the epochs use."""
    device = resolve_device(cfg.device, rank=rank)
    data = training_data(
        dspec, size=cfg.size, root=cfg.data_root, mode=cfg.data_mode, cache_root=cfg.cache_root
    )
    check_trainable(data["train"][1], task=dspec.task, where=f"{dspec.flag}_{cfg.size} train")
    select, note = epoch_selection(cfg.select, data["val"][1], dspec)
    if note:
        log.warning("%s", note)
    model, pcfg, head_init = build_model(
        cfg, spec, dspec, init_head, side=data["train"][0].shape[1]
    )
    n_trainable = apply_freeze(model, cfg.freeze)
    # CNNs run channels_last (the fast convolutions), except compiled: inductor picks its own
    # layouts
    # and its convolution backward rejects channels_last weights (torch 2.11, H200).
    channels_last = spec.family == "cnn" and not cfg.compile and not spec.volumetric
    model = model.to(
        device, memory_format=torch.channels_last if channels_last else torch.preserve_format
    )
    net = DistributedDataParallel(model) if world > 1 else model
    net = torch.compile(net) if cfg.compile else net
    torch.manual_seed(cfg.seed)
    n_steps = math.ceil(len(range(rank, len(data["train"][0]), world)) / cfg.batch_size)
    optimizer, scheduler = build_optimizer(cfg, model, device, n_steps)
    task_loss = build_loss(cfg, dspec, data["train"][1], device)
    steps = TrainSteps(
        net=net,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=task_loss,
        pcfg=pcfg,
        channels_last=channels_last,
        device=device,
        precision=resolve_precision(cfg.precision, device, volumes=spec.volumetric),
        flips=config["flips"],  # resolved once, in the run's identity (`run_config`)
        micro_batch=micro_batch_size(
            model, cfg.micro_batch, batch_size=cfg.batch_size, device=device
        ),
        volumes=spec.volumetric,
    )
    return Run(
        cfg=cfg,
        spec=spec,
        dspec=dspec,
        name=name,
        config=config,
        rank=rank,
        world=world,
        data=place_data(data, device),
        truth={s: y for s, (_, y) in data.items()},
        steps=steps,
        generators=(
            torch.Generator().manual_seed(cfg.seed),
            torch.Generator().manual_seed(cfg.seed + 1),
        ),
        select=select,
        selection_note=note,
        n_trainable=n_trainable,
        head_init=head_init,
    )


def epoch_selection(select: str, y_val: np.ndarray, dspec: DatasetSpec) -> tuple[str, str | None]:
    """What picks the best epoch: the val loss or a val metric, and a note when it fell back.

    A metric comes from `selection_metric`: AUC falls back to ACC where it is undefined.
    """
    if select == "loss":
        return "loss", None
    return selection_metric(y_val, task=dspec.task, n_classes=dspec.n_classes, select=select)

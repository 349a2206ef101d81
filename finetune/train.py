"""The fine-tune runner: one training loop for ResNet-18 from scratch and ViT / DINOv2 fine-tuning.

`train` reads top to bottom: set the run up (or resume it), train epoch by epoch with the best
epoch on val kept as a real copy of the weights, then score test once with it. Every epoch ends
in an atomic checkpoint, so `resume=True` continues a killed run exactly. Under torchrun the
model is wrapped in DistributedDataParallel and each rank trains on its shard.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from finetune.augment import draw_params
from finetune.build import HeadInit
from finetune.checkpoint import (
    TrainState,
    load_checkpoint,
    restore,
    save_checkpoint,
    snapshot,
)
from finetune.config import HOW_IT_RUNS, TrainConfig
from finetune.model import trains_batch_norm
from finetune.record import finish
from finetune.setup import Run, run_config, setup
from finetune.steps import TrainSteps
from medprobe.backbones.registry import check_pairing, get_backbone
from medprobe.data import dataset_path, file_md5, get_dataset
from medprobe.device import barrier, init_distributed
from medprobe.errors import UserError
from medprobe.metrics import evaluate
from medprobe.outputs import probabilities
from medprobe.results import RunResult, run_name
from medprobe.tracking import open_tracker, split_scalars

log = logging.getLogger(__name__)


def train(cfg: TrainConfig, *, init_head: HeadInit | None = None) -> RunResult:
    """Train, select the best epoch on val, score test once; write the run's files (rank 0).

    Args:
        init_head: sets the classifier when `cfg.init_head` is "probe" (the `finetune` command
            passes `suite.lpft.probe_head`, which fits it on the cached features).

    Returns:
        the result record (also saved as `{out}/{run_name}.json`).
    """
    rank, world = init_distributed()
    spec, dspec, config, name = identify(cfg)
    record = Path(cfg.out) / f"{name}.json"
    if cfg.skip_existing and record.exists():
        log.info("skip %s: the record exists", record.name)
        return RunResult.from_json(record.read_text())

    if cfg.init_head != "random" and init_head is None:
        raise ValueError(
            f"init_head={cfg.init_head!r} needs a head initializer: pass "
            "init_head=suite.lpft.probe_head to train(), or run it with the `finetune` command"
        )
    run = setup(cfg, spec, dspec, name, config, rank, world, init_head)
    if rank == 0:
        run.tracker = open_tracker(cfg.tracker, cfg.out, name)
        run.tracker.params(config)
    state = _resume(run)
    started = time.perf_counter()
    try:
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            _train_epoch(run, state, epoch)
            if cfg.patience is not None and epoch - state.best_epoch >= cfg.patience:
                log.info("early stop: no val improvement for %d epochs", cfg.patience)
                break
    except torch.cuda.OutOfMemoryError as error:
        raise UserError(out_of_memory(run.steps, cfg.batch_size)) from error
    return finish(run, state, seconds=time.perf_counter() - started)


def identify(cfg: TrainConfig, *, download: bool = True) -> tuple:
    """(backbone spec, dataset spec, the run's configuration, its name): what names its record."""
    spec, dspec = get_backbone(cfg.model), get_dataset(cfg.dataset, task=cfg.task)
    check_pairing(spec, dataset=dspec.flag, volumes=dspec.volumetric, training=True)
    if spec.volumetric and cfg.init_head != "random":
        raise UserError(
            f"--init-head {cfg.init_head}: {spec.name} trains from scratch and has no frozen "
            "features to fit a probe on; drop --init-head"
        )
    md5 = file_md5(dataset_path(dspec, size=cfg.size, root=cfg.data_root, download=download))
    config = run_config(cfg, spec, dspec, md5)
    name = run_name(dspec.flag, cfg.size, spec.name, cfg.method, cfg.seed, config)
    return spec, dspec, config, name


def out_of_memory(steps: TrainSteps, batch_size: int) -> str:
    """What to do when a pass does not fit in the GPU's memory.

    Smaller passes of the same run where the network allows them (`micro_batch_size`), else a
    smaller batch, which is another run.
    """
    passes = steps.micro_batch or batch_size
    fix = (
        f"--batch-size {max(1, batch_size // 2)} (another run: the lr scales with the batch)"
        if trains_batch_norm(steps.model)
        else f"--micro-batch {max(1, passes // 2)} (the same run in less memory)"
    )
    return (
        f"out of GPU memory training on passes of {passes} images at {steps.pcfg.input_size} px; "
        f"pass {fix}, with --resume to continue from the last finished epoch"
    )


def _resume(run: Run) -> TrainState:
    """The state of a checkpoint of this very configuration when resuming, else a fresh one."""
    path = run.dir / "checkpoint.pt"
    state = TrainState()
    if run.cfg.resume and path.exists():
        checkpoint = load_checkpoint(path)
        _check_same_run(checkpoint["config"], run.cfg)
        steps = run.steps
        state = restore(checkpoint, steps.model, steps.optimizer, steps.scheduler, run.generators)
        log.info("resuming %s after epoch %d", run.name, state.epoch)
    elif run.cfg.resume:
        log.info("--resume: no checkpoint of this run yet in %s; training from epoch 1", run.dir)
    if run.rank == 0:
        run.dir.mkdir(parents=True, exist_ok=True)
    return state


def _train_epoch(run: Run, state: TrainState, epoch: int) -> None:
    """One epoch: train on a fresh shuffle, score val, keep the best weights, checkpoint."""
    cfg, steps = run.cfg, run.steps
    started = time.perf_counter()
    shuffle, augment = run.generators
    order = torch.randperm(len(run.data["train"][0]), generator=shuffle)[run.rank :: run.world]
    draws = draw_params(len(order), augment) if cfg.augment == "basic" else None
    images, labels = run.data["train"]
    train_loss, seen = steps.epoch(
        images,
        labels,
        order,
        draws,
        batch_size=cfg.batch_size,
        progress=cfg.progress if run.rank == 0 else False,
        desc=f"epoch {epoch}/{cfg.epochs}",
    )
    train_seconds = time.perf_counter() - started
    val, val_loss = _score_val(run, epoch, train_loss)
    images = seen * run.world
    state.history.append(
        {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_acc": val["acc"],
            "val_auc": val["auc"],
            "val_macro_f1": val["macro_f1"],
            # the head's: layer decay scales the others down
            "lr": max(steps.scheduler.get_last_lr()),
            "seconds": time.perf_counter() - started,
            "train_images": images,
            "train_seconds": train_seconds,
            "train_images_per_s": images / train_seconds,
        }
    )
    _track_epoch(run, state.history[-1], val)
    # Higher wins, so the loss enters negated; `epoch_selection` keeps the score defined.
    score = -val_loss if run.select == "loss" else val[run.select]
    state.improve(epoch, score, steps.model)
    state.epoch = epoch
    log.info(
        "epoch %d: train loss %.4f, val loss %.4f, val acc %.4f, val auc %.4f",
        epoch,
        train_loss,
        val_loss,
        val["acc"],
        val["auc"],
    )
    if run.rank == 0:
        parts = (steps.model, steps.optimizer, steps.scheduler, run.generators)
        save_checkpoint(snapshot(state, asdict(cfg), *parts), run.dir / "checkpoint.pt")
    barrier()


def _score_val(run: Run, epoch: int, train_loss: float) -> tuple[dict, float]:
    """Val's metrics and loss (the training loss) after an epoch.

    The run stops if its outputs are no longer numbers.
    """
    steps, truth = run.steps, run.truth["val"]
    logits = steps.predict(run.data["val"][0], rank=run.rank, world=run.world)
    if not np.isfinite(logits).all():  # the same on every rank: val is gathered
        raise UserError(diverged(epoch, train_loss, float(run.cfg.lr or 0), steps.precision))
    loss = steps.loss_fn(
        torch.from_numpy(logits).to(steps.device), torch.from_numpy(truth).to(steps.device)
    )
    return evaluate(truth, probabilities(logits, run.dspec.task), task=run.dspec.task), float(loss)


def diverged(epoch: int, train_loss: float, lr: float, precision: str) -> str:
    """What to do when the weights left the numbers behind (NaN or inf outputs on val)."""
    half = f", or pass --precision fp32 (it ran in {precision})" if precision != "fp32" else ""
    return (
        f"epoch {epoch}: training diverged (train loss {train_loss:.4g}, val outputs not finite); "
        f"lower --lr (this run's {lr:g}){half}; no record was written"
    )


def _track_epoch(run: Run, epoch: dict, val: dict) -> None:
    """Every step's loss, then the epoch's losses, val metrics and lr."""
    losses = run.steps.step_losses.tolist()
    first = (epoch["epoch"] - 1) * len(losses)
    for step, value in enumerate(losses, first):
        run.tracker.scalars({"train/step_loss": value}, step)
    scalars = {"train/loss": epoch["train_loss"], "val/loss": epoch["val_loss"], "lr": epoch["lr"]}
    run.tracker.scalars(scalars | split_scalars(val, "val"), epoch["epoch"])


def _check_same_run(saved: dict, cfg: TrainConfig) -> None:
    """Refuse to resume a checkpoint of a different configuration (silently mixing two runs)."""
    diff = {
        k: (v, getattr(cfg, k))
        for k, v in saved.items()
        if k not in HOW_IT_RUNS and getattr(cfg, k) != v
    }
    if diff:
        changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"--resume found a checkpoint of another configuration ({changes}); "
            "drop --resume to start over or use another --out"
        )

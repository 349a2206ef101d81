"""The fine-tune runner: one training loop for ResNet-18 from scratch and ViT / DINOv2 fine-tuning.

Data stay uint8 tensors in memory; augmentation, resizing and normalization happen on the device.
The best epoch on val is kept as a real copy of the weights and is what test is scored with.
Every epoch ends in an atomic checkpoint, so `resume=True` continues a killed run exactly.
Under torchrun the model is wrapped in DistributedDataParallel and each rank trains on its shard.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import timm.optim
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from finetune.augment import augment, draw_params
from finetune.checkpoint import copy_state, load_checkpoint, save_checkpoint, save_weights
from finetune.config import NOT_IDENTITY, TrainConfig
from finetune.model import apply_freeze, train_mode
from finetune.plots import plot_curves
from medprobe.atomic import write_atomic
from medprobe.backbones import create_backbone
from medprobe.data import DatasetSpec, dataset_path, file_md5, get_dataset, load_split
from medprobe.device import (
    autocast,
    barrier,
    fits_on,
    init_distributed,
    resolve_device,
    resolve_precision,
)
from medprobe.metrics import evaluate, selection_metric
from medprobe.preprocess import preprocess
from medprobe.registry import BackboneSpec, get_backbone
from medprobe.results import RunResult
from medprobe.tasks import MULTI_LABEL
from medprobe.weights import weights_identity

log = logging.getLogger(__name__)


def train(cfg: TrainConfig) -> RunResult:
    """Train, select the best epoch on val, score test once; write the run's files (rank 0).

    Returns:
        the result record (also saved as `{out}/{run_name}.json`).
    """
    rank, world = init_distributed()
    device = resolve_device(cfg.device, rank=rank)
    precision = resolve_precision(cfg.precision, device)
    spec, dspec = get_backbone(cfg.model), get_dataset(cfg.dataset, task=cfg.task)
    npz = dataset_path(dspec, size=cfg.size, root=cfg.data_root)
    run = RunResult(
        dataset=dspec.flag,
        size=cfg.size,
        model=spec.name,
        method=cfg.method,
        seed=cfg.seed,
        metrics={},
        config=run_config(cfg, spec, dspec, file_md5(npz)),
        task=dspec.task,
        class_names=list(dspec.labels),
    )
    record = Path(cfg.out) / f"{run.run_name}.json"
    if cfg.skip_existing and record.exists():
        log.info("skip %s: the record exists", record.name)
        return RunResult.from_json(record.read_text())
    data = {s: load_split(dspec, s, size=cfg.size, root=cfg.data_root) for s in ("train", "val", "test")}
    select, selection_note = selection_metric(
        data["val"][1], task=dspec.task, n_classes=dspec.n_classes, select=cfg.select
    )
    if selection_note:
        log.warning("%s", selection_note)

    # A CNN trained from scratch runs at the dataset's own size; pretrained models at their native one.
    img_size = cfg.img_size or (cfg.size if spec.family == "cnn" and not cfg.pretrained else None)
    model, pcfg = create_backbone(
        spec,
        pretrained=cfg.pretrained,
        weights=cfg.weights,
        img_size=img_size,
        num_classes=dspec.n_classes,
        init_seed=cfg.seed,
    )
    n_trainable = apply_freeze(model, cfg.freeze)
    model = model.to(device)
    # CNNs run channels_last (the fast convolutions), except compiled: inductor picks its own layouts
    # and its convolution backward rejects channels_last weights (torch 2.11, H200).
    channels_last = spec.family == "cnn" and not cfg.compile
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = DistributedDataParallel(model) if world > 1 else model
    net = torch.compile(net) if cfg.compile else net
    truth = {s: y for s, (_, y) in data.items()}  # labels as numpy, for the metrics
    data = place_data(data, device)

    torch.manual_seed(cfg.seed)
    shuffle_gen, augment_gen = (
        torch.Generator().manual_seed(cfg.seed),
        torch.Generator().manual_seed(cfg.seed + 1),
    )
    n_train = len(data["train"][0])
    steps_per_epoch = math.ceil(len(range(rank, n_train, world)) / cfg.batch_size)
    optimizer = timm.optim.create_optimizer_v2(
        model,
        "adamw",
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        layer_decay=cfg.layer_decay,
        fused=device.type == "cuda",  # one kernel for the whole update instead of one per op
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg.epochs * steps_per_epoch, round(cfg.warmup * steps_per_epoch))
    )
    loss_fn = _loss_fn(dspec.task, cfg.label_smoothing)

    run_dir = Path(cfg.out) / run.run_name
    checkpoint_path = run_dir / "checkpoint.pt"
    state = {"epoch": 0, "history": [], "best_epoch": 0, "best_score": -math.inf, "best_state": None}
    if cfg.resume and checkpoint_path.exists():
        checkpoint = load_checkpoint(checkpoint_path)
        _check_same_run(checkpoint["config"], cfg)
        state = _restore(checkpoint, model, optimizer, scheduler, shuffle_gen, augment_gen)
        log.info("resuming %s after epoch %d", run.run_name, state["epoch"])
    elif cfg.resume:
        log.info("no checkpoint of this configuration in %s; starting it", run_dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    steps = TrainSteps(net, model, optimizer, scheduler, loss_fn, pcfg, channels_last, device, precision)
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        order = torch.randperm(n_train, generator=shuffle_gen)[rank::world]
        draws = draw_params(len(order), augment_gen) if cfg.augment == "basic" else None
        train_loss, seen = steps.epoch(*data["train"], order, draws, batch_size=cfg.batch_size)
        train_seconds = time.perf_counter() - epoch_start

        val_logits = _predict(model, data["val"][0], pcfg, channels_last, device, precision, rank, world)
        val_metrics = evaluate(truth["val"], _probs(val_logits, dspec.task), task=dspec.task)
        score = val_metrics[select]
        seconds = time.perf_counter() - epoch_start
        state["history"].append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": float(loss_fn(torch.from_numpy(val_logits), torch.from_numpy(truth["val"]))),
                "val_acc": val_metrics["acc"],
                "val_auc": val_metrics["auc"],
                "val_macro_f1": val_metrics["macro_f1"],
                "lr": scheduler.get_last_lr()[0],
                "seconds": seconds,
                "train_images": seen * world,
                "train_seconds": train_seconds,
                "train_images_per_s": seen * world / train_seconds,
            }
        )
        if score > state["best_score"]:  # NaN never wins; `selection_metric` keeps it defined
            state.update(best_epoch=epoch, best_score=score, best_state=copy_state(model.state_dict()))
        state["epoch"] = epoch
        log.info("epoch %d: train loss %.4f, val %s %.4f", epoch, train_loss, cfg.select, score)
        if rank == 0:
            save_checkpoint(
                _snapshot(state, cfg, model, optimizer, scheduler, shuffle_gen, augment_gen), checkpoint_path
            )
        barrier()
        if cfg.patience is not None and epoch - state["best_epoch"] >= cfg.patience:
            log.info("early stop: no val improvement for %d epochs", cfg.patience)
            break

    model.load_state_dict(state["best_state"] or copy_state(model.state_dict()))
    val_logits = _predict(model, data["val"][0], pcfg, channels_last, device, precision, rank, world)
    test_logits = _predict(model, data["test"][0], pcfg, channels_last, device, precision, rank, world)
    test_scores = _probs(test_logits, dspec.task)
    run.metrics = {
        "val": evaluate(truth["val"], _probs(val_logits, dspec.task), task=dspec.task),
        "test": evaluate(truth["test"], test_scores, task=dspec.task, bootstrap=1000, seed=cfg.seed),
    }
    history = state["history"]
    run.hparams = asdict(cfg) | {
        "img_size": pcfg.input_size,
        "best_epoch": state["best_epoch"],
        "epochs_run": len(history),
        "trainable_params": n_trainable,
        "precision": precision,
        "world_size": world,
        "selected_on": select,
        "selection_note": selection_note,
        "weights": run.config["weights"],
    }
    run.timings = {
        "train_s": round(time.perf_counter() - started, 3),
        "epoch_s": float(np.mean([h["seconds"] for h in history])) if history else None,
        "train_images_per_s": _images_per_second(history),
    }
    run.predictions = {"test_score": test_scores.astype(np.float32), "test_true": truth["test"]}
    if rank == 0:
        save_weights(model.state_dict(), run_dir / "weights.safetensors")
        write_atomic(run_dir / "history.json", json.dumps(history, indent=2))
        plot_curves(history, state["best_epoch"], run_dir / "curves.png", title=run.run_name)
        run.save(cfg.out)
        if not cfg.keep_checkpoint:  # the record and weights are written: nothing left to resume
            checkpoint_path.unlink(missing_ok=True)
    barrier()
    return run


def place_data(data: dict, device: torch.device) -> dict:
    """Each split's (images, labels) as tensors: on the GPU when they fit there (`fits_on`), so a
    step gathers its batch in place (no copy, no host wait); else in host memory, copied per batch."""
    tensors = {s: (torch.from_numpy(x), torch.from_numpy(y)) for s, (x, y) in data.items()}
    size = sum(x.nbytes + y.nbytes for x, y in data.values())
    if not fits_on(device, size):
        return tensors
    return {s: (x.to(device), y.to(device)) for s, (x, y) in tensors.items()}


@dataclass
class TrainSteps:
    """What every training step uses, built once per run: the network as stepped (DDP-wrapped
    and/or compiled), the bare model, optimizer, schedule, loss and how pixels become input."""

    net: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: Callable
    pcfg: object
    channels_last: bool
    device: torch.device
    precision: str

    def epoch(self, images, labels, order, draws, *, batch_size: int) -> tuple[float, int]:
        """One pass over `order` (this rank's shuffled rows) in batches; returns (mean loss, images).

        The loss is summed on the device and read once at the end, so no step waits for the GPU.
        """
        train_mode(self.net)
        order = order.to(images.device)
        draws = draws.to(self.device) if draws is not None else None
        loss_sum = torch.zeros((), device=self.device)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch_draws = draws[start : start + batch_size] if draws is not None else None
            loss = self.step(images[idx].to(self.device), labels[idx].to(self.device), batch_draws)
            loss_sum += loss * len(idx)
        return float(loss_sum) / max(len(order), 1), len(order)

    def step(self, images: torch.Tensor, labels: torch.Tensor, draws: torch.Tensor | None) -> torch.Tensor:
        """One optimizer step on a uint8 batch; returns the loss, still on the device."""
        if draws is not None:
            images = augment(images, draws)
        with autocast(self.device, self.precision):
            logits = self.net(_to_input(images, self.pcfg, self.channels_last))
        loss = self.loss_fn(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()


def run_config(cfg: TrainConfig, spec: BackboneSpec, dspec: DatasetSpec, data_md5: str) -> dict:
    """Everything that changes a run's numbers: the options, the data's bytes, the weights' identity."""
    options = {k: v for k, v in asdict(cfg).items() if k not in NOT_IDENTITY}
    weights = weights_identity(spec.model_id, pretrained=cfg.pretrained, weights=cfg.weights, seed=cfg.seed)
    return options | {"model": spec.name, "dataset": dspec.flag, "data_md5": data_md5, "weights": weights}


def check_config(cfg: TrainConfig) -> None:
    """Fail now on what would fail a run later: unknown model or dataset, missing weights file."""
    spec, _ = get_backbone(cfg.model), get_dataset(cfg.dataset, task=cfg.task)
    weights_identity(spec.model_id, pretrained=bool(cfg.pretrained), weights=cfg.weights, seed=cfg.seed)


def _images_per_second(history: list[dict]) -> float | None:
    """Images trained over the wall time of the training phases (not a mean of epoch rates)."""
    seconds = sum(h["train_seconds"] for h in history)
    return sum(h["train_images"] for h in history) / seconds if seconds > 0 else None


def warmup_cosine(total_steps: int, warmup_steps: int):
    """Learning-rate factor per step: linear warmup to 1, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _to_input(images: torch.Tensor, pcfg, channels_last: bool) -> torch.Tensor:
    x = preprocess(images, pcfg)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _loss_fn(task: str, label_smoothing: float):
    if task == MULTI_LABEL:
        return lambda logits, y: F.binary_cross_entropy_with_logits(logits, y.float())
    return lambda logits, y: F.cross_entropy(logits, y.reshape(-1), label_smoothing=label_smoothing)


def _probs(logits: np.ndarray, task: str) -> np.ndarray:
    z = torch.from_numpy(logits).double()
    return (torch.sigmoid(z) if task == MULTI_LABEL else torch.softmax(z, dim=1)).numpy()


@torch.inference_mode()
def _predict(
    model, images, pcfg, channels_last, device, precision, rank, world, batch_size=256
) -> np.ndarray:
    """Logits (N, n_out) for all images; each rank does its shard, gathered in order on every rank."""
    model.eval()
    rows = torch.arange(rank, len(images), world)
    out = []
    for idx in rows.split(batch_size):
        with autocast(device, precision):
            out.append(model(_to_input(images[idx].to(device), pcfg, channels_last)).float())
    logits = torch.cat(out).cpu().numpy() if out else np.zeros((0, 0), np.float32)  # one copy, one wait
    if world == 1:
        return logits
    shards = [None] * world
    dist.all_gather_object(shards, (rows.numpy(), logits))
    full = np.zeros((len(images), max(s[1].shape[1] for s in shards)), np.float32)
    for shard_rows, shard_logits in shards:
        full[shard_rows] = shard_logits
    return full


def _snapshot(state, cfg, model, optimizer, scheduler, shuffle_gen, augment_gen) -> dict:
    return {
        "config": asdict(cfg),
        "epoch": state["epoch"],
        "history": state["history"],
        "best_epoch": state["best_epoch"],
        "best_score": state["best_score"],
        "best_state": state["best_state"],
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "shuffle": shuffle_gen.get_state(),
            "augment": augment_gen.get_state(),
        },
    }


def _check_same_run(saved: dict, cfg: TrainConfig) -> None:
    """Refuse to resume a checkpoint of a different configuration (silently mixing two runs)."""
    free = {"resume", "skip_existing", "keep_checkpoint", "out", "device", "compile"}
    diff = {k: (v, getattr(cfg, k)) for k, v in saved.items() if k not in free and getattr(cfg, k) != v}
    if diff:
        changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"--resume found a checkpoint of another configuration ({changes}); "
            "drop --resume to start over or use another --out"
        )


def _restore(ckpt, model, optimizer, scheduler, shuffle_gen, augment_gen) -> dict:
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    shuffle_gen.set_state(ckpt["rng"]["shuffle"])
    augment_gen.set_state(ckpt["rng"]["augment"])
    return {k: ckpt[k] for k in ("epoch", "history", "best_epoch", "best_score", "best_state")}

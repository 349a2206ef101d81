r"""The frozen-backbone experiment two ways, on the same machine and data: notebook vs medprobe.

    python -m benchmarks.compare --backbone vit_tiny --no-pretrained --synthetic --limit 2000 \
        --epochs 2
    python -m benchmarks.compare --backbone dinov2_small \
        --weights ../shared/weights/dinov2_vits14.safetensors \
        --dataset breastmnist --data-root ../shared/data --epochs 2

Notebook (the baseline, as such notebooks are written): PIL + timm's eval transform, DataLoader
(batch 128, 2 workers), fp32; the frozen backbone re-run over train and val every epoch for 20
epochs, a linear head trained with AdamW (lr 1e-3, wd 1e-5) and a cosine schedule, the best epoch
by val accuracy. medprobe: `probe extract` once, then `probe fit --head logreg` (and `linear`).

`--epochs E` (< 20) times only the first E epochs of the baseline and extrapolates its time to
20, labelled as such. Its accuracy is still that of the full 20-epoch recipe: the frozen features
are identical every epoch (eval transform, no augmentation), so the remaining epochs train the
head on the features of the last timed pass.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks import notebook
from benchmarks.common import emit, machine, without_append
from benchmarks.synthetic import write_npz
from cache.extract import extract
from cache.options import ExtractOptions
from medprobe.backbones.factory import create_backbone
from medprobe.data import get_dataset
from medprobe.data.splits import load_split
from medprobe.metrics import evaluate
from probe.options import ProbeOptions
from probe.run import run_probe

EPOCHS = 20
SECTION = "## End-to-end frozen experiment (notebook vs medprobe)"


def notebook_experiment(args, data: dict, n_classes: int, task: str) -> dict:
    """The baseline; returns test metrics and (measured, extrapolated) seconds."""
    torch.manual_seed(0)
    start = time.perf_counter()
    model, cfg = create_backbone(args.backbone, pretrained=args.pretrained, weights=args.weights)
    model = model.to(notebook.DEVICE)
    loaders = {
        s: notebook.loader(model, *data[s], input_size=cfg.input_size, shuffle=s == "train")
        for s in data
    }
    head = torch.nn.Linear(model.num_features, n_classes).to(notebook.DEVICE)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=EPOCHS * len(loaders["train"])
    )
    best_acc, best_head, cached = -1.0, None, {}
    timed = min(args.epochs, EPOCHS)
    for epoch in range(EPOCHS):
        if epoch < timed:  # the notebook's way: the frozen backbone runs again over train and val
            cached["train"] = _notebook_epoch(model, head, optimizer, scheduler, loaders["train"])
            cached["val"] = notebook.frozen_features(model, loaders["val"])
        else:  # identical features: train the head on the last timed pass's
            _train_on_features(head, optimizer, scheduler, *cached["train"])
        with torch.no_grad():
            val_acc = (head(cached["val"][0]).argmax(1) == cached["val"][1]).float().mean().item()
        if val_acc > best_acc:
            best_acc, best_head = val_acc, copy.deepcopy(head)
        if epoch == timed - 1:
            timed_seconds = time.perf_counter() - start
    test_start = time.perf_counter()
    test_feats, test_labels = notebook.frozen_features(model, loaders["test"])
    test_seconds = time.perf_counter() - test_start
    with torch.no_grad():
        scores = torch.softmax(best_head(test_feats), 1).double().cpu().numpy()
    metrics = evaluate(test_labels.cpu().numpy(), scores, task=task)
    per_epoch = timed_seconds / timed
    return {
        "acc": metrics["acc"],
        "macro_f1": metrics["macro_f1"],
        "measured_s": timed_seconds + test_seconds,
        "seconds": per_epoch * EPOCHS + test_seconds,
        "extrapolated": timed < EPOCHS,
    }


def _notebook_epoch(model, head, optimizer, scheduler, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch as the notebook runs it: a frozen fp32 forward per batch, then a head step."""
    feats, labels = [], []
    for x, y in loader:
        x, y = x.to(notebook.DEVICE), y.to(notebook.DEVICE)
        with torch.no_grad():
            f = model(x)
        _step(head, optimizer, scheduler, f, y)
        feats.append(f)
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def _train_on_features(head, optimizer, scheduler, feats, labels, batch_size=notebook.BATCH_SIZE):
    for idx in torch.randperm(len(feats), device=feats.device).split(batch_size):
        _step(head, optimizer, scheduler, feats[idx], labels[idx])


def _step(head, optimizer, scheduler, feats, labels):
    loss = F.cross_entropy(head(feats), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()


def medprobe_experiment(
    args, data_root: Path, flag: str, size: int, heads: tuple[str, ...]
) -> dict:
    """`probe extract` then `probe fit` per head; returns metrics and seconds per head."""
    start = time.perf_counter()
    extract(
        args.backbone,
        flag,
        size=size,
        data_root=data_root,
        cache_root=data_root / "cache",
        progress=False,
        options=ExtractOptions(pretrained=args.pretrained, weights=args.weights),
    )
    extract_seconds = time.perf_counter() - start
    out = {}
    for head in heads:
        start = time.perf_counter()
        [record] = run_probe(
            flag,
            size=size,
            backbone=args.backbone,
            data_root=data_root,
            cache_root=data_root / "cache",
            out=data_root / "runs",
            options=ProbeOptions(heads=(head,), bootstrap=0),
        )
        test = record.metrics["test"]
        out[head] = {
            "acc": test["acc"],
            "macro_f1": test["macro_f1"],
            "seconds": extract_seconds + time.perf_counter() - start,
        }
    return out


def subset(args, root: Path) -> tuple[str, int, dict]:
    """Write the (limited) dataset into `root`; returns its flag, size and the arrays."""
    if args.synthetic:
        n = args.limit or 2000
        write_npz(root / "bloodmnist.npz", n_train=n, n_val=n * 3 // 20, n_test=n * 3 // 10)
        flag, size = "bloodmnist", 28
    else:
        spec, size = get_dataset(args.dataset), args.size
        arrays = {}
        for split, share in (("train", 1.0), ("val", 0.15), ("test", 0.3)):
            images, labels = load_split(spec, split, size=size, root=args.data_root)
            keep = len(images) if not args.limit else int(args.limit * share)
            arrays |= {
                f"{split}_images": images[:keep, ..., 0]
                if images.shape[-1] == 1
                else images[:keep],
                f"{split}_labels": labels[:keep],
            }
        np.savez(root / spec.filename(size), **arrays)
        flag = spec.flag
    data = {s: load_split(flag, s, size=size, root=root) for s in ("train", "val", "test")}
    return flag, size, data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="vit_tiny")
    parser.add_argument("--dataset", default="bloodmnist")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--data-root", default=None)
    parser.add_argument(
        "--synthetic", action="store_true", help="BloodMNIST-like random data (offline)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="train rows (val 15%%, test 30%% of it)"
    )
    parser.add_argument(
        "--epochs", type=int, default=EPOCHS, help="baseline epochs to time (rest extrapolated)"
    )
    parser.add_argument("--weights", default=None)
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false")
    parser.add_argument(
        "--append",
        type=lambda value: Path(value) if value else None,
        default=Path("BENCHMARKS.md"),
        help="markdown file that gets the row (default: BENCHMARKS.md; '' for none)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        flag, size, data = subset(args, root)
        spec = get_dataset(flag)
        ours = medprobe_experiment(args, root, flag, size, ("logreg", "linear"))
        baseline = notebook_experiment(args, data, spec.n_classes, spec.task)
    rows = {s: len(data[s][0]) for s in data}
    print(json.dumps({"notebook": baseline, "medprobe": ours, "rows": rows}, indent=2))
    label = f" (extrapolated from {args.epochs} epochs)" if baseline["extrapolated"] else ""
    command = " ".join(["python -m benchmarks.compare", *without_append(sys.argv[1:])])
    logreg = ours["logreg"]
    row = (
        f"| {date.today()} | {machine()} | {args.backbone} | {flag}_{size} "
        f"{rows['train']}/{rows['val']}/{rows['test']} | {baseline['seconds']:.0f}{label} | "
        f"{logreg['seconds']:.1f} | {baseline['seconds'] / logreg['seconds']:.1f}x | "
        f"{baseline['acc']:.3f} / {baseline['macro_f1']:.3f} | {logreg['acc']:.3f} / "
        f"{logreg['macro_f1']:.3f} | {ours['linear']['acc']:.3f} / "
        f"{ours['linear']['macro_f1']:.3f} | `{command}` |"
    )
    emit(row, args.append, section=SECTION)


if __name__ == "__main__":
    main()

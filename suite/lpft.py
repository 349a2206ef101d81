"""LP-FT (Kumar et al., 2022): start a fine-tune from the linear probe on the frozen features.

`finetune run --init-head probe` hands `probe_head` to `finetune.train.train`. It extracts (or
reuses) the cache entry of the model's own head input, at its preprocessing and precision, fits the
logistic-regression probe on it (C chosen on val log-likelihood), folds the probe's
standardisation into the weights and loads them as the network's classifier. Before any step, the
network then predicts exactly what the probe predicts. It lives in the suite, the layer that
composes `probe` and `finetune`, which never import each other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cache.extract import extract
from cache.forward import default_batch_size
from cache.options import ExtractOptions
from cache.store import read_key, read_split
from finetune.augment import augment, draw_params
from finetune.model import classifier_of
from medprobe.backbones.preprocess import PreprocessConfig, preprocess
from medprobe.backbones.registry import get_backbone
from medprobe.data import get_dataset
from medprobe.data.splits import open_split
from medprobe.device import autocast, resolve_device
from medprobe.errors import UserError
from medprobe.metrics import evaluate
from probe.fit import make_scorer
from probe.heads import LogRegHead

log = logging.getLogger(__name__)

# The cached features must be the head's input as the network computes it: stored in float32,
# not the cache's default float16, so the folded head reproduces the probe's predictions.
PROBE_STORAGE = "float32"
CHECK_IMAGES = 4  # val images that show the cached features are the head's input
# The head's C is chosen on the val log-loss (`probe fit`'s default), the fine-tune's own objective:
# a head chosen for AUC or ACC may be confident far beyond its accuracy (large weights), and then
# the first augmented batches give huge losses whose gradients wreck the pretrained features
# (BENCHMARKS.md, issue #16).
SELECTED_ON = "log_loss"
HEAD_INPUT_TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2, "fp16": 3e-3}  # relative, between batch sizes
# When the fine-tune augments, the probe also fits this many augmented passes over train, drawn as
# the fine-tune draws them: fitted on the clean features alone it fits images the fine-tune never
# sees, and LP-FT from it ran away (BENCHMARKS.md, "What augmentation does to the frozen features").
AUGMENTED_PASSES = 2
AUGMENT_SEED_OFFSET = 2  # the fine-tune shuffles with seed and augments with seed + 1


def probe_head(
    cfg, model: torch.nn.Module, *, pcfg: PreprocessConfig, img_size: int | None
) -> dict:
    """Fit a logistic-regression probe on `model`'s head input and load it as its classifier.

    The probe is fitted on the cached features of that input.

    Args:
        cfg: the run's `finetune.config.TrainConfig` (model, weights, data, precision, selection).
        model: the classifier built for the run, in eval mode, on the CPU (left on the run's
            device).
        pcfg: the preprocessing the run feeds it.
        img_size: the input size the run asked for (None: the model's), as the cache entry keys it.

    Returns:
        how the head was made, for the run's record: feature kind, C, the probe's val metrics and
        the cache entry.
    """
    spec, dspec = get_backbone(cfg.model), get_dataset(cfg.dataset, task=cfg.task)
    kind, path = head_input_kind(model, spec.family), _entry(cfg, img_size)
    splits = {s: read_split(path, s, kinds=(kind,)) for s in ("train", "val")}
    data = {s: (features[kind], labels) for s, (features, labels) in splits.items()}
    val = open_split(dspec, "val", size=cfg.size, root=cfg.data_root).head(CHECK_IMAGES)
    precision = read_key(path).precision
    _check_head_input(model, pcfg, val, data["val"][0][: len(val)], precision=precision)
    x_val, y_val = data["val"]
    x, y, passes = _fit_rows(cfg, dspec, model, pcfg, data["train"], precision=precision)
    score = make_scorer(y_val, task=dspec.task, metric=SELECTED_ON)
    sweep = LogRegHead.sweep(x, y, x_val, score, task=dspec.task, n_classes=dspec.n_classes)
    val_metrics = evaluate(y_val, sweep.best.predict_proba(x_val), task=dspec.task)
    load_linear_head(model, sweep.best)
    auc = val_metrics["auc"]
    C = sweep.params["C"]
    log.info("head from the logreg probe on %s features (C=%g, val AUC %.4f)", kind, C, auc)
    return {
        "from": "probe",
        "head": "logreg",
        "features": kind,
        "params": sweep.params,
        "selected_on": SELECTED_ON,
        "augmented_passes": passes,
        "val": {m: val_metrics[m] for m in ("acc", "auc", "macro_f1", "balanced_acc")},
        "cache_entry": str(path),
    }


def _entry(cfg, img_size: int | None) -> Path:
    """The cache entry of the run's network on its data (extracted now unless it is cached)."""
    options = ExtractOptions(
        weights=cfg.weights,
        pretrained=bool(cfg.pretrained),
        img_size=img_size,
        precision=cfg.precision,
        dtype=PROBE_STORAGE,
        device=cfg.device,
    )
    where = {"size": cfg.size, "task": cfg.task, "data_root": cfg.data_root}
    return extract(cfg.model, cfg.dataset, cache_root=cfg.cache_root, options=options, **where).path


def _fit_rows(
    cfg, dspec, model, pcfg, clean: tuple, *, precision: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """(features, labels, augmented passes) the probe fits.

    The cached train features, and when the run augments, `AUGMENTED_PASSES` augmented passes over
    the train images after them.
    """
    x, y = clean
    passes = AUGMENTED_PASSES if cfg.augment == "basic" else 0
    if not passes:
        return x, y, 0
    train = open_split(dspec, "train", size=cfg.size, root=cfg.data_root)
    flips = cfg.flips_for(dspec.flips)
    augmented = augmented_head_inputs(
        model, pcfg, train, passes, flips=flips, precision=precision, cfg=cfg
    )
    return np.concatenate([x, *augmented]), np.concatenate([y] * (1 + passes)), passes


def augmented_head_inputs(
    model, pcfg, train, passes: int, *, flips: str, precision: str, cfg
) -> list[np.ndarray]:
    """The network's head input for `passes` augmented passes over the train images.

    Float32, one (N, D) array per pass, drawn from a generator of their own (the fine-tune's draws
    stay as they are); computed on the run's device, where `model` stays.
    """
    device = resolve_device(cfg.device)
    model.to(device).eval()
    generator = torch.Generator().manual_seed(cfg.seed + AUGMENT_SEED_OFFSET)
    out = []
    with torch.inference_mode(), autocast(device, precision):
        for _ in range(passes):
            rows = []
            for _, _, images in train.chunks(chunk=default_batch_size(device)):
                batch = torch.from_numpy(images).to(device)
                batch = augment(batch, draw_params(len(batch), generator).to(device), flips=flips)
                rows.append(head_input(model, batch, pcfg).float().cpu().numpy())
            out.append(np.concatenate(rows))
    log.info("probe for LP-FT: %d augmented passes over %d train images", passes, train.shape[0])
    return out


def head_input(model: Any, images: torch.Tensor, pcfg: PreprocessConfig) -> torch.Tensor:
    """What `model`'s classifier reads for a batch of uint8 images (the features it is fed)."""
    return model.forward_head(model.forward_features(preprocess(images, pcfg)), pre_logits=True)


def head_input_kind(model: torch.nn.Module, family: str) -> str:
    """Which cached feature kind (`factory.extract_features`) the classifier reads."""
    if family == "cnn":
        return "pool"
    pool = getattr(model, "global_pool", None)
    if pool == "token":
        return "cls"
    if pool == "avg" and isinstance(getattr(model, "fc_norm", None), torch.nn.Identity):
        return "mean"
    raise UserError(
        f"--init-head probe: no cached feature kind is the input of this model's head ({pool=})"
    )


def load_linear_head(model: torch.nn.Module, head) -> None:
    """Fold a linear probe's standardisation into its weights; load them as `model`'s head.

    ((x - mean) / scale) @ W.T + b == x @ (W / scale).T + (b - (W / scale) @ mean).
    """
    classifier = classifier_of(model)
    coef, intercept, mean, scale = (
        torch.as_tensor(np.asarray(a), dtype=torch.float64)
        for a in (*head.output_rows(), head.mean_, head.scale_)
    )
    coef = coef / scale
    bias = intercept - coef @ mean
    if not isinstance(classifier, torch.nn.Linear) or classifier.weight.shape != coef.shape:
        shape = tuple(coef.shape)
        raise UserError(f"--init-head probe: the model's classifier is not a {shape} linear layer")
    with torch.no_grad():
        classifier.weight.copy_(coef)
        classifier.bias.copy_(bias)


def _check_head_input(
    model, pcfg: PreprocessConfig, images, cached: np.ndarray, *, precision: str
) -> None:
    """Check that the network's head input equals the cached features it was fitted on.

    Else a probe fitted on them would not be this network's head: other weights, preprocessing
    or feature kind.
    """
    with torch.no_grad(), autocast(torch.device("cpu"), precision):
        computed = head_input(model, torch.from_numpy(images), pcfg).float()
    expected = torch.from_numpy(cached)
    error = float((computed - expected).norm() / expected.norm().clamp_min(1e-12))
    if error > HEAD_INPUT_TOLERANCE[precision]:
        raise UserError(
            f"--init-head probe: the cached features differ from this network's head input "
            f"(relative error {error:.1e}); the cache entry was built from another network"
        )

"""The training defaults.

What `finetune run` uses for the options it is not given, by how a model starts (from scratch) and
its family (pretrained CNN or ViT). `finetune run --help` lists them and every record names the set
it used (`hparams.defaults`).
"""

from __future__ import annotations

from dataclasses import dataclass

from medprobe.backbones.registry import BackboneSpec


@dataclass(frozen=True)
class TrainDefaults:
    """Training defaults for a family of models; an option given explicitly overrides its value.

    `lr` is for a batch of 256 and scales linearly with the batch size (Goyal et al., 2017).
    """

    name: str
    lr: float
    weight_decay: float
    warmup: float  # epochs of linear warmup
    layer_decay: float | None  # layer-wise lr decay; None: one lr for every layer
    drop_path: float  # stochastic depth rate, where the model has it
    class_weights: str  # "none" | "balanced"
    select: str  # the val score that picks the best epoch: a `--select` choice

    def lr_for(self, batch_size: int) -> float:
        """The learning rate at `batch_size` (linear scaling from `lr` at 256)."""
        return self.lr * batch_size / 256

    def describe(self) -> str:
        """One line for logs and the record."""
        decay = f", layer decay {self.layer_decay}" if self.layer_decay else ""
        return (
            f"{self.name}: lr {self.lr:g} x batch/256, weight decay {self.weight_decay:g}, "
            f"warmup {self.warmup:g} epoch(s){decay}, drop path {self.drop_path:g}, "
            f"class weights {self.class_weights}, best epoch on val {self.select}"
        )


TRAIN_DEFAULTS: dict[str, TrainDefaults] = {
    defaults.name: defaults
    for defaults in (
        # ResNet-18 from scratch as validated against the MedMNIST v2 paper (lr 1e-3 at batch 128).
        TrainDefaults(
            name="scratch", lr=2e-3, weight_decay=1e-5, warmup=1.0, layer_decay=None,
            drop_path=0.0, class_weights="none", select="auc",
        ),
        TrainDefaults(
            name="pretrained_cnn", lr=1e-3, weight_decay=1e-4, warmup=1.0, layer_decay=None,
            drop_path=0.0, class_weights="balanced", select="auc",
        ),
        # The val loss, a proper score, judges the decisions as well as the ranking, and moves
        # smoothly on a small val split where AUC's steps are as large as one epoch's gain.
        TrainDefaults(
            name="pretrained_vit", lr=5e-4, weight_decay=0.05, warmup=1.0, layer_decay=0.65,
            drop_path=0.1, class_weights="balanced", select="loss",
        ),
    )
}  # fmt: skip


def defaults_for(spec: BackboneSpec, *, pretrained: bool) -> TrainDefaults:
    """The training defaults of a model trained from scratch or from pretrained weights."""
    if not pretrained:
        return TRAIN_DEFAULTS["scratch"]
    return TRAIN_DEFAULTS["pretrained_vit" if spec.family == "vit" else "pretrained_cnn"]

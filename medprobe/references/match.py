"""The published reference closest to a run, and how their protocols differ."""

from __future__ import annotations

from dataclasses import dataclass

from medprobe.references.registry import Reference

# A run's backbone (its registry name or timm id, lower case) -> the paper's nearest model, first
# match wins: the specific pretraining before the plain architecture.
NEAREST_MODEL = (
    ("dino", "DINO ViT-B/16"),
    ("clip", "CLIP ViT-B/16"),
    ("eva02", "EVA-02 ViT-B/16"),
    ("samvit", "SAM ViT-B/16"),
    ("vit", "ViT-B/16"),
    ("efficientnet", "EfficientNet-B4"),
    ("densenet", "DenseNet-121"),
    ("resnet", "ResNet-18"),
    ("vgg", "VGG16"),
    ("alexnet", "AlexNet"),
)


@dataclass(frozen=True, kw_only=True)
class RunProtocol:
    """What a run did, in the terms a reference's protocol is stated in."""

    model: str  # the backbone's registry name or `timm:<id>`
    model_id: str  # its timm id
    method: str  # a probe head, `finetune`, `scratch` or `frozen-sgd`
    input: str  # e.g. "bicubic to 224 px"
    seeds: int


def closest(references: list[Reference], run: RunProtocol) -> Reference | None:
    """The reference of the run's scheme whose model is the run's or nearest to it, or None."""
    mine = [r for r in references if run.method in r.scheme.medprobe]
    exact = [r for r in mine if r.timm_id == run.model_id.removeprefix("timm:")]
    if exact:
        return exact[0]
    names = f"{run.model} {run.model_id}".lower()
    for keyword, model in NEAREST_MODEL:
        if keyword in names:
            return next((r for r in mine if r.model == model), None)
    return None


def protocol_note(reference: Reference, run: RunProtocol) -> str:
    """How the reference was made where it differs from the run, e.g.

    `zero-padded to 224 px DINO ViT-B/16, linear probe, 3 seeds; this run: bicubic to 224 px
    dinov2_small, logreg, 1 seed`; empty when nothing differs.
    """
    source = reference.source
    theirs, mine = [], []
    if reference.timm_id != run.model_id.removeprefix("timm:"):
        theirs.append(reference.model)
        mine.append(run.model)
    if source.input != run.input:
        theirs.insert(0, source.input)
        mine.insert(0, run.input)
    if run.method == "scratch":
        theirs.append("ImageNet-pretrained")
        mine.append("from scratch")
    frozen = reference.scheme.name != "end-to-end"  # a frozen encoder: the heads may differ
    if frozen and reference.scheme.label != run.method:
        theirs.append(reference.scheme.label)
        mine.append(run.method)
    if source.seeds != run.seeds:
        theirs.append(f"{source.seeds} seeds")
        mine.append(f"{run.seeds} seed{'s' if run.seeds != 1 else ''}")
    if not theirs:
        return ""
    return f"{', '.join(theirs)}; this run: {', '.join(mine)}"

"""How a probe fits and scores.

One dataclass that `probe fit` and a recipe's `[[probe]]` tables share.

Light (no torch), so `probe fit --help` builds its flags from it at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from cache.slices import AGGREGATIONS, AXES, LEARNED
from medprobe.cli.options import check_fields, option
from medprobe.metrics import MAX_RESAMPLES, SELECT_METRICS
from medprobe.tracking import TRACKER_HELP, TRACKERS

HEAD_NAMES = ("logreg", "linear", "knn")  # `probe.heads.HEADS` is built from this one list
SELECT_CHOICES = ("auto", "loss", *SELECT_METRICS)
REFITS = ("none", "train+val")  # enforced by `probe.fit.fit_probe`, which takes them from here


@dataclass(frozen=True)
class ProbeOptions:
    """Which heads, on which features, selected how, over which seeds and training subsets."""

    heads: tuple[str, ...] = option(
        ("logreg",), "Comma-separated heads.", choices=HEAD_NAMES, flag="head"
    )
    features: str | None = option(
        None,
        "cls, mean, cls+mean, last4 (DINOv2's linear-eval input: 4 blocks' class tokens + mean) "
        "or pool [default: cls+mean for ViTs, pool for CNNs].",
    )
    select: str = option(
        "auto",
        "What picks the hyper-parameters on val: loss (the log-loss of the probabilities, lower "
        "wins; what auto means) or a metric.",
        choices=SELECT_CHOICES,
    )
    refit: str = option(
        "none",
        "train+val: refit the chosen hyper-parameters on train and val before test.",
        choices=REFITS,
    )
    seeds: tuple[int, ...] = option((0,), "Comma-separated seeds.")
    train_fraction: float | None = option(
        None, "Label efficiency: fit on this fraction of train.", min=0, min_open=True, max=1
    )
    shots: int | None = option(None, "Label efficiency: K examples per class.", min=1)
    bootstrap: int = option(
        1000, "Bootstrap resamples for 95% intervals on test.", min=0, max=MAX_RESAMPLES
    )
    baselines: bool = option(
        False,
        "Also fit the null baselines: the majority class, logreg on raw pixels, and the backbone "
        "with random weights through the same heads.",
    )
    tracker: str | None = option(
        None,
        TRACKER_HELP,
        choices=TRACKERS,
    )
    # A 3D dataset's entry holds every slice's features; these say how a volume's become one.
    slices: str = option(
        "mean",
        "3D datasets: how the slices of an axis become one vector: mean, max, mean+max, or "
        "attention (gated attention pooling learned on train, its weight decay chosen on val).",
        choices=(*AGGREGATIONS, *LEARNED),
    )
    axes: str = option(
        "all",
        "3D datasets: the slices of the volume's first array axis, or of all three (each "
        "aggregated, then concatenated).",
        choices=tuple(AXES),
    )

    def __post_init__(self):
        """Refuse bad options before any entry is read or any data extracted."""
        for name in ("heads", "seeds"):
            value = getattr(self, name)
            object.__setattr__(
                self, name, (value,) if isinstance(value, str | int) else tuple(value)
            )
        if not self.heads:
            raise ValueError(f"--head is empty; choose from {', '.join(HEAD_NAMES)}")
        if not self.seeds:
            raise ValueError("--seeds is empty; give at least one seed, e.g. --seeds 0")
        check_fields(self)
        if self.select == "auto":  # resolved here, so a record and its identity name the rule used
            object.__setattr__(self, "select", "loss")
        if self.train_fraction is not None and self.shots is not None:
            raise ValueError("give --train-fraction or --shots, not both")

    @property
    def kinds(self) -> tuple[str, ...] | None:
        """The feature kinds asked for (None: every kind the entry holds)."""
        return tuple(self.features.split("+")) if self.features else None

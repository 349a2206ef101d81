r"""How good an estimate the frozen probe is.

Every head x feature kind x selection rule on one entry.

    python -m benchmarks.probe_quality --data-root ../shared/data \
        --weights ../shared/weights/dinov2_vits14.safetensors

Extracts the backbone's features once (or reuses the cached entry), then fits logreg, linear and
kNN on `cls+mean` and on `last4` (DINOv2's linear-evaluation input), each selected on val ACC (the
old default), on the val log-loss (the default) and on the val log-loss then refitted on
train+val. Prints one markdown row per fit: the choice, the test metrics with 95% bootstrap
intervals, and whether the run collapsed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date

from benchmarks.common import machine
from cache.options import ExtractOptions
from medprobe.metrics import describe_collapse
from probe.options import ProbeOptions
from probe.run import run_probe

RULES = (("acc", "none"), ("loss", "none"), ("loss", "train+val"))
METRICS = ("acc", "auc", "macro_f1", "balanced_acc")
HEADER = (
    "| date | machine | data | features | head | selected on | refit | chose | test ACC | AUC | "
    "macro-F1 "
    "| bal. ACC | collapsed |\n" + "| --- " * 13 + "|"
)


def rows(args, out: str) -> list[str]:
    lines = []
    built = dict(
        weights=args.weights,
        precision=args.precision,
        pretrained=args.pretrained,
        img_size=args.img_size,
    )
    extract = ExtractOptions(**built)
    where = dict(size=args.size, data_root=args.data_root, cache_root=args.cache_root, out=out)
    for features in args.features.split(","):
        for select, refit in RULES:
            options = ProbeOptions(
                heads=tuple(args.heads.split(",")), features=features, select=select, refit=refit
            )
            for result in run_probe(
                args.dataset, backbone=args.backbone, options=options, extract=extract, **where
            ):
                lines.append(_row(result, features, select, refit))
                print(lines[-1], flush=True)
    return lines


def _row(result, features: str, select: str, refit: str) -> str:
    test = result.metrics["test"]
    cells = [f"{test[m]:.3f} [{test['ci95'][m][0]:.3f}, {test['ci95'][m][1]:.3f}]" for m in METRICS]
    chose = ", ".join(
        f"{k}={result.hparams[k]:.3g}"
        for k in ("C", "k", "lr", "weight_decay")
        if k in result.hparams
    )
    precision = result.config["entry"]["precision"]
    collapsed = describe_collapse(result.collapse).split(";")[0] if result.collapsed else "no"
    data = f"{result.dataset}_{result.size} {precision}"
    return (
        f"| {date.today()} | {machine()} | {data} | {features} | {result.method} "
        f"| {select} | {refit} | {chose} | {' | '.join(cells)} | {collapsed} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="breastmnist")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--backbone", default="dinov2_small")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--img-size", type=int, default=None)
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--cache-root", default=None)
    parser.add_argument("--heads", default="logreg,linear,knn")
    parser.add_argument("--features", default="cls+mean,last4")
    args = parser.parse_args()
    print(HEADER)
    with tempfile.TemporaryDirectory() as out:
        rows(args, out)
    print(f"`python -m benchmarks.probe_quality {' '.join(sys.argv[1:])}`")


if __name__ == "__main__":
    main()

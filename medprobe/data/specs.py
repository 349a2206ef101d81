"""What a MedMNIST+ dataset is.

Its flag, task, channels, classes, split sizes, image sizes and the mirror images augmentation may
draw; `get_dataset` resolves a flag or a user's own npz to one.

Where a dataset's file lives and how it is read is `medprobe.data.files`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medprobe.data.files import SPLITS, checked_labels, medmnist_info, open_npz
from medprobe.data.npz import member_info
from medprobe.data.validate import TASKS, infer_n_classes
from medprobe.errors import did_you_mean

SIZES = (28, 64, 128, 224)
SIZES_3D = (28, 64)  # MedMNIST+'s volumes: 28 and 64 voxels a side
DEFAULT_DATASET, DEFAULT_SIZE = "bloodmnist", 28
FLAGS_2D = (
    "pathmnist",
    "chestmnist",
    "dermamnist",
    "octmnist",
    "pneumoniamnist",
    "retinamnist",
    "breastmnist",
    "bloodmnist",
    "tissuemnist",
    "organamnist",
    "organcmnist",
    "organsmnist",
)
FLAGS_3D = (
    "organmnist3d",
    "nodulemnist3d",
    "adrenalmnist3d",
    "fracturemnist3d",
    "vesselmnist3d",
    "synapsemnist3d",
)
# The mirror images that are still images of the same class, which `finetune --augment basic` may
# draw: h (left-right), v (up-down). Microscopy and dermoscopy have no up or down. Ultrasound, OCT
# and fundus images keep their vertical axis (depth: posterior acoustic shadowing, a malignancy
# sign,
# lies below a breast lesion; retinal layers) but their left-right is arbitrary. X-rays and CT
# slices
# keep both (the heart is on the left), and OrganA/C/SMNIST's classes name left and right organs:
# mirrored, a left kidney is a right kidney still labelled left.
FLIPS = {
    "pathmnist": "hv",
    "dermamnist": "hv",
    "bloodmnist": "hv",
    "tissuemnist": "hv",
    "breastmnist": "h",
    "octmnist": "h",
    "retinamnist": "h",
    "chestmnist": "none",
    "pneumoniamnist": "none",
    "organamnist": "none",
    "organcmnist": "none",
    "organsmnist": "none",
    # 3D: h mirrors a volume's last axis (W), v its second (H). NoduleMNIST3D's LIDC-IDRI nodules
    # keep their malignancy mirrored: the ACS authors' own LIDC classification reflects them along
    # any axis (M3DV/ACSConv at 95dc860, experiments/lidc/lidc_dataset.py, `ClassTransform`).
    # OrganMNIST3D's classes name left and right organs. For the others no source was found that
    # draws mirrors (FracNet, the RibFrac baseline, draws none), so none is drawn.
    **dict.fromkeys(FLAGS_3D, "none"),
    "nodulemnist3d": "hv",
}
FLIP_CHOICES = ("hv", "h", "v", "none")


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """What a dataset is: its task, channels, classes and where its files come from.

    `path` is set for a user's own npz; official datasets resolve their file from the data root.
    """

    flag: str
    task: str
    n_channels: int | None
    labels: tuple[str, ...]
    n_samples: dict[str, int]
    sizes: tuple[int, ...] = SIZES
    path: Path | None = None
    flips: str = "none"  # `FLIPS`; a user's own npz: none unless the run asks (`finetune --flips`)
    volumetric: bool = False  # volumes (N, D, H, W), not images: the 3D datasets

    @property
    def n_classes(self) -> int:
        """Columns of the score matrix: classes, or labels for multi-label tasks."""
        return len(self.labels)

    def filename(self, size: int) -> str:
        """The official file name of the dataset at `size` px."""
        return f"{self.flag}.npz" if size == 28 else f"{self.flag}_{size}.npz"


def _spec_from_info(flag: str) -> DatasetSpec:
    info = medmnist_info()[flag]
    labels = tuple(info["label"][str(i)] for i in range(len(info["label"])))
    return DatasetSpec(
        flag=flag,
        task=info["task"],
        n_channels=info["n_channels"],
        labels=labels,
        n_samples=dict(info["n_samples"]),
        flips=FLIPS[flag],
        sizes=SIZES_3D if flag in FLAGS_3D else SIZES,
        volumetric=flag in FLAGS_3D,
    )


DATASETS: dict[str, DatasetSpec] = {flag: _spec_from_info(flag) for flag in FLAGS_2D + FLAGS_3D}


def get_dataset(name: str | os.PathLike, *, task: str | None = None) -> DatasetSpec:
    """Resolve a dataset flag (`bloodmnist`) or a path to a user's own MedMNIST-layout npz.

    Args:
        name: a key of `DATASETS`, or a path ending in `.npz`.
        task: required for a user's npz (one of `TASKS`); for an official dataset, None or its own
            task (another is refused).
    """
    name = str(name)
    if name in DATASETS:
        spec = DATASETS[name]
        if task is not None and task != spec.task:
            raise ValueError(
                f"--task {task} contradicts {name}, a {spec.task} dataset; --task is for your own "
                ".npz, drop it"
            )
        return spec
    if not name.endswith(".npz"):
        raise ValueError(
            f"unknown dataset {name!r}; {did_you_mean(name, DATASETS)}choose one of "
            f"{', '.join(DATASETS)} or give a path to your own .npz with --task"
        )
    path = Path(name).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    if task not in TASKS:
        raise ValueError(f"{path.name} is a custom dataset: give --task, one of {', '.join(TASKS)}")
    known = 2 if task == "binary-class" else None  # other class counts are what the labels say
    with open_npz(path) as npz:
        labels = {
            split: checked_labels(npz, path, split, task=task, n_classes=known) for split in SPLITS
        }
    n_out = infer_n_classes(labels, task=task, where=path.name)
    return DatasetSpec(
        flag=path.stem,
        task=task,
        n_channels=None,
        labels=tuple(str(i) for i in range(n_out)),
        n_samples={split: len(y) for split, y in labels.items()},
        sizes=(),
        path=path,
        volumetric=_holds_volumes(path),
    )


def _holds_volumes(path: Path) -> bool:
    """Whether a user's npz holds volumes (N, S, S, S) rather than images (its header says)."""
    try:
        shape = member_info(path, "train_images").shape
    except (KeyError, OSError, ValueError):
        return False  # `open_split` names what is wrong with the file
    return len(shape) == 4 and shape[1] == shape[2] == shape[3] and shape[3] not in (1, 3)

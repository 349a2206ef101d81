"""MedMNIST+ dataset specs and npz loading: uint8 arrays straight from disk, downloaded on demand."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medprobe.atomic import atomic_path
from medprobe.errors import DataError
from medprobe.hashing import file_digest
from medprobe.progress import progress_bar
from medprobe.tasks import TASKS
from medprobe.validate import check_labels, infer_n_classes

log = logging.getLogger(__name__)

SIZES = (28, 64, 128, 224)
SPLITS = ("train", "val", "test")
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
# The mirror images that are still images of the same class, which `finetune --augment basic` may
# draw: h (left-right), v (up-down). Microscopy and dermoscopy have no up or down. Ultrasound, OCT
# and fundus images keep their vertical axis (depth: posterior acoustic shadowing, a malignancy sign,
# lies below a breast lesion; retinal layers) but their left-right is arbitrary. X-rays and CT slices
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
}
FLIP_CHOICES = ("hv", "h", "v", "none")


@dataclass(frozen=True)
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

    @property
    def n_classes(self) -> int:
        """Columns of the score matrix: classes, or labels for multi-label tasks."""
        return len(self.labels)

    def filename(self, size: int) -> str:
        return f"{self.flag}.npz" if size == 28 else f"{self.flag}_{size}.npz"


@functools.cache
def medmnist_info() -> dict:
    """medmnist's INFO table (tasks, labels, split sizes, URLs, MD5s).

    Read from medmnist's own `info.py` without running its package `__init__`, which imports
    its datasets and evaluator and with them torch and torchvision (seconds, for a dict).
    """
    if "medmnist.info" in sys.modules:
        return sys.modules["medmnist.info"].INFO
    package = importlib.util.find_spec("medmnist")
    if package is None or not package.submodule_search_locations:
        raise ImportError("medmnist is not installed: pip install medmnist")
    location = Path(package.submodule_search_locations[0]) / "info.py"
    spec = importlib.util.spec_from_file_location("_medmnist_info", location)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.INFO


def _spec_from_info(flag: str) -> DatasetSpec:
    info = medmnist_info()[flag]
    labels = tuple(info["label"][str(i)] for i in range(len(info["label"])))
    return DatasetSpec(
        flag, info["task"], info["n_channels"], labels, dict(info["n_samples"]), flips=FLIPS[flag]
    )


DATASETS: dict[str, DatasetSpec] = {flag: _spec_from_info(flag) for flag in FLAGS_2D}


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
                f"--task {task} contradicts {name}, a {spec.task} dataset; --task is for your own .npz, "
                "drop it"
            )
        return spec
    if not name.endswith(".npz"):
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} "
            "or give a path to your own .npz with --task"
        )
    path = Path(name).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    if task not in TASKS:
        raise ValueError(f"{path.name} is a custom dataset: give --task, one of {', '.join(TASKS)}")
    known = 2 if task == "binary-class" else None  # other class counts are what the labels say
    with _open_npz(path) as npz:
        labels = {split: _checked_labels(npz, path, split, task=task, n_classes=known) for split in SPLITS}
    n_out = infer_n_classes(labels, task=task, where=path.name)
    return DatasetSpec(
        flag=path.stem,
        task=task,
        n_channels=None,
        labels=tuple(str(i) for i in range(n_out)),
        n_samples={split: len(y) for split, y in labels.items()},
        sizes=(),
        path=path,
    )


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: `root`, else `$MEDMNIST_ROOT`, else `~/.medmnist` (medmnist's default)."""
    return Path(root or os.environ.get("MEDMNIST_ROOT") or "~/.medmnist").expanduser()


def dataset_path(
    spec: DatasetSpec, *, size: int = 28, root: str | os.PathLike | None = None, download: bool = True
) -> Path:
    """The npz file of `spec` at `size`, downloading it first when missing and `download` is set."""
    if spec.path is not None:
        return spec.path
    if size not in spec.sizes:
        raise ValueError(f"{spec.flag} has no size {size}; choose one of {spec.sizes}")
    path = data_root(root) / spec.filename(size)
    if not path.exists():
        if not download:
            raise FileNotFoundError(
                f"{path.name} not in {path.parent}; set --data-root or MEDMNIST_ROOT to the folder "
                f"that has it, or let `probe extract` / `finetune run` fetch it (--download)"
            )
        _download(_url(spec, size), path, md5=_official_md5(spec, size))
    _warn_if_modified(path, _official_md5(spec, size))
    return path


def load_labels(path: Path, split: str, *, task: str, n_classes: int | None) -> np.ndarray:
    """One split's validated labels (N, L) int64, without reading its images."""
    with _open_npz(path) as npz:
        return _checked_labels(npz, path, split, task=task, n_classes=n_classes)


def file_md5(path: str | os.PathLike) -> str:
    """MD5 of a file's bytes (the digest MedMNIST publishes), memoized per (path, size, mtime)."""
    return file_digest(path, "md5")


UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _open_npz(path: Path):
    """The npz, opened and checked for MedMNIST's six arrays."""
    try:
        npz = np.load(path)
    except UNREADABLE as e:
        raise unreadable(path, e) from e
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path} is not a readable npz (it holds one array, not MedMNIST's six)")
    try:
        _check_keys(npz, path)
    except DataError:
        npz.close()
        raise
    return npz


def _member(npz, path: Path, key: str) -> np.ndarray:
    """One array of the npz; a damaged member is a user error naming the file."""
    try:
        return npz[key]
    except UNREADABLE as e:
        raise unreadable(path, e) from e


def unreadable(path: Path, e: Exception) -> DataError:
    return DataError(
        f"{path} is not a readable npz ({type(e).__name__}: {e}); download it again or re-save it "
        "with numpy.savez"
    )


def _checked_labels(npz, path: Path, split: str, *, task: str, n_classes: int | None) -> np.ndarray:
    labels = _member(npz, path, f"{split}_labels")
    return check_labels(labels, task=task, n_classes=n_classes, where=f"{path.name} {split}")


def _check_keys(npz, path: Path) -> None:
    expected = [f"{split}_{part}" for split in SPLITS for part in ("images", "labels")]
    missing = [key for key in expected if key not in npz.files]
    if missing:
        raise DataError(
            f"{path.name} is not in MedMNIST layout: missing {', '.join(missing)} "
            f"(expected keys: {', '.join(expected)})"
        )


def _url(spec: DatasetSpec, size: int) -> str:
    return medmnist_info()[spec.flag]["url" if size == 28 else f"url_{size}"]


def _official_md5(spec: DatasetSpec, size: int) -> str:
    return medmnist_info()[spec.flag]["MD5" if size == 28 else f"MD5_{size}"]


_warned: set[Path] = set()


def _warn_if_modified(path: Path, md5: str) -> None:
    if path in _warned or file_md5(path) == md5:
        return
    _warned.add(path)
    log.warning("%s differs from the official file (MD5 != %s); using it as it is", path, md5)


def _download(url: str, dest: Path, *, md5: str) -> None:
    """Fetch `url` into `dest` through a `.partial` file; nothing is left behind on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(dest) as partial:
            with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with progress_bar(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
            got = file_md5(partial)
            if got != md5:
                raise OSError(f"downloaded {dest.name} has MD5 {got}, expected {md5}; try again")
    except (urllib.error.URLError, OSError) as e:
        raise FileNotFoundError(
            f"could not download {dest.name} from {url} into {dest.parent} ({e}). "
            f"Offline? Put {dest.name} in {dest.parent}, or point --data-root / MEDMNIST_ROOT "
            "at a folder that has it"
        ) from e

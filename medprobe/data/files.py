"""Where medprobe's files live and how they are fetched and read.

The data and cache folders, MedMNIST downloads with their MD5, file digests, and an npz's labels
read and checked.

Nothing here knows what a dataset is (`medprobe.data.specs`): a spec is only asked for its flag,
its own path and its file name at a size.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medprobe.atomic import atomic_path
from medprobe.data.validate import check_labels
from medprobe.errors import DataError
from medprobe.progress import progress_bar

if TYPE_CHECKING:
    from medprobe.data.specs import DatasetSpec

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")  # an npz holds {split}_images and {split}_labels for each


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: `root`, else `$MEDMNIST_ROOT`, else `~/.medmnist` (medmnist's default)."""
    return Path(root or os.environ.get("MEDMNIST_ROOT") or "~/.medmnist").expanduser()


def cache_home(root: str | os.PathLike | None = None) -> Path:
    """The cache folder: `root`, else `$MEDPROBE_CACHE`, else `$XDG_CACHE_HOME/medprobe`."""
    if root or os.environ.get("MEDPROBE_CACHE"):
        return Path(root or os.environ["MEDPROBE_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "medprobe"


def dataset_path(
    spec: DatasetSpec,
    *,
    size: int = 28,
    root: str | os.PathLike | None = None,
    download: bool = True,
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
        _download(_url(spec, size), path, md5=official_md5(spec, size))
    _warn_if_modified(path, official_md5(spec, size))
    return path


def load_labels(path: Path, split: str, *, task: str, n_classes: int | None) -> np.ndarray:
    """One split's validated labels (N, L) int64, without reading its images."""
    with open_npz(path) as npz:
        return checked_labels(npz, path, split, task=task, n_classes=n_classes)


def file_md5(path: str | os.PathLike) -> str:
    """MD5 of a file's bytes (the digest MedMNIST publishes), memoized per (path, size, mtime)."""
    return file_digest(path, "md5")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes; a changed file (size or mtime) is hashed again."""
    stat = os.stat(path)
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, algorithm)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int, algorithm: str) -> str:
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def open_npz(path: Path):
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
    """The refusal for an npz that cannot be read."""
    return DataError(
        f"{path} is not a readable npz ({type(e).__name__}: {e}); download it again or re-save it "
        "with numpy.savez"
    )


def checked_labels(npz, path: Path, split: str, *, task: str, n_classes: int | None) -> np.ndarray:
    """A split's labels read from the npz and checked against the task."""
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


@functools.cache
def medmnist_info() -> dict:
    """Medmnist's INFO table (tasks, labels, split sizes, URLs, MD5s).

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
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot read {location}: reinstall medmnist")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.INFO


def _url(spec: DatasetSpec, size: int) -> str:
    return medmnist_info()[spec.flag]["url" if size == 28 else f"url_{size}"]


def official_md5(spec: DatasetSpec, size: int) -> str:
    """The MD5 medmnist publishes for a dataset's file at `size` px."""
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

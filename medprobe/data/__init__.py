"""The data.

What a MedMNIST+ dataset is, where its npz lives, and how its splits are validated and read.

- `specs`: dataset specs (`DatasetSpec`, `DATASETS`, `get_dataset`), sizes, flips;
- `files`: the data and cache folders, downloads with their MD5, file digests, labels of an npz;
- `validate`: the rules every split obeys (image shape, labels per task type), the task types;
- `npz`: an npz member read as a stream of rows (memory O(chunk));
- `splits`: one split opened and checked without reading its images (`open_split`, `SplitFile`);
- `disk_copy`: uncompressed copies of images on disk, for training on data larger than memory.

The names below are the package's public face; the modules import each other directly.
"""

from medprobe.data.files import (
    SPLITS,
    cache_home,
    data_root,
    dataset_path,
    file_digest,
    file_md5,
    load_labels,
    medmnist_info,
    official_md5,
)
from medprobe.data.specs import (
    DATASETS,
    DEFAULT_DATASET,
    DEFAULT_SIZE,
    FLAGS_2D,
    FLAGS_3D,
    FLIP_CHOICES,
    FLIPS,
    SIZES,
    DatasetSpec,
    get_dataset,
)
from medprobe.data.splits import SplitFile, load_split, open_split, open_splits
from medprobe.data.validate import MULTI_LABEL, TASKS

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "DEFAULT_SIZE",
    "FLAGS_2D",
    "FLAGS_3D",
    "FLIPS",
    "FLIP_CHOICES",
    "MULTI_LABEL",
    "SIZES",
    "SPLITS",
    "TASKS",
    "DatasetSpec",
    "SplitFile",
    "cache_home",
    "data_root",
    "dataset_path",
    "file_digest",
    "file_md5",
    "get_dataset",
    "load_split",
    "load_labels",
    "medmnist_info",
    "official_md5",
    "open_split",
    "open_splits",
]

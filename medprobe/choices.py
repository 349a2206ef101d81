"""The words options accept, in one light module (no torch, no h5py) that both CLIs declare from.

Each list is enforced by the module that acts on it (`medprobe.device`, `medprobe.preprocess`,
`cache.store`, `probe.heads`), which takes it from here; `--help` then needs none of them.
"""

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
RESIZE_MODES = ("bicubic", "bilinear", "nearest", "pad")
STORAGE_DTYPES = ("float16", "float32")
HEAD_NAMES = ("logreg", "linear", "knn")  # the keys of probe.heads.HEADS

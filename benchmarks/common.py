"""What every benchmark shares: the machine's name and how a result row is printed and kept."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "")
    return f"{cpu or platform.processor()}, {os.cpu_count()} cores"


def emit(row: str, append: Path | None) -> None:
    """Print a markdown row and, with `append`, add it to that file (e.g. BENCHMARKS.md)."""
    print(row)
    if append:
        with open(append, "a") as f:
            f.write(row + "\n")

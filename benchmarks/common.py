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


def without_append(argv: list[str]) -> list[str]:
    """A benchmark's arguments less `--append FILE` / `--append=FILE`.

    The command to reproduce it.
    """
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--append":
            skip = True
        elif not arg.startswith("--append="):
            out.append(arg)
    return out


def emit(row: str, append: Path | None, *, section: str | None = None) -> None:
    """Print a markdown row and, with `append`, add it to that file (e.g. BENCHMARKS.md).

    With `section` (a heading in that file), the row goes at the end of the first table under
    it; otherwise, or when the heading is missing, at the end of the file.
    """
    print(row)
    if not append:
        return
    lines = Path(append).read_text().splitlines() if Path(append).exists() else []
    at = len(lines)
    if section in lines:
        start = lines.index(section)
        table = [i for i in range(start, len(lines)) if lines[i].startswith("|")]
        if table:
            at = table[0]
            while at < len(lines) and lines[at].startswith("|"):
                at += 1
    lines.insert(at, row)
    Path(append).write_text("\n".join(lines) + "\n")

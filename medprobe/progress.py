"""Progress bars that stay out of logs: shown on a terminal unless asked otherwise, off under `-q`.

tqdm honours its `TQDM_DISABLE` switch (what `-q` sets) only when `disable` is not passed, so every
bar is made here, where the switch, the caller's choice and "is stderr a terminal" are weighed once.
"""

from __future__ import annotations

import os


def progress_bar(*, show: bool | None = None, **kwargs):
    """A tqdm bar; `show`: True always, False never, None when stderr is a terminal."""
    from tqdm.auto import tqdm

    quiet = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true")
    return tqdm(
        disable=True if quiet or show is False else None if show is None else False, **kwargs
    )

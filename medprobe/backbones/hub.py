"""The Hugging Face hub, as the backbone sources reach it: switched off at once when unreachable."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def offline_if_unreachable(timeout: float = 3.0) -> None:
    """Switch the hub libraries offline, with one line, when the hub cannot be reached at all.

    Without it an offline machine spends a minute in huggingface_hub's retries ("Retrying in 8s")
    before the one-line error. Behind a proxy the direct check says nothing, so it is skipped.
    """
    import huggingface_hub.constants

    if huggingface_hub.constants.HF_HUB_OFFLINE or any(os.environ.get(p) for p in PROXIES):
        return
    from urllib.parse import urlparse

    host = urlparse(huggingface_hub.constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as e:
        os.environ["HF_HUB_OFFLINE"] = "1"
        huggingface_hub.constants.HF_HUB_OFFLINE = True
        log.warning(
            "no network to %s (%s): Hugging Face downloads are off for this run "
            "(HF_HUB_OFFLINE=1); give local weights with --weights",
            host,
            type(e).__name__,
        )

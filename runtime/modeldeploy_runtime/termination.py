"""Kubernetes termination messages: the operator reads `<Reason>: <detail>` from the container status."""

from __future__ import annotations

import logging
from pathlib import Path

_log = logging.getLogger(__name__)

# Kubernetes keeps at most 4096 bytes of the termination message.
_MAX_MESSAGE_BYTES = 4096


def write_termination_message(path: Path, reason: str, detail: str) -> None:
    """Best effort: outside Kubernetes the file usually is not writable, and that is no error."""
    message = f"{reason}: {detail}".encode()[:_MAX_MESSAGE_BYTES]
    try:
        path.write_bytes(message)
    except OSError as error:
        _log.debug("termination message not written to %s: %s", path, error)

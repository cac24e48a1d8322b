"""API keys: the SHA-256 hashes of a mounted Secret, one file per key owner, re-read as kubelet refreshes them.

The runtime never holds a key, only its hash: the Secret can be read by whoever may read the pod's volumes
without giving out a key. A presented key is hashed and compared with every stored hash in constant time
(`hmac.compare_digest`, no early exit on the first match), so timing says nothing about which entry, if any,
came close. Rotation: add the new key's entry, move the clients over, remove the old entry; each change takes
effect at the next re-read, without a restart and without touching requests in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from pathlib import Path

_log = logging.getLogger(__name__)
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class ApiKeys:
    def __init__(self, folder: Path) -> None:
        self._folder = folder
        # (hash, owner); replaced whole on each re-read, so a request sees one version or the other.
        self._entries: tuple[tuple[bytes, str], ...] = ()
        self.reload()

    def __len__(self) -> int:
        return len(self._entries)

    def owner_of(self, key: str) -> str | None:
        """The owner of `key`, or None; the same work whichever entry matches, or none."""
        digest = hashlib.sha256(key.encode()).digest()
        owner = None
        for stored, name in self._entries:
            if hmac.compare_digest(stored, digest):
                owner = name
        return owner

    def reload(self) -> None:
        """Reads the folder again. Unreadable: keeps the keys it had (a Secret being swapped is briefly absent)."""
        try:
            files = sorted(path for path in self._folder.iterdir() if not path.name.startswith("."))
            entries = tuple(entry for path in files if (entry := _read_entry(path)) is not None)
        except OSError as error:
            _log.warning("cannot read API keys from %s, keeping the %d known: %s", self._folder, len(self), error)
            return
        if entries != self._entries:
            _log.info("API keys: %d entries (%s)", len(entries), ", ".join(owner for _, owner in entries))
            self._entries = entries

    async def keep_fresh(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            await asyncio.to_thread(self.reload)


def _read_entry(path: Path) -> tuple[bytes, str] | None:
    if not path.is_file():
        return None
    value = path.read_text(errors="replace").strip()
    if not _SHA256_HEX.match(value):
        _log.warning("API key entry %r is not a SHA-256 in hex (64 hex digits): ignored", path.name)
        return None
    return bytes.fromhex(value), path.name


def bearer_token(authorization: bytes | None) -> str | None:
    """The credential of an `Authorization: Bearer <key>` header (the scheme is case-insensitive, RFC 7235)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return None
    return token.decode("latin-1")

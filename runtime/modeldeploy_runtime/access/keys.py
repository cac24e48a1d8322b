"""API keys: the SHA-256 hashes of a mounted Secret, one file per key owner, re-read as kubelet refreshes them.

The runtime never holds a key, only its hash: the Secret can be read by whoever may read the pod's volumes
without giving out a key. A presented key is hashed and its hash looked up in a dict (see `owner_of` for why
that leaks nothing a constant-time comparison would hide). Rotation: add the new key's entry, move the clients
over, remove the old entry; each change takes effect at the next re-read, without a restart and without
touching requests in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from pathlib import Path

_log = logging.getLogger(__name__)
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class ApiKeys:
    def __init__(self, folder: Path) -> None:
        self._folder = folder
        # Owner by SHA-256 digest; replaced whole on each re-read, so a request sees one version or the other.
        self._owners: dict[bytes, str] = {}
        self.reload()

    def __len__(self) -> int:
        return len(self._owners)

    def owner_of(self, key: bytes) -> str | None:
        """The owner of `key`, or None.

        A comparison of secrets must take constant time because an early exit tells an attacker how many leading
        bytes of a guess were right, and a guess can be improved byte by byte. Here what is looked up is the
        SHA-256 of the guess, never the key, and what timing could tell is whether that digest lands near a stored
        one in the dict (its slot, or a shared first bytes on the rare full-hash match): the slot is chosen by
        Python's SipHash under a per-process random key (PEP 456), and even a known partial match of digests
        gives no way to a key with the stored digest (SHA-256 is preimage-resistant; changing a guess changes its
        digest unpredictably). So one lookup, a few hundred nanoseconds whatever the number of keys, replaces a
        comparison with every stored hash.
        """
        return self._owners.get(hashlib.sha256(key).digest())

    def reload(self) -> None:
        """Reads the folder again. Unreadable: keeps the keys it had (a Secret being swapped is briefly absent)."""
        try:
            files = sorted(path for path in self._folder.iterdir() if not path.name.startswith("."))
            entries = [entry for path in files if (entry := _read_entry(path)) is not None]
        except OSError as error:
            _log.warning("cannot read API keys from %s, keeping the %d known: %s", self._folder, len(self), error)
            return
        owners = dict(entries)
        if len(owners) < len(entries):
            _log.warning("API key entries with the same hash: each such key counts as the last entry's owner")
        if owners != self._owners:
            _log.info("API keys: %d entries (%s)", len(owners), ", ".join(owners.values()))
            self._owners = owners

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


def bearer_token(authorization: bytes | None) -> bytes | None:
    """The credential of an `Authorization: Bearer <key>` header (the scheme is case-insensitive, RFC 7235)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return None
    return token

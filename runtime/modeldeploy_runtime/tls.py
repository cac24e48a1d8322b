"""Serving HTTPS with a certificate that is renewed under the running server (cert-manager, a mounted Secret).

uvicorn builds one `ssl.SSLContext` at start-up and every handshake reads its certificate from it. Loading a
new chain into that same context changes what the next handshakes present, while open connections go on
undisturbed: a renewal needs no restart. A new pair is first loaded into a scratch context, so a half-written
or mismatched pair is reported and the served one kept.

Loading a chain sets the certificate and then the key, so it runs on the event loop's thread, where every
handshake runs too: from another thread, a handshake between the two would find a new certificate with the old
key and fail. The pair is copied once, checked and loaded from that copy, so files swapped meanwhile cannot mix
into the live context.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
from pathlib import Path

_log = logging.getLogger(__name__)


class CertificateReloader:
    def __init__(self, context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
        self._context = context
        self._cert_file = cert_file
        self._key_file = key_file
        self._loaded = self._version()

    def _version(self) -> tuple[tuple[int, int], ...]:
        """Changes when either file does: kubelet swaps in new files (new inodes) for a renewed Secret."""
        try:
            return tuple((info.st_ino, info.st_mtime_ns) for info in map(os.stat, (self._cert_file, self._key_file)))
        except OSError:
            return ()

    def reload_if_changed(self) -> bool:
        """On the event loop's thread (see above): a stat of two files, and two small reads when they changed."""
        version = self._version()
        if not version or version == self._loaded:
            return False
        with tempfile.TemporaryDirectory(prefix="modeldeploy-tls-") as scratch:  # readable by this user only
            cert, key = Path(scratch, "tls.crt"), Path(scratch, "tls.key")
            try:
                cert.write_bytes(self._cert_file.read_bytes())
                key.write_bytes(self._key_file.read_bytes())
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
            except (ssl.SSLError, OSError) as error:
                _log.warning("renewed TLS certificate not loaded, serving the previous one: %s", error)
                return False
            self._context.load_cert_chain(cert, key)
        self._loaded = version
        _log.info("TLS certificate reloaded from %s", self._cert_file)
        return True

    async def keep_fresh(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            self.reload_if_changed()

"""The init container: download a model file into a directory, verify its sha256, never hang.

An archive of a model directory (`NAME.tar`, `.tar.gz`, `.tgz`) is then unpacked to `DEST/NAME` (unpack.py).

Every connect and read is bounded by `fetch_timeout_s`, each attempt by `fetch_deadline_s`; transient
failures are retried with exponential backoff. Reads take what one receive brings (`read1`), so the deadline is
checked at least every `fetch_timeout_s` even against a server that trickles a byte at a time. The file appears
atomically (temp file in the same directory, then rename), so a crash never leaves a half-written model where the
server would load it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import logging
import os
import posixpath
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from modeldeploy_runtime.checksum import sha256_of
from modeldeploy_runtime.errors import ChecksumMismatch, FetchFailed
from modeldeploy_runtime.settings import FetchSettings
from modeldeploy_runtime.termination import write_termination_message
from modeldeploy_runtime.unpack import unpack_archive, unpacked_name

_CHUNK_BYTES = 1024 * 1024
_PROGRESS_EVERY_S = 2.0
_MIB = 1024 * 1024
# Client errors that a later attempt may get past (timeout, too early, rate limited); other 4xx fail at once.
_RETRYABLE_HTTP_CODES = {408, 425, 429}

_log = logging.getLogger(__name__)


class _PermanentFailure(Exception):
    pass


def fetch_model(settings: FetchSettings) -> int:
    """The `fetch` subcommand: 0, or an exit code with a termination message the operator maps."""
    try:
        directory_name = unpacked_name(target_name(settings.model_uri))
        if directory_name is not None and (settings.model_dest / directory_name).is_dir():
            # Unpacked by an earlier run of this init container (the archive is gone by then).
            _log.info("%s is already unpacked; nothing to fetch", settings.model_dest / directory_name)
            return 0
        target = download(settings)
        if directory_name is not None:
            archive, target = target, unpack_archive(target, directory_name, settings.max_unpacked_bytes)
            # One copy of the model on the size-limited volume, not two.
            archive.unlink()
    except (ChecksumMismatch, FetchFailed) as error:
        _log.error("%s: %s", error.termination_reason, error)
        write_termination_message(settings.termination_log, error.termination_reason, str(error))
        return error.exit_code
    _log.info("model ready at %s", target)
    return 0


def target_name(uri: str) -> str:
    """The file name the operator points the server at (manifests/model_source.py): the URI path's last
    segment as written, percent-escapes and ;params kept, so both sides name the same file."""
    name = posixpath.basename(urlsplit(uri).path)
    if name in ("", ".", ".."):
        raise FetchFailed(f"URI {uri} has no file name at the end of its path")
    return name


def download(settings: FetchSettings) -> Path:
    uri = settings.model_uri
    target = settings.model_dest / target_name(uri)
    expected = settings.model_sha256
    if expected and target.is_file() and sha256_of(target) == expected:
        _log.info("%s is already present with the expected sha256; nothing to fetch", target)
        return target
    try:
        settings.model_dest.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FetchFailed(f"cannot create destination {settings.model_dest}: {error}") from error
    for attempt in range(1, settings.fetch_attempts + 1):
        try:
            return _attempt(settings, target, expected)
        except (ChecksumMismatch, FetchFailed):
            raise
        except _PermanentFailure as error:
            raise FetchFailed(f"{uri}: {error}") from error
        # http.client raises its own exceptions, not OSError, e.g. IncompleteRead for a chunked body cut short.
        except (OSError, http.client.HTTPException) as error:
            if attempt == settings.fetch_attempts:
                raise FetchFailed(f"{uri}: failed after {attempt} attempts: {error}") from error
            delay = settings.fetch_backoff_s * 2 ** (attempt - 1)
            _log.warning("attempt %d of %d failed (%s); retrying in %.1fs", attempt, settings.fetch_attempts,
                         error, delay)  # fmt: skip
            time.sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")


def _attempt(settings: FetchSettings, target: Path, expected: str | None) -> Path:
    descriptor, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    temp_path = Path(temp_name)
    try:
        with os.fdopen(descriptor, "wb") as sink, _open_source(settings) as (source, total):
            digest = _copy(source, sink, total, settings)
        if expected and digest != expected:
            raise ChecksumMismatch(f"expected {expected}, got {digest}")
        os.replace(temp_path, target)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    _log.info("fetched %s (sha256 %s)", target, digest)
    return target


@contextlib.contextmanager
def _open_source(settings: FetchSettings):  # type: ignore[no-untyped-def]
    """Yields (stream, total bytes or None)."""
    parsed = urlsplit(settings.model_uri)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        if not path.is_file():
            raise _PermanentFailure(f"local file {path} does not exist")
        with path.open("rb") as stream:
            yield stream, path.stat().st_size
        return
    request = urllib.request.Request(settings.model_uri, headers={"User-Agent": "modeldeploy-runtime-fetch"})
    try:
        response = urllib.request.urlopen(request, timeout=settings.fetch_timeout_s)
    except http.client.InvalidURL as error:
        raise _PermanentFailure(str(error)) from error
    except urllib.error.HTTPError as error:
        if 400 <= error.code < 500 and error.code not in _RETRYABLE_HTTP_CODES:
            raise _PermanentFailure(f"HTTP {error.code} {error.reason}") from error
        raise
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isascii() and length.isdigit() else None
        if total is not None and settings.fetch_max_bytes is not None and total > settings.fetch_max_bytes:
            raise _PermanentFailure(_too_large(total, settings.fetch_max_bytes))
        yield response, total


def _copy(source: io.BufferedIOBase, sink: BinaryIO, total: int | None, settings: FetchSettings) -> str:
    digest = hashlib.sha256()
    started = last_report = time.monotonic()
    received = 0
    # read() would wait for a whole chunk, each receive within the timeout: a byte every 29 s would never end.
    while chunk := source.read1(_CHUNK_BYTES):
        digest.update(chunk)
        sink.write(chunk)
        received += len(chunk)
        if settings.fetch_max_bytes is not None and received > settings.fetch_max_bytes:
            raise _PermanentFailure(_too_large(received, settings.fetch_max_bytes))
        now = time.monotonic()
        if now - started > settings.fetch_deadline_s:
            # The socket timeout bounds one receive, this bounds the attempt: a trickle cannot outlast both.
            raise TimeoutError(f"download took longer than the deadline of {settings.fetch_deadline_s:g}s")
        if now - last_report >= _PROGRESS_EVERY_S:
            last_report = now
            _log_progress(received, total, now - started)
    if total is not None and received != total:
        raise OSError(f"connection closed after {received} of {total} bytes")
    _log_progress(received, total, time.monotonic() - started)
    return digest.hexdigest()


def _too_large(size: int, limit: int) -> str:
    return f"the model is larger than its download limit ({size} > {limit} bytes); raise spec.model.downloadSizeLimit"


def _log_progress(received: int, total: int | None, elapsed_s: float) -> None:
    rate = received / _MIB / max(elapsed_s, 1e-6)
    if total:
        _log.info("fetched %.1f of %.1f MiB (%d%%) at %.1f MiB/s", received / _MIB, total / _MIB,
                  100 * received // total, rate)  # fmt: skip
    else:
        _log.info("fetched %.1f MiB at %.1f MiB/s", received / _MIB, rate)

"""Unpacking a fetched model archive (`.tar`, `.tar.gz`, `.tgz`: a Hugging Face model directory) safely.

`tarfile`'s "data" filter (PEP 706) does the member checks: no absolute paths, no `..`, no links that point out
of the target, no devices, no set-uid bits. This module adds what it does not: a bound on the unpacked size and
member count, checked from the archive's index before anything is written; one top-level folder stripped, so
`NAME.tar.gz` holding `NAME/config.json` and one holding `config.json` both unpack to `DEST/NAME/config.json`;
and an atomic appearance (unpacked beside the target, then renamed), so the server never sees half a model.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from modeldeploy_runtime.errors import FetchFailed

# The operator names the served directory by the same rule (manifests/model_source.py).
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
MAX_MEMBERS = 100_000

_log = logging.getLogger(__name__)


def unpacked_name(file_name: str) -> str | None:
    """The directory an archive unpacks to; None for a file that is not an archive."""
    for suffix in ARCHIVE_SUFFIXES:
        if file_name.endswith(suffix) and len(file_name) > len(suffix):
            return file_name[: -len(suffix)]
    return None


def unpack_archive(archive: Path, directory_name: str, max_bytes: int) -> Path:
    target = archive.parent / directory_name
    scratch = Path(tempfile.mkdtemp(dir=archive.parent, prefix=f".{directory_name}.", suffix=".unpacking"))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _checked_members(tar, archive, scratch, max_bytes)
            prefix = _single_top_folder(members)
            for member in members:
                _extract(tar, member, prefix, scratch, archive)
        os.replace(scratch, target)
    except tarfile.TarError as error:
        raise FetchFailed(f"{archive.name} is not a readable tar archive: {error}") from error
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    _log.info("unpacked %s to %s", archive.name, target)
    return target


def _checked_members(tar: tarfile.TarFile, archive: Path, scratch: Path, max_bytes: int) -> list[tarfile.TarInfo]:
    """Every entry, each passed through the data filter as written (before a top folder is stripped)."""
    members = []
    total = 0
    for member in tar:
        _filtered(member, scratch, archive)
        members.append(member)
        total += member.size if member.isfile() else 0
        if len(members) > MAX_MEMBERS:
            raise FetchFailed(f"{archive.name} holds more than {MAX_MEMBERS} entries")
        if total > max_bytes:
            raise FetchFailed(f"{archive.name} unpacks to more than {max_bytes} bytes (--max-unpacked-bytes)")
    return members


def _single_top_folder(members: list[tarfile.TarInfo]) -> str | None:
    """The one folder everything is in (`NAME/config.json`, ...), stripped on unpacking; None if there is none."""
    named = [PurePosixPath(member.name).parts for member in members]
    tops = {parts[0] for parts in named if parts}
    if len(tops) != 1:
        return None
    (top,) = tops
    folder_entries = [member for member, parts in zip(members, named, strict=True) if parts == (top,)]
    if any(not member.isdir() for member in folder_entries) or all(len(parts) <= 1 for parts in named):
        return None
    return top


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, prefix: str | None, scratch: Path, archive: Path) -> None:
    parts = PurePosixPath(member.name).parts
    if not parts or (prefix is not None and parts == (prefix,)):
        return  # the archive's root ("./") or the stripped folder itself
    if prefix is not None:
        member = member.replace(name=str(PurePosixPath(*parts[1:])), deep=False)
    tar.extract(_filtered(member, scratch, archive), scratch, filter="fully_trusted")


def _filtered(member: tarfile.TarInfo, scratch: Path, archive: Path) -> tarfile.TarInfo:
    if member.name.startswith("/"):
        # The data filter would make it relative; an archive that names absolute paths is refused instead.
        raise FetchFailed(f"{archive.name}: refused entry {member.name!r}: an absolute path")
    try:
        return tarfile.data_filter(member, str(scratch))
    except tarfile.FilterError as error:
        raise FetchFailed(f"{archive.name}: refused entry {member.name!r}: {error}") from error

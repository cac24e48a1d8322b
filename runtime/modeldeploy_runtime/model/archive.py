"""Reading model archives before torch does: format detection and the no-arbitrary-unpickling guard.

Both formats are zip archives under one root folder. TorchScript's pickles are read by TorchScript's own
unpickler, which only builds TorchScript types. `torch.export.load`, however, falls back to Python's
full unpickler for some members (tensor subclasses, opaque objects, sample inputs), which could run
arbitrary code. Before handing a .pt2 archive to torch we therefore require every pickled member to load
under `torch.load(weights_only=True)` and refuse opaque Python objects outright: if the restricted
unpickler accepts a member, the full unpickler reading the same bytes calls nothing beyond that allow-list.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path, PurePosixPath

import torch
from torch.export.pt2_archive import constants as pt2

from modeldeploy_runtime.errors import ModelLoadError
from modeldeploy_runtime.settings import ModelFormat


def _open_archive(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist or is not a file")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ModelLoadError(
            f"model file {path} is not a TorchScript or ExportedProgram archive (not a valid zip: {error})"
        ) from error


def _members_by_relative_path(archive: zipfile.ZipFile, path: Path) -> dict[str, str]:
    """Maps paths below the archive's single root folder to full member names.

    Refuses what torch and this check could read differently: duplicate names (zipfile reads the last, a
    reader may take the first), several root folders (torch reads one of them, this check would mix them),
    members outside any folder, and names that climb out with `..` or start at `/`.
    """
    members: dict[str, str] = {}
    roots = set()
    for name in archive.namelist():
        parts = PurePosixPath(name).parts
        if len(parts) < 2 or name.startswith("/") or ".." in parts:
            raise ModelLoadError(f"{path}: member {name!r} is not inside the archive's root folder")
        relative = "/".join(parts[1:])
        if relative in members:
            raise ModelLoadError(f"{path}: member {name!r} appears more than once (or under two root folders)")
        roots.add(parts[0])
        members[relative] = name
    if len(roots) > 1:
        raise ModelLoadError(f"{path} has several root folders ({', '.join(sorted(roots))}); a model archive has one")
    return members


def detect_format(path: Path) -> ModelFormat:
    if path.is_dir():
        return ModelFormat.HUGGINGFACE
    with _open_archive(path) as archive:
        members = _members_by_relative_path(archive, path)
        if pt2.ARCHIVE_FORMAT_PATH in members:
            return ModelFormat.EXPORTED_PROGRAM
        if "data.pkl" in members and any(member.startswith("code/") for member in members):
            return ModelFormat.TORCHSCRIPT
    raise ModelLoadError(
        f"model file {path} is neither a TorchScript archive (torch.jit.save) "
        "nor an ExportedProgram archive (torch.export.save)"
    )


def check_exported_program_archive(path: Path) -> None:
    """Raises ModelLoadError unless every pickled member passes the weights-only unpickler."""
    with _open_archive(path) as archive:
        members = _members_by_relative_path(archive, path)
        if pt2.ARCHIVE_FORMAT_PATH not in members:
            raise ModelLoadError(f"{path} is not a .pt2 archive written by torch.export.save")
        for relative, name in members.items():
            if relative.startswith(pt2.CONSTANTS_DIR + pt2.OPAQUE_OBJ_FILENAME_PREFIX):
                raise ModelLoadError(
                    f"{path} holds an opaque Python object ({relative}) that only the full unpickler can "
                    "load; this runtime refuses to unpickle arbitrary objects"
                )
            if relative.startswith(pt2.SAMPLE_INPUTS_DIR):
                _require_weights_only(archive, name, path)
        for config_format, folder in (
            (pt2.WEIGHTS_CONFIG_FILENAME_FORMAT, pt2.WEIGHTS_DIR),
            (pt2.CONSTANTS_CONFIG_FILENAME_FORMAT, pt2.CONSTANTS_DIR),
        ):
            for relative, name in members.items():
                if not _matches_format(relative, config_format):
                    continue
                config = json.loads(archive.read(name)).get("config", {})
                for payload in config.values():
                    if payload.get("use_pickle"):
                        member = members.get(folder + payload["path_name"])
                        if member is None:
                            raise ModelLoadError(f"{path} lacks {folder + payload['path_name']}")
                        _require_weights_only(archive, member, path)


def _matches_format(relative: str, name_format: str) -> bool:
    prefix, suffix = name_format.split("{}")
    return relative.startswith(prefix) and relative.endswith(suffix)


def _require_weights_only(archive: zipfile.ZipFile, member: str, path: Path) -> None:
    try:
        torch.load(io.BytesIO(archive.read(member)), weights_only=True)
    except Exception as error:
        raise ModelLoadError(
            f"{path}: member {member} needs the full unpickler ({error.__class__.__name__}); "
            "this runtime only loads tensors and plain containers (weights_only semantics)"
        ) from error

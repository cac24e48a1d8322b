"""How the model file reaches the runtime container, by URI scheme."""

import posixpath
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MODEL_VOLUME = "model-store"
MODEL_MOUNT_PATH = "/mnt/models"
# A fetched archive of a model directory unpacks to DEST/<its name less these>: the runtime's fetch follows
# the same rule (docs/runtime.md), so the server is pointed at the directory, not the archive.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


@dataclass(frozen=True)
class ModelDelivery:
    """Where the runtime finds the file, and what the pod needs for it to be there."""

    model_path: str
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    fetch_uri: str | None = None  # set when an init container must download the file first
    verify_in_runtime: bool = False  # the runtime checks sha256 itself when nothing fetched (and checked) it


def plan_model_delivery(uri: str, download_size_limit: str | int) -> ModelDelivery:
    # pvc:// and file:// name files, not URLs: '?', '#' and '%' are parts of the file's name.
    scheme, _, location = uri.partition("://")
    if scheme == "pvc":
        claim, _, path = location.partition("/")
        return ModelDelivery(
            model_path=posixpath.join(MODEL_MOUNT_PATH, path),
            volumes=[{"name": MODEL_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
            mounts=[{"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT_PATH, "readOnly": True}],
            verify_in_runtime=True,
        )
    if scheme == "https":
        file_name = posixpath.basename(urlsplit(uri).path)  # never empty: the parse refuses such a URI
        return ModelDelivery(
            model_path=posixpath.join(MODEL_MOUNT_PATH, _unpacked_name(file_name)),
            # Bounded, so a model larger than expected cannot fill the node's disk and get other pods evicted.
            volumes=[{"name": MODEL_VOLUME, "emptyDir": {"sizeLimit": str(download_size_limit)}}],
            mounts=[{"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT_PATH}],
            fetch_uri=uri,
        )
    # file://, the one scheme left after the parse (api/v1alpha1.py: ModelSource)
    return ModelDelivery(model_path=location, verify_in_runtime=True)


def _unpacked_name(file_name: str) -> str:
    """What the runtime serves of a fetched file: the file itself, or the directory an archive unpacks to."""
    for suffix in ARCHIVE_SUFFIXES:
        if file_name.endswith(suffix) and len(file_name) > len(suffix):
            return file_name[: -len(suffix)]
    return file_name

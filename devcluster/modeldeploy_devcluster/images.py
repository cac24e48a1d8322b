"""`make images`: the project's images built from its own Dockerfiles without a Docker engine, for the real node.

    python -m modeldeploy_devcluster images [--state-dir .dev/cluster]

buildah (Debian's package) builds `runtime/Dockerfile` and `operator/Dockerfile` unchanged. No base image can be
pulled here, so their `PYTHON_IMAGE` build argument names a local one: a Debian rootfs with Python made by
mmdebstrap from the machine's own apt sources. Every image is tagged with a hash of its inputs (the Dockerfile, the
files it copies, the base, the build arguments) and cached as an archive outside the repository, so only a change
to those inputs builds again; buildah's layer cache keeps the dependency layers between builds. `--state-dir`
imports the images into that cluster's real node (when it runs), where pods use them without any registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .real_node import PAUSE_IMAGE

REPO = Path(__file__).resolve().parents[2]
BASE_SUITE = "bookworm"
# What the Dockerfiles expect of python:3.11-slim: `python` on PATH, venv with pip, CA certificates.
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
BASE_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# The machine reaches package indexes through its own TLS settings: RUN steps see them read-only, the image never.
HOST_TLS_FILES = (Path("/etc/ssl/certs/ca-certificates.crt"), Path("/etc/pip.conf"))
# Pods refer to `modeldeploy/runtime:<tag>`; containerd stores it under its normalised name.
REGISTRY_PREFIX = "docker.io/"
MIN_FREE_BYTES_TO_KEEP_CACHE = 30 * 2**30


def cache_dir() -> Path:
    """Beside build-binaries.sh's cache, with the same override."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modeldeploy"
    return Path(os.environ.get("MODELDEPLOY_CACHE", default)) / "images"


@dataclass(frozen=True)
class ImageRecipe:
    """One of the project's images: its Dockerfile, build arguments and the file naming what it copies."""

    repository: str
    dockerfile: Path
    build_args: dict[str, str] = field(default_factory=dict)
    ignorefile: Path | None = None


RECIPES = (
    # The CPU wheel index of the default build cannot be reached here; PyPI's torch (with the CUDA libraries it
    # bundles) runs on CPU all the same.
    ImageRecipe(
        "modeldeploy/runtime",
        REPO / "runtime" / "Dockerfile",
        {"TORCH_VARIANT": "cuda"},
        REPO / "runtime" / "Dockerfile.dockerignore",
    ),
    ImageRecipe(
        "modeldeploy/operator", REPO / "operator" / "Dockerfile", {}, REPO / "operator" / "Dockerfile.dockerignore"
    ),
)


@dataclass(frozen=True)
class BuiltImage:
    reference: str
    archive: Path


@dataclass(frozen=True)
class LocalImages:
    """The references of the project's images in the real node."""

    runtime: str
    operator: str


def _log(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, text=True, capture_output=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result  # type: ignore[no-any-return]


def _has_image(reference: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", reference], capture_output=True).returncode == 0


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()[:16]


def python_base() -> str:
    """The local stand-in for python:3.11-slim, built once per package list and apt sources."""
    key = _digest(" ".join((BASE_SUITE, *BASE_PACKAGES, *BASE_EXCLUDES)).encode(), APT_SOURCES.read_bytes())
    reference = f"localhost/modeldeploy/python-base:{key}"
    if _has_image(reference):
        return reference
    rootfs = cache_dir() / f"python-base-{key}.tar"
    if not rootfs.exists():
        _log(f"building the Debian {BASE_SUITE} base with {', '.join(BASE_PACKAGES)} (about a minute)")
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        excludes = [f"--dpkgopt=path-exclude={pattern}" for pattern in BASE_EXCLUDES]
        _run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                # The format follows the output's extension otherwise, and `.tmp` would make a directory.
                "--format=tar",
                f"--include={','.join(BASE_PACKAGES)}",
                *excludes,
                BASE_SUITE,
                f"{rootfs}.tmp",
                str(APT_SOURCES),
            ]
        )
        Path(f"{rootfs}.tmp").rename(rootfs)
    with _scratch_container(reference) as container:
        _run(["buildah", "add", container, str(rootfs), "/"])
        _run(["buildah", "config", "--env", "LANG=C.UTF-8", "--cmd", "python3", container])
    return reference


@contextlib.contextmanager
def _scratch_container(reference: str) -> Iterator[str]:
    """A working container from scratch for the caller to fill, committed as `reference`, then removed."""
    container = _run(["buildah", "from", "scratch"]).stdout.strip()
    try:
        yield container
        _run(["buildah", "commit", "--quiet", container, reference])
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)


def copied_files(dockerfile: Path) -> list[Path]:
    """The build-context files a Dockerfile COPYs or ADDs (not from other stages), directories expanded."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    files: set[Path] = set()
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD") or any(w.startswith("--from") for w in words):
            continue
        for source in (w for w in words[1:-1] if not w.startswith("--")):
            path = REPO / source
            if path.is_dir():
                files.update(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            else:
                files.add(path)
    return sorted(files)


def _tag(recipe: ImageRecipe, base: str) -> str:
    parts = [recipe.dockerfile.read_bytes(), base.encode(), repr(sorted(recipe.build_args.items())).encode()]
    for path in copied_files(recipe.dockerfile):
        parts += [str(path.relative_to(REPO)).encode(), path.read_bytes()]
    return _digest(*parts)


def build(recipe: ImageRecipe, base: str) -> BuiltImage:
    """Build (or find cached) one image; returns its reference and its docker-archive."""
    tag = _tag(recipe, base)
    reference = f"{REGISTRY_PREFIX}{recipe.repository}:{tag}"
    archive = cache_dir() / f"{recipe.repository.replace('/', '-')}-{tag}.tar"
    if archive.exists():
        return BuiltImage(reference, archive)
    _log(f"building {reference} from {recipe.dockerfile.relative_to(REPO)}")
    # The runtime's archive and image are gigabytes each, and a build needs room for its own layers and copies:
    # the superseded build goes first (only the current one is ever used), and the layer cache if room is short.
    _remove_superseded(recipe, archive)
    _drop_layer_cache_when_disk_is_low()
    argv = ["buildah", "build", "--layers", "--isolation", "chroot", "-f", str(recipe.dockerfile), "-t", reference]
    argv += ["--build-arg", f"PYTHON_IMAGE={base}"]
    argv += [f"--build-arg={name}={value}" for name, value in recipe.build_args.items()]
    argv += [f"--volume={path}:{path}:ro" for path in HOST_TLS_FILES if path.exists()]
    if recipe.ignorefile:
        argv += ["--ignorefile", str(recipe.ignorefile)]
    subprocess.run([*argv, str(REPO)], check=True, stdout=sys.stderr)
    _run(["buildah", "push", "--quiet", reference, f"docker-archive:{archive}.tmp:{reference}"])
    Path(f"{archive}.tmp").rename(archive)
    _drop_layer_cache_when_disk_is_low()  # also the build's own intermediate images, if room is short
    return BuiltImage(reference, archive)


def _remove_superseded(recipe: ImageRecipe, current: Path) -> None:
    """Earlier builds of the recipe's image: their archives, and their images in buildah's storage (buildah keeps
    the layers they share with the new build as its cache while the disk has room)."""
    prefix = recipe.repository.replace("/", "-")
    for cut_short in current.parent.glob(f"{prefix}-*.tar.tmp"):
        cut_short.unlink()
    for stale in current.parent.glob(f"{prefix}-*.tar"):
        if stale != current:
            stale.unlink()
            tag = stale.stem.rsplit("-", 1)[1]
            subprocess.run(["buildah", "rmi", f"{REGISTRY_PREFIX}{recipe.repository}:{tag}"], capture_output=True)


def _drop_layer_cache_when_disk_is_low() -> None:
    """Every runtime build leaves gigabytes of cached layers; a build needs about 15 GB free for its own layers and
    buildah's temporary copies. Below that, the cache goes (the next build downloads its dependencies again)."""
    storage = Path("/var/lib/containers")
    free = shutil.disk_usage(storage if storage.exists() else Path("/")).free
    if free < MIN_FREE_BYTES_TO_KEEP_CACHE:
        _log(f"{free / 2**30:.0f} GiB free: dropping buildah's layer cache")
        subprocess.run(["buildah", "rmi", "--prune"], capture_output=True)


def pause_image(bin_dir: Path) -> BuiltImage:
    """The pod sandbox image, from the pause binary build-binaries.sh compiles."""
    binary = bin_dir / "pause"
    archive = cache_dir() / f"pause-{_digest(binary.read_bytes(), PAUSE_IMAGE.encode())}.tar"
    if not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        with _scratch_container(PAUSE_IMAGE) as container:
            _run(["buildah", "copy", container, str(binary), "/pause"])
            _run(["buildah", "config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container])
        _run(["buildah", "push", "--quiet", PAUSE_IMAGE, f"docker-archive:{archive}.tmp:{PAUSE_IMAGE}"])
        Path(f"{archive}.tmp").rename(archive)
    return BuiltImage(PAUSE_IMAGE, archive)


def build_all() -> list[BuiltImage]:
    base = python_base()
    return [build(recipe, base) for recipe in RECIPES]


def import_into(ctr: Path, socket: Path, image: BuiltImage) -> None:
    """Import into the node's containerd (once), pinned so kubelet's image garbage collection never removes it."""
    node = [str(ctr), "--address", str(socket), "--namespace", "k8s.io", "images"]
    if _run([*node, "list", "--quiet", f"name=={image.reference}"]).stdout.strip():
        return
    _run([*node, "import", "--label", "io.cri-containerd.pinned=pinned", str(image.archive)])

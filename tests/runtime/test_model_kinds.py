"""Every kind of model the runtime serves: a CNN, two inputs of two dtypes, an ExportedProgram, no metadata."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import runtime_test_models as models
import torch
from runtime_binary import binary_request, decode_response
from runtime_server import RuntimeServer


def serve(model_dir: Path, name: str, build: Callable[[Path], torch.nn.Module], suffix: str = ".pt") -> Iterator[
    tuple[RuntimeServer, torch.nn.Module]
]:  # fmt: skip
    path = model_dir / f"{name}{suffix}"
    module = build(path)
    server = RuntimeServer(path, model_dir / f"{name}.log", "--max-batch-size", "16", model_name=name)
    try:
        server.wait_ready()
        yield server, module
    finally:
        assert server.terminate() == 0


@pytest.fixture(scope="module")
def cnn_server(model_dir: Path) -> Iterator[tuple[RuntimeServer, torch.nn.Module]]:
    yield from serve(model_dir, "cnn", models.build_cnn)


@pytest.fixture(scope="module")
def pair_server(model_dir: Path) -> Iterator[tuple[RuntimeServer, torch.nn.Module]]:
    yield from serve(model_dir, "pair", models.build_two_inputs)


@pytest.fixture(scope="module")
def exported_server(model_dir: Path) -> Iterator[tuple[RuntimeServer, torch.nn.Module]]:
    yield from serve(model_dir, "exported", models.build_exported_mlp, suffix=".pt2")


@pytest.fixture(scope="module")
def undeclared_server(model_dir: Path) -> Iterator[tuple[RuntimeServer, torch.nn.Module]]:
    yield from serve(model_dir, "undeclared", models.build_undeclared_mlp)


def test_cnn_binary_images(cnn_server: tuple[RuntimeServer, torch.nn.Module], client: httpx.Client) -> None:
    server, module = cnn_server
    images = torch.randn(3, *models.CNN_SHAPE)
    body, headers = binary_request({"image": images}, binary_outputs=True)
    response = client.post(server.infer_url, content=body, headers=headers)
    assert response.status_code == 200, response.text
    torch.testing.assert_close(decode_response(response)["scores"], module(images).detach(), rtol=1e-4, atol=1e-4)


def test_two_inputs_two_outputs(pair_server: tuple[RuntimeServer, torch.nn.Module], client: httpx.Client) -> None:
    server, module = pair_server
    metadata = client.get(f"{server.url}/v2/models/pair").json()
    assert [(tensor["name"], tensor["datatype"]) for tensor in metadata["inputs"]] == [
        ("left", "FP32"), ("right", "INT32"),
    ]  # fmt: skip
    assert [(tensor["name"], tensor["shape"]) for tensor in metadata["outputs"]] == [
        ("mixed", [-1, 8]),
        ("total", [-1]),
    ]
    left = torch.randn(2, models.PAIR_WIDTH)
    right = torch.randint(-3, 4, (2, models.PAIR_WIDTH), dtype=torch.int32)
    # Inputs in the other order than declared: matched by name.
    body, headers = binary_request({"right": right, "left": left}, binary_outputs=False)
    response = client.post(server.infer_url, content=body, headers=headers)
    assert response.status_code == 200, response.text
    outputs = decode_response(response)
    mixed, total = module(left, right)
    torch.testing.assert_close(outputs["mixed"], mixed.detach())
    assert torch.equal(outputs["total"], total)
    missing = client.post(
        server.infer_url, json={"inputs": [{"name": "left", "datatype": "FP32", "shape": [1, 8], "data": [0] * 8}]}
    )
    assert missing.status_code == 400
    assert "missing inputs ['right']" in missing.json()["error"]


def test_two_inputs_over_v1(pair_server: tuple[RuntimeServer, torch.nn.Module], client: httpx.Client) -> None:
    server, module = pair_server
    instances = [{"left": [1.0] * 8, "right": [2] * 8}, {"left": [0.5] * 8, "right": [1] * 8}]
    response = client.post(f"{server.url}/v1/models/pair:predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    mixed, total = module(torch.tensor([[1.0] * 8, [0.5] * 8]), torch.tensor([[2] * 8, [1] * 8]))
    assert [prediction["total"] for prediction in predictions] == total.tolist()
    torch.testing.assert_close(torch.tensor([p["mixed"] for p in predictions]), mixed.detach())


def test_exported_program(exported_server: tuple[RuntimeServer, torch.nn.Module], client: httpx.Client) -> None:
    server, module = exported_server
    metadata = client.get(f"{server.url}/v2/models/exported").json()
    assert metadata["platform"] == "pytorch_exported_program"
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, models.MLP_FEATURES]}]
    rows = torch.randn(7, models.MLP_FEATURES)
    body, headers = binary_request({"features": rows}, binary_outputs=True)
    response = client.post(server.infer_url, content=body, headers=headers)
    assert response.status_code == 200, response.text
    torch.testing.assert_close(next(iter(decode_response(response).values())), module(rows).detach())


def test_model_without_metadata(undeclared_server: tuple[RuntimeServer, torch.nn.Module], client: httpx.Client) -> None:
    server, module = undeclared_server
    metadata = client.get(f"{server.url}/v2/models/undeclared").json()
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "output__0", "datatype": "FP32", "shape": [-1]}]
    assert "skipping warm-up" in server.log()
    rows = torch.randn(2, models.MLP_FEATURES)
    response = client.post(
        server.infer_url,
        json={"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 16], "data": rows.flatten().tolist()}]},
    )
    assert response.status_code == 200, response.text
    torch.testing.assert_close(torch.tensor(response.json()["outputs"][0]["data"]).reshape(2, 4), module(rows).detach())

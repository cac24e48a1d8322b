"""The binary tensor data extension: raw tensors in and out, mixed with JSON."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import torch
from runtime_binary import binary_request, decode_response
from runtime_server import RuntimeServer
from runtime_test_models import MLP_FEATURES


def test_binary_round_trip(mlp_server: RuntimeServer, mlp: tuple[Path, torch.nn.Module], client: httpx.Client) -> None:
    rows = torch.randn(5, MLP_FEATURES)
    body, headers = binary_request({"features": rows}, binary_outputs=True)
    response = client.post(mlp_server.infer_url, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    logits = decode_response(response)["logits"]
    assert torch.equal(logits, mlp[1](rows).detach())  # bit-exact: no text round trip


def test_binary_input_json_output(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    body, headers = binary_request({"features": torch.ones(1, MLP_FEATURES)}, binary_outputs=False)
    response = client.post(mlp_server.infer_url, content=body, headers=headers)
    assert response.status_code == 200
    assert "inference-header-content-length" not in response.headers
    assert response.json()["outputs"][0]["shape"] == [1, 4]


def test_json_input_with_one_binary_output(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    body = {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, MLP_FEATURES], "data": [0.5] * MLP_FEATURES}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }
    response = client.post(mlp_server.infer_url, json=body)
    assert response.status_code == 200
    header_length = int(response.headers["inference-header-content-length"])
    header = orjson.loads(response.content[:header_length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 4 * 4}
    assert len(response.content) == header_length + 16


def test_wrong_binary_size_is_400(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    body, headers = binary_request({"features": torch.ones(2, MLP_FEATURES)}, binary_outputs=True)
    response = client.post(mlp_server.infer_url, content=body[:-4], headers=headers)
    assert response.status_code == 400
    assert "input 'features': binary_data_size 128 runs past the end" in response.json()["error"]
    response = client.post(mlp_server.infer_url, content=body + b"\0\0", headers=headers)
    assert response.status_code == 400
    assert "2 bytes after the last binary input" in response.json()["error"]


def test_bad_header_length_is_400(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    body, _ = binary_request({"features": torch.ones(1, MLP_FEATURES)}, binary_outputs=True)
    response = client.post(mlp_server.infer_url, content=body, headers={"Inference-Header-Content-Length": "99999"})
    assert response.status_code == 400
    assert "Inference-Header-Content-Length" in response.json()["error"]

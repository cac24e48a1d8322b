"""Open Inference Protocol v2 conformance against a real server and a real TorchScript MLP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch
from runtime_server import RuntimeServer
from runtime_test_models import MLP_CLASSES, MLP_FEATURES


def infer_body(rows: torch.Tensor, **extra: object) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": list(rows.shape), "data": rows.flatten().tolist()}
        ],
        **extra,
    }


def test_health_and_server_metadata(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    assert client.get(f"{mlp_server.url}/v2/health/live").json() == {"live": True}
    ready = client.get(f"{mlp_server.url}/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "reason": "model is ready"}
    server = client.get(f"{mlp_server.url}/v2").json()
    assert server["name"] == "modeldeploy-runtime"
    assert "binary_tensor_data" in server["extensions"]


def test_model_metadata_declares_names_datatypes_and_shapes(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    metadata = client.get(f"{mlp_server.url}/v2/models/mlp").json()
    assert metadata == {
        "name": "mlp",
        "versions": ["1"],
        "platform": "pytorch_torchscript",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, MLP_FEATURES]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, MLP_CLASSES]}],
    }
    ready = client.get(f"{mlp_server.url}/v2/models/mlp/ready")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v2/models/nope"), ("GET", "/v2/models/nope/ready"), ("POST", "/v2/models/nope/infer")],
)
def test_unknown_model_is_404(mlp_server: RuntimeServer, client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, mlp_server.url + path, json=infer_body(torch.zeros(1, MLP_FEATURES)))
    assert response.status_code == 404
    assert response.json() == {"error": "model 'nope' is not served here"}


def test_infer_json_matches_the_eager_forward(
    mlp_server: RuntimeServer, mlp: tuple[Path, torch.nn.Module], client: httpx.Client
) -> None:
    rows = torch.randn(3, MLP_FEATURES)
    response = client.post(mlp_server.infer_url, json=infer_body(rows, id="request-7"))
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["model_name"] == "mlp"
    assert document["id"] == "request-7"
    [output] = document["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("logits", "FP32", [3, MLP_CLASSES])
    expected = mlp[1](rows).detach()
    torch.testing.assert_close(torch.tensor(output["data"]).reshape(3, MLP_CLASSES), expected)


def test_nested_data_is_accepted(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    rows = torch.randn(2, MLP_FEATURES)
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, MLP_FEATURES], "data": rows.tolist()}]}
    flat = client.post(mlp_server.infer_url, json=infer_body(rows)).json()
    nested = client.post(mlp_server.infer_url, json=body).json()
    assert nested["outputs"] == flat["outputs"]


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "pixels", "datatype": "FP32", "shape": [1, 16], "data": [0.0] * 16},
         "input 'pixels' is not an input of this model"),
        ({"name": "features", "datatype": "INT64", "shape": [1, 16], "data": [0] * 16},
         "input 'features': datatype INT64 does not match the declared FP32"),
        ({"name": "features", "datatype": "FP32", "shape": [1, 15], "data": [0.0] * 15},
         "input 'features': shape [1, 15] does not match the declared shape [-1, 16]"),
        ({"name": "features", "datatype": "FP32", "shape": [2, 16], "data": [0.0] * 16},
         "input 'features': data has 16 elements but shape [2, 16] needs 32"),
        ({"name": "features", "datatype": "FP32", "shape": [1, 16], "data": ["a"] * 16},
         "input 'features': data is not a (nested) list of FP32 values"),
        ({"name": "features", "datatype": "STRING", "shape": [1, 16], "data": [0.0] * 16},
         "input 'features': datatype 'STRING' is not supported"),
        ({"name": "features", "datatype": "FP32", "shape": [64, 16], "data": [0.0] * 1024},
         "batch dimension 64 exceeds the max batch size 32"),
        ({"name": "features", "datatype": "FP32", "shape": [1, 16]},
         "input 'features' has neither 'data' nor parameters.binary_data_size"),
    ],
)  # fmt: skip
def test_bad_tensors_are_400_naming_the_tensor(
    mlp_server: RuntimeServer, client: httpx.Client, tensor: dict[str, object], message: str
) -> None:
    response = client.post(mlp_server.infer_url, json={"inputs": [tensor]})
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"[1, 2]", "request body must be a JSON object with 'inputs'"),
        (b'{"inputs": []}', "'inputs' must be a non-empty list of tensors"),
        (b'{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 16], "data": []}], "outputs": 3}',
         "data has 0 elements"),
    ],
)  # fmt: skip
def test_malformed_bodies_are_400(mlp_server: RuntimeServer, client: httpx.Client, body: bytes, message: str) -> None:
    response = client.post(mlp_server.infer_url, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_requested_unknown_output_is_400(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    body = infer_body(torch.zeros(1, MLP_FEATURES), outputs=[{"name": "probabilities"}])
    response = client.post(mlp_server.infer_url, json=body)
    assert response.status_code == 400
    assert "output 'probabilities' is not an output of this model" in response.json()["error"]


def test_payload_over_the_cap_is_413(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    oversized = b"{" + b" " * (1024 * 1024) + b"}"
    response = client.post(mlp_server.infer_url, content=oversized)
    assert response.status_code == 413
    assert "payload cap of 1048576 bytes" in response.json()["error"]


def test_chunked_payload_over_the_cap_is_413(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b" " * 65536

    response = client.post(mlp_server.infer_url, content=chunks())
    assert response.status_code == 413


def test_openapi_document_describes_every_endpoint(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    document = client.get(f"{mlp_server.url}/openapi.json").json()
    assert set(document["paths"]) >= {
        "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{model_name}",
        "/v2/models/{model_name}/ready", "/v2/models/{model_name}/infer",
        "/v1/models", "/v1/models/{model_name}", "/v1/models/{model_name}:predict", "/metrics",
    }  # fmt: skip
    infer = document["paths"]["/v2/models/{model_name}/infer"]["post"]
    body_schema = infer["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/InferenceRequest"}
    assert "RequestInput" in document["components"]["schemas"]
    assert {"400", "404", "413", "429", "500", "503"} <= set(infer["responses"])

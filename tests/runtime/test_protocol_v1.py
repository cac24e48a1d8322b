"""KServe v1: `instances` in, `predictions` out."""

from __future__ import annotations

from pathlib import Path

import httpx
import torch
from runtime_server import RuntimeServer
from runtime_test_models import MLP_FEATURES


def test_predict_returns_one_prediction_per_instance(
    mlp_server: RuntimeServer, mlp: tuple[Path, torch.nn.Module], client: httpx.Client
) -> None:
    rows = torch.randn(4, MLP_FEATURES)
    response = client.post(f"{mlp_server.url}/v1/models/mlp:predict", json={"instances": rows.tolist()})
    assert response.status_code == 200, response.text
    predictions = torch.tensor(response.json()["predictions"])
    torch.testing.assert_close(predictions, mlp[1](rows).detach())


def test_model_status_and_list(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    assert client.get(f"{mlp_server.url}/v1/models").json() == {"models": ["mlp"]}
    assert client.get(f"{mlp_server.url}/v1/models/mlp").json() == {"name": "mlp", "ready": True}
    assert client.get(f"{mlp_server.url}/v1/models/other").status_code == 404


def test_bad_instances_are_400(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    url = f"{mlp_server.url}/v1/models/mlp:predict"
    cases = {
        '{"instances": []}': "'instances' is empty",
        '{"rows": [[1]]}': "must be a JSON object with an 'instances' list",
        '{"instances": [[1, 2, 3]]}': "input 'features': shape [1, 3] does not match the declared shape [-1, 16]",
        '{"instances": [[1, 2], [3]]}': "input 'features'",
    }
    for body, message in cases.items():
        response = client.post(url, content=body)
        assert response.status_code == 400, body
        assert message in response.json()["error"], body

"""Prometheus metrics move as they should."""

from __future__ import annotations

import httpx
import torch
from runtime_metrics import scrape, value
from runtime_server import RuntimeServer
from runtime_test_models import MLP_FEATURES


def test_metrics_count_requests_by_code_and_time_them(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    before = scrape(mlp_server.url)
    good = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, MLP_FEATURES],
                        "data": torch.ones(2 * MLP_FEATURES).tolist()}]}  # fmt: skip
    for _ in range(5):
        assert client.post(mlp_server.infer_url, json=good).status_code == 200
    assert client.post(mlp_server.infer_url, json={"inputs": []}).status_code == 400
    assert client.post(f"{mlp_server.url}/v2/models/ghost/infer", json=good).status_code == 404
    assert client.post(f"{mlp_server.url}/v1/models/mlp:predict", json={"instances": [[0.0] * 16]}).status_code == 200
    after = scrape(mlp_server.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("modeldeploy_requests_total", model="mlp", protocol="v2", code="200") == 5
    assert delta("modeldeploy_requests_total", model="mlp", protocol="v2", code="400") == 1
    assert delta("modeldeploy_requests_total", model="_unknown", protocol="v2", code="404") == 1
    assert delta("modeldeploy_requests_total", model="mlp", protocol="v1", code="200") == 1
    assert delta("modeldeploy_request_duration_seconds_count", model="mlp", protocol="v2") == 6
    assert delta("modeldeploy_request_duration_seconds_sum", model="mlp", protocol="v2") > 0
    assert delta("modeldeploy_queue_duration_seconds_count", model="mlp") == 6  # 5 v2 + 1 v1 reached the queue
    assert delta("modeldeploy_inference_duration_seconds_count", model="mlp") >= 1
    assert delta("modeldeploy_batch_size_sum", model="mlp") == 5 * 2 + 1
    assert value(after, "modeldeploy_model_ready", model="mlp") == 1
    assert value(after, "modeldeploy_model_load_duration_seconds", model="mlp") > 0
    assert value(after, "modeldeploy_queue_depth", model="mlp") == 0
    assert value(after, "modeldeploy_inflight_requests", model="mlp") == 0
    # No GPU here: the GPU memory gauge only exists when the model runs on CUDA.
    assert not any(name == "modeldeploy_gpu_memory_bytes" for name, _ in after)

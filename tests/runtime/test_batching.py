"""Dynamic batching under concurrency: every client gets exactly its own answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import torch
from runtime_metrics import scrape, value
from runtime_server import RuntimeServer
from runtime_test_models import MLP_FEATURES

CONCURRENT_REQUESTS = 200


async def test_200_concurrent_distinct_requests_each_get_their_own_answer(
    mlp_server: RuntimeServer, mlp: tuple[Path, torch.nn.Module]
) -> None:
    generator = torch.Generator().manual_seed(42)
    # Requests of 1 to 3 rows, so batches mix request sizes and the split must respect them.
    requests = [
        torch.randn(1 + index % 3, MLP_FEATURES, generator=generator) + index for index in range(CONCURRENT_REQUESTS)
    ]
    before = scrape(mlp_server.url)
    limits = httpx.Limits(max_connections=CONCURRENT_REQUESTS, max_keepalive_connections=CONCURRENT_REQUESTS)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:

        async def infer(rows: torch.Tensor) -> httpx.Response:
            body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": list(rows.shape),
                                "data": rows.flatten().tolist()}]}  # fmt: skip
            return await client.post(mlp_server.infer_url, json=body)

        responses = await asyncio.gather(*(infer(rows) for rows in requests))
    for rows, response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        [output] = response.json()["outputs"]
        assert output["shape"] == [rows.shape[0], 4]
        got = torch.tensor(output["data"]).reshape(rows.shape[0], 4)
        torch.testing.assert_close(got, mlp[1](rows).detach(), rtol=1e-5, atol=1e-5)
    after = scrape(mlp_server.url)
    calls = value(after, "modeldeploy_batch_size_count", model="mlp") - value(
        before, "modeldeploy_batch_size_count", model="mlp"
    )
    rows_run = value(after, "modeldeploy_batch_size_sum", model="mlp") - value(
        before, "modeldeploy_batch_size_sum", model="mlp"
    )
    assert rows_run == sum(rows.shape[0] for rows in requests)
    # Batching happened: far fewer model calls than requests.
    assert calls < CONCURRENT_REQUESTS / 2, f"{calls} model calls for {CONCURRENT_REQUESTS} requests"
    assert value(after, "modeldeploy_batch_size_bucket", model="mlp", le="32.0") == value(
        after, "modeldeploy_batch_size_count", model="mlp"
    ), "a batch exceeded the max batch size"

"""Backpressure: a bounded queue answers 429 with Retry-After, memory stays bounded, requests time out."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import runtime_test_models as models
import torch
from runtime_binary import binary_request
from runtime_metrics import scrape, value
from runtime_server import RuntimeServer

# One row of this model's input is 1 MiB: a flood that were queued without bound would show in memory.
WIDE = 256 * 1024
FLOOD = 100


@pytest.fixture(scope="module")
def slow_server(model_dir: Path) -> Iterator[RuntimeServer]:
    path = model_dir / "slow-wide.pt"
    models.build_slow(path, rounds=600, width=WIDE)
    server = RuntimeServer(
        path, model_dir / "slow-wide.log",
        "--max-batch-size", "1", "--max-queue-size", "2", "--max-payload-bytes", str(4 * 1024 * 1024),
        # Bodies are read before a queue place is taken: this budget is what bounds the bytes held meanwhile.
        "--max-inflight-bytes", str(16 * 1024 * 1024),
        model_name="slow",
    )  # fmt: skip
    server.wait_ready()
    yield server
    server.terminate()


def peak_memory_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


async def flood(url: str, count: int) -> list[httpx.Response]:
    body, headers = binary_request({"features": torch.ones(1, WIDE)}, binary_outputs=True)
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:
        return await asyncio.gather(*(client.post(url, content=body, headers=headers) for _ in range(count)))


async def test_overload_is_refused_with_429_and_retry_after(slow_server: RuntimeServer) -> None:
    peak_before = peak_memory_bytes(slow_server.process.pid)
    responses = await flood(slow_server.infer_url, FLOOD)
    codes = [response.status_code for response in responses]
    assert set(codes) <= {200, 429}, codes
    assert codes.count(200) >= 2  # the admission bound: two admitted while the rest arrive
    assert codes.count(429) >= FLOOD // 2
    for response in responses:
        if response.status_code == 429:
            assert response.headers["retry-after"] == "1"
            error = response.json()["error"]
            assert "queue is full" in error or "bytes of requests" in error, error
    # Unbounded queueing would hold FLOOD MiB of request bodies at once.
    growth = peak_memory_bytes(slow_server.process.pid) - peak_before
    assert growth < 80 * 1024 * 1024, f"peak memory grew by {growth / 2**20:.0f} MiB"


def test_server_recovers_after_overload(slow_server: RuntimeServer) -> None:
    body, headers = binary_request({"features": torch.ones(1, WIDE)}, binary_outputs=True)
    response = httpx.post(slow_server.infer_url, content=body, headers=headers, timeout=60.0)
    assert response.status_code == 200


def test_request_timeout_is_503_with_retry_after(model_dir: Path) -> None:
    path = model_dir / "slow-timeout.pt"
    models.build_slow(path, rounds=3000)
    server = RuntimeServer(path, model_dir / "slow-timeout.log", "--request-timeout-s", "0.05", model_name="slow")
    try:
        server.wait_ready()
        body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
        response = httpx.post(server.infer_url, json=body, timeout=60.0)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json() == {"error": "request did not finish within 0.05s"}
    finally:
        assert server.terminate() == 0


def test_abandoned_requests_never_reach_the_model(slow_server: RuntimeServer) -> None:
    body, headers = binary_request({"features": torch.ones(1, WIDE)}, binary_outputs=True)
    before = scrape(slow_server.url)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(httpx.post, slow_server.infer_url, content=body, headers=headers, timeout=60.0)
        time.sleep(0.05)
        with pytest.raises(httpx.TimeoutException):  # the client gives up while its request waits
            httpx.post(slow_server.infer_url, content=body, headers=headers, timeout=0.1)
        assert running.result().status_code == 200
    deadline = time.monotonic() + 30
    while value(scrape(slow_server.url), "modeldeploy_inflight_requests", model="slow") > 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    after = scrape(slow_server.url)
    assert (
        value(after, "modeldeploy_requests_total", model="slow", protocol="v2", code="499")
        - value(before, "modeldeploy_requests_total", model="slow", protocol="v2", code="499")
        == 1
    )
    model_calls = value(after, "modeldeploy_batch_size_count", model="slow") - value(
        before, "modeldeploy_batch_size_count", model="slow"
    )
    assert model_calls == 1

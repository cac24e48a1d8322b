"""A runtime that bad clients cannot take down: slow bodies, odd headers, inputs the model refuses, hung calls."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
import warnings
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import runtime_test_models as models
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modeldeploy_runtime.errors import BodyReadTimedOut, ModelLoadError, Overloaded, PayloadTooLarge
from modeldeploy_runtime.intake import ByteBudget, off_loop_when_large, receive_body
from modeldeploy_runtime.model.archive import check_exported_program_archive, detect_format
from runtime_server import RuntimeServer

SLOW_CLIENTS = 300
FUZZ_CASES = 1000


def mlp_body(value: float = 0.5) -> dict[str, object]:
    return {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, models.MLP_FEATURES],
                        "data": [value] * models.MLP_FEATURES}]}  # fmt: skip


@pytest.fixture(scope="module")
def small_queue_server(mlp: tuple[Path, object], model_dir: Path) -> Iterator[RuntimeServer]:
    server = RuntimeServer(
        mlp[0], model_dir / "small-queue.log", "--max-queue-size", "8", "--body-read-timeout-s", "3",
        model_name="mlp",
    )  # fmt: skip
    server.wait_ready()
    yield server
    server.terminate()


async def test_clients_trickling_their_bodies_hold_no_queue_place(small_queue_server: RuntimeServer) -> None:
    """300 connections send headers and a few bytes, then stall: other clients are still served (before: 429)."""
    head = (
        b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    stalled = []
    try:
        for _ in range(SLOW_CLIENTS):
            reader, writer = await asyncio.open_connection("127.0.0.1", small_queue_server.port)
            writer.write(head + b'{"inp')
            await writer.drain()
            stalled.append((reader, writer))
        async with httpx.AsyncClient(timeout=30.0) as client:
            answers = await asyncio.gather(
                *(client.post(small_queue_server.infer_url, json=mlp_body()) for _ in range(5))
            )
        assert [answer.status_code for answer in answers] == [200] * 5
        # The stalled ones are let go at the read deadline, with 408.
        for reader, _ in stalled[:10]:
            status_line = await asyncio.wait_for(reader.readline(), 30)
            assert status_line.startswith(b"HTTP/1.1 408"), status_line
    finally:
        for _, writer in stalled:
            writer.close()


HEADER_DEADLINE_S = 1.0


@pytest.fixture(scope="module")
def header_deadline_server(mlp: tuple[Path, object], model_dir: Path) -> Iterator[RuntimeServer]:
    server = RuntimeServer(
        mlp[0], model_dir / "header-deadline.log", "--header-read-timeout-s", str(HEADER_DEADLINE_S), model_name="mlp"
    )
    server.wait_ready()
    yield server
    server.terminate()


SLOW_HEAD = b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # a header never ended


async def dribbled_until_cut(port: int, every_s: float = 0.1) -> tuple[bytes, float]:
    """Sends SLOW_HEAD, then one more header byte every `every_s` until the server ends the connection; returns what
    the server answered and how long after connecting."""
    connected = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def dribble() -> None:
        writer.write(SLOW_HEAD)
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(every_s)

    dribbling = asyncio.create_task(dribble())
    try:
        answer = await asyncio.wait_for(reader.read(), 30)
        return answer, time.monotonic() - connected
    finally:
        dribbling.cancel()
        writer.close()


async def test_a_client_dribbling_its_headers_is_cut_at_the_header_deadline(
    header_deadline_server: RuntimeServer,
) -> None:
    """20 slowloris connections send a header a byte at a time, and one connection sends nothing: each is cut once
    the deadline has passed (408 when it sent something), while a kept-alive client is served throughout (before:
    they held their connections for as long as they kept sending)."""
    port = header_deadline_server.port
    silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", port)
    silent_since = time.monotonic()
    slow = [asyncio.create_task(dribbled_until_cut(port)) for _ in range(20)]
    answered = []
    async with httpx.AsyncClient(timeout=30.0) as client:  # one connection, kept alive past the deadline
        while not all(task.done() for task in slow):
            answered.append((await client.post(header_deadline_server.infer_url, json=mlp_body())).status_code)
            await asyncio.sleep(0.02)
    assert set(answered) == {200} and len(answered) >= 10, answered
    for answer, after_s in [task.result() for task in slow]:
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
        assert answer.endswith(b"the request headers did not arrive in time")
        assert HEADER_DEADLINE_S <= after_s < HEADER_DEADLINE_S + 5, after_s
    assert await asyncio.wait_for(silent_reader.read(), 30) == b""  # closed without a word
    assert time.monotonic() - silent_since >= HEADER_DEADLINE_S
    silent_writer.close()


async def test_a_client_still_sending_when_cut_reads_its_408(header_deadline_server: RuntimeServer) -> None:
    """Bytes as fast as the loop sends them: the server cuts with the clients' bytes still arriving. A plain close
    then resets the connection, and the reset lost the 408 (ConnectionResetError here); the lingering close drops
    what they send until they close."""
    cut = await asyncio.gather(*(dribbled_until_cut(header_deadline_server.port, 0) for _ in range(20)))
    for answer, _ in cut:
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer


def test_a_header_number_with_a_non_ascii_digit_is_a_400(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    body = orjson.dumps(mlp_body())
    response = client.post(
        mlp_server.infer_url, content=body, headers={"Inference-Header-Content-Length": "\u00b2".encode("latin-1")}
    )
    assert response.status_code == 400
    assert "Inference-Header-Content-Length" in response.json()["error"]


class Troublesome(torch.nn.Module):
    """Without declared metadata, so the model alone decides what it takes: 16 features, none negative. A first
    feature of 1000 or more makes one call take seconds: what a wedged GPU looks like from the server."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(models.MLP_FEATURES, models.MLP_CLASSES)
        self.spin = torch.nn.Parameter(torch.eye(256) * 0.5)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if bool((features < 0).any()):
            raise ValueError("negative features are not allowed")
        if features.dim() == 2 and bool(features[0, 0] >= 1000):
            state = torch.ones(256, 256)
            for _ in range(10_000):
                state = torch.tanh(state @ self.spin)
            features = features + state[0, 0]
        return self.layer(features)


@pytest.fixture(scope="module")
def troublesome_server(model_dir: Path) -> Iterator[RuntimeServer]:
    path = model_dir / "troublesome.pt"
    torch.jit.save(torch.jit.script(Troublesome().eval()), str(path))
    server = RuntimeServer(
        path, model_dir / "troublesome.log", "--max-batch-delay-ms", "50", "--request-timeout-s", "1",
        model_name="m",
    )  # fmt: skip
    server.wait_ready()
    yield server
    server.terminate()


def test_an_input_the_model_refuses_is_a_400_without_traceback_or_paths(troublesome_server: RuntimeServer) -> None:
    wrong = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    response = httpx.post(troublesome_server.infer_url, json=wrong, timeout=30.0)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert message.startswith("the model rejected the input: ")
    assert "cannot be multiplied" in message
    for leak in ("Traceback", "File ", "/", "\n"):
        assert leak not in message, message
    assert "Traceback" in troublesome_server.log()  # the details stay on the server


def test_a_refused_input_fails_only_its_own_request(troublesome_server: RuntimeServer) -> None:
    """Eight requests of one shape arrive together and are batched; one has a negative value. Only its sender
    gets the error: the batch is run again request by request."""
    bodies = [mlp_body(value=-1.0 if index == 5 else 0.5) for index in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(httpx.post, troublesome_server.infer_url, json=body, timeout=30.0) for body in bodies]
        responses = [future.result() for future in futures]
    assert [response.status_code for response in responses] == [200] * 5 + [400] + [200] * 2
    assert "negative features are not allowed" in responses[5].json()["error"]


def test_liveness_fails_while_a_model_call_hangs_past_the_request_timeout(troublesome_server: RuntimeServer) -> None:
    live_url = f"{troublesome_server.url}/v2/health/live"
    assert httpx.get(live_url, timeout=5.0).status_code == 200
    body = mlp_body(value=1000.0)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(httpx.post, troublesome_server.infer_url, json=body, timeout=120.0)
        deadline = time.monotonic() + 60
        while (live := httpx.get(live_url, timeout=5.0)).status_code == 200:
            assert time.monotonic() < deadline, "liveness never noticed the hung call"
            time.sleep(0.05)
        assert live.status_code == 503 and live.json() == {"live": False}
        assert stuck.result().status_code == 503  # the request itself timed out long ago
    deadline = time.monotonic() + 120
    while httpx.get(live_url, timeout=5.0).status_code != 200:
        assert time.monotonic() < deadline, "liveness never recovered after the call returned"
        time.sleep(0.1)


async def chunks_of(*parts: bytes, pause_s: float = 0.0) -> AsyncIterator[bytes]:
    for part in parts:
        if pause_s:
            await asyncio.sleep(pause_s)
        yield part


async def test_the_byte_budget_bounds_bodies_being_read_and_waiting() -> None:
    budget = ByteBudget(1000)
    held = await receive_body(chunks_of(b"x" * 600), 600, cap_bytes=800, budget=budget, deadline_s=5)
    assert budget.used == 600
    with pytest.raises(Overloaded, match="1000 bytes"):
        await receive_body(chunks_of(b"y" * 500), 500, cap_bytes=800, budget=budget, deadline_s=5)
    with pytest.raises(Overloaded):  # a chunked body is charged as it arrives
        await receive_body(chunks_of(b"y" * 300, b"y" * 300), None, cap_bytes=800, budget=budget, deadline_s=5)
    assert budget.used == 600  # what the refused ones had sent is given back
    with pytest.raises(PayloadTooLarge):
        await receive_body(chunks_of(b"z" * 900), None, cap_bytes=800, budget=budget, deadline_s=5)
    assert bytes(held.take()) == b"x" * 600
    held.release()
    assert budget.used == 0


async def test_a_stalled_body_is_cut_at_the_read_deadline() -> None:
    budget = ByteBudget(1000)
    with pytest.raises(BodyReadTimedOut, match=r"0\.2s"):
        await receive_body(chunks_of(b"a", b"b", pause_s=1.0), 2, cap_bytes=800, budget=budget, deadline_s=0.2)
    assert budget.used == 0


async def test_large_bodies_are_decoded_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    assert await off_loop_when_large(10, threading.get_ident) == loop_thread
    assert await off_loop_when_large(10 * 1024 * 1024, threading.get_ident) != loop_thread


def rewritten(source: Path, target: Path, rename: dict[str, list[str]]) -> Path:
    """Copies a zip, writing each member under every name `rename` maps it to (or its own)."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for item in archive.infolist():
            for name in rename.get(item.filename, [item.filename]):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we mean to write
                    out.writestr(name, archive.read(item))
    return target


def test_pt2_archives_that_torch_and_the_guard_could_read_differently_are_refused(model_dir: Path) -> None:
    clean = model_dir / "guard-clean.pt2"
    models.build_exported_mlp(clean)
    with zipfile.ZipFile(clean) as archive:
        names = archive.namelist()
    root = names[0].split("/")[0]
    two_roots = rewritten(clean, model_dir / "two-roots.pt2", {
        name: [name, "decoy" + name[len(root):]] for name in names
    })  # fmt: skip
    duplicated = rewritten(clean, model_dir / "duplicated.pt2", {names[-1]: [names[-1], names[-1]]})
    for archive_path, reason in ((two_roots, "two root folders"), (duplicated, "more than once")):
        with pytest.raises(ModelLoadError, match=reason):
            check_exported_program_archive(archive_path)
        with pytest.raises(ModelLoadError, match=reason):
            detect_format(archive_path)
    check_exported_program_archive(clean)


def test_fuzzed_headers_never_get_a_5xx(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    header_names = st.sampled_from([
        "Content-Type", "Inference-Header-Content-Length", "Authorization", "X-Request-Id", "Accept",
        "Content-Encoding", "Transfer-Encoding-Hint", "Expect",
    ])  # fmt: skip
    # Any bytes an HTTP client can put in a header value (no control characters but tab), non-ASCII included.
    header_values = st.binary(max_size=40).map(lambda raw: bytes(b for b in raw if b >= 0x20 and b != 0x7F).strip())
    body = orjson.dumps(mlp_body())
    seen: list[int] = []

    @given(headers=st.dictionaries(header_names, header_values, max_size=4))
    @settings(max_examples=FUZZ_CASES, deadline=None, suppress_health_check=list(HealthCheck))
    def call(headers: dict[str, bytes]) -> None:
        response = client.post(mlp_server.infer_url, content=body, headers=headers)
        seen.append(response.status_code)
        assert response.status_code < 500, (headers, response.text)

    call()
    assert len(seen) >= FUZZ_CASES * 0.9


def test_fuzzed_binary_requests_never_get_a_5xx(mlp_server: RuntimeServer, client: httpx.Client) -> None:
    seen: list[int] = []
    tensor_bytes = torch.ones(2, models.MLP_FEATURES).numpy().tobytes()

    # Each part is either the valid one or a fuzzed one, so some cases reach the model and most stray from it.
    @given(
        declared_size=st.one_of(st.just(len(tensor_bytes)), st.integers(-2, 300)),
        shape=st.one_of(st.just([2, models.MLP_FEATURES]), st.lists(st.integers(0, 20), max_size=3)),
        datatype=st.one_of(st.just("FP32"), st.sampled_from(["FP16", "INT64", "BOOL", "BF16", "BYTES", "fp32"])),
        payload=st.one_of(st.just(tensor_bytes), st.binary(max_size=300)),
        header_shift=st.one_of(st.just(0), st.integers(-5, 5)),
        binary_output=st.booleans(),
    )
    @settings(max_examples=FUZZ_CASES, deadline=None, suppress_health_check=list(HealthCheck))
    def call(
        declared_size: int, shape: list[int], datatype: str, payload: bytes, header_shift: int, binary_output: bool
    ) -> None:
        header = orjson.dumps({
            "inputs": [{"name": "features", "datatype": datatype, "shape": shape,
                        "parameters": {"binary_data_size": declared_size}}],
            "parameters": {"binary_data_output": binary_output},
        })  # fmt: skip
        response = client.post(
            mlp_server.infer_url,
            content=header + payload,
            headers={"Inference-Header-Content-Length": str(len(header) + header_shift)},
        )
        seen.append(response.status_code)
        assert response.status_code < 500, response.text

    call()
    assert len(seen) >= FUZZ_CASES * 0.9
    assert 200 in seen  # the generator does reach the model, not only the refusals

"""Access control: every route needs a key but the probes', per-key limits, the audit log, TLS."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest
import runtime_test_models as models
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from modeldeploy_runtime.access.audit import AUDIT_FORMAT, AuditLog
from modeldeploy_runtime.access.keys import ApiKeys
from modeldeploy_runtime.access.limits import KeyLimits, Rate
from modeldeploy_runtime.access.middleware import OPEN_PATHS, AccessControl
from modeldeploy_runtime.app import create_app
from modeldeploy_runtime.errors import RateLimited
from modeldeploy_runtime.protocol.http import body_chunks
from modeldeploy_runtime.settings import ServeSettings
from runtime_server import RuntimeServer
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

ALICE_KEY = "md-alice-0123456789abcdef"
BOB_KEY = "md-bob-fedcba9876543210"
AUDIT_FIELDS = [
    "format", "time", "request_id", "key_owner", "model", "protocol", "method", "route", "status",
    "latency_ms", "request_bytes", "response_bytes", "tokens", "client",
]  # fmt: skip
MLP_BODY = {
    "inputs": [
        {"name": "features", "datatype": "FP32", "shape": [1, models.MLP_FEATURES], "data": [0.5] * models.MLP_FEATURES}
    ]
}


def write_key(folder: Path, owner: str, key: str) -> None:
    (folder / owner).write_text(hashlib.sha256(key.encode()).hexdigest() + "\n")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def audit_lines(server: RuntimeServer) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.log().splitlines() if line.startswith('{"format":')]


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    write_key(folder, "alice", ALICE_KEY)
    write_key(folder, "bob", BOB_KEY)
    (folder / "..data").mkdir()  # kubelet's own bookkeeping in a mounted Secret: not an entry
    return folder


@pytest.fixture(scope="module")
def keyed_server(mlp: tuple[Path, object], model_dir: Path, keys_dir: Path) -> Iterator[RuntimeServer]:
    server = RuntimeServer(
        mlp[0], model_dir / "keyed.log",
        "--api-keys-dir", str(keys_dir), "--api-keys-reload-s", "0.2",
        "--key-requests-per-second", "2", "--key-requests-burst", "5",
        model_name="mlp",
    )  # fmt: skip
    server.wait_ready()
    yield server
    server.terminate()


def every_route(routes: Iterable[BaseRoute]) -> Iterator[tuple[str, Iterable[str] | None]]:
    """(path, methods) of every route, through included routers (FastAPI keeps theirs behind a wrapper)."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            yield from ((context.path, context.methods) for context in contexts())
        else:
            assert isinstance(route, Route), route
            yield route.path, route.methods


def keyed_app(keys: Path, model_path: Path) -> FastAPI:
    """An app that is never started: a tensor model for a file path, a text model for a directory."""
    write_key(keys, "alice", ALICE_KEY)
    return create_app(ServeSettings(model_name="mlp", model_path=model_path, api_keys_dir=keys))


@pytest.mark.parametrize("kind", ["tensor", "text"])
async def test_every_route_refuses_a_call_without_a_key_but_the_open_ones(tmp_path: Path, kind: str) -> None:
    """Walks the app's routes (and the inference fast path, and a route nobody declared): all need a key.

    A text model's app has other routes (OpenAI's, v2 generate) than a tensor model's (KServe v1): both are walked.
    """
    (tmp_path / "keys").mkdir()
    (tmp_path / "text-model").mkdir()
    app = keyed_app(tmp_path / "keys", tmp_path / "text-model" if kind == "text" else Path("unused.pt"))
    calls = [("GET", "/no/such/route")]
    for path, methods in every_route(app.routes):
        path = path.replace("{model_name}", "mlp")
        calls += [(method, path) for method in sorted(methods or ["GET"]) if method != "HEAD"]
    documented = {path.replace("{model_name}", "mlp") for path in app.openapi()["paths"]}
    assert documented <= {path for _, path in calls}, "the walk missed routes"
    assert {path for _, path in calls} >= OPEN_PATHS
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://runtime") as client:
        for method, path in calls:
            for headers in ({}, bearer("wrong"), {"Authorization": "Basic YWxpY2U6eA=="}):
                response = await client.request(method, path, headers=headers)
                if path in OPEN_PATHS:
                    assert response.status_code != 401, (method, path)
                    continue
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
                error = response.json()["error"]
                assert "API key" in (error["message"] if kind == "text" and path.startswith("/v1/") else error)
            response = await client.request(method, path, headers=bearer(ALICE_KEY))
            assert response.status_code != 401, (method, path)


async def test_openai_routes_answer_401_in_openai_error_shape(tmp_path: Path) -> None:
    """A text model's server answers in OpenAI's shape under /v1; a tensor model's serves KServe v1 there, whose
    `/v1/models` shares OpenAI's path, and keeps v1's shape."""
    (tmp_path / "keys").mkdir()
    (tmp_path / "text-model").mkdir()
    text_app = keyed_app(tmp_path / "keys", tmp_path / "text-model")
    openai_paths = {path for path, _ in every_route(text_app.routes) if path.startswith("/v1/")}
    assert openai_paths == {"/v1/models", "/v1/completions", "/v1/chat/completions"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=text_app), base_url="http://runtime") as client:
        for path in sorted(openai_paths):
            response = await client.post(path, json={})
            assert response.status_code == 401, path
            assert response.json() == {
                "error": {
                    "message": "a valid API key is required: send it as 'Authorization: Bearer <key>'",
                    "type": "authentication_error",
                    "param": None,
                    "code": None,
                }
            }, path
    tensor_app = keyed_app(tmp_path / "keys", Path("unused.pt"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=tensor_app), base_url="http://runtime") as client:
        for path in ("/v1/models", "/v1/models/mlp", "/v1/models/mlp:predict"):
            response = await client.post(path, json={})
            assert response.status_code == 401, path
            assert isinstance(response.json()["error"], str), path


def test_a_valid_key_is_served_and_audited_without_the_key(keyed_server: RuntimeServer) -> None:
    refused = httpx.post(keyed_server.infer_url, json=MLP_BODY, headers=bearer("nope"), timeout=10.0)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    body = json.dumps(MLP_BODY).encode()
    headers = {**bearer(BOB_KEY), "X-Request-Id": "trace-42", "Content-Type": "application/json"}
    answered = httpx.post(keyed_server.infer_url, content=body, headers=headers, timeout=10.0)
    assert answered.status_code == 200
    assert answered.headers["x-request-id"] == "trace-42"
    generated = httpx.get(f"{keyed_server.url}/v2/models/mlp", headers=bearer(BOB_KEY), timeout=10.0)
    assert len(generated.headers["x-request-id"]) == 32
    # The fast path stamps its own answers (no wrapper of `send`): its errors are echoed and audited all the same.
    malformed = {**headers, "X-Request-Id": "trace-43"}
    rejected = httpx.post(keyed_server.infer_url, content=b"{not json", headers=malformed, timeout=10.0)
    assert rejected.status_code == 400 and rejected.headers["x-request-id"] == "trace-43"
    probe = httpx.get(f"{keyed_server.url}/v2/health/ready", timeout=10.0)
    assert probe.status_code == 200

    deadline = time.monotonic() + 10
    while len(lines := audit_lines(keyed_server)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    by_id = {line["request_id"]: line for line in lines}
    line = by_id["trace-42"]
    assert list(line) == AUDIT_FIELDS
    assert line["format"] == AUDIT_FORMAT
    assert line["key_owner"] == "bob"
    assert (line["model"], line["protocol"], line["method"]) == ("mlp", "v2", "POST")
    assert (line["route"], line["status"], line["client"]) == ("/v2/models/mlp/infer", 200, "127.0.0.1")
    assert line["request_bytes"] == len(body)
    assert line["response_bytes"] == len(answered.content)
    assert line["tokens"] is None and isinstance(line["latency_ms"], float)
    rejected_line = by_id["trace-43"]
    assert (rejected_line["status"], rejected_line["route"]) == (400, "/v2/models/mlp/infer")
    assert (rejected_line["request_bytes"], rejected_line["response_bytes"]) == (9, len(rejected.content))
    parsed = datetime.datetime.fromisoformat(str(line["time"]))
    assert parsed.tzinfo is not None
    assert [entry["status"] for entry in lines if entry["key_owner"] is None] == [401]  # refused calls too
    assert "/v2/health/ready" not in {entry["route"] for entry in lines}  # probes are not audited
    assert ALICE_KEY not in keyed_server.log() and BOB_KEY not in keyed_server.log()


def test_one_noisy_key_is_limited_and_the_others_are_not(keyed_server: RuntimeServer) -> None:
    async def hammer() -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with httpx.AsyncClient(timeout=10.0) as client:
            noisy = await asyncio.gather(
                *(client.post(keyed_server.infer_url, json=MLP_BODY, headers=bearer(ALICE_KEY)) for _ in range(30))
            )
            quiet = [await client.post(keyed_server.infer_url, json=MLP_BODY, headers=bearer(BOB_KEY))]
            return noisy, quiet

    noisy, quiet = asyncio.run(hammer())
    codes = [response.status_code for response in noisy]
    assert set(codes) == {200, 429}, codes
    assert codes.count(200) <= 5 + 2  # the burst, plus what refilled meanwhile
    refused = next(response for response in noisy if response.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert "requestsPerSecond" in refused.json()["error"] and "alice" in refused.json()["error"]
    assert [response.status_code for response in quiet] == [200]
    deadline = time.monotonic() + 10
    while not (limited := [line for line in audit_lines(keyed_server) if line["status"] == 429]):
        assert time.monotonic() < deadline, "no audit line for the refused requests"
        time.sleep(0.05)
    assert {line["key_owner"] for line in limited} == {"alice"}  # a limited request is audited under its key


@pytest.fixture(scope="module")
def keyed_text_server(text_model: tuple[Path, object], model_dir: Path, keys_dir: Path) -> Iterator[RuntimeServer]:
    """Text generation behind keys: 400 tokens a minute per key, no burst beyond them."""
    server = RuntimeServer(
        text_model[0], model_dir / "keyed-text.log",
        "--api-keys-dir", str(keys_dir), "--key-tokens-per-minute", "400", "--torch-threads", "1",
        model_name="tiny-llama",
    )  # fmt: skip
    server.wait_ready()
    yield server
    server.terminate()


def audit_line(server: RuntimeServer, request_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while not (found := [line for line in audit_lines(server) if line["request_id"] == request_id]):
        assert time.monotonic() < deadline, f"no audit line for {request_id}"
        time.sleep(0.05)
    return found[0]


def test_text_requests_are_audited_with_their_tokens(keyed_text_server: RuntimeServer) -> None:
    """Prompt plus completion tokens, whole answers and streams, both text protocols."""
    url, headers = keyed_text_server.url, bearer(BOB_KEY)
    body = {"model": "tiny-llama", "prompt": "count", "max_tokens": 6, "temperature": 0, "ignore_eos": True}
    whole = httpx.post(f"{url}/v1/completions", json=body, headers={**headers, "X-Request-Id": "t-whole"}, timeout=60)
    assert whole.status_code == 200, whole.text
    usage = whole.json()["usage"]
    streamed_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    streamed = httpx.post(
        f"{url}/v1/completions", json=streamed_body, headers={**headers, "X-Request-Id": "t-stream"}, timeout=60
    )
    assert streamed.status_code == 200
    events = [line.removeprefix("data: ") for line in streamed.text.splitlines() if line.startswith("data: {")]
    stream_usage = json.loads(events[-1])["usage"]
    generate_body = {"text_input": "count", "parameters": {"max_tokens": 6, "temperature": 0, "ignore_eos": True}}
    generated = httpx.post(
        f"{url}/v2/models/tiny-llama/generate_stream",
        json=generate_body,
        headers={**headers, "X-Request-Id": "t-generate"},
        timeout=60,
    )
    assert generated.status_code == 200

    line = audit_line(keyed_text_server, "t-whole")
    assert (line["key_owner"], line["model"], line["protocol"]) == ("bob", "tiny-llama", "openai")
    assert line["tokens"] == usage["total_tokens"] == usage["prompt_tokens"] + 6
    assert audit_line(keyed_text_server, "t-stream")["tokens"] == stream_usage["total_tokens"] == usage["total_tokens"]
    line = audit_line(keyed_text_server, "t-generate")
    assert (line["model"], line["protocol"]) == ("tiny-llama", "v2")
    assert line["tokens"] == usage["total_tokens"]  # the same prompt and completion lengths


def test_tokens_per_minute_over_the_limit_are_refused_with_retry_after(keyed_text_server: RuntimeServer) -> None:
    url, headers = keyed_text_server.url, bearer(ALICE_KEY)
    body = {"model": "tiny-llama", "prompt": "long", "max_tokens": 450, "temperature": 0, "ignore_eos": True}
    first = httpx.post(f"{url}/v1/completions", json=body, headers=headers, timeout=120)
    assert first.status_code == 200, first.text  # the bucket was full: the answer puts the key in debt
    refused = httpx.post(f"{url}/v1/chat/completions", json={"model": "tiny-llama", "messages": []}, headers=headers)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 5  # 50-odd tokens of debt at 400 a minute
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert "tokensPerMinute" in error["message"] and "alice" in error["message"]
    other_key = httpx.post(f"{url}/v1/completions", json={**body, "max_tokens": 2}, headers=bearer(BOB_KEY))
    assert other_key.status_code == 200


async def test_payload_audit_lines_carry_the_body_and_every_line_is_written(tmp_path: Path) -> None:
    """With `audit_payloads`: the body, base64, at the end of the line. Lines are written by the audit log's own
    thread, and closing the log writes the last batch before it returns."""

    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        body = b"".join([chunk async for chunk in body_chunks(Request(scope, receive))])
        await Response(body[::-1], media_type="text/plain")(scope, receive, send)

    write_key(tmp_path, "alice", ALICE_KEY)
    audit_file = (tmp_path / "audit").open("wb")
    audit = AuditLog(audit_file.fileno())
    app = AccessControl(echo, keys=ApiKeys(tmp_path), limits=None, audit=audit, payloads=True)
    bodies = [f"request {index}".encode() * (index + 1) for index in range(300)]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://runtime") as client:
        for index, body in enumerate(bodies):
            headers = {**bearer(ALICE_KEY), "X-Request-Id": f"p-{index}"}
            response = await client.post("/anything", content=body, headers=headers)
            assert response.content == body[::-1] and response.headers["x-request-id"] == f"p-{index}"
    audit.close()
    audit_file.close()
    written = [json.loads(line) for line in (tmp_path / "audit").read_bytes().splitlines()]
    assert [line["request_id"] for line in written] == [f"p-{index}" for index in range(300)]
    for line, body in zip(written, bodies, strict=True):
        assert list(line) == [*AUDIT_FIELDS, "payload_base64"]
        assert base64.b64decode(line["payload_base64"]) == body
        assert (line["request_bytes"], line["response_bytes"]) == (len(body), len(body))
        assert (line["key_owner"], line["status"], line["route"]) == ("alice", 200, "/anything")


def test_keys_rotate_without_a_restart(keyed_server: RuntimeServer, keys_dir: Path) -> None:
    rotated = "md-alice-rotated-key-0001"
    write_key(keys_dir, "alice-2", rotated)
    (keys_dir / "alice").unlink()
    deadline = time.monotonic() + 10
    while httpx.get(f"{keyed_server.url}/v2", headers=bearer(rotated), timeout=5.0).status_code == 401:
        assert time.monotonic() < deadline, "the new key was never accepted"
        time.sleep(0.1)
    assert httpx.get(f"{keyed_server.url}/v2", headers=bearer(ALICE_KEY), timeout=5.0).status_code == 401
    assert httpx.get(f"{keyed_server.url}/v2", headers=bearer(BOB_KEY), timeout=5.0).status_code == 200


def test_tokens_per_minute_are_charged_after_the_fact_and_named_when_over() -> None:
    limits = KeyLimits(requests=None, tokens=Rate("tokensPerMinute", 100 / 60, 100))
    limits.admit_request("carol")
    limits.charge_tokens("carol", 150)  # one long answer: the key is in debt
    with pytest.raises(RateLimited, match="tokensPerMinute") as refused:
        limits.admit_request("carol")
    assert refused.value.retry_after_s >= 30  # 50 tokens of debt at 100 a minute
    limits.admit_request("dave")  # other keys keep their own buckets


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def trusting(certificate: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate))


def served_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def test_https_with_a_certificate_renewed_under_the_running_server(
    mlp: tuple[Path, object], model_dir: Path, tmp_path: Path
) -> None:
    mounted = tmp_path / "tls"
    mounted.mkdir()
    first_cert, first_key = self_signed(tmp_path, "first")
    (mounted / "tls.crt").write_bytes(first_cert.read_bytes())
    (mounted / "tls.key").write_bytes(first_key.read_bytes())
    server = RuntimeServer(
        mlp[0], model_dir / "tls.log",
        "--tls-cert-file", str(mounted / "tls.crt"), "--tls-key-file", str(mounted / "tls.key"),
        "--tls-reload-s", "0.2", model_name="mlp",
    )  # fmt: skip
    server.url = server.url.replace("http://", "https://")
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if (
                    httpx.get(f"{server.url}/v2/health/ready", verify=trusting(first_cert), timeout=2).status_code
                    == 200
                ):
                    break
            except httpx.TransportError:
                assert server.process.poll() is None, server.log()
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        with httpx.Client(verify=trusting(first_cert)) as client:
            assert client.post(server.infer_url, json=MLP_BODY).status_code == 200
            second_cert, second_key = self_signed(tmp_path, "second")
            # As kubelet does: new files put in place whole.
            (mounted / "tls.key.new").write_bytes(second_key.read_bytes())
            (mounted / "tls.crt.new").write_bytes(second_cert.read_bytes())
            (mounted / "tls.key.new").replace(mounted / "tls.key")
            (mounted / "tls.crt.new").replace(mounted / "tls.crt")
            renewed = x509.load_pem_x509_certificate(second_cert.read_bytes()).public_bytes(serialization.Encoding.DER)
            deadline = time.monotonic() + 10
            while served_certificate(server.port) != renewed:
                assert time.monotonic() < deadline, "the renewed certificate was never served"
                time.sleep(0.1)
            # The connection opened before the renewal still works.
            assert client.post(server.infer_url, json=MLP_BODY).status_code == 200
        assert httpx.get(f"{server.url}/v2/health/live", verify=trusting(second_cert), timeout=5).status_code == 200
    finally:
        server.terminate()

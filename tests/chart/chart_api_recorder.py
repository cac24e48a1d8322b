"""A recording proxy in front of the apiserver: which API calls did a process make, and what was it answered?

The operator under test gets a kubeconfig whose server is this proxy (plain HTTP on 127.0.0.1) and whose token is
the chart's ServiceAccount token; the proxy forwards every request, watches included, to the real apiserver over
TLS and records the method, the path and the status. `rbac_requests` turns the records into the RBAC attributes
the apiserver authorized (verb, API group, resource), the same way the apiserver's request-info parser does, so
a test can compare what the operator did with what the chart grants.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import yaml
from aiohttp import web

# Not forwarded: they describe one hop's connection, not the request.
_HOP_HEADERS = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"})
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: str
    status: int


@dataclass(frozen=True, order=True)
class RbacRequest:
    """What the apiserver authorized a request as."""

    verb: str
    group: str
    resource: str  # with its subresource, as RBAC names it: "modeldeployments/status"
    namespace: str
    name: str


def rbac_requests(record: Recorded) -> list[RbacRequest]:
    """The RBAC checks a resource request passed; none for discovery and other non-resource paths.

    A server-side apply that creates its object (201) was also authorized as `create`.
    """
    parts = [part for part in record.path.split("/") if part]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return []
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return []
    resource = rest[0]
    name = rest[1] if len(rest) >= 2 else ""
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    query = parse_qs(record.query)
    if record.method == "GET":
        watching = query.get("watch", ["false"])[0] in ("true", "1")
        verb = "watch" if watching else ("get" if name else "list")
    elif record.method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _VERBS[record.method]
    checks = [RbacRequest(verb, group, resource, namespace, name)]
    if record.method == "PATCH" and record.status == 201:
        checks.append(RbacRequest("create", group, resource, namespace, name))
    return checks


class ApiRecorder:
    """Forwards plain HTTP on 127.0.0.1 to the apiserver; runs its own event loop in a thread."""

    def __init__(self, upstream: str, ca_pem: bytes) -> None:
        self._upstream = upstream.rstrip("/")
        self._ssl = ssl.create_default_context(cadata=ca_pem.decode())
        self._records: list[Recorded] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="api-recorder", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    @property
    def records(self) -> list[Recorded]:
        with self._lock:
            return list(self._records)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def kubeconfig(self, token_kubeconfig: Path, path: Path) -> Path:
        """A copy of a token kubeconfig that talks to this proxy instead of the apiserver."""
        config: dict[str, Any] = yaml.safe_load(token_kubeconfig.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"] = {"server": self.url}
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    async def _start(self) -> None:
        # Watches stay open for minutes: no total timeout; compressed bodies pass through as they are.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=30), auto_decompress=False
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {key: value for key, value in request.headers.items() if key.lower() not in _HOP_HEADERS}
        body = await request.read()
        async with self._session.request(
            request.method,
            f"{self._upstream}{request.rel_url}",
            headers=headers,
            data=body or None,
            ssl=self._ssl,
            allow_redirects=False,
        ) as upstream:
            with self._lock:
                self._records.append(Recorded(request.method, request.path, request.query_string, upstream.status))
            response = web.StreamResponse(
                status=upstream.status,
                headers={key: value for key, value in upstream.headers.items() if key.lower() not in _HOP_HEADERS},
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response


@contextmanager
def recording_proxy(upstream: str, ca_pem: bytes) -> Iterator[ApiRecorder]:
    recorder = ApiRecorder(upstream, ca_pem)
    recorder.start()
    try:
        yield recorder
    finally:
        recorder.stop()

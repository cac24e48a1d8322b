"""List + watch of one kind in one scope (a namespace, or the cluster), feeding a Store.

The list is chunked, the watch asks for bookmarks (so a quiet selected watch keeps a fresh resourceVersion and
a reconnect does not fall out of the apiserver's window), reconnects from its last resourceVersion after a
timeout or a broken connection, and lists again when the apiserver answers 410 Gone.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx2
import orjson
from lightkube.config.client_adapter import AsyncClient, ConnectionParams
from lightkube.config.kubeconfig import KubeConfig

from modeldeploy_operator import metrics
from modeldeploy_operator.watch.store import Change, Entry, OwnerOf, Snapshot, Store

logger = logging.getLogger(__name__)

LIST_CHUNK = 500
ERROR_BACKOFF_SECONDS = (1, 2, 5, 10, 30)


@dataclass(frozen=True)
class WatchedKind:
    kind: str
    api_path: str  # "/api/v1", "/apis/apps/v1"
    plural: str
    label_selector: str | None  # None: every object in scope (one we cannot select)
    owner_of: OwnerOf
    snapshot: Snapshot

    def url(self, namespace: str | None) -> str:
        scope = f"/namespaces/{namespace}" if namespace else ""
        return f"{self.api_path}{scope}/{self.plural}"


class Gone(Exception):
    """410 Gone: the resourceVersion left the apiserver's window; only a new list can resume."""


class Informer:
    def __init__(
        self,
        http: httpx2.AsyncClient,
        watched: WatchedKind,
        namespace: str | None,
        on_changes: Callable[[str, Iterable[Change]], None],
        server_timeout: int,
    ) -> None:
        self.watched = watched
        self.store = Store(watched.owner_of, watched.snapshot)
        self.listed = asyncio.Event()
        self._http = http
        self._namespace = namespace
        self._on_changes = on_changes
        self._server_timeout = server_timeout
        self._lock = asyncio.Lock()  # one writer of the store at a time: the watch, or a list (all of it)
        self._version = ""

    async def run(self) -> None:
        """Forever: list, then watch until the apiserver says Gone; back off on errors."""
        failures = 0
        while True:
            try:
                if not self._version:
                    await self.relist()
                await self._watch()
                failures = 0
            except Gone:
                logger.info("watch of %s ended with 410 Gone: listing again", self.watched.kind)
                self._version = ""
            except (httpx2.HTTPError, orjson.JSONDecodeError, KeyError) as error:
                delay = ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]
                failures += 1
                logger.warning("watch of %s failed (%s); again in %ss", self.watched.kind, error, delay)
                await asyncio.sleep(delay)

    async def relist(self) -> None:
        """Replaces the store with a fresh list: what the apiserver no longer has is dropped.

        The watch's events wait meanwhile (they queue in the stream): one applied while the list is in flight
        could be newer than the list, and the list would then take it back."""
        params = {"limit": str(LIST_CHUNK)}
        if self.watched.label_selector:
            params["labelSelector"] = self.watched.label_selector
        entries: list[Entry] = []
        async with self._lock:
            while True:
                response = await self._http.get(self.watched.url(self._namespace), params=params)
                response.raise_for_status()
                page = orjson.loads(response.content)
                items = page.get("items") or []
                entries += self.store.entries(items)
                metrics.WATCH_EVENTS.labels(self.watched.kind).inc(len(items))
                continue_token = (page.get("metadata") or {}).get("continue")
                if not continue_token:
                    break
                params["continue"] = continue_token
            version = str(page["metadata"]["resourceVersion"])
            changes = self._counted(lambda: self.store.replace(entries, version))
            self._version = version
        if self.listed.is_set():
            metrics.RELISTS.labels(self.watched.kind).inc()
            self._on_changes(self.watched.kind, changes)
        self.listed.set()  # the first list is the start: every ModelDeployment is reconciled once all have listed

    async def _watch(self) -> None:
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": self._version,
            "timeoutSeconds": str(self._server_timeout),
        }
        if self.watched.label_selector:
            params["labelSelector"] = self.watched.label_selector
        async with self._http.stream("GET", self.watched.url(self._namespace), params=params) as response:
            if response.status_code == 410:
                raise Gone()
            response.raise_for_status()
            async for line in event_lines(response):
                await self._handle(orjson.loads(line))

    async def _handle(self, event: dict[str, Any]) -> None:
        event_type, obj = event["type"], event["object"]
        if event_type == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise httpx2.HTTPError(f"watch error: {obj.get('message')}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if event_type == "BOOKMARK":
            self._version = version or self._version
            return
        metrics.WATCH_EVENTS.labels(self.watched.kind).inc()
        async with self._lock:
            changes = self._counted(lambda: self.store.apply(event_type, obj))
        self._version = version or self._version
        self._on_changes(self.watched.kind, changes)

    def _counted(self, update: Callable[[], list[Change]]) -> list[Change]:
        """Runs a store update, keeping the gauge of cached objects (summed over scopes) in step."""
        before = len(self.store)
        changes = update()
        metrics.WATCHED_OBJECTS.labels(self.watched.kind).inc(len(self.store) - before)
        return changes


async def event_lines(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The watch's events, one JSON document a line, as bytes: every event of every child passes here, and
    splitting bytes and parsing them with orjson costs half of decoding text lines for json.loads."""
    pending = b""
    async for chunk in response.aiter_bytes():
        *complete, pending = (pending + chunk).split(b"\n")
        for line in complete:
            if line:
                yield line


async def run_all(informers: Iterable[Informer]) -> None:
    tasks = [asyncio.create_task(informer.run()) for informer in informers]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def watch_client(read_timeout: float) -> httpx2.AsyncClient:
    """An HTTP client to the apiserver with lightkube's credentials (in-cluster, else $KUBECONFIG): the lists and
    watches here need its raw JSON and bookmarks, which lightkube's typed watch does not ask for. A watch silent
    for `read_timeout` is dropped and reconnected."""
    timeout = httpx2.Timeout(30.0, read=read_timeout)
    config = KubeConfig.from_env().get()
    if config is None:
        raise RuntimeError("no current context in the kubeconfig")
    return AsyncClient(config, ConnectionParams(timeout=timeout))

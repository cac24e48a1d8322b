"""The operator at scale: N ModelDeployments against the floor of the same objects created directly.

    python benchmarks/operator_scale.py --n 100 --n 1000

Starts its own local control plane (real apiserver, etcd, controller-manager, scheduler; KWOK GPU nodes) in a
temporary directory and always stops it. For each N, in this one run and on this one cluster:

1. Floor: one async client creates the N Deployments + N Services the operator's builders produce for N
   ModelDeployments, in a fresh namespace; time until all are created and all Deployments are Ready.
2. Operator: the operator, scoped to a fresh namespace, is given N ModelDeployments by one client (same
   concurrency); time until all Deployments + Services exist and all ModelDeployments are Ready=True; the
   operator process's peak RSS and CPU seconds; the apiserver write requests it caused, per ModelDeployment;
   then the writes during a quiet period (expected: none).

Each run also reports the CPU that each process of the control plane (and KWOK) spent until all were Ready, and
the write requests by kind: where the work the operator's requests cause goes.

With --floor-with-model-deployments, each N also gets a second floor: the same children, and besides them the
N ModelDeployments (stored and validated, reconciled by nobody) with the first status the operator would write
for each. That is what any operator of this resource must cost the control plane beyond the plain floor, with
none of the reads, applies and CPU of its own: the operator's time to Ready against it is the operator's own part.

With --operator-own-core, the control plane and KWOK run on core 0 and this client and the operator on core 1, in
every run: as in a real cluster, where the operator's pod runs on a worker node, its CPU is not taken from the
control plane's, and the ratio measures what its requests cost the control plane.

With --unrelated-pods K (the operator then runs cluster-wide, as the chart installs it), a second phase follows:
K pods that are none of the operator's business are bound to KWOK CPU nodes in their own namespace, a bounded
churn deletes and re-creates them (--churn-per-second), and the operator run is repeated for each N among them,
against the floor of the first phase. Every operator run also reports its start-up: seconds from launching the
process to the first ModelDeployment with a status.

Every Pod is Ready as soon as it is bound, so "Ready" measures the control plane and the operator, not model
loading. kube-controller-manager keeps the client rate limit real clusters run (20 QPS, burst 30) unless
--controller-manager-qps says otherwise, and kube-scheduler its own (50 QPS, burst 100); at N = 1000 the
controller-manager's limit paces both runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import ssl
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
from modeldeploy_devcluster import ClusterConfig, ClusterConnection, KubectlError, LocalCluster
from modeldeploy_devcluster.local_operator import LocalOperator, start_local_operator
from modeldeploy_devcluster.processes import ProcessRecord
from modeldeploy_devcluster.waiting import wait_until
from modeldeploy_operator.api import ModelDeployment
from modeldeploy_operator.api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, VERSION
from modeldeploy_operator.manifests import build_deployment, build_network_policy, build_service, service_url
from modeldeploy_operator.manifests.deployment import BuildOptions, template_hash
from modeldeploy_operator.manifests.labels import FIELD_MANAGER, selector_string
from modeldeploy_operator.reconcile.drift import stamp
from modeldeploy_operator.reconcile.rollback import Version
from modeldeploy_operator.reconcile.status import Observed, compute_status, rollout_complete
from modeldeploy_operator.settings import DEFAULT_RUNTIME_IMAGE, OperatorSettings
from pydantic import BaseModel, ConfigDict, Field, ValidationError

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "crds" / "modeldeployments.serving.modeldeploy.dev.yaml"
GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
# The largest GPU node the harness simulates; headroom keeps the scheduler from packing the last GPU.
GPUS_PER_NODE = 64
GPU_HEADROOM = 1.25
# The operator run waits this many times the floor's time to Ready (at least MIN_PATIENCE_SECONDS): the target
# is 1.5x, so by then the verdict is in, and a stuck run costs minutes, not the whole --phase-timeout.
OPERATOR_PATIENCE = 2.0
MIN_PATIENCE_SECONDS = 120.0
# After the last Ready: lets the operator's last status writes and their watch events land before counting.
SETTLE_SECONDS = 5.0
POLL_SECONDS = 1.0
WATCH_SERVER_TIMEOUT_SECONDS = 240
WATCH_LIST_TIMEOUT_SECONDS = 120.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# --operator-own-core: where the control plane runs, and where this client and the operator do.
CONTROL_PLANE_CORE, OPERATOR_CORE = {0}, {1}

MD_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}"
DEPLOYMENTS_PATH = "/apis/apps/v1/namespaces/{namespace}/deployments"
SERVICES_PATH = "/api/v1/namespaces/{namespace}/services"
NETWORK_POLICIES_PATH = "/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
# Where the floor POSTs each kind of child.
CHILD_PATHS = {"Deployment": DEPLOYMENTS_PATH, "Service": SERVICES_PATH, "NetworkPolicy": NETWORK_POLICIES_PATH}
PODS_PATH = "/api/v1/namespaces/{namespace}/pods"
UNRELATED_NAMESPACE = "unrelated"
# As many unrelated pods per KWOK CPU node as a node admits (devcluster's node capacity: 110 pods).
UNRELATED_PODS_PER_NODE = 110
EVENTS_PATH = "/api/v1/namespaces/{namespace}/events"

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
_REQUEST_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


# -- what one ModelDeployment asks for -------------------------------------------------------------------


def model_deployment_spec() -> dict[str, Any]:
    """One replica on one H100: what a small production model service asks for."""
    return {
        "model": {"uri": "https://models.example.com/resnet50/model.pt"},
        "replicas": 1,
        "gpu": {"count": 1, "product": GPU_PRODUCT},
    }


def model_deployment_name(index: int) -> str:
    return f"model-{index:05d}"


def model_deployment_manifest(index: int) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": model_deployment_name(index)},
        "spec": model_deployment_spec(),
    }


def _floor_model_deployment(namespace: str, index: int) -> ModelDeployment:
    body = {
        "metadata": {
            "name": model_deployment_name(index),
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "generation": 1,
        },
        "spec": model_deployment_spec(),
    }
    return ModelDeployment.from_body(body)


def floor_manifests(namespace: str, index: int) -> list[dict[str, Any]]:
    """The children the operator applies for ModelDeployment `index` at its defaults (Deployment, Service,
    NetworkPolicy), as it stamps them.

    Without their owner reference: no owner exists in the floor run, and the garbage collector deletes
    dependents whose owner is missing.
    """
    md = _floor_model_deployment(namespace, index)
    children = [
        build_deployment(md, BuildOptions(DEFAULT_RUNTIME_IMAGE)),
        build_service(md),
        build_network_policy(md, OperatorSettings.model_fields["metrics_scraper_namespace"].default),
    ]
    manifests = []
    for child in children:
        stamped = stamp(child)
        metadata = {key: value for key, value in stamped["metadata"].items() if key != "ownerReferences"}
        manifests.append({**stamped, "metadata": metadata})
    return manifests


def floor_requests(namespace: str, index: int, with_model_deployment: bool) -> list[tuple[str, dict[str, Any]]]:
    """What the floor POSTs for ModelDeployment `index`, in order: (path, body)."""
    children = [
        (CHILD_PATHS[child["kind"]].format(namespace=namespace), child) for child in floor_manifests(namespace, index)
    ]
    if not with_model_deployment:
        return children
    return [(MD_PATH.format(namespace=namespace), model_deployment_manifest(index)), *children]


def first_status(namespace: str, index: int) -> dict[str, Any]:
    """The status the operator writes first for ModelDeployment `index`: its children applied, no replica yet.
    As stored: the apiserver drops a merge patch's nulls."""
    md = _floor_model_deployment(namespace, index)
    deployment = build_deployment(md, BuildOptions(DEFAULT_RUNTIME_IMAGE))
    observed = Observed(
        generation=md.generation,
        desired_replicas=md.spec.replicas,
        url=service_url(md),
        selector=selector_string(md.name),
        model_name=md.model_name,
        children_current=True,
        deployment=None,
        pods=[],
        version=Version(md.generation, str(template_hash(deployment)), md.spec.model.uri),
        gpu_resource=md.spec.gpu.resource_name,
    )
    status = compute_status(observed, {}, datetime.now(UTC))
    return {key: value for key, value in status.items() if value is not None}


# -- readiness as the benchmark sees it -----------------------------------------------------------------


def deployment_ready(deployment: dict[str, Any]) -> bool:
    """The rollout is complete: the operator's own test for Ready, applied to a Deployment alone."""
    return rollout_complete(deployment, int((deployment.get("spec") or {}).get("replicas") or 0))


def model_deployment_ready(md: dict[str, Any]) -> bool:
    conditions = (md.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def always(_: dict[str, Any]) -> bool:
    return True


def reconciled(md: dict[str, Any]) -> bool:
    return bool(md.get("status"))


# -- pods that are none of the operator's business ------------------------------------------------------


def unrelated_pod(index: int) -> dict[str, Any]:
    """A pod of somebody else's app, already bound to a KWOK CPU node (no scheduler work)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"unrelated-{index:06d}", "labels": {"app": "unrelated"}},
        "spec": {
            "nodeName": f"cpu-node-{index // UNRELATED_PODS_PER_NODE}",
            "containers": [{"name": "app", "image": "registry.invalid/unrelated:1"}],
        },
    }


def unrelated_nodes(pods: int) -> int:
    return math.ceil(pods / UNRELATED_PODS_PER_NODE)


async def wait_all_running(api: ApiServer, namespace: str, limit_s: float) -> float:
    """Wait until KWOK has marked every pod of `namespace` Running; returns the seconds it took. The operator's
    start-up is measured among the unrelated pods, not while KWOK still works through their creation."""
    started = time.monotonic()
    path = PODS_PATH.format(namespace=namespace)
    while time.monotonic() - started < limit_s:
        pending = await api.list(f"{path}?fieldSelector=status.phase!%3DRunning&limit=1")
        if not pending["items"]:
            return time.monotonic() - started
        await asyncio.sleep(2 * POLL_SECONDS)
    raise TimeoutError(f"pods of {namespace} still not all Running after {limit_s:.0f}s")


async def churn(api: ApiServer, pods: int, per_second: float) -> None:
    """Until cancelled: every 1/per_second s, one unrelated pod deleted and created again (same name, same node)."""
    path = PODS_PATH.format(namespace=UNRELATED_NAMESPACE)
    for step in range(10**9):
        index = step % pods
        await api.http.delete(f"{path}/unrelated-{index:06d}", params={"gracePeriodSeconds": "0"})
        await asyncio.sleep(1 / per_second)
        response = await api.http.post(path, json=unrelated_pod(index))
        if response.status_code not in (201, 409):  # 409: the deleted pod's name not free yet; the next round
            raise RuntimeError(f"churn: HTTP {response.status_code} {response.text}")


# -- counting apiserver writes --------------------------------------------------------------------------

RequestKind = tuple[str, str, str, str]  # group, resource, subresource, verb


def parse_write_requests(metrics_text: str) -> Counter[RequestKind]:
    """Write requests the apiserver has served so far, by kind, from its apiserver_request_total samples."""
    writes: Counter[RequestKind] = Counter()
    for line in metrics_text.splitlines():
        match = _REQUEST_SAMPLE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("verb") not in WRITE_VERBS or labels.get("dry_run"):
            continue
        kind = (labels.get("group", ""), labels.get("resource", ""), labels.get("subresource", ""), labels["verb"])
        writes[kind] += int(float(match["value"]))
    return writes


def is_operator_kind(kind: RequestKind) -> bool:
    """Writes only the operator (or the benchmark itself) makes: its resource and its children's spec.

    Kubernetes' controllers write the children's status subresources, never their main resource. Events are
    everybody's: the operator's are counted by their reporting component instead (count_operator_events).
    """
    group, resource, subresource, _ = kind
    return (
        (group, resource) == (GROUP, PLURAL)
        or ((group, resource) == ("apps", "deployments") and subresource in ("", "scale"))
        or ((group, resource) == ("", "services") and subresource == "")
        or ((group, resource) == ("networking.k8s.io", "networkpolicies") and subresource == "")
    )


def describe_kind(kind: RequestKind) -> str:
    group, resource, subresource, verb = kind
    name = f"{resource}.{group}" if group else resource
    return f"{verb} {name}{'/' + subresource if subresource else ''}"


# -- the apiserver, spoken to directly ------------------------------------------------------------------


class ApiServer:
    """Raw JSON over one HTTP connection pool as the cluster admin: no model parsing on the measuring side."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext, concurrency: int) -> None:
        self.http = httpx.AsyncClient(
            base_url=server,
            verify=ssl_context,
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8),
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def create(self, path: str, body: dict[str, Any]) -> None:
        response = await self.http.post(path, json=body)
        if response.status_code != 201:
            raise RuntimeError(f"POST {path} {body['metadata']['name']}: HTTP {response.status_code} {response.text}")

    async def merge_patch(self, path: str, body: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/merge-patch+json"}
        response = await self.http.patch(path, content=json.dumps(body), headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"PATCH {path}: HTTP {response.status_code} {response.text}")

    async def list(self, path: str) -> dict[str, Any]:
        response = await self.http.get(path)
        response.raise_for_status()
        listing: dict[str, Any] = response.json()
        return listing

    async def write_requests(self) -> Counter[RequestKind]:
        response = await self.http.get("/metrics")
        response.raise_for_status()
        return parse_write_requests(response.text)

    async def create_namespace(self, name: str) -> None:
        await self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    async def delete_namespace(self, name: str) -> None:
        response = await self.http.delete(f"/api/v1/namespaces/{name}")
        if response.status_code not in (200, 202, 404):
            raise RuntimeError(f"deleting namespace {name}: HTTP {response.status_code} {response.text}")

    async def wait_namespace_gone(self, name: str, limit_s: float) -> float:
        """Wait until the namespace is gone (its pods freed their GPUs); returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            if (await self.http.get(f"/api/v1/namespaces/{name}")).status_code == 404:
                return time.monotonic() - started
            await asyncio.sleep(2 * POLL_SECONDS)
        raise TimeoutError(f"namespace {name} still exists after {limit_s:.0f}s")


async def create_all(
    api: ApiServer, requests: Iterable[tuple[str, dict[str, Any]]], concurrency: int
) -> tuple[float, float]:
    """POST every (path, body) with at most `concurrency` in flight; returns (started, finished) monotonic."""
    return await send_all((api.create(path, body) for path, body in requests), concurrency)


async def send_all(requests: Iterable[Awaitable[None]], concurrency: int) -> tuple[float, float]:
    """Every request, at most `concurrency` in flight; returns (started, finished) monotonic."""
    limit = asyncio.Semaphore(concurrency)

    async def send(request: Awaitable[None]) -> None:
        async with limit:
            await request

    started = time.monotonic()
    await asyncio.gather(*(send(request) for request in requests))
    return started, time.monotonic()


@dataclass
class Progress:
    """When each object of one kind in one namespace was first seen, and first seen done."""

    expected: int
    is_done: Callable[[dict[str, Any]], bool]
    seen: dict[str, float] = field(default_factory=dict)
    done: dict[str, float] = field(default_factory=dict)
    listed: asyncio.Event = field(default_factory=asyncio.Event)
    also: tuple[Progress, ...] = ()  # other progress of the same objects

    def observe(self, obj: dict[str, Any]) -> None:
        for other in self.also:
            other.observe(obj)
        now = time.monotonic()
        name = obj["metadata"]["name"]
        self.seen.setdefault(name, now)
        if name not in self.done and self.is_done(obj):
            self.done[name] = now


@dataclass(frozen=True)
class Goal:
    """Every expected object of each of `progresses` seen (or, with `done`, seen done)."""

    description: str
    progresses: tuple[Progress, ...]
    done: bool = False

    def _moments(self, progress: Progress) -> dict[str, float]:
        return progress.done if self.done else progress.seen

    def reached(self) -> int:
        return min(len(self._moments(progress)) for progress in self.progresses)

    def last_moment(self) -> float | None:
        """When the last object so far got there; None before any did."""
        moments = [moment for progress in self.progresses for moment in self._moments(progress).values()]
        return max(moments, default=None)

    def reached_at(self) -> float | None:
        if any(len(self._moments(p)) < p.expected for p in self.progresses):
            return None
        return self.last_moment()


@dataclass(frozen=True)
class Stage:
    """How long each object took from one moment of its life to the next (e.g. its Deployment seen, then seen
    available): where the time to all Ready goes, which the milestones alone do not say."""

    description: str
    seconds: list[float]

    @classmethod
    def between(cls, description: str, start: dict[str, float], end: dict[str, float]) -> Stage:
        return cls(description, sorted(end[name] - start[name] for name in end if name in start))

    def __str__(self) -> str:
        if not self.seconds:
            return f"{self.description}: none"
        last = len(self.seconds) - 1
        at = {share: self.seconds[round(share * last)] for share in (0.5, 0.9, 0.99)}
        return (
            f"{self.description}: median {at[0.5]:.2f} s, p90 {at[0.9]:.2f}, p99 {at[0.99]:.2f}, "
            f"max {self.seconds[-1]:.2f} ({len(self.seconds)} objects)"
        )


@dataclass(frozen=True)
class Milestone:
    """Seconds from the first create until a goal was reached, or how far it got when the run gave up."""

    seconds: float | None
    reached: int
    expected: int
    limit_s: float
    last_s: float | None = None  # when a run gave up: when the last of those that got there did

    def __str__(self) -> str:
        if self.seconds is not None:
            return f"{self.seconds:.1f}"
        last = f", last at {self.last_s:.1f}" if self.last_s is not None else ""
        return f">{self.limit_s:.0f} ({self.reached}/{self.expected}{last})"


async def follow(api: ApiServer, path: str, progress: Progress) -> None:
    """List, then watch from that list's resourceVersion, feeding `progress`, until cancelled."""
    resource_version = ""
    while True:
        if not resource_version:
            listing = await api.list(path)
            for item in listing["items"]:
                progress.observe(item)
            resource_version = listing["metadata"]["resourceVersion"]
            progress.listed.set()
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SERVER_TIMEOUT_SECONDS),
        }
        timeout = httpx.Timeout(30.0, read=WATCH_SERVER_TIMEOUT_SECONDS + 30.0)
        async with api.http.stream("GET", path, params=params, timeout=timeout) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    resource_version = ""  # 410 Gone: the window moved on; list again
                    break
                resource_version = event["object"]["metadata"]["resourceVersion"]
                if event["type"] in ("ADDED", "MODIFIED"):
                    progress.observe(event["object"])


class Watches:
    """Running watches: waits fail at once, with the cause, if one of them died."""

    def __init__(self, tasks: dict[str, asyncio.Task[None]]) -> None:
        self._tasks = tasks

    def check(self) -> None:
        for path, task in self._tasks.items():
            if task.done():
                task.result()  # raises what killed it
                raise RuntimeError(f"the watch of {path} ended")

    async def until(self, goal: Goal, started: float, limit_s: float) -> Milestone:
        """Wait for `goal` at most until `limit_s` after `started`."""
        expected = min(progress.expected for progress in goal.progresses)
        while time.monotonic() < started + limit_s:
            self.check()
            moment = goal.reached_at()
            if moment is not None:
                return Milestone(moment - started, expected, expected, limit_s)
            await asyncio.sleep(POLL_SECONDS / 4)
        last = goal.last_moment()
        milestone = Milestone(None, goal.reached(), expected, limit_s, None if last is None else last - started)
        log(f"gave up waiting for {goal.description}: {milestone}")
        return milestone


@asynccontextmanager
async def watching(api: ApiServer, progress_by_path: dict[str, Progress]) -> AsyncIterator[Watches]:
    """Watches running for the block, each listed before the block starts, all cancelled after it."""
    tasks = {path: asyncio.create_task(follow(api, path, progress)) for path, progress in progress_by_path.items()}
    watches = Watches(tasks)
    try:
        deadline = time.monotonic() + WATCH_LIST_TIMEOUT_SECONDS
        while not all(progress.listed.is_set() for progress in progress_by_path.values()):
            watches.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the watches did not list in {WATCH_LIST_TIMEOUT_SECONDS:.0f}s")
            await asyncio.sleep(POLL_SECONDS / 4)
        yield watches
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


# -- the operator process -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessUsage:
    peak_rss_bytes: int
    cpu_seconds: float


def parse_process_usage(status: str, stat: str, clock_ticks: int) -> ProcessUsage:
    """From /proc/<pid>/status and /proc/<pid>/stat: the kernel's own peak RSS (VmHWM) and user + system CPU."""
    peak = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
    if peak is None:
        raise ValueError("no VmHWM line in /proc/<pid>/status")
    return ProcessUsage(int(peak[1]) * 1024, cpu_seconds(stat, clock_ticks))


def cpu_seconds(stat: str, clock_ticks: int) -> float:
    """User + system CPU from /proc/<pid>/stat."""
    # The fields after the command name, which may itself hold spaces and parentheses: utime is the 12th.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / clock_ticks


def cluster_processes(local: LocalCluster) -> list[ProcessRecord]:
    """The cluster's own processes (etcd, kube-apiserver, the controllers, the scheduler, KWOK)."""
    state = local.load_state()
    if state is None:
        raise RuntimeError(f"no cluster runs in {local.paths.state_dir}")
    return state.processes


class ClusterCpu:
    """CPU used so far by the cluster's own processes (etcd, kube-apiserver, the controllers, the scheduler, KWOK):
    the work a run makes the control plane do, on the cores the operator shares with it."""

    def __init__(self, local: LocalCluster) -> None:
        self._pids = {record.name: record.pid for record in cluster_processes(local)}

    def by_process(self) -> dict[str, float]:
        return {
            name: cpu_seconds((Path("/proc") / str(pid) / "stat").read_text(), CLOCK_TICKS)
            for name, pid in self._pids.items()
        }

    def since(self, before: dict[str, float]) -> dict[str, float]:
        return {name: seconds - before[name] for name, seconds in self.by_process().items()}


def operator_usage(operator: LocalOperator) -> ProcessUsage:
    if operator.process.poll() is not None:
        raise RuntimeError(f"the operator exited ({operator.process.returncode}); log: {operator.log}")
    proc = Path("/proc") / str(operator.process.pid)
    return parse_process_usage((proc / "status").read_text(), (proc / "stat").read_text(), CLOCK_TICKS)


@contextmanager
def running_operator(
    cluster: ClusterConnection, namespace: str, log_dir: Path, env: dict[str, str], cluster_scope: bool
) -> Iterator[LocalOperator]:
    """The operator for one namespace (or, with `cluster_scope`, all of them), as the cluster admin, as a user
    runs it (INFO logs), with `env` on top of its defaults."""
    log_path = log_dir / f"operator-{namespace}.log"
    operator = start_local_operator(cluster.kubeconfig, log_path, [] if cluster_scope else [namespace], env=env)
    try:
        yield operator
    finally:
        operator.stop()


# -- the two runs ---------------------------------------------------------------------------------------


class BenchSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    sizes: list[Annotated[int, Field(ge=1, le=10000)]] = Field(min_length=1)
    concurrency: Annotated[int, Field(ge=1, le=256)] = 16
    quiet_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    phase_timeout_s: Annotated[float, Field(gt=0, le=7200)] = 900.0
    controller_manager_qps: Annotated[float | None, Field(gt=0)] = None
    controller_manager_burst: Annotated[int | None, Field(ge=1)] = None
    log_dir: Path | None = None
    cluster_scope: bool = False
    floor_with_model_deployments: bool = False
    operator_own_core: bool = False
    unrelated_pods: Annotated[int, Field(ge=0, le=100000)] = 0
    churn_per_second: Annotated[float, Field(gt=0, le=100)] = 5.0
    operator_env: dict[Annotated[str, Field(pattern=r"^MODELDEPLOY_[A-Z0-9_]+$")], str] = Field(default_factory=dict)

    @property
    def gpu_nodes(self) -> int:
        """Enough one-GPU slots for the largest N, with headroom; each run's namespace is gone before the next."""
        return math.ceil(max(self.sizes) * GPU_HEADROOM / GPUS_PER_NODE)

    @property
    def operator_cluster_wide(self) -> bool:
        return self.cluster_scope or self.unrelated_pods > 0


@dataclass(frozen=True)
class FloorResult:
    created: Milestone
    ready: Milestone
    writes: Counter[RequestKind]  # during the run, by every client
    cluster_cpu: dict[str, float]  # seconds by process: the control plane's and KWOK's, until all were Ready
    controllers: Stage  # each Deployment from seen to seen Ready

    @property
    def cluster_cpu_seconds(self) -> float:
        return sum(self.cluster_cpu.values())


@dataclass(frozen=True)
class OperatorResult:
    unrelated_pods: int
    first_reconcile_s: float | None  # from launching the operator to the first ModelDeployment with a status
    created: Milestone
    ready: Milestone
    usage: ProcessUsage  # peak RSS of the process's life; CPU of the run alone
    writes: Counter[RequestKind]  # during the run, by every client
    cluster_cpu: dict[str, float]  # as FloorResult's (the operator's not included)
    operator_events: int
    steady_state_writes: Counter[RequestKind]
    reconciles: float
    reconcile_errors: float
    stages: tuple[Stage, ...]  # each ModelDeployment from seen to Ready, step by step

    @property
    def cluster_cpu_seconds(self) -> float:
        return sum(self.cluster_cpu.values())


def since(before: Counter[RequestKind], after: Counter[RequestKind]) -> Counter[RequestKind]:
    return Counter({kind: after[kind] - before[kind] for kind in after if after[kind] != before[kind]})


def operator_patience(floor: FloorResult, settings: BenchSettings) -> float:
    """How long the operator run waits: past OPERATOR_PATIENCE x the floor the 1.5x target is missed anyway."""
    if floor.ready.seconds is None:
        return settings.phase_timeout_s
    return min(settings.phase_timeout_s, max(OPERATOR_PATIENCE * floor.ready.seconds, MIN_PATIENCE_SECONDS))


@asynccontextmanager
async def fresh_namespace(api: ApiServer, prefix: str, gone_within_s: float | None) -> AsyncIterator[str]:
    """A new namespace for one run; deleted after it, and waited for (up to `gone_within_s`; None: not waited for)
    so its pods free their GPUs. Deleting takes as long as a run: at N = 10,000 over 15 minutes on 2 cores.

    A run that fails leaves it: the whole cluster goes down right after.
    """
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await api.create_namespace(namespace)
    yield namespace
    await api.delete_namespace(namespace)
    if gone_within_s is not None:
        log(f"namespace {namespace} gone after {await api.wait_namespace_gone(namespace, gone_within_s):.0f} s")


async def floor_run(
    api: ApiServer,
    cluster_cpu: ClusterCpu,
    n: int,
    namespace: str,
    settings: BenchSettings,
    with_model_deployments: bool = False,
) -> FloorResult:
    """The children created directly; `with_model_deployments`: each after its ModelDeployment, whose first
    status is written once all are created (the operator's writes of the resource itself, without an operator),
    and all are Ready once every Deployment is and every status is written, as no operator can be sooner."""
    deployments_path, services_path = (path.format(namespace=namespace) for path in (DEPLOYMENTS_PATH, SERVICES_PATH))
    md_path = MD_PATH.format(namespace=namespace)
    deployments, services = Progress(n, deployment_ready), Progress(n, always)
    progress_by_path = {deployments_path: deployments, services_path: services}
    ready_goal = Goal("the floor's Ready Deployments", (deployments,), done=True)
    if with_model_deployments:
        progress_by_path[md_path] = statuses_written = Progress(n, reconciled)
        ready_goal = Goal("the floor's Ready Deployments and written statuses", (deployments, statuses_written), True)
    async with watching(api, progress_by_path) as watches:
        before, cpu_before = await api.write_requests(), cluster_cpu.by_process()
        requests = [
            request for index in range(n) for request in floor_requests(namespace, index, with_model_deployments)
        ]
        started, _ = await create_all(api, requests, settings.concurrency)
        if with_model_deployments:
            statuses = (
                api.merge_patch(f"{md_path}/{model_deployment_name(i)}/status", {"status": first_status(namespace, i)})
                for i in range(n)
            )
            await send_all(statuses, settings.concurrency)
        limit_s = settings.phase_timeout_s
        created = await watches.until(Goal("the floor's objects", (deployments, services)), started, limit_s)
        ready = await watches.until(ready_goal, started, limit_s)
        writes, cpu = since(before, await api.write_requests()), cluster_cpu.since(cpu_before)
    what = "floor with ModelDeployments" if with_model_deployments else "floor"
    log(f"N={n} {what}: all created at {created} s, all Ready at {ready} s")
    controllers = Stage.between("Deployment seen -> Ready", deployments.seen, deployments.done)
    return FloorResult(created, ready, writes, cpu, controllers)


async def operator_run(
    api: ApiServer,
    cluster_cpu: ClusterCpu,
    cluster: ClusterConnection,
    n: int,
    namespace: str,
    settings: BenchSettings,
    limit_s: float,
    log_dir: Path,
    unrelated_pods: int,
) -> OperatorResult:
    paths = [path.format(namespace=namespace) for path in (DEPLOYMENTS_PATH, SERVICES_PATH, MD_PATH)]
    deployments, services, model_deployments = (
        Progress(n, always),
        Progress(n, always),
        Progress(n, model_deployment_ready),
    )
    first_status = Progress(1, reconciled)
    model_deployments.also = (first_status,)
    deployments_ready = Progress(n, deployment_ready)
    deployments.also = (deployments_ready,)
    progress_by_path = dict(zip(paths, (deployments, services, model_deployments), strict=True))
    launched = time.monotonic()
    with running_operator(
        cluster, namespace, log_dir, settings.operator_env, settings.operator_cluster_wide
    ) as operator:
        async with watching(api, progress_by_path) as watches:
            before, usage_before = await api.write_requests(), operator_usage(operator)
            cpu_before = cluster_cpu.by_process()
            requests = [(paths[2], model_deployment_manifest(index)) for index in range(n)]
            started, _ = await create_all(api, requests, settings.concurrency)
            created = await watches.until(Goal("the operator's children", (deployments, services)), started, limit_s)
            ready_goal = Goal("Ready ModelDeployments", (model_deployments,), done=True)
            ready = await watches.until(ready_goal, started, limit_s)
            cpu = cluster_cpu.since(cpu_before)
            await asyncio.sleep(SETTLE_SECONDS)
            writes, usage = since(before, await api.write_requests()), operator_usage(operator)
        log(f"N={n} operator: all created at {created} s, all Ready at {ready} s")
        operator_events = await count_operator_events(api, namespace)

        log(f"N={n} operator: {settings.quiet_s:.0f} s of quiet")
        quiet_before = await api.write_requests()
        await asyncio.sleep(settings.quiet_s)
        steady = Counter(
            {kind: n for kind, n in since(quiet_before, await api.write_requests()).items() if is_operator_kind(kind)}
        )
        # The controllers' and the scheduler's own events still trail in at N = 1000: only the operator's count.
        steady[EVENT_POSTS] = await count_operator_events(api, namespace) - operator_events
        reconciles = operator.metric("modeldeploy_reconciles_total")
        reconcile_errors = operator.metric("modeldeploy_reconciles_total", result="error")
        operator_usage(operator)  # still alive at the end of the quiet period
    first = min(first_status.done.values(), default=None)
    return OperatorResult(
        unrelated_pods=unrelated_pods,
        first_reconcile_s=None if first is None else first - launched,
        created=created,
        ready=ready,
        usage=ProcessUsage(usage.peak_rss_bytes, usage.cpu_seconds - usage_before.cpu_seconds),
        writes=writes,
        cluster_cpu=cpu,
        operator_events=operator_events,
        steady_state_writes=+steady,
        reconciles=reconciles,
        reconcile_errors=reconcile_errors,
        stages=(
            Stage.between("ModelDeployment seen -> its Deployment seen", model_deployments.seen, deployments.seen),
            Stage.between("Deployment seen -> first status seen", deployments.seen, first_status.done),
            Stage.between("Deployment seen -> Ready", deployments.seen, deployments_ready.done),
            Stage.between("Deployment Ready -> ModelDeployment Ready", deployments_ready.done, model_deployments.done),
        ),
    )


async def count_operator_events(api: ApiServer, namespace: str) -> int:
    """Events the operator posted (it reports itself as its field manager); each is one write, never patched."""
    listing = await api.list(EVENTS_PATH.format(namespace=namespace))
    return sum(1 for event in listing["items"] if event.get("reportingComponent") == FIELD_MANAGER)


# -- what the runs mean ---------------------------------------------------------------------------------

BENCHMARK_CREATES: RequestKind = (GROUP, PLURAL, "", "POST")
EVENT_POSTS: RequestKind = ("", "events", "", "POST")


def operator_writes(result: OperatorResult) -> Counter[RequestKind]:
    """The run's writes the operator made, by request.

    The apiserver counts requests by kind, not by client: the operator's are the writes to kinds only it writes
    (less the benchmark's own creates of ModelDeployments) and the Events it posted; the other Events are the
    controllers' and the scheduler's, as in the floor run.
    """
    writes = Counter(
        {kind: count for kind, count in result.writes.items() if is_operator_kind(kind) and kind != BENCHMARK_CREATES}
    )
    if result.operator_events:
        writes[EVENT_POSTS] += result.operator_events
    return writes


SUMMARY_COLUMNS = (
    "N",
    "unrelated pods",
    "first reconcile s",
    "floor created s",
    "floor ready s",
    "operator created s",
    "operator ready s",
    "ready operator/floor",
    "peak RSS MB",
    "CPU s",
    "cluster CPU s floor / operator",
    "writes/MD",
    "steady-state writes",
)


def ready_ratio(floor: FloorResult, operator: OperatorResult) -> str:
    if floor.ready.seconds is None:
        return "-"
    if operator.ready.seconds is None:
        return f">{operator.ready.limit_s / floor.ready.seconds:.2f}x"
    return f"{operator.ready.seconds / floor.ready.seconds:.2f}x"


def summary_row(n: int, floor: FloorResult, operator: OperatorResult) -> list[str]:
    first = operator.first_reconcile_s
    return [
        str(n),
        str(operator.unrelated_pods),
        "-" if first is None else f"{first:.1f}",
        str(floor.created),
        str(floor.ready),
        str(operator.created),
        str(operator.ready),
        ready_ratio(floor, operator),
        f"{operator.usage.peak_rss_bytes / 1e6:.0f}",
        f"{operator.usage.cpu_seconds:.1f}",
        f"{floor.cluster_cpu_seconds:.0f} / {operator.cluster_cpu_seconds:.0f}",
        f"{sum(operator_writes(operator).values()) / n:.2f}",
        str(sum(operator.steady_state_writes.values())),
    ]


RESOURCE_FLOOR_COLUMNS = (
    "N",
    "floor ready s",
    "floor with ModelDeployments ready s",
    "operator ready s",
    "cluster CPU s floor / with ModelDeployments / operator",
    "writes/MD floor / with ModelDeployments / operator run",
    "ready operator/floor with ModelDeployments",
)


def resource_floor_row(n: int, floor: FloorResult, resource_floor: FloorResult, operator: OperatorResult) -> list[str]:
    """The operator's part of the gap: what it costs beyond the writes of the resource itself."""
    runs = (floor, resource_floor, operator)
    return [
        str(n),
        str(floor.ready),
        str(resource_floor.ready),
        str(operator.ready),
        " / ".join(f"{run.cluster_cpu_seconds:.0f}" for run in runs),
        " / ".join(f"{sum(run.writes.values()) / n:.2f}" for run in runs),
        ready_ratio(resource_floor, operator),
    ]


WRITES_COLUMNS = ("N", "request", "floor run, all clients", "operator run, all clients", "by the operator")


def writes_rows(n: int, floor: FloorResult, operator: OperatorResult) -> list[list[str]]:
    """Write requests per ModelDeployment, by kind, in both runs: where the control plane's work goes."""
    mine = operator_writes(operator)
    kinds = sorted(
        set(floor.writes) | set(operator.writes), key=lambda kind: (-operator.writes[kind], describe_kind(kind))
    )
    rows = [
        [
            str(n),
            describe_kind(kind),
            f"{floor.writes[kind] / n:.2f}",
            f"{operator.writes[kind] / n:.2f}",
            f"{mine[kind] / n:.2f}",
        ]
        for kind in kinds
        if (floor.writes[kind] + operator.writes[kind]) / n >= 0.01  # leases and other background
    ]
    total = [str(n), "all of the above", *(f"{sum(c.values()) / n:.2f}" for c in (floor.writes, operator.writes, mine))]
    return [*rows, total]


CPU_COLUMNS = ("N", "unrelated pods", "process", "floor s", "floor with ModelDeployments s", "operator run s")


def cpu_rows(
    n: int, floor: FloorResult, resource_floor: FloorResult | None, operator: OperatorResult
) -> list[list[str]]:
    """The control plane's CPU by process in each run: which of its parts the operator's requests cost."""

    def cell(run: FloorResult | OperatorResult | None, process: str | None) -> str:
        if run is None:
            return "-"
        return f"{run.cluster_cpu[process] if process else run.cluster_cpu_seconds:.1f}"

    runs = (floor, resource_floor, operator)
    return [
        [str(n), str(operator.unrelated_pods), process or "all", *(cell(run, process) for run in runs)]
        for process in [*sorted(operator.cluster_cpu), None]
    ]


def operator_details(n: int, floor: FloorResult, operator: OperatorResult) -> str:
    """What the table's cells cannot hold: the operator's own counters, any steady-state write, and where each
    object's time went."""
    steady = ", ".join(f"{count} x {describe_kind(kind)}" for kind, count in operator.steady_state_writes.items())
    stages = "\n".join([f"  floor: {floor.controllers}", *(f"  operator run: {stage}" for stage in operator.stages)])
    return (
        f"N={n}, {operator.unrelated_pods} unrelated pods: the operator reconciled "
        f"{operator.reconciles / n:.1f} times per ModelDeployment, "
        f"{operator.reconcile_errors / n:.1f} of them failed (its modeldeploy_reconciles_total); "
        f"steady-state writes: {steady or 'none'}. Each object's time, step by step:\n{stages}"
    )


def render_text(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
    lines = [columns, *rows]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in lines)


def render_markdown(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = [f"| {' | '.join(columns)} |", f"|{'---|' * len(columns)}"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


# -- the whole run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    conditions: str
    results: list[tuple[int, FloorResult, OperatorResult]]
    resource_floors: dict[int, FloorResult] = field(default_factory=dict)  # --floor-with-model-deployments

    @property
    def complete(self) -> bool:
        return all(
            milestone.seconds is not None
            for _, floor, operator in self.results
            for milestone in (floor.created, floor.ready, operator.created, operator.ready)
        )

    def render(self) -> str:
        summary = [summary_row(n, floor, operator) for n, floor, operator in self.results]
        resource_floor = [
            resource_floor_row(n, floor, self.resource_floors[n], operator)
            for n, floor, operator in self.results
            if n in self.resource_floors and not operator.unrelated_pods
        ]
        resource_floor_text = [render_text(RESOURCE_FLOOR_COLUMNS, resource_floor)] if resource_floor else []
        resource_floor_markdown = [
            "The floor with the ModelDeployments and their first status, no operator:",
            render_markdown(RESOURCE_FLOOR_COLUMNS, resource_floor),
        ]
        writes = [row for n, floor, operator in self.results for row in writes_rows(n, floor, operator)]
        cpu = [
            row
            for n, floor, operator in self.results
            for row in cpu_rows(n, floor, self.resource_floors.get(n), operator)
        ]
        notes = "\n".join(
            [
                "Seconds from the first create; >T (k/N, last at L): gave up after T s with k of N there, the last",
                "of them at L s. writes/MD: apiserver write requests the operator made per ModelDeployment during the",
                "run; steady-state writes: writes to ModelDeployments, Deployments and Services (by anyone) and the",
                "Events the operator posted, in the quiet period after the run. CPU s: the operator's user + system",
                "CPU during the run; peak RSS: its VmHWM.",
                *(operator_details(n, floor, operator) for n, floor, operator in self.results),
            ]
        )
        return "\n\n".join(
            [
                self.conditions,
                render_text(SUMMARY_COLUMNS, summary),
                *resource_floor_text,
                render_text(WRITES_COLUMNS, writes),
                render_text(CPU_COLUMNS, cpu),
                notes,
                "Markdown:",
                self.conditions,
                render_markdown(SUMMARY_COLUMNS, summary),
                *(resource_floor_markdown if resource_floor else []),
                "Write requests per ModelDeployment, by request:",
                render_markdown(WRITES_COLUMNS, writes),
                "The control plane's CPU by process, until all were Ready:",
                render_markdown(CPU_COLUMNS, cpu),
                notes,
            ]
        )


async def run_all(cluster: ClusterConnection, local: LocalCluster, settings: BenchSettings, log_dir: Path) -> Report:
    tls = ssl.create_default_context(cafile=str(local.paths.pem("ca", "crt")))
    tls.load_cert_chain(local.paths.pem("admin", "crt"), local.paths.pem("admin", "key"))
    api = ApiServer(cluster.server, tls, settings.concurrency)
    cluster_cpu = ClusterCpu(local)
    try:
        version = (await api.list("/version"))["gitVersion"]
        results = []
        floors: dict[int, FloorResult] = {}
        resource_floors: dict[int, FloorResult] = {}
        for position, n in enumerate(settings.sizes):
            async with fresh_namespace(api, f"floor-{n}", settings.phase_timeout_s) as namespace:
                floors[n] = floor = await floor_run(api, cluster_cpu, n, namespace, settings)
            if settings.floor_with_model_deployments:
                async with fresh_namespace(api, f"floor-md-{n}", settings.phase_timeout_s) as namespace:
                    resource_floors[n] = await floor_run(api, cluster_cpu, n, namespace, settings, True)
            # After the last run the cluster goes down: no need to wait for its garbage.
            last = position == len(settings.sizes) - 1 and not settings.unrelated_pods
            async with fresh_namespace(api, f"operator-{n}", None if last else settings.phase_timeout_s) as namespace:
                limit_s = operator_patience(floor, settings)
                operator = await operator_run(api, cluster_cpu, cluster, n, namespace, settings, limit_s, log_dir, 0)
            results.append((n, floor, operator))
        if settings.unrelated_pods:
            results += await among_unrelated_pods(api, cluster_cpu, cluster, settings, floors, log_dir)
    finally:
        await api.close()
    qps, burst = settings.controller_manager_qps, settings.controller_manager_burst
    rate_limit = (
        "Kubernetes' defaults (20 QPS, burst 30)"
        if qps is None and burst is None
        else f"raised to {qps or 20:g} QPS, burst {burst or 30}"
    )
    conditions = (
        f"Operator at scale: kube-apiserver {version} on 127.0.0.1, {os.cpu_count()} CPU cores; "
        f"{settings.gpu_nodes} KWOK GPU nodes x {GPUS_PER_NODE} GPUs; one-replica, one-GPU ModelDeployments; "
        f"kube-controller-manager client rate limit: {rate_limit}; kube-scheduler: Kubernetes' defaults; "
        f"one client, {settings.concurrency} creates in flight; "
        + (
            "the control plane and KWOK pinned to core 0, this client and the operator to core 1; "
            if settings.operator_own_core
            else ""
        )
        + f"the operator as cluster admin, {'cluster-wide' if settings.operator_cluster_wide else 'for one namespace'}"
        + (
            f"; {settings.unrelated_pods} unrelated pods on {unrelated_nodes(settings.unrelated_pods)} KWOK CPU nodes"
            f" in the second phase, churning {settings.churn_per_second:g} deletes + creates a second"
            if settings.unrelated_pods
            else ""
        )
        + ", at its defaults"
        + "".join(f", {key}={value}" for key, value in settings.operator_env.items())
        + "."
    )
    return Report(conditions, results, resource_floors)


async def among_unrelated_pods(
    api: ApiServer,
    cluster_cpu: ClusterCpu,
    cluster: ClusterConnection,
    settings: BenchSettings,
    floors: dict[int, FloorResult],
    log_dir: Path,
) -> list[tuple[int, FloorResult, OperatorResult]]:
    """The operator runs again, cluster-wide, with the unrelated pods bound and churning the whole time."""
    await api.create_namespace(UNRELATED_NAMESPACE)
    pods_path = PODS_PATH.format(namespace=UNRELATED_NAMESPACE)
    started, finished = await create_all(
        api, ((pods_path, unrelated_pod(i)) for i in range(settings.unrelated_pods)), settings.concurrency
    )
    log(f"{settings.unrelated_pods} unrelated pods created in {finished - started:.0f} s")
    running_s = await wait_all_running(api, UNRELATED_NAMESPACE, settings.phase_timeout_s)
    log(f"... and all Running {running_s:.0f} s later")
    churning = asyncio.create_task(churn(api, settings.unrelated_pods, settings.churn_per_second))
    results = []
    try:
        for position, n in enumerate(settings.sizes):
            last = position == len(settings.sizes) - 1
            gone_within_s = None if last else settings.phase_timeout_s
            async with fresh_namespace(api, f"operator-{n}-unrelated", gone_within_s) as namespace:
                limit_s = operator_patience(floors[n], settings)
                operator = await operator_run(
                    api, cluster_cpu, cluster, n, namespace, settings, limit_s, log_dir, settings.unrelated_pods
                )
            results.append((n, floors[n], operator))
            if churning.done():
                churning.result()  # raises what stopped it
    finally:
        churning.cancel()
        await asyncio.gather(churning, return_exceptions=True)
    return results


def pin_apart(local: LocalCluster) -> None:
    """Every thread of the cluster's processes on core 0; this process on core 1, and so the operator it starts
    (a child inherits its parent's affinity). In a real cluster the operator runs on a worker node: its CPU is
    then not taken from the control plane's. The floor gets the same one core for the control plane."""
    for record in cluster_processes(local):
        # New threads inherit the affinity of the thread that makes them: pinning those there now is enough.
        for thread in (Path("/proc") / str(record.pid) / "task").iterdir():
            os.sched_setaffinity(int(thread.name), CONTROL_PLANE_CORE)
    os.sched_setaffinity(0, OPERATOR_CORE)


def install_crd(cluster: ClusterConnection) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(CRD))
    # kubectl wait fails at once on a CRD that has no conditions yet: ask again until it has them.
    wait_until(
        lambda: cluster.kubectl("wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s"),
        "the CRD Established",
        timeout=60,
        ignore=(KubectlError,),
    )


def log(message: str) -> None:
    print(f"operator_scale: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> BenchSettings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--n", type=int, action="append", dest="sizes", help="ModelDeployments (repeatable; 100 and 1000)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="creates in flight, in both runs (16)")
    parser.add_argument("--quiet-seconds", type=float, default=60.0, dest="quiet_s", help="steady-state window (60)")
    parser.add_argument(
        "--phase-timeout",
        type=float,
        default=900.0,
        dest="phase_timeout_s",
        help="per run, and per namespace deletion after one (900 s)",
    )
    parser.add_argument("--controller-manager-qps", type=float, help="raise kube-controller-manager's 20 QPS")
    parser.add_argument("--controller-manager-burst", type=int, help="and its burst of 30")
    parser.add_argument(
        "--cluster-scope", action="store_true", default=None, help="run the operator cluster-wide (the chart's default)"
    )
    parser.add_argument(
        "--floor-with-model-deployments",
        action="store_true",
        default=None,
        help="a second floor per N: the children, the ModelDeployments and their first status, with no operator",
    )
    parser.add_argument(
        "--operator-own-core",
        action="store_true",
        default=None,
        help="the control plane and KWOK on core 0, this client and the operator on core 1 (as on a worker node)",
    )
    parser.add_argument(
        "--unrelated-pods", type=int, help="a second phase among this many unrelated pods, cluster-wide (0)"
    )
    parser.add_argument("--churn-per-second", type=float, help="unrelated pods deleted + created a second (5)")
    parser.add_argument("--log-dir", type=Path, help="keep the operator's logs here (default: thrown away)")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="MODELDEPLOY_X=VALUE",
        help="an operator setting for the operator run (repeatable), e.g. MODELDEPLOY_MAX_OBJECTS_IN_FLIGHT=4096",
    )
    args = vars(parser.parse_args(argv))
    args["operator_env"] = dict(item.partition("=")[::2] for item in args["operator_env"])
    args["sizes"] = args["sizes"] or [100, 1000]
    try:
        return BenchSettings(**{key: value for key, value in args.items() if value is not None})
    except ValidationError as error:
        flag_of = {action.dest: action.option_strings[0] for action in parser._actions if action.option_strings}
        parser.error("; ".join(f"{flag_of.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in error.errors()))


def _stop_on_sigterm(signum: int, _: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops the cluster


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="operator-scale-") as scratch:
        log_dir = settings.log_dir or Path(scratch)
        log_dir.mkdir(parents=True, exist_ok=True)
        config = ClusterConfig(
            gpu_nodes=settings.gpu_nodes,
            gpus_per_node=GPUS_PER_NODE,
            cpu_nodes=unrelated_nodes(settings.unrelated_pods),
            # The benchmark measures scheduling onto simulated GPU nodes: no pod needs a real container.
            real_node=False,
            controller_manager_qps=settings.controller_manager_qps,
            controller_manager_burst=settings.controller_manager_burst,
        )
        local = LocalCluster(Path(scratch) / "cluster", config)
        try:
            cluster = local.start()
            if settings.operator_own_core:
                pin_apart(local)
            install_crd(cluster)
            report = asyncio.run(run_all(cluster, local, settings, log_dir))
        finally:
            local.down()
    print(report.render())
    return 0 if report.complete else 1


if __name__ == "__main__":
    sys.exit(main())

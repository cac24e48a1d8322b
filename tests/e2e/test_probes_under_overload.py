"""A replica flooded past its queue keeps passing the kubelet's probes: overload is answered with 429, never with
a restart or with the pod leaving its Service (which would turn a busy model into an unreachable one)."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from modeldeploy_devcluster.connection import ClusterConnection
from modeldeploy_devcluster.playground import service_url
from real_pods import INFER_BODY, is_ready, status_of, wait_for_answer, wait_for_status

CLIENTS = 32
# Long enough for several readiness (every 5 s) and liveness (every 10 s) probes; bounded in time and count.
FLOOD_SECONDS = 35
MAX_REQUESTS_PER_CLIENT = 20_000  # kept-alive 429s are cheap: about 5,000 a client in 30 s here


def _flood(url: str, model: str, outcomes: Counter[str], lock: threading.Lock) -> None:
    """One client on one kept-alive connection, as load generators and SDK clients send. A new connection per
    request (about 1500 a second through kube-proxy's NAT) once lost a SYN (1 of 50,753 connects timed out, the
    request never reached the server), which says nothing about the replica under test."""
    body = json.dumps(INFER_BODY).encode()
    headers = {"Content-Type": "application/json"}
    address = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    deadline = time.monotonic() + FLOOD_SECONDS
    try:
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() > deadline:
                return
            try:
                connection.request("POST", f"/v2/models/{model}/infer", body, headers)
                response = connection.getresponse()
                response.read()
                outcome = str(response.status)
            except (http.client.HTTPException, OSError) as error:
                outcome = f"no answer: {error!r}"
                connection.close()  # the next request connects again
            with lock:
                outcomes[outcome] += 1
    finally:
        connection.close()


@pytest.mark.timeout(600)
def test_a_flooded_replica_answers_429_and_keeps_passing_its_probes(
    cluster: ClusterConnection, in_cluster_operator: str, deploy: Callable[..., str], example_model: Path
) -> None:
    namespace, name = in_cluster_operator, "flooded"
    resources = {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
    deploy(name, runtime={"resources": resources, "maxQueueSize": 2, "maxBatchSize": 2})
    wait_for_status(cluster, namespace, name, is_ready, "Ready")
    wait_for_answer(cluster, namespace, name)

    url, outcomes, lock = service_url(cluster, namespace, name), Counter[str](), threading.Lock()
    clients = [threading.Thread(target=_flood, args=(url, name, outcomes, lock)) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=FLOOD_SECONDS + 30)
    print(f"flood of {CLIENTS} clients for {FLOOD_SECONDS} s: {dict(outcomes)}")

    assert outcomes["429"] > 0, f"the flood never filled the queue: {dict(outcomes)}"
    assert outcomes["200"] > 0, f"nothing was served during the flood: {dict(outcomes)}"
    assert set(outcomes) <= {"200", "429"}, f"every request is served or refused, none lost: {dict(outcomes)}"

    pods = json.loads(
        cluster.kubectl("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}", "-o", "json").stdout
    )["items"]
    assert pods, "the replica is still there"
    for pod in pods:
        restarts = {c["name"]: c["restartCount"] for c in pod["status"].get("containerStatuses", [])}
        assert set(restarts.values()) == {0}, f"{pod['metadata']['name']} restarted under load: {restarts}"
        events = cluster.kubectl(
            "get", "events", "-n", namespace, "-o", "json",
            "--field-selector", f"involvedObject.name={pod['metadata']['name']},reason=Unhealthy",
        )  # fmt: skip
        # The startup probe fails until the server listens, which is what it is for, and stops once it passes,
        # before the flood: only the readiness and liveness probes say how the replica bore the load.
        failed_probes = [
            event["message"]
            for event in json.loads(events.stdout)["items"]
            if not event["message"].startswith("Startup probe failed")
        ]
        assert failed_probes == [], f"probes failed under load: {failed_probes}"
    assert is_ready(status_of(cluster, namespace, name))

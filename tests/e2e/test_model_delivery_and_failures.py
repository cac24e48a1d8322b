"""Model delivery and failure reasons, from real containers on the real node: an https:// model fetched by the init
container from an HTTPS server on the machine (checksum verified, a private CA trusted), and the reasons a user
reads in the status when the model does not load, the checksum is wrong, memory is short or the image is missing."""

from __future__ import annotations

import hashlib
import http.server
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from modeldeploy_devcluster.connection import ClusterConnection
from modeldeploy_devcluster.pki import CertificateAuthority
from modeldeploy_devcluster.real_node import NODE_IP
from real_pods import (
    MODEL_CLAIM,
    degraded_because,
    expected_logits,
    is_ready,
    wait_for_answer,
    wait_for_status,
)

CA_CONFIG_MAP = "model-store-ca"


@pytest.fixture(scope="module")
def https_model_store(
    cluster: ClusterConnection,
    in_cluster_operator: str,
    example_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """An HTTPS server on the real node's bridge address (pods reach it there), serving the example model with a
    certificate from a CA of its own; the CA is in a ConfigMap of the test namespace. Yields the base URL."""
    directory = tmp_path_factory.mktemp("https-store")
    ca = CertificateAuthority("e2e-model-store-ca")
    (directory / "ca.crt").write_bytes(ca.key_pair.cert_pem)
    ca.issue_serving("model-store", (NODE_IP,)).write(directory, "server")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.crt", directory / "server.key")
    (directory / "iris.pt").write_bytes(example_model.read_bytes())

    class Store(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((NODE_IP, 0), Store)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cluster.kubectl(
        "create", "configmap", CA_CONFIG_MAP, "-n", in_cluster_operator, f"--from-file=ca.crt={directory / 'ca.crt'}"
    )
    try:
        yield f"https://{NODE_IP}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _https_model(store: str, sha256: str) -> dict[str, object]:
    return {"uri": f"{store}/iris.pt", "sha256": sha256, "caBundle": {"configMapName": CA_CONFIG_MAP}}


@pytest.mark.timeout(600)
def test_an_https_model_is_fetched_verified_and_served(
    cluster: ClusterConnection,
    in_cluster_operator: str,
    deploy: Callable[..., str],
    https_model_store: str,
    example_model: Path,
) -> None:
    namespace = in_cluster_operator
    digest = hashlib.sha256(example_model.read_bytes()).hexdigest()
    deploy("fetched", model=_https_model(https_model_store, digest))
    wait_for_status(cluster, namespace, "fetched", is_ready, "Ready")
    _, answer = wait_for_answer(cluster, namespace, "fetched")
    assert answer["outputs"][0]["data"] == pytest.approx(expected_logits(example_model), rel=1e-5)
    pod = json.loads(
        cluster.kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=fetched", "-o", "json").stdout
    )["items"][0]
    (fetch,) = pod["status"]["initContainerStatuses"]
    assert fetch["state"]["terminated"]["exitCode"] == 0


@pytest.mark.timeout(600)
def test_a_wrong_checksum_is_reported_as_checksum_mismatch(
    cluster: ClusterConnection,
    in_cluster_operator: str,
    deploy: Callable[..., str],
    https_model_store: str,
    example_model: Path,
) -> None:
    namespace = in_cluster_operator
    wrong = "0" * 64
    deploy("wrong-sum", model=_https_model(https_model_store, wrong))
    status = wait_for_status(
        cluster, namespace, "wrong-sum", degraded_because("ChecksumMismatch"), "Degraded: ChecksumMismatch"
    )
    digest = hashlib.sha256(example_model.read_bytes()).hexdigest()
    assert status["lastFailure"]["message"] == f"ChecksumMismatch: expected {wrong}, got {digest}"
    # A model on a volume is verified by the runtime itself before it loads it.
    deploy("wrong-sum-pvc", model={"uri": f"pvc://{MODEL_CLAIM}/iris.pt", "sha256": wrong})
    status = wait_for_status(
        cluster, namespace, "wrong-sum-pvc", degraded_because("ChecksumMismatch"), "Degraded: ChecksumMismatch"
    )
    assert f"expected sha256 {wrong}" in status["lastFailure"]["message"]


@pytest.mark.timeout(600)
def test_a_model_that_does_not_load_is_reported_with_the_runtimes_message(
    cluster: ClusterConnection, in_cluster_operator: str, deploy: Callable[..., str], example_model: Path
) -> None:
    namespace = in_cluster_operator
    broken = example_model.parent / "broken.pt"
    broken.write_bytes(b"this is not a TorchScript archive\n" * 100)
    broken.chmod(0o644)
    deploy("broken", model={"uri": f"pvc://{MODEL_CLAIM}/broken.pt"})
    status = wait_for_status(
        cluster, namespace, "broken", degraded_because("ModelLoadFailed"), "Degraded: ModelLoadFailed"
    )
    message = status["lastFailure"]["message"]
    assert message.startswith("ModelLoadFailed: "), message
    assert "Traceback" not in message


@pytest.mark.timeout(600)
def test_a_memory_limit_below_what_the_model_needs_is_an_oom_kill(
    cluster: ClusterConnection, in_cluster_operator: str, deploy: Callable[..., str], example_model: Path
) -> None:
    namespace = in_cluster_operator
    # Importing torch alone takes more than this: the cgroup's memory limit kills the container.
    resources = {"requests": {"cpu": "100m", "memory": "48Mi"}, "limits": {"memory": "48Mi"}}
    deploy("starved", runtime={"resources": resources})
    status = wait_for_status(
        cluster, namespace, "starved", degraded_because("CrashLoopBackOff"), "Degraded: CrashLoopBackOff"
    )
    assert "exit code 137" in status["lastFailure"]["message"], status["lastFailure"]


@pytest.mark.timeout(300)
def test_a_missing_image_is_image_pull_back_off_and_nothing_is_pulled_from_outside(
    cluster: ClusterConnection, in_cluster_operator: str, deploy: Callable[..., str], example_model: Path
) -> None:
    namespace = in_cluster_operator
    image = "ghcr.io/modeldeploy/runtime:does-not-exist"
    deploy("no-image", runtime={"image": image})
    status = wait_for_status(
        cluster, namespace, "no-image", degraded_because("ImagePullBackOff"), "Degraded: ImagePullBackOff"
    )
    assert image in status["lastFailure"]["message"]
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=Failed", "-o", "jsonpath={.items[*].message}"
    ).stdout
    # containerd's registry configuration sends every pull to a closed loopback port, never to ghcr.io.
    assert "127.0.0.1:9" in events, events

"""A mutating admission webhook on 127.0.0.1, as clusters run them (image policy, sidecar and env injectors):
it rewrites a pod template container's image tag to a digest, forces its pull policy and injects an env var, so
tests can see how a controller lives with objects the apiserver changes at admission.

The apiserver runs on this machine, so it reaches the webhook at https://127.0.0.1:<port> and trusts it through
the MutatingWebhookConfiguration's caBundle (a CA of the webhook's own). The mutation and the configuration are
pure functions of their inputs; `serving` runs the HTTPS server in a thread for the span of a `with` block.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .pki import CertificateAuthority

INJECTED_ENV = {"name": "INJECTED_BY_WEBHOOK", "value": "true"}
FORCED_PULL_POLICY = "Always"
PATH = "/mutate"


def pinned(image: str) -> str:
    """The image by digest, as an image policy webhook pins it: the same tag always gives the same digest."""
    if "@" in image:
        return image
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repository}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def mutation_patch(deployment: dict[str, Any], container_name: str) -> list[dict[str, Any]]:
    """The JSON patch that pins the image of the pod template's container `container_name`, forces its pull policy
    and injects the env var; empty when the Deployment has all of that already (the webhook is idempotent, as the
    apiserver may call it again)."""
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    patch: list[dict[str, Any]] = []
    for index, container in enumerate(containers):
        if container.get("name") != container_name:
            continue
        path = f"/spec/template/spec/containers/{index}"
        if container.get("image") and pinned(container["image"]) != container["image"]:
            patch.append({"op": "replace", "path": f"{path}/image", "value": pinned(container["image"])})
        if container.get("imagePullPolicy") != FORCED_PULL_POLICY:
            patch.append({"op": "add", "path": f"{path}/imagePullPolicy", "value": FORCED_PULL_POLICY})
        env = container.get("env")
        if env is None:
            patch.append({"op": "add", "path": f"{path}/env", "value": [INJECTED_ENV]})
        elif all(var.get("name") != INJECTED_ENV["name"] for var in env):
            patch.append({"op": "add", "path": f"{path}/env/-", "value": INJECTED_ENV})
    return patch


def review_response(review: dict[str, Any], container_name: str) -> dict[str, Any]:
    """The AdmissionReview (admission.k8s.io/v1) answering `review`: allowed, with the patch if there is one."""
    request = review["request"]
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    patch = mutation_patch(request.get("object") or {}, container_name)
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def webhook_configuration(
    name: str, port: int, ca_pem: bytes, namespace: str, object_labels: dict[str, str]
) -> dict[str, Any]:
    """A MutatingWebhookConfiguration sending creates and updates of the labelled Deployments of `namespace` to
    https://127.0.0.1:<port>/mutate. It fails closed: an apply it cannot mutate is refused, never let through."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"{name}.devcluster.modeldeploy.dev",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}{PATH}",
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["deployments"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "objectSelector": {"matchLabels": object_labels},
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "reinvocationPolicy": "IfNeeded",
                "timeoutSeconds": 5,
            }
        ],
    }


@dataclass
class RunningWebhook:
    port: int
    ca_pem: bytes
    reviews: list[dict[str, Any]]  # every AdmissionReview request received, in order


@contextmanager
def serving(container_name: str) -> Iterator[RunningWebhook]:
    """Runs the webhook, mutating the container `container_name`, on a free loopback port with a certificate from
    a CA of its own, until the block ends."""
    ca = CertificateAuthority("modeldeploy-test-webhook-ca")
    serving_pair = ca.issue_serving("modeldeploy-test-webhook")
    reviews: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reviews.append(review)
            body = json.dumps(review_response(review, container_name)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # the test's output, not the server's access log
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as directory:
        serving_pair.write(Path(directory), "webhook")
        context.load_cert_chain(Path(directory) / "webhook.crt", Path(directory) / "webhook.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RunningWebhook(port=server.server_address[1], ca_pem=ca.key_pair.cert_pem, reviews=reviews)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

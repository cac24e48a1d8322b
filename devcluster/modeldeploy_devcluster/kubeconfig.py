"""Self-contained kubeconfig files (credentials embedded, so a file can be handed around alone)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from .pki import write_private

CLUSTER_NAME = "modeldeploy-devcluster"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _kubeconfig(server: str, ca_pem: bytes, user_name: str, user: dict[str, str]) -> dict[str, Any]:
    context = f"{user_name}@{CLUSTER_NAME}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": context, "context": {"cluster": CLUSTER_NAME, "user": user_name}}],
        "current-context": context,
    }


def client_cert_kubeconfig(
    server: str, ca_pem: bytes, user_name: str, cert_pem: bytes, key_pem: bytes
) -> dict[str, Any]:
    """A kubeconfig that authenticates with an X.509 client certificate."""
    user = {"client-certificate-data": _b64(cert_pem), "client-key-data": _b64(key_pem)}
    return _kubeconfig(server, ca_pem, user_name, user)


def token_kubeconfig(server: str, ca_pem: bytes, user_name: str, token: str) -> dict[str, Any]:
    """A kubeconfig that authenticates with a bearer token (a service account's, say)."""
    return _kubeconfig(server, ca_pem, user_name, {"token": token})


def write_kubeconfig(path: Path, kubeconfig: dict[str, Any]) -> Path:
    """Write a kubeconfig readable by its owner only: it holds credentials."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, yaml.safe_dump(kubeconfig, sort_keys=False).encode())
    return path

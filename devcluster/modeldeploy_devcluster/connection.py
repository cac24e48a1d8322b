"""How tests and tools talk to a running cluster: kubectl, lightkube clients, service-account identities."""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightkube import AsyncClient, Client, KubeConfig
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ServiceAccount

from .kubeconfig import token_kubeconfig, write_kubeconfig

FIELD_MANAGER = "modeldeploy-devcluster"
KUBECTL_TIMEOUT_SECONDS = 120.0


class KubectlError(subprocess.CalledProcessError):
    """A kubectl call that failed; its message carries kubectl's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


@dataclass(frozen=True)
class ClusterConnection:
    """A running cluster as its users see it: an admin kubeconfig plus the matching client binaries."""

    kubeconfig: Path
    bin_dir: Path
    # Where service-account kubeconfigs are written.
    work_dir: Path

    @property
    def _kubeconfig_data(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.kubeconfig.read_text())
        return data

    def _current_cluster(self) -> dict[str, Any]:
        data = self._kubeconfig_data
        context_name = data["current-context"]
        context = next(c["context"] for c in data["contexts"] if c["name"] == context_name)
        cluster: dict[str, Any] = next(c["cluster"] for c in data["clusters"] if c["name"] == context["cluster"])
        return cluster

    @property
    def server(self) -> str:
        """The apiserver's URL, https://127.0.0.1:<port>."""
        server: str = self._current_cluster()["server"]
        return server

    @property
    def ca_pem(self) -> bytes:
        """The cluster CA that signed the apiserver's serving certificate."""
        return base64.b64decode(self._current_cluster()["certificate-authority-data"])

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        """This process's environment aimed at the cluster: KUBECONFIG set, our binaries first on PATH."""
        return {
            **os.environ,
            "KUBECONFIG": str(kubeconfig or self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def export_lines(self) -> str:
        """What `up` prints: shell lines a user can `eval`."""
        return (
            f"export KUBECONFIG={shlex.quote(str(self.kubeconfig))}\n"
            f'export PATH={shlex.quote(str(self.bin_dir))}:"$PATH"\n'
        )

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        kubeconfig: Path | None = None,
        timeout: float = KUBECTL_TIMEOUT_SECONDS,
    ) -> subprocess.CompletedProcess[str]:
        """Run our kubectl (admin identity unless `kubeconfig` says otherwise); output is captured as text."""
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def client(self, kubeconfig: Path | None = None, field_manager: str = FIELD_MANAGER) -> Client:
        """A sync lightkube client (admin unless `kubeconfig` says otherwise)."""
        config = KubeConfig.from_file(kubeconfig or self.kubeconfig)
        return Client(config=config, field_manager=field_manager)

    def async_client(self, kubeconfig: Path | None = None, field_manager: str = FIELD_MANAGER) -> AsyncClient:
        """An async lightkube client (admin unless `kubeconfig` says otherwise)."""
        config = KubeConfig.from_file(kubeconfig or self.kubeconfig)
        return AsyncClient(config=config, field_manager=field_manager)

    def service_account_kubeconfig(self, namespace: str, name: str, *, expiration_seconds: int = 3600) -> Path:
        """A kubeconfig holding a fresh TokenRequest token of the service account `namespace/name`.

        The token is bound to the account: whatever runs with it has exactly the RBAC of that account.
        """
        request = ServiceAccount.Token(
            metadata=ObjectMeta(name=name, namespace=namespace),
            spec=TokenRequestSpec(audiences=[], expirationSeconds=expiration_seconds),
        )
        response = self.client().create(request, name=name, namespace=namespace)
        if response.status is None or not response.status.token:
            raise RuntimeError(f"TokenRequest for {namespace}/{name} returned no token")
        user = f"system:serviceaccount:{namespace}:{name}"
        kubeconfig = token_kubeconfig(self.server, self.ca_pem, user, response.status.token)
        path = self.work_dir / f"{namespace}.{name}.{uuid.uuid4().hex[:8]}.kubeconfig"
        return write_kubeconfig(path, kubeconfig)

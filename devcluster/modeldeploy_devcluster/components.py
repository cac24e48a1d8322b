"""Where one cluster keeps its files, which loopback ports it uses, and the command line of each process.

The command lines are pure functions of those, so they can be read (and unit-tested) in one place.
Every listener binds 127.0.0.1; flags not set here keep the defaults a real cluster runs.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict

from .config import ClusterConfig
from .kwok import NODE_LEASE_DURATION_SECONDS
from .nodes import KWOK_NODE_ANNOTATION, KWOK_NODE_ANNOTATION_VALUE

LOOPBACK = "127.0.0.1"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
# The first address of the service range: the `kubernetes` Service's ClusterIP, in the serving cert.
KUBERNETES_SERVICE_IP = "10.96.0.1"
FRONT_PROXY_CLIENT = "front-proxy-client"
# The apiserver's identity towards kubelets, bound to system:kubelet-api-admin as kubeadm does.
KUBELET_CLIENT = "kube-apiserver-kubelet-client"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
APISERVER_HOSTS = (
    LOOPBACK,
    "localhost",
    KUBERNETES_SERVICE_IP,
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


class FreePorts(BaseModel):
    """A set of named ports, one per field, chosen free on loopback."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def allocate(cls) -> Self:
        """Ports the kernel reports free right now, distinct because all are held until all are chosen."""
        names = list(cls.model_fields)
        with ExitStack() as stack:
            sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in names]
            for sock in sockets:
                sock.bind((LOOPBACK, 0))
            return cls(**{name: sock.getsockname()[1] for name, sock in zip(names, sockets, strict=True)})


class Ports(FreePorts):
    """The loopback ports of one cluster."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int


@dataclass(frozen=True)
class ClusterPaths:
    """The files of one cluster, all under its state directory (removed whole by `down`)."""

    state_dir: Path

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def component_kubeconfigs(self) -> Path:
        return self.state_dir / "kubeconfigs"

    @property
    def service_account_kubeconfigs(self) -> Path:
        return self.state_dir / "service-accounts"

    @property
    def etcd_data(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def kwok_config(self) -> Path:
        return self.state_dir / "kwok.yaml"

    def pem(self, stem: str, suffix: str) -> Path:
        return self.pki / f"{stem}.{suffix}"

    def component_kubeconfig(self, component: str) -> Path:
        return self.component_kubeconfigs / f"{component}.kubeconfig"


def etcd_argv(bin_dir: Path, paths: ClusterPaths, ports: Ports) -> list[str]:
    client_url = f"http://{LOOPBACK}:{ports.etcd_client}"
    peer_url = f"http://{LOOPBACK}:{ports.etcd_peer}"
    return [
        str(bin_dir / "etcd"),
        "--name=devcluster",
        f"--data-dir={paths.etcd_data}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=devcluster={peer_url}",
        "--initial-cluster-state=new",
        # The data is thrown away with the cluster: fsync would only make a slow shared disk slower.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_argv(bin_dir: Path, paths: ClusterPaths, ports: Ports) -> list[str]:
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://{LOOPBACK}:{ports.etcd_client}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={paths.pem('apiserver', 'crt')}",
        f"--tls-private-key-file={paths.pem('apiserver', 'key')}",
        f"--client-ca-file={paths.pem('ca', 'crt')}",
        "--authorization-mode=Node,RBAC",
        # The aggregation layer's front proxy, as kubeadm sets it up: without a request-header CA the
        # controller-manager's and scheduler's delegated authentication keep complaining.
        f"--requestheader-client-ca-file={paths.pem('front-proxy-ca', 'crt')}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={paths.pem(FRONT_PROXY_CLIENT, 'crt')}",
        f"--proxy-client-key-file={paths.pem(FRONT_PROXY_CLIENT, 'key')}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={paths.pem('service-account', 'pub')}",
        f"--service-account-signing-key-file={paths.pem('service-account', 'key')}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        # The `kubernetes` Service's endpoints would point at 127.0.0.1, which Endpoints reject;
        # nothing here runs inside a pod network that could use them.
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        "--profiling=false",
        # logs, exec and port-forward reach a kubelet at its node's InternalIP, verified by the cluster CA. Any other
        # address type would make the apiserver look the node's name up in the machine's DNS: traffic off the machine.
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-certificate-authority={paths.pem('ca', 'crt')}",
        f"--kubelet-client-certificate={paths.pem(KUBELET_CLIENT, 'crt')}",
        f"--kubelet-client-key={paths.pem(KUBELET_CLIENT, 'key')}",
    ]


def _rate_limit_flags(qps: float | None, burst: int | None) -> list[str]:
    flags = []
    if qps is not None:
        flags.append(f"--kube-api-qps={qps:g}")
    if burst is not None:
        flags.append(f"--kube-api-burst={burst}")
    return flags


def _delegated_auth_flags(component: str, paths: ClusterPaths, port: int) -> list[str]:
    """Serving and client flags shared by kube-controller-manager and kube-scheduler."""
    kubeconfig = paths.component_kubeconfig(component)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--tls-cert-file={paths.pem(component, 'crt')}",
        f"--tls-private-key-file={paths.pem(component, 'key')}",
        # One instance per cluster: leader election would only delay the start by a lease period.
        "--leader-elect=false",
    ]


def controller_manager_argv(bin_dir: Path, paths: ClusterPaths, ports: Ports, config: ClusterConfig) -> list[str]:
    component = "kube-controller-manager"
    return [
        str(bin_dir / component),
        *_delegated_auth_flags(component, paths, ports.controller_manager),
        # Each controller acts with its own service account's token: RBAC applies to them as in a real
        # cluster, and the token machinery is exercised from the first second.
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={paths.pem('service-account', 'key')}",
        f"--root-ca-file={paths.pem('ca', 'crt')}",
        f"--cluster-signing-cert-file={paths.pem('ca', 'crt')}",
        f"--cluster-signing-key-file={paths.pem('ca', 'key')}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        *_rate_limit_flags(config.controller_manager_qps, config.controller_manager_burst),
    ]


def scheduler_argv(bin_dir: Path, paths: ClusterPaths, ports: Ports, config: ClusterConfig) -> list[str]:
    component = "kube-scheduler"
    return [
        str(bin_dir / component),
        *_delegated_auth_flags(component, paths, ports.scheduler),
        *_rate_limit_flags(config.scheduler_qps, config.scheduler_burst),
    ]


def kwok_argv(bin_dir: Path, paths: ClusterPaths) -> list[str]:
    return [
        str(bin_dir / "kwok"),
        f"--kubeconfig={paths.component_kubeconfig('kwok')}",
        f"--config={paths.kwok_config}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}={KWOK_NODE_ANNOTATION_VALUE}",
        f"--node-lease-duration-seconds={NODE_LEASE_DURATION_SECONDS}",
    ]

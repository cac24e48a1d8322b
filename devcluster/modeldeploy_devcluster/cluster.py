"""`LocalCluster`: bring the whole control plane up on loopback, find it again, and take it down.

Order of start: PKI and kubeconfigs, etcd, kube-apiserver, kwok's RBAC, then kube-controller-manager,
kube-scheduler and kwok, then the simulated nodes, then the real node (containerd, the apiserver's forwarder,
kubelet, kube-proxy). The state file is rewritten after every process start and before the real node changes the
machine, so even an `up` that fails half-way leaves a record `down` can stop and undo exactly.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import yaml
from lightkube import ApiError, Client
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Node, ServiceAccount
from lightkube.types import PatchType
from pydantic import BaseModel, ConfigDict

from . import host, images, kwok, real_node
from .binaries import ensure_binaries
from .components import (
    APISERVER_HOSTS,
    FRONT_PROXY_CLIENT,
    KUBELET_CLIENT,
    LOOPBACK,
    ClusterPaths,
    Ports,
    apiserver_argv,
    controller_manager_argv,
    etcd_argv,
    kwok_argv,
    scheduler_argv,
)
from .config import ClusterConfig
from .connection import ClusterConnection
from .kubeconfig import client_cert_kubeconfig, write_kubeconfig
from .nodes import node_manifests
from .pki import CertificateAuthority, ServiceAccountSigningKey, write_private
from .processes import ProcessRecord, is_running, log_tail, start_process, stop_processes
from .real_node import REAL_NODE_NAME, NodePaths, NodePorts
from .waiting import wait_until

# Marks a directory as ours, so `down` never deletes a directory it did not create.
OWNER_MARKER = ".modeldeploy-devcluster"
# Two shared cores also building Go: an apiserver start can take a minute under load.
READY_TIMEOUT_SECONDS = 180.0
ADMIN_USER = "devcluster-admin"


class ClusterStartError(RuntimeError):
    """The cluster did not come up; the message says which part and quotes its log."""


class RealNodeState(BaseModel):
    """The real node's ports, and the machine as it was before the node changed it."""

    model_config = ConfigDict(frozen=True)

    ports: NodePorts
    host: host.HostRecord


class ClusterState(BaseModel):
    """What `up` leaves in the state directory for `down` and `status`."""

    model_config = ConfigDict(frozen=True)

    bin_dir: Path
    ports: Ports
    config: ClusterConfig
    processes: list[ProcessRecord]
    real_node: RealNodeState | None = None


def _stderr(message: str) -> None:
    print(f"devcluster: {message}", file=sys.stderr, flush=True)


class LocalCluster:
    """One local control plane with simulated nodes, kept in `state_dir`."""

    def __init__(self, state_dir: Path, config: ClusterConfig | None = None) -> None:
        self.paths = ClusterPaths(state_dir.resolve())
        self.node_paths = NodePaths(self.paths.state_dir / "node")
        self.config = config or ClusterConfig()

    # -- finding a cluster again -------------------------------------------------------------------

    def load_state(self) -> ClusterState | None:
        """The recorded state, or None when this state directory holds no cluster."""
        if not self.paths.state_file.is_file():
            return None
        return ClusterState.model_validate_json(self.paths.state_file.read_text())

    def _connection(self, bin_dir: Path) -> ClusterConnection:
        return ClusterConnection(
            kubeconfig=self.paths.admin_kubeconfig,
            bin_dir=bin_dir,
            work_dir=self.paths.service_account_kubeconfigs,
        )

    def _is_healthy(self, state: ClusterState) -> bool:
        return all(is_running(record) for record in state.processes) and self._apiserver_ready(state.ports)

    def running(self) -> ClusterConnection | None:
        """A connection to the cluster of this state directory if all its processes run and it is ready."""
        state = self.load_state()
        if state is None or not self._is_healthy(state):
            return None
        return self._connection(state.bin_dir)

    # -- up and down -------------------------------------------------------------------------------

    def up(self) -> tuple[ClusterConnection, bool]:
        """Start the cluster, or find it already running: returns (connection, already_running)."""
        connection = self.running()
        if connection is not None:
            return connection, True
        if self.load_state() is not None or (self.paths.state_dir / OWNER_MARKER).exists():
            _stderr(f"removing the remains of a cluster that is no longer running in {self.paths.state_dir}")
            self.down()
        return self.start(), False

    def down(self) -> list[str]:
        """Stop exactly the recorded processes, undo the real node's changes to the machine and remove the state
        directory; returns what was stopped."""
        state = self.load_state()
        stopped = [record.name for record in state.processes if is_running(record)] if state else []
        if state is not None:
            self._stop(state)
        if (self.paths.state_dir / OWNER_MARKER).exists():
            shutil.rmtree(self.paths.state_dir)
        return stopped

    def _stop(self, state: ClusterState) -> None:
        # Clients first, etcd last: the reverse of the start order.
        killed = stop_processes(state.processes[::-1])
        if killed:
            _stderr(f"needed SIGKILL: {', '.join(killed)}")
        if state.real_node is not None:
            host.restore(state.real_node.host, self.node_paths)

    def restart_apiserver(self) -> None:
        """Stop and start the running cluster's kube-apiserver (same flags, same etcd): its watch cache starts
        afresh, so a watch that resumes from an older resourceVersion is answered 410 Gone, as after a real
        apiserver's restart or a compaction."""
        state = self.load_state()
        if state is None:
            raise ClusterStartError(f"no cluster runs in {self.paths.state_dir}")
        (apiserver,) = [record for record in state.processes if record.name == "kube-apiserver"]
        stop_processes([apiserver])
        others = [record for record in state.processes if record is not apiserver]
        state = self._spawn(state.model_copy(update={"processes": others}), apiserver.name, apiserver.argv)
        self._wait(state, "kube-apiserver /readyz", lambda: self._apiserver_ready(state.ports))

    def import_images(self, built: list[images.BuiltImage]) -> bool:
        """Import images into the running cluster's real node; False when no such node runs here."""
        state = self.load_state()
        if state is None or state.real_node is None or self.running() is None:
            return False
        for image in built:
            images.import_into(state.bin_dir / "ctr", self.node_paths.containerd_socket, image)
        return True

    def start(self) -> ClusterConnection:
        """Start a fresh cluster in an empty (or missing) state directory and wait until it is usable."""
        state_dir = self.paths.state_dir
        if state_dir.exists() and any(state_dir.iterdir()):
            raise ClusterStartError(f"state directory {state_dir} is not empty; run `down` on it first")
        bin_dir = ensure_binaries()
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / OWNER_MARKER).touch()
        started = time.monotonic()
        state = ClusterState(bin_dir=bin_dir, ports=Ports.allocate(), config=self.config, processes=[])
        try:
            self._write_files(state.ports)
            state = self._start_control_plane(state)
        except BaseException:
            self._stop(self.load_state() or state)
            _stderr(f"start failed; logs kept in {self.paths.logs} (`down` removes them)")
            raise
        _stderr(f"cluster ready in {time.monotonic() - started:.1f}s at https://{LOOPBACK}:{state.ports.apiserver}")
        return self._connection(bin_dir)

    # -- the steps of start ------------------------------------------------------------------------

    def _write_files(self, ports: Ports) -> None:
        paths = self.paths
        for directory in (
            paths.pki,
            paths.component_kubeconfigs,
            paths.logs,
            paths.service_account_kubeconfigs,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority()
        ca.key_pair.write(paths.pki, "ca")
        ca.issue_serving("kube-apiserver", APISERVER_HOSTS).write(paths.pki, "apiserver")
        front_proxy_ca = CertificateAuthority("modeldeploy-devcluster-front-proxy-ca")
        front_proxy_ca.key_pair.write(paths.pki, "front-proxy-ca")
        front_proxy_ca.issue_client(FRONT_PROXY_CLIENT).write(paths.pki, FRONT_PROXY_CLIENT)
        ca.issue_client(KUBELET_CLIENT).write(paths.pki, KUBELET_CLIENT)
        signing_key = ServiceAccountSigningKey.generate()
        write_private(paths.pem("service-account", "key"), signing_key.private_pem)
        paths.pem("service-account", "pub").write_bytes(signing_key.public_pem)

        server = f"https://{LOOPBACK}:{ports.apiserver}"
        ca_pem = ca.key_pair.cert_pem
        admin = ca.issue_client(ADMIN_USER, groups=("system:masters",))
        admin.write(paths.pki, "admin")
        write_kubeconfig(
            paths.admin_kubeconfig,
            client_cert_kubeconfig(server, ca_pem, ADMIN_USER, admin.cert_pem, admin.key_pem),
        )
        # The controller-manager and the scheduler use the users Kubernetes' bootstrap RBAC grants
        # their roles to; kwok gets its own narrow ClusterRole (kwok.access_manifests).
        for component, user in (
            ("kube-controller-manager", "system:kube-controller-manager"),
            ("kube-scheduler", "system:kube-scheduler"),
            ("kwok", kwok.KWOK_USER),
        ):
            client_pair = ca.issue_client(user)
            write_kubeconfig(
                paths.component_kubeconfig(component),
                client_cert_kubeconfig(server, ca_pem, user, client_pair.cert_pem, client_pair.key_pem),
            )
            if component != "kwok":
                ca.issue_serving(component).write(paths.pki, component)
        paths.kwok_config.write_text(yaml.safe_dump_all(kwok.stages(), sort_keys=False))
        if self.config.real_node:
            ca.issue_serving(REAL_NODE_NAME, (real_node.NODE_IP, REAL_NODE_NAME)).write(paths.pki, "kubelet")
            # The Node authorizer knows a kubelet by this name and group; kube-proxy's user has system:node-proxier.
            for component, user, groups in (
                ("kubelet", f"system:node:{REAL_NODE_NAME}", ("system:nodes",)),
                ("kube-proxy", "system:kube-proxy", ()),
                ("coredns", real_node.COREDNS_USER, ()),
            ):
                client_pair = ca.issue_client(user, groups=groups)
                write_kubeconfig(
                    paths.component_kubeconfig(component),
                    client_cert_kubeconfig(server, ca_pem, user, client_pair.cert_pem, client_pair.key_pem),
                )

    def _save(self, state: ClusterState) -> None:
        temporary = self.paths.state_file.with_suffix(".tmp")
        temporary.write_text(state.model_dump_json(indent=2))
        temporary.replace(self.paths.state_file)

    def _spawn(
        self, state: ClusterState, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> ClusterState:
        _stderr(f"starting {name}")
        record = start_process(name, argv, self.paths.logs / f"{name}.log", cwd=self.paths.state_dir, env=env)
        state = state.model_copy(update={"processes": [*state.processes, record]})
        self._save(state)
        return state

    def _start_control_plane(self, state: ClusterState) -> ClusterState:
        paths, ports, bin_dir = self.paths, state.ports, state.bin_dir
        state = self._spawn(state, "etcd", etcd_argv(bin_dir, paths, ports))
        self._wait(state, "etcd healthy", lambda: self._etcd_healthy(ports))
        state = self._spawn(state, "kube-apiserver", apiserver_argv(bin_dir, paths, ports))
        self._wait(state, "kube-apiserver /readyz", lambda: self._apiserver_ready(ports))

        client = self._connection(bin_dir).client()
        for manifest in [*kwok.access_manifests(), *real_node.node_access_manifests()]:
            client.apply(from_dict(manifest), force=True)
        state = self._spawn(
            state, "kube-controller-manager", controller_manager_argv(bin_dir, paths, ports, self.config)
        )
        state = self._spawn(state, "kube-scheduler", scheduler_argv(bin_dir, paths, ports, self.config))
        state = self._spawn(state, "kwok", kwok_argv(bin_dir, paths))
        self._create_nodes(client)

        self._wait(state, "kube-controller-manager /healthz", lambda: self._healthz(ports.controller_manager))
        self._wait(state, "kube-scheduler /healthz", lambda: self._healthz(ports.scheduler))
        self._wait(state, "ServiceAccount default/default", lambda: _service_account_exists(client))
        expected_nodes = {manifest["metadata"]["name"] for manifest in node_manifests(self.config)}
        if self.config.real_node:
            state = self._start_real_node(state, client)
            expected_nodes.add(REAL_NODE_NAME)
        self._wait(state, f"{len(expected_nodes)} nodes Ready", lambda: _ready_nodes(client) >= expected_nodes)
        return state

    def _undo_real_node_of_a_stopped_cluster(self) -> None:
        """A cluster killed with its session (SIGKILL, a CI job cancelled) never ran `down`: its claim on the real
        node, the bridge, mounts and containers stay. When that cluster no longer runs, they are undone from its own
        record of the machine, so that the next cluster on the machine can start; a running one keeps the node."""
        claim = host.claimed_by(self.node_paths)
        if claim is None:
            return
        owner_dir, record_beside_claim = claim
        owner = LocalCluster(owner_dir)
        state = owner.load_state()
        if state is not None and owner._is_healthy(state):
            return
        record = state.real_node.host if state is not None and state.real_node is not None else record_beside_claim
        if record is None:
            raise host.RealNodeUnavailable(
                f"the real node was claimed by the cluster in {owner_dir}, which no longer runs and left no record "
                f"of the machine before it; remove {self.node_paths.run_root} and {self.node_paths.data_root}"
            )
        _stderr(f"undoing the real node left on this machine by the cluster in {owner_dir}, which no longer runs")
        if state is not None:
            stop_processes(state.processes[::-1])
        host.restore(record, NodePaths(owner_dir / "node"))

    def _start_real_node(self, state: ClusterState, client: Client) -> ClusterState:
        paths, bin_dir = self.node_paths, state.bin_dir
        self._undo_real_node_of_a_stopped_cluster()
        record = host.prepare(paths)
        ports = NodePorts.allocate()
        state = state.model_copy(update={"real_node": RealNodeState(ports=ports, host=record)})
        self._save(state)
        host.create_network()
        pki = self.paths.pem
        files = {
            paths.containerd_config: real_node.containerd_config(paths, bin_dir),
            paths.registry_hosts / "_default" / "hosts.toml": real_node.registry_hosts_toml(),
            paths.cni_config_dir / "10-devcluster.conflist": real_node.cni_config(paths),
            paths.kubelet_config: real_node.kubelet_config(
                paths, ports, pki("ca", "crt"), pki("kubelet", "crt"), pki("kubelet", "key")
            ),
            paths.kube_proxy_config: real_node.kube_proxy_config(self.paths.component_kubeconfig("kube-proxy"), ports),
            paths.corefile: real_node.corefile(self.paths.component_kubeconfig("coredns"), ports),
        }
        for path, content in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        # containerd finds its shim next to itself, the shim finds runc in /usr/sbin; kubelet needs mount and iptables.
        env = {**os.environ, "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        state = self._spawn(state, "containerd", real_node.containerd_argv(bin_dir, paths), env)
        ctr = [str(bin_dir / "ctr"), "--address", str(paths.containerd_socket)]
        self._wait(state, "containerd", lambda: _succeeds([*ctr, "version"]))
        images.import_into(bin_dir / "ctr", paths.containerd_socket, images.pause_image(bin_dir))
        state = self._spawn(state, "apiserver-forwarder", real_node.apiserver_forwarder_argv(state.ports.apiserver))
        client.apply(from_dict(real_node.kubernetes_endpoint_slice(state.ports.apiserver)), force=True)
        state = self._spawn(state, "coredns", real_node.coredns_argv(bin_dir, paths))
        self._wait(state, "CoreDNS ready", lambda: _answers_ok(f"http://{LOOPBACK}:{ports.dns_ready}/ready"))
        state = self._spawn(
            state,
            "kubelet",
            real_node.kubelet_argv(bin_dir, paths, self.paths.component_kubeconfig("kubelet")),
            env,
        )
        return self._spawn(state, "kube-proxy", real_node.kube_proxy_argv(bin_dir, paths), env)

    def _create_nodes(self, client: Client) -> None:
        # Nodes are applied whole, then their status (capacity, addresses) through the status
        # subresource: a create may drop status, and kwok's stages keep what is already there.
        for manifest in node_manifests(self.config):
            client.apply(from_dict(manifest), force=True)
            client.patch(Node.Status, manifest["metadata"]["name"], manifest, patch_type=PatchType.APPLY, force=True)

    # -- readiness ---------------------------------------------------------------------------------

    def _wait(self, state: ClusterState, what: str, condition: Callable[[], bool]) -> None:
        """Poll `condition` until true; fail early, quoting its log, if one of our processes died."""

        def all_running_and_condition() -> bool:
            for record in state.processes:
                if not is_running(record):
                    raise ClusterStartError(
                        f"{record.name} exited while waiting for {what}; last lines of {record.log_path}:\n"
                        + log_tail(record)
                    )
            return condition()

        try:
            wait_until(
                all_running_and_condition,
                what,
                timeout=READY_TIMEOUT_SECONDS,
                ignore=(httpx2.HTTPError, ApiError, OSError),
            )
        except TimeoutError as error:
            raise ClusterStartError(f"{error}; logs in {self.paths.logs}") from None

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.paths.pem("ca", "crt")))
        context.load_cert_chain(self.paths.pem("admin", "crt"), self.paths.pem("admin", "key"))
        return context

    def _healthz(self, port: int, path: str = "/healthz") -> bool:
        response = httpx2.get(f"https://{LOOPBACK}:{port}{path}", verify=self._tls_context(), timeout=5.0)
        return response.status_code == 200 and response.text.strip() == "ok"

    def _apiserver_ready(self, ports: Ports) -> bool:
        try:
            return self._healthz(ports.apiserver, "/readyz")
        except (httpx2.HTTPError, OSError):
            return False

    @staticmethod
    def _etcd_healthy(ports: Ports) -> bool:
        response = httpx2.get(f"http://{LOOPBACK}:{ports.etcd_client}/health", timeout=5.0)
        if response.status_code != 200:
            return False
        health: dict[str, Any] = response.json()
        return health.get("health") == "true"


def _answers_ok(url: str) -> bool:
    return httpx2.get(url, timeout=5.0).status_code == 200


def _succeeds(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def _ready_nodes(client: Client) -> set[str]:
    ready = set()
    for node in client.list(Node):
        conditions = node.status.conditions if node.status and node.status.conditions else []
        if any(c.type == "Ready" and c.status == "True" for c in conditions) and node.metadata:
            ready.add(str(node.metadata.name))
    return ready


def _service_account_exists(client: Client) -> bool:
    try:
        client.get(ServiceAccount, "default", namespace="default")
    except ApiError as error:
        if error.status.code == 404:
            return False
        raise
    return True

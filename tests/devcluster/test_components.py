"""Command lines and ports: loopback only, real-cluster defaults unless a parameter says otherwise."""

from pathlib import Path

from modeldeploy_devcluster import ClusterConfig
from modeldeploy_devcluster.components import (
    ClusterPaths,
    Ports,
    apiserver_argv,
    controller_manager_argv,
    etcd_argv,
    kwok_argv,
    scheduler_argv,
)

BIN = Path("/opt/bin")
PATHS = ClusterPaths(Path("/state"))
PORTS = Ports(etcd_client=2379, etcd_peer=2380, apiserver=6443, controller_manager=10257, scheduler=10259)


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in argv[1:])


def test_ports_are_distinct_and_unprivileged() -> None:
    ports = Ports.allocate().model_dump().values()
    assert len(set(ports)) == len(ports)
    assert all(1024 < port < 65536 for port in ports)


def test_every_listener_binds_loopback() -> None:
    config = ClusterConfig()
    etcd = _flags(etcd_argv(BIN, PATHS, PORTS))
    assert etcd["listen-client-urls"] == "http://127.0.0.1:2379"
    assert etcd["listen-peer-urls"] == "http://127.0.0.1:2380"
    for argv in (
        apiserver_argv(BIN, PATHS, PORTS),
        controller_manager_argv(BIN, PATHS, PORTS, config),
        scheduler_argv(BIN, PATHS, PORTS, config),
    ):
        assert _flags(argv)["bind-address"] == "127.0.0.1"


def test_apiserver_runs_rbac_and_service_account_tokens() -> None:
    flags = _flags(apiserver_argv(BIN, PATHS, PORTS))
    assert flags["authorization-mode"] == "Node,RBAC"
    assert flags["service-account-signing-key-file"] == "/state/pki/service-account.key"
    assert flags["client-ca-file"] == "/state/pki/ca.crt"


def test_controllers_use_their_own_service_accounts() -> None:
    flags = _flags(controller_manager_argv(BIN, PATHS, PORTS, ClusterConfig()))
    assert flags["use-service-account-credentials"] == "true"
    assert flags["root-ca-file"] == "/state/pki/ca.crt"


def test_rate_limits_keep_kubernetes_defaults_unless_asked() -> None:
    default = controller_manager_argv(BIN, PATHS, PORTS, ClusterConfig())
    assert not any(arg.startswith("--kube-api-") for arg in default)
    raised = ClusterConfig(controller_manager_qps=200, controller_manager_burst=400, scheduler_qps=150)
    assert {"kube-api-qps": "200", "kube-api-burst": "400"}.items() <= _flags(
        controller_manager_argv(BIN, PATHS, PORTS, raised)
    ).items()
    assert _flags(scheduler_argv(BIN, PATHS, PORTS, raised))["kube-api-qps"] == "150"


def test_kwok_manages_only_the_annotated_nodes() -> None:
    flags = _flags(kwok_argv(BIN, PATHS))
    assert flags["manage-all-nodes"] == "false"
    assert flags["manage-nodes-with-annotation-selector"] == "kwok.x-k8s.io/node=fake"
    assert flags["config"] == "/state/kwok.yaml"

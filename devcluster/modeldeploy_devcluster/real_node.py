"""The real worker node's configuration: containerd, CNI, kubelet and kube-proxy, as pure functions.

Beside the KWOK nodes, one node runs containers for real: kubelet and kube-proxy of the cluster's Kubernetes
version, containerd v2 with Debian's runc, and the CNI bridge plugin. Its pods live on a bridge the devcluster
creates (`BRIDGE`), in the pod network `POD_CIDR`, with no default route: nothing a pod sends can leave the machine.
Their DNS server is the cluster's CoreDNS on the bridge's address, which answers for cluster.local and forwards
nothing, so in-cluster names resolve and no other name is ever looked up. The host reaches Services through
kube-proxy (a route sends the service range to the bridge), and pods reach the apiserver through the `kubernetes`
Service, whose endpoint is a forwarder on the bridge's address (the apiserver itself listens on loopback only).

What the host side does with these files (bridge, sysctls, mounts, cgroups, iptables) is in `host.py`.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
import yaml

from .components import KUBELET_CLIENT, LOOPBACK, SERVICE_CLUSTER_IP_RANGE, FreePorts

REAL_NODE_NAME = "real-node"
# Pods select the real node by this label and tolerate its taint of the same key: only pods that ask for real
# containers run there, and every other pod stays on the simulated nodes, as before the real node existed.
REAL_NODE_LABEL = "devcluster.modeldeploy.dev/real-node"
REAL_NODE_TAINT = f"{REAL_NODE_LABEL}=true:NoSchedule"
BRIDGE = "mdnode0"
POD_CIDR = "10.244.0.0/24"
# The bridge's address: the pods' gateway to the service range, the node's InternalIP, where kubelet serves.
NODE_IP = str(next(ipaddress.IPv4Network(POD_CIDR).hosts()))
CLUSTER_DOMAIN = "cluster.local"
# The sandbox image is built locally (images.py): a name no registry serves, so it is never pulled.
PAUSE_IMAGE = "modeldeploy.local/pause:devcluster"
# Fixed and short, because unix socket paths are limited to 108 bytes and containerd's shims put sockets under
# its state directory. One real node per machine at a time; `down` removes both.
RUN_ROOT = Path("/run/modeldeploy-node")
DATA_ROOT = Path("/var/lib/modeldeploy-node")


@dataclass(frozen=True)
class NodePaths:
    """Where the real node keeps its files: config in the cluster's state directory, runtime data fixed."""

    config_dir: Path
    run_root: Path = RUN_ROOT
    data_root: Path = DATA_ROOT

    @property
    def containerd_config(self) -> Path:
        return self.config_dir / "containerd.toml"

    @property
    def containerd_root(self) -> Path:
        return self.data_root / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.run_root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.run_root / "containerd.sock"

    @property
    def registry_hosts(self) -> Path:
        return self.config_dir / "registry-hosts"

    @property
    def cni_config_dir(self) -> Path:
        return self.config_dir / "cni"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.run_root / "cni-ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.data_root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.config_dir / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.config_dir / "kube-proxy.yaml"

    @property
    def corefile(self) -> Path:
        return self.config_dir / "Corefile"

    @property
    def owner_file(self) -> Path:
        """Names the cluster that runs the real node: one per machine."""
        return self.run_root / "owner"

    @property
    def host_record_file(self) -> Path:
        """The machine as it was before the node, beside the claim: a cluster killed with its state directory
        gone can still be undone exactly."""
        return self.run_root / "host-record.json"


class NodePorts(FreePorts):
    """The real node's ports: kubelet serves on the bridge address, every health and metrics port on loopback."""

    kubelet: int
    kubelet_healthz: int
    kube_proxy_healthz: int
    kube_proxy_metrics: int
    dns_ready: int


def containerd_config(paths: NodePaths, bin_dir: Path) -> str:
    """containerd's config (version 3, containerd v2): CRI with runc, CNI from our plugin dir, no registry."""
    config: dict[str, Any] = {
        "version": 3,
        "root": str(paths.containerd_root),
        "state": str(paths.containerd_state),
        "grpc": {"address": str(paths.containerd_socket)},
        "plugins": {
            "io.containerd.cri.v1.runtime": {
                # Root in this VM lacks CAP_SYS_RESOURCE: lowering a sandbox's oom_score_adj below ours fails, and
                # every pod sandbox with it ("can't get final child's PID from pipe: EOF").
                "restrict_oom_score_adj": True,
                "containerd": {
                    "default_runtime_name": "runc",
                    "runtimes": {
                        "runc": {
                            "runtime_type": "io.containerd.runc.v2",
                            "options": {"BinaryName": "/usr/sbin/runc", "SystemdCgroup": False},
                        }
                    },
                },
                "cni": {"bin_dirs": [str(bin_dir / "cni")], "conf_dir": str(paths.cni_config_dir)},
            },
            "io.containerd.cri.v1.images": {
                "snapshotter": "overlayfs",
                "pinned_images": {"sandbox": PAUSE_IMAGE},
                # Every registry resolves to a closed loopback port: a pod whose image was not imported fails
                # here (ImagePullBackOff) instead of reaching out to the registry its name points at.
                "registry": {"config_path": str(paths.registry_hosts)},
            },
            "io.containerd.grpc.v1.cri": {
                # Pod network namespaces under containerd's state directory rather than /run/netns.
                "netns_mounts_under_state_dir": True,
                "stream_server_address": LOOPBACK,
                "stream_server_port": "0",
            },
        },
    }
    return tomli_w.dumps(config)


# Port 9 (discard) on loopback: nothing listens, so a pull fails at once.
CLOSED_REGISTRY = f"https://{LOOPBACK}:9"


def registry_hosts_toml() -> str:
    """`_default/hosts.toml`: every registry's server is the closed loopback port, with no mirror to fall to."""
    return f'server = "{CLOSED_REGISTRY}"\n\n[host."{CLOSED_REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n'


def cni_config(paths: NodePaths) -> str:
    """The pod network: the devcluster's bridge, addresses from POD_CIDR, routes to the bridge and Services only."""
    network = {
        "cniVersion": "1.0.0",
        "name": "devcluster",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                # The bridge holds NODE_IP already (host.py); the plugin uses it as the pods' gateway.
                "isGateway": True,
                "isDefaultGateway": False,
                # Nothing leaves the machine, so there is nothing to masquerade.
                "ipMasq": False,
                # A pod calling its own Service is answered by itself: the packet goes back out the same port.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(paths.cni_ipam_dir),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    # No default route: only the Service range goes through the gateway; the pod network is on-link.
                    "routes": [{"dst": SERVICE_CLUSTER_IP_RANGE}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(network, indent=2) + "\n"


def kubelet_config(paths: NodePaths, ports: NodePorts, ca_file: Path, serving_cert: Path, serving_key: Path) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": LOOPBACK,
        "healthzPort": ports.kubelet_healthz,
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        # This machine has cgroup v1, which kubelet 1.35+ refuses unless told otherwise.
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [NODE_IP],
        # Nothing inherited from the machine's resolver: a pod's only DNS server is the cluster's.
        "resolvConf": "",
        # A shared test machine: evict only when it is truly out of memory or disk, and keep imported images.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        # Without systemd-logind there is no inhibitor lock to take.
        "shutdownGracePeriod": "0s",
        "shutdownGracePeriodCriticalPods": "0s",
    }
    return yaml.safe_dump(config, sort_keys=False)


def kube_proxy_config(kubeconfig: Path, ports: NodePorts) -> str:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": REAL_NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"{LOOPBACK}:{ports.kube_proxy_healthz}",
        "metricsBindAddress": f"{LOOPBACK}:{ports.kube_proxy_metrics}",
        # NodePorts open on the bridge only, never on the machine's own interfaces.
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # Every Service connection is masqueraded, so replies between pods on the one bridge come back through the
        # host's connection tracking, which undoes the Service's address translation.
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
        # Zero leaves the machine's conntrack sysctls as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }
    return yaml.safe_dump(config, sort_keys=False)


def corefile(kubeconfig: Path, ports: NodePorts) -> str:
    """CoreDNS serving the cluster domain from the API, on the bridge's address, with no upstream: a name outside
    the cluster gets an error from here instead of a query to the machine's resolver."""
    return f"""\
.:53 {{
    bind {NODE_IP}
    errors
    ready {LOOPBACK}:{ports.dns_ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
    loadbalance
}}
"""


def coredns_argv(bin_dir: Path, paths: NodePaths) -> list[str]:
    return [str(bin_dir / "coredns"), "-conf", str(paths.corefile)]


def kubelet_argv(bin_dir: Path, paths: NodePaths, kubeconfig: Path) -> list[str]:
    return [
        str(bin_dir / "kubelet"),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={paths.kubelet_root}",
        f"--hostname-override={REAL_NODE_NAME}",
        f"--node-ip={NODE_IP}",
        f"--node-labels={REAL_NODE_LABEL}=true",
        f"--register-with-taints={REAL_NODE_TAINT}",
        "--v=1",
    ]


def kube_proxy_argv(bin_dir: Path, paths: NodePaths) -> list[str]:
    return [str(bin_dir / "kube-proxy"), f"--config={paths.kube_proxy_config}", "--v=1"]


def containerd_argv(bin_dir: Path, paths: NodePaths) -> list[str]:
    return [str(bin_dir / "containerd"), f"--config={paths.containerd_config}", "--log-level=warn"]


def apiserver_forwarder_argv(apiserver_port: int) -> list[str]:
    """socat from the bridge's address to the apiserver on loopback, for pods (the `kubernetes` Service)."""
    return [
        "socat",
        f"TCP-LISTEN:{apiserver_port},bind={NODE_IP},fork,reuseaddr",
        f"TCP:{LOOPBACK}:{apiserver_port}",
    ]


def real_node_scheduling() -> dict[str, Any]:
    """`nodeSelector` and `tolerations` that put a pod on the real node (a Pod spec's, or spec.scheduling's)."""
    return {
        "nodeSelector": {REAL_NODE_LABEL: "true"},
        "tolerations": [{"key": REAL_NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
    }


COREDNS_USER = "system:coredns"


def node_access_manifests() -> list[dict[str, Any]]:
    """RBAC the bootstrap policy does not hold: the apiserver may call kubelets' APIs (logs, exec, port-forward) and
    CoreDNS may watch what it serves, as kubeadm grants them."""
    rbac = "rbac.authorization.k8s.io"
    return [
        _binding("devcluster:apiserver-kubelet-api-admin", "system:kubelet-api-admin", KUBELET_CLIENT),
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "devcluster:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        _binding("devcluster:coredns", "devcluster:coredns", COREDNS_USER),
    ]


def _binding(name: str, role: str, user: str) -> dict[str, Any]:
    rbac = "rbac.authorization.k8s.io"
    return {
        "apiVersion": f"{rbac}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": rbac, "kind": "User", "name": user}],
    }


def kubernetes_endpoint_slice(apiserver_port: int) -> dict[str, Any]:
    """The `kubernetes` Service's endpoint: the forwarder (the apiserver runs with --endpoint-reconciler-type=none)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "devcluster.modeldeploy.dev",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": apiserver_port, "protocol": "TCP"}],
    }

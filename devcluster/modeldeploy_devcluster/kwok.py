"""What KWOK needs to play the kubelets of the simulated nodes: its stages, its RBAC and its flow schema.

The stages are KWOK's own defaults (node initialize + lease heartbeat; pod ready, complete, delete),
except that a pod annotated with `devcluster.modeldeploy.dev/simulate` skips the healthy path and gets
one of the failure stages below instead. They go to kwok in its `--config` file, so no kwok CRD is
installed in the cluster: the API the operator sees is exactly Kubernetes'.

Every failure stage fires once, when the simulated kubelet first picks the pod up (no `startTime`
yet): pods are annotated through their template, at creation, as the operator's tests do.
"""

from __future__ import annotations

import textwrap
from enum import StrEnum
from typing import Any

SIMULATE_ANNOTATION = "devcluster.modeldeploy.dev/simulate"
EXIT_CODE_ANNOTATION = "devcluster.modeldeploy.dev/exit-code"
MESSAGE_ANNOTATION = "devcluster.modeldeploy.dev/message"
REASON_ANNOTATION = "devcluster.modeldeploy.dev/reason"
KWOK_USER = "system:kwok-controller"
# How long a node lease lasts; kwok renews it well within, as a kubelet does.
NODE_LEASE_DURATION_SECONDS = 40


class Simulation(StrEnum):
    """Values of the `devcluster.modeldeploy.dev/simulate` pod annotation."""

    CRASH_LOOP = "crash-loop"
    IMAGE_PULL_ERROR = "image-pull-error"
    NOT_READY = "not-ready"


_SIMULATE_KEY = f'.metadata.annotations["{SIMULATE_ANNOTATION}"]'
_NOT_DELETED: dict[str, Any] = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
_NOT_SIMULATED: dict[str, Any] = {
    "key": _SIMULATE_KEY,
    "operator": "NotIn",
    "values": [s.value for s in Simulation],
}
_NOT_STARTED: dict[str, Any] = {"key": ".status.startTime", "operator": "DoesNotExist"}

# Template fragments shared by the healthy and the failure stages (Go templates, rendered by kwok).
_POD_ADDRESSES = """
{{ $hostIPs := NodeIPsWith .spec.nodeName }}
{{ with $hostIPs }}
hostIP: {{ index . 0 | Quote }}
hostIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
{{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false )
   ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
{{ with $podIPs }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
startTime: {{ $now | Quote }}
"""

# Init containers ran to completion (sidecars, restartPolicy Always, keep running).
_INIT_CONTAINERS_DONE = """
initContainerStatuses:
{{ range .spec.initContainers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  {{ if eq .restartPolicy "Always" }}
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
  {{ else }}
  state:
    terminated:
      exitCode: 0
      finishedAt: {{ $now | Quote }}
      reason: Completed
      startedAt: {{ $now | Quote }}
  {{ end }}
{{ end }}
"""

# Initialized, but not Ready: the kubelet's wording for containers that are not ready.
_CONDITIONS_NOT_READY = """
{{ $names := list }}
{{ range .spec.containers }}{{ $names = append $names .name }}{{ end }}
{{ $unready := printf "containers with unready status: [%s]" ( join " " $names ) }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  message: {{ $unready | Quote }}
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  message: {{ $unready | Quote }}
  type: ContainersReady
"""

_NOW = "{{ $now := Now }}\n"

# Container states, as YAML blocks that go under `state:` or `lastState:`.
_RUNNING = """
running:
  startedAt: {{ $now | Quote }}
"""
_COMPLETED = """
terminated:
  exitCode: 0
  reason: Completed
  startedAt: {{ $now | Quote }}
  finishedAt: {{ $now | Quote }}
"""


def _container_statuses(*, ready: bool, started: bool, restarts: int, state: str, last_state: str = "") -> str:
    """A `containerStatuses` list: every container of the pod in the same state."""
    lines = [
        "containerStatuses:",
        "{{ range .spec.containers }}",
        "- image: {{ .image | Quote }}",
        "  name: {{ .name | Quote }}",
        f"  ready: {str(ready).lower()}",
        f"  started: {str(started).lower()}",
        f"  restartCount: {restarts}",
    ]
    if last_state:
        lines += ["  lastState:", textwrap.indent(last_state.strip("\n"), "    ")]
    lines += ["  state:", textwrap.indent(state.strip("\n"), "    "), "{{ end }}"]
    return "\n".join(lines) + "\n"


_POD_READY_TEMPLATE = (
    _NOW
    + """
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: ContainersReady
{{ range .spec.readinessGates }}
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: {{ .conditionType | Quote }}
{{ end }}
phase: Running
"""
    + _container_statuses(ready=True, started=True, restarts=0, state=_RUNNING)
    + _INIT_CONTAINERS_DONE
    + _POD_ADDRESSES
)


def _annotation_or(variable: str, annotation: str, default: str) -> str:
    """A template line binding `$variable` to a pod annotation's value, or `default` without one."""
    return f'{{{{ ${variable} := or ( index $annotations "{annotation}" ) "{default}" }}}}\n'


# The container ran, exited, was restarted, exited again, and the kubelet now backs off.
_CRASH_LOOP_TEMPLATE = (
    _NOW
    + "{{ $pod := . }}\n"
    + "{{ $annotations := or .metadata.annotations dict }}\n"
    + _annotation_or("exitCode", EXIT_CODE_ANNOTATION, "1")
    + _annotation_or("message", MESSAGE_ANNOTATION, "")
    + _annotation_or("reason", REASON_ANNOTATION, "Error")
    + "phase: Running\n"
    + _container_statuses(
        ready=False,
        started=False,
        restarts=1,
        last_state="""
terminated:
  exitCode: {{ atoi $exitCode }}
  reason: {{ $reason | Quote }}
  message: {{ $message | Quote }}
  startedAt: {{ $now | Quote }}
  finishedAt: {{ $now | Quote }}
""",
        state="""
waiting:
  reason: CrashLoopBackOff
  message: {{ printf "back-off 10s restarting failed container=%s pod=%s_%s(%s)"
              .name $pod.metadata.name $pod.metadata.namespace $pod.metadata.uid | Quote }}
""",
    )
    + _CONDITIONS_NOT_READY
    + _INIT_CONTAINERS_DONE
    + _POD_ADDRESSES
)

# The image cannot be pulled: the pod stays Pending with its containers waiting.
_IMAGE_PULL_ERROR_TEMPLATE = (
    _NOW
    + "phase: Pending\n"
    + _container_statuses(
        ready=False,
        started=False,
        restarts=0,
        state="""
waiting:
  reason: ImagePullBackOff
  message: {{ printf "Back-off pulling image %q" .image | Quote }}
""",
    )
    + _CONDITIONS_NOT_READY
    + _INIT_CONTAINERS_DONE
    + _POD_ADDRESSES
)

# Containers run but their readiness probes never pass.
_NOT_READY_TEMPLATE = (
    _NOW
    + "phase: Running\n"
    + _container_statuses(ready=False, started=True, restarts=0, state=_RUNNING)
    + _CONDITIONS_NOT_READY
    + _INIT_CONTAINERS_DONE
    + _POD_ADDRESSES
)

# A Job's pod whose containers all exited 0.
_JOB_POD_COMPLETE_TEMPLATE = (
    _NOW + "phase: Succeeded\n" + _container_statuses(ready=False, started=False, restarts=0, state=_COMPLETED)
)

# Every node condition healthy, stamped now: what a kubelet reports of a node with nothing wrong.
_NODE_CONDITIONS = """
{{ $now := Now }}
{{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $lastTransitionTime | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
"""

# Capacity, allocatable and addresses are left as nodes.py created them.
_NODE_INITIALIZE_TEMPLATE = (
    _NODE_CONDITIONS
    + """
{{ $nodeInfo := .status.nodeInfo }}
{{ $kwokVersion := printf "kwok-%s" Version }}
nodeInfo:
  architecture: {{ or $nodeInfo.architecture "amd64" }}
  bootID: {{ or $nodeInfo.bootID `""` }}
  containerRuntimeVersion: {{ or $nodeInfo.containerRuntimeVersion $kwokVersion }}
  kernelVersion: {{ or $nodeInfo.kernelVersion $kwokVersion }}
  kubeProxyVersion: {{ or $nodeInfo.kubeProxyVersion $kwokVersion }}
  kubeletVersion: {{ or $nodeInfo.kubeletVersion $kwokVersion }}
  machineID: {{ or $nodeInfo.machineID `""` }}
  operatingSystem: {{ or $nodeInfo.operatingSystem "linux" }}
  osImage: {{ or $nodeInfo.osImage `""` }}
  systemUUID: {{ or $nodeInfo.systemUUID `""` }}
phase: Running
"""
)

# Nodes and pods name their Ready condition alike, so their stages select on the same key.
_READY_CONDITION_KEY = '.status.conditions.[] | select( .type == "Ready" ) | .status'


def _stage(
    name: str, kind: str, selector: list[dict[str, Any]], next_step: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": kind},
            "selector": {"matchExpressions": selector},
            "next": next_step,
            **extra,
        },
    }


def _simulation_stage(simulation: Simulation, template: str) -> dict[str, Any]:
    selector = [
        {"key": _SIMULATE_KEY, "operator": "In", "values": [simulation.value]},
        _NOT_DELETED,
        _NOT_STARTED,
    ]
    return _stage(f"simulate-{simulation.value}", "Pod", selector, {"statusTemplate": template})


def stages() -> list[dict[str, Any]]:
    """Every stage kwok plays, for its `--config` file."""
    return [
        _stage(
            "node-initialize",
            "Node",
            [{"key": _READY_CONDITION_KEY, "operator": "NotIn", "values": ["True"]}],
            {"statusTemplate": _NODE_INITIALIZE_TEMPLATE},
        ),
        _stage(
            "node-heartbeat-with-lease",
            "Node",
            [
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": _READY_CONDITION_KEY, "operator": "In", "values": ["True"]},
            ],
            # With node leases the status heartbeat is rare (10-20 min), as a kubelet's is.
            {"statusTemplate": _NODE_CONDITIONS},
            delay={"durationMilliseconds": 600_000, "jitterDurationMilliseconds": 610_000},
        ),
        _stage(
            "pod-ready",
            "Pod",
            [
                _NOT_DELETED,
                _NOT_SIMULATED,
                {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                {"key": _READY_CONDITION_KEY, "operator": "NotIn", "values": ["True"]},
            ],
            {"statusTemplate": _POD_READY_TEMPLATE},
        ),
        _stage(
            "pod-complete",
            "Pod",
            [
                _NOT_DELETED,
                _NOT_SIMULATED,
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
            ],
            {"statusTemplate": _JOB_POD_COMPLETE_TEMPLATE},
        ),
        _stage(
            "pod-delete",
            "Pod",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
            {"delete": True},
        ),
        _simulation_stage(Simulation.CRASH_LOOP, _CRASH_LOOP_TEMPLATE),
        _simulation_stage(Simulation.IMAGE_PULL_ERROR, _IMAGE_PULL_ERROR_TEMPLATE),
        _simulation_stage(Simulation.NOT_READY, _NOT_READY_TEMPLATE),
    ]


def access_manifests() -> list[dict[str, Any]]:
    """RBAC for kwok's user (what a kubelet may do, plus deleting pods) and a flow schema.

    The flow schema puts the simulated kubelets in the `exempt` priority level, as KWOK's own
    deployment does: real kubelets do not queue behind workload controllers, and at scale neither must
    the thing standing in for a thousand of them.
    """
    name = "modeldeploy-devcluster-kwok"
    rules = [
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "update"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["nodes/status", "pods/status"], "verbs": ["patch", "update"]},
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "verbs": ["get", "list", "watch", "patch", "update", "delete"],
        },
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "watch", "create", "patch", "update"],
        },
    ]
    subject = {"kind": "User", "name": KWOK_USER, "apiGroup": "rbac.authorization.k8s.io"}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [subject],
        },
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": name},
            "spec": {
                "priorityLevelConfiguration": {"name": "exempt"},
                "matchingPrecedence": 1000,
                "rules": [
                    {
                        "subjects": [{"kind": "User", "user": {"name": KWOK_USER}}],
                        "resourceRules": [
                            {
                                "apiGroups": ["*"],
                                "resources": ["*"],
                                "verbs": ["*"],
                                "clusterScope": True,
                                "namespaces": ["*"],
                            }
                        ],
                    }
                ],
            },
        },
    ]

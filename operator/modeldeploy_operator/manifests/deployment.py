"""The Deployment that runs a ModelDeployment's replicas of the runtime."""

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modeldeploy_operator.api.quantity import parse_quantity
from modeldeploy_operator.api.resource import ModelDeployment
from modeldeploy_operator.api.v1alpha1 import ModelDeploymentSpec
from modeldeploy_operator.manifests.access import AccessPlan, plan_access
from modeldeploy_operator.manifests.content_hash import content_hash
from modeldeploy_operator.manifests.labels import (
    TEMPLATE_HASH_ANNOTATION,
    child_metadata,
    common_labels,
    selector_labels,
)
from modeldeploy_operator.manifests.model_source import ModelDelivery, plan_model_delivery
from modeldeploy_operator.manifests.service import RUNTIME_PORT_NAME

RUNTIME_CONTAINER = "runtime"
FETCH_CONTAINER = "fetch-model"
RUNTIME_PORT = 8080
RUNTIME_UID = 65532  # the runtime image's own user
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
STARTUP_PROBE_PERIOD_SECONDS = 10
RUNTIME_COMMAND = ["python", "-m", "modeldeploy_runtime"]
# Runtime settings chosen for a pod behind a Service, which spec.runtime.env may change. After SIGTERM the pod
# leaves the Service's endpoints within a few seconds; the runtime serves on meanwhile instead of refusing.
# Shutdown delay, drain grace (25 s) and connection close (5 s) fit in the pod's grace period.
RUNTIME_ENV_DEFAULTS = {"MODELDEPLOY_SHUTDOWN_DELAY_S": "5"}
TERMINATION_GRACE_PERIOD_SECONDS = 60
CA_BUNDLE_VOLUME = "model-ca-bundle"
CA_BUNDLE_MOUNT_PATH = "/etc/modeldeploy/model-ca"


@dataclass(frozen=True)
class BuildOptions:
    """What the builders take from the operator's configuration and from other controllers."""

    default_runtime_image: str
    # An HPA that targets the Deployment itself owns its replica count; we must not fight it.
    replicas_owned_by_autoscaler: bool = False
    # No GPU is free for a surge replica: replace one replica at a time instead (reconcile/rollout.py).
    replace_in_place: bool = False


def build_deployment(md: ModelDeployment, options: BuildOptions) -> dict[str, Any]:
    spec = md.spec
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(md.name)},
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": spec.progress_deadline_seconds,
        "strategy": _strategy(spec, options),
        "template": _pod_template(md, options),
    }
    if not options.replicas_owned_by_autoscaler:
        deployment_spec = {"replicas": spec.replicas, **deployment_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(md),
        "spec": deployment_spec,
    }


def _strategy(spec: ModelDeploymentSpec, options: BuildOptions) -> dict[str, Any]:
    if options.replace_in_place:
        rolling_update: dict[str, Any] = {"maxSurge": 0, "maxUnavailable": 1}
    else:
        rolling_update = {"maxSurge": spec.rollout.max_surge, "maxUnavailable": spec.rollout.max_unavailable}
    return {"type": "RollingUpdate", "rollingUpdate": rolling_update}


def _pod_template(md: ModelDeployment, options: BuildOptions) -> dict[str, Any]:
    """The pod template, annotated with its own hash so every pod says which version it runs."""
    spec = md.spec
    template = {
        "metadata": {
            "labels": {**spec.pod_metadata.labels, **common_labels(md.name, md.model_name)},
            "annotations": {
                **spec.pod_metadata.annotations,
                "kubectl.kubernetes.io/default-container": RUNTIME_CONTAINER,
            },
        },
        "spec": _pod_spec(
            md, plan_model_delivery(spec.model.uri, spec.model.download_size_limit), plan_access(spec.access), options
        ),
    }
    template["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] = content_hash(template)
    return template


def template_hash(obj: Mapping[str, Any] | None) -> str | None:
    """The version a pod runs, or the version of the pod template of a Deployment or ReplicaSet."""
    template = ((obj or {}).get("spec") or {}).get("template")
    metadata = (template if template is not None else obj or {}).get("metadata") or {}
    annotations: Mapping[str, str] = metadata.get("annotations") or {}
    return annotations.get(TEMPLATE_HASH_ANNOTATION)


def _pod_spec(
    md: ModelDeployment, delivery: ModelDelivery, access: AccessPlan, options: BuildOptions
) -> dict[str, Any]:
    spec = md.spec
    image = spec.runtime.image or options.default_runtime_image
    volumes = [{"name": "tmp", "emptyDir": {}}, *delivery.volumes, *access.volumes]
    if spec.gpu.shared_memory is not None:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": str(spec.gpu.shared_memory)}})
    pod: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "fsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # The runtime never talks to the API server, and service links only pollute its environment.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_PERIOD_SECONDS,
        "containers": [_runtime_container(md, delivery, access, image)],
        "volumes": volumes,
    }
    if delivery.fetch_uri is not None:
        pod["initContainers"] = [_fetch_container(md, delivery, image)]
        if spec.model.ca_bundle is not None:
            bundle = spec.model.ca_bundle
            volumes.append({"name": CA_BUNDLE_VOLUME, "configMap": {"name": bundle.config_map_name}})
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": ref.name} for ref in spec.image_pull_secrets]
    if spec.scheduling.node_selector:
        pod["nodeSelector"] = dict(spec.scheduling.node_selector)
    if tolerations := _tolerations(spec):
        pod["tolerations"] = tolerations
    if affinity := _affinity(spec):
        pod["affinity"] = affinity
    if spec.scheduling.priority_class_name:
        pod["priorityClassName"] = spec.scheduling.priority_class_name
    if spec.scheduling.runtime_class_name:
        pod["runtimeClassName"] = spec.scheduling.runtime_class_name
    return pod


def _container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _runtime_container(md: ModelDeployment, delivery: ModelDelivery, access: AccessPlan, image: str) -> dict[str, Any]:
    spec = md.spec
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, *(dict(mount) for mount in delivery.mounts), *access.mounts]
    if spec.gpu.shared_memory is not None:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    container: dict[str, Any] = {
        "name": RUNTIME_CONTAINER,
        "image": image,
        "imagePullPolicy": spec.runtime.image_pull_policy,
        "command": [*RUNTIME_COMMAND, "serve"],
        "env": _runtime_env(md, delivery, access),
        "ports": [{"name": RUNTIME_PORT_NAME, "containerPort": RUNTIME_PORT, "protocol": "TCP"}],
        "startupProbe": _http_probe(
            READY_PATH,
            access.scheme,
            period=STARTUP_PROBE_PERIOD_SECONDS,
            timeout=5,
            failures=math.ceil(spec.runtime.startup_timeout_seconds / STARTUP_PROBE_PERIOD_SECONDS),
        ),
        "readinessProbe": _http_probe(READY_PATH, access.scheme, period=5, timeout=3, failures=3),
        "livenessProbe": _http_probe(LIVE_PATH, access.scheme, period=10, timeout=5, failures=6),
        "resources": _resources(spec),
        "securityContext": _container_security_context(),
        # An empty termination message falls back to the log tail, so crash reasons reach the status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
    return container


def _fetch_container(md: ModelDeployment, delivery: ModelDelivery, image: str) -> dict[str, Any]:
    model = md.spec.model
    env = [
        {"name": "MODELDEPLOY_MODEL_URI", "value": delivery.fetch_uri},
        {"name": "MODELDEPLOY_MODEL_DEST", "value": delivery.mounts[0]["mountPath"]},
        # The download stops, with a reason the status shows, before the kubelet would evict the pod for it.
        {"name": "MODELDEPLOY_FETCH_MAX_BYTES", "value": str(int(parse_quantity(model.download_size_limit)))},
    ]
    if model.sha256:
        env.append({"name": "MODELDEPLOY_MODEL_SHA256", "value": model.sha256})
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, *(dict(mount) for mount in delivery.mounts)]
    if model.ca_bundle is not None:
        # Python's default TLS context reads SSL_CERT_FILE: the bundle replaces the image's public CAs.
        env.append({"name": "SSL_CERT_FILE", "value": f"{CA_BUNDLE_MOUNT_PATH}/{model.ca_bundle.key}"})
        mounts.append({"name": CA_BUNDLE_VOLUME, "mountPath": CA_BUNDLE_MOUNT_PATH, "readOnly": True})
    return {
        "name": FETCH_CONTAINER,
        "image": image,
        "imagePullPolicy": md.spec.runtime.image_pull_policy,
        "command": [*RUNTIME_COMMAND, "fetch"],
        "env": env,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": _container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }


def _runtime_env(md: ModelDeployment, delivery: ModelDelivery, access: AccessPlan) -> list[dict[str, Any]]:
    spec = md.spec
    settings: dict[str, str | None] = {
        "MODELDEPLOY_MODEL_NAME": md.model_name,
        "MODELDEPLOY_MODEL_PATH": delivery.model_path,
        "MODELDEPLOY_MODEL_FORMAT": spec.model.format,
        "MODELDEPLOY_MODEL_SHA256": spec.model.sha256 if delivery.verify_in_runtime else None,
        "MODELDEPLOY_PORT": str(RUNTIME_PORT),
        "MODELDEPLOY_DEVICE": "cuda" if spec.gpu.count > 0 else "cpu",
        "MODELDEPLOY_DTYPE": spec.runtime.dtype,
        "MODELDEPLOY_MAX_BATCH_SIZE": str(spec.runtime.max_batch_size),
        "MODELDEPLOY_MAX_BATCH_DELAY_MS": str(spec.runtime.max_batch_delay_ms),
        "MODELDEPLOY_MAX_QUEUE_SIZE": _optional(spec.runtime.max_queue_size),
        "MODELDEPLOY_MAX_NUM_SEQS": _optional(spec.runtime.max_num_seqs),
        "MODELDEPLOY_MAX_MODEL_LEN": _optional(spec.runtime.max_model_len),
        "MODELDEPLOY_EXIT_ON_LOAD_FAILURE": "true",
    }
    env: dict[str, dict[str, Any]] = {
        name: {"name": name, "value": value}
        for name, value in {**settings, **access.env, **RUNTIME_ENV_DEFAULTS}.items()
        if value is not None
    }
    if "memory" in spec.runtime.resources.limits:
        # The runtime sizes the request bytes it holds at once from it (its intake budget).
        env["MODELDEPLOY_MEMORY_LIMIT_BYTES"] = {
            "name": "MODELDEPLOY_MEMORY_LIMIT_BYTES",
            "valueFrom": {"resourceFieldRef": {"containerName": RUNTIME_CONTAINER, "resource": "limits.memory"}},
        }
    if "cpu" in spec.runtime.resources.limits:
        # torch sizes its thread pools from the node's cores, not the container's share of them (docs/runtime.md):
        # in millicores, so the runtime rounds a fractional limit up itself.
        env["MODELDEPLOY_CPU_LIMIT_MILLICORES"] = {
            "name": "MODELDEPLOY_CPU_LIMIT_MILLICORES",
            "valueFrom": {
                "resourceFieldRef": {"containerName": RUNTIME_CONTAINER, "resource": "limits.cpu", "divisor": "1m"}
            },
        }
    for user_var in spec.runtime.env:  # may change RUNTIME_ENV_DEFAULTS; the schema refuses our other names
        env[user_var.name] = user_var.model_dump(by_alias=True, exclude_none=True)
    return list(env.values())


def _optional(value: int | None) -> str | None:
    """A setting left unset in the spec stays unset in the pod: the runtime's default applies."""
    return None if value is None else str(value)


def _http_probe(path: str, scheme: str, *, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": RUNTIME_PORT_NAME, "scheme": scheme},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _resources(spec: ModelDeploymentSpec) -> dict[str, Any]:
    requests = {name: str(value) for name, value in spec.runtime.resources.requests.items()}
    limits = {name: str(value) for name, value in spec.runtime.resources.limits.items()}
    if spec.gpu.count > 0:
        limits[spec.gpu.resource_name] = str(spec.gpu.count)
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return resources


def gpu_taint_key(resource_name: str) -> str:
    """Device plugins taint GPU nodes with '<vendor domain>/gpu', whatever slice (MIG) the pod asks for."""
    return resource_name.split("/", 1)[0] + "/gpu"


def _tolerations(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.scheduling.tolerations]
    if spec.gpu.count > 0:
        gpu_toleration = {
            "key": gpu_taint_key(spec.gpu.resource_name),
            "operator": "Exists",
            "effect": "NoSchedule",
        }
        if gpu_toleration not in tolerations:
            tolerations.append(gpu_toleration)
    return tolerations


def _affinity(spec: ModelDeploymentSpec) -> dict[str, Any] | None:
    affinity = copy.deepcopy(spec.scheduling.affinity) if spec.scheduling.affinity else {}
    products = [spec.gpu.product] if spec.gpu.product else list(spec.gpu.products or [])
    if products and spec.gpu.count > 0:
        requirement = {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": products}
        node_affinity = affinity.setdefault("nodeAffinity", {})
        required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
        terms = required.setdefault("nodeSelectorTerms", [])
        if not terms:
            terms.append({})
        # Terms are ORed: the product must hold in each of them for it to hold at all.
        for term in terms:
            term.setdefault("matchExpressions", []).append(requirement)
    return affinity or None

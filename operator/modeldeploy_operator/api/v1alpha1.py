"""ModelDeployment v1alpha1: the one source of truth for the resource's shape.

The CRD in crds/ is rendered from these models (``python -m modeldeploy_operator.api.crd``) and a test keeps
the two in step, so every field's type, default, bounds, description and CEL rule lives here once. The operator
parses each object into these frozen models once (api/resource.py); the apiserver has already enforced the same
rules at apply time, so a parse failure means a schema/operator version skew or one of the few checks CEL cannot
express (the validators below), reported as a permanent error.
"""

import posixpath
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema, field_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict
from pydantic_core import PydanticCustomError

from modeldeploy_operator.api.quantity import QUANTITY_PATTERN

GROUP = "serving.modeldeploy.dev"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ("md",)
API_VERSION = f"{GROUP}/{VERSION}"

DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
# Server-side apply sends manifests as YAML, which cannot carry other control characters: refuse them up front.
YAML_PRINTABLE = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x84\x86-\x9F]*$"
MAX_GPUS_PER_POD = 16
MODEL_URI_SCHEMES = ("pvc", "https", "file")


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One CEL rule for x-kubernetes-validations; the message names the field and what is allowed."""
    validation: JsonDict = {"rule": rule, "message": message}
    if field_path:
        validation["fieldPath"] = field_path
    return validation


Quantity = Annotated[
    str | int,
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
DnsLabel = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
FreeFormObject = Annotated[
    dict[str, Any], WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})
]
GpuProduct = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", max_length=63)]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


class CaBundle(_Model):
    """PEM certificates in a ConfigMap of the ModelDeployment's namespace (as trust-manager writes them)."""

    config_map_name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)] = (
        Field(description="Name of the ConfigMap.")
    )
    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)] = Field(
        default="ca.crt", description="Key of the PEM bundle in the ConfigMap."
    )


class ModelSource(_Model):
    """Which model to serve and where its file comes from."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.caBundle) || self.uri.startsWith('https://')",
                    "model.caBundle applies to https:// model URIs only",
                ),
                cel(
                    "!has(self.format) || self.format != 'huggingface' || !self.uri.startsWith('https://') "
                    "|| self.uri.matches('^[^?#]+[.](tar|tar[.]gz|tgz)([?#].*)?$')",
                    "model.uri of a huggingface model fetched over https must name a .tar, .tar.gz or .tgz "
                    "archive of the model directory",
                ),
                cel(
                    "!has(self.format) || self.format != 'huggingface' || !has(self.sha256) "
                    "|| self.uri.startsWith('https://')",
                    "model.sha256 of a huggingface model covers its archive: only an https:// archive has one",
                ),
            ]
        }
    )

    name: DnsLabel | None = Field(
        default=None,
        description="Name the model is served under (the {name} in /v2/models/{name}/infer). "
        "Defaults to metadata.name. Lowercase letters, digits and '-', at most 63 characters.",
    )
    uri: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="Where the model file is: pvc://CLAIM/PATH (the claim is mounted read-only, no copy), "
        "https://HOST/PATH (fetched by an init container before the server starts), or file:///PATH "
        "(a file baked into the runtime image).",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.matches('^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[^/].*$') "
                    "|| self.matches('^https://[^/\\\\s]+/[^\\\\s]+$') || self.matches('^file:///[^\\\\s]+$')",
                    "model.uri must be pvc://CLAIM/PATH, https://HOST/PATH or file:///PATH",
                )
            ]
        },
    )
    format: Literal["torchscript", "exported-program", "huggingface"] | None = Field(
        default=None,
        description="Serialization of the model: torchscript (torch.jit.save), exported-program "
        "(torch.export.save, .pt2), or huggingface: a Hugging Face model directory (config.json, *.safetensors, "
        "tokenizer files) served for text generation behind OpenAI-compatible endpoints; its uri names the "
        "directory (pvc://CLAIM/DIR, file:///DIR) or a .tar/.tar.gz/.tgz archive of it (https://). Inferred by "
        "the runtime when not set.",
    )
    sha256: Annotated[str, StringConstraints(pattern=r"^[a-f0-9]{64}$")] | None = Field(
        default=None,
        description="Expected SHA-256 of the model file (for huggingface: of the archive), 64 lowercase hex "
        "digits. Verified before the model is served; a mismatch stops the rollout with reason ChecksumMismatch.",
    )
    ca_bundle: CaBundle | None = Field(
        default=None,
        description="CA certificates that https:// model stores are verified against instead of the runtime "
        "image's public ones (a store with a certificate from an internal CA).",
    )
    download_size_limit: Quantity = Field(
        default="20Gi",
        description="Most an https:// model may take on the node: the size limit of the volume it is downloaded "
        "into. A larger download fails with reason FetchFailed before the kubelet would evict the pod.",
    )

    @field_validator("uri")
    @classmethod
    def _servable_uri(cls, uri: str) -> str:
        """Beyond the CEL rule (which the apiserver enforces, and an older CRD may lack): an https:// model is
        saved under the URI's file name, so the URI must have one."""
        scheme, _, _ = uri.partition("://")
        if scheme not in MODEL_URI_SCHEMES:
            message = "scheme '{scheme}' is not supported; use pvc://, https:// or file://"
            raise PydanticCustomError("model_uri_scheme", message, {"scheme": scheme})
        if scheme == "https" and not posixpath.basename(urlsplit(uri).path):
            raise PydanticCustomError("model_uri_file_name", "'{uri}' must end in a file name", {"uri": uri})
        return uri


class GpuSpec(_Model):
    """GPUs for each replica and where they may come from."""

    model_config = ConfigDict(
        json_schema_extra={
            "default": {},
            "x-kubernetes-validations": [
                cel(
                    "(!has(self.product) && !has(self.products)) || self.count > 0",
                    "gpu.product and gpu.products can only be set when gpu.count is greater than 0",
                ),
                cel(
                    "!(has(self.product) && has(self.products))",
                    "set gpu.product (one GPU model) or gpu.products (a list), not both",
                ),
            ],
        }
    )

    count: Annotated[int, Field(ge=0, le=MAX_GPUS_PER_POD)] = Field(
        default=0,
        description=f"GPUs per replica, 0 to {MAX_GPUS_PER_POD}. 0 runs on the CPU; more than 0 sets the "
        "GPU resource limit and tolerates the nvidia.com/gpu taint.",
    )
    product: GpuProduct | None = Field(
        default=None,
        description="GPU model the replicas must run on, matched against the nvidia.com/gpu.product node label "
        "(set by NVIDIA GPU feature discovery) as required node affinity, e.g. NVIDIA-H100-80GB-HBM3.",
    )
    products: Annotated[list[GpuProduct], Field(min_length=1, max_length=32)] | None = Field(
        default=None,
        description="Several GPU models the replicas may run on (any of them); use instead of gpu.product.",
    )
    resource_name: Annotated[
        str,
        StringConstraints(
            pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}/[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$",
            max_length=253,
        ),
    ] = Field(
        default=DEFAULT_GPU_RESOURCE,
        description="Extended resource that counts GPUs: nvidia.com/gpu, or a MIG slice such as "
        "nvidia.com/mig-1g.10gb, or another vendor's (amd.com/gpu).",
    )
    shared_memory: Quantity | None = Field(
        default=None,
        description="Size of an in-memory /dev/shm for the runtime (e.g. 2Gi); PyTorch data loaders and NCCL "
        "need more than the container default of 64Mi.",
    )


def _limit_not_below_request(resource: str) -> JsonDict:
    return cel(
        f"!(has(self.requests) && has(self.limits) && '{resource}' in self.requests && '{resource}' in self.limits) || "
        f"!quantity(string(self.limits['{resource}'])).isLessThan(quantity(string(self.requests['{resource}'])))",
        f"runtime.resources.limits.{resource} must be at least runtime.resources.requests.{resource}",
    )


_CONTAINER_RESOURCES = "['cpu', 'memory', 'ephemeral-storage']"


class ResourceRequirements(_Model):
    """CPU and memory for the runtime container. GPUs are set by gpu.count, not here."""

    model_config = ConfigDict(
        json_schema_extra={
            "default": {},
            "x-kubernetes-validations": [
                cel(
                    f"(!has(self.requests) || self.requests.all(k, k in {_CONTAINER_RESOURCES} "
                    "|| k.startsWith('hugepages-'))) && "
                    f"(!has(self.limits) || self.limits.all(k, k in {_CONTAINER_RESOURCES} "
                    "|| k.startsWith('hugepages-')))",
                    "runtime.resources may name only cpu, memory, ephemeral-storage and hugepages-*; "
                    "set GPUs with gpu.count and gpu.resourceName",
                ),
                _limit_not_below_request("cpu"),
                _limit_not_below_request("memory"),
            ],
        }
    )

    # maxProperties bounds the cost of the CEL rules above, which the apiserver estimates before accepting them.
    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=8,
        description="Minimum resources, e.g. {cpu: '2', memory: 8Gi}.",
        json_schema_extra={"maxProperties": 8},
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=8,
        description="Maximum resources, e.g. {memory: 8Gi}.",
        json_schema_extra={"maxProperties": 8},
    )


# The runtime settings the operator sets from the spec, or that its probes, Service and status rely on. A user's
# variable of the same name would make the status or the probes lie, so the schema refuses it.
OPERATOR_SET_RUNTIME_ENV = (
    "MODELDEPLOY_MODEL_NAME",
    "MODELDEPLOY_MODEL_PATH",
    "MODELDEPLOY_MODEL_FORMAT",
    "MODELDEPLOY_MODEL_SHA256",
    "MODELDEPLOY_HOST",
    "MODELDEPLOY_PORT",
    "MODELDEPLOY_DEVICE",
    "MODELDEPLOY_DTYPE",
    "MODELDEPLOY_MAX_BATCH_SIZE",
    "MODELDEPLOY_MAX_BATCH_DELAY_MS",
    "MODELDEPLOY_MAX_QUEUE_SIZE",
    "MODELDEPLOY_MAX_NUM_SEQS",
    "MODELDEPLOY_MAX_MODEL_LEN",
    "MODELDEPLOY_EXIT_ON_LOAD_FAILURE",
    "MODELDEPLOY_TERMINATION_LOG",
    "MODELDEPLOY_MEMORY_LIMIT_BYTES",
    "MODELDEPLOY_CPU_LIMIT_MILLICORES",
    # spec.access: a variable could otherwise turn the keys, the audit or TLS off behind the spec's back.
    "MODELDEPLOY_API_KEYS_DIR",
    "MODELDEPLOY_KEY_REQUESTS_PER_SECOND",
    "MODELDEPLOY_KEY_REQUESTS_BURST",
    "MODELDEPLOY_KEY_TOKENS_PER_MINUTE",
    "MODELDEPLOY_KEY_TOKENS_BURST",
    "MODELDEPLOY_AUDIT",
    "MODELDEPLOY_AUDIT_PAYLOADS",
    "MODELDEPLOY_TLS_CERT_FILE",
    "MODELDEPLOY_TLS_KEY_FILE",
)


class EnvVar(_Model):
    """An environment variable for the runtime container."""

    name: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", max_length=256)] = Field(
        description="Variable name. Not one the operator sets: " + ", ".join(OPERATOR_SET_RUNTIME_ENV) + ".",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(self in [" + ", ".join(f"'{name}'" for name in OPERATOR_SET_RUNTIME_ENV) + "])",
                    "runtime.env cannot set a variable the operator sets from the spec; use spec.model, "
                    "spec.gpu.count and spec.runtime (maxBatchSize, maxBatchDelayMs, maxQueueSize, maxNumSeqs, "
                    "maxModelLen, dtype) instead",
                )
            ]
        },
    )
    value: Annotated[str, StringConstraints(pattern=YAML_PRINTABLE)] | None = Field(
        default=None, description="Literal value; no control characters other than tab and newlines."
    )
    value_from: FreeFormObject | None = Field(
        default=None,
        description="A source for the value (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef), "
        "exactly as in a Pod's env.",
    )


class RuntimeSpec(_Model):
    """The inference server container: image, resources, batching and environment."""

    model_config = ConfigDict(json_schema_extra={"default": {}})

    image: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = Field(
        default=None, description="Runtime image. Defaults to the operator's configured runtime image."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="When the kubelet pulls the image."
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements,
        description="CPU and memory requests and limits for the runtime container.",
    )
    max_batch_size: Annotated[int, Field(ge=1, le=1024)] = Field(
        default=32,
        description="Most rows (items along the first dimension) the dynamic batcher runs in one forward pass, "
        "1 to 1024; a single request with more rows is refused with 400.",
    )
    max_batch_delay_ms: Annotated[int, Field(ge=0, le=10000)] = Field(
        default=5,
        description="Longest a request waits for others to fill a batch, in milliseconds (0-10000).",
    )
    max_queue_size: Annotated[int, Field(ge=1, le=1000000)] | None = Field(
        default=None,
        description="Requests allowed to wait; beyond it the server answers 429 with Retry-After. "
        "Runtime default when unset.",
    )
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        default="float32", description="Precision the model runs in: float32, float16 or bfloat16."
    )
    max_num_seqs: Annotated[int, Field(ge=1, le=4096)] | None = Field(
        default=None,
        description="Text generation (model.format huggingface): most sequences generated at once, 1 to 4096 "
        "(vLLM's max_num_seqs); more wait, up to maxQueueSize, then 429. Runtime default (32) when unset.",
    )
    max_model_len: Annotated[int, Field(ge=16, le=1048576)] | None = Field(
        default=None,
        description="Text generation (model.format huggingface): most tokens of prompt plus completion, 16 to "
        "1048576 and at most the model's own context length (vLLM's max_model_len); sizes the KV cache with "
        "maxNumSeqs. The model's context length when unset.",
    )
    startup_timeout_seconds: Annotated[int, Field(ge=30, le=86400)] = Field(
        default=1800,
        description="How long the model may take to load and warm up before the container is restarted "
        "(the startup probe's budget), 30 to 86400 seconds; the default 30 minutes fits reading tens of GiB "
        "of weights.",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=256,
        description="Extra environment variables, at most 256, e.g. the runtime's other MODELDEPLOY_* settings "
        "(MODELDEPLOY_MODEL_WORKERS, MODELDEPLOY_REQUEST_TIMEOUT_S, MODELDEPLOY_LOG_LEVEL).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class Toleration(_Model):
    """A toleration, as in a Pod spec."""

    key: str | None = Field(default=None, description="Taint key; empty with operator Exists tolerates all.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value, for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; all effects when empty."
    )
    toleration_seconds: int | None = Field(
        default=None, description="For NoExecute: how long the pod stays bound after the taint appears."
    )


class SchedulingSpec(_Model):
    """Where the replicas may run, on top of what gpu implies."""

    model_config = ConfigDict(json_schema_extra={"default": {}})

    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the replicas require.")
    tolerations: list[Toleration] = Field(
        default_factory=list,
        description="Extra tolerations. The toleration for the GPU resource's taint is added when gpu.count > 0.",
    )
    affinity: FreeFormObject | None = Field(
        default=None,
        description="Pod affinity/anti-affinity and node affinity, as in a Pod spec. The gpu.product "
        "requirement is added to every required node selector term.",
    )
    priority_class_name: str | None = Field(default=None, description="PriorityClass of the replicas.")
    runtime_class_name: str | None = Field(
        default=None,
        description="RuntimeClass for the replicas (e.g. nvidia, when GPUs need the NVIDIA runtime).",
    )


class ServiceSpec(_Model):
    """How the model is reached inside (or outside) the cluster."""

    model_config = ConfigDict(json_schema_extra={"default": {}})

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Service type: ClusterIP, NodePort or LoadBalancer."
    )
    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=80,
        description="Port the Service listens on, 1-65535; it forwards to the runtime's HTTP port.",
    )


class PodMetadata(_Model):
    """Labels and annotations added to every replica's Pod."""

    model_config = ConfigDict(json_schema_extra={"default": {}})

    labels: dict[str, str] = Field(default_factory=dict, description="Extra Pod labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra Pod annotations.")


class LocalObjectReference(_Model):
    """A reference to an object in the same namespace."""

    name: DnsLabel = Field(description="Name of the object.")


PERCENT_PATTERN = r"^(100|[1-9]?[0-9])%$"
IntOrPercent = Annotated[
    Annotated[int, Field(ge=0)] | Annotated[str, StringConstraints(pattern=PERCENT_PATTERN)],
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": 0,  # for integers; the pattern for strings
            "pattern": PERCENT_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


def resolve_int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """A count, or a percentage of `total` rounded as the Deployment controller rounds it."""
    if isinstance(value, int):
        return value
    share = total * int(value.rstrip("%"))
    return -(-share // 100) if round_up else share // 100


class RolloutSpec(_Model):
    """How a new pod template replaces the running one, and what happens when it fails."""

    model_config = ConfigDict(
        json_schema_extra={
            "default": {},
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.maxSurge) && (self.maxSurge == 0 || self.maxSurge == '0%') "
                    "&& has(self.maxUnavailable) && (self.maxUnavailable == 0 || self.maxUnavailable == '0%'))",
                    "rollout.maxSurge and rollout.maxUnavailable cannot both be 0: the rollout could never start",
                )
            ],
        }
    )

    max_surge: IntOrPercent = Field(
        default=1,
        description="Replicas a rollout may start beyond spec.replicas (a count, or a percentage rounded up). "
        "Each needs its own GPUs; see whenNoSpareGpu.",
    )
    max_unavailable: IntOrPercent = Field(
        default="25%",
        description="Replicas that may be unavailable, during a rollout and otherwise (a count, or a percentage "
        "rounded down); the Available condition holds while at least spec.replicas minus this many serve.",
    )
    when_no_spare_gpu: Literal["ReplaceInPlace", "Wait"] = Field(
        default="ReplaceInPlace",
        description="When maxUnavailable comes to 0 and a surge replica finds no free GPU: ReplaceInPlace "
        "replaces one running replica at a time (one fewer serves meanwhile); Wait keeps every old replica "
        "serving until a GPU frees up, or until progressDeadlineSeconds passes and the rollout counts as failed.",
    )
    auto_rollback: bool = Field(
        default=True,
        description="When a new pod template fails before it ever became Ready (crash loop, model load or "
        "checksum failure, image pull, progress deadline), put the Deployment back on the last template that "
        "became Ready. The spec stays as written; the failed template is not retried until the spec changes it.",
    )

    def allowed_unavailable(self, replicas: int) -> int:
        unavailable = resolve_int_or_percent(self.max_unavailable, replicas, round_up=False)
        # As the Deployment controller does: with no surge allowed, one replica at a time may go.
        if unavailable == 0 and resolve_int_or_percent(self.max_surge, replicas, round_up=True) == 0:
            return 1
        return unavailable


DnsSubdomain = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", max_length=253)
]


class KeyLimits(_Model):
    """Limits each API key gets on its own: one noisy key never uses up another's share."""

    model_config = ConfigDict(
        json_schema_extra={
            "default": {},
            "x-kubernetes-validations": [
                cel(
                    "!has(self.requestsPerSecond) || self.requestsPerSecond > 0.0",
                    "apiKeys.limits.requestsPerSecond must be greater than 0; leave it out for no limit",
                )
            ],
        }
    )

    requests_per_second: Annotated[float, Field(ge=0.001, le=1_000_000)] | None = Field(
        default=None,
        description="Requests per second each key may send, per replica; over it: 429 with Retry-After.",
    )
    requests_burst: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        default=None, description="Requests a key may send at once above its rate; default: one second's worth."
    )
    tokens_per_minute: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = Field(
        default=None,
        description="Tokens (read and written) per minute each key may use, per replica; text models only.",
    )
    tokens_burst: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = Field(
        default=None, description="Tokens a key may use at once above its rate; default: one minute's worth."
    )


class ApiKeys(_Model):
    """Who may call the model: holders of a key whose SHA-256 is in a Secret."""

    secret_name: DnsSubdomain = Field(
        description="Secret in the same namespace: one entry per key owner, named after the owner, whose value is "
        "the SHA-256 of the key in hex (never the key). Clients send 'Authorization: Bearer <key>'. Changes take "
        "effect within a minute, without a restart."
    )
    limits: KeyLimits = Field(default_factory=KeyLimits, description="Limits per key.")


class Audit(_Model):
    """One JSON line per request on the runtime's stdout: who called what, how it went (docs/runtime.md)."""

    model_config = ConfigDict(json_schema_extra={"default": {}})

    enabled: bool | None = Field(default=None, description="Default: on when apiKeys is set.")
    payloads: bool = Field(default=False, description="Add each request's body to its line (base64).")


class Tls(_Model):
    """HTTPS for the runtime."""

    secret_name: DnsSubdomain = Field(
        description="Secret of type kubernetes.io/tls in the same namespace (as cert-manager writes it). A renewed "
        "certificate is served without a restart."
    )


class NetworkPeer(_Model):
    """Who else may connect, as a NetworkPolicy peer."""

    namespace_selector: FreeFormObject | None = Field(default=None, description="Namespaces, by label.")
    pod_selector: FreeFormObject | None = Field(
        default=None, description="Pods, by label (in the namespaces namespaceSelector picks, else this one)."
    )
    ip_block: FreeFormObject | None = Field(default=None, description="Addresses: {cidr, except}.")


class AccessSpec(_Model):
    """Who may call the model and how: API keys with limits, audit, TLS, and the network policy."""

    model_config = ConfigDict(json_schema_extra={"default": {}})

    api_keys: ApiKeys | None = Field(
        default=None,
        description="Require an API key on every route but health, readiness and metrics. Required for "
        "service.type NodePort or LoadBalancer.",
    )
    audit: Audit = Field(default_factory=Audit, description="The audit log.")
    tls: Tls | None = Field(default=None, description="Serve HTTPS; the probes and the Service follow.")
    allowed_from: Annotated[list[NetworkPeer], Field(max_length=64)] = Field(
        default_factory=list,
        description="Who may connect besides pods in the same namespace (the NetworkPolicy's other peers). With "
        "service.type NodePort or LoadBalancer, any address may.",
    )


class ModelDeploymentSpec(_Model):
    """The desired state of a model service."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "(!has(self.runtime.maxNumSeqs) && !has(self.runtime.maxModelLen)) "
                    "|| (has(self.model.format) && self.model.format == 'huggingface')",
                    "runtime.maxNumSeqs and runtime.maxModelLen apply to text generation: set "
                    "model.format: huggingface",
                ),
                cel(
                    "!has(self.service) || !(self.service.type in ['NodePort', 'LoadBalancer'])"
                    " || (has(self.access) && has(self.access.apiKeys))",
                    "service.type NodePort or LoadBalancer publishes the model outside the cluster: set "
                    "access.apiKeys so that only key holders can call it",
                    ".access",
                ),
            ]
        }
    )

    model: ModelSource = Field(description="The model to serve.")
    replicas: Annotated[int, Field(ge=0, le=10000)] = Field(
        default=1,
        description="Number of replicas, 0 to 10000. Also set by `kubectl scale` and by an HPA targeting this "
        "ModelDeployment; while an HPA targets the Deployment directly, the HPA's count wins.",
    )
    gpu: GpuSpec = Field(default_factory=GpuSpec, description="GPUs per replica.")
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec, description="The inference server container.")
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec, description="Node placement.")
    service: ServiceSpec = Field(default_factory=ServiceSpec, description="The Service in front of the replicas.")
    pod_metadata: PodMetadata = Field(default_factory=PodMetadata, description="Extra Pod labels and annotations.")
    service_account_name: DnsLabel | None = Field(
        default=None,
        description="ServiceAccount the replicas run as (e.g. one with access to a PVC's storage). "
        "Its API token is not mounted.",
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, description="Secrets for pulling the runtime image from a private registry."
    )
    progress_deadline_seconds: Annotated[int, Field(ge=60, le=86400)] = Field(
        default=900,
        description="How long a rollout may make no progress before it is reported as ProgressDeadlineExceeded, "
        "60 to 86400 seconds.",
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec, description="Rolling updates: surge, unavailability, automatic rollback."
    )
    access: AccessSpec = Field(
        default_factory=AccessSpec,
        description="Who may call the model: API keys and their limits, the audit log, TLS, the network policy.",
    )


class Condition(_Model):
    """A condition, following the Kubernetes (metav1.Condition) and kstatus conventions."""

    type: str = Field(description="Ready, Available, Progressing, Degraded, Stalled or RolledBack.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word for why.")
    message: str = Field(default="", description="What happened, in words a user can act on.")
    last_transition_time: datetime = Field(description="When the status last changed.")
    observed_generation: int | None = Field(default=None, description="The generation this was computed for.")


class LastFailure(_Model):
    """The last thing that went wrong."""

    reason: str = Field(
        description="Unschedulable, ImagePullBackOff, CreateContainerConfigError, CrashLoopBackOff, ModelLoadFailed, "
        "FetchFailed, ChecksumMismatch, ReplicaFailure, ProgressDeadlineExceeded, InvalidSpec or ApplyFailed."
    )
    message: str = Field(description="Why, with what to do about it.")
    time: datetime = Field(description="When it was seen.")


MAX_REVISIONS = 10


class Revision(_Model):
    """One pod template the spec asked for, and how it went."""

    generation: int = Field(description="The spec generation that first asked for it.")
    template_hash: str = Field(description="Hash of its pod template (the pods' template-hash annotation).")
    model_uri: str = Field(description="spec.model.uri of that generation.")
    outcome: Literal["RollingOut", "Succeeded", "Failed", "Superseded"] = Field(
        description="RollingOut; Succeeded once every replica ran it and was Ready; Failed (rolled back when "
        "automatic rollback is on and an earlier revision succeeded); Superseded by a newer spec before either."
    )
    reason: str | None = Field(default=None, description="Why it failed, for outcome Failed.")
    time: datetime = Field(description="When the outcome was reached (for RollingOut: when it started).")


class ModelDeploymentStatus(_Model):
    """What the operator observed. Written only by the operator."""

    observed_generation: int | None = Field(default=None, description="The spec generation last acted on.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Available, Progressing, Degraded, Stalled (kstatus: a failure only a person can fix) "
        "and RolledBack.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: int = Field(default=0, description="Pods of the current Deployment.")
    ready_replicas: int = Field(default=0, description="Pods that are ready to serve.")
    updated_replicas: int = Field(default=0, description="Pods that run the current spec.")
    ready_summary: str = Field(default="", description="readyReplicas/desired replicas, for kubectl get.")
    selector: str = Field(default="", description="Label selector of the Pods, for the scale subresource.")
    model_name: str = Field(default="", description="The served model name.")
    url: str = Field(default="", description="In-cluster URL of the model service.")
    last_failure: LastFailure | None = Field(default=None, description="The last failure seen, if any.")
    revisions: list[Revision] = Field(
        default_factory=list,
        max_length=MAX_REVISIONS,
        description="The last pod templates the spec asked for, oldest first, with their outcome; the newest "
        "Succeeded one is where an automatic rollback goes.",
    )

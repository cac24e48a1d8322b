"""Bad ModelDeployments are refused by the apiserver at apply time, with the field and what is allowed."""

import pytest

INVALID = {
    "gpu count over the maximum": ({"gpu": {"count": 17}}, "spec.gpu.count"),
    "negative gpu count": ({"gpu": {"count": -1}}, "spec.gpu.count"),
    "product without gpus": ({"gpu": {"count": 0, "product": "NVIDIA-H100-80GB-HBM3"}}, "gpu.product"),
    "product and products": (
        {"gpu": {"count": 1, "product": "A", "products": ["B"]}},
        "set gpu.product (one GPU model) or gpu.products",
    ),
    "bad resource name": ({"gpu": {"count": 1, "resourceName": "gpu"}}, "spec.gpu.resourceName"),
    "unsupported uri scheme": ({"model": {"uri": "s3://bucket/model.pt"}}, "model.uri must be pvc://CLAIM/PATH"),
    "pvc uri without a path": ({"model": {"uri": "pvc://models"}}, "model.uri must be pvc://CLAIM/PATH"),
    "short sha256": ({"model": {"uri": "file:///m.pt", "sha256": "abc"}}, "spec.model.sha256"),
    "model name not DNS-safe": ({"model": {"uri": "file:///m.pt", "name": "ResNet_50"}}, "spec.model.name"),
    "unknown model format": ({"model": {"uri": "file:///m.pt", "format": "onnx"}}, "spec.model.format"),
    "negative replicas": ({"replicas": -2}, "spec.replicas"),
    "zero batch size": ({"runtime": {"maxBatchSize": 0}}, "spec.runtime.maxBatchSize"),
    "shared memory not a quantity": ({"gpu": {"count": 1, "sharedMemory": "lots"}}, "spec.gpu.sharedMemory"),
    "memory not a quantity": (
        {"runtime": {"resources": {"requests": {"memory": "8 GB"}}}},
        "spec.runtime.resources.requests.memory",
    ),
    "gpu in resources": ({"runtime": {"resources": {"limits": {"nvidia.com/gpu": 1}}}}, "set GPUs with gpu.count"),
    "limit below request": (
        {"runtime": {"resources": {"requests": {"memory": "8Gi"}, "limits": {"memory": "4Gi"}}}},
        "limits.memory must be at least runtime.resources.requests.memory",
    ),
    "service port out of range": ({"service": {"port": 70000}}, "spec.service.port"),
    "service type": ({"service": {"type": "ExternalName"}}, "spec.service.type"),
    "duplicate env": (
        {"runtime": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}},
        "spec.runtime.env",
    ),
    "env sets what the operator sets": (
        {"runtime": {"env": [{"name": "A", "value": "1"}, {"name": "MODELDEPLOY_PORT", "value": "9000"}]}},
        'spec.runtime.env[1].name: Invalid value: "MODELDEPLOY_PORT": runtime.env cannot set a variable',
    ),
    "huggingface over https not an archive": (
        {"model": {"uri": "https://models.example.com/llm.zip", "format": "huggingface"}},
        "must name a .tar, .tar.gz or .tgz archive",
    ),
    "huggingface directory with a sha256": (
        {"model": {"uri": "pvc://llms/qwen/", "format": "huggingface", "sha256": "a" * 64}},
        "model.sha256 of a huggingface model covers its archive",
    ),
    "text generation settings on a tensor model": (
        {"runtime": {"maxNumSeqs": 8}},
        "runtime.maxNumSeqs and runtime.maxModelLen apply to text generation",
    ),
    "max model len below the minimum": ({"runtime": {"maxModelLen": 8}}, "spec.runtime.maxModelLen"),
    "load balancer without api keys": (
        {"service": {"type": "LoadBalancer"}},
        "spec.access: Invalid value: service.type NodePort or LoadBalancer publishes the model outside "
        "the cluster: set access.apiKeys",
    ),
    "node port without api keys": ({"service": {"type": "NodePort"}, "access": {}}, "set access.apiKeys"),
    "api keys without a secret": ({"access": {"apiKeys": {}}}, "spec.access.apiKeys.secretName: Required value"),
    "zero requests per second": (
        {"access": {"apiKeys": {"secretName": "keys", "limits": {"requestsPerSecond": 0}}}},
        "requestsPerSecond must be greater than 0",
    ),
    "zero requests burst": (
        {"access": {"apiKeys": {"secretName": "keys", "limits": {"requestsBurst": 0}}}},
        "spec.access.apiKeys.limits.requestsBurst",
    ),
    "tls secret name not a name": ({"access": {"tls": {"secretName": "Not_A_Name"}}}, "spec.access.tls.secretName"),
    "unknown field": ({"gpus": 1}, 'unknown field "spec.gpus"'),
    "control character in env": ({"runtime": {"env": [{"name": "A", "value": "\x7f"}]}}, "spec.runtime.env[0].value"),
    "rollout that can never start": (
        {"rollout": {"maxSurge": 0, "maxUnavailable": "0%"}},
        "rollout.maxSurge and rollout.maxUnavailable cannot both be 0",
    ),
    "surge not a percentage": ({"rollout": {"maxSurge": "150%"}}, "spec.rollout.maxSurge"),
    "negative unavailability": ({"rollout": {"maxUnavailable": -1}}, "spec.rollout.maxUnavailable"),
    "unknown no-spare-gpu policy": ({"rollout": {"whenNoSpareGpu": "Evict"}}, "spec.rollout.whenNoSpareGpu"),
}


@pytest.mark.parametrize("spec, message", INVALID.values(), ids=INVALID.keys())
def test_invalid_spec_is_rejected_naming_the_field(crd_installed, kube, md, spec, message) -> None:
    manifest = md("invalid")
    manifest["spec"].update(spec)
    if "model" in spec:
        manifest["spec"]["model"] = spec["model"]
    result = kube.apply(manifest, check=False)
    assert result.returncode != 0, f"accepted: {manifest['spec']}"
    assert message in result.stderr, result.stderr


def test_name_must_be_a_dns_label(crd_installed, kube, md) -> None:
    result = kube.apply(md("model.v2"), check=False)
    assert result.returncode != 0
    assert "metadata.name must be a DNS-1035 label" in result.stderr


def test_defaults_are_filled_in_by_the_apiserver(crd_installed, kube, md) -> None:
    kube.apply(md("defaults"))
    spec = kube.get("md", "defaults")["spec"]
    assert spec["replicas"] == 1
    assert spec["gpu"] == {"count": 0, "resourceName": "nvidia.com/gpu"}
    assert spec["runtime"]["maxBatchSize"] == 32 and spec["runtime"]["maxBatchDelayMs"] == 5
    assert spec["service"] == {"type": "ClusterIP", "port": 80}
    assert spec["rollout"] == {
        "maxSurge": 1,
        "maxUnavailable": "25%",
        "whenNoSpareGpu": "ReplaceInPlace",
        "autoRollback": True,
    }

"""The manifests builders: exact output for the things that matter to scheduling, delivery and security."""

from typing import Any

import pytest
from modeldeploy_operator.api import InvalidSpecError, ModelDeployment
from modeldeploy_operator.api.v1alpha1 import OPERATOR_SET_RUNTIME_ENV
from modeldeploy_operator.manifests import build_deployment, build_service, service_url
from modeldeploy_operator.manifests.deployment import RUNTIME_ENV_DEFAULTS, BuildOptions, gpu_taint_key, template_hash

OPTIONS = BuildOptions(default_runtime_image="registry.local/runtime:1")


def _pod(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value") for item in container["env"]}


def test_gpu_deployment_schedules_onto_the_product(make_md, gpu_spec) -> None:
    deployment = build_deployment(make_md(gpu_spec), OPTIONS)
    pod = _pod(deployment)
    runtime = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert runtime["resources"] == {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"memory": "8Gi", "nvidia.com/gpu": "1"},
    }
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [
            {
                "matchExpressions": [
                    {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]}
                ]
            }
        ]
    }
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in runtime["volumeMounts"]
    assert _env(runtime)["MODELDEPLOY_DEVICE"] == "cuda"


def test_cpu_only_deployment_has_no_gpu_scheduling(make_md) -> None:
    pod = _pod(build_deployment(make_md({"model": {"uri": "file:///models/mlp.pt"}}), OPTIONS))
    assert "tolerations" not in pod and "affinity" not in pod
    runtime = pod["containers"][0]
    assert "resources" not in runtime or "limits" not in runtime["resources"]
    assert _env(runtime)["MODELDEPLOY_DEVICE"] == "cpu"
    assert runtime["image"] == "registry.local/runtime:1"


def test_product_list_is_added_to_every_user_node_selector_term(make_md, gpu_spec) -> None:
    user_terms = [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
    ]
    spec = {
        **gpu_spec,
        "gpu": {"count": 2, "products": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"]},
        "scheduling": {
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": user_terms}}
            }
        },
    }
    terms = _pod(build_deployment(make_md(spec), OPTIONS))["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    product = {
        "key": "nvidia.com/gpu.product",
        "operator": "In",
        "values": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"],
    }
    assert [term["matchExpressions"][-1] for term in terms] == [product, product]
    assert [term["matchExpressions"][0]["values"] for term in terms] == [["a"], ["b"]]
    assert user_terms[0]["matchExpressions"] == [{"key": "zone", "operator": "In", "values": ["a"]}], "spec not mutated"


def test_mig_resource_tolerates_the_vendor_gpu_taint(make_md) -> None:
    spec = {"model": {"uri": "file:///m.pt"}, "gpu": {"count": 1, "resourceName": "nvidia.com/mig-1g.10gb"}}
    pod = _pod(build_deployment(make_md(spec), OPTIONS))
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/mig-1g.10gb": "1"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert gpu_taint_key("amd.com/gpu") == "amd.com/gpu"


def test_pvc_model_is_mounted_read_only_and_verified_by_the_runtime(make_md, gpu_spec) -> None:
    spec = {**gpu_spec, "model": {"uri": "pvc://models/resnet/r50.pt", "sha256": "a" * 64}}
    pod = _pod(build_deployment(make_md(spec), OPTIONS))
    assert "initContainers" not in pod
    assert {"name": "model-store", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in pod["volumes"]
    runtime = pod["containers"][0]
    assert {"name": "model-store", "mountPath": "/mnt/models", "readOnly": True} in runtime["volumeMounts"]
    assert _env(runtime)["MODELDEPLOY_MODEL_PATH"] == "/mnt/models/resnet/r50.pt"
    assert _env(runtime)["MODELDEPLOY_MODEL_SHA256"] == "a" * 64


@pytest.mark.parametrize(
    ("uri", "model_path"),
    [
        ("pvc://models/v1/r50 #2?.pt", "/mnt/models/v1/r50 #2?.pt"),
        ("pvc://models/a%20b.pt", "/mnt/models/a%20b.pt"),
        ("file:///opt/models/r50#final.pt", "/opt/models/r50#final.pt"),
    ],
)
def test_pvc_and_file_uris_are_paths_not_urls(make_md, uri: str, model_path: str) -> None:
    runtime = _pod(build_deployment(make_md({"model": {"uri": uri}}), OPTIONS))["containers"][0]
    assert _env(runtime)["MODELDEPLOY_MODEL_PATH"] == model_path


def test_https_model_is_fetched_by_an_init_container_with_the_checksum(make_md) -> None:
    spec = {"model": {"uri": "https://models.example.com/v3/r50.pt2", "sha256": "b" * 64}}
    pod = _pod(build_deployment(make_md(spec), OPTIONS))
    (fetch,) = pod["initContainers"]
    assert fetch["command"] == ["python", "-m", "modeldeploy_runtime", "fetch"]
    assert _env(fetch) == {
        "MODELDEPLOY_MODEL_URI": "https://models.example.com/v3/r50.pt2",
        "MODELDEPLOY_MODEL_DEST": "/mnt/models",
        "MODELDEPLOY_FETCH_MAX_BYTES": str(20 * 2**30),
        "MODELDEPLOY_MODEL_SHA256": "b" * 64,
    }
    runtime = pod["containers"][0]
    assert _env(runtime)["MODELDEPLOY_MODEL_PATH"] == "/mnt/models/r50.pt2"
    assert "MODELDEPLOY_MODEL_SHA256" not in _env(runtime), "the fetch already verified it"
    assert {"name": "model-store", "emptyDir": {"sizeLimit": "20Gi"}} in pod["volumes"]


def test_https_model_download_is_bounded_and_verified_against_a_ca_bundle(make_md) -> None:
    spec = {
        "model": {
            "uri": "https://models.internal/r50.pt",
            "downloadSizeLimit": "1500Mi",
            "caBundle": {"configMapName": "internal-ca", "key": "bundle.pem"},
        }
    }
    pod = _pod(build_deployment(make_md(spec), OPTIONS))
    (fetch,) = pod["initContainers"]
    assert _env(fetch)["MODELDEPLOY_FETCH_MAX_BYTES"] == str(1500 * 2**20)
    assert _env(fetch)["SSL_CERT_FILE"] == "/etc/modeldeploy/model-ca/bundle.pem"
    assert {"name": "model-ca-bundle", "mountPath": "/etc/modeldeploy/model-ca", "readOnly": True} in fetch[
        "volumeMounts"
    ]
    assert {"name": "model-ca-bundle", "configMap": {"name": "internal-ca"}} in pod["volumes"]
    assert {"name": "model-store", "emptyDir": {"sizeLimit": "1500Mi"}} in pod["volumes"]
    assert all(mount["name"] != "model-ca-bundle" for mount in pod["containers"][0]["volumeMounts"])


def test_a_huggingface_archive_is_fetched_and_served_as_the_directory_it_unpacks_to(make_md) -> None:
    spec = {
        "model": {
            "uri": "https://models.example.com/llm/qwen2-0.5b.tar.gz",
            "format": "huggingface",
            "sha256": "c" * 64,
        },
        "runtime": {"maxNumSeqs": 64, "maxModelLen": 4096, "dtype": "bfloat16"},
    }
    pod = _pod(build_deployment(make_md(spec), OPTIONS))
    (fetch,) = pod["initContainers"]
    assert _env(fetch)["MODELDEPLOY_MODEL_URI"] == "https://models.example.com/llm/qwen2-0.5b.tar.gz"
    assert _env(fetch)["MODELDEPLOY_MODEL_SHA256"] == "c" * 64
    runtime_env = _env(pod["containers"][0])
    assert runtime_env["MODELDEPLOY_MODEL_PATH"] == "/mnt/models/qwen2-0.5b"
    assert runtime_env["MODELDEPLOY_MODEL_FORMAT"] == "huggingface"
    assert (runtime_env["MODELDEPLOY_MAX_NUM_SEQS"], runtime_env["MODELDEPLOY_MAX_MODEL_LEN"]) == ("64", "4096")
    assert runtime_env["MODELDEPLOY_DTYPE"] == "bfloat16"


def test_a_huggingface_directory_on_a_volume_is_served_in_place_with_the_runtime_defaults(make_md) -> None:
    spec = {"model": {"uri": "pvc://llms/qwen2-0.5b/", "format": "huggingface"}}
    runtime_env = _env(_pod(build_deployment(make_md(spec), OPTIONS))["containers"][0])
    assert runtime_env["MODELDEPLOY_MODEL_PATH"] == "/mnt/models/qwen2-0.5b/"
    assert "MODELDEPLOY_MAX_NUM_SEQS" not in runtime_env and "MODELDEPLOY_MAX_MODEL_LEN" not in runtime_env


def test_a_model_uri_the_builders_cannot_serve_is_refused_by_the_parse(make_md) -> None:
    with pytest.raises(InvalidSpecError) as no_file_name:
        make_md({"model": {"uri": "https://models.example.com/dir/?v=2"}})
    assert str(no_file_name.value) == "spec.model.uri: 'https://models.example.com/dir/?v=2' must end in a file name"
    with pytest.raises(InvalidSpecError) as scheme:
        make_md({"model": {"uri": "s3://bucket/model.pt"}})
    assert str(scheme.value) == "spec.model.uri: scheme 's3' is not supported; use pvc://, https:// or file://"


def test_pods_run_with_secure_defaults(make_md, gpu_spec) -> None:
    pod = _pod(build_deployment(make_md(gpu_spec), OPTIONS))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod.get("initContainers", []):
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_probes_use_the_runtime_health_endpoints_and_a_generous_startup_budget(make_md, gpu_spec) -> None:
    spec = {**gpu_spec, "runtime": {"startupTimeoutSeconds": 3600}}
    runtime = _pod(build_deployment(make_md(spec), OPTIONS))["containers"][0]
    assert runtime["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert runtime["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    startup = runtime["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 3600


def test_runtime_settings_reach_the_container_and_the_user_env_changes_defaults(make_md) -> None:
    spec = {
        "model": {"uri": "file:///m.pt", "name": "classifier", "format": "exported-program"},
        "runtime": {
            "maxBatchSize": 8,
            "maxBatchDelayMs": 2,
            "maxQueueSize": 100,
            "dtype": "bfloat16",
            "env": [
                {"name": "MODELDEPLOY_LOG_LEVEL", "value": "debug"},
                {"name": "MODELDEPLOY_SHUTDOWN_DELAY_S", "value": "15"},
            ],
        },
    }
    env = _pod(build_deployment(make_md(spec), OPTIONS))["containers"][0]["env"]
    assert [item["name"] for item in env[-2:]] == ["MODELDEPLOY_SHUTDOWN_DELAY_S", "MODELDEPLOY_LOG_LEVEL"]
    values = _env({"env": env})
    assert values["MODELDEPLOY_SHUTDOWN_DELAY_S"] == "15", "the user's env changes the operator's defaults"
    expected = {
        "MODELDEPLOY_MODEL_NAME": "classifier",
        "MODELDEPLOY_MODEL_FORMAT": "exported-program",
        "MODELDEPLOY_MAX_BATCH_SIZE": "8",
        "MODELDEPLOY_MAX_BATCH_DELAY_MS": "2",
        "MODELDEPLOY_MAX_QUEUE_SIZE": "100",
        "MODELDEPLOY_DTYPE": "bfloat16",
        "MODELDEPLOY_EXIT_ON_LOAD_FAILURE": "true",
    }
    assert {name: values.get(name) for name in expected} == expected


@pytest.mark.parametrize("uri", ["file:///m.pt", "pvc://models/m.pt", "https://models.example.com/m.pt"])
def test_every_variable_the_builder_sets_is_refused_in_the_user_env(make_md, uri: str) -> None:
    md = make_md({"model": {"uri": uri, "sha256": "a" * 64}, "gpu": {"count": 1}, "runtime": {"maxQueueSize": 9}})
    set_by_builder = set(_env(_pod(build_deployment(md, OPTIONS))["containers"][0]))
    assert set_by_builder <= {*OPERATOR_SET_RUNTIME_ENV, *RUNTIME_ENV_DEFAULTS}
    assert not set(OPERATOR_SET_RUNTIME_ENV) & set(RUNTIME_ENV_DEFAULTS)


def test_replicas_are_left_to_an_autoscaler_that_targets_the_deployment(make_md, gpu_spec) -> None:
    autoscaled = BuildOptions(default_runtime_image="x", replicas_owned_by_autoscaler=True)
    assert "replicas" not in build_deployment(make_md(gpu_spec), autoscaled)["spec"]


def test_children_are_owned_labelled_and_selected_stably(make_md, gpu_spec) -> None:
    md = make_md({**gpu_spec, "podMetadata": {"labels": {"team": "a", "app.kubernetes.io/instance": "hijack"}}})
    deployment, service = build_deployment(md, OPTIONS), build_service(md)
    selector = {"app.kubernetes.io/name": "modeldeploy-runtime", "app.kubernetes.io/instance": "resnet"}
    assert deployment["spec"]["selector"] == {"matchLabels": selector}
    assert service["spec"]["selector"] == selector
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert template_labels["team"] == "a" and template_labels["app.kubernetes.io/instance"] == "resnet"
    for child in (deployment, service):
        assert child["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "serving.modeldeploy.dev/v1alpha1",
                "kind": "ModelDeployment",
                "name": "resnet",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_builders_are_deterministic(make_md, gpu_spec) -> None:
    assert build_deployment(make_md(gpu_spec), OPTIONS) == build_deployment(make_md(gpu_spec), OPTIONS)


def test_service_and_url(make_md, gpu_spec) -> None:
    md = make_md({**gpu_spec, "service": {"type": "LoadBalancer", "port": 8000}})
    service = build_service(md)
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}
    ]
    assert service_url(md) == "http://resnet.team-a.svc.cluster.local:8000"
    assert service_url(make_md(gpu_spec)) == "http://resnet.team-a.svc.cluster.local"


def test_spec_errors_name_the_field(make_md) -> None:
    with pytest.raises(InvalidSpecError, match=r"spec\.gpu\.count"):
        make_md({"model": {"uri": "file:///m.pt"}, "gpu": {"count": 99}})
    with pytest.raises(InvalidSpecError, match=r"spec\.model"):
        ModelDeployment.from_body({"metadata": {"name": "x", "namespace": "y", "uid": "u"}, "spec": {}})


def test_rollout_strategy_surges_one_replica_by_default_and_follows_the_spec(make_md, gpu_spec) -> None:
    default = build_deployment(make_md(gpu_spec), OPTIONS)["spec"]["strategy"]
    assert default == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}}
    spec = {**gpu_spec, "rollout": {"maxSurge": "50%", "maxUnavailable": 2}}
    assert build_deployment(make_md(spec), OPTIONS)["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": "50%",
        "maxUnavailable": 2,
    }


def test_replacing_in_place_takes_one_replica_down_and_starts_none_extra(make_md, gpu_spec) -> None:
    options = BuildOptions(default_runtime_image="registry.local/runtime:1", replace_in_place=True)
    surge = build_deployment(make_md(gpu_spec), OPTIONS)
    in_place = build_deployment(make_md(gpu_spec), options)
    assert in_place["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }
    assert in_place["spec"]["template"] == surge["spec"]["template"], "switching strategy rolls no pod"


def test_the_pod_template_carries_its_own_hash(make_md, gpu_spec) -> None:
    def version(spec: dict[str, Any]) -> str:
        return template_hash(build_deployment(make_md(spec), OPTIONS))

    first = version(gpu_spec)
    assert (
        first
        == build_deployment(make_md(gpu_spec), OPTIONS)["spec"]["template"]["metadata"]["annotations"][
            "serving.modeldeploy.dev/template-hash"
        ]
    )
    assert len(first) == 16
    assert version({**gpu_spec, "replicas": 7, "rollout": {"maxSurge": 2}}) == first, "not a new version"
    assert version({**gpu_spec, "model": {"uri": "pvc://models/resnet101.pt"}}) != first


def test_the_runtime_gets_its_cpu_limit_in_millicores_and_nothing_without_one(make_md) -> None:
    limited = {"model": {"uri": "file:///m.pt"}, "runtime": {"resources": {"limits": {"cpu": "1500m"}}}}
    (runtime,) = _pod(build_deployment(make_md(limited), OPTIONS))["containers"]
    (cpu_limit,) = [item for item in runtime["env"] if item["name"] == "MODELDEPLOY_CPU_LIMIT_MILLICORES"]
    assert cpu_limit == {
        "name": "MODELDEPLOY_CPU_LIMIT_MILLICORES",
        "valueFrom": {"resourceFieldRef": {"containerName": "runtime", "resource": "limits.cpu", "divisor": "1m"}},
    }
    assert runtime["resources"]["limits"] == {"cpu": "1500m"}

    requested_only = {"model": {"uri": "file:///m.pt"}, "runtime": {"resources": {"requests": {"cpu": "2"}}}}
    (runtime,) = _pod(build_deployment(make_md(requested_only), OPTIONS))["containers"]
    # Without a limit the Downward API would give the node's allocatable CPU: torch's default is as good.
    assert "MODELDEPLOY_CPU_LIMIT_MILLICORES" not in _env(runtime)

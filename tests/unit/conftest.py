from collections.abc import Callable
from typing import Any

import pytest
from modeldeploy_operator.api import ModelDeployment

MakeModelDeployment = Callable[..., ModelDeployment]


@pytest.fixture
def make_md() -> MakeModelDeployment:
    def make(
        spec: dict[str, Any], name: str = "resnet", namespace: str = "team-a", generation: int = 1
    ) -> ModelDeployment:
        return ModelDeployment.from_body(
            {
                "metadata": {"name": name, "namespace": namespace, "uid": "uid-1", "generation": generation},
                "spec": spec,
            }
        )

    return make


@pytest.fixture
def gpu_spec() -> dict[str, Any]:
    return {
        "model": {"uri": "pvc://models/resnet50.pt", "format": "torchscript"},
        "replicas": 2,
        "gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3", "sharedMemory": "2Gi"},
        "runtime": {"resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}},
    }

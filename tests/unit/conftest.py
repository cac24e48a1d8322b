import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_operator.api import ModelDeployment

# pytest runs in importlib mode (pyproject), which puts no test folder on sys.path: the helper module beside this
# file becomes importable here.
sys.path.insert(0, str(Path(__file__).parent))

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

"""The operator as the chart configures it, run as a local process: these tests start, stop and kill operators
at will, several per test. The chart's operator as a pod of its own image on the real node is tested in
tests/e2e/test_in_cluster_operator.py.

Its environment is the chart's Deployment's container env, with the downward-API values resolved as a kubelet
would; its credentials are the chart's ServiceAccount token; only its ports and namespaces are the test's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from modeldeploy_devcluster.local_operator import LocalOperator as OperatorProcess
from modeldeploy_devcluster.local_operator import start_local_operator


def chart_env(deployment: dict[str, Any], pod_namespace: str) -> dict[str, str]:
    """The operator container's environment from a rendered or installed Deployment."""
    env = {}
    for var in deployment["spec"]["template"]["spec"]["containers"][0].get("env", []):
        if "valueFrom" not in var:
            env[var["name"]] = str(var.get("value", ""))  # the apiserver drops an empty value
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[var["name"]] = pod_namespace
        else:
            raise AssertionError(f"no local stand-in for env {var['name']}: {var}")
    return env


# (kubeconfig, environment, namespaces) -> a started operator: the `run_operator` fixture.
OperatorStarter = Callable[[Path, dict[str, str], list[str]], "OperatorProcess"]


def start_operator(kubeconfig: Path, env: dict[str, str], namespaces: list[str], log: Path) -> OperatorProcess:
    """Start the operator with the chart's configuration and wait until its /healthz answers."""
    return start_local_operator(kubeconfig, log, namespaces, env=env)

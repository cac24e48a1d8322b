"""The operator as the chart configures it, run as a local process (simulated nodes run no containers).

Its environment is the chart's Deployment's container env, with the downward-API values resolved as a kubelet
would; its credentials are the chart's ServiceAccount token; only its ports and namespaces are the test's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldeploy_devcluster.testing import wait_until

START_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log: Path
    health_port: int
    metrics_port: int

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
        wait_until(lambda: text in self.log_text(), f"{text!r} in the operator log {self.log}", timeout=timeout)

    def healthz(self) -> dict[str, Any] | None:
        """The /healthz answer, or None while nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as response:
                body: dict[str, Any] = json.loads(response.read() or b"{}")
                return body
        except OSError:
            return None

    def metric(self, name: str) -> float:
        """Sum of every sample of `name` on /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            lines = response.read().decode().splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith((f"{name} ", f"{name}{{")))

    def send(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM (a leader releases its Lease on it), then SIGKILL if the process lingers."""
        if self.process.poll() is not None:
            return
        self.send(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# (kubeconfig, environment, namespaces) -> a started operator: the `run_operator` fixture.
OperatorStarter = Callable[[Path, dict[str, str], list[str]], "OperatorProcess"]


def start_operator(kubeconfig: Path, env: dict[str, str], namespaces: list[str], log: Path) -> OperatorProcess:
    """Start the operator and wait until its /healthz answers (as the leader or as a standby)."""
    health_port, metrics_port = free_port(), free_port()
    command = [sys.executable, "-m", "modeldeploy_operator", "--bind-address", "127.0.0.1"]
    command += ["--health-port", str(health_port), "--metrics-port", str(metrics_port)]
    for namespace in namespaces:
        command += ["--namespace", namespace]
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("MODELDEPLOY_")}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, env={**inherited, **env, "KUBECONFIG": str(kubeconfig)}, stdout=sink, stderr=subprocess.STDOUT
        )
    handle = OperatorProcess(process, log, health_port, metrics_port)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the operator exited with {process.returncode}:\n{handle.log_text()[-4000:]}")
        return handle.healthz() is not None

    wait_until(healthy, f"/healthz of the operator logging to {log}", timeout=START_TIMEOUT_SECONDS)
    return handle

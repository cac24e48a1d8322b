"""The operator as a local process against a local cluster: for tests, benchmarks and the playground
(simulated nodes run no containers, so the operator cannot run as a pod there)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .waiting import wait_until

START_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 20.0


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environ_without_ours() -> dict[str, str]:
    """This process's environment less our MODELDEPLOY_* variables, for children configured explicitly:
    a user's MODELDEPLOY_* settings (meant for their own operator or runtime) must not leak into them."""
    return {key: value for key, value in os.environ.items() if not key.startswith("MODELDEPLOY_")}


def operator_argv(health_port: int, metrics_port: int, namespaces: Sequence[str] = (), *extra: str) -> list[str]:
    """`python -m modeldeploy_operator` on loopback ports, watching `namespaces` (all when empty)."""
    argv = [sys.executable, "-m", "modeldeploy_operator", "--bind-address", "127.0.0.1"]
    argv += ["--health-port", str(health_port), "--metrics-port", str(metrics_port)]
    for namespace in namespaces:
        argv += ["--namespace", namespace]
    return [*argv, *extra]


@dataclass
class LocalOperator:
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

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` on /metrics that carry all of `labels`."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            lines = response.read().decode().splitlines()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in lines
            if line.startswith((f"{name} ", f"{name}{{")) and all(f'{k}="{v}"' in line for k, v in labels.items())
        )

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
            self.process.wait(timeout=STOP_GRACE_SECONDS)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_local_operator(
    kubeconfig: Path,
    log: Path,
    namespaces: Sequence[str] = (),
    env: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> LocalOperator:
    """Start the operator and wait until its /healthz answers (as the leader or as a standby).

    Our own MODELDEPLOY_* variables are not inherited: the operator's configuration is `env` and the flags.
    """
    health_port, metrics_port = free_port(), free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            operator_argv(health_port, metrics_port, namespaces, *extra_args),
            env={**environ_without_ours(), **(env or {}), "KUBECONFIG": str(kubeconfig)},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    handle = LocalOperator(process, log, health_port, metrics_port)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the operator exited with {process.returncode}:\n{handle.log_text()[-4000:]}")
        return handle.healthz() is not None

    try:
        wait_until(healthy, f"/healthz of the operator logging to {log}", timeout=START_TIMEOUT_SECONDS)
    except BaseException:
        handle.stop()
        raise
    return handle

"""Starts the real runtime (`python -m modeldeploy_runtime serve`) on a free port, as its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from modeldeploy_devcluster.local_operator import free_port

STARTUP_TIMEOUT_S = 90.0


class RuntimeServer:
    def __init__(self, model_path: Path, log_path: Path, *extra_args: str, model_name: str = "model",
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.port = free_port()
        self.model_name = model_name
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [
            sys.executable, "-m", "modeldeploy_runtime", "serve",
            "--model-name", model_name, "--model-path", str(model_path),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--termination-log", str(log_path.with_suffix(".termination")),
            *extra_args,
        ]  # fmt: skip
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    @property
    def infer_url(self) -> str:
        return f"{self.url}/v2/models/{self.model_name}/infer"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_live(self) -> None:
        self._wait(lambda response: response.status_code == 200, "/v2/health/live")

    def wait_ready(self) -> None:
        self._wait(lambda response: response.status_code == 200, "/v2/health/ready")

    def _wait(self, done, path: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"runtime exited with {self.process.returncode}:\n{self.log()}")
            try:
                if done(httpx.get(self.url + path, timeout=2.0)):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"runtime not answering {path} after {STARTUP_TIMEOUT_S}s:\n{self.log()}")

    def terminate(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._log.close()

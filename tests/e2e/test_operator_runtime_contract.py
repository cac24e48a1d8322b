"""The operator and the runtime agree: the container the operator builds starts the real runtime with exactly
the environment the Deployment carries, and the runtime's failures read back as the operator's reasons."""

import hashlib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from modeldeploy_devcluster.local_operator import environ_without_ours, free_port
from modeldeploy_operator.manifests import ModelDeployment, build_deployment
from modeldeploy_operator.manifests.deployment import BuildOptions
from modeldeploy_operator.reconcile.status import Failure, find_failure

REPO = Path(__file__).parents[2]


def _container_env(spec: dict[str, Any], container: str = "runtime") -> dict[str, str]:
    md = ModelDeployment.from_body({"metadata": {"name": "iris", "namespace": "ns", "uid": "u"}, "spec": spec})
    pod = build_deployment(md, BuildOptions(default_runtime_image="runtime:1"))["spec"]["template"]["spec"]
    containers = pod["containers"] + pod.get("initContainers", [])
    (chosen,) = [c for c in containers if c["name"] == container]
    return {var["name"]: var["value"] for var in chosen["env"]}


def _model(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "models" / "iris.pt"
    subprocess.run(
        [sys.executable, str(REPO / "examples/models/build_example_model.py"), "--out", str(path)], check=True
    )
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _runtime(env: dict[str, str], tmp_path: Path, port: int, *command: str) -> subprocess.Popen[str]:
    local = {
        "MODELDEPLOY_HOST": "127.0.0.1",
        "MODELDEPLOY_PORT": str(port),
        "MODELDEPLOY_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "modeldeploy_runtime", *command],
        env={**environ_without_ours(), **env, **local},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _operator_reading(exit_code: int, message: str) -> Failure | None:
    """What the operator reports for a runtime container that exited so and keeps restarting."""
    container = {
        "name": "runtime",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": exit_code, "message": message}},
    }
    return find_failure({}, [{"metadata": {}, "status": {"containerStatuses": [container]}}])


def test_the_operators_runtime_container_serves(tmp_path: Path) -> None:
    path, digest = _model(tmp_path)
    env = _container_env({"model": {"uri": f"file://{path}", "sha256": digest}, "runtime": {"maxBatchSize": 4}})
    assert env["MODELDEPLOY_MODEL_PATH"] == str(path) and env["MODELDEPLOY_MODEL_SHA256"] == digest
    port = free_port()
    process = _runtime(env, tmp_path, port, "serve")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/iris/ready", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise AssertionError("the runtime never became ready")
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode == 0, "SIGTERM drains and exits 0"


def test_a_checksum_mismatch_reads_back_as_the_operators_reason(tmp_path: Path) -> None:
    path, _ = _model(tmp_path)
    env = _container_env({"model": {"uri": f"file://{path}", "sha256": "0" * 64}})
    process = _runtime(env, tmp_path, free_port(), "serve")
    exit_code = process.wait(timeout=60)
    message = (tmp_path / "termination-log").read_text()
    assert exit_code == 5 and message.startswith("ChecksumMismatch: ")
    failure = _operator_reading(exit_code, message)
    assert (
        failure is not None
        and failure.reason == "ChecksumMismatch"
        and "expected sha256 " + "0" * 64 in failure.message
    )


def test_a_model_that_cannot_load_reads_back_as_model_load_failed(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a model")
    env = _container_env({"model": {"uri": f"file://{broken}"}})
    exit_code = _runtime(env, tmp_path, free_port(), "serve").wait(timeout=60)
    message = (tmp_path / "termination-log").read_text()
    failure = _operator_reading(exit_code, message)
    assert exit_code == 3 and failure is not None and failure.reason == "ModelLoadFailed", message


def test_the_operators_fetch_container_fetches(tmp_path: Path) -> None:
    path, digest = _model(tmp_path)
    env = _container_env({"model": {"uri": "https://models.example.com/v1/iris.pt", "sha256": digest}}, "fetch-model")
    dest = tmp_path / "mnt"
    # No https server here: the same variables, pointed at the local file the URL would serve.
    env = {**env, "MODELDEPLOY_MODEL_URI": f"file://{path}", "MODELDEPLOY_MODEL_DEST": str(dest)}
    process = _runtime(env, tmp_path, free_port(), "fetch")
    assert process.wait(timeout=60) == 0, process.stdout.read() if process.stdout else ""
    assert hashlib.sha256((dest / "iris.pt").read_bytes()).hexdigest() == digest

"""Start-up and shutdown: load failures, the exit-code contract with the operator, SIGTERM draining."""

from __future__ import annotations

import concurrent.futures
import io
import json
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import runtime_test_models as models
from runtime_metrics import scrape, value
from runtime_server import RuntimeServer

SLOW_BODY = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
MLP_BODY = {
    "inputs": [
        {"name": "features", "datatype": "FP32", "shape": [1, models.MLP_FEATURES], "data": [0.5] * models.MLP_FEATURES}
    ]
}


def corrupt_copy(source: Path, target: Path) -> Path:
    data = bytearray(source.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = b"\xff" * 64
    target.write_bytes(bytes(data[: len(data) // 2]))
    return target


def test_sigterm_drains_in_flight_requests_then_exits_0(model_dir: Path) -> None:
    path = model_dir / "slow-drain.pt"
    models.build_slow(path, rounds=1500)
    server = RuntimeServer(path, model_dir / "drain.log", "--max-batch-size", "1", "--drain-grace-s", "30",
                           model_name="slow")  # fmt: skip
    server.wait_ready()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        in_flight = [pool.submit(httpx.post, server.infer_url, json=SLOW_BODY, timeout=60.0) for _ in range(4)]
        deadline = time.monotonic() + 30
        while value(scrape(server.url), "modeldeploy_inflight_requests", model="slow") < 4:
            assert time.monotonic() < deadline, "requests never reached the server"
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        ready = httpx.get(f"{server.url}/v2/health/ready", timeout=5.0)
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "reason": "server is draining before shutdown"}
        refused = httpx.post(server.infer_url, json=SLOW_BODY, timeout=5.0)
        assert refused.status_code == 503
        assert "Retry-After" in refused.headers
        assert [future.result().status_code for future in in_flight] == [200] * 4
    assert server.terminate(timeout_s=30) == 0
    assert "serving for 0.0s more, then draining for up to 30.0s" in server.log()


def test_sigterm_fails_readiness_but_serves_through_the_shutdown_delay(
    mlp: tuple[Path, object], model_dir: Path
) -> None:
    """Kubernetes takes the pod out of the endpoints some time after SIGTERM: requests meanwhile still succeed."""
    server = RuntimeServer(mlp[0], model_dir / "delay.log", "--shutdown-delay-s", "3", model_name="iris")
    server.wait_ready()
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    ready = httpx.get(f"{server.url}/v2/health/ready", timeout=5.0)
    assert (ready.status_code, ready.json()) == (503, {"ready": False, "reason": "server is shutting down"})
    assert httpx.get(f"{server.url}/v2/health/live", timeout=5.0).status_code == 200
    assert value(scrape(server.url), "modeldeploy_model_ready", model="iris") == 0
    assert httpx.post(server.infer_url, json=MLP_BODY, timeout=5.0).status_code == 200

    def still_admitting() -> bool:
        try:
            answer = httpx.post(server.infer_url, json=MLP_BODY, timeout=5.0)
        except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
            # Nothing was in flight, so the drain ended at once and the server closed: refused, or, for a
            # connection the kernel queued as the listener closed, reset or closed before any answer.
            return False
        assert answer.status_code in (200, 503), answer.text
        return answer.status_code == 200

    while still_admitting():
        assert time.monotonic() - signalled < 30, "still admitting long after the delay"
        time.sleep(0.05)
    assert time.monotonic() - signalled >= 3
    # On its own, after the one SIGTERM: a second one sent while it still shuts down is re-raised by uvicorn at its
    # exit, and a slow machine turns that race into an exit by signal.
    assert server.process.wait(timeout=30) == 0
    server.terminate()


def test_corrupt_model_keeps_serving_probes_with_the_reason(mlp: tuple[Path, object], model_dir: Path) -> None:
    path = corrupt_copy(mlp[0], model_dir / "corrupt.pt")
    server = RuntimeServer(path, model_dir / "corrupt.log", model_name="broken")
    try:
        server.wait_live()
        deadline = time.monotonic() + 30
        while "failed" not in (reason := httpx.get(f"{server.url}/v2/health/ready").json()["reason"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ready = httpx.get(f"{server.url}/v2/health/ready")
        assert ready.status_code == 503
        assert reason.startswith("model failed to load: ")
        assert "not a valid zip" in reason
        assert str(path) not in reason and str(path) in server.log()  # paths stay on the server
        infer = httpx.post(server.infer_url, json=SLOW_BODY)
        assert infer.status_code == 503
        assert "failed to load" in infer.json()["error"]
        metadata = httpx.get(f"{server.url}/v2/models/broken")
        assert metadata.status_code == 503 and metadata.headers["retry-after"] == "5"
        assert "has no metadata yet: model failed to load" in metadata.json()["error"]
        assert value(scrape(server.url), "modeldeploy_model_ready", model="broken") == 0
        assert "ModelLoadFailed: " in server.log()
    finally:
        assert server.terminate() == 0


def test_exit_on_load_failure_exits_3_with_a_termination_message(model_dir: Path) -> None:
    path = model_dir / "garbage.pt"
    path.write_bytes(b"this is not a model")
    server = RuntimeServer(path, model_dir / "exit3.log", model_name="garbage",
                           env={"MODELDEPLOY_EXIT_ON_LOAD_FAILURE": "true"})  # fmt: skip
    assert server.process.wait(60) == 3
    message = server.log_path.with_suffix(".termination").read_text()
    assert message.startswith("ModelLoadFailed: model file ")
    assert "not a valid zip" in message


def test_cuda_requested_without_a_gpu_is_a_load_failure(mlp: tuple[Path, object], model_dir: Path) -> None:
    server = RuntimeServer(mlp[0], model_dir / "cuda.log", "--device", "cuda", "--exit-on-load-failure")
    assert server.process.wait(60) == 3
    assert server.log_path.with_suffix(".termination").read_text() == (
        "ModelLoadFailed: device 'cuda' was asked for but CUDA is not available in this container"
    )


class _CreatesMarker:
    """A pickle that, if ever unpickled by the full unpickler, creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def poison_exported_program(clean: Path, poisoned: Path, marker: Path) -> None:
    """Rewrites the first weight as a pickle that creates `marker` when the full unpickler reads it."""
    with zipfile.ZipFile(clean) as source:
        members = {item.filename: source.read(item) for item in source.infolist()}
    config_name = next(name for name in members if name.endswith("model_weights_config.json"))
    config = json.loads(members[config_name])
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True
    members[config_name] = json.dumps(config).encode()
    payload = io.BytesIO()
    pickle.dump(_CreatesMarker(marker), payload)
    members[config_name.rsplit("/", 1)[0] + "/" + first["path_name"]] = payload.getvalue()
    with zipfile.ZipFile(poisoned, "w") as target:
        for name, data in members.items():
            target.writestr(name, data)


def test_exported_program_with_a_code_running_pickle_is_refused(model_dir: Path) -> None:
    """torch.export.load would run this pickle; the runtime refuses the file before torch sees it."""
    clean = model_dir / "clean.pt2"
    models.build_exported_mlp(clean)
    marker = model_dir / "pwned"
    poisoned = model_dir / "poisoned.pt2"
    poison_exported_program(clean, poisoned, marker)
    server = RuntimeServer(poisoned, model_dir / "poisoned.log", "--exit-on-load-failure", model_name="poisoned")
    assert server.process.wait(60) == 3
    message = server.log_path.with_suffix(".termination").read_text()
    assert "weights_only" in message, message
    assert not marker.exists()


def test_bad_settings_exit_2_naming_flag_and_env(mlp: tuple[Path, object]) -> None:
    command = [sys.executable, "-m", "modeldeploy_runtime", "serve", "--model-name", "m", "--model-path", str(mlp[0])]
    result = subprocess.run([*command, "--max-batch-size", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "invalid setting --max-batch-size / MODELDEPLOY_MAX_BATCH_SIZE (got '0')" in result.stderr
    assert "greater than or equal to 1" in result.stderr
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={"MODELDEPLOY_DTYPE": "int8", "PATH": ""}
    )
    assert result.returncode == 2
    assert "invalid setting --dtype / MODELDEPLOY_DTYPE (got 'int8')" in result.stderr
    assert "'float32', 'float16' or 'bfloat16'" in result.stderr

"""The local playground behind `make dev`: a real control plane with simulated GPU nodes, the CRD, the operator,
a sample ModelDeployment going Ready, and the real runtime serving the sample's model with one inference request.

    python -m modeldeploy_devcluster.playground up [--once]   # Ctrl-C (or `down`) stops everything
    python -m modeldeploy_devcluster.playground down

Simulated nodes run no containers, so the runtime the ModelDeployment describes runs here, as a local process.
"""

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from modeldeploy_devcluster.cluster import LocalCluster
from modeldeploy_devcluster.connection import ClusterConnection
from modeldeploy_devcluster.local_operator import environ_without_ours, free_port, operator_argv
from modeldeploy_devcluster.processes import ProcessRecord, is_running, log_tail, start_process, stop_processes

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "iris-classifier.yaml"
SAMPLE_NAMESPACE, SAMPLE_NAME = "playground", "iris-classifier"
READY_TIMEOUT_SECONDS = 120


class PlaygroundState(BaseModel):
    processes: list[ProcessRecord]


def _say(message: str) -> None:
    print(f"playground: {message}", file=sys.stderr, flush=True)


def _wait(what: str, record: ProcessRecord, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(record):
            raise SystemExit(f"playground: {record.name} exited while {what}:\n{log_tail(record)}")
        if check():
            return
        time.sleep(0.5)
    raise SystemExit(f"playground: timed out {what}:\n{log_tail(record)}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _spawn(
    state_dir: Path, records: list[ProcessRecord], name: str, argv: list[str], env: Mapping[str, str]
) -> ProcessRecord:
    """Start a process and record it in playground.json at once, so `down` finds it even when `up` fails
    (or is interrupted) while waiting for it."""
    record = start_process(name, argv, state_dir / "logs" / f"{name}.log", cwd=REPO, env=env)
    records.append(record)
    (state_dir / "playground.json").write_text(PlaygroundState(processes=records).model_dump_json())
    return record


def _start_operator(state_dir: Path, records: list[ProcessRecord], connection: ClusterConnection) -> None:
    health, metrics = free_port(), free_port()
    env = {**environ_without_ours(), "KUBECONFIG": str(connection.kubeconfig)}
    record = _spawn(state_dir, records, "operator", operator_argv(health, metrics), env)
    _wait("starting the operator", record, lambda: _answers(f"http://127.0.0.1:{health}/healthz"), 60)
    _say(f"operator running (metrics at http://127.0.0.1:{metrics}/metrics)")


def _start_runtime(state_dir: Path, records: list[ProcessRecord]) -> str:
    model = state_dir / "models" / "iris-classifier.pt"
    if not model.exists():
        subprocess.run(
            [sys.executable, str(REPO / "examples/models/build_example_model.py"), "--out", str(model)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "modeldeploy_runtime",
        "serve",
        "--model-name",
        SAMPLE_NAME,
        "--model-path",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--termination-log",
        str(state_dir / "runtime.termination-log"),
    ]
    record = _spawn(state_dir, records, "runtime", argv, environ_without_ours())
    url = f"http://127.0.0.1:{port}"
    _wait("loading the model", record, lambda: _answers(f"{url}/v2/health/ready"), 120)
    return url


def _infer(url: str) -> tuple[str, dict[str, Any]]:
    body = {
        "inputs": [
            {"name": "features", "shape": [2, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2, -2.0, 1.0, 0.5, 3.0]}
        ]
    }
    payload = json.dumps(body)
    request = urllib.request.Request(
        f"{url}/v2/models/{SAMPLE_NAME}/infer", data=payload.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return payload, json.loads(response.read())


def up(state_dir: Path, once: bool) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    down(state_dir, quiet=True)  # a playground left over from a killed run
    connection, _ = LocalCluster(state_dir / "cluster").up()
    records: list[ProcessRecord] = []
    try:
        connection.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
        connection.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.serving.modeldeploy.dev")
        _start_operator(state_dir, records, connection)
        connection.kubectl("create", "namespace", SAMPLE_NAMESPACE, check=False)
        connection.kubectl("apply", "-f", str(SAMPLE))
        _say(f"applied {SAMPLE.relative_to(REPO)}; waiting for Ready")
        connection.kubectl(
            "wait",
            "--for=condition=Ready",
            f"md/{SAMPLE_NAME}",
            "-n",
            SAMPLE_NAMESPACE,
            f"--timeout={READY_TIMEOUT_SECONDS}s",
            timeout=READY_TIMEOUT_SECONDS + 10,
        )
        print(connection.kubectl("get", "md,deployment,service,pods", "-n", SAMPLE_NAMESPACE, "-o", "wide").stdout)
        url = _start_runtime(state_dir, records)
        payload, answer = _infer(url)
        print(f"inference through the real runtime ({url}):\n  request:  {payload}\n  response: {json.dumps(answer)}")
        print(_next_steps(connection, url))
        if not once:
            _say("running; Ctrl-C stops everything")
            stop = threading.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
            while not stop.wait(1):
                if not all(is_running(r) for r in records):
                    _say("a playground process exited; stopping")
                    break
    finally:
        down(state_dir, quiet=False)


def _next_steps(connection: ClusterConnection, url: str) -> str:
    return f"""
Next, in another shell:
  {connection.export_lines().strip().replace(chr(10), chr(10) + "  ")}
  kubectl get md -A                                  # Model, GPUs, Ready, Status, URL
  kubectl describe md {SAMPLE_NAME} -n {SAMPLE_NAMESPACE}
  kubectl scale md/{SAMPLE_NAME} -n {SAMPLE_NAMESPACE} --replicas=3
  kubectl apply -f examples/cpu-classifier.yaml
  curl -s {url}/v2/models/{SAMPLE_NAME}
  curl -s -H 'Content-Type: application/json' {url}/v2/models/{SAMPLE_NAME}/infer \\
       -d '{{"inputs":[{{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}}]}}'
"""


def down(state_dir: Path, quiet: bool = False) -> None:
    state_file = state_dir / "playground.json"
    if state_file.exists():
        state = PlaygroundState.model_validate_json(state_file.read_text())
        stop_processes(list(reversed(state.processes)))
        state_file.unlink()
    cluster = LocalCluster(state_dir / "cluster")
    if cluster.load_state() is not None:
        cluster.down()
    if not quiet:
        _say("stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="playground", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--state-dir", type=Path, default=REPO / ".dev" / "playground")
    parser.add_argument("--once", action="store_true", help="stop everything after the demo request")
    arguments = parser.parse_args(argv)
    if arguments.command == "up":
        up(arguments.state_dir, arguments.once)
    else:
        down(arguments.state_dir)


if __name__ == "__main__":
    main()

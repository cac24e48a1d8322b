"""The local playground behind `make dev`: a real control plane with simulated GPU nodes and one real node, the
project's images built from its Dockerfiles, the chart's operator running as a pod, and sample ModelDeployments:
a classifier and a text model served for real on the real node, each answering a request through its Service (v2
inference, OpenAI chat completions), and a GPU classifier scheduled onto the simulated GPU nodes.

    python -m modeldeploy_devcluster.playground up [--once]   # Ctrl-C (or `down`) stops everything
    python -m modeldeploy_devcluster.playground down
"""

import argparse
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from modeldeploy_devcluster import images
from modeldeploy_devcluster.cluster import LocalCluster
from modeldeploy_devcluster.connection import ClusterConnection
from modeldeploy_devcluster.images import LocalImages
from modeldeploy_devcluster.real_node import real_node_scheduling
from modeldeploy_devcluster.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modeldeploy"
NAMESPACE = "playground"
OPERATOR_NAMESPACE = "modeldeploy-system"
RELEASE = "modeldeploy"
# Served for real: its pods run the runtime image on the real node, reading the model from a PersistentVolume.
SAMPLE = REPO / "examples" / "playground" / "iris-cpu.yaml"
SAMPLE_NAME = "iris-cpu"
MODEL_CLAIM = "playground-models"
MODEL_FILE = "iris-classifier.pt"
TEXT_SAMPLE = REPO / "examples" / "playground" / "text-generation.yaml"
TEXT_SAMPLE_NAME = "tiny-llama"
TEXT_MODEL_DIR = "tiny-llama"
# Scheduled onto the simulated H100s: GPU placement, no container.
GPU_SAMPLE = REPO / "examples" / "iris-classifier.yaml"
GPU_SAMPLE_NAME = "iris-classifier"
READY_TIMEOUT_SECONDS = 300
FIRST_ANSWER_TIMEOUT_SECONDS = 60


def _say(message: str) -> None:
    print(f"playground: {message}", file=sys.stderr, flush=True)


def chart_values(local: LocalImages) -> dict[str, Any]:
    """The chart's values for the local images, with the operator on the real node (one replica)."""
    repository, tag = local.operator.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "replicaCount": 1,
        "operator": {"runtimeImage": local.runtime, "logFormat": "text"},
        **real_node_scheduling(),
    }


def model_volume(claim: str, namespace: str, directory: Path) -> list[dict[str, Any]]:
    """A hostPath PersistentVolume on the real node (the machine's `directory`), bound to `claim` only."""
    volume_name = f"{namespace}-{claim}"
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume_name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(directory), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": volume_name,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]


def service_url(connection: ClusterConnection, namespace: str, name: str) -> str:
    """http://CLUSTER-IP:PORT of a ModelDeployment's Service, reachable from the machine through kube-proxy."""
    service = json.loads(connection.kubectl("get", "service", name, "-n", namespace, "-o", "json").stdout)
    return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


def install_operator(
    connection: ClusterConnection,
    values: dict[str, Any],
    work_dir: Path,
    *,
    release: str = RELEASE,
    namespace: str = OPERATOR_NAMESPACE,
) -> None:
    """`helm upgrade --install` of the chart, waiting until the operator's pods are Ready."""
    values_file = work_dir / f"{release}-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm = [str(connection.bin_dir / "helm"), f"--kubeconfig={connection.kubeconfig}"]
    result = subprocess.run(
        [*helm, "upgrade", "--install", release, str(CHART), "--namespace", namespace, "--create-namespace",
         "--values", str(values_file), "--wait", "--timeout", "5m"],
        capture_output=True,
        text=True,
        timeout=400,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"helm install of {release} failed:\n{result.stderr}")


def uninstall_operator(connection: ClusterConnection, *, release: str, namespace: str) -> None:
    helm = [str(connection.bin_dir / "helm"), f"--kubeconfig={connection.kubeconfig}"]
    subprocess.run(
        [*helm, "uninstall", release, "--namespace", namespace, "--wait"], capture_output=True, check=True, timeout=300
    )


def _build_models(directory: Path) -> None:
    """The classifier and the tiny text model, on the machine's directory the claim's volume is."""
    directory.mkdir(parents=True, exist_ok=True)
    for builder, target in (("build_example_model.py", MODEL_FILE), ("build_text_model.py", TEXT_MODEL_DIR)):
        if not (directory / target).exists():
            subprocess.run(
                [sys.executable, str(REPO / "examples" / "models" / builder), "--out", str(directory / target)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
    # The runtime runs as 65532 and reads the claim read-only.
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _chat(url: str) -> tuple[str, dict[str, Any]]:
    body = {"model": TEXT_SAMPLE_NAME, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 12}
    payload = json.dumps(body)
    request = urllib.request.Request(
        f"{url}/v1/chat/completions", data=payload.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return payload, json.loads(response.read())


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


def _first_answer(call: Callable[[], tuple[str, dict[str, Any]]], url: str) -> tuple[str, dict[str, Any]]:
    """kube-proxy programs a Service's endpoints a moment after the pod is Ready: until then connections are refused."""
    return wait_until(call, f"a first answer from {url}", timeout=FIRST_ANSWER_TIMEOUT_SECONDS, ignore=(OSError,))


def _wait_ready(connection: ClusterConnection, name: str) -> None:
    connection.kubectl(
        "wait",
        "--for=condition=Ready",
        f"md/{name}",
        "-n",
        NAMESPACE,
        f"--timeout={READY_TIMEOUT_SECONDS}s",
        timeout=READY_TIMEOUT_SECONDS + 10,
    )


def up(state_dir: Path, once: bool) -> None:
    # SIGTERM while starting unwinds like Ctrl-C, through the `finally` that takes everything down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    state_dir.mkdir(parents=True, exist_ok=True)
    down(state_dir, quiet=True)  # a playground left over from a killed run
    _say("building the images (cached by their inputs; the first build downloads torch)")
    runtime, operator = images.build_all()
    local = LocalImages(runtime=runtime.reference, operator=operator.reference)
    cluster = LocalCluster(state_dir / "cluster")
    connection, _ = cluster.up()
    try:
        cluster.import_images([runtime, operator])
        _say(f"installing the chart with {local.operator} (the operator runs as a pod on the real node)")
        install_operator(connection, chart_values(local), state_dir)
        connection.kubectl("create", "namespace", NAMESPACE, check=False)
        models = state_dir / "models"
        _build_models(models)
        connection.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(model_volume(MODEL_CLAIM, NAMESPACE, models)))
        applied = time.monotonic()
        connection.kubectl("apply", "-f", str(SAMPLE), "-f", str(GPU_SAMPLE), "-f", str(TEXT_SAMPLE))
        _say(f"applied the samples in {SAMPLE.parent.relative_to(REPO)} and {GPU_SAMPLE.relative_to(REPO)}")
        _wait_ready(connection, GPU_SAMPLE_NAME)
        _wait_ready(connection, SAMPLE_NAME)
        url = service_url(connection, NAMESPACE, SAMPLE_NAME)
        payload, answer = _first_answer(lambda: _infer(url), url)
        seconds = time.monotonic() - applied
        _wait_ready(connection, TEXT_SAMPLE_NAME)
        text_url = service_url(connection, NAMESPACE, TEXT_SAMPLE_NAME)
        chat_payload, chat_answer = _first_answer(lambda: _chat(text_url), text_url)
        print(connection.kubectl("get", "md,deployment,service,pods", "-n", NAMESPACE, "-o", "wide").stdout)
        print(
            f"inference through the Service {url} (the runtime in a pod on the real node), "
            f"{seconds:.0f} s after kubectl apply:\n  request:  {payload}\n  response: {json.dumps(answer)}"
        )
        print(
            f"chat completion through the Service {text_url} (the text model in a pod on the real node):\n"
            f"  request:  {chat_payload}\n  completion: {json.dumps(chat_answer)}"
        )
        print(_next_steps(connection, url, text_url))
        if not once:
            _say("running; Ctrl-C stops everything")
            stop = threading.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
            while not stop.wait(1):
                if cluster.running() is None:
                    _say("a cluster process exited; stopping")
                    break
    finally:
        down(state_dir, quiet=False)


def _next_steps(connection: ClusterConnection, url: str, text_url: str) -> str:
    return f"""
Next, in another shell:
  {connection.export_lines().strip().replace(chr(10), chr(10) + "  ")}
  kubectl get md -A                                  # Model, GPUs, Ready, Status, URL
  kubectl describe md {SAMPLE_NAME} -n {NAMESPACE}
  kubectl logs -n {NAMESPACE} deploy/{SAMPLE_NAME}   # the runtime's log, from the real node
  kubectl scale md/{SAMPLE_NAME} -n {NAMESPACE} --replicas=2
  curl -s {url}/v2/models/{SAMPLE_NAME}
  curl -s -H 'Content-Type: application/json' {url}/v2/models/{SAMPLE_NAME}/infer \\
       -d '{{"inputs":[{{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}}]}}'
  curl -s -H 'Content-Type: application/json' {text_url}/v1/chat/completions \\
       -d '{{"model":"{TEXT_SAMPLE_NAME}","messages":[{{"role":"user","content":"Hi"}}],"max_tokens":16}}'
"""


def down(state_dir: Path, quiet: bool = False) -> None:
    cluster = LocalCluster(state_dir / "cluster")
    if cluster.load_state() is not None:
        cluster.down()
    shutil.rmtree(state_dir / "models", ignore_errors=True)
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

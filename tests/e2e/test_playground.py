"""`make dev` end to end: the playground comes up, the operator runs as a pod, the classifier and the text model
answer through their Services from real pods, the GPU sample goes Ready on the simulated nodes, and nothing is left
afterwards."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


@pytest.mark.own_real_node
def test_playground_serves_the_sample_through_a_real_pod_and_cleans_up(tmp_path: Path) -> None:
    state = tmp_path / "playground"
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy_devcluster.playground", "up", "--once", "--state-dir", str(state)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    # kubectl get md,deployment,service,pods -o wide: NAME MODEL GPUS READY STATUS URL AGE for ModelDeployments.
    models = {
        line.split()[0].rsplit("/", 1)[1]: line.split()[1:5] for line in lines if line.startswith("modeldeployment")
    }
    assert models["iris-cpu"] == ["iris-cpu", "0", "1/1", "Ready"], result.stdout
    assert models["iris-classifier"] == ["iris-classifier", "1", "2/2", "Ready"], result.stdout
    assert models["tiny-llama"] == ["tiny-llama", "0", "1/1", "Ready"], result.stdout
    pods = [line.split() for line in lines if line.startswith("pod/iris-cpu-")]
    assert pods and all(pod[2] == "Running" and "real-node" in pod for pod in pods), result.stdout
    response = next(line for line in lines if line.strip().startswith("response:"))
    answer = json.loads(response.split("response:", 1)[1])
    assert answer["outputs"][0]["name"] == "logits" and answer["outputs"][0]["shape"] == [2, 3]
    logits = answer["outputs"][0]["data"]
    assert max(range(3), key=lambda i: logits[i]) != max(range(3), key=lambda i: logits[3 + i]), "two classes"
    completion_line = next(line for line in lines if line.strip().startswith("completion:"))
    completion = json.loads(completion_line.split("completion:", 1)[1])
    assert completion["object"] == "chat.completion" and completion["model"] == "tiny-llama"
    assert completion["choices"][0]["message"]["role"] == "assistant"
    assert 0 < completion["usage"]["completion_tokens"] <= 12
    assert not (state / "cluster").exists() or not any((state / "cluster").iterdir())
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True)
    assert leftovers.stdout == "", f"processes left running: {leftovers.stdout}"
    assert not Path("/run/modeldeploy-node").exists(), "the real node's runtime directory is left"
    assert not Path("/sys/class/net/mdnode0").exists(), "the real node's bridge is left"

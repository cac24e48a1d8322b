"""`make dev` end to end: the playground comes up, the sample goes Ready, the real runtime answers, and
nothing is left running afterwards."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


@pytest.mark.cluster
def test_playground_serves_the_sample_and_cleans_up(tmp_path: Path) -> None:
    state = tmp_path / "playground"
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy_devcluster.playground", "up", "--once", "--state-dir", str(state)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "iris-classifier   1      2/2     Ready" in result.stdout
    response = next(line for line in result.stdout.splitlines() if line.strip().startswith("response:"))
    answer = json.loads(response.split("response:", 1)[1])
    assert answer["outputs"][0]["name"] == "logits" and answer["outputs"][0]["shape"] == [2, 3]
    logits = answer["outputs"][0]["data"]
    assert max(range(3), key=lambda i: logits[i]) != max(range(3), key=lambda i: logits[3 + i]), "two classes"
    assert not (state / "playground.json").exists()
    assert not (state / "cluster").exists() or not any((state / "cluster").iterdir())
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True)
    assert leftovers.stdout == "", f"processes left running: {leftovers.stdout}"

"""`up` / `down` from the shell, on a second cluster of its own: eval-able output, loopback only, no leftovers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from modeldeploy_devcluster.processes import ProcessRecord, is_running

UP_TIMEOUT_SECONDS = 300


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy_devcluster", *args],
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT_SECONDS,
        check=False,
    )


def _listening_addresses(pids: list[int]) -> set[str]:
    """host:port (hex, as /proc prints them) of every TCP socket in LISTEN state owned by `pids`."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_address, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:
                listening.add(local_address)
    return listening


@pytest.mark.cluster
def test_up_prints_exports_reuses_a_running_cluster_and_down_leaves_no_process(tmp_path: Path) -> None:
    state_dir = tmp_path / "cluster"
    # A second cluster on the machine: the session's cluster holds the one real node a machine can have.
    up = _cli(
        "up",
        "--state-dir",
        str(state_dir),
        "--gpu-nodes",
        "1",
        "--gpus-per-node",
        "4",
        "--cpu-nodes",
        "0",
        "--real-node",
        "false",
    )
    assert up.returncode == 0, up.stderr
    export_kubeconfig, export_path = up.stdout.splitlines()
    assert export_kubeconfig == f"export KUBECONFIG={state_dir / 'kubeconfig'}"
    assert export_path.startswith("export PATH=") and export_path.endswith(':"$PATH"')

    try:
        # What a user does: eval the output, then use the kubectl it put on PATH.
        shell = subprocess.run(
            ["bash", "-c", 'eval "$EXPORTS" && kubectl get node gpu-node-0 -o jsonpath="{.status.allocatable}"'],
            env={**os.environ, "EXPORTS": up.stdout},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert json.loads(shell.stdout)["nvidia.com/gpu"] == "4"

        records = [
            ProcessRecord.model_validate(p) for p in json.loads((state_dir / "state.json").read_text())["processes"]
        ]
        assert [r.name for r in records] == [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        ]
        assert all(is_running(record) for record in records)
        listening = _listening_addresses([record.pid for record in records])
        assert listening, "the control plane listens somewhere"
        # 0100007F is 127.0.0.1 in /proc's byte order; kwok serves nothing.
        assert all(address.startswith("0100007F:") for address in listening), listening

        again = _cli("up", "--state-dir", str(state_dir))
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr
        assert again.stdout == up.stdout
        assert _cli("status", "--state-dir", str(state_dir)).returncode == 0
    finally:
        down = _cli("down", "--state-dir", str(state_dir))

    assert down.returncode == 0, down.stderr
    assert not any(is_running(record) for record in records)
    assert not state_dir.exists()
    assert _cli("status", "--state-dir", str(state_dir)).returncode == 1

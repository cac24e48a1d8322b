"""torch's threads sized from the container's CPU limit: the plan, and a started server that follows it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from modeldeploy_runtime.settings import ServeSettings
from modeldeploy_runtime.torch_threads import ThreadPlan, plan_threads
from runtime_server import RuntimeServer

THREADS_LOG = re.compile(r"torch threads: (\d+) intra-op per worker, (\d+) inter-op \((.*)\)")


def _plan(cpu_count: int, **settings: object) -> tuple[int | None, int | None]:
    plan: ThreadPlan = plan_threads(ServeSettings(model_name="m", model_path=Path("m.pt"), **settings), cpu_count)
    return plan.intra_op, plan.inter_op


@pytest.mark.parametrize(
    ("settings", "cpu_count", "expected"),
    [
        ({"cpu_limit_millicores": 500}, 64, (1, 1)),  # a part of a core still runs a thread
        ({"cpu_limit_millicores": 2000}, 64, (2, 2)),
        ({"cpu_limit_millicores": 2500}, 64, (3, 3)),  # rounded up
        ({"cpu_limit_millicores": 64000}, 8, (8, 8)),  # a limit above the node's cores gives no more threads
        ({"cpu_limit_millicores": 4000, "model_workers": 2}, 64, (2, 4)),  # workers share the limit
        ({"cpu_limit_millicores": 1000, "torch_threads": 3}, 64, (3, 1)),  # an explicit count wins
        ({}, 64, (None, None)),  # no limit: torch's default
        ({"model_workers": 4}, 16, (4, None)),
    ],
)
def test_threads_follow_the_cpu_limit(settings: dict[str, int], cpu_count: int, expected: tuple[int, int]) -> None:
    assert _plan(cpu_count, **settings) == expected


def _logged_threads(server: RuntimeServer) -> tuple[int, int, str]:
    match = THREADS_LOG.search(server.log())
    assert match is not None, server.log()
    return int(match[1]), int(match[2]), match[3]


def test_a_server_with_a_cpu_limit_runs_that_many_threads(mlp: tuple[Path, torch.nn.Module], model_dir: Path) -> None:
    server = RuntimeServer(
        mlp[0], model_dir / "cpu-limited.log", model_name="mlp", env={"MODELDEPLOY_CPU_LIMIT_MILLICORES": "500"}
    )
    try:
        server.wait_ready()
        assert _logged_threads(server)[:2] == (1, 1)
    finally:
        server.terminate()


def test_a_server_without_a_cpu_limit_keeps_torchs_default(mlp_server: RuntimeServer) -> None:
    fresh = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads(), torch.get_num_interop_threads())"],
        capture_output=True,
        text=True,
        check=True,
    )
    intra_op, inter_op, source = _logged_threads(mlp_server)
    assert (intra_op, inter_op) == tuple(int(count) for count in fresh.stdout.split())
    assert source.startswith("no CPU limit")

"""Two operator replicas with the chart's configuration and token: one leads, the other stands by and takes over.

Leader election runs with short durations (4s lease, 3s renew deadline, 0.5s retry) in the ratios of the chart's
defaults (15s / 10s / 2s). Takeover times are printed, not asserted; what is asserted is the order of events that
makes two replicas safe.
"""

from __future__ import annotations

import json
import re
import signal
import time
from datetime import datetime, timedelta
from typing import Any

from chart_models import apply, example, wait_condition
from chart_operator import OperatorProcess, OperatorStarter, chart_env
from chart_release import FAST_LEADER_ELECTION, Release
from modeldeploy_devcluster.connection import ClusterConnection
from modeldeploy_devcluster.testing import wait_until

LEASE_SECONDS = FAST_LEADER_ELECTION["leaseDurationSeconds"]
VALUES: dict[str, Any] = {
    "watch": {"scope": "release"},
    "rbac": {"aggregateToDefaultRoles": False},
    "leaderElection": FAST_LEADER_ELECTION,
}
TAKEOVER_TIMEOUT_SECONDS = 60.0


def lease(cluster: ClusterConnection, release: Release) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(
        cluster.kubectl("get", "lease", release.fullname, "-n", release.namespace, "-o", "json").stdout
    )["spec"]
    return spec


def identity(operator: OperatorProcess) -> str:
    """The candidate identity the process announced when it started waiting."""
    found = re.search(r"waiting to lead: Lease \S+ identity ([\w.-]+)", operator.log_text())
    assert found, operator.log_text()[-2000:]
    return found.group(1)


def microtime(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def start_replicas(
    cluster: ClusterConnection, release: Release, run_operator: OperatorStarter, count: int
) -> list[OperatorProcess]:
    release.install(VALUES)
    deployment = release.get("deployment", release.fullname)
    assert deployment is not None
    env = chart_env(deployment, release.namespace)
    token = cluster.service_account_kubeconfig(release.namespace, release.fullname)
    replicas = [run_operator(token, env, [release.namespace])]
    replicas[0].wait_for_log("became the leader")
    replicas += [run_operator(token, env, [release.namespace]) for _ in range(count - 1)]
    for standby in replicas[1:]:
        standby.wait_for_log("waiting to lead")
    return replicas


def test_standby_takes_over_when_the_leader_is_killed(
    cluster: ClusterConnection, release: Release, run_operator: OperatorStarter
) -> None:
    leader, standby = start_replicas(cluster, release, run_operator, 2)
    namespace = release.namespace
    assert standby.healthz() == {"role": "standby"}, "a standby must pass its probes while it waits"

    # While the leader renews, the standby stays one, well past a lease duration.
    apply(cluster, example("cpu-classifier"), namespace)
    wait_condition(cluster, namespace, "cpu-classifier", "Ready", "True")
    time.sleep(LEASE_SECONDS + 1)
    assert lease(cluster, release)["holderIdentity"] == identity(leader)
    assert leader.metric("modeldeploy_leader_election_leader") == 1
    assert standby.metric("modeldeploy_leader_election_leader") == 0
    assert leader.metric("modeldeploy_reconciles_total") > 0
    assert standby.metric("modeldeploy_reconciles_total") == 0, "only the leader reconciles"

    leader.send(signal.SIGKILL)
    killed_at = time.monotonic()
    last_held = lease(cluster, release)
    assert last_held["holderIdentity"] == identity(leader)
    wait_until(
        lambda: lease(cluster, release)["holderIdentity"] == identity(standby),
        "the standby to take the Lease",
        timeout=TAKEOVER_TIMEOUT_SECONDS,
    )
    takeover_seconds = time.monotonic() - killed_at
    taken = lease(cluster, release)
    # Safety: the standby waited a full lease duration after the dead leader's last renewal.
    assert microtime(taken["acquireTime"]) - microtime(last_held["renewTime"]) >= timedelta(seconds=LEASE_SECONDS)
    assert taken["leaseTransitions"] == last_held["leaseTransitions"] + 1
    standby.wait_for_log("became the leader")
    print(f"\nfailover: the standby took the Lease {takeover_seconds:.1f}s after SIGKILL (lease {LEASE_SECONDS}s)")

    # The new leader reconciles what comes next.
    apply(cluster, example("iris-classifier"), namespace)
    wait_condition(cluster, namespace, "iris-classifier", "Ready", "True")
    assert standby.metric("modeldeploy_reconciles_total") > 0
    assert standby.metric("modeldeploy_leader_election_leader") == 1


def test_a_leader_that_stops_hands_over_without_waiting_for_expiry(
    cluster: ClusterConnection, release: Release, run_operator: OperatorStarter
) -> None:
    leader, standby = start_replicas(cluster, release, run_operator, 2)
    leader.send(signal.SIGTERM)
    stopped_at = time.monotonic()
    assert leader.wait_exit(timeout=30) == 0, leader.log_text()[-3000:]
    assert "released the Lease" in leader.log_text()
    wait_until(
        lambda: lease(cluster, release)["holderIdentity"] == identity(standby),
        "the standby to take the released Lease",
        timeout=TAKEOVER_TIMEOUT_SECONDS,
    )
    print(f"\nhand-over: the standby took the released Lease {time.monotonic() - stopped_at:.1f}s after SIGTERM")
    apply(cluster, example("cpu-classifier"), release.namespace)
    wait_condition(cluster, release.namespace, "cpu-classifier", "Ready", "True")


def test_a_leader_that_loses_its_lease_exits_non_zero(
    cluster: ClusterConnection, release: Release, run_operator: OperatorStarter
) -> None:
    (leader,) = start_replicas(cluster, release, run_operator, 1)
    now = datetime.now().astimezone().isoformat(timespec="microseconds")
    steal = {"spec": {"holderIdentity": "someone-else", "renewTime": now, "acquireTime": now}}
    cluster.kubectl(
        "patch", "lease", release.fullname, "-n", release.namespace, "--type=merge", "-p", json.dumps(steal)
    )
    assert leader.wait_exit(timeout=30) == 1, leader.log_text()[-3000:]
    assert "leader election lost" in leader.log_text()
    assert lease(cluster, release)["holderIdentity"] == "someone-else", "a leader that lost must not write again"

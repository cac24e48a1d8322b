"""Automatic rollback: when to go back, where to, what the Deployment looks like meanwhile, and the history."""

from datetime import UTC, datetime, timedelta
from typing import Any

from modeldeploy_operator.reconcile.rollback import (
    MAX_REVISIONS,
    Rollback,
    Version,
    decide_rollback,
    held_deployment,
    record_revision,
    rollback_in_force,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
V2 = Version(generation=4, template_hash="v2", model_uri="pvc://models/broken.pt")
GOOD = {"generation": 3, "templateHash": "v1", "modelUri": "pvc://models/r50.pt", "outcome": "Succeeded", "time": "t"}
ROLLING = {"generation": 4, "templateHash": "v2", "modelUri": "pvc://models/broken.pt", "outcome": "RollingOut"}
LOAD_FAILED = "ModelLoadFailed: /mnt/models/broken.pt is not a TorchScript archive"


def _deployment(version: str, generation: int = 8, observed: int = 8, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation, "annotations": {"serving.modeldeploy.dev/spec-hash": "s"}},
        "spec": {
            "replicas": 2,
            "template": {"metadata": {"annotations": {"serving.modeldeploy.dev/template-hash": version}}},
        },
        "status": {"observedGeneration": observed, **status},
    }


def _pod(version: str, exit_code: int | None = None, message: str = "", **status: Any) -> dict[str, Any]:
    if exit_code is not None:
        status["containerStatuses"] = [
            {
                "name": "runtime",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": exit_code, "message": message}},
            }
        ]
    return {
        "metadata": {"name": "p", "annotations": {"serving.modeldeploy.dev/template-hash": version}},
        "status": status,
    }


def test_a_new_version_that_cannot_load_its_model_goes_back_to_the_last_good_one() -> None:
    pods = [_pod("v1"), _pod("v1"), _pod("v2", exit_code=3, message=LOAD_FAILED)]
    assert decide_rollback(V2, _deployment("v2"), pods, [GOOD, ROLLING]) == Rollback(
        failed_version="v2",
        failed_generation=4,
        reason="ModelLoadFailed",
        message=LOAD_FAILED,
        to_version="v1",
        to_generation=3,
    )


def test_a_passed_progress_deadline_rolls_back_once_the_controller_has_seen_the_template() -> None:
    deadline = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}
    seen = _deployment("v2", conditions=[deadline])
    assert decide_rollback(V2, seen, [], [GOOD, ROLLING]).reason == "ProgressDeadlineExceeded"
    stale = _deployment("v2", generation=9, observed=8, conditions=[deadline])
    assert decide_rollback(V2, stale, [], [GOOD, ROLLING]) is None, "that deadline was the previous template's"


def test_no_rollback_without_cause_or_target() -> None:
    crash = [_pod("v2", exit_code=3, message=LOAD_FAILED)]
    assert decide_rollback(V2, _deployment("v2"), [], [GOOD, ROLLING]) is None, "nothing failed"
    assert decide_rollback(V2, _deployment("v2"), crash, [ROLLING]) is None, "nothing ever succeeded"
    assert decide_rollback(V2, _deployment("v1"), crash, [GOOD, ROLLING]) is None, "v2 is not applied yet"
    waiting = [_pod("v2", conditions=[{"type": "PodScheduled", "reason": "Unschedulable", "message": "no node"}])]
    assert decide_rollback(V2, _deployment("v2"), waiting, [GOOD, ROLLING]) is None, "a node may come"
    old_crash = [_pod("v1", exit_code=1)]
    assert decide_rollback(V2, _deployment("v2"), old_crash, [GOOD, ROLLING]) is None, "not the new version's"


def test_a_version_that_succeeded_is_not_rolled_back_for_a_later_incident() -> None:
    proven = {**ROLLING, "outcome": "Succeeded", "time": "t"}
    oom = [_pod("v2", exit_code=137)]
    assert decide_rollback(V2, _deployment("v2"), oom, [GOOD, proven]) is None


def test_the_rollback_holds_while_the_spec_asks_for_the_failed_template() -> None:
    rollback = decide_rollback(V2, _deployment("v2"), [_pod("v2", exit_code=5)], [GOOD, ROLLING])
    assert rollback is not None
    held = held_deployment(_deployment("v2"), _replicaset_template("v1"), rollback)
    assert rollback_in_force(held, "v2") == rollback, "read back from the Deployment, after a restart too"
    assert rollback_in_force(held, "v3") is None, "a spec asking for another template is rolled out"
    assert rollback_in_force(_deployment("v2"), "v2") is None


def _replicaset_template(version: str) -> dict[str, Any]:
    return {
        "metadata": {
            "creationTimestamp": None,
            "labels": {"app.kubernetes.io/instance": "resnet", "pod-template-hash": "5d8f7b"},
            "annotations": {"serving.modeldeploy.dev/template-hash": version},
        },
        "spec": {"containers": [{"name": "runtime", "image": "runtime:1"}]},
    }


def test_the_held_deployment_keeps_the_spec_but_the_old_template() -> None:
    desired = _deployment("v2")
    desired["spec"]["replicas"] = 3
    rollback = Rollback("v2", 4, "ChecksumMismatch", "expected aa, got bb", "v1", 3)
    held = held_deployment(desired, _replicaset_template("v1"), rollback)
    assert held == {
        "metadata": {
            "generation": 8,
            "annotations": {
                "serving.modeldeploy.dev/spec-hash": "s",
                "serving.modeldeploy.dev/rolled-back": '{"failed_generation": 4, "failed_version": "v2", '
                '"message": "expected aa, got bb", "reason": "ChecksumMismatch", "to_generation": 3, '
                '"to_version": "v1"}',
            },
        },
        "spec": {
            "replicas": 3,
            "template": {
                "metadata": {
                    "labels": {"app.kubernetes.io/instance": "resnet"},
                    "annotations": {"serving.modeldeploy.dev/template-hash": "v1"},
                },
                "spec": {"containers": [{"name": "runtime", "image": "runtime:1"}]},
            },
        },
        "status": {"observedGeneration": 8},
    }


def test_the_history_supersedes_unfinished_versions_and_records_outcomes() -> None:
    history = record_revision([GOOD], V2, None, NOW)
    assert history[-1] == {**ROLLING, "time": "2026-11-23T12:00:00Z"}
    v3 = Version(generation=6, template_hash="v3", model_uri="pvc://models/r101.pt")
    later = NOW + timedelta(minutes=2)
    history = record_revision(history, v3, ("Succeeded", None), later)
    assert [(r["templateHash"], r["outcome"], r["time"]) for r in history] == [
        ("v1", "Succeeded", "t"),
        ("v2", "Superseded", "2026-11-23T12:02:00Z"),
        ("v3", "Succeeded", "2026-11-23T12:02:00Z"),
    ]
    assert record_revision(history, v3, ("Succeeded", None), later + timedelta(hours=1)) == history, "no churn"


def test_the_history_is_bounded_but_keeps_the_rollback_target() -> None:
    history: list[dict[str, Any]] = [GOOD]
    for generation in range(MAX_REVISIONS + 3):
        failed = Version(generation=10 + generation, template_hash=f"bad{generation}", model_uri="pvc://m/x.pt")
        history = record_revision(history, failed, ("Failed", "CrashLoopBackOff"), NOW)
    assert len(history) == MAX_REVISIONS
    assert history[0] == GOOD
    assert history[-1]["templateHash"] == f"bad{MAX_REVISIONS + 2}"

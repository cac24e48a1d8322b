"""KWOK's stages: every pod takes exactly one path, healthy or the failure its annotation asks for."""

from modeldeploy_devcluster import SIMULATE_ANNOTATION, Simulation
from modeldeploy_devcluster.kwok import access_manifests, stages


def _by_name() -> dict[str, dict]:
    return {stage["metadata"]["name"]: stage for stage in stages()}


def _expressions(stage: dict) -> list[dict]:
    return stage["spec"]["selector"]["matchExpressions"]


def test_each_simulation_has_a_stage_selecting_its_annotation_value() -> None:
    by_name = _by_name()
    for simulation in Simulation:
        expressions = _expressions(by_name[f"simulate-{simulation.value}"])
        assert {
            "key": f'.metadata.annotations["{SIMULATE_ANNOTATION}"]',
            "operator": "In",
            "values": [simulation.value],
        } in expressions


def test_healthy_path_skips_every_simulated_pod() -> None:
    for name in ("pod-ready", "pod-complete"):
        expressions = _expressions(_by_name()[name])
        excluded = next(e for e in expressions if SIMULATE_ANNOTATION in e["key"])
        assert excluded["operator"] == "NotIn"
        assert sorted(excluded["values"]) == sorted(s.value for s in Simulation)


def test_failure_stages_fire_once_per_pod() -> None:
    # Without this guard a stage would match its own output and rewrite the status forever.
    for simulation in Simulation:
        expressions = _expressions(_by_name()[f"simulate-{simulation.value}"])
        assert {"key": ".status.startTime", "operator": "DoesNotExist"} in expressions


def test_kwok_identity_may_not_touch_secrets() -> None:
    role = next(m for m in access_manifests() if m["kind"] == "ClusterRole")
    resources = {resource for rule in role["rules"] for resource in rule["resources"]}
    assert "secrets" not in resources
    assert {"pods/status", "nodes/status", "leases"} <= resources

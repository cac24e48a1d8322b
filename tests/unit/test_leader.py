"""Leader election's pure parts: who may write which Lease record, and which settings are consistent.

The election against the real control plane (two processes, SIGKILL, SIGTERM, a stolen Lease) is tested in
tests/chart/test_failover.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from modeldeploy_operator.__main__ import _parse_args
from modeldeploy_operator.leader import LeaseRecord, claim, released
from modeldeploy_operator.settings import OperatorSettings
from pydantic import ValidationError

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=30)
HELD_BY_A = LeaseRecord(holder="a", lease_duration_seconds=15, acquire_time=T0, renew_time=T0, transitions=3)


def test_a_missing_lease_is_created_for_the_candidate() -> None:
    record = claim(None, identity="b", now=NOW, lease_duration_seconds=15, holder_expired=True)
    assert record == LeaseRecord("b", 15, NOW, NOW, 0)


def test_the_holder_renews_keeping_its_acquire_time_and_transitions() -> None:
    record = claim(HELD_BY_A, identity="a", now=NOW, lease_duration_seconds=20, holder_expired=True)
    assert record == LeaseRecord("a", 20, T0, NOW, 3)


def test_a_valid_lease_of_another_holder_is_left_alone() -> None:
    assert claim(HELD_BY_A, identity="b", now=NOW, lease_duration_seconds=15, holder_expired=False) is None


def test_an_expired_lease_is_taken_over_as_a_new_transition() -> None:
    record = claim(HELD_BY_A, identity="b", now=NOW, lease_duration_seconds=15, holder_expired=True)
    assert record == LeaseRecord("b", 15, NOW, NOW, 4)


def test_a_released_lease_is_taken_at_once() -> None:
    free = released(HELD_BY_A, T0)
    assert free == LeaseRecord("", 1, T0, T0, 3)
    record = claim(free, identity="b", now=NOW, lease_duration_seconds=15, holder_expired=False)
    assert record == LeaseRecord("b", 15, NOW, NOW, 4)


def test_leader_election_settings_default_to_controller_runtime_timings() -> None:
    settings = OperatorSettings(leader_election=True, leader_election_namespace="ops")
    assert settings.leader_election_lease_name == "modeldeploy-operator"
    assert settings.leader_election_lease_duration_seconds == 15
    assert settings.leader_election_renew_deadline_seconds == 10
    assert settings.leader_election_retry_period_seconds == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"leader_election_renew_deadline_seconds": 15}, "leader_election_renew_deadline_seconds must be less than"),
        ({"leader_election_retry_period_seconds": 9}, "leader_election_retry_period_seconds x 1.2 must be less"),
        ({"leader_election_namespace": ""}, "leader_election_namespace is required"),
        ({"leader_election_lease_name": "Not_A_Name"}, "leader_election_lease_name"),
        ({"leader_election_lease_duration_seconds": 1}, "leader_election_lease_duration_seconds"),
    ],
)
def test_inconsistent_leader_election_settings_are_refused(overrides: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"leader_election": True, "leader_election_namespace": "ops", **overrides}
    with pytest.raises(ValidationError, match=message):
        OperatorSettings(**values)  # type: ignore[arg-type]


def test_leader_election_off_needs_no_namespace() -> None:
    assert OperatorSettings(leader_election=False, leader_election_namespace="").leader_election is False


def test_leader_election_flags() -> None:
    assert _parse_args(["--leader-elect", "--leader-election-namespace", "ops"]) == {
        "leader_election": True,
        "leader_election_namespace": "ops",
    }
    assert _parse_args(["--no-leader-elect"]) == {"leader_election": False}
    assert "leader_election" not in _parse_args([])

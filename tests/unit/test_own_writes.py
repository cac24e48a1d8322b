"""Our own writes stand in for the watch until it catches up, and never hide a later change or a deletion."""

from modeldeploy_operator.reconcile.own_writes import OwnWrites


def _obj(version: str, marker: str = "") -> dict:
    return {"metadata": {"resourceVersion": version}, "spec": {"marker": marker}}


def test_a_lagging_watch_is_replaced_by_what_we_wrote() -> None:
    writes = OwnWrites()
    writes.remember("uid", "Service", _obj("20", "ours"))
    assert writes.freshest("uid", "Service", None)["spec"]["marker"] == "ours", "not seen by the watch yet"
    assert writes.freshest("uid", "Service", _obj("12", "old"))["spec"]["marker"] == "ours"


def test_the_watch_wins_once_it_caught_up_or_moved_on() -> None:
    writes = OwnWrites()
    writes.remember("uid", "Service", _obj("20", "ours"))
    assert writes.freshest("uid", "Service", _obj("25", "edited by someone"))["spec"]["marker"] == "edited by someone"
    assert writes.freshest("uid", "Service", None) is None, "the entry is gone once the watch caught up"


def test_a_deletion_seen_by_the_watch_forgets_our_write() -> None:
    writes = OwnWrites()
    writes.remember("uid", "Service", _obj("20"))
    writes.remember("uid", "Deployment", _obj("21"))
    writes.forget("uid", "Service")
    assert writes.freshest("uid", "Service", None) is None
    assert writes.freshest("uid", "Deployment", None) is not None
    writes.forget("uid")
    assert writes.freshest("uid", "Deployment", None) is None

"""The caches' store: a list replaces it (no ghosts), watch events a list already covers are ignored."""

from typing import Any

from modeldeploy_operator.watch.owned import PODS
from modeldeploy_operator.watch.store import Change, Store


def _pod(name: str, version: int, owner: str = "resnet", ready: str = "True") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "resourceVersion": str(version),
            "labels": {"app.kubernetes.io/instance": owner},
            "managedFields": [{"manager": "kubelet"}],
        },
        "spec": {"containers": [{"name": "runtime"}]},
        "status": {"conditions": [{"type": "Ready", "status": ready}], "podIP": "10.0.0.1"},
    }


def _store() -> Store:
    return Store(PODS.owner_of, PODS.snapshot)


def _listed(store: Store, items: list[dict[str, Any]], version: str) -> list[Change]:
    return store.replace(store.entries(items), version)


def test_a_list_replaces_the_store_and_drops_what_the_apiserver_no_longer_has() -> None:
    store = _store()
    _listed(store, [_pod("a", 10), _pod("b", 11), _pod("c", 12, owner="bert")], "12")

    changes = _listed(store, [_pod("a", 10), _pod("b", 20, ready="False")], "25")

    assert len(store) == 2
    assert [pod["metadata"]["name"] for pod in store.owned_by(("team-a", "resnet"))] == ["a", "b"]
    assert store.owned_by(("team-a", "bert")) == []
    gone = {"metadata": {"name": "c"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert changes == [Change(("team-a", "resnet")), Change(("team-a", "bert"), gone)]


def test_pods_are_kept_slim() -> None:
    store = _store()
    _listed(store, [_pod("a", 10)], "10")

    (kept,) = store.owned_by(("team-a", "resnet"))
    assert kept == {"metadata": {"name": "a"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def test_watch_events_update_the_store_and_name_the_owner() -> None:
    store = _store()
    _listed(store, [], "5")

    assert store.apply("ADDED", _pod("a", 6)) == [Change(("team-a", "resnet"))]
    assert store.apply("MODIFIED", _pod("a", 7, ready="False")) == [Change(("team-a", "resnet"))]
    assert store.owned_by(("team-a", "resnet"))[0]["status"]["conditions"][0]["status"] == "False"
    (deleted,) = store.apply("DELETED", _pod("a", 8))
    assert deleted.owner == ("team-a", "resnet") and deleted.deleted is not None
    assert len(store) == 0 and store.owners() == []


def test_events_a_newer_list_already_shows_are_ignored() -> None:
    store = _store()
    _listed(store, [_pod("a", 30)], "40")

    assert store.apply("DELETED", _pod("a", 35)) == []  # deleted and re-created before the list
    assert store.apply("ADDED", _pod("b", 38)) == []  # created and deleted before the list
    assert len(store) == 1 and store.apply("DELETED", _pod("a", 41)) != []


def test_objects_without_an_owner_are_not_kept() -> None:
    store = _store()
    orphan = _pod("x", 3)
    del orphan["metadata"]["labels"]

    assert _listed(store, [orphan], "3") == [] and store.apply("ADDED", {**orphan, "metadata": {
        **orphan["metadata"], "resourceVersion": "4"}}) == []  # fmt: skip
    assert len(store) == 0


def test_a_list_keeps_what_it_holds_at_the_same_resource_version_and_packs_what_changed() -> None:
    store = _store()
    _listed(store, [_pod("a", 10), _pod("b", 11)], "11")
    held = store.entries([_pod("a", 10)])

    relisted = store.entries([_pod("a", 10), _pod("b", 12, ready="False")])

    assert relisted[0] is held[0]  # the same entry: not unpacked, snapshotted or packed again
    assert relisted[1].version == 12 and relisted[1] is not store.entries([_pod("b", 11)])[0]
    assert _listed(store, [_pod("a", 10), _pod("b", 12, ready="False")], "12") == [Change(("team-a", "resnet"))]
    assert [pod["status"]["conditions"][0]["status"] for pod in store.owned_by(("team-a", "resnet"))] == [
        "True",
        "False",
    ]

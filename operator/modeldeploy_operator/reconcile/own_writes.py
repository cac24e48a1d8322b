"""What we wrote, until the watches show it: the caches lag our own writes by a watch event.

Without this, a reconcile triggered by another object's event between our write and its watch event reads the
old object from the cache and writes again (at N = 1000, every Service was applied about twice). An entry is
dropped once the cache holds the same or a newer resourceVersion, so a later change by someone else is seen, and
when the watch reports the object deleted.

Entries are kept pickled, as the caches keep theirs (watch/store.py): an entry can outlive the write by a resync
period when no other reconcile of its owner follows, and as trees of dicts the applied children were most of the
operator's memory after a burst of creates (about 20 of 60 KB per ModelDeployment at N = 1000, docs/benchmarks.md).
"""

from typing import Any

from modeldeploy_operator.watch.store import pack, unpack


def _version(obj: dict[str, Any] | None) -> int:
    # resourceVersions are etcd revisions: comparable as integers on every apiserver backed by etcd.
    value = ((obj or {}).get("metadata") or {}).get("resourceVersion") or ""
    return int(value) if value.isdigit() else -1


class OwnWrites:
    def __init__(self) -> None:
        self._written: dict[tuple[str, str], tuple[int, bytes]] = {}  # (owner uid, kind) -> (version, packed)

    def remember(self, owner_uid: str, kind: str, obj: dict[str, Any]) -> None:
        self._written[(owner_uid, kind)] = (_version(obj), pack(obj))

    def freshest(self, owner_uid: str, kind: str, watched: dict[str, Any] | None) -> dict[str, Any] | None:
        """The watched object, unless what we wrote is newer than what the watch has shown so far."""
        written = self._written.get((owner_uid, kind))
        if written is None:
            return watched
        version, packed = written
        if watched is not None and _version(watched) >= version:
            del self._written[(owner_uid, kind)]
            return watched
        return unpack(packed)

    def forget(self, owner_uid: str, kind: str | None = None) -> None:
        """The watch saw it deleted (or the owner is gone): nothing we wrote stands any more."""
        for key in [key for key in self._written if key[0] == owner_uid and kind in (None, key[1])]:
            del self._written[key]

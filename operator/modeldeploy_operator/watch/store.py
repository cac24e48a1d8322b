"""The objects of one watched kind as the apiserver last showed them: pure, no I/O.

A list replaces the whole store, so it converges to the apiserver: an object deleted while the watch was away
(410 Gone, a restart) is dropped, not kept as a ghost. Watch events that a list already covers (their
resourceVersion is not newer than the list's) are ignored, so a list taken while a watch runs never goes back
in time. A list arrives in pages, and each page is packed into entries before the next is read: the whole list
as a tree of dicts would be the operator's peak memory at every start and resync (a ModelDeployment is 8 KB of
dicts and its Deployment 22 KB even without their managedFields: 300 MB for 10,000 of each). An object the store
holds at the same resourceVersion keeps its packed snapshot, so a resync's list of unchanged objects packs nothing.

Each object is kept pickled and compressed (zlib, its fastest level), as its kind's snapshot: a Deployment as a
tree of dicts and strings takes about six times the bytes of its pickle (26 KB against 4 KB; a ModelDeployment
15 KB against 3 KB), and the caches of thousands of ModelDeployments would otherwise be most of the operator's
memory; compressed, the memory the operator keeps per ModelDeployment fell from 41 to 27 KB (docs/benchmarks.md).
A read makes a fresh copy (20-35 us), so no reader can change the cache. Only bytes this process packed are ever
unpacked.
"""

import pickle
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

Key = tuple[str, str]  # (namespace, name)
OwnerOf = Callable[[dict[str, Any]], Key | None]
Snapshot = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Change:
    """An owner whose objects changed; `deleted` is the snapshot of an object that is gone, if one is."""

    owner: Key
    deleted: dict[str, Any] | None = None


def resource_version(obj: dict[str, Any]) -> int:
    # resourceVersions are etcd revisions: comparable as integers on every apiserver backed by etcd.
    value = (obj.get("metadata") or {}).get("resourceVersion") or ""
    return int(value) if value.isdigit() else -1


def object_key(obj: dict[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return (metadata.get("namespace") or "", metadata.get("name") or "")


class Entry(NamedTuple):
    """One object as the store keeps it."""

    key: Key
    owner: Key
    version: int
    packed: bytes  # its kind's snapshot, pickled and compressed


class Store:
    def __init__(self, owner_of: OwnerOf, snapshot: Snapshot) -> None:
        self._owner_of = owner_of
        self._snapshot = snapshot
        self._objects: dict[Key, Entry] = {}
        self._by_owner: defaultdict[Key, dict[Key, bytes]] = defaultdict(dict)
        self.listed_version = -1

    def __len__(self) -> int:
        return len(self._objects)

    def owners(self) -> list[Key]:
        return list(self._by_owner)

    def owned_by(self, owner: Key) -> list[dict[str, Any]]:
        return [unpack(packed) for packed in self._by_owner.get(owner, {}).values()]

    def entries(self, listed: Iterable[dict[str, Any]]) -> list[Entry]:
        """A list page's objects as the store keeps them, for `replace`: one the store holds at the same
        resourceVersion is not packed again."""
        entries = []
        for obj in listed:
            owner = self._owner_of(obj)
            if owner is None:
                continue
            key, version = object_key(obj), resource_version(obj)
            held = self._objects.get(key)
            if held is not None and version >= 0 and held.version == version and held.owner == owner:
                entries.append(held)
            else:
                entries.append(Entry(key, owner, version, pack(self._snapshot(obj))))
        return entries

    def replace(self, entries: Iterable[Entry], version: str) -> list[Change]:
        """A list's entries become the store; returns the owners whose objects came, went or changed."""
        before = self._objects
        self._objects, self._by_owner = {}, defaultdict(dict)
        self.listed_version = int(version) if version.isdigit() else -1
        changes: list[Change] = []
        for entry in entries:
            self._keep(entry)
            previous = before.pop(entry.key, None)
            if previous is None or previous.version != entry.version or previous.owner != entry.owner:
                changes.append(Change(entry.owner))
        changes += [Change(previous.owner, unpack(previous.packed)) for previous in before.values()]
        return changes

    def apply(self, event_type: str, obj: dict[str, Any]) -> list[Change]:
        """One watch event (ADDED, MODIFIED or DELETED); returns the owners it concerns."""
        version = resource_version(obj)
        if 0 <= version <= self.listed_version:
            return []  # the list this store holds already shows it
        key = object_key(obj)
        previous = self._drop(key)
        owner = self._owner_of(obj)
        if event_type == "DELETED":
            return [Change(previous.owner, unpack(previous.packed))] if previous else []
        changes = [Change(previous.owner)] if previous and previous.owner != owner else []
        if owner is not None:
            self._keep(Entry(key, owner, version, pack(self._snapshot(obj))))
            changes.append(Change(owner))
        return changes

    def _keep(self, entry: Entry) -> None:
        self._objects[entry.key] = entry
        self._by_owner[entry.owner][entry.key] = entry.packed

    def _drop(self, key: Key) -> Entry | None:
        previous = self._objects.pop(key, None)
        if previous is not None:
            siblings = self._by_owner[previous.owner]
            siblings.pop(key, None)
            if not siblings:
                del self._by_owner[previous.owner]
        return previous


def pack(obj: dict[str, Any]) -> bytes:
    return zlib.compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), 1)


def unpack(packed: bytes) -> dict[str, Any]:
    """A fresh copy of what `pack` was given."""
    obj: dict[str, Any] = pickle.loads(zlib.decompress(packed))
    return obj

"""Decides whether a child object must be applied, without writing anything at steady state.

A server-side apply that changes nothing is still a write request, so we apply only when
(a) the child is missing,
(b) the desired manifest changed since we last applied it (its hash, stamped on the object, differs), or
(c) our field manager no longer owns every field of the manifest (someone took one over or removed it).

The apiserver records in managedFields which manager owns which field. Our apply owns every field it sets; a
person's or another controller's write that changes or removes one of them moves that field to its own manager
(Kubernetes' server-side apply: "whenever a field's value does change, ownership moves from its current manager to
the manager making the change"). A mutating admission webhook that rewrites a field during our own apply (an image
tag to a digest, an injected env var or resource) leaves our ownership as our apply set it: the live values then
differ from the manifest, yet nothing drifted, and re-applying would only be mutated the same way again.
Values are never compared, so the apiserver's canonical forms (quantities, defaults) need no normalising either.
"""

import json
import zlib
from typing import Any

from modeldeploy_operator.manifests.content_hash import content_hash
from modeldeploy_operator.manifests.labels import FIELD_MANAGER, SPEC_HASH_ANNOTATION

# The parts of a manifest the apiserver tracks ownership of (name, namespace, apiVersion and kind it does not).
_OWNED_METADATA = ("labels", "annotations", "ownerReferences")
# Where a slim snapshot keeps our field manager's fields (never a key of a Kubernetes object).
_PACKED_OWN_FIELDS = "modeldeploy.ownFields"


def stamp(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with its own hash as an annotation, so a later spec change is seen even where the
    live object still satisfies the new manifest (a removed field, say)."""
    metadata = manifest["metadata"]
    annotations = {**metadata.get("annotations", {}), SPEC_HASH_ANNOTATION: content_hash(manifest)}
    return {**manifest, "metadata": {**metadata, "annotations": annotations}}


def needs_apply(stamped: dict[str, Any], live: dict[str, Any] | None) -> str | None:
    """Why the stamped manifest must be applied over `live`, or None when it need not.

    `live` is the object as the apiserver serves it, or slimmed by slim_managed_fields: not without our fields."""
    if live is None:
        return "missing"
    live_hash = (live.get("metadata", {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    if live_hash != stamped["metadata"]["annotations"][SPEC_HASH_ANNOTATION]:
        return "changed"
    if live.get("metadata", {}).get("deletionTimestamp"):
        return None  # being deleted (by GC, with its owner): re-creating it would fight the collector
    owned = own_fields(live)
    desired = {
        "metadata": {key: value for key, value in stamped["metadata"].items() if key in _OWNED_METADATA},
        "spec": stamped.get("spec") or {},
    }
    if owned is None or not _owns_all(owned, desired):
        return "drifted"
    return None


def own_fields(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The fields (FieldsV1) our field manager owns in `obj` through its applies, None when it owns none.

    `obj` is an object as the apiserver serves it, or a snapshot slimmed by `slim_managed_fields`."""
    packed = obj.get(_PACKED_OWN_FIELDS)
    if packed is not None:
        unpacked: dict[str, Any] = json.loads(zlib.decompress(packed))
        return unpacked
    return _ours((obj.get("metadata") or {}).get("managedFields") or [])


def slim_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` without managedFields, but with what our field manager owns, packed: caches hold one copy per watched
    object, and the fields of an average Deployment take 25 KB of Python objects as a tree, 1 KB packed (parsed
    again in 60 us when a reconcile reads them)."""
    metadata = dict(obj.get("metadata") or {})
    entries = metadata.pop("managedFields", None)
    slim = {**obj, "metadata": metadata}
    fields = _ours(entries or [])
    if fields is not None:
        slim[_PACKED_OWN_FIELDS] = zlib.compress(json.dumps(fields, separators=(",", ":")).encode(), 1)
    return slim


def _ours(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    for entry in entries:
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply":
            fields: dict[str, Any] = entry.get("fieldsV1") or {}
            return fields
    return None


def _owns_all(owned: dict[str, Any], desired: Any) -> bool:
    """Whether the FieldsV1 node `owned` covers every field of the desired value."""
    if not owned:
        return True  # the value is owned as a whole: a scalar, or an atomic map or list
    if isinstance(desired, dict):
        return all(f"f:{key}" in owned and _owns_all(owned[f"f:{key}"], value) for key, value in desired.items())
    if isinstance(desired, list):
        for item in desired:
            entry = _list_entry(owned, item)
            if entry is None or not _owns_all(entry, item):
                return False
    return True


def _list_entry(owned: dict[str, Any], item: Any) -> dict[str, Any] | None:
    """The FieldsV1 node of one item of a list: by its key fields (`k:{"name":"runtime"}`) in lists of maps, by its
    value (`v:"Ingress"`) in sets of scalars."""
    if not isinstance(item, dict):
        entry: dict[str, Any] | None = owned.get("v:" + json.dumps(item, separators=(",", ":")))
        return entry
    for path, entry in owned.items():
        if path.startswith("k:"):
            keys = json.loads(path[2:])
            # A key field the manifest leaves out was defaulted by the apiserver (a port's protocol, say).
            if any(field in item for field in keys) and all(
                item[field] == value for field, value in keys.items() if field in item
            ):
                return entry
    return None

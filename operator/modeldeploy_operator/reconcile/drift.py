"""Decides whether a child object must be applied, without writing anything at steady state.

A server-side apply that changes nothing is still a write request, so we apply only when
(a) the desired manifest changed since we last applied it (its hash, stamped on the object, differs), or
(b) the live object no longer carries what we want in the fields we set (someone edited or deleted it).
Fields other controllers or users add (labels, defaults, an HPA's replicas) are not ours and never count.
"""

from typing import Any

from modeldeploy_operator.api.quantity import parse_quantity
from modeldeploy_operator.manifests.content_hash import content_hash
from modeldeploy_operator.manifests.labels import SPEC_HASH_ANNOTATION

# Values at or under these keys are quantities: the apiserver rewrites "0.5" as "500m" and 2 as "2".
_QUANTITY_KEYS = frozenset({"requests", "limits", "sizeLimit"})


def stamp(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with its own hash as an annotation, so a later spec change is seen even where the
    live object still satisfies the new manifest (a removed field, say)."""
    metadata = manifest["metadata"]
    annotations = {**metadata.get("annotations", {}), SPEC_HASH_ANNOTATION: content_hash(manifest)}
    return {**manifest, "metadata": {**metadata, "annotations": annotations}}


def needs_apply(stamped: dict[str, Any], live: dict[str, Any] | None) -> str | None:
    """Why the stamped manifest must be applied over `live`, or None when it need not."""
    if live is None:
        return "missing"
    live_hash = (live.get("metadata", {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    if live_hash != stamped["metadata"]["annotations"][SPEC_HASH_ANNOTATION]:
        return "changed"
    if live.get("metadata", {}).get("deletionTimestamp"):
        return None  # being deleted (by GC, with its owner): re-creating it would fight the collector
    if not _contains(live.get("spec"), stamped.get("spec")):
        return "drifted"
    if not _contains(live.get("metadata", {}).get("labels"), stamped["metadata"].get("labels")):
        return "drifted"
    return None


def _contains(live: Any, desired: Any, quantity: bool = False) -> bool:
    """True when `live` has every value of `desired` (it may have more)."""
    # The apiserver drops empty strings, maps and lists, and zero/false scalars that are not pointers.
    if desired is None or (isinstance(desired, str | dict | list) and not desired):
        return live is None or live == desired
    if isinstance(desired, bool | int) and not desired:
        return live is None or live == desired
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(_contains(live.get(key), value, quantity or key in _QUANTITY_KEYS) for key, value in desired.items())
    if isinstance(desired, list):
        return _list_contains(live, desired)
    if quantity:
        return _same_quantity(live, desired)
    return bool(live == desired)


def _list_contains(live: Any, desired: list[Any]) -> bool:
    if not isinstance(live, list):
        return False
    if desired and all(isinstance(item, dict) and "name" in item for item in desired):
        # Lists of named items (containers, env, volumes, ports) merge by name under server-side apply.
        by_name = {item.get("name"): item for item in live if isinstance(item, dict)}
        return all(_contains(by_name.get(item["name"]), item) for item in desired)
    if len(live) != len(desired):
        return False
    return all(_contains(have, want) for have, want in zip(live, desired, strict=True))


def _same_quantity(live: Any, desired: Any) -> bool:
    try:
        return parse_quantity(live) == parse_quantity(desired)
    except (TypeError, ValueError):
        return bool(live == desired)

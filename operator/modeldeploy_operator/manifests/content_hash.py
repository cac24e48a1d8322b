"""A short, stable hash of a manifest (or part of one): the same content always gives the same hash."""

import hashlib
import json
from typing import Any


def content_hash(content: Any) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]

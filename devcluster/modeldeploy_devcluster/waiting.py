"""Polling with a deadline: the one way this package (and its tests) wait for the cluster."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_WAIT_SECONDS = 60.0
_POLL_SECONDS = 0.2


def wait_until(
    condition: Callable[[], T],
    description: str,
    *,
    timeout: float = DEFAULT_WAIT_SECONDS,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    Exceptions of the types in `ignore` count as "not yet". On timeout, TimeoutError names `description`
    and the last value or error seen, so a failing test says what it was waiting for.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = condition()
            if result:
                return result
            last = result
        except ignore as error:
            last = error
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {description}; last: {last!r}")
        time.sleep(_POLL_SECONDS)

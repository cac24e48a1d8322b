"""Per-key limits: a token bucket per key owner and limit, so one noisy key never uses up another key's share.

Requests per second are charged before a request goes further. Tokens per minute (text models) are charged by
the generation path once it knows how many tokens a request used (`charge_tokens`); a key in debt is refused
its next requests until the bucket has refilled, as it would be had the count been known in advance.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from modeldeploy_runtime.errors import RateLimited


@dataclass(frozen=True)
class Rate:
    name: str  # as the ModelDeployment spells it; named in the 429's message
    per_second: float
    burst: float


@dataclass
class _Bucket:
    rate: Rate
    level: float
    updated: float = field(default_factory=time.monotonic)

    def refill(self, now: float) -> None:
        self.level = min(self.rate.burst, self.level + (now - self.updated) * self.rate.per_second)
        self.updated = now

    def seconds_until(self, amount: float) -> float:
        return max(0.0, (amount - self.level) / self.rate.per_second)


class KeyLimits:
    def __init__(self, requests: Rate | None, tokens: Rate | None) -> None:
        self._requests = requests
        self._tokens = tokens
        # Owners come from the key Secret, so these grow only with the number of keys.
        self._request_buckets: dict[str, _Bucket] = {}
        self._token_buckets: dict[str, _Bucket] = {}

    def admit_request(self, owner: str) -> None:
        """Charges one request to `owner`, or raises RateLimited naming the limit and when to retry."""
        now = time.monotonic()
        if self._tokens is not None:
            tokens = self._bucket(self._token_buckets, self._tokens, owner, now)
            if tokens.level < 0:
                self._refuse(self._tokens, owner, tokens.seconds_until(0))
        if self._requests is not None:
            requests = self._bucket(self._request_buckets, self._requests, owner, now)
            if requests.level < 1:
                self._refuse(self._requests, owner, requests.seconds_until(1))
            requests.level -= 1

    def charge_tokens(self, owner: str, count: int) -> None:
        """Charges the tokens a request used; the bucket may go into debt, which refuses the next requests."""
        if self._tokens is not None:
            self._bucket(self._token_buckets, self._tokens, owner, time.monotonic()).level -= count

    @staticmethod
    def _bucket(buckets: dict[str, _Bucket], rate: Rate, owner: str, now: float) -> _Bucket:
        bucket = buckets.get(owner)
        if bucket is None:
            bucket = buckets[owner] = _Bucket(rate, rate.burst, now)
        else:
            bucket.refill(now)
        return bucket

    @staticmethod
    def _refuse(rate: Rate, owner: str, wait_s: float) -> None:
        raise RateLimited(
            f"key '{owner}' is over its limit {rate.name}; retry after the Retry-After seconds",
            retry_after_s=max(1, math.ceil(wait_s)),
        )

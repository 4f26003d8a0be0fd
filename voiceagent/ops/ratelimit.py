"""Token buckets by key (a client address, a login name): the public routes and the login answer
429 when one client asks faster than a person could."""

from __future__ import annotations

import time
from collections import OrderedDict


class RateLimiter:
    """`rate_per_s` sustained, `burst` at once, per key; the least recently seen keys are forgotten
    beyond `max_keys` (a flood from many addresses costs memory only up to that)."""

    def __init__(self, rate_per_s: float, burst: float, max_keys: int = 50_000):
        self.rate, self.burst, self.max_keys = rate_per_s, burst, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def allow(self, key: str, cost: float = 1.0, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        ok = tokens >= cost
        self._buckets[key] = (tokens - cost if ok else tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return ok

    def retry_after_s(self, key: str, cost: float = 1.0) -> int:
        tokens, _ = self._buckets.get(key, (self.burst, 0.0))
        return max(1, int((cost - tokens) / self.rate + 0.999)) if self.rate > 0 else 60

"""Behaviour knobs: the request-rate token bucket and injected faults."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

FAULT_KINDS = ("500", "429", "drop", "slow")


class TokenBucket:
    """`rate` requests per second with a burst of one second's worth; rate 0 means unlimited."""

    def __init__(self, rate: float) -> None:
        self._lock = threading.Lock()
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self.rate = float(rate)
            self.capacity = max(1.0, self.rate)
            self.tokens = self.capacity
            self.stamp = time.monotonic()

    def take(self) -> bool:
        if self.rate <= 0:
            return True
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


@dataclass
class Faults:
    """Which injected fault, if any, hits the next API request.

    - "500": answered 500 api_error before the endpoint runs (nothing changes, nothing saved).
    - "429": answered as a rate-limit refusal before the endpoint runs.
    - "drop": the endpoint runs (a POST creates/updates its object and its idempotent result is
      saved), then the connection closes without a response: the client cannot tell, and a retry
      with the same Idempotency-Key replays the saved result.
    - "slow": the request sleeps `slow_seconds` (longer than a client timeout), then runs normally,
      so a client that gave up has still changed state.
    """

    rate: float = 0.0
    kinds: list[str] = field(default_factory=lambda: list(FAULT_KINDS))
    slow_seconds: float = 30.0
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reseed(self, seed: int | None) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def pick(self) -> str | None:
        if self.rate <= 0 or not self.kinds:
            return None
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            return self._rng.choice(self.kinds)

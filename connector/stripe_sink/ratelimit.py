"""A thread-safe token bucket: one shared requests/s budget for every Stripe call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Allows `rate` acquisitions per second on average, with bursts up to `burst`.

    Every worker thread calls `acquire()` before a Stripe request, so the whole process stays
    under Stripe's limit however many workers run.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate / 5)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def acquire(self) -> float:
        """Take one token, waiting as needed. Returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return waited
                shortfall = (1 - self._tokens) / self.rate
            self._sleep(shortfall)
            waited += shortfall

    def penalise(self, seconds: float) -> None:
        """After a 429, drain the bucket so every worker backs off together."""
        with self._lock:
            self._refill()
            self._tokens = min(self._tokens, 0) - seconds * self.rate

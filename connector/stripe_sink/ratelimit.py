"""The one requests/s budget every Stripe call shares: never more than `rps` in any rolling second.

A token bucket would allow a burst on top of the rate, so a one-second window could see
`rps + burst` requests, and Stripe answers 429 past its limit. The connector runs at the limit for
hours (backfills), so it paces instead: each request gets its own slot, at least
`(1 + margin) / rps` seconds after the previous slot, and an idle pause earns no burst. Any
one-second window then holds at most `rps` requests, with `margin` (3%) absorbing thread wake-up
and network jitter between here and Stripe. Every worker thread calls `acquire()` before a request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class PacedLimiter:
    def __init__(
        self,
        rate: float,
        *,
        margin: float = 0.03,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.interval = (1.0 + margin) / rate
        self._clock = clock
        self._sleep = sleep
        self._next = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Reserve the next slot and wait for it. Returns the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return wait

    def penalise(self, seconds: float) -> None:
        """After a 429, push every worker's next slot back together."""
        with self._lock:
            self._next = max(self._next, self._clock()) + seconds

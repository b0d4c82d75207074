"""The shared Stripe request budget: no one-second window ever holds more than `rps` requests."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from connector.stripe_sink.ratelimit import PacedLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def max_in_any_window(stamps: list[float], width: float = 1.0) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


@given(rate=st.integers(min_value=1, max_value=100), idle=st.lists(st.floats(0, 3), max_size=60))
def test_no_window_exceeds_the_rate_even_after_idle_pauses(rate, idle):
    clock = FakeClock()
    limiter = PacedLimiter(rate, clock=clock, sleep=clock.sleep)
    stamps = []
    for pause in [*idle, *([0.0] * (rate * 3))]:
        clock.sleep(pause)  # an idle pause earns no burst
        limiter.acquire()
        stamps.append(clock.now)
    assert max_in_any_window(stamps) <= rate


def test_penalise_pushes_every_caller_back():
    clock = FakeClock()
    limiter = PacedLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.penalise(2.0)
    limiter.acquire()
    assert clock.now >= 2.0

"""Batches in flight side by side, settled in order: the next batch is read, planned and its
intents recorded while the one before finishes its last creates and its write-back, so the Stripe
workers never wait on a drain between batches. A caller moves its position (the backfill's cursor,
an event stream's replay id) only as batches settle, in the order they were submitted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Lanes(Generic[T, R]):
    """`run(item)` for up to `depth` items at once; results handed back in submission order."""

    def __init__(self, run: Callable[[T], R], *, depth: int = 2) -> None:
        self._run = run
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="lane")
        self._in_flight: deque[tuple[T, Future[R]]] = deque()

    @property
    def in_flight(self) -> list[T]:
        return [item for item, _f in self._in_flight]

    def submit(self, item: T) -> list[tuple[T, R]]:
        """Start `item`; returns the oldest batches' results once `depth` are in flight (waits)."""
        self._in_flight.append((item, self._pool.submit(self._run, item)))
        settled = []
        while len(self._in_flight) > self._depth - 1:
            settled.append(self._settle())
        return settled

    def drain(self) -> list[tuple[T, R]]:
        """Every batch still in flight, in order (waits for each)."""
        return [self._settle() for _ in range(len(self._in_flight))]

    def _settle(self) -> tuple[T, R]:
        item, future = self._in_flight.popleft()
        return item, future.result()

    def close(self) -> None:
        self.drain()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Lanes[T, R]:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

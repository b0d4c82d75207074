"""One lock per key, so concurrent workers create a shared Stripe object (a Product, a Meter, a
Price reused by many Orders) exactly once: the first worker creates and links it under the lock,
the others wait, then find the link."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager


class KeyedLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Hashable, threading.Lock] = {}

    @contextmanager
    def hold(self, *key: Hashable) -> Iterator[None]:
        """Hold the lock for `key`. A worker holds one key at a time, so no two can deadlock."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield

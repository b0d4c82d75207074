"""Idempotent POSTs, as Stripe keeps them: per API key, the first result is replayed.

A key reused with other parameters (or another endpoint) is an idempotency_error; a key whose
first request is still running answers 409 idempotency_key_in_use (the SDK retries 409s). Results
are saved only once the endpoint started executing: validation errors and injected faults that
happen before it are not saved, so a retry with the same key runs again."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import StripeError

TTL_SECONDS = 24 * 3600


@dataclass
class Record:
    method: str
    path: str
    params: dict[str, Any]
    created: float = field(default_factory=time.time)
    done: bool = False
    status: int = 0
    body: bytes = b""
    request_id: str = ""


class IdempotencyStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], Record] = {}

    def reset(self) -> None:
        with self._lock:
            self._records.clear()

    def begin(self, api_key: str, key: str, method: str, path: str, params: dict[str, Any]) -> Record | None:
        """None: run the request (a fresh record now marks it in progress). A finished record:
        replay it. Raises for a mismatch or a concurrent request."""
        with self._lock:
            rec = self._records.get((api_key, key))
            if rec is not None and time.time() - rec.created > TTL_SECONDS:
                rec = None
            if rec is None:
                self._records[(api_key, key)] = Record(method, path, params)
                return None
            if (rec.method, rec.path) != (method, path):
                raise StripeError(
                    "Keys for idempotent requests can only be used for the same endpoint they were first "
                    f"used for ('{rec.method} {rec.path}' vs '{method} {path}'). Try using a key other than "
                    f"'{key}' if you meant to execute a different request.",
                    type="idempotency_error",
                    saved=False,
                )
            if rec.params != params:
                raise StripeError(
                    "Keys for idempotent requests can only be used with the same parameters they were first "
                    f"used with. Try using a key other than '{key}' if you meant to execute a different "
                    "request.",
                    type="idempotency_error",
                    saved=False,
                )
            if not rec.done:
                raise StripeError(
                    "There is currently another in-progress request using this Idempotent Key (that probably "
                    f"means you submitted twice, and the other request is still going through): {key}. "
                    "Please try again later.",
                    status=409,
                    code="idempotency_key_in_use",
                    saved=False,
                )
            return rec

    def finish(self, api_key: str, key: str, status: int, body: bytes, request_id: str, saved: bool) -> None:
        with self._lock:
            rec = self._records.get((api_key, key))
            if rec is None:
                return
            if not saved:
                del self._records[(api_key, key)]
                return
            rec.done, rec.status, rec.body, rec.request_id = True, status, body, request_id

    def count(self) -> int:
        with self._lock:
            return len(self._records)

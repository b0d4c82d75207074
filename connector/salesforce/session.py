"""The HTTP session every Salesforce call goes through: CA bundle, timeout, retries, counters.

simple-salesforce retries nothing, so this `requests.Session` does. What is retried, and why:

* **GET** (queries, describes): always safe; retried on retryable responses and network errors.
* **The OAuth token POST**: issuing a second token has no side effect; retried like a GET.
* **PATCH to `composite/sobjects` / `sobjects/...`** (updates set fixed field values, so sending
  them twice leaves the same result): retried on retryable responses and network errors.
* **POST to `composite/sobjects` / `sobjects/...`** (creates are *not* idempotent): retried only
  when Salesforce said it did nothing — 503, `UNABLE_TO_LOCK_ROW`, `REQUEST_LIMIT_EXCEEDED` are
  rejections before any DML is applied — and on a connect timeout (the request never left us).
  A read timeout or a 500 after a create may mean the records exist, so those are not retried.
* Anything else (DELETE, other POSTs) is never retried here.

"Retryable response" is decided by `errors.salesforce_response_retryable`, the one error table.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from connector.errors import salesforce_response_retryable

log = logging.getLogger(__name__)

CALL_OPTIONS_HEADER = "Sforce-Call-Options"
CALL_OPTIONS_VALUE = "client=cpq2stripe"

# Errors that mean Salesforce rejected a write without applying any of it.
_REJECTED_BEFORE_APPLY_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED"})
_REJECTED_BEFORE_APPLY_STATUSES = frozenset({503})


class RequestKind(StrEnum):
    QUERY = "query"
    QUERY_MORE = "query_more"
    COMPOSITE = "composite"
    AUTH = "auth"
    OTHER = "other"


def request_kind(url: str) -> RequestKind:
    """Which kind of Salesforce call a URL is, for the per-kind counters."""
    path = urlsplit(url).path.rstrip("/")
    if path.endswith("/services/oauth2/token"):
        return RequestKind.AUTH
    parts = path.split("/")
    # /services/data/vNN.N/<resource>[/...]
    if len(parts) >= 5 and parts[1:3] == ["services", "data"]:
        resource = parts[4]
        if resource in ("query", "queryAll"):
            return RequestKind.QUERY_MORE if len(parts) > 5 else RequestKind.QUERY
        if resource == "composite":
            return RequestKind.COMPOSITE
    return RequestKind.OTHER


def _is_sobject_write_path(url: str) -> bool:
    parts = urlsplit(url).path.rstrip("/").split("/")
    if len(parts) < 5 or parts[1:3] != ["services", "data"]:
        return False
    return parts[4] == "sobjects" or parts[4:6] == ["composite", "sobjects"]


def error_codes(response: requests.Response) -> list[str]:
    """The `errorCode`s of a Salesforce REST error body (a list, or a single object)."""
    try:
        body = response.json()
    except ValueError:
        return []
    items = body if isinstance(body, list) else [body]
    return [str(i["errorCode"]) for i in items if isinstance(i, dict) and "errorCode" in i]


def retry_after_seconds(response: requests.Response) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), or None when absent/unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class SalesforceSession(requests.Session):
    """A `requests.Session` for Salesforce: its CA bundle wins, default timeout, bounded retries
    with exponential backoff and full jitter, per-kind request counters, and our call-options
    header so the connector's own writes are recognisable in the org."""

    def __init__(
        self,
        *,
        ca_bundle: Path | str | None = None,
        timeout: float = 60.0,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.ca_bundle = str(ca_bundle) if ca_bundle else None
        if self.ca_bundle:
            self.verify = self.ca_bundle
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self.retries = 0
        self.headers[CALL_OPTIONS_HEADER] = CALL_OPTIONS_VALUE

    @property
    def calls(self) -> dict[str, int]:
        """HTTP requests sent (each attempt counts), per `RequestKind`."""
        with self._lock:
            return {kind.value: self._calls.get(kind.value, 0) for kind in RequestKind}

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        # requests lets REQUESTS_CA_BUNDLE override session.verify; the configured bundle must win.
        if self.ca_bundle and (verify is None or verify is True):
            verify = self.ca_bundle
        return super().merge_environment_settings(url, proxies, stream, verify, cert)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        method_s = (method.decode() if isinstance(method, bytes) else method).upper()
        url_s = url.decode() if isinstance(url, bytes) else url
        kwargs.setdefault("timeout", self.timeout)
        kind = request_kind(url_s)
        attempt = 0
        while True:
            attempt += 1
            with self._lock:
                self._calls[kind.value] += 1
            try:
                response = super().request(method_s, url_s, *args, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self.max_attempts or not self._may_retry_network_error(method_s, url_s, exc):
                    raise
                delay = self.backoff_delay(attempt)
                self._note_retry(method_s, url_s, kind, attempt, type(exc).__name__, delay)
                self._sleep(delay)
                continue
            if response.status_code < 400 or attempt >= self.max_attempts:
                return response
            codes = error_codes(response)
            if not self._may_retry_response(method_s, url_s, response.status_code, codes):
                return response
            delay = self.backoff_delay(attempt)
            hinted = retry_after_seconds(response)
            if hinted is not None:
                delay = max(delay, min(hinted, self.max_retry_after))
            self._note_retry(
                method_s, url_s, kind, attempt, f"{response.status_code} {','.join(codes)}".strip(), delay
            )
            response.close()
            self._sleep(delay)

    # --- policy -------------------------------------------------------------------------------

    def _may_retry_response(self, method: str, url: str, status: int, codes: list[str]) -> bool:
        if not salesforce_response_retryable(status, codes):
            return False
        if method in ("GET", "HEAD") or request_kind(url) is RequestKind.AUTH:
            return True
        if not _is_sobject_write_path(url):
            return False
        if method == "PATCH":
            return True
        if method == "POST":
            return status in _REJECTED_BEFORE_APPLY_STATUSES or any(
                c in _REJECTED_BEFORE_APPLY_CODES for c in codes
            )
        return False

    def _may_retry_network_error(self, method: str, url: str, exc: Exception) -> bool:
        if method in ("GET", "HEAD") or request_kind(url) is RequestKind.AUTH:
            return True
        if not _is_sobject_write_path(url):
            return False
        if method == "PATCH":
            return True
        # A create is only retried when it provably never reached Salesforce.
        return method == "POST" and isinstance(exc, requests.ConnectTimeout)

    def backoff_delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff: uniform(0, min(cap, base * 2^(attempt-1)))."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
        return self._rng.uniform(0, ceiling)

    def pause(self, attempt: int) -> None:
        """Sleep the backoff for `attempt` (used by callers re-sending per-record failures)."""
        self._sleep(self.backoff_delay(attempt))

    def _note_retry(
        self, method: str, url: str, kind: RequestKind, attempt: int, why: str, delay: float
    ) -> None:
        with self._lock:
            self.retries += 1
        # Path only: query strings carry SOQL, which may carry customer data.
        log.warning(
            "salesforce %s %s (%s) failed with %s; retry %d/%d in %.2fs",
            method,
            urlsplit(url).path,
            kind.value,
            why,
            attempt,
            self.max_attempts - 1,
            delay,
        )


def session_from_settings(settings: Any, **overrides: Any) -> SalesforceSession:
    """The session configured from `Settings` (CA bundle, timeout); overrides for tests."""
    options: dict[str, Any] = {
        "ca_bundle": settings.salesforce_ca_bundle,
        "timeout": settings.salesforce_timeout_seconds,
    }
    options.update(overrides)
    return SalesforceSession(**options)

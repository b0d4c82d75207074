"""Write-back buffer: Stripe ids and sync status onto Salesforce records, in batches.

Callers `stage()` field values per record as they go and `flush()` once per batch. The buffer
* merges several stagings of one record into one update,
* writes only the fields it was given (the connector owns only its Stripe id / status fields),
* skips fields whose value already equals what the record had when last read (`current`), so an
  unchanged sync sends nothing at all,
* redacts anything that looks like a secret and truncates text to the field length,
* sends sObject Collections PATCH calls, 200 records each (up to four at once), and reports
  per-record failures instead of raising for one bad record. Failures that a retry can cure stay
  staged for the next flush; others are returned and dropped.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from connector.errors import Disposition, classify
from connector.salesforce.client import RecordResult
from connector.salesforce.soql import is_record_id

log = logging.getLogger(__name__)

DEFAULT_TEXT_LENGTH = 32768
# Collection calls in flight at once per flush: short calls, far below the org's limit of 25
# concurrent long-running requests.
FLUSH_CONCURRENCY = 4
_TRUNCATION_MARK = "…"

_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Stripe secret and restricted keys (sk_live_…, sk_test_…, rk_live_…, rk_test_…, legacy forms).
    (re.compile(r"(?<![0-9A-Za-z])((?:sk|rk)_(?:live|test)_)[0-9A-Za-z]+"), r"\1***"),
    (re.compile(r"(?<![0-9A-Za-z])((?:sk|rk)_)[0-9A-Za-z]{16,}"), r"\1***"),
    (re.compile(r"(?<![0-9A-Za-z])whsec_[0-9A-Za-z]+"), "whsec_***"),
    # Bearer tokens in headers or messages, and Salesforce session ids (00D…!…).
    (re.compile(r"(?i)\b(bearer)\s+[0-9A-Za-z\-._~+/!]+=*"), r"\1 ***"),
    (re.compile(r"(?<![0-9A-Za-z])(00D[0-9A-Za-z]{12,15})![0-9A-Za-z._]+"), r"\1!***"),
    # JWTs (our own assertion, or JWT-style access tokens).
    (re.compile(r"\beyJ[0-9A-Za-z_-]+\.[0-9A-Za-z_-]+\.[0-9A-Za-z_-]*"), "***"),
]


def redact(text: str) -> str:
    """Mask anything in `text` that looks like a Stripe secret key, bearer token or session id."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, marking the cut with an ellipsis."""
    if limit < 1:
        raise ValueError("limit must be positive")
    if len(text) <= limit:
        return text
    return text[: limit - 1] + _TRUNCATION_MARK


def salesforce_datetime(dt: datetime) -> str:
    """A datetime in the exact form Salesforce returns it (2026-01-01T00:00:00.000+0000), so a
    staged value compares equal to the one read back."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime staged for write-back; use an aware (UTC) datetime")
    utc = dt.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


class CollectionWriter(Protocol):
    def update_many(self, sobject: str, records: list[dict[str, Any]]) -> list[RecordResult]: ...


@dataclass(frozen=True)
class WriteFailure:
    sobject: str
    record_id: str
    code: str
    message: str
    retryable: bool


@dataclass(frozen=True)
class FlushStats:
    sent: int
    skipped: int
    failed: int


_MISSING = object()


class WriteBack:
    """Buffers field updates per record and writes them in sObject Collection batches."""

    def __init__(
        self,
        client: CollectionWriter,
        *,
        field_lengths: Mapping[str, int] | None = None,
        default_text_length: int = DEFAULT_TEXT_LENGTH,
        chunk_size: int = 200,
        concurrency: int = FLUSH_CONCURRENCY,
    ) -> None:
        if not 1 <= chunk_size <= 200:
            raise ValueError("chunk_size must be between 1 and 200 (the sObject Collections limit)")
        self._client = client
        self._field_lengths = dict(field_lengths or {})
        self._default_text_length = default_text_length
        self._chunk_size = chunk_size
        self._concurrency = concurrency
        self._lock = threading.Lock()
        self._staged: dict[str, dict[str, dict[str, Any]]] = {}
        self._known: dict[tuple[str, str], dict[str, Any]] = {}
        self.last_flush = FlushStats(0, 0, 0)

    # --- staging ------------------------------------------------------------------------------

    def stage(
        self,
        sobject: str,
        record_id: str,
        fields: Mapping[str, Any],
        current: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue `fields` for `record_id`. `current`: the record's values as last read, so values
        that would not change are not sent."""
        if not is_record_id(record_id):
            raise ValueError(f"not a Salesforce record id: {record_id!r:.40}")
        clean = {name: self._clean(name, value) for name, value in fields.items()}
        for name in clean:
            if name in ("Id", "attributes"):
                raise ValueError(f"cannot stage field {name!r}")
        with self._lock:
            if current is not None:
                known = self._known.setdefault((sobject, record_id), {})
                known.update({k: _normalise(v) for k, v in current.items() if k not in ("Id", "attributes")})
            if clean:
                self._staged.setdefault(sobject, {}).setdefault(record_id, {}).update(clean)

    @property
    def pending(self) -> int:
        """Records with staged values (unchanged ones included until the next flush)."""
        with self._lock:
            return sum(len(records) for records in self._staged.values())

    def _clean(self, name: str, value: Any) -> Any:
        if isinstance(value, datetime):
            return salesforce_datetime(value)
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, str):
            if value == "":
                return None
            return truncate(redact(value), self._field_lengths.get(name, self._default_text_length))
        if value is None or isinstance(value, bool | int | float):
            return value
        raise TypeError(f"cannot write a {type(value).__name__} to {name}")

    # --- flushing -----------------------------------------------------------------------------

    def flush(self) -> list[WriteFailure]:
        """Send every staged change; return the records that failed (never raises for one bad
        record; raises only for a fatal error such as bad credentials)."""
        with self._lock:
            staged, self._staged = self._staged, {}
            work: dict[str, list[tuple[str, dict[str, Any]]]] = {}
            skipped = 0
            for sobject, records in staged.items():
                for record_id, fields in records.items():
                    known = self._known.get((sobject, record_id), {})
                    changed = {k: v for k, v in fields.items() if known.get(k, _MISSING) != v}
                    if changed:
                        work.setdefault(sobject, []).append((record_id, changed))
                    else:
                        skipped += 1

        chunks = [
            (sobject, items[start : start + self._chunk_size])
            for sobject, items in work.items()
            for start in range(0, len(items), self._chunk_size)
        ]
        failures: list[WriteFailure] = []
        sent = sum(len(chunk) for _, chunk in chunks)
        if len(chunks) <= 1 or self._concurrency <= 1:
            for sobject, chunk in chunks:
                failures.extend(self._send(sobject, chunk))
        else:
            # Separate records in each call, so the calls may run side by side: a batch's write-back
            # then costs about one round trip instead of one per 200 records.
            with ThreadPoolExecutor(max_workers=min(self._concurrency, len(chunks))) as pool:
                for result in pool.map(lambda c: self._send(*c), chunks):
                    failures.extend(result)
        self.last_flush = FlushStats(sent=sent, skipped=skipped, failed=len(failures))
        return failures

    def _send(self, sobject: str, chunk: list[tuple[str, dict[str, Any]]]) -> list[WriteFailure]:
        payload = [{"Id": record_id, **fields} for record_id, fields in chunk]
        try:
            results = self._client.update_many(sobject, payload)
        except Exception as exc:
            verdict = classify(exc)
            if verdict.disposition is Disposition.FATAL:
                self._restage(sobject, chunk)
                raise
            retryable = verdict.disposition is Disposition.RETRY
            log.warning(
                "write-back of %d %s records failed: %s", len(chunk), sobject, redact(verdict.message)
            )
            if retryable:
                self._restage(sobject, chunk)
            return [
                WriteFailure(sobject, record_id, verdict.code, redact(verdict.message), retryable)
                for record_id, _ in chunk
            ]

        failures = []
        for (record_id, fields), result in zip(chunk, results, strict=False):
            if result.success:
                with self._lock:
                    self._known.setdefault((sobject, record_id), {}).update(fields)
                continue
            first = result.errors[0].code if result.errors else "UNKNOWN"
            message = redact(result.message or "Salesforce rejected the update")
            log.warning("write-back of %s %s failed: %s", sobject, record_id, message)
            if result.retryable:
                self._restage(sobject, [(record_id, fields)])
            failures.append(WriteFailure(sobject, record_id, first, message, result.retryable))
        for record_id, fields in chunk[len(results) :]:
            failures.append(
                WriteFailure(sobject, record_id, "NO_RESULT", "Salesforce returned no result", True)
            )
            self._restage(sobject, [(record_id, fields)])
        return failures

    def _restage(self, sobject: str, chunk: list[tuple[str, dict[str, Any]]]) -> None:
        """Put failed values back; anything staged since (newer) wins over them."""
        with self._lock:
            records = self._staged.setdefault(sobject, {})
            for record_id, fields in chunk:
                records[record_id] = {**fields, **records.get(record_id, {})}


def _normalise(value: Any) -> Any:
    """Salesforce reads empty text back as null."""
    return None if value == "" else value

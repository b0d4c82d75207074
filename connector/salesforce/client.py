"""The connector's Salesforce client: simple-salesforce on our token and our retrying session.

* Tokens come from `auth.authenticate` (configurable login URL); an expired session
  (401 INVALID_SESSION_ID) re-authenticates once and repeats the call, invisibly to callers.
* Queries stream one page at a time (`query_pages`), so memory stays flat on big backfills.
* Writes use sObject Collections (`composite/sobjects`, 200 records a call, allOrNone=false) and
  return one `RecordResult` per record, in the order given. Records that fail only with a
  retryable per-record error (e.g. UNABLE_TO_LOCK_ROW) are sent again a bounded number of times.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession

from connector.errors import FatalError, salesforce_response_retryable
from connector.salesforce.auth import Token, authenticate
from connector.salesforce.session import SalesforceSession, session_from_settings
from connector.salesforce.soql import id_literal, is_record_id
from connector.settings import Settings

log = logging.getLogger(__name__)

COLLECTION_LIMIT = 200  # sObject Collections accept at most 200 records per call
RECORD_RETRY_ROUNDS = 3
SESSION_ATTEMPTS = 3  # an expired session is renewed and the call repeated, at most this often
_SOBJECT_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

T = TypeVar("T")


@dataclass(frozen=True)
class RecordErrorDetail:
    code: str
    message: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordResult:
    """The outcome for one record of a collection write (`id` is None for a failed create)."""

    id: str | None
    success: bool
    errors: tuple[RecordErrorDetail, ...] = field(default_factory=tuple)

    @property
    def retryable(self) -> bool:
        return not self.success and salesforce_response_retryable(0, [e.code for e in self.errors])

    @property
    def message(self) -> str:
        return "; ".join(f"{e.code}: {e.message}" for e in self.errors)


def _check_sobject(sobject: str) -> str:
    if not _SOBJECT_RE.fullmatch(sobject or ""):
        raise ValueError(f"not an sObject API name: {sobject!r:.60}")
    return sobject


def _parse_result(item: Any, fallback_id: str | None) -> RecordResult:
    if not isinstance(item, dict):
        return RecordResult(
            fallback_id, False, (RecordErrorDetail("UNKNOWN", f"unexpected result {item!r:.200}"),)
        )
    errors = tuple(
        RecordErrorDetail(
            code=str(e.get("statusCode") or e.get("errorCode") or "UNKNOWN"),
            message=str(e.get("message") or ""),
            fields=tuple(e.get("fields") or ()),
        )
        for e in (item.get("errors") or ())
        if isinstance(e, dict)
    )
    return RecordResult(id=item.get("id") or fallback_id, success=bool(item.get("success")), errors=errors)


@dataclass
class QueryStream:
    """A query whose first page has been read: how many records match, and the pages."""

    total_size: int
    pages: Iterator[list[dict[str, Any]]]


class SalesforceClient:
    """Talks to one org as the configured integration user. Thread-safe for concurrent calls."""

    def __init__(self, settings: Settings, *, session: SalesforceSession | None = None) -> None:
        self.settings = settings
        self.session = session or session_from_settings(settings)
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._sf: Salesforce | None = None
        self.reauthentications = 0

    # --- connection ---------------------------------------------------------------------------

    def connect(self) -> Token:
        """Authenticate now (otherwise the first call does). Raises FatalError on bad credentials."""
        with self._lock:
            if self._token is None:
                self._install(authenticate(self.settings, self.session))
            assert self._token is not None
            return self._token

    def _install(self, token: Token) -> None:
        self._token = token
        self._sf = Salesforce(
            instance_url=token.instance_url,
            session_id=token.access_token.get_secret_value(),
            session=self.session,
            version=self.settings.salesforce_api_version,
            object_pairs_hook=dict,
        )

    def _reauthenticate(self, stale: Salesforce) -> None:
        with self._lock:
            if self._sf is stale:  # another thread may already have renewed it
                self.reauthentications += 1
                log.info("salesforce session expired; re-authenticating")
                self._install(authenticate(self.settings, self.session))

    def _current(self) -> Salesforce:
        self.connect()
        assert self._sf is not None
        return self._sf

    def _call(self, fn: Callable[[Salesforce], T]) -> T:
        # Calls run side by side (write-back collections, workers): the token this call renews,
        # or finds renewed by another thread, can itself expire before the call is repeated, so
        # a few rounds are allowed before the credentials are taken to be bad.
        for attempt in range(1, SESSION_ATTEMPTS + 1):
            sf = self._current()
            try:
                return fn(sf)
            except SalesforceExpiredSession:
                if attempt == SESSION_ATTEMPTS:
                    break
                self._reauthenticate(sf)
        raise FatalError(
            "salesforce_session", "Salesforce rejected a freshly issued access token (INVALID_SESSION_ID)"
        )

    @property
    def token(self) -> Token:
        return self.connect()

    @property
    def user_id(self) -> str | None:
        """The integration user's id (from the token's identity URL)."""
        return self.connect().user_id

    @property
    def instance_url(self) -> str:
        return self.connect().instance_url

    @property
    def calls(self) -> dict[str, int]:
        """Requests sent per kind (query, query_more, composite, auth, other), retries included."""
        return self.session.calls

    @property
    def total_calls(self) -> int:
        """All HTTP requests sent to Salesforce (auth and retries included)."""
        return sum(self.session.calls.values())

    # --- reads --------------------------------------------------------------------------------

    def query_pages(self, soql: str, include_deleted: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Yield the records one API page at a time (query, then query_more on nextRecordsUrl).
        Empty pages are not yielded. Records keep Salesforce's `attributes` key."""
        yield from self.query_stream(soql, include_deleted).pages

    def query_stream(
        self, soql: str, include_deleted: bool = False, *, batch_size: int | None = None
    ) -> QueryStream:
        """Run the query's first call now, for its `totalSize`; the pages follow lazily.

        `batch_size` (200-2,000, `Sforce-Query-Options`) asks for smaller pages than the default
        2,000; Salesforce treats it as a hint."""
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"} if batch_size else {}
        first = self._call(lambda sf: sf.query(soql, include_deleted=include_deleted, headers=headers))
        return QueryStream(int(first.get("totalSize") or 0), self._pages_from(first, headers))

    def _pages_from(self, result: dict[str, Any], headers: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
        while True:
            records = result.get("records") or []
            if records:
                yield records
            next_url = result.get("nextRecordsUrl")
            if result.get("done", True) or not next_url:
                return
            result = self._call(partial(_query_more, url=next_url, headers=headers))

    def query_all(self, soql: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every record of the query in one list (use `query_pages` for large result sets)."""
        return [record for page in self.query_pages(soql, include_deleted) for record in page]

    def holds_permission(self, flag: str) -> bool:
        """Whether a permission set of the integration user (its profile's included: Salesforce
        exposes a profile as a permission set owned by it) grants `flag`, e.g.
        PermissionsEditActivatedOrders."""
        if not re.fullmatch(r"Permissions[A-Za-z]+", flag):
            raise ValueError(f"not a PermissionSet permission field: {flag!r}")
        user = self.user_id
        if not user or not is_record_id(user):
            raise FatalError("salesforce_auth", "the token did not name the integration user")
        soql = (
            f"SELECT Id FROM PermissionSetAssignment WHERE AssigneeId = {id_literal(user)} "
            f"AND PermissionSet.{flag} = true LIMIT 1"
        )
        return bool(self.query_all(soql))

    def describe(self, sobject: str) -> dict[str, Any]:
        name = _check_sobject(sobject)
        return self._call(lambda sf: sf.restful(f"sobjects/{name}/describe")) or {}

    # --- writes -------------------------------------------------------------------------------

    def update_many(self, sobject: str, records: list[dict[str, Any]]) -> list[RecordResult]:
        """PATCH records (each with `Id` and only the fields to write); one result per record."""
        for record in records:
            if not record.get("Id"):
                raise ValueError(f"update_many: every {sobject} record needs an Id")
        return self._collection_write(sobject, records, "PATCH")

    def create_many(self, sobject: str, records: list[dict[str, Any]]) -> list[RecordResult]:
        """POST new records; one result per record, `id` set for those created."""
        for record in records:
            if record.get("Id"):
                raise ValueError(f"create_many: {sobject} records must not carry an Id")
        return self._collection_write(sobject, records, "POST")

    def _collection_write(
        self, sobject: str, records: list[dict[str, Any]], method: str
    ) -> list[RecordResult]:
        """Chunks of 200; per-record retryable failures are re-sent up to RECORD_RETRY_ROUNDS times.

        A call that still fails after the session's retries raises (classify it); chunks sent
        before it stay applied. Re-running an update is harmless (PATCH sets fixed values); callers
        that must account for every create should pass at most 200 records at a time.
        """
        name = _check_sobject(sobject)
        results: list[RecordResult | None] = [None] * len(records)
        pending = list(range(len(records)))
        for round_no in range(RECORD_RETRY_ROUNDS + 1):
            for start in range(0, len(pending), COLLECTION_LIMIT):
                chunk = pending[start : start + COLLECTION_LIMIT]
                payload = {
                    "allOrNone": False,
                    "records": [{"attributes": {"type": name}, **records[i]} for i in chunk],
                }
                body = self._call(partial(_restful, path="composite/sobjects", method=method, json=payload))
                items = body if isinstance(body, list) else []
                for pos, index in enumerate(chunk):
                    item = items[pos] if pos < len(items) else None
                    results[index] = _parse_result(item, records[index].get("Id"))
            pending = [i for i in pending if (r := results[i]) is not None and r.retryable]
            if not pending or round_no == RECORD_RETRY_ROUNDS:
                break
            log.info(
                "salesforce %s %s: re-sending %d records that hit a retryable error",
                method,
                name,
                len(pending),
            )
            self.session.pause(round_no + 1)
        return [r for r in results if r is not None]


def _query_more(sf: Salesforce, *, url: str, headers: dict[str, str] | None) -> Any:
    return sf.query_more(url, identifier_is_url=True, headers=headers)


def _restful(sf: Salesforce, *, path: str, method: str, json: Any) -> Any:
    return sf.restful(path, method=method, json=json)

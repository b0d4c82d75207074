"""Bulk API 2.0 query jobs in the fake org: create, state, CSV results paged by `Sforce-Locator`.

What the real API does, and so does this:
* `POST /services/data/vXX.X/jobs/query` `{"operation": "query"|"queryAll", "query": SOQL}` answers
  200 with the job in state `UploadComplete`; `GET .../jobs/query/{id}` reports `InProgress`, then
  `JobComplete` (or `Aborted`/`Failed`) with `numberRecordsProcessed`.
* `GET .../jobs/query/{id}/results?maxRecords=N&locator=L` answers `text/csv` with the headers
  `Sforce-NumberOfRecords` and `Sforce-Locator` (the string `null` on the last set). Locators stay
  valid while the job exists, so a set can be fetched again.
* CSV: a header row of the columns as written in the SELECT (`Parent.Name` for parent paths),
  every value double-quoted, `""` for null (Salesforce has no empty text, so the two never clash),
  `true`/`false`, numbers as the REST API prints them, datetimes as `2024-01-31T10:00:00.000Z`,
  LF line endings.
* Unsupported in Bulk 2.0 and refused at create with 400 `API_ERROR`: parent-to-child subqueries
  and `COUNT()`. Syntax and field errors are refused with the REST error codes.
* `PATCH .../jobs/query/{id}` `{"state": "Aborted"}` aborts; `DELETE` removes a finished job (204).

Sorting: with ORDER BY, Salesforce cannot split the job into primary-key chunks and a sort over a
large object times out; such a job ends `Failed` here when the object holds more than
`sorted_limit_rows` records. Without ORDER BY the results come chunk by chunk
(`chunk_rows` records of Id range each, 100,000 by default as in Salesforce) in no guaranteed
order; here the chunks come last range first, so a client that assumes Id order is caught.

The query runs once, when the job is created (a snapshot, as a real job sees the data when it
runs); results are kept as CSV lines, not as rows, so a big job costs little memory here either.
`completion_polls` (default 1) is how many state requests see `InProgress` before `JobComplete`,
so clients must poll as they must in a real org.
"""

from __future__ import annotations

import csv
import io
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from connector.sandbox.http import Request, Response, Router
from connector.sandbox.salesforce.ids import make_id
from connector.sandbox.salesforce.soql import FieldPath

MAX_RECORDS_DEFAULT = 50_000
PK_CHUNK_ROWS = 100_000  # Salesforce's default PK chunk size
SORTED_LIMIT_ROWS = 1_000_000  # above this, a sorted job times out here
SORTED_TIMEOUT = (
    "QUERY_TIMEOUT: Your query request was running for too long. ORDER BY stops the query from being "
    "split into primary-key chunks; remove it."
)  # the real default is "as many as fit in ~1 GB"; this is plenty
JOB_PREFIX = "750"
TERMINAL = ("JobComplete", "Failed", "Aborted")


@dataclass
class QueryJob:
    id: str
    operation: str
    sobject: str
    created_by: str
    created: str
    api_version: float
    state: str = "UploadComplete"
    header: str = ""
    lines: list[str] = field(default_factory=list)
    polls_left: int = 1
    error: str | None = None

    def info(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject,
            "createdById": self.created_by,
            "createdDate": self.created,
            "systemModstamp": self.created,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": self.api_version,
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }
        return body


def _now() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and len(value) == 28 and value[10] == "T" and value.endswith("+0000"):
        return value[:-5] + "Z"  # Bulk API prints datetimes in UTC with a Z
    return str(value)


def _csv_line(values: list[str]) -> str:
    return ",".join('"' + v.replace('"', '""') + '"' for v in values) + "\n"


def _lookup(row: Any, parts: tuple[str, ...]) -> Any:
    """A column's value in a rendered REST row (keys keep the schema's case; SOQL is case-blind)."""
    current = row
    for part in parts:
        if not isinstance(current, dict):
            return None
        key = part if part in current else next((k for k in current if k.lower() == part.lower()), None)
        if key is None:
            return None
        current = current[key]
    return current


def _error(status: int, code: str, message: str) -> Response:
    return Response.json([{"errorCode": code, "message": message}], status)


class BulkQueryJobs:
    """The `jobs/query` resources of one fake org. `app` is the SalesforceApp (org, base paths)."""

    def __init__(self, app: Any, *, completion_polls: int = 1) -> None:
        self.app = app
        self.completion_polls = completion_polls
        self.chunk_rows = PK_CHUNK_ROWS
        self.sorted_limit_rows = SORTED_LIMIT_ROWS
        self._jobs: dict[str, QueryJob] = {}
        self._lock = threading.Lock()
        self._serial = 0

    def register(self, router: Router, api: str, wrap: Any) -> None:
        """Add the routes (before the API's catch-all); `wrap` is the app's auth/usage wrapper."""
        base = api + "/jobs/query"
        router.add("POST", base, wrap(self.create))
        router.add("GET", base, wrap(self.list_jobs))
        router.add("GET", base + "/{job_id}", wrap(self.info))
        router.add("PATCH", base + "/{job_id}", wrap(self.abort))
        router.add("DELETE", base + "/{job_id}", wrap(self.delete))
        router.add("GET", base + "/{job_id}/results", wrap(self.results))

    def reset(self) -> None:
        with self._lock:
            self._jobs.clear()

    # ---------------------------------------------------------------- resources
    def create(self, req: Request) -> Response:
        from connector.sandbox.salesforce.soql import CountItem, SoqlError, SubQuery, parse

        try:
            body = req.json()
        except ValueError:
            return _error(400, "JSON_PARSER_ERROR", "Unexpected character in the request body")
        if not isinstance(body, dict):
            return _error(400, "JSON_PARSER_ERROR", "Cannot deserialize the job definition")
        operation = body.get("operation")
        soql = body.get("query")
        if operation not in ("query", "queryAll"):
            return _error(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        if not isinstance(soql, str) or not soql.strip():
            return _error(400, "INVALIDJOB", "InvalidJob : The query must be provided")
        if body.get("contentType", "CSV") != "CSV":
            return _error(400, "INVALIDJOB", "InvalidJob : Only CSV content type is supported")
        try:
            parsed = parse(soql)
        except SoqlError as exc:
            return _error(400, exc.error_code, exc.message)
        for item in parsed.select:
            if isinstance(item, SubQuery):
                return _error(400, "API_ERROR", "Nested queries are not supported in Bulk API 2.0 query jobs")
            if isinstance(item, CountItem):
                return _error(400, "API_ERROR", "Aggregate queries are not supported in Bulk API 2.0")
        base = f"/services/data/{req.params['version']}"
        try:
            result = self.app.org.query(soql, include_deleted=operation == "queryAll", base_url_path=base)
        except SoqlError as exc:
            return _error(400, exc.error_code, exc.message)
        error = None
        records = list(result.records)
        sobject = self.app.org.schema.object(parsed.sobject).name
        if parsed.order_by:
            if self.app.org.count(sobject) > self.sorted_limit_rows:
                error, records = SORTED_TIMEOUT, []
        else:
            records.sort(key=lambda r: str(r.get("Id") or ""))
            size = max(1, self.chunk_rows)
            chunks = [records[i : i + size] for i in range(0, len(records), size)]
            records = [row for chunk in reversed(chunks) for row in chunk]
        columns = [cast(FieldPath, item).parts for item in parsed.select]  # Bulk refused the others
        header = _csv_line([".".join(parts) for parts in columns])
        lines = [_csv_line([_csv_value(_lookup(row, parts)) for parts in columns]) for row in records]
        with self._lock:
            self._serial += 1
            job_id = make_id(JOB_PREFIX, self._serial + 10_000_000)
            job = QueryJob(
                id=job_id,
                operation=operation,
                sobject=sobject,
                created_by=req.params["_user"],
                created=_now(),
                api_version=float(req.params["version"][1:]),
                header=header,
                lines=lines,
                polls_left=self.completion_polls,
                error=error,
            )
            self._jobs[job_id] = job
        return Response.json(job.info())

    def _job(self, req: Request) -> QueryJob | None:
        with self._lock:
            return self._jobs.get(req.params["job_id"])

    def list_jobs(self, req: Request) -> Response:
        with self._lock:
            records = [j.info() for j in self._jobs.values()]
        return Response.json({"done": True, "records": records, "nextRecordsUrl": None})

    def info(self, req: Request) -> Response:
        job = self._job(req)
        if job is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        with self._lock:
            if job.state in ("UploadComplete", "InProgress"):
                if job.polls_left > 0:
                    job.polls_left -= 1
                    job.state = "InProgress"
                else:
                    job.state = "Failed" if job.error else "JobComplete"
            body = job.info()
            body.update(
                numberRecordsProcessed=len(job.lines) if job.state == "JobComplete" else 0,
                retries=0,
                totalProcessingTime=0,
            )
            if job.error:
                body["errorMessage"] = job.error
        return Response.json(body)

    def abort(self, req: Request) -> Response:
        job = self._job(req)
        if job is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        body = req.json() if req.body else None
        if not isinstance(body, dict) or body.get("state") != "Aborted":
            return _error(400, "INVALIDJOBSTATE", "Only the state Aborted can be set on a query job")
        with self._lock:
            if job.state in TERMINAL:
                return _error(400, "INVALIDJOBSTATE", f"Job is already in the terminal state {job.state}")
            job.state = "Aborted"
            job.lines = []
            return Response.json(job.info())

    def delete(self, req: Request) -> Response:
        job = self._job(req)
        if job is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        with self._lock:
            if job.state not in TERMINAL:
                return _error(400, "INVALIDJOBSTATE", "Only a finished, failed or aborted job can be deleted")
            del self._jobs[job.id]
        return Response(204)

    def results(self, req: Request) -> Response:
        job = self._job(req)
        if job is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        if job.state != "JobComplete":
            return _error(
                400,
                "JOB_NOT_COMPLETE",
                "can only download query results of successfully completed bulk job with status: "
                f"JOB_COMPLETE. Current status: {job.state.upper()}",
            )
        query = req.query_dict()
        try:
            max_records = int(query.get("maxRecords") or MAX_RECORDS_DEFAULT)
            offset = int(query["locator"], 36) if query.get("locator") else 0
        except ValueError:
            return _error(400, "INVALIDLOCATOR", "The locator or maxRecords value is not valid")
        if max_records < 1 or offset < 0 or offset > len(job.lines):
            return _error(400, "INVALIDLOCATOR", "The locator or maxRecords value is not valid")
        chunk = job.lines[offset : offset + max_records]
        end = offset + len(chunk)
        locator = _b36(end) if end < len(job.lines) else "null"
        out = io.StringIO()
        out.write(job.header)
        out.writelines(chunk)
        return Response(
            200,
            out.getvalue().encode("utf-8"),
            {
                "Content-Type": "text/csv",
                "Sforce-NumberOfRecords": str(len(chunk)),
                "Sforce-Locator": locator,
            },
        )


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def parse_csv(text: str) -> list[list[str]]:
    """Parse a results body (for tests): the header row first."""
    return list(csv.reader(io.StringIO(text)))

"""Bulk API 2.0 query jobs on the connector's Salesforce client: large reads in few API calls.

`BulkQuery.pages(soql)` creates a query job, polls its state with a growing interval, then streams
the CSV results one set at a time (`maxRecords` per set, following `Sforce-Locator` until it says
`null`), converting each set to the same dicts the REST API returns, so the map/plan/apply code
needs no second path:

* types come from the objects' describe (fetched once per object): `true`/`false` -> bool, numbers
  -> int/float, `""` -> None (Salesforce has no empty text), datetimes `...Z` -> `...+0000` as REST
  prints them, everything else stays text;
* `Parent.Name` columns become `{"Parent": {"attributes": {...}, "Name": ...}}`, and a parent whose
  columns are all empty becomes `None`, as REST shows a null lookup;
* every record gets `attributes.type` (and `url` when its Id was selected).

Calls: one create, a few state polls, one GET per `maxRecords` records, one DELETE at the end
(the job is removed once read; an abandoned job is aborted). Auth renewal, retries of GETs and
call counting come from the client's session. Bulk 2.0 cannot run parent-to-child subqueries or
COUNT(); use the REST `query_pages` for those.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from connector.errors import FatalError

log = logging.getLogger(__name__)

DEFAULT_MAX_RECORDS = 10_000
_NUMBER_INT = frozenset({"int", "long"})
_NUMBER_FLOAT = frozenset({"double", "currency", "percent"})


class BulkQueryError(Exception):
    """The job failed or was aborted in Salesforce."""


def _convert(kind: str, text: str) -> Any:
    if text == "":
        return None
    if kind == "boolean":
        return text.lower() == "true"
    if kind in _NUMBER_INT:
        try:
            return int(text)
        except ValueError:
            return float(text)
    if kind in _NUMBER_FLOAT:
        return float(text)
    if kind == "datetime" and text.endswith("Z"):
        return text[:-1] + "+0000"
    return text


class RowShaper:
    """Turns CSV rows of one query into REST-shaped records, using describe for field types."""

    def __init__(self, sobject: str, header: list[str], describe: Callable[[str], dict[str, Any]]) -> None:
        self.sobject = sobject
        self.header = header
        self._describe = describe
        self._fields: dict[str, dict[str, dict[str, Any]]] = {}
        # per column: (relationship path with object names, leaf field name, type)
        self.columns: list[tuple[tuple[tuple[str, str], ...], str, str]] = [self._column(c) for c in header]

    def _field_map(self, sobject: str) -> dict[str, dict[str, Any]]:
        if sobject not in self._fields:
            described = self._describe(sobject) or {}
            self._fields[sobject] = {f["name"].lower(): f for f in described.get("fields", [])}
            for f in described.get("fields", []):
                if f.get("relationshipName"):
                    self._fields[sobject].setdefault("rel:" + f["relationshipName"].lower(), f)
        return self._fields[sobject]

    def _column(self, column: str) -> tuple[tuple[tuple[str, str], ...], str, str]:
        *hops, leaf = column.split(".")
        sobject = self.sobject
        path: list[tuple[str, str]] = []
        for hop in hops:
            ref = self._field_map(sobject).get("rel:" + hop.lower())
            if ref is None or not ref.get("referenceTo"):
                path.append((hop, ""))
                sobject = ""
                continue
            path.append((ref["relationshipName"], ref["referenceTo"][0]))
            sobject = ref["referenceTo"][0]
        described = self._field_map(sobject).get(leaf.lower()) if sobject else None
        name = described["name"] if described else leaf
        kind = described["type"] if described else "string"
        return tuple(path), name, kind

    def record(self, values: list[str], base_url: str) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": {"type": self.sobject}}
        for (path, name, kind), text in zip(self.columns, values, strict=False):
            node = out
            for relationship, target in path:
                child = node.get(relationship)
                if child is None:
                    child = node[relationship] = {"attributes": {"type": target}}
                node = child
            node[name] = _convert(kind, text)
        _finish(out, base_url)
        return out


def _finish(node: dict[str, Any], base_url: str) -> bool:
    """Set attribute urls, turn all-empty parents into None; True when the node has a value."""
    any_value = False
    for key, value in list(node.items()):
        if key == "attributes":
            continue
        if isinstance(value, dict):
            if _finish(value, base_url):
                any_value = True
            else:
                node[key] = None
        elif value is not None:
            any_value = True
    record_id = node.get("Id")
    if record_id:
        node["attributes"]["url"] = f"{base_url}sobjects/{node['attributes']['type']}/{record_id}"
    return any_value


class BulkQuery:
    """Bulk API 2.0 query jobs through a `SalesforceClient` (its token, session and retries)."""

    def __init__(
        self,
        client: Any,
        *,
        max_records: int = DEFAULT_MAX_RECORDS,
        poll_interval: float = 0.5,
        max_poll_interval: float = 10.0,
        timeout: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.max_records = max_records
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.timeout = timeout
        self._sleep = sleep
        self.polls = 0  # state requests sent (the "job polling" calls)
        self.jobs = 0
        self.result_sets = 0

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        def call(sf: Any) -> Any:
            return sf._call_salesforce(method, sf.base_url + path, name=path, **kwargs)

        return self.client._call(call)

    def create(self, soql: str, *, include_deleted: bool = False) -> dict[str, Any]:
        body = {"operation": "queryAll" if include_deleted else "query", "query": soql}
        self.jobs += 1
        job: dict[str, Any] = self._request("POST", "jobs/query", json=body).json()
        return job

    def wait(self, job_id: str) -> dict[str, Any]:
        """Poll until the job is JobComplete; raise BulkQueryError when it failed or was aborted."""
        interval = self.poll_interval
        deadline = time.monotonic() + self.timeout
        while True:
            self.polls += 1
            info: dict[str, Any] = self._request("GET", f"jobs/query/{job_id}").json()
            state = info.get("state")
            if state == "JobComplete":
                return info
            if state in ("Failed", "Aborted"):
                raise BulkQueryError(f"Bulk query job {job_id} {state}: {info.get('errorMessage') or ''}")
            if time.monotonic() > deadline:
                self.abort(job_id)
                raise BulkQueryError(f"Bulk query job {job_id} still {state} after {self.timeout:.0f}s")
            self._sleep(interval)
            interval = min(self.max_poll_interval, interval * 1.5)

    def abort(self, job_id: str) -> None:
        try:
            self._request("PATCH", f"jobs/query/{job_id}", json={"state": "Aborted"})
        except Exception as exc:  # best effort: the org drops jobs after 7 days anyway
            log.info("could not abort bulk query job %s: %s", job_id, exc)

    def delete(self, job_id: str) -> None:
        try:
            self._request("DELETE", f"jobs/query/{job_id}")
        except Exception as exc:
            log.info("could not delete bulk query job %s: %s", job_id, exc)

    def pages(self, soql: str, *, include_deleted: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Yield the query's records one result set (`max_records`) at a time, REST-shaped."""
        job = self.create(soql, include_deleted=include_deleted)
        job_id = str(job["id"])
        sobject = str(job.get("object") or "")
        completed = False
        try:
            self.wait(job_id)
            completed = True
            shaper: RowShaper | None = None
            locator: str | None = None
            while True:
                params: dict[str, Any] = {"maxRecords": self.max_records}
                if locator:
                    params["locator"] = locator
                response = self._request(
                    "GET", f"jobs/query/{job_id}/results", params=params, headers={"Accept": "text/csv"}
                )
                self.result_sets += 1
                next_locator = response.headers.get("Sforce-Locator")
                reader = csv.reader(io.StringIO(response.content.decode("utf-8")))
                header = next(reader, None)
                if header is None:
                    raise FatalError("salesforce_bulk", f"Bulk query job {job_id} returned no CSV header")
                if shaper is None:
                    shaper = RowShaper(sobject, header, self.client.describe)
                base_url = self.client._current().base_url
                base_path = base_url[base_url.index("/services/") :]
                records = [shaper.record(values, base_path) for values in reader]
                if records:
                    yield records
                if not next_locator or next_locator == "null":
                    break
                locator = next_locator
        finally:
            if completed:
                self.delete(job_id)
            else:
                self.abort(job_id)

    @property
    def calls(self) -> dict[str, int]:
        return {"jobs": self.jobs, "polls": self.polls, "result_sets": self.result_sets}

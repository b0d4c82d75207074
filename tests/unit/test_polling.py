"""Ids on demand (events, retries): one query per 200 ids, batches in flight side by side, stops
between batches, and every id either applied or reported."""

from __future__ import annotations

import re
import threading
import time
from types import SimpleNamespace
from typing import Any

from connector.sync import polling
from connector.sync.report import Outcome, RunReport


class FakeOrg:
    """Answers `Id IN (...)` queries with the ids it knows; counts queries."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.queries: list[list[str]] = []

    def query_pages(self, soql: str) -> list[list[dict[str, Any]]]:
        ids = re.findall(r"'([^']+)'", soql)
        self.queries.append(ids)
        return [[{"Id": i} for i in ids if i in self.known]]


class FakePipeline:
    object_type = "customer"
    noun = "Account"
    missing_reason = "deleted"

    def __init__(self, known: set[str], *, delay: float = 0.0, fatal_on: str | None = None) -> None:
        self.org = FakeOrg(known)
        self.cleared: list[str] = []
        store = SimpleNamespace(failures=SimpleNamespace(clear_many=lambda _t, ids: self.cleared.extend(ids)))
        self.ctx = SimpleNamespace(sf=self.org, store=store, stop=threading.Event(), progress=None)
        self.applied: list[str] = []
        self.delay = delay
        self.fatal_on = fatal_on
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def _select(self) -> str:
        return "SELECT Id FROM Account"

    def _where(self, *clauses: str) -> str:
        return " WHERE " + " AND ".join(clauses)

    def process(self, rows: list[dict[str, Any]], report: RunReport, links: Any = None) -> None:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        time.sleep(self.delay)
        for row in rows:
            if row["Id"] == self.fatal_on:
                report.fatal = "Stripe rejected the API key"
                break
            self.applied.append(row["Id"])
            report.add(Outcome("customer", row["Id"], "", "update", "updated", "cus_" + row["Id"]))
        with self._lock:
            self.running -= 1


def ids(n: int) -> list[str]:
    return [f"001{i:015d}" for i in range(n)]


def test_every_id_is_applied_once_with_one_query_per_200_and_batches_overlap() -> None:
    wanted = ids(450)
    sync = FakePipeline(set(wanted[:440]), delay=0.05)
    report = RunReport("events")
    assert polling.sync_ids(sync, [*wanted, *wanted[:10]], report) is True  # duplicates collapse
    assert [len(q) for q in sync.org.queries] == [200, 200, 50]
    assert sorted(sync.applied) == wanted[:440]
    assert sync.most_running == 2  # the next batch runs while one finishes
    missing = [o for o in report.outcomes if o.message == "deleted"]
    assert sorted(o.sf_id for o in missing) == wanted[440:] == sorted(sync.cleared)
    assert len(report.outcomes) == 450


def test_a_stop_request_ends_it_between_batches_and_says_so() -> None:
    wanted = ids(1000)
    sync = FakePipeline(set(wanted))
    report = RunReport("events")
    asked = {"n": 0}

    def should_stop() -> bool:
        asked["n"] += 1
        return asked["n"] > 2

    assert polling.sync_ids(sync, wanted, report, should_stop=should_stop) is False
    assert len(sync.org.queries) == 2 and len(sync.applied) == 400


def test_a_fatal_error_stops_further_batches() -> None:
    wanted = ids(1000)
    sync = FakePipeline(set(wanted), fatal_on=wanted[250])
    report = RunReport("events")
    assert polling.sync_ids(sync, wanted, report) is False
    assert report.fatal == "Stripe rejected the API key"
    assert len(sync.org.queries) <= 3  # the batch in flight finishes; none is started after

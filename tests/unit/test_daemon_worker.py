"""The sync worker: one lock for all sync work, standby does nothing, stops between pages."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from connector.daemon.metrics import Metrics
from connector.daemon.worker import InterruptibleSalesforce, NotWorking, ShutdownRequested, SyncWorker
from connector.state import StateStore
from connector.sync import streams
from connector.sync.report import Outcome


class FakeSalesforce:
    def __init__(self, pages: list[list[dict[str, Any]]]) -> None:
        self.pages = pages
        self.fetched = 0
        self.calls = {"query": 0}

    def query_pages(self, soql: str, include_deleted: bool = False):
        for page in self.pages:
            self.fetched += 1
            yield page


def test_armed_query_stops_between_pages_and_never_inside_one():
    sf = FakeSalesforce([[{"Id": "1"}], [{"Id": "2"}], [{"Id": "3"}]])
    stop = threading.Event()
    wrapped = InterruptibleSalesforce(sf, stop.is_set)
    wrapped.arm()
    seen = []
    with pytest.raises(ShutdownRequested):
        for page in wrapped.query_pages("SELECT Id FROM Account"):
            seen.append(page)
            stop.set()  # a signal arrives while the first page is being applied
    assert seen == [[{"Id": "1"}]]
    assert sf.fetched == 1  # the next page was never fetched


def test_unarmed_queries_run_to_completion():
    sf = FakeSalesforce([[{"Id": "1"}], [{"Id": "2"}]])
    wrapped = InterruptibleSalesforce(sf, lambda: True)
    assert [p for p in wrapped.query_pages("SELECT Id FROM Account")] == sf.pages
    assert wrapped.calls == {"query": 0}  # everything else is delegated


class FakeSync:
    """Stands in for the Accounts stream: records calls, can block to test the lock."""

    calls: ClassVar[list[tuple[str, Any]]] = []
    gate: threading.Event | None = None
    entered: threading.Event | None = None
    key, title, sf_object, object_type = "accounts", "Accounts → Customers", "Account", "customer"

    def poll(self, ctx, report) -> None:
        FakeSync.calls.append(("poll", ctx.mappings))
        if FakeSync.entered is not None:
            FakeSync.entered.set()
        if FakeSync.gate is not None:
            FakeSync.gate.wait(30)
        report.add(Outcome("customer", "001A", "Acme", "create", "created", "cus_1"))

    def sync_ids(self, ctx, ids, report, *, should_stop=None) -> bool:
        FakeSync.calls.append(("sync_ids", list(ids)))
        for i in ids:
            report.add(Outcome("customer", i, "", "update", "updated", "cus_" + i))
        return not (should_stop is not None and should_stop())


@pytest.fixture
def worker_parts(sqlite_url, monkeypatch):
    FakeSync.calls = []
    FakeSync.gate = None
    FakeSync.entered = None
    monkeypatch.setattr(streams, "STREAMS", (FakeSync(),))
    store = StateStore.open(sqlite_url)
    gateway = SimpleNamespace(calls={"customers.create": 2})
    ctx = SimpleNamespace(
        sf=FakeSalesforce([]),
        gateway=gateway,
        account_calls_by_operation=lambda: {"": dict(gateway.calls)},
        store=store,
        mappings="v1",
        run_id=None,
        fatal_message=None,
        now=lambda: datetime.now(UTC),
    )
    state = {"leader": True, "mappings": "v1"}
    metrics = Metrics()
    worker = SyncWorker(ctx, metrics, may_work=lambda: state["leader"], mappings=lambda: state["mappings"])
    yield worker, ctx, state, metrics
    store.close()


def test_standby_does_no_sync_work_and_refuses_event_batches(worker_parts):
    worker, _ctx, state, _metrics = worker_parts
    state["leader"] = False
    assert worker.poll() is False
    assert worker.retry_due() is False
    with pytest.raises(NotWorking):
        worker.sync_ids("Account", ["001A"])
    assert FakeSync.calls == []


def test_poll_records_a_run_counts_outcomes_and_uses_the_current_mapping(worker_parts):
    worker, ctx, state, metrics = worker_parts
    state["mappings"] = "v2"
    assert worker.poll() is True
    assert FakeSync.calls == [("poll", "v2")]
    run = ctx.store.runs.last("sync")
    assert run.status == "succeeded" and run.counts == {"customer created": 1}
    assert metrics.totals_by_status()["synced"] == 1
    assert metrics.get("cpq2stripe_last_poll_success_timestamp_seconds") > 0
    assert 'service="stripe"' in metrics.render()


def test_event_ids_go_to_their_objects_pipeline_and_are_counted(worker_parts):
    worker, _ctx, _state, metrics = worker_parts
    ids = [f"001{i:04d}" for i in range(450)]
    worker.sync_ids("Account", ids, received_at=0.0)
    assert [len(c[1]) for c in FakeSync.calls] == [450]
    assert metrics.get("cpq2stripe_event_ids_total", {"object": "Account"}) == 450
    assert metrics.get("cpq2stripe_event_handle_seconds") > 0


def test_events_for_unsynced_objects_are_ignored(worker_parts):
    worker, *_ = worker_parts
    worker.sync_ids("Contact", ["003A"])
    assert FakeSync.calls == []


def test_a_stop_between_event_batches_raises_so_the_replay_id_is_not_saved(worker_parts):
    worker, *_ = worker_parts
    original = FakeSync.sync_ids

    def stop_during(self, ctx, ids, report, *, should_stop=None):
        worker.stopping.set()  # a signal arrives while the ids are applied
        return original(self, ctx, ids, report, should_stop=should_stop)

    FakeSync.sync_ids = stop_during  # type: ignore[method-assign]
    try:
        with pytest.raises(ShutdownRequested):
            worker.sync_ids("Account", [f"001{i:04d}" for i in range(300)])
    finally:
        FakeSync.sync_ids = original  # type: ignore[method-assign]
    assert len(FakeSync.calls) == 1


def test_poll_and_event_work_never_overlap(worker_parts):
    worker, *_ = worker_parts
    FakeSync.gate = threading.Event()
    FakeSync.entered = threading.Event()
    poller = threading.Thread(target=worker.poll)
    poller.start()
    assert FakeSync.entered.wait(30)
    event_done = threading.Event()
    events = threading.Thread(target=lambda: (worker.sync_ids("Account", ["001B"]), event_done.set()))
    events.start()
    assert not worker.idle(0)  # the poll holds the worker
    assert not event_done.is_set()
    assert [c[0] for c in FakeSync.calls] == ["poll"]
    FakeSync.gate.set()
    poller.join(30)
    events.join(30)
    assert event_done.is_set()
    assert [c[0] for c in FakeSync.calls] == ["poll", "sync_ids"]
    assert worker.idle(0)


def test_a_failing_job_is_logged_counted_and_the_worker_carries_on(worker_parts, caplog):
    worker, *_ = worker_parts

    def boom(ctx, report):
        raise RuntimeError("reconcile exploded")

    assert worker.run_job("reconcile", boom) is False
    assert "reconcile failed" in caplog.text
    assert worker.poll() is True


class FakeOrders:
    """Stands in for the Orders stream: its batch made a Customer for one Account (001C) and tried
    the Accounts pass's failing 001B again, as the Orders pipeline does for the Accounts it bills."""

    key, title, sf_object, object_type = "orders", "Orders → Subscriptions", "Order", "subscription"

    def poll(self, ctx, report) -> None:
        report.add(Outcome("customer", "001C", "New Co", "create", "created", "cus_C"))
        report.add(Outcome("customer", "001B", "Bad Co", "error", "failed", message="bad country"))
        report.add(Outcome("subscription", "801A", "Order 1", "create", "created", "sub_A"))

    def sync_ids(self, ctx, ids, report, *, should_stop=None) -> bool:
        self.poll(ctx, report)
        return True


class FailingAccounts(FakeSync):
    def poll(self, ctx, report) -> None:
        report.add(Outcome("customer", "001B", "Bad Co", "error", "failed", message="bad country"))


def test_a_poll_counts_each_record_once_under_its_own_object_as_sync_does(worker_parts, monkeypatch):
    worker, ctx, _state, metrics = worker_parts
    monkeypatch.setattr(streams, "STREAMS", (FailingAccounts(), FakeOrders()))
    assert worker.poll() is True
    counts = ctx.store.runs.last("sync").counts
    assert counts == {"customer created": 1, "customer failed": 1, "subscription created": 1}
    assert (
        metrics.get("cpq2stripe_records_total", {"object": "customer", "status": "failed", "trigger": "poll"})
        == 1
    )
    assert metrics.totals_by_status() == {"synced": 2, "unchanged": 0, "failed": 1, "refused": 0}

    worker.sync_ids("Order", ["801A"])  # an event batch is counted the same way
    event = {"object": "customer", "status": "created", "trigger": "event"}
    assert metrics.get("cpq2stripe_records_total", event) == 1

"""The event listener against the fake org's Pub/Sub API over gRPC/TLS, with a real state store.

`handle_ids` here records what it is given; the daemon wires it to the sync pipeline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.salesforce.pubsub.listener import EventListener, TopicSpec, parse_topics
from connector.settings import Settings
from connector.state.store import StateStore
from tests.e2e.conftest import settings_for

ACCOUNTS = "/data/AccountChangeEvent"
ORDERS = "/data/OrderChangeEvent"
ORDER_ACTIVATED = "/event/Order_Activated__e"


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Polls generously; no test asserts on elapsed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Recorder:
    """handle_ids and catch_up for tests: remembers every call, can fail on demand."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, list[str]]] = []
        self.catch_ups: list[str] = []
        self.fail_next = 0

    def __call__(self, sobject: str, ids: list[str]) -> None:
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                raise RuntimeError("Stripe is down")
            self.calls.append((sobject, list(ids)))

    def catch_up(self, sobject: str) -> None:
        with self.lock:
            self.catch_ups.append(sobject)

    def ids(self, sobject: str | None = None) -> list[str]:
        with self.lock:
            return [i for s, ids in self.calls if sobject in (None, s) for i in ids]


class Running:
    """A listener running in a thread until `stop()`."""

    def __init__(self, listener: EventListener) -> None:
        self.listener = listener
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=listener.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "listener did not stop"


@pytest.fixture
def settings(sandbox: Any, tmp_path: Path) -> Settings:
    return settings_for(sandbox, f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def store(settings: Settings) -> Iterator[StateStore]:
    with StateStore.open(settings.database_url) as s:
        yield s


@pytest.fixture
def start(sandbox: Any, settings: Settings, store: StateStore) -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def _start(recorder: Callable[[str, list[str]], None], *, wait: bool = True, **kwargs: Any) -> Running:
        kwargs.setdefault("backoff_initial", 0.05)
        kwargs.setdefault("backoff_max", 0.5)
        kwargs.setdefault("catch_up", getattr(recorder, "catch_up", None))
        listener = EventListener(settings, store.cursors, recorder, **kwargs)
        r = Running(listener)
        running.append(r)
        if wait:
            topics = {t.name for t in listener.topics}
            wait_for(lambda: topics <= subscribed(sandbox), what=f"subscriptions to {sorted(topics)}")
        return r

    yield _start
    for r in running:
        if r.thread.is_alive():
            r.stop()


def streams(sandbox: Any) -> list[dict[str, Any]]:
    return sandbox.sf_admin._admin("GET", "pubsub/streams")


def subscribed(sandbox: Any) -> set[str]:
    return {s["topic"] for s in streams(sandbox) if s["subscribed"]}


def pubsub(sandbox: Any, path: str, body: Any = None) -> Any:
    return sandbox.sf_admin._admin("POST", f"pubsub/{path}", body or {})


def new_account(sandbox: Any, name: str = "Acme") -> str:
    return sandbox.sf_admin.create_record("Account", {"Name": name})


def test_topics_parse_from_settings() -> None:
    specs = parse_topics(
        f"{ACCOUNTS}, {ORDERS},{ORDER_ACTIVATED}=Order, /data/Invoice__ChangeEvent", "Record_Id__c"
    )
    assert specs == [
        TopicSpec(ACCOUNTS, "Account"),
        TopicSpec(ORDERS, "Order"),
        TopicSpec(ORDER_ACTIVATED, "Order", "Record_Id__c"),
        TopicSpec("/data/Invoice__ChangeEvent", "Invoice__c"),
    ]
    with pytest.raises(ValueError, match="name its object"):
        parse_topics(ORDER_ACTIVATED, "Record_Id__c")


def test_account_change_reaches_handle_ids_and_replay_id_is_stored(
    sandbox: Any, start: Callable[..., Running], store: StateStore
) -> None:
    account_id = new_account(sandbox)  # before the listener: history, not replayed from LATEST
    recorder = Recorder()
    running = start(recorder)
    sandbox.sf_admin.patch_record("Account", account_id, {"Name": "Acme Corp"})
    wait_for(lambda: account_id in recorder.ids("Account"), what="the change event")
    assert recorder.calls[0] == ("Account", [account_id])
    wait_for(lambda: store.cursors.replay_id(ACCOUNTS), what="the stored replay id")
    running.stop()
    stats = running.listener.stats
    assert stats["ids_handled"] == 1 and stats["skipped_own"] == 0


def test_delete_events_pass_the_ids_too(sandbox: Any, start: Callable[..., Running]) -> None:
    account_id = new_account(sandbox)
    recorder = Recorder()
    start(recorder)
    sandbox.sf_admin.delete_record("Account", account_id)
    wait_for(lambda: account_id in recorder.ids("Account"), what="the delete event")


def test_order_changes_and_platform_events(sandbox: Any, start: Callable[..., Running]) -> None:
    recorder = Recorder()
    start(recorder, topics=[ORDERS, f"{ORDER_ACTIVATED}=Order"])
    order_id = "8015g0000000001AAA"
    pubsub(sandbox, "publish", {"topic": ORDER_ACTIVATED, "events": [{"Record_Id__c": order_id}]})
    wait_for(lambda: ("Order", [order_id]) in recorder.calls, what="the platform event")


def test_the_connectors_own_writes_are_skipped(sandbox: Any, start: Callable[..., Running]) -> None:
    ours, theirs = new_account(sandbox, "Ours"), new_account(sandbox, "Theirs")
    recorder = Recorder()
    running = start(recorder)
    sandbox.org.update("Account", ours, {"Stripe_Customer_ID__c": "cus_1"})  # as the Integration User
    sandbox.sf_admin.patch_record("Account", theirs, {"Name": "Theirs, renamed"})
    wait_for(lambda: theirs in recorder.ids(), what="the admin's change")
    # events arrive in order: the connector's own change came first and was skipped
    assert ours not in recorder.ids()
    assert running.listener.stats["skipped_own"] == 1


def test_restart_resumes_from_the_stored_replay_id_nothing_lost_nothing_twice(
    sandbox: Any, start: Callable[..., Running]
) -> None:
    first_ids = [new_account(sandbox, f"A{i}") for i in range(2)]
    recorder = Recorder()
    running = start(recorder)
    for account_id in first_ids:
        sandbox.sf_admin.patch_record("Account", account_id, {"Phone": "1"})
    wait_for(lambda: set(first_ids) <= set(recorder.ids()), what="the first changes")
    running.stop()

    # changes while the listener is down
    later = [new_account(sandbox, f"B{i}") for i in range(3)]
    sandbox.sf_admin.patch_record("Account", first_ids[0], {"Phone": "2"})

    again = Recorder()
    start(again, wait=False)
    wait_for(lambda: set(later) | {first_ids[0]} <= set(again.ids()), what="the changes made while down")
    assert again.ids() == [*later, first_ids[0]]  # in order, each once, nothing from before the stop
    assert again.catch_ups == []


def test_expired_replay_id_signals_a_catch_up_and_then_follows_latest(
    sandbox: Any, start: Callable[..., Running], store: StateStore
) -> None:
    account_id = new_account(sandbox)
    recorder = Recorder()
    running = start(recorder, topics=[ACCOUNTS])
    sandbox.sf_admin.patch_record("Account", account_id, {"Phone": "1"})
    wait_for(lambda: account_id in recorder.ids(), what="the first change")
    running.stop()
    stale = store.cursors.replay_id(ACCOUNTS)

    missed = new_account(sandbox, "Changed while down")
    pubsub(sandbox, "expire")  # the listener stayed down past the retention window

    again = Recorder()
    restarted = start(again, topics=[ACCOUNTS])
    wait_for(lambda: again.catch_ups == ["Account"], what="the catch-up signal")
    assert missed not in again.ids()  # events cannot bring it back: the caller's poll does
    after = new_account(sandbox, "After")
    wait_for(lambda: after in again.ids(), what="a change after the restart")
    wait_for(lambda: store.cursors.replay_id(ACCOUNTS) not in (None, stale), what="a fresh replay id")
    assert restarted.listener.stats["replay_id_rejected"] == 1


def test_a_wildcard_change_event_polls_the_object_and_moves_on(
    sandbox: Any, start: Callable[..., Running], store: StateStore
) -> None:
    recorder = Recorder()
    running = start(recorder, topics=[ACCOUNTS])
    pubsub(sandbox, "wildcard", {"object": "Account"})  # recordIds ["001*"]
    wait_for(lambda: recorder.catch_ups == ["Account"], what="the poll the wildcard asks for")
    wait_for(lambda: store.cursors.replay_id(ACCOUNTS), what="the wildcard event's replay id")
    assert not [i for i in recorder.ids() if "*" in i]  # never handed on as a record id
    after = new_account(sandbox, "After the wildcard")
    wait_for(lambda: after in recorder.ids(), what="the next change")
    assert running.listener.stats["wildcards"] == 1


def test_auth_expiry_mid_stream_recovers(sandbox: Any, start: Callable[..., Running]) -> None:
    recorder = Recorder()
    running = start(recorder, topics=[ACCOUNTS])
    sandbox.sf_admin.expire_tokens()
    wait_for(lambda: running.listener.stats["auth_refreshes"] >= 1, what="re-authentication")
    wait_for(lambda: ACCOUNTS in subscribed(sandbox), what="the new subscription")
    account_id = new_account(sandbox)
    wait_for(lambda: account_id in recorder.ids(), what="a change after re-authenticating")


def test_failed_handler_stores_nothing_and_gets_the_batch_again(
    sandbox: Any, start: Callable[..., Running], store: StateStore
) -> None:
    recorder = Recorder()
    recorder.fail_next = 1
    running = start(recorder, topics=[ACCOUNTS])
    account_id = new_account(sandbox)
    wait_for(lambda: account_id in recorder.ids(), what="redelivery after the failure")
    assert recorder.ids() == [account_id]
    assert running.listener.stats["handler_failures"] == 1
    wait_for(lambda: store.cursors.replay_id(ACCOUNTS), what="the replay id stored after the retry")


def test_server_closing_the_stream_reconnects_without_loss(
    sandbox: Any, start: Callable[..., Running]
) -> None:
    recorder = Recorder()
    running = start(recorder, topics=[ACCOUNTS])
    first = new_account(sandbox)
    wait_for(lambda: first in recorder.ids(), what="the first change")
    pubsub(sandbox, "close-streams")  # as Salesforce does to an idle stream
    second = new_account(sandbox)
    wait_for(lambda: second in recorder.ids(), what="a change after the close")
    assert recorder.ids() == [first, second]
    assert running.listener.stats["reconnects"] >= 1


def test_watchdog_reconnects_a_silent_stream(sandbox: Any, start: Callable[..., Running]) -> None:
    recorder = Recorder()
    running = start(recorder, topics=[ACCOUNTS], stall_timeout=0.5)
    before = {s["id"] for s in streams(sandbox)}
    pubsub(sandbox, "config", {"stalled": True})
    wait_for(lambda: running.listener.stats["watchdog_reconnects"] >= 1, what="the watchdog")
    pubsub(sandbox, "config", {"stalled": False, "keepalive_seconds": 0.1})
    # no replay id was stored yet (no event, no keepalive), so the new stream starts at LATEST
    wait_for(lambda: [s for s in streams(sandbox) if s["subscribed"] and s["id"] not in before])
    account_id = new_account(sandbox)
    wait_for(lambda: account_id in recorder.ids(), what="a change after the stall")


def test_flow_control_asks_again_after_each_batch(sandbox: Any, start: Callable[..., Running]) -> None:
    recorder = Recorder()
    start(recorder, topics=[ACCOUNTS], batch_size=2)
    ids = [new_account(sandbox, f"N{i}") for i in range(7)]
    wait_for(lambda: set(ids) <= set(recorder.ids()), what="all seven changes")
    assert recorder.ids() == ids

    # a request is always outstanding, so the server never closes the stream as idle
    def outstanding() -> bool:
        streams = sandbox.sf_admin._admin("GET", "pubsub/streams")
        return len(streams) == 1 and 1 <= streams[0]["pending"] <= 2

    wait_for(outstanding, what="a FetchRequest outstanding")


def test_stop_finishes_the_batch_in_flight_and_stores_its_replay_id(
    sandbox: Any, start: Callable[..., Running], store: StateStore
) -> None:
    entered, release = threading.Event(), threading.Event()
    recorder = Recorder()

    def slow(sobject: str, ids: list[str]) -> None:
        entered.set()
        release.wait(30)
        recorder(sobject, ids)

    running = start(slow, topics=[ACCOUNTS])
    account_id = new_account(sandbox)
    assert entered.wait(20)
    running.stop_event.set()  # SIGTERM while a record is being synced
    release.set()
    running.stop()
    assert recorder.ids() == [account_id]
    assert store.cursors.replay_id(ACCOUNTS)  # stored before run() returned


class Gate:
    """handle_ids that records every call and holds the first one until released."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, sobject: str, ids: list[str]) -> None:
        self.recorder(sobject, ids)
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(30)


def test_events_arriving_while_a_batch_is_applied_are_coalesced_into_one_next_batch(
    sandbox: Any, start: Callable[..., Running], store: StateStore
) -> None:
    gate = Gate()
    running = start(gate, topics=[ACCOUNTS, ORDERS], batch_size=3)
    first = new_account(sandbox, "First")
    assert gate.entered.wait(20)
    # While the first batch is held, a burst across two topics arrives in several FetchResponses
    # (at most 3 events each) and the listener keeps reading them.
    burst = [new_account(sandbox, f"Burst {i}") for i in range(8)]
    for account_id in burst[:3]:  # edited again: named twice, applied once
        sandbox.sf_admin.patch_record("Account", account_id, {"Description": "again"})
    order_id = sandbox.sf_admin.create_record(
        "Order",
        {"AccountId": burst[0], "EffectiveDate": "2026-12-01", "Status": "Draft"},
    )
    wait_for(lambda: running.listener.stats["events"] >= 1 + 8 + 3 + 1, what="the burst read ahead")
    assert store.cursors.replay_id(ACCOUNTS) is None  # nothing stored while the first batch runs

    gate.release.set()
    wait_for(lambda: order_id in gate.recorder.ids("Order"), what="the coalesced batch")

    calls = gate.recorder.calls
    assert calls[0] == ("Account", [first])
    assert calls[1] == ("Account", burst)  # 11 events in 4+ responses: one call, each id once
    assert calls[2] == ("Order", [order_id])
    assert len(calls) == 3
    wait_for(lambda: store.cursors.replay_id(ORDERS), what="the Order topic's replay id")
    assert running.listener.stats["handler_batches"] == 2


def test_a_failure_in_a_coalesced_batch_stores_no_replay_id_and_the_restart_gets_every_event(
    sandbox: Any, start: Callable[..., Running], store: StateStore
) -> None:
    gate = Gate()
    running = start(gate, topics=[ACCOUNTS], batch_size=2)
    first = new_account(sandbox, "First")
    assert gate.entered.wait(20)
    burst = [new_account(sandbox, f"Burst {i}") for i in range(5)]
    wait_for(lambda: running.listener.stats["events"] >= 6, what="the burst read ahead")
    gate.recorder.fail_next = 10**6  # the burst's batch fails until the stop
    gate.release.set()
    wait_for(lambda: running.listener.stats["handler_failures"] >= 1, what="the failing batch")
    stored = store.cursors.replay_id(ACCOUNTS)
    assert stored  # the first batch's position
    running.stop()
    assert store.cursors.replay_id(ACCOUNTS) == stored

    again = Recorder()
    start(again, topics=[ACCOUNTS])
    wait_for(lambda: set(burst) <= set(again.ids()), what="the burst delivered again after a restart")
    assert first not in again.ids()

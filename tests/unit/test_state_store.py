"""State store (SQLite and PostgreSQL via the ``store`` fixture) and the pure cursor helpers."""

from __future__ import annotations

import os
import stat
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, inspect, text

from connector.state import (
    LATEST_VERSION,
    Cursor,
    LinkConflict,
    LinkNotFound,
    LinkUpdate,
    LogEntry,
    SchemaTooNew,
    StateStore,
    advance,
    backoff,
    filter_new,
    poll_window,
)
from connector.state.cursor import parse_modstamp
from connector.state.models import Base, BatchWrites, FailureUpdate, HashUpdate, Intent

T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
ACCT = "acct_1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def row(sf_id: str, seconds: float) -> dict[str, Any]:
    return {"Id": sf_id, "SystemModstamp": at(seconds)}


@contextmanager
def statements(store: StateStore) -> Iterator[list[tuple[str, bool]]]:
    """Collect (SQL, executemany) for every statement the store sends."""
    seen: list[tuple[str, bool]] = []

    def listener(_conn, _cursor, statement, _params, _context, executemany):  # type: ignore[no-untyped-def]
        seen.append((statement.strip().split()[0].upper(), executemany))

    event.listen(store.engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", listener)


# ---- opening, files, migrations ----------------------------------------------------------------


def test_sqlite_file_is_created_private_in_a_new_directory_with_wal(sqlite_url: str) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    assert not path.parent.exists()
    store = StateStore.open(sqlite_url)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    finally:
        store.close()


def test_open_twice_keeps_data_and_records_one_version_row(store_url: str) -> None:
    first = StateStore.open(store_url)
    first.links.record_intent(ACCT, "customer", "Account", "001A", "k1")
    first.close()
    second = StateStore.open(store_url)
    try:
        assert second.links.get(ACCT, "customer", "001A") is not None
        with second.engine.connect() as conn:
            versions = conn.execute(text("SELECT version FROM schema_version")).scalars().all()
        assert versions == list(range(1, LATEST_VERSION + 1))
    finally:
        second.close()


def test_newer_schema_version_is_refused(store_url: str) -> None:
    store = StateStore.open(store_url)
    with store.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO schema_version (version, applied_at) VALUES (:v, :t)"),
            {"v": LATEST_VERSION + 1, "t": datetime(2030, 1, 1)},
        )
    store.close()
    with pytest.raises(SchemaTooNew, match=f"schema version {LATEST_VERSION + 1}"):
        StateStore.open(store_url)


def test_migrated_schema_matches_the_models(store: StateStore) -> None:
    """The frozen migration DDL and the ORM models must describe the same tables."""
    insp = inspect(store.engine)
    for table in Base.metadata.sorted_tables:
        reflected = {c["name"]: c for c in insp.get_columns(table.name)}
        assert set(reflected) == {c.name for c in table.columns}, table.name
        for column in table.columns:
            if not column.primary_key:
                assert reflected[column.name]["nullable"] == column.nullable, (table.name, column.name)
        model_indexes = {i.name for i in table.indexes}
        assert model_indexes <= {i["name"] for i in insp.get_indexes(table.name)}, table.name
        uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints(table.name)}
        for constraint in table.constraints:
            if constraint.__class__.__name__ == "UniqueConstraint":
                assert tuple(c.name for c in constraint.columns) in uniques


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported state database"):
        StateStore.open("mysql://localhost/x")


# ---- links -------------------------------------------------------------------------------------


def test_record_intent_is_durable_and_returns_the_existing_row(store: StateStore, store_url: str) -> None:
    first = store.links.record_intent(ACCT, "customer", "Account", "001A", "key-1", note="first try")
    assert (first.status, first.stripe_id, first.idempotency_key) == ("pending", None, "key-1")
    assert first.created_at.tzinfo is UTC
    # Another process sees it immediately: the intent was committed before returning.
    other = StateStore.open(store_url)
    try:
        assert other.links.get(ACCT, "customer", "001A") == first
    finally:
        other.close()
    again = store.links.record_intent(ACCT, "customer", "Account", "001A", "key-2")
    assert again.idempotency_key == "key-1"
    assert again == first


def test_concurrent_intents_for_the_same_record_agree_on_one_key(store: StateStore) -> None:
    """Workers racing on the same records all end up with the row (and key) that won."""
    ids = [f"001{i:03d}" for i in range(30)]
    barrier = threading.Barrier(4)
    results: dict[int, dict[str, str]] = {}

    def worker(n: int) -> None:
        barrier.wait()
        results[n] = {
            sf_id: store.links.record_intent(
                ACCT, "customer", "Account", sf_id, f"key-{n}-{sf_id}"
            ).idempotency_key
            for sf_id in ids
        }

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert len(store.links.all()) == len(ids)
    stored = {link.sf_id: link.idempotency_key for link in store.links.all()}
    assert all(r == stored for r in results.values())


def test_plain_postgresql_urls_use_psycopg(postgres_schema_url: str) -> None:
    store = StateStore.open(postgres_schema_url.replace("postgresql+psycopg://", "postgresql://", 1))
    try:
        assert store.engine.dialect.driver == "psycopg"
        store.cursors.set("Account", at(0))
    finally:
        store.close()


def test_links_are_unique_per_account_and_type(store: StateStore) -> None:
    store.links.record_intent(ACCT, "customer", "Account", "001A", "k1")
    store.links.record_intent("acct_2", "customer", "Account", "001A", "k2")
    store.links.record_intent(ACCT, "subscription", "Order", "001A", "k3")
    assert len(store.links.all()) == 3
    assert [link.idempotency_key for link in store.links.all(stripe_account=ACCT)] == ["k1", "k3"]


def test_mark_linked_sets_id_hash_and_modstamp(store: StateStore) -> None:
    store.links.record_intent(ACCT, "customer", "Account", "001A", "k1")
    stamp = datetime(2026, 1, 5, 14, 0, 0, 123000, tzinfo=timezone(timedelta(hours=2)))
    link = store.links.mark_linked(
        ACCT, "customer", "001A", stripe_id="cus_1", payload_hash="h1", sf_modstamp=stamp
    )
    assert (link.status, link.stripe_id, link.payload_hash) == ("linked", "cus_1", "h1")
    fetched = store.links.get(ACCT, "customer", "001A")
    assert fetched is not None
    assert fetched.sf_modstamp == stamp
    assert fetched.sf_modstamp.tzinfo is UTC
    assert fetched.sf_modstamp.hour == 12
    # Marking again with the same object is harmless (recovery after a crash before the commit).
    store.links.mark_linked(ACCT, "customer", "001A", stripe_id="cus_1", payload_hash="h2", sf_modstamp=stamp)


def test_mark_linked_needs_an_intent_and_never_repoints(store: StateStore) -> None:
    with pytest.raises(LinkNotFound):
        store.links.mark_linked(
            ACCT, "customer", "001X", stripe_id="cus_1", payload_hash=None, sf_modstamp=None
        )
    store.links.record_intent(ACCT, "customer", "Account", "001A", "k1")
    store.links.mark_linked(ACCT, "customer", "001A", stripe_id="cus_1", payload_hash=None, sf_modstamp=None)
    with pytest.raises(LinkConflict, match="cus_1"):
        store.links.mark_linked(
            ACCT, "customer", "001A", stripe_id="cus_2", payload_hash=None, sf_modstamp=None
        )
    link = store.links.get(ACCT, "customer", "001A")
    assert link is not None
    assert link.stripe_id == "cus_1"


def test_a_page_of_2000_is_one_select_and_one_update(store: StateStore) -> None:
    ids = [f"001{i:015d}" for i in range(2000)]
    with store.transaction():
        for sf_id in ids:
            store.links.record_intent(ACCT, "customer", "Account", sf_id, f"key-{sf_id}")
    updates = [LinkUpdate(sf_id, f"cus_{i}", f"h{i}", at(i)) for i, sf_id in enumerate(ids)]
    with statements(store) as seen:
        store.links.mark_linked_many(ACCT, "customer", updates)
    assert [s for s in seen if s[0] == "UPDATE"] == [("UPDATE", True)]
    assert len([s for s in seen if s[0] == "SELECT"]) == 1
    with statements(store) as seen:
        links = store.links.get_many(ACCT, "customer", [*ids, "001missing"])
    assert [s for s, _ in seen if s == "SELECT"] == ["SELECT"]
    assert len(links) == 2000
    assert links[ids[1999]].stripe_id == "cus_1999"
    assert links[ids[7]].sf_modstamp == at(7)
    assert {link.status for link in links.values()} == {"linked"}


def test_mark_linked_many_is_all_or_nothing(store: StateStore) -> None:
    store.links.record_intent(ACCT, "customer", "Account", "001A", "k1")
    store.links.record_intent(ACCT, "customer", "Account", "001B", "k2")
    store.links.mark_linked(ACCT, "customer", "001B", stripe_id="cus_B", payload_hash=None, sf_modstamp=None)
    with pytest.raises(LinkNotFound, match="001C"):
        store.links.mark_linked_many(
            ACCT,
            "customer",
            [LinkUpdate("001A", "cus_A", None, None), LinkUpdate("001C", "cus_C", None, None)],
        )
    with pytest.raises(LinkConflict):
        store.links.mark_linked_many(
            ACCT,
            "customer",
            [LinkUpdate("001A", "cus_A", None, None), LinkUpdate("001B", "cus_X", None, None)],
        )
    with pytest.raises(ValueError, match="twice"):
        store.links.mark_linked_many(
            ACCT,
            "customer",
            [LinkUpdate("001A", "cus_A", None, None), LinkUpdate("001A", "cus_A", None, None)],
        )
    link = store.links.get(ACCT, "customer", "001A")
    assert link is not None
    assert (link.status, link.stripe_id) == ("pending", None)


def test_a_batch_records_its_intents_in_one_statement_and_keeps_existing_keys(store: StateStore) -> None:
    store.links.record_intent(ACCT, "customer", "Account", "001OLD", "key-old")
    intents = [Intent("customer", "Account", f"001{i:015d}", f"key-{i}") for i in range(500)]
    intents.append(Intent("customer", "Account", "001OLD", "key-new"))
    with statements(store) as seen:
        links = store.links.record_intents(ACCT, intents)
    assert [s for s in seen if s[0] == "INSERT"] == [("INSERT", True)]
    assert len(links) == 501
    assert links[("customer", "001OLD")].idempotency_key == "key-old"  # a recovery reuses its key
    assert {link.status for link in links.values()} == {"pending"}
    # durable when it returns: another connection sees the rows
    other = StateStore(store.engine)
    assert other.links.get(ACCT, "customer", f"001{499:015d}") is not None


def test_a_batch_ends_in_one_transaction_all_or_nothing(store: StateStore) -> None:
    store.links.record_intents(ACCT, [Intent("customer", "Account", "001A", "kA")])
    store.links.record_intent(ACCT, "customer", "Account", "001U", "kU")
    store.links.mark_linked(ACCT, "customer", "001U", stripe_id="cus_U", payload_hash="h0", sf_modstamp=at(0))
    store.failures.record("customer", "Account", "001U", "stripe_error", "old", retryable=True, now=at(0))
    writes = BatchWrites(
        intents=[Intent("customer", "Account", "001ADOPT", "kD")],
        linked={
            "customer": [
                LinkUpdate("001A", "cus_A", "hA", at(1), {"name": "x"}),
                LinkUpdate("001ADOPT", "cus_D", "hD", at(2)),
            ]
        },
        hashes={"customer": [HashUpdate("001U", "h1", at(3), {"phone": "y"})]},
        cleared={"customer": {"001U"}},
        failures=[FailureUpdate("customer", "Account", "001BAD", "invalid_data", "bad country", False)],
        log=[LogEntry("customer", "create", "created", "001A", "Account", "cus_A")],
    )
    store.write_batch(ACCT, writes, at(4))
    links = store.links.get_many(ACCT, "customer", ["001A", "001ADOPT", "001U"])
    assert (links["001A"].stripe_id, links["001A"].field_hashes) == ("cus_A", {"name": "x"})
    assert (links["001ADOPT"].status, links["001ADOPT"].stripe_id) == ("linked", "cus_D")
    assert (links["001U"].payload_hash, links["001U"].sf_modstamp) == ("h1", at(3))
    assert store.failures.get("customer", "001U") is None
    failure = store.failures.get("customer", "001BAD")
    assert failure is not None and not failure.retryable
    assert [e.sf_id for e in store.runs.list_log()] == ["001A"]

    # a re-point anywhere in the batch writes nothing of it
    bad = BatchWrites(
        linked={"customer": [LinkUpdate("001A", "cus_OTHER", None, None)]},
        failures=[FailureUpdate("customer", "Account", "001NEW", "x", "y", True)],
    )
    with pytest.raises(LinkConflict):
        store.write_batch(ACCT, bad, at(5))
    assert store.failures.get("customer", "001NEW") is None


def test_find_by_stripe_id_update_hash_set_status_and_filters(store: StateStore) -> None:
    store.links.record_intent(ACCT, "price", "PricebookEntry", "01uA", "k1")
    store.links.record_intent(ACCT, "price", "OrderItem", "802A", "k2")
    store.links.record_intent(ACCT, "customer", "Account", "001A", "k3")
    store.links.mark_linked(ACCT, "price", "01uA", stripe_id="price_1", payload_hash="h", sf_modstamp=None)
    store.links.mark_linked(ACCT, "price", "802A", stripe_id="price_1", payload_hash="h", sf_modstamp=None)
    assert [link.sf_id for link in store.links.find_by_stripe_id("price_1")] == ["01uA", "802A"]
    assert store.links.find_by_stripe_id("price_1", stripe_account="other") == []
    assert store.links.find_by_stripe_id("price_none") == []

    updated = store.links.update_hash(ACCT, "price", "01uA", "h2", at(5))
    assert (updated.payload_hash, updated.sf_modstamp) == ("h2", at(5))
    assert store.links.update_hash(ACCT, "price", "01uA", "h3").sf_modstamp == at(5)

    merged = store.links.set_status(ACCT, "customer", "001A", "merged_away", note="merged into 001B")
    assert (merged.status, merged.note) == ("merged_away", "merged into 001B")
    with pytest.raises(ValueError, match="unknown link status"):
        store.links.set_status(ACCT, "customer", "001A", "gone")
    with pytest.raises(LinkNotFound):
        store.links.set_status(ACCT, "customer", "001Z", "deleted")
    with pytest.raises(LinkNotFound):
        store.links.update_hash(ACCT, "customer", "001Z", "h")

    assert [link.sf_id for link in store.links.all(object_type="price", sf_object="OrderItem")] == ["802A"]
    assert [link.sf_id for link in store.links.all(status="merged_away")] == ["001A"]
    assert len(store.links.all(limit=2)) == 2
    assert [link.sf_id for link in store.links.all(offset=2)] == ["001A"]


def test_transaction_groups_calls_and_rolls_back_on_error(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.links.record_intent(ACCT, "customer", "Account", "001A", "k1")
        store.cursors.set("Account", at(1), {"001A"})
        with store.transaction():  # nested joins the outer one
            store.links.record_intent(ACCT, "customer", "Account", "001B", "k2")
        raise RuntimeError("boom")
    assert store.links.all() == []
    assert store.cursors.get("Account") == Cursor()
    with store.transaction():
        store.links.record_intent(ACCT, "customer", "Account", "001A", "k1")
        store.cursors.set("Account", at(1), {"001A"})
    assert store.links.get(ACCT, "customer", "001A") is not None
    assert store.cursors.get("Account") == Cursor(at(1), frozenset({"001A"}))


def test_reads_inside_a_transaction_see_bulk_writes(store: StateStore) -> None:
    with store.transaction():
        store.links.record_intent(ACCT, "customer", "Account", "001A", "k1")
        assert store.links.get_many(ACCT, "customer", ["001A"])["001A"].status == "pending"
        store.links.mark_linked_many(ACCT, "customer", [LinkUpdate("001A", "cus_A", "h", at(1))])
        assert store.links.get_many(ACCT, "customer", ["001A"])["001A"].stripe_id == "cus_A"
        assert store.links.get(ACCT, "customer", "001A").status == "linked"  # type: ignore[union-attr]
        store.cursors.set("Account", at(1), {"001A"})
        assert store.cursors.get("Account").modstamp == at(1)
        store.cursors.set("Account", at(2), {"001B"})
        assert store.cursors.get("Account") == Cursor(at(2), frozenset({"001B"}))
        store.failures.record("customer", "Account", "001A", "E", "m", True, at(0))
        assert store.failures.get("customer", "001A").attempts == 1  # type: ignore[union-attr]
        store.failures.record("customer", "Account", "001A", "E", "m", True, at(0))
        assert store.failures.get("customer", "001A").attempts == 2  # type: ignore[union-attr]


def test_naive_datetimes_are_refused(store: StateStore) -> None:
    store.links.record_intent(ACCT, "customer", "Account", "001A", "k1")
    with pytest.raises(Exception, match="naive"):
        store.links.update_hash(ACCT, "customer", "001A", "h", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        store.failures.record("customer", "Account", "001A", "E", "m", True, datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        store.cursors.set("Account", datetime(2026, 1, 1), ())


# ---- cursors in the store ----------------------------------------------------------------------


def test_cursor_round_trip(store: StateStore) -> None:
    assert store.cursors.get("Account") == Cursor(None, frozenset())
    stamp = datetime(2026, 1, 5, 12, 0, 0, 1000, tzinfo=UTC)
    store.cursors.set("Account", stamp, ["001B", "001A"])
    store.cursors.set("Order", at(9))
    assert store.cursors.get("Account") == Cursor(stamp, frozenset({"001A", "001B"}))
    store.cursors.set("Account", at(10), {"001C"})
    assert store.cursors.get("Account") == Cursor(at(10), frozenset({"001C"}))
    assert store.cursors.get("Order") == Cursor(at(9), frozenset())


# ---- failures ----------------------------------------------------------------------------------


def test_backoff_doubles_from_a_minute_up_to_six_hours() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert backoff(9) == timedelta(minutes=256)
    assert backoff(10) == timedelta(hours=6)
    assert backoff(10_000) == timedelta(hours=6)
    with pytest.raises(ValueError):
        backoff(0)


def test_record_failure_upserts_one_row_with_backoff(store: StateStore) -> None:
    first = store.failures.record("customer", "Account", "001A", "rate_limit", "429", True, at(0))
    assert (first.attempts, first.next_retry_at, first.first_failed_at) == (1, at(60), at(0))
    second = store.failures.record("customer", "Account", "001A", "api_error", "500", True, at(100))
    assert (second.attempts, second.next_retry_at) == (2, at(100 + 120))
    assert (second.first_failed_at, second.last_failed_at, second.error_code) == (at(0), at(100), "api_error")
    assert len(store.failures.all()) == 1
    assert store.failures.get("customer", "001A") == second
    assert store.failures.get("customer", "001Z") is None

    fatal = store.failures.record("customer", "Account", "001A", "invalid", "bad email", False, at(200))
    assert (fatal.attempts, fatal.next_retry_at, fatal.retryable) == (3, None, False)
    assert store.failures.due(at(10**6)) == []

    assert store.failures.clear("customer", "001A") is True
    assert store.failures.clear("customer", "001A") is False
    again = store.failures.record("customer", "Account", "001A", "rate_limit", "429", True, at(300))
    assert again.attempts == 1


def test_due_failures_orders_and_limits(store: StateStore) -> None:
    store.failures.record("customer", "Account", "001A", "E", "m", True, at(30))  # due at 90
    store.failures.record("customer", "Account", "001B", "E", "m", True, at(0))  # due at 60
    store.failures.record("subscription", "Order", "801A", "E", "m", True, at(500))  # due at 560
    store.failures.record("customer", "Account", "001C", "E", "m", False, at(0))  # never
    assert store.failures.due(at(59)) == []
    assert [f.sf_id for f in store.failures.due(at(90))] == ["001B", "001A"]
    assert [f.sf_id for f in store.failures.due(at(1000), limit=1)] == ["001B"]
    assert [f.sf_id for f in store.failures.all(object_type="subscription")] == ["801A"]
    assert [f.sf_id for f in store.failures.all(retryable=False)] == ["001C"]


def test_failing_ids_names_the_records_of_one_kind_with_a_failure(store: StateStore) -> None:
    store.failures.record("customer", "Account", "001A", "E", "m", True, at(0))
    store.failures.record("customer", "Account", "001C", "E", "m", False, at(0))
    store.failures.record("subscription", "Order", "001B", "E", "m", True, at(0))  # another kind
    ids = [f"001{n:04d}" for n in range(12_000)] + ["001A", "001B", "001C"]
    assert store.failures.failing_ids("customer", ids) == {"001A", "001C"}
    assert store.failures.failing_ids("customer", []) == set()


def test_failure_messages_are_truncated(store: StateStore) -> None:
    failure = store.failures.record("customer", "Account", "001A", "E", "x" * 10_000, True, at(0))
    assert len(failure.message) == 4_000


# ---- runs and the sync log ---------------------------------------------------------------------


def test_runs(store: StateStore) -> None:
    assert store.runs.last("poll") is None
    first = store.runs.start("poll")
    store.runs.finish(first, {"created": 3, "failed": 1}, "partial", "1 record failed")
    second = store.runs.start("poll")
    other = store.runs.start("backfill")
    last = store.runs.last("poll")
    assert last is not None
    assert (last.id, last.status, last.finished_at) == (second, "running", None)
    done = store.runs.finish(second, {"created": 1}, "succeeded")
    assert done.counts == {"created": 1}
    assert done.finished_at is not None and done.finished_at >= done.started_at
    partial = store.runs.last("poll", status="partial")
    assert partial is not None
    assert (partial.id, partial.counts, partial.error) == (
        first,
        {"created": 3, "failed": 1},
        "1 record failed",
    )
    assert store.runs.last("backfill").id == other  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        store.runs.finish(other, {}, "running")
    with pytest.raises(LookupError):
        store.runs.finish(10**6, {}, "failed")


def test_sync_log_bulk_insert_filters_and_prune(store: StateStore) -> None:
    entries = [
        LogEntry(
            "customer", "create", "ok", sf_id=f"001{i}", sf_object="Account", stripe_id=f"cus_{i}", at=at(i)
        )
        for i in range(2000)
    ]
    entries.append(
        LogEntry("customer", "refuse", "error", sf_id="001M", message="merged after sync", at=at(5000))
    )
    with statements(store) as seen:
        assert store.runs.log_action(entries) == 2001
    assert len([s for s in seen if s[0] == "INSERT"]) <= 2  # one executemany (batched by the driver)
    assert store.runs.log_action([]) == 0
    newest = store.runs.list_log(limit=2)
    assert [e.sf_id for e in newest] == ["001M", "0011999"]
    assert newest[0].at == at(5000)
    assert [e.message for e in store.runs.list_log(status="error")] == ["merged after sync"]
    assert [e.stripe_id for e in store.runs.list_log(sf_id="0017")] == ["cus_7"]
    assert [e.sf_id for e in store.runs.list_log(stripe_id="cus_3", action="create")] == ["0013"]
    assert len(store.runs.list_log(since=at(1990), limit=1000)) == 11
    run = store.runs.start("poll")
    store.runs.log_action([LogEntry("customer", "update", "ok", sf_id="001A", run_id=run)])
    stamped = store.runs.list_log(run_id=run)
    assert len(stamped) == 1 and stamped[0].at is not None and stamped[0].at.tzinfo is UTC
    assert store.runs.prune_log(at(1000)) == 1000
    assert store.runs.count_log() == 1002


# ---- pure cursor helpers -----------------------------------------------------------------------


def test_parse_modstamp_accepts_salesforce_formats() -> None:
    expected = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_modstamp("2024-01-02T03:04:05.000+0000") == expected
    assert parse_modstamp("2024-01-02T03:04:05Z") == expected
    assert parse_modstamp("2024-01-02T05:04:05.000+0200") == expected
    assert parse_modstamp(expected) == expected
    with pytest.raises(ValueError):
        parse_modstamp("2024-01-02T03:04:05")


def test_poll_window() -> None:
    assert poll_window(Cursor(), timedelta(minutes=5)) is None
    assert poll_window(Cursor(at(600)), timedelta(minutes=5)) == at(300)
    assert poll_window(Cursor(at(600)), timedelta(0)) == at(600)
    with pytest.raises(ValueError):
        poll_window(Cursor(at(0)), timedelta(seconds=-1))


def test_cursor_validates() -> None:
    with pytest.raises(ValueError):
        Cursor(None, frozenset({"a"}))
    with pytest.raises(ValueError):
        Cursor(datetime(2026, 1, 1))


def test_filter_new() -> None:
    cursor = Cursor(at(10), frozenset({"A"}))
    rows = [row("A", 10), row("B", 10), row("A", 11), row("C", 5), row("B", 10), row("D", 12)]
    assert [(r["Id"], r["SystemModstamp"]) for r in filter_new(rows, cursor)] == [
        ("B", at(10)),
        ("A", at(11)),
        ("C", at(5)),  # older than the cursor: may be a late commit, kept
        ("D", at(12)),
    ]
    applied = {"C": at(5), "D": at(11)}
    assert [r["Id"] for r in filter_new(rows, cursor, applied)] == ["B", "A", "D"]
    applied = {"D": at(12), "B": at(10)}
    assert [r["Id"] for r in filter_new(rows, cursor, applied)] == ["A", "C"]
    salesforce_rows = [{"Id": "A", "SystemModstamp": "2026-01-05T12:00:10.000+0000"}]
    assert filter_new(salesforce_rows, cursor) == []


def test_advance() -> None:
    start = at(100)
    empty = Cursor()
    assert advance(empty, [], start) == empty
    c1 = advance(empty, [row("A", 5), row("B", 7), row("C", 7)], start)
    assert c1 == Cursor(at(7), frozenset({"B", "C"}))
    # More rows at the same instant on the next page: the seen set grows, nothing is skipped.
    c2 = advance(c1, [row("D", 7)], start)
    assert c2 == Cursor(at(7), frozenset({"B", "C", "D"}))
    # Late rows older than the cursor never move it back.
    assert advance(c2, [row("E", 3)], start) == c2
    # Newer rows replace the seen set.
    assert advance(c2, [row("F", 8)], start) == Cursor(at(8), frozenset({"F"}))
    # Never past the run's start: rows stamped later are re-read next time.
    assert advance(c2, [row("G", 99), row("H", 100), row("I", 150)], start) == Cursor(
        at(100), frozenset({"H"})
    )
    # A cursor a skewed clock put in the future comes back to the start time.
    assert advance(Cursor(at(200), frozenset({"X"})), [], start) == Cursor(at(100), frozenset())


# ---- property: nothing lost, nothing applied twice ---------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn, max_lag: int = 3) -> dict[str, Any]:
    """Record versions with many equal stamps, late commits, polls, page splits and clock skew."""
    lag = draw(st.integers(0, max_lag))
    skew = draw(st.integers(0, 2)) if lag else 0
    ids = [f"R{i}" for i in range(draw(st.integers(1, 8)))]
    versions: list[tuple[str, int, int]] = []  # (id, stamp, commit time)
    for sf_id in ids:
        stamp = draw(st.integers(0, 3))
        for n in range(draw(st.integers(1, 3))):
            stamp += draw(st.integers(1, 4)) if n else 0
            versions.append((sf_id, stamp, stamp + draw(st.integers(0, lag))))
    horizon = max(commit for _, _, commit in versions)
    polls = [*sorted(set(draw(st.lists(st.integers(0, horizon), max_size=6)))), horizon + lag + skew + 1]
    page_sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=8))
    return {"lag": lag, "skew": skew, "versions": versions, "polls": polls, "page_sizes": page_sizes}


def simulate(
    scenario: dict[str, Any], *, use_applied: bool
) -> tuple[Counter[tuple[str, int]], dict[str, int]]:
    """Poll a fake org like the pipeline does; return how often each (Id, stamp) was applied."""
    lag, skew = scenario["lag"], scenario["skew"]
    overlap = timedelta(seconds=lag)
    cursor = Cursor()
    applied_count: Counter[tuple[str, int]] = Counter()
    applied: dict[str, datetime] = {}
    for poll_time in scenario["polls"]:
        latest: dict[str, int] = {}
        for sf_id, stamp, commit in scenario["versions"]:
            if commit <= poll_time:
                latest[sf_id] = max(latest.get(sf_id, stamp), stamp)
        lower = poll_window(cursor, overlap)
        result = sorted(
            (row(i, s) for i, s in latest.items() if lower is None or at(s) >= lower),
            key=lambda r: (r["SystemModstamp"], r["Id"]),
        )
        run_started_at = at(poll_time - skew)
        sizes = iter(scenario["page_sizes"] * (len(result) + 1))
        while result:
            size = next(sizes)
            page, result = result[:size], result[size:]
            for r in filter_new(page, cursor, applied if use_applied else None):
                key = (r["Id"], int((r["SystemModstamp"] - T0).total_seconds()))
                applied_count[key] += 1
                applied[r["Id"]] = r["SystemModstamp"]
            cursor = advance(cursor, page, run_started_at)
    final = {}
    for sf_id, stamp, _ in scenario["versions"]:
        final[sf_id] = max(final.get(sf_id, stamp), stamp)
    return applied_count, final


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_polling_with_overlap_never_loses_or_repeats_a_row(scenario: dict[str, Any]) -> None:
    counts, final = simulate(scenario, use_applied=True)
    assert all(n == 1 for n in counts.values()), counts
    for sf_id, stamp in final.items():
        assert counts[(sf_id, stamp)] == 1, (sf_id, stamp, counts)


@settings(max_examples=300, deadline=None)
@given(scenarios(max_lag=0))
def test_equal_timestamps_split_across_pages_need_only_the_cursor(scenario: dict[str, Any]) -> None:
    """Without late commits, clock skew or an applied map, the cursor alone de-duplicates."""
    counts, final = simulate(scenario, use_applied=False)
    assert all(n == 1 for n in counts.values()), counts
    for sf_id, stamp in final.items():
        assert counts[(sf_id, stamp)] == 1, (sf_id, stamp, counts)


# ---- replay ids, leases, heartbeats -----------------------------------------------------------


def test_replay_ids_are_saved_per_topic_and_can_be_forgotten(store: StateStore) -> None:
    assert store.cursors.replay_id("/data/AccountChangeEvent") is None
    store.cursors.set_replay_id("/data/AccountChangeEvent", "AAAB")
    store.cursors.set_replay_id("/data/AccountChangeEvent", "AAAC")
    store.cursors.set_replay_id("/data/OrderChangeEvent", "ZZZ")
    assert store.cursors.replay_id("/data/AccountChangeEvent") == "AAAC"
    store.cursors.set_replay_id("/data/AccountChangeEvent", None)
    assert store.cursors.replay_id("/data/AccountChangeEvent") is None
    assert store.cursors.replay_id("/data/OrderChangeEvent") == "ZZZ"


def test_a_lease_has_one_holder_until_it_expires_or_is_released(store_url: str) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    a = StateStore.open(store_url, clock=lambda: now[0])
    b = StateStore.open(store_url, clock=lambda: now[0])
    try:
        assert a.instances.acquire_lease("leader", "a", timedelta(seconds=10))
        assert not b.instances.acquire_lease("leader", "b", timedelta(seconds=10))
        now[0] += timedelta(seconds=5)
        assert a.instances.acquire_lease("leader", "a", timedelta(seconds=10))  # renewal
        now[0] += timedelta(seconds=9)
        assert not b.instances.acquire_lease("leader", "b", timedelta(seconds=10))
        now[0] += timedelta(seconds=2)  # a's renewal has expired
        assert b.instances.acquire_lease("leader", "b", timedelta(seconds=10))
        assert not a.instances.acquire_lease("leader", "a", timedelta(seconds=10))
        b.instances.release_lease("leader", "b")
        assert a.instances.acquire_lease("leader", "a", timedelta(seconds=10))
        assert a.instances.lease_holder("leader")[0] == "a"
    finally:
        a.close()
        b.close()


def test_heartbeats_are_upserted_and_removed(store: StateStore) -> None:
    store.instances.heartbeat("host-1:42", "leader", "host-1", 42, {"synced": 3})
    store.instances.heartbeat("host-1:42", "leader", "host-1", 42, {"synced": 5})
    store.instances.heartbeat("host-2:7", "standby", "host-2", 7, {})
    beats = {h.instance_id: h for h in store.instances.list_heartbeats()}
    assert beats["host-1:42"].info == {"synced": 5} and beats["host-2:7"].role == "standby"
    store.instances.remove_heartbeat("host-2:7")
    assert [h.instance_id for h in store.instances.list_heartbeats()] == ["host-1:42"]

"""Merges/deletes queries, the sync log's retention, and the merge/delete link bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from connector.state import StateStore
from connector.state.models import LogEntry
from connector.sync.deletes import ACCOUNTS, ORDERS, record_deletes, removed_query
from connector.sync.merges import record_merges
from connector.synclog import LOG_RETENTION, prune

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACCT = "acct_1"


def test_removed_queries_read_the_recycle_bin_in_modstamp_order():
    first = removed_query(ACCOUNTS, None)
    assert first == (
        "SELECT Id, SystemModstamp, Name, MasterRecordId FROM Account WHERE IsDeleted = true "
        "ORDER BY SystemModstamp ASC, Id ASC"
    )
    later = removed_query(ORDERS, NOW)
    assert "FROM Order WHERE IsDeleted = true AND SystemModstamp >= 2026-03-01T12:00:00" in later
    assert "MasterRecordId" not in later  # Orders cannot be merged


def test_prune_keeps_90_days(store_url):
    store = StateStore.open(store_url)
    try:
        store.runs.log_action(
            [
                LogEntry("customer", "create", "created", "001A", at=NOW - LOG_RETENTION - timedelta(days=1)),
                LogEntry("customer", "update", "updated", "001A", at=NOW - timedelta(days=1)),
            ]
        )
        assert prune(store, NOW) == 1
        assert [e.action for e in store.runs.list_log()] == ["update"]
    finally:
        store.close()


def _ctx(store):
    return SimpleNamespace(store=store, stripe_account=ACCT, run_id=None)


def _linked(store, sf_id, stripe_id, object_type="customer", sf_object="Account"):
    store.links.record_intent(ACCT, object_type, sf_object, sf_id, f"key-{sf_id}")
    store.links.mark_linked(
        ACCT, object_type, sf_id, stripe_id=stripe_id, payload_hash=None, sf_modstamp=None
    )


def test_merge_and_delete_mark_links_once_and_clear_failures(store_url):
    store = StateStore.open(store_url)
    try:
        _linked(store, "001LOSER", "cus_L")
        _linked(store, "001SURV", "cus_S")
        _linked(store, "001GONE", "cus_G")
        store.failures.record("customer", "Account", "001LOSER", "x", "old", retryable=False, now=NOW)
        merged = [
            {"Id": "001LOSER", "Name": "L", "MasterRecordId": "001SURV", "SystemModstamp": NOW.isoformat()}
        ]
        deleted = [{"Id": "001GONE", "Name": "G", "SystemModstamp": NOW.isoformat()}]

        [m] = record_merges(_ctx(store), merged, dry_run=False)
        [d] = record_deletes(_ctx(store), ACCOUNTS, deleted, dry_run=False)

        assert m.action == "merge" and "cus_S" in m.message and "cus_L" in m.message
        assert d.action == "delete" and "cus_G" in d.message
        links = {x.sf_id: x for x in store.links.all()}
        assert links["001LOSER"].status == "merged_away" and "001SURV" in links["001LOSER"].note
        assert links["001GONE"].status == "deleted"
        assert links["001SURV"].status == "linked"
        assert store.failures.get("customer", "001LOSER") is None
        assert {e.action for e in store.runs.list_log()} == {"merge", "delete"}
        # Seen again (cursor overlap): nothing new is reported.
        assert record_merges(_ctx(store), merged, dry_run=False) == []
        assert record_deletes(_ctx(store), ACCOUNTS, deleted, dry_run=False) == []
    finally:
        store.close()

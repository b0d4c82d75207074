"""The sync log's retention: one record per sync action is kept in the state store for this long.

Setting-free on purpose: 90 days covers a quarter's billing questions and keeps the table small.
A mirror to a Salesforce custom object (like the Sync Record of Stripe's own connector) is not
built: the sandbox org has no such object to test it against.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from connector.state.store import StateStore

LOG_RETENTION = timedelta(days=90)


def prune(store: StateStore, now: datetime, retention: timedelta = LOG_RETENTION) -> int:
    """Delete log entries older than ``retention``; returns how many went."""
    return store.runs.prune_log(older_than=now - retention)

"""The sync log: one entry per sync action, kept in the state store for 90 days, read by
`cpq2stripe log` ("what happened to this record, and when?").

Setting-free retention on purpose: 90 days covers a quarter's billing questions and keeps the
table small. A mirror to a Salesforce custom object (like the Sync Record of Stripe's own
connector) is not built: the sandbox org has no such object to test it against.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from connector.state.models import LogEntry
from connector.state.store import StateStore

LOG_RETENTION = timedelta(days=90)
_AGO = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime:
    """`30m`, `2h`, `3d`, `1w` before `now`, or an ISO 8601 date or instant (naive = UTC)."""
    ago = _AGO.match(text)
    if ago:
        return now - timedelta(**{_UNITS[ago.group(2).lower()]: int(ago.group(1))})
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r} is neither a duration (30m, 2h, 3d, 1w) nor an ISO 8601 date or time "
            "(2026-12-01 or 2026-12-01T09:30:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def read_log(
    store: StateStore,
    *,
    record: str | None = None,
    since: datetime | None = None,
    object_type: str | None = None,
    limit: int = 50,
) -> list[LogEntry]:
    """Entries newest first; `record` is a Salesforce id or a Stripe id (anything with `_`)."""
    by_stripe = record is not None and "_" in record
    return store.runs.list_log(
        sf_id=None if by_stripe else record,
        stripe_id=record if by_stripe else None,
        object_type=object_type,
        since=since,
        limit=limit,
    )


def format_entry(entry: LogEntry) -> str:
    at = entry.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if entry.at else "—"
    run = f"run {entry.run_id}" if entry.run_id is not None else "no run"
    line = (
        f"{at}  {run:8}  {entry.object_type:12}  {entry.sf_id or '—':18}  {entry.stripe_id or '—':28}  "
        f"{entry.action:7} {entry.status}"
    )
    return f"{line}: {entry.message}" if entry.message else line


def print_log(
    store: StateStore,
    *,
    record: str | None,
    since: datetime | None,
    object_type: str | None,
    limit: int,
    out: Callable[[str], None],
) -> int:
    """Print the newest `limit` matching entries, oldest first; returns how many."""
    entries = read_log(store, record=record, since=since, object_type=object_type, limit=limit)
    if not entries:
        out("No sync log entries match." + ("" if since else " The log keeps 90 days."))
        return 0
    for entry in reversed(entries):
        out(format_entry(entry))
    if len(entries) == limit:
        out(f"(the newest {limit}; --limit N shows more)")
    return len(entries)


def prune(store: StateStore, now: datetime, retention: timedelta = LOG_RETENTION) -> int:
    """Delete log entries older than ``retention``; returns how many went."""
    return store.runs.prune_log(older_than=now - retention)

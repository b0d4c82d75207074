"""Deleted Accounts and Orders: recorded and reported; nothing is ever deleted or cancelled in Stripe.

Deleting a Stripe Customer is irreversible (its subscriptions are cancelled, its payment methods
removed), so a delete in Salesforce only marks the link ``deleted`` and says so. One queryAll per
object and pass on ``IsDeleted = true`` with its own ``SystemModstamp`` cursor; Accounts with a
``MasterRecordId`` were merged away and go to ``merges.py``, the others are deletes.

On a fresh state store's first pass (no link older than the pass) nothing can have been deleted
after it was linked, so the cursor starts at the pass's start without a query.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connector.salesforce.soql import datetime_literal
from connector.state.cursor import advance, filter_new, parse_modstamp, poll_window
from connector.state.models import LogEntry
from connector.sync.context import SyncContext
from connector.sync.merges import REPORTED
from connector.sync.report import Outcome, RunReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeletedKind:
    sf_object: str
    object_type: str  # the link type of the record's Stripe object
    name_field: str
    mergeable: bool  # only mergeable objects have MasterRecordId

    @property
    def cursor_name(self) -> str:
        return f"{self.sf_object}.removed"


ACCOUNTS = DeletedKind("Account", "customer", "Name", True)
ORDERS = DeletedKind("Order", "subscription", "OrderNumber", False)


def removed_query(kind: DeletedKind, since: Any) -> str:
    fields = ["Id", "SystemModstamp", kind.name_field] + (["MasterRecordId"] if kind.mergeable else [])
    where = ["IsDeleted = true"]
    if since is not None:
        where.append(f"SystemModstamp >= {datetime_literal(since)}")
    return (
        f"SELECT {', '.join(fields)} FROM {kind.sf_object} WHERE {' AND '.join(where)} "
        "ORDER BY SystemModstamp ASC, Id ASC"
    )


def _nothing_linked_before(ctx: SyncContext, kind: DeletedKind) -> datetime | None:
    """The pass's start if no link of this kind predates it (a fresh store's first pass), else None."""
    if ctx.run_id is None:
        return None
    run = ctx.store.runs.last("sync")
    if run is None or run.id != ctx.run_id:
        return None
    for account in ctx.account_contexts():
        oldest = ctx.store.links.all(
            stripe_account=account.stripe_account, object_type=kind.object_type, limit=1
        )
        if oldest and oldest[0].created_at < run.started_at:
            return None
    return run.started_at


def handle_removed(ctx: SyncContext, kind: DeletedKind, report: RunReport) -> None:
    """Record the merges and deletes of one object since its cursor; Stripe is never called."""
    from connector.sync.merges import record_merges

    store = ctx.store
    cursor = store.cursors.get(kind.cursor_name)
    if cursor.modstamp is None and not report.dry_run:
        fresh_start = _nothing_linked_before(ctx, kind)
        if fresh_start is not None:
            store.cursors.set(kind.cursor_name, fresh_start)
            return
    started = ctx.now()
    since = poll_window(cursor, timedelta(seconds=ctx.settings.cursor_overlap_seconds))
    for page in ctx.sf.query_pages(removed_query(kind, since), include_deleted=True):
        rows = filter_new(page, cursor)
        merged = [r for r in rows if kind.mergeable and r.get("MasterRecordId")]
        deleted = [r for r in rows if not (kind.mergeable and r.get("MasterRecordId"))]
        for account in ctx.account_contexts():  # each Stripe account's links (several: routing.yaml)
            for o in record_merges(account, merged, dry_run=report.dry_run):
                report.add(o)
            for o in record_deletes(account, kind, deleted, dry_run=report.dry_run):
                report.add(o)
        if not report.dry_run:
            cursor = advance(cursor, page, started)
            store.cursors.set(kind.cursor_name, cursor.modstamp, cursor.seen_ids)


def record_deletes(
    ctx: SyncContext, kind: DeletedKind, rows: Iterable[Mapping[str, Any]], *, dry_run: bool
) -> list[Outcome]:
    rows = list(rows)
    if not rows:
        return []
    store, account = ctx.store, ctx.stripe_account
    links = store.links.get_many(account, kind.object_type, [r["Id"] for r in rows])
    outcomes: list[Outcome] = []
    for row in rows:
        link = links.get(row["Id"])
        if link is None or link.status in ("merged_away", "deleted"):
            continue
        what = link.stripe_id or "nothing (the create never finished)"
        message = (
            f"{kind.sf_object} {row['Id']} was deleted in Salesforce. Nothing was deleted, cancelled or "
            f"changed in Stripe: {what} stays as it is"
            + (" and keeps billing" if link.stripe_id else "")
            + ". Cancel or delete it in Stripe by hand if that is wanted."
        )
        outcomes.append(
            Outcome(
                kind.object_type,
                row["Id"],
                str(row.get(kind.name_field) or ""),
                "delete",
                REPORTED,
                link.stripe_id,
                message,
            )
        )
        if dry_run:
            continue
        when = parse_modstamp(row["SystemModstamp"]).date().isoformat()
        store.links.set_status(
            account,
            kind.object_type,
            row["Id"],
            "deleted",
            note=f"deleted in Salesforce on {when}; {what} left as it is in Stripe",
        )
        store.failures.clear(kind.object_type, row["Id"])
        log.warning(
            "%s %s deleted in Salesforce: %s left as it is in Stripe", kind.sf_object, row["Id"], what
        )
    if not dry_run:
        store.runs.log_action(
            LogEntry(
                kind.object_type,
                o.action,
                o.status,
                o.sf_id,
                kind.sf_object,
                o.stripe_id,
                o.message,
                run_id=ctx.run_id,
            )
            for o in outcomes
        )
    return outcomes


def handle_removals(ctx: SyncContext, *, dry_run: bool, objects: Iterable[str]) -> RunReport:
    """Merges and deletes found since the last pass; one report for both (run by `run_pass`)."""
    from connector.sync.merges import RemovalReport

    objects = list(objects)
    report = RemovalReport("Merged and deleted in Salesforce", dry_run=dry_run)
    if "accounts" in objects:
        handle_removed(ctx, ACCOUNTS, report)
    if "orders" in objects:
        handle_removed(ctx, ORDERS, report)
    return report

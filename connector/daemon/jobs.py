"""The daemon's periodic jobs beside the poll: put drifted mapped Stripe fields back (reconcile),
record merges and deletes made in Salesforce (never followed in Stripe), then prune the log, and
write Stripe's billing status (events since a cursor) to the Orders and Accounts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from connector.sync.billing_events import billing_status
from connector.sync.context import SyncContext
from connector.sync.deletes import handle_removals
from connector.sync.reconcile import reconcile
from connector.sync.report import Outcome, RunReport
from connector.sync.streams import KEYS
from connector.synclog import prune

log = logging.getLogger(__name__)

Job = Callable[[SyncContext, RunReport], Any]


def reconcile_job(ctx: SyncContext, report: RunReport) -> None:
    """Put drifted mapped Stripe fields back; one outcome per field put back."""
    result = reconcile(ctx, dry_run=False)
    for line in result.summary_lines():
        log.log(logging.WARNING if line.lstrip().startswith(("DRIFT", "FAILED")) else logging.INFO, line)
    for drift in result.drifts:
        if drift.stripe_id in result.corrected:
            report.add(
                Outcome(
                    drift.object_type,
                    drift.sf_id,
                    "",
                    "update",
                    "updated",
                    drift.stripe_id,
                    f"drift put back: {drift.field}",
                )
            )
    report.fatal = result.fatal


def merges_job(ctx: SyncContext, report: RunReport) -> None:
    """Record merges and deletes since the last check (the step `sync` runs after its poll), then
    prune the sync log."""
    result = handle_removals(ctx, dry_run=False, objects=list(KEYS))
    report.outcomes.extend(result.outcomes)
    report.fatal = result.fatal
    prune(ctx.store, ctx.now())


def billing_status_job(ctx: SyncContext, report: RunReport) -> None:
    """Stripe's billing events since the cursor onto the Orders' and Accounts' billing-status fields."""
    result = billing_status(ctx)
    quiet = not (result.events or result.gap or result.errors or result.fatal)  # every minute: only news
    for line in result.summary_lines():
        level = logging.WARNING if "FAILED" in line or "stopped" in line else logging.INFO
        log.log(logging.DEBUG if quiet else level, line)
    report.fatal = result.fatal


JOBS: dict[str, Job] = {
    "reconcile": reconcile_job,
    "merges": merges_job,
    "billing-status": billing_status_job,
}

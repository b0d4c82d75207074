"""Jobs other modules provide, run by the daemon when they exist: drift reconcile, and recording
merges and deletes made in Salesforce (never followed in Stripe). Import-guarded: a build
without them schedules neither, and says so once at start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from connector.sync.context import SyncContext
from connector.sync.report import Outcome, RunReport

log = logging.getLogger(__name__)

Job = Callable[[SyncContext, RunReport], Any]
OBJECTS = ["accounts", "orders"]


def reconcile_job() -> Job | None:
    """`connector.sync.reconcile.reconcile`: put drifted mapped Stripe fields back, report each."""
    try:
        from connector.sync.reconcile import reconcile
    except ImportError:
        return None

    def job(ctx: SyncContext, report: RunReport) -> None:
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

    return job


def merges_job() -> Job | None:
    """`connector.sync.deletes.handle_removals`: record merges and deletes since the last check
    (the same step `sync --once` runs after its poll), then prune the sync log."""
    try:
        from connector.sync.deletes import handle_removals
    except ImportError:
        return None

    def job(ctx: SyncContext, report: RunReport) -> None:
        result = handle_removals(ctx, dry_run=False, objects=OBJECTS)
        report.outcomes.extend(result.outcomes)
        report.fatal = result.fatal
        try:
            from connector.synclog import prune
        except ImportError:
            return
        prune(ctx.store, ctx.now())

    return job


def find_job(job: str) -> Job | None:
    return {"reconcile": reconcile_job, "merges": merges_job}[job]()

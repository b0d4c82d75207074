"""Salesforce Account merges after sync: found, recorded and reported; never followed in Stripe.

Stripe cannot merge Customers, so a merge in Salesforce changes nothing in Stripe: the loser's
Customer and its subscriptions stay exactly as they are, and the survivor keeps its own Customer
(or gets a new one if it had none). Merged-away Accounts are found with queryAll on
``IsDeleted = true AND MasterRecordId != null`` (kept in the recycle bin ~15 days); ``deletes.py``
reads them with the deleted Accounts in one query per pass and hands the merged ones here.

What this module does per loser: marks its link ``merged_away`` with a note naming the survivor,
forgets the loser's failures (it can no longer be synced), and reports the merge in the run report
and the sync log. The survivor is refused elsewhere if its Stripe ID field now names another
record's Customer (``plan.py`` for a linked survivor, ``accounts.py`` adoption for an unlinked one).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from connector.state.cursor import parse_modstamp
from connector.state.models import LogEntry
from connector.sync.context import SyncContext
from connector.sync.report import Outcome, RunReport

log = logging.getLogger(__name__)

CUSTOMER_TYPE = "customer"
SF_OBJECT = "Account"
REPORTED = "reported"


class RemovalReport(RunReport):
    """A run report for merges and deletes: nothing is created or updated, only reported."""

    def summary_lines(self, *, limit_failures: int = 50) -> list[str]:
        if self.dry_run:
            return [f"{self.kind} (dry run, nothing changed): {len(self.outcomes)} to record"]
        merges = sum(1 for o in self.outcomes if o.action == "merge")
        deletes = sum(1 for o in self.outcomes if o.action == "delete")
        lines = [f"{self.kind}: {merges} merged away, {deletes} deleted (nothing changed in Stripe)"]
        for o in self.outcomes[:limit_failures]:
            lines.append(f"  {o.action.upper():8} {o.sf_id} {o.label!r}: {o.message}")
        if self.fatal:
            lines.append(f"  STOPPED: {self.fatal}")
        return lines


def merge_message(
    loser: Mapping[str, Any], loser_stripe_id: str, survivor_id: str, survivor_link: Any
) -> str:
    head = (
        f"Account {loser['Id']} was merged into Account {survivor_id}. Stripe cannot merge Customers: "
        f"{loser_stripe_id} and its subscriptions stay exactly as they are"
    )
    if survivor_link is not None and survivor_link.stripe_id:
        return (
            f"{head}, and the survivor keeps its own Customer {survivor_link.stripe_id}. "
            "Move subscriptions between them in Stripe by hand if that is wanted."
        )
    return (
        f"{head}. The survivor is never given {loser_stripe_id}; if it is a billing entity it syncs as "
        "its own new Customer."
    )


def record_merges(ctx: SyncContext, rows: Iterable[Mapping[str, Any]], *, dry_run: bool) -> list[Outcome]:
    rows = list(rows)
    if not rows:
        return []
    store, account = ctx.store, ctx.stripe_account
    losers = store.links.get_many(account, CUSTOMER_TYPE, [r["Id"] for r in rows])
    survivors = store.links.get_many(account, CUSTOMER_TYPE, [r["MasterRecordId"] for r in rows])
    outcomes: list[Outcome] = []
    for row in rows:
        link = losers.get(row["Id"])
        if link is None or link.status in ("merged_away", "deleted"):
            # Never synced (nothing in Stripe to keep) or already recorded.
            continue
        survivor_id = row["MasterRecordId"]
        stripe_id = link.stripe_id or "(no Customer yet)"
        message = merge_message(row, stripe_id, survivor_id, survivors.get(survivor_id))
        outcomes.append(
            Outcome(
                CUSTOMER_TYPE,
                row["Id"],
                str(row.get("Name") or ""),
                "merge",
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
            CUSTOMER_TYPE,
            row["Id"],
            "merged_away",
            note=f"merged into Account {survivor_id} on {when}; {stripe_id} kept as it is",
        )
        store.failures.clear(CUSTOMER_TYPE, row["Id"])
        log.warning(
            "Account %s merged into %s: %s left as it is in Stripe", row["Id"], survivor_id, stripe_id
        )
    if not dry_run:
        store.runs.log_action(
            LogEntry(
                CUSTOMER_TYPE,
                o.action,
                o.status,
                o.sf_id,
                SF_OBJECT,
                o.stripe_id,
                o.message,
                run_id=ctx.run_id,
            )
            for o in outcomes
        )
    return outcomes

"""Every synced object, declared once: `sync`, `retry`, the daemon's polls and events, and the
backfill all find an object's pipeline here, so a new object is one entry, not five edits.

An entry names the Salesforce object, the kind of Stripe object its records become (the link
type), how the CLI calls it, whether Bulk API 2.0 can read it, and the pipeline that applies
it (its SELECT from the mapping, its planner and applier, its write-back fields).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from connector.sync import polling
from connector.sync.accounts import AccountSync
from connector.sync.context import SyncContext
from connector.sync.exactly_once import CUSTOMER, METER_EVENT, PAYMENT_SETUP, PRODUCT, SUBSCRIPTION, Kind
from connector.sync.orders import OrderSync
from connector.sync.payment_setup import PaymentSetupSync
from connector.sync.polling import PolledSync
from connector.sync.products import ProductSync
from connector.sync.report import RunReport, regroup
from connector.sync.usage import UsageSync


class Pipeline(PolledSync, Protocol):
    """What one object's pipeline offers: its query and `process(rows, report)`; the loops around
    it (poll from the cursor, retries, ids named by events) are shared, in connector.sync.polling."""


@dataclass(frozen=True)
class Stream:
    key: str  # how the CLI names it: --objects accounts,orders
    title: str  # for reports
    sf_object: str
    kind: Kind  # the Stripe object its records become
    bulk_ok: bool  # Bulk API 2.0 can run its query (it cannot run a child subquery)
    build: Callable[[SyncContext], Pipeline]
    # `backfill` loads history in bulk; a stream of requests (payment setup) has none to load, and
    # shares its Salesforce object with another stream's checkpoint there.
    backfill_ok: bool = True

    @property
    def object_type(self) -> str:
        return self.kind.object_type

    def pipeline(self, ctx: SyncContext) -> Pipeline:
        """Its pipeline, over every Stripe account the run bills through."""
        if ctx.routed:
            from connector.sync.routed import RoutedSync

            return RoutedSync(ctx, self.build)
        return self.build(ctx)

    def poll(self, ctx: SyncContext, report: RunReport) -> None:
        """Changed records from the cursor, then failures that are due."""
        polling.poll(self.pipeline(ctx), report)

    def sync_ids(
        self,
        ctx: SyncContext,
        ids: Iterable[str],
        report: RunReport,
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """These records now (retries, events); False when stopped or failed before the last."""
        return polling.sync_ids(self.pipeline(ctx), ids, report, should_stop=should_stop)


# In dependency order: an Order's Customer comes from its Account. A Product2's Product is made by
# the first Order that bills it; the Product2 pass only keeps existing ones current, before the
# Orders that bill them (a Product2 an Order links in this pass is compared on the next one).
STREAMS: tuple[Stream, ...] = (
    Stream("accounts", "Accounts → Customers", "Account", CUSTOMER, True, AccountSync),
    Stream("products", "Product2 → Products", "Product2", PRODUCT, True, ProductSync),
    Stream("orders", "Orders → Subscriptions", "Order", SUBSCRIPTION, False, OrderSync),
    # Usage after the Orders whose metered lines (and meters) it reports on (mappings/usage.yaml).
    Stream("usage", "Usage → Meter events", "Stripe_Usage__c", METER_EVENT, True, UsageSync),
    # Accounts with a payment setup requested, after their Customers; last, as nothing depends on it.
    # Its own cursor on Account; the daemon's Account polls run it too.
    Stream(
        "payment_setup",
        "Payment setup requests → Checkout links",
        "Account",
        PAYMENT_SETUP,
        False,
        PaymentSetupSync,
        backfill_ok=False,
    ),
)
KEYS: tuple[str, ...] = tuple(s.key for s in STREAMS)


def selected(keys: Iterable[str]) -> list[Stream]:
    """The streams named (in dependency order, whatever order they were named in)."""
    wanted = set(keys)
    unknown = wanted - set(KEYS)
    if unknown:
        raise ValueError(f"unknown object(s) {', '.join(sorted(unknown))}; expected {', '.join(KEYS)}")
    return [s for s in STREAMS if s.key in wanted]


def by_sf_object(sf_object: str) -> Stream | None:
    return next((s for s in STREAMS if s.sf_object == sf_object), None)


def by_object_type(object_type: str) -> Stream | None:
    return next((s for s in STREAMS if s.object_type == object_type), None)


def by_object(reports: Iterable[RunReport]) -> list[RunReport]:
    """Each outcome in its own object's report, each record once, in dependency order: how `sync`
    and the daemon's polls, retries and event batches count (an Order batch's new Customers count
    under Accounts)."""
    return regroup(reports, {s.object_type: s.title for s in STREAMS})

"""What Stripe's billing objects say about Salesforce records (pure: no I/O).

Stripe is the authority for what was billed and paid; these values go to connector-owned fields
named in the mappings' `billing_status` blocks: on the Order its subscription's status and its
latest invoice (number, status, amounts, due date, hosted URL), on the Account whether its
Customer is delinquent and its balance. Events say which objects changed (`Touched`); the objects'
current state gives the values, so applying the same events again gives the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.mapping.schema import AccountBillingStatus, OrderBillingStatus
from connector.stripe_sink.subscriptions import ORDER_ID_KEY
from connector.sync.money import from_minor_units

ACCOUNT_ID_KEY = "salesforce_account_id"

# The event types that change a billing-status field (GET /v1/events takes up to 20 `types`).
EVENT_TYPES: tuple[str, ...] = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "invoice.created",
    "invoice.finalized",
    "invoice.updated",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "invoice.overdue",
    "customer.updated",
    # payment method setup (connector.sync.payment_setup.SETUP_EVENT_TYPES): 20, Stripe's limit
    "checkout.session.completed",
    "checkout.session.expired",
    "setup_intent.succeeded",
    "setup_intent.setup_failed",
    "payment_method.detached",
)

# Finds the Salesforce records linked to a Stripe id (the connector's links), by sObject.
LinkedIds = Callable[[str, str], Iterable[str]]


def amount(minor: int | None, currency: str | None) -> float | None:
    """A Stripe amount in minor units as a Salesforce currency value (major units)."""
    if minor is None or not currency:
        return None
    return float(from_minor_units(minor, None, currency))


def day(timestamp: int | None) -> str | None:
    """A Stripe timestamp as a Salesforce date (UTC), as Salesforce returns dates."""
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat() if timestamp else None


def invoice_subscription(invoice: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    """The invoice's subscription id and that subscription's metadata (as of finalization)."""
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    sub = details.get("subscription") or invoice.get("subscription")
    if isinstance(sub, Mapping):
        sub = sub.get("id")
    return (str(sub) if sub else None), (details.get("metadata") or {})


@dataclass
class BillingFacts:
    """Desired field values per record, folded from Stripe objects in the order they were seen."""

    order_fields: OrderBillingStatus
    account_fields: AccountBillingStatus
    linked: LinkedIds
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The creation time of the invoice each Order's invoice fields came from: an older invoice's
    # later event (a late payment) does not replace a newer invoice seen in the same pass.
    _invoice_created: dict[str, int] = field(default_factory=dict)

    def _orders_of(self, ids: Iterable[str | None], metadata: Mapping[str, Any]) -> list[str]:
        found = [str(metadata[ORDER_ID_KEY])] if metadata.get(ORDER_ID_KEY) else []
        for stripe_id in ids:
            if stripe_id:
                found.extend(self.linked(stripe_id, "Order"))
        return list(dict.fromkeys(found))

    def orders_of_subscription(self, sub: Mapping[str, Any]) -> list[str]:
        schedule = sub.get("schedule")
        schedule_id = schedule.get("id") if isinstance(schedule, Mapping) else schedule
        return self._orders_of([sub.get("id"), schedule_id], sub.get("metadata") or {})

    def orders_of_invoice(self, invoice: Mapping[str, Any]) -> list[str]:
        sub_id, sub_metadata = invoice_subscription(invoice)
        metadata = invoice.get("metadata") or {}
        return self._orders_of(
            [invoice.get("id"), sub_id], metadata if metadata.get(ORDER_ID_KEY) else sub_metadata
        )

    def accounts_of_customer(self, customer: Mapping[str, Any]) -> list[str]:
        metadata = customer.get("metadata") or {}
        found = [str(metadata[ACCOUNT_ID_KEY])] if metadata.get(ACCOUNT_ID_KEY) else []
        found.extend(self.linked(str(customer.get("id")), "Account"))
        return list(dict.fromkeys(found))

    def subscription(self, sub: Mapping[str, Any]) -> None:
        name = self.order_fields.subscription_status
        for order_id in self.orders_of_subscription(sub):
            if name:
                self.orders.setdefault(order_id, {})[name] = sub.get("status")

    def invoice(self, invoice: Mapping[str, Any]) -> None:
        orders = self.orders_of_invoice(invoice)
        f, created, currency = self.order_fields, int(invoice.get("created") or 0), invoice.get("currency")
        values = {
            f.invoice_number: invoice.get("number"),
            f.invoice_status: invoice.get("status"),
            f.invoice_amount_due: amount(invoice.get("amount_due"), currency),
            f.invoice_amount_paid: amount(invoice.get("amount_paid"), currency),
            f.invoice_due_date: day(invoice.get("due_date")),
            f.invoice_url: invoice.get("hosted_invoice_url"),
        }
        for order_id in orders:
            if self._invoice_created.get(order_id, created) > created:
                continue
            self._invoice_created[order_id] = created
            self.orders.setdefault(order_id, {}).update({k: v for k, v in values.items() if k})

    def customer(self, customer: Mapping[str, Any]) -> None:
        if customer.get("deleted"):
            return
        f = self.account_fields
        values = {
            f.delinquent: bool(customer.get("delinquent")),
            f.balance: amount(customer.get("balance"), customer.get("currency") or "usd"),
        }
        for account_id in self.accounts_of_customer(customer):
            self.accounts.setdefault(account_id, {}).update({k: v for k, v in values.items() if k})


@dataclass
class Touched:
    """The connector's objects a run of events changed. They are read again and their current
    state written (Stripe's advice for event handlers): an event's snapshot may be stale by the
    time it is read, and an old invoice's late event must not hide the subscription's latest."""

    subscriptions: set[str] = field(default_factory=set)
    invoices: set[str] = field(default_factory=set)  # invoices of no subscription (one-time Orders)
    customers: set[str] = field(default_factory=set)

    def add(self, facts: BillingFacts, event: Mapping[str, Any]) -> None:
        obj = (event.get("data") or {}).get("object") or {}
        kind, ident = obj.get("object"), obj.get("id")
        if kind == "subscription" and facts.orders_of_subscription(obj):
            self.subscriptions.add(str(ident))
        elif kind == "invoice" and facts.orders_of_invoice(obj):
            sub_id, _ = invoice_subscription(obj)
            if sub_id:
                self.subscriptions.add(sub_id)
            else:
                self.invoices.add(str(ident))
        elif kind == "customer" and facts.accounts_of_customer(obj):
            self.customers.add(str(ident))

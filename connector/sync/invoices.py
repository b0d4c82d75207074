"""An Order whose lines are all one-time -> one Stripe invoice, exactly once under kills.

Steps, each through the exactly-once routine (connector.sync.exactly_once):
1. the draft invoice (POST /v1/invoices, `auto_advance: false` and
   `pending_invoice_items_behavior: exclude`), under the Order's billing intent, which the batch
   recorded before any create;
2. an invoice item per line on it (POST /v1/invoiceitems with `invoice`), each under its own
   intent, found again by the OrderItem id in its metadata;
3. finalize (POST /v1/invoices/{id}/finalize) when the mapping says so and it is still a draft;
4. the Order's link is marked (by the batch) only then.

A kill anywhere leaves the Order's link pending, so the next run resumes: it finds the invoice
by the Order id in its metadata (a list, consistent at once), adds only the items it lacks and
finalizes it if it is still a draft. A linked Order is never invoiced again (connector.sync.orders
reports a change after activation, as for subscriptions).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial
from typing import Any

from connector.faults import crash_point
from connector.mapping.schema import OrderWriteBack
from connector.state.cursor import parse_modstamp
from connector.state.models import Link
from connector.stripe_sink import idempotency
from connector.stripe_sink.invoices import InvoiceSink
from connector.sync.context import SyncContext
from connector.sync.exactly_once import INVOICE, INVOICE_ITEM, Create, ensure, obtain
from connector.sync.money import from_minor_units
from connector.sync.order_rules import InvoiceSpec, OrderPlan
from connector.sync.pipeline import Batch
from connector.sync.report import Outcome

SF_OBJECT = "Order"


def is_invoice_id(stripe_id: str | None) -> bool:
    return bool(stripe_id) and str(stripe_id).startswith("in_")


def invoice_total(plan: OrderPlan, spec: InvoiceSpec) -> Decimal:
    """The invoice's total in major units as Stripe computes it: quantity × unit amount per line,
    a line with a decimal unit amount rounded half-even to the minor unit."""
    minor = 0
    for item in spec.items:
        price = plan.price_for(item.order_item_id).spec
        unit = (
            Decimal(price.unit_amount)
            if price.unit_amount is not None
            else Decimal(price.unit_amount_decimal or "0")
        )
        quantity = item.quantity if item.quantity is not None else 1
        minor += int((unit * quantity).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return from_minor_units(minor, None, plan.currency)


def invoice_preview(plan: OrderPlan, spec: InvoiceSpec, customer: str, items_text: str) -> str:
    """What a dry run says a one-time Order becomes, on one line."""
    total = invoice_total(plan, spec)
    if spec.collection.method == "send_invoice":
        due = f"sent, due {spec.collection.days_until_due} days after finalizing"
    else:
        due = "charged automatically"
    state = "finalized" if spec.finalize else "left a draft"
    tax = "; automatic tax (Stripe Tax)" if spec.automatic_tax else ""
    return (
        f"invoice for {customer}; {plan.currency.upper()} one-time; items: {items_text}; "
        f"total {plan.currency.upper()} {total}; {due}; {state}{tax}"
    )


class InvoiceOrders:
    """Apply the invoice of one Order (the Orders pipeline decides, this makes it)."""

    def __init__(self, ctx: SyncContext, write_back: OrderWriteBack) -> None:
        self.ctx = ctx
        self.wb = write_back
        self.sink = InvoiceSink(ctx.gateway)

    def intent(self, order_id: str, customer_id: str, params: dict[str, Any]) -> Create:
        """The Order's billing create when it is an invoice (its intent is recorded with the batch's)."""
        return Create(
            INVOICE,
            SF_OBJECT,
            order_id,
            idempotency.create_key(self.ctx.stripe_account, "invoice", order_id),
            send=lambda key: self.sink.create(params, key),
            find=lambda: self.sink.find_for_order(customer_id, order_id),
            expired_fix=(
                f"check Stripe for an invoice with metadata salesforce_order_id {order_id} and put its id in "
                "the Order's Stripe Invoice ID field"
            ),
        )

    def apply(
        self,
        row: Mapping[str, Any],
        plan: OrderPlan,
        spec: InvoiceSpec,
        customer_id: str,
        params: dict[str, Any],
        price_ids: Mapping[str, str],
        link: Link,
        batch: Batch,
        *,
        recovering: bool,
        label: str,
    ) -> Outcome:
        sid = str(row["Id"])
        invoice = obtain(
            self.intent(sid, customer_id, params), link, recovering=recovering, now=self.ctx.now()
        )
        if invoice.status == "draft":
            self._items(invoice.id, spec, customer_id, price_ids)
            crash_point("invoice.after_items")
            if spec.finalize:
                key = idempotency.action_key(self.ctx.stripe_account, "invoice", invoice.id, "finalize")
                invoice = self.sink.finalize(invoice.id, key)
                crash_point("invoice.after_finalize")
        batch.linked(sid, invoice.id, plan.fingerprint, parse_modstamp(row["SystemModstamp"]))
        self.stage_url(row, invoice, batch)
        action = "recover" if recovering else "create"
        return Outcome("subscription", sid, label, action, "created", invoice.id, self.message(invoice))

    def restore(self, row: Mapping[str, Any], stripe_id: str, batch: Batch, label: str) -> Outcome:
        """Linked but the write-back was lost: the id (by the outcome) and the URL again."""
        invoice = self.sink.retrieve(stripe_id)
        if invoice is None:
            message = f"Stripe no longer has {stripe_id}; the connector never re-bills an Order on its own."
            return Outcome(
                "subscription", row["Id"], label, "error", "failed", stripe_id, message, "stripe_missing"
            )
        self.stage_url(row, invoice, batch)
        return Outcome(
            "subscription", row["Id"], label, "recover", "updated", stripe_id, self.message(invoice)
        )

    def _items(
        self, invoice_id: str, spec: InvoiceSpec, customer_id: str, price_ids: Mapping[str, str]
    ) -> None:
        listed: dict[str, Any] | None = None

        def find(order_item_id: str) -> Any | None:
            nonlocal listed
            if listed is None:  # one list of the invoice's items for every line that resumes
                listed = self.sink.items(invoice_id)
            return listed.get(order_item_id)

        for item in spec.items:
            oid = item.order_item_id
            params = spec.item_params(item, invoice_id, customer_id, price_ids[oid])
            create = Create(
                INVOICE_ITEM,
                "OrderItem",
                oid,
                idempotency.create_key(self.ctx.stripe_account, INVOICE_ITEM.object_type, oid, invoice_id),
                send=partial(self._add_item, params),
                find=partial(find, oid),
                expired_fix=f"check invoice {invoice_id} in Stripe for an item of OrderItem {oid}",
            )
            ensure(self.ctx.store, self.ctx.stripe_account, create, self.ctx.now())

    def _add_item(self, params: dict[str, Any], key: str) -> Any:
        return self.sink.add_item(params, key)

    def stage_url(self, row: Mapping[str, Any], invoice: Any, batch: Batch) -> None:
        """The hosted URL exists once the invoice is finalized (a draft has none)."""
        url = getattr(invoice, "hosted_invoice_url", None)
        field = self.wb.invoice_url
        if field and url and row.get(field) != url:
            batch.writeback.stage(SF_OBJECT, str(row["Id"]), {field: url}, current={field: row.get(field)})

    @staticmethod
    def message(invoice: Any) -> str:
        status = getattr(invoice, "status", None)
        if status == "draft":
            return f"Invoice {invoice.id} (draft: review and finalize it in Stripe)"
        due = getattr(invoice, "due_date", None)
        when = f", due {datetime.fromtimestamp(due, UTC).date().isoformat()}" if due else ""
        return f"Invoice {getattr(invoice, 'number', None) or invoice.id} ({invoice.id}) {status}{when}"

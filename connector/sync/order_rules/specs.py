"""What a planned Order becomes in Stripe: products, prices, items, the subscription or its
schedule, as frozen values the sink turns into API params."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from connector.sync.money import to_decimal
from connector.sync.order_rules.discounts import CouponSpec


@dataclass(frozen=True)
class Recurrence:
    interval: Literal["month", "year"]
    interval_count: int
    usage_type: Literal["licensed", "metered"] = "licensed"

    def params(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "interval_count": self.interval_count,
            "usage_type": self.usage_type,
        }


@dataclass(frozen=True)
class PriceSpec:
    """A Stripe Price as the Order needs it. Two lines that need the same price have equal specs."""

    product_sf_id: str
    currency: str  # lower-case ISO code, as Stripe returns it
    unit_amount: int | None
    unit_amount_decimal: str | None
    recurring: Recurrence | None
    # inclusive | exclusive | unspecified, None when the mapping sets none (Stripe: unspecified).
    # Part of the key: Stripe never changes it once inclusive or exclusive, so prices differing in
    # it are different prices.
    tax_behavior: str | None = None

    def params(self, product_stripe_id: str) -> dict[str, Any]:
        """Create params for POST /v1/prices."""
        params: dict[str, Any] = {"product": product_stripe_id, "currency": self.currency}
        if self.unit_amount is not None:
            params["unit_amount"] = self.unit_amount
        else:
            params["unit_amount_decimal"] = self.unit_amount_decimal
        if self.recurring is not None:
            params["recurring"] = self.recurring.params()
        if self.tax_behavior is not None:
            params["tax_behavior"] = self.tax_behavior
        params["metadata"] = {"salesforce_product_id": self.product_sf_id, "cpq2stripe_price_key": self.key()}
        return params

    def key(self) -> str:
        """Deterministic, short, idempotency-key-safe identity of this spec."""
        rec = (
            "once"
            if self.recurring is None
            else f"{self.recurring.interval}x{self.recurring.interval_count}-{self.recurring.usage_type}"
        )
        amount = str(self.unit_amount) if self.unit_amount is not None else f"d{self.unit_amount_decimal}"
        tax = f"-tax{self.tax_behavior}" if self.tax_behavior is not None else ""  # keys made before stay
        return f"{self.product_sf_id}-{self.currency}-{amount}-{rec}{tax}"

    def matches_stripe_price(self, price: Mapping[str, Any]) -> bool:
        """Whether an existing Stripe Price object bills exactly this (the pipeline checks a
        PricebookEntry's linked price with this before reusing it)."""
        if not price.get("active", True) or str(price.get("currency", "")).lower() != self.currency:
            return False
        if (price.get("tax_behavior") or "unspecified") != (self.tax_behavior or "unspecified"):
            return False
        if self.unit_amount is not None:
            if price.get("unit_amount") != self.unit_amount:
                return False
        else:
            theirs = price.get("unit_amount_decimal")
            if theirs is None or to_decimal(str(theirs)) != to_decimal(self.unit_amount_decimal or "0"):
                return False
        recurring = price.get("recurring")
        if self.recurring is None:
            return not recurring
        if not recurring:
            return False
        return (
            recurring.get("interval") == self.recurring.interval
            and int(recurring.get("interval_count") or 1) == self.recurring.interval_count
            and (recurring.get("usage_type") or "licensed") == self.recurring.usage_type
        )


@dataclass(frozen=True)
class ProductSpec:
    sf_id: str
    name: str
    description: str | None
    stripe_id: str | None  # Product2.Stripe_Product_ID__c when already synced

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"name": self.name, "metadata": {"salesforce_product_id": self.sf_id}}
        if self.description:
            params["description"] = self.description
        return params


@dataclass(frozen=True)
class LinePrice:
    """The price one OrderItem bills with.

    `existing_price_id`: a Stripe price already linked (the OrderItem's own from an earlier run,
    else the PricebookEntry's when `write_back_object == "PricebookEntry"`); the pipeline confirms
    it with `spec.matches_stripe_price` before reuse and otherwise creates a price for the line.
    `write_back_object/_id`: where a newly created price's id is written.
    """

    order_item_id: str
    spec: PriceSpec
    existing_price_id: str | None
    write_back_object: Literal["PricebookEntry", "OrderItem"]
    write_back_id: str


@dataclass(frozen=True)
class ItemSpec:
    order_item_id: str
    quantity: int | None  # None for metered prices (Stripe rejects a quantity there)
    coupon: CouponSpec | None = None  # the line's discount (discounts mode coupons)

    def params(self, price_id: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "price": price_id,
            "metadata": {"salesforce_order_item_id": self.order_item_id},
        }
        if self.quantity is not None:
            item["quantity"] = self.quantity
        if self.coupon is not None:
            item["discounts"] = self.coupon.discounts()
        return item


@dataclass(frozen=True)
class Collection:
    method: Literal["send_invoice", "charge_automatically"]
    days_until_due: int | None
    default_payment_method: str | None


def _items(items: tuple[ItemSpec, ...], price_ids: Mapping[str, str]) -> list[dict[str, Any]]:
    return [item.params(price_ids[item.order_item_id]) for item in items]


@dataclass(frozen=True)
class SubscriptionSpec:
    """POST /v1/subscriptions for an Order starting today or in the past."""

    items: tuple[ItemSpec, ...]
    invoice_items: tuple[ItemSpec, ...]
    collection: Collection
    backdate_start_date: int | None
    billing_cycle_anchor: int | None
    proration_behavior: Literal["create_prorations", "none"] | None
    cancel_at: int | None  # None = evergreen
    metadata: dict[str, str]
    trial_end: int | None = None  # the mapped trial end, when still ahead: billing starts then
    discount: CouponSpec | None = None  # the Order-wide discount (discounts mode coupons)
    automatic_tax: bool = False  # Stripe Tax (OrderRulesConfig.automatic_tax)

    def params(self, customer_id: str, price_ids: Mapping[str, str]) -> dict[str, Any]:
        """`price_ids` maps OrderItem id -> Stripe price id."""
        params: dict[str, Any] = {"customer": customer_id, "items": _items(self.items, price_ids)}
        if self.invoice_items:
            params["add_invoice_items"] = _items(self.invoice_items, price_ids)
        params["collection_method"] = self.collection.method
        if self.collection.method == "send_invoice":
            params["days_until_due"] = self.collection.days_until_due
        else:
            if self.collection.default_payment_method:
                params["default_payment_method"] = self.collection.default_payment_method
            params["off_session"] = True
        if self.backdate_start_date is not None:
            params["backdate_start_date"] = self.backdate_start_date
        if self.billing_cycle_anchor is not None:
            params["billing_cycle_anchor"] = self.billing_cycle_anchor
        if self.proration_behavior is not None:
            params["proration_behavior"] = self.proration_behavior
        if self.cancel_at is not None:
            params["cancel_at"] = self.cancel_at
        if self.trial_end is not None:
            params["trial_end"] = self.trial_end
        if self.discount is not None:
            params["discounts"] = self.discount.discounts()
        if self.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        params["metadata"] = dict(self.metadata)
        return params

    def backdating(self) -> str:
        """What a backdated subscription's first invoice bills, in words ('' when not backdated)."""
        if self.backdate_start_date is None:
            return ""
        start = _day(self.backdate_start_date)
        anchor = _day(self.billing_cycle_anchor) if self.billing_cycle_anchor else None
        if self.proration_behavior == "none":
            return f"backdated to {start}; elapsed periods not billed (billing starts {anchor or 'now'})"
        until = f" to {anchor}" if anchor else ""
        return f"backdated to {start}; the first invoice bills every period from {start}{until}"


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


@dataclass(frozen=True)
class ScheduleSpec:
    """POST /v1/subscription_schedules for an Order starting in the future (a Subscription cannot)."""

    items: tuple[ItemSpec, ...]
    invoice_items: tuple[ItemSpec, ...]
    collection: Collection
    start_date: int
    end_date: int | None  # None = evergreen
    metadata: dict[str, str]
    trial_end: int | None = None  # the first phase trials until then
    discount: CouponSpec | None = None  # the Order-wide discount, on the phase
    automatic_tax: bool = False  # Stripe Tax on the phase (OrderRulesConfig.automatic_tax)
    # MDQ segments (order_rules.segments): the phases after the first, each (start, items). The first
    # phase (`items`, the one-time `invoice_items`, the trial) ends where the first of these starts.
    later_phases: tuple[tuple[int, tuple[ItemSpec, ...]], ...] = ()

    @property
    def end_behavior(self) -> Literal["cancel", "release"]:
        return "release" if self.end_date is None else "cancel"

    def params(self, customer_id: str, price_ids: Mapping[str, str]) -> dict[str, Any]:
        ends = [start for start, _ in self.later_phases] + [self.end_date]
        phases = [self._phase(self.items, ends[0], price_ids, first=True)]
        phases += [
            self._phase(items, ends[i + 1], price_ids, first=False)
            for i, (_, items) in enumerate(self.later_phases)
        ]
        return {
            "customer": customer_id,
            "start_date": self.start_date,
            "end_behavior": self.end_behavior,
            "phases": phases,
            "metadata": dict(self.metadata),
        }

    def _phase(
        self, items: tuple[ItemSpec, ...], end: int | None, price_ids: Mapping[str, str], *, first: bool
    ) -> dict[str, Any]:
        phase: dict[str, Any] = {"items": _items(items, price_ids)}
        if self.invoice_items and first:
            phase["add_invoice_items"] = _items(self.invoice_items, price_ids)
        if end is not None:
            phase["end_date"] = end
        if self.trial_end is not None and first:
            phase["trial_end"] = self.trial_end
        phase["collection_method"] = self.collection.method
        if self.collection.method == "send_invoice":
            phase["invoice_settings"] = {"days_until_due": self.collection.days_until_due}
        elif self.collection.default_payment_method:
            phase["default_payment_method"] = self.collection.default_payment_method
        if self.discount is not None:
            phase["discounts"] = self.discount.discounts()
        if self.automatic_tax:
            phase["automatic_tax"] = {"enabled": True}
        # Phase metadata is what reaches the subscription the schedule creates.
        phase["metadata"] = dict(self.metadata)
        return phase


@dataclass(frozen=True)
class InvoiceSpec:
    """An Order whose lines are all one-time: one Stripe invoice (POST /v1/invoices), an invoice
    item per line on it (POST /v1/invoiceitems), then finalized (POST /v1/invoices/{id}/finalize)
    unless the mapping leaves it a draft."""

    items: tuple[ItemSpec, ...]
    collection: Collection
    finalize: bool
    metadata: dict[str, str]
    automatic_tax: bool = False  # Stripe Tax on the invoice (OrderRulesConfig.automatic_tax)

    def params(self, customer_id: str) -> dict[str, Any]:
        """The draft: never advanced by Stripe on its own (a half-built invoice must not be
        finalized an hour later); only the Order's items, never the customer's pending ones."""
        params: dict[str, Any] = {
            "customer": customer_id,
            "auto_advance": False,
            "pending_invoice_items_behavior": "exclude",
            "collection_method": self.collection.method,
        }
        if self.collection.method == "send_invoice":
            params["days_until_due"] = self.collection.days_until_due
        elif self.collection.default_payment_method:
            params["default_payment_method"] = self.collection.default_payment_method
        if self.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        params["metadata"] = dict(self.metadata)
        return params

    def item_params(self, item: ItemSpec, invoice_id: str, customer_id: str, price_id: str) -> dict[str, Any]:
        """One line's invoice item on the draft, carrying its OrderItem id (how a rerun finds it)."""
        params: dict[str, Any] = {
            "customer": customer_id,
            "invoice": invoice_id,
            "pricing": {"price": price_id},
            "metadata": {
                "salesforce_order_item_id": item.order_item_id,
                "salesforce_order_id": self.metadata.get("salesforce_order_id", ""),
            },
        }
        if item.quantity is not None:
            params["quantity"] = item.quantity
        return params


@dataclass(frozen=True)
class OrderPlan:
    order_id: str
    order_number: str | None
    account_id: str | None
    customer_id: str | None  # Account.Stripe_Customer_ID__c if already synced
    currency: str  # lower-case
    products: tuple[ProductSpec, ...]
    prices: tuple[LinePrice, ...]
    subscription: SubscriptionSpec | ScheduleSpec | InvoiceSpec
    fingerprint: str

    @property
    def is_schedule(self) -> bool:
        return isinstance(self.subscription, ScheduleSpec)

    @property
    def invoice(self) -> InvoiceSpec | None:
        """The one-time invoice this Order becomes instead of a subscription, if it does."""
        return self.subscription if isinstance(self.subscription, InvoiceSpec) else None

    def price_for(self, order_item_id: str) -> LinePrice:
        return next(p for p in self.prices if p.order_item_id == order_item_id)

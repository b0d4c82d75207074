"""Pure planning core: one activated Salesforce Order (with its OrderItems) -> the Stripe objects it
needs, or a refusal listing *every* reason it cannot be billed correctly.

No I/O and no imports from the rest of the connector: the pipeline fetches the Order, calls
`plan_order`, and either writes the refusal to Salesforce or hands the plan to the sink.

Decisions (see also the report in the Orders issue):
- Salesforce `EndDate` is inclusive (an order 2026-01-01..2026-12-31 covers all of Dec 31), so the
  Stripe end is midnight UTC of EndDate + 1 day: exactly one year, no proration.
- Dates are calendar dates; Stripe timestamps use midnight UTC of that date.
- Past start: `backdate_start_date` = midnight UTC of EffectiveDate and `billing_cycle_anchor` = the
  next period boundary counted from EffectiveDate, so invoices keep the Order's calendar and the
  elapsed time is billed (config `bill_backdated_period=False` -> `proration_behavior: none`).
- Future start: a Subscription Schedule with one phase. Termed -> phase `end_date` = the Stripe
  end and `end_behavior: cancel`. Evergreen -> no `end_date` (Stripe makes the last phase one
  billing period long) and `end_behavior: release`, which leaves the subscription running with
  the same items and no end.
"""

from __future__ import annotations

import calendar
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal

from connector.mapping.payment_terms import PaymentTermError, parse_payment_term
from connector.sync.money import MoneyError, normalize_currency, to_decimal, to_minor_units

# --------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class OrderRulesConfig:
    """Options a mapping can set; `today` is injected so planning is deterministic."""

    today: date
    collection_method: Literal["send_invoice", "charge_automatically"] = "send_invoice"
    days_until_due: int = 30  # when the Order has no payment term
    unit_price_field: str = "UnitPrice"  # OrderItem field holding the price per billing period
    quantity_field: str = "Quantity"
    payment_term_field: str = "Payment_Term__c"
    # Account field with a saved Stripe PaymentMethod id; when filled -> charge_automatically.
    payment_method_field: str | None = "Stripe_Payment_Method_ID__c"
    bill_backdated_period: bool = True
    refused_order_types: frozenset[str] = frozenset({"Amendment"})
    require_line_dates_match: bool = True
    extra_currencies: frozenset[str] = frozenset()
    max_subscription_items: int = 20  # Stripe: "a list of up to 20 subscription items"
    max_invoice_items: int = 20  # Stripe: add_invoice_items "You may pass up to 20 items"


# --------------------------------------------------------------------------------------------------
# Refusals


@dataclass(frozen=True)
class Reason:
    """One thing wrong with the Order, phrased for the admin who has to fix it."""

    code: str
    object: str  # Salesforce object: Order, OrderItem, Account, Product2, PricebookEntry
    record_id: str | None
    record_number: str | None
    field: str | None
    value: Any
    problem: str
    fix: str

    def message(self) -> str:
        who = self.object + (f" {self.record_id}" if self.record_id else "")
        if self.record_number:
            who += f" ({self.record_number})"
        if self.field:
            shown = "empty" if self.value is None or self.value == "" else str(self.value)
            return f"{who} {self.field} is {shown}; {self.problem}. Fix: {self.fix}."
        return f"{who}: {self.problem}. Fix: {self.fix}."


@dataclass(frozen=True)
class OrderRefusal:
    order_id: str | None
    order_number: str | None
    reasons: tuple[Reason, ...]

    def message(self) -> str:
        """All reasons, one per line (what goes to Stripe_Sync_Message__c and the sync log)."""
        return "\n".join(r.message() for r in self.reasons)

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]


# --------------------------------------------------------------------------------------------------
# Plan objects


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

    def params(self, product_stripe_id: str) -> dict[str, Any]:
        """Create params for POST /v1/prices."""
        params: dict[str, Any] = {"product": product_stripe_id, "currency": self.currency}
        if self.unit_amount is not None:
            params["unit_amount"] = self.unit_amount
        else:
            params["unit_amount_decimal"] = self.unit_amount_decimal
        if self.recurring is not None:
            params["recurring"] = self.recurring.params()
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
        return f"{self.product_sf_id}-{self.currency}-{amount}-{rec}"

    def matches_stripe_price(self, price: Mapping[str, Any]) -> bool:
        """Whether an existing Stripe Price object bills exactly this (the pipeline checks a
        PricebookEntry's linked price with this before reusing it)."""
        if not price.get("active", True) or str(price.get("currency", "")).lower() != self.currency:
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

    def params(self, price_id: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "price": price_id,
            "metadata": {"salesforce_order_item_id": self.order_item_id},
        }
        if self.quantity is not None:
            item["quantity"] = self.quantity
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
        params["metadata"] = dict(self.metadata)
        return params


@dataclass(frozen=True)
class ScheduleSpec:
    """POST /v1/subscription_schedules for an Order starting in the future (a Subscription cannot)."""

    items: tuple[ItemSpec, ...]
    invoice_items: tuple[ItemSpec, ...]
    collection: Collection
    start_date: int
    end_date: int | None  # None = evergreen
    metadata: dict[str, str]

    @property
    def end_behavior(self) -> Literal["cancel", "release"]:
        return "release" if self.end_date is None else "cancel"

    def params(self, customer_id: str, price_ids: Mapping[str, str]) -> dict[str, Any]:
        phase: dict[str, Any] = {"items": _items(self.items, price_ids)}
        if self.invoice_items:
            phase["add_invoice_items"] = _items(self.invoice_items, price_ids)
        if self.end_date is not None:
            phase["end_date"] = self.end_date
        phase["collection_method"] = self.collection.method
        if self.collection.method == "send_invoice":
            phase["invoice_settings"] = {"days_until_due": self.collection.days_until_due}
        elif self.collection.default_payment_method:
            phase["default_payment_method"] = self.collection.default_payment_method
        # Phase metadata is what reaches the subscription the schedule creates.
        phase["metadata"] = dict(self.metadata)
        return {
            "customer": customer_id,
            "start_date": self.start_date,
            "end_behavior": self.end_behavior,
            "phases": [phase],
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class OrderPlan:
    order_id: str
    order_number: str | None
    account_id: str | None
    customer_id: str | None  # Account.Stripe_Customer_ID__c if already synced
    currency: str  # lower-case
    products: tuple[ProductSpec, ...]
    prices: tuple[LinePrice, ...]
    subscription: SubscriptionSpec | ScheduleSpec
    fingerprint: str

    @property
    def is_schedule(self) -> bool:
        return isinstance(self.subscription, ScheduleSpec)

    def price_for(self, order_item_id: str) -> LinePrice:
        return next(p for p in self.prices if p.order_item_id == order_item_id)


# --------------------------------------------------------------------------------------------------
# Rules

FREQUENCIES: dict[str, tuple[Literal["month", "year"], int]] = {
    "Monthly": ("month", 1),
    "Quarterly": ("month", 3),
    "Semiannual": ("month", 6),
    "Annual": ("year", 1),
}
UNSUPPORTED_FREQUENCIES = {
    "Invoice Plan": "Stripe cannot bill a CPQ invoice plan (irregular invoice dates)",
    "Usage": "a 'Usage' billing frequency has no billing interval for Stripe",
}


def midnight_utc(day: date) -> int:
    return calendar.timegm(day.timetuple())


def add_months(day: date, months: int) -> date:
    """Calendar month arithmetic that clamps to the month's last day (Jan 31 + 1 -> Feb 28),
    as Stripe does for monthly anchors."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _records(order: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    children = order.get("OrderItems")
    if not children:
        return []
    if isinstance(children, Mapping):
        return list(children.get("records") or [])
    return list(children)


def _parse_date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


@dataclass
class _Line:
    record: Mapping[str, Any]
    id: str
    number: str | None
    kind: Literal["recurring", "one_time"] = "recurring"
    recurrence: Recurrence | None = None
    quantity: int | None = None
    unit: tuple[int | None, str | None] | None = None
    evergreen: bool = False
    term: Decimal | None = None


@dataclass
class _Collector:
    order_id: str | None
    order_number: str | None
    reasons: list[Reason] = field(default_factory=list)

    def order(self, code: str, fld: str | None, value: Any, problem: str, fix: str) -> None:
        self.reasons.append(Reason(code, "Order", self.order_id, self.order_number, fld, value, problem, fix))

    def line(self, line: _Line, code: str, fld: str | None, value: Any, problem: str, fix: str) -> None:
        self.reasons.append(Reason(code, "OrderItem", line.id, line.number, fld, value, problem, fix))

    def add(self, reason: Reason) -> None:
        self.reasons.append(reason)


def plan_order(order: Mapping[str, Any], config: OrderRulesConfig) -> OrderPlan | OrderRefusal:
    """Validate the whole Order (collecting every reason) and, only if nothing is wrong, plan it."""
    order_id = order.get("Id")
    out = _Collector(order_id, order.get("OrderNumber"))
    account = order.get("Account") or {}

    if order.get("Type") in config.refused_order_types:
        out.order(
            "order_type",
            "Type",
            order.get("Type"),
            "the connector does not apply amendments yet; a second subscription would bill twice",
            "change the existing Stripe subscription by hand, or leave this Order out of the sync",
        )

    currency: str | None = None
    try:
        currency = normalize_currency(order.get("CurrencyIsoCode"), config.extra_currencies)
    except MoneyError as err:
        out.order(err.code, "CurrencyIsoCode", order.get("CurrencyIsoCode"), err.problem, err.fix)

    start = _parse_date(order.get("EffectiveDate"))
    if start is None:
        out.order(
            "start_date",
            "EffectiveDate",
            order.get("EffectiveDate"),
            "the Order has no valid start date",
            "set the Order Start Date",
        )
    end_raw = order.get("EndDate")
    end = _parse_date(end_raw)
    if end_raw not in (None, "") and end is None:
        out.order("end_date", "EndDate", end_raw, "not a valid date", "set a valid Order End Date")

    collection = _collection(order, account, config, out)

    records = _records(order)
    if not records:
        out.order(
            "no_lines",
            None,
            None,
            "the Order has no lines (OrderItems), so there is nothing to bill",
            "add products to the Order before activating it",
        )

    lines = [_check_line(rec, order, currency, start, end, config, out) for rec in records]
    recurring = [ln for ln in lines if ln.kind == "recurring"]
    one_time = [ln for ln in lines if ln.kind == "one_time"]

    if records and not recurring:
        out.order(
            "no_recurring_lines",
            None,
            None,
            "the Order has only one-time lines; a Stripe subscription needs at least one recurring line",
            "add a recurring product, or bill the one-time charges with a Stripe invoice",
        )
    _check_intervals(recurring, out)
    if len(recurring) > config.max_subscription_items:
        out.order(
            "too_many_items",
            None,
            None,
            f"the Order has {len(recurring)} recurring lines; a Stripe subscription takes at most "
            f"{config.max_subscription_items} items",
            "split the Order, or combine lines of the same product",
        )
    if len(one_time) > config.max_invoice_items:
        out.order(
            "too_many_invoice_items",
            None,
            None,
            f"the Order has {len(one_time)} one-time lines; Stripe adds at most "
            f"{config.max_invoice_items} invoice items to a new subscription",
            "split the Order, or combine one-time lines",
        )

    end_exclusive = _end(order, start, end, recurring, config, out)

    if out.reasons:
        return OrderRefusal(order_id, order.get("OrderNumber"), tuple(out.reasons))

    assert currency is not None and start is not None and collection is not None
    products = _products(lines)
    prices = _prices(lines, currency)
    metadata = {
        "salesforce_order_id": str(order_id),
        "salesforce_account_id": str(order.get("AccountId") or ""),
        "salesforce_order_number": str(order.get("OrderNumber") or ""),
    }
    items = tuple(ItemSpec(ln.id, ln.quantity) for ln in recurring)
    invoice_items = tuple(ItemSpec(ln.id, ln.quantity) for ln in one_time)
    shape = _shape(start, end_exclusive, recurring, items, invoice_items, collection, metadata, config)
    return OrderPlan(
        order_id=str(order_id),
        order_number=order.get("OrderNumber"),
        account_id=order.get("AccountId"),
        customer_id=account.get("Stripe_Customer_ID__c") or None,
        currency=currency.lower(),
        products=products,
        prices=prices,
        subscription=shape,
        fingerprint=order_fingerprint(order, config),
    )


def _collection(
    order: Mapping[str, Any], account: Mapping[str, Any], config: OrderRulesConfig, out: _Collector
) -> Collection | None:
    payment_method = account.get(config.payment_method_field) if config.payment_method_field else None
    if payment_method:
        return Collection("charge_automatically", None, str(payment_method))
    if config.collection_method == "charge_automatically":
        return Collection("charge_automatically", None, None)
    term = order.get(config.payment_term_field)
    try:
        days = parse_payment_term(term)  # the mapping's `payment_term` transform reads it the same way
    except PaymentTermError as exc:
        out.order("payment_term", config.payment_term_field, term, exc.problem, exc.fix)
        return None
    return Collection("send_invoice", config.days_until_due if days is None else days, None)


def _check_line(
    rec: Mapping[str, Any],
    order: Mapping[str, Any],
    order_currency: str | None,
    start: date | None,
    end: date | None,
    config: OrderRulesConfig,
    out: _Collector,
) -> _Line:
    line = _Line(rec, str(rec.get("Id")), rec.get("OrderItemNumber"))
    product = rec.get("Product2")
    if not rec.get("Product2Id"):
        out.line(
            line,
            "missing_product",
            "Product2Id",
            None,
            "the line has no product, so there is nothing to bill in Stripe",
            "pick a product for the line (or delete the line)",
        )
    elif not product or not product.get("Name"):
        out.line(
            line,
            "unreadable_product",
            "Product2Id",
            rec.get("Product2Id"),
            "the product could not be read (deleted, or not visible to the integration user)",
            "restore the product or give the integration user read access to it",
        )

    charge = rec.get("SBQQ__ChargeType__c")
    frequency = rec.get("SBQQ__BillingFrequency__c")
    if charge == "One-Time" or (not charge and not frequency):
        line.kind = "one_time"
    else:
        line.kind = "recurring"
        metered = charge == "Usage" or rec.get("SBQQ__BillingType__c") == "Arrears"
        if not frequency:
            out.line(
                line,
                "missing_frequency",
                "SBQQ__BillingFrequency__c",
                None,
                "a recurring line needs a billing frequency",
                "set Monthly, Quarterly, Semiannual or Annual",
            )
        elif frequency in UNSUPPORTED_FREQUENCIES:
            out.line(
                line,
                "unsupported_frequency",
                "SBQQ__BillingFrequency__c",
                frequency,
                UNSUPPORTED_FREQUENCIES[frequency],
                "use Monthly, Quarterly, Semiannual or Annual",
            )
        elif frequency not in FREQUENCIES:
            out.line(
                line,
                "unknown_frequency",
                "SBQQ__BillingFrequency__c",
                frequency,
                "the connector does not know this billing frequency",
                "use Monthly, Quarterly, Semiannual or Annual",
            )
        else:
            interval, count = FREQUENCIES[frequency]
            line.recurrence = Recurrence(interval, count, "metered" if metered else "licensed")
        line.evergreen = rec.get("SBQQ__SubscriptionType__c") == "Evergreen"
        term = rec.get("SBQQ__SubscriptionTerm__c")
        if term not in (None, ""):
            try:
                line.term = to_decimal(term)
            except MoneyError:
                line.term = None
        if config.require_line_dates_match:
            _check_line_dates(line, rec, start, end, out)

    metered = line.recurrence is not None and line.recurrence.usage_type == "metered"
    if not metered:
        line.quantity = _check_quantity(line, rec.get(config.quantity_field), config.quantity_field, out)

    pbe = rec.get("PricebookEntry") or {}
    pbe_currency_raw = pbe.get("CurrencyIsoCode")
    if order_currency and pbe.get("CurrencyIsoCode"):
        try:
            line_currency = normalize_currency(pbe.get("CurrencyIsoCode"), config.extra_currencies)
        except MoneyError as err:
            out.line(line, err.code, "PricebookEntry.CurrencyIsoCode", pbe_currency_raw, err.problem, err.fix)
            line_currency = None
        if line_currency and line_currency != order_currency:
            out.line(
                line,
                "mixed_currencies",
                "PricebookEntry.CurrencyIsoCode",
                line_currency,
                f"the Order is in {order_currency}; one Stripe subscription bills in one currency",
                f"use a {order_currency} price book entry for this line",
            )

    price_raw = rec.get(config.unit_price_field)
    if price_raw is None or price_raw == "":
        out.line(
            line,
            "missing_price",
            config.unit_price_field,
            None,
            "the line has no price",
            f"fill {config.unit_price_field}",
        )
    elif order_currency:
        try:
            line.unit = to_minor_units(price_raw, order_currency, config.extra_currencies)
        except MoneyError as err:
            out.line(line, err.code, config.unit_price_field, price_raw, err.problem, err.fix)
    return line


def _check_quantity(line: _Line, raw: Any, fld: str, out: _Collector) -> int | None:
    try:
        value = to_decimal(raw) if raw is not None else None
    except MoneyError:
        value = None
    if value is None:
        out.line(line, "missing_quantity", fld, raw, "the line has no valid quantity", "set a whole quantity")
        return None
    if value != value.to_integral_value():
        out.line(
            line,
            "decimal_quantity",
            fld,
            raw,
            "Stripe bills whole quantities",
            "split the line or use a whole number",
        )
        return None
    if value <= 0:
        out.line(
            line,
            "non_positive_quantity",
            fld,
            raw,
            "Stripe needs a quantity of at least 1",
            "set a positive quantity, or remove the line",
        )
        return None
    return int(value)


def _check_line_dates(
    line: _Line, rec: Mapping[str, Any], start: date | None, end: date | None, out: _Collector
) -> None:
    """Every item of one Stripe subscription shares its period; a line with its own dates would be
    billed for the wrong time."""
    service = _parse_date(rec.get("ServiceDate"))
    if service and start and service != start:
        out.line(
            line,
            "line_start_differs",
            "ServiceDate",
            service.isoformat(),
            f"the line starts on a different day than the Order ({start.isoformat()}); "
            "one subscription has one start date",
            "align the line's Start Date with the Order, or put the line on its own Order",
        )
    line_end = _parse_date(rec.get("EndDate"))
    if line_end and end and line_end != end:
        out.line(
            line,
            "line_end_differs",
            "EndDate",
            line_end.isoformat(),
            f"the line ends on a different day than the Order ({end.isoformat()}); "
            "one subscription has one end date",
            "align the line's End Date with the Order, or put the line on its own Order",
        )


def _check_intervals(recurring: list[_Line], out: _Collector) -> None:
    seen: dict[tuple[str, int], list[_Line]] = {}
    for ln in recurring:
        if ln.recurrence is not None:
            seen.setdefault((ln.recurrence.interval, ln.recurrence.interval_count), []).append(ln)
    if len(seen) > 1:
        names = {("month", 1): "Monthly", ("month", 3): "Quarterly", ("month", 6): "Semiannual"}
        names[("year", 1)] = "Annual"
        detail = "; ".join(
            f"{names.get(k, k)}: " + ", ".join(ln.number or ln.id for ln in group)
            for k, group in seen.items()
        )
        out.order(
            "mixed_intervals",
            "SBQQ__BillingFrequency__c",
            "mixed",
            f"recurring lines have different billing frequencies ({detail}); "
            "one Stripe subscription bills on one interval",
            "give all recurring lines the same billing frequency, or split the Order",
        )


def _end(
    order: Mapping[str, Any],
    start: date | None,
    end: date | None,
    recurring: list[_Line],
    config: OrderRulesConfig,
    out: _Collector,
) -> date | None:
    """Exclusive end date of the subscription (EndDate + 1 day), or None for evergreen."""
    if not recurring or start is None:
        return None
    evergreen = [ln for ln in recurring if ln.evergreen]
    if evergreen and len(evergreen) != len(recurring):
        out.order(
            "mixed_evergreen",
            "SBQQ__SubscriptionType__c",
            None,
            "some recurring lines are Evergreen and others are not; one subscription either ends or doesn't",
            "make all recurring lines Evergreen, or none, or split the Order",
        )
        return None
    if evergreen:
        if end is not None:
            out.order(
                "evergreen_with_end",
                "EndDate",
                end.isoformat(),
                "all recurring lines are Evergreen but the Order has an end date",
                "clear the Order End Date, or make the lines Renewable",
            )
        return None
    if end is not None:
        exclusive = end + timedelta(days=1)
    else:
        terms = {ln.term for ln in recurring if ln.term is not None}
        if len(terms) != 1 or any(ln.term is None for ln in recurring):
            out.order(
                "missing_end_date",
                "EndDate",
                None,
                "the Order is termed (not Evergreen) but has no end date and no common subscription term",
                "set the Order End Date, or mark the lines Evergreen",
            )
            return None
        term = terms.pop()
        if term != term.to_integral_value() or term <= 0:
            out.order(
                "missing_end_date",
                "EndDate",
                None,
                f"the Order has no end date and its subscription term ({term}) is not a whole number"
                " of months",
                "set the Order End Date",
            )
            return None
        exclusive = add_months(start, int(term))
    if exclusive <= start:
        out.order(
            "end_before_start",
            "EndDate",
            (exclusive - timedelta(days=1)).isoformat(),
            f"the Order ends before it starts ({start.isoformat()})",
            "correct the Order Start or End Date",
        )
        return None
    if exclusive <= config.today:
        out.order(
            "ended",
            "EndDate",
            (exclusive - timedelta(days=1)).isoformat(),
            "the Order ended before it was synced; Stripe cannot create a subscription that is already over",
            "correct the End Date, or bill the past period with a Stripe invoice",
        )
        return None
    return exclusive


def _products(lines: list[_Line]) -> tuple[ProductSpec, ...]:
    products: dict[str, ProductSpec] = {}
    for ln in lines:
        product = ln.record.get("Product2") or {}
        sf_id = str(ln.record.get("Product2Id"))
        if sf_id not in products:
            products[sf_id] = ProductSpec(
                sf_id=sf_id,
                name=str(product.get("Name")),
                description=product.get("Description") or None,
                stripe_id=product.get("Stripe_Product_ID__c") or None,
            )
    return tuple(products.values())


def _prices(lines: list[_Line], currency: str) -> tuple[LinePrice, ...]:
    """Reuse the PricebookEntry's price when the line bills exactly the entry's price, else a price
    for the line. Two lines of one PricebookEntry needing different specs (e.g. Monthly and Annual)
    cannot share the entry's single price id: the first claims it, the others get line prices."""
    claimed: dict[str, PriceSpec] = {}
    prices = []
    for ln in lines:
        assert ln.unit is not None
        spec = PriceSpec(str(ln.record.get("Product2Id")), currency.lower(), *ln.unit, ln.recurrence)
        pbe = ln.record.get("PricebookEntry") or {}
        pbe_id = ln.record.get("PricebookEntryId")
        pbe_spec = None
        if pbe_id and pbe.get("UnitPrice") not in (None, ""):
            try:
                pbe_unit = to_minor_units(pbe["UnitPrice"], pbe.get("CurrencyIsoCode") or currency)
                pbe_currency = str(pbe.get("CurrencyIsoCode") or currency).lower()
                pbe_spec = PriceSpec(spec.product_sf_id, pbe_currency, *pbe_unit, ln.recurrence)
            except MoneyError:
                pbe_spec = None
        own = ln.record.get("Stripe_Price_ID__c") or None
        if pbe_spec == spec and claimed.setdefault(str(pbe_id), spec) == spec:
            existing = own or pbe.get("Stripe_Price_ID__c") or None
            prices.append(LinePrice(ln.id, spec, existing, "PricebookEntry", str(pbe_id)))
        else:
            prices.append(LinePrice(ln.id, spec, own, "OrderItem", ln.id))
    return tuple(prices)


def _shape(
    start: date,
    end_exclusive: date | None,
    recurring: list[_Line],
    items: tuple[ItemSpec, ...],
    invoice_items: tuple[ItemSpec, ...],
    collection: Collection,
    metadata: dict[str, str],
    config: OrderRulesConfig,
) -> SubscriptionSpec | ScheduleSpec:
    end_ts = midnight_utc(end_exclusive) if end_exclusive else None
    if start > config.today:
        return ScheduleSpec(items, invoice_items, collection, midnight_utc(start), end_ts, metadata)
    backdate = anchor = proration = None
    if start < config.today:
        backdate = midnight_utc(start)
        recurrence = recurring[0].recurrence
        assert recurrence is not None
        months = recurrence.interval_count * (12 if recurrence.interval == "year" else 1)
        k = 1
        while add_months(start, k * months) <= config.today:
            k += 1
        boundary = add_months(start, k * months)
        if end_exclusive is None or boundary < end_exclusive:
            anchor = midnight_utc(boundary)
        proration = "create_prorations" if config.bill_backdated_period else "none"
    return SubscriptionSpec(items, invoice_items, collection, backdate, anchor, proration, end_ts, metadata)


# --------------------------------------------------------------------------------------------------
# Change detection

# AccountId is left out on purpose: a merge in Salesforce re-parents the loser's Orders to the
# survivor, and their subscriptions rightly stay with the loser's Customer; that is not an edit of
# the Order's billing content. (An activated Order's Account cannot be edited otherwise.)
_ORDER_FIELDS = ("CurrencyIsoCode", "EffectiveDate", "EndDate", "Type", "Payment_Term__c")
_LINE_FIELDS = (
    "Product2Id",
    "PricebookEntryId",
    "ServiceDate",
    "EndDate",
    "SBQQ__ChargeType__c",
    "SBQQ__BillingType__c",
    "SBQQ__BillingFrequency__c",
    "SBQQ__SubscriptionTerm__c",
    "SBQQ__SubscriptionType__c",
)


def _canonical(value: Any) -> Any:
    """Numbers compare by value (10 == 10.0 == "10.00"); everything else as text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return format(to_decimal(value).normalize(), "f")
    return str(value)


def order_fingerprint(order: Mapping[str, Any], config: OrderRulesConfig | None = None) -> str:
    """sha256 of the billing-relevant content (dates, currency, lines, quantities, prices), so an
    Order edited after it was synced is detected and reported instead of billed again. Fields the
    connector writes (Stripe ids, sync status) and Status are left out."""
    price_field = config.unit_price_field if config else "UnitPrice"
    quantity_field = config.quantity_field if config else "Quantity"
    term_field = config.payment_term_field if config else "Payment_Term__c"
    fields = tuple(f if f != "Payment_Term__c" else term_field for f in _ORDER_FIELDS)
    content = {
        "order": {f: _canonical(order.get(f)) for f in fields},
        "lines": sorted(
            (
                {
                    "Id": str(rec.get("Id")),
                    **{f: _canonical(rec.get(f)) for f in _LINE_FIELDS},
                    "quantity": _canonical(rec.get(quantity_field)),
                    "unit_price": _canonical(rec.get(price_field)),
                }
                for rec in _records(order)
            ),
            key=lambda line: line["Id"],
        ),
    }
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()

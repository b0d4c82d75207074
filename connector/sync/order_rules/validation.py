"""Every check of an Order and its lines, collecting all reasons instead of stopping at the first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from connector.mapping.payment_terms import PaymentTermError, parse_payment_term
from connector.sync.money import MoneyError, normalize_currency, to_decimal, to_minor_units
from connector.sync.order_rules.config import OrderRulesConfig
from connector.sync.order_rules.dates import parse_date
from connector.sync.order_rules.refusals import Reason
from connector.sync.order_rules.specs import Collection, Recurrence

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


@dataclass
class Line:
    record: Mapping[str, Any]
    id: str
    number: str | None
    kind: Literal["recurring", "one_time"] = "recurring"
    recurrence: Recurrence | None = None
    quantity: int | None = None
    unit: tuple[int | None, str | None] | None = None
    evergreen: bool = False
    term: Decimal | None = None
    coupon: Any = None  # the line's CouponSpec in coupons mode (order_rules.discounts), set by contracts


@dataclass
class Collector:
    order_id: str | None
    order_number: str | None
    reasons: list[Reason] = field(default_factory=list)

    def order(self, code: str, fld: str | None, value: Any, problem: str, fix: str) -> None:
        self.reasons.append(Reason(code, "Order", self.order_id, self.order_number, fld, value, problem, fix))

    def line(self, line: Line, code: str, fld: str | None, value: Any, problem: str, fix: str) -> None:
        self.reasons.append(Reason(code, "OrderItem", line.id, line.number, fld, value, problem, fix))

    def add(self, reason: Reason) -> None:
        self.reasons.append(reason)


def read_collection(
    order: Mapping[str, Any], account: Mapping[str, Any], config: OrderRulesConfig, out: Collector
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


def check_line(
    rec: Mapping[str, Any],
    order: Mapping[str, Any],
    order_currency: str | None,
    start: date | None,
    end: date | None,
    config: OrderRulesConfig,
    out: Collector,
    *,
    delta: bool = False,
) -> Line:
    """`delta`: an Amendment's line, whose quantity is a change (+5, -3, 0), not what is sold."""
    line = Line(rec, str(rec.get("Id")), rec.get("OrderItemNumber"))
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
        if term is not None and term != "":
            try:
                line.term = to_decimal(term)
            except MoneyError:
                line.term = None
        # An MDQ segment has its own dates, checked against its key's other segments (order_rules.segments).
        if config.require_line_dates_match and not rec.get("SBQQ__SegmentKey__c"):
            check_line_dates(line, rec, start, end, out)

    metered = line.recurrence is not None and line.recurrence.usage_type == "metered"
    if not metered:
        line.quantity = check_quantity(
            line, rec.get(config.quantity_field), config.quantity_field, out, delta=delta
        )

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


def check_quantity(line: Line, raw: Any, fld: str, out: Collector, *, delta: bool = False) -> int | None:
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
    if value <= 0 and not delta:
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


def check_line_dates(
    line: Line, rec: Mapping[str, Any], start: date | None, end: date | None, out: Collector
) -> None:
    """Every item of one Stripe subscription shares its period; a line with its own dates would be
    billed for the wrong time."""
    for fld, label, bound, verb, word in (
        ("ServiceDate", "Start Date", start, "starts", "start"),
        ("EndDate", "End Date", end, "ends", "end"),
    ):
        own = parse_date(rec.get(fld))
        if own and bound and own != bound:
            out.line(
                line,
                f"line_{word}_differs",
                fld,
                own.isoformat(),
                f"the line {verb} on a different day than the Order ({bound.isoformat()}); "
                f"one subscription has one {word} date",
                f"align the line's {label} with the Order, or put the line on its own Order",
            )


def check_intervals(recurring: list[Line], out: Collector) -> None:
    seen: dict[tuple[str, int], list[Line]] = {}
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

"""CPQ's own prorated figures of an Amendment's lines (`amendment_proration: cpq_amounts`). Pure.

CPQ prices an amendment line for the rest of the contract's term: its prorate multiplier is that
term divided by the default subscription term (the months one list price buys), and its net total
is the net price so prorated times the line's effective quantity, the change (+5, -3) on the line
it revises (Salesforce Help: "Subscription Prorate Precision", "Guidelines for the Effective
Quantity Field"; Trailhead "Learn About Date Fields and Proration": a blank default term counts as
12). The connector bills from these figures, never from Stripe's unit amounts (catch_up.cpq_stub
says how). Here each line's figures are read and checked, so a line whose figures are missing or
contradict its own dates or quantity refuses the Order before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.mapping.engine import read_path
from connector.sync.order_rules.config import CpqAmountFields
from connector.sync.order_rules.dates import add_months, parse_date
from connector.sync.order_rules.fields import order_lines
from connector.sync.order_rules.specs import LinePrice
from connector.sync.order_rules.validation import Collector, Line

CPQ_DEFAULT_TERM = Decimal(12)  # CPQ: "treats blank values in these fields as 12"
INCONSISTENT = "cpq_amount_inconsistent"
FIX = (
    "recalculate the amendment quote in CPQ and re-create the Order, or choose another "
    "amendment_proration in subscription.yaml"
)
REVISED_FIELD = "SBQQ__RevisedOrderProduct__c"


@dataclass(frozen=True)
class CpqLine:
    """One Amendment line as CPQ priced it."""

    price: LinePrice  # the line's own price (product, currency); its id keys the one-time item
    root_id: str  # the line first sold that it revises (itself when new)
    quantity_change: int
    net_total: Decimal  # major units: CPQ's amount for the change over the line's whole term
    term_months: Decimal  # that term in months: prorate multiplier x default subscription term
    start: date
    end: date | None  # exclusive; None: evergreen (the term is one pricing period)


def months_between(start: date, end: date) -> Decimal:
    """Calendar months from `start` to `end` (exclusive): whole months, then the days left as a
    share of the month they fall in (CPQ's month-and-day counting)."""
    if end <= start:
        return Decimal(0)
    whole = (end.year - start.year) * 12 + end.month - start.month
    while whole > 0 and add_months(start, whole) > end:
        whole -= 1
    lo, hi = add_months(start, whole), add_months(start, whole + 1)
    return Decimal(whole) + Decimal((end - lo).days) / Decimal((hi - lo).days)


def _number(rec: Mapping[str, Any], path: str) -> Decimal | None:
    value = read_path(rec, path)
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def cpq_lines(
    order: Mapping[str, Any],
    prices: Sequence[LinePrice],
    fields: CpqAmountFields,
    out: Collector,
    quantity_field: str = "Quantity",
) -> list[CpqLine]:
    """The figures of every recurring, licensed line of the Amendment `order` whose quantity
    changes; every missing or inconsistent figure is a reason in `out` (naming line and field)."""
    by_id = {p.order_item_id: p for p in prices}
    found: list[CpqLine] = []
    for rec in order_lines(order):
        line_id = str(rec.get("Id"))
        price = by_id.get(line_id)
        recurring = price.spec.recurring if price is not None else None
        if price is None or recurring is None or recurring.usage_type == "metered":
            continue  # one-time and usage lines: nothing to prorate
        quantity = _number(rec, quantity_field)
        if quantity is None or quantity == 0:
            continue
        line = Line(rec, line_id, rec.get("OrderItemNumber"))
        start = parse_date(rec.get("ServiceDate")) or parse_date(order.get("EffectiveDate"))
        last = parse_date(rec.get("EndDate")) or parse_date(order.get("EndDate"))
        end = last + timedelta(days=1) if last is not None else None
        total = _number(rec, fields.net_total)
        multiplier = _number(rec, fields.prorate_multiplier)
        pricing = _number(rec, fields.pricing_term)
        missing = "cpq_amount_missing"
        if total is None:
            _refuse(out, line, missing, fields.net_total, None, "there is no CPQ amount to bill")
        if multiplier is None or multiplier <= 0:
            why = "CPQ's amount cannot be prorated without its prorate multiplier (above 0)"
            _refuse(out, line, missing, fields.prorate_multiplier, multiplier, why)
        if pricing is not None and pricing <= 0:
            why = "a default subscription term is a positive number of months"
            _refuse(out, line, INCONSISTENT, fields.pricing_term, pricing, why)
        if total is None or multiplier is None or multiplier <= 0 or (pricing is not None and pricing <= 0):
            continue
        if total != 0 and (total > 0) != (quantity > 0):
            why = (
                f"CPQ's amount has the opposite sign of the line's quantity change ({quantity:+f}): an "
                "added quantity is charged, a removed one credited"
            )
            _refuse(out, line, INCONSISTENT, fields.net_total, total, why)
            continue
        term = multiplier * (pricing if pricing is not None else CPQ_DEFAULT_TERM)
        if start is not None and end is not None:
            dated = months_between(start, end)
            if abs(term - dated) >= 1:  # CPQ's precisions (monthly, daily) differ by under a month
                why = (
                    f"CPQ priced {term.normalize():f} months, and the line runs {dated:.2f} months "
                    f"({start.isoformat()} to {(end - timedelta(days=1)).isoformat()})"
                )
                _refuse(out, line, INCONSISTENT, fields.prorate_multiplier, multiplier, why)
                continue
        if start is None:
            continue  # the planner refuses a line without dates
        root = str(rec.get(REVISED_FIELD) or line_id)
        found.append(CpqLine(price, root, int(quantity), total, term, start, end))
    return found


def _refuse(out: Collector, line: Line, code: str, fld: str, value: Any, problem: str) -> None:
    out.line(line, code, fld, value, f"amendment_proration is cpq_amounts and {problem}", FIX)

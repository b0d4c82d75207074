"""CPQ discounts as Stripe coupons (the subscription mapping's `discounts: mode: coupons`).

Pure. A discounted line bills its list price (a Price reused like any other: a PricebookEntry's
list price is one Price across Orders) and carries a coupon on its subscription item; an Order-wide
percent becomes a coupon on the subscription (or the schedule's phase). A coupon is identified by
its content (percent or amount+currency, duration), so every line and Order with the same discount
shares one Stripe coupon, whose custom id is derived from that content (`CouponSpec.coupon_id`).

CPQ has no discount duration: it comes from a mapped number of months (empty: forever). A line's
amount off is CPQ's Additional Discount (Amount), per unit: the coupon takes it times the quantity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from connector.mapping.engine import read_path
from connector.sync.money import MoneyError, from_minor_units, to_decimal, to_minor_units

if TYPE_CHECKING:
    from connector.sync.order_rules.config import OrderRulesConfig
    from connector.sync.order_rules.validation import Collector, Line

COUPON_ID_PREFIX = "cpq2stripe"
COUPON_KEY = "cpq2stripe_coupon_key"  # metadata on the coupon: its content key


@dataclass(frozen=True)
class DiscountFields:
    """Where the discounts are read (the mapping's `discounts` sources; parent paths allowed)."""

    list_price: str = "PricebookEntry.UnitPrice"
    line_percent: str | None = None
    line_amount: str | None = None
    line_months: str | None = None
    order_percent: str | None = None
    order_months: str | None = None

    @property
    def line_paths(self) -> tuple[str, ...]:
        return tuple(p for p in (self.line_percent, self.line_amount, self.line_months) if p)

    @property
    def order_paths(self) -> tuple[str, ...]:
        return tuple(p for p in (self.order_percent, self.order_months) if p)


@dataclass(frozen=True)
class CouponSpec:
    """A Stripe coupon as a discount needs it. Equal discounts have equal specs (and one coupon)."""

    percent_off: str | None  # plain decimal text, "50" or "12.5"
    amount_off: int | None  # minor units of `currency`
    currency: str | None  # lower-case, with amount_off
    duration: Literal["forever", "once", "repeating"]
    duration_in_months: int | None = None

    def key(self) -> str:
        """Deterministic, id-safe identity of the content: p50-m3, a5000usd-forever."""
        what = (
            f"p{self.percent_off}".replace(".", "_")
            if self.percent_off
            else f"a{self.amount_off}{self.currency}"
        )
        when = f"m{self.duration_in_months}" if self.duration == "repeating" else self.duration
        return f"{what}-{when}"

    def coupon_id(self) -> str:
        """The custom coupon id: the same discount is found again by id, by any run."""
        return f"{COUPON_ID_PREFIX}-{self.key()}"

    def name(self) -> str:
        """What invoices show (Stripe: at most 40 characters)."""
        if self.percent_off:
            what = f"{self.percent_off}% off"
        else:
            assert self.amount_off is not None and self.currency is not None
            amount = from_minor_units(self.amount_off, None, self.currency)
            what = f"{amount} {self.currency.upper()} off"
        when = {"forever": "", "once": " once"}.get(self.duration, f" for {self.duration_in_months} months")
        return (what + when)[:40]

    def params(self) -> dict[str, Any]:
        """Create params for POST /v1/coupons."""
        params: dict[str, Any] = {"id": self.coupon_id(), "name": self.name(), "duration": self.duration}
        if self.percent_off:
            params["percent_off"] = float(Decimal(self.percent_off))
        else:
            params["amount_off"] = self.amount_off
            params["currency"] = self.currency
        if self.duration == "repeating":
            params["duration_in_months"] = self.duration_in_months
        params["metadata"] = {COUPON_KEY: self.key()}
        return params

    def matches(self, coupon: Mapping[str, Any]) -> bool:
        """Whether an existing Stripe coupon (found by this spec's id) discounts exactly this."""
        if coupon.get("duration") != self.duration or coupon.get("valid") is False:
            return False
        if self.duration == "repeating" and coupon.get("duration_in_months") != self.duration_in_months:
            return False
        if self.percent_off:
            theirs = coupon.get("percent_off")
            return theirs is not None and to_decimal(theirs) == Decimal(self.percent_off)
        return coupon.get("amount_off") == self.amount_off and coupon.get("currency") == self.currency

    def discounts(self) -> list[dict[str, str]]:
        """The `discounts` parameter of an item, a subscription or a phase."""
        return [{"coupon": self.coupon_id()}]


@dataclass
class OrderDiscounts:
    """What `plan_discounts` found: a coupon per discounted line, and the Order's own."""

    lines: dict[str, CouponSpec] = field(default_factory=dict)
    order: CouponSpec | None = None


def _number(raw: Any) -> Decimal | None:
    """None for an empty value (and for 0: no discount); MoneyError for text that is no number."""
    if raw is None or raw == "":
        return None
    value = to_decimal(raw)
    return None if value == 0 else value


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _duration(
    raw: Any, where: str, fail: Any
) -> tuple[Literal["forever", "once", "repeating"], int | None] | None:
    if raw is None or raw == "":
        return "forever", None
    try:
        months = to_decimal(raw)
    except MoneyError:
        months = Decimal(-1)
    if months != months.to_integral_value() or months <= 0:
        fail(
            "discount_months",
            where,
            raw,
            "a discount lasts a whole number of months (at least 1)",
            f"put a whole number of months in {where}, or leave it empty for a discount that lasts "
            "as long as the subscription",
        )
        return None
    return "repeating", int(months)


def plan_discounts(
    lines: list[Line],
    order: Mapping[str, Any],
    currency: str | None,
    config: OrderRulesConfig,
    out: Collector,
) -> OrderDiscounts:
    """Coupons for the Order's discounts, refusing what Stripe would bill wrongly. A discounted
    line's `unit` becomes its list price (its Price); undiscounted lines keep their unit price."""
    found = OrderDiscounts()
    fields = config.discounts
    if fields is None:
        return found
    for ln in lines:
        coupon = _line_coupon(ln, currency, fields, config, out)
        if coupon is not None:
            found.lines[ln.id] = coupon
    if fields.order_percent:
        raw = read_path(order, fields.order_percent)
        try:
            percent = _number(raw)
        except MoneyError:
            percent = Decimal(-1)
        if percent is not None:
            if not 0 < percent <= 100:
                out.order(
                    "discount_percent",
                    fields.order_percent,
                    raw,
                    "a percent discount must be more than 0 and at most 100",
                    f"correct {fields.order_percent} (e.g. 15 for 15 % off), or clear it",
                )
            else:
                when = _duration(
                    read_path(order, fields.order_months) if fields.order_months else None,
                    fields.order_months or "",
                    out.order,
                )
                if when is not None:
                    found.order = CouponSpec(_plain(percent), None, None, *when)
    return found


def _line_coupon(
    ln: Line, currency: str | None, fields: DiscountFields, config: OrderRulesConfig, out: Collector
) -> CouponSpec | None:
    rec = ln.record

    def fail(code: str, fld: str, value: Any, problem: str, fix: str) -> None:
        out.line(ln, code, fld, value, problem, fix)

    percent_raw = read_path(rec, fields.line_percent) if fields.line_percent else None
    amount_raw = read_path(rec, fields.line_amount) if fields.line_amount else None
    try:
        percent = _number(percent_raw)
    except MoneyError as err:
        fail("discount_percent", str(fields.line_percent), percent_raw, err.problem, err.fix)
        return None
    try:
        amount = _number(amount_raw)
    except MoneyError as err:
        fail("discount_amount", str(fields.line_amount), amount_raw, err.problem, err.fix)
        return None
    if percent is None and amount is None:
        return None
    if percent is not None and amount is not None:
        fail(
            "two_discounts",
            str(fields.line_amount),
            amount_raw,
            f"the line has both a percent ({percent_raw}) and an amount discount; one coupon per line",
            f"keep one of {fields.line_percent} and {fields.line_amount}",
        )
        return None
    if percent is not None and not 0 < percent <= 100:
        fail(
            "discount_percent",
            str(fields.line_percent),
            percent_raw,
            "a percent discount must be more than 0 and at most 100",
            f"correct {fields.line_percent} (e.g. 15 for 15 % off), or clear it",
        )
        return None
    list_raw = read_path(rec, fields.list_price)
    if list_raw is None or list_raw == "":
        fail(
            "discount_without_list_price",
            fields.list_price,
            None,
            "the line is discounted but has no list price to bill and discount from",
            f"fill {fields.list_price}, or map discounts.list_price to the field holding it",
        )
        return None
    if currency is None:
        return None  # the Order's currency is refused already
    try:
        list_unit = to_minor_units(list_raw, currency, config.extra_currencies)
    except MoneyError as err:
        fail(err.code, fields.list_price, list_raw, err.problem, err.fix)
        return None
    months_raw = read_path(rec, fields.line_months) if fields.line_months else None
    when = _duration(months_raw, fields.line_months or "", fail)
    if when is None:
        return None
    net = ln.unit  # the line's own (net) unit price as check_line read it
    if percent is not None:
        coupon: CouponSpec | None = CouponSpec(_plain(percent), None, None, *when)
    else:
        assert amount is not None and fields.line_amount is not None
        coupon = _amount_coupon(ln, amount, amount_raw, list_unit, currency, when, fields, config, fail)
    if coupon is None:
        return None
    billed = _billed_unit(list_unit, coupon, ln.quantity)
    if net is not None and abs(billed - _minor(net)) > 1:
        shown = from_minor_units(None, _plain(billed), currency)
        fail(
            "net_price_differs",
            config.unit_price_field,
            rec.get(config.unit_price_field),
            f"the list price less the discount is {shown} per unit, not the line's net price (CPQ applied "
            "other discounts, such as volume, partner or a contracted price, or the fields disagree), so "
            "Stripe would bill another amount than the quote",
            "map discounts.list_price to the price the discount is taken from (CPQ's Regular Price, e.g. "
            "SBQQ__QuoteLine__r.SBQQ__RegularPrice__c), correct the discount, or use net_price mode",
        )
        return None
    ln.unit = list_unit  # the Price bills the list price; the coupon takes the discount off
    return coupon


def _amount_coupon(
    ln: Line,
    amount: Decimal,
    amount_raw: Any,
    list_unit: tuple[int | None, str | None],
    currency: str,
    when: tuple[Literal["forever", "once", "repeating"], int | None],
    fields: DiscountFields,
    config: OrderRulesConfig,
    fail: Any,
) -> CouponSpec | None:
    fld = str(fields.line_amount)
    if amount < 0:
        fail(
            "negative_net",
            fld,
            amount_raw,
            "a negative amount off would raise the price above the list price",
            f"put the amount off as a positive number in {fld}, or clear it",
        )
        return None
    if ln.quantity is None:
        fail(
            "amount_discount_on_usage",
            fld,
            amount_raw,
            "an amount off needs a quantity to multiply; a metered line has none",
            f"give the metered line a percent discount ({fields.line_percent or 'map line_percent'}) instead",
        )
        return None
    try:
        per_unit, fraction = to_minor_units(amount, currency, config.extra_currencies)
    except MoneyError as err:
        fail("discount_amount", fld, amount_raw, err.problem, err.fix)
        return None
    if per_unit is None:
        fail(
            "discount_amount",
            fld,
            amount_raw,
            f"Stripe takes an amount off in whole minor units of {currency}; this is {fraction} of one",
            "round the amount off to the currency's smallest unit",
        )
        return None
    list_minor = _minor(list_unit)
    total = per_unit * ln.quantity
    if total > list_minor * ln.quantity:
        fail(
            "discount_above_list_price",
            fld,
            amount_raw,
            f"the amount off ({amount} per unit) is more than the list price "
            f"({from_minor_units(*list_unit, currency)}), so the line's net would be negative",
            f"correct {fld} or {fields.list_price}",
        )
        return None
    return CouponSpec(None, total, currency.lower(), *when)


def order_coupons(discounts: OrderDiscounts) -> tuple[CouponSpec, ...]:
    """Every distinct coupon the Order uses, in a stable order (what is ensured before the create)."""
    specs = {c.key(): c for c in (*discounts.lines.values(), discounts.order) if c is not None}
    return tuple(specs[k] for k in sorted(specs))


def discounted_fields(order: Mapping[str, Any], fields: DiscountFields) -> list[str]:
    """The discount fields the Order (or a line of it) fills, as `OrderItem 802… SBQQ__Discount__c`."""
    found = []
    if _filled(order, fields.order_percent):
        found.append(f"Order {order.get('OrderNumber') or order.get('Id')} {fields.order_percent}")
    children = order.get("OrderItems")
    records = (children.get("records") if isinstance(children, Mapping) else children) or []
    for rec in records:
        for path in (fields.line_percent, fields.line_amount):
            if path and _filled(rec, path):
                found.append(f"OrderItem {rec.get('OrderItemNumber') or rec.get('Id')} {path}")
    return found


def _filled(record: Mapping[str, Any], path: str | None) -> bool:
    if not path:
        return False
    try:
        return _number(read_path(record, path)) is not None
    except MoneyError:
        return True


def _minor(unit: tuple[int | None, str | None]) -> Decimal:
    return Decimal(unit[0]) if unit[0] is not None else Decimal(unit[1] or "0")


def _billed_unit(
    list_unit: tuple[int | None, str | None], coupon: CouponSpec, quantity: int | None
) -> Decimal:
    """What one unit costs after the coupon, in minor units (unrounded)."""
    price = _minor(list_unit)
    if coupon.percent_off:
        return price * (100 - Decimal(coupon.percent_off)) / 100
    return price - Decimal(coupon.amount_off or 0) / Decimal(quantity or 1)

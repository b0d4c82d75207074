"""Subscriptions, subscription schedules and the invoices subscriptions open.

Time does not advance inside the sandbox: periods are computed when a subscription is created and
schedules do not move to their next phase on their own."""

from __future__ import annotations

import calendar
import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN
from decimal import Decimal as D
from typing import Any

from ..common import Ctx, Endpoint, paginate
from ..errors import StripeError, exclusive, invalid, missing_param
from ..search import run_search
from ..validation import (
    CUSTOM_FIELDS,
    EXPAND,
    LIST,
    METADATA,
    RETRIEVE,
    SEARCH,
    Arr,
    Bool,
    Decimal,
    Int,
    Obj,
    Str,
    Ts,
    merge_metadata,
)
from . import discounts as disc
from .catalog import INTERVALS, TAX_BEHAVIOR, new_price
from .tax import AUTOMATIC_TAX, automatic_tax, location_problem
from .testclocks import clock_time, on_clock_time

COLLECTION = ("charge_automatically", "send_invoice")
PRORATION = ("always_invoice", "create_prorations", "none")
PAYMENT_BEHAVIOR = ("allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete")
SUB_STATUSES = (
    "active",
    "all",
    "canceled",
    "ended",
    "incomplete",
    "incomplete_expired",
    "past_due",
    "paused",
    "trialing",
    "unpaid",
)

_PRICE_DATA_REC = Obj(
    fields={
        "currency": Str(required=True, nullable=False),
        "product": Str(required=True, nullable=False),
        "recurring": Obj(
            required=True,
            fields={
                "interval": Str(required=True, nullable=False, enum=INTERVALS),
                "interval_count": Int(min=1),
            },
        ),
        "unit_amount": Int(min=0),
        "unit_amount_decimal": Decimal(),
        "tax_behavior": Str(enum=TAX_BEHAVIOR),
    }
)
_PRICE_DATA_ONCE = Obj(
    fields={
        "currency": Str(required=True, nullable=False),
        "product": Str(required=True, nullable=False),
        "unit_amount": Int(min=0),
        "unit_amount_decimal": Decimal(),
        "tax_behavior": Str(enum=TAX_BEHAVIOR),
    }
)
_ITEM = Obj(
    fields={
        "price": Str(),
        "price_data": _PRICE_DATA_REC,
        "quantity": Int(min=0),
        "metadata": METADATA,
        "discounts": Arr(item=Obj(fields={"coupon": Str(), "discount": Str(), "promotion_code": Str()})),
        "tax_rates": Arr(item=Str()),
    }
)
_UPDATE_ITEM = Obj(fields={**_ITEM.fields, "id": Str(), "deleted": Bool(), "clear_usage": Bool()})
_INVOICE_ITEM = Obj(
    fields={
        "price": Str(),
        "price_data": _PRICE_DATA_ONCE,
        "quantity": Int(min=1),
        "metadata": METADATA,
        "discounts": Arr(item=Obj(fields={"coupon": Str(), "discount": Str(), "promotion_code": Str()})),
        "tax_rates": Arr(item=Str()),
        "period": Obj(
            fields={
                "start": Obj(fields={"type": Str(), "timestamp": Int()}),
                "end": Obj(fields={"type": Str(), "timestamp": Int()}),
            }
        ),
    }
)
# What a subscription (or a schedule phase) says its invoices carry.
_INVOICE_SETTINGS = {"custom_fields": CUSTOM_FIELDS, "description": Str(), "footer": Str(max_len=5000)}
_SUB = {
    "customer": Str(required=True, nullable=False),
    "automatic_tax": AUTOMATIC_TAX,
    "items": Arr(item=_ITEM, max_items=20),
    "add_invoice_items": Arr(item=_INVOICE_ITEM, max_items=20),
    "collection_method": Str(enum=COLLECTION),
    "days_until_due": Int(min=0, max=730),
    "default_payment_method": Str(),
    "description": Str(max_len=500),
    "invoice_settings": Obj(fields=_INVOICE_SETTINGS),
    "off_session": Bool(),
    "backdate_start_date": Ts(),
    "billing_cycle_anchor": Ts(),
    "cancel_at": Ts(words=("max_period_end", "min_period_end")),
    "cancel_at_period_end": Bool(),
    "trial_end": Ts(words=("now",)),
    "trial_period_days": Int(min=0, max=730),
    "proration_behavior": Str(enum=PRORATION),
    "payment_behavior": Str(enum=PAYMENT_BEHAVIOR),
    "billing_mode": Obj(fields={"type": Str(required=True, enum=("classic", "flexible"))}),
    "currency": Str(),
    "discounts": Arr(item=Obj(fields={"coupon": Str(), "discount": Str(), "promotion_code": Str()})),
    "payment_settings": Obj(
        fields={
            "save_default_payment_method": Str(enum=("off", "on_subscription")),
            "payment_method_types": Arr(item=Str()),
        }
    ),
    "metadata": METADATA,
    "expand": EXPAND,
}
_SUB_UPDATE = {
    k: v
    for k, v in _SUB.items()
    # automatic_tax on update: not modelled, so refused as unknown rather than silently ignored
    if k not in ("customer", "backdate_start_date", "currency", "billing_mode", "automatic_tax")
} | {
    "items": Arr(item=_UPDATE_ITEM, max_items=20),
    "billing_cycle_anchor": Str(enum=("now", "unchanged")),
    "proration_date": Ts(),
    "cancellation_details": Obj(fields={"comment": Str(max_len=5000), "feedback": Str()}),
}


# time ----------------------------------------------------------------------------------------
def add_interval(ts: int, interval: str, count: int) -> int:
    if interval == "day":
        return ts + 86400 * count
    if interval == "week":
        return ts + 7 * 86400 * count
    months = count * (12 if interval == "year" else 1)
    dt = datetime.fromtimestamp(ts, UTC)
    total = dt.month - 1 + months
    year, month = dt.year + total // 12, total % 12 + 1
    day = min(dt.day, calendar.monthrange(year, month)[1])
    return int(dt.replace(year=year, month=month, day=day).timestamp())


def period(anchor: int, start: int, now: int, interval: str, count: int) -> tuple[int, int]:
    """The billing period containing `now` for a cycle anchored at `anchor`."""
    if anchor > now:
        return start, anchor
    n = 0
    while add_interval(anchor, interval, count * (n + 1)) <= now:
        n += 1
    return add_interval(anchor, interval, count * n), add_interval(anchor, interval, count * (n + 1))


# Stripe: "Backdating isn't supported when an invoice has more than 250 line items, which is the
# default limit."
MAX_INVOICE_LINES = 250


@dataclass(frozen=True)
class Span:
    """One line of a subscription's first invoice for one item: the time billed and the natural
    billing period (aligned to the anchor) it falls in; a part of a period is prorated."""

    start: int
    end: int
    natural_start: int
    natural_end: int

    @property
    def proration(self) -> bool:
        return (self.start, self.end) != (self.natural_start, self.natural_end)

    def amount(self, full: int) -> int:
        if not self.proration:
            return full
        share = D(self.end - self.start) / D(self.natural_end - self.natural_start)
        return int((full * share).quantize(D(1), rounding=ROUND_HALF_EVEN))


def first_spans(anchor: int, since: int, now: int, interval: str, count: int, limit: int) -> list[Span]:
    """The natural periods (aligned to `anchor`) from `since` to the end of the period holding `now`
    (or to a future anchor), clipped to `since`, oldest first; at most `limit` + 1 (the caller
    refuses more). Flexible billing mode bills one line per such period."""
    j = 0
    if anchor > since:
        while add_interval(anchor, interval, count * j) > since:
            j -= 1
    else:
        while add_interval(anchor, interval, count * (j + 1)) <= since:
            j += 1
    until = anchor if anchor > now else period(anchor, now, now, interval, count)[1]
    spans: list[Span] = []
    while len(spans) <= limit:
        lo, hi = add_interval(anchor, interval, count * j), add_interval(anchor, interval, count * (j + 1))
        if lo >= until:
            break
        spans.append(Span(max(lo, since), min(hi, until), lo, hi))
        j += 1
    return spans


# items ---------------------------------------------------------------------------------------
def resolve_price(ctx: Ctx, item: dict[str, Any], param: str, *, recurring: bool) -> dict[str, Any]:
    store = ctx.store
    if item.get("price") and item.get("price_data"):
        raise exclusive(f"{param}[price]", f"{param}[price_data]")
    if item.get("price_data"):
        data = item["price_data"]
        store.get("product", data["product"], f"{param}[price_data][product]")
        return new_price(ctx, dict(data), f"{param}[price_data]", active=False)
    if not item.get("price"):
        raise missing_param(f"{param}[price]")
    price = store.get("price", item["price"], f"{param}[price]")
    if recurring and price["type"] != "recurring":
        raise invalid(
            "The price specified is set to `type=one_time` but this field only accepts prices with "
            "`type=recurring`.",
            f"{param}[price]",
        )
    if not recurring and price["type"] != "one_time":
        raise invalid(
            "The price specified is set to `type=recurring` but this field only accepts prices with "
            "`type=one_time`.",
            f"{param}[price]",
        )
    if not price["active"]:
        raise invalid(
            "The price specified is inactive. This field only accepts active prices.", f"{param}[price]"
        )
    return price


def check_product_active(ctx: Ctx, price: dict[str, Any], param: str) -> None:
    """A new subscription on an archived product's price: Stripe's error (stripe/stripe-go#1031)."""
    product = ctx.store.get("product", price["product"])
    if not product["active"]:
        raise invalid(
            f"The product {product['id']} is marked as inactive, and thus no new subscriptions can be "
            f"created to any plans of this product. You provided the plan {price['id']}.",
            param,
        )


def new_item(ctx: Ctx, sub_id: str, price: dict[str, Any], raw: dict[str, Any], param: str) -> dict[str, Any]:
    metered = price["recurring"]["usage_type"] == "metered"
    if metered and raw.get("quantity") is not None:
        raise invalid(
            f"Quantity should not be specified where usage_type is `metered`. Remove quantity from `{param}`",
            f"{param}[quantity]",
        )
    return {
        "id": ctx.store.new_id("si"),
        "object": "subscription_item",
        "created": ctx.store.now(),
        "current_period_end": 0,
        "current_period_start": 0,
        "discounts": [],
        "metadata": merge_metadata({}, raw.get("metadata")),
        "price": copy.deepcopy(price),
        "quantity": None if metered else (raw["quantity"] if raw.get("quantity") is not None else 1),
        "subscription": sub_id,
        "tax_rates": [],
    }


def check_items(
    items: list[dict[str, Any]], billing_mode: str, extra_currencies: list[tuple[str, str]]
) -> str:
    """Stripe's cross-item rules; returns the subscription currency."""
    seen: set[str] = set()
    for idx, item in enumerate(items):
        if item["price"]["id"] in seen:
            raise invalid(
                f"Cannot add multiple subscription items with the same price: {item['price']['id']}",
                f"items[{idx}][price]",
            )
        seen.add(item["price"]["id"])
    currencies = {i["price"]["currency"] for i in items} | {c for c, _ in extra_currencies}
    if len(currencies) > 1:
        raise invalid(
            "Currency and interval fields must match across all plans on this subscription. Found "
            "mismatch in currency field.",
            "items",
        )
    if billing_mode == "classic":
        cycles = {
            (i["price"]["recurring"]["interval"], i["price"]["recurring"]["interval_count"]) for i in items
        }
        if len(cycles) > 1:
            raise invalid(
                "Currency and interval fields must match across all plans on this subscription. Found "
                "mismatch in interval field.",
                "items",
            )
    return next(iter(currencies))


def _unit_total(price: dict[str, Any], quantity: int | None) -> int:
    if quantity is None or (price["recurring"] and price["recurring"]["usage_type"] == "metered"):
        return 0
    unit = D(price["unit_amount_decimal"] or "0")
    return int((unit * quantity).quantize(D(1), rounding=ROUND_HALF_EVEN))


def _payment_method_for(ctx: Ctx, sub: dict[str, Any], customer: dict[str, Any]) -> str | None:
    return sub["default_payment_method"] or customer["invoice_settings"]["default_payment_method"] or None


def check_pm(ctx: Ctx, pm_id: str | None, customer_id: str, param: str) -> None:
    if not pm_id:
        return
    pm = ctx.store.get("payment_method", pm_id, param)
    if pm.get("customer") != customer_id:
        raise StripeError(
            f"The customer does not have a payment method with the ID {pm_id}. The payment method "
            "must be attached to the customer.",
            code="resource_missing",
            param=param,
        )


# invoices ------------------------------------------------------------------------------------
def open_invoice(
    ctx: Ctx,
    sub: dict[str, Any],
    customer: dict[str, Any],
    extra: list[tuple[dict[str, Any], int]],
    reason: str,
    spans: dict[str, list[Span]],
    *,
    pending: list[dict[str, Any]] | None = None,
    only_spanned: bool = False,
    period: tuple[int, int] | None = None,
    extra_discounts: list[list[str]] | None = None,
    used: dict[str, tuple[int, int, tuple[int, int]]] | None = None,
) -> dict[str, Any]:
    """The invoice a subscription creates: a line per item per billed span (see `first_spans`;
    an item without spans gets one zero line for its current period, unless `only_spanned`: a
    renewal bills only the items whose period renews), the customer's pending invoice items
    (`pending`: prorations and phase add-ons, each then marked as invoiced) and `add_invoice_items`."""
    store = ctx.store
    now = store.now()
    ident = store.new_id("in", 24)
    lines = []
    own: list[list[str]] = []  # each line's own discounts (an item's, an invoice item's)
    for item in sub["items"]["data"]:
        if only_spanned and item["id"] not in spans:
            continue
        full = _unit_total(item["price"], item["quantity"])
        current = (item["current_period_start"], item["current_period_end"])
        billed = [(sp.amount(full), (sp.start, sp.end), sp.proration) for sp in spans.get(item["id"], [])]
        quantity = item["quantity"]
        if used and item["id"] in used:  # a metered item's ended period, billed in arrears
            quantity, amount, ended = used[item["id"]]
            billed = [(amount, ended, False)]
        for amount, span, proration in billed or [(0, current, False)]:
            own.append(list(item.get("discounts") or []))
            lines.append(
                _line(
                    store,
                    ident,
                    sub,
                    item["price"],
                    quantity,
                    amount,
                    span,
                    {
                        "type": "subscription_item_details",
                        "subscription_item_details": {
                            "subscription": sub["id"],
                            "subscription_item": item["id"],
                            "proration": proration,
                            "invoice_item": None,
                        },
                    },
                )
            )
    for index, (price, qty) in enumerate(extra):
        own.append(list((extra_discounts or [])[index]) if extra_discounts else [])
        lines.append(
            _line(
                store,
                ident,
                sub,
                price,
                qty,
                _unit_total(price, qty),
                (now, now),
                {
                    "type": "invoice_item_details",
                    "invoice_item_details": {
                        "invoice_item": store.new_id("ii"),
                        "proration": False,
                        "subscription": sub["id"],
                    },
                },
            )
        )
    for ii in pending or []:
        details = (ii.get("parent") or {}).get("subscription_details") or {}
        pricing = ii.get("pricing") or {}
        # An item of a plain `amount` (no price) is billed as that amount, in its own currency.
        price = (
            store.get("price", pricing["price_details"]["price"])
            if pricing.get("price_details")
            else {"id": None, "product": None, "currency": ii["currency"], "unit_amount_decimal": None}
        )
        line = _line(
            store,
            ident,
            sub,
            price,
            ii["quantity"],
            ii["amount"],
            (ii["period"]["start"], ii["period"]["end"]),
            {
                "type": "subscription_item_details",
                "subscription_item_details": {
                    "subscription": sub["id"],
                    "subscription_item": details.get("subscription_item"),
                    "proration": ii["proration"],
                    "invoice_item": ii["id"],
                },
            },
        )
        if not pricing.get("price_details"):
            line["pricing"], line["description"] = None, ii.get("description")
        line["discountable"] = ii["discountable"]
        own.append([])
        lines.append(line)
        ii["invoice"] = ident
        store.put(ii)
    subtotal = sum(line["amount"] for line in lines)
    off, discount_amounts, invoice_discounts = disc.apply(
        ctx, lines, own, list(sub.get("discounts") or []), now
    )
    total = subtotal - off
    # A credit (negative total) owes nothing; Stripe moves it to the customer's balance.
    due = max(total, 0)
    if total < 0:
        customer["balance"] += total
    send = sub["collection_method"] == "send_invoice"
    pm = _payment_method_for(ctx, sub, customer)
    declined = not send and due > 0 and pm in store.charge_fails
    paid = not send and not declined and (due == 0 or pm is not None)
    number = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    invoice = {
        "id": ident,
        "object": "invoice",
        "account_country": "US",
        "amount_due": due,
        "amount_paid": due if paid else 0,
        "amount_remaining": 0 if paid else due,
        "attempt_count": 1 if (paid or declined) and due else 0,
        "attempted": paid or declined,
        "auto_advance": not paid,
        "billing_reason": reason,
        "collection_method": sub["collection_method"],
        "created": now,
        "currency": sub["currency"],
        "customer": customer["id"],
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        # The subscription's invoice_settings.custom_fields, else the customer's defaults.
        "custom_fields": copy.deepcopy(
            (sub.get("invoice_settings") or {}).get("custom_fields")
            or customer["invoice_settings"]["custom_fields"]
        ),
        "default_payment_method": None,
        "description": None,
        "discounts": invoice_discounts,
        "due_date": now + 86400 * (sub["days_until_due"] or 0) if send else None,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_test/{ident}",
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{ident}/lines",
        },
        "livemode": False,
        "metadata": {},
        "number": number,
        "parent": {
            "quote_details": None,
            "type": "subscription_details",
            "subscription_details": {"metadata": copy.deepcopy(sub["metadata"]), "subscription": sub["id"]},
        },
        "period_end": period[1] if period else now,
        "period_start": period[0] if period else now,
        "status": "paid" if paid else "open",
        "status_transitions": {
            "finalized_at": now,
            "marked_uncollectible_at": None,
            "paid_at": now if paid else None,
            "voided_at": None,
        },
        "subtotal": subtotal,
        "test_clock": customer.get("test_clock"),
        "total": total,
        "total_discount_amounts": discount_amounts,
        "total_excluding_tax": total,
    }
    store.put(customer)
    store.put(invoice)
    ctx.emit("invoice.created", invoice)
    ctx.emit("invoice.finalized", invoice)
    if paid:
        ctx.emit("invoice.paid", invoice)
    if declined:
        ctx.emit("invoice.payment_failed", invoice)
    _track_delinquency(ctx, customer, paid=paid and due > 0, failed=declined)
    return invoice


def _track_delinquency(ctx: Ctx, customer: dict[str, Any], *, paid: bool, failed: bool) -> None:
    """`customer.delinquent` follows the most recent invoice state change, as Stripe documents: an
    automatic payment failure sets it, paying an invoice clears it (with `customer.updated`)."""
    if customer.get("delinquent") == failed or not (paid or failed):
        return
    customer["delinquent"] = failed
    ctx.store.put(customer)
    ctx.emit("customer.updated", customer, {"delinquent": not failed})


INCOMPLETE_EXPIRES_SECONDS = 23 * 3600


def expire_if_due(ctx: Ctx, sub: dict[str, Any]) -> dict[str, Any]:
    """An `incomplete` subscription whose first invoice is still unpaid 23 hours after it was
    created becomes `incomplete_expired` (and its invoice void), as Stripe documents."""
    store = ctx.store
    if sub.get("status") != "incomplete" or store.now() < sub["created"] + INCOMPLETE_EXPIRES_SECONDS:
        return sub
    sub["status"], sub["ended_at"] = "incomplete_expired", sub["created"] + INCOMPLETE_EXPIRES_SECONDS
    invoice = store.find("invoice", sub["latest_invoice"]) if sub.get("latest_invoice") else None
    if invoice is not None:
        invoice["status"] = "void"
        invoice["status_transitions"]["voided_at"] = sub["ended_at"]
        store.put(invoice)
    store.put(sub)
    ctx.emit("customer.subscription.updated", sub)
    return sub


def _line(
    store: Any,
    invoice_id: str,
    sub: dict[str, Any],
    price: dict[str, Any],
    qty: int,
    amount: int,
    span: Any,
    parent: Any,
) -> dict[str, Any]:
    return {
        "id": store.new_id("il", 24),
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"],
        "description": None,
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": {},
        "parent": parent,
        "period": {"end": span[1], "start": span[0]},
        "pricing": {
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": price["unit_amount_decimal"],
        },
        "quantity": qty,
        "subscription": sub["id"],
        "taxes": [],
    }


# subscriptions -------------------------------------------------------------------------------
def _first_invoice_spans(
    items: list[dict[str, Any]],
    anchor: int,
    since: int,
    now: int,
    billing_mode: str,
    trial_end: int | None,
    p: dict[str, Any],
    extra_lines: int,
) -> dict[str, list[Span]]:
    """What the first invoice bills per item (none while trialing, none for metered prices, which
    bill in arrears). Flexible mode bills every natural period from a backdated start, one line
    each (classic mode's single prorated line is not modelled: it bills the period holding now).
    `proration_behavior=none` bills nothing that starts before the anchor (or now): that time is
    free. An invoice past Stripe's line limit is refused."""
    if trial_end:
        return {}
    free_from = max(anchor, now) if p.get("proration_behavior") == "none" else None
    out: dict[str, list[Span]] = {}
    total = extra_lines
    for item in items:
        rec = item["price"]["recurring"]
        if rec["usage_type"] == "metered":
            continue
        frm = since if billing_mode == "flexible" else now
        spans = first_spans(anchor, frm, now, rec["interval"], rec["interval_count"], MAX_INVOICE_LINES)
        out[item["id"]] = [sp for sp in spans if free_from is None or sp.start >= free_from]
        total += len(out[item["id"]])
        if total > MAX_INVOICE_LINES:
            raise invalid(
                f"This subscription's first invoice would have more than {MAX_INVOICE_LINES} line items "
                "(one for each item in each billing period since backdate_start_date), and backdating "
                f"isn't supported past {MAX_INVOICE_LINES} line items. Use a later backdate_start_date, "
                "fewer items, or proration_behavior=none.",
                "backdate_start_date",
            )
    return out


def build_subscription(
    ctx: Ctx,
    p: dict[str, Any],
    *,
    schedule_id: str | None = None,
    start: int | None = None,
    from_schedule: bool = False,
) -> dict[str, Any]:
    """Create a subscription from validated create params (also used by schedules). A schedule
    that starts while time passes (`from_schedule`) cannot be refused: without a payment method
    its first invoice stays open and the subscription is `past_due`."""
    store = ctx.store
    now = store.now()
    customer = store.get("customer", p["customer"], "customer")
    items_in = p.get("items") or []
    if not items_in:
        raise missing_param("items")
    method = p.get("collection_method") or "charge_automatically"
    if method == "send_invoice" and p.get("days_until_due") is None:
        raise missing_param("days_until_due")
    if method == "charge_automatically" and p.get("days_until_due") is not None:
        raise invalid(
            "`days_until_due` can only be set when `collection_method` is `send_invoice`.", "days_until_due"
        )
    if p.get("cancel_at") is not None and p.get("cancel_at_period_end"):
        raise exclusive("cancel_at", "cancel_at_period_end")
    check_pm(ctx, p.get("default_payment_method"), customer["id"], "default_payment_method")
    billing_mode = (p.get("billing_mode") or {}).get("type") or "flexible"
    sub_id = store.new_id("sub", 24)
    items = []
    for idx, raw in enumerate(items_in):
        price = resolve_price(ctx, raw, f"items[{idx}]", recurring=True)
        if not from_schedule:
            check_product_active(ctx, price, f"items[{idx}][price]")
        items.append(new_item(ctx, sub_id, price, raw, f"items[{idx}]"))
    extra: list[tuple[dict[str, Any], int]] = []
    for idx, raw in enumerate(p.get("add_invoice_items") or []):
        extra.append(
            (resolve_price(ctx, raw, f"add_invoice_items[{idx}]", recurring=False), raw.get("quantity") or 1)
        )
    currency = check_items(items, billing_mode, [(pr["currency"], "") for pr, _ in extra])
    sub_discounts = disc.check(ctx, p.get("discounts"), "discounts", currency)
    item_discounts = [
        disc.check(ctx, raw.get("discounts"), f"items[{idx}][discounts]", currency)
        for idx, raw in enumerate(items_in)
    ]
    extra_entries = [
        disc.check(ctx, raw.get("discounts"), f"add_invoice_items[{idx}][discounts]", currency)
        for idx, raw in enumerate(p.get("add_invoice_items") or [])
    ]
    if customer["currency"] and customer["currency"] != currency:
        raise invalid(
            f"You cannot combine currencies on a single customer. This customer has an active "
            f"subscription, subscription schedule, discount, quote, or invoice item with currency "
            f"{customer['currency']}.",
            "currency",
        )
    start_date = start if start is not None else (p.get("backdate_start_date") or now)
    if p.get("backdate_start_date") and p["backdate_start_date"] > now:
        raise invalid("The backdate_start_date must be in the past.", "backdate_start_date")
    trial_end = p.get("trial_end")
    if trial_end == "now":
        trial_end = None
    if trial_end is None and p.get("trial_period_days"):
        trial_end = now + 86400 * p["trial_period_days"]
    if trial_end is not None and trial_end <= now:
        raise invalid("Invalid timestamp: must be an integer Unix timestamp in the future.", "trial_end")
    backdate = p.get("backdate_start_date") if start is None else None
    anchor = p.get("billing_cycle_anchor") or trial_end or backdate or now
    if p.get("billing_cycle_anchor") and trial_end and p["billing_cycle_anchor"] < trial_end:
        raise invalid("billing_cycle_anchor cannot be earlier than the trial end.", "billing_cycle_anchor")
    spans = _first_invoice_spans(items, anchor, backdate or now, now, billing_mode, trial_end, p, len(extra))
    for item in items:
        rec = item["price"]["recurring"]
        if trial_end:
            item["current_period_start"], item["current_period_end"] = now, trial_end
        else:
            item["current_period_start"], item["current_period_end"] = period(
                anchor, now, now, rec["interval"], rec["interval_count"]
            )
            if anchor > now:
                item["current_period_start"] = spans[item["id"]][-1].start if spans.get(item["id"]) else now
    cancel_at = p.get("cancel_at")
    if cancel_at in ("min_period_end", "max_period_end"):
        ends = [i["current_period_end"] for i in items]
        cancel_at = min(ends) if cancel_at == "min_period_end" else max(ends)
    if p.get("cancel_at_period_end"):
        cancel_at = min(i["current_period_end"] for i in items)
    sub: dict[str, Any] = {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": automatic_tax(customer, p.get("automatic_tax"), "automatic_tax[enabled]"),
        "billing_cycle_anchor": anchor,
        "billing_cycle_anchor_config": None,
        "billing_mode": {
            "flexible": {"proration_discounts": "included"} if billing_mode == "flexible" else None,
            "type": billing_mode,
            "updated_at": now,
        },
        "cancel_at": cancel_at,
        "cancel_at_period_end": bool(p.get("cancel_at_period_end")),
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": method,
        "created": now,
        "currency": currency,
        "customer": customer["id"],
        "customer_account": None,
        "days_until_due": p.get("days_until_due"),
        "default_payment_method": p.get("default_payment_method"),
        "default_source": None,
        "default_tax_rates": [],
        "description": p.get("description"),
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {
            "account_tax_ids": None,
            "issuer": {"type": "self"},
            **{k: (p.get("invoice_settings") or {}).get(k) for k in _INVOICE_SETTINGS},
        },
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "total_count": len(items),
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": merge_metadata({}, p.get("metadata")),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": schedule_id,
        "start_date": start_date,
        "status": "trialing" if trial_end else "active",
        "test_clock": customer.get("test_clock"),
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": now if trial_end else None,
    }
    first_total = sum(
        sp.amount(_unit_total(i["price"], i["quantity"])) for i in items for sp in spans.get(i["id"], [])
    ) + sum(_unit_total(pr, q) for pr, q in extra)
    if (
        method == "charge_automatically"
        and not trial_end
        and first_total > 0
        and _payment_method_for(ctx, sub, customer) is None
        and not from_schedule
    ):
        behavior = p.get("payment_behavior") or "allow_incomplete"
        if behavior == "default_incomplete":
            sub["status"] = "incomplete"
        else:
            raise StripeError(
                "This customer has no attached payment source or default payment method. Please consider "
                "adding a "
                "default payment method. For more information, visit "
                ""
                "https://docs.stripe.com/billing/subscriptions/payment-methods-setting#payment-method-priority.",
                code="resource_missing",
            )
    pm = _payment_method_for(ctx, sub, customer)
    if method == "charge_automatically" and not trial_end and first_total > 0 and pm in store.charge_fails:
        # The first invoice's charge is declined: Stripe still answers 200, with the subscription
        # `incomplete` (its invoice open) for 23 hours, unless told to fail instead.
        if (p.get("payment_behavior") or "allow_incomplete") == "error_if_incomplete":
            raise StripeError(
                "Your card was declined.",
                status=402,
                type="card_error",
                code="card_declined",
                extra={"decline_code": "generic_decline"},
            )
        sub["status"] = "incomplete"
    customer["currency"] = currency
    store.private[sub_id]["cancel_proration"] = p.get("proration_behavior") or "create_prorations"
    redeem = {"customer": customer["id"], "subscription": sub_id, "start": now}
    sub["discounts"] = disc.redeem(ctx, sub_discounts, item=None, **redeem)
    for item, entries in zip(items, item_discounts, strict=True):
        item["discounts"] = disc.redeem(ctx, entries, item=item["id"], **redeem)
    extra_ids = [disc.redeem(ctx, entries, item=None, **redeem) for entries in extra_entries]
    store.put(sub)
    ctx.emit("customer.subscription.created", sub)
    invoice = open_invoice(ctx, sub, customer, extra, "subscription_create", spans, extra_discounts=extra_ids)
    sub["latest_invoice"] = invoice["id"]
    mark_unpaid(sub, invoice)
    store.put(sub)
    return sub


def mark_unpaid(sub: dict[str, Any], invoice: dict[str, Any]) -> None:
    """An automatically charged invoice left open makes an active subscription `past_due` (Stripe's
    status once a renewal payment fails); a paid one brings a past_due subscription back."""
    if sub["collection_method"] != "charge_automatically":
        return
    if invoice["status"] == "open" and invoice["amount_due"] > 0 and sub["status"] == "active":
        sub["status"] = "past_due"
    elif invoice["status"] == "paid" and sub["status"] == "past_due":
        sub["status"] = "active"


def _sub_owner(ctx: Ctx, p: dict[str, Any]) -> str | None:
    sub = ctx.store.find("subscription", ctx.path["id"])
    return sub["customer"] if sub else None


def _sched_owner(ctx: Ctx, p: dict[str, Any]) -> str | None:
    sched = ctx.store.find("subscription_schedule", ctx.path["id"])
    return sched["customer"] if sched else None


def _new_sched_owner(ctx: Ctx, p: dict[str, Any]) -> str | None:
    if p.get("from_subscription"):
        sub = ctx.store.find("subscription", p["from_subscription"])
        return sub["customer"] if sub else None
    return p.get("customer")


@on_clock_time(lambda ctx, p: p.get("customer"))
def create_subscription(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    return build_subscription(ctx, p)


@on_clock_time(_sub_owner, write=False)
def retrieve_subscription(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    return expire_if_due(ctx, ctx.store.get("subscription", ctx.path["id"]))


@on_clock_time(_sub_owner)
def update_subscription(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    sub = store.get("subscription", ctx.path["id"])
    before = copy.deepcopy(sub)
    if sub["status"] in ("canceled", "incomplete_expired") and set(p) - {
        "metadata",
        "cancellation_details",
        "expand",
    }:
        raise invalid("A canceled subscription can only update its cancellation_details and metadata.")
    method = p.get("collection_method") or sub["collection_method"]
    days = p["days_until_due"] if "days_until_due" in p else sub["days_until_due"]
    if method == "charge_automatically" and "collection_method" in p:
        days = p.get("days_until_due")
    if method == "send_invoice" and days is None:
        raise missing_param("days_until_due")
    if method == "charge_automatically" and days is not None:
        raise invalid(
            "`days_until_due` can only be set when `collection_method` is `send_invoice`.", "days_until_due"
        )
    if p.get("cancel_at") is not None and p.get("cancel_at_period_end"):
        raise exclusive("cancel_at", "cancel_at_period_end")
    if p.get("default_payment_method"):
        check_pm(ctx, p["default_payment_method"], sub["customer"], "default_payment_method")
    items = [copy.deepcopy(i) for i in sub["items"]["data"]]
    added: dict[int, dict[str, Any]] = {}
    for idx, raw in enumerate(p.get("items") or []):
        param = f"items[{idx}]"
        if raw.get("id"):
            current = next((i for i in items if i["id"] == raw["id"]), None)
            if current is None:
                raise StripeError(
                    f"No such subscription item: '{raw['id']}'", code="resource_missing", param=f"{param}[id]"
                )
            if raw.get("deleted"):
                items.remove(current)
                continue
            if raw.get("price") or raw.get("price_data"):
                current["price"] = copy.deepcopy(resolve_price(ctx, raw, param, recurring=True))
            metered = current["price"]["recurring"]["usage_type"] == "metered"
            if metered and raw.get("quantity") is not None:
                raise invalid(
                    f"Quantity should not be specified where usage_type is `metered`. Remove quantity "
                    f"from `{param}`",
                    f"{param}[quantity]",
                )
            if raw.get("quantity") is not None:
                current["quantity"] = raw["quantity"]
            if "metadata" in raw:
                current["metadata"] = merge_metadata(current["metadata"], raw["metadata"])
        else:
            if raw.get("deleted"):
                raise missing_param(f"{param}[id]")
            price = resolve_price(ctx, raw, param, recurring=True)
            item = new_item(ctx, sub["id"], price, raw, param)
            ref = items[0] if items else None
            item["current_period_start"] = ref["current_period_start"] if ref else store.now()
            item["current_period_end"] = (
                ref["current_period_end"]
                if ref
                else add_interval(
                    store.now(), price["recurring"]["interval"], price["recurring"]["interval_count"]
                )
            )
            items.append(item)
            added[idx] = item
    if not items:
        raise invalid(
            "A subscription must have at least one active plan. To cancel a subscription, please use "
            "the cancel API endpoint on /v1/subscriptions.",
            "items",
        )
    extra = []
    for idx, raw in enumerate(p.get("add_invoice_items") or []):
        extra.append(
            (resolve_price(ctx, raw, f"add_invoice_items[{idx}]", recurring=False), raw.get("quantity") or 1)
        )
    check_items(items, sub["billing_mode"]["type"], [(pr["currency"], "") for pr, _ in extra])
    redeem = {"customer": sub["customer"], "subscription": sub["id"], "start": store.now()}
    for idx, raw in enumerate(p.get("items") or []):
        if "discounts" in raw and not raw.get("deleted"):
            entries = disc.check(ctx, raw["discounts"], f"items[{idx}][discounts]", sub["currency"])
            target = next(i for i in items if i["id"] == raw["id"]) if raw.get("id") else added[idx]
            target["discounts"] = disc.redeem(ctx, entries, item=target["id"], **redeem)
    if "discounts" in p:
        entries = disc.check(ctx, p["discounts"], "discounts", sub["currency"])
        sub["discounts"] = disc.redeem(ctx, entries, item=None, **redeem)
    sub["items"]["data"] = items
    sub["items"]["total_count"] = len(items)
    sub["collection_method"], sub["days_until_due"] = method, days
    for key in ("default_payment_method", "description"):
        if key in p:
            sub[key] = p[key]
    if "metadata" in p:
        sub["metadata"] = merge_metadata(sub["metadata"], p["metadata"])
    if "cancel_at" in p:
        cancel_at = p["cancel_at"]
        ends = [i["current_period_end"] for i in items]
        if cancel_at == "min_period_end":
            cancel_at = min(ends)
        elif cancel_at == "max_period_end":
            cancel_at = max(ends)
        sub["cancel_at"], sub["cancel_at_period_end"] = cancel_at, False
        # Stripe: a cancel_at before the period ends prorates per this update's proration_behavior.
        store.private[sub["id"]]["cancel_proration"] = p.get("proration_behavior") or "create_prorations"
    if "cancel_at_period_end" in p:
        flag = bool(p["cancel_at_period_end"])
        sub["cancel_at_period_end"] = flag
        sub["cancel_at"] = min(i["current_period_end"] for i in items) if flag else None
    if p.get("cancellation_details"):
        sub["cancellation_details"].update(p["cancellation_details"])
    if "trial_end" in p and p["trial_end"] is not None:
        if p["trial_end"] == "now":
            sub["trial_end"], sub["status"] = store.now(), "active"
        else:
            sub["trial_end"], sub["status"] = p["trial_end"], "trialing"
    store.put(sub)
    previous = {k: before[k] for k in sub if before.get(k) != sub[k]}
    if previous:
        ctx.emit("customer.subscription.updated", sub, previous)
    return sub


def cancel_subscription(
    ctx: Ctx,
    sub: dict[str, Any],
    reason: str = "cancellation_requested",
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    now = ctx.store.now()
    sub["status"] = "canceled"
    sub["canceled_at"] = sub["ended_at"] = now
    sub["cancellation_details"] = {"comment": None, "feedback": None, **(details or {}), "reason": reason}
    ctx.store.put(sub)
    ctx.emit("customer.subscription.deleted", sub)
    return sub


@on_clock_time(_sub_owner)
def delete_subscription(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    sub = ctx.store.get("subscription", ctx.path["id"])
    if sub["status"] == "canceled":
        raise invalid(f"No such subscription: '{sub['id']}'; it has already been canceled.", "id")
    return cancel_subscription(ctx, sub, details=p.get("cancellation_details"))


def list_subscriptions(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for sub in ctx.store.newest_first("subscription"):
        with clock_time(ctx, sub["customer"]):
            rows.append(expire_if_due(ctx, sub))
    if p.get("customer"):
        rows = [s for s in rows if s["customer"] == p["customer"]]
    if p.get("price"):
        rows = [s for s in rows if any(i["price"]["id"] == p["price"] for i in s["items"]["data"])]
    if p.get("collection_method"):
        rows = [s for s in rows if s["collection_method"] == p["collection_method"]]
    status = p.get("status")
    if status is None:
        rows = [s for s in rows if s["status"] not in ("canceled", "incomplete_expired")]
    elif status == "ended":
        rows = [s for s in rows if s["status"] in ("canceled", "incomplete_expired")]
    elif status != "all":
        rows = [s for s in rows if s["status"] == status]
    return paginate(ctx, "subscription", rows, p, "/v1/subscriptions")


# subscription schedules ----------------------------------------------------------------------
_PHASE = Obj(
    fields={
        "items": Arr(required=True, item=_ITEM, max_items=20),
        "add_invoice_items": Arr(item=_INVOICE_ITEM, max_items=20),
        "automatic_tax": AUTOMATIC_TAX,
        # `iterations` was removed in 2025-09-30.clover (`duration` replaces it): unknown parameter.
        "end_date": Ts(words=("now",)),
        "start_date": Ts(words=("now",)),
        "trial_end": Ts(words=("now",)),
        "trial": Bool(),
        "collection_method": Str(enum=COLLECTION),
        "invoice_settings": Obj(fields={"days_until_due": Int(min=0, max=730), **_INVOICE_SETTINGS}),
        "default_payment_method": Str(),
        "description": Str(max_len=500),
        "metadata": METADATA,
        "proration_behavior": Str(enum=PRORATION),
        "billing_cycle_anchor": Str(enum=("automatic", "phase_start")),
        "currency": Str(),
        "duration": Obj(
            fields={"interval": Str(required=True, enum=INTERVALS), "interval_count": Int(min=1)}
        ),
    }
)
_SETTINGS = Obj(
    fields={
        "collection_method": Str(enum=COLLECTION),
        "default_payment_method": Str(),
        "description": Str(max_len=500),
        "invoice_settings": Obj(fields={"days_until_due": Int(min=0, max=730)}),
        "billing_cycle_anchor": Str(enum=("automatic", "phase_start")),
    }
)
_SCHEDULE = {
    "customer": Str(),
    "from_subscription": Str(),
    "start_date": Ts(words=("now",)),
    "end_behavior": Str(enum=("cancel", "none", "release", "renew")),
    "phases": Arr(item=_PHASE),
    "default_settings": _SETTINGS,
    "billing_mode": Obj(fields={"type": Str(required=True, enum=("classic", "flexible"))}),
    "metadata": METADATA,
    "expand": EXPAND,
}


def _phase_out(
    ctx: Ctx,
    raw: dict[str, Any],
    idx: int,
    start: int,
    last: bool,
    defaults: dict[str, Any],
    customer_id: str,
) -> dict[str, Any]:
    param = f"phases[{idx}]"
    prices = [
        resolve_price(ctx, it, f"{param}[items][{j}]", recurring=True) for j, it in enumerate(raw["items"])
    ]
    if not prices:
        raise missing_param(f"{param}[items]")
    for j, (price, it) in enumerate(zip(prices, raw["items"], strict=True)):
        if price["recurring"]["usage_type"] == "metered" and it.get("quantity") is not None:
            raise invalid(
                f"Quantity should not be specified where usage_type is `metered`. Remove quantity from "
                f"`{param}[items][{j}]`",
                f"{param}[items][{j}][quantity]",
            )
    extra = [
        resolve_price(ctx, it, f"{param}[add_invoice_items][{j}]", recurring=False)
        for j, it in enumerate(raw.get("add_invoice_items") or [])
    ]
    if raw.get("duration") and raw.get("end_date") is not None:
        raise exclusive(f"{param}[duration]", f"{param}[end_date]")
    rec = prices[0]["recurring"]
    if raw.get("end_date") is not None:
        end = ctx.store.now() if raw["end_date"] == "now" else raw["end_date"]
    elif raw.get("duration"):
        end = add_interval(start, raw["duration"]["interval"], raw["duration"].get("interval_count") or 1)
    elif last:
        end = add_interval(start, rec["interval"], rec["interval_count"])
    else:
        raise missing_param(f"{param}[end_date]")
    if end <= start:
        raise invalid("The phase end_date must be after its start date.", f"{param}[end_date]")
    method = raw.get("collection_method") or defaults.get("collection_method") or "charge_automatically"
    days = (raw.get("invoice_settings") or {}).get("days_until_due")
    if days is None:
        days = (defaults.get("invoice_settings") or {}).get("days_until_due")
    if method == "send_invoice" and days is None:
        raise missing_param(f"{param}[invoice_settings][days_until_due]")
    pm = raw.get("default_payment_method")
    check_pm(ctx, pm, customer_id, f"{param}[default_payment_method]")
    currencies = {p["currency"] for p in prices} | {p["currency"] for p in extra}
    if len(currencies) > 1:
        raise invalid(
            "Currency and interval fields must match across all plans on this subscription. Found "
            "mismatch in currency field.",
            f"{param}[items]",
        )
    currency = next(iter(currencies))
    phase_discounts = disc.check(ctx, raw.get("discounts"), f"{param}[discounts]", currency)
    item_discounts = [
        disc.check(ctx, it.get("discounts"), f"{param}[items][{j}][discounts]", currency)
        for j, it in enumerate(raw["items"])
    ]
    extra_discounts = [
        disc.check(ctx, it.get("discounts"), f"{param}[add_invoice_items][{j}][discounts]", currency)
        for j, it in enumerate(raw.get("add_invoice_items") or [])
    ]
    return {
        "add_invoice_items": [
            {
                "discounts": entries,
                "metadata": {},
                "period": {"end": {"type": "subscription_period_end"}, "start": {"type": "phase_start"}},
                "price": pr["id"],
                "quantity": it.get("quantity") or 1,
                "tax_rates": [],
            }
            for pr, it, entries in zip(
                extra, raw.get("add_invoice_items") or [], extra_discounts, strict=True
            )
        ],
        "application_fee_percent": None,
        "automatic_tax": automatic_tax(
            ctx.store.get("customer", customer_id),
            raw.get("automatic_tax"),
            f"{param}[automatic_tax][enabled]",
        ),
        "billing_cycle_anchor": raw.get("billing_cycle_anchor"),
        "collection_method": raw.get("collection_method"),
        "currency": next(iter(currencies)),
        "default_payment_method": pm,
        "default_tax_rates": [],
        "description": raw.get("description"),
        "discounts": phase_discounts,
        "end_date": end,
        "invoice_settings": {
            "account_tax_ids": None,
            "days_until_due": days,
            "issuer": None,
            **{k: raw["invoice_settings"].get(k) for k in _INVOICE_SETTINGS},
        }
        if raw.get("invoice_settings")
        else None,
        "items": [
            {
                "discounts": entries,
                "metadata": merge_metadata({}, it.get("metadata")),
                "price": pr["id"],
                "quantity": None if pr["recurring"]["usage_type"] == "metered" else (it.get("quantity") or 1),
                "tax_rates": [],
            }
            for pr, it, entries in zip(prices, raw["items"], item_discounts, strict=True)
        ],
        "metadata": merge_metadata({}, raw.get("metadata")),
        "on_behalf_of": None,
        "proration_behavior": raw.get("proration_behavior") or "create_prorations",
        "start_date": start,
        "transfer_data": None,
        "trial_end": raw.get("trial_end") if isinstance(raw.get("trial_end"), int) else None,
        "_days": days,
        "_method": method,
    }


@on_clock_time(_new_sched_owner)
def create_schedule(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    now = store.now()
    if p.get("customer") and p.get("from_subscription"):
        raise exclusive("customer", "from_subscription")
    if p.get("from_subscription"):
        return _schedule_from_subscription(ctx, p)
    if not p.get("customer"):
        raise missing_param("customer")
    customer = store.get("customer", p["customer"], "customer")
    phases_in = p.get("phases") or []
    if not phases_in:
        raise missing_param("phases")
    requested = p.get("start_date")
    start: int = now if requested is None or requested == "now" else int(requested)
    defaults = p.get("default_settings") or {}
    check_pm(
        ctx,
        defaults.get("default_payment_method"),
        customer["id"],
        "default_settings[default_payment_method]",
    )
    phases = []
    cursor = start
    for idx, raw in enumerate(phases_in):
        phase = _phase_out(ctx, raw, idx, cursor, idx == len(phases_in) - 1, defaults, customer["id"])
        phases.append(phase)
        cursor = phase["end_date"]
    billing_mode = (p.get("billing_mode") or {}).get("type") or "flexible"
    ident = store.new_id("sub_sched", 24)
    sched: dict[str, Any] = {
        "id": ident,
        "object": "subscription_schedule",
        "application": None,
        "billing_mode": {
            "flexible": {"proration_discounts": "included"} if billing_mode == "flexible" else None,
            "type": billing_mode,
            "updated_at": now,
        },
        "canceled_at": None,
        "completed_at": None,
        "created": now,
        "current_phase": None,
        "customer": customer["id"],
        "customer_account": None,
        "default_settings": {
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": defaults.get("billing_cycle_anchor") or "automatic",
            "collection_method": defaults.get("collection_method"),
            "default_payment_method": defaults.get("default_payment_method"),
            "description": defaults.get("description"),
            "invoice_settings": {
                "account_tax_ids": None,
                "days_until_due": (defaults.get("invoice_settings") or {}).get("days_until_due"),
                "issuer": {"type": "self"},
            },
            "on_behalf_of": None,
            "transfer_data": None,
        },
        "end_behavior": p.get("end_behavior") or "release",
        "livemode": False,
        "metadata": merge_metadata({}, p.get("metadata")),
        "phases": phases,
        "released_at": None,
        "released_subscription": None,
        "status": "not_started" if start > now else "active",
        "subscription": None,
        "test_clock": customer.get("test_clock"),
    }
    if start <= now:
        start_schedule(ctx, sched)
    store.put(sched)
    ctx.emit("subscription_schedule.created", public_schedule(sched))
    return public_schedule(sched)


def start_schedule(ctx: Ctx, sched: dict[str, Any], *, from_schedule: bool = False) -> dict[str, Any]:
    """Create the subscription of a schedule whose start has come, from its first phase."""
    store = ctx.store
    phases = sched["phases"]
    first = phases[0]
    sub_params: dict[str, Any] = {
        "customer": sched["customer"],
        "items": [
            {
                "price": it["price"],
                "discounts": it["discounts"],
                **({"quantity": it["quantity"]} if it["quantity"] is not None else {}),
            }
            for it in first["items"]
        ],
        "add_invoice_items": [
            {"price": it["price"], "quantity": it["quantity"], "discounts": it["discounts"]}
            for it in first["add_invoice_items"]
        ],
        "discounts": first["discounts"],
        "collection_method": first["_method"],
        "days_until_due": first["_days"] if first["_method"] == "send_invoice" else None,
        "default_payment_method": first["default_payment_method"]
        or sched["default_settings"]["default_payment_method"],
        "metadata": first["metadata"],
        "billing_mode": {"type": sched["billing_mode"]["type"]},
        "trial_end": first["trial_end"],
        "invoice_settings": {k: (first["invoice_settings"] or {}).get(k) for k in _INVOICE_SETTINGS},
    }
    customer = store.get("customer", sched["customer"])
    if (first.get("automatic_tax") or {}).get("enabled") and location_problem(customer) is None:
        sub_params["automatic_tax"] = {"enabled": True}  # a location lost since: Stripe disables it
    sub = build_subscription(
        ctx, sub_params, schedule_id=sched["id"], start=first["start_date"], from_schedule=from_schedule
    )
    store.private[sub["id"]]["cancel_proration"] = phases[-1]["proration_behavior"]
    sched["subscription"] = sub["id"]
    sched["status"] = "active"
    sched["current_phase"] = {"end_date": first["end_date"], "start_date": first["start_date"]}
    sub["cancel_at"] = phases[-1]["end_date"] if sched["end_behavior"] == "cancel" else None
    store.put(sub)
    return sub


def _schedule_from_subscription(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    for key in ("phases", "start_date", "end_behavior", "default_settings"):
        if key in p:
            raise invalid(f"You cannot set `{key}` if `from_subscription` is set.", key)
    sub = store.get("subscription", p["from_subscription"], "from_subscription")
    if sub["schedule"]:
        raise invalid(
            f"You cannot migrate a subscription that is already attached to a schedule: `{sub['schedule']}`.",
            "from_subscription",
        )
    now = store.now()
    first = sub["items"]["data"][0]
    ident = store.new_id("sub_sched", 24)
    phase = {
        "add_invoice_items": [],
        "application_fee_percent": None,
        "automatic_tax": copy.deepcopy(sub["automatic_tax"]),  # the phase keeps the subscription's
        "billing_cycle_anchor": None,
        "collection_method": sub["collection_method"],
        "currency": sub["currency"],
        "default_payment_method": sub["default_payment_method"],
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "end_date": first["current_period_end"],
        "invoice_settings": None,
        "items": [
            {
                "discounts": [],
                "metadata": i["metadata"],
                "price": i["price"]["id"],
                "quantity": i["quantity"],
                "tax_rates": [],
            }
            for i in sub["items"]["data"]
        ],
        "metadata": {},
        "on_behalf_of": None,
        "proration_behavior": "create_prorations",
        "start_date": first["current_period_start"],
        "transfer_data": None,
        # The phase made from a trialing subscription keeps its trial.
        "trial_end": sub["trial_end"] if sub["status"] == "trialing" else None,
        "_days": sub["days_until_due"],
        "_method": sub["collection_method"],
    }
    sched = {
        "id": ident,
        "object": "subscription_schedule",
        "application": None,
        "billing_mode": sub["billing_mode"],
        "canceled_at": None,
        "completed_at": None,
        "created": now,
        "current_phase": {"end_date": phase["end_date"], "start_date": phase["start_date"]},
        "customer": sub["customer"],
        "customer_account": None,
        "default_settings": {
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": "automatic",
            "collection_method": sub["collection_method"],
            "default_payment_method": sub["default_payment_method"],
            "description": None,
            "invoice_settings": {
                "account_tax_ids": None,
                "days_until_due": sub["days_until_due"],
                "issuer": {"type": "self"},
            },
            "on_behalf_of": None,
            "transfer_data": None,
        },
        "end_behavior": "release",
        "livemode": False,
        "metadata": merge_metadata({}, p.get("metadata")),
        "phases": [phase],
        "released_at": None,
        "released_subscription": None,
        "status": "active",
        "subscription": sub["id"],
        "test_clock": sub["test_clock"],
    }
    sub["schedule"] = ident
    store.put(sub)
    store.put(sched)
    ctx.emit("subscription_schedule.created", public_schedule(sched))
    return public_schedule(sched)


def public_schedule(sched: dict[str, Any]) -> dict[str, Any]:
    """The API view: phases without the sandbox's resolved settings."""
    out = dict(sched)
    out["phases"] = [{k: v for k, v in ph.items() if not k.startswith("_")} for ph in sched["phases"]]
    return out


def retrieve_schedule(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    return public_schedule(ctx.store.get("subscription_schedule", ctx.path["id"]))


@on_clock_time(_sched_owner)
def update_schedule(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    sched = store.get("subscription_schedule", ctx.path["id"])
    if sched["status"] in ("canceled", "completed", "released"):
        raise invalid(
            f"You cannot update a subscription schedule that is currently in the `{sched['status']}` status."
        )
    before = public_schedule(copy.deepcopy(sched))
    if "metadata" in p:
        sched["metadata"] = merge_metadata(sched["metadata"], p["metadata"])
    if p.get("end_behavior"):
        sched["end_behavior"] = p["end_behavior"]
    if "phases" in p:
        _replace_phases(ctx, sched, p["phases"] or [], p.get("proration_behavior") or "create_prorations")
    sub = store.find("subscription", sched["subscription"]) if sched["subscription"] else None
    if sub is not None and sched["status"] == "active":
        sub["cancel_at"] = sched["phases"][-1]["end_date"] if sched["end_behavior"] == "cancel" else None
        store.private[sub["id"]]["cancel_proration"] = sched["phases"][-1]["proration_behavior"]
        store.put(sub)
    store.put(sched)
    out = public_schedule(sched)
    ctx.emit("subscription_schedule.updated", out, {k: before[k] for k in out if before.get(k) != out[k]})
    return out


def _phase_items(phase: dict[str, Any]) -> list[tuple[str, int | None]]:
    return [(it["price"], it["quantity"]) for it in phase["items"]]


def _same_as_ended(ctx: Ctx, ended: dict[str, Any], raw: dict[str, Any], idx: int) -> bool:
    """Whether an update repeats an ended phase unchanged (same dates, prices and quantities)."""
    if raw.get("end_date") not in (None, ended["end_date"]) or raw.get("duration"):
        return False
    given = [
        (it.get("price"), it.get("quantity") if it.get("quantity") is not None else 1)
        for it in raw.get("items") or []
    ]
    had = [(price, qty if qty is not None else 1) for price, qty in _phase_items(ended)]
    return given == had


def _replace_phases(ctx: Ctx, sched: dict[str, Any], raws: list[dict[str, Any]], behavior: str) -> None:
    """Stripe's rules for a new phase list. Phases that already ended stay in `phases` as they were:
    an update may leave them out or repeat them unchanged, never change them. The first phase
    given after them is the current one and keeps its `start_date` ("You can not modify the start
    date of the current phase."). Phases are contiguous, and nothing new starts in the past: the
    current phase may end now or later. Changing the current phase's items applies them to the
    subscription now, prorated per the update's `proration_behavior`."""
    from .timeline import apply_phase, step_schedule

    store = ctx.store
    now = store.now()
    if not raws:
        raise missing_param("phases")
    if raws[0].get("start_date") is None:
        raise missing_param("phases[0][start_date]")
    active = sched["status"] == "active"
    ended = [ph for ph in sched["phases"] if active and ph["end_date"] <= now]
    current = next((ph for ph in sched["phases"] if ph["start_date"] <= now < ph["end_date"]), None)
    current_start = current["start_date"] if active and current else None
    idx = 0
    while idx < len(raws) and active and ended:
        given = raws[idx].get("start_date")
        if given is None or given == "now" or (current_start is not None and given >= current_start):
            break
        match = next((ph for ph in ended if ph["start_date"] == given), None)
        if match is None or not _same_as_ended(ctx, match, raws[idx], idx):
            raise invalid(
                f"phases[{idx}] changes or adds a phase before the current one (start_date {given}); a phase "
                "that has already ended cannot be changed or removed. Repeat ended phases unchanged or leave "
                f"them out, and start the list with the current phase (start_date {current_start}).",
                f"phases[{idx}]",
            )
        idx += 1
    rest = raws[idx:]
    if not rest:
        raise invalid(
            f"The phases must include the current phase (start_date {current_start}); only ended phases "
            "were given.",
            "phases",
        )
    given = rest[0].get("start_date")
    start: int
    if active:
        if (current_start if given is None and idx else given) != current_start or current_start is None:
            raise invalid(
                "You can not modify the start date of the current phase.", f"phases[{idx}][start_date]"
            )
        start = current_start
    else:
        start = now if given == "now" else int(given or 0)
        if start < now:
            raise invalid(
                f"phases[{idx}][start_date] ({start}) is in the past; a schedule that has not started can "
                f"start now or later (now is {now}).",
                f"phases[{idx}][start_date]",
            )
    customer = store.get("customer", sched["customer"])
    defaults = {
        "collection_method": sched["default_settings"]["collection_method"],
        "invoice_settings": {
            "days_until_due": sched["default_settings"]["invoice_settings"]["days_until_due"]
        },
    }
    phases: list[dict[str, Any]] = []
    cursor = start
    for j, raw in enumerate(rest):
        i = idx + j
        if j > 0 and raw.get("start_date") is not None:
            wanted = now if raw["start_date"] == "now" else raw["start_date"]
            if wanted != cursor:
                raise invalid(
                    f"phases[{i}][start_date] ({wanted}) must equal the end_date of phases[{i - 1}] "
                    f"({cursor}): phases are contiguous, each starting when the previous one ends.",
                    f"phases[{i}][start_date]",
                )
        phase = _phase_out(ctx, raw, i, cursor, j == len(rest) - 1, defaults, customer["id"])
        if active and j == 0 and phase["end_date"] < now:
            raise invalid(
                f"phases[{i}][end_date] ({phase['end_date']}) is in the past: the current phase can end now "
                f"or later (now is {now}), and a new phase cannot start in the past.",
                f"phases[{i}][end_date]",
            )
        phases.append(phase)
        cursor = phase["end_date"]
    sched["phases"] = ended + phases
    if not active:
        if phases[0]["start_date"] <= now:
            start_schedule(ctx, sched)
        return
    sub = store.get("subscription", sched["subscription"])
    now_phase = phases[0]
    held = [(i["price"]["id"], i["quantity"]) for i in sub["items"]["data"]]
    if held != _phase_items(now_phase):
        apply_phase(ctx, sub, now_phase, now, behavior, add_ons=False)
    sched["current_phase"] = {"end_date": now_phase["end_date"], "start_date": now_phase["start_date"]}
    if now_phase["end_date"] <= now:
        step_schedule(ctx, sched, now)


@on_clock_time(_sched_owner)
def cancel_schedule(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    sched = store.get("subscription_schedule", ctx.path["id"])
    if sched["status"] not in ("not_started", "active"):
        raise invalid(
            f"You cannot cancel a subscription schedule that is currently in the `{sched['status']}` status."
        )
    sched["status"] = "canceled"
    sched["canceled_at"] = store.now()
    sched["current_phase"] = None
    if sched["subscription"]:
        sub = store.get("subscription", sched["subscription"])
        if sub["status"] != "canceled":
            cancel_subscription(ctx, sub)
    store.put(sched)
    out = public_schedule(sched)
    ctx.emit("subscription_schedule.canceled", out)
    return out


@on_clock_time(_sched_owner)
def release_schedule(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    sched = store.get("subscription_schedule", ctx.path["id"])
    if sched["status"] not in ("not_started", "active"):
        raise invalid(
            f"You cannot release a subscription schedule that is currently in the `{sched['status']}` status."
        )
    sched["status"] = "released"
    sched["released_at"] = store.now()
    sched["current_phase"] = None
    if sched["subscription"]:
        sub = store.get("subscription", sched["subscription"])
        sub["schedule"] = None
        if not p.get("preserve_cancel_date", True) or sched["end_behavior"] == "cancel":
            sub["cancel_at"] = sub["cancel_at"] if p.get("preserve_cancel_date") else None
        store.put(sub)
        sched["released_subscription"] = sub["id"]
        sched["subscription"] = None
    store.put(sched)
    out = public_schedule(sched)
    ctx.emit("subscription_schedule.released", out)
    return out


def list_schedules(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    rows = [
        public_schedule(s)
        for s in ctx.store.newest_first("subscription_schedule")
        if not p.get("customer") or s["customer"] == p["customer"]
    ]
    if p.get("scheduled"):
        rows = [s for s in rows if s["status"] == "not_started"]
    return paginate(ctx, "subscription_schedule", rows, p, "/v1/subscription_schedules")


# invoices ------------------------------------------------------------------------------------
def _subscription_of(invoice: dict[str, Any]) -> str | None:
    """The subscription an invoice bills (None for a one-off invoice, resources/invoicing.py)."""
    return ((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription")


def list_invoices(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    rows = list(ctx.store.newest_first("invoice"))
    for key in ("customer", "status", "collection_method"):
        if p.get(key):
            rows = [r for r in rows if r[key] == p[key]]
    if p.get("subscription"):
        rows = [r for r in rows if _subscription_of(r) == p["subscription"]]
    return paginate(ctx, "invoice", rows, p, "/v1/invoices")


ENDPOINTS = [
    Endpoint("POST", "/v1/subscriptions", _SUB, create_subscription),
    Endpoint(
        "GET",
        "/v1/subscriptions",
        {
            **LIST,
            "customer": Str(),
            "price": Str(),
            "status": Str(enum=SUB_STATUSES),
            "collection_method": Str(enum=COLLECTION),
        },
        list_subscriptions,
    ),
    Endpoint(
        "GET",
        "/v1/subscriptions/search",
        SEARCH,
        lambda ctx, p: run_search(ctx, "subscription", p, "/v1/subscriptions/search"),
    ),
    Endpoint("GET", "/v1/subscriptions/{id}", RETRIEVE, retrieve_subscription),
    Endpoint("POST", "/v1/subscriptions/{id}", _SUB_UPDATE, update_subscription),
    Endpoint(
        "DELETE",
        "/v1/subscriptions/{id}",
        {
            "cancellation_details": Obj(fields={"comment": Str(max_len=5000), "feedback": Str()}),
            "invoice_now": Bool(),
            "prorate": Bool(),
            "expand": EXPAND,
        },
        delete_subscription,
    ),
    Endpoint("POST", "/v1/subscription_schedules", _SCHEDULE, create_schedule),
    Endpoint(
        "GET", "/v1/subscription_schedules", {**LIST, "customer": Str(), "scheduled": Bool()}, list_schedules
    ),
    Endpoint("GET", "/v1/subscription_schedules/{id}", RETRIEVE, retrieve_schedule),
    Endpoint(
        "POST",
        "/v1/subscription_schedules/{id}",
        {
            "metadata": METADATA,
            "end_behavior": Str(enum=("cancel", "none", "release", "renew")),
            "phases": Arr(item=_PHASE),
            "proration_behavior": Str(enum=PRORATION),
            "expand": EXPAND,
        },
        update_schedule,
    ),
    Endpoint(
        "POST",
        "/v1/subscription_schedules/{id}/cancel",
        {"invoice_now": Bool(), "prorate": Bool(), "expand": EXPAND},
        cancel_schedule,
    ),
    Endpoint(
        "POST",
        "/v1/subscription_schedules/{id}/release",
        {"preserve_cancel_date": Bool(), "expand": EXPAND},
        release_schedule,
    ),
    Endpoint(
        "GET",
        "/v1/invoices",
        {**LIST, "customer": Str(), "subscription": Str(), "collection_method": Str(), "status": Str()},
        list_invoices,
    ),
    Endpoint(
        "GET",
        "/v1/invoices/search",
        SEARCH,
        lambda ctx, p: run_search(ctx, "invoice", p, "/v1/invoices/search"),
    ),
    Endpoint("GET", "/v1/invoices/{id}", RETRIEVE, lambda ctx, p: ctx.store.get("invoice", ctx.path["id"])),
]

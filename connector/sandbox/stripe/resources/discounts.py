"""Discounts: coupons redeemed on subscriptions, their items, invoice items and schedule phases,
and what they take off the invoices a subscription opens.

Stripe (API reference: Coupons, Discounts, Subscriptions `discounts`, Invoice line
`discount_amounts`, Invoice `total_discount_amounts`): `discounts` is a list of
`{coupon | discount | promotion_code}`; redeeming a coupon makes a Discount (`di_…`) with `start`
and, for `repeating`, `end` = start + duration_in_months. A discount applies to invoices created
while it is active: `once` to the first invoice only, `repeating` until its end, `forever` always.
A percent coupon takes that share of each line it covers (rounded to the minor unit); an amount
coupon on an item takes at most the line's amount, on the subscription it is spread over the lines
in proportion to their amounts. Invoice line `amount` stays the amount before discounts; the
invoice's `subtotal` is before and `total` after them.

Simplified: prorations are not discounted (`discountable: false` on them), `applies_to` products
are not checked, promotion codes and existing discount ids are not modelled (refused as missing).
"""

from __future__ import annotations

import copy
from decimal import ROUND_HALF_UP
from decimal import Decimal as D
from typing import Any

from ..common import Ctx
from ..errors import StripeError, invalid

FIELDS = ("coupon", "discount", "promotion_code")


def check(
    ctx: Ctx, entries: list[dict[str, Any]] | None, param: str, currency: str | None
) -> list[dict[str, Any]]:
    """Validate a `discounts` parameter; returns its entries as Stripe echoes them on phases."""
    out = []
    seen: set[str] = set()
    for idx, entry in enumerate(entries or []):
        where = f"{param}[{idx}]"
        given = [f for f in FIELDS if entry.get(f)]
        if len(given) != 1:
            raise invalid("You must specify exactly one of `coupon`, `discount`, or `promotion_code`.", where)
        if given[0] != "coupon":
            kind = "discount" if given[0] == "discount" else "promotion code"
            raise StripeError(
                f"No such {kind}: '{entry[given[0]]}'", code="resource_missing", param=f"{where}[{given[0]}]"
            )
        coupon = ctx.store.get("coupon", entry["coupon"], f"{where}[coupon]")
        if not coupon["valid"]:
            raise invalid(f"Coupon is not valid: {coupon['id']}.", f"{where}[coupon]")
        if coupon["amount_off"] is not None and currency and coupon["currency"] != currency:
            raise invalid(
                f"The coupon {coupon['id']} is in {coupon['currency']}, but this subscription is in "
                f"{currency}. Use a coupon in {currency} or a percent_off coupon.",
                f"{where}[coupon]",
            )
        if coupon["id"] in seen:
            raise invalid(f"The coupon {coupon['id']} is applied more than once.", f"{where}[coupon]")
        seen.add(coupon["id"])
        out.append({"coupon": coupon["id"], "discount": None, "promotion_code": None})
    return out


def redeem(
    ctx: Ctx,
    entries: list[dict[str, Any]],
    *,
    customer: str,
    subscription: str | None,
    item: str | None,
    start: int,
) -> list[str]:
    """Discounts (`di_…`) for validated entries, starting at `start`; their ids."""
    from .billing import add_interval

    store = ctx.store
    ids = []
    for entry in entries:
        coupon = store.get("coupon", entry["coupon"])
        coupon["times_redeemed"] += 1
        store.put(coupon)
        end = None
        if coupon["duration"] == "repeating":
            end = add_interval(start, "month", int(coupon["duration_in_months"]))
        ident = store.new_id("di", 24)
        discount: dict[str, Any] = {
            "id": ident,
            "object": "discount",
            "checkout_session": None,
            "coupon": copy.deepcopy(coupon),
            "customer": customer,
            "end": end,
            "invoice": None,
            "invoice_item": None,
            "promotion_code": None,
            "start": start,
            "subscription": subscription,
            "subscription_item": item,
        }
        store.private[ident]["uses"] = 0
        store.put(discount)
        ids.append(ident)
    return ids


def _active(ctx: Ctx, ids: list[str], at: int) -> list[dict[str, Any]]:
    found = []
    for ident in ids:
        discount = ctx.store.find("discount", ident)
        if discount is None or discount["start"] > at:
            continue
        coupon = discount["coupon"]
        if coupon["duration"] == "once" and ctx.store.private[ident].get("uses", 0) >= 1:
            continue
        if discount["end"] is not None and at >= discount["end"]:
            continue
        found.append(discount)
    return found


def _percent(amount: int, coupon: dict[str, Any]) -> int:
    share = D(amount) * D(str(coupon["percent_off"])) / D(100)
    return int(share.quantize(D(1), rounding=ROUND_HALF_UP))


def apply(
    ctx: Ctx, lines: list[dict[str, Any]], own: list[list[str]], invoice_level: list[str], at: int
) -> tuple[int, list[dict[str, Any]], list[str]]:
    """Take the active discounts off the invoice's lines (each line's own discounts first, then the
    subscription's); returns (total discount, total_discount_amounts, invoice-level discount ids)."""
    used: dict[str, int] = {}
    left = [line["amount"] if line["discountable"] else 0 for line in lines]
    for index, (line, ids) in enumerate(zip(lines, own, strict=True)):
        for discount in _active(ctx, ids, at):
            coupon = discount["coupon"]
            take = _percent(left[index], coupon) if coupon["percent_off"] else coupon["amount_off"]
            take = max(0, min(take, left[index]))
            _record(line, discount, take, used)
            left[index] -= take
    top = _active(ctx, invoice_level, at)
    for discount in top:
        coupon = discount["coupon"]
        base = sum(x for x in left if x > 0)
        if coupon["percent_off"]:
            shares = [_percent(x, coupon) if x > 0 else 0 for x in left]
        else:
            total = min(int(coupon["amount_off"]), base)
            shares = [total * x // base if base and x > 0 else 0 for x in left]
            if base and shares:
                last = max(i for i, x in enumerate(left) if x > 0) if any(x > 0 for x in left) else 0
                shares[last] += total - sum(shares)
        for index, take in enumerate(shares):
            _record(lines[index], discount, take, used)
            left[index] -= take
    for ident in used:
        ctx.store.private[ident]["uses"] = ctx.store.private[ident].get("uses", 0) + 1
    amounts = [{"amount": amount, "discount": ident} for ident, amount in used.items()]
    return sum(used.values()), amounts, [d["id"] for d in top]


def _record(line: dict[str, Any], discount: dict[str, Any], take: int, used: dict[str, int]) -> None:
    used[discount["id"]] = used.get(discount["id"], 0) + take
    if discount["id"] not in line["discounts"]:
        line["discounts"].append(discount["id"])
    line["discount_amounts"].append({"amount": take, "discount": discount["id"]})

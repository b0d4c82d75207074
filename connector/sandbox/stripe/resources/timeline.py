"""What happens to a test clock's billing objects while its time advances.

`run_until` walks from the clock's frozen time to the target, one moment at a time, earliest first;
at each moment, in this order: schedules (a `not_started` schedule starts and creates its
subscription; an active one moves to its next phase, or at the end of its last phase completes
per `end_behavior`: `cancel` cancels the subscription, `release`/`none` release it), then
subscriptions reaching `cancel_at`, then renewals (items whose period ends: a new period and a
`subscription_cycle` invoice, one line per renewing item plus the customer's pending invoice items).

A phase change replaces the subscription's items by the phase's (same price = same item, new
quantity); with `create_prorations` (the default) the unused time of changed items is credited
and the remaining time of the new quantities charged, as pending invoice items billed on the next
invoice; `always_invoice` bills them at once; `none` creates nothing. A change on a period
boundary has no remaining time, so it prorates nothing. A cancellation inside a period credits the
unused time on a final invoice unless prorations were turned off.

Left out: payment retries and dunning (an automatically charged invoice without a payment method
stays open and the subscription is `past_due`), customer balance applied to later invoices,
trials inside phases and taxes. Usage: a renewal bills a metered item's ended period in arrears, its
meter's aggregate of the customer's events in that period times the price's unit amount
(resources/meters.py `usage`); other invoices bill metered items 0. Discounts: resources/discounts.py
(a phase's discounts are redeemed again as it starts, so a repeating coupon restarts its months)."""

from __future__ import annotations

import copy
from decimal import ROUND_HALF_EVEN
from decimal import Decimal as D
from typing import Any

from ..common import Ctx
from ..validation import merge_metadata
from . import discounts, meters
from .billing import (
    Span,
    _unit_total,
    add_interval,
    cancel_subscription,
    mark_unpaid,
    new_item,
    open_invoice,
    period,
    start_schedule,
)
from .testclocks import customers_of

LIVE = ("active", "trialing", "past_due", "incomplete")
MAX_STEPS = 10_000


def run_until(ctx: Ctx, clock: dict[str, Any], target: int) -> None:
    store = ctx.store
    ids = {c["id"] for c in customers_of(ctx, clock["id"])}
    for _ in range(MAX_STEPS):
        moment = _next_moment(ctx, ids, target)
        if moment is None:
            return
        with store.frozen_at(moment):
            for sched in _schedules(ctx, ids):
                if _boundary(sched) == moment:
                    step_schedule(ctx, sched, moment)
            for sub in _subscriptions(ctx, ids):
                if sub["cancel_at"] is not None and sub["cancel_at"] <= moment:
                    cancel_at_time(ctx, sub, sub["cancel_at"])
            for sub in _subscriptions(ctx, ids):
                if any(i["current_period_end"] <= moment for i in sub["items"]["data"]):
                    renew(ctx, sub, moment)
    raise RuntimeError("test clock advance did not settle")


def _schedules(ctx: Ctx, ids: set[str]) -> list[dict[str, Any]]:
    return [
        s
        for s in ctx.store.all("subscription_schedule")
        if s["customer"] in ids and s["status"] in ("not_started", "active")
    ]


def _subscriptions(ctx: Ctx, ids: set[str]) -> list[dict[str, Any]]:
    return [s for s in ctx.store.all("subscription") if s["customer"] in ids and s["status"] in LIVE]


def _boundary(sched: dict[str, Any]) -> int | None:
    if sched["status"] == "not_started":
        return int(sched["phases"][0]["start_date"])
    current = sched["current_phase"]
    return int(current["end_date"]) if current else None


def _next_moment(ctx: Ctx, ids: set[str], target: int) -> int | None:
    times: list[int] = []
    for sched in _schedules(ctx, ids):
        edge = _boundary(sched)
        if edge is not None:
            times.append(edge)
    for sub in _subscriptions(ctx, ids):
        if sub["cancel_at"] is not None:
            times.append(sub["cancel_at"])
        times.extend(i["current_period_end"] for i in sub["items"]["data"])
    due = [t for t in times if t <= target]
    return min(due) if due else None


# schedules -----------------------------------------------------------------------------------
def step_schedule(ctx: Ctx, sched: dict[str, Any], moment: int) -> None:
    """A schedule at a boundary: start, next phase, or end per `end_behavior`."""
    from .billing import public_schedule

    store = ctx.store
    if sched["status"] == "not_started":
        start_schedule(ctx, sched, from_schedule=True)
        store.put(sched)
        ctx.emit("subscription_schedule.updated", public_schedule(sched))
        return
    sub = store.get("subscription", sched["subscription"])
    following = [ph for ph in sched["phases"] if ph["start_date"] >= moment]
    if following:
        phase = following[0]
        apply_phase(ctx, sub, phase, moment, phase["proration_behavior"], add_ons=True)
        sched["current_phase"] = {"end_date": phase["end_date"], "start_date": phase["start_date"]}
        store.put(sched)
        ctx.emit("subscription_schedule.updated", public_schedule(sched))
        return
    sched["current_phase"] = None
    if sched["end_behavior"] == "cancel":
        if sub["status"] in LIVE:
            cancel_at_time(ctx, sub, moment)
        sched["status"], sched["completed_at"] = "completed", moment
        store.put(sched)
        ctx.emit("subscription_schedule.completed", public_schedule(sched))
        return
    sched["status"], sched["released_at"] = "released", moment
    sched["released_subscription"], sched["subscription"] = sub["id"], None
    sub["schedule"], sub["cancel_at"] = None, None
    store.put(sub)
    store.put(sched)
    ctx.emit("subscription_schedule.released", public_schedule(sched))


def apply_phase(
    ctx: Ctx, sub: dict[str, Any], phase: dict[str, Any], moment: int, behavior: str, *, add_ons: bool
) -> None:
    """Replace the subscription's items by the phase's at `moment`, prorating per `behavior`."""
    store = ctx.store
    before = copy.deepcopy(sub)
    old = {i["price"]["id"]: i for i in sub["items"]["data"]}
    items: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for idx, raw in enumerate(phase["items"]):
        price = store.get("price", raw["price"])
        kept = old.pop(raw["price"], None)
        qty = None if price["recurring"]["usage_type"] == "metered" else (raw["quantity"] or 1)
        if kept is not None:
            if kept["quantity"] != qty:
                pending += _prorate(ctx, sub, kept, kept["quantity"], -1, moment, behavior)
                pending += _prorate(ctx, sub, kept, qty, 1, moment, behavior)
            kept["quantity"] = qty
            items.append(kept)
            continue
        item = new_item(ctx, sub["id"], price, {"quantity": qty}, f"phases[items][{idx}]")
        rec = price["recurring"]
        twin = next(
            (
                i
                for i in sub["items"]["data"]
                if (i["price"]["recurring"]["interval"], i["price"]["recurring"]["interval_count"])
                == (rec["interval"], rec["interval_count"])
            ),
            None,
        )
        if twin is not None and twin["current_period_end"] > moment:
            item["current_period_start"] = twin["current_period_start"]
            item["current_period_end"] = twin["current_period_end"]
            pending += _prorate(ctx, sub, item, qty, 1, moment, behavior)
        else:  # a cycle of its own starts now, billed in full on the next invoice
            item["current_period_start"] = moment
            item["current_period_end"] = add_interval(moment, rec["interval"], rec["interval_count"])
            pending.append(_invoice_item(ctx, sub, item, qty, _unit_total(price, qty), False, moment))
        items.append(item)
    for gone in old.values():
        pending += _prorate(ctx, sub, gone, gone["quantity"], -1, moment, behavior)
    if add_ons:
        for raw in phase["add_invoice_items"]:
            price = store.get("price", raw["price"])
            pending.append(
                _invoice_item(
                    ctx, sub, None, raw["quantity"], _unit_total(price, raw["quantity"]), False, moment, price
                )
            )
    # The phase's discounts replace the subscription's and its items' (redeemed as the phase starts).
    redeem = {"customer": sub["customer"], "subscription": sub["id"], "start": moment}
    for item, raw in zip(items, phase["items"], strict=True):
        item["discounts"] = discounts.redeem(ctx, raw["discounts"], item=item["id"], **redeem)
    sub["discounts"] = discounts.redeem(ctx, phase["discounts"], item=None, **redeem)
    sub["items"]["data"] = items
    sub["items"]["total_count"] = len(items)
    sub["collection_method"] = phase["_method"]
    sub["days_until_due"] = phase["_days"] if phase["_method"] == "send_invoice" else None
    if phase["default_payment_method"]:
        sub["default_payment_method"] = phase["default_payment_method"]
    sub["metadata"] = merge_metadata(sub["metadata"], phase["metadata"])
    store.put(sub)
    if behavior == "always_invoice" and pending:
        _invoice_now(ctx, sub, "subscription_update")
    previous = {k: before[k] for k in sub if before.get(k) != sub[k]}
    ctx.emit("customer.subscription.updated", sub, previous)


def _prorate(
    ctx: Ctx,
    sub: dict[str, Any],
    item: dict[str, Any],
    qty: int | None,
    sign: int,
    moment: int,
    behavior: str,
) -> list[dict[str, Any]]:
    """One proration for `item` at `qty` over the rest of its period: a credit (sign -1) for time no
    longer used or a charge (+1) for the time left; nothing with `none` or when no time is left."""
    start, end = item["current_period_start"], item["current_period_end"]
    if behavior == "none" or qty is None or moment >= end or moment <= start:
        return []
    amount = Span(moment, end, start, end).amount(_unit_total(item["price"], qty))
    if amount == 0:
        return []
    return [_invoice_item(ctx, sub, item, qty, sign * amount, True, moment)]


def _invoice_item(
    ctx: Ctx,
    sub: dict[str, Any],
    item: dict[str, Any] | None,
    qty: int | None,
    amount: int,
    proration: bool,
    moment: int,
    price: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A pending invoice item (Stripe's `invoiceitem`), picked up by the subscription's next invoice."""
    store = ctx.store
    price = price or (item["price"] if item else None)
    assert price is not None
    end = item["current_period_end"] if item and proration else moment
    ii = {
        "id": store.new_id("ii", 24),
        "object": "invoiceitem",
        "amount": amount,
        "currency": price["currency"],
        "customer": sub["customer"],
        "date": moment,
        "description": None,
        "discountable": not proration,
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "parent": {
            "type": "subscription_details",
            "subscription_details": {
                "subscription": sub["id"],
                "subscription_item": item["id"] if item else None,
            },
        },
        "period": {"start": moment, "end": end},
        "pricing": {
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": price["unit_amount_decimal"],
        },
        "proration": proration,
        "quantity": qty if qty is not None else 0,
        "test_clock": sub.get("test_clock"),
    }
    store.put(ii)
    return ii


def _pending_for(ctx: Ctx, sub: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        ii
        for ii in ctx.store.all("invoiceitem")
        if ii["invoice"] is None
        and ((ii.get("parent") or {}).get("subscription_details") or {}).get("subscription") == sub["id"]
    ]


def _invoice_now(
    ctx: Ctx,
    sub: dict[str, Any],
    reason: str,
    spans: dict[str, list[Span]] | None = None,
    billed: tuple[int, int] | None = None,
    used: dict[str, tuple[int, int, tuple[int, int]]] | None = None,
) -> dict[str, Any]:
    store = ctx.store
    customer = store.get("customer", sub["customer"])
    invoice = open_invoice(
        ctx,
        sub,
        customer,
        [],
        reason,
        spans or {},
        pending=_pending_for(ctx, sub),
        only_spanned=True,
        period=billed,
        used=used,
    )
    sub["latest_invoice"] = invoice["id"]
    mark_unpaid(sub, invoice)
    store.put(sub)
    return invoice


# subscriptions -------------------------------------------------------------------------------
def renew(ctx: Ctx, sub: dict[str, Any], moment: int) -> None:
    """Items whose period ended start the next one, billed on a `subscription_cycle` invoice."""
    before = copy.deepcopy(sub)
    spans: dict[str, list[Span]] = {}
    used: dict[str, tuple[int, int, tuple[int, int]]] = {}
    last_start = moment
    for item in sub["items"]["data"]:
        if item["current_period_end"] > moment:
            continue
        rec = item["price"]["recurring"]
        if rec["usage_type"] == "metered" and rec.get("meter"):
            ended = (item["current_period_start"], item["current_period_end"])
            quantity = meters.usage(ctx, rec["meter"], sub["customer"], *ended)
            unit = D(item["price"]["unit_amount_decimal"] or "0")
            amount = int((unit * quantity).quantize(D(1), rounding=ROUND_HALF_EVEN))
            used[item["id"]] = (int(quantity), amount, ended)
        last_start = item["current_period_start"]
        lo, hi = period(sub["billing_cycle_anchor"], moment, moment, rec["interval"], rec["interval_count"])
        if lo != moment:  # the anchor does not fall here (a trial ended): the cycle restarts now
            lo, hi = moment, add_interval(moment, rec["interval"], rec["interval_count"])
        item["current_period_start"], item["current_period_end"] = lo, hi
        spans[item["id"]] = [Span(lo, hi, lo, hi)]
    if sub["status"] == "trialing":
        sub["status"] = "active"
    _invoice_now(ctx, sub, "subscription_cycle", spans, (last_start, moment), used)
    previous = {k: before[k] for k in sub if before.get(k) != sub[k]}
    ctx.emit("customer.subscription.updated", sub, previous)


def cancel_at_time(ctx: Ctx, sub: dict[str, Any], moment: int) -> None:
    """The subscription ends at `moment`; inside a period the unused time is credited on a final
    invoice (with the pending items) unless prorations are off for this cancellation."""
    behavior = ctx.store.private[sub["id"]].get("cancel_proration", "create_prorations")
    for item in sub["items"]["data"]:
        _prorate(ctx, sub, item, item["quantity"], -1, moment, behavior)
    if _pending_for(ctx, sub):
        _invoice_now(ctx, sub, "subscription_update")
    with ctx.store.frozen_at(moment):
        cancel_subscription(ctx, sub, reason="cancellation_requested")

"""From a contract's planned phases and the live schedule, the one update Stripe accepts.

Pure. Stripe's rules for updating a schedule's phases (its API reference and the subscription
schedules guide): past phases can be omitted and are never changed; the first phase sent is the
current one and keeps its `start_date`; each later phase starts where the one before ends; a
change to the current phase's items applies now, prorated per `proration_behavior`. So:
- phases of the plan that ended before now are left to Stripe's history;
- a change dated today or earlier starts now: the current phase ends `now` and the new quantities
  follow (same day as the current phase began: its items are replaced instead, so a same-day
  second amendment never stacks a phase); the time from its date to now is billed apart
  (`order_rules.catch_up`), never by rewriting a phase already billed;
- a termination dated today or earlier cancels the subscription now;
- a change dated inside a running free trial is refused; a later one keeps the trial on the
  current phase.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from connector.sync.money import from_minor_units
from connector.sync.order_rules.contract import ContractPlan, Phase, PhaseItem
from connector.sync.order_rules.dates import midnight_utc

Proration = Literal["create_prorations", "none", "always_invoice"]


@dataclass(frozen=True)
class LiveSchedule:
    """What the connector reads of the schedule before it updates it."""

    id: str
    status: str  # not_started, active, completed, released, canceled
    current_start: int | None  # the current phase's start (None: not started)
    first_start: int  # the first phase's start
    current_items: tuple[dict[str, Any], ...]  # the current phase's items as Stripe lists them
    settings: Mapping[str, Any]  # collection settings every phase repeats
    clock_time: int | None = None  # a test clock's frozen time (test mode): Stripe's "now" for it
    trial_end: int | None = None  # the current (or first, not started) phase's trial end
    subscription: str | None = None  # the subscription it bills through (None: not started)
    customer: str | None = None


@dataclass(frozen=True)
class UpdatePhases:
    params: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class CancelNow:
    """A termination dated today or earlier: the subscription ends now."""

    summary: str


@dataclass(frozen=True)
class Refused:
    code: str
    problem: str
    fix: str


def _day(ts: int) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def _items(phase: Phase, price_ids: Mapping[str, str]) -> list[dict[str, Any]]:
    items = []
    for item in phase.items:
        param: dict[str, Any] = {
            "price": price_ids[item.price.order_item_id],
            "metadata": {"salesforce_order_item_id": item.root_id},
        }
        if item.quantity is not None:
            param["quantity"] = item.quantity
        if item.coupon is not None:
            param["discounts"] = item.coupon.discounts()
        items.append(param)
    return items


def _item_text(item: PhaseItem, names: Mapping[str, str]) -> str:
    spec = item.price.spec
    amount = from_minor_units(spec.unit_amount, spec.unit_amount_decimal, spec.currency)
    quantity = "metered" if item.quantity is None else f"× {item.quantity}"
    off = f" less {item.coupon.name()}" if item.coupon is not None else ""
    return f"{names.get(spec.product_sf_id, spec.product_sf_id)} {quantity} at {amount}{off}"


def describe_phases(phases: tuple[Phase, ...] | list[Phase], names: Mapping[str, str] | None = None) -> str:
    """The phase list in words: what a dry run shows and the Order's sync message says."""
    parts = []
    for p in phases:
        until = f"to {p.end.isoformat()}" if p.end else "on (evergreen)"
        items = ", ".join(_item_text(i, names or {}) for i in p.items)
        parts.append(f"{p.start.isoformat()} {until}: {items}")
    return "; ".join(parts)


def schedule_update(
    plan: ContractPlan,
    live: LiveSchedule,
    now: int,
    price_ids: Mapping[str, str],
    metadata: Mapping[str, str],
    proration: Proration,
) -> UpdatePhases | CancelNow | Refused:
    now = live.clock_time if live.clock_time is not None else now
    if live.status not in ("active", "not_started"):
        return Refused(
            "schedule_ended",
            f"Stripe subscription schedule {live.id} is {live.status}, so the contract no longer bills",
            "sell a new contract; the connector never restarts billing that ended in Stripe",
        )
    ends = plan.ends
    if ends is not None and midnight_utc(ends) <= now:
        if plan.kind == "termination" and live.status == "active":
            return CancelNow(f"terminated as of {plan.effective.isoformat()}: the subscription ends now")
        return Refused(
            "term_over",
            f"the contract's term ended {ends.isoformat()} (exclusive), so there is nothing left to bill",
            "bill the past period with a Stripe invoice",
        )
    floor = live.current_start if live.current_start is not None else live.first_start
    trial = live.trial_end if live.trial_end is not None and live.trial_end > now else None
    if trial is not None and midnight_utc(plan.effective) < trial:
        return Refused(
            "during_trial",
            f"the Order takes effect {plan.effective.isoformat()}, during the contract's free trial (until "
            f"{_day(trial).isoformat()}); the connector does not change a trial's items",
            f"date the change on or after {_day(trial).isoformat()}, or clear the trial on the first Order "
            "and change the subscription in Stripe by hand",
        )
    ahead = [p for p in plan.phases if p.end is None or midnight_utc(p.end) > max(now, floor)]
    if live.status == "not_started":
        ahead = [p for p in plan.phases if p.end is None or midnight_utc(p.end) > floor]
    phases: list[dict[str, Any]] = []
    late = ""
    base = {**live.settings, "metadata": dict(metadata)}
    for index, phase in enumerate(ahead):
        params: dict[str, Any] = {
            **base,
            "items": _items(phase, price_ids),
            "metadata": {**metadata, "salesforce_phase_order_id": phase.order_id},
            "proration_behavior": proration,
        }
        if phase.end is not None:
            params["end_date"] = midnight_utc(phase.end)
        if index == 0:
            start = midnight_utc(phase.start)
            if live.status == "active" and start <= now and _day(floor) not in (_day(start), _day(now)):
                # dated today or earlier, not the day the current phase began: it starts now (the
                # time before is billed as catch-up items, order_rules.catch_up)
                late = f"dated {phase.start.isoformat()}, in Stripe from {_day(now).isoformat()}; "
                phases.append(
                    {
                        **base,
                        "start_date": floor,
                        "end_date": "now",
                        "items": [_live_item(i) for i in live.current_items],
                        "proration_behavior": proration,
                    }
                )
            else:
                params["start_date"] = floor
                if trial is not None:  # the current phase is the trial: rewriting it keeps the trial
                    params["trial_end"] = trial
        phases.append(params)
    end_behavior = "release" if ahead and ahead[-1].end is None else "cancel"
    summary = late + describe_phases(ahead, plan.product_names)
    return UpdatePhases(
        {
            "phases": phases,
            "end_behavior": end_behavior,
            "proration_behavior": proration,
            "metadata": dict(metadata),  # a schedule made from a subscription starts with none
        },
        summary,
    )


def _live_item(item: Mapping[str, Any]) -> dict[str, Any]:
    price = item.get("price")
    out: dict[str, Any] = {"price": price if isinstance(price, str) else (price or {}).get("id")}
    if item.get("quantity") is not None:
        out["quantity"] = item["quantity"]
    if item.get("metadata"):
        out["metadata"] = dict(item["metadata"])
    # the phase as billed keeps its discounts (an existing discount by its id, not redeemed again)
    discounts = [_discount_param(d) for d in item.get("discounts") or []]
    if any(discounts):
        out["discounts"] = [d for d in discounts if d]
    return out


def _discount_param(discount: Any) -> dict[str, str]:
    """A phase item's discount as Stripe lists it ({coupon, discount, promotion_code}, ids or
    objects) as the one key an update takes back."""
    if not isinstance(discount, Mapping):
        return {}
    for key in ("discount", "coupon", "promotion_code"):
        value = discount.get(key)
        found = value if isinstance(value, str) else (value or {}).get("id")
        if found:
            return {key: str(found)}
    return {}

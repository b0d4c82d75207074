"""Billing Meters and meter events (`/v1/billing/meters`, `/v1/billing/meter_events`).

Metered prices name a meter in `recurring[meter]` (checked in `catalog.new_price` through
`check_meter`). Event names are unique among active meters, as in Stripe. Meter events are stored;
`usage` sums a customer's events of one meter in a billing period, which a test clock's renewal
bills on the metered item's line (resources/timeline.py `renew`)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from ..common import Ctx, Endpoint, paginate
from ..errors import StripeError, invalid
from ..validation import EXPAND, LIST, RETRIEVE, Int, Obj, Str, StrMap

KIND = "billing.meter"
EVENT_KIND = "billing.meter_event"
MAX_EVENT_AGE = 35 * 86400  # events may be up to 35 days old ...
MAX_EVENT_AHEAD = 5 * 60  # ... or 5 minutes in the future
# Stripe enforces identifier uniqueness "within a rolling period of at least 24 hours": the fake
# keeps it exactly that long, so a client that relies on a longer window is caught.
IDENTIFIER_WINDOW = 86400

_CREATE = {
    "display_name": Str(required=True, nullable=False, max_len=250),
    "event_name": Str(required=True, nullable=False, max_len=100),
    "default_aggregation": Obj(
        required=True,
        nullable=False,
        fields={"formula": Str(required=True, nullable=False, enum=("count", "last", "sum"))},
    ),
    "customer_mapping": Obj(
        nullable=False,
        fields={
            "event_payload_key": Str(required=True, nullable=False, max_len=100),
            "type": Str(required=True, nullable=False, enum=("by_id",)),
        },
    ),
    "value_settings": Obj(
        nullable=False, fields={"event_payload_key": Str(required=True, nullable=False, max_len=100)}
    ),
    "event_time_window": Str(nullable=False, enum=("day", "hour")),
    "expand": EXPAND,
}
_UPDATE = {"display_name": Str(nullable=False, max_len=250), "expand": EXPAND}
_LIST = {k: v for k, v in LIST.items() if k != "created"} | {"status": Str(enum=("active", "inactive"))}
_EVENT = {
    "event_name": Str(required=True, nullable=False, max_len=100),
    "payload": StrMap(required=True, nullable=False),
    "identifier": Str(nullable=False, max_len=100),
    "timestamp": Int(nullable=False),
    "expand": EXPAND,
}


def _duplicate_event_name(event_name: str) -> StripeError:
    # Stripe's wording, as reported by clients that match on it.
    return StripeError(
        f"An active meter already exists for event name '{event_name}'. To create a new meter with the "
        "same event name, first deactivate the currently active meter.",
        param="event_name",
    )


def _active_with(ctx: Ctx, event_name: str, other_than: str | None = None) -> dict[str, Any] | None:
    return next(
        (
            m
            for m in ctx.store.all(KIND)
            if m["status"] == "active" and m["event_name"] == event_name and m["id"] != other_than
        ),
        None,
    )


def check_meter(ctx: Ctx, meter_id: str, param: str) -> dict[str, Any]:
    """The meter a metered price names: it must exist and be active."""
    meter = ctx.store.get(KIND, meter_id, param)
    if meter["status"] != "active":
        raise StripeError(
            f"The meter `{meter_id}` is inactive. You can't attach a deactivated meter to a price.",
            param=param,
        )
    return meter


def create_meter(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    if _active_with(ctx, p["event_name"]) is not None:
        raise _duplicate_event_name(p["event_name"])
    now = store.now()
    mapping = p.get("customer_mapping") or {"event_payload_key": "stripe_customer_id", "type": "by_id"}
    values = p.get("value_settings") or {"event_payload_key": "value"}
    meter = {
        "id": store.new_id("mtr_test", 24),
        "object": KIND,
        "created": now,
        "customer_mapping": {"event_payload_key": mapping["event_payload_key"], "type": mapping["type"]},
        "default_aggregation": {"formula": p["default_aggregation"]["formula"]},
        "display_name": p["display_name"],
        "event_name": p["event_name"],
        "event_time_window": p.get("event_time_window"),
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": now,
        "value_settings": {"event_payload_key": values["event_payload_key"]},
    }
    return store.put(meter)


def update_meter(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    meter = store.get(KIND, ctx.path["id"])
    if p.get("display_name") is not None:
        meter["display_name"] = p["display_name"]
        meter["updated"] = store.now()
    return store.put(meter)


def deactivate_meter(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    meter = store.get(KIND, ctx.path["id"])
    if meter["status"] == "active":
        now = store.now()
        meter["status"] = "inactive"
        meter["status_transitions"] = {"deactivated_at": now}
        meter["updated"] = now
    return store.put(meter)


def reactivate_meter(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    meter = store.get(KIND, ctx.path["id"])
    if meter["status"] == "inactive":
        if _active_with(ctx, meter["event_name"], meter["id"]) is not None:
            raise _duplicate_event_name(meter["event_name"])
        meter["status"] = "active"
        meter["status_transitions"] = {"deactivated_at": None}
        meter["updated"] = store.now()
    return store.put(meter)


def list_meters(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    rows = list(ctx.store.newest_first(KIND))
    if p.get("status"):
        rows = [r for r in rows if r["status"] == p["status"]]
    return paginate(ctx, KIND, rows, p, "/v1/billing/meters")


def create_meter_event(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Stored as sent. Like Stripe's v1 endpoint, a missing meter or customer is not refused here
    (Stripe reports those asynchronously); a reused identifier and an out-of-range time are."""
    store = ctx.store
    now = store.now()
    timestamp = p.get("timestamp", now)
    if timestamp < now - MAX_EVENT_AGE or timestamp > now + MAX_EVENT_AHEAD:
        raise invalid(
            "The timestamp must be within the past 35 calendar days or up to 5 minutes in the future.",
            "timestamp",
        )
    identifier = p.get("identifier") or store.new_id("mev", 24)  # ids share one namespace in the store
    seen = store.find(EVENT_KIND, identifier)
    if seen is not None and now - seen["created"] < IDENTIFIER_WINDOW:
        # Stripe's wording (an invalid_request_error, HTTP 400, no code), as reported by clients.
        raise invalid(f"An event already exists with identifier {identifier}.", "identifier")
    if seen is not None:  # past the window: Stripe takes it as a new event
        store.objects[EVENT_KIND][store.new_id("mev_old", 24)] = seen
    event = {
        "object": EVENT_KIND,
        "created": now,
        "event_name": p["event_name"],
        "identifier": identifier,
        "livemode": False,
        "payload": p["payload"],
        "timestamp": timestamp,
    }
    store.objects[EVENT_KIND][identifier] = event  # keyed by identifier: meter events have no id
    return event


def usage(ctx: Ctx, meter_id: str, customer_id: str, start: int, end: int) -> Decimal:
    """The meter's aggregate (its formula: sum, count or last) of one customer's events with
    start <= timestamp < end."""
    store = ctx.store
    meter = store.find(KIND, meter_id)
    if meter is None:
        return Decimal(0)
    key = meter["customer_mapping"]["event_payload_key"]
    value_key = meter["value_settings"]["event_payload_key"]
    values: list[Decimal] = []
    for event in sorted(store.objects[EVENT_KIND].values(), key=lambda e: (e["timestamp"], e["created"])):
        if event["event_name"] != meter["event_name"] or event["payload"].get(key) != customer_id:
            continue
        if not start <= event["timestamp"] < end:
            continue
        try:
            values.append(Decimal(str(event["payload"].get(value_key, "0"))))
        except InvalidOperation:
            continue  # Stripe reports an invalid value asynchronously and does not count it
    formula = meter["default_aggregation"]["formula"]
    if formula == "count":
        return Decimal(len(values))
    if formula == "last":
        return values[-1] if values else Decimal(0)
    return sum(values, Decimal(0))


ENDPOINTS = [
    Endpoint("POST", "/v1/billing/meters", _CREATE, create_meter),
    Endpoint("GET", "/v1/billing/meters", _LIST, list_meters),
    Endpoint("GET", "/v1/billing/meters/{id}", RETRIEVE, lambda ctx, p: ctx.store.get(KIND, ctx.path["id"])),
    Endpoint("POST", "/v1/billing/meters/{id}", _UPDATE, update_meter),
    Endpoint("POST", "/v1/billing/meters/{id}/deactivate", {"expand": EXPAND}, deactivate_meter),
    Endpoint("POST", "/v1/billing/meters/{id}/reactivate", {"expand": EXPAND}, reactivate_meter),
    Endpoint("POST", "/v1/billing/meter_events", _EVENT, create_meter_event),
]

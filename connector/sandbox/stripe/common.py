"""What resource modules share: the request context, list pagination and `expand`."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import StripeError, invalid
from .store import API_VERSION, KIND_NAMES, Store
from .validation import Spec

PREFIX_KINDS = [
    ("sub_sched_", "subscription_schedule"),
    ("cus_", "customer"),
    ("prod_", "product"),
    ("price_", "price"),
    ("sub_", "subscription"),
    ("pm_", "payment_method"),
    ("seti_", "setup_intent"),
    ("cs_", "checkout.session"),
    ("mandate_", "mandate"),
    ("in_", "invoice"),
    ("evt_", "event"),
    ("mtr_", "billing.meter"),
    ("clock_", "test_helpers.test_clock"),
    ("ii_", "invoiceitem"),
    ("we_", "webhook_endpoint"),
]


# Fields holding an id Stripe can expand, and the containers an expand path may walk through.
EXPANDABLE = frozenset(
    [
        "customer",
        "product",
        "default_price",
        "price",
        "latest_invoice",
        "default_payment_method",
        "payment_method",
        "setup_intent",
        "mandate",
        "schedule",
        "subscription",
        "invoice",
        "released_subscription",
        "from_subscription",
        "data",
        "items",
        "lines",
        "test_clock",
    ]
)


@dataclass
class Ctx:
    store: Store
    request_id: str | None  # None for what happens in an account without its own request (sharing)
    idempotency_key: str | None
    path: dict[str, str] = field(default_factory=dict)

    def emit(self, type_: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> None:
        """Record an event for a change (snapshot of the object as it is now)."""
        store = self.store
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        endpoints = [
            e
            for e in store.objects["webhook_endpoint"].values()
            if e["status"] == "enabled" and ("*" in e["enabled_events"] or type_ in e["enabled_events"])
        ]
        event = store.put(
            {
                "id": store.new_id("evt", 24),
                "object": "event",
                "api_version": API_VERSION,
                "created": store.now(),
                "data": data,
                "livemode": False,
                "pending_webhooks": len(endpoints),
                "request": {"id": self.request_id, "idempotency_key": self.idempotency_key},
                "type": type_,
            }
        )
        for endpoint in endpoints:
            secret = store.private[endpoint["id"]]["secret"]
            store.webhooks.send(endpoint["id"], endpoint["url"], secret, copy.deepcopy(event))


@dataclass
class Endpoint:
    method: str
    pattern: str
    spec: Mapping[str, Spec]
    fn: Callable[[Ctx, dict[str, Any]], dict[str, Any]]


def paginate(
    ctx: Ctx, kind: str, items: Iterable[dict[str, Any]], params: dict[str, Any], url: str
) -> dict[str, Any]:
    """A list object over `items` (already newest first), with Stripe's cursor semantics."""
    rows = list(items)
    created = params.get("created")
    if created:
        ops = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
        rows = [
            r
            for r in rows
            if all(ops[k](r.get("created", 0), v) for k, v in created.items() if v is not None)
        ]
    limit = params.get("limit") or 10
    after, before = params.get("starting_after"), params.get("ending_before")
    if after and before:
        raise invalid(
            "You may only specify one of these parameters: ending_before, starting_after.", "ending_before"
        )
    ids = [r["id"] for r in rows]
    if after:
        if after not in ids:
            _check_cursor(ctx, kind, after, "starting_after")
            page, has_more = [], False
        else:
            start = ids.index(after) + 1
            page, has_more = rows[start : start + limit], len(rows) > start + limit
    elif before:
        if before not in ids:
            _check_cursor(ctx, kind, before, "ending_before")
            page, has_more = [], False
        else:
            end = ids.index(before)
            start = max(0, end - limit)
            page, has_more = rows[start:end], start > 0
    else:
        page, has_more = rows[:limit], len(rows) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


def _check_cursor(ctx: Ctx, kind: str, ident: str, param: str) -> None:
    if ctx.store.find(kind, ident) is None and ctx.store.tombstone(kind, ident) is None:
        raise StripeError(
            f"No such {KIND_NAMES.get(kind, kind)}: '{ident}'",
            status=400,
            code="resource_missing",
            param=param,
        )


def kind_of(ident: str) -> str | None:
    for prefix, kind in PREFIX_KINDS:
        if ident.startswith(prefix):
            return kind
    return None


def expand(store: Store, payload: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """A copy of `payload` with the id fields named by `paths` replaced by their objects."""
    out = copy.deepcopy(payload)
    for path in paths:
        parts = path.split(".")
        if len(parts) > 4:
            raise invalid(f"You cannot expand more than 4 levels of a property. Property: {path}", "expand")
        _expand(store, out, parts, path)
    return out


def _expand(store: Store, node: Any, parts: list[str], full: str) -> None:
    if not parts:
        return
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        for item in node:
            _expand(store, item, parts, full)
        return
    if not isinstance(node, dict) or head not in node or head not in EXPANDABLE:
        raise invalid(f"This property cannot be expanded ({head}).", "expand")
    value = node[head]
    if isinstance(value, str):
        kind = kind_of(value)
        obj = store.find(kind, value) if kind else None
        if obj is None and kind:
            obj = store.tombstone(kind, value)
        if obj is None:
            raise invalid(f"This property cannot be expanded ({head}).", "expand")
        node[head] = value = copy.deepcopy(obj)
    elif value is None:
        return
    _expand(store, value, rest, full)

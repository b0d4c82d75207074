"""The account and its events."""

from __future__ import annotations

from typing import Any

from ..common import Ctx, Endpoint, paginate
from ..validation import LIST, RETRIEVE, Arr, Bool, Str


def account(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    return {
        "id": store.account_id,
        "object": "account",
        "business_profile": {"mcc": None, "name": "cpq2stripe sandbox", "support_email": None, "url": None},
        "business_type": "company",
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "account"},
        "country": "US",
        "created": 1700000000,
        "default_currency": "usd",
        "details_submitted": True,
        "email": "sandbox@example.com",
        "metadata": {},
        "payouts_enabled": True,
        "settings": {"dashboard": {"display_name": "cpq2stripe sandbox", "timezone": "Etc/UTC"}},
        "type": "standard",
    }


def list_events(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    rows = list(ctx.store.newest_first("event"))
    types = set(p.get("types") or [])
    if p.get("type"):
        wanted = p["type"]
        if wanted.endswith("*"):
            rows = [e for e in rows if e["type"].startswith(wanted[:-1])]
        else:
            rows = [e for e in rows if e["type"] == wanted]
    if types:
        rows = [e for e in rows if e["type"] in types]
    return paginate(ctx, "event", rows, p, "/v1/events")


ENDPOINTS = [
    Endpoint("GET", "/v1/account", RETRIEVE, account),
    Endpoint(
        "GET",
        "/v1/events",
        {**LIST, "type": Str(), "types": Arr(item=Str(), max_items=20), "delivery_success": Bool()},
        list_events,
    ),
    Endpoint("GET", "/v1/events/{id}", RETRIEVE, lambda ctx, p: ctx.store.get("event", ctx.path["id"])),
]

"""Webhook endpoints (`/v1/webhook_endpoints`): create, retrieve, update, list, delete.

As Stripe (API reference, *Webhook Endpoints*): `url` and `enabled_events` are required (`*` is
every event); the signing `secret` (whsec_…) is returned only by create; `status` is `enabled`
or `disabled` (update's `disabled`). Delivery: connector/sandbox/stripe/webhooks.py."""

from __future__ import annotations

from typing import Any

from ..common import Ctx, Endpoint, paginate
from ..errors import invalid
from ..store import API_VERSION
from ..validation import LIST, METADATA, RETRIEVE, Arr, Bool, Str

_EVENTS = Arr(required=True, item=Str(), max_items=256)


def _public(endpoint: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in endpoint.items() if k != "secret"}


def create_endpoint(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    if not p["url"].startswith(("http://", "https://")):
        raise invalid("Invalid URL: URL must be publicly accessible.", "url")
    endpoint = {
        "id": store.new_id("we", 24),
        "object": "webhook_endpoint",
        "api_version": p.get("api_version") or API_VERSION,
        "application": None,
        "created": store.now(),
        "description": p.get("description"),
        "enabled_events": list(p["enabled_events"]),
        "livemode": False,
        "metadata": p.get("metadata") or {},
        "status": "enabled",
        "url": p["url"],
    }
    store.put(endpoint)
    secret = "whsec_" + store._rand(32)
    store.private[endpoint["id"]]["secret"] = secret
    return {**endpoint, "secret": secret}


def update_endpoint(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    endpoint = ctx.store.get("webhook_endpoint", ctx.path["id"])
    for key in ("url", "description", "enabled_events"):
        if key in p:
            endpoint[key] = p[key]
    if "metadata" in p:
        endpoint["metadata"] = {**endpoint["metadata"], **(p["metadata"] or {})}
    if "disabled" in p:
        endpoint["status"] = "disabled" if p["disabled"] else "enabled"
    ctx.store.put(endpoint)
    return _public(endpoint)


def delete_endpoint(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    ctx.store.delete("webhook_endpoint", ctx.store.get("webhook_endpoint", ctx.path["id"])["id"])
    return {"id": ctx.path["id"], "object": "webhook_endpoint", "deleted": True}


def list_endpoints(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    rows = [_public(e) for e in ctx.store.newest_first("webhook_endpoint")]
    return paginate(ctx, "webhook_endpoint", rows, p, "/v1/webhook_endpoints")


_FIELDS = {"description": Str(max_len=5000), "metadata": METADATA, "api_version": Str()}
ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/webhook_endpoints",
        {"url": Str(required=True, nullable=False, max_len=5000), "enabled_events": _EVENTS, **_FIELDS},
        create_endpoint,
    ),
    Endpoint("GET", "/v1/webhook_endpoints", LIST, list_endpoints),
    Endpoint(
        "GET",
        "/v1/webhook_endpoints/{id}",
        RETRIEVE,
        lambda ctx, p: _public(ctx.store.get("webhook_endpoint", ctx.path["id"])),
    ),
    Endpoint(
        "POST",
        "/v1/webhook_endpoints/{id}",
        {
            "url": Str(max_len=5000),
            "enabled_events": Arr(item=Str(), max_items=256),
            "disabled": Bool(),
            **_FIELDS,
        },
        update_endpoint,
    ),
    Endpoint("DELETE", "/v1/webhook_endpoints/{id}", {}, delete_endpoint),
]

"""Checkout Sessions in setup mode, and the customer's side of them (what a browser would do).

A setup-mode session collects a payment method for later, off-session use through a SetupIntent it
owns; the customer completes it on Stripe's page (here: `complete`, `fail`, `abandon`, driven by
the sandbox admin API). Only setup mode is implemented: `payment` and `subscription` modes are
refused so a caller relying on them notices.
"""

from __future__ import annotations

import copy
from typing import Any

from ..common import Ctx, Endpoint, paginate
from ..errors import StripeError, invalid, missing_param
from ..validation import EXPAND, LIST, METADATA, RETRIEVE, Arr, Int, Obj, Str, merge_metadata
from . import payments

# Types Checkout's setup mode accepts (Stripe: "Set up future payments" guides per method; the
# others — iDEAL, Bancontact, Sofort set up a SEPA debit instead — are refused). The connector's
# mapping check holds the same list (connector.mapping.payment_setup).
SETUP_MODE_TYPES = frozenset(
    {
        "acss_debit",
        "amazon_pay",
        "au_becs_debit",
        "bacs_debit",
        "card",
        "cashapp",
        "link",
        "paypal",
        "revolut_pay",
        "sepa_debit",
        "us_bank_account",
    }
)
MIN_EXPIRY, MAX_EXPIRY = 30 * 60, 24 * 3600  # expires_at: 30 minutes to 24 hours ahead (default 24 h)

_CREATE = {
    "mode": Str(required=True, nullable=False, enum=("payment", "setup", "subscription")),
    "customer": Str(),
    "currency": Str(),
    "payment_method_types": Arr(item=Str(nullable=False)),
    "success_url": Str(max_len=5000),
    "cancel_url": Str(max_len=5000),
    "expires_at": Int(),
    "client_reference_id": Str(max_len=200),
    "metadata": METADATA,
    "setup_intent_data": Obj(
        fields={"description": Str(max_len=1000), "metadata": METADATA, "on_behalf_of": Str()}
    ),
    "line_items": Arr(item=Obj(fields={"price": Str(), "quantity": Int()})),
    "expand": EXPAND,
}


def _check_create(ctx: Ctx, p: dict[str, Any]) -> None:
    if p["mode"] != "setup":
        raise invalid("The sandbox implements Checkout Sessions in setup mode only.", "mode")
    if p.get("line_items"):
        raise invalid("You cannot pass `line_items` in `setup` mode.", "line_items")
    if not p.get("success_url"):
        raise missing_param("success_url")
    types = p.get("payment_method_types") or []
    if not types and not p.get("currency"):
        # Dynamic payment methods (no explicit types) need a currency in setup mode.
        raise invalid(
            "`currency` is required in `setup` mode when `payment_method_types` is not passed.", "currency"
        )
    for i, kind in enumerate(types):
        if kind not in SETUP_MODE_TYPES:
            raise invalid(
                f"The payment method type `{kind}` cannot be used in `setup` mode.",
                f"payment_method_types[{i}]",
            )
    now = ctx.store.now()
    expires = p.get("expires_at")
    if expires is not None and not now + MIN_EXPIRY <= expires <= now + MAX_EXPIRY:
        raise invalid(
            "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session "
            "creation.",
            "expires_at",
        )
    if p.get("customer"):
        ctx.store.get("customer", p["customer"], "customer")


def create(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    _check_create(ctx, p)
    store = ctx.store
    now = store.now()
    types = p.get("payment_method_types") or ["card"]
    data = p.get("setup_intent_data") or {}
    seti = payments.create_seti(
        ctx,
        {
            "customer": p.get("customer"),
            "payment_method_types": types,
            "usage": "off_session",
            "description": data.get("description"),
            "metadata": data.get("metadata"),
        },
    )
    ident = "cs_test_" + store._rand(58)
    session: dict[str, Any] = {
        "id": ident,
        "object": "checkout.session",
        "cancel_url": p.get("cancel_url"),
        "client_reference_id": p.get("client_reference_id"),
        "created": now,
        "currency": p.get("currency"),
        "customer": p.get("customer"),
        "expires_at": p.get("expires_at") or now + MAX_EXPIRY,
        "livemode": False,
        "metadata": merge_metadata({}, p.get("metadata")),
        "mode": "setup",
        "payment_intent": None,
        "payment_method_types": types,
        "payment_status": "no_payment_required",
        "setup_intent": seti["id"],
        "status": "open",
        "success_url": p["success_url"],
        "ui_mode": "hosted",
        "url": f"https://checkout.stripe.com/c/pay/{ident}",
    }
    store.put(session)
    return session


def _lapse(ctx: Ctx, session: dict[str, Any]) -> None:
    """An open session past its `expires_at` is expired (Stripe does it at that time; the sandbox
    when the session is next read)."""
    if session["status"] == "open" and ctx.store.now() >= session["expires_at"]:
        _expire(ctx, session)


def _expire(ctx: Ctx, session: dict[str, Any]) -> None:
    session["status"] = "expired"
    session["url"] = None
    ctx.store.put(session)
    seti = ctx.store.find("setup_intent", session["setup_intent"] or "")
    if seti is not None and seti["status"] not in ("succeeded", "canceled"):
        seti["status"], seti["cancellation_reason"] = "canceled", "abandoned"
        ctx.store.put(seti)
        ctx.emit("setup_intent.canceled", seti)
    ctx.emit("checkout.session.expired", session)


def retrieve(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    session = ctx.store.get("checkout.session", ctx.path["id"])
    _lapse(ctx, session)
    return copy.copy(session)


def list_sessions(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for session in ctx.store.newest_first("checkout.session"):
        _lapse(ctx, session)
        if p.get("customer") and session["customer"] != p["customer"]:
            continue
        if p.get("status") and session["status"] != p["status"]:
            continue
        rows.append(session)
    return paginate(ctx, "checkout.session", rows, p, "/v1/checkout/sessions")


def expire(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    session = ctx.store.get("checkout.session", ctx.path["id"])
    _lapse(ctx, session)
    if session["status"] != "open":
        raise invalid(
            f'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout Session '
            f'has a status of "{session["status"]}".'
        )
    _expire(ctx, session)
    return session


# The customer's side (admin API) -------------------------------------------------------------
class CheckoutStateError(ValueError):
    """The page cannot do that now (the session is not open)."""


def _open(ctx: Ctx, session_id: str) -> dict[str, Any]:
    session = ctx.store.get("checkout.session", session_id)
    _lapse(ctx, session)
    if session["status"] != "open":
        raise CheckoutStateError(f"Checkout Session {session_id} is {session['status']}, not open")
    return session


def _payment_method(ctx: Ctx, session: dict[str, Any], method: dict[str, Any]) -> dict[str, Any]:
    kind = method.get("type") or "card"
    if kind not in session["payment_method_types"]:
        raise CheckoutStateError(f"the session does not offer {kind}: {session['payment_method_types']}")
    name = method.get("name") or "Sandbox Customer"
    if kind == "card":
        params = {"type": "card", "card": {"token": method.get("token") or "tok_visa"}}
    elif kind == "sepa_debit":
        params = {
            "type": "sepa_debit",
            "sepa_debit": {"iban": method.get("iban") or "DE89370400440532013000"},
            "billing_details": {"name": name, "email": method.get("email") or "customer@example.com"},
        }
    else:
        raise CheckoutStateError(f"the sandbox completes card and sepa_debit only, not {kind}")
    params.setdefault("billing_details", {"name": name})
    return payments.create_pm(ctx, params)


def complete(ctx: Ctx, session_id: str, method: dict[str, Any]) -> dict[str, Any]:
    """The customer enters a payment method and submits: the SetupIntent is confirmed with it
    (a declined card fails the attempt, `setup_intent.setup_failed`, and the page stays open)."""
    session = _open(ctx, session_id)
    pm = _payment_method(ctx, session, method)
    seti = ctx.store.get("setup_intent", session["setup_intent"])
    seti["payment_method"] = pm["id"]
    try:
        payments.confirm_setup(ctx, seti, online=True)
    except StripeError:
        return copy.copy(session)  # the attempt failed; the customer may try again
    session["status"] = "complete"
    session["url"] = None
    ctx.store.put(session)
    ctx.emit("checkout.session.completed", session)
    return copy.copy(session)


def abandon(ctx: Ctx, session_id: str) -> dict[str, Any]:
    """The customer never comes back: the session reaches its `expires_at` now."""
    session = _open(ctx, session_id)
    session["expires_at"] = ctx.store.now()
    _expire(ctx, session)
    return copy.copy(session)


ENDPOINTS = [
    Endpoint("POST", "/v1/checkout/sessions", _CREATE, create),
    Endpoint(
        "GET",
        "/v1/checkout/sessions",
        {**LIST, "customer": Str(), "status": Str(enum=("open", "complete", "expired"))},
        list_sessions,
    ),
    Endpoint("GET", "/v1/checkout/sessions/{id}", RETRIEVE, retrieve),
    Endpoint("POST", "/v1/checkout/sessions/{id}/expire", {"expand": EXPAND}, expire),
]

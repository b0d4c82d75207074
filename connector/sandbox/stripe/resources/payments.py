"""Payment methods (test tokens such as tok_visa, test IBANs), setup intents and their mandates."""

from __future__ import annotations

import copy
from typing import Any

from ..common import Ctx, Endpoint, paginate
from ..errors import StripeError, invalid, missing_param
from ..validation import ADDRESS, EXPAND, LIST, METADATA, RETRIEVE, Bool, Int, Obj, Str, merge_metadata

# Test tokens: brand, last4, funding, and whether attaching declines. tok_chargeCustomerFail
# (card 4000 0000 0000 0341) attaches to a Customer but every charge of it is declined.
CHARGE_FAILS = frozenset({"tok_chargeCustomerFail"})
TOKENS = {
    "tok_chargeCustomerFail": ("visa", "0341", "credit", False),
    "tok_visa": ("visa", "4242", "credit", False),
    "tok_visa_debit": ("visa", "5556", "debit", False),
    "tok_mastercard": ("mastercard", "4444", "credit", False),
    "tok_amex": ("amex", "8431", "credit", False),
    "tok_discover": ("discover", "1117", "credit", False),
    "tok_chargeDeclined": ("visa", "0002", "credit", True),
}
# SEPA test IBANs (Stripe's testing page): DE89… and AT61… succeed; AT86… sets up, every debit fails.
SEPA_CHARGE_FAILS = frozenset({"AT861904300235473202"})
_BANK_CODE_LENGTH = {"DE": 8, "AT": 5, "FR": 5, "NL": 4, "ES": 4, "IT": 5, "BE": 3}
_BILLING = Obj(fields={"address": ADDRESS, "email": Str(), "name": Str(), "phone": Str()})
_PM = {
    "type": Str(required=True, nullable=False, enum=("card", "sepa_debit", "us_bank_account")),
    "sepa_debit": Obj(fields={"iban": Str()}),
    "card": Obj(
        fields={"token": Str(), "number": Str(), "exp_month": Int(), "exp_year": Int(), "cvc": Str()}
    ),
    "us_bank_account": Obj(
        fields={
            "account_holder_type": Str(enum=("company", "individual")),
            "account_number": Str(),
            "account_type": Str(enum=("checking", "savings")),
            "routing_number": Str(),
            "financial_connections_account": Str(),
        }
    ),
    "billing_details": _BILLING,
    "metadata": METADATA,
    "customer": Str(),
    "allow_redisplay": Str(enum=("always", "limited", "unspecified")),
    "expand": EXPAND,
}


def _decline() -> StripeError:
    return StripeError(
        "Your card was declined.",
        status=402,
        type="card_error",
        code="card_declined",
        param="",
        extra={"decline_code": "generic_decline"},
    )


def create_pm(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    bd = p.get("billing_details") or {}
    pm: dict[str, Any] = {
        "id": store.new_id("pm", 24),
        "object": "payment_method",
        "allow_redisplay": p.get("allow_redisplay") or "unspecified",
        "billing_details": {
            "address": {
                k: (bd.get("address") or {}).get(k)
                for k in ("city", "country", "line1", "line2", "postal_code", "state")
            },
            "email": bd.get("email"),
            "name": bd.get("name"),
            "phone": bd.get("phone"),
            "tax_id": None,
        },
        "created": store.now(),
        "customer": None,
        "livemode": False,
        "metadata": merge_metadata({}, p.get("metadata")),
        "type": p["type"],
    }
    if p["type"] == "card":
        card = p.get("card")
        if not card:
            raise missing_param("card")
        token = card.get("token")
        if not token:
            if card.get("number"):
                raise invalid(
                    "Sending credit card numbers directly to the Stripe API is generally unsafe. To continue "
                    "processing use Stripe.js, the Stripe mobile bindings, or Stripe Elements. For "
                    "testing, use "
                    "test tokens such as tok_visa.",
                    "card[number]",
                )
            raise missing_param("card[token]")
        if token not in TOKENS:
            raise StripeError(f"No such token: '{token}'", code="resource_missing", param="card[token]")
        brand, last4, funding, declines = TOKENS[token]
        pm["card"] = {
            "brand": brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "unchecked",
            },
            "country": "US",
            "display_brand": brand,
            "exp_month": 12,
            "exp_year": 2034,
            "fingerprint": store._rand(16),
            "funding": funding,
            "generated_from": None,
            "last4": last4,
            "networks": {"available": [brand], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        }
        if declines:
            store.declining.add(pm["id"])
        if token in CHARGE_FAILS:
            store.charge_fails.add(pm["id"])
    elif p["type"] == "sepa_debit":
        pm["sepa_debit"] = _sepa(p, bd)
        if (p.get("sepa_debit") or {}).get("iban", "").replace(" ", "") in SEPA_CHARGE_FAILS:
            store.charge_fails.add(pm["id"])
    else:
        bank = p.get("us_bank_account")
        if not bank:
            raise missing_param("us_bank_account")
        if not bank.get("financial_connections_account"):
            for key in ("routing_number", "account_number"):
                if not bank.get(key):
                    raise missing_param(f"us_bank_account[{key}]")
        if not bd.get("name"):
            raise missing_param("billing_details[name]")
        pm["us_bank_account"] = {
            "account_holder_type": bank.get("account_holder_type") or "individual",
            "account_type": bank.get("account_type") or "checking",
            "bank_name": "STRIPE TEST BANK",
            "financial_connections_account": bank.get("financial_connections_account"),
            "fingerprint": store._rand(16),
            "last4": (bank.get("account_number") or "6789")[-4:],
            "networks": {"preferred": "ach", "supported": ["ach"]},
            "routing_number": bank.get("routing_number") or "110000000",
            "status_details": {},
        }
    store.put(pm)
    if p.get("customer"):
        attach_to(ctx, pm, store.get("customer", p["customer"], "customer"), "customer")
    return public(pm)


def _sepa(p: dict[str, Any], bd: dict[str, Any]) -> dict[str, Any]:
    """SEPA Direct Debit needs an IBAN and the account holder's name and email (Stripe's SEPA
    guide: "name and email address are required"); only a summary of the IBAN is kept."""
    iban = ((p.get("sepa_debit") or {}).get("iban") or "").replace(" ", "").upper()
    if not iban:
        raise missing_param("sepa_debit[iban]")
    if len(iban) < 15 or not iban[:2].isalpha() or not iban[2:].isalnum():
        raise invalid("The provided IBAN is invalid.", "sepa_debit[iban]", "invalid_bank_account_iban")
    for key in ("name", "email"):
        if not bd.get(key):
            raise missing_param(f"billing_details[{key}]")
    country = iban[:2]
    return {
        "bank_code": iban[4 : 4 + _BANK_CODE_LENGTH.get(country, 4)],
        "branch_code": "",
        "country": country,
        "fingerprint": "sepa" + iban[-8:][::-1],
        "generated_from": {"charge": None, "setup_attempt": None},
        "last4": iban[-4:],
    }


def public(pm: dict[str, Any]) -> dict[str, Any]:
    """The API view of a stored payment method."""
    return pm


def attach_to(ctx: Ctx, pm: dict[str, Any], customer: dict[str, Any], param: str = "customer") -> None:
    if pm.get("customer") and pm["customer"] != customer["id"]:
        raise invalid("The payment method you provided has already been attached to a customer.", param)
    if pm["id"] in ctx.store.declining:
        raise _decline()
    if pm.get("customer") == customer["id"]:
        return
    pm["customer"] = customer["id"]
    ctx.store.put(pm)
    ctx.emit("payment_method.attached", public(pm))


def attach(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    pm = ctx.store.get("payment_method", ctx.path["id"])
    attach_to(ctx, pm, ctx.store.get("customer", p["customer"], "customer"))
    return public(pm)


def detach(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    pm = store.get("payment_method", ctx.path["id"])
    if not pm.get("customer"):
        raise invalid(
            "The payment method you provided is not attached to a customer so detachment is impossible."
        )
    cust = store.find("customer", pm["customer"])
    if cust and cust["invoice_settings"]["default_payment_method"] == pm["id"]:
        cust["invoice_settings"]["default_payment_method"] = None
        store.put(cust)
    pm["customer"] = None
    store.put(pm)
    ctx.emit("payment_method.detached", public(pm))
    return public(pm)


def retrieve_pm(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    return public(ctx.store.get("payment_method", ctx.path["id"]))


def update_pm(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    pm = ctx.store.get("payment_method", ctx.path["id"])
    if "metadata" in p:
        pm["metadata"] = merge_metadata(pm["metadata"], p["metadata"])
    for key, val in (p.get("billing_details") or {}).items():
        pm["billing_details"][key] = (
            val if key != "address" else {**pm["billing_details"]["address"], **(val or {})}
        )
    ctx.store.put(pm)
    ctx.emit("payment_method.updated", public(pm))
    return public(pm)


def list_pms(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    customer = p.get("customer") or ctx.path.get("id")
    if customer:
        ctx.store.get("customer", customer, "customer" if "id" not in ctx.path else "id")
    rows = [
        public(x)
        for x in ctx.store.newest_first("payment_method")
        if not customer or x["customer"] == customer
    ]
    if p.get("type"):
        rows = [x for x in rows if x["type"] == p["type"]]
    url = f"/v1/customers/{customer}/payment_methods" if "id" in ctx.path else "/v1/payment_methods"
    return paginate(ctx, "payment_method", rows, p, url)


# setup intents -------------------------------------------------------------------------------
_SETI = {
    "customer": Str(),
    "payment_method": Str(),
    "confirm": Bool(),
    "usage": Str(enum=("off_session", "on_session")),
    "payment_method_types": Str(),  # replaced below: an array
    "description": Str(max_len=1000),
    "metadata": METADATA,
    "return_url": Str(),
    "automatic_payment_methods": Obj(fields={"enabled": Bool(required=True), "allow_redirects": Str()}),
    "expand": EXPAND,
}
from ..validation import Arr  # noqa: E402

_SETI["payment_method_types"] = Arr(item=Str(nullable=False))


def _confirm(ctx: Ctx, si: dict[str, Any]) -> None:
    confirm_setup(ctx, si, online=False)


def confirm_setup(ctx: Ctx, si: dict[str, Any], *, online: bool) -> None:
    """Confirm a SetupIntent with its payment method: declined (`setup_intent.setup_failed`, the
    intent back to requires_payment_method) or succeeded (attached to the customer; a debit method
    gets a multi-use mandate). `online`: the customer accepted on a page (Checkout)."""
    store = ctx.store
    if not si["payment_method"]:
        raise invalid(
            "You cannot confirm this SetupIntent because it's missing a payment method. You can either "
            "update the "
            "SetupIntent with a payment method and then confirm it again, or confirm it again directly "
            "with a "
            "payment method.",
        )
    pm = store.get("payment_method", si["payment_method"], "payment_method")
    if pm["id"] in ctx.store.declining:
        si["status"] = "requires_payment_method"
        si["last_setup_error"] = {
            "code": "card_declined",
            "message": "Your card was declined.",
            "type": "card_error",
            "decline_code": "generic_decline",
            "payment_method": copy.deepcopy(pm),
        }
        si["payment_method"] = None
        store.put(si)
        ctx.emit("setup_intent.setup_failed", si)
        raise _decline()
    if si["customer"]:
        attach_to(ctx, pm, store.get("customer", si["customer"], "customer"))
    if pm["type"] in DEBIT_TYPES:
        si["mandate"] = _mandate(ctx, pm, online)["id"]
    si["status"] = "succeeded"
    si["last_setup_error"] = None
    si["latest_attempt"] = "setatt_" + store._rand(24)
    store.put(si)
    ctx.emit("setup_intent.succeeded", si)


# Debit methods set up for later need the customer's mandate (Stripe: SEPA Direct Debit and ACH
# guides); a card needs none.
DEBIT_TYPES = frozenset({"sepa_debit", "us_bank_account"})


def _mandate(ctx: Ctx, pm: dict[str, Any], online: bool) -> dict[str, Any]:
    store = ctx.store
    ident = store.new_id("mandate", 24)
    details: dict[str, Any] = {"type": pm["type"]}
    if pm["type"] == "sepa_debit":
        details["sepa_debit"] = {
            "reference": ident[-16:].upper(),
            "url": f"https://stripe.com/mandate/{ident}",
        }
    else:
        details[pm["type"]] = {"collection_method": None}
    acceptance: dict[str, Any] = {"accepted_at": store.now(), "type": "online" if online else "offline"}
    acceptance["online" if online else "offline"] = (
        {"ip_address": "127.0.0.1", "user_agent": "sandbox-browser"} if online else {}
    )
    mandate = {
        "id": ident,
        "object": "mandate",
        "customer_acceptance": acceptance,
        "livemode": False,
        "multi_use": {},
        "payment_method": pm["id"],
        "payment_method_details": details,
        "status": "active",
        "type": "multi_use",
    }
    return store.put(mandate)


def retrieve_mandate(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    return copy.copy(ctx.store.get("mandate", ctx.path["id"]))


def create_seti(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    if p.get("customer"):
        store.get("customer", p["customer"], "customer")
    if p.get("payment_method"):
        store.get("payment_method", p["payment_method"], "payment_method")
    ident = store.new_id("seti", 24)
    si = {
        "id": ident,
        "object": "setup_intent",
        "application": None,
        "automatic_payment_methods": p.get("automatic_payment_methods"),
        "cancellation_reason": None,
        "client_secret": f"{ident}_secret_{store._rand(24)}",
        "created": store.now(),
        "customer": p.get("customer"),
        "description": p.get("description"),
        "flow_directions": None,
        "last_setup_error": None,
        "latest_attempt": None,
        "livemode": False,
        "mandate": None,
        "metadata": merge_metadata({}, p.get("metadata")),
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": p.get("payment_method"),
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {"mandate_options": None, "network": None, "request_three_d_secure": "automatic"}
        },
        "payment_method_types": p.get("payment_method_types") or ["card"],
        "single_use_mandate": None,
        "status": "requires_confirmation" if p.get("payment_method") else "requires_payment_method",
        "usage": p.get("usage") or "off_session",
    }
    store.put(si)
    ctx.emit("setup_intent.created", si)
    if p.get("confirm"):
        _confirm(ctx, si)
    return si


def confirm_seti(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    si = store.get("setup_intent", ctx.path["id"])
    if si["status"] == "succeeded":
        raise StripeError(
            "You cannot confirm this SetupIntent because it has already succeeded after being previously "
            "confirmed.",
            code="setup_intent_unexpected_state",
        )
    if p.get("payment_method"):
        store.get("payment_method", p["payment_method"], "payment_method")
        si["payment_method"] = p["payment_method"]
    _confirm(ctx, si)
    return si


def update_seti(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    si = store.get("setup_intent", ctx.path["id"])
    if si["status"] in ("succeeded", "canceled"):
        raise StripeError(
            f"You cannot update this SetupIntent because it has a status of {si['status']}.",
            code="setup_intent_unexpected_state",
        )
    if p.get("customer"):
        store.get("customer", p["customer"], "customer")
        si["customer"] = p["customer"]
    if p.get("payment_method"):
        store.get("payment_method", p["payment_method"], "payment_method")
        si["payment_method"] = p["payment_method"]
        si["status"] = "requires_confirmation"
    if "description" in p:
        si["description"] = p["description"]
    if "metadata" in p:
        si["metadata"] = merge_metadata(si["metadata"], p["metadata"])
    store.put(si)
    return si


def cancel_seti(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    si = store.get("setup_intent", ctx.path["id"])
    if si["status"] in ("succeeded", "canceled"):
        raise StripeError(
            f"You cannot cancel this SetupIntent because it has a status of {si['status']}.",
            code="setup_intent_unexpected_state",
        )
    si["status"] = "canceled"
    si["cancellation_reason"] = p.get("cancellation_reason")
    store.put(si)
    ctx.emit("setup_intent.canceled", si)
    return si


def list_setis(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    rows = [
        x
        for x in ctx.store.newest_first("setup_intent")
        if not p.get("customer") or x["customer"] == p["customer"]
    ]
    return paginate(ctx, "setup_intent", rows, p, "/v1/setup_intents")


def retrieve_seti(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    return copy.copy(ctx.store.get("setup_intent", ctx.path["id"]))


ENDPOINTS = [
    Endpoint("POST", "/v1/payment_methods", _PM, create_pm),
    Endpoint("GET", "/v1/payment_methods", {**LIST, "customer": Str(), "type": Str()}, list_pms),
    Endpoint("GET", "/v1/payment_methods/{id}", RETRIEVE, retrieve_pm),
    Endpoint(
        "POST",
        "/v1/payment_methods/{id}",
        {"metadata": METADATA, "billing_details": _BILLING, "allow_redisplay": Str(), "expand": EXPAND},
        update_pm,
    ),
    Endpoint(
        "POST",
        "/v1/payment_methods/{id}/attach",
        {"customer": Str(required=True, nullable=False), "expand": EXPAND},
        attach,
    ),
    Endpoint("POST", "/v1/payment_methods/{id}/detach", {"expand": EXPAND}, detach),
    Endpoint("GET", "/v1/customers/{id}/payment_methods", {**LIST, "type": Str()}, list_pms),
    Endpoint("POST", "/v1/setup_intents", _SETI, create_seti),
    Endpoint("GET", "/v1/mandates/{id}", RETRIEVE, retrieve_mandate),
    Endpoint("GET", "/v1/setup_intents", {**LIST, "customer": Str(), "payment_method": Str()}, list_setis),
    Endpoint(
        "POST",
        "/v1/setup_intents/{id}",
        {
            "customer": Str(),
            "payment_method": Str(),
            "description": Str(max_len=1000),
            "metadata": METADATA,
            "expand": EXPAND,
        },
        update_seti,
    ),
    Endpoint(
        "POST",
        "/v1/setup_intents/{id}/cancel",
        {
            "cancellation_reason": Str(enum=("abandoned", "duplicate", "requested_by_customer")),
            "expand": EXPAND,
        },
        cancel_seti,
    ),
    Endpoint("GET", "/v1/setup_intents/{id}", {**RETRIEVE, "client_secret": Str()}, retrieve_seti),
    Endpoint(
        "POST",
        "/v1/setup_intents/{id}/confirm",
        {"payment_method": Str(), "return_url": Str(), "expand": EXPAND},
        confirm_seti,
    ),
]

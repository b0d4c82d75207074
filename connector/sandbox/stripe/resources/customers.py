"""Customers: CRUD, list, search."""

from __future__ import annotations

import copy
import re
from typing import Any

from .. import sharing
from ..common import Ctx, Endpoint, paginate
from ..errors import StripeError, invalid
from ..search import run_search
from ..store import Store
from ..validation import (
    ADDRESS,
    CUSTOM_FIELDS,
    EXPAND,
    LIST,
    METADATA,
    RETRIEVE,
    SEARCH,
    Arr,
    Obj,
    Str,
    merge_metadata,
)
from . import tax_ids

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_COUNTRY_CODES = (
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT "
    "BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH "
    "ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT "
    "HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS "
    "LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI "
    "NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG "
    "SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG "
    "UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW "
)
COUNTRIES = frozenset(_COUNTRY_CODES.split())

_SHIPPING = Obj(
    fields={"name": Str(required=True, max_len=5000), "phone": Str(max_len=5000), "address": ADDRESS}
)
_FIELDS = {
    "name": Str(max_len=256),
    "email": Str(max_len=512),
    "phone": Str(max_len=20),
    "description": Str(max_len=5000),
    "address": ADDRESS,
    "shipping": _SHIPPING,
    "metadata": METADATA,
    "business_name": Str(max_len=150),
    "individual_name": Str(max_len=150),
    "invoice_settings": Obj(
        fields={
            "default_payment_method": Str(max_len=5000),
            "footer": Str(max_len=5000),
            "custom_fields": CUSTOM_FIELDS,  # the default custom fields of the customer's invoices
            "rendering_options": Obj(
                fields={"amount_tax_display": Str(enum=("exclude_tax", "include_inclusive_tax"))}
            ),
        }
    ),
    "preferred_locales": Arr(item=Str(nullable=False)),
    "tax_exempt": Str(enum=("exempt", "none", "reverse")),
    "payment_method": Str(max_len=5000),
    "expand": EXPAND,
}


def _check_address(addr: dict[str, Any] | None, param: str) -> None:
    country = (addr or {}).get("country")
    if country and country.upper() not in COUNTRIES:
        raise invalid(
            f"Country '{country}' is unknown. Try using a 2-character alphanumeric country code instead, "
            f"such as "
            "'US', 'EG', or 'GB'. A full list of country codes is available at "
            "https://en.wikipedia.org/wiki/ISO_3166-1_alpha-2#Officially_assigned_code_elements",
            f"{param}[country]",
        )


def _address(addr: dict[str, Any] | None) -> dict[str, Any] | None:
    if addr is None:
        return None
    keys = ("city", "country", "line1", "line2", "postal_code", "state")
    return {k: addr.get(k) for k in keys}


def _check_common(ctx: Ctx, p: dict[str, Any], customer_id: str | None) -> None:
    email = p.get("email")
    if email and not _EMAIL.match(email):
        raise invalid(f"Invalid email address: {email}", "email", "email_invalid")
    _check_address(p.get("address"), "address")
    if p.get("shipping"):
        _check_address(p["shipping"].get("address"), "shipping[address]")
    pm_id = (p.get("invoice_settings") or {}).get("default_payment_method")
    if pm_id:
        pm = ctx.store.get("payment_method", pm_id, "invoice_settings[default_payment_method]")
        if customer_id is None or pm.get("customer") != customer_id:
            raise StripeError(
                f"The customer does not have a payment method with the ID {pm_id}. The payment method must "
                f"be "
                "attached to the customer.",
                code="resource_missing",
                param="invoice_settings[default_payment_method]",
            )


def _apply(cust: dict[str, Any], p: dict[str, Any]) -> None:
    for key in ("name", "email", "phone", "description", "business_name", "individual_name"):
        if key in p:
            cust[key] = p[key]
    if "address" in p:
        cust["address"] = _address(p["address"])
    if "shipping" in p:
        ship = p["shipping"]
        cust["shipping"] = (
            None
            if ship is None
            else {
                "address": _address(ship.get("address") or {}),
                "name": ship["name"],
                "phone": ship.get("phone"),
            }
        )
    if "metadata" in p:
        cust["metadata"] = merge_metadata(cust["metadata"], p["metadata"])
    if "invoice_settings" in p:
        settings = p["invoice_settings"] or {}
        for key in ("default_payment_method", "footer", "custom_fields", "rendering_options"):
            if key in settings:
                cust["invoice_settings"][key] = settings[key] or None
    if "preferred_locales" in p:
        cust["preferred_locales"] = p["preferred_locales"] or []
    if "tax_exempt" in p:
        cust["tax_exempt"] = p["tax_exempt"] or "none"


def _clock_for_new_customer(ctx: Ctx, clock_id: str | None) -> dict[str, Any] | None:
    """The test clock a new customer joins: it must exist, be ready and hold fewer than three."""
    if not clock_id:
        return None
    from .testclocks import KIND, MAX_CUSTOMERS, customers_of

    clock = ctx.store.get(KIND, clock_id, "test_clock")
    if clock["status"] != "ready":
        raise invalid(
            f"The test clock {clock_id} is {clock['status'].replace('_', ' ')}; add customers to it once its "
            "status is `ready`.",
            "test_clock",
        )
    if len(customers_of(ctx, clock_id)) >= MAX_CUSTOMERS:
        raise invalid(
            f"The test clock {clock_id} already has {MAX_CUSTOMERS} customers, the most a test clock can "
            "hold. Create another test clock for this customer.",
            "test_clock",
        )
    return clock


def create(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    clock = _clock_for_new_customer(ctx, p.get("test_clock"))
    with store.frozen_at(clock["frozen_time"] if clock else None):
        return _create(ctx, p, clock)


def blank_customer(store: Store, ident: str, created: int, clock_id: str | None) -> dict[str, Any]:
    """A customer as `POST /v1/customers` makes it before the request's fields are applied."""
    return {
        "id": ident,
        "object": "customer",
        "address": None,
        "balance": 0,
        "business_name": None,
        "created": created,
        "currency": None,
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "individual_name": None,
        "invoice_prefix": store.rng.choice("ABCDEF0123456789") + store._rand(7).upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": clock_id,
    }


def _create(ctx: Ctx, p: dict[str, Any], clock: dict[str, Any] | None) -> dict[str, Any]:
    store = ctx.store
    ident = store.new_id("cus")
    if p.get("payment_method"):
        store.get("payment_method", p["payment_method"], "payment_method")
    _check_common(ctx, {k: v for k, v in p.items() if k != "invoice_settings"}, None)
    for index, datum in enumerate(p.get("tax_id_data") or []):  # all checked before anything is stored
        tax_ids.check(datum["type"], datum["value"], f"tax_id_data[{index}]")
    tax_ids.check_room(len(p.get("tax_id_data") or []), "tax_id_data")
    cust = blank_customer(store, ident, store.now(), clock["id"] if clock else None)
    pm_id = (p.get("invoice_settings") or {}).get("default_payment_method")
    if pm_id and pm_id != p.get("payment_method"):
        _check_common(ctx, {"invoice_settings": p["invoice_settings"]}, None)
    _apply(cust, p)
    if p.get("payment_method"):
        from .payments import attach_to

        attach_to(
            ctx, store.get("payment_method", p["payment_method"], "payment_method"), cust, "payment_method"
        )
    store.put(cust)
    ctx.emit("customer.created", cust)
    sharing.customer_created(ctx, cust)
    for datum in p.get("tax_id_data") or []:
        tax_ids.make(ctx, ident, datum["type"], datum["value"])
    return cust


def retrieve(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    ident = ctx.path["id"]
    stub = ctx.store.tombstone("customer", ident)
    if stub is not None:
        return stub
    return ctx.store.get("customer", ident)


def update(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    cust = store.get("customer", ctx.path["id"])
    _check_common(ctx, p, cust["id"])
    before = copy.deepcopy(cust)
    _apply(cust, p)
    store.put(cust)
    previous = {k: before[k] for k in cust if before.get(k) != cust[k]}
    if previous:
        ctx.emit("customer.updated", cust, previous)
        sharing.customer_updated(ctx, cust, previous)
    return cust


def delete(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    from .testclocks import clock_time

    with clock_time(ctx, ctx.path["id"], write=True):
        return _delete(ctx)


def _delete(ctx: Ctx) -> dict[str, Any]:
    store = ctx.store
    cust = store.get("customer", ctx.path["id"])
    from .billing import cancel_subscription

    for sub in list(store.all("subscription")):
        if sub["customer"] == cust["id"] and sub["status"] not in ("canceled", "incomplete_expired"):
            cancel_subscription(ctx, sub, reason="cancellation_requested")
    for pm in store.all("payment_method"):
        if pm.get("customer") == cust["id"]:
            pm["customer"] = None
            store.put(pm)
    for tax_id in tax_ids.of_customer(ctx, cust["id"]):
        store.delete("tax_id", tax_id["id"])
    store.delete("customer", cust["id"])
    ctx.emit("customer.deleted", cust)
    return {"id": cust["id"], "object": "customer", "deleted": True}


def list_(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    rows = ctx.store.newest_first("customer")
    if p.get("email"):
        rows = [c for c in rows if c["email"] == p["email"]]
    if p.get("test_clock"):
        rows = [c for c in rows if c.get("test_clock") == p["test_clock"]]
    return paginate(ctx, "customer", rows, p, "/v1/customers")


def search(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    return run_search(ctx, "customer", p, "/v1/customers/search")


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/customers",
        {
            **_FIELDS,
            "test_clock": Str(),
            "tax_id_data": Arr(item=Obj(fields={"type": tax_ids.TYPE, "value": tax_ids.VALUE})),
        },
        create,
    ),
    Endpoint("GET", "/v1/customers", {**LIST, "email": Str(max_len=512), "test_clock": Str()}, list_),
    Endpoint("GET", "/v1/customers/search", SEARCH, search),
    Endpoint("GET", "/v1/customers/{id}", RETRIEVE, retrieve),
    Endpoint(
        "POST",
        "/v1/customers/{id}",
        {k: v for k, v in _FIELDS.items() if k != "payment_method"} | {"default_source": Str()},
        update,
    ),
    Endpoint("DELETE", "/v1/customers/{id}", {}, delete),
]

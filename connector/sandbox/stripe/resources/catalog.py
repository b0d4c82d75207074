"""Products, prices and coupons."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from ..common import Ctx, Endpoint, paginate
from ..errors import StripeError, exclusive, invalid, missing_param
from ..search import run_search
from ..validation import (
    EXPAND,
    LIST,
    METADATA,
    RETRIEVE,
    SEARCH,
    Arr,
    Bool,
    Decimal,
    Int,
    Num,
    Obj,
    Str,
    Ts,
    merge_metadata,
)
from .meters import check_meter

CURRENCIES = frozenset(
    [
        "usd",
        "eur",
        "gbp",
        "cad",
        "aud",
        "jpy",
        "chf",
        "sek",
        "nok",
        "dkk",
        "nzd",
        "sgd",
        "hkd",
        "mxn",
        "brl",
        "inr",
        "pln",
        "czk",
        "huf",
        "ron",
        "bgn",
        "zar",
        "ils",
        "aed",
    ]
)
INTERVALS = ("day", "month", "week", "year")
TAX_BEHAVIOR = ("exclusive", "inclusive", "unspecified")

_PRODUCT = {
    "name": Str(required=True, nullable=False, max_len=5000),
    "id": Str(max_len=5000),
    "active": Bool(nullable=False),
    "description": Str(max_len=40000),
    "metadata": METADATA,
    "images": Arr(item=Str()),
    "shippable": Bool(),
    "statement_descriptor": Str(max_len=22),
    "tax_code": Str(),
    "unit_label": Str(max_len=12),
    "url": Str(max_len=5000),
    "default_price_data": Obj(
        fields={
            "currency": Str(required=True, nullable=False),
            "unit_amount": Int(min=0),
            "unit_amount_decimal": Decimal(),
            "recurring": Obj(
                fields={"interval": Str(required=True, enum=INTERVALS), "interval_count": Int(min=1)}
            ),
            "tax_behavior": Str(enum=TAX_BEHAVIOR),
            "metadata": METADATA,
        }
    ),
    "expand": EXPAND,
}
_PRODUCT_UPDATE = {k: v for k, v in _PRODUCT.items() if k not in ("id", "default_price_data")} | {
    "name": Str(nullable=False, max_len=5000),
    "default_price": Str(),
}

_RECURRING = Obj(
    fields={
        "interval": Str(required=True, nullable=False, enum=INTERVALS),
        "interval_count": Int(min=1),
        "usage_type": Str(enum=("licensed", "metered")),
        "meter": Str(),
        "trial_period_days": Int(min=0),
    }
)
_PRICE = {
    "currency": Str(required=True, nullable=False),
    "unit_amount": Int(min=0),
    "unit_amount_decimal": Decimal(),
    "product": Str(),
    "product_data": Obj(
        fields={
            "name": Str(required=True, nullable=False, max_len=5000),
            "active": Bool(),
            "metadata": METADATA,
            "statement_descriptor": Str(max_len=22),
            "tax_code": Str(),
            "unit_label": Str(max_len=12),
            "id": Str(),
        }
    ),
    "recurring": _RECURRING,
    "lookup_key": Str(max_len=200),
    "transfer_lookup_key": Bool(),
    "active": Bool(),
    "nickname": Str(max_len=5000),
    "metadata": METADATA,
    "billing_scheme": Str(enum=("per_unit", "tiered")),
    "tax_behavior": Str(enum=TAX_BEHAVIOR),
    "expand": EXPAND,
}
_PRICE_UPDATE = {
    "active": Bool(),
    "lookup_key": Str(max_len=200),
    "transfer_lookup_key": Bool(),
    "metadata": METADATA,
    "nickname": Str(max_len=5000),
    "tax_behavior": Str(enum=TAX_BEHAVIOR),
    "expand": EXPAND,
}


def check_currency(currency: str, param: str) -> str:
    cur = currency.lower()
    if cur not in CURRENCIES:
        raise invalid(
            f"Invalid currency: {currency}. Stripe currently supports these currencies: "
            + ", ".join(sorted(CURRENCIES)),
            param,
        )
    return cur


# products ------------------------------------------------------------------------------------
def new_product(ctx: Ctx, p: dict[str, Any], ident: str | None = None) -> dict[str, Any]:
    store = ctx.store
    now = store.now()
    if ident and (store.find("product", ident) or store.tombstone("product", ident)):
        raise invalid(f"Product already exists.", "id", "resource_already_exists")  # noqa: F541
    prod = {
        "id": ident or store.new_id("prod"),
        "object": "product",
        "active": p.get("active", True) if p.get("active") is not None else True,
        "attributes": [],
        "created": now,
        "default_price": None,
        "description": p.get("description"),
        "images": p.get("images") or [],
        "livemode": False,
        "marketing_features": [],
        "metadata": merge_metadata({}, p.get("metadata")),
        "name": p["name"],
        "package_dimensions": None,
        "shippable": p.get("shippable"),
        "statement_descriptor": p.get("statement_descriptor"),
        "tax_code": p.get("tax_code"),
        "type": "service",
        "unit_label": p.get("unit_label"),
        "updated": now,
        "url": p.get("url"),
    }
    store.put(prod)
    ctx.emit("product.created", prod)
    return prod


def create_product(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    prod = new_product(ctx, p, p.get("id"))
    dpd = p.get("default_price_data")
    if dpd:
        price_params = dict(dpd) | {"product": prod["id"]}
        price = new_price(ctx, price_params, "default_price_data")
        prod["default_price"] = price["id"]
        ctx.store.put(prod)
    return prod


def update_product(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    prod = store.get("product", ctx.path["id"])
    before = copy.deepcopy(prod)
    if p.get("default_price"):
        price = store.get("price", p["default_price"], "default_price")
        if price["product"] != prod["id"]:
            raise invalid(
                f"The price `{price['id']}` does not belong to product `{prod['id']}`.", "default_price"
            )
        if not price["active"]:
            raise invalid("The default price must be active.", "default_price")
    for key, val in p.items():
        if key == "metadata":
            prod["metadata"] = merge_metadata(prod["metadata"], val)
        elif key in ("expand",):
            continue
        elif key == "images":
            prod["images"] = val or []
        else:
            prod[key] = val
    prod["updated"] = store.now()
    store.put(prod)
    ctx.emit(
        "product.updated", prod, {k: before[k] for k in prod if before.get(k) != prod[k] and k != "updated"}
    )
    return prod


def delete_product(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    prod = store.get("product", ctx.path["id"])
    if any(pr["product"] == prod["id"] for pr in store.all("price")):
        raise invalid("This product cannot be deleted because it has one or more user-created prices.", "id")
    store.delete("product", prod["id"])
    ctx.emit("product.deleted", prod)
    return {"id": prod["id"], "object": "product", "deleted": True}


def list_products(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    rows = list(ctx.store.newest_first("product"))
    if p.get("active") is not None:
        rows = [r for r in rows if r["active"] == p["active"]]
    if p.get("ids"):
        rows = [r for r in rows if r["id"] in p["ids"]]
    return paginate(ctx, "product", rows, p, "/v1/products")


# prices --------------------------------------------------------------------------------------
def new_price(ctx: Ctx, p: dict[str, Any], param_prefix: str = "", *, active: bool = True) -> dict[str, Any]:
    """Create a price from validated params (also used for `price_data` and `default_price_data`)."""
    store = ctx.store

    def name(key: str) -> str:
        return f"{param_prefix}[{key}]" if param_prefix else key

    currency = check_currency(p["currency"], name("currency"))
    if p.get("unit_amount") is not None and p.get("unit_amount_decimal") is not None:
        raise exclusive(name("unit_amount"), name("unit_amount_decimal"))
    if p.get("product") and p.get("product_data"):
        raise exclusive(name("product"), name("product_data"))
    recurring: dict[str, Any] = p.get("recurring") or {}
    metered = recurring.get("usage_type") == "metered"
    if (
        p.get("unit_amount") is None
        and p.get("unit_amount_decimal") is None
        and p.get("billing_scheme") != "tiered"
    ):
        raise missing_param(name("unit_amount"))
    meter_param = name("recurring[meter]") if not param_prefix else name("recurring][meter")
    if metered and not recurring.get("meter"):
        raise invalid(
            "Metered prices must be backed by a meter. Pass `recurring[meter]` with the ID of a billing "
            "meter.",
            meter_param,
        )
    if recurring and recurring.get("meter"):
        check_meter(ctx, recurring["meter"], meter_param)
    if p.get("product_data"):
        product_id = new_product(ctx, p["product_data"], p["product_data"].get("id"))["id"]
    elif p.get("product"):
        product = store.get("product", p["product"], name("product"))
        if not product["active"]:
            # An archived product "can't be added to new invoices or subscriptions" (Stripe docs,
            # Manage products and prices); its prices are refused with Stripe's inactive-product error.
            raise invalid(
                f"The product {product['id']} is marked as inactive, and thus no new prices can be "
                "created for it. Reactivate the product (active=true) first.",
                name("product"),
            )
        product_id = product["id"]
    else:
        raise missing_param(name("product"))
    lookup_key = p.get("lookup_key")
    if lookup_key:
        holder = next((x for x in store.all("price") if x["lookup_key"] == lookup_key), None)
        if holder is not None:
            if not p.get("transfer_lookup_key"):
                raise invalid(f"A price (`{holder['id']}`) already uses that lookup key.", name("lookup_key"))
            holder["lookup_key"] = None
            store.put(holder)
    unit_amount = p.get("unit_amount")
    decimal = p.get("unit_amount_decimal")
    if unit_amount is not None:
        decimal = str(unit_amount)
    elif decimal is not None and re.fullmatch(r"\d+(\.0+)?", decimal):
        unit_amount = int(float(decimal))
    price = {
        "id": store.new_id("price", 24),
        "object": "price",
        "active": p.get("active", True) if p.get("active") is not None else active,
        "billing_scheme": p.get("billing_scheme") or "per_unit",
        "created": store.now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": merge_metadata({}, p.get("metadata")),
        "nickname": p.get("nickname"),
        "product": product_id,
        "recurring": None
        if not recurring
        else {
            "interval": recurring["interval"],
            "interval_count": recurring.get("interval_count") or 1,
            "meter": recurring.get("meter"),
            "trial_period_days": recurring.get("trial_period_days"),
            "usage_type": recurring.get("usage_type") or "licensed",
        },
        "tax_behavior": p.get("tax_behavior") or "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": decimal,
    }
    if (
        price["recurring"]
        and price["recurring"]["interval_count"]
        * {"day": 1, "week": 7, "month": 31, "year": 366}[price["recurring"]["interval"]]
        > 3 * 366
    ):
        raise invalid(
            "The maximum billing interval is three years (3 years, 36 months, or 156 weeks).",
            name("recurring[interval_count]"),
        )
    store.put(price)
    ctx.emit("price.created", price)
    return price


def create_price(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    return new_price(ctx, p)


def update_price(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    price = store.get("price", ctx.path["id"])
    before = copy.deepcopy(price)
    if (
        "tax_behavior" in p
        and p["tax_behavior"] != price["tax_behavior"]
        and price["tax_behavior"] != "unspecified"
    ):
        raise invalid(
            "You cannot change `tax_behavior` once it has been set to `inclusive` or `exclusive`.",
            "tax_behavior",
        )
    if p.get("lookup_key"):
        holder = next(
            (x for x in store.all("price") if x["lookup_key"] == p["lookup_key"] and x["id"] != price["id"]),
            None,
        )
        if holder is not None:
            if not p.get("transfer_lookup_key"):
                raise invalid(f"A price (`{holder['id']}`) already uses that lookup key.", "lookup_key")
            holder["lookup_key"] = None
            store.put(holder)
    for key in ("active", "lookup_key", "nickname", "tax_behavior"):
        if key in p:
            price[key] = p[key] if not (key == "active" and p[key] is None) else price[key]
    if "metadata" in p:
        price["metadata"] = merge_metadata(price["metadata"], p["metadata"])
    store.put(price)
    ctx.emit("price.updated", price, {k: before[k] for k in price if before.get(k) != price[k]})
    return price


def list_prices(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    rows = list(ctx.store.newest_first("price"))
    if p.get("product"):
        rows = [r for r in rows if r["product"] == p["product"]]
    if p.get("active") is not None:
        rows = [r for r in rows if r["active"] == p["active"]]
    if p.get("currency"):
        rows = [r for r in rows if r["currency"] == p["currency"].lower()]
    if p.get("type"):
        rows = [r for r in rows if r["type"] == p["type"]]
    if p.get("lookup_keys"):
        rows = [r for r in rows if r["lookup_key"] in p["lookup_keys"]]
    if p.get("recurring"):
        rec = p["recurring"]
        rows = [
            r
            for r in rows
            if r["recurring"] and all(r["recurring"].get(k) == v for k, v in rec.items() if v is not None)
        ]
    return paginate(ctx, "price", rows, p, "/v1/prices")


# coupons -------------------------------------------------------------------------------------
_COUPON = {
    "id": Str(max_len=5000),
    "name": Str(max_len=40),
    "percent_off": Num(min=0.0, max=100.0),
    "amount_off": Int(min=1),
    "currency": Str(),
    "duration": Str(enum=("forever", "once", "repeating")),
    "duration_in_months": Int(min=1),
    "max_redemptions": Int(min=1),
    "redeem_by": Ts(),
    "metadata": METADATA,
    "applies_to": Obj(fields={"products": Arr(item=Str())}),
    "expand": EXPAND,
}


def create_coupon(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    if p.get("percent_off") is not None and p.get("amount_off") is not None:
        raise exclusive("amount_off", "percent_off")
    if p.get("percent_off") is None and p.get("amount_off") is None:
        raise invalid("Must provide one of `percent_off` or `amount_off`.", "percent_off")
    if p.get("percent_off") is not None and p["percent_off"] <= 0:
        raise invalid(
            "Invalid percent_off: must be a positive float larger than 0, and smaller or equal to 100.",
            "percent_off",
        )
    if p.get("amount_off") is not None and not p.get("currency"):
        raise missing_param("currency")
    duration = p.get("duration") or "once"
    if duration == "repeating" and not p.get("duration_in_months"):
        raise missing_param("duration_in_months")
    if duration != "repeating" and p.get("duration_in_months"):
        raise invalid(
            "You can only specify `duration_in_months` when `duration` is `repeating`.", "duration_in_months"
        )
    ident = p.get("id") or store._rand(8)
    if store.find("coupon", ident):
        raise StripeError("Coupon already exists.", code="resource_already_exists", param="id")
    coupon = {
        "id": ident,
        "object": "coupon",
        "amount_off": p.get("amount_off"),
        "applies_to": p.get("applies_to"),
        "created": store.now(),
        "currency": check_currency(p["currency"], "currency") if p.get("currency") else None,
        "duration": duration,
        "duration_in_months": p.get("duration_in_months"),
        "livemode": False,
        "max_redemptions": p.get("max_redemptions"),
        "metadata": merge_metadata({}, p.get("metadata")),
        "name": p.get("name"),
        "percent_off": p.get("percent_off"),
        "redeem_by": p.get("redeem_by"),
        "times_redeemed": 0,
        "valid": True,
    }
    store.put(coupon)
    ctx.emit("coupon.created", coupon)
    return coupon


def retrieve(kind: str) -> Callable[[Ctx, dict[str, Any]], dict[str, Any]]:
    def fn(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
        return ctx.store.get(kind, ctx.path["id"])

    return fn


def delete_coupon(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    coupon = ctx.store.get("coupon", ctx.path["id"])
    ctx.store.delete("coupon", coupon["id"])
    ctx.emit("coupon.deleted", coupon)
    return {"id": coupon["id"], "object": "coupon", "deleted": True}


def list_coupons(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    return paginate(ctx, "coupon", ctx.store.newest_first("coupon"), p, "/v1/coupons")


ENDPOINTS = [
    Endpoint("POST", "/v1/products", _PRODUCT, create_product),
    Endpoint(
        "GET",
        "/v1/products",
        {**LIST, "active": Bool(), "ids": Arr(item=Str()), "shippable": Bool(), "url": Str()},
        list_products,
    ),
    Endpoint(
        "GET",
        "/v1/products/search",
        SEARCH,
        lambda ctx, p: run_search(ctx, "product", p, "/v1/products/search"),
    ),
    Endpoint("GET", "/v1/products/{id}", RETRIEVE, retrieve("product")),
    Endpoint("POST", "/v1/products/{id}", _PRODUCT_UPDATE, update_product),
    Endpoint("DELETE", "/v1/products/{id}", {}, delete_product),
    Endpoint("POST", "/v1/prices", _PRICE, create_price),
    Endpoint(
        "GET",
        "/v1/prices",
        {
            **LIST,
            "active": Bool(),
            "currency": Str(),
            "product": Str(),
            "type": Str(enum=("one_time", "recurring")),
            "lookup_keys": Arr(item=Str(), max_items=10),
            "recurring": Obj(
                fields={
                    "interval": Str(enum=INTERVALS),
                    "usage_type": Str(enum=("licensed", "metered")),
                    "meter": Str(),
                }
            ),
        },
        list_prices,
    ),
    Endpoint(
        "GET", "/v1/prices/search", SEARCH, lambda ctx, p: run_search(ctx, "price", p, "/v1/prices/search")
    ),
    Endpoint("GET", "/v1/prices/{id}", RETRIEVE, retrieve("price")),
    Endpoint("POST", "/v1/prices/{id}", _PRICE_UPDATE, update_price),
    Endpoint("POST", "/v1/coupons", _COUPON, create_coupon),
    Endpoint("GET", "/v1/coupons", LIST, list_coupons),
    Endpoint("GET", "/v1/coupons/{id}", RETRIEVE, retrieve("coupon")),
    Endpoint("DELETE", "/v1/coupons/{id}", {}, delete_coupon),
]

"""One-off invoices: POST /v1/invoices (a draft), POST /v1/invoiceitems onto it, GET
/v1/invoiceitems, POST /v1/invoices/{id}/finalize (open, numbered, hosted URL, due date).

Subscription invoices are built by billing.py; this module makes the invoices an API caller
assembles itself. A draft holds its lines in `lines` as items are added; the totals follow.
Documented with sources in docs/SANDBOX.md ("Invoices and invoice items").
"""

from __future__ import annotations

import copy
from decimal import ROUND_HALF_EVEN
from decimal import Decimal as D
from typing import Any

from ..common import Ctx, Endpoint, paginate
from ..errors import StripeError, exclusive, invalid, missing_param
from ..validation import CUSTOM_FIELDS, EXPAND, LIST, METADATA, Bool, Decimal, Int, Obj, Str, merge_metadata
from .billing import COLLECTION, check_pm
from .catalog import TAX_BEHAVIOR, new_price
from .tax import AUTOMATIC_TAX, automatic_tax
from .testclocks import on_clock_time

# Stripe: "You can no longer add more than 250 invoice items to an invoice" (changelog 2016-02-22).
MAX_INVOICE_ITEMS = 250
PENDING_BEHAVIOR = ("exclude", "include")

_INVOICE = {
    "customer": Str(required=True, nullable=False),
    "automatic_tax": AUTOMATIC_TAX,
    "auto_advance": Bool(),
    "collection_method": Str(enum=COLLECTION),
    "days_until_due": Int(min=0, max=730),
    "due_date": Int(),
    "default_payment_method": Str(),
    "description": Str(max_len=1500),
    "footer": Str(max_len=5000),
    "currency": Str(),
    "pending_invoice_items_behavior": Str(enum=PENDING_BEHAVIOR),
    "custom_fields": CUSTOM_FIELDS,
    "metadata": METADATA,
    "expand": EXPAND,
}
_INVOICE_ITEM = {
    "customer": Str(),
    "invoice": Str(),
    "pricing": Obj(fields={"price": Str()}),
    "price_data": Obj(
        fields={
            "currency": Str(required=True, nullable=False),
            "product": Str(required=True, nullable=False),
            "unit_amount": Int(min=0),
            "unit_amount_decimal": Decimal(),
            "tax_behavior": Str(enum=TAX_BEHAVIOR),
        }
    ),
    "quantity": Int(min=0),
    "amount": Int(),
    "currency": Str(),
    "subscription": Str(),
    "period": Obj(
        fields={"start": Int(required=True, nullable=False), "end": Int(required=True, nullable=False)}
    ),
    "description": Str(max_len=5000),
    "discountable": Bool(),
    "metadata": METADATA,
    "expand": EXPAND,
}


def _amount(price: dict[str, Any], quantity: int) -> int:
    unit = D(price["unit_amount_decimal"] or "0")
    return int((unit * quantity).quantize(D(1), rounding=ROUND_HALF_EVEN))


def _recount(invoice: dict[str, Any]) -> None:
    total = sum(line["amount"] for line in invoice["lines"]["data"])
    invoice["lines"]["total_count"] = len(invoice["lines"]["data"])
    invoice.update(subtotal=total, total=total, total_excluding_tax=total, amount_due=max(total, 0))
    invoice["amount_remaining"] = invoice["amount_due"] - invoice["amount_paid"]


@on_clock_time(lambda ctx, p: p.get("customer"))
def create_invoice(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    customer = store.get("customer", p["customer"], "customer")
    method = p.get("collection_method") or "charge_automatically"
    days = p.get("days_until_due")
    if method == "send_invoice" and days is None and p.get("due_date") is None:
        raise missing_param("days_until_due")
    if method != "send_invoice" and (days is not None or p.get("due_date") is not None):
        raise invalid(
            "`days_until_due` can only be set when `collection_method` is `send_invoice`.", "days_until_due"
        )
    if days is not None and p.get("due_date") is not None:
        raise exclusive("days_until_due", "due_date")
    check_pm(ctx, p.get("default_payment_method"), customer["id"], "default_payment_method")
    now = store.now()
    ident = store.new_id("in", 24)
    pending = [
        ii
        for ii in store.all("invoiceitem")
        if ii["invoice"] is None and ii["customer"] == customer["id"] and not ii.get("parent")
    ]
    include = p.get("pending_invoice_items_behavior", "exclude") == "include"
    invoice: dict[str, Any] = {
        "id": ident,
        "object": "invoice",
        "account_country": "US",
        "amount_due": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "attempt_count": 0,
        "attempted": False,
        "automatic_tax": automatic_tax(customer, p.get("automatic_tax"), "automatic_tax[enabled]"),
        "auto_advance": p.get("auto_advance", True),
        "billing_reason": "manual",
        "collection_method": method,
        "created": now,
        "currency": p.get("currency") or (pending[0]["currency"] if include and pending else "usd"),
        "customer": customer["id"],
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        # Given, else the customer's invoice_settings.custom_fields (Stripe's defaults for its invoices).
        "custom_fields": p.get("custom_fields") or customer["invoice_settings"]["custom_fields"],
        "days_until_due": days,
        "default_payment_method": p.get("default_payment_method"),
        "description": p.get("description"),
        "discounts": [],
        "due_date": p.get("due_date"),
        "footer": p.get("footer"),
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "lines": {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": ""},
        "livemode": False,
        "metadata": merge_metadata({}, p.get("metadata")),
        "number": None,
        "parent": None,
        "period_end": now,
        "period_start": now,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": 0,
        "test_clock": customer.get("test_clock"),
        "total": 0,
        "total_excluding_tax": 0,
    }
    invoice["lines"]["url"] = f"/v1/invoices/{ident}/lines"
    if include:
        for ii in pending:
            _attach(store, invoice, ii)
    _recount(invoice)
    store.put(invoice)
    ctx.emit("invoice.created", invoice)
    return invoice


def _attach(store: Any, invoice: dict[str, Any], ii: dict[str, Any]) -> None:
    ii["invoice"] = invoice["id"]
    store.put(ii)
    invoice["lines"]["data"].append(
        {
            "id": store.new_id("il", 24),
            "object": "line_item",
            "amount": ii["amount"],
            "currency": ii["currency"],
            "description": ii["description"],
            "discount_amounts": [],
            "discountable": ii["discountable"],
            "discounts": [],
            "invoice": invoice["id"],
            "livemode": False,
            "metadata": copy.deepcopy(ii["metadata"]),
            "parent": {
                "type": "invoice_item_details",
                "invoice_item_details": {"invoice_item": ii["id"], "proration": False, "subscription": None},
            },
            "period": copy.deepcopy(ii["period"]),
            "pricing": copy.deepcopy(ii["pricing"]),
            "quantity": ii["quantity"],
            "subscription": None,
            "taxes": [],
        }
    )


def _item_owner(ctx: Ctx, p: dict[str, Any]) -> str | None:
    if p.get("customer"):
        return str(p["customer"])
    invoice = ctx.store.find("invoice", p["invoice"]) if p.get("invoice") else None
    return invoice["customer"] if invoice else None


@on_clock_time(_item_owner)
def create_invoice_item(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    invoice = store.get("invoice", p["invoice"], "invoice") if p.get("invoice") else None
    if not p.get("customer") and invoice is None:
        raise missing_param("customer")
    customer_id = p.get("customer") or (invoice["customer"] if invoice else None)
    store.get("customer", customer_id, "customer")
    if invoice is not None and invoice["customer"] != customer_id:
        raise invalid(
            f"The invoice's customer ({invoice['customer']}) does not match the invoice item's customer "
            f"({customer_id}).",
            "invoice",
        )
    if invoice is not None and invoice["status"] != "draft":
        raise invalid(
            f"You can only add invoice items to draft invoices. Invoice {invoice['id']} is "
            f"{invoice['status']}.",
            "invoice",
        )
    if invoice is not None and len(invoice["lines"]["data"]) >= MAX_INVOICE_ITEMS:
        raise invalid(f"An invoice cannot have more than {MAX_INVOICE_ITEMS} invoice items.", "invoice")
    price_id = (p.get("pricing") or {}).get("price")
    if price_id and p.get("price_data"):
        raise exclusive("pricing[price]", "price_data")
    subscription = _subscription_of(ctx, p, str(customer_id))
    if p.get("amount") is not None and (price_id or p.get("price_data")):
        raise exclusive("amount", "pricing[price]" if price_id else "price_data")
    if p.get("amount") is not None:
        if not p.get("currency"):
            raise missing_param("currency")
        price = {
            "id": None,
            "product": None,
            "currency": str(p["currency"]).lower(),
            "unit_amount_decimal": None,
        }
    elif p.get("price_data"):
        store.get("product", p["price_data"]["product"], "price_data[product]")
        price = new_price(ctx, dict(p["price_data"]), "price_data", active=False)
    elif price_id:
        price = store.get("price", price_id, "pricing[price]")
        if price["type"] != "one_time":
            raise invalid(
                "The price specified is set to `type=recurring` but this field only accepts prices with "
                "`type=one_time`.",
                "pricing[price]",
            )
        if not price["active"]:
            raise invalid(
                "The price specified is inactive. This field only accepts active prices.", "pricing[price]"
            )
    else:
        raise invalid("You must specify either `amount`, `pricing[price]` or `price_data`.", None)
    if invoice is not None and invoice["lines"]["data"] and invoice["currency"] != price["currency"]:
        raise invalid(
            f"The currency of this invoice item ({price['currency']}) does not match the currency of "
            f"invoice {invoice['id']} ({invoice['currency']}).",
            "invoice",
        )
    quantity = p.get("quantity", 1)
    now = store.now()
    ii = {
        "id": store.new_id("ii", 24),
        "object": "invoiceitem",
        "amount": int(p["amount"]) if p.get("amount") is not None else _amount(price, quantity),
        "currency": price["currency"],
        "customer": customer_id,
        "date": now,
        "description": p.get("description"),
        "discountable": p.get("discountable", True),
        "invoice": None,
        "livemode": False,
        "metadata": merge_metadata({}, p.get("metadata")),
        "parent": (
            {"subscription_details": {"subscription": subscription}, "type": "subscription_details"}
            if subscription
            else None
        ),
        "period": dict(p["period"]) if p.get("period") else {"start": now, "end": now},
        "pricing": (
            {
                "price_details": {"price": price["id"], "product": price["product"]},
                "type": "price_details",
                "unit_amount_decimal": price["unit_amount_decimal"],
            }
            if price["id"]
            else None
        ),
        "proration": False,
        "quantity": quantity,
        "test_clock": store.get("customer", customer_id).get("test_clock"),
    }
    if invoice is not None:
        if not invoice["lines"]["data"]:
            invoice["currency"] = price["currency"]
        _attach(store, invoice, ii)
        _recount(invoice)
        store.put(invoice)
    else:
        store.put(ii)
    ctx.emit("invoiceitem.created", ii)
    return ii


def _subscription_of(ctx: Ctx, p: dict[str, Any], customer_id: str) -> str | None:
    """`subscription`: the item waits for that subscription's next invoice (the customer's own)."""
    if not p.get("subscription"):
        return None
    sub = ctx.store.get("subscription", p["subscription"], "subscription")
    if sub["customer"] != customer_id:
        raise invalid(
            f"The subscription {sub['id']} does not belong to customer {customer_id}.", "subscription"
        )
    if p.get("invoice"):
        raise exclusive("invoice", "subscription")
    return str(sub["id"])


def list_invoice_items(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    rows = list(ctx.store.newest_first("invoiceitem"))
    for key in ("customer", "invoice"):
        if p.get(key):
            rows = [r for r in rows if r[key] == p[key]]
    if p.get("pending") is not None:
        rows = [r for r in rows if (r["invoice"] is None) == p["pending"]]
    return paginate(ctx, "invoiceitem", rows, p, "/v1/invoiceitems")


def _invoice_owner(ctx: Ctx, p: dict[str, Any]) -> str | None:
    invoice = ctx.store.find("invoice", ctx.path["id"])
    return invoice["customer"] if invoice else None


@on_clock_time(_invoice_owner)
def finalize_invoice(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    invoice = store.get("invoice", ctx.path["id"])
    if invoice["status"] != "draft":
        raise StripeError("This invoice is already finalized, you can't re-finalize a non-draft invoice.")
    customer = store.get("customer", invoice["customer"])
    now = store.now()
    if "auto_advance" in p:
        invoice["auto_advance"] = p["auto_advance"]
    invoice["number"] = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    invoice["hosted_invoice_url"] = f"https://invoice.stripe.com/i/acct_test/{invoice['id']}"
    invoice["invoice_pdf"] = f"https://pay.stripe.com/invoice/acct_test/{invoice['id']}/pdf"
    invoice["status_transitions"]["finalized_at"] = now
    if invoice["collection_method"] == "send_invoice":
        invoice["due_date"] = invoice["due_date"] or now + 86400 * (invoice["days_until_due"] or 0)
    _recount(invoice)
    # Stripe: an invoice with nothing to pay is marked paid when it is finalized.
    if invoice["amount_due"] == 0:
        invoice["status"] = "paid"
        invoice["status_transitions"]["paid_at"] = now
        invoice["attempted"] = True
        invoice["auto_advance"] = False
    else:
        invoice["status"] = "open"
    store.put(customer)
    store.put(invoice)
    ctx.emit("invoice.finalized", invoice)
    if invoice["status"] == "paid":
        ctx.emit("invoice.paid", invoice)
    return invoice


ENDPOINTS = [
    Endpoint("POST", "/v1/invoices", _INVOICE, create_invoice),
    Endpoint(
        "POST", "/v1/invoices/{id}/finalize", {"auto_advance": Bool(), "expand": EXPAND}, finalize_invoice
    ),
    Endpoint("POST", "/v1/invoiceitems", _INVOICE_ITEM, create_invoice_item),
    Endpoint(
        "GET",
        "/v1/invoiceitems",
        {**LIST, "customer": Str(), "invoice": Str(), "pending": Bool()},
        list_invoice_items,
    ),
    Endpoint(
        "GET",
        "/v1/invoiceitems/{id}",
        {"expand": EXPAND},
        lambda ctx, p: ctx.store.get("invoiceitem", ctx.path["id"]),
    ),
]

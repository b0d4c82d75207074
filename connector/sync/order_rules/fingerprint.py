"""The Order's billing content as one hash: an Order edited after it was synced is detected and
reported instead of billed again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from connector.mapping.engine import read_path
from connector.sync.money import to_decimal
from connector.sync.order_rules.config import OrderRulesConfig
from connector.sync.order_rules.fields import (
    BILLED_LINE_FIELDS,
    BILLED_ORDER_FIELDS,
    SEGMENT_LINE_FIELDS,
    order_lines,
)


def _canonical(value: Any) -> Any:
    """Numbers compare by value (10 == 10.0 == "10.00"); everything else as text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return format(to_decimal(value).normalize(), "f")
    return str(value)


def order_fingerprint(order: Mapping[str, Any], config: OrderRulesConfig | None = None) -> str:
    """sha256 of the billing-relevant content (dates, currency, lines, quantities, prices), so an
    Order edited after it was synced is detected and reported instead of billed again. Fields the
    connector writes (Stripe ids, sync status) and Status are left out."""
    price_field = config.unit_price_field if config else "UnitPrice"
    quantity_field = config.quantity_field if config else "Quantity"
    term_field = config.payment_term_field if config else "Payment_Term__c"
    fields = (*BILLED_ORDER_FIELDS, term_field)
    content = {
        "order": {f: _canonical(order.get(f)) for f in fields},
        "lines": sorted(
            (
                {
                    "Id": str(rec.get("Id")),
                    **{f: _canonical(rec.get(f)) for f in BILLED_LINE_FIELDS},
                    **(
                        {f: _canonical(rec.get(f)) for f in SEGMENT_LINE_FIELDS}
                        if rec.get(SEGMENT_LINE_FIELDS[0])
                        else {}
                    ),
                    "quantity": _canonical(rec.get(quantity_field)),
                    "unit_price": _canonical(rec.get(price_field)),
                }
                for rec in order_lines(order)
            ),
            key=lambda line: line["Id"],
        ),
    }
    discounts = _discounts(order, config)
    if discounts:  # only Orders with a discount: an undiscounted Order's hash is the same in both modes
        content["discounts"] = discounts
    trial = read_path(order, config.trial_end_field) if config and config.trial_end_field else None
    if trial not in (None, ""):  # only when set: Orders synced before trials were mapped keep their hash
        content["trial_end"] = _canonical(trial)
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _discounts(order: Mapping[str, Any], config: OrderRulesConfig | None) -> dict[str, Any]:
    """The discount values coupons mode bills (its list price only beside a discount)."""
    fields = config.discounts if config else None
    if fields is None:
        return {}
    found: dict[str, Any] = {}
    for path in fields.order_paths:
        if read_path(order, path) not in (None, ""):
            found[f"order.{path}"] = _canonical(read_path(order, path))
    for rec in order_lines(order):
        values = {
            p: _canonical(read_path(rec, p)) for p in fields.line_paths if read_path(rec, p) not in (None, "")
        }
        if values:
            values[fields.list_price] = _canonical(read_path(rec, fields.list_price))
            found[str(rec.get("Id"))] = values
    return found

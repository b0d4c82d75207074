"""Automatic tax (Stripe Tax) on subscriptions, schedule phases and invoices: the `automatic_tax`
parameter and the check of the customer's location that Stripe makes when it is enabled.

Stripe uses the customer's shipping address if it has one, else its billing address; the location
must be precise enough to tax: a country always, and a postal code for the United States, a postal
code or a province for Canada (docs.stripe.com/tax/customer-locations). Otherwise the request fails
with `customer_tax_location_invalid` (docs.stripe.com/error-codes). The fake computes no tax amount:
invoices of an automatic-tax subscription carry no tax lines (SANDBOX.md)."""

from __future__ import annotations

from typing import Any

from ..errors import StripeError
from ..validation import Bool, Obj, Str

AUTOMATIC_TAX = Obj(
    fields={
        "enabled": Bool(required=True, nullable=False),
        "liability": Obj(fields={"type": Str(required=True, enum=("account", "self")), "account": Str()}),
    }
)
LOCATION_INVALID = (
    "The customer's location isn't recognized. Set a valid customer address in order to automatically "
    "calculate tax."
)


def location_problem(customer: dict[str, Any]) -> str | None:
    """Why Stripe Tax cannot place this customer, or None."""
    shipping = (customer.get("shipping") or {}).get("address") or {}
    address = shipping if any(shipping.values()) else (customer.get("address") or {})
    country = (address.get("country") or "").upper()
    if not country:
        return "no country"
    if country == "US" and not address.get("postal_code"):
        return "a US address without a postal code"
    if country == "CA" and not (address.get("postal_code") or address.get("state")):
        return "a Canadian address without a postal code or province"
    return None


def automatic_tax(customer: dict[str, Any], requested: dict[str, Any] | None, param: str) -> dict[str, Any]:
    """The object's `automatic_tax` hash; raises Stripe's error when enabled for an unplaceable customer."""
    enabled = bool((requested or {}).get("enabled"))
    if enabled and location_problem(customer) is not None:
        raise StripeError(LOCATION_INVALID, code="customer_tax_location_invalid", param=param)
    liability = (requested or {}).get("liability") if enabled else None
    return {
        "disabled_reason": None,
        "enabled": enabled,
        "liability": (liability or {"type": "self"}) if enabled else None,
    }

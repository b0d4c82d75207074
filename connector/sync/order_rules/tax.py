"""Stripe Tax's pre-check (pure): with automatic tax on, the Customer's location must be precise
enough to tax, or Stripe refuses the subscription (`customer_tax_location_invalid`).

Stripe uses the customer's shipping address when it has one, else the billing address, and needs a
country always, a postal code in the US, a postal code or a province in Canada
(docs.stripe.com/tax/customer-locations). The Order is refused naming the Account fields to fill."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connector.mapping.countries import country_code
from connector.sync.order_rules.refusals import Reason

if TYPE_CHECKING:  # config imports this module for its defaults
    from connector.sync.order_rules.config import OrderRulesConfig
    from connector.sync.order_rules.validation import Collector, Line


@dataclass(frozen=True)
class AddressFields:
    """The Account fields the customer mapping fills one Stripe address from (None: not mapped)."""

    country: str | None
    postal_code: str | None
    state: str | None

    def names(self) -> tuple[str, ...]:
        return tuple(f for f in (self.country, self.postal_code, self.state) if f)


BILLING = AddressFields("BillingCountry", "BillingPostalCode", "BillingState")
SHIPPING = AddressFields("ShippingCountry", "ShippingPostalCode", "ShippingState")


def _value(account: Mapping[str, Any], name: str | None) -> str:
    return str(account.get(name) or "").strip() if name else ""


def tax_location_reason(
    account: Mapping[str, Any], billing: AddressFields, shipping: AddressFields | None
) -> Reason | None:
    """Why Stripe Tax cannot place the Account's Customer, or None."""
    used = billing
    if shipping is not None and any(_value(account, f) for f in shipping.names()):
        used = shipping
    account_id = account.get("Id")
    country_text = _value(account, used.country)
    country = country_code(country_text) or country_text.upper()

    def reason(fld: str | None, value: Any, problem: str, fix: str) -> Reason:
        return Reason("tax_location", "Account", account_id, account.get("Name"), fld, value, problem, fix)

    automatic = "automatic tax is on for Orders (subscription.yaml automatic_tax)"
    if used.country is None:
        return reason(None, None, f"{automatic}, but the customer mapping maps no address.country",
                      "map address.country in customer.yaml, or set automatic_tax: false")  # fmt: skip
    if not country:
        return reason(used.country, None, f"{automatic} and Stripe Tax needs the customer's country",
                      f"fill {used.country} on the Account")  # fmt: skip
    postal, state = _value(account, used.postal_code), _value(account, used.state)
    if country == "US" and not postal:
        return reason(used.postal_code, None, f"{automatic} and Stripe Tax needs a US customer's ZIP code",
                      f"fill {used.postal_code or 'the postal code'} on the Account")  # fmt: skip
    if country == "CA" and not (postal or state):
        return reason(used.postal_code, None,
                      f"{automatic} and Stripe Tax needs a Canadian customer's postal code or province",
                      f"fill {used.postal_code or 'the postal code'} or {used.state or 'the province'} "
                      "on the Account")  # fmt: skip
    return None


TAX_BEHAVIORS = ("inclusive", "exclusive", "unspecified")


def line_tax_behaviors(
    lines: Sequence[Line], config: OrderRulesConfig, out: Collector
) -> dict[str, str | None]:
    """Each line's price tax_behavior: its mapped OrderItem field, else the mapping's one value;
    a value Stripe does not know is refused naming the line and the field."""
    behaviors: dict[str, str | None] = {}
    for line in lines:
        raw = line.record.get(config.tax_behavior_field) if config.tax_behavior_field else None
        text = str(raw).strip().lower() if raw not in (None, "") else None
        if text is not None and text not in TAX_BEHAVIORS:
            out.line(line, "tax_behavior", config.tax_behavior_field, raw,
                     "Stripe prices are tax inclusive, exclusive or unspecified",
                     f"set {config.tax_behavior_field} to inclusive, exclusive or unspecified")  # fmt: skip
            continue
        behaviors[line.id] = text or config.tax_behavior
    return behaviors

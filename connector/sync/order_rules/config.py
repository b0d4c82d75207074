"""The options a subscription mapping sets for the Order rules (`today` injected: planning is
deterministic)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from connector.sync.order_rules.discounts import DiscountFields
from connector.sync.order_rules.tax import BILLING, SHIPPING, AddressFields

TRIAL_END_KEY = "cpq2stripe_trial_end"


@dataclass(frozen=True)
class CpqAmountFields:
    """Where an Amendment line's CPQ figures are read (the mapping's `cpq_amounts` sources;
    order_rules.cpq_amounts reads them)."""

    net_total: str = "SBQQ__QuoteLine__r.SBQQ__NetTotal__c"
    prorate_multiplier: str = "SBQQ__QuoteLine__r.SBQQ__ProrateMultiplier__c"
    pricing_term: str = "SBQQ__QuoteLine__r.SBQQ__DefaultSubscriptionTerm__c"


@dataclass(frozen=True)
class OrderRulesConfig:
    """Options a mapping can set; `today` is injected so planning is deterministic."""

    today: date
    collection_method: Literal["send_invoice", "charge_automatically"] = "send_invoice"
    days_until_due: int = 30  # when the Order has no payment term
    unit_price_field: str = "UnitPrice"  # OrderItem field holding the price per billing period
    quantity_field: str = "Quantity"
    payment_term_field: str = "Payment_Term__c"
    # Account field with a saved Stripe PaymentMethod id; when filled -> charge_automatically.
    payment_method_field: str | None = "Stripe_Payment_Method_ID__c"
    # A backdated Order bills every elapsed period on its first invoice unless this is off (the
    # mapping's `skip_elapsed_periods`, per Order); the field named here is what the admin ticks.
    bill_backdated_period: bool = True
    skip_elapsed_field: str | None = None
    # The mapping's trial_end source (for messages and the change fingerprint); the value the
    # mapping resolved reaches the rules under order[TRIAL_END_KEY].
    trial_end_field: str | None = None
    refused_order_types: frozenset[str] = frozenset()  # Amendments and Renewals: connector.sync.contracts
    require_line_dates_match: bool = True
    extra_currencies: frozenset[str] = frozenset()
    max_subscription_items: int = 20  # Stripe: "a list of up to 20 subscription items"
    max_invoice_items: int = 20  # Stripe: add_invoice_items "You may pass up to 20 items"
    # Stripe: "Backdating isn't supported when an invoice has more than 250 line items".
    max_invoice_lines: int = 250
    # The mapping's `discounts` in coupons mode (None: net_price, the line's unit price is billed).
    discounts: DiscountFields | None = None
    # Stripe Tax (subscription.yaml `automatic_tax`): `automatic_tax[enabled]=true` on subscriptions,
    # schedule phases and one-time invoices, after the pure location pre-check (order_rules.tax),
    # which reads the Account fields the customer mapping fills the billing and shipping address from.
    automatic_tax: bool = False
    tax_billing_address: AddressFields = BILLING
    tax_shipping_address: AddressFields | None = SHIPPING
    # Prices' tax_behavior (inclusive | exclusive | unspecified): an OrderItem field, else one value.
    tax_behavior: Literal["inclusive", "exclusive", "unspecified"] | None = None
    tax_behavior_field: str | None = None
    # An Order of one-time lines only becomes an invoice (order_rules/invoice_plan.py): finalized
    # unless the mapping's `one_time_invoices.finalize` is false. Stripe: "You can no longer add
    # more than 250 invoice items to an invoice" (changelog 2016-02-22).
    finalize_invoices: bool = True
    max_items_per_invoice: int = 250
    # amendment_proration: cpq_amounts: an Amendment's lines must carry CPQ's figures, read here
    # (None: Stripe prorates, or nothing is prorated; the figures are not read).
    cpq_amounts: CpqAmountFields | None = None

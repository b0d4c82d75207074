"""Orders whose lines are all one-time plan one Stripe invoice (order_rules/invoice_plan.py), with
the money rules and Stripe's limit of invoice items per invoice; mixed Orders stay subscriptions."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from connector.sync.invoices import invoice_preview, invoice_total
from connector.sync.order_rules import InvoiceSpec, SubscriptionSpec
from tests.unit.test_order_rules import CONFIG, codes, line, order, plan, refuse


def once(n: int, **over: Any) -> dict[str, Any]:
    return line(
        n,
        SBQQ__ChargeType__c="One-Time",
        SBQQ__BillingFrequency__c=None,
        SBQQ__SubscriptionTerm__c=None,
        **over,
    )


def test_only_one_time_lines_plan_an_invoice():
    p = plan(order(once(1), once(2, Quantity=3.0, UnitPrice=49.5), EndDate=None))
    spec = p.subscription
    assert isinstance(spec, InvoiceSpec) and p.invoice is spec
    assert [(i.order_item_id, i.quantity) for i in spec.items] == [(once(1)["Id"], 2), (once(2)["Id"], 3)]
    assert spec.finalize is True
    assert spec.collection.method == "send_invoice" and spec.collection.days_until_due == 30  # Net 30
    assert spec.metadata["salesforce_order_id"] == "801000000000000001"
    # one-time prices, reused from the PricebookEntry when the line bills its price
    assert all(lp.spec.recurring is None for lp in p.prices)
    assert p.prices[0].write_back_object == "PricebookEntry" and p.prices[1].write_back_object == "OrderItem"
    assert invoice_total(p, spec) == Decimal("348.50")


def test_invoice_params_exclude_pending_items_and_never_advance_a_draft():
    spec = plan(order(once(1))).subscription
    assert isinstance(spec, InvoiceSpec)
    params = spec.params("cus_1")
    assert params["pending_invoice_items_behavior"] == "exclude"
    assert params["auto_advance"] is False
    assert params["days_until_due"] == 30 and params["collection_method"] == "send_invoice"
    item = spec.item_params(spec.items[0], "in_1", "cus_1", "price_1")
    assert item == {
        "customer": "cus_1",
        "invoice": "in_1",
        "pricing": {"price": "price_1"},
        "quantity": 2,
        "metadata": {"salesforce_order_item_id": once(1)["Id"], "salesforce_order_id": "801000000000000001"},
    }


def test_saved_payment_method_charges_the_invoice():
    o = order(once(1))
    o["Account"]["Stripe_Payment_Method_ID__c"] = "pm_1"
    spec = plan(o).subscription
    assert isinstance(spec, InvoiceSpec)
    params = spec.params("cus_1")
    assert (
        params["collection_method"] == "charge_automatically" and params["default_payment_method"] == "pm_1"
    )
    assert "days_until_due" not in params


def test_draft_mode_from_the_mapping():
    spec = plan(order(once(1)), dataclasses.replace(CONFIG, finalize_invoices=False)).subscription
    assert isinstance(spec, InvoiceSpec) and spec.finalize is False


def test_mixed_order_stays_a_subscription_with_add_invoice_items():
    spec = plan(order(line(1), once(2))).subscription
    assert isinstance(spec, SubscriptionSpec) and len(spec.invoice_items) == 1


def test_more_invoice_items_than_stripe_takes_are_refused():
    r = refuse(order(*[once(n) for n in range(1, 252)]))
    assert codes(r) == ["too_many_invoice_items"]
    assert "251 one-time lines" in r.message() and "at most 250" in r.message()


def test_twenty_one_one_time_lines_are_fine_on_an_invoice():
    # add_invoice_items' limit of 20 is a subscription's, not an invoice's
    spec = plan(order(*[once(n) for n in range(1, 22)])).subscription
    assert isinstance(spec, InvoiceSpec) and len(spec.items) == 21


@pytest.mark.parametrize(("price", "code"), [(-5.0, "negative_amount"), (None, "missing_price")])
def test_money_rules_still_refuse(price, code):
    assert code in codes(refuse(order(once(1, UnitPrice=price))))


def test_zero_decimal_currency_and_zero_total():
    p = plan(
        order(
            once(1, UnitPrice=1500.0, PricebookEntry={"UnitPrice": 1500.0, "CurrencyIsoCode": "JPY"}),
            CurrencyIsoCode="JPY",
        )
    )
    assert p.prices[0].spec.unit_amount == 1500 and invoice_total(p, p.subscription) == Decimal(3000)  # type: ignore[arg-type]
    free = plan(order(once(1, UnitPrice=0.0)))
    assert invoice_total(free, free.subscription) == 0  # type: ignore[arg-type]


def test_dry_run_preview_names_items_total_and_due():
    p = plan(order(once(1)))
    assert isinstance(p.subscription, InvoiceSpec)
    text = invoice_preview(p, p.subscription, "cus_1", "Product 1 2 × 100")
    assert text.startswith("invoice for cus_1")
    assert "total USD 200.00" in text and "due 30 days after finalizing" in text and "finalized" in text


def test_a_trial_on_an_invoiced_order_is_refused():
    config = dataclasses.replace(CONFIG, trial_end_field="Stripe_Trial_End_Date__c")
    r = refuse(order(once(1), EndDate=None, cpq2stripe_trial_end="2026-04-01"), config)
    assert codes(r) == ["trial_on_invoice"]
    assert "Stripe_Trial_End_Date__c" in r.message() and "one Stripe invoice" in r.message()

"""Fake Stripe: one-off invoices (create a draft, add invoice items, finalize) through the real
stripe-python client, with Stripe's refusals."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.stripe_errors import invalid


@pytest.fixture
def setup(client):
    cus = client.v1.customers.create(params={"name": "Acme", "email": "ap@acme.example"})
    prod = client.v1.products.create(params={"name": "Onboarding"})
    once = client.v1.prices.create(params={"currency": "usd", "unit_amount": 50000, "product": prod.id})
    monthly = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 1500,
            "product": prod.id,
            "recurring": {"interval": "month"},
        }
    )
    return cus, once, monthly


def _draft(client, cus, **over):
    params = {
        "customer": cus.id,
        "collection_method": "send_invoice",
        "days_until_due": 30,
        "auto_advance": False,
        "pending_invoice_items_behavior": "exclude",
        "metadata": {"salesforce_order_id": "801x"},
        **over,
    }
    return client.v1.invoices.create(params=params)


def test_draft_items_finalize(client, setup):
    cus, once, _ = setup
    inv = _draft(client, cus)
    assert inv.status == "draft" and inv.hosted_invoice_url is None and inv.number is None
    assert inv.total == 0 and inv.auto_advance is False and inv.metadata["salesforce_order_id"] == "801x"
    item = client.v1.invoice_items.create(
        params={
            "customer": cus.id,
            "invoice": inv.id,
            "pricing": {"price": once.id},
            "quantity": 3,
            "metadata": {"salesforce_order_item_id": "802a"},
        }
    )
    assert item.invoice == inv.id and item.amount == 150000 and item.quantity == 3
    listed = client.v1.invoice_items.list(params={"invoice": inv.id})
    assert [i.id for i in listed.data] == [item.id] and listed.data[0].metadata[
        "salesforce_order_item_id"
    ] == "802a"
    draft = client.v1.invoices.retrieve(inv.id)
    assert draft.total == 150000 and len(draft.lines.data) == 1
    done = client.v1.invoices.finalize_invoice(inv.id, params={"auto_advance": True})
    assert done.status == "open" and done.number and done.hosted_invoice_url.startswith("https://")
    assert done.due_date == done.status_transitions.finalized_at + 30 * 86400
    assert done.amount_due == 150000 and done.auto_advance is True
    assert [i.id for i in client.v1.invoices.list(params={"customer": cus.id}).data] == [inv.id]


def test_finalizing_twice_is_refused(client, setup):
    cus, once, _ = setup
    inv = _draft(client, cus)
    client.v1.invoice_items.create(params={"invoice": inv.id, "pricing": {"price": once.id}})
    client.v1.invoices.finalize_invoice(inv.id)
    err = invalid(client.v1.invoices.finalize_invoice, inv.id)
    assert "already finalized" in str(err.user_message)


def test_items_only_on_draft_invoices_of_the_same_customer(client, setup):
    cus, once, monthly = setup
    other = client.v1.customers.create(params={"name": "Other"})
    inv = _draft(client, cus)
    err = invalid(
        client.v1.invoice_items.create,
        params={"customer": other.id, "invoice": inv.id, "pricing": {"price": once.id}},
    )
    assert err.param == "invoice" and "does not match" in str(err.user_message)
    err = invalid(
        client.v1.invoice_items.create, params={"invoice": inv.id, "pricing": {"price": monthly.id}}
    )
    assert "type=one_time" in str(err.user_message)
    client.v1.invoice_items.create(params={"invoice": inv.id, "pricing": {"price": once.id}})
    client.v1.invoices.finalize_invoice(inv.id)
    err = invalid(client.v1.invoice_items.create, params={"invoice": inv.id, "pricing": {"price": once.id}})
    assert "draft" in str(err.user_message)


def test_send_invoice_needs_days_until_due(client, setup):
    cus, _, _ = setup
    err = invalid(client.v1.invoices.create, params={"customer": cus.id, "collection_method": "send_invoice"})
    assert err.param == "days_until_due"
    err = invalid(
        client.v1.invoices.create,
        params={"customer": cus.id, "collection_method": "charge_automatically", "days_until_due": 5},
    )
    assert err.param == "days_until_due"


def test_pending_items_stay_out_with_exclude(client, setup):
    cus, once, _ = setup
    stray = client.v1.invoice_items.create(params={"customer": cus.id, "pricing": {"price": once.id}})
    inv = _draft(client, cus)
    assert client.v1.invoices.retrieve(inv.id).lines.data == []
    assert client.v1.invoice_items.list(params={"customer": cus.id, "pending": True}).data[0].id == stray.id
    included = _draft(client, cus, pending_invoice_items_behavior="include")
    assert client.v1.invoices.retrieve(included.id).total == 50000


def test_a_zero_total_invoice_is_paid_when_finalized(client, sb, setup):
    cus, _, _ = setup
    prod = client.v1.products.create(params={"name": "Free setup"})
    free = client.v1.prices.create(params={"currency": "usd", "unit_amount": 0, "product": prod.id})
    inv = _draft(client, cus)
    client.v1.invoice_items.create(params={"invoice": inv.id, "pricing": {"price": free.id}})
    done = client.v1.invoices.finalize_invoice(inv.id)
    assert done.status == "paid" and done.amount_due == 0


def test_restricted_key_needs_invoice_permissions(sb, setup):
    cus, once, _ = setup
    sb.state.restricted_keys["rk_test_invoices"] = frozenset({"rak_invoice_write"})
    rk = stripe.StripeClient("rk_test_invoices", base_addresses={"api": sb.url}, max_network_retries=0)
    inv = _draft(rk, cus)
    with pytest.raises(stripe.PermissionError) as info:
        rk.v1.invoice_items.create(params={"invoice": inv.id, "pricing": {"price": once.id}})
    assert "rak_invoice_item_write" in str(info.value.user_message)


def test_an_amount_item_on_a_subscription_waits_for_that_subscriptions_invoice(client, setup):
    cus, once, monthly = setup
    sub = client.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": monthly.id}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
        }
    )
    credit = client.v1.invoice_items.create(
        params={
            "customer": cus.id,
            "subscription": sub.id,
            "amount": -1234,
            "currency": "usd",
            "description": "Seats -2 from 2026-03-01 to 2026-03-11",
            "period": {"start": 1772323200, "end": 1773187200},
        }
    )
    assert credit.amount == -1234 and credit.invoice is None
    assert credit.parent.subscription_details.subscription == sub.id
    assert credit.period.start == 1772323200
    pending = client.v1.invoice_items.list(params={"customer": cus.id, "pending": True}).data
    assert [i.id for i in pending] == [credit.id]
    assert (
        "currency"
        in invalid(client.v1.invoice_items.create, params={"customer": cus.id, "amount": 100}).param
    )
    other = client.v1.customers.create(params={"name": "Other"})
    assert (
        invalid(
            client.v1.invoice_items.create,
            params={"customer": other.id, "subscription": sub.id, "amount": 100, "currency": "usd"},
        ).param
        == "subscription"
    )
    both = invalid(
        client.v1.invoice_items.create,
        params={"customer": cus.id, "amount": 100, "currency": "usd", "pricing": {"price": once.id}},
    )
    assert both.code == "parameters_exclusive" and both.param == "amount"

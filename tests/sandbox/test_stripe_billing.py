"""Fake Stripe: catalog, payment methods, setup intents, subscriptions, schedules, coupons, through
the real stripe-python client."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import stripe

from connector.sandbox.stripe.server import start_stripe
from tests.sandbox.stripe_errors import invalid

FUTURE = 4_102_444_800  # 2100-01-01


@pytest.fixture
def catalog(client):
    prod = client.v1.products.create(params={"name": "Platform", "metadata": {"sf_product_id": "01t"}})
    monthly = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 1500,
            "product": prod.id,
            "recurring": {"interval": "month"},
        }
    )
    yearly = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 15000,
            "product": prod.id,
            "recurring": {"interval": "year"},
        }
    )
    seats = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount_decimal": "250.5",
            "product": prod.id,
            "recurring": {"interval": "month"},
            "lookup_key": "seats",
        }
    )
    setup = client.v1.prices.create(params={"currency": "usd", "unit_amount": 5000, "product": prod.id})
    eur = client.v1.prices.create(
        params={"currency": "eur", "unit_amount": 900, "product": prod.id, "recurring": {"interval": "month"}}
    )
    meter = client.v1.billing.meters.create(
        params={
            "display_name": "API calls",
            "event_name": "api_calls",
            "default_aggregation": {"formula": "sum"},
        }
    )
    metered = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 3,
            "product": prod.id,
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        }
    )
    return {"product": prod, "monthly": monthly, "yearly": yearly, "seats": seats, "setup": setup, "eur": eur,
            "metered": metered}  # fmt: skip


def _customer_with_card(client) -> tuple[stripe.Customer, stripe.PaymentMethod]:
    cus = client.v1.customers.create(params={"name": "Acme"})
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    intent = client.v1.setup_intents.create(
        params={"customer": cus.id, "payment_method": pm.id, "confirm": True, "usage": "off_session"}
    )
    assert intent.status == "succeeded"
    cus = client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    return cus, pm


# catalog -------------------------------------------------------------------------------------
def test_product_and_price_shapes(client, catalog):
    prod = catalog["product"]
    assert prod.id.startswith("prod_") and prod.active is True and prod.default_price is None
    monthly = catalog["monthly"]
    assert monthly.id.startswith("price_") and monthly.type == "recurring"
    assert monthly.recurring.interval == "month" and monthly.recurring.interval_count == 1
    assert monthly.recurring.usage_type == "licensed" and monthly.unit_amount_decimal == Decimal("1500")
    assert catalog["setup"].type == "one_time" and catalog["setup"].recurring is None
    seats = catalog["seats"]
    assert seats.unit_amount is None and seats.unit_amount_decimal == Decimal("250.5")
    with_data = client.v1.prices.create(
        params={"currency": "usd", "unit_amount": 1, "product_data": {"name": "New"}}
    )
    assert client.v1.products.retrieve(with_data.product).name == "New"
    with_default = client.v1.products.create(
        params={"name": "D", "default_price_data": {"currency": "usd", "unit_amount": 7}}
    )
    assert client.v1.prices.retrieve(with_default.default_price).unit_amount == 7


def test_price_validation(client, catalog):
    prod = catalog["product"].id
    err = invalid(
        client.v1.prices.create,
        params={"currency": "usd", "unit_amount": 1, "unit_amount_decimal": "1", "product": prod},
    )
    assert (err.code, err.param) == ("parameters_exclusive", "unit_amount")
    err = invalid(
        client.v1.prices.create,
        params={"currency": "usd", "unit_amount_decimal": "1.1234567890123", "product": prod},
    )
    assert err.param == "unit_amount_decimal"
    assert client.v1.prices.create(
        params={"currency": "usd", "unit_amount_decimal": "1.123456789012", "product": prod}
    ).unit_amount_decimal == Decimal("1.123456789012")
    err = invalid(
        client.v1.prices.create,
        params={"currency": "usd", "unit_amount": 1, "product": prod, "recurring": {"interval": "fortnight"}},
    )
    assert err.param == "recurring[interval]"
    assert err.user_message == "Invalid interval: must be one of day, month, week, or year"
    err = invalid(
        client.v1.prices.create,
        params={
            "currency": "usd",
            "unit_amount": 1,
            "product": prod,
            "recurring": {"interval": "month", "usage_type": "metered"},
        },
    )
    assert err.param == "recurring[meter]"
    err = invalid(
        client.v1.prices.create, params={"currency": "usd", "unit_amount": 1, "product": "prod_nope"}
    )
    assert (err.code, err.param) == ("resource_missing", "product")
    err = invalid(
        client.v1.prices.create,
        params={"currency": "usd", "unit_amount": 1, "product": prod, "lookup_key": "seats"},
    )
    assert err.param == "lookup_key" and "already uses that lookup key" in err.user_message
    err = invalid(client.v1.prices.update, catalog["monthly"].id, params={"unit_amount": 2})
    assert (err.code, err.param) == ("parameter_unknown", "unit_amount")


def test_price_update_and_list_filters(client, catalog):
    updated = client.v1.prices.update(
        catalog["monthly"].id, params={"active": False, "nickname": "Old", "metadata": {"a": "b"}}
    )
    assert updated.active is False and updated.nickname == "Old" and updated.metadata["a"] == "b"
    active_ids = {p.id for p in client.v1.prices.list(params={"active": True, "limit": 100}).data}
    assert catalog["monthly"].id not in active_ids and catalog["yearly"].id in active_ids
    by_key = client.v1.prices.list(params={"lookup_keys": ["seats"]}).data
    assert [p.id for p in by_key] == [catalog["seats"].id]
    other = client.v1.products.create(params={"name": "Other"})
    client.v1.prices.create(params={"currency": "usd", "unit_amount": 1, "product": other.id})
    assert len(client.v1.prices.list(params={"product": other.id}).data) == 1
    moved = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 1,
            "product": other.id,
            "lookup_key": "seats",
            "transfer_lookup_key": True,
        }
    )
    assert moved.lookup_key == "seats" and client.v1.prices.retrieve(catalog["seats"].id).lookup_key is None


def test_product_update_and_search(client, catalog):
    prod = client.v1.products.update(
        catalog["product"].id, params={"default_price": catalog["monthly"].id, "description": "Core"}
    )
    assert prod.default_price == catalog["monthly"].id and prod.description == "Core"
    found = client.v1.products.search(params={"query": "metadata['sf_product_id']:'01t'"}).data
    assert [p.id for p in found] == [prod.id]


def test_coupons(client):
    pct = client.v1.coupons.create(
        params={"percent_off": 25, "duration": "repeating", "duration_in_months": 3}
    )
    assert pct.object == "coupon" and pct.percent_off == 25 and pct.valid is True
    amt = client.v1.coupons.create(
        params={"id": "TENOFF", "amount_off": 1000, "currency": "usd", "duration": "once"}
    )
    assert amt.id == "TENOFF"
    err = invalid(client.v1.coupons.create, params={"amount_off": 1000, "duration": "once"})
    assert (err.code, err.param) == ("parameter_missing", "currency")
    err = invalid(client.v1.coupons.create, params={"percent_off": 5, "amount_off": 5, "currency": "usd"})
    assert err.code == "parameters_exclusive"
    err = invalid(client.v1.coupons.create, params={"percent_off": 5, "duration": "repeating"})
    assert err.param == "duration_in_months"


# payment methods and setup intents -----------------------------------------------------------
def test_payment_methods_attach_detach_list(client):
    cus = client.v1.customers.create()
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_mastercard"}})
    assert pm.id.startswith("pm_") and pm.card.brand == "mastercard" and pm.card.last4 == "4444"
    assert pm.customer is None
    attached = client.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    assert attached.customer == cus.id
    listed = client.v1.payment_methods.list(params={"customer": cus.id}).data
    assert [p.id for p in listed] == [pm.id]
    assert [p.id for p in client.v1.customers.payment_methods.list(cus.id).data] == [pm.id]
    other = client.v1.customers.create()
    err = invalid(client.v1.payment_methods.attach, pm.id, params={"customer": other.id})
    assert "already been attached" in err.user_message
    assert client.v1.payment_methods.detach(pm.id).customer is None
    err = invalid(client.v1.payment_methods.create, params={"type": "card", "card": {"token": "tok_nope"}})
    assert (err.code, err.param) == ("resource_missing", "card[token]")
    bank = client.v1.payment_methods.create(params={
        "type": "us_bank_account", "billing_details": {"name": "Acme"},
        "us_bank_account": {"routing_number": "110000000", "account_number": "000123456789",
                            "account_holder_type": "company"},
    })  # fmt: skip
    assert bank.us_bank_account.last4 == "6789"
    err = invalid(
        client.v1.payment_methods.create,
        params={
            "type": "us_bank_account",
            "us_bank_account": {"routing_number": "110000000", "account_number": "1"},
        },
    )
    assert (err.code, err.param) == ("parameter_missing", "billing_details[name]")


def test_declined_card_cannot_be_attached(client):
    cus = client.v1.customers.create()
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_chargeDeclined"}})
    with pytest.raises(stripe.CardError) as info:
        client.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    assert info.value.code == "card_declined"


def test_setup_intent_flow(client):
    cus = client.v1.customers.create()
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    intent = client.v1.setup_intents.create(params={"customer": cus.id, "payment_method": pm.id})
    assert intent.status == "requires_confirmation" and intent.client_secret.startswith(intent.id)
    confirmed = client.v1.setup_intents.confirm(intent.id)
    assert confirmed.status == "succeeded" and confirmed.usage == "off_session"
    assert client.v1.payment_methods.retrieve(pm.id).customer == cus.id
    assert client.v1.setup_intents.retrieve(intent.id).status == "succeeded"
    empty = client.v1.setup_intents.create(params={"customer": cus.id})
    assert empty.status == "requires_payment_method"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.setup_intents.confirm(empty.id)
    card = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_amex"}})
    assert client.v1.setup_intents.update(empty.id, params={"payment_method": card.id}).status == (
        "requires_confirmation"
    )
    assert client.v1.setup_intents.cancel(empty.id).status == "canceled"
    err = invalid(client.v1.setup_intents.confirm, intent.id)
    assert err.code == "setup_intent_unexpected_state"


def test_default_payment_method_must_be_attached(client):
    cus = client.v1.customers.create()
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    err = invalid(
        client.v1.customers.update, cus.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
    assert (err.code, err.param) == ("resource_missing", "invoice_settings[default_payment_method]")
    assert "The payment method must be attached to the customer" in err.user_message


# subscriptions -------------------------------------------------------------------------------
def test_subscription_with_items_invoice_items_and_send_invoice(client, catalog):
    cus = client.v1.customers.create(params={"email": "ap@acme.test"})
    sub = client.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [
                {"price": catalog["monthly"].id, "quantity": 2, "metadata": {"sf_line": "1"}},
                {"price": catalog["seats"].id, "quantity": 3},
                {"price": catalog["metered"].id},
            ],
            "add_invoice_items": [{"price": catalog["setup"].id, "quantity": 1}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "metadata": {"sf_order_id": "801"},
        }
    )
    assert sub.id.startswith("sub_") and sub.object == "subscription" and sub.status == "active"
    assert sub.collection_method == "send_invoice" and sub.days_until_due == 30 and sub.currency == "usd"
    items = sub["items"]
    assert items.object == "list" and len(items.data) == 3
    first = items.data[0]
    assert first.id.startswith("si_") and first.object == "subscription_item" and first.quantity == 2
    assert first.price.id == catalog["monthly"].id and first.metadata["sf_line"] == "1"
    assert first.current_period_start <= sub.start_date < first.current_period_end
    assert items.data[2].quantity is None
    assert sub.billing_mode.type == "flexible"
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.status == "open" and invoice.collection_method == "send_invoice"
    assert invoice.due_date == invoice.created + 30 * 86400
    assert invoice.total == 2 * 1500 + 752 + 0 + 5000  # 3 x 250.5 rounds to 752
    assert invoice.parent.subscription_details.subscription == sub.id
    assert [line.pricing.price_details.price for line in invoice.lines.data][-1] == catalog["setup"].id
    assert client.v1.customers.retrieve(cus.id).currency == "usd"


def test_subscription_validation_errors(client, catalog):
    cus, _ = _customer_with_card(client)
    monthly = catalog["monthly"].id
    err = invalid(
        client.v1.subscriptions.create,
        params={"customer": cus.id, "items": [{"price": monthly}], "days_until_due": 10},
    )
    assert err.param == "days_until_due"
    err = invalid(
        client.v1.subscriptions.create,
        params={"customer": cus.id, "items": [{"price": monthly}], "collection_method": "send_invoice"},
    )
    assert (err.code, err.param) == ("parameter_missing", "days_until_due")
    err = invalid(
        client.v1.subscriptions.create,
        params={"customer": cus.id, "items": [{"price": catalog["metered"].id, "quantity": 1}]},
    )
    assert err.param == "items[0][quantity]"
    assert err.user_message.startswith("Quantity should not be specified where usage_type is `metered`.")
    err = invalid(
        client.v1.subscriptions.create,
        params={"customer": cus.id, "items": [{"price": monthly}, {"price": catalog["eur"].id}]},
    )
    assert "Found mismatch in currency field" in err.user_message
    err = invalid(
        client.v1.subscriptions.create,
        params={
            "customer": cus.id,
            "billing_mode": {"type": "classic"},
            "items": [{"price": monthly}, {"price": catalog["yearly"].id}],
        },
    )
    assert "Found mismatch in interval field" in err.user_message
    err = invalid(
        client.v1.subscriptions.create, params={"customer": cus.id, "items": [{"price": catalog["setup"].id}]}
    )
    assert err.param == "items[0][price]" and "type=one_time" in err.user_message
    err = invalid(
        client.v1.subscriptions.create,
        params={"customer": cus.id, "items": [{"price": monthly}], "add_invoice_items": [{"price": monthly}]},
    )
    assert err.param == "add_invoice_items[0][price]"
    err = invalid(
        client.v1.subscriptions.create, params={"customer": cus.id, "items": [{"price": "price_nope"}]}
    )
    assert (err.code, err.param) == ("resource_missing", "items[0][price]")
    err = invalid(client.v1.subscriptions.create, params={"customer": cus.id, "items": [{"quantity": 1}]})
    assert (err.code, err.param) == ("parameter_missing", "items[0][price]")
    err = invalid(
        client.v1.subscriptions.create,
        params={"customer": cus.id, "items": [{"price": monthly}], "collection_method": "by_carrier_pigeon"},
    )
    assert err.param == "collection_method"


def test_mixed_intervals_allowed_in_flexible_mode(client, catalog):
    cus, _ = _customer_with_card(client)
    sub = client.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": catalog["monthly"].id}, {"price": catalog["yearly"].id}],
        }
    )
    monthly, yearly = sub["items"].data
    assert (
        yearly.current_period_end - yearly.current_period_start
        > monthly.current_period_end - monthly.current_period_start
    )


def test_subscription_payment_method_rules(client, catalog):
    bare = client.v1.customers.create()
    err = invalid(
        client.v1.subscriptions.create,
        params={"customer": bare.id, "items": [{"price": catalog["monthly"].id}]},
    )
    assert "no attached payment source or default payment method" in err.user_message
    incomplete = client.v1.subscriptions.create(
        params={
            "customer": bare.id,
            "items": [{"price": catalog["monthly"].id}],
            "payment_behavior": "default_incomplete",
        }
    )
    assert incomplete.status == "incomplete"
    stray = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    other = client.v1.customers.create()
    err = invalid(
        client.v1.subscriptions.create,
        params={
            "customer": other.id,
            "default_payment_method": stray.id,
            "items": [{"price": catalog["monthly"].id}],
        },
    )
    assert (err.code, err.param) == ("resource_missing", "default_payment_method")
    err = invalid(
        client.v1.subscriptions.create,
        params={
            "customer": other.id,
            "default_payment_method": "pm_nope",
            "items": [{"price": catalog["monthly"].id}],
        },
    )
    assert err.user_message == "No such PaymentMethod: 'pm_nope'"


def test_setup_intent_then_default_payment_method_then_off_session_subscription(client, catalog):
    cus, pm = _customer_with_card(client)
    assert cus.invoice_settings.default_payment_method == pm.id
    sub = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": catalog["monthly"].id}], "off_session": True,
                "default_payment_method": pm.id, "payment_behavior": "error_if_incomplete"}
    )  # fmt: skip
    assert sub.status == "active" and sub.default_payment_method == pm.id
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.status == "paid" and invoice.amount_paid == 1500
    expanded = client.v1.subscriptions.retrieve(sub.id, params={"expand": ["latest_invoice", "customer"]})
    assert expanded.latest_invoice.id == invoice.id and expanded.customer.id == cus.id


def test_subscription_trial_backdate_anchor(client, catalog):
    cus, _ = _customer_with_card(client)
    now = int(time.time())
    trial = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": catalog["monthly"].id}], "trial_end": now + 7 * 86400}
    )
    assert trial.status == "trialing" and trial["items"].data[0].current_period_end == now + 7 * 86400
    back = client.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": catalog["yearly"].id}],
            "backdate_start_date": now - 86400,
            "billing_cycle_anchor": now + 10 * 86400,
        }
    )
    assert back.start_date == now - 86400 and back.billing_cycle_anchor == now + 10 * 86400
    assert back["items"].data[0].current_period_end == now + 10 * 86400


def _fixed_clock(sb, ts: int) -> None:
    sb.state.store.clock = lambda: ts


NOW = 1_780_000_000  # 2026-05-28 20:26:40 UTC
MAY_1, JUNE_1 = 1_777_593_600, 1_780_272_000  # 2026-05-01, 2026-06-01 (UTC midnights)
FEB_1 = 1_769_904_000  # 2026-02-01


def test_a_backdated_subscription_bills_every_elapsed_period_one_line_each(sb, client, catalog):
    """Flexible billing mode (the API version's default): Feb 1 -> June 1 anchor is four monthly
    periods, so the first invoice has four full lines for the item, 4 x 15.00."""
    _fixed_clock(sb, NOW)
    cus, _ = _customer_with_card(client)
    sub = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": catalog["monthly"].id, "quantity": 2}],
                "backdate_start_date": FEB_1, "billing_cycle_anchor": JUNE_1}
    )  # fmt: skip
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    periods = [(line.period.start, line.period.end) for line in invoice.lines.data]
    assert len(periods) == 4 and periods[0][0] == FEB_1 and periods[-1] == (MAY_1, JUNE_1)
    assert [line.amount for line in invoice.lines.data] == [3000] * 4 and invoice.total == 12000
    assert sub["items"].data[0].current_period_start == MAY_1
    assert sub["items"].data[0].current_period_end == JUNE_1


def test_a_backdated_start_inside_a_period_prorates_that_period(sb, client, catalog):
    _fixed_clock(sb, NOW)
    cus, _ = _customer_with_card(client)
    mid_april = MAY_1 - 15 * 86400  # April 16: 15 of April's 30 days
    sub = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": catalog["monthly"].id}],
                "backdate_start_date": mid_april, "billing_cycle_anchor": JUNE_1}
    )  # fmt: skip
    lines = client.v1.invoices.retrieve(sub.latest_invoice).lines.data
    assert [line.amount for line in lines] == [750, 1500]
    assert lines[0].parent.subscription_item_details.proration is True


def test_proration_behavior_none_bills_nothing_before_the_anchor(sb, client, catalog):
    _fixed_clock(sb, NOW)
    cus, _ = _customer_with_card(client)
    sub = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": catalog["monthly"].id}],
                "backdate_start_date": FEB_1, "billing_cycle_anchor": JUNE_1, "proration_behavior": "none"}
    )  # fmt: skip
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.total == 0 and len(invoice.lines.data) == 1
    assert sub.status == "active" and sub.start_date == FEB_1


def test_backdating_past_250_invoice_lines_is_refused(sb, client, catalog):
    """Two items over 11 years of monthly periods is 264 lines: Stripe refuses, nothing is created."""
    _fixed_clock(sb, NOW)
    cus, _ = _customer_with_card(client)
    other = client.v1.prices.create(
        params={"currency": "usd", "unit_amount": 100, "product": catalog["monthly"].product,
                "recurring": {"interval": "month"}}
    )  # fmt: skip
    params = {"customer": cus.id, "items": [{"price": catalog["monthly"].id}, {"price": other.id}],
              "backdate_start_date": JUNE_1 - 11 * 365 * 86400, "billing_cycle_anchor": JUNE_1}  # fmt: skip
    err = invalid(client.v1.subscriptions.create, params=params)
    assert err.param == "backdate_start_date" and "250 line items" in str(err.user_message)
    assert client.v1.subscriptions.list(params={"customer": cus.id}).data == []
    params["items"] = params["items"][:1]  # 132 lines: accepted
    assert len(client.v1.invoices.retrieve(client.v1.subscriptions.create(params=params).latest_invoice)
               .lines.data) == 132  # fmt: skip


def test_subscription_update_cancel_and_list(client, catalog):
    cus, _ = _customer_with_card(client)
    sub = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": catalog["monthly"].id}]}
    )
    item = sub["items"].data[0]
    updated = client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item.id, "quantity": 5}], "metadata": {"sf_order_id": "802"}}
    )
    assert updated["items"].data[0].quantity == 5 and updated.metadata["sf_order_id"] == "802"
    added = client.v1.subscriptions.update(
        sub.id, params={"items": [{"price": catalog["seats"].id, "quantity": 1}]}
    )
    assert len(added["items"].data) == 2
    err = invalid(
        client.v1.subscriptions.update, sub.id, params={"items": [{"id": "si_nope", "quantity": 1}]}
    )
    assert (err.code, err.param) == ("resource_missing", "items[0][id]")
    scheduled = client.v1.subscriptions.update(sub.id, params={"cancel_at": FUTURE})
    assert scheduled.cancel_at == FUTURE and scheduled.status == "active"
    at_end = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert at_end.cancel_at_period_end is True and at_end.cancel_at == item.current_period_end
    err = invalid(
        client.v1.subscriptions.update, sub.id, params={"cancel_at": FUTURE, "cancel_at_period_end": True}
    )
    assert err.code == "parameters_exclusive"
    events = [e.type for e in client.v1.events.list(params={"type": "customer.subscription.updated"}).data]
    assert len(events) == 4
    other = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": catalog["yearly"].id}]}
    )
    canceled = client.v1.subscriptions.cancel(other.id)
    assert canceled.status == "canceled" and canceled.canceled_at and canceled.ended_at
    assert canceled.cancellation_details.reason == "cancellation_requested"
    assert [s.id for s in client.v1.subscriptions.list(params={"customer": cus.id}).data] == [sub.id]
    assert [s.id for s in client.v1.subscriptions.list(params={"status": "canceled"}).data] == [other.id]
    assert len(client.v1.subscriptions.list(params={"status": "all"}).data) == 2
    err = invalid(
        client.v1.subscriptions.update, other.id, params={"items": [{"id": item.id, "quantity": 1}]}
    )
    assert "canceled subscription" in err.user_message
    found = client.v1.subscriptions.search(params={"query": "metadata['sf_order_id']:'802'"}).data
    assert [s.id for s in found] == [sub.id]


# schedules -----------------------------------------------------------------------------------
def test_schedule_with_future_start(client, catalog):
    cus, _ = _customer_with_card(client)
    sched = client.v1.subscription_schedules.create(
        params={
            "customer": cus.id,
            "start_date": FUTURE,
            "end_behavior": "release",
            "phases": [
                {"items": [{"price": catalog["monthly"].id, "quantity": 2}],
                 "duration": {"interval": "month", "interval_count": 12},
                 "add_invoice_items": [{"price": catalog["setup"].id}], "metadata": {"sf_quote": "Q1"}},
                {"items": [{"price": catalog["yearly"].id}], "collection_method": "send_invoice",
                 "invoice_settings": {"days_until_due": 15}},
            ],
            "metadata": {"sf_order_id": "900"},
        }
    )  # fmt: skip
    assert sched.id.startswith("sub_sched_") and sched.object == "subscription_schedule"
    assert sched.status == "not_started" and sched.subscription is None and sched.current_phase is None
    first, second = sched.phases
    assert first.start_date == FUTURE and first.end_date == second.start_date
    assert first["items"][0].price == catalog["monthly"].id and first["items"][0].quantity == 2
    assert first.add_invoice_items[0].price == catalog["setup"].id
    assert second.invoice_settings.days_until_due == 15 and second.end_date > second.start_date
    listed = client.v1.subscription_schedules.list(params={"customer": cus.id}).data
    assert [s.id for s in listed] == [sched.id]
    canceled = client.v1.subscription_schedules.cancel(sched.id)
    assert canceled.status == "canceled" and canceled.canceled_at
    err = invalid(client.v1.subscription_schedules.release, sched.id)
    assert "canceled" in err.user_message


def test_schedule_starting_now_creates_subscription_and_release(client, catalog):
    cus, _ = _customer_with_card(client)
    sched = client.v1.subscription_schedules.create(
        params={"customer": cus.id, "start_date": "now",
                "phases": [{"items": [{"price": catalog["monthly"].id}],
                            "duration": {"interval": "month", "interval_count": 3}}]}
    )  # fmt: skip
    assert sched.status == "active" and sched.subscription.startswith("sub_")
    assert sched.current_phase.start_date == sched.phases[0].start_date
    sub = client.v1.subscriptions.retrieve(sched.subscription)
    assert sub.schedule == sched.id and sub.status == "active"
    released = client.v1.subscription_schedules.release(sched.id)
    assert released.status == "released" and released.released_subscription == sub.id
    assert client.v1.subscriptions.retrieve(sub.id).schedule is None


def test_schedule_validation(client, catalog):
    cus, _ = _customer_with_card(client)
    err = invalid(
        client.v1.subscription_schedules.create,
        params={
            "customer": cus.id,
            "start_date": FUTURE,
            "phases": [
                {"items": [{"price": catalog["monthly"].id}]},
                {"items": [{"price": catalog["yearly"].id}]},
            ],
        },
    )
    assert (err.code, err.param) == ("parameter_missing", "phases[0][end_date]")
    err = invalid(
        client.v1.subscription_schedules.create,
        params={
            "customer": cus.id,
            "start_date": FUTURE,
            "phases": [{"items": [{"price": catalog["monthly"].id}], "collection_method": "send_invoice"}],
        },
    )
    assert err.param == "phases[0][invoice_settings][days_until_due]"
    err = invalid(
        client.v1.subscription_schedules.create,
        params={
            "customer": cus.id,
            "start_date": FUTURE,
            "phases": [
                {
                    "items": [{"price": catalog["monthly"].id}],
                    "duration": {"interval": "month"},
                    "end_date": FUTURE + 10,
                }
            ],
        },
    )
    assert err.code == "parameters_exclusive"
    # `iterations` was removed in 2025-09-30.clover: `duration` replaces it.
    err = invalid(
        client.v1.subscription_schedules.create,
        params={"customer": cus.id, "start_date": FUTURE,
                "phases": [{"items": [{"price": catalog["monthly"].id}], "iterations": 2}]},
    )  # fmt: skip
    assert (err.code, err.param) == ("parameter_unknown", "phases[0][iterations]")
    err = invalid(
        client.v1.subscription_schedules.create,
        params={
            "customer": cus.id,
            "start_date": "tomorrow",
            "phases": [{"items": [{"price": catalog["monthly"].id}]}],
        },
    )
    assert err.param == "start_date"


def test_schedule_from_subscription(client, catalog):
    cus, _ = _customer_with_card(client)
    sub = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": catalog["monthly"].id}]}
    )
    sched = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    assert sched.subscription == sub.id and sched.status == "active"
    assert client.v1.subscriptions.retrieve(sub.id).schedule == sched.id


def test_deleting_a_customer_cancels_its_subscriptions(client, catalog):
    cus, _ = _customer_with_card(client)
    sub = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": catalog["monthly"].id}]}
    )
    client.v1.customers.delete(cus.id)
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"


def test_throughput_smoke_is_not_timed():
    """The server handles a burst of requests on one keep-alive connection (speed: scripts/)."""
    sb = start_stripe(rps=0)
    try:
        client = stripe.StripeClient("sk_test_1", base_addresses={"api": sb.url}, max_network_retries=0)
        for i in range(50):
            client.v1.customers.create(params={"name": f"c{i}"})
        assert len(client.v1.customers.list(params={"limit": 100}).data) == 50
    finally:
        sb.stop()

"""Fake Stripe: customer tax ids, tax exemption, automatic tax and tax behavior, through the real
stripe-python client, refused with Stripe's errors where Stripe refuses."""

from __future__ import annotations

import stripe

from tests.sandbox.stripe_errors import invalid


def _price(client, **extra) -> stripe.Price:
    product = client.v1.products.create(params={"name": "Platform"})
    params = {
        "currency": "eur",
        "unit_amount": 1000,
        "product": product.id,
        "recurring": {"interval": "month"},
    }
    return client.v1.prices.create(params={**params, **extra})


def test_tax_ids_are_created_listed_and_deleted_under_their_customer(client):
    cus = client.v1.customers.create(
        params={"name": "Muster GmbH", "tax_id_data": [{"type": "eu_vat", "value": "DE123456789"}]}
    )
    [first] = client.v1.customers.tax_ids.list(cus.id).data
    assert (first.type, first.value, first.country, first.customer) == ("eu_vat", "DE123456789", "DE", cus.id)
    assert first.verification.status == "pending"  # Stripe verifies eu_vat with VIES, asynchronously
    second = client.v1.customers.tax_ids.create(
        cus.id, params={"type": "ch_vat", "value": "CHE-123.456.789 MWST"}
    )
    assert second.verification is None
    assert {t.id for t in client.v1.customers.tax_ids.list(cus.id).data} == {first.id, second.id}
    assert client.v1.customers.tax_ids.delete(cus.id, first.id).deleted is True
    assert [t.id for t in client.v1.customers.tax_ids.list(cus.id).data] == [second.id]
    err = invalid(client.v1.customers.tax_ids.delete, cus.id, first.id)
    assert err.code == "resource_missing"


def test_an_invalid_tax_id_is_refused_with_stripes_error_and_no_customer_is_made(client):
    err = invalid(client.v1.customers.tax_ids.create, client.v1.customers.create(params={}).id,
                   params={"type": "eu_vat", "value": "DE12345"})  # fmt: skip
    assert (err.code, err.param, err.user_message) == ("tax_id_invalid", "value", "Invalid value for eu_vat.")
    err = invalid(
        client.v1.customers.create, params={"name": "X", "tax_id_data": [{"type": "gb_vat", "value": "123"}]}
    )
    assert (err.code, err.param) == ("tax_id_invalid", "tax_id_data[0][value]")
    assert len(client.v1.customers.list().data) == 1  # only the first test customer
    err = invalid(client.v1.customers.tax_ids.create, client.v1.customers.list().data[0].id,
                   params={"type": "vat", "value": "DE123456789"})  # fmt: skip
    assert err.param == "type"


def test_tax_exempt_takes_stripes_three_values(client):
    cus = client.v1.customers.create(params={"tax_exempt": "reverse"})
    assert cus.tax_exempt == "reverse"
    assert invalid(client.v1.customers.update, cus.id, params={"tax_exempt": "yes"}).param == "tax_exempt"
    assert client.v1.customers.update(cus.id, params={"tax_exempt": ""}).tax_exempt == "none"


def test_automatic_tax_needs_a_customer_location_stripe_tax_can_use(client):
    price = _price(client)
    nowhere = client.v1.customers.create(params={"name": "No address"})
    params = {"items": [{"price": price.id}], "automatic_tax": {"enabled": True},
              "collection_method": "send_invoice", "days_until_due": 30}  # fmt: skip
    err = invalid(client.v1.subscriptions.create, params={"customer": nowhere.id, **params})
    assert err.code == "customer_tax_location_invalid"
    assert "location isn't recognized" in err.user_message
    us_no_zip = client.v1.customers.create(params={"address": {"country": "US", "city": "Springfield"}})
    assert invalid(client.v1.subscriptions.create, params={"customer": us_no_zip.id, **params}).code == (
        "customer_tax_location_invalid"
    )
    german = client.v1.customers.create(params={"address": {"country": "DE"}})
    sub = client.v1.subscriptions.create(params={"customer": german.id, **params})
    assert sub.automatic_tax.enabled is True
    plain = client.v1.subscriptions.create(
        params={**params, "customer": nowhere.id, "automatic_tax": {"enabled": False}}
    )
    assert plain.automatic_tax.enabled is False


def test_schedule_phases_check_the_location_too(client):
    price = _price(client)
    nowhere = client.v1.customers.create(params={"name": "No address"})
    phase = {"items": [{"price": price.id}], "automatic_tax": {"enabled": True}}
    err = invalid(client.v1.subscription_schedules.create,
                   params={"customer": nowhere.id, "start_date": 4102444800, "phases": [phase]})  # fmt: skip
    assert (err.code, err.param) == ("customer_tax_location_invalid", "phases[0][automatic_tax][enabled]")
    german = client.v1.customers.create(params={"address": {"country": "DE"}})
    sched = client.v1.subscription_schedules.create(
        params={"customer": german.id, "start_date": 4102444800, "phases": [phase]}
    )
    assert sched.phases[0].automatic_tax.enabled is True


def test_tax_behavior_cannot_change_once_inclusive_or_exclusive(client):
    price = _price(client, tax_behavior="exclusive")
    assert price.tax_behavior == "exclusive"
    err = invalid(client.v1.prices.update, price.id, params={"tax_behavior": "inclusive"})
    assert err.param == "tax_behavior"
    assert _price(client).tax_behavior == "unspecified"


def test_invoices_check_the_location_too(client):
    nowhere = client.v1.customers.create(params={"name": "No address"})
    params = {"automatic_tax": {"enabled": True}, "collection_method": "send_invoice", "days_until_due": 30}
    err = invalid(client.v1.invoices.create, params={"customer": nowhere.id, **params})
    assert (err.code, err.param) == ("customer_tax_location_invalid", "automatic_tax[enabled]")
    german = client.v1.customers.create(params={"address": {"country": "DE"}})
    assert client.v1.invoices.create(params={"customer": german.id, **params}).automatic_tax.enabled is True

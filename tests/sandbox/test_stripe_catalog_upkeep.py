"""Fake Stripe: keeping a catalog current (product and price updates, archiving, which
subscriptions bill a price), through the real stripe-python client."""

from __future__ import annotations

import stripe

from tests.sandbox.stripe_errors import invalid


def _price(client, product: str, amount: int = 1000) -> stripe.Price:
    return client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": amount,
            "product": product,
            "recurring": {"interval": "month"},
        }
    )


def test_a_product_update_changes_only_the_fields_sent(client):
    prod = client.v1.products.create(params={"name": "Platform", "description": "All of it"})
    renamed = client.v1.products.update(prod.id, params={"name": "Platform Pro"})
    assert (renamed.name, renamed.description, renamed.active) == ("Platform Pro", "All of it", True)
    cleared = client.v1.products.update(prod.id, params={"description": "", "active": False})
    assert (cleared.name, cleared.description, cleared.active) == ("Platform Pro", None, False)
    error = invalid(client.v1.products.update, prod.id, params={"name": ""})
    assert error.param == "name"


def test_an_archived_product_gets_no_new_price_until_reactivated(client):
    prod = client.v1.products.create(params={"name": "Legacy"})
    client.v1.products.update(prod.id, params={"active": False})
    error = invalid(_price, client, prod.id)
    assert error.param == "product" and "inactive" in str(error.user_message)
    client.v1.products.update(prod.id, params={"active": True})
    assert _price(client, prod.id).active


def test_a_price_archives_and_keeps_its_amount(client):
    prod = client.v1.products.create(params={"name": "Seats"})
    price = _price(client, prod.id)
    archived = client.v1.prices.update(price.id, params={"active": False, "metadata": {"replaced_by": "x"}})
    assert (archived.active, archived.metadata["replaced_by"], archived.unit_amount) == (False, "x", 1000)
    error = invalid(client.v1.prices.update, price.id, params={"unit_amount": 2000})
    assert "unit_amount" in str(error.user_message)
    assert client.v1.prices.retrieve(price.id).unit_amount == 1000
    assert client.v1.prices.update(price.id, params={"active": True}).active


def test_subscriptions_list_by_price_leaves_out_ended_ones(client):
    prod = client.v1.products.create(params={"name": "Seats"})
    price, other = _price(client, prod.id), _price(client, prod.id, 2000)
    customer = client.v1.customers.create(params={"name": "Acme"})
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
        }
    )
    assert [s.id for s in client.v1.subscriptions.list(params={"price": price.id}).data] == [sub.id]
    assert client.v1.subscriptions.list(params={"price": other.id}).data == []
    client.v1.subscriptions.cancel(sub.id)
    assert client.v1.subscriptions.list(params={"price": price.id}).data == []
    everything = client.v1.subscriptions.list(params={"price": price.id, "status": "all"}).data
    assert [s.id for s in everything] == [sub.id]


def test_no_new_subscription_on_an_archived_products_price(client):
    prod = client.v1.products.create(params={"name": "Legacy"})
    price = _price(client, prod.id)
    client.v1.products.update(prod.id, params={"active": False})
    customer = client.v1.customers.create(params={"name": "Acme"})
    params = {
        "customer": customer.id,
        "items": [{"price": price.id}],
        "collection_method": "send_invoice",
        "days_until_due": 30,
    }
    error = invalid(client.v1.subscriptions.create, params=params)
    assert error.param == "items[0][price]" and "marked as inactive" in str(error.user_message)
    client.v1.products.update(prod.id, params={"active": True})
    assert client.v1.subscriptions.create(params=params).status == "active"

"""Fake Stripe coupons and discounts, driven through the real stripe client: coupons with custom
ids, `discounts` on subscriptions, items, invoice items and schedule phases, and invoices that take
a coupon off for its duration."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.sandbox.stripe_errors import invalid


def ts(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp())


JAN1 = ts(2026, 1, 1)


@pytest.fixture
def product(client):
    return client.v1.products.create(params={"name": "Suite"})


def _price(client, product, amount: int, recurring: bool = True, currency: str = "usd"):
    params = {"currency": currency, "unit_amount": amount, "product": product.id}
    if recurring:
        params["recurring"] = {"interval": "month"}
    return client.v1.prices.create(params=params)


def _clocked_customer(client):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    cus = client.v1.customers.create(params={"name": "Acme", "test_clock": clock.id})
    return clock, cus


def _advance(client, clock_id: str, to: int) -> None:
    client.v1.test_helpers.test_clocks.advance(clock_id, params={"frozen_time": to})
    for _ in range(50):
        if client.v1.test_helpers.test_clocks.retrieve(clock_id).status == "ready":
            return
    raise AssertionError("clock never became ready")


def _totals(client, sub_id: str) -> list[int]:
    rows = client.v1.invoices.list(params={"subscription": sub_id, "limit": 100}).data
    return [i.total for i in sorted(rows, key=lambda i: (i.created, i.number))]


SEND = {"collection_method": "send_invoice", "days_until_due": 30}


def test_a_coupon_with_a_custom_id_is_created_once(client):
    coupon = client.v1.coupons.create(
        params={"id": "half-3m", "percent_off": 50, "duration": "repeating", "duration_in_months": 3}
    )
    assert (coupon.id, coupon.percent_off, coupon.duration, coupon.duration_in_months) == (
        "half-3m",
        50,
        "repeating",
        3,
    )
    assert client.v1.coupons.retrieve("half-3m").id == "half-3m"
    err = invalid(client.v1.coupons.create, params={"id": "half-3m", "percent_off": 50})
    assert err.code == "resource_already_exists"


@pytest.mark.parametrize(
    "params,param",
    [
        ({"percent_off": 0}, "percent_off"),
        ({"percent_off": 101}, "percent_off"),
        ({"amount_off": 500}, "currency"),
        ({"percent_off": 10, "duration": "repeating"}, "duration_in_months"),
        ({"percent_off": 10, "duration": "forever", "duration_in_months": 2}, "duration_in_months"),
    ],
)
def test_coupon_params_are_validated(client, params, param):
    assert invalid(client.v1.coupons.create, params=params).param == param


def test_discounts_name_existing_coupons_in_the_subscription_currency(client, product):
    price = _price(client, product, 10000)
    cus = client.v1.customers.create(params={"name": "Acme"})
    missing = invalid(
        client.v1.subscriptions.create,
        params={
            "customer": cus.id,
            "items": [{"price": price.id, "discounts": [{"coupon": "nope"}]}],
            **SEND,
        },
    )
    assert missing.code == "resource_missing" and missing.param == "items[0][discounts][0][coupon]"
    client.v1.coupons.create(params={"id": "eur5", "amount_off": 500, "currency": "eur"})
    wrong = invalid(
        client.v1.subscriptions.create,
        params={
            "customer": cus.id,
            "items": [{"price": price.id}],
            "discounts": [{"coupon": "eur5"}],
            **SEND,
        },
    )
    assert wrong.param == "discounts[0][coupon]"


def test_a_repeating_item_coupon_bills_the_discount_for_its_months_then_the_list_price(client, product):
    """List 100.00, 50 % off for 3 months: 50.00 three times, then 100.00."""
    price = _price(client, product, 10000)
    client.v1.coupons.create(
        params={"id": "half-3m", "percent_off": 50, "duration": "repeating", "duration_in_months": 3}
    )
    clock, cus = _clocked_customer(client)
    sub = client.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": price.id, "quantity": 1, "discounts": [{"coupon": "half-3m"}]}],
            **SEND,
        }
    )
    [item] = sub["items"].data
    assert len(item.discounts) == 1
    for month in (2, 3, 4, 5):
        _advance(client, clock.id, ts(2026, month, 1))
    assert _totals(client, sub.id) == [5000, 5000, 5000, 10000, 10000]
    invoices = client.v1.invoices.list(params={"subscription": sub.id, "limit": 100}).data
    discounted = next(i for i in invoices if i.created == JAN1)
    assert discounted.subtotal == 10000
    assert [d.amount for d in discounted.total_discount_amounts] == [5000]
    assert [d.amount for d in discounted.lines.data[0].discount_amounts] == [5000]


def test_subscription_and_once_coupons(client, product):
    """A subscription-wide 10 % forever, an item's 20.00 once (times the line): the first invoice
    takes both, later ones only the 10 %."""
    price = _price(client, product, 10000)
    client.v1.coupons.create(params={"id": "ten", "percent_off": 10, "duration": "forever"})
    client.v1.coupons.create(
        params={"id": "twenty", "amount_off": 2000, "currency": "usd", "duration": "once"}
    )
    clock, cus = _clocked_customer(client)
    sub = client.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": price.id, "quantity": 1, "discounts": [{"coupon": "twenty"}]}],
            "discounts": [{"coupon": "ten"}],
            **SEND,
        }
    )
    _advance(client, clock.id, ts(2026, 2, 1))
    # (10000 - 2000) - 10 % of 8000 = 7200; then 10000 - 1000
    assert _totals(client, sub.id) == [7200, 9000]


def test_one_time_invoice_items_take_their_coupon(client, product):
    price = _price(client, product, 10000)
    setup = _price(client, product, 30000, recurring=False)
    client.v1.coupons.create(params={"id": "setup-half", "percent_off": 50})
    cus = client.v1.customers.create(params={"name": "Acme"})
    sub = client.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": price.id}],
            "add_invoice_items": [{"price": setup.id, "discounts": [{"coupon": "setup-half"}]}],
            **SEND,
        }
    )
    assert client.v1.invoices.retrieve(sub.latest_invoice).total == 10000 + 15000


def test_a_schedule_phase_carries_its_discounts_to_the_subscription(client, product):
    price = _price(client, product, 10000)
    client.v1.coupons.create(
        params={"id": "half-2m", "percent_off": 50, "duration": "repeating", "duration_in_months": 2}
    )
    clock, cus = _clocked_customer(client)
    bad = invalid(
        client.v1.subscription_schedules.create,
        params={
            "customer": cus.id,
            "start_date": ts(2026, 2, 1),
            "phases": [{"items": [{"price": price.id, "discounts": [{"coupon": "gone"}]}], **SEND_PHASE}],
        },
    )
    assert bad.param == "phases[0][items][0][discounts][0][coupon]"
    sched = client.v1.subscription_schedules.create(
        params={
            "customer": cus.id,
            "start_date": ts(2026, 2, 1),
            "end_behavior": "release",
            "phases": [{"items": [{"price": price.id, "discounts": [{"coupon": "half-2m"}]}], **SEND_PHASE}],
        }
    )
    assert sched.phases[0]["items"][0]["discounts"][0]["coupon"] == "half-2m"
    for month in (2, 3, 4, 5):
        _advance(client, clock.id, ts(2026, month, 1))
    sub = client.v1.subscription_schedules.retrieve(sched.id).released_subscription
    assert _totals(client, sub) == [5000, 5000, 10000, 10000]


SEND_PHASE = {"collection_method": "send_invoice", "invoice_settings": {"days_until_due": 30}}

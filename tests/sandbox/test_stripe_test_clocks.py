"""Fake Stripe test clocks: advancing time bills like Stripe (renewals, schedule phases with
prorations, end behaviours, cancel_at) and schedule updates follow Stripe's rules, through the real
stripe-python client."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import stripe

from connector.sandbox.stripe.server import StripeSandbox, start_stripe


def ts(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp())


JAN1 = ts(2026, 1, 1)


@pytest.fixture(scope="module")
def server():
    sb = start_stripe(rps=0)
    yield sb
    sb.stop()


@pytest.fixture
def client(server: StripeSandbox) -> stripe.StripeClient:
    server.state.reset()
    server.configure(rps=0, error_rate=0, search_lag_seconds=0)
    return stripe.StripeClient("sk_test_123", base_addresses={"api": server.url}, max_network_retries=0)


@pytest.fixture
def seats(client):
    prod = client.v1.products.create(params={"name": "Seats"})
    return client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 1000,
            "product": prod.id,
            "recurring": {"interval": "month"},
        }
    )


def _invalid(fn, *args, **kwargs) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as info:
        fn(*args, **kwargs)
    return info.value


def _customer(client, clock_id: str):
    cus = client.v1.customers.create(params={"name": "Acme", "test_clock": clock_id})
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    client.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    return cus


def _advance(client, clock_id: str, to: int):
    """Advance and poll until ready, as a client of real Stripe must."""
    started = client.v1.test_helpers.test_clocks.advance(clock_id, params={"frozen_time": to})
    assert started.status == "advancing"
    for _ in range(50):
        clock = client.v1.test_helpers.test_clocks.retrieve(clock_id)
        if clock.status == "ready":
            return clock
    raise AssertionError("clock never became ready")


def _invoices(client, sub_id: str) -> list:
    rows = client.v1.invoices.list(params={"subscription": sub_id, "limit": 100}).data
    return sorted(rows, key=lambda i: (i.created, i.number))


# the clock itself ------------------------------------------------------------------------------
def test_a_clock_advances_asynchronously_then_reports_ready(client):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1, "name": "contract"})
    assert (clock.object, clock.status, clock.frozen_time, clock.name) == (
        "test_helpers.test_clock",
        "ready",
        JAN1,
        "contract",
    )
    assert clock.id.startswith("clock_") and clock.deletes_after > clock.created
    started = client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": ts(2026, 2, 1)})
    assert started.status == "advancing" and started.frozen_time == JAN1
    assert started.status_details.advancing.target_frozen_time == ts(2026, 2, 1)
    err = _invalid(
        client.v1.test_helpers.test_clocks.advance, clock.id, params={"frozen_time": ts(2026, 3, 1)}
    )
    assert err.param == "frozen_time" and "already advancing" in err.user_message
    ready = client.v1.test_helpers.test_clocks.retrieve(clock.id)
    assert (ready.status, ready.frozen_time) == ("ready", ts(2026, 2, 1))
    assert [c.id for c in client.v1.test_helpers.test_clocks.list().data] == [clock.id]


def test_advance_rules(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    err = _invalid(client.v1.test_helpers.test_clocks.advance, clock.id, params={"frozen_time": JAN1})
    assert err.param == "frozen_time" and "after the test clock's current frozen time" in err.user_message
    err = _invalid(
        client.v1.test_helpers.test_clocks.advance, clock.id, params={"frozen_time": ts(2028, 1, 2)}
    )
    assert "two years" in err.user_message
    cus = _customer(client, clock.id)
    client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": seats.id}]})
    err = _invalid(
        client.v1.test_helpers.test_clocks.advance, clock.id, params={"frozen_time": ts(2026, 3, 2)}
    )
    assert "two intervals" in err.user_message and "month" in err.user_message
    assert _advance(client, clock.id, ts(2026, 3, 1)).frozen_time == ts(2026, 3, 1)


def test_a_clock_holds_three_customers_and_deleting_it_deletes_them(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    customers = [_customer(client, clock.id) for _ in range(3)]
    assert all(c.test_clock == clock.id and c.created == JAN1 for c in customers)
    err = _invalid(client.v1.customers.create, params={"test_clock": clock.id})
    assert err.param == "test_clock" and "3 customers" in err.user_message
    listed = client.v1.customers.list(params={"test_clock": clock.id}).data
    assert {c.id for c in listed} == {c.id for c in customers}
    sub = client.v1.subscriptions.create(params={"customer": customers[0].id, "items": [{"price": seats.id}]})
    assert sub.test_clock == clock.id and sub.start_date == JAN1
    deleted = client.v1.test_helpers.test_clocks.delete(clock.id)
    assert deleted.deleted is True
    assert client.v1.customers.retrieve(customers[0].id).deleted is True
    err = _invalid(client.v1.subscriptions.retrieve, sub.id)
    assert err.code == "resource_missing"


def test_customers_without_a_clock_keep_real_time(client, seats):
    client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    cus = client.v1.customers.create(params={"name": "Real"})
    assert cus.test_clock is None and abs(cus.created - time.time()) < 60


# renewals --------------------------------------------------------------------------------------
def test_a_monthly_subscription_advanced_three_months_has_four_invoices(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    cus = _customer(client, clock.id)
    sub = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": seats.id, "quantity": 3}]}
    )
    for month in (2, 3, 4):
        _advance(client, clock.id, ts(2026, month, 1))
    invoices = _invoices(client, sub.id)
    assert [i.total for i in invoices] == [3000, 3000, 3000, 3000]
    assert [i.billing_reason for i in invoices] == ["subscription_create"] + ["subscription_cycle"] * 3
    assert [i.created for i in invoices] == [JAN1, ts(2026, 2, 1), ts(2026, 3, 1), ts(2026, 4, 1)]
    assert all(i.status == "paid" and i.test_clock == clock.id for i in invoices)
    last = invoices[-1].lines.data
    assert [(ln.quantity, ln.amount, ln.period.start, ln.period.end) for ln in last] == [
        (3, 3000, ts(2026, 4, 1), ts(2026, 5, 1))
    ]
    item = client.v1.subscriptions.retrieve(sub.id)["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (ts(2026, 4, 1), ts(2026, 5, 1))


def test_send_invoice_renewals_are_open_with_a_due_date(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    cus = client.v1.customers.create(params={"test_clock": clock.id})
    sub = client.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": seats.id}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
        }
    )
    _advance(client, clock.id, ts(2026, 2, 1))
    renewal = _invoices(client, sub.id)[-1]
    assert renewal.status == "open" and renewal.due_date == ts(2026, 2, 1) + 30 * 86400


def test_cancel_at_mid_period_credits_the_unused_time(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    cus = _customer(client, clock.id)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": seats.id}]})
    client.v1.subscriptions.update(sub.id, params={"cancel_at": ts(2026, 2, 15)})
    _advance(client, clock.id, ts(2026, 3, 1))
    done = client.v1.subscriptions.retrieve(sub.id)
    assert (done.status, done.ended_at) == ("canceled", ts(2026, 2, 15))
    invoices = _invoices(client, sub.id)
    # Jan, Feb in full, then a credit for Feb 15 - Mar 1 (14 of 28 days).
    assert [i.total for i in invoices] == [1000, 1000, -500]
    assert invoices[-1].lines.data[0].parent.subscription_item_details.proration is True


# schedules -------------------------------------------------------------------------------------
def test_a_mid_month_seat_increase_bills_its_proration_on_the_next_invoice(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    cus = _customer(client, clock.id)
    sched = client.v1.subscription_schedules.create(
        params={
            "customer": cus.id,
            "start_date": "now",
            "end_behavior": "release",
            "phases": [
                {"items": [{"price": seats.id, "quantity": 10}], "end_date": ts(2026, 1, 16)},
                {
                    "items": [{"price": seats.id, "quantity": 15}],
                    "duration": {"interval": "month", "interval_count": 6},
                },
            ],
        }
    )
    assert sched.test_clock == clock.id
    _advance(client, clock.id, ts(2026, 1, 20))
    sub = client.v1.subscriptions.retrieve(sched.subscription)
    assert sub["items"].data[0].quantity == 15
    assert client.v1.subscription_schedules.retrieve(sched.id).current_phase.start_date == ts(2026, 1, 16)
    assert [i.total for i in _invoices(client, sub.id)] == [10000]  # prorations wait for the next invoice
    _advance(client, clock.id, ts(2026, 2, 1))
    feb = _invoices(client, sub.id)[-1]
    lines = sorted(
        (ln.amount, ln.quantity, ln.parent.subscription_item_details.proration) for ln in feb.lines.data
    )
    # 16 of January's 31 days remain on Jan 16: credit 10 seats, charge 15.
    assert lines == [(-5161, 10, True), (7742, 15, True), (15000, 15, False)]
    assert feb.total == 17581


def test_a_phase_change_on_the_period_boundary_prorates_nothing(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    cus = _customer(client, clock.id)
    sched = client.v1.subscription_schedules.create(
        params={
            "customer": cus.id,
            "start_date": "now",
            "phases": [
                {"items": [{"price": seats.id, "quantity": 10}], "end_date": ts(2026, 2, 1)},
                {"items": [{"price": seats.id, "quantity": 15}], "end_date": ts(2026, 3, 1)},
            ],
        }
    )
    _advance(client, clock.id, ts(2026, 2, 1))
    assert [i.total for i in _invoices(client, sched.subscription)] == [10000, 15000]


def test_end_behavior_cancel_ends_the_subscription_at_the_last_phase_end(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    cus = _customer(client, clock.id)
    sched = client.v1.subscription_schedules.create(
        params={
            "customer": cus.id,
            "start_date": "now",
            "end_behavior": "cancel",
            "phases": [{"items": [{"price": seats.id, "quantity": 2}], "end_date": ts(2026, 3, 1)}],
        }
    )
    _advance(client, clock.id, ts(2026, 2, 1))
    _advance(client, clock.id, ts(2026, 3, 15))
    sub = client.v1.subscriptions.retrieve(sched.subscription)
    assert (sub.status, sub.ended_at) == ("canceled", ts(2026, 3, 1))
    done = client.v1.subscription_schedules.retrieve(sched.id)
    assert (done.status, done.completed_at, done.current_phase) == ("completed", ts(2026, 3, 1), None)
    assert [i.total for i in _invoices(client, sub.id)] == [2000, 2000]


def test_end_behavior_release_keeps_renewing(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    cus = _customer(client, clock.id)
    sched = client.v1.subscription_schedules.create(
        params={
            "customer": cus.id,
            "start_date": "now",
            "end_behavior": "release",
            "phases": [{"items": [{"price": seats.id}], "end_date": ts(2026, 2, 1)}],
        }
    )
    _advance(client, clock.id, ts(2026, 3, 1))
    released = client.v1.subscription_schedules.retrieve(sched.id)
    assert released.status == "released" and released.released_subscription == sched.subscription
    sub = client.v1.subscriptions.retrieve(sched.subscription)
    assert sub.status == "active" and sub.schedule is None
    assert [i.total for i in _invoices(client, sub.id)] == [1000, 1000, 1000]


def test_a_not_started_schedule_starts_when_the_clock_reaches_it(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    cus = _customer(client, clock.id)
    sched = client.v1.subscription_schedules.create(
        params={
            "customer": cus.id,
            "start_date": ts(2026, 1, 10),
            "phases": [{"items": [{"price": seats.id}], "end_date": ts(2026, 3, 10)}],
        }
    )
    assert sched.status == "not_started"
    _advance(client, clock.id, ts(2026, 2, 10))
    started = client.v1.subscription_schedules.retrieve(sched.id)
    assert started.status == "active"
    sub = client.v1.subscriptions.retrieve(started.subscription)
    assert sub.start_date == ts(2026, 1, 10)
    assert [i.created for i in _invoices(client, sub.id)] == [ts(2026, 1, 10), ts(2026, 2, 10)]


# schedule update rules -------------------------------------------------------------------------
def _two_phase_schedule(client, seats, clock_id):
    cus = _customer(client, clock_id)
    return client.v1.subscription_schedules.create(
        params={
            "customer": cus.id,
            "start_date": "now",
            "end_behavior": "cancel",
            "phases": [
                {"items": [{"price": seats.id, "quantity": 10}], "end_date": ts(2026, 2, 1)},
                {"items": [{"price": seats.id, "quantity": 12}], "end_date": ts(2026, 4, 1)},
            ],
        }
    )


def test_ended_phases_stay_and_cannot_be_changed(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    sched = _two_phase_schedule(client, seats, clock.id)
    _advance(client, clock.id, ts(2026, 2, 10))
    listed = client.v1.subscription_schedules.retrieve(sched.id).phases
    assert [(p.start_date, p.end_date) for p in listed] == [
        (JAN1, ts(2026, 2, 1)),
        (ts(2026, 2, 1), ts(2026, 4, 1)),
    ]
    update = client.v1.subscription_schedules.update
    # Changing the ended phase is refused.
    err = _invalid(
        update,
        sched.id,
        params={
            "phases": [
                {
                    "start_date": JAN1,
                    "end_date": ts(2026, 2, 1),
                    "items": [{"price": seats.id, "quantity": 11}],
                },
                {
                    "start_date": ts(2026, 2, 1),
                    "end_date": ts(2026, 4, 1),
                    "items": [{"price": seats.id, "quantity": 12}],
                },
            ]
        },
    )
    assert err.param == "phases[0]" and "already ended" in err.user_message
    # Moving the current phase's start is refused with Stripe's message.
    err = _invalid(
        update,
        sched.id,
        params={
            "phases": [
                {
                    "start_date": ts(2026, 2, 5),
                    "end_date": ts(2026, 4, 1),
                    "items": [{"price": seats.id, "quantity": 12}],
                },
            ]
        },
    )
    assert (err.param, err.user_message) == (
        "phases[0][start_date]",
        "You can not modify the start date of the current phase.",
    )
    # A new phase cannot start in the past.
    err = _invalid(
        update,
        sched.id,
        params={
            "phases": [
                {
                    "start_date": ts(2026, 2, 1),
                    "end_date": ts(2026, 2, 5),
                    "items": [{"price": seats.id, "quantity": 12}],
                },
                {"items": [{"price": seats.id, "quantity": 20}], "end_date": ts(2026, 4, 1)},
            ]
        },
    )
    assert err.param == "phases[0][end_date]" and "cannot start in the past" in err.user_message
    # Phases are contiguous.
    err = _invalid(
        update,
        sched.id,
        params={
            "phases": [
                {
                    "start_date": ts(2026, 2, 1),
                    "end_date": ts(2026, 3, 1),
                    "items": [{"price": seats.id, "quantity": 12}],
                },
                {
                    "start_date": ts(2026, 3, 2),
                    "items": [{"price": seats.id, "quantity": 20}],
                    "end_date": ts(2026, 4, 1),
                },
            ]
        },
    )
    assert err.param == "phases[1][start_date]" and "contiguous" in err.user_message
    # end_date and duration are exclusive; iterations no longer exists.
    err = _invalid(
        update,
        sched.id,
        params={
            "phases": [
                {
                    "start_date": ts(2026, 2, 1),
                    "end_date": ts(2026, 4, 1),
                    "duration": {"interval": "month"},
                    "items": [{"price": seats.id, "quantity": 12}],
                },
            ]
        },
    )
    assert err.code == "parameters_exclusive"
    err = _invalid(
        update,
        sched.id,
        params={
            "phases": [
                {
                    "start_date": ts(2026, 2, 1),
                    "iterations": 2,
                    "items": [{"price": seats.id, "quantity": 12}],
                },
            ]
        },
    )
    assert err.code == "parameter_unknown" and err.param == "phases[0][iterations]"
    # Omitting the ended phase keeps it; adding a future phase works.
    ok = update(
        sched.id,
        params={
            "phases": [
                {
                    "start_date": ts(2026, 2, 1),
                    "end_date": ts(2026, 3, 1),
                    "items": [{"price": seats.id, "quantity": 12}],
                },
                {"items": [{"price": seats.id, "quantity": 20}], "end_date": ts(2026, 4, 1)},
            ]
        },
    )
    assert [p["items"][0].quantity for p in ok.phases] == [10, 12, 20]
    assert ok.phases[0].start_date == JAN1


def test_finished_schedules_cannot_be_updated(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    sched = _two_phase_schedule(client, seats, clock.id)
    client.v1.subscription_schedules.cancel(sched.id)
    err = _invalid(client.v1.subscription_schedules.update, sched.id, params={"metadata": {"a": "b"}})
    assert "`canceled` status" in err.user_message


def test_changing_the_current_phase_applies_now_with_prorations(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    cus = _customer(client, clock.id)
    sched = client.v1.subscription_schedules.create(
        params={
            "customer": cus.id,
            "start_date": "now",
            "phases": [{"items": [{"price": seats.id, "quantity": 10}], "end_date": ts(2026, 3, 1)}],
        }
    )
    _advance(client, clock.id, ts(2026, 1, 16))
    client.v1.subscription_schedules.update(
        sched.id,
        params={
            "phases": [
                {
                    "start_date": JAN1,
                    "end_date": ts(2026, 3, 1),
                    "items": [{"price": seats.id, "quantity": 15}],
                },
            ]
        },
    )
    assert client.v1.subscriptions.retrieve(sched.subscription)["items"].data[0].quantity == 15
    _advance(client, clock.id, ts(2026, 2, 1))
    assert _invoices(client, sched.subscription)[-1].total == 17581


def test_writes_wait_while_the_clock_advances(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    cus = _customer(client, clock.id)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": seats.id}]})
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": ts(2026, 2, 1)})
    err = _invalid(client.v1.subscriptions.update, sub.id, params={"metadata": {"a": "b"}})
    assert err.param == "test_clock" and "advancing" in err.user_message
    assert len(_invoices(client, sub.id)) == 1  # nothing happened yet: the clock was not polled
    client.v1.test_helpers.test_clocks.retrieve(clock.id)
    assert len(_invoices(client, sub.id)) == 2


def test_deleting_a_clock_customer_cancels_at_the_clock_time(client, seats):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": JAN1})
    cus = _customer(client, clock.id)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": seats.id}]})
    _advance(client, clock.id, ts(2026, 1, 20))
    client.v1.customers.delete(cus.id)
    assert client.v1.subscriptions.retrieve(sub.id).canceled_at == ts(2026, 1, 20)

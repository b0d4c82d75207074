"""Fake Stripe: Billing Meters, meter events and metered prices, driven through the real client."""

from __future__ import annotations

import time

import pytest
import requests
import stripe

from connector.sandbox.stripe.server import StripeSandbox, start_stripe


@pytest.fixture(scope="module")
def server():
    sb = start_stripe(rps=0)
    yield sb
    sb.stop()


@pytest.fixture
def sb(server: StripeSandbox) -> StripeSandbox:
    server.state.reset()
    server.configure(rps=0, latency_ms=0, error_rate=0, search_lag_seconds=0, seed=1)
    return server


@pytest.fixture
def client(sb: StripeSandbox) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_x", base_addresses={"api": sb.url}, max_network_retries=0)


def meter_params(event_name: str = "api_calls", **extra) -> dict:
    return {
        "display_name": "API calls",
        "event_name": event_name,
        "default_aggregation": {"formula": "sum"},
        "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
        "value_settings": {"event_payload_key": "value"},
        **extra,
    }


def http() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


# meters --------------------------------------------------------------------------------------
def test_create_and_retrieve(client):
    meter = client.v1.billing.meters.create(params=meter_params(event_time_window="hour"))
    assert meter.id.startswith("mtr_")
    assert meter.object == "billing.meter"
    assert meter.display_name == "API calls"
    assert meter.event_name == "api_calls"
    assert meter.default_aggregation.formula == "sum"
    assert meter.customer_mapping.to_dict() == {"event_payload_key": "stripe_customer_id", "type": "by_id"}
    assert meter.value_settings.event_payload_key == "value"
    assert meter.event_time_window == "hour"
    assert meter.status == "active"
    assert meter.status_transitions.deactivated_at is None
    assert meter.livemode is False
    assert meter.created == meter.updated
    assert client.v1.billing.meters.retrieve(meter.id).to_dict() == meter.to_dict()


def test_defaults_for_mapping_and_value(client):
    meter = client.v1.billing.meters.create(
        params={"display_name": "Count", "event_name": "logins", "default_aggregation": {"formula": "count"}}
    )
    assert meter.customer_mapping.to_dict() == {"event_payload_key": "stripe_customer_id", "type": "by_id"}
    assert meter.value_settings.to_dict() == {"event_payload_key": "value"}
    assert meter.event_time_window is None


def test_retrieve_unknown_is_404(client):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.retrieve("mtr_nope")
    assert info.value.http_status == 404
    assert info.value.code == "resource_missing"
    assert info.value.user_message == "No such billing.meter: 'mtr_nope'"


@pytest.mark.parametrize(
    ("drop", "param"),
    [
        ("display_name", "display_name"),
        ("event_name", "event_name"),
        ("default_aggregation", "default_aggregation"),
    ],
)
def test_required_params(client, drop, param):
    params = meter_params()
    del params[drop]
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.create(params=params)
    assert info.value.code == "parameter_missing"
    assert info.value.param == param


def test_invalid_enums_and_unknown_params(client):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.create(params=meter_params(default_aggregation={"formula": "max"}))
    assert info.value.param == "default_aggregation[formula]"
    assert info.value.user_message == "Invalid formula: must be one of count, last, or sum"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.create(
            params=meter_params(customer_mapping={"type": "by_email", "event_payload_key": "k"})
        )
    assert info.value.param == "customer_mapping[type]"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.create(params=meter_params(event_time_window="week"))
    assert info.value.param == "event_time_window"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.create(params=meter_params(aggregation="sum"))
    assert info.value.code == "parameter_unknown"
    assert info.value.user_message == "Received unknown parameter: aggregation"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.create(
            params=meter_params(value_settings={"event_payload_key": "v", "x": "1"})
        )
    assert info.value.param == "value_settings[x]"
    meter = client.v1.billing.meters.create(params=meter_params())
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.update(meter.id, params={"event_name": "other"})  # type: ignore[typeddict-unknown-key]
    assert info.value.code == "parameter_unknown"
    assert info.value.param == "event_name"


def test_duplicate_event_name_among_active_meters(client):
    first = client.v1.billing.meters.create(params=meter_params())
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.create(params=meter_params())
    assert info.value.http_status == 400
    assert info.value.param == "event_name"
    assert info.value.user_message == (
        "An active meter already exists for event name 'api_calls'. To create a new meter with the same "
        "event name, first deactivate the currently active meter."
    )
    client.v1.billing.meters.deactivate(first.id)
    second = client.v1.billing.meters.create(params=meter_params())  # allowed once the first is inactive
    assert second.status == "active"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.reactivate(first.id)
    assert info.value.param == "event_name"


def test_update_deactivate_reactivate(client, sb):
    meter = client.v1.billing.meters.create(params=meter_params())
    sb.state.store.clock = lambda: time.time() + 100
    try:
        renamed = client.v1.billing.meters.update(meter.id, params={"display_name": "Calls"})
        assert renamed.display_name == "Calls"
        assert renamed.updated > renamed.created
        off = client.v1.billing.meters.deactivate(meter.id)
        assert off.status == "inactive"
        assert off.status_transitions.deactivated_at == off.updated
        on = client.v1.billing.meters.reactivate(meter.id)
        assert on.status == "active"
        assert on.status_transitions.deactivated_at is None
    finally:
        sb.state.store.clock = time.time
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.update(meter.id, params={"display_name": ""})
    assert info.value.code == "parameter_invalid_empty"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.deactivate("mtr_nope")
    assert info.value.http_status == 404


def test_list_with_status_filter_and_pagination(client):
    ids = [client.v1.billing.meters.create(params=meter_params(f"event_{i}")).id for i in range(5)]
    client.v1.billing.meters.deactivate(ids[0])
    page = client.v1.billing.meters.list(params={"limit": 2})
    assert [m.id for m in page.data] == [ids[4], ids[3]]
    assert page.has_more is True
    assert page.url == "/v1/billing/meters"
    rest = client.v1.billing.meters.list(params={"limit": 10, "starting_after": ids[3]})
    assert [m.id for m in rest.data] == [ids[2], ids[1], ids[0]]
    assert rest.has_more is False
    assert [m.id for m in client.v1.billing.meters.list(params={"status": "inactive"}).data] == [ids[0]]
    assert len(client.v1.billing.meters.list(params={"status": "active"}).data) == 4
    all_ids = [m.id for m in client.v1.billing.meters.list(params={"limit": 1}).auto_paging_iter()]
    assert all_ids == list(reversed(ids))
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.list(params={"status": "archived"})  # type: ignore[typeddict-item]
    assert info.value.param == "status"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.list(params={"created": {"gt": 1}})  # type: ignore[typeddict-unknown-key]
    assert info.value.code == "parameter_unknown"


def test_idempotent_replay(client, sb):
    opts = {"idempotency_key": "meter-1"}
    first = client.v1.billing.meters.create(params=meter_params(), options=opts)
    again = client.v1.billing.meters.create(params=meter_params(), options=opts)
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(sb.state.objects("billing.meter")) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.billing.meters.create(params=meter_params("other"), options=opts)


def test_counters_request_log_and_admin_objects(client, sb):
    meter = client.v1.billing.meters.create(params=meter_params(), options={"idempotency_key": "k-log"})
    client.v1.billing.meters.retrieve(meter.id)
    counts = http().get(f"{sb.url}/_sandbox/counters").json()
    assert any("/v1/billing/meters" in k for k in counts)
    log = http().get(f"{sb.url}/_sandbox/requests").json()
    assert [(r["method"], r["pattern"], r["idempotency_key"]) for r in log] == [
        ("POST", "/v1/billing/meters", "k-log"),
        ("GET", "/v1/billing/meters/{id}", None),
    ]
    objects = http().get(f"{sb.url}/_sandbox/objects/billing.meter").json()
    assert [o["id"] for o in objects] == [meter.id]


# metered prices ------------------------------------------------------------------------------
def test_metered_price_names_an_existing_active_meter(client):
    product = client.v1.products.create(params={"name": "API"})
    meter = client.v1.billing.meters.create(params=meter_params())

    def price(meter_id: str, **extra) -> stripe.Price:
        return client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": 3,
                "product": product.id,
                "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
                **extra,
            }
        )

    ok = price(meter.id)
    assert ok.recurring.meter == meter.id
    assert ok.recurring.usage_type == "metered"

    with pytest.raises(stripe.InvalidRequestError) as info:
        price("mtr_missing")
    assert info.value.http_status == 400
    assert info.value.code == "resource_missing"
    assert info.value.param == "recurring[meter]"
    assert info.value.user_message == "No such billing.meter: 'mtr_missing'"

    client.v1.billing.meters.deactivate(meter.id)
    with pytest.raises(stripe.InvalidRequestError) as info:
        price(meter.id)
    assert info.value.param == "recurring[meter]"
    assert "deactivated meter" in info.value.user_message


def test_subscription_price_data_takes_no_meter(client):
    """As in Stripe, inline `price_data` cannot be metered: metered prices are created first."""
    product = client.v1.products.create(params={"name": "API"})
    customer = client.v1.customers.create(params={"name": "Acme"})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [
                    {
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": 3,
                            "product": product.id,
                            "recurring": {"interval": "month", "meter": "mtr_x"},
                        }
                    }
                ],
            }
        )
    assert info.value.code == "parameter_unknown"
    assert info.value.param == "items[0][price_data][recurring][meter]"


# meter events --------------------------------------------------------------------------------
def test_meter_events(client, sb):
    client.v1.billing.meters.create(params=meter_params())
    now = int(time.time())
    event = client.v1.billing.meter_events.create(
        params={
            "event_name": "api_calls",
            "payload": {"stripe_customer_id": "cus_123", "value": "7"},
            "identifier": "usage-1",
            "timestamp": now,
        }
    )
    assert event.object == "billing.meter_event"
    assert event.identifier == "usage-1"
    assert event.payload.to_dict() == {"stripe_customer_id": "cus_123", "value": "7"}
    assert event.timestamp == now
    generated = client.v1.billing.meter_events.create(
        params={"event_name": "api_calls", "payload": {"stripe_customer_id": "cus_123", "value": "1"}}
    )
    assert generated.identifier and generated.timestamp >= now
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meter_events.create(
            params={"event_name": "api_calls", "payload": {"value": "1"}, "identifier": "usage-1"}
        )
    assert info.value.param == "identifier"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meter_events.create(
            params={"event_name": "api_calls", "payload": {"value": "1"}, "timestamp": now - 40 * 86400}
        )
    assert info.value.param == "timestamp"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meter_events.create(params={"event_name": "api_calls"})  # type: ignore[typeddict-item]
    assert info.value.code == "parameter_missing"
    assert info.value.param == "payload"
    assert len(sb.state.objects("billing.meter_event")) == 2


def test_a_meter_event_identifier_is_refused_for_24_hours_in_stripes_words(client, sb):
    from connector.stripe_sink.meter_events import is_duplicate

    client.v1.billing.meters.create(params=meter_params())
    params = {"event_name": "api_calls", "payload": {"stripe_customer_id": "cus_1", "value": "2"}}
    client.v1.billing.meter_events.create(params={**params, "identifier": "usage-9"})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meter_events.create(params={**params, "identifier": "usage-9"})
    assert str(info.value.user_message) == "An event already exists with identifier usage-9."
    assert info.value.param == "identifier" and info.value.code is None
    assert is_duplicate(info.value)  # what the connector reads as "sent already"

    real = sb.state.store.clock
    sb.state.store.clock = lambda: real() + 86400 + 60  # Stripe promises uniqueness for at least 24 hours
    try:
        again = client.v1.billing.meter_events.create(
            params={**params, "identifier": "usage-9", "timestamp": int(real()) + 86400}
        )
    finally:
        sb.state.store.clock = real
    assert again.identifier == "usage-9"
    assert len(sb.state.objects("billing.meter_event")) == 2

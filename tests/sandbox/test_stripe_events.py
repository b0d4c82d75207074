"""Fake Stripe's events as the billing-status pass reads them, and webhook delivery, through the
real stripe-python client: listing forward from a cursor, types, delinquency, signatures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
import stripe

from tests.sandbox.stripe_errors import invalid


def _customer_events(client: stripe.StripeClient, n: int) -> list[str]:
    return [client.v1.customers.create(params={"name": f"C{i}"}).id for i in range(n)]


def test_events_list_newest_first_and_page_forward_from_a_cursor_with_ending_before(client):
    _customer_events(client, 5)
    newest_first = client.v1.events.list(params={"types": ["customer.created"], "limit": 100}).data
    oldest = newest_first[-1].id

    page = client.v1.events.list(params={"types": ["customer.created"], "ending_before": oldest, "limit": 2})

    # the two events just after the cursor, newest first, and more after them
    assert [e.id for e in page.data] == [e.id for e in newest_first[-3:-1]]
    assert page.has_more is True
    err = invalid(client.v1.events.list, params={"ending_before": "evt_000000000000000000000000"})
    assert (err.code, err.param) == ("resource_missing", "ending_before")


def test_a_declined_automatic_payment_makes_the_customer_delinquent_with_customer_updated(client):
    customer = client.v1.customers.create(params={"name": "Initech"})
    pm = client.v1.payment_methods.create(
        params={"type": "card", "card": {"token": "tok_chargeCustomerFail"}}
    )
    client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})
    product = client.v1.products.create(params={"name": "Suite"})
    price = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 1000,
            "product": product.id,
            "recurring": {"interval": "month"},
        }
    )
    client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}], "default_payment_method": pm.id}
    )

    assert client.v1.customers.retrieve(customer.id).delinquent is True
    types = [e.type for e in client.v1.events.list(params={"limit": 100}).data][::-1]
    assert types[-3:] == ["invoice.finalized", "invoice.payment_failed", "customer.updated"]
    [updated] = client.v1.events.list(params={"type": "customer.updated"}).data
    assert updated.data.previous_attributes.to_dict() == {"delinquent": False}


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[bytes, str]]] = []
    arrived: ClassVar[threading.Event] = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((body, self.headers["Stripe-Signature"]))
        type(self).arrived.set()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    _Receiver.received, _Receiver.arrived = [], threading.Event()
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/stripe", _Receiver
    server.shutdown()


def test_a_webhook_endpoint_receives_its_events_signed_as_stripe_signs_them(client, receiver):
    url, got = receiver
    endpoint = client.v1.webhook_endpoints.create(params={"url": url, "enabled_events": ["customer.created"]})
    assert endpoint.secret.startswith("whsec_")
    assert "secret" not in client.v1.webhook_endpoints.retrieve(endpoint.id).to_dict()

    customer = client.v1.customers.create(params={"name": "Acme"})
    client.v1.products.create(params={"name": "not subscribed to"})
    assert got.arrived.wait(10), "no delivery"

    [(body, header)] = got.received
    event = stripe.Webhook.construct_event(body.decode(), header, endpoint.secret)
    assert (event.type, event.data.object.id) == ("customer.created", customer.id)
    [listed] = client.v1.events.list(params={"type": "customer.created"}).data
    assert (listed.id, listed.pending_webhooks) == (event.id, 1)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body.decode(), header, "whsec_not_the_endpoints")

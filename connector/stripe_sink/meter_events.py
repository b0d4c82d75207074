"""Billing Meter events (`POST /v1/billing/meter_events`): one per usage record.

The event's `identifier` is the usage record's unique id, so Stripe counts it once: it refuses a
second event with an identifier it has seen (for at least 24 hours), and that refusal means the
usage is in Stripe already. Past that window only the state store's link stops a resend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from connector.stripe_sink.gateway import StripeGateway

CUSTOMER_KEY = "stripe_customer_id"  # the meter's customer_mapping.event_payload_key (catalog.create_meter)
VALUE_KEY = "value"  # its value_settings.event_payload_key


@dataclass(frozen=True)
class SentEvent:
    """A meter event has no id of its own; its identifier names it."""

    id: str
    duplicate: bool = False


def is_duplicate(exc: stripe.InvalidRequestError) -> bool:
    """Stripe's refusal of an identifier it has seen: `An event already exists with identifier …`."""
    return exc.param == "identifier" and "already exists" in str(exc.user_message or exc)


class MeterEventSink:
    def __init__(self, gateway: StripeGateway) -> None:
        self.gateway = gateway

    def create(
        self,
        event_name: str,
        customer_id: str,
        value: int,
        timestamp: int,
        identifier: str,
        idempotency_key: str,
    ) -> SentEvent:
        params: dict[str, Any] = {
            "event_name": event_name,
            "payload": {CUSTOMER_KEY: customer_id, VALUE_KEY: str(value)},
            "timestamp": timestamp,
            "identifier": identifier,
        }
        try:
            self.gateway.call(
                "billing.meter_events.create",
                self.gateway.client.v1.billing.meter_events.create,
                params=params,
                options={"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as exc:
            if is_duplicate(exc):
                return SentEvent(identifier, duplicate=True)
            raise
        return SentEvent(identifier)

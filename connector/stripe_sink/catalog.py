"""Stripe Products, Prices and Billing Meters: create with an idempotency key, retrieve to verify.

Every call goes through the gateway; keys come from `idempotency`. Metered prices must name a
Billing Meter (`recurring[meter]`, required by current Stripe API versions), so the connector
keeps one meter per Salesforce product, created like any other object.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import stripe

from connector.stripe_sink.gateway import StripeGateway

MANAGED_BY = {"managed_by": "cpq2stripe"}
PRODUCT_ID_KEY = "salesforce_product_id"


def meter_event_name(product_sf_id: str) -> str:
    """The event name usage is reported under for one Salesforce product (stable, ≤100 chars)."""
    return "cpq2stripe_" + re.sub(r"[^0-9A-Za-z_]", "_", product_sf_id)


T = TypeVar("T")


class CatalogSink:
    def __init__(self, gateway: StripeGateway) -> None:
        self.gateway = gateway

    def create_product(self, params: dict[str, Any], idempotency_key: str) -> stripe.Product:
        body = {**params, "metadata": {**params.get("metadata", {}), **MANAGED_BY}}
        return self.gateway.call(
            "products.create",
            self.gateway.client.v1.products.create,
            params=body,
            options={"idempotency_key": idempotency_key},
        )

    def retrieve_product(self, product_id: str) -> stripe.Product | None:
        return self._retrieve("products.retrieve", self.gateway.client.v1.products.retrieve, product_id)

    def create_price(self, params: dict[str, Any], idempotency_key: str) -> stripe.Price:
        body = {**params, "metadata": {**params.get("metadata", {}), **MANAGED_BY}}
        return self.gateway.call(
            "prices.create",
            self.gateway.client.v1.prices.create,
            params=body,
            options={"idempotency_key": idempotency_key},
        )

    def retrieve_price(self, price_id: str) -> stripe.Price | None:
        return self._retrieve("prices.retrieve", self.gateway.client.v1.prices.retrieve, price_id)

    def create_meter(self, product_sf_id: str, display_name: str, idempotency_key: str) -> Any:
        """A sum meter whose events name the Stripe customer id (`stripe_customer_id`) and carry the
        quantity in `value`."""
        params = {
            "display_name": display_name[:250] or product_sf_id,
            "event_name": meter_event_name(product_sf_id),
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
            "value_settings": {"event_payload_key": "value"},
        }
        return self.gateway.call(
            "billing.meters.create",
            self.gateway.client.v1.billing.meters.create,
            params=params,
            options={"idempotency_key": idempotency_key},
        )

    def _retrieve(self, operation: str, fn: Callable[[str], T], object_id: str) -> T | None:
        try:
            obj = self.gateway.call(operation, fn, object_id)
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return None
            raise
        return None if getattr(obj, "deleted", False) else obj

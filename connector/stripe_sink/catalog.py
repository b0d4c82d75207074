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

from connector.stripe_sink import idempotency
from connector.stripe_sink.gateway import StripeGateway

MANAGED_BY = {"managed_by": "cpq2stripe"}
PRODUCT_ID_KEY = "salesforce_product_id"


def meter_event_name(product_sf_id: str) -> str:
    """The event name usage is reported under for one Salesforce product (stable, ≤100 chars)."""
    return "cpq2stripe_" + re.sub(r"[^0-9A-Za-z_]", "_", product_sf_id)


T = TypeVar("T")


def _phase_prices(schedule: Any) -> set[str]:
    """The price ids a schedule's phases bill (ids, or expanded prices)."""
    found: set[str] = set()
    for phase in schedule.to_dict().get("phases") or []:
        for item in phase.get("items") or []:
            price = item.get("price")
            found.add(price if isinstance(price, str) else str((price or {}).get("id")))
    return found


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

    def update_product(self, product_id: str, changes: dict[str, Any], payload_hash: str) -> stripe.Product:
        """Only the fields that changed (name, description, active); keyed by content, so a retry
        of the same update replays."""
        key = idempotency.update_key(self.gateway.account_id(), "product", product_id, payload_hash)
        return self.gateway.call(
            "products.update",
            self.gateway.client.v1.products.update,
            product_id,
            params=changes,
            options={"idempotency_key": key},
        )

    def archive_price(self, price_id: str) -> stripe.Price:
        """Prices are immutable but for `active`: a replaced one is archived (kept for the
        subscriptions still billing it, offered to no new one)."""
        return self._set_price_active(price_id, False)

    def reactivate_price(self, price_id: str) -> stripe.Price:
        return self._set_price_active(price_id, True)

    def _set_price_active(self, price_id: str, active: bool) -> stripe.Price:
        return self.gateway.call(
            "prices.update", self.gateway.client.v1.prices.update, price_id, params={"active": active}
        )

    def price_in_use(self, price_id: str) -> bool:
        """Whether anything still bills this price: a subscription that has not ended (Stripe's
        list filters by `price` and, without `status`, leaves out canceled and expired ones), or
        a phase of a schedule that has not finished (schedules cannot be filtered by price: read
        page by page)."""
        page = self.gateway.call(
            "subscriptions.list",
            self.gateway.client.v1.subscriptions.list,
            params={"price": price_id, "limit": 1},
        )
        if page.data:
            return True
        params: dict[str, Any] = {"limit": 100}
        while True:
            schedules = self.gateway.call(
                "subscription_schedules.list",
                self.gateway.client.v1.subscription_schedules.list,
                params=params,
            )
            for schedule in schedules.data:
                if schedule.status in ("not_started", "active") and price_id in _phase_prices(schedule):
                    return True
            if not schedules.has_more or not schedules.data:
                return False
            params = {"limit": 100, "starting_after": schedules.data[-1].id}

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

"""Stripe Customers: create with an idempotency key, update only what changed, find by Salesforce id."""

from __future__ import annotations

from typing import Any

import stripe

from connector.stripe_sink import idempotency
from connector.stripe_sink.gateway import StripeGateway

SALESFORCE_ID_KEY = "salesforce_account_id"
MANAGED_BY = {"managed_by": "cpq2stripe"}


class CustomerSink:
    def __init__(self, gateway: StripeGateway) -> None:
        self.gateway = gateway

    def create(self, salesforce_id: str, params: dict[str, Any], idempotency_key: str) -> stripe.Customer:
        body = dict(params)
        body["metadata"] = {**params.get("metadata", {}), SALESFORCE_ID_KEY: salesforce_id, **MANAGED_BY}
        return self.gateway.call(
            "customers.create",
            self.gateway.client.v1.customers.create,
            params=body,
            options={"idempotency_key": idempotency_key},
        )

    def update(self, customer_id: str, changes: dict[str, Any], payload_hash: str) -> stripe.Customer:
        key = idempotency.update_key(self.gateway.account_id(), "customer", customer_id, payload_hash)
        return self.gateway.call(
            "customers.update",
            self.gateway.client.v1.customers.update,
            customer_id,
            params=changes,
            options={"idempotency_key": key},
        )

    def retrieve(self, customer_id: str) -> stripe.Customer | None:
        try:
            customer = self.gateway.call(
                "customers.retrieve", self.gateway.client.v1.customers.retrieve, customer_id
            )
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return None
            raise
        return None if getattr(customer, "deleted", False) else customer

    def find_by_salesforce_id(self, salesforce_id: str) -> stripe.Customer | None:
        """Search by the Salesforce id in metadata. Search lags writes by up to a minute, so this
        is only trusted for objects created long ago (a recovery past the idempotency window)."""
        result = self.gateway.call(
            "customers.search",
            self.gateway.client.v1.customers.search,
            params={"query": f"metadata['{SALESFORCE_ID_KEY}']:'{salesforce_id}'", "limit": 10},
        )
        found = [c for c in result.data if not getattr(c, "deleted", False)]
        return min(found, key=lambda c: c.created) if found else None

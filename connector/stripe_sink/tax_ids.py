"""A Stripe Customer's tax ids: list, create with an idempotency key, delete.

Stripe has no update for a tax id (its type and value are fixed), so a changed VAT number is a
delete and a create."""

from __future__ import annotations

from typing import Any

import stripe

from connector.stripe_sink.gateway import StripeGateway


class TaxIdSink:
    def __init__(self, gateway: StripeGateway) -> None:
        self.gateway = gateway

    def list(self, customer_id: str) -> list[stripe.TaxId]:
        """Every tax id of the Customer (Stripe allows a handful, so one page of 100 holds them)."""
        page = self.gateway.call(
            "customers.tax_ids.list",
            self.gateway.client.v1.customers.tax_ids.list,
            customer_id,
            params={"limit": 100},
        )
        return list(page.data)

    def create(self, customer_id: str, tax_id: dict[str, Any], idempotency_key: str) -> stripe.TaxId:
        return self.gateway.call(
            "customers.tax_ids.create",
            self.gateway.client.v1.customers.tax_ids.create,
            customer_id,
            params={"type": tax_id["type"], "value": tax_id["value"]},
            options={"idempotency_key": idempotency_key},
        )

    def delete(self, customer_id: str, tax_id: str) -> None:
        """Deleting is idempotent by nature: one already gone counts as deleted."""
        try:
            self.gateway.call(
                "customers.tax_ids.delete",
                self.gateway.client.v1.customers.tax_ids.delete,
                customer_id,
                tax_id,
            )
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_missing":
                raise

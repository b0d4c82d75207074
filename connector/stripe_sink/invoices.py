"""Stripe invoices and invoice items for Orders of one-time lines.

Creates carry a deterministic idempotency key. To find what an interrupted run created, the
connector lists (a list is consistent right after a write, unlike search): the Customer's
invoices by `metadata.salesforce_order_id`, an invoice's items by
`metadata.salesforce_order_item_id`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import stripe

from connector.stripe_sink.gateway import StripeGateway
from connector.stripe_sink.subscriptions import MANAGED_BY, ORDER_ID_KEY, metadata_of

ORDER_ITEM_ID_KEY = "salesforce_order_item_id"


class InvoiceSink:
    def __init__(self, gateway: StripeGateway) -> None:
        self.gateway = gateway

    def create(self, params: dict[str, Any], idempotency_key: str) -> Any:
        client = self.gateway.client.v1
        body = {**params, "metadata": {**params.get("metadata", {}), **MANAGED_BY}}
        return self.gateway.call(
            "invoices.create",
            client.invoices.create,
            params=body,
            options={"idempotency_key": idempotency_key},
        )

    def add_item(self, params: dict[str, Any], idempotency_key: str) -> Any:
        client = self.gateway.client.v1
        return self.gateway.call(
            "invoice_items.create",
            client.invoice_items.create,
            params=params,
            options={"idempotency_key": idempotency_key},
        )

    def finalize(self, invoice_id: str, idempotency_key: str) -> Any:
        """Finalize the draft and hand it to Stripe's automatic collection (it e-mails a
        send_invoice invoice or charges a charge_automatically one)."""
        client = self.gateway.client.v1
        return self.gateway.call(
            "invoices.finalize_invoice",
            client.invoices.finalize_invoice,
            invoice_id,
            params={"auto_advance": True},
            options={"idempotency_key": idempotency_key},
        )

    def retrieve(self, invoice_id: str) -> Any | None:
        client = self.gateway.client.v1
        try:
            return self.gateway.call("invoices.retrieve", client.invoices.retrieve, invoice_id)
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return None
            raise

    def find_for_order(self, customer_id: str, order_id: str) -> Any | None:
        """The oldest invoice of the Customer made for this Order, if any (drafts included)."""
        client = self.gateway.client.v1
        params = {"customer": customer_id, "limit": 100}
        found = [
            o
            for o in self._pages("invoices.list", client.invoices.list, params)
            if metadata_of(o).get(ORDER_ID_KEY) == order_id
        ]
        return min(found, key=lambda o: o.created) if found else None

    def pending_item(self, customer_id: str, order_id: str, order_item_id: str) -> Any | None:
        """The Customer's invoice item (not yet invoiced) made for this Order's line, if any."""
        client = self.gateway.client.v1
        params = {"customer": customer_id, "pending": True, "limit": 100}
        for item in self._pages("invoice_items.list", client.invoice_items.list, params):
            meta = metadata_of(item)
            if meta.get(ORDER_ID_KEY) == order_id and meta.get(ORDER_ITEM_ID_KEY) == order_item_id:
                return item
        return None

    def items(self, invoice_id: str) -> dict[str, Any]:
        """The invoice's items by the OrderItem id they carry."""
        client = self.gateway.client.v1
        params = {"invoice": invoice_id, "limit": 100}
        out: dict[str, Any] = {}
        for item in self._pages("invoice_items.list", client.invoice_items.list, params):
            out.setdefault(metadata_of(item).get(ORDER_ITEM_ID_KEY, ""), item)
        return out

    def _pages(self, op: str, lister: Callable[..., Any], params: dict[str, Any]) -> Iterator[Any]:
        page: Any = self.gateway.call(op, lister, params=params)
        while True:
            yield from page.data
            if not page.has_more or not page.data:
                return
            page = self.gateway.call(op, lister, params={**params, "starting_after": page.data[-1].id})

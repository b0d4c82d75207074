"""Stripe Subscriptions and Subscription Schedules for Salesforce Orders.

Creates carry a deterministic idempotency key. To find what an interrupted run created, the
connector lists the Customer's subscriptions / schedules (a list is consistent right after a
write, unlike search) and matches `metadata.salesforce_order_id`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import stripe

from connector.stripe_sink import idempotency
from connector.stripe_sink.gateway import StripeGateway

ORDER_ID_KEY = "salesforce_order_id"
MANAGED_BY = {"managed_by": "cpq2stripe"}


def metadata_of(obj: Any) -> dict[str, str]:
    """A Stripe object's metadata as a plain dict (StripeObject has no `.get`)."""
    meta = getattr(obj, "metadata", None) if obj is not None else None
    if meta is None:
        return {}
    return meta.to_dict() if hasattr(meta, "to_dict") else dict(meta)


def _with_managed_by(params: dict[str, Any]) -> dict[str, Any]:
    body = {**params, "metadata": {**params.get("metadata", {}), **MANAGED_BY}}
    if "phases" in body:
        body["phases"] = [
            {**phase, "metadata": {**phase.get("metadata", {}), **MANAGED_BY}} for phase in body["phases"]
        ]
    return body


class SubscriptionSink:
    def __init__(self, gateway: StripeGateway) -> None:
        self.gateway = gateway

    def create(self, params: dict[str, Any], idempotency_key: str, *, schedule: bool) -> Any:
        client = self.gateway.client.v1
        if schedule:
            return self.gateway.call(
                "subscription_schedules.create",
                client.subscription_schedules.create,
                params=_with_managed_by(params),
                options={"idempotency_key": idempotency_key},
            )
        return self.gateway.call(
            "subscriptions.create",
            client.subscriptions.create,
            params=_with_managed_by(params),
            options={"idempotency_key": idempotency_key},
        )

    def retrieve(self, stripe_id: str) -> Any | None:
        """A subscription (`sub_…`) or schedule (`sub_sched_…`), None if Stripe does not know it."""
        client = self.gateway.client.v1
        fn: Callable[..., Any]
        if stripe_id.startswith("sub_sched_"):
            op, fn = "subscription_schedules.retrieve", client.subscription_schedules.retrieve
        else:
            op, fn = "subscriptions.retrieve", client.subscriptions.retrieve
        try:
            return self.gateway.call(op, fn, stripe_id)
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return None
            raise

    def update(self, stripe_id: str, changes: dict[str, Any], payload_hash: str) -> Any:
        """Change mapped fields of a live subscription or schedule (description, metadata)."""
        client = self.gateway.client.v1
        fn: Callable[..., Any]
        if stripe_id.startswith("sub_sched_"):
            op, fn, kind = "subscription_schedules.update", client.subscription_schedules.update, "schedule"
        else:
            op, fn, kind = "subscriptions.update", client.subscriptions.update, "subscription"
        key = idempotency.update_key(self.gateway.account_id(), kind, stripe_id, payload_hash)
        return self.gateway.call(op, fn, stripe_id, params=changes, options={"idempotency_key": key})

    def schedule_from_subscription(self, subscription_id: str, idempotency_key: str) -> Any:
        """Move a subscription onto a schedule (its phases can then record the contract's changes).
        Stripe takes no other parameter with `from_subscription`."""
        client = self.gateway.client.v1
        return self.gateway.call(
            "subscription_schedules.create",
            client.subscription_schedules.create,
            params={"from_subscription": subscription_id},
            options={"idempotency_key": idempotency_key},
        )

    def cancel(self, stripe_id: str, *, prorate: bool) -> Any:
        """End a subscription (`sub_…`) or a schedule and its subscription (`sub_sched_…`) now: a
        termination dated today or earlier. Stripe refuses a second cancel naming the status: done."""
        client = self.gateway.client.v1
        fn: Callable[..., Any]
        if stripe_id.startswith("sub_sched_"):
            op, fn = "subscription_schedules.cancel", client.subscription_schedules.cancel
        else:
            op, fn = "subscriptions.cancel", client.subscriptions.cancel
        try:
            return self.gateway.call(op, fn, stripe_id, params={"prorate": prorate, "invoice_now": prorate})
        except stripe.InvalidRequestError as exc:
            if "canceled" in str(exc.user_message or exc):
                return None
            raise

    def clock_time(self, clock_id: str) -> int:
        """A test clock's frozen time: "now" for everything of a customer on that clock (test mode)."""
        client = self.gateway.client.v1
        clock = self.gateway.call(
            "test_helpers.test_clocks.retrieve", client.test_helpers.test_clocks.retrieve, clock_id
        )
        return int(clock.frozen_time)

    def find_for_order(self, customer_id: str, order_id: str, *, schedule: bool) -> Any | None:
        """The oldest subscription (or schedule) of the Customer made for this Order, if any."""
        client = self.gateway.client.v1
        lister: Callable[..., Any]
        params: dict[str, Any] = {"customer": customer_id, "limit": 100}
        if schedule:
            op, lister = "subscription_schedules.list", client.subscription_schedules.list
        else:
            op, lister = "subscriptions.list", client.subscriptions.list
            params["status"] = "all"
        found: list[Any] = []
        page: Any = self.gateway.call(op, lister, params=params)
        while True:
            found.extend(o for o in page.data if metadata_of(o).get(ORDER_ID_KEY) == order_id)
            if not page.has_more or not page.data:
                break
            page = self.gateway.call(op, lister, params={**params, "starting_after": page.data[-1].id})
        return min(found, key=lambda o: o.created) if found else None

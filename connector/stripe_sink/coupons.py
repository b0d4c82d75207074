"""Stripe coupons for CPQ discounts: created once per content, found again by their custom id.

A coupon's id is derived from what it discounts (`CouponSpec.coupon_id`), so a coupon made by an
earlier run, another Order, or a run whose idempotency key has expired is found by retrieving that
id; one with the same id but other terms (made by hand) is refused, never silently used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import stripe

from connector.errors import RecordError
from connector.stripe_sink.catalog import MANAGED_BY
from connector.stripe_sink.gateway import StripeGateway


class CouponSpec(Protocol):
    """What a coupon is made of (connector.sync.order_rules.discounts.CouponSpec)."""

    def coupon_id(self) -> str: ...
    def name(self) -> str: ...
    def params(self) -> dict[str, Any]: ...
    def matches(self, coupon: Mapping[str, Any]) -> bool: ...


class CouponSink:
    def __init__(self, gateway: StripeGateway) -> None:
        self.gateway = gateway

    def create(self, spec: CouponSpec, idempotency_key: str) -> Any:
        """POST /v1/coupons with the spec's id; a coupon already under that id is checked and used."""
        params = spec.params()
        body = {**params, "metadata": {**params["metadata"], **MANAGED_BY}}
        try:
            return self.gateway.call(
                "coupons.create",
                self.gateway.client.v1.coupons.create,
                params=body,
                options={"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_already_exists":
                raise
        found = self.find(spec)
        if found is None:  # deleted between the two calls: the next run creates it
            raise RecordError("coupon_missing", f"Stripe coupon {spec.coupon_id()} exists but cannot be read")
        return found

    def find(self, spec: CouponSpec) -> Any | None:
        """The coupon under the spec's id, if it discounts exactly what the spec does."""
        try:
            coupon = self.gateway.call(
                "coupons.retrieve", self.gateway.client.v1.coupons.retrieve, spec.coupon_id()
            )
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return None
            raise
        if not spec.matches(coupon.to_dict()):
            raise RecordError(
                "coupon_conflict",
                f"Stripe coupon {spec.coupon_id()} exists with other terms than the Order's discount "
                f"({spec.name()}); the connector never applies a coupon that discounts something else. "
                "Fix: delete or rename that coupon in Stripe, then run the sync again",
            )
        return coupon

"""Restricted keys (`rk_…`): which permission each endpoint needs, as Stripe checks it.

Stripe names a restricted key's permissions `rak_<resource>_read` / `rak_<resource>_write`; a
Dashboard toggle set to Write grants both, so write implies read here too. Prices keep their
legacy slug `plan`. A key without the permission gets 403 with `invalid_request_error` and a
message naming the permission that would let the request through. `GET /v1/account` has no
permission a restricted key can hold: Stripe answers 403 to every restricted key there.
"""

from __future__ import annotations

from collections.abc import Iterable

# The first path segments after /v1/ -> the permission's resource name.
_RESOURCES: dict[str, str] = {
    "customers": "customer",
    "products": "product",
    "prices": "plan",
    "subscriptions": "subscription",
    "subscription_items": "subscription",
    "subscription_schedules": "subscription_schedule",
    "invoices": "invoice",
    "invoiceitems": "invoice_item",
    "coupons": "coupon",
    "payment_methods": "payment_method",
    "setup_intents": "setup_intent",
    "mandates": "mandate",
    "checkout/sessions": "checkout_session",
    "payment_intents": "payment_intent",
    "events": "event",
    "billing/meters": "billing_meter",
    "billing/meter_events": "billing_meter_event",
    "test_helpers/test_clocks": "test_clock",
}
NOT_FOR_RESTRICTED_KEYS = frozenset({"/v1/account"})


def required(method: str, pattern: str) -> str:
    """The permission an endpoint needs (`rak_customer_write`); '' where none can grant it."""
    if pattern in NOT_FOR_RESTRICTED_KEYS:
        return ""
    parts = pattern.removeprefix("/v1/").split("/")
    resource = _RESOURCES.get("/".join(parts[:2])) or _RESOURCES.get(parts[0])
    if resource is None:
        return ""
    access = "read" if method == "GET" else "write"
    return f"rak_{resource}_{access}"


def granted(permission: str, held: Iterable[str]) -> bool:
    """Whether a key holding `held` may use an endpoint needing `permission` (write covers read)."""
    if not permission:
        return False
    held = set(held)
    return permission in held or (
        permission.endswith("_read") and permission.removesuffix("_read") + "_write" in held
    )


def denial_message(masked_key: str, account_id: str, permission: str) -> str:
    """Stripe's wording for a restricted key that lacks what an endpoint needs."""
    head = (
        f"The provided key '{masked_key}' does not have the required permissions for this endpoint "
        f"on account '{account_id}'."
    )
    if not permission:
        return head + (
            " This is a restricted API key, but the required permissions are not available for use by"
            " restricted keys."
        )
    return head + f" Having the '{permission}' permission would allow this request to continue."

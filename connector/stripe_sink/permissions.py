"""The Stripe permissions the connector needs, derived from the calls it makes.

Every Stripe call goes through `StripeGateway.call(operation, …)`; this table names the
restricted-key permission behind each operation. docs/PRODUCTION.md lists `REQUIRED` for the
operator who creates the key, and a test holds the table, the code's calls and the docs together.
Stripe names permissions `rak_<resource>_<read|write>` (Prices keep the legacy `plan`); a
Dashboard toggle set to Write grants read too.
"""

from __future__ import annotations

# operation -> permission; `account.retrieve` needs none a restricted key can hold (the
# connector skips it when CPQ2STRIPE_STRIPE_ACCOUNT_ID is set).
OPERATION_PERMISSIONS: dict[str, str] = {
    "customers.create": "rak_customer_write",
    "customers.update": "rak_customer_write",
    "customers.retrieve": "rak_customer_read",
    "customers.list": "rak_customer_read",
    "customers.search": "rak_customer_read",
    # a Customer's tax ids live under /v1/customers/{id}/tax_ids: the Customers permission
    "customers.tax_ids.list": "rak_customer_read",
    "customers.tax_ids.create": "rak_customer_write",
    "customers.tax_ids.delete": "rak_customer_write",
    "products.create": "rak_product_write",
    "products.retrieve": "rak_product_read",
    "products.update": "rak_product_write",
    "products.list": "rak_product_read",
    "prices.create": "rak_plan_write",
    "prices.retrieve": "rak_plan_read",
    "prices.update": "rak_plan_write",
    "billing.meters.create": "rak_billing_meter_write",
    "billing.meter_events.create": "rak_billing_meter_event_write",
    "coupons.create": "rak_coupon_write",
    "coupons.retrieve": "rak_coupon_read",
    "subscriptions.create": "rak_subscription_write",
    "subscriptions.retrieve": "rak_subscription_read",
    "subscriptions.update": "rak_subscription_write",
    "subscriptions.list": "rak_subscription_read",
    "subscriptions.cancel": "rak_subscription_write",
    "subscription_schedules.create": "rak_subscription_schedule_write",
    "subscription_schedules.retrieve": "rak_subscription_schedule_read",
    "subscription_schedules.update": "rak_subscription_schedule_write",
    "subscription_schedules.list": "rak_subscription_schedule_read",
    "subscription_schedules.cancel": "rak_subscription_schedule_write",
    "invoices.create": "rak_invoice_write",
    "invoices.retrieve": "rak_invoice_read",
    "invoices.list": "rak_invoice_read",
    "invoices.finalize_invoice": "rak_invoice_write",
    "invoice_items.create": "rak_invoice_item_write",
    "invoice_items.list": "rak_invoice_item_read",
    # payment method setup: a Checkout Session in setup mode per request (connector.sync.payment_setup)
    "checkout.sessions.create": "rak_checkout_session_write",
    "checkout.sessions.retrieve": "rak_checkout_session_read",
    "checkout.sessions.list": "rak_checkout_session_read",
    # billing status -> Salesforce: Stripe's events from a cursor (a gap reads the objects)
    "events.list": "rak_event_read",
    # test mode only: a contract change on a customer with a test clock is planned at the clock's time
    "test_helpers.test_clocks.retrieve": "rak_test_clock_read",
}
NO_RESTRICTED_PERMISSION = frozenset({"account.retrieve"})

# Where each permission sits in the Dashboard's restricted-key form.
DASHBOARD_NAMES: dict[str, str] = {
    "customer": "Customers",
    "product": "Products",
    "plan": "Prices",
    "billing_meter": "Billing Meters",
    "billing_meter_event": "Billing Meter Events",
    "coupon": "Coupons",
    "subscription": "Subscriptions",
    "subscription_schedule": "Subscription Schedules",
    "invoice": "Invoices",
    "invoice_item": "Invoice Items",
    "test_clock": "Test clocks",
    "event": "Events",
    "checkout_session": "Checkout Sessions",
}


def _resource(permission: str) -> str:
    return permission.removeprefix("rak_").rsplit("_", 1)[0]


def required() -> list[str]:
    """The fewest permissions that cover every operation: a resource's write where any operation
    writes it (write grants read), otherwise its read."""
    best: dict[str, str] = {}
    for permission in OPERATION_PERMISSIONS.values():
        resource = _resource(permission)
        if permission.endswith("_write") or resource not in best:
            best[resource] = permission
    return sorted(best.values())


def dashboard_rows() -> list[tuple[str, str, str]]:
    """(Dashboard name, Read/Write, permission) for each required permission, for the docs."""
    rows = []
    for permission in required():
        resource = _resource(permission)
        access = "Write" if permission.endswith("_write") else "Read"
        rows.append((DASHBOARD_NAMES[resource], access, permission))
    return rows

"""Invoice custom fields through the mapping alone (invoice_settings.custom_fields): an Order's PO
number on its subscription's invoices, an Account's value on every invoice of its Customer, and
only the changed part sent when the Account changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connector.mapping import load_mappings

from .conftest import MAPPINGS
from .test_orders import ONE_TIME, TODAY, Org, add_months, record, stripe_objects

ALL = ("accounts", "orders", "products")

PO_NUMBER = """
  - target: invoice_settings.custom_fields
    name: PO Number
    source: PoNumber
    transforms: [trim, truncate]
"""
SECTOR = """
  - target: invoice_settings.custom_fields
    name: Sector
    source: Industry
  - target: invoice_settings.footer
    default: Thank you for your business
"""


def mappings_with(tmp_path: Path, *, subscription: str = "", customer: str = "") -> Any:
    """The shipped mappings with entries added to `fields:` (the Order's before `lines:`)."""
    for name, extra in (("subscription.yaml", subscription), ("customer.yaml", customer)):
        text = (MAPPINGS / name).read_text()
        if extra and name == "subscription.yaml":
            text = text.replace("\nlines:\n", f"{extra}\nlines:\n", 1)
        elif extra:  # first in the customer's `fields:` (other sections follow it)
            text = text.replace("\nfields:\n", f"\nfields:{extra}", 1)
        (tmp_path / name).write_text(text)
    return load_mappings(tmp_path)


def invoices_of(sandbox: Any, subscription_id: str) -> list[dict[str, Any]]:
    return [
        i
        for i in stripe_objects(sandbox, "invoice")
        if (i.get("parent") or {}).get("subscription_details", {}).get("subscription") == subscription_id
    ]


def test_an_orders_po_number_shows_on_its_subscriptions_invoices(sandbox, run_sync, tmp_path):
    mappings = mappings_with(tmp_path, subscription=PO_NUMBER)
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), [{"product": "Platform", "price": 49.0}], PoNumber=" PO-4711 ")

    result = run_sync(ALL, mappings=mappings)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    sub_id = record(sandbox, "Order", order_id)["Stripe_Subscription_ID__c"]
    sub = next(s for s in stripe_objects(sandbox, "subscription") if s["id"] == sub_id)
    assert sub["invoice_settings"]["custom_fields"] == [{"name": "PO Number", "value": "PO-4711"}]
    [invoice] = invoices_of(sandbox, sub_id)
    assert invoice["custom_fields"] == [{"name": "PO Number", "value": "PO-4711"}]


def test_a_future_orders_po_number_rides_on_its_schedules_phase(sandbox, run_sync, tmp_path):
    mappings = mappings_with(tmp_path, subscription=PO_NUMBER)
    org = Org(sandbox)
    start = add_months(TODAY, 1)
    order_id, _ = org.order(
        org.account(), [{"product": "Platform", "price": 49.0}], start=start, PoNumber="PO-9"
    )

    result = run_sync(ALL, mappings=mappings)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    [schedule] = stripe_objects(sandbox, "subscription_schedule")
    assert schedule["phases"][0]["invoice_settings"]["custom_fields"] == [
        {"name": "PO Number", "value": "PO-9"}
    ]


def test_an_accounts_custom_field_is_on_its_customers_invoices_and_updated_alone(sandbox, run_sync, tmp_path):
    mappings = mappings_with(tmp_path, customer=SECTOR)
    org = Org(sandbox)
    account = org.account(Industry="Banking")
    order_id, _ = org.order(account, [{"product": "Platform", "price": 49.0}])

    run_sync(ALL, mappings=mappings)

    [customer] = stripe_objects(sandbox, "customer")
    settings = customer["invoice_settings"]
    assert settings["custom_fields"] == [{"name": "Sector", "value": "Banking"}]
    assert settings["footer"] == "Thank you for your business"
    sub_id = record(sandbox, "Order", order_id)["Stripe_Subscription_ID__c"]
    [invoice] = invoices_of(sandbox, sub_id)
    assert invoice["custom_fields"] == [{"name": "Sector", "value": "Banking"}]

    sandbox.sf_admin.patch_record("Account", account, {"Industry": "Energy"})
    before = len(sandbox.stripe_admin.requests())
    run_sync(ALL, mappings=mappings)
    updates = [
        r["params"]
        for r in sandbox.stripe_admin.requests()[before:]
        if r["method"] == "POST" and r["pattern"] == "/v1/customers/{id}"
    ]
    assert updates == [{"invoice_settings": {"custom_fields": {"0": {"name": "Sector", "value": "Energy"}}}}]

    before = len(sandbox.stripe_admin.requests())
    run_sync(ALL, mappings=mappings)
    assert not [r for r in sandbox.stripe_admin.requests()[before:] if r["method"] == "POST"]


def test_a_one_time_orders_po_number_is_on_its_invoice(sandbox, run_sync, tmp_path):
    mappings = mappings_with(tmp_path, subscription=PO_NUMBER)
    org = Org(sandbox)
    order_id, _ = org.order(
        org.account(), [{"product": "Setup", "price": 500.0, "kind": ONE_TIME}], end=None, PoNumber="PO-77"
    )

    result = run_sync(ALL, mappings=mappings)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    [invoice] = [
        i for i in stripe_objects(sandbox, "invoice") if i["metadata"].get("salesforce_order_id") == order_id
    ]
    assert invoice["custom_fields"] == [{"name": "PO Number", "value": "PO-77"}]

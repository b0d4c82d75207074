"""Orders whose lines are all one-time (services, setup fees) become one Stripe invoice: items as
CPQ says, finalized (or left a draft by the mapping), its id and hosted URL written to the Order;
a rerun changes nothing, a later change is reported and never re-billed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from connector.mapping import load_mappings

from .conftest import MAPPINGS, settings_for
from .test_orders import ONE_TIME, Org, record, stripe_objects, stripe_posts

SYNC_ALL = ("accounts", "orders")
SERVICES = [
    {"product": "Onboarding", "price": 1500.0, "kind": ONE_TIME},
    {"product": "Training", "price": 200.0, "unit": 180.0, "quantity": 3, "kind": ONE_TIME},
]


def one_off_invoices(sandbox: Any) -> list[dict[str, Any]]:
    return [i for i in stripe_objects(sandbox, "invoice") if not i.get("parent")]


def test_services_only_order_becomes_one_finalized_invoice(sandbox, run_sync):
    org = Org(sandbox)
    order_id, [onboarding, training] = org.order(org.account(), SERVICES, end=None, Description="Kick-off")

    result = run_sync(SYNC_ALL)

    outcome = result.outcome(order_id)
    assert outcome.status == "created", outcome.message
    [invoice] = one_off_invoices(sandbox)
    assert stripe_objects(sandbox, "subscription") == []
    assert invoice["status"] == "open" and invoice["collection_method"] == "send_invoice"
    assert invoice["due_date"] == invoice["status_transitions"]["finalized_at"] + 30 * 86400  # Net 30
    assert invoice["metadata"]["salesforce_order_id"] == order_id and invoice["description"] == "Kick-off"
    assert invoice["total"] == 150000 + 3 * 18000  # as CPQ says: 1,500.00 + 3 × 180.00
    items = {i["metadata"]["salesforce_order_item_id"]: i for i in stripe_objects(sandbox, "invoiceitem")}
    assert set(items) == {onboarding, training}
    assert (items[training]["quantity"], items[training]["amount"]) == (3, 54000)
    assert all(i["invoice"] == invoice["id"] for i in items.values())
    prices = {p["id"]: p for p in stripe_objects(sandbox, "price")}
    assert all(p["type"] == "one_time" for p in prices.values())

    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Invoice_ID__c"] == invoice["id"]
    assert order["Stripe_Invoice_URL__c"] == invoice["hosted_invoice_url"] and invoice["hosted_invoice_url"]
    assert order["Stripe_Subscription_ID__c"] is None
    assert order["Stripe_Sync_Status__c"] == "Synced"
    assert invoice["id"] in order["Stripe_Sync_Message__c"]
    entry = org.entries[("Onboarding", "USD")]
    assert record(sandbox, "PricebookEntry", entry)["Stripe_Price_ID__c"] in prices  # list price reused
    assert record(sandbox, "OrderItem", training)["Stripe_Price_ID__c"] in prices  # sold below list

    posts = len(stripe_posts(sandbox))
    again = run_sync(SYNC_ALL)
    assert again.outcome(order_id).status == "unchanged", again.outcome(order_id).message
    assert len(stripe_posts(sandbox)) == posts
    assert len(one_off_invoices(sandbox)) == 1


def test_a_changed_invoiced_order_is_reported_never_re_billed(sandbox, run_sync):
    org = Org(sandbox)
    order_id, [onboarding, _] = org.order(org.account(), SERVICES, end=None)
    assert run_sync(SYNC_ALL).outcome(order_id).status == "created"

    sandbox.sf_admin.patch_record("OrderItem", onboarding, {"Quantity": 2})
    result = run_sync(SYNC_ALL)

    outcome = result.outcome(order_id)
    assert outcome.status == "refused" and outcome.code == "changed_after_activation", outcome.message
    assert len(one_off_invoices(sandbox)) == 1 and len(stripe_objects(sandbox, "invoiceitem")) == 2
    assert record(sandbox, "Order", order_id)["Stripe_Invoice_ID__c"] == one_off_invoices(sandbox)[0]["id"]


def test_draft_mode_leaves_the_invoice_a_draft_without_url(sandbox, run_sync, tmp_path: Path):
    mappings = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, mappings)
    sub = mappings / "subscription.yaml"
    sub.write_text(
        sub.read_text().replace(
            "one_time_invoices:\n  finalize: true", "one_time_invoices:\n  finalize: false"
        )
    )
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), SERVICES, end=None)

    result = run_sync(SYNC_ALL, mappings=load_mappings(mappings))

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    [invoice] = one_off_invoices(sandbox)
    assert invoice["status"] == "draft" and invoice["hosted_invoice_url"] is None
    assert invoice["auto_advance"] is False and invoice["total"] == 204000
    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Invoice_ID__c"] == invoice["id"] and order["Stripe_Invoice_URL__c"] is None
    assert "draft" in order["Stripe_Sync_Message__c"]
    assert run_sync(SYNC_ALL, mappings=load_mappings(mappings)).outcome(order_id).status == "unchanged"


def test_mixed_order_is_still_a_subscription_with_its_one_time_items(sandbox, run_sync):
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), [{"product": "Suite", "price": 100.0}, SERVICES[0]])

    result = run_sync(SYNC_ALL)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    [sub] = stripe_objects(sandbox, "subscription")
    assert one_off_invoices(sandbox) == []
    [first] = stripe_objects(sandbox, "invoice")
    assert first["parent"]["subscription_details"]["subscription"] == sub["id"] and first["total"] == 160000
    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Subscription_ID__c"] == sub["id"] and order["Stripe_Invoice_ID__c"] is None


def test_dry_run_shows_the_invoice_it_would_create(sandbox, run_sync):
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), SERVICES, end=None)

    result = run_sync(SYNC_ALL, dry_run=True)

    message = result.outcome(order_id).message
    assert message.startswith("invoice for new customer"), message
    assert "Onboarding 1 × 1500.00" in message and "Training 3 × 180.00" in message
    assert "total USD 2040.00" in message and "due 30 days after finalizing" in message
    assert stripe_posts(sandbox) == []


def test_a_rebuilt_state_store_adopts_the_invoice_named_in_salesforce(sandbox, run_sync, tmp_path: Path):
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), SERVICES, end=None)
    assert run_sync(SYNC_ALL).outcome(order_id).status == "created"
    [invoice] = one_off_invoices(sandbox)

    fresh = settings_for(sandbox, f"sqlite:///{tmp_path / 'rebuilt.db'}")
    result = run_sync(SYNC_ALL, settings=fresh)

    outcome = result.outcome(order_id)
    assert (outcome.action, outcome.stripe_id) == ("adopt", invoice["id"]), outcome.message
    assert [i["id"] for i in one_off_invoices(sandbox)] == [invoice["id"]]
    assert run_sync(SYNC_ALL, settings=fresh).outcome(order_id).status == "unchanged"

"""Orders: the process killed after each step of the multi-step create, then run again, yields one
of each Stripe object, linked in the state store and written back to Salesforce."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from connector.faults import EXIT_CODE as CRASH_EXIT
from connector.state import StateStore

from .test_orders import ONE_TIME, TODAY, Org, cli, record, stripe_objects

POINTS = ["order.after_product", "order.after_price", "order.after_subscription", "order.before_writeback"]


@pytest.mark.parametrize("future", [False, True], ids=["subscription", "schedule"])
@pytest.mark.parametrize("point", POINTS)
def test_killed_mid_create_leaves_exactly_one_of_each(sandbox, store_url, point, future):
    org = Org(sandbox)
    start = TODAY + timedelta(days=5) if future else TODAY
    order_id, [listed, discounted, setup] = org.order(
        org.account(),
        [
            {"product": "Suite", "price": 100.0, "quantity": 2},
            {"product": "Support", "price": 50.0, "unit": 40.0},
            {"product": "Setup", "price": 500.0, "kind": ONE_TIME},
        ],
        start=start,
    )

    crashed = cli(sandbox, store_url, "sync", crash_at=point)
    assert crashed.returncode == CRASH_EXIT, crashed.stdout + crashed.stderr
    finished = cli(sandbox, store_url, "sync")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    again = cli(sandbox, store_url, "sync")
    assert again.returncode == 0, again.stdout + again.stderr

    products = stripe_objects(sandbox, "product")
    prices = stripe_objects(sandbox, "price")
    kind = "subscription_schedule" if future else "subscription"
    subs = stripe_objects(sandbox, kind)
    assert len(products) == 3 and len(prices) == 3 and len(subs) == 1, (products, prices, subs)
    assert Counter(p["metadata"]["salesforce_product_id"] for p in products) == Counter(
        set(org.products.values())
    )
    sub = subs[0]
    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Subscription_ID__c"] == sub["id"] and order["Stripe_Sync_Status__c"] == "Synced"
    for name, product_id in org.products.items():
        stripe_id = record(sandbox, "Product2", product_id)["Stripe_Product_ID__c"]
        assert stripe_id in {p["id"] for p in products}, name
    price_ids = {p["id"] for p in prices}
    assert record(sandbox, "PricebookEntry", org.entries[("Suite", "USD")])["Stripe_Price_ID__c"] in price_ids
    assert record(sandbox, "PricebookEntry", org.entries[("Setup", "USD")])["Stripe_Price_ID__c"] in price_ids
    assert record(sandbox, "OrderItem", discounted)["Stripe_Price_ID__c"] in price_ids
    assert record(sandbox, "OrderItem", listed)["Stripe_Price_ID__c"] is None
    assert record(sandbox, "OrderItem", setup)["Stripe_Price_ID__c"] is None

    with StateStore.open(store_url) as store:
        links = store.links.all()
        for object_type, n in (("product", 3), ("price", 3), ("subscription", 1)):
            mine = [link for link in links if link.object_type == object_type]
            assert len(mine) == n and all(link.status == "linked" for link in mine), mine
        [sub_link] = [link for link in links if link.object_type == "subscription"]
        assert sub_link.sf_id == order_id and sub_link.stripe_id == sub["id"]


INVOICE_POINTS = [
    "order.after_product",
    "order.after_price",
    "invoice.after_create",
    "invoice.after_item",
    "invoice.after_items",
    "invoice.after_finalize",
    "order.before_writeback",
]


@pytest.mark.parametrize("point", INVOICE_POINTS)
def test_killed_mid_invoice_resumes_to_one_complete_invoice(sandbox, store_url, point):
    """A services-only Order killed after each step of its invoice: the rerun finds the draft,
    adds only the items it lacks, finalizes it, and writes it back; nothing is made twice."""
    org = Org(sandbox)
    order_id, items = org.order(
        org.account(),
        [
            {"product": "Onboarding", "price": 1500.0, "kind": ONE_TIME},
            {"product": "Training", "price": 200.0, "quantity": 3, "kind": ONE_TIME},
            {"product": "Travel", "price": 80.0, "unit": 75.0, "kind": ONE_TIME},
        ],
        end=None,
    )

    crashed = cli(sandbox, store_url, "sync", crash_at=point)
    assert crashed.returncode == CRASH_EXIT, crashed.stdout + crashed.stderr
    for _ in range(2):
        finished = cli(sandbox, store_url, "sync")
        assert finished.returncode == 0, finished.stdout + finished.stderr

    invoices = [i for i in stripe_objects(sandbox, "invoice") if not i.get("parent")]
    assert len(invoices) == 1, invoices
    invoice = invoices[0]
    assert invoice["status"] == "open" and invoice["total"] == 150000 + 60000 + 7500
    lines = stripe_objects(sandbox, "invoiceitem")
    assert sorted(i["metadata"]["salesforce_order_item_id"] for i in lines) == sorted(items)
    assert len(stripe_objects(sandbox, "price")) == 3 and len(stripe_objects(sandbox, "product")) == 3
    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Invoice_ID__c"] == invoice["id"] and order["Stripe_Sync_Status__c"] == "Synced"
    assert order["Stripe_Invoice_URL__c"] == invoice["hosted_invoice_url"]
    with StateStore.open(store_url) as store:
        links = store.links.all()
    [billing] = [link for link in links if link.object_type == "subscription"]
    assert billing.status == "linked" and billing.stripe_id == invoice["id"]
    assert sorted(link.sf_id for link in links if link.object_type == "invoice_item") == sorted(items)

"""Behaviours of a real org that the default fake org is kind about, switched on per test through
the fake's org profile: each test failed before the connector handled the behaviour."""

from __future__ import annotations

from .test_orders import SYNC_ALL, Org, record, stripe_objects


def test_without_edit_activated_orders_the_run_stops_with_the_fix_and_a_later_run_writes_back(
    sandbox, run_sync
):
    sandbox.sf_admin.profile(edit_activated_orders=False)
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), [{"product": "Platform", "price": 49.0}])

    first = run_sync(SYNC_ALL)

    fatal = " ".join(r.fatal or "" for r in first.reports)
    assert "Edit Activated Orders" in fatal and "ENTITY_IS_LOCKED" in fatal
    [sub] = stripe_objects(sandbox, "subscription")
    assert record(sandbox, "Order", order_id)["Stripe_Subscription_ID__c"] is None

    sandbox.sf_admin.profile(edit_activated_orders=True)
    second = run_sync(SYNC_ALL)

    assert all(r.fatal is None for r in second.reports)
    assert stripe_objects(sandbox, "subscription") == [sub]  # nothing billed twice
    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Subscription_ID__c"] == sub["id"] and order["Stripe_Sync_Status__c"] == "Synced"

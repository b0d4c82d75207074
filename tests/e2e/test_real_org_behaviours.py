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


def test_a_single_currency_org_bills_in_the_orgs_currency_without_naming_currencyisocode(sandbox, run_sync):
    sandbox.sf_admin.profile(single_currency="EUR")  # no CurrencyIsoCode field on any object
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), [{"product": "Platform", "price": 49.0}], currency="EUR")

    result = run_sync(SYNC_ALL)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    [price] = stripe_objects(sandbox, "price")
    assert (price["currency"], price["unit_amount"]) == ("eur", 4900)
    assert record(sandbox, "Order", order_id)["Stripe_Sync_Status__c"] == "Synced"


def test_an_order_in_an_added_activated_status_is_billed_and_a_draft_one_is_not(sandbox, run_sync):
    org = Org(sandbox)
    account = org.account()
    provisioned, _ = org.order(account, [{"product": "Platform", "price": 49.0}], status="Provisioned")
    draft, _ = org.order(account, [{"product": "Platform", "price": 49.0}], status="Draft")

    result = run_sync(SYNC_ALL)

    assert result.outcome(provisioned).status == "created", result.outcome(provisioned).message
    assert record(sandbox, "Order", provisioned)["StatusCode"] == "Activated"
    assert not [o for r in result.reports for o in r.outcomes if o.sf_id == draft]
    assert len(stripe_objects(sandbox, "subscription")) == 1

"""Deletes (seed 001): a deleted Account or Order never deletes, cancels or changes anything in Stripe;
the link is marked deleted and reported. On the sandbox through the real clients."""

from __future__ import annotations

from typing import Any

from connector.state import StateStore

from .test_orders import SYNC_ALL, Org

KINDS = ("customer", "product", "price", "subscription", "subscription_schedule")


def stripe_state(sandbox: Any) -> dict[str, list[dict[str, Any]]]:
    return {k: sorted(sandbox.stripe_admin.objects(k), key=lambda o: o["id"]) for k in KINDS}


def links(settings: Any) -> dict[str, Any]:
    store = StateStore.open(settings.database_url)
    try:
        return {link.sf_id: link for link in store.links.all()}
    finally:
        store.close()


def logged(settings: Any, sf_id: str) -> list[Any]:
    store = StateStore.open(settings.database_url)
    try:
        return store.runs.list_log(sf_id=sf_id)
    finally:
        store.close()


def test_deleting_a_synced_order_and_account_changes_nothing_in_stripe(sandbox, run_sync, connector_settings):
    org = Org(sandbox)
    keep = org.account(Name="Stays Inc")
    gone = org.account(Name="Goes Away Inc")
    order_id, _ = org.order(gone, [{"product": "Suite", "price": 10.0}])
    other_order, _ = org.order(keep, [{"product": "Suite", "price": 10.0}])
    first = run_sync(SYNC_ALL)
    assert first.outcome(order_id).status == "created" and first.outcome(other_order).status == "created"
    sub_id = links(connector_settings)[order_id].stripe_id
    cus_id = links(connector_settings)[gone].stripe_id
    before = stripe_state(sandbox)
    posts_before = len([r for r in sandbox.stripe_admin.requests() if r["method"] != "GET"])

    sandbox.sf_admin.delete_record("Order", order_id)
    sandbox.sf_admin.delete_record("Account", gone)
    result = run_sync(SYNC_ALL)

    assert stripe_state(sandbox) == before  # nothing deleted, cancelled or changed
    assert len([r for r in sandbox.stripe_admin.requests() if r["method"] != "GET"]) == posts_before
    sub = next(s for s in before["subscription"] if s["id"] == sub_id)
    assert sub["status"] in ("active", "trialing") and not sub.get("canceled_at")
    found = links(connector_settings)
    assert found[order_id].status == "deleted" and found[order_id].stripe_id == sub_id
    assert found[gone].status == "deleted" and found[gone].stripe_id == cus_id
    assert found[keep].status == "linked" and found[other_order].status == "linked"
    reported = {o.sf_id: o for o in result.reports[-1].outcomes}
    assert reported[order_id].action == "delete" and sub_id in reported[order_id].message
    assert reported[gone].action == "delete" and cus_id in reported[gone].message
    assert "Nothing was deleted" in reported[gone].message
    assert logged(connector_settings, gone)[0].action == "delete"
    assert logged(connector_settings, order_id)[0].action == "delete"

    again = run_sync(SYNC_ALL)  # reported once; still nothing in Stripe
    assert again.reports[-1].outcomes == []
    assert stripe_state(sandbox) == before


def test_deleting_an_account_that_never_synced_reports_nothing(sandbox, run_sync):
    org = Org(sandbox)
    never = org.account(Name="Not billed", Billing_Entity__c=False)
    run_sync(SYNC_ALL)
    sandbox.sf_admin.delete_record("Account", never)

    result = run_sync(SYNC_ALL)

    assert result.reports[-1].outcomes == []
    assert stripe_state(sandbox)["customer"] == []


def test_dry_run_reports_deletes_without_marking_them(sandbox, run_sync, connector_settings):
    org = Org(sandbox)
    gone = org.account(Name="Goes Away Inc")
    run_sync(SYNC_ALL)
    sandbox.sf_admin.delete_record("Account", gone)

    dry = run_sync(SYNC_ALL, dry_run=True)

    assert [o.sf_id for o in dry.reports[-1].outcomes] == [gone]
    assert links(connector_settings)[gone].status == "linked"
    assert [o.sf_id for o in run_sync(SYNC_ALL).reports[-1].outcomes] == [gone]

"""Merges after sync (seed 001): the loser's Customer stays, the survivor is never re-pointed, every
refusal is visible; end to end on the sandbox through the real clients."""

from __future__ import annotations

from typing import Any

import stripe

from connector.state import StateStore
from connector.state.models import LogEntry
from connector.status import print_status
from connector.sync.runner import run_retry

from .test_accounts_sync import ACME

ID_FIELD = "Stripe_Customer_ID__c"


def account(sandbox: Any, name: str, **fields: Any) -> str:
    return sandbox.sf_admin.create_record("Account", {**ACME, "Name": name, **fields})


def stripe_state(sandbox: Any) -> dict[str, list[dict[str, Any]]]:
    return {
        kind: sorted(sandbox.stripe_admin.objects(kind), key=lambda o: o["id"])
        for kind in ("customer", "product", "price", "subscription")
    }


def stripe_client(sandbox: Any) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_x", base_addresses={"api": sandbox.stripe_url})


def subscribe(sandbox: Any, customer_id: str) -> str:
    """A subscription made in Stripe for the Customer (what billing looks like after sync)."""
    client = stripe_client(sandbox)
    product = client.v1.products.create(params={"name": "Suite"})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 1000,
            "recurring": {"interval": "month"},
        }
    )
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer_id,
            "items": [{"price": price.id}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
        }
    )
    return sub.id


def row(sandbox: Any, account_id: str) -> dict[str, Any]:
    return sandbox.sf_admin.get_record("Account", account_id)


def log_for(settings: Any, sf_id: str) -> list[LogEntry]:
    store = StateStore.open(settings.database_url)
    try:
        return store.runs.list_log(sf_id=sf_id)
    finally:
        store.close()


def link_of(settings: Any, sf_id: str) -> Any:
    store = StateStore.open(settings.database_url)
    try:
        [link] = [x for x in store.links.all(object_type="customer") if x.sf_id == sf_id]
        return link
    finally:
        store.close()


def status_text(settings: Any, *, failed_only: bool = False) -> str:
    lines: list[str] = []
    print_status(settings, failed_only=failed_only, out=lines.append)
    return "\n".join(lines)


def test_loser_with_a_customer_keeps_it_and_its_subscription(sandbox, run_sync, connector_settings):
    loser = account(sandbox, "Loser Ltd")
    run_sync()
    loser_cus = row(sandbox, loser)[ID_FIELD]
    sub_id = subscribe(sandbox, loser_cus)
    survivor = account(sandbox, "Survivor Ltd")
    sandbox.sf_admin.merge(survivor, [loser])
    before = stripe_state(sandbox)

    result = run_sync()

    merge = result.outcome(loser)
    assert merge.action == "merge" and merge.stripe_id == loser_cus
    assert survivor in merge.message and loser_cus in merge.message
    after = stripe_state(sandbox)
    # The loser's Customer and subscription are exactly as they were; the survivor got its own.
    assert [c for c in after["customer"] if c["id"] == loser_cus] == [
        c for c in before["customer"] if c["id"] == loser_cus
    ]
    assert after["subscription"] == before["subscription"]
    assert [s["id"] for s in after["subscription"]] == [sub_id]
    survivor_cus = row(sandbox, survivor)[ID_FIELD]
    assert survivor_cus and survivor_cus != loser_cus
    assert result.outcome(survivor).status == "created"
    link = link_of(connector_settings, loser)
    assert link.status == "merged_away" and survivor in link.note and link.stripe_id == loser_cus
    assert log_for(connector_settings, loser)[0].action == "merge"
    shown = status_text(connector_settings)
    assert "merged_away" in shown and loser in shown and survivor in shown

    again = run_sync()
    assert all(o.sf_id != loser for o in again.reports[-1].outcomes)  # reported once


def test_survivor_holding_the_losers_customer_is_refused_until_fixed(sandbox, run_sync, connector_settings):
    loser = account(sandbox, "Loser Ltd")
    survivor = account(sandbox, "Survivor Ltd")
    run_sync()
    loser_cus, own_cus = row(sandbox, loser)[ID_FIELD], row(sandbox, survivor)[ID_FIELD]
    # The admin kept the loser's Stripe ID in the merge.
    sandbox.sf_admin.merge(survivor, [loser], keep={ID_FIELD: loser})
    assert row(sandbox, survivor)[ID_FIELD] == loser_cus
    before = stripe_state(sandbox)

    result = run_sync()

    refused = result.outcome(survivor)
    assert refused.status == "refused"
    assert own_cus in refused.message and loser_cus in refused.message and "clear" in refused.message
    assert stripe_state(sandbox) == before  # nothing re-pointed, nothing updated
    # Visible everywhere: the Account's status fields, `status --failed`, the sync log.
    sf = row(sandbox, survivor)
    assert sf["Stripe_Sync_Status__c"] == "Refused"
    assert own_cus in sf["Stripe_Sync_Message__c"]
    assert sf[ID_FIELD] == loser_cus  # the connector does not overwrite the admin's value
    failed = status_text(connector_settings, failed_only=True)
    assert survivor in failed and own_cus in failed
    assert any(e.status == "refused" for e in log_for(connector_settings, survivor))
    assert result.outcome(loser).action == "merge"  # both synced: the merge is reported

    # The fix the message names: put the survivor's own Customer back; `retry` then syncs it.
    sandbox.sf_admin.patch_record("Account", survivor, {ID_FIELD: own_cus})
    lines: list[str] = []
    assert (
        run_retry(connector_settings, _mappings(connector_settings), record_id=survivor, out=lines.append)
        == 0
    )
    sf = row(sandbox, survivor)
    assert sf["Stripe_Sync_Status__c"] == "Synced" and not sf["Stripe_Sync_Message__c"]
    assert survivor not in status_text(connector_settings, failed_only=True)
    assert stripe_state(sandbox) == before


def test_clearing_the_field_also_fixes_the_survivor(sandbox, run_sync, connector_settings):
    loser = account(sandbox, "Loser Ltd")
    survivor = account(sandbox, "Survivor Ltd")
    run_sync()
    own_cus = row(sandbox, survivor)[ID_FIELD]
    sandbox.sf_admin.merge(survivor, [loser], keep={ID_FIELD: loser})
    assert run_sync().outcome(survivor).status == "refused"

    sandbox.sf_admin.patch_record("Account", survivor, {ID_FIELD: None})
    result = run_sync()

    assert result.outcome(survivor).status == "unchanged"
    assert row(sandbox, survivor)[ID_FIELD] == own_cus  # written back
    assert row(sandbox, survivor)["Stripe_Sync_Status__c"] == "Synced"


def test_unsynced_survivor_holding_the_losers_customer_is_refused(sandbox, run_sync, connector_settings):
    loser = account(sandbox, "Loser Ltd")
    run_sync()
    loser_cus = row(sandbox, loser)[ID_FIELD]
    survivor = account(sandbox, "Survivor Ltd")  # created after the sync: no Customer of its own
    sandbox.sf_admin.merge(survivor, [loser], keep={ID_FIELD: loser})
    before = stripe_state(sandbox)

    result = run_sync()

    refused = result.outcome(survivor)
    assert refused.status == "refused"
    assert loser in refused.message and "clear the field" in refused.message
    assert stripe_state(sandbox) == before
    assert row(sandbox, survivor)["Stripe_Sync_Status__c"] == "Refused"
    assert survivor in status_text(connector_settings, failed_only=True)

    # Cleared: the survivor becomes its own new Customer; the loser's stays as it is.
    sandbox.sf_admin.patch_record("Account", survivor, {ID_FIELD: None})
    result = run_sync()
    assert result.outcome(survivor).status == "created"
    assert row(sandbox, survivor)[ID_FIELD] not in (None, loser_cus)
    assert [c for c in stripe_state(sandbox)["customer"] if c["id"] == loser_cus] == [
        c for c in before["customer"] if c["id"] == loser_cus
    ]


def test_both_synced_both_customers_stay_and_the_merge_is_reported(sandbox, run_sync, connector_settings):
    loser = account(sandbox, "Loser Ltd", Phone="+1 555 010 1111")
    survivor = account(sandbox, "Survivor Ltd")
    run_sync()
    loser_cus, own_cus = row(sandbox, loser)[ID_FIELD], row(sandbox, survivor)[ID_FIELD]
    sandbox.sf_admin.merge(survivor, [loser], keep={"Phone": loser})
    posts_before = len([r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"])

    result = run_sync()

    merge = result.outcome(loser)
    assert merge.action == "merge" and own_cus in merge.message and loser_cus in merge.message
    assert result.outcome(survivor).status == "updated"  # the phone it kept from the loser
    customers = {c["id"]: c for c in stripe_state(sandbox)["customer"]}
    assert set(customers) == {loser_cus, own_cus}
    assert customers[own_cus]["metadata"]["salesforce_account_id"] == survivor
    assert customers[loser_cus]["metadata"]["salesforce_account_id"] == loser
    posts = [r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"][posts_before:]
    assert [r["path"] for r in posts] == [f"/v1/customers/{own_cus}"]
    assert row(sandbox, survivor)[ID_FIELD] == own_cus
    assert link_of(connector_settings, loser).status == "merged_away"
    assert "1 merged away" in result.reports[-1].summary_lines()[0]


def test_neither_synced_the_survivor_syncs_normally(sandbox, run_sync, connector_settings):
    loser = account(sandbox, "Loser Ltd")
    survivor = account(sandbox, "Survivor Ltd")
    sandbox.sf_admin.merge(survivor, [loser], keep={"Phone": loser})

    result = run_sync()

    assert result.outcome(survivor).status == "created"
    assert all(o.sf_id != loser for r in result.reports for o in r.outcomes)
    [customer] = stripe_state(sandbox)["customer"]
    assert customer["metadata"]["salesforce_account_id"] == survivor
    assert status_text(connector_settings, failed_only=True).startswith("Needing attention: 0")


def _mappings(settings: Any) -> Any:
    from connector.mapping import load_mappings

    return load_mappings(settings.mappings_dir)


def test_a_losers_synced_order_keeps_billing_its_own_customer(sandbox, run_sync, connector_settings):
    from .test_orders import SYNC_ALL, Org

    org = Org(sandbox)
    loser = org.account(Name="Loser Ltd")
    survivor = org.account(Name="Survivor Ltd")
    order_id, _ = org.order(loser, [{"product": "Suite", "price": 10.0}])
    run_sync(SYNC_ALL)
    loser_cus = row(sandbox, loser)[ID_FIELD]
    [sub] = sandbox.stripe_admin.objects("subscription")
    assert sub["customer"] == loser_cus
    sandbox.sf_admin.merge(survivor, [loser])  # the Order is re-parented to the survivor
    before = stripe_state(sandbox)

    result = run_sync(SYNC_ALL)

    assert stripe_state(sandbox) == before  # the subscription still bills the loser's Customer
    assert result.outcome(loser).action == "merge"
    outcome = result.outcome(order_id)
    assert outcome.status in ("unchanged", "refused"), outcome  # never re-billed

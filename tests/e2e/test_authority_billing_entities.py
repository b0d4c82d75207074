"""Billing entities (seed 001): in a parent/child hierarchy only the Account that passes the mapping's
condition becomes a Customer; an activated Order on the other Account is refused with the reason."""

from __future__ import annotations

from typing import Any

from connector.status import print_status

from .test_orders import SYNC_ALL, Org


def status_text(settings: Any) -> str:
    lines: list[str] = []
    print_status(settings, failed_only=True, out=lines.append)
    return "\n".join(lines)


def test_only_the_billing_entity_syncs_and_the_other_order_is_refused(sandbox, run_sync, connector_settings):
    org = Org(sandbox)
    parent = org.account(Name="Holding AG", Billing_Entity__c=True)
    child = org.account(Name="Subsidiary GmbH", Billing_Entity__c=False, ParentId=parent)
    parent_order, _ = org.order(parent, [{"product": "Suite", "price": 10.0}])
    child_order, _ = org.order(child, [{"product": "Suite", "price": 10.0}])

    result = run_sync(SYNC_ALL)

    customers = [c for c in sandbox.stripe_admin.objects("customer") if not c.get("deleted")]
    assert [c["metadata"]["salesforce_account_id"] for c in customers] == [parent]
    assert result.outcome(parent_order).status == "created"
    refused = result.outcome(child_order)
    assert refused.status == "refused"
    assert child in refused.message and "billing entity" in refused.message
    [sub] = sandbox.stripe_admin.objects("subscription")
    assert sub["customer"] == customers[0]["id"]
    order = sandbox.sf_admin.get_record("Order", child_order)
    assert order["Stripe_Sync_Status__c"] == "Refused" and "billing entity" in order["Stripe_Sync_Message__c"]
    assert not order["Stripe_Subscription_ID__c"]
    assert child_order in status_text(connector_settings)
    child_row = sandbox.sf_admin.get_record("Account", child)
    assert not child_row["Stripe_Customer_ID__c"] and not child_row["Stripe_Sync_Status__c"]

"""Salesforce is written only where the connector owns the field (seed 001, one-way authority).

Every field of every record of a seeded CPQ org is compared before and after full syncs (Accounts and
Orders, twice), a retry of everything that failed and a reconcile: only the write-back fields the
mappings name (Stripe IDs, sync status, message, synced-at) and the system stamps of those writes
changed, only by the integration user, and no record was created or deleted.
"""

from __future__ import annotations

import copy
from typing import Any

import stripe

from connector.mapping import load_mappings
from connector.sandbox.salesforce.org import INTEGRATION_USER_ID
from connector.sync.reconcile import run_reconcile
from connector.sync.runner import run_retry

OBJECTS = ("Account", "Contact", "Product2", "Pricebook2", "PricebookEntry", "Order", "OrderItem", "User")
SYSTEM_STAMPS = {"LastModifiedDate", "SystemModstamp", "LastModifiedById"}


def snapshot(sandbox: Any) -> dict[str, dict[str, dict[str, Any]]]:
    org = sandbox.org
    with org.lock:
        return {
            name: {r["Id"]: copy.deepcopy(dict(r)) for r in org.records(name, include_deleted=True)}
            for name in OBJECTS
        }


def owned_fields(mappings: Any) -> dict[str, set[str]]:
    lines = mappings.subscription.lines
    return {
        "Account": set(mappings.customer.write_back.fields()),
        "Order": set(mappings.subscription.write_back.fields()),
        "OrderItem": {lines.write_back.stripe_price_id},
        "Product2": {lines.product_write_back.stripe_id},
        "PricebookEntry": {lines.price_book_entry_write_back.stripe_id},
    }


def test_only_owned_fields_change_in_salesforce(sandbox, run_sync, connector_settings):
    sandbox.sf_admin.seed(accounts=40, orders=25, seed=7)
    mappings = load_mappings(connector_settings.mappings_dir)
    before = snapshot(sandbox)

    run_sync(("accounts", "orders"))
    # A hand edit in Stripe, so the reconcile below has something to put back.
    linked = next(r for r in sandbox.org.records("Account") if r.get("Stripe_Customer_ID__c"))
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": sandbox.stripe_url})
    client.v1.customers.update(linked["Stripe_Customer_ID__c"], params={"name": "edited in Stripe"})
    run_sync(("accounts", "orders"))
    out: list[str] = []
    run_retry(connector_settings, mappings, record_id=None, out=out.append)
    assert run_reconcile(connector_settings, mappings, dry_run=False, out=out.append) == 0
    assert any("put back" in line for line in out)

    after = snapshot(sandbox)
    owned = owned_fields(mappings)
    changed_by_object: dict[str, int] = {}
    for name in OBJECTS:
        assert set(after[name]) == set(before[name]), f"{name} records were created or deleted"
        allowed = owned.get(name, set())
        for record_id, old in before[name].items():
            new = after[name][record_id]
            changed = {f for f in old.keys() | new.keys() if old.get(f) != new.get(f)}
            assert changed <= allowed | SYSTEM_STAMPS, f"{name} {record_id}: {sorted(changed - allowed)}"
            if changed:
                assert changed & allowed, f"{name} {record_id}: only system stamps changed"
                assert new["LastModifiedById"] == INTEGRATION_USER_ID
                changed_by_object[name] = changed_by_object.get(name, 0) + 1
    # The syncs did write back (the comparison is not vacuous).
    assert changed_by_object.get("Account", 0) >= 20
    assert changed_by_object.get("Order", 0) >= 10

"""Tax end to end on the sandbox: a German Account's VAT number becomes the Customer's eu_vat tax
ID and its Order a subscription with Stripe Tax on; a changed VAT number replaces the tax ID; an
invalid one is refused on the Account with the fix while other Accounts sync; an Order with
automatic tax whose Account has no country is refused naming the field."""

from __future__ import annotations

import dataclasses
from typing import Any

from connector.mapping import load_mappings

from .test_orders import Org, record, stripe_objects

SYNC_ALL = ("accounts", "orders")
GERMAN = {"Name": "Muster GmbH", "BillingCity": "Berlin", "BillingCountry": "Germany",
          "BillingPostalCode": "10115", "VAT_Number__c": "DE 123 456 789"}  # fmt: skip


def _with_automatic_tax(connector_settings: Any):
    mappings = load_mappings(connector_settings.mappings_dir)
    subscription = mappings.subscription.model_copy(update={"automatic_tax": True})
    return dataclasses.replace(mappings, subscription=subscription)


def _tax_ids(sandbox: Any, customer_id: str) -> list[tuple[str, str]]:
    return sorted(
        (t["type"], t["value"]) for t in stripe_objects(sandbox, "tax_id") if t["customer"] == customer_id
    )


def test_a_german_vat_number_becomes_an_eu_vat_tax_id_and_its_order_is_taxed_automatically(
    sandbox, run_sync, connector_settings
):
    org = Org(sandbox)
    account = org.account(**GERMAN)
    order_id, _ = org.order(account, [{"product": "Platform", "price": 49.0}])
    mappings = _with_automatic_tax(connector_settings)
    planned = run_sync(SYNC_ALL, dry_run=True, mappings=mappings)
    assert "; tax IDs DE123456789 (eu_vat)" in planned.outcome(account).message
    assert planned.outcome(order_id).message.endswith("; automatic tax (Stripe Tax)")

    result = run_sync(SYNC_ALL, mappings=mappings)

    assert result.outcome(account).status == "created", result.outcome(account).message
    customer_id = record(sandbox, "Account", account)["Stripe_Customer_ID__c"]
    assert _tax_ids(sandbox, customer_id) == [("eu_vat", "DE123456789")]
    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    [sub] = stripe_objects(sandbox, "subscription")
    assert sub["automatic_tax"]["enabled"] is True

    # the VAT number changes in Salesforce: the dry run says so, the next sync replaces the tax ID
    sandbox.sf_admin.patch_record("Account", account, {"VAT_Number__c": "DE987654321"})
    dry = run_sync(("accounts",), dry_run=True, mappings=mappings)
    assert "tax IDs -> DE987654321 (eu_vat)" in dry.outcome(account).message
    assert _tax_ids(sandbox, customer_id) == [("eu_vat", "DE123456789")]
    changed = run_sync(("accounts",), mappings=mappings)
    assert changed.outcome(account).status == "updated", changed.outcome(account).message
    assert "added tax ID DE987654321 (eu_vat)" in changed.outcome(account).message
    assert _tax_ids(sandbox, customer_id) == [("eu_vat", "DE987654321")]
    creates = [
        r for r in sandbox.stripe_admin.requests() if r["path"].endswith("/tax_ids") and r["method"] == "POST"
    ]
    assert len(creates) == 1 and creates[0]["idempotency_key"]

    # nothing changed: no tax ID call at all; an emptied field removes the tax ID
    again = run_sync(("accounts",), mappings=mappings)
    assert again.outcome(account).status == "unchanged"
    assert not any(k.startswith("customers.tax_ids") for k in again.stripe_calls)
    sandbox.sf_admin.patch_record("Account", account, {"VAT_Number__c": None})
    run_sync(("accounts",), mappings=mappings)
    assert _tax_ids(sandbox, customer_id) == []
    # put back as it was: a new tax ID again, not Stripe's replay of the first create's answer
    sandbox.sf_admin.patch_record("Account", account, {"VAT_Number__c": "DE987654321"})
    run_sync(("accounts",), mappings=mappings)
    assert _tax_ids(sandbox, customer_id) == [("eu_vat", "DE987654321")]


def test_an_invalid_vat_number_is_refused_on_its_account_with_the_fix_and_others_sync(sandbox, run_sync):
    org = Org(sandbox)
    bad = org.account(**{**GERMAN, "Name": "Typo GmbH", "VAT_Number__c": "DE12345"})
    good = org.account(**GERMAN)

    result = run_sync(("accounts",))

    assert result.outcome(good).status == "created"
    assert result.outcome(bad).status == "failed"
    account = record(sandbox, "Account", bad)
    assert account["Stripe_Sync_Status__c"] == "Failed"
    assert account["Stripe_Customer_ID__c"] is None
    message = account["Stripe_Sync_Message__c"]
    assert "VAT_Number__c" in message and "'DE12345' is not a valid DE VAT number" in message
    assert "e.g. DE123456789" in message
    assert [c["name"] for c in stripe_objects(sandbox, "customer")] == ["Muster GmbH"]


def test_an_order_with_automatic_tax_whose_account_has_no_country_is_refused_naming_the_field(
    sandbox, run_sync, connector_settings
):
    org = Org(sandbox)
    nowhere = org.account(Name="Nowhere Ltd", BillingCountry=None, BillingCity=None)
    order_id, _ = org.order(nowhere, [{"product": "Platform", "price": 49.0}])

    result = run_sync(SYNC_ALL, mappings=_with_automatic_tax(connector_settings))

    assert result.outcome(nowhere).status == "created"  # a Customer needs no country
    outcome = result.outcome(order_id)
    assert outcome.status == "refused", outcome.message
    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Sync_Status__c"] == "Refused"
    assert "BillingCountry is empty" in order["Stripe_Sync_Message__c"]
    assert "fill BillingCountry on the Account" in order["Stripe_Sync_Message__c"]
    assert stripe_objects(sandbox, "subscription") == []


def test_an_amended_contract_keeps_automatic_tax_in_every_phase(sandbox, run_sync, connector_settings):
    from connector.sandbox.salesforce.contracts import Line, amend, create_contract
    from connector.sync.order_rules import add_months

    from .test_contract_lifecycle import TODAY

    account = Org(sandbox).account(**GERMAN)
    contract = create_contract(sandbox.org, account, TODAY, [Line("Seats", 4, 10.0)], term_months=12)
    mappings = _with_automatic_tax(connector_settings)
    run_sync(SYNC_ALL, mappings=mappings)
    [sub] = stripe_objects(sandbox, "subscription")
    assert sub["automatic_tax"]["enabled"] is True

    change = amend(sandbox.org, contract, add_months(TODAY, 3), {"Seats": 6})
    result = run_sync(("orders",), mappings=mappings)

    assert result.outcome(change.id).status == "updated", result.outcome(change.id).message
    [schedule] = stripe_objects(sandbox, "subscription_schedule")
    assert len(schedule["phases"]) == 2
    assert [p["automatic_tax"]["enabled"] for p in schedule["phases"]] == [True, True]


def test_a_one_time_order_with_automatic_tax_becomes_a_taxed_invoice(sandbox, run_sync, connector_settings):
    from .test_orders import ONE_TIME

    org = Org(sandbox)
    account = org.account(**GERMAN)
    nowhere = org.account(Name="Nowhere Ltd", BillingCountry=None, BillingCity=None)
    services = [{"product": "Onboarding", "price": 1500.0, "kind": ONE_TIME}]
    taxed, _ = org.order(account, services, end=None)
    refused, _ = org.order(nowhere, services, end=None)
    mappings = _with_automatic_tax(connector_settings)

    planned = run_sync(SYNC_ALL, dry_run=True, mappings=mappings)
    assert planned.outcome(taxed).message.endswith("; automatic tax (Stripe Tax)")
    result = run_sync(SYNC_ALL, mappings=mappings)

    assert result.outcome(taxed).status == "created", result.outcome(taxed).message
    [invoice] = [i for i in stripe_objects(sandbox, "invoice") if i["billing_reason"] == "manual"]
    assert invoice["automatic_tax"]["enabled"] is True
    assert result.outcome(refused).status == "refused"
    assert "fill BillingCountry on the Account" in record(sandbox, "Order", refused)["Stripe_Sync_Message__c"]

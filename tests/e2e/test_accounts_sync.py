"""Accounts -> Stripe Customers, end to end on the sandbox through the real clients."""

from __future__ import annotations

import os
import subprocess
import sys
from math import ceil
from typing import Any

import pytest

from connector.faults import EXIT_CODE as CRASH_EXIT
from connector.state import StateStore

from .conftest import run_cli

ACME = {
    "Name": "Acme Müller GmbH",
    "Phone": "+1 (555) 010-7788",  # a US number on a German Account: written with its country code
    "Description": "Key account, billed yearly",
    "Billing_Email__c": "billing@acme.example",
    "BillingStreet": "Hauptstraße 5",
    "BillingCity": "Berlin",
    "BillingState": "BE",
    "BillingPostalCode": "10115",
    "BillingCountry": "Germany",
    "ShippingStreet": "Lagerweg 9",
    "ShippingCity": "Potsdam",
    "ShippingState": "BB",
    "ShippingPostalCode": "14467",
    "ShippingCountry": "DE",
    "Billing_Entity__c": True,
}


def customers(sandbox: Any) -> list[dict[str, Any]]:
    return [c for c in sandbox.stripe_admin.objects("customer") if not c.get("deleted")]


def stripe_writes(sandbox: Any) -> list[dict[str, Any]]:
    return [r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"]


def salesforce_writes(sandbox: Any) -> int:
    counts = sandbox.sf_admin.counters()["counts"]
    return sum(
        n
        for endpoint, n in counts.items()
        if endpoint.split(" ", 1)[0] in ("PATCH", "POST", "DELETE") and "oauth2" not in endpoint
    )


def test_shipped_mapping_produces_the_seed_table_and_writes_the_id_back(sandbox, run_sync):
    account_id = sandbox.sf_admin.create_record("Account", ACME)

    result = run_sync()

    assert result.outcome(account_id).status == "created"
    [customer] = customers(sandbox)
    assert customer["name"] == "Acme Müller GmbH"
    assert customer["phone"] == "+15550107788"
    assert customer["description"] == "Key account, billed yearly"
    assert customer["email"] == "billing@acme.example"
    assert customer["address"] == {
        "line1": "Hauptstraße 5",
        "line2": None,
        "city": "Berlin",
        "state": "BE",
        "postal_code": "10115",
        "country": "DE",
    }
    assert customer["shipping"]["phone"] == "+15550107788"
    assert customer["shipping"]["address"] == {
        "line1": "Lagerweg 9",
        "line2": None,
        "city": "Potsdam",
        "state": "BB",
        "postal_code": "14467",
        "country": "DE",
    }
    assert customer["metadata"]["salesforce_account_id"] == account_id
    row = sandbox.sf_admin.get_record("Account", account_id)
    assert row["Stripe_Customer_ID__c"] == customer["id"]
    assert row["Stripe_Sync_Status__c"] == "Synced"
    assert row["Stripe_Last_Synced__c"]


def test_second_sync_writes_nothing_anywhere(sandbox, run_sync):
    for i in range(5):
        sandbox.sf_admin.create_record("Account", {**ACME, "Name": f"Account {i}"})
    run_sync()
    sandbox.stripe_admin.reset_counters()
    sandbox.sf_admin.reset_counters()
    stripe_before = len(stripe_writes(sandbox))

    result = run_sync()

    assert result.report.counts()["unchanged"] == 5
    assert len(stripe_writes(sandbox)) == stripe_before
    assert salesforce_writes(sandbox) == 0


def test_changed_phone_sends_one_update_with_only_the_changed_fields(sandbox, run_sync):
    account_id = sandbox.sf_admin.create_record("Account", ACME)
    run_sync()
    before = len(stripe_writes(sandbox))

    sandbox.sf_admin.patch_record("Account", account_id, {"Phone": "+1 555 010 9999"})
    result = run_sync()

    writes = stripe_writes(sandbox)[before:]
    assert len(writes) == 1
    assert result.outcome(account_id).status == "updated"
    sent = writes[0]["params"]
    # Phone feeds `phone` and `shipping.phone`; Stripe replaces `shipping` whole, so it is sent whole.
    assert set(sent) == {"phone", "shipping"}
    assert sent["phone"] == "+15550109999"
    [customer] = customers(sandbox)
    assert customer["phone"] == "+15550109999"


def test_invalid_country_fails_only_that_account_until_fixed(sandbox, run_sync, connector_settings, capsys):
    bad = sandbox.sf_admin.create_record(
        "Account", {**ACME, "Name": "Atlantis Ltd", "BillingCountry": "Atlantis"}
    )
    good = sandbox.sf_admin.create_record("Account", {**ACME, "Name": "Good Co"})

    result = run_sync()

    assert result.outcome(good).status == "created"
    failed = result.outcome(bad)
    assert failed.status == "failed"
    assert "Atlantis" in failed.message and "BillingCountry" in failed.message
    row = sandbox.sf_admin.get_record("Account", bad)
    assert row["Stripe_Sync_Status__c"] == "Failed"
    assert "Atlantis" in row["Stripe_Sync_Message__c"]
    assert row["Stripe_Customer_ID__c"] is None
    from connector.status import print_status

    lines: list[str] = []
    print_status(connector_settings, failed_only=True, out=lines.append)
    assert any(bad in line for line in lines) and any("Atlantis" in line for line in lines)

    sandbox.sf_admin.patch_record("Account", bad, {"BillingCountry": "Ireland"})
    result = run_sync()

    assert result.outcome(bad).status == "created"
    row = sandbox.sf_admin.get_record("Account", bad)
    assert row["Stripe_Sync_Status__c"] == "Synced"
    assert row["Stripe_Sync_Message__c"] is None
    assert len(customers(sandbox)) == 2
    store = StateStore.open(connector_settings.database_url)
    try:
        assert store.failures.all() == []
    finally:
        store.close()


def test_dry_run_changes_nothing_anywhere(sandbox, run_sync, connector_settings):
    sandbox.sf_admin.create_record("Account", ACME)
    sandbox.sf_admin.reset_counters()

    result = run_sync(dry_run=True)

    assert [o.action for o in result.report.outcomes] == ["create"]
    assert customers(sandbox) == []
    assert salesforce_writes(sandbox) == 0
    store = StateStore.open(connector_settings.database_url)
    try:
        assert store.links.all() == [] and store.cursors.get("Account").modstamp is None
    finally:
        store.close()


_cli = run_cli


@pytest.mark.parametrize("point", ["customer.after_intent", "customer.after_create", "customer.after_link"])
def test_killed_mid_create_leaves_exactly_one_customer(sandbox, store_url, point):
    account_id = sandbox.sf_admin.create_record("Account", ACME)

    crashed = _cli(sandbox, store_url, "sync", crash_at=point)
    assert crashed.returncode == CRASH_EXIT, crashed.stderr
    finished = _cli(sandbox, store_url, "sync")
    assert finished.returncode == 0, finished.stdout + finished.stderr

    [customer] = customers(sandbox)
    row = sandbox.sf_admin.get_record("Account", account_id)
    assert row["Stripe_Customer_ID__c"] == customer["id"]
    assert row["Stripe_Sync_Status__c"] == "Synced"
    again = _cli(sandbox, store_url, "sync")
    assert again.returncode == 0
    assert len(customers(sandbox)) == 1


def test_thousands_of_accounts_cost_few_salesforce_calls_and_one_stripe_call_each(sandbox, run_sync):
    n = 2_500
    sandbox.org.load([("Account", {**ACME, "Id": sandbox_id(i), "Name": f"Bulk {i}"}) for i in range(n)])
    sandbox.sf_admin.reset_counters()

    result = run_sync()

    assert result.report.counts()["created"] == n
    calls = result.salesforce_calls
    assert calls["query"] + calls["query_more"] <= 2
    assert calls["composite"] == ceil(n / 200)
    assert calls["auth"] == 1
    per_record = {op: c for op, c in result.stripe_calls.items() if op != "account.retrieve"}
    assert per_record == {"customers.create": n}


def sandbox_id(i: int) -> str:
    from connector.sandbox.salesforce.ids import make_id

    return make_id("001", 900_000 + i)


def test_settings_problems_exit_2_listing_every_problem_without_secrets(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPQ2STRIPE_")}
    env.update(CPQ2STRIPE_STRIPE_SECRET_KEY="pk_live_TOPSECRET", CPQ2STRIPE_SALESFORCE_API_VERSION="latest")
    done = subprocess.run(
        [sys.executable, "-m", "connector", "sync"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "CPQ2STRIPE_SALESFORCE_CONSUMER_KEY is required" in done.stderr
    assert "CPQ2STRIPE_STRIPE_SECRET_KEY" in done.stderr
    assert "CPQ2STRIPE_SALESFORCE_API_VERSION" in done.stderr
    assert "TOPSECRET" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr

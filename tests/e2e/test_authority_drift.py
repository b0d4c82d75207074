"""Drift (seed 001, one-way authority): a mapped field edited in Stripe is put back and reported; an
unmapped field or a metadata key the connector does not own is kept. On the sandbox, real clients."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from connector.mapping import load_mappings, map_record
from connector.state import StateStore
from connector.sync.fieldhash import field_hashes
from connector.sync.reconcile import reconcile, run_reconcile
from connector.sync.runner import open_context

from .test_accounts_sync import ACME
from .test_orders import cli


def stripe_client(sandbox: Any) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_x", base_addresses={"api": sandbox.stripe_url})


def customer(sandbox: Any, customer_id: str) -> dict[str, Any]:
    return next(c for c in sandbox.stripe_admin.objects("customer") if c["id"] == customer_id)


def posts(sandbox: Any) -> list[dict[str, Any]]:
    return [r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"]


def run(settings: Any, *, dry_run: bool = False):
    with open_context(settings, load_mappings(settings.mappings_dir)) as ctx:
        report = reconcile(ctx, dry_run=dry_run)
        return report, dict(ctx.gateway.calls)


@pytest.fixture
def synced(sandbox, run_sync):
    """One synced Account and its Customer id."""
    account_id = sandbox.sf_admin.create_record("Account", ACME)
    run_sync()
    return account_id, sandbox.sf_admin.get_record("Account", account_id)["Stripe_Customer_ID__c"]


def test_mapped_edit_is_put_back_and_unmapped_edits_are_kept(sandbox, synced, connector_settings):
    account_id, cus = synced
    stripe_client(sandbox).v1.customers.update(
        cus,
        params={
            "name": "Renamed in Stripe",  # mapped
            "address": {**customer(sandbox, cus)["address"], "city": "Hamburg", "line2": "Hinterhaus"},
            "metadata": {"crm_note": "set by hand"},  # a key the connector does not own
            "tax_exempt": "reverse",  # unmapped field
        },
    )
    before = len(posts(sandbox))

    report, calls = run(connector_settings)

    found = {(d.stripe_id, d.field): d for d in report.drifts}
    # line2 is mapped (the street's second line): ACME's one-line street has none
    assert set(found) == {(cus, "name"), (cus, "address.city"), (cus, "address.line2")}
    assert found[(cus, "name")].stripe_value == "Renamed in Stripe"
    assert found[(cus, "name")].salesforce_value == ACME["Name"]
    assert found[(cus, "address.city")].stripe_value == "Hamburg"
    assert found[(cus, "address.city")].salesforce_value == "Berlin"
    assert found[(cus, "name")].sf_id == account_id
    assert report.corrected == [cus]
    # One update, with only the drifted fields; the Customers came from the list API.
    [update] = posts(sandbox)[before:]
    assert update["path"] == f"/v1/customers/{cus}" and set(update["params"]) == {"name", "address"}
    assert update["idempotency_key"]
    assert calls.get("customers.list") == 1 and "customers.retrieve" not in calls
    after = customer(sandbox, cus)
    assert after["name"] == ACME["Name"] and after["address"]["city"] == "Berlin"
    assert not after["address"]["line2"]  # put back too (unmapped parts: tests/unit/test_reconcile_drift.py)
    assert after["tax_exempt"] == "reverse"
    assert after["metadata"]["crm_note"] == "set by hand"

    # Put back means in step: a second reconcile finds nothing, and sync sends nothing.
    again, _ = run(connector_settings)
    assert again.drifts == [] and again.corrected == []
    store = StateStore.open(connector_settings.database_url)
    try:
        assert any(
            e.action == "reconcile" and cus == e.stripe_id for e in store.runs.list_log(sf_id=account_id)
        )
    finally:
        store.close()


def test_dry_run_reports_and_writes_nothing(sandbox, synced, connector_settings):
    _account_id, cus = synced
    stripe_client(sandbox).v1.customers.update(cus, params={"phone": "+4930123456"})
    before = len(posts(sandbox))

    report, _ = run(connector_settings, dry_run=True)

    assert [(d.field, d.stripe_value) for d in report.drifts] == [("phone", "+4930123456")]
    assert len(posts(sandbox)) == before
    assert customer(sandbox, cus)["phone"] == "+4930123456"


def test_a_removed_mapped_value_and_the_connectors_own_metadata_are_put_back(
    sandbox, synced, connector_settings
):
    account_id, cus = synced
    stripe_client(sandbox).v1.customers.update(
        cus, params={"description": "", "metadata": {"salesforce_account_id": "001000000000000AAA"}}
    )

    report, _ = run(connector_settings)

    assert {d.field for d in report.drifts} == {"description", "metadata.salesforce_account_id"}
    after = customer(sandbox, cus)
    assert after["description"] == ACME["Description"]
    assert after["metadata"]["salesforce_account_id"] == account_id


def test_link_hashes_follow_what_stripe_holds(sandbox, run_sync, synced, connector_settings):
    account_id, cus = synced
    # Salesforce changes and Stripe drifts before the next sync: reconcile puts Salesforce's value.
    sandbox.sf_admin.patch_record("Account", account_id, {"Description": "New terms"})
    stripe_client(sandbox).v1.customers.update(cus, params={"description": "hand edit"})

    run(connector_settings)

    assert customer(sandbox, cus)["description"] == "New terms"
    store = StateStore.open(connector_settings.database_url)
    try:
        [link] = store.links.all(object_type="customer")
    finally:
        store.close()
    mapping = load_mappings(connector_settings.mappings_dir).customer
    row = sandbox.sf_admin.get_record("Account", account_id)
    assert link.field_hashes == field_hashes(map_record(mapping, row).params)
    before = len(posts(sandbox))
    assert run_sync().outcome(account_id).status == "unchanged"
    assert len(posts(sandbox)) == before


def test_many_customers_are_listed_in_pages(sandbox, run_sync, connector_settings):
    for i in range(130):
        sandbox.sf_admin.create_record("Account", {**ACME, "Name": f"Account {i:03}"})
    run_sync()

    report, calls = run(connector_settings)

    assert report.checked == 130 and report.drifts == []
    assert calls["customers.list"] == 2 and "customers.retrieve" not in calls


def test_cli_reconcile_prints_each_drift(sandbox, synced, connector_settings):
    _account_id, cus = synced
    stripe_client(sandbox).v1.customers.update(cus, params={"email": "someone@else.example"})

    dry = cli(sandbox, connector_settings.database_url, "reconcile", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"{cus}" in dry.stdout and "email" in dry.stdout and "someone@else.example" in dry.stdout
    assert customer(sandbox, cus)["email"] == "someone@else.example"

    done = cli(sandbox, connector_settings.database_url, "reconcile")
    assert done.returncode == 0, done.stderr
    assert "1 put back" in done.stdout
    assert customer(sandbox, cus)["email"] == ACME["Billing_Email__c"]


def test_run_reconcile_with_nothing_linked(sandbox, connector_settings):
    lines: list[str] = []
    assert (
        run_reconcile(
            connector_settings,
            load_mappings(connector_settings.mappings_dir),
            dry_run=False,
            out=lines.append,
        )
        == 0
    )
    assert lines[0].startswith("Reconcile: 0 Customers checked")

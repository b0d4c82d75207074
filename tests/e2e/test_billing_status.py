"""Billing status → Salesforce: Stripe's events since a cursor land on the Orders and Accounts, once.

`cpq2stripe billing-status` is run as an operator runs it (the CLI, against the sandbox)."""

from __future__ import annotations

from typing import Any

from .conftest import run_cli
from .test_orders import SYNC_ALL, Org, record, stripe_objects
from .test_real_org_behaviours import _card_on_file

ORDER_FIELDS = (
    "Stripe_Subscription_Status__c",
    "Stripe_Latest_Invoice_Number__c",
    "Stripe_Latest_Invoice_Status__c",
    "Stripe_Latest_Invoice_Amount_Due__c",
    "Stripe_Latest_Invoice_Amount_Paid__c",
    "Stripe_Latest_Invoice_Due_Date__c",
    "Stripe_Latest_Invoice_URL__c",
)
ACCOUNT_FIELDS = ("Stripe_Delinquent__c", "Stripe_Balance__c")


def _billing_status(sandbox: Any, store_url: str, *args: str) -> str:
    done = run_cli(sandbox, store_url, "billing-status", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _fields(sandbox: Any, sobject: str, record_id: str, names: tuple[str, ...]) -> dict[str, Any]:
    row = record(sandbox, sobject, record_id)
    return {name: row[name] for name in (*names, "SystemModstamp")}


def _paid_and_failing(sandbox: Any, run_sync: Any) -> tuple[str, str, str, str]:
    org = Org(sandbox)
    good = _card_on_file(sandbox, run_sync, org, "tok_visa")
    bad = _card_on_file(sandbox, run_sync, org, "tok_chargeCustomerFail")  # attaches, every charge fails
    paid, _ = org.order(good, [{"product": "Suite", "price": 100.0}])
    failing, _ = org.order(bad, [{"product": "Suite", "price": 250.0}])
    return good, bad, paid, failing


def test_a_paid_and_a_failed_invoice_reach_their_orders_in_one_pass_and_the_failed_account_is_delinquent(
    sandbox, run_sync, store_url
):
    good, bad, paid, failing = _paid_and_failing(sandbox, run_sync)
    first = _billing_status(sandbox, store_url)  # no cursor yet: reads the (few) linked objects
    assert "no cursor yet" in first

    run_sync(SYNC_ALL)  # Stripe charges both first invoices: one paid, one declined
    out = _billing_status(sandbox, store_url)

    assert "instead of events" not in out  # this pass read events, not objects
    subs = {s["metadata"]["salesforce_order_id"]: s for s in stripe_objects(sandbox, "subscription")}
    invoices = {i["id"]: i for i in stripe_objects(sandbox, "invoice")}
    ok_invoice, bad_invoice = (
        invoices[subs[paid]["latest_invoice"]],
        invoices[subs[failing]["latest_invoice"]],
    )
    order = record(sandbox, "Order", paid)
    assert order["Stripe_Subscription_Status__c"] == "active"
    assert order["Stripe_Latest_Invoice_Number__c"] == ok_invoice["number"]
    assert order["Stripe_Latest_Invoice_Status__c"] == "paid"
    assert (order["Stripe_Latest_Invoice_Amount_Due__c"], order["Stripe_Latest_Invoice_Amount_Paid__c"]) == (
        100.0,
        100.0,
    )
    assert order["Stripe_Latest_Invoice_URL__c"] == ok_invoice["hosted_invoice_url"]
    assert order["Stripe_Latest_Invoice_Due_Date__c"] is None  # charged automatically: no due date
    order = record(sandbox, "Order", failing)
    assert order["Stripe_Subscription_Status__c"] == "incomplete"
    assert order["Stripe_Latest_Invoice_Number__c"] == bad_invoice["number"]
    assert order["Stripe_Latest_Invoice_Status__c"] == "open"
    assert (order["Stripe_Latest_Invoice_Amount_Due__c"], order["Stripe_Latest_Invoice_Amount_Paid__c"]) == (
        250.0,
        0.0,
    )
    assert record(sandbox, "Account", bad)["Stripe_Delinquent__c"] is True
    assert record(sandbox, "Account", good)["Stripe_Delinquent__c"] is False
    assert record(sandbox, "Account", good)["Stripe_Balance__c"] == 0.0


def test_replaying_every_event_or_a_quiet_pass_changes_nothing_in_salesforce(sandbox, run_sync, store_url):
    good, bad, paid, failing = _paid_and_failing(sandbox, run_sync)
    _billing_status(sandbox, store_url)
    run_sync(SYNC_ALL)
    _billing_status(sandbox, store_url)
    before = {
        **{i: _fields(sandbox, "Order", i, ORDER_FIELDS) for i in (paid, failing)},
        **{i: _fields(sandbox, "Account", i, ACCOUNT_FIELDS) for i in (good, bad)},
    }

    quiet = _billing_status(sandbox, store_url)
    replay = _billing_status(sandbox, store_url, "--replay")

    assert "0 event(s) applied, 0 record(s) updated" in quiet
    assert "0 record(s) updated" in replay and "0 event(s)" not in replay
    after = {
        **{i: _fields(sandbox, "Order", i, ORDER_FIELDS) for i in (paid, failing)},
        **{i: _fields(sandbox, "Account", i, ACCOUNT_FIELDS) for i in (good, bad)},
    }
    assert after == before  # not even SystemModstamp moved: nothing was written


def test_a_cursor_stripe_no_longer_lists_falls_back_to_reading_the_objects(sandbox, run_sync, store_url):
    from connector.state.store import StateStore
    from connector.sync.billing_events import CURSOR_TOPIC

    _good, bad, _paid, failing = _paid_and_failing(sandbox, run_sync)
    run_sync(SYNC_ALL)
    store = StateStore.open(store_url)
    store.cursors.set_replay_id(CURSOR_TOPIC, "evt_000000000000000000gone@4102444800")

    out = _billing_status(sandbox, store_url)

    assert "no longer lists the cursor's event" in out
    assert record(sandbox, "Order", failing)["Stripe_Latest_Invoice_Status__c"] == "open"
    assert record(sandbox, "Account", bad)["Stripe_Delinquent__c"] is True
    assert "instead of events" not in _billing_status(sandbox, store_url)  # the cursor is good again


def test_a_renewal_whose_payment_fails_on_a_test_clock_shows_past_due_and_marks_the_account_delinquent(
    sandbox, run_sync, store_url
):
    from connector.sync.order_rules import add_months

    from .test_contract_lifecycle import TODAY, advance, clocked_account, stripe_client

    client = stripe_client(sandbox)
    account, clock = clocked_account(sandbox, client, TODAY)
    customer = record(sandbox, "Account", account)["Stripe_Customer_ID__c"]
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    client.v1.payment_methods.attach(pm.id, params={"customer": customer})
    sandbox.sf_admin.patch_record("Account", account, {"Stripe_Payment_Method_ID__c": pm.id})
    order_id, _ = Org(sandbox).order(account, [{"product": "Suite", "price": 80.0}])
    run_sync(SYNC_ALL)
    _billing_status(sandbox, store_url)
    assert record(sandbox, "Order", order_id)["Stripe_Latest_Invoice_Status__c"] == "paid"
    assert record(sandbox, "Account", account)["Stripe_Delinquent__c"] is False
    first_number = record(sandbox, "Order", order_id)["Stripe_Latest_Invoice_Number__c"]

    store = sandbox.servers.stripe.state.store
    with store.lock:
        store.charge_fails.add(pm.id)  # the card starts declining (the bank refuses it from now on)
    advance(client, clock, add_months(TODAY, 1))  # Stripe renews: the renewal's charge is declined
    out = _billing_status(sandbox, store_url)

    assert "instead of events" not in out
    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Subscription_Status__c"] == "past_due"
    assert order["Stripe_Latest_Invoice_Number__c"] not in (None, first_number)
    assert (order["Stripe_Latest_Invoice_Status__c"], order["Stripe_Latest_Invoice_Amount_Paid__c"]) == (
        "open",
        0.0,
    )
    assert order["Stripe_Latest_Invoice_Amount_Due__c"] == 80.0
    assert record(sandbox, "Account", account)["Stripe_Delinquent__c"] is True


def test_the_documented_permissions_are_enough_for_billing_status(sandbox, run_sync, connector_settings):
    from connector.mapping import load_mappings
    from connector.stripe_sink import permissions
    from connector.sync.billing_events import billing_status
    from connector.sync.runner import open_context

    from .test_restricted_key import restricted_settings

    _good, bad, _paid, failing = _paid_and_failing(sandbox, run_sync)
    run_sync(SYNC_ALL)
    account_id = sandbox.servers.stripe.state.store.account_id
    settings = restricted_settings(
        sandbox, connector_settings, permissions.required(), stripe_account_id=account_id
    )

    with open_context(settings, load_mappings(settings.mappings_dir)) as ctx:
        gap = billing_status(ctx)  # the first pass reads the objects
        events = billing_status(ctx)  # later ones list events

    assert (gap.fatal, gap.errors, events.fatal, events.errors) == (None, [], None, [])
    assert record(sandbox, "Account", bad)["Stripe_Delinquent__c"] is True
    assert record(sandbox, "Order", failing)["Stripe_Latest_Invoice_Status__c"] == "open"
    assert not [r for r in sandbox.stripe_admin.requests() if r["status"] == 403]


def test_the_daemons_billing_status_job_writes_the_same_fields(sandbox, run_sync, connector_settings):
    from connector.daemon.jobs import JOBS
    from connector.mapping import load_mappings
    from connector.sync.report import RunReport
    from connector.sync.runner import open_context

    _good, bad, paid, _failing = _paid_and_failing(sandbox, run_sync)
    run_sync(SYNC_ALL)
    report = RunReport("Billing-status")
    with open_context(connector_settings, load_mappings(connector_settings.mappings_dir)) as ctx:
        JOBS["billing-status"](ctx, report)

    assert report.fatal is None
    assert record(sandbox, "Order", paid)["Stripe_Latest_Invoice_Status__c"] == "paid"
    assert record(sandbox, "Account", bad)["Stripe_Delinquent__c"] is True

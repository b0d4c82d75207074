"""Payment method setup from Salesforce (issue 20), on the sandbox with the connector's real clients.

A ticked request on an Account gets a Stripe Checkout link (setup mode) in Salesforce; the customer
acts on the fake's Checkout page through the admin API, as in a browser; the billing-status pass
reads Stripe's events and writes the outcome back; the Account's next Order is charged with it."""

from __future__ import annotations

import dataclasses
from typing import Any

import stripe

from connector.mapping import load_mappings
from connector.sync.billing_events import billing_status
from connector.sync.runner import open_context

from .test_orders import Org, record, stripe_objects

SETUP = ("accounts", "payment_setup")
REQUEST = "Stripe_Payment_Setup_Requested__c"


def _outcome(result: Any, account: str) -> Any:
    return next(
        o
        for r in result.reports
        for o in r.outcomes
        if o.sf_id == account and o.object_type == "payment_setup"
    )


def _pass(connector_settings: Any, mappings: Any = None) -> Any:
    """One billing-status pass (Stripe's events -> Salesforce), as the daemon runs it."""
    with open_context(connector_settings, mappings or load_mappings(connector_settings.mappings_dir)) as ctx:
        report = billing_status(ctx)
    assert not report.errors and report.fatal is None, report.summary_lines()
    return report


def _requested(sandbox: Any, run_sync: Any, connector_settings: Any, org: Org) -> tuple[str, dict[str, Any]]:
    """An Account with a Customer and a cursor on Stripe's events, then a setup requested and synced."""
    account = org.account()
    run_sync(("accounts",))
    _pass(connector_settings)  # the first pass sets the event cursor
    sandbox.sf_admin.patch_record("Account", account, {REQUEST: True})
    result = run_sync(SETUP)
    assert _outcome(result, account).status == "created", _outcome(result, account)
    return account, record(sandbox, "Account", account)


def _session(sandbox: Any, account: str) -> dict[str, Any]:
    [session] = [
        s
        for s in stripe_objects(sandbox, "checkout.session")
        if s["metadata"]["salesforce_account_id"] == account and s["status"] == "open"
    ]
    return session


def _client(sandbox: Any) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_setup", base_addresses={"api": sandbox.stripe_url})


def test_a_requested_account_gets_a_link_and_a_saved_card_charges_its_next_order(
    sandbox, run_sync, connector_settings
):
    org = Org(sandbox)
    account, row = _requested(sandbox, run_sync, connector_settings, org)

    session = _session(sandbox, account)
    [customer] = [c for c in stripe_objects(sandbox, "customer") if c["id"] == session["customer"]]
    assert customer["metadata"]["salesforce_account_id"] == account
    assert (session["mode"], session["payment_method_types"]) == ("setup", ["card", "sepa_debit"])
    assert row["Stripe_Payment_Setup_URL__c"] == session["url"]
    assert row["Stripe_Payment_Setup_Expires__c"].startswith(
        __import__("datetime")
        .datetime.fromtimestamp(session["expires_at"], __import__("datetime").UTC)
        .strftime("%Y-%m-%dT%H:%M:%S")
    )
    assert row["Stripe_Payment_Setup_Status__c"].startswith("Link sent")

    again = run_sync(SETUP)  # still requested, the link still open: nothing new
    assert _outcome(again, account).action == "noop"
    assert len(stripe_objects(sandbox, "checkout.session")) == 1

    sandbox.stripe_admin.complete_checkout(session["id"], type="card", token="tok_visa")
    _pass(connector_settings)

    row = record(sandbox, "Account", account)
    [pm] = [p for p in stripe_objects(sandbox, "payment_method") if p["customer"] == customer["id"]]
    assert row["Stripe_Payment_Method_ID__c"] == pm["id"]
    assert row["Stripe_Payment_Method_Type__c"] == "card"
    assert row["Stripe_Payment_Method_Summary__c"] == "visa •••• 4242"
    assert row[REQUEST] is False and row["Stripe_Payment_Setup_URL__c"] is None
    assert row["Stripe_Payment_Setup_Status__c"].startswith("Saved visa •••• 4242")
    [customer] = [c for c in stripe_objects(sandbox, "customer") if c["id"] == customer["id"]]
    assert customer["invoice_settings"]["default_payment_method"] == pm["id"]

    order_id, _ = org.order(account, [{"product": "Suite", "price": 100.0}])
    run_sync(("accounts", "orders"))
    [sub] = stripe_objects(sandbox, "subscription")
    assert (sub["collection_method"], sub["default_payment_method"]) == ("charge_automatically", pm["id"])
    assert sub["status"] == "active"
    [invoice] = [i for i in stripe_objects(sandbox, "invoice") if i["id"] == sub["latest_invoice"]]
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 10000)
    assert record(sandbox, "Order", order_id)["Stripe_Sync_Status__c"] == "Synced"


def test_a_sepa_mandate_is_saved_with_the_bank_and_never_the_iban(sandbox, run_sync, connector_settings):
    account, _row = _requested(sandbox, run_sync, connector_settings, Org(sandbox))
    session = _session(sandbox, account)
    iban = "DE89370400440532013000"
    sandbox.stripe_admin.complete_checkout(
        session["id"], type="sepa_debit", iban=iban, email="billing@example.com", name="Jenny Rosen"
    )
    _pass(connector_settings)

    row = record(sandbox, "Account", account)
    assert row["Stripe_Payment_Method_Type__c"] == "sepa_debit"
    assert row["Stripe_Payment_Method_Summary__c"] == "SEPA Direct Debit bank 37040044 •••• 3000"
    [seti] = [s for s in stripe_objects(sandbox, "setup_intent") if s["id"] == session["setup_intent"]]
    [mandate] = stripe_objects(sandbox, "mandate")
    assert (seti["mandate"], mandate["status"], mandate["type"]) == (mandate["id"], "active", "multi_use")
    assert mandate["customer_acceptance"]["type"] == "online"
    assert all(iban not in str(v) and iban[-8:] not in str(v) for v in row.values())


def test_a_failed_attempt_is_written_with_stripes_reason_and_the_link_stays_open(
    sandbox, run_sync, connector_settings
):
    account, _row = _requested(sandbox, run_sync, connector_settings, Org(sandbox))
    session = _session(sandbox, account)
    sandbox.stripe_admin.complete_checkout(session["id"], type="card", token="tok_chargeDeclined")
    _pass(connector_settings)

    row = record(sandbox, "Account", account)
    assert "Your card was declined." in row["Stripe_Payment_Setup_Status__c"]
    assert "generic_decline" in row["Stripe_Payment_Setup_Status__c"]
    assert row["Stripe_Payment_Setup_URL__c"] == session["url"] and row[REQUEST] is True
    assert row["Stripe_Payment_Method_ID__c"] is None


def test_an_abandoned_link_expires_and_a_new_request_gets_a_new_one(sandbox, run_sync, connector_settings):
    account, _row = _requested(sandbox, run_sync, connector_settings, Org(sandbox))
    first = _session(sandbox, account)
    sandbox.stripe_admin.abandon_checkout(first["id"])
    _pass(connector_settings)

    row = record(sandbox, "Account", account)
    assert row[REQUEST] is False and row["Stripe_Payment_Setup_URL__c"] is None
    assert row["Stripe_Payment_Setup_Status__c"].startswith("The link expired")
    run_sync(SETUP)  # not requested any more: nothing made
    assert len(stripe_objects(sandbox, "checkout.session")) == 1

    sandbox.sf_admin.patch_record("Account", account, {REQUEST: True})
    result = run_sync(SETUP)
    assert _outcome(result, account).status == "created"
    second = _session(sandbox, account)
    assert second["id"] != first["id"]
    assert record(sandbox, "Account", account)["Stripe_Payment_Setup_URL__c"] == second["url"]
    live = [s for s in stripe_objects(sandbox, "checkout.session") if s["status"] == "open"]
    assert [s["id"] for s in live] == [second["id"]]  # never two live links for one Account


def test_a_link_that_ended_before_the_events_were_read_is_settled_by_the_next_sync(
    sandbox, run_sync, connector_settings
):
    account, _row = _requested(sandbox, run_sync, connector_settings, Org(sandbox))
    session = _session(sandbox, account)
    sandbox.stripe_admin.complete_checkout(session["id"], type="card", token="tok_mastercard")

    result = run_sync(SETUP)  # no billing-status pass in between: the stream reads the session itself

    assert _outcome(result, account).action == "update"
    row = record(sandbox, "Account", account)
    assert row["Stripe_Payment_Method_Summary__c"] == "mastercard •••• 4444" and row[REQUEST] is False
    assert len(stripe_objects(sandbox, "checkout.session")) == 1  # no second link for the same request
    _pass(connector_settings)  # the events, read afterwards, change nothing
    assert record(sandbox, "Account", account)["Stripe_Payment_Method_Summary__c"] == "mastercard •••• 4444"


def test_a_detached_method_sends_the_next_order_to_invoicing_with_the_reason(
    sandbox, run_sync, connector_settings
):
    org = Org(sandbox)
    account, _row = _requested(sandbox, run_sync, connector_settings, org)
    session = _session(sandbox, account)
    sandbox.stripe_admin.complete_checkout(session["id"], type="card", token="tok_visa")
    _pass(connector_settings)
    pm_id = record(sandbox, "Account", account)["Stripe_Payment_Method_ID__c"]

    _client(sandbox).v1.payment_methods.detach(pm_id)  # removed in the Dashboard, say
    _pass(connector_settings)

    row = record(sandbox, "Account", account)
    assert row["Stripe_Payment_Method_ID__c"] is None and row["Stripe_Payment_Method_Summary__c"] is None
    assert "was removed from the Stripe Customer" in row["Stripe_Payment_Setup_Status__c"]
    assert "invoiced" in row["Stripe_Payment_Setup_Status__c"]

    org.order(account, [{"product": "Suite", "price": 100.0}])
    run_sync(("accounts", "orders"))
    [sub] = stripe_objects(sandbox, "subscription")
    assert (sub["collection_method"], sub["default_payment_method"]) == ("send_invoice", None)
    assert sub["days_until_due"] == 30  # the Order's Net 30


def test_a_request_for_an_account_without_a_customer_waits_for_it(sandbox, run_sync):
    account = Org(sandbox).account(Billing_Entity__c=False)  # never becomes a Customer
    sandbox.sf_admin.patch_record("Account", account, {REQUEST: True})

    result = run_sync(SETUP)

    outcome = _outcome(result, account)
    assert (outcome.status, outcome.code, outcome.retryable) == ("failed", "payment_setup_no_customer", True)
    assert stripe_objects(sandbox, "checkout.session") == []


def test_no_secret_or_full_account_number_reaches_logs_state_or_salesforce(sandbox, store_url):
    """The flow as an operator runs it (verbose JSON logs): the IBAN, the SetupIntent's client
    secret and the Stripe key appear in no output line, state-store row or Salesforce value."""
    import json

    from sqlalchemy import MetaData, create_engine, select

    from .conftest import run_cli

    org = Org(sandbox)
    sepa, card = org.account(**{REQUEST: True}), org.account(**{REQUEST: True})
    outputs = [
        run_cli(sandbox, store_url, "--json-logs", "-v", "sync", "--objects", "accounts,payment_setup")
    ]
    outputs.append(run_cli(sandbox, store_url, "--json-logs", "-v", "billing-status"))
    iban = "DE89370400440532013000"
    sandbox.stripe_admin.complete_checkout(
        _session(sandbox, sepa)["id"], type="sepa_debit", iban=iban, email="a@b.example"
    )
    sandbox.stripe_admin.complete_checkout(_session(sandbox, card)["id"], type="card", token="tok_visa")
    outputs.append(run_cli(sandbox, store_url, "--json-logs", "-v", "billing-status"))
    outputs.append(run_cli(sandbox, store_url, "-v", "status"))
    assert all(o.returncode == 0 for o in outputs), [o.stderr[-1000:] for o in outputs]
    assert record(sandbox, "Account", sepa)["Stripe_Payment_Method_Type__c"] == "sepa_debit"  # it happened

    texts = [line for o in outputs for line in (o.stdout + o.stderr).splitlines()]
    engine = create_engine(store_url)
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        texts += [repr(tuple(row)) for table in meta.sorted_tables for row in conn.execute(select(table))]
    engine.dispose()
    texts += [json.dumps(record(sandbox, "Account", a), default=str) for a in (sepa, card)]
    texts.append(json.dumps(sandbox.sf_admin.changes(), default=str))
    secrets = {
        "IBAN": iban,
        "IBAN without its last four": iban[:-4],
        "Stripe key": sandbox.env["CPQ2STRIPE_STRIPE_SECRET_KEY"],
        **{f"client secret {s['id']}": s["client_secret"] for s in stripe_objects(sandbox, "setup_intent")},
    }
    leaks = [(what, text[:200]) for text in texts for what, secret in secrets.items() if secret in text]
    assert leaks == []


def test_switching_existing_subscriptions_is_the_mappings_choice(sandbox, run_sync, connector_settings):
    shipped = load_mappings(connector_settings.mappings_dir)
    assert shipped.customer.payment_setup is not None
    assert shipped.customer.payment_setup.switch_existing_subscriptions is False  # the shipped default
    setup = shipped.customer.payment_setup.model_copy(update={"switch_existing_subscriptions": True})
    switching = dataclasses.replace(
        shipped, customer=shipped.customer.model_copy(update={"payment_setup": setup})
    )
    org = Org(sandbox)
    account, other = org.account(), org.account()
    for who in (account, other):
        org.order(who, [{"product": "Suite", "price": 100.0}])
    run_sync(("accounts", "orders"))
    subs = {s["metadata"]["salesforce_order_id"]: s for s in stripe_objects(sandbox, "subscription")}
    assert {s["collection_method"] for s in subs.values()} == {"send_invoice"}
    _pass(connector_settings, switching)
    sandbox.sf_admin.patch_record("Account", account, {REQUEST: True})
    run_sync(SETUP, mappings=switching)
    sandbox.stripe_admin.complete_checkout(_session(sandbox, account)["id"], type="card", token="tok_visa")

    _pass(connector_settings, switching)

    pm_id = record(sandbox, "Account", account)["Stripe_Payment_Method_ID__c"]
    by_customer = {s["customer"]: s for s in stripe_objects(sandbox, "subscription")}
    [mine] = [
        s for s in by_customer.values() if s["metadata"]["salesforce_order_id"] in _orders(sandbox, account)
    ]
    [theirs] = [s for s in by_customer.values() if s["id"] != mine["id"]]
    assert (mine["collection_method"], mine["default_payment_method"]) == ("charge_automatically", pm_id)
    assert theirs["collection_method"] == "send_invoice"  # another Account's subscription is left alone


def _orders(sandbox: Any, account: str) -> set[str]:
    return {r["Id"] for r in sandbox.sf_admin.query(f"SELECT Id FROM Order WHERE AccountId = '{account}'")}


def test_a_replay_of_old_events_does_not_clear_a_new_request(sandbox, run_sync, connector_settings):
    account, _row = _requested(sandbox, run_sync, connector_settings, Org(sandbox))
    first = _session(sandbox, account)
    sandbox.stripe_admin.complete_checkout(first["id"], type="card", token="tok_visa")
    _pass(connector_settings)
    sandbox.sf_admin.patch_record("Account", account, {REQUEST: True})  # asked again, for a new card

    with open_context(connector_settings, load_mappings(connector_settings.mappings_dir)) as ctx:
        billing_status(ctx, replay=True)  # every event again, the completed session's among them

    assert record(sandbox, "Account", account)[REQUEST] is True
    assert _outcome(run_sync(SETUP), account).status == "created"
    assert _session(sandbox, account)["id"] != first["id"]

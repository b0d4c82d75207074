"""Behaviours of a real org that the default fake org is kind about, switched on per test through
the fake's org profile: each test failed before the connector handled the behaviour."""

from __future__ import annotations

from datetime import date

from connector.sync.order_rules import add_months

from .test_orders import SYNC_ALL, TODAY, Org, record, stripe_objects


def _months_back(n: int) -> date:
    """A start n whole months before today (days 29-31 clamp, so use the 1st of a month)."""
    return add_months(TODAY.replace(day=1), -n)


def _first_invoice(sandbox, sub: dict) -> dict:
    [invoice] = [i for i in stripe_objects(sandbox, "invoice") if i["id"] == sub["latest_invoice"]]
    return invoice


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


def _card_on_file(sandbox, run_sync, org, token):
    """An Account whose Customer has a saved card made from a Stripe test token."""
    import stripe

    account = org.account()
    run_sync(("accounts",))
    [customer] = [
        c for c in stripe_objects(sandbox, "customer") if c["metadata"]["salesforce_account_id"] == account
    ]
    client = stripe.StripeClient("sk_test_cards", base_addresses={"api": sandbox.stripe_url})
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"token": token}})
    client.v1.payment_methods.attach(pm.id, params={"customer": customer["id"]})
    sandbox.sf_admin.patch_record("Account", account, {"Stripe_Payment_Method_ID__c": pm.id})
    return account


def test_a_first_payment_that_fails_is_incomplete_then_active_once_paid(sandbox, run_sync):
    org = Org(sandbox)
    account = _card_on_file(sandbox, run_sync, org, "tok_chargeCustomerFail")  # attaches, charges fail
    order_id, _ = org.order(account, [{"product": "Suite", "price": 100.0}])

    first = run_sync(SYNC_ALL)

    outcome = first.outcome(order_id)
    [sub] = stripe_objects(sandbox, "subscription")
    assert (outcome.status, sub["status"]) == ("incomplete", "incomplete")
    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Sync_Status__c"] == "Incomplete" and order["Stripe_Subscription_ID__c"] == sub["id"]
    assert "first payment failed" in order["Stripe_Sync_Message__c"]

    # The customer pays the open invoice: Stripe makes the subscription active.
    store = sandbox.servers.stripe.state.store
    with store.lock:
        store.get("subscription", sub["id"])["status"] = "active"
    again = run_sync(("orders",))

    assert again.outcome(order_id).status == "updated"
    assert record(sandbox, "Order", order_id)["Stripe_Sync_Status__c"] == "Synced"
    assert len(stripe_objects(sandbox, "subscription")) == 1


def test_an_incomplete_subscription_left_unpaid_expires_and_the_order_says_so(sandbox, run_sync):
    org = Org(sandbox)
    account = _card_on_file(sandbox, run_sync, org, "tok_chargeCustomerFail")
    order_id, _ = org.order(account, [{"product": "Suite", "price": 100.0}])
    run_sync(SYNC_ALL)
    store = sandbox.servers.stripe.state.store
    real_clock = store.clock
    store.clock = lambda: real_clock() + 24 * 3600  # a day later: past Stripe's 23 hours
    try:
        later = run_sync(("orders",))
    finally:
        store.clock = real_clock

    assert later.outcome(order_id).status == "failed"
    order = record(sandbox, "Order", order_id)
    assert (
        order["Stripe_Sync_Status__c"] == "Failed" and "incomplete_expired" in order["Stripe_Sync_Message__c"]
    )
    # Still expired on the next look; never reported Synced.
    assert run_sync(("orders",)).outcome(order_id).status == "failed"
    assert record(sandbox, "Order", order_id)["Stripe_Sync_Status__c"] == "Failed"


def test_a_backdated_order_bills_every_elapsed_period_on_its_first_invoice(sandbox, run_sync):
    """Started on the 1st three months back: that month, the two after it and the current one,
    each a whole month at 2 x 100.00, for each of the two products."""
    org = Org(sandbox)
    start = _months_back(3)
    order_id, _ = org.order(
        org.account(),
        [{"product": "Suite", "price": 100.0, "quantity": 2}, {"product": "Platform", "price": 10.0}],
        start=start,
    )

    result = run_sync(SYNC_ALL)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    [sub] = stripe_objects(sandbox, "subscription")
    invoice = _first_invoice(sandbox, sub)
    assert len(invoice["lines"]["data"]) == 4 * 2
    assert invoice["total"] == 4 * (2 * 10000 + 1000)
    assert record(sandbox, "Order", order_id)["Stripe_Sync_Status__c"] == "Synced"


def test_ticking_skip_elapsed_periods_starts_billing_at_the_next_boundary(sandbox, run_sync):
    org = Org(sandbox)
    start = _months_back(3)
    order_id, _ = org.order(
        org.account(),
        [{"product": "Suite", "price": 100.0}],
        start=start,
        Stripe_Skip_Elapsed_Periods__c=True,
    )

    result = run_sync(SYNC_ALL)

    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    [sub] = stripe_objects(sandbox, "subscription")
    assert _first_invoice(sandbox, sub)["total"] == 0
    assert sub["start_date"] < sub["billing_cycle_anchor"]  # still backdated; billed from the anchor on


def test_an_order_past_stripes_invoice_line_limit_is_refused_with_the_fix_and_nothing_is_created(
    sandbox, run_sync
):
    """Eleven products started 24 months back: 25 periods x 11 = 275 lines, past Stripe's 250."""
    org = Org(sandbox)
    lines = [{"product": f"Seat pack {n}", "price": 10.0, "SBQQ__SubscriptionType__c": "Evergreen"}
             for n in range(11)]  # fmt: skip
    order_id, _ = org.order(org.account(), lines, start=_months_back(24), end=None)

    result = run_sync(SYNC_ALL)

    outcome = result.outcome(order_id)
    assert outcome.status == "refused" and outcome.code == "too_many_elapsed_periods", outcome.message
    assert stripe_objects(sandbox, "subscription") == []
    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Sync_Status__c"] == "Refused"
    assert "275 invoice lines" in order["Stripe_Sync_Message__c"]
    assert "Stripe_Skip_Elapsed_Periods__c" in order["Stripe_Sync_Message__c"]

    sandbox.sf_admin.patch_record("Order", order_id, {"Stripe_Skip_Elapsed_Periods__c": True})
    again = run_sync(SYNC_ALL)
    assert again.outcome(order_id).status == "created", again.outcome(order_id).message
    assert len(stripe_objects(sandbox, "subscription")) == 1

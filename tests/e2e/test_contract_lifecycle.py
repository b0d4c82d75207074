"""A CPQ contract's whole life in one Stripe subscription: amendments, a termination, a renewal.

The Account's Customer lives on a Stripe test clock; the tests sync the contract's Orders, then
advance the clock month by month and assert what Stripe invoices, as CPQ says it should bill.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import stripe

from connector.sandbox.salesforce.contracts import Line, amend, create_contract, renew, terminate
from connector.sync.order_rules import add_months, midnight_utc

TODAY = datetime.now(UTC).date()


def stripe_client(sandbox: Any) -> stripe.StripeClient:
    env = sandbox.env
    return stripe.StripeClient(
        env["CPQ2STRIPE_STRIPE_SECRET_KEY"], base_addresses={"api": env["CPQ2STRIPE_STRIPE_API_BASE"]}
    )


def clocked_account(sandbox: Any, client: stripe.StripeClient, start: date) -> tuple[str, str]:
    """A billing-entity Account whose Customer is on a test clock frozen at `start`'s midnight."""
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": midnight_utc(start)})
    customer = client.v1.customers.create(params={"name": "Initech", "test_clock": clock.id})
    account = sandbox.sf_admin.create_record(
        "Account",
        {
            "Name": "Initech",
            "Billing_Email__c": "ap@initech.example",
            "BillingCountry": "US",
            "Billing_Entity__c": True,
            "Stripe_Customer_ID__c": customer.id,
        },
    )
    return account, clock.id


def advance(client: stripe.StripeClient, clock_id: str, to: date) -> None:
    client.v1.test_helpers.test_clocks.advance(clock_id, params={"frozen_time": midnight_utc(to)})
    for _ in range(200):
        if client.v1.test_helpers.test_clocks.retrieve(clock_id).status == "ready":
            return
        time.sleep(0.02)
    raise AssertionError("the test clock did not finish advancing")


def billed_by_month(client: stripe.StripeClient, customer: str, start: date, months: int) -> list[int]:
    """Each month's invoiced total (cents) for the contract's subscription, from the start."""
    invoices = client.v1.invoices.list(params={"customer": customer, "limit": 100}).data
    totals = [0] * months
    for invoice in invoices:
        for line in invoice.to_dict()["lines"]["data"]:
            day = datetime.fromtimestamp(line["period"]["start"], UTC).date()
            index = (day.year - start.year) * 12 + day.month - start.month
            if 0 <= index < months:
                totals[index] += line["amount"]
    return totals


def test_a_termed_contract_is_billed_month_by_month_as_cpq_says(sandbox, run_sync) -> None:
    """10 seats and support; 5 more seats from month four; support terminated from month nine; a
    renewal for a second year at a new seat price: one subscription bills it all."""
    client = stripe_client(sandbox)
    start = TODAY
    account, clock = clocked_account(sandbox, client, start)
    org = sandbox.org
    contract = create_contract(
        org, account, start, [Line("Seats", 10, 10.0), Line("Support", 1, 50.0)], term_months=12
    )
    amend(org, contract, add_months(start, 3), {"Seats": 5})
    amend(org, contract, add_months(start, 8), {"Support": -1})
    renew(org, contract, prices={"Seats": 12.0})

    result = run_sync(("accounts", "orders"))
    statuses = {o.sf_id: (o.status, o.message) for r in result.reports for o in r.outcomes}
    orders = [o.id for o in contract.orders] + [o.id for o in contract.renewals[0].orders]
    assert all(statuses[o][0] in ("created", "updated") for o in orders), statuses

    subs = [s for s in sandbox.stripe_admin.objects("subscription") if s["status"] != "canceled"]
    assert len(subs) == 1, "one subscription for the contract's whole life"
    customer = subs[0]["customer"]
    # every Order of the contract names it in Salesforce
    ids = {sandbox.sf_admin.get_record("Order", o)["Stripe_Subscription_ID__c"] for o in orders}
    assert ids == {subs[0]["id"]}

    for month in range(1, 25):
        advance(client, clock, add_months(start, month))
    billed = billed_by_month(client, customer, start, 24)
    seats_and_support = [10 * 1000 + 5000] * 3 + [15 * 1000 + 5000] * 5 + [15 * 1000] * 4
    renewed = [15 * 1200] * 12
    assert billed == seats_and_support + renewed


def test_an_evergreen_contract_is_cancelled_by_a_zero_quantity_amendment(sandbox, run_sync) -> None:
    client = stripe_client(sandbox)
    start = TODAY
    account, clock = clocked_account(sandbox, client, start)
    contract = create_contract(sandbox.org, account, start, [Line("Seats", 4, 10.0)], term_months=None)
    run_sync(("accounts", "orders"))
    stop = terminate(sandbox.org, contract, add_months(start, 2))
    result = run_sync(("orders",))
    assert result.outcome(stop.id).status == "updated"
    assert "Termination applied" in result.outcome(stop.id).message
    for month in range(1, 6):
        advance(client, clock, add_months(start, month))
    [sub] = sandbox.stripe_admin.objects("subscription")
    assert sub["status"] == "canceled"
    assert billed_by_month(client, sub["customer"], start, 5) == [4000, 4000, 0, 0, 0]


def catch_ups(sandbox: Any) -> list[dict[str, Any]]:
    """The invoice items the connector made for changes dated before they reached Stripe."""
    return [
        i for i in sandbox.stripe_admin.objects("invoiceitem") if i["metadata"].get("cpq2stripe_catch_up")
    ]


def test_a_backdated_amendment_is_billed_from_its_date(sandbox, run_sync) -> None:
    """Dated five days before Stripe's now, inside the period being billed: the new quantity starts
    now in Stripe (it never starts a phase in the past), prorated over what is left of the period,
    and the five days before are billed as a catch-up item: month two bills 5 more seats from the
    amendment's date, as CPQ says."""
    client = stripe_client(sandbox)
    start = TODAY
    account, clock = clocked_account(sandbox, client, start)
    contract = create_contract(sandbox.org, account, start, [Line("Seats", 10, 10.0)], term_months=12)
    run_sync(("accounts", "orders"))
    period_start, period_end = add_months(start, 1), add_months(start, 2)
    dated, stripe_now = period_start + timedelta(days=5), period_start + timedelta(days=10)
    advance(client, clock, stripe_now)
    late = amend(sandbox.org, contract, dated, {"Seats": 5})
    result = run_sync(("orders",))
    outcome = result.outcome(late.id)
    assert outcome.status == "updated", outcome.message
    assert f"dated {dated}, in Stripe from {stripe_now}" in outcome.message
    [item] = catch_ups(sandbox)
    assert item["period"] == {"start": midnight_utc(dated), "end": midnight_utc(stripe_now)}
    assert item["amount"] == round(5000 * 5 / (period_end - period_start).days)

    for month in range(2, 12):
        advance(client, clock, add_months(start, month))
    [sub] = [s for s in sandbox.stripe_admin.objects("subscription")]
    billed = billed_by_month(client, sub["customer"], start, 12)
    from_dated = (period_end - dated).days / (period_end - period_start).days
    assert billed[0] == 10000
    assert abs(billed[1] - (10000 + 5000 * from_dated)) <= 1  # 5 more seats from the amendment's date
    assert billed[2:] == [15000] * 10
    # run again: the catch-up is made once
    run_sync(("orders",))
    assert len(catch_ups(sandbox)) == 1


def test_amendments_dated_before_the_billed_period_are_billed_from_their_dates(sandbox, run_sync) -> None:
    """A first load: the contract started three months ago and was amended twice since, before any
    of it reached Stripe. Stripe bills the elapsed months at the first Order's quantities; the
    amendments start now, and what they owed since their dates is billed on the next invoice."""
    client = stripe_client(sandbox)
    start = add_months(TODAY, -3)
    account, _clock = clocked_account(sandbox, client, TODAY)
    contract = create_contract(sandbox.org, account, start, [Line("Seats", 10, 10.0)], term_months=12)
    up = amend(sandbox.org, contract, add_months(start, 1), {"Seats": 4})
    down = amend(sandbox.org, contract, add_months(start, 2) + timedelta(days=10), {"Seats": -2})
    result = run_sync(("accounts", "orders"))
    for order in (up, down):
        assert result.outcome(order.id).status == "updated", result.outcome(order.id).message
    owed = {
        i["metadata"]["salesforce_order_id"]: i["amount"] for i in sandbox.stripe_admin.objects("invoiceitem")
    }
    # +4 seats for the two whole months since the first amendment (this month's part too, to today)
    month3 = (add_months(start, 3) - add_months(start, 2)).days
    this_month = (TODAY - add_months(start, 3)).days / (add_months(start, 4) - add_months(start, 3)).days
    assert owed[up.id] == round(4000 * (2 + this_month))
    # -2 seats from the 10th day of month three
    assert owed[down.id] == -round(2000 * ((month3 - 10) / month3 + this_month))


FLAW_CODES = {
    "not_coterminous": {"not_coterminous"},
    "currency_change": {"currency_change"},
    "interval_change": {"interval_change"},
    "overlapping_renewal": {"renewal_overlap"},
    "unknown_revised_line": {"unknown_revised_line"},
    "original_not_activated": {"no_first_order"},
}


def test_seeded_contract_histories_bill_and_each_flawed_one_is_refused_with_its_reason(
    sandbox, run_sync
) -> None:
    """Generated histories (amendments up and down, new products, price changes, renewals,
    terminations, evergreen cancellations), all in the future so none is refused for lying in the
    past: every Order of a sound contract is applied; each flaw is refused with its own reason,
    and nothing of the flawed Order reaches Stripe."""
    from connector.sandbox.salesforce.seed import seed_contracts

    histories = seed_contracts(sandbox.org, 14, seed=11, today=TODAY + timedelta(days=600), flawed_share=0.45)
    result = run_sync(("accounts", "orders"))
    outcomes = {o.sf_id: o for r in result.reports for o in r.outcomes}
    seen_flaws = set()
    for history in histories:
        chain = [history, *history.renewals]
        orders = [o for h in chain for o in h.orders if o.activated]
        if not history.flaws:
            assert all(outcomes[o.id].status in ("created", "updated") for o in orders), [
                (outcomes[o.id].code, outcomes[o.id].message) for o in orders
            ]
            continue
        for order in orders:
            if order.flaws:
                seen_flaws |= order.flaws
                codes = set().union(*(FLAW_CODES[f] for f in order.flaws))
                assert outcomes[order.id].status == "refused"
                assert outcomes[order.id].code in codes, (order.flaws, outcomes[order.id].message)
    assert seen_flaws == set(FLAW_CODES) - (
        {"currency_change"} if sandbox.sf_admin.profile()["single_currency"] else set()
    )


def test_a_dry_run_shows_the_contracts_phases_before_and_after_and_changes_nothing(sandbox, run_sync) -> None:
    start = TODAY
    account = sandbox.sf_admin.create_record(
        "Account", {"Name": "Hooli", "Billing_Email__c": "ap@hooli.example", "Billing_Entity__c": True}
    )
    contract = create_contract(sandbox.org, account, start, [Line("Seats", 10, 10.0)], term_months=12)
    run_sync(("accounts", "orders"))
    more = amend(sandbox.org, contract, add_months(start, 2), {"Seats": 5})
    posts = len([r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"])
    preview = run_sync(("orders",), dry_run=True).outcome(more.id)
    assert preview.status == "planned"
    seats = "Seats"
    end, amended = add_months(start, 12), add_months(start, 2)
    assert f"before [{start} to {end}: {seats} × 10 at 10.00]" in preview.message
    assert (
        f"after [{start} to {amended}: {seats} × 10 at 10.00; {amended} to {end}: {seats} × 15 at 10.00]"
        in preview.message
    )
    assert len([r for r in sandbox.stripe_admin.requests() if r["method"] == "POST"]) == posts
    assert run_sync(("orders",)).outcome(more.id).status == "updated"


def test_a_termination_dated_today_cancels_the_subscription_now(sandbox, run_sync) -> None:
    client = stripe_client(sandbox)
    start = add_months(TODAY, -1)
    account, clock = clocked_account(sandbox, client, start)
    contract = create_contract(sandbox.org, account, start, [Line("Seats", 3, 10.0)], term_months=12)
    run_sync(("accounts", "orders"))
    advance(client, clock, TODAY)
    stop = terminate(sandbox.org, contract, TODAY)
    outcome = run_sync(("orders",)).outcome(stop.id)
    assert outcome.status == "updated" and "the subscription ends now" in outcome.message
    [sub] = sandbox.stripe_admin.objects("subscription")
    assert sub["status"] == "canceled"
    assert sandbox.sf_admin.get_record("Order", stop.id)["Stripe_Subscription_ID__c"] == sub["id"]

"""A mapped trial end: the subscription trials in Stripe until that day, then bills as CPQ says."""

from __future__ import annotations

from datetime import timedelta

from connector.sandbox.salesforce.contracts import Line, amend, create_contract
from connector.sync.order_rules import add_months, midnight_utc
from tests.e2e.test_contract_lifecycle import TODAY, advance, clocked_account, stripe_client


def test_an_order_with_a_trial_bills_from_the_trial_end(sandbox, run_sync) -> None:
    client = stripe_client(sandbox)
    start = TODAY
    trial_end = start + timedelta(days=14)
    account, clock = clocked_account(sandbox, client, start)
    contract = create_contract(
        sandbox.org, account, start, [Line("Seats", 10, 10.0)], term_months=12,
        Stripe_Trial_End_Date__c=trial_end.isoformat(),
    )  # fmt: skip
    order = contract.orders[0].id

    preview = run_sync(("accounts", "orders"), dry_run=True).outcome(order)
    assert f"trial until {trial_end.isoformat()}" in preview.message

    assert run_sync(("accounts", "orders")).outcome(order).status == "created"
    [sub] = sandbox.stripe_admin.objects("subscription")
    assert sub["status"] == "trialing" and sub["trial_end"] == midnight_utc(trial_end)
    assert sandbox.sf_admin.get_record("Order", order)["Stripe_Subscription_ID__c"] == sub["id"]

    for month in range(1, 4):
        advance(client, clock, add_months(trial_end, month) - timedelta(days=1))
    invoices = client.v1.invoices.list(params={"customer": sub["customer"]}).data
    charged = sorted(
        (line["period"]["start"], line["amount"])
        for invoice in invoices
        for line in invoice.to_dict()["lines"]["data"]
        if line["amount"]
    )
    # Nothing for the trial; then 10 seats x 10.00 a month, each period starting on the trial's calendar.
    assert charged == [(midnight_utc(add_months(trial_end, m)), 10_000) for m in range(3)]
    first = min(invoices, key=lambda invoice: invoice.created)
    assert first.created == midnight_utc(start) and first.total == 0, "the trial's own invoice is free"


def test_a_trial_that_does_not_end_after_the_start_is_refused_on_the_order(sandbox, run_sync) -> None:
    account = sandbox.sf_admin.create_record(
        "Account", {"Name": "Hooli", "Billing_Email__c": "ap@hooli.example", "Billing_Entity__c": True}
    )
    contract = create_contract(
        sandbox.org, account, TODAY, [Line("Seats", 3, 10.0)], term_months=12,
        Stripe_Trial_End_Date__c=(TODAY - timedelta(days=1)).isoformat(),
    )  # fmt: skip
    order = contract.orders[0].id
    outcome = run_sync(("accounts", "orders")).outcome(order)
    assert outcome.status == "refused"
    record = sandbox.sf_admin.get_record("Order", order)
    assert record["Stripe_Sync_Status__c"] == "Refused"
    assert "Stripe_Trial_End_Date__c" in record["Stripe_Sync_Message__c"]
    assert "not after the Order starts" in record["Stripe_Sync_Message__c"]
    assert not sandbox.stripe_admin.objects("subscription")


def test_an_amendment_keeps_the_trial_and_one_dated_inside_it_is_refused(sandbox, run_sync) -> None:
    client = stripe_client(sandbox)
    trial_end = TODAY + timedelta(days=14)
    contracts = []
    for _ in range(2):
        account, _clock = clocked_account(sandbox, client, TODAY)
        contracts.append(
            create_contract(
                sandbox.org,
                account,
                TODAY,
                [Line("Seats", 10, 10.0)],
                term_months=12,
                Stripe_Trial_End_Date__c=trial_end.isoformat(),
            )
        )
    later = amend(sandbox.org, contracts[0], add_months(TODAY, 3), {"Seats": 5})
    inside = amend(sandbox.org, contracts[1], TODAY + timedelta(days=7), {"Seats": 5})

    result = run_sync(("accounts", "orders"))
    assert result.outcome(later.id).status == "updated", result.outcome(later.id).message
    refused = result.outcome(inside.id)
    assert refused.status == "refused" and refused.code == "during_trial"
    assert f"during the contract's free trial (until {trial_end.isoformat()})" in refused.message

    [schedule] = sandbox.stripe_admin.objects("subscription_schedule")
    assert schedule["phases"][0]["trial_end"] == midnight_utc(trial_end)
    subs = {s["id"]: s for s in sandbox.stripe_admin.objects("subscription")}
    amended = subs[schedule["subscription"]]
    assert amended["status"] == "trialing" and amended["trial_end"] == midnight_utc(trial_end)
    assert [p["items"][0]["quantity"] for p in schedule["phases"]] == [10, 15]

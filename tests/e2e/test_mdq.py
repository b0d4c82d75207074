"""MDQ (a ramp deal): a contract's first Order sells seats in three yearly segments (10, 20, 30),
one Order Product each. The connector makes one subscription schedule with a phase per segment;
the Customer lives on a Stripe test clock, advanced year by year, and Stripe bills each year's
segment. An amendment of the contract is refused (changed in Stripe by hand)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connector.faults import EXIT_CODE as CRASH_EXIT
from connector.sandbox.salesforce.contracts import Line, amend, create_contract
from connector.sync.order_rules import add_months

from .test_contract_lifecycle import TODAY, advance, billed_by_month, clocked_account, stripe_client
from .test_orders import cli, record, stripe_objects

RAMP = Line("Seats", 0, 0.0, frequency="Annual", segments=((10, 120.0), (20, 120.0), (30, 100.0)))


@pytest.mark.parametrize("days", [1, 0], ids=["starts-tomorrow", "starts-today"])
def test_a_three_year_ramp_is_billed_segment_by_segment_from_one_schedule(sandbox, run_sync, days) -> None:
    client = stripe_client(sandbox)
    start = TODAY + timedelta(days=days)  # MDQ Orders sync as a schedule starting today or later
    account, clock = clocked_account(sandbox, client, TODAY)
    contract = create_contract(sandbox.org, account, start, [RAMP], term_months=36)
    order_id = contract.first_order.id
    assert len(contract.first_order.lines) == 3

    result = run_sync(("accounts", "orders"))
    outcome = result.outcome(order_id)
    assert outcome.status == "created", outcome.message
    [schedule] = sandbox.stripe_admin.objects("subscription_schedule")
    assert [len(p["items"]) for p in schedule["phases"]] == [1, 1, 1]
    assert [p["items"][0]["quantity"] for p in schedule["phases"]] == [10, 20, 30]
    order = sandbox.sf_admin.get_record("Order", order_id)
    assert order["Stripe_Subscription_ID__c"] == schedule["id"]
    assert order["Stripe_Sync_Status__c"] == "Synced"

    for year in range(4):
        if add_months(start, 12 * year) > TODAY:  # (a ramp starting today starts at the clock's time)
            advance(client, clock, add_months(start, 12 * year))
    billed = billed_by_month(client, schedule["customer"], start, 36)
    assert [billed[0], billed[12], billed[24]] == [10 * 12000, 20 * 12000, 30 * 10000]
    assert sum(billed) == 10 * 12000 + 20 * 12000 + 30 * 10000  # nothing prorated, nothing twice
    [sub] = sandbox.stripe_admin.objects("subscription")
    assert sub["status"] == "canceled"

    again = run_sync(("orders",))  # a rerun changes nothing
    assert len(sandbox.stripe_admin.objects("subscription_schedule")) == 1
    assert again.outcome(order_id) is None or again.outcome(order_id).status != "created"


def test_an_amendment_of_a_ramp_is_refused_and_left_to_stripe_by_hand(sandbox, run_sync) -> None:
    client = stripe_client(sandbox)
    start = TODAY + timedelta(days=1)
    account, _ = clocked_account(sandbox, client, TODAY)
    contract = create_contract(sandbox.org, account, start, [RAMP], term_months=36)
    change = amend(sandbox.org, contract, add_months(start, 3), {"Seats": 5})
    result = run_sync(("accounts", "orders"))
    assert result.outcome(contract.first_order.id).status == "created"
    refused = result.outcome(change.id)
    assert refused.status in ("refused", "error"), refused
    assert "change MDQ contracts in Stripe by hand" in refused.message
    order = sandbox.sf_admin.get_record("Order", change.id)
    assert "MDQ" in (order["Stripe_Sync_Message__c"] or "")


@pytest.mark.slow  # kills processes, as tests/e2e/test_orders_crash.py (tests/conftest.py SLOW_PATHS)
@pytest.mark.parametrize("point", ["order.after_price", "order.after_subscription", "order.before_writeback"])
def test_a_ramp_killed_mid_create_is_one_schedule_after_the_rerun(sandbox, store_url, point) -> None:
    client = stripe_client(sandbox)
    account, _ = clocked_account(sandbox, client, TODAY)
    contract = create_contract(sandbox.org, account, TODAY + timedelta(days=1), [RAMP], term_months=36)

    crashed = cli(sandbox, store_url, "sync", crash_at=point)
    assert crashed.returncode == CRASH_EXIT, crashed.stdout + crashed.stderr
    for _ in range(2):
        finished = cli(sandbox, store_url, "sync")
        assert finished.returncode == 0, finished.stdout + finished.stderr

    [schedule] = stripe_objects(sandbox, "subscription_schedule")
    assert [p["items"][0]["quantity"] for p in schedule["phases"]] == [10, 20, 30]
    # Year 1 and 2 bill the price book's 120.00 (one Price), Year 3 its own 100.00
    assert sorted(p["unit_amount"] for p in stripe_objects(sandbox, "price")) == [10000, 12000]
    order = record(sandbox, "Order", contract.first_order.id)
    assert order["Stripe_Subscription_ID__c"] == schedule["id"] and order["Stripe_Sync_Status__c"] == "Synced"

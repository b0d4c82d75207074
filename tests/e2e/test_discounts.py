"""CPQ discounts become Stripe coupons (subscription mapping `discounts: mode: coupons`), end to end on
the sandbox: the list price billed with a coupon for the coupon's months (a test clock shows each
invoice), one coupon shared by Orders with the same discount, net_price billing as before, and a
discount Stripe would bill wrongly refused on the Order."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stripe

from connector.mapping import Mappings, load_mappings
from connector.sync.order_rules import add_months, midnight_utc
from tests.e2e.test_contract_lifecycle import advance

from .test_cli import cli, sandbox_env
from .test_orders import Org, record, stripe_objects

TODAY = datetime.now(UTC).date()
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def coupons_mappings(tmp_path: Path) -> Mappings:
    for name in ("customer.yaml", "subscription.yaml"):
        shutil.copy(MAPPINGS / name, tmp_path / name)
    path = tmp_path / "subscription.yaml"
    text = path.read_text(encoding="utf-8")
    assert "  mode: net_price\n" in text
    path.write_text(text.replace("  mode: net_price\n", "  mode: coupons\n"), encoding="utf-8")
    return load_mappings(tmp_path)


def stripe_client(sandbox: Any) -> stripe.StripeClient:
    env = sandbox.env
    return stripe.StripeClient(
        env["CPQ2STRIPE_STRIPE_SECRET_KEY"], base_addresses={"api": env["CPQ2STRIPE_STRIPE_API_BASE"]}
    )


def clocked_customer(sandbox: Any, org: Org, client: stripe.StripeClient) -> tuple[str, str]:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": midnight_utc(TODAY)})
    customer = client.v1.customers.create(params={"name": "Globex", "test_clock": clock.id})
    return org.account(Stripe_Customer_ID__c=customer.id), clock.id


def quote_line(sandbox: Any, **fields: Any) -> str:
    return sandbox.sf_admin.create_record("SBQQ__QuoteLine__c", fields)


def discounted_line(sandbox: Any, percent: float, months: int | None = 3) -> dict[str, Any]:
    return {
        "product": "Suite",
        "price": 100.0,
        "unit": 100.0 * (100 - percent) / 100,
        "SBQQ__QuoteLine__c": quote_line(sandbox, SBQQ__Discount__c=percent, SBQQ__ListPrice__c=100.0),
        "Stripe_Discount_Months__c": months,
    }


def test_fifty_percent_for_three_months_bills_half_three_times_then_the_list_price(
    sandbox, run_sync, tmp_path
) -> None:
    client = stripe_client(sandbox)
    org = Org(sandbox)
    account, clock = clocked_customer(sandbox, org, client)
    first, [item] = org.order(account, [discounted_line(sandbox, 50)])
    second, _ = org.order(account, [discounted_line(sandbox, 50)])

    result = run_sync(("accounts", "orders"), mappings=coupons_mappings(tmp_path))

    for order_id in (first, second):
        assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    [coupon] = stripe_objects(sandbox, "coupon")  # the two Orders share one coupon
    assert (coupon["id"], coupon["percent_off"], coupon["duration_in_months"]) == ("cpq2stripe-p50-m3", 50, 3)
    [price] = stripe_objects(sandbox, "price")  # the list price, reused from the PricebookEntry
    assert price["unit_amount"] == 10000
    assert record(sandbox, "OrderItem", item)["Stripe_Price_ID__c"] is None
    assert (
        record(sandbox, "PricebookEntry", org.entries[("Suite", "USD")])["Stripe_Price_ID__c"] == price["id"]
    )

    sub_id = record(sandbox, "Order", first)["Stripe_Subscription_ID__c"]
    for month in range(1, 5):
        advance(client, clock, add_months(TODAY, month))
    invoices = client.v1.invoices.list(params={"subscription": sub_id, "limit": 100}).data
    ordered = sorted(invoices, key=lambda i: (i.created, i.number))
    assert [i.total for i in ordered] == [5000, 5000, 5000, 10000, 10000]
    assert [i.subtotal for i in ordered] == [10000] * 5  # Stripe shows the list price and the discount


def test_net_price_mode_bills_the_net_unit_price_as_before(sandbox, run_sync) -> None:
    org = Org(sandbox)
    order_id, _ = org.order(org.account(), [discounted_line(sandbox, 50)])
    result = run_sync(("accounts", "orders"))  # the shipped mapping: net_price
    assert result.outcome(order_id).status == "created", result.outcome(order_id).message
    assert [p["unit_amount"] for p in stripe_objects(sandbox, "price")] == [5000]
    assert stripe_objects(sandbox, "coupon") == []
    [sub] = stripe_objects(sandbox, "subscription")
    assert sub["discounts"] == [] and sub["items"]["data"][0]["discounts"] == []


def test_a_discount_stripe_would_bill_wrongly_is_refused_on_the_order(sandbox, run_sync, tmp_path) -> None:
    org = Org(sandbox)
    line = discounted_line(sandbox, 50)
    line["SBQQ__QuoteLine__c"] = quote_line(sandbox, SBQQ__Discount__c=120)
    order_id, _ = org.order(org.account(), [line])
    run_sync(("accounts", "orders"), mappings=coupons_mappings(tmp_path))
    order = record(sandbox, "Order", order_id)
    assert order["Stripe_Sync_Status__c"] == "Refused"
    assert "SBQQ__QuoteLine__r.SBQQ__Discount__c is 120" in order["Stripe_Sync_Message__c"]
    assert "more than 0 and at most 100" in order["Stripe_Sync_Message__c"]
    assert stripe_objects(sandbox, "coupon") == [] and stripe_objects(sandbox, "subscription") == []


def test_mappings_check_against_the_org_checks_the_discount_sources(sandbox, tmp_path) -> None:
    copy = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, copy)
    env = sandbox_env(sandbox, f"sqlite:///{tmp_path}/s.db", copy)
    good = cli("mappings", "check", "--dir", str(copy), "--against-org", env=env)
    assert good.returncode == 0, good.stderr
    text = (copy / "subscription.yaml").read_text(encoding="utf-8")
    text = text.replace("SBQQ__QuoteLine__r.SBQQ__Discount__c", "SBQQ__QuoteLine__r.Name", 1)
    text = text.replace("source: Stripe_Discount_Months__c", "source: Stripe_Discount_Month__c", 1)
    (copy / "subscription.yaml").write_text(text, encoding="utf-8")

    bad = cli("mappings", "check", "--dir", str(copy), "--against-org", env=env)

    assert bad.returncode == 2
    lines = [ln for ln in bad.stderr.splitlines() if "subscription.yaml:" in ln]
    assert any("'SBQQ__QuoteLine__r.Name' is a string field" in ln for ln in lines), bad.stderr
    assert any("Stripe_Discount_Month__c" in ln for ln in lines), bad.stderr


def test_a_coupon_already_in_stripe_under_its_id_is_used_and_one_with_other_terms_is_not(
    sandbox, run_sync, tmp_path
) -> None:
    """What an interrupted run left (the coupon made, its link not recorded) is used, never doubled;
    a coupon made by hand under the same id with other terms fails the Order instead."""
    client = stripe_client(sandbox)
    client.v1.coupons.create(
        params={
            "id": "cpq2stripe-p50-m3",
            "percent_off": 50,
            "duration": "repeating",
            "duration_in_months": 3,
        }
    )
    client.v1.coupons.create(
        params={"id": "cpq2stripe-p20-forever", "percent_off": 25, "duration": "forever"}
    )
    org = Org(sandbox)
    account = org.account()
    good, _ = org.order(account, [discounted_line(sandbox, 50)])
    clash, _ = org.order(account, [discounted_line(sandbox, 20, months=None)])

    result = run_sync(("accounts", "orders"), mappings=coupons_mappings(tmp_path))

    assert result.outcome(good).status == "created", result.outcome(good).message
    assert len(stripe_objects(sandbox, "coupon")) == 2
    [sub] = stripe_objects(sandbox, "subscription")
    [discount] = sub["items"]["data"][0]["discounts"]
    assert discount.startswith("di_")
    failed = record(sandbox, "Order", clash)
    assert failed["Stripe_Sync_Status__c"] in ("Failed", "Refused")
    assert "cpq2stripe-p20-forever exists with other terms" in failed["Stripe_Sync_Message__c"]


def test_a_contract_with_a_forever_line_discount_is_amended_with_its_coupon(
    sandbox, run_sync, tmp_path
) -> None:
    """10 seats listed at 10.00, 20 % off for the whole term; 5 more seats from month three: the
    schedule's phases carry the coupon, so Stripe bills 80 % of the list price all along."""
    from connector.sandbox.salesforce.contracts import Line, amend, create_contract

    from .test_contract_lifecycle import billed_by_month, clocked_account

    client = stripe_client(sandbox)
    account, clock = clocked_account(sandbox, client, TODAY)
    seats = Line(
        "Seats", 10, 10.0,
        fields={"UnitPrice": 8.0, "SBQQ__QuoteLine__c": quote_line(sandbox, SBQQ__Discount__c=20)},
    )  # fmt: skip
    contract = create_contract(sandbox.org, account, TODAY, [seats], term_months=12)
    more = amend(sandbox.org, contract, add_months(TODAY, 2), {"Seats": 5})
    mappings = coupons_mappings(tmp_path)

    result = run_sync(("accounts", "orders"), mappings=mappings)
    assert result.outcome(more.id).status == "updated", result.outcome(more.id).message
    assert "Seats × 15 at 10.00 less 20% off" in result.outcome(more.id).message
    [schedule] = stripe_objects(sandbox, "subscription_schedule")
    assert all(
        item["discounts"] and item["discounts"][0]["coupon"] == "cpq2stripe-p20-forever"
        for phase in schedule["phases"]
        for item in phase["items"]
    )
    for month in range(1, 5):
        advance(client, clock, add_months(TODAY, month))
    customer = schedule["customer"]
    assert billed_by_month(client, customer, TODAY, 4) == [10000, 10000, 15000, 15000]  # list prices
    off = [0] * 4
    for invoice in client.v1.invoices.list(params={"customer": customer, "limit": 100}).data:
        for line in invoice.to_dict()["lines"]["data"]:
            day = datetime.fromtimestamp(line["period"]["start"], UTC).date()
            index = (day.year - TODAY.year) * 12 + day.month - TODAY.month
            if 0 <= index < 4:
                off[index] += sum(d["amount"] for d in line["discount_amounts"])
    assert off == [2000, 2000, 3000, 3000]  # 20 % off in every phase

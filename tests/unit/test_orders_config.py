"""The Orders pipeline's pure parts: order-rules options from the subscription mapping, and the
SOQL it sends."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import SimpleNamespace

from connector.mapping import load_mappings
from connector.sync.order_rules import OrderPlan, OrderRefusal, plan_order
from connector.sync.orders import PAYMENT_METHOD_KEY, CreateSubscription, OrderSync, rules_config

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
TODAY = date(2026, 3, 10)


def _sync() -> OrderSync:
    ctx = SimpleNamespace(mappings=load_mappings(MAPPINGS), gateway=None, single_currency=None, scope=None)
    return OrderSync(ctx)  # type: ignore[arg-type]


def test_shipped_mapping_gives_the_documented_defaults():
    config = rules_config(load_mappings(MAPPINGS).subscription, TODAY)
    assert config.today == TODAY
    assert config.collection_method == "send_invoice"
    assert config.days_until_due == 30
    assert config.payment_term_field == "Payment_Term__c"
    assert config.unit_price_field == "UnitPrice" and config.quantity_field == "Quantity"
    assert config.payment_method_field == PAYMENT_METHOD_KEY


def test_poll_query_selects_activated_orders_with_their_lines_in_one_soql():
    soql = _sync().poll_query(None)
    assert "FROM Order WHERE StatusCode = 'Activated'" in soql
    assert soql.endswith("ORDER BY SystemModstamp ASC, Id ASC")
    sub = soql[soql.index("(SELECT") : soql.index("FROM OrderItems")]
    for field in ("Product2.Name", "Product2.Stripe_Product_ID__c", "PricebookEntry.UnitPrice",
                  "PricebookEntry.CurrencyIsoCode", "PricebookEntry.Stripe_Price_ID__c",
                  "SBQQ__BillingFrequency__c", "Stripe_Price_ID__c", "Quantity", "UnitPrice"):  # fmt: skip
        assert field in sub, field
    for field in ("Account.Stripe_Customer_ID__c", "Account.Stripe_Payment_Method_ID__c", "Payment_Term__c"):
        assert field in soql[: soql.index("(SELECT")], field


def _order(**account: object) -> dict:
    line = {
        "Id": "802000000000001AAA",
        "Product2Id": "01t000000000001AAA",
        "Product2": {"Name": "Suite", "Stripe_Product_ID__c": None},
        "PricebookEntryId": "01u000000000001AAA",
        "PricebookEntry": {"UnitPrice": 10.0, "CurrencyIsoCode": "USD", "Stripe_Price_ID__c": None},
        "Quantity": 2.0,
        "UnitPrice": 10.0,
        "SBQQ__ChargeType__c": "Recurring",
        "SBQQ__BillingType__c": "Advance",
        "SBQQ__BillingFrequency__c": "Monthly",
        "SBQQ__SubscriptionType__c": "Renewable",
    }
    return {
        "Id": "801000000000001AAA",
        "SystemModstamp": "2026-03-10T00:00:00.000+0000",
        "AccountId": "001000000000001AAA",
        "Account": dict(account),
        "EffectiveDate": TODAY.isoformat(),
        "EndDate": "2027-03-09",
        "CurrencyIsoCode": "USD",
        "Payment_Term__c": "Net 45",
        "OrderItems": {"totalSize": 1, "done": True, "records": [line]},
    }


def test_the_mapped_payment_method_switches_to_charge_automatically():
    sync = _sync()
    config = rules_config(sync.mapping, TODAY)
    w = sync._decide(sync._normalise(_order(Stripe_Payment_Method_ID__c=" pm_123 ")), None, config)
    assert isinstance(w.task, CreateSubscription), w.outcome
    assert isinstance(w.task.plan, OrderPlan)
    collection = w.task.plan.subscription.collection
    assert (collection.method, collection.default_payment_method) == ("charge_automatically", "pm_123")

    w = sync._decide(sync._normalise(_order()), None, config)
    assert isinstance(w.task, CreateSubscription)
    plan = w.task.plan
    assert (plan.subscription.collection.method, plan.subscription.collection.days_until_due) == (
        "send_invoice",
        45,
    )


def test_a_refused_order_is_decided_without_any_io():
    sync = _sync()
    order = _order()
    order["OrderItems"]["records"][0]["Quantity"] = 2.5
    w = sync._decide(sync._normalise(order), None, rules_config(sync.mapping, TODAY))
    assert w.task is None and w.outcome is not None and w.outcome.status == "refused"
    assert "whole" in w.outcome.message
    assert isinstance(plan_order(sync._normalise(order), rules_config(sync.mapping, TODAY)), OrderRefusal)


def _backdated(months_ago_start: str, lines: int = 1, **order: object) -> dict:
    base = _order()
    base.update(EffectiveDate=months_ago_start, EndDate="2029-12-31", **order)
    proto = base["OrderItems"]["records"][0]
    recs = [{**proto, "Id": f"802{n:015d}", "Product2Id": f"01t{n:015d}",
             "PricebookEntryId": f"01u{n:015d}"} for n in range(1, lines + 1)]  # fmt: skip
    base["OrderItems"] = {"totalSize": lines, "done": True, "records": recs}
    return base


def test_the_shipped_mapping_bills_elapsed_periods_unless_the_order_ticks_the_skip_field():
    sync = _sync()
    config = rules_config(sync.mapping, TODAY)
    assert config.bill_backdated_period and config.skip_elapsed_field == "Stripe_Skip_Elapsed_Periods__c"
    assert "Stripe_Skip_Elapsed_Periods__c" in sync.poll_query(None)

    billed = sync._decide(sync._normalise(_backdated("2026-01-10")), None, config)
    assert isinstance(billed.task, CreateSubscription)
    assert billed.task.plan.subscription.proration_behavior == "create_prorations"
    assert "every period from 2026-01-10 to 2026-04-10" in sync._dry_outcome(billed, config).message

    skipped = sync._decide(
        sync._normalise(_backdated("2026-01-10", Stripe_Skip_Elapsed_Periods__c=True)), None, config
    )
    assert isinstance(skipped.task, CreateSubscription)
    assert skipped.task.plan.subscription.proration_behavior == "none"
    assert (
        "elapsed periods not billed (billing starts 2026-04-10)" in sync._dry_outcome(skipped, config).message
    )


def test_an_order_whose_first_invoice_passes_stripes_250_lines_is_refused_naming_the_skip_field():
    """Twelve monthly lines started 2024-03-10: 25 periods x 12 = 300 lines > 250."""
    sync = _sync()
    config = rules_config(sync.mapping, TODAY)
    w = sync._decide(sync._normalise(_backdated("2024-03-10", lines=12)), None, config)
    assert w.outcome is not None and w.outcome.status == "refused"
    assert w.outcome.code == "too_many_elapsed_periods"
    assert "300 invoice lines" in w.outcome.message and "more than 250" in w.outcome.message
    assert "tick Stripe_Skip_Elapsed_Periods__c on the Order" in w.outcome.message

    ticked = _backdated("2024-03-10", lines=12, Stripe_Skip_Elapsed_Periods__c=True)
    w = sync._decide(sync._normalise(ticked), None, config)
    assert isinstance(w.task, CreateSubscription), w.outcome

    ten = sync._decide(sync._normalise(_backdated("2024-03-10", lines=10)), None, config)  # 250: fits
    assert isinstance(ten.task, CreateSubscription), ten.outcome


def test_a_skip_value_that_is_not_a_checkbox_value_is_a_record_error_naming_the_field():
    sync = _sync()
    w = sync._decide(
        sync._normalise(_backdated("2026-01-10", Stripe_Skip_Elapsed_Periods__c="maybe")),
        None,
        rules_config(sync.mapping, TODAY),
    )
    assert w.outcome is not None and w.outcome.status == "refused"
    assert (
        "Stripe_Skip_Elapsed_Periods__c" in w.outcome.message
        and "neither true nor false" in w.outcome.message
    )

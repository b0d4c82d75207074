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
    ctx = SimpleNamespace(mappings=load_mappings(MAPPINGS), gateway=None, single_currency=None)
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

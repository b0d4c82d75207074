"""Order rules: every mapping rule and every refusal of the pure Order planner, and money conversion."""

from __future__ import annotations

import calendar
import dataclasses
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.mapping import load_mappings
from connector.sync.money import (
    MAX_UNIT_AMOUNT,
    THREE_DECIMAL_CURRENCIES,
    ZERO_DECIMAL_CURRENCIES,
    MoneyError,
    from_minor_units,
    to_minor_units,
)
from connector.sync.order_rules import (
    OrderPlan,
    OrderRefusal,
    OrderRulesConfig,
    PriceSpec,
    Recurrence,
    ScheduleSpec,
    SubscriptionSpec,
    add_months,
    order_fingerprint,
    plan_order,
)
from connector.sync.order_rules.fields import BILLED_LINE_FIELDS, BILLED_ORDER_FIELDS
from connector.sync.orders import OrderSync, rules_config

REPO = Path(__file__).resolve().parents[2]
TODAY = date(2026, 3, 10)
CONFIG = OrderRulesConfig(today=TODAY)


def ts(day: str) -> int:
    return calendar.timegm(date.fromisoformat(day).timetuple())


def line(n: int = 1, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "Id": f"802{n:015d}",
        "OrderItemNumber": f"{n:010d}",
        "Product2Id": f"01t{n:015d}",
        "PricebookEntryId": f"01u{n:015d}",
        "Quantity": 2.0,
        "UnitPrice": 100.0,
        "ServiceDate": None,
        "EndDate": None,
        "SBQQ__ChargeType__c": "Recurring",
        "SBQQ__BillingType__c": "Advance",
        "SBQQ__BillingFrequency__c": "Monthly",
        "SBQQ__SubscriptionTerm__c": 12,
        "SBQQ__SubscriptionType__c": "Renewable",
        "Stripe_Price_ID__c": None,
        "Product2": {
            "Name": f"Product {n}",
            "Description": "desc",
            "Stripe_Product_ID__c": None,
            "IsActive": True,
        },
        "PricebookEntry": {"UnitPrice": 100.0, "CurrencyIsoCode": "USD", "Stripe_Price_ID__c": None},
    }
    rec.update(over)
    return rec


def order(*lines: dict[str, Any], **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "Id": "801000000000000001",
        "OrderNumber": "00000101",
        "AccountId": "001000000000000001",
        "Status": "Activated",
        "EffectiveDate": "2026-03-10",
        "EndDate": "2027-03-09",
        "CurrencyIsoCode": "USD",
        "Payment_Term__c": "Net 30",
        "Type": "New",
        "Account": {
            "Stripe_Customer_ID__c": "cus_1",
            "Stripe_Payment_Method_ID__c": None,
            "Billing_Entity__c": True,
        },
        "OrderItems": {"totalSize": len(lines), "done": True, "records": list(lines)} if lines else None,
    }
    rec.update(over)
    return rec


def plan(o: dict[str, Any], config: OrderRulesConfig = CONFIG) -> OrderPlan:
    result = plan_order(o, config)
    assert isinstance(result, OrderPlan), result.message() if isinstance(result, OrderRefusal) else result
    return result


def refuse(o: dict[str, Any], config: OrderRulesConfig = CONFIG) -> OrderRefusal:
    result = plan_order(o, config)
    assert isinstance(result, OrderRefusal), result
    return result


# ---------------------------------------------------------------------------------------------- money


def test_usd_whole_cents_is_unit_amount():
    assert to_minor_units("10.50", "USD") == (1050, None)
    assert to_minor_units(10.5, "usd") == (1050, None)
    assert to_minor_units(0.1, "USD") == (10, None)  # floats via str(): no 0.1000000000000000055


def test_fraction_of_a_cent_is_unit_amount_decimal():
    assert to_minor_units("0.125", "USD") == (None, "12.5")
    assert to_minor_units("1.2345", "EUR") == (None, "123.45")


def test_zero_decimal_currencies_have_no_minor_unit():
    assert to_minor_units(500, "JPY") == (500, None)
    assert to_minor_units("1500.0", "KRW") == (1500, None)
    assert to_minor_units("0.5", "JPY") == (None, "0.5")
    assert {"JPY", "KRW", "VND", "CLP", "XOF", "UGX"} <= ZERO_DECIMAL_CURRENCIES


def test_three_decimal_currencies_need_last_digit_zero():
    assert to_minor_units("5.12", "KWD") == (5120, None)
    assert to_minor_units("5", "BHD") == (5000, None)
    with pytest.raises(MoneyError) as err:
        to_minor_units("5.125", "KWD")
    assert err.value.code == "three_decimal_last_digit"
    assert "5.13" in err.value.fix or "5.12" in err.value.fix
    assert {"BHD", "JOD", "KWD", "OMR", "TND"} == THREE_DECIMAL_CURRENCIES


def test_isk_only_whole_units():
    assert to_minor_units("40", "ISK") == (4000, None)
    with pytest.raises(MoneyError):
        to_minor_units("40.10", "ISK")


@pytest.mark.parametrize(
    ("amount", "currency", "code"),
    [
        ("-1", "USD", "negative_amount"),
        ("1000000.00", "USD", "amount_too_large"),
        ("100000000", "JPY", "amount_too_large"),
        ("1", "XYZ", "unknown_currency"),
        ("abc", "USD", "not_a_number"),
        ("NaN", "USD", "not_a_number"),
        ("0.000000000000001", "USD", "too_many_decimal_places"),
    ],
)
def test_money_errors(amount, currency, code):
    with pytest.raises(MoneyError) as err:
        to_minor_units(amount, currency)
    assert err.value.code == code


def test_max_amount_is_accepted():
    assert to_minor_units("999999.99", "USD") == (MAX_UNIT_AMOUNT, None)


amounts = st.decimals(min_value=0, max_value=Decimal("999999.99"), places=10, allow_nan=False)


@given(amounts, st.sampled_from(["USD", "EUR", "JPY", "KRW", "GBP", "CHF"]))
def test_round_trip_is_exact(amount, currency):
    unit, dec = to_minor_units(amount, currency)
    assert (unit is None) != (dec is None)
    assert from_minor_units(unit, dec, currency) == amount


@given(st.integers(min_value=0, max_value=99_999), st.sampled_from(["USD", "JPY", "KWD", "EUR"]))
def test_integers_stay_integers(amount, currency):
    unit, dec = to_minor_units(amount, currency)
    assert dec is None and isinstance(unit, int)


@given(st.integers(min_value=0, max_value=MAX_UNIT_AMOUNT))
def test_jpy_amount_is_its_own_minor_unit(amount):
    assert to_minor_units(amount, "JPY") == (amount, None)
    assert to_minor_units(float(amount), "JPY") == (amount, None)


@given(st.floats(min_value=0, max_value=999999.99, allow_nan=False, allow_infinity=False))
def test_floats_convert_via_their_repr(amount):
    try:
        unit, dec = to_minor_units(amount, "USD")
    except MoneyError as err:
        assert err.code == "too_many_decimal_places"
        return
    assert from_minor_units(unit, dec, "USD") == Decimal(str(amount))


# ------------------------------------------------------------------------------------------- helpers


def test_add_months_clamps_to_month_end():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 1, 31), 2) == date(2026, 3, 31)
    assert add_months(date(2026, 11, 15), 3) == date(2027, 2, 15)


# --------------------------------------------------------------------------------------- happy paths


def test_starts_today_termed_subscription():
    p = plan(order(line(1)))
    sub = p.subscription
    assert isinstance(sub, SubscriptionSpec)
    params = sub.params("cus_1", {"802000000000000001": "price_A"})
    assert params == {
        "customer": "cus_1",
        "items": [
            {
                "price": "price_A",
                "metadata": {"salesforce_order_item_id": "802000000000000001"},
                "quantity": 2,
            }
        ],
        "collection_method": "send_invoice",
        "days_until_due": 30,
        # EndDate 2027-03-09 is inclusive: the subscription ends at the start of 2027-03-10.
        "cancel_at": ts("2027-03-10"),
        "metadata": {
            "salesforce_order_id": "801000000000000001",
            "salesforce_account_id": "001000000000000001",
            "salesforce_order_number": "00000101",
        },
    }
    assert p.customer_id == "cus_1" and p.currency == "usd"
    assert [pr.sf_id for pr in p.products] == ["01t000000000000001"]
    assert p.products[0].params() == {
        "name": "Product 1",
        "description": "desc",
        "metadata": {"salesforce_product_id": "01t000000000000001"},
    }


def test_past_start_backdates_and_keeps_the_calendar():
    p = plan(order(line(1), EffectiveDate="2026-01-15", EndDate="2027-01-14"))
    sub = p.subscription
    assert isinstance(sub, SubscriptionSpec)
    params = sub.params("cus_1", {"802000000000000001": "price_A"})
    assert params["backdate_start_date"] == ts("2026-01-15")
    # Next monthly boundary after 2026-03-10, counted from the 15th.
    assert params["billing_cycle_anchor"] == ts("2026-03-15")
    assert params["proration_behavior"] == "create_prorations"
    assert params["cancel_at"] == ts("2027-01-15")


def test_past_start_without_billing_the_elapsed_time():
    config = OrderRulesConfig(today=TODAY, bill_backdated_period=False)
    p = plan(order(line(1), EffectiveDate="2026-01-01", EndDate="2026-12-31"), config)
    params = p.subscription.params("cus_1", {"802000000000000001": "price_A"})
    assert params["proration_behavior"] == "none"
    assert params["backdate_start_date"] == ts("2026-01-01")


def test_past_start_on_a_boundary_day_anchors_at_the_next_one():
    p = plan(order(line(1), EffectiveDate="2026-02-10", EndDate="2027-02-09"))
    assert p.subscription.billing_cycle_anchor == ts("2026-04-10")


def test_annual_backdate_anchor():
    rec = line(1, SBQQ__BillingFrequency__c="Annual")
    p = plan(order(rec, EffectiveDate="2025-06-01", EndDate="2027-05-31"))
    assert p.subscription.billing_cycle_anchor == ts("2026-06-01")


def test_future_start_termed_is_a_schedule_that_cancels():
    p = plan(order(line(1), EffectiveDate="2026-04-01", EndDate="2027-03-31"))
    sched = p.subscription
    assert isinstance(sched, ScheduleSpec) and p.is_schedule
    params = sched.params("cus_1", {"802000000000000001": "price_A"})
    assert params["customer"] == "cus_1"
    assert params["start_date"] == ts("2026-04-01")
    assert params["end_behavior"] == "cancel"
    [phase] = params["phases"]
    assert phase["end_date"] == ts("2027-04-01")
    assert phase["items"] == [
        {"price": "price_A", "metadata": {"salesforce_order_item_id": "802000000000000001"}, "quantity": 2}
    ]
    assert phase["collection_method"] == "send_invoice"
    assert phase["invoice_settings"] == {"days_until_due": 30}
    assert phase["metadata"]["salesforce_order_id"] == "801000000000000001"
    assert params["metadata"]["salesforce_order_number"] == "00000101"


def test_future_start_evergreen_schedule_releases():
    rec = line(1, SBQQ__SubscriptionType__c="Evergreen")
    p = plan(order(rec, EffectiveDate="2026-05-01", EndDate=None))
    params = p.subscription.params("cus_1", {"802000000000000001": "price_A"})
    assert params["end_behavior"] == "release"
    assert "end_date" not in params["phases"][0]


def test_evergreen_subscription_has_no_end():
    rec = line(1, SBQQ__SubscriptionType__c="Evergreen")
    p = plan(order(rec, EndDate=None))
    params = p.subscription.params("cus_1", {"802000000000000001": "price_A"})
    assert "cancel_at" not in params


def test_termed_without_end_date_uses_the_common_term():
    p = plan(order(line(1, SBQQ__SubscriptionTerm__c=6), EndDate=None))
    assert p.subscription.cancel_at == ts("2026-09-10")


def test_saved_payment_method_charges_automatically():
    o = order(line(1))
    o["Account"]["Stripe_Payment_Method_ID__c"] = "pm_123"
    params = plan(o).subscription.params("cus_1", {"802000000000000001": "price_A"})
    assert params["collection_method"] == "charge_automatically"
    assert params["default_payment_method"] == "pm_123"
    assert params["off_session"] is True
    assert "days_until_due" not in params


def test_saved_payment_method_on_a_schedule():
    o = order(line(1), EffectiveDate="2026-04-01", EndDate="2027-03-31")
    o["Account"]["Stripe_Payment_Method_ID__c"] = "pm_123"
    phase = plan(o).subscription.params("cus_1", {"802000000000000001": "p"})["phases"][0]
    assert phase["collection_method"] == "charge_automatically"
    assert phase["default_payment_method"] == "pm_123"
    assert "invoice_settings" not in phase


def test_payment_method_source_is_configurable():
    o = order(line(1))
    o["Account"]["Stripe_Payment_Method_ID__c"] = "pm_123"
    config = OrderRulesConfig(today=TODAY, payment_method_field=None)
    assert plan(o, config).subscription.collection.method == "send_invoice"


@pytest.mark.parametrize(
    ("term", "days"),
    [
        ("Due on Receipt", 0),
        ("Due upon receipt", 0),
        ("Net 60", 60),
        ("Net 30 days", 30),
        ("NET30", 30),
        ("net-45", 45),
        ("30 days", 30),
        ("15", 15),
        (None, 30),
        ("  ", 30),
    ],
)
def test_days_until_due_from_payment_term(term, days):
    p = plan(order(line(1), Payment_Term__c=term))
    assert p.subscription.collection.days_until_due == days


def test_default_days_until_due_is_configurable():
    config = OrderRulesConfig(today=TODAY, days_until_due=14)
    assert plan(order(line(1), Payment_Term__c=None), config).subscription.collection.days_until_due == 14


@pytest.mark.parametrize(
    ("term", "days"),
    [
        *((spelling, 30) for spelling in ["Net 30 days", "Net 30", "Net30", "NET 30", "net-30"]),
        *((spelling, 30) for spelling in ["30 days", "30 Days", "30", 30, 30.0]),
        *((spelling, 0) for spelling in ["Due on Receipt", "Due upon receipt", "Upon receipt"]),
    ],
)
@pytest.mark.parametrize(("start", "end"), [("2026-03-10", "2027-03-09"), ("2026-04-01", "2027-03-31")])
def test_the_payment_term_reaches_the_stripe_params(term, days, start, end):
    """What the connector sends: the shipped mapping's options, a subscription starting today and a
    schedule starting later; the default is 14 here so the days can only come from the term."""
    shipped = rules_config(load_mappings(REPO / "mappings").subscription, TODAY)
    config = dataclasses.replace(shipped, days_until_due=14)
    o = order(line(1), EffectiveDate=start, EndDate=end, **{config.payment_term_field: term})
    p = plan(o, config)
    params = p.subscription.params("cus_1", {"802000000000000001": "price_A"})
    sent = params["phases"][0] if p.is_schedule else params
    assert sent["collection_method"] == "send_invoice"
    due = sent["invoice_settings"]["days_until_due"] if p.is_schedule else sent["days_until_due"]
    assert due == days


@pytest.mark.parametrize(
    ("frequency", "interval", "count"),
    [("Monthly", "month", 1), ("Quarterly", "month", 3), ("Semiannual", "month", 6), ("Annual", "year", 1)],
)
def test_recurrence_from_billing_frequency(frequency, interval, count):
    p = plan(order(line(1, SBQQ__BillingFrequency__c=frequency)))
    assert p.prices[0].spec.recurring == Recurrence(interval, count, "licensed")


@pytest.mark.parametrize(
    "over", [{"SBQQ__BillingType__c": "Arrears"}, {"SBQQ__ChargeType__c": "Usage", "Quantity": 2.5}]
)
def test_metered_lines_have_no_quantity(over):
    p = plan(order(line(1, **over)))
    assert p.prices[0].spec.recurring == Recurrence("month", 1, "metered")
    item = p.subscription.params("cus_1", {"802000000000000001": "price_M"})["items"][0]
    assert item == {"price": "price_M", "metadata": {"salesforce_order_item_id": "802000000000000001"}}
    assert p.prices[0].spec.params("prod_1")["recurring"]["usage_type"] == "metered"


def test_one_time_lines_become_add_invoice_items():
    setup = line(2, SBQQ__ChargeType__c="One-Time", SBQQ__BillingFrequency__c=None, Quantity=1, UnitPrice=500)
    setup["PricebookEntry"]["UnitPrice"] = 500
    p = plan(order(line(1), setup))
    params = p.subscription.params(
        "cus_1", {"802000000000000001": "price_A", "802000000000000002": "price_S"}
    )
    assert params["add_invoice_items"] == [
        {"price": "price_S", "metadata": {"salesforce_order_item_id": "802000000000000002"}, "quantity": 1}
    ]
    assert len(params["items"]) == 1
    once = p.price_for("802000000000000002").spec
    assert once.recurring is None
    assert "recurring" not in once.params("prod_2")


def test_unit_price_and_quantity_fields_are_configurable():
    rec = line(1, Net_Price__c=80.0, Seats__c=5)
    config = OrderRulesConfig(today=TODAY, unit_price_field="Net_Price__c", quantity_field="Seats__c")
    p = plan(order(rec), config)
    assert p.prices[0].spec.unit_amount == 8000
    assert p.subscription.items[0].quantity == 5


def test_jpy_order_prices():
    rec = line(1, UnitPrice=1500.0)
    rec["PricebookEntry"].update(UnitPrice=1500.0, CurrencyIsoCode="JPY")
    p = plan(order(rec, CurrencyIsoCode="JPY"))
    spec = p.prices[0].spec
    assert (spec.currency, spec.unit_amount, spec.unit_amount_decimal) == ("jpy", 1500, None)


def test_fractional_cent_price_uses_unit_amount_decimal():
    rec = line(1, UnitPrice=0.125)
    p = plan(order(rec))
    params = p.prices[0].spec.params("prod_1")
    assert params["unit_amount_decimal"] == "12.5" and "unit_amount" not in params


# -------------------------------------------------------------------------------------- price reuse


def test_pricebook_price_is_reused_when_the_line_matches():
    rec = line(1)
    rec["PricebookEntry"]["Stripe_Price_ID__c"] = "price_PBE"
    lp = plan(order(rec)).prices[0]
    assert lp.existing_price_id == "price_PBE"
    assert (lp.write_back_object, lp.write_back_id) == ("PricebookEntry", "01u000000000000001")


def test_pricebook_without_price_gets_one_written_back_to_the_entry():
    lp = plan(order(line(1))).prices[0]
    assert lp.existing_price_id is None
    assert lp.write_back_object == "PricebookEntry"


def test_discounted_line_gets_its_own_price_on_the_order_item():
    rec = line(1, UnitPrice=90.0)
    rec["PricebookEntry"]["Stripe_Price_ID__c"] = "price_PBE"
    lp = plan(order(rec)).prices[0]
    assert lp.existing_price_id is None
    assert (lp.write_back_object, lp.write_back_id) == ("OrderItem", "802000000000000001")
    assert lp.spec.unit_amount == 9000


def test_order_item_price_from_an_earlier_run_is_reused():
    rec = line(1, UnitPrice=90.0, Stripe_Price_ID__c="price_LINE")
    lp = plan(order(rec)).prices[0]
    assert (lp.existing_price_id, lp.write_back_object) == ("price_LINE", "OrderItem")


def test_two_lines_of_one_entry_with_different_specs_do_not_share_its_price():
    a = line(1, SBQQ__SubscriptionTerm__c=12)
    b = line(2, Quantity=1)
    b["PricebookEntryId"] = a["PricebookEntryId"]
    b["Product2Id"] = a["Product2Id"]
    b["SBQQ__BillingType__c"] = "Arrears"  # metered: a different recurrence than line 1
    a["PricebookEntry"]["Stripe_Price_ID__c"] = b["PricebookEntry"]["Stripe_Price_ID__c"] = "price_PBE"
    p = plan(order(a, b))
    first, second = p.prices
    assert first.write_back_object == "PricebookEntry" and first.existing_price_id == "price_PBE"
    assert second.write_back_object == "OrderItem" and second.existing_price_id is None
    assert len(p.products) == 1


def test_price_spec_equality_key_and_stripe_match():
    rec = Recurrence("month", 3, "licensed")
    a = PriceSpec("01tX", "usd", 1000, None, rec)
    b = PriceSpec("01tX", "usd", 1000, None, Recurrence("month", 3))
    assert a == b and a.key() == b.key() == "01tX-usd-1000-monthx3-licensed"
    assert a.key() != PriceSpec("01tX", "usd", 1000, None, Recurrence("month", 1)).key()
    assert PriceSpec("01tX", "usd", None, "12.5", None).key() == "01tX-usd-d12.5-once"
    stripe_price = {
        "active": True,
        "currency": "usd",
        "unit_amount": 1000,
        "unit_amount_decimal": "1000",
        "recurring": {"interval": "month", "interval_count": 3, "usage_type": "licensed"},
    }
    assert a.matches_stripe_price(stripe_price)
    assert not a.matches_stripe_price({**stripe_price, "unit_amount": 1001})
    assert not a.matches_stripe_price(
        {**stripe_price, "recurring": {"interval": "year", "interval_count": 1}}
    )
    assert not a.matches_stripe_price({**stripe_price, "recurring": None})
    assert not a.matches_stripe_price({**stripe_price, "active": False})
    assert a.params("prod_1") == {
        "product": "prod_1",
        "currency": "usd",
        "unit_amount": 1000,
        "recurring": {"interval": "month", "interval_count": 3, "usage_type": "licensed"},
        "metadata": {"salesforce_product_id": "01tX", "cpq2stripe_price_key": a.key()},
    }


# ----------------------------------------------------------------------------------------- refusals


def codes(r: OrderRefusal) -> list[str]:
    return r.codes


def test_decimal_quantity_refusal_message():
    r = refuse(order(line(1, Quantity=2.5)))
    assert codes(r) == ["decimal_quantity"]
    assert r.reasons[0].message() == (
        "OrderItem 802000000000000001 (0000000001) Quantity is 2.5; Stripe bills whole quantities. "
        "Fix: split the line or use a whole number."
    )


@pytest.mark.parametrize("quantity", [0, -1])
def test_non_positive_quantity(quantity):
    r = refuse(order(line(1, Quantity=quantity)))
    assert codes(r) == ["non_positive_quantity"]
    assert "at least 1" in r.message()


@pytest.mark.parametrize("frequency", ["Invoice Plan", "Usage"])
def test_unsupported_billing_frequency(frequency):
    r = refuse(order(line(1, SBQQ__BillingFrequency__c=frequency)))
    assert codes(r) == ["unsupported_frequency"]
    assert f"SBQQ__BillingFrequency__c is {frequency}" in r.message()
    assert "Monthly, Quarterly, Semiannual or Annual" in r.message()


def test_recurring_line_without_frequency():
    r = refuse(order(line(1, SBQQ__BillingFrequency__c=None)))
    assert codes(r) == ["missing_frequency"]
    assert "SBQQ__BillingFrequency__c is empty" in r.message()


def test_mixed_intervals():
    r = refuse(order(line(1), line(2, SBQQ__BillingFrequency__c="Annual")))
    assert codes(r) == ["mixed_intervals"]
    assert "Monthly: 0000000001" in r.message() and "Annual: 0000000002" in r.message()
    assert "is empty" not in r.message()


def test_mixed_currencies():
    rec = line(2)
    rec["PricebookEntry"]["CurrencyIsoCode"] = "EUR"
    r = refuse(order(line(1), rec))
    assert codes(r) == ["mixed_currencies"]
    assert "PricebookEntry.CurrencyIsoCode is EUR; the Order is in USD" in r.message()


def test_order_without_lines():
    r = refuse(order())
    assert codes(r) == ["no_lines"]
    assert r.message().startswith("Order 801000000000000001 (00000101): the Order has no lines")


def test_line_without_product():
    r = refuse(order(line(1, Product2Id=None, Product2=None)))
    assert codes(r) == ["missing_product"]
    assert "Product2Id is empty" in r.message()


def test_unreadable_product():
    r = refuse(order(line(1, Product2=None)))
    assert codes(r) == ["unreadable_product"]


@pytest.mark.parametrize(
    ("price", "code"), [(-5.0, "negative_amount"), (1_000_000.0, "amount_too_large"), (None, "missing_price")]
)
def test_bad_amounts(price, code):
    r = refuse(order(line(1, UnitPrice=price)))
    assert codes(r) == [code]
    assert "UnitPrice" in r.message()


def test_unknown_currency():
    r = refuse(order(line(1), CurrencyIsoCode="XXX"))
    assert "unknown_currency" in codes(r)
    assert "Order 801000000000000001 (00000101) CurrencyIsoCode is XXX" in r.message()


def test_three_decimal_refusal():
    rec = line(1, UnitPrice=5.125)
    rec["PricebookEntry"]["CurrencyIsoCode"] = "KWD"
    r = refuse(order(rec, CurrencyIsoCode="KWD"))
    assert codes(r) == ["three_decimal_last_digit"]


def test_too_many_recurring_items():
    r = refuse(order(*[line(n) for n in range(1, 22)]))
    assert codes(r) == ["too_many_items"]
    assert "21 recurring lines" in r.message() and "at most 20" in r.message()


def test_twenty_items_are_fine():
    assert len(plan(order(*[line(n) for n in range(1, 21)])).subscription.items) == 20


# Orders of one-time lines only become an invoice: tests/unit/test_invoice_plan.py


@pytest.mark.parametrize("term", ["2/10 Net 30", "Whenever", "Net 731", "-5 days"])
def test_unknown_payment_term(term):
    r = refuse(order(line(1), Payment_Term__c=term))
    assert codes(r) == ["payment_term"]
    assert f"Payment_Term__c is {term}" in r.message()


def test_order_types_the_rules_are_told_to_refuse_are_refused():
    """Amendments and Renewals go to the contract planner (tests/unit/test_contract_plan.py);
    plan_order refuses the types it is told to."""
    config = OrderRulesConfig(TODAY, refused_order_types=frozenset({"Amendment"}))
    assert codes(refuse(order(line(1), Type="Amendment"), config)) == ["order_type"]
    assert isinstance(plan_order(order(line(1), Type="Amendment"), CONFIG), OrderPlan)


def test_mixed_evergreen():
    r = refuse(order(line(1), line(2, SBQQ__SubscriptionType__c="Evergreen")))
    assert codes(r) == ["mixed_evergreen"]


def test_evergreen_with_end_date():
    r = refuse(order(line(1, SBQQ__SubscriptionType__c="Evergreen")))
    assert codes(r) == ["evergreen_with_end"]


def test_termed_without_end_or_term():
    r = refuse(order(line(1, SBQQ__SubscriptionTerm__c=None), EndDate=None))
    assert codes(r) == ["missing_end_date"]


def test_end_before_start_and_already_ended():
    assert codes(refuse(order(line(1), EffectiveDate="2026-03-10", EndDate="2026-03-01"))) == [
        "end_before_start"
    ]
    assert codes(refuse(order(line(1), EffectiveDate="2025-01-01", EndDate="2025-12-31"))) == ["ended"]


def test_line_dates_must_match_the_order():
    r = refuse(order(line(1, ServiceDate="2026-04-01", EndDate="2027-01-01")))
    assert codes(r) == ["line_start_differs", "line_end_differs"]
    ok = line(1, ServiceDate="2026-03-10", EndDate="2027-03-09")
    assert isinstance(plan_order(order(ok), CONFIG), OrderPlan)
    relaxed = OrderRulesConfig(today=TODAY, require_line_dates_match=False)
    assert isinstance(plan_order(order(line(1, ServiceDate="2026-04-01")), relaxed), OrderPlan)


def test_all_reasons_are_collected_at_once():
    bad_currency = line(3)
    bad_currency["PricebookEntry"]["CurrencyIsoCode"] = "EUR"
    r = refuse(
        order(
            line(1, Quantity=1.5),
            line(2, Product2Id=None, Product2=None, SBQQ__BillingFrequency__c="Invoice Plan"),
            bad_currency,
            line(4, SBQQ__BillingFrequency__c="Quarterly", UnitPrice=-1),
            Payment_Term__c="Someday",
        )
    )
    assert sorted(codes(r)) == sorted(
        [
            "payment_term",
            "decimal_quantity",
            "missing_product",
            "unsupported_frequency",
            "mixed_currencies",
            "negative_amount",
            "mixed_intervals",
        ]
    )
    assert len(r.message().splitlines()) == len(r.reasons)
    assert all("Fix:" in m for m in r.message().splitlines())


# -------------------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_and_ignores_connector_fields():
    a = order(line(1), line(2))
    b = order(line(2, Stripe_Price_ID__c="price_x"), line(1), Stripe_Subscription_ID__c="sub_1")
    b["OrderItems"]["records"][1]["Quantity"] = 2  # 2 == 2.0
    assert order_fingerprint(a) == order_fingerprint(b)
    assert len(order_fingerprint(a)) == 64
    assert plan(a).fingerprint == order_fingerprint(a, CONFIG)


def test_fingerprint_ignores_reparenting_by_a_merge():
    o = order(line(1))
    before = order_fingerprint(o)
    o["AccountId"] = "001000000000000099"  # the survivor of a Salesforce merge
    assert order_fingerprint(o) == before


@pytest.mark.parametrize(
    "change",
    [
        lambda o: o["OrderItems"]["records"][0].update(Quantity=3),
        lambda o: o["OrderItems"]["records"][0].update(UnitPrice=99),
        lambda o: o.update(EndDate="2027-06-30"),
        lambda o: o.update(EffectiveDate="2026-03-11"),
        lambda o: o["OrderItems"]["records"].append(line(9)),
        lambda o: o["OrderItems"]["records"][0].update(SBQQ__BillingFrequency__c="Annual"),
    ],
)
def test_fingerprint_changes_with_billing_content(change):
    o = order(line(1))
    before = order_fingerprint(o)
    change(o)
    assert order_fingerprint(o) != before


@pytest.mark.parametrize("field_name", [*BILLED_ORDER_FIELDS, "Payment_Term__c"])
def test_fingerprint_changes_with_every_billed_order_field(field_name):
    o = order(line(1))
    before = order_fingerprint(o, CONFIG)
    o[field_name] = "changed"
    assert order_fingerprint(o, CONFIG) != before


@pytest.mark.parametrize("field_name", [*BILLED_LINE_FIELDS, "Quantity", "UnitPrice"])
def test_fingerprint_changes_with_every_billed_line_field(field_name):
    o = order(line(1), line(2))
    before = order_fingerprint(o, CONFIG)
    o["OrderItems"]["records"][1][field_name] = "changed"
    assert order_fingerprint(o, CONFIG) != before


def test_the_orders_query_reads_every_field_the_fingerprint_hashes():
    """One declaration: what the fingerprint hashes is what the shipped mapping's SELECT reads."""
    mappings = load_mappings(REPO / "mappings")
    sync = OrderSync(SimpleNamespace(mappings=mappings, gateway=None, single_currency=None, scope=None))  # type: ignore[arg-type]
    select = sync._select()
    order_part, _, line_part = select.partition("(SELECT ")
    config = rules_config(mappings.subscription, TODAY)
    for name in (*BILLED_ORDER_FIELDS, config.payment_term_field):
        assert re.search(rf"\b{re.escape(name)}\b", order_part), name
    for name in (*BILLED_LINE_FIELDS, config.quantity_field, config.unit_price_field):
        assert re.search(rf"\b{re.escape(name)}\b", line_part), name


# ---------------------------------------------------------------------------------------------- trials

TRIAL = "cpq2stripe_trial_end"
TRIAL_CONFIG = OrderRulesConfig(today=TODAY, trial_end_field="Stripe_Trial_End_Date__c")


def test_a_trial_still_ahead_starts_today_and_bills_from_its_end():
    p = plan(order(line(1), **{TRIAL: "2026-04-01"}), TRIAL_CONFIG)
    params = p.subscription.params("cus_1", {"802000000000000001": "price_A"})
    assert params["trial_end"] == ts("2026-04-01")
    # Stripe anchors the cycle on the trial's end: no backdating, no anchor of our own.
    assert "backdate_start_date" not in params and "billing_cycle_anchor" not in params
    assert params["cancel_at"] == ts("2027-03-10")


def test_a_backdated_order_with_a_trial_still_ahead_bills_nothing_before_it_ends():
    p = plan(order(line(1), EffectiveDate="2026-01-15", EndDate="2027-01-14", **{TRIAL: "2026-03-20"}))
    params = p.subscription.params("cus_1", {"802000000000000001": "price_A"})
    assert params["trial_end"] == ts("2026-03-20")
    assert "backdate_start_date" not in params


def test_a_trial_already_over_moves_the_billing_start_to_its_end():
    p = plan(order(line(1), EffectiveDate="2026-01-15", EndDate="2027-01-14", **{TRIAL: "2026-02-01"}))
    params = p.subscription.params("cus_1", {"802000000000000001": "price_A"})
    assert "trial_end" not in params
    assert params["backdate_start_date"] == ts("2026-02-01")
    assert params["billing_cycle_anchor"] == ts("2026-04-01")  # the calendar of the billing start


def test_a_future_order_trials_in_its_first_phase():
    p = plan(order(line(1), EffectiveDate="2026-04-01", EndDate="2027-03-31", **{TRIAL: "2026-05-01"}))
    params = p.subscription.params("cus_1", {"802000000000000001": "price_A"})
    [phase] = params["phases"]
    assert params["start_date"] == ts("2026-04-01") and phase["trial_end"] == ts("2026-05-01")


@pytest.mark.parametrize(
    ("trial", "code", "words"),
    [
        ("2026-03-10", "trial_not_after_start", "not after the Order starts (2026-03-10)"),
        ("2026-01-01", "trial_not_after_start", "not after the Order starts"),
        ("2027-03-10", "trial_after_end", "after the Order's last day (2027-03-09)"),
    ],
)
def test_a_trial_outside_the_subscription_is_refused(trial, code, words):
    r = refuse(order(line(1), **{TRIAL: trial}), TRIAL_CONFIG)
    assert r.codes == [code]
    assert words in r.message() and "Stripe_Trial_End_Date__c" in r.message()


def test_a_trial_changes_the_fingerprint_only_when_set():
    base = order(line(1))
    assert order_fingerprint(base, TRIAL_CONFIG) == order_fingerprint(base, CONFIG)
    with_trial = {**base, "Stripe_Trial_End_Date__c": "2026-04-01"}
    assert order_fingerprint(with_trial, TRIAL_CONFIG) != order_fingerprint(base, TRIAL_CONFIG)

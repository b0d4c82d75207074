"""Discounts as coupons: the pure planning (list price + coupon per line, the Order's coupon, reuse
by content, refusals), the mapping's `discounts` section, and contracts with discounts."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from connector.mapping import MappingError, load_mappings
from connector.sync.order_rules import OrderRefusal, OrderRulesConfig, order_fingerprint
from connector.sync.order_rules.contract import ContractPlan, Term, plan_contract
from connector.sync.order_rules.discounts import CouponSpec, DiscountFields
from connector.sync.orders import discount_fields, plan_coupons, rules_config
from tests.unit.test_order_rules import line, order, plan, refuse

REPO = Path(__file__).resolve().parents[2]
FIELDS = DiscountFields(
    list_price="PricebookEntry.UnitPrice",
    line_percent="SBQQ__QuoteLine__r.SBQQ__Discount__c",
    line_amount="SBQQ__QuoteLine__r.SBQQ__AdditionalDiscountAmount__c",
    line_months="Stripe_Discount_Months__c",
    order_percent="Order_Discount__c",
    order_months="Stripe_Discount_Months__c",
)
COUPONS = OrderRulesConfig(today=date(2026, 3, 10), discounts=FIELDS)


def discounted(n: int = 1, *, percent: Any = None, amount: Any = None, months: Any = None, **over: Any):
    """A line listed at 100.00 whose UnitPrice is the list price less its discount, as CPQ computes it."""
    net = 100.0 - (float(percent or 0) if isinstance(percent, int | float) else 0) - float(amount or 0)
    return line(
        n,
        UnitPrice=over.pop("UnitPrice", max(net, 0.0)),
        SBQQ__QuoteLine__r={"SBQQ__Discount__c": percent, "SBQQ__AdditionalDiscountAmount__c": amount},
        Stripe_Discount_Months__c=months,
        **over,
    )


def test_a_discounted_line_bills_its_list_price_with_a_coupon_on_its_item() -> None:
    p = plan(order(discounted(percent=50, months=3)), COUPONS)
    [price] = p.prices
    assert price.spec.unit_amount == 10000  # the list price, not the 50.00 net
    assert price.write_back_object == "PricebookEntry"  # reused like any list price
    [item] = p.subscription.items
    assert item.coupon == CouponSpec("50", None, None, "repeating", 3)
    params = p.subscription.params("cus_1", {item.order_item_id: "price_1"})
    assert params["items"][0]["discounts"] == [{"coupon": "cpq2stripe-p50-m3"}]
    assert "discounts" not in params


def test_net_price_mode_bills_the_unit_price_as_before() -> None:
    o = order(discounted(percent=50, months=3))
    p = plan(o)  # no discounts config: net_price
    assert p.prices[0].spec.unit_amount == 5000
    assert p.subscription.items[0].coupon is None
    assert (
        "discounts" not in p.subscription.params("cus_1", {p.prices[0].order_item_id: "price_1"})["items"][0]
    )
    assert order_fingerprint(o, dataclasses.replace(COUPONS, discounts=None)) == order_fingerprint(o)


def test_an_amount_off_is_per_unit_times_the_quantity_and_forever_when_no_months() -> None:
    p = plan(order(discounted(amount=12.5)), COUPONS)  # Quantity 2
    coupon = p.subscription.items[0].coupon
    assert coupon == CouponSpec(None, 2500, "usd", "forever")
    assert coupon.params() == {
        "id": "cpq2stripe-a2500usd-forever",
        "name": "25.00 USD off",
        "duration": "forever",
        "amount_off": 2500,
        "currency": "usd",
        "metadata": {"cpq2stripe_coupon_key": "a2500usd-forever"},
    }


def test_an_undiscounted_line_keeps_its_unit_price() -> None:
    p = plan(order(discounted(percent=0, UnitPrice=50.0), line(2, UnitPrice=80.0)), COUPONS)
    assert [lp.spec.unit_amount for lp in p.prices] == [5000, 8000]
    assert [i.coupon for i in p.subscription.items] == [None, None]


def test_the_orders_percent_goes_on_the_subscription_and_the_schedule_phase() -> None:
    p = plan(order(line(), Order_Discount__c=10, Stripe_Discount_Months__c=6), COUPONS)
    assert p.subscription.discount == CouponSpec("10", None, None, "repeating", 6)
    assert p.subscription.params("cus_1", {p.prices[0].order_item_id: "price_1"})["discounts"] == [
        {"coupon": "cpq2stripe-p10-m6"}
    ]
    future = plan(
        order(line(), Order_Discount__c=12.5, EffectiveDate="2026-04-01", EndDate="2027-03-31"), COUPONS
    )
    phase = future.subscription.params("cus_1", {future.prices[0].order_item_id: "price_1"})["phases"][0]
    assert phase["discounts"] == [{"coupon": "cpq2stripe-p12_5-forever"}]


def test_one_time_lines_carry_their_coupon_on_the_invoice_item() -> None:
    setup = discounted(2, percent=20, SBQQ__ChargeType__c="One-Time", SBQQ__BillingFrequency__c=None)
    p = plan(order(line(), setup), COUPONS)
    params = p.subscription.params("cus_1", {lp.order_item_id: "price_x" for lp in p.prices})
    assert params["add_invoice_items"][0]["discounts"] == [{"coupon": "cpq2stripe-p20-forever"}]


def test_two_lines_with_the_same_discount_share_one_coupon() -> None:
    p = plan(order(discounted(1, percent=50, months=3), discounted(2, percent=50, months=3)), COUPONS)
    assert [c.coupon_id() for c in plan_coupons(p)] == ["cpq2stripe-p50-m3"]


@pytest.mark.parametrize(
    "over,code,field",
    [
        ({"percent": 120}, "discount_percent", "SBQQ__QuoteLine__r.SBQQ__Discount__c"),
        ({"percent": -5}, "discount_percent", "SBQQ__QuoteLine__r.SBQQ__Discount__c"),
        (
            {"amount": 150},
            "discount_above_list_price",
            "SBQQ__QuoteLine__r.SBQQ__AdditionalDiscountAmount__c",
        ),
        ({"amount": -1}, "negative_net", "SBQQ__QuoteLine__r.SBQQ__AdditionalDiscountAmount__c"),
        ({"amount": 0.001}, "discount_amount", "SBQQ__QuoteLine__r.SBQQ__AdditionalDiscountAmount__c"),
        (
            {"percent": 10, "amount": 5},
            "two_discounts",
            "SBQQ__QuoteLine__r.SBQQ__AdditionalDiscountAmount__c",
        ),
        ({"percent": 10, "months": 1.5}, "discount_months", "Stripe_Discount_Months__c"),
        ({"percent": 10, "months": 0}, "discount_months", "Stripe_Discount_Months__c"),
    ],
)
def test_discounts_stripe_would_bill_wrongly_are_refused_naming_the_line_and_field(over, code, field) -> None:
    refusal = refuse(order(discounted(**over)), COUPONS)
    [reason] = refusal.reasons
    assert (reason.code, reason.object, reason.field) == (code, "OrderItem", field)
    assert reason.record_id == "802000000000000001" and "Fix:" in reason.message()


def test_a_net_price_that_is_not_the_list_price_less_the_discount_is_refused() -> None:
    """CPQ's volume or partner discounts are in the UnitPrice but not in the coupon: never bill more."""
    [reason] = refuse(order(discounted(percent=50, UnitPrice=45.0)), COUPONS).reasons
    assert (reason.code, reason.field, reason.value) == ("net_price_differs", "UnitPrice", 45.0)
    assert "50.00 per unit" in reason.message()
    plan(order(discounted(percent=33, UnitPrice=67.0)), COUPONS)  # rounding to the cent is fine


def test_a_discount_without_a_list_price_is_refused() -> None:
    rec = discounted(percent=10)
    rec["PricebookEntry"] = {"UnitPrice": None, "CurrencyIsoCode": "USD", "Stripe_Price_ID__c": None}
    [reason] = refuse(order(rec), COUPONS).reasons
    assert (reason.code, reason.field) == ("discount_without_list_price", "PricebookEntry.UnitPrice")


def test_an_orders_percent_above_100_is_refused_on_the_order() -> None:
    [reason] = refuse(order(line(), Order_Discount__c=150), COUPONS).reasons
    assert (reason.code, reason.object, reason.field) == ("discount_percent", "Order", "Order_Discount__c")


def test_a_coupon_found_under_its_id_must_have_the_same_terms() -> None:
    spec = CouponSpec("50", None, None, "repeating", 3)
    assert spec.matches(
        {"percent_off": 50.0, "duration": "repeating", "duration_in_months": 3, "valid": True}
    )
    assert not spec.matches({"percent_off": 50.0, "duration": "repeating", "duration_in_months": 4})
    assert not spec.matches({"amount_off": 50, "currency": "usd", "duration": "repeating"})


def _contract(first_line: dict[str, Any], amendment_line: dict[str, Any]) -> Any:
    first = order(first_line, Type="New", Id="801000000000000001")
    amendment = order(
        amendment_line, Id="801000000000000002", OrderNumber="00000102", Type="Amendment",
        EffectiveDate="2026-06-10",
    )  # fmt: skip
    return plan_contract([Term("800000000000000001", (first, amendment))], amendment["Id"], COUPONS)


def _seats(**over: Any) -> dict[str, Any]:
    return line(
        5,
        Quantity=2,
        SBQQ__RevisedOrderProduct__c="802000000000000001",
        Product2Id="01t000000000000001",
        **over,
    )


def test_a_forever_line_discount_rides_on_its_item_in_every_phase_of_the_contract() -> None:
    plan = _contract(discounted(percent=50), _seats())
    assert isinstance(plan, ContractPlan), plan.message()
    before, after = plan.phases
    forever = CouponSpec("50", None, None, "forever")
    assert [(i.quantity, i.coupon) for i in before.items] == [(2, forever)]
    assert [(i.quantity, i.coupon) for i in after.items] == [(4, forever)]
    assert after.items[0].price.spec.unit_amount == 10000  # the list price, as the first Order's item


def test_a_contract_discount_that_ends_or_is_order_wide_is_refused_with_the_reason() -> None:
    ends = _contract(discounted(percent=50, months=3), _seats())
    assert isinstance(ends, OrderRefusal) and ends.codes[0] == "earlier_order_refused"
    assert "a discount that ends (50% off for 3 months)" in ends.message()
    changed = _contract(
        discounted(percent=50), _seats(SBQQ__QuoteLine__r={"SBQQ__Discount__c": 20}, UnitPrice=80.0)
    )
    assert isinstance(changed, OrderRefusal) and changed.codes == ["discount_changed"]


# ---- the mapping ---------------------------------------------------------------------------


def _mappings(tmp_path: Path, discounts_block: str) -> Path:
    shutil.copy(REPO / "mappings" / "customer.yaml", tmp_path / "customer.yaml")
    text = (REPO / "mappings" / "subscription.yaml").read_text(encoding="utf-8")
    head = text[: text.index("discounts:\n  mode:")]
    (tmp_path / "subscription.yaml").write_text(head + discounts_block, encoding="utf-8")
    return tmp_path


def test_the_shipped_mapping_keeps_net_price() -> None:
    mappings = load_mappings(REPO / "mappings")
    assert mappings.subscription.discounts.mode == "net_price"
    assert rules_config(mappings.subscription, date(2026, 3, 10)).discounts is None


def test_coupons_mode_reads_the_mapped_fields(tmp_path: Path) -> None:
    directory = _mappings(
        tmp_path,
        "discounts:\n  mode: coupons\n  line_percent:\n    source: SBQQ__QuoteLine__r.SBQQ__Discount__c\n"
        "  order_percent:\n    source: Order_Discount__c\n",
    )
    sub = load_mappings(directory).subscription
    fields = discount_fields(sub)
    assert fields == DiscountFields(
        line_percent="SBQQ__QuoteLine__r.SBQQ__Discount__c", order_percent="Order_Discount__c"
    )
    assert sub.discounts.line_fields() == ["PricebookEntry.UnitPrice", "SBQQ__QuoteLine__r.SBQQ__Discount__c"]


@pytest.mark.parametrize(
    "block,line_no,words",
    [
        ("discounts:\n  mode: coupon\n", 2, "mode"),
        ("discounts:\n  mode: coupons\n", 2, "no discount is mapped"),
        (
            "discounts:\n  mode: coupons\n  line_percent:\n    source: Bad Field\n",
            4,
            "not a Salesforce field",
        ),
        (
            "discounts:\n  mode: coupons\n  line_percent:\n    source: X__c\n    default: 10\n",
            5,
            "takes only a source",
        ),
        ("discounts:\n  mode: coupons\n  line_pct:\n    source: X__c\n", 3, "line_pct"),
    ],
)
def test_mapping_errors_name_the_line(tmp_path: Path, block: str, line_no: int, words: str) -> None:
    directory = _mappings(tmp_path, block)
    start = (directory / "subscription.yaml").read_text(encoding="utf-8").index("discounts:\n")
    first = (directory / "subscription.yaml").read_text(encoding="utf-8")[:start].count("\n") + 1
    with pytest.raises(MappingError) as info:
        load_mappings(directory)
    found = [p for p in info.value.problems if words in str(p)]
    assert found, info.value.problems
    assert found[0].line == first + line_no - 1, str(found[0])


def test_a_dry_run_says_what_each_line_and_the_order_take_off() -> None:
    from connector.sync.orders import order_preview

    p = plan(order(discounted(percent=50, months=3), Order_Discount__c=10), COUPONS)
    preview = order_preview(p, "cus_1")
    assert "Product 1 2 × 100.00 less 50% off for 3 months" in preview
    assert "the whole Order 10% off" in preview


def test_an_order_of_one_time_lines_only_bills_its_net_prices_as_an_invoice() -> None:
    setup = discounted(1, percent=20, SBQQ__ChargeType__c="One-Time", SBQQ__BillingFrequency__c=None)
    p = plan(order(setup), COUPONS)
    assert [lp.spec.unit_amount for lp in p.prices] == [8000]  # the net UnitPrice: no coupon on invoices
    assert plan_coupons(p) == ()

"""MDQ (segmented) lines: the segments of a contract's first Order become the phases of one
subscription schedule; segments that cannot be billed exactly are refused with the record, the
field and the fix."""

from __future__ import annotations

import calendar
from datetime import date
from typing import Any

from connector.sync.order_rules import (
    OrderPlan,
    OrderRefusal,
    OrderRulesConfig,
    ScheduleSpec,
    order_fingerprint,
    plan_order,
)
from connector.sync.order_rules.contract import Term, plan_contract
from tests.unit.test_order_rules import line, order

TODAY = date(2026, 3, 10)
CONFIG = OrderRulesConfig(today=TODAY)
KEY = "1700000000001"


def ts(day: str) -> int:
    return calendar.timegm(date.fromisoformat(day).timetuple())


def segment(n: int, index: int, start: str, end: str, quantity: float, **over: Any) -> dict[str, Any]:
    """Segment `index` (1, 2, ...) of product 1, as OrderItem n."""
    rec = line(
        n,
        Product2Id="01t000000000000001",
        Quantity=quantity,
        ServiceDate=start,
        EndDate=end,
        SBQQ__SubscriptionTerm__c=36,
        SBQQ__SegmentKey__c=KEY,
        SBQQ__SegmentIndex__c=float(index),
        SBQQ__SegmentLabel__c=f"Year {index}",
        SBQQ__DimensionType__c="Year",
    )
    rec["Product2"] = {**rec["Product2"], "Name": "Seats"}
    rec.update(over)
    return rec


def ramp(*lines: dict[str, Any], **over: Any) -> dict[str, Any]:
    """A 3-year Order from 2026-04-01 with segments of 10, 20 and 30 seats, plus `lines`."""
    segs = [
        segment(1, 1, "2026-04-01", "2027-03-31", 10),
        segment(2, 2, "2027-04-01", "2028-03-31", 20),
        segment(3, 3, "2028-04-01", "2029-03-31", 30),
    ]
    fields = {"EffectiveDate": "2026-04-01", "EndDate": "2029-03-31", **over}
    return order(*segs, *lines, **fields)


def refused(result: Any) -> OrderRefusal:
    assert isinstance(result, OrderRefusal), result
    return result


def codes(result: Any) -> list[str]:
    return refused(result).codes


def test_a_three_year_ramp_is_one_schedule_with_a_phase_per_segment() -> None:
    other = line(9, ServiceDate="2026-04-01", EndDate="2029-03-31", SBQQ__SubscriptionTerm__c=36)
    plan = plan_order(ramp(other), CONFIG)
    assert isinstance(plan, OrderPlan) and isinstance(plan.subscription, ScheduleSpec)
    prices = {lp.order_item_id: f"price_{lp.order_item_id[-1]}" for lp in plan.prices}
    params = plan.subscription.params("cus_1", prices)
    assert params["start_date"] == ts("2026-04-01") and params["end_behavior"] == "cancel"
    phases = [(p["end_date"], [(i["price"], i["quantity"]) for i in p["items"]]) for p in params["phases"]]
    assert phases == [
        (ts("2027-04-01"), [("price_1", 10), ("price_9", 2)]),
        (ts("2028-04-01"), [("price_2", 20), ("price_9", 2)]),
        (ts("2029-04-01"), [("price_3", 30), ("price_9", 2)]),
    ]
    assert all(p["metadata"]["salesforce_order_id"] == "801000000000000001" for p in params["phases"])


def test_one_time_lines_are_billed_once_in_the_first_phase() -> None:
    fee = line(8, SBQQ__ChargeType__c="One-Time", SBQQ__BillingFrequency__c=None)
    plan = plan_order(ramp(fee), CONFIG)
    assert isinstance(plan, OrderPlan)
    assert isinstance(plan.subscription, ScheduleSpec)
    params = plan.subscription.params("cus_1", {lp.order_item_id: "price" for lp in plan.prices})
    assert ["add_invoice_items" in p for p in params["phases"]] == [True, False, False]


def test_segments_at_their_own_prices_get_their_own_prices() -> None:
    o = ramp()
    o["OrderItems"]["records"][2]["UnitPrice"] = 90.0
    plan = plan_order(o, CONFIG)
    assert isinstance(plan, OrderPlan)
    amounts = {lp.order_item_id[-1]: lp.spec.unit_amount for lp in plan.prices}
    assert amounts == {"1": 10000, "2": 10000, "3": 9000}


def test_a_gap_an_overlap_and_a_short_last_segment_are_refused_with_the_fix() -> None:
    o = ramp()
    recs = o["OrderItems"]["records"]
    recs[1]["ServiceDate"] = "2027-05-01"  # a month's gap after Year 1
    result = plan_order(o, CONFIG)
    assert codes(result) == ["mdq_gap"]
    reason = refused(result).reasons[0]
    assert (reason.object, reason.record_id, reason.field) == ("OrderItem", recs[1]["Id"], "ServiceDate")
    assert "2027-04-01" in reason.fix

    o = ramp()
    o["OrderItems"]["records"][1]["ServiceDate"] = "2027-03-01"
    assert codes(plan_order(o, CONFIG)) == ["mdq_overlap"]

    o = ramp()
    o["OrderItems"]["records"][2]["EndDate"] = "2028-12-31"
    assert codes(plan_order(o, CONFIG)) == ["mdq_not_covering"]


def test_custom_segments_one_product_per_key_and_whole_billing_periods() -> None:
    o = ramp()
    for rec in o["OrderItems"]["records"]:
        rec["SBQQ__DimensionType__c"] = "Custom"
    assert set(codes(plan_order(o, CONFIG))) == {"mdq_custom_segment"}

    o = ramp()
    o["OrderItems"]["records"][1]["Product2Id"] = "01t000000000000077"
    assert "mdq_mixed_products" in codes(plan_order(o, CONFIG))

    o = ramp()  # a yearly-billed line cannot change quantity at a quarter
    for rec in o["OrderItems"]["records"]:
        rec["SBQQ__BillingFrequency__c"] = "Annual"
    o["OrderItems"]["records"][0]["EndDate"] = "2026-06-30"
    o["OrderItems"]["records"][1]["ServiceDate"] = "2026-07-01"
    assert codes(plan_order(o, CONFIG)) == ["mdq_segment_off_cycle"]


def test_evergreen_started_and_trial_orders_with_segments_are_refused() -> None:
    o = ramp(EndDate=None)
    for rec in o["OrderItems"]["records"]:
        rec["SBQQ__SubscriptionType__c"] = "Evergreen"
    assert codes(plan_order(o, CONFIG)) == ["mdq_evergreen"]

    started = plan_order(ramp(), OrderRulesConfig(today=date(2026, 4, 2)))
    assert codes(started) == ["mdq_started"]
    assert "Stripe by hand" in refused(started).reasons[0].fix


def test_a_ramp_starting_the_day_it_syncs_is_a_schedule_from_that_midnight() -> None:
    today = plan_order(ramp(), OrderRulesConfig(today=date(2026, 4, 1)))
    assert isinstance(today, OrderPlan) and isinstance(today.subscription, ScheduleSpec)
    assert today.subscription.start_date == ts("2026-04-01")
    assert len(today.subscription.later_phases) == 2


def test_segmented_lines_skip_the_line_dates_rule_but_others_keep_it() -> None:
    stray = line(9, ServiceDate="2026-05-01", EndDate="2029-03-31")
    assert codes(plan_order(ramp(stray), CONFIG)) == ["line_start_differs"]


def test_an_amendment_of_a_segmented_contract_is_refused() -> None:
    first = ramp()
    amendment = order(
        line(5, Quantity=5, ServiceDate="2026-09-01", EndDate="2029-03-31"),
        Id="801000000000000002",
        OrderNumber="00000102",
        Type="Amendment",
        EffectiveDate="2026-09-01",
        EndDate="2029-03-31",
    )
    result = plan_contract([Term("800000000000000001", (first, amendment))], "801000000000000002", CONFIG)
    assert codes(result) == ["mdq_contract_change"]
    assert "change MDQ contracts in Stripe by hand" in refused(result).reasons[0].fix


def test_an_unsegmented_orders_fingerprint_is_unchanged_by_segment_fields() -> None:
    plain = order(line(1))
    with_blanks = order(line(1, SBQQ__SegmentKey__c=None, SBQQ__DimensionType__c=None))
    assert order_fingerprint(plain) == order_fingerprint(with_blanks)
    relabelled = ramp()
    relabelled["OrderItems"]["records"][0]["SBQQ__SegmentIndex__c"] = 9.0
    assert order_fingerprint(ramp()) != order_fingerprint(relabelled)


def test_a_dry_run_names_each_segments_phase() -> None:
    from connector.sync.orders import order_preview

    plan = plan_order(ramp(), CONFIG)
    assert isinstance(plan, OrderPlan)
    text = order_preview(plan, "cus_1")
    assert "items: Seats 10 ×" in text and "from 2027-04-01: Seats 20 ×" in text
    assert "from 2028-04-01: Seats 30 ×" in text

"""The contract planner: a CPQ contract's Orders (new, amendments, renewal, termination) as the
phases of one Stripe subscription schedule, and every refusal."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from connector.sync.contracts import contract_lanes
from connector.sync.order_rules import OrderRefusal, OrderRulesConfig
from connector.sync.order_rules.contract import ContractPlan, Phase, Term, plan_contract

CONFIG = OrderRulesConfig(today=date(2026, 1, 1))
START, END = "2026-01-01", "2026-12-31"  # a 12-month term


def line(
    n: int, qty: float, *, price: float = 10.0, revises: int | None = None, **over: Any
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "Id": f"802{n:015d}",
        "OrderItemNumber": f"{n:010d}",
        "Product2Id": f"01t{n if revises is None else revises:015d}",
        "PricebookEntryId": f"01u{n if revises is None else revises:015d}",
        "Quantity": qty,
        "UnitPrice": price,
        "SBQQ__ChargeType__c": "Recurring",
        "SBQQ__BillingType__c": "Advance",
        "SBQQ__BillingFrequency__c": "Monthly",
        "SBQQ__SubscriptionType__c": "Renewable",
        "SBQQ__RevisedOrderProduct__c": None if revises is None else f"802{revises:015d}",
        "Product2": {"Name": f"Product {n}", "Description": None, "Stripe_Product_ID__c": None},
        "PricebookEntry": {"UnitPrice": 10.0, "CurrencyIsoCode": "USD", "Stripe_Price_ID__c": None},
    }
    rec.update(over)
    return rec


def order(
    n: int, kind: str, effective: str, *lines: dict[str, Any], end: str | None = END, **over: Any
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "Id": f"801{n:015d}",
        "OrderNumber": f"{n:08d}",
        "AccountId": "001000000000000001",
        "Type": kind,
        "EffectiveDate": effective,
        "EndDate": end,
        "CurrencyIsoCode": "USD",
        "Payment_Term__c": "Net 30",
        "OrderItems": {"records": list(lines)},
    }
    rec.update(over)
    return rec


def plan(terms: list[list[dict[str, Any]]], target: dict[str, Any]) -> ContractPlan:
    result = plan_contract(
        [Term(f"800{i:015d}", tuple(t)) for i, t in enumerate(terms)], target["Id"], CONFIG
    )
    assert isinstance(result, ContractPlan), result
    return result


def refused(terms: list[list[dict[str, Any]]], target: dict[str, Any]) -> list[str]:
    result = plan_contract(
        [Term(f"800{i:015d}", tuple(t)) for i, t in enumerate(terms)], target["Id"], CONFIG
    )
    assert isinstance(result, OrderRefusal), result
    return result.codes


def shape(phases: tuple[Phase, ...]) -> list[tuple[str, str | None, dict[str, int | None]]]:
    """Each phase as (start, exclusive end, {line first sold: quantity})."""
    return [
        (
            p.start.isoformat(),
            p.end.isoformat() if p.end else None,
            {i.root_id[-2:]: i.quantity for i in p.items},
        )
        for p in phases
    ]


NEW = order(1, "New", START, line(1, 10))


def test_an_amendment_adds_a_phase_with_the_summed_quantity_from_its_start_date() -> None:
    more = order(2, "Amendment", "2026-04-01", line(11, 5, revises=1))
    result = plan([[NEW, more]], more)
    assert result.kind == "amendment" and result.effective == date(2026, 4, 1)
    assert shape(result.phases) == [
        ("2026-01-01", "2026-04-01", {"01": 10}),
        ("2026-04-01", "2027-01-01", {"01": 15}),
    ]
    # the amended item keeps the price the line was first sold at: the same Stripe price
    assert result.phases[1].items[0].price == result.phases[0].items[0].price


def test_amendments_apply_in_date_order_and_a_same_day_second_amendment_replaces_the_phase() -> None:
    a = order(2, "Amendment", "2026-04-01", line(11, 5, revises=1))
    b = order(3, "Amendment", "2026-04-01", line(12, -3, revises=1))
    c = order(4, "Amendment", "2026-07-15", line(13, 4, price=20.0))  # a new product
    result = plan([[c, b, NEW, a]], c)
    assert shape(result.phases) == [
        ("2026-01-01", "2026-04-01", {"01": 10}),
        ("2026-04-01", "2026-07-15", {"01": 12}),
        ("2026-07-15", "2027-01-01", {"01": 12, "13": 4}),
    ]
    # the Orders not applied yet are left out by the caller
    assert shape(plan([[NEW, a]], a).phases)[-1] == ("2026-04-01", "2027-01-01", {"01": 15})


def test_a_price_change_is_a_new_line_at_the_new_price_and_the_old_line_to_zero() -> None:
    change = order(
        2, "Amendment", "2026-06-01", line(11, -10, revises=1), line(12, 10, price=12.0, revises=1)
    )
    result = plan([[NEW, change]], change)
    last = result.phases[-1]
    assert [(i.quantity, i.price.spec.unit_amount) for i in last.items] == [(10, 1200)]


def test_quantities_all_at_zero_terminate_the_contract_on_the_amendments_date() -> None:
    end = order(2, "Amendment", "2026-09-01", line(11, -10, revises=1))
    result = plan([[NEW, end]], end)
    assert result.kind == "termination"
    assert shape(result.phases) == [("2026-01-01", "2026-09-01", {"01": 10})]
    after = order(3, "Amendment", "2026-10-01", line(12, 1, revises=1))
    assert refused([[NEW, end, after]], after) == ["after_termination"]


def test_an_evergreen_contract_is_cancelled_by_a_zero_quantity_amendment() -> None:
    evergreen = order(1, "New", START, line(1, 3, SBQQ__SubscriptionType__c="Evergreen"), end=None)
    stop = order(
        2, "Amendment", "2026-05-01", line(11, -3, revises=1, SBQQ__SubscriptionType__c="Evergreen"), end=None
    )
    result = plan([[evergreen, stop]], stop)
    assert result.kind == "termination"
    assert shape(result.phases) == [("2026-01-01", "2026-05-01", {"01": 3})]
    grow = order(
        3, "Amendment", "2026-03-01", line(12, 2, revises=1, SBQQ__SubscriptionType__c="Evergreen"), end=None
    )
    assert shape(plan([[evergreen, grow]], grow).phases) == [
        ("2026-01-01", "2026-03-01", {"01": 3}),
        ("2026-03-01", None, {"01": 5}),
    ]


def test_a_renewal_continues_the_chain_the_day_after_the_term_at_its_own_quantities_and_price() -> None:
    renewal = order(5, "Renewal", "2027-01-01", line(51, 15, price=11.0), end="2027-12-31")
    result = plan([[NEW], [renewal]], renewal)
    assert result.kind == "renewal"
    assert shape(result.phases) == [
        ("2026-01-01", "2027-01-01", {"01": 10}),
        ("2027-01-01", "2028-01-01", {"51": 15}),
    ]
    assert result.phases[-1].items[0].price.spec.unit_amount == 1100
    # the renewed term is amended through its own lines
    amend = order(6, "Amendment", "2027-03-01", line(61, 5, revises=51, price=11.0), end="2027-12-31")
    assert shape(plan([[NEW], [renewal, amend]], amend).phases)[-1] == (
        "2027-03-01",
        "2028-01-01",
        {"51": 20},
    )


@pytest.mark.parametrize(
    ("amendment", "code"),
    [
        (order(2, "Amendment", "2026-04-01", line(11, 5, revises=1), end="2027-03-31"), "not_coterminous"),
        (
            order(2, "Amendment", "2026-04-01", line(11, 5, revises=1), CurrencyIsoCode="EUR"),
            "currency_change",
        ),
        (
            order(2, "Amendment", "2026-04-01", line(11, 5, revises=1, SBQQ__BillingFrequency__c="Annual")),
            "interval_change",
        ),
        (order(2, "Amendment", "2026-04-01", line(11, 5, revises=9)), "unknown_revised_line"),
        (order(2, "Amendment", "2026-04-01", line(11, -11, revises=1)), "negative_quantity"),
        (order(2, "Amendment", "2027-02-01", line(11, 5, revises=1)), "outside_term"),
    ],
)
def test_amendments_that_cannot_be_one_subscriptions_phase_are_refused(
    amendment: dict[str, Any], code: str
) -> None:
    assert code in refused([[NEW, amendment]], amendment)


@pytest.mark.parametrize(
    ("effective", "code"), [("2027-02-01", "renewal_gap"), ("2026-12-01", "renewal_overlap")]
)
def test_a_renewal_must_start_the_day_after_the_renewed_term(effective: str, code: str) -> None:
    renewal = order(5, "Renewal", effective, line(51, 10), end="2027-12-31")
    assert refused([[NEW], [renewal]], renewal) == [code]


def test_an_order_after_a_refused_one_is_refused_naming_it() -> None:
    bad = order(2, "Amendment", "2026-04-01", line(11, 5, revises=9))
    later = order(3, "Amendment", "2026-05-01", line(12, 1, revises=1))
    assert refused([[NEW, bad, later]], later) == ["earlier_order_refused"]


@example([(1, -10), (2, 1)])  # terminated in February, then amended
@given(st.lists(st.tuples(st.integers(1, 11), st.integers(-4, 6)), min_size=1, max_size=6))
def test_the_quantity_in_force_is_the_sum_of_every_delta_so_far(changes: list[tuple[int, int]]) -> None:
    """Whatever the amendments (month, delta), each phase holds the running sum from that month on,
    or the chain is refused where a sum would go negative or a terminated contract is amended."""
    orders = [NEW] + [
        order(10 + i, "Amendment", f"2026-{month + 1:02d}-01", line(100 + i, delta, revises=1))
        for i, (month, delta) in enumerate(changes)
    ]
    target = orders[-1]
    result = plan_contract([Term("800000000000000000", tuple(orders))], target["Id"], CONFIG)
    events = sorted(((month, i), delta) for i, (month, delta) in enumerate(changes))
    total, by_month, ended, ended_by = 10, {1: 10}, None, None
    for (month, i), delta in events:
        total += delta
        if ended is not None or total < 0:  # amending a terminated contract, or below zero
            assert isinstance(result, OrderRefusal)
            return
        by_month[month + 1] = total
        if total == 0:
            ended, ended_by = month + 1, i
    assert isinstance(result, ContractPlan)
    for phase in result.phases:
        assert [i.quantity for i in phase.items] == [by_month[phase.start.month]]
    assert result.kind == ("termination" if ended_by == len(changes) - 1 else "amendment")
    assert result.phases[-1].end == (date(2026, ended, 1) if ended else date(2027, 1, 1))


# ---------------------------------------------------------------------------------------------- lanes


def _change(order_id: str, contract: str | None, day: str, renews: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "Id": order_id,
        "ContractId": contract,
        "EffectiveDate": day,
        "OrderNumber": order_id,
    }
    if renews:
        row["Opportunity"] = {"SBQQ__RenewedContract__c": renews}
    return row


def test_a_contracts_changes_share_a_lane_in_date_order_and_other_contracts_run_beside_it():
    changes = [
        _change("o3", "A", "2026-05-01"),
        _change("o1", "B", "2026-02-01"),
        _change("o2", "A", "2026-03-01"),
        _change("o4", "C", "2027-01-01", renews="A"),  # a Renewal of A (its own new Contract C)
        _change("o5", None, "2026-01-01"),  # no contract: alone, refused
        _change("o6", "C", "2027-06-01"),  # an Amendment of the renewal's contract
    ]
    lanes = contract_lanes(changes, lambda row: row)
    assert sorted([r["Id"] for r in lane] for lane in lanes) == [["o1"], ["o2", "o3", "o4", "o6"], ["o5"]]

"""Contract histories in the fake org: the helpers tests use (create_contract, amend, renew,
terminate) write what CPQ writes and describe what should be billed; seed_contracts generates
realistic and flawed histories, deterministically and only when asked.

Expectations about the records are checked against the org itself with SOQL, so a history that
disagrees with what was written fails here."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise
from typing import Any

import pytest

from connector.sandbox.salesforce import seed
from connector.sandbox.salesforce.contracts import (
    FLAWS,
    ContractHistory,
    ItemInForce,
    Line,
    Phase,
    amend,
    create_contract,
    renew,
    terminate,
)
from connector.sandbox.salesforce.org import Org, SalesforceError

TODAY = date(2026, 6, 15)


@pytest.fixture
def org() -> Org:
    return Org()


@pytest.fixture
def account(org: Org) -> str:
    return org.insert("Account", {"Name": "Globex"})


def in_force_from_org(org: Org, contract_id: str, day: date) -> dict[str, float]:
    """Product -> quantity in force on `day`, summed from the contract's activated Order lines."""
    rows = org.query(
        "SELECT Quantity, Product2.Name FROM OrderItem "
        f"WHERE Order.ContractId = '{contract_id}' AND Order.StatusCode = 'Activated' "
        f"AND ServiceDate <= {day.isoformat()} AND (EndDate >= {day.isoformat()} OR EndDate = null)"
    ).records
    totals: dict[str, float] = {}
    for row in rows:
        name = row["Product2"]["Name"]
        totals[name] = totals.get(name, 0.0) + row["Quantity"]
    return {name: round(q, 2) for name, q in totals.items() if abs(q) > 1e-9}


def in_force_from_subscriptions(org: Org, contract_id: str, day: date) -> dict[str, float]:
    """The same from the contract's CPQ subscription records (SBQQ__StartDate__c/EndDate__c formulas)."""
    rows = org.query(
        "SELECT SBQQ__Quantity__c, SBQQ__Product__r.Name FROM SBQQ__Subscription__c "
        f"WHERE SBQQ__Contract__c = '{contract_id}' AND SBQQ__StartDate__c <= {day.isoformat()} "
        f"AND (SBQQ__EndDate__c >= {day.isoformat()} OR SBQQ__EndDate__c = null)"
    ).records
    totals: dict[str, float] = {}
    for row in rows:
        name = row["SBQQ__Product__r"]["Name"]
        totals[name] = totals.get(name, 0.0) + row["SBQQ__Quantity__c"]
    return {name: round(q, 2) for name, q in totals.items() if abs(q) > 1e-9}


def quantities(phase: Phase) -> dict[str, float]:
    return {name: item.quantity for name, item in phase.items.items()}


# ---------------------------------------------------------------- helpers
def test_issue_scenario_ten_seats_amended_terminated_and_renewed(org: Org, account: str) -> None:
    """10 seats for three months, 15 from month four, terminated in month nine; a second contract
    renewed for a second year at a new price."""
    h = create_contract(org, account, date(2025, 1, 1), [Line("Seats", 10, 20.0)])
    assert h.end == date(2025, 12, 31)
    amend(org, h, date(2025, 4, 1), {"Seats": 5})
    terminate(org, h, date(2025, 9, 1))
    assert [(p.start, p.end, quantities(p)) for p in h.phases()] == [
        (date(2025, 1, 1), date(2025, 3, 31), {"Seats": 10.0}),
        (date(2025, 4, 1), date(2025, 8, 31), {"Seats": 15.0}),
    ]
    assert h.expected_end == date(2025, 8, 31)
    assert in_force_from_org(org, h.contract_id, date(2025, 9, 1)) == {}
    assert in_force_from_org(org, h.contract_id, date(2025, 8, 31)) == {"Seats": 15.0}

    other = create_contract(org, account, date(2025, 1, 1), [Line("Seats", 10, 20.0)])
    renewal = renew(org, other, prices={"Seats": 25.0})
    assert (renewal.start, renewal.end, renewal.renewed_from) == (
        date(2026, 1, 1),
        date(2026, 12, 31),
        other.contract_id,
    )
    assert [(p.start, p.end, p.items) for p in other.life_phases()] == [
        (date(2025, 1, 1), date(2025, 12, 31), {"Seats": ItemInForce(10.0, 20.0, "Monthly")}),
        (date(2026, 1, 1), date(2026, 12, 31), {"Seats": ItemInForce(10.0, 25.0, "Monthly")}),
    ]
    assert not h.flaws and not other.flaws


def test_first_order_and_contract_are_written_as_cpq_contracts_them(org: Org, account: str) -> None:
    h = create_contract(org, account, date(2025, 2, 10), [Line("Seats", 10, 20.0), Line("Support", 1, 99.0)])
    contract = org.retrieve("Contract", h.contract_id)
    assert (contract["StartDate"], contract["ContractTerm"], contract["EndDate"]) == (
        "2025-02-10",
        12,
        "2026-02-09",
    )
    assert (contract["Status"], contract["SBQQ__Order__c"], contract["SBQQ__Evergreen__c"]) == (
        "Activated",
        h.first_order.id,
        False,
    )
    order = org.retrieve("Order", h.first_order.id)
    assert (order["Type"], order["Status"], order["ContractId"], order["SBQQ__Contracted__c"]) == (
        "New",
        "Activated",
        h.contract_id,
        True,
    )
    assert order["EffectiveDate"] == "2025-02-10" and order["EndDate"] == "2026-02-09"
    for line in h.first_order.lines:
        item = org.retrieve("OrderItem", line.id)
        assert (item["ServiceDate"], item["EndDate"], item["SBQQ__RevisedOrderProduct__c"]) == (
            "2025-02-10",
            "2026-02-09",
            None,
        )
        assert item["SBQQ__SubscriptionType__c"] == "Renewable" and item["SBQQ__ContractAction__c"] == "New"


def test_amendment_lines_are_deltas_on_the_original_line_and_co_terminate(org: Org, account: str) -> None:
    h = create_contract(org, account, date(2025, 1, 1), [Line("Seats", 10, 20.0), Line("Support", 1, 100.0)])
    up = amend(org, h, date(2025, 3, 15), {"Seats": 5})
    down = amend(org, h, date(2025, 5, 1), {"Seats": -3}, add=[Line("Analytics", 2, 15.0)])
    swap = amend(org, h, date(2025, 7, 1), prices={"Support": 120.0})
    order = org.retrieve("Order", up.id)
    assert (order["Type"], order["ContractId"], order["EffectiveDate"], order["EndDate"]) == (
        "Amendment",
        h.contract_id,
        "2025-03-15",
        "2025-12-31",
    )
    opportunity = org.retrieve("Opportunity", order["OpportunityId"])
    assert opportunity["SBQQ__AmendedContract__c"] == h.contract_id
    seats = h.first_order.lines[0].id
    written = [org.retrieve("OrderItem", line.id) for line in (*up.lines, *down.lines)]
    assert [
        (i["Quantity"], i["SBQQ__RevisedOrderProduct__c"], i["SBQQ__ContractAction__c"]) for i in written
    ] == [
        (5.0, seats, "Quantity Increase"),
        (-3.0, seats, "Quantity Decrease"),
        (2.0, None, "New"),
    ]
    assert all(i["EndDate"] == "2025-12-31" for i in written)
    support = h.first_order.lines[1].id
    swapped = [org.retrieve("OrderItem", line.id) for line in swap.lines]
    assert [(i["Quantity"], i["UnitPrice"], i["SBQQ__RevisedOrderProduct__c"]) for i in swapped] == [
        (-1.0, 100.0, support),
        (1.0, 120.0, None),
    ]
    for phase in h.phases():
        assert in_force_from_org(org, h.contract_id, phase.start) == quantities(phase)
        assert in_force_from_subscriptions(org, h.contract_id, phase.start) == quantities(phase)
    subscriptions = org.query(
        "SELECT SBQQ__Quantity__c, SBQQ__RevisedSubscription__r.SBQQ__Quantity__c, SBQQ__OrderProduct__c, "
        "SBQQ__StartDate__c, SBQQ__EndDate__c FROM SBQQ__Subscription__c "
        f"WHERE SBQQ__OrderProduct__c = '{up.lines[0].id}'"
    ).records
    assert [
        (
            r["SBQQ__Quantity__c"],
            r["SBQQ__RevisedSubscription__r"]["SBQQ__Quantity__c"],
            r["SBQQ__StartDate__c"],
            r["SBQQ__EndDate__c"],
        )
        for r in subscriptions
    ] == [(5.0, 10.0, "2025-03-15", "2025-12-31")]
    assert (
        org.retrieve("OrderItem", up.lines[0].id)["SBQQ__Subscription__c"] == h.subscriptions[up.lines[0].id]
    )
    assert h.quantities_on(date(2025, 7, 1)) == {
        "Seats": ItemInForce(12.0, 20.0, "Monthly"),
        "Support": ItemInForce(1.0, 120.0, "Monthly"),
        "Analytics": ItemInForce(2.0, 15.0, "Monthly"),
    }
    # a later change to the re-priced product revises the new line, not the zeroed one
    more = amend(org, h, date(2025, 9, 1), {"Support": 1})
    assert org.retrieve("OrderItem", more.lines[0].id)["SBQQ__RevisedOrderProduct__c"] == swap.lines[1].id
    assert h.quantities_on(date(2025, 9, 1))["Support"] == ItemInForce(2.0, 120.0, "Monthly")
    assert not h.flaws


def test_an_amendment_outside_the_contract_is_refused_by_salesforce(org: Org, account: str) -> None:
    h = create_contract(org, account, date(2025, 1, 1), [Line("Seats", 10, 20.0)])
    with pytest.raises(SalesforceError) as exc:
        amend(org, h, date(2026, 1, 1), {"Seats": 1})
    assert exc.value.error_code == "FIELD_INTEGRITY_EXCEPTION" and exc.value.fields == ["EffectiveDate"]
    with pytest.raises(ValueError, match="no line of 'Nope'"):
        amend(org, h, date(2025, 2, 1), {"Nope": 1})


def test_evergreen_contract_cancelled_by_a_zero_quantity_amendment(org: Org, account: str) -> None:
    h = create_contract(org, account, date(2025, 1, 1), [Line("Hosting", 3, 89.0)], term_months=None)
    contract = org.retrieve("Contract", h.contract_id)
    assert (contract["ContractTerm"], contract["EndDate"], contract["SBQQ__Evergreen__c"]) == (
        None,
        None,
        True,
    )
    item = org.retrieve("OrderItem", h.first_order.lines[0].id)
    assert (item["EndDate"], item["SBQQ__SubscriptionType__c"]) == (None, "Evergreen")
    assert h.phases() == [Phase(date(2025, 1, 1), None, {"Hosting": ItemInForce(3.0, 89.0, "Monthly")})]
    cancel = terminate(org, h, date(2026, 2, 10))
    assert org.retrieve("OrderItem", cancel.lines[0].id)["Quantity"] == -3.0
    assert h.expected_end == date(2026, 2, 9)
    assert h.phases() == [
        Phase(date(2025, 1, 1), date(2026, 2, 9), {"Hosting": ItemInForce(3.0, 89.0, "Monthly")})
    ]
    assert in_force_from_org(org, h.contract_id, date(2026, 2, 10)) == {}
    with pytest.raises(ValueError, match="evergreen"):
        renew(org, h)


@pytest.mark.parametrize("flaw", FLAWS)
def test_each_flaw_is_named_on_the_history(org: Org, account: str, flaw: str) -> None:
    status = "Draft" if flaw == "original_not_activated" else "Activated"
    h = create_contract(org, account, date(2025, 1, 1), [Line("Seats", 10, 20.0)], status=status)
    effective = date(2025, 5, 1)
    if flaw == "not_coterminous":
        order = amend(org, h, effective, {"Seats": 1}, end=date(2025, 11, 30))
        assert org.retrieve("OrderItem", order.lines[0].id)["EndDate"] == "2025-11-30"
    elif flaw == "currency_change":
        order = amend(org, h, effective, {"Seats": 1}, currency="EUR")
        assert org.retrieve("Order", order.id)["CurrencyIsoCode"] == "EUR"
    elif flaw == "interval_change":
        order = amend(org, h, effective, add=[Line("Seats (Annual)", 1, 200.0, "Annual")])
    elif flaw == "overlapping_renewal":
        renew(org, h)
        order = renew(org, h).first_order
    elif flaw == "unknown_revised_line":
        other = create_contract(org, account, date(2025, 1, 1), [Line("Support", 1, 99.0)])
        order = amend(org, h, effective, {other.first_order.lines[0].id: 1})
        assert (
            org.retrieve("OrderItem", order.lines[0].id)["SBQQ__RevisedOrderProduct__c"]
            == other.originals["Support"]
        )
    else:
        order = amend(org, h, effective, {"Seats": 1})
        assert org.retrieve("Order", h.first_order.id)["Status"] == "Draft"
    assert h.flaws == {flaw} and order.flaws == {flaw}


# ---------------------------------------------------------------- the seed
def describe(histories: list[ContractHistory]) -> list[Any]:
    """Everything but ids: what determinism is about."""
    return [
        (
            h.start,
            h.term_months,
            h.currency,
            sorted(h.flaws),
            [
                (
                    o.type,
                    o.effective,
                    o.status,
                    [(x.product, x.quantity, x.unit_price, x.end) for x in o.lines],
                )
                for o in h.orders
            ],
            [(p.start, p.end, p.items) for p in h.life_phases()],
        )
        for h in histories
    ]


@pytest.fixture(scope="module")
def seeded() -> tuple[Org, list[ContractHistory]]:
    org = Org()
    return org, seed.seed_contracts(org, 40, seed=7, today=TODAY)


def test_seed_is_deterministic_and_off_by_default(seeded: tuple[Org, list[ContractHistory]]) -> None:
    again = seed.seed_contracts(Org(), 40, seed=7, today=TODAY)
    assert describe(again) == describe(seeded[1])
    assert describe(seed.seed_contracts(Org(), 40, seed=8, today=TODAY)) != describe(seeded[1])
    assert "Contract" not in seed.counts(seed.generate(20, 20, seed=1, today=TODAY))


def test_seed_covers_the_lifecycle_and_every_flaw(seeded: tuple[Org, list[ContractHistory]]) -> None:
    _, histories = seeded
    assert {f for h in histories for f in h.flaws} == set(FLAWS)
    assert all(len(h.flaws) <= 1 for h in histories)
    good = [h for h in histories if not h.flaws]
    assert any(h.evergreen and h.terminated_on for h in good)
    assert any(h.renewals for h in good) and any(not h.evergreen and h.terminated_on for h in good)
    amendments = [o.effective for h in good for o in h.amendments]
    assert any(d < TODAY for d in amendments) and any(d > TODAY for d in amendments)
    assert any(len(h.amendments) >= 2 for h in good)


def test_seeded_histories_match_the_org_and_keep_cpq_invariants(
    seeded: tuple[Org, list[ContractHistory]],
) -> None:
    org, histories = seeded
    for h in histories + [r for history in histories for r in history.renewals]:
        clean = not h.flaws
        for order in h.amendments:
            if clean:
                assert all(line.end == h.end for line in order.lines), h.contract_id  # co-terminated
                assert order.currency == h.currency
        days = sorted({line.start for line in h.lines()} | {h.start})
        for day in days:
            in_force = h.quantities_on(day)
            assert {k: v.quantity for k, v in in_force.items()} == in_force_from_org(org, h.contract_id, day)
            if h.first_order.activated:
                assert in_force_from_subscriptions(org, h.contract_id, day) == in_force_from_org(
                    org, h.contract_id, day
                )
            if clean:
                assert all(item.quantity > 0 for item in in_force.values()), (h.contract_id, day)
        phases = h.phases()
        if clean and phases:
            assert phases[0].start == h.start
            assert phases[-1].end == h.expected_end
            assert all(b.start == a.end + timedelta(days=1) for a, b in pairwise(phases))
        for renewal in h.renewals:
            assert h.end is not None and renewal.start == h.end + timedelta(days=1)
            opportunity = org.retrieve("Opportunity", renewal.first_order.opportunity_id or "")
            assert opportunity["SBQQ__RenewedContract__c"] == h.contract_id


def test_seed_in_an_org_without_multi_currency() -> None:
    org = Org()
    org.set_currency_mode("EUR")
    histories = seed.seed_contracts(org, 12, seed=3, today=TODAY)
    assert all(h.currency is None for h in histories)
    assert "currency_change" not in {f for h in histories for f in h.flaws}
    assert org.count("Contract") >= 12

"""The one schedule update Stripe accepts for a planned contract change, given the live schedule."""

from __future__ import annotations

from datetime import date
from typing import Any

from connector.sync.order_rules import OrderRulesConfig
from connector.sync.order_rules.contract import ContractPlan, Term, plan_contract
from connector.sync.order_rules.dates import midnight_utc
from connector.sync.order_rules.schedule_update import (
    CancelNow,
    LiveSchedule,
    Refused,
    UpdatePhases,
    schedule_update,
)
from tests.unit.test_contract_plan import NEW, line, order

CONFIG = OrderRulesConfig(today=date(2026, 1, 1))
PRICES = {"802000000000000001": "price_a", "802000000000000012": "price_b"}
META = {"salesforce_order_id": "801000000000000001"}


def ts(day: str) -> int:
    return midnight_utc(date.fromisoformat(day))


def planned(*orders: dict[str, Any]) -> ContractPlan:
    result = plan_contract([Term("800000000000000000", (NEW, *orders))], orders[-1]["Id"], CONFIG)
    assert isinstance(result, ContractPlan)
    return result


def live(current_start: str | None = "2026-01-01", status: str = "active") -> LiveSchedule:
    return LiveSchedule(
        id="sub_sched_1",
        status=status,
        current_start=ts(current_start) if current_start else None,
        first_start=ts("2026-01-01"),
        current_items=({"price": "price_a", "quantity": 10},),
        settings={"collection_method": "send_invoice", "invoice_settings": {"days_until_due": 30}},
    )


def update(plan: ContractPlan, schedule: LiveSchedule, now: str) -> UpdatePhases | CancelNow | Refused:
    return schedule_update(plan, schedule, ts(now) + 3600, PRICES, META, "create_prorations")


def test_a_future_amendment_keeps_the_current_phase_and_adds_one_from_its_date() -> None:
    result = update(
        planned(order(2, "Amendment", "2026-04-01", line(11, 5, revises=1))), live(), "2026-02-10"
    )
    assert isinstance(result, UpdatePhases)
    phases = result.params["phases"]
    assert [(p.get("start_date"), p["end_date"], [i["quantity"] for i in p["items"]]) for p in phases] == [
        (ts("2026-01-01"), ts("2026-04-01"), [10]),
        (None, ts("2027-01-01"), [15]),
    ]
    assert result.params["end_behavior"] == "cancel"
    assert all(p["collection_method"] == "send_invoice" for p in phases)
    assert phases[1]["metadata"]["salesforce_phase_order_id"] == "801000000000000002"


def test_a_change_dated_earlier_in_the_current_phase_starts_now_and_never_rewrites_the_past() -> None:
    plan = planned(order(2, "Amendment", "2026-02-01", line(11, 5, revises=1)))
    result = update(plan, live(), "2026-02-10")
    assert isinstance(result, UpdatePhases)
    first, second = result.params["phases"]
    assert (first["start_date"], first["end_date"], first["items"]) == (
        ts("2026-01-01"),
        "now",
        [{"price": "price_a", "quantity": 10}],
    )
    assert second["items"][0]["quantity"] == 15 and "start_date" not in second
    # the same plan after the current phase moved past its date: it still starts now, and the
    # phase already billed (from 2026-03-01) is kept as it is, ending now
    later = update(plan, live("2026-03-01"), "2026-03-10")
    assert isinstance(later, UpdatePhases)
    kept, changed = later.params["phases"]
    assert (kept["start_date"], kept["end_date"]) == (ts("2026-03-01"), "now")
    assert kept["items"] == [{"price": "price_a", "quantity": 10}] and changed["items"][0]["quantity"] == 15


def test_a_same_day_change_replaces_the_current_phases_items() -> None:
    plan = planned(order(2, "Amendment", "2026-02-10", line(11, 5, revises=1)))
    result = update(plan, live("2026-02-10"), "2026-02-10")
    assert isinstance(result, UpdatePhases)
    [only] = result.params["phases"]
    assert only["start_date"] == ts("2026-02-10") and only["items"][0]["quantity"] == 15


def test_a_termination_dated_today_or_earlier_cancels_now_and_a_later_one_ends_the_schedule() -> None:
    stop = planned(order(2, "Amendment", "2026-03-01", line(11, -10, revises=1)))
    assert isinstance(update(stop, live(), "2026-03-05"), CancelNow)
    later = update(stop, live(), "2026-02-05")
    assert isinstance(later, UpdatePhases)
    assert later.params["phases"][-1]["end_date"] == ts("2026-03-01")
    assert later.params["end_behavior"] == "cancel"


def test_a_schedule_stripe_ended_is_never_changed() -> None:
    result = update(
        planned(order(2, "Amendment", "2026-04-01", line(11, 5, revises=1))),
        live(status="canceled"),
        "2026-02-01",
    )
    assert isinstance(result, Refused) and result.code == "schedule_ended"


def test_a_schedule_not_started_gets_every_phase_from_its_start() -> None:
    result = update(
        planned(order(2, "Amendment", "2026-04-01", line(11, 5, revises=1))),
        live(None, status="not_started"),
        "2025-12-01",
    )
    assert isinstance(result, UpdatePhases)
    assert [p.get("start_date") for p in result.params["phases"]] == [ts("2026-01-01"), None]

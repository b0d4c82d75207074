"""The catch-up of a contract change dated before it reached Stripe: pure arithmetic on phases."""

from __future__ import annotations

from datetime import date

from connector.sync.order_rules.catch_up import catch_up
from connector.sync.order_rules.contract import Phase, PhaseItem
from connector.sync.order_rules.dates import midnight_utc
from connector.sync.order_rules.specs import LinePrice, PriceSpec, Recurrence

MONTHLY = Recurrence("month", 1)
METERED = Recurrence("month", 1, "metered")


def item(
    quantity: int | None, unit: int = 1000, line: str = "802A", recurrence: Recurrence = MONTHLY
) -> PhaseItem:
    spec = PriceSpec("01tSEATS", "usd", unit, None, recurrence)
    return PhaseItem("802A", LinePrice(line, spec, None, "OrderItem", line), quantity)


def phase(start: str, end: str | None, *items: PhaseItem, order: str = "801") -> Phase:
    return Phase(date.fromisoformat(start), date.fromisoformat(end) if end else None, items, order)


def ts(day: str) -> int:
    return midnight_utc(date.fromisoformat(day))


BEFORE = [phase("2026-01-01", "2027-01-01", item(10))]


def test_an_increase_owes_the_new_seats_for_each_period_share_since_its_date() -> None:
    after = [
        phase("2026-01-01", "2026-02-16", item(10)),
        phase("2026-02-16", "2027-01-01", item(15), order="802"),
    ]
    [owed] = catch_up(BEFORE, after, date(2026, 2, 16), ts("2026-04-01"), date(2026, 1, 1), MONTHLY)
    # 5 seats x 10.00: 13 of February's 28 days, then all of March
    assert owed.amount == round(5000 * 13 / 28 + 5000)
    assert (owed.since, owed.until, owed.quantity_change) == (ts("2026-02-16"), ts("2026-04-01"), 5)
    assert owed.description({"01tSEATS": "Seats"}, "00000102").startswith(
        "Seats +5 from 2026-02-16 to 2026-04-01"
    )


def test_a_decrease_is_a_credit_and_a_price_change_bills_the_difference() -> None:
    after = [
        phase("2026-01-01", "2026-03-01", item(10)),
        phase("2026-03-01", "2027-01-01", item(7), order="802"),
    ]
    [credit] = catch_up(BEFORE, after, date(2026, 3, 1), ts("2026-03-11"), date(2026, 1, 1), MONTHLY)
    assert credit.amount == -round(3000 * 10 / 31)
    repriced = [
        phase("2026-01-01", "2026-03-01", item(10)),
        phase("2026-03-01", "2027-01-01", item(10, unit=1200, line="802B"), order="802"),
    ]
    owed = catch_up(BEFORE, repriced, date(2026, 3, 1), ts("2026-04-01"), date(2026, 1, 1), MONTHLY)
    assert sorted(o.amount for o in owed) == [-10000, 12000]


def test_nothing_is_owed_for_a_change_dated_now_or_later_nor_for_metered_items() -> None:
    after = [
        phase("2026-01-01", "2026-03-01", item(10)),
        phase("2026-03-01", "2027-01-01", item(15), order="802"),
    ]
    assert catch_up(BEFORE, after, date(2026, 3, 1), ts("2026-03-01"), date(2026, 1, 1), MONTHLY) == []
    metered_before = [phase("2026-01-01", "2027-01-01", item(None, recurrence=METERED))]
    metered_after = [
        phase("2026-01-01", "2026-03-01", item(None, recurrence=METERED)),
        phase("2026-03-01", "2027-01-01", item(None, recurrence=METERED), order="802"),
    ]
    assert (
        catch_up(metered_before, metered_after, date(2026, 3, 1), ts("2026-04-01"), date(2026, 1, 1), METERED)
        == []
    )

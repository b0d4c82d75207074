"""`amendment_proration: cpq_amounts`: an Amendment line's CPQ figures read and checked, and the
one-time item billing CPQ's amount for the time Stripe does not bill the new quantity. Pure."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from connector.sync.order_rules.catch_up import cpq_stub, first_billed
from connector.sync.order_rules.config import CpqAmountFields
from connector.sync.order_rules.cpq_amounts import CpqLine, cpq_lines, months_between
from connector.sync.order_rules.dates import add_months, midnight_utc
from connector.sync.order_rules.specs import LinePrice, PriceSpec, Recurrence
from connector.sync.order_rules.validation import Collector

MONTHLY = Recurrence("month", 1)
QUARTERLY = Recurrence("month", 3)
METERED = Recurrence("month", 1, "metered")
FIELDS = CpqAmountFields()
START = date(2026, 1, 1)  # the contract's first day
END = date(2027, 1, 1)  # its end (exclusive): a 12-month term


def price(line: str = "802B", recurrence: Recurrence | None = MONTHLY, currency: str = "usd") -> LinePrice:
    spec = PriceSpec("01tSEATS", currency, 1000, None, recurrence)
    return LinePrice(line, spec, None, "OrderItem", line)


def quote(total: Any = 425.0, multiplier: Any = 8.5, pricing: Any = 1.0) -> dict[str, Any]:
    return {
        "SBQQ__NetTotal__c": total,
        "SBQQ__ProrateMultiplier__c": multiplier,
        "SBQQ__DefaultSubscriptionTerm__c": pricing,
    }


def amendment(*lines: dict[str, Any]) -> dict[str, Any]:
    return {
        "Id": "801AMEND",
        "OrderNumber": "00000105",
        "EffectiveDate": "2026-04-16",
        "EndDate": "2026-12-31",
        "OrderItems": {"records": list(lines)},
    }


def line(quantity: float = 5, ql: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "Id": "802B",
        "OrderItemNumber": "0000000007",
        "Quantity": quantity,
        "ServiceDate": "2026-04-16",
        "EndDate": "2026-12-31",
        "SBQQ__RevisedOrderProduct__c": "802A",
        "SBQQ__QuoteLine__r": quote() if ql is None else ql,
        **fields,
    }


def read(order: dict[str, Any], prices: list[LinePrice] | None = None) -> tuple[list[CpqLine], Collector]:
    out = Collector("801AMEND", "00000105")
    return cpq_lines(order, prices or [price()], FIELDS, out), out


def ts(day: date) -> int:
    return midnight_utc(day)


def test_months_count_whole_months_then_the_days_left_as_a_share_of_their_month() -> None:
    assert months_between(date(2026, 1, 1), date(2027, 1, 1)) == 12
    assert months_between(date(2026, 4, 16), date(2026, 5, 1)) == Decimal(15) / Decimal(30)
    assert months_between(date(2026, 1, 31), date(2026, 2, 28)) == 1  # clamped, as Stripe's anchors
    assert months_between(date(2026, 5, 1), date(2026, 4, 1)) == 0


def test_an_amendment_line_is_read_with_its_revised_line_change_and_term() -> None:
    [found], out = read(amendment(line()))
    assert not out.reasons
    assert (found.root_id, found.quantity_change, found.net_total) == ("802A", 5, Decimal("425.0"))
    assert found.term_months == Decimal("8.5") and found.end == END
    assert found.start == date(2026, 4, 16)


def test_a_blank_default_subscription_term_counts_as_twelve_months_as_cpq_does() -> None:
    # 8.5 months is 0.7083 of a 12-month pricing period
    [found], out = read(amendment(line(ql=quote(multiplier=Decimal("0.70833"), pricing=None))))
    assert not out.reasons and abs(found.term_months - Decimal("8.5")) < Decimal("0.001")


def test_missing_figures_refuse_naming_the_line_and_the_field() -> None:
    found, out = read(amendment(line(ql=quote(total=None, multiplier=0))))
    assert found == []
    messages = [r.message() for r in out.reasons]
    assert [r.code for r in out.reasons] == ["cpq_amount_missing", "cpq_amount_missing"]
    assert "OrderItem 802B (0000000007) SBQQ__QuoteLine__r.SBQQ__NetTotal__c is empty" in messages[0]
    assert "SBQQ__QuoteLine__r.SBQQ__ProrateMultiplier__c is 0" in messages[1]
    assert all("Fix: recalculate the amendment quote in CPQ" in m for m in messages)
    assert "amendment_proration is cpq_amounts and there is no CPQ amount to bill" in messages[0]


def test_a_line_without_a_quote_line_refuses_too() -> None:
    rec = line()
    del rec["SBQQ__QuoteLine__r"]
    _, out = read(amendment(rec))
    assert {r.field for r in out.reasons} == {FIELDS.net_total, FIELDS.prorate_multiplier}


def test_an_amount_of_the_wrong_sign_or_another_term_is_inconsistent() -> None:
    _, out = read(amendment(line(ql=quote(total=-425.0))))
    assert [r.code for r in out.reasons] == ["cpq_amount_inconsistent"]
    assert "opposite sign" in out.reasons[0].problem
    _, out = read(amendment(line(ql=quote(multiplier=12))))  # priced for a year, runs 8.5 months
    [reason] = out.reasons
    assert reason.field == FIELDS.prorate_multiplier and "CPQ priced 12 months" in reason.problem
    _, out = read(amendment(line(ql=quote(pricing=-1))))
    assert [r.field for r in out.reasons] == [FIELDS.pricing_term]


def test_usage_one_time_and_unchanged_lines_have_nothing_to_prorate() -> None:
    no_figures = line(ql={})
    assert read(amendment(no_figures), [price(recurrence=METERED)]) == ([], Collector("801AMEND", "00000105"))
    assert read(amendment(no_figures), [price(recurrence=None)])[0] == []
    assert read(amendment(line(quantity=0, ql={})))[1].reasons == []


def cpq_line(
    start: date, change: int = 5, total: Decimal | None = None, term: Decimal | None = None,
    end: date | None = END, unit: Decimal = Decimal(10),
) -> CpqLine:  # fmt: skip
    months = term if term is not None else months_between(start, end or END)
    amount = total if total is not None else unit * months * change
    return CpqLine(price(), "802A", change, amount, months, start, end)


def test_a_change_dated_ahead_mid_period_bills_cpqs_amount_up_to_the_next_boundary_once() -> None:
    dated = date(2026, 4, 16)
    [item] = cpq_stub([cpq_line(dated)], ts(date(2026, 4, 6)), START, MONTHLY)
    assert (item.since, item.until) == (ts(dated), ts(date(2026, 5, 1)))
    # CPQ counts 8 whole months from April 16 and 16 of 31 days to January 1: 8 16/31 months.
    # Stripe bills the 8 from May 1; the stub is the rest: 5 seats x 10.00 x 16/31
    assert item.amount == 2581
    assert item.source == "cpq" and item.quantity_change == 5
    assert "CPQ's prorated amount" in item.description({"01tSEATS": "Seats"}, "00000105")


def test_cpqs_own_precision_rules_the_stub_not_stripes_seconds() -> None:
    # CPQ with Monthly precision charges a partial month as a whole one: 9 months for 8.5
    [item] = cpq_stub([cpq_line(date(2026, 4, 16), term=Decimal(9))], ts(date(2026, 4, 6)), START, MONTHLY)
    assert item.amount == 5000  # the whole of CPQ's ninth month


def test_a_change_dated_before_now_bills_from_its_date_to_the_boundary_after_now() -> None:
    dated, now = date(2026, 2, 6), ts(date(2026, 3, 11))
    [item] = cpq_stub([cpq_line(dated)], now, START, MONTHLY)
    assert item.until == ts(date(2026, 4, 1))
    # CPQ: 10 26/31 months from February 6; Stripe bills the 9 from April 1: the stub is 1 26/31
    assert item.amount == round(5000 * (1 + Decimal(26) / 31))


def test_a_change_on_a_period_boundary_ahead_owes_nothing_and_a_decrease_is_a_credit() -> None:
    assert cpq_stub([cpq_line(date(2026, 5, 1))], ts(date(2026, 4, 6)), START, MONTHLY) == []
    [credit] = cpq_stub([cpq_line(date(2026, 4, 16), change=-3)], ts(date(2026, 4, 6)), START, MONTHLY)
    assert credit.amount == -round(3000 * Decimal(16) / 31)


def test_quarterly_billing_waits_for_the_quarter_boundary() -> None:
    assert first_billed(date(2026, 2, 10), ts(date(2026, 1, 5)), START, QUARTERLY) == ts(date(2026, 4, 1))
    assert first_billed(date(2026, 1, 10), ts(date(2026, 4, 1)), START, QUARTERLY) == ts(date(2026, 7, 1))


def test_an_evergreen_line_bills_its_share_of_one_pricing_period() -> None:
    evergreen = cpq_line(date(2026, 4, 16), total=Decimal(50), term=Decimal(1), end=None)
    [item] = cpq_stub([evergreen], ts(date(2026, 4, 6)), START, MONTHLY)
    assert item.amount == 2500  # 15 of April's 30 days: CPQ's 50.00 for one month, halved


@given(
    offset=st.integers(min_value=0, max_value=300),
    change=st.integers(min_value=-40, max_value=40).filter(bool),
    unit=st.integers(min_value=1, max_value=100_000),
    late=st.integers(min_value=0, max_value=60),
)
def test_the_stub_and_stripes_periods_add_up_to_cpqs_amount(
    offset: int, change: int, unit: int, late: int
) -> None:
    """Whatever the date and however late it reaches Stripe: CPQ's one-time item plus what Stripe
    bills the change from the boundary on (the unit amount each period to the term's end) is CPQ's
    amount for the change, to the cent. Nothing is billed twice or left out."""
    dated = START + timedelta(days=offset)
    rate = Decimal(unit) / 100  # CPQ's price per month = the Stripe price's unit amount
    months = months_between(dated, END)
    total = (rate * months * change).quantize(Decimal("0.01"))
    now = ts(dated) + late * 86400 - 3600
    owed = cpq_stub([cpq_line(dated, change, total, months)], now, START, MONTHLY)
    first = first_billed(dated, now, START, MONTHLY)
    periods = [k for k in range(13) if ts(add_months(START, k)) >= first]  # Stripe bills these
    stripe = unit * change * len(periods[:-1])  # ... up to the term's end (the 13th boundary)
    stub = sum(item.amount for item in owed)
    assert abs(stub + stripe - int(total * 100)) <= 1

"""Calendar arithmetic the fake org shares: month steps and a contract's end date."""

from __future__ import annotations

import calendar
from datetime import date, timedelta


def add_months(day: date, months: int) -> date:
    """`day` moved by whole months, clamped to the last day of a shorter month (Jan 31 + 1 = Feb 28)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def contract_end(start: date, term_months: int) -> date:
    """The last day of a term of `term_months` starting on `start` (Jan 1 + 12 months -> Dec 31):
    Contract.EndDate as Salesforce computes it from StartDate and ContractTerm."""
    return add_months(start, term_months) - timedelta(days=1)


def cpq_months(start: date, last: date) -> float:
    """A term from `start` to `last` (inclusive) in months as CPQ prices it with its Monthly + Daily
    prorate precision (Salesforce Help, "Subscription Prorate Precision"): whole calendar months,
    then the days left at 12/365 of a month each."""
    end = last + timedelta(days=1)
    whole = (end.year - start.year) * 12 + end.month - start.month
    while whole > 0 and add_months(start, whole) > end:
        whole -= 1
    return whole + (end - add_months(start, whole)).days * 12 / 365

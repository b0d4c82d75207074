"""Calendar dates as Stripe wants them: midnight UTC timestamps, month arithmetic that clamps."""

from __future__ import annotations

import calendar
from datetime import date
from typing import Any


def midnight_utc(day: date) -> int:
    return calendar.timegm(day.timetuple())


def add_months(day: date, months: int) -> date:
    """Calendar month arithmetic that clamps to the month's last day (Jan 31 + 1 -> Feb 28),
    as Stripe does for monthly anchors."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def parse_date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None

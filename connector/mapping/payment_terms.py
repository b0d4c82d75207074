"""Payment terms in the spellings Salesforce orgs use, read once for the mapping and the Order
rules alike: a term the mapping accepts is never refused later by the rules.

Stripe's `days_until_due` takes 0 to 730 days.
"""

from __future__ import annotations

import re
from typing import Any

MAX_DAYS = 730
_HUGE = 10**6  # days beyond any payment term, shown as "more than 730"
ACCEPTED = "'Due on Receipt', 'Net 30', 'Net30', 'Net 30 days', '30 days' or a whole number of days"

_NET = re.compile(r"(?i)^net(?:\s*|-)(\d+)(?:\s*days?)?$")
_DAYS = re.compile(r"(?i)^(\d+)(?:\s*days?)?$")
_NOW = re.compile(r"(?i)^(?:(?:due\s+)?(?:on|upon)\s+receipt|immediate(?:ly)?)$")


class PaymentTermError(ValueError):
    """A value that is not a payment term; `problem` and `fix` are for the record's error."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem} ({fix})")
        self.problem = problem
        self.fix = fix


def parse_payment_term(value: Any) -> int | None:
    """Days until an invoice is due: 'Net 30 days' -> 30, 'Due on Receipt' -> 0, 45 -> 45;
    None for a blank value (no term). Raises PaymentTermError for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    days: int | None = None
    if isinstance(value, bool):
        days = None
    elif isinstance(value, int):
        days = value
    elif isinstance(value, float) and value.is_integer():
        days = int(value)
    elif isinstance(value, str):
        text = " ".join(value.split())
        if _NOW.match(text):
            days = 0
        elif match := _NET.match(text) or _DAYS.match(text):
            digits = match.group(1).lstrip("0") or "0"
            # int() refuses strings of over 4,300 digits; over 6 is out of range anyway.
            days = int(digits) if len(digits) <= 6 else _HUGE
    if days is None:
        raise PaymentTermError(f"unknown payment term {value!r}", f"use {ACCEPTED}")
    if not 0 <= days <= MAX_DAYS:
        # str() of an int of over 4,300 digits raises too.
        shown = str(days) if abs(days) < _HUGE else f"more than {MAX_DAYS}" if days > 0 else "fewer than 0"
        raise PaymentTermError(
            f"payment term of {shown} days is out of range", f"Stripe allows 0 to {MAX_DAYS} days"
        )
    return days

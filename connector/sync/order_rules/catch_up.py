"""What a contract change dated before it reached Stripe owes for the time in between. Pure.

Stripe never starts a schedule phase in the past: a change dated before now takes effect now,
and Stripe's own proration covers only the rest of the period from now. The time from the change's
date to now is billed here, as one invoice item per changed item on the subscription's next
invoice: (quantity after − quantity before) × unit amount × the share of each billing period
that time covers, per second as Stripe prorates, billing periods counted on the contract's
calendar (from its first day). A decrease is a credit (a negative amount). Metered items bill by
usage, not quantity, and owe nothing here.

With `amendment_proration: cpq_amounts` the same items bill CPQ's own figures instead
(`cpq_stub`): the change goes to Stripe without proration, so Stripe bills the new quantity only
from the first period boundary after the change reaches it, and the time before that boundary
(from the change's date) is billed as CPQ priced it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from typing import Literal

from connector.sync.money import minor_unit_exponent
from connector.sync.order_rules.contract import Phase, PhaseItem
from connector.sync.order_rules.cpq_amounts import CpqLine, months_between
from connector.sync.order_rules.dates import add_months, midnight_utc
from connector.sync.order_rules.specs import LinePrice, Recurrence

Key = tuple[str, str]  # (the line first sold, the price's spec key)


@dataclass(frozen=True)
class CatchUp:
    """One invoice item: what one item of the contract owes (or is owed) for [since, until)."""

    price: LinePrice  # the line whose price it bills (its product, currency, amount)
    root_id: str
    amount: int  # minor units; negative: a credit
    since: int
    until: int
    quantity_change: int  # the change in force over most of the time (for the description)
    source: Literal["catch_up", "cpq"] = "catch_up"  # from Stripe's unit amounts, or CPQ's figures

    def summary(self, names: Mapping[str, str]) -> str:
        name = names.get(self.price.spec.product_sf_id, self.price.spec.product_sf_id)
        return f"{name} {self.quantity_change:+d} from {_day(self.since)} to {_day(self.until)}"

    def description(self, names: Mapping[str, str], order_label: str) -> str:
        why = "CPQ's prorated amount" if self.source == "cpq" else "dated before it reached Stripe"
        return f"{self.summary(names)}: Order {order_label}, {why}"


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def _at(phases: Sequence[Phase], ts: int) -> dict[Key, PhaseItem]:
    for phase in phases:
        if midnight_utc(phase.start) <= ts and (phase.end is None or ts < midnight_utc(phase.end)):
            return {(item.root_id, item.price.spec.key()): item for item in phase.items}
    return {}


def _unit(item: PhaseItem) -> Decimal:
    spec = item.price.spec
    return (
        Decimal(spec.unit_amount) if spec.unit_amount is not None else Decimal(spec.unit_amount_decimal or 0)
    )


def _boundaries(origin: date, recurrence: Recurrence, until: int) -> list[int]:
    months = recurrence.interval_count * (12 if recurrence.interval == "year" else 1)
    out, k = [midnight_utc(origin)], 1
    while out[-1] <= until:
        out.append(midnight_utc(add_months(origin, k * months)))
        k += 1
    return out


def catch_up(
    before: Sequence[Phase],
    after: Sequence[Phase],
    since: date,
    until: int,
    origin: date,
    recurrence: Recurrence,
) -> list[CatchUp]:
    """The items `after` bills differently from `before` over [since, until), each as one amount."""
    start = midnight_utc(since)
    if until <= start:
        return []
    bounds = _boundaries(origin, recurrence, until)
    cuts = {start, until}
    cuts |= {b for b in bounds if start < b < until}
    for phase in (*before, *after):
        for day in (phase.start, phase.end):
            if day is not None and start < midnight_utc(day) < until:
                cuts.add(midnight_utc(day))
    points = sorted(cuts)
    owed: dict[Key, Decimal] = {}
    change: dict[Key, tuple[int, int]] = {}  # key -> (seconds, quantity change) of its longest stretch
    items: dict[Key, PhaseItem] = {}
    for lo, hi in pairwise(points):
        period_start = max(b for b in bounds if b <= lo)
        period_end = min(b for b in bounds if b > lo)
        share = Decimal(hi - lo) / Decimal(period_end - period_start)
        old, new = _at(before, lo), _at(after, lo)
        for key in old.keys() | new.keys():
            was, now = old.get(key), new.get(key)
            item = now or was
            assert item is not None
            if item.quantity is None and (was is None or was.quantity is None):
                continue  # metered: usage, not quantity
            delta = (now.quantity or 0 if now else 0) - (was.quantity or 0 if was else 0)
            if not delta:
                continue
            items[key] = item
            owed[key] = owed.get(key, Decimal(0)) + delta * _unit(item) * share
            if hi - lo > change.get(key, (0, 0))[0]:
                change[key] = (hi - lo, delta)
    out = []
    for key, amount in owed.items():
        minor = int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        if minor:
            out.append(CatchUp(items[key].price, key[0], minor, start, until, change[key][1]))
    return sorted(out, key=lambda c: (c.root_id, c.price.order_item_id))


def first_billed(start: date, now: int, origin: date, recurrence: Recurrence) -> int:
    """When Stripe first bills a change dated `start` that it applies without proration: the first
    period boundary at or after its date (a later date: the phase starts then), or after now (a
    date today or earlier: the phase starts now, and the invoice of the period under way is made)."""
    at = midnight_utc(start)
    if at > now:
        return min(b for b in _boundaries(origin, recurrence, at) if b >= at)
    return min(b for b in _boundaries(origin, recurrence, now) if b > now)


def cpq_stub(lines: Sequence[CpqLine], now: int, origin: date, recurrence: Recurrence) -> list[CatchUp]:
    """CPQ's amount for the time Stripe does not bill each line's change: from its date to the
    first boundary Stripe bills the new quantity (`first_billed`). CPQ's net total covers the
    line's whole term; what Stripe bills from that boundary to the term's end is taken off at CPQ's
    own rate (net total / term months), so the one-time item and Stripe's periods add up to CPQ's
    amount, its prorate precision included. An evergreen line: its share of one pricing period."""
    out = []
    for line in lines:
        until = first_billed(line.start, now, origin, recurrence)
        until_day = datetime.fromtimestamp(until, UTC).date()
        if line.end is not None:
            stub = max(line.term_months - months_between(until_day, line.end), Decimal(0))
        else:
            stub = months_between(line.start, until_day)
        amount = line.net_total * stub / line.term_months * _minor(line.price)
        minor = int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        if minor:
            since = midnight_utc(line.start)
            out.append(CatchUp(line.price, line.root_id, minor, since, until, line.quantity_change, "cpq"))
    return sorted(out, key=lambda c: (c.root_id, c.price.order_item_id))


def _minor(price: LinePrice) -> Decimal:
    """Minor units per major unit of the price's currency (CPQ's figures are in major units)."""
    return Decimal(10) ** minor_unit_exponent(price.spec.currency)

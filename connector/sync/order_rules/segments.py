"""MDQ (segmented) lines: one OrderItem per segment of a product (Year 1, Year 2, ...), sharing a
segment key. Pure: check that each key's segments tile the Order's term and split the term into
the phases of one Stripe subscription schedule (a boundary at every segment start).

CPQ writes `SBQQ__SegmentKey__c` (shared by a product line's segments), `SBQQ__SegmentIndex__c`,
`SBQQ__SegmentLabel__c` and `SBQQ__DimensionType__c` (Year, Quarter, Month, Custom, One-time) on each
segment's OrderItem, with the segment's own ServiceDate/EndDate, quantity and price. Like Stripe's
own CPQ connector, custom segments are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from connector.sync.order_rules.dates import add_months, parse_date
from connector.sync.order_rules.fields import SEGMENT_LINE_FIELDS
from connector.sync.order_rules.validation import Collector, Line

SEGMENT_KEY, SEGMENT_INDEX, SEGMENT_LABEL, DIMENSION_TYPE = SEGMENT_LINE_FIELDS
ONE_DAY = timedelta(days=1)
BY_HAND = "change MDQ contracts in Stripe by hand"


def segment_key(rec: Mapping[str, Any]) -> str | None:
    key = rec.get(SEGMENT_KEY)
    return str(key) if key not in (None, "") else None


def has_segments(records: Sequence[Mapping[str, Any]]) -> bool:
    return any(segment_key(rec) for rec in records)


@dataclass(frozen=True)
class SegmentPhase:
    """One phase of the schedule: [start, end) with the line ids billed in it, in line order."""

    start: date
    end: date
    line_ids: tuple[str, ...]


def _index(line: Line) -> tuple[date, str]:
    return (parse_date(line.record.get("ServiceDate")) or date.min, str(line.record.get(SEGMENT_INDEX) or ""))


def check_segments(
    lines: list[Line],
    start: date | None,
    end_exclusive: date | None,
    trial: date | None,
    config_today: date,
    out: Collector,
) -> dict[str, list[Line]]:
    """The segmented lines per key, in date order, refusing (into `out`) whatever the schedule cannot
    bill exactly: custom or one-time segments, an evergreen or already started Order, a trial, and
    segments that leave gaps, overlap, mix products, miss the term or start off the billing cycle."""
    groups: dict[str, list[Line]] = {}
    for ln in lines:
        key = segment_key(ln.record)
        if key is None:
            continue
        dimension = ln.record.get(DIMENSION_TYPE)
        if dimension == "Custom":
            out.line(
                ln,
                "mdq_custom_segment",
                DIMENSION_TYPE,
                dimension,
                "custom MDQ segments (dates of your choosing) are not supported, as in Stripe's own CPQ "
                "connector",
                "use Year, Quarter or Month segments, or create the subscription schedule in Stripe by hand",
            )
        elif ln.kind != "recurring" or dimension == "One-time":
            out.line(
                ln,
                "mdq_one_time_segment",
                DIMENSION_TYPE,
                dimension,
                "a one-time charge per segment would be billed when the Order starts, not at its segment",
                "sell the one-time charges on their own lines without segments, or bill them by hand",
            )
        groups.setdefault(key, []).append(ln)
    if not groups or start is None:
        return groups
    if end_exclusive is None:
        out.order(
            "mdq_evergreen",
            SEGMENT_KEY,
            next(iter(groups)),
            "the Order has MDQ segments but no end (Evergreen): segments must cover a fixed term",
            "give the Order an End Date and Renewable lines, or remove the segments",
        )
        return groups
    if start < config_today:
        out.order(
            "mdq_started",
            "EffectiveDate",
            start.isoformat(),
            "the Order has MDQ segments and started before the day it is synced; the connector syncs a "
            "segmented Order only as a subscription schedule starting today or later",
            "set the Order Start Date to today or later (before activating it), or create the "
            "subscription schedule in Stripe by hand",
        )
    if trial is not None:
        out.order(
            "mdq_trial",
            None,
            trial.isoformat(),
            "the Order has MDQ segments and a trial; the connector does not combine the two",
            "clear the trial end, or create the subscription schedule in Stripe by hand",
        )
    for key, segs in groups.items():
        segs.sort(key=_index)
        _check_key(key, segs, start, end_exclusive, out)
    return groups


def _check_key(key: str, segs: list[Line], start: date, end_exclusive: date, out: Collector) -> None:
    products = {str(s.record.get("Product2Id")) for s in segs}
    if len(products) > 1:
        out.line(
            segs[0],
            "mdq_mixed_products",
            "Product2Id",
            ", ".join(sorted(products)),
            f"the segments of key {key} sell different products; one MDQ line is one product",
            "give every segment of the line the same product, or a segment key of its own",
        )
    months = _months(segs[0])
    previous_end: date | None = None
    for seg in segs:
        first = parse_date(seg.record.get("ServiceDate"))
        last = parse_date(seg.record.get("EndDate"))
        if first is None or last is None or last < first:
            out.line(
                seg,
                "mdq_segment_dates",
                "EndDate" if first else "ServiceDate",
                seg.record.get("EndDate") if first else seg.record.get("ServiceDate"),
                "an MDQ segment needs a Start Date and an End Date on or after it",
                "set the segment's Start and End Dates",
            )
            return
        expected = start if previous_end is None else previous_end + ONE_DAY
        if first != expected:
            word = "gap" if first > expected else "overlap"
            what = (
                "starts after the Order"
                if previous_end is None
                else f"leaves a {word} after the segment before"
            )
            out.line(
                seg,
                "mdq_not_covering" if previous_end is None else f"mdq_{word}",
                "ServiceDate",
                first.isoformat(),
                f"the segment {what} (expected {expected.isoformat()}); segments of key {key} must follow "
                "each other day by day from the Order's start to its end",
                f"set the segment's Start Date to {expected.isoformat()}",
            )
            return
        if months is not None and not _on_cycle(start, first, months):
            out.line(
                seg,
                "mdq_segment_off_cycle",
                "ServiceDate",
                first.isoformat(),
                "the segment starts inside a billing period, so Stripe would prorate the change",
                "use segments that are whole billing periods (e.g. yearly segments billed Annual or Monthly)",
            )
            return
        previous_end = last
    if previous_end is not None and previous_end + ONE_DAY != end_exclusive:
        out.line(
            segs[-1],
            "mdq_not_covering",
            "EndDate",
            previous_end.isoformat(),
            f"the last segment of key {key} ends on another day than the Order "
            f"({(end_exclusive - ONE_DAY).isoformat()}); segments must cover the whole term",
            "align the last segment's End Date with the Order End Date",
        )


def _months(line: Line) -> int | None:
    rec = line.recurrence
    if rec is None:
        return None
    return rec.interval_count * (12 if rec.interval == "year" else 1)


def _on_cycle(start: date, day: date, months: int) -> bool:
    k = 0
    while add_months(start, k * months) < day:
        k += 1
    return add_months(start, k * months) == day


def plan_phases(
    recurring: list[Line], groups: Mapping[str, list[Line]], end_exclusive: date
) -> tuple[SegmentPhase, ...]:
    """A phase from every segment start to the next: the unsegmented recurring lines plus, per key,
    the segment covering it (in the Order's line order, a key at its first segment's place)."""
    starts = sorted(
        {parse_date(s.record.get("ServiceDate")) or date.min for segs in groups.values() for s in segs}
    )
    bounds = [*starts, end_exclusive]
    phases = []
    for i, begin in enumerate(starts):
        ids: list[str] = []
        seen: set[str] = set()
        for ln in recurring:
            key = segment_key(ln.record)
            if key is None:
                ids.append(ln.id)
            elif key not in seen:
                seen.add(key)
                covering = [
                    s for s in groups[key] if (parse_date(s.record.get("ServiceDate")) or date.min) <= begin
                ]
                ids.append(covering[-1].id)
        phases.append(SegmentPhase(begin, bounds[i + 1], tuple(ids)))
    return tuple(phases)


def items_per_phase(recurring: list[Line]) -> int:
    """How many subscription items one phase holds: unsegmented lines plus one per segment key."""
    keys = {segment_key(ln.record) for ln in recurring}
    return sum(1 for ln in recurring if segment_key(ln.record) is None) + len(keys - {None})


def refuse_contract_change(
    orders: Sequence[Mapping[str, Any]],
    records_of: Callable[[Mapping[str, Any]], Sequence[Mapping[str, Any]]],
    out: Collector,
) -> bool:
    """An Amendment or Renewal of a contract whose Orders have MDQ segments: refused (the contract
    planner models one quantity per line over the term, not segments)."""
    segmented = [o for o in orders if has_segments(records_of(o))]
    if not segmented:
        return False
    first = segmented[0]
    out.order(
        "mdq_contract_change",
        SEGMENT_KEY,
        first.get("OrderNumber") or first.get("Id"),
        f"Order {first.get('OrderNumber') or first.get('Id')} of this contract has MDQ (segmented) lines and "
        "the connector does not apply amendments or renewals to segmented contracts",
        f"{BY_HAND} (its subscription schedule); the connector leaves this Order unsynced",
    )
    return True

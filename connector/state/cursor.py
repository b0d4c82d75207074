"""Pure polling-cursor arithmetic: no I/O, so the no-loss / no-double-apply rules are testable alone.

A cursor is the highest ``SystemModstamp`` fully handled plus the ids already handled *at exactly
that instant*. Polls ask for ``SystemModstamp >= modstamp - overlap`` (never ``>``: rows sharing a
timestamp can be split across pages or runs), and :func:`filter_new` drops what was already
applied. :func:`advance` never moves the cursor past the run's start time (Meltano's rule): rows
stamped later are fetched again next time and de-duplicated, rather than risking a skip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["Cursor", "advance", "filter_new", "parse_modstamp", "poll_window", "row_key"]


@dataclass(frozen=True)
class Cursor:
    """Everything up to ``modstamp`` is handled, and at ``modstamp`` itself exactly ``seen_ids``."""

    modstamp: datetime | None = None
    seen_ids: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.modstamp is not None:
            object.__setattr__(self, "modstamp", _utc(self.modstamp))
        elif self.seen_ids:
            raise ValueError("a cursor without a modstamp cannot have seen ids")
        object.__setattr__(self, "seen_ids", frozenset(self.seen_ids))


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware")
    return value.astimezone(UTC)


def parse_modstamp(value: datetime | str) -> datetime:
    """A ``SystemModstamp`` as a UTC datetime; accepts Salesforce's ``2024-01-02T03:04:05.000+0000``."""
    if isinstance(value, datetime):
        return _utc(value)
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"
    return _utc(datetime.fromisoformat(text))


def row_key(row: Mapping[str, Any]) -> tuple[str, datetime]:
    """The de-duplication key of a Salesforce row: ``(Id, SystemModstamp)``."""
    return str(row["Id"]), parse_modstamp(row["SystemModstamp"])


def poll_window(cursor: Cursor, overlap: timedelta) -> datetime | None:
    """Lower bound for ``SystemModstamp >= ...``; ``None`` means poll everything (first run).

    The overlap re-reads recent rows so that a transaction committed late with an earlier
    ``SystemModstamp`` is still seen; :func:`filter_new` removes the repeats.
    """
    if overlap < timedelta(0):
        raise ValueError("overlap must not be negative")
    if cursor.modstamp is None:
        return None
    return cursor.modstamp - overlap


def filter_new(
    rows: Iterable[Mapping[str, Any]],
    cursor: Cursor,
    applied: Mapping[str, datetime | None] | None = None,
) -> list[Mapping[str, Any]]:
    """The rows not yet applied, in input order, each ``(Id, SystemModstamp)`` at most once.

    Dropped: rows at exactly the cursor's modstamp whose id is in ``seen_ids``; rows whose id has
    a version at least as new in ``applied`` (id -> last applied ``SystemModstamp``, e.g. the
    links' ``sf_modstamp``, which also covers records the event listener already handled);
    repeats within ``rows``. Rows older than the cursor are *kept* unless ``applied`` says
    otherwise: they may be late commits, and re-checking one costs a no-op, losing one costs data.
    """
    applied = applied or {}
    out: list[Mapping[str, Any]] = []
    seen_here: set[tuple[str, datetime]] = set()
    for row in rows:
        key = row_key(row)
        if key in seen_here:
            continue
        seen_here.add(key)
        sf_id, stamp = key
        if cursor.modstamp is not None and stamp == cursor.modstamp and sf_id in cursor.seen_ids:
            continue
        done = applied.get(sf_id)
        if done is not None and _utc(done) >= stamp:
            continue
        out.append(row)
    return out


def advance(cursor: Cursor, applied_rows: Iterable[Mapping[str, Any]], run_started_at: datetime) -> Cursor:
    """The cursor after ``applied_rows`` were applied or recorded as failed.

    ``applied_rows`` must be a complete prefix of the poll ordered by ``SystemModstamp`` (every
    row of the result up to the last one passed was handled). The new position is the newest
    stamp seen, capped at ``run_started_at``; the seen ids are those at exactly that position
    (merged with the old set when the position did not move). Capping can move a cursor that a
    skewed clock put in the future back to the start time: re-reading is safe, skipping is not.
    """
    start = _utc(run_started_at)
    keys = [row_key(r) for r in applied_rows]
    stamps = [s for _, s in keys]
    if cursor.modstamp is not None:
        stamps.append(cursor.modstamp)
    if not stamps:
        return cursor
    target = min(max(stamps), start)
    ids = {i for i, s in keys if s == target}
    if cursor.modstamp == target:
        ids |= cursor.seen_ids
    return Cursor(target, frozenset(ids))

"""What a backfill did: counts per object and status, failures grouped by reason, a CSV of failures.

Memory stays flat however many records run: per-record outcomes are folded into counters as each
batch finishes; only failures are kept (and streamed to the CSV as they happen).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from connector.sync.report import Outcome

STATUSES = ("created", "updated", "unchanged", "refused", "failed")
CSV_COLUMNS = ("record_id", "object", "name", "status", "error_code", "message")
MAX_KEPT_FAILURES = 1000  # shown in the report; the CSV has every one


@dataclass
class FailureRow:
    record_id: str
    sobject: str
    name: str
    status: str
    code: str
    message: str


class FailureCsv:
    """Failures appended as they happen, so an interrupted run still leaves its CSV behind."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh: TextIO | None = None
        self._writer: csv.writer | None = None  # type: ignore[valid-type]
        self.rows = 0

    def write(self, row: FailureRow) -> None:
        if self.path is None:
            return
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._fh)
            self._writer.writerow(CSV_COLUMNS)
        assert self._writer is not None
        self._writer.writerow([row.record_id, row.sobject, row.name, row.status, row.code, row.message])
        self._fh.flush()
        self.rows += 1

    def close(self) -> None:
        if self.path is not None and self._fh is None:  # no failure: still leave a header-only file
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerow(CSV_COLUMNS)
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@dataclass
class ObjectTotals:
    title: str
    sobject: str
    source: str = ""  # "Bulk API 2.0" / "REST query"
    selected: int | None = None  # the query's totalSize at the start
    counts: Counter[str] = field(default_factory=Counter)  # by status
    planned: Counter[str] = field(default_factory=Counter)  # dry run: by action
    reasons: Counter[str] = field(default_factory=Counter)  # failures by code
    failures: list[FailureRow] = field(default_factory=list)
    resumed_after: str | None = None
    fatal: str | None = None

    @property
    def processed(self) -> int:
        return sum(self.counts.values()) + sum(self.planned.values())


@dataclass
class BackfillReport:
    dry_run: bool
    csv: FailureCsv
    objects: list[ObjectTotals] = field(default_factory=list)
    seconds: float = 0.0
    stripe_calls: int = 0
    stripe_writes: int = 0
    salesforce_calls: int = 0
    rate_limited: int = 0

    def add_outcomes(
        self, totals: ObjectTotals, outcomes: Iterable[Outcome], codes: dict[str, str] | None = None
    ) -> None:
        codes = codes or {}
        for o in outcomes:
            if self.dry_run:
                totals.planned[o.action] += 1
                continue
            totals.counts[o.status] += 1
            if o.status in ("failed", "refused"):
                code = codes.get(o.sf_id) or o.action
                totals.reasons[code] += 1
                row = FailureRow(o.sf_id, totals.sobject, o.label, o.status, code, o.message)
                self.csv.write(row)
                if len(totals.failures) < MAX_KEPT_FAILURES:
                    totals.failures.append(row)

    @property
    def failed(self) -> int:
        return sum(t.counts["failed"] + t.counts["refused"] for t in self.objects)

    @property
    def fatal(self) -> str | None:
        return next((t.fatal for t in self.objects if t.fatal), None)

    def lines(self, *, show_failures: int = 20) -> list[str]:
        out: list[str] = []
        for t in self.objects:
            head = f"{t.title}"
            if t.source:
                head += f" (read with {t.source}"
                head += f", {t.selected} selected)" if t.selected is not None else ")"
            if t.resumed_after:
                head += f"; resumed after {t.resumed_after}"
            out.append(head)
            if self.dry_run:
                planned = ", ".join(f"{n} {a}" for a, n in sorted(t.planned.items())) or "nothing to do"
                out.append(f"  dry run, nothing changed: {planned}")
            else:
                out.append("  " + ", ".join(f"{t.counts.get(s, 0)} {s}" for s in STATUSES))
                for code, n in t.reasons.most_common():
                    example = next((f for f in t.failures if f.code == code), None)
                    detail = (
                        f": e.g. {example.record_id} {example.name!r}: {example.message}" if example else ""
                    )
                    out.append(f"  {n:>6} × {code}{detail}")
                for f in t.failures[:show_failures]:
                    out.append(f"    {f.status.upper():8} {f.record_id} {f.name!r}: {f.message}")
                if len(t.failures) > show_failures:
                    out.append(f"    … {sum(t.reasons.values()) - show_failures} more in the failures CSV")
            if t.fatal:
                out.append(f"  STOPPED: {t.fatal}")
        rate = sum(t.processed for t in self.objects) / self.seconds if self.seconds > 0 else 0.0
        out.append(
            f"{self.seconds:.1f}s, {rate:.1f} records/s; Stripe calls {self.stripe_calls} "
            f"(writes {self.stripe_writes}, rate-limited {self.rate_limited}); "
            f"Salesforce calls {self.salesforce_calls}"
        )
        if self.csv.path is not None and not self.dry_run:
            out.append(f"failures CSV: {self.csv.path} ({self.csv.rows} rows)")
        return out

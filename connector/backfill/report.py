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

from connector.sync.report import OK_STATUSES, Outcome, account_lines, count_by_account

STATUSES = ("created", "updated", "unchanged", "refused", "failed")
# Dry run: the actions a record may be planned again for (an Order's Account, still unlinked).
SETTLED_ACTIONS = frozenset({"noop", "update"})
FAILED_ACTIONS = frozenset({"error", "refuse"})
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
    unprocessed: int = 0  # records left for the next run (Ctrl-C)
    cut: bool = False  # a batch was cut short (Ctrl-C): the resume cursor moves no further
    object_type: str = ""  # the link type its records become: customer, subscription
    # Records that may come back in this run (an Order batch re-applies its unlinked Accounts) ->
    # the status (dry run: action) they were counted under, so each record is counted once: those
    # failed or refused (dry run: planned to be created or refused), not every record.
    open_records: dict[str, str] = field(default_factory=dict)

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
    # Several Stripe accounts (routing.yaml): outcomes by account and status, calls by account.
    accounts: dict[str, Counter[str]] = field(default_factory=dict)
    account_calls: dict[str, int] = field(default_factory=dict)

    def add_outcomes(
        self, totals: ObjectTotals, outcomes: Iterable[Outcome], codes: dict[str, str] | None = None
    ) -> None:
        """Count each outcome under its own object (an Order batch's Accounts under Accounts),
        each record once."""
        codes = codes or {}
        outcomes = list(outcomes)
        if not self.dry_run:
            count_by_account(outcomes, self.accounts)
        for o in outcomes:
            own = totals if o.object_type == totals.object_type else self.totals_for(o.object_type, totals)
            if self.dry_run:
                self._count(own, o.sf_id, own.planned, o.action, o.action not in SETTLED_ACTIONS)
                continue
            again = o.sf_id in own.open_records
            self._count(own, o.sf_id, own.counts, o.status, o.status not in OK_STATUSES)
            if o.status in ("failed", "refused") and not again:
                code = o.code or codes.get(o.sf_id) or o.action
                own.reasons[code] += 1
                row = FailureRow(o.sf_id, own.sobject, o.label, o.status, code, o.message)
                self.csv.write(row)
                if len(own.failures) < MAX_KEPT_FAILURES:
                    own.failures.append(row)

    @staticmethod
    def _count(totals: ObjectTotals, sf_id: str, counter: Counter[str], key: str, open_: bool) -> None:
        """Count `key` for the record, replacing what it was counted under before in this run."""
        before = totals.open_records.pop(sf_id, None)
        if before is not None:
            counter[before] -= 1
            if counter[before] <= 0:
                del counter[before]
        counter[key] += 1
        if open_:
            totals.open_records[sf_id] = key

    def totals_for(self, object_type: str, default: ObjectTotals | None = None) -> ObjectTotals:
        """The totals of this kind of object, made (in dependency order) on first need: an Order
        batch's Accounts count under Accounts even when this backfill did not run Accounts.
        An object no stream declares counts in `default`."""
        found = next((t for t in self.objects if t.object_type == object_type), None)
        if found is not None:
            return found
        from connector.sync import streams

        spec = streams.by_object_type(object_type)
        if spec is None:
            assert default is not None, object_type
            return default
        made = ObjectTotals(spec.title, spec.sf_object, object_type=object_type)
        order = [s.object_type for s in streams.STREAMS]
        later = order[order.index(object_type) + 1 :]
        at = next((i for i, t in enumerate(self.objects) if t.object_type in later), len(self.objects))
        self.objects.insert(at, made)
        return made

    @property
    def failed(self) -> int:
        """Records failed or refused; in a dry run, those it plans to fail or refuse."""
        return sum(
            t.counts["failed"] + t.counts["refused"] + sum(t.planned[a] for a in FAILED_ACTIONS)
            for t in self.objects
        )

    def run_counts(self) -> dict[str, int]:
        """The counts kept with the run in the state store, per object: "customer created", ..."""
        return {f"{t.object_type} {s}": n for t in self.objects for s, n in t.counts.items() if n}

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
                # One that stopped (Salesforce unreachable, Ctrl-C) does not know there is nothing to do.
                idle = "stopped before planning any record" if t.fatal or t.unprocessed else "nothing to do"
                planned = ", ".join(f"{n} {a}" for a, n in sorted(t.planned.items())) or idle
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
        out.extend(account_lines(self.accounts, self.account_calls))
        rate = sum(t.processed for t in self.objects) / self.seconds if self.seconds > 0 else 0.0
        out.append(
            f"{self.seconds:.1f}s, {rate:.1f} records/s; Stripe calls {self.stripe_calls} "
            f"(writes {self.stripe_writes}, rate-limited {self.rate_limited}); "
            f"Salesforce calls {self.salesforce_calls}"
        )
        if self.csv.path is not None and not self.dry_run:
            out.append(f"failures CSV: {self.csv.path} ({self.csv.rows} rows)")
        return out

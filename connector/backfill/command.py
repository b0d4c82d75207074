"""`cpq2stripe backfill`: every Account the mapping selects, then every activated Order.

Per object: the REST query's first page (2,000 records) is read first, and its `totalSize` decides
the rest of the read path: the REST query's further pages up to `bulk_threshold` records, a Bulk
API 2.0 query job for the records after the first page above it (streamed `max_records` at a
time). Calls per 1,000 records decide the threshold: REST costs one call per 2,000 records, a
Bulk job about four calls (create, describe for the CSV's types, first result set, delete) plus
one per `max_records` -- REST is cheaper up to about 13,000 records. Rows are read in `Id` order
and handed in batches (a multiple of 200, so write-backs fill whole sObject Collections) to the
object's own pipeline (`AccountSync.process`, `OrderSync.process`): the same
mapping, planning, intents and idempotency keys as a sync, Stripe writes from a pool of workers
under one paced requests/s budget.

Resumable: after each batch the last `Id` done is saved as a backfill cursor in the state store.
A rerun after Ctrl-C or kill -9 continues after it; the batch that was cut off is planned again,
and its links and intents (create keys reused) make that free of duplicates. A finished backfill
leaves the cursor marked done, so the next one starts a fresh pass (unchanged records cost no
Stripe call), and seeds the poll cursor when it is empty, so the daemon starts from here.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any, TextIO

from connector.backfill.report import BackfillReport, FailureCsv, ObjectTotals
from connector.errors import classify
from connector.interrupt import EXIT_INTERRUPTED, interrupted_line
from connector.mapping.condition import QUERY_ERROR_CODES
from connector.salesforce.soql import datetime_literal, id_literal, is_record_id
from connector.sync import polling, streams
from connector.sync.contracts import WAITING_CODES
from connector.sync.lanes import Lanes
from connector.sync.polling import progress_task
from connector.sync.report import Outcome, RunReport
from connector.sync.streams import Pipeline, Stream

log = logging.getLogger(__name__)

EXIT_OK, EXIT_RECORD_FAILURES, EXIT_FATAL = 0, 1, 3
DONE = "done"
Echo = Callable[[str], None]


@dataclass
class BackfillOptions:
    dry_run: bool = False
    limit: int | None = None  # at most this many records of each object in this run
    since: datetime | None = None  # only records modified at or after this instant
    objects: list[str] = field(default_factory=lambda: list(streams.KEYS))
    failures_csv: Path | None = Path("backfill-failures.csv")
    bulk_threshold: int = 10_000  # above this many records, read with a Bulk API 2.0 query job
    # Bulk result set size (Sforce-Locator pages): small enough that a page in memory does not grow
    # the footprint of a large org over a small one, large enough to cost ~0.2 calls per 1,000.
    max_records: int = 5_000
    # Records handed to the pipeline at once (a multiple of 200): each batch ends with the workers
    # draining and a write-back flush, so fewer, larger batches keep the Stripe budget busier.
    batch_size: int = 400
    workers: int | None = None  # default: enough to keep the rps budget busy at ~250 ms a call
    progress_stream: TextIO | None = None
    progress_tty: bool | None = None
    progress_interval: float | None = None


def parse_since(text: str) -> datetime:
    """An ISO 8601 date or instant; a date or a naive time is taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def first_page_size(bulk_threshold: int) -> int:
    """The REST page size to ask for: 2,000 (the most a page holds) unless a low Bulk threshold
    asks to switch to Bulk sooner; Salesforce accepts 200 to 2,000."""
    return max(200, min(2000, bulk_threshold))


def cursor_name(spec: Stream, since: datetime | None) -> str:
    return f"backfill:{spec.sf_object}" + (f"@{since.isoformat()}" if since else "")


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class Backfill:
    def __init__(self, ctx: Any, options: BackfillOptions, report: BackfillReport) -> None:
        self.ctx = ctx
        self.options = options
        self.report = report

    # ---- one object ---------------------------------------------------------------------------

    def _pages(
        self,
        sync: Any,
        first: list[dict[str, Any]],
        rest: Iterator[list[dict[str, Any]]],
        clauses: list[str],
        total: int,
    ) -> Iterator[list[dict[str, Any]]]:
        """The first REST page, then one Bulk API 2.0 job for the records after it.

        The Bulk query has no ORDER BY: sorting turns off Salesforce's PK chunking, and on a large
        org such a job times out. Its rows come in no particular order, so the resume cursor stops
        moving once they start (see `run_object`)."""
        from connector.salesforce.bulk import BulkQuery

        yield first
        close = getattr(rest, "close", None)
        if close is not None:
            close()  # the REST query's further pages are not needed
        where = sync._where(*clauses, f"Id > {id_literal(first[-1]['Id'])}")
        soql = f"{sync._select()}{where}"
        if self.options.limit is not None:
            soql += f" LIMIT {total - len(first)}"
        yield from BulkQuery(self.ctx.sf, max_records=self.options.max_records).pages(soql)

    def run_object(self, spec: Stream) -> ObjectTotals:
        ctx, opts = self.ctx, self.options
        totals = self.report.totals_for(spec.object_type)
        sync = spec.pipeline(ctx)
        name = cursor_name(spec, opts.since)
        saved = ctx.store.cursors.get(name)
        last_id: str | None = None
        started = ctx.now()
        if not opts.dry_run and saved.modstamp is not None and DONE not in saved.seen_ids:
            # An unfinished backfill: continue after the last Id it finished.
            after = next((s.removeprefix("after:") for s in saved.seen_ids if s.startswith("after:")), None)
            if after and is_record_id(after):
                last_id, started = after, saved.modstamp
                totals.resumed_after = after
        clauses = []
        if opts.since is not None:
            clauses.append(f"SystemModstamp >= {datetime_literal(opts.since)}")
        if last_id:
            clauses.append(f"Id > '{last_id}'")
        where = sync._where(*clauses)
        # The first REST page is read either way; its totalSize saves a COUNT() call.
        try:
            stream = ctx.sf.query_stream(
                f"{sync._select()}{where} ORDER BY Id ASC", batch_size=first_page_size(opts.bulk_threshold)
            )
        except Exception as exc:  # a mapping condition Salesforce refuses: name its file:line
            blamed = polling.condition_error(sync) if classify(exc).code in QUERY_ERROR_CODES else None
            if blamed is None:
                raise
            raise blamed from exc
        first: list[dict[str, Any]] = next(stream.pages, [])
        count = totals.selected = stream.total_size
        total = min(count, opts.limit) if opts.limit is not None else count
        # More to read than the first page held (within --limit), and enough of it for Bulk to pay.
        use_bulk = spec.bulk_ok and count > opts.bulk_threshold and total > len(first)
        totals.source = "REST query, then Bulk API 2.0" if use_bulk else "REST query"
        if not opts.dry_run:
            ctx.store.cursors.set(name, started, [f"after:{last_id}"] if last_id else [])
        log.info("%s: %d to go, read with %s", spec.title, total, totals.source)

        progress = ctx.progress
        rest = stream.pages
        pages = self._pages(sync, first, rest, clauses, total) if use_bulk else chain([first], rest)
        # Whether each queued batch came in Id order (REST pages) or not (Bulk results). The
        # cursor (`after:<Id>`) moves only past ordered batches: a run stopped during the Bulk part
        # resumes after the REST part and meets the records it already synced as unchanged (no
        # Stripe writes; intents and links keep every create exactly once).
        in_id_order: deque[bool] = deque()
        done = 0
        finished = False
        # Two batches in flight (connector.sync.lanes): the next one is read, planned and its intents
        # recorded while this one's last creates and write-back finish. The cursor moves past a
        # batch only once it and every batch before it are done.
        lanes: Lanes[list[dict[str, Any]], _BatchResult] = Lanes(lambda b: self._run_batch(spec, sync, b))

        # Contract changes that waited for an Order still in flight in the other lane: applied
        # once every batch is in (`_apply_waiting`), counted then.
        waiting: dict[str, Outcome] = {}

        def settle(batch: list[dict[str, Any]], result: _BatchResult) -> None:
            nonlocal done
            ordered = in_id_order.popleft()
            outcomes = result.report.outcomes
            if not opts.dry_run:
                held = {o.sf_id: o for o in outcomes if o.code in WAITING_CODES}
                waiting.update(held)
                outcomes = [o for o in outcomes if o.sf_id not in held]
            self.report.add_outcomes(totals, outcomes, result.codes)
            if progress is not None:
                progress.settle(result.report.outcomes)
            done += len(batch) - result.report.unprocessed
            if result.report.unprocessed:
                # Stopped (Ctrl-C) inside this batch: the cursor stays before it, and before
                # every later batch too (their records may be done, but this one's are not all).
                totals.unprocessed += result.report.unprocessed
                totals.cut = True
            if result.report.fatal:
                totals.fatal = totals.fatal or result.report.fatal
            elif ordered and not opts.dry_run and not totals.fatal and not totals.cut:
                ctx.store.cursors.set(name, started, [f"after:{batch[-1]['Id']}"])

        with progress_task(ctx, spec.title, spec.object_type, total), lanes:
            try:
                queued = 0
                for number, page in enumerate(pages):
                    for batch in _chunks(page, opts.batch_size):
                        if totals.fatal or ctx.stop.is_set():
                            break
                        if opts.limit is not None and queued >= opts.limit:
                            break
                        if opts.limit is not None:
                            batch = batch[: opts.limit - queued]
                        queued += len(batch)
                        in_id_order.append(number == 0 or not use_bulk)
                        for settled in lanes.submit(batch):
                            settle(*settled)
                    if totals.fatal or ctx.stop.is_set() or (opts.limit is not None and queued >= opts.limit):
                        break  # no further page is read
                # A batch still running after a fatal error finishes and is reported, but the
                # cursor stays before it: a rerun starts there.
                for settled in lanes.drain():
                    settle(*settled)
                if waiting and not totals.fatal and not ctx.stop.is_set():
                    self._apply_waiting(spec, totals, waiting)
                self.report.add_outcomes(totals, waiting.values())  # what still waits, as it waited
                if totals.fatal:
                    return totals
                if ctx.stop.is_set():
                    totals.unprocessed = max(totals.unprocessed, total - done)
                    return totals  # not done: a rerun continues after the cursor
                finished = opts.limit is None or done < opts.limit or done >= count
            finally:
                close = getattr(pages, "close", None)
                if close is not None:
                    close()  # an abandoned Bulk job is aborted
        if finished and not opts.dry_run:
            ctx.store.cursors.set(name, started, [DONE])
            if opts.since is None and ctx.store.cursors.get(spec.sf_object).modstamp is None:
                # The poll cursor starts where this pass started: later changes are polled.
                ctx.store.cursors.set(spec.sf_object, started, [])
        return totals

    def _apply_waiting(self, spec: Stream, totals: ObjectTotals, waiting: dict[str, Outcome]) -> None:
        """Contract changes refused only because an earlier Order of their contract was in the
        other batch in flight: applied again, in passes, while each pass applies some. What still
        waits is left in `waiting` (its earlier Order was refused, or is not in this backfill)."""
        while waiting:
            again = RunReport(spec.title)
            spec.sync_ids(self.ctx, list(waiting), again, should_stop=lambda: bool(totals.fatal))
            if again.fatal:
                totals.fatal = totals.fatal or again.fatal
            still = {o.sf_id: o for o in again.outcomes if o.code in WAITING_CODES}
            done = [o for o in again.outcomes if o.sf_id in waiting and o.sf_id not in still]
            self.report.add_outcomes(totals, done)
            for o in done:
                del waiting[o.sf_id]
            if not done or again.fatal or again.unprocessed:
                return
            waiting.update(still)

    def _run_batch(self, spec: Stream, sync: Pipeline, batch: list[dict[str, Any]]) -> _BatchResult:
        batch_report = RunReport(spec.title, dry_run=self.options.dry_run)
        try:
            sync.process(batch, batch_report)
        except Exception as exc:  # outside one record: auth, a query, the state store
            batch_report.fatal = classify(exc).message
        codes: dict[str, str] = {}
        for o in batch_report.outcomes:
            if o.status in ("failed", "refused"):
                codes[o.sf_id] = o.code or o.status
        return _BatchResult(batch_report, codes)


@dataclass
class _BatchResult:
    report: RunReport
    codes: dict[str, str]  # failed or refused record -> its error code, for the failures CSV


def _exit_code(report: BackfillReport) -> int:
    if report.fatal:
        return EXIT_FATAL
    if report.failed:
        return EXIT_RECORD_FAILURES
    return EXIT_OK


def run_backfill(
    settings: Any,
    mappings: Any,
    options: BackfillOptions,
    *,
    out: Echo,
    on_report: Callable[[BackfillReport], None] | None = None,
) -> int:
    """The `backfill` command: run, print the report, return the exit code. Ctrl-C stops it after
    the records in flight (connector.interrupt): what was done is saved and reported, and the
    same command continues from there."""
    from connector.progress import LINE_INTERVAL, RunProgress
    from connector.sync.runner import finish_run, open_command

    if options.workers:
        settings = settings.model_copy(update={"stripe_workers": options.workers})
    try:
        chosen = [s for s in streams.selected(options.objects) if s.backfill_ok]
    except ValueError as exc:
        out(f"Unknown object(s): {exc}.")
        return 2
    report = BackfillReport(options.dry_run, FailureCsv(None if options.dry_run else options.failures_csv))
    progress = RunProgress(
        options.progress_stream,
        tty=options.progress_tty,
        line_interval=options.progress_interval or LINE_INTERVAL,
    )
    started = time.monotonic()
    code = EXIT_OK
    not_started: list[str] = []
    try:
        with open_command(settings, mappings, progress=progress) as ctx:
            ctx.run_id = None if options.dry_run else ctx.store.runs.start("backfill")
            error: str | None = None
            try:
                runner = Backfill(ctx, options, report)
                for number, spec in enumerate(chosen):
                    if ctx.stop.is_set():
                        not_started = [s.title for s in chosen[number:]]
                        break
                    totals = runner.run_object(spec)
                    if totals.fatal:
                        error = totals.fatal
                        break
            except KeyboardInterrupt:  # signals not ours to handle (a thread other than main)
                ctx.stop.set()
            except Exception as exc:
                error = classify(exc).message
                if report.objects:
                    report.objects[-1].fatal = error
                else:
                    out(f"Backfill stopped: {error}")
                code = EXIT_FATAL
            finally:
                report.seconds = time.monotonic() - started
                report.stripe_calls = ctx.stripe_calls
                report.stripe_writes = sum(g.write_calls for g in ctx.gateways())
                report.rate_limited = sum(g.rate_limited for g in ctx.gateways())
                report.account_calls = ctx.account_calls()
                report.salesforce_calls = ctx.sf.total_calls
                finish_run(ctx, ctx.run_id, report.run_counts(), error)
                report.csv.close()
            interrupted = ctx.stop.is_set() and error is None
    except Exception as exc:
        out(f"Backfill stopped: {classify(exc).message}")
        return EXIT_FATAL
    if on_report is not None:
        on_report(report)
    for line in report.lines():
        out(line)
    if interrupted:
        out(interrupted_line(sum(t.unprocessed for t in report.objects), not_started))
        return EXIT_INTERRUPTED
    return code if code != EXIT_OK else _exit_code(report)

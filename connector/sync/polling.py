"""The polling loop every synced object shares: cursor, pages, retries of due failures, ids on demand.

A sync (AccountSync, OrderSync) supplies what differs — its SELECT and WHERE, how a batch of rows
is processed, its names — and delegates here for what must be the same everywhere: poll
`SystemModstamp >= cursor − overlap` page by page, de-duplicate, apply, and move the cursor only
after a page is fully handled.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from connector.errors import FatalError, classify
from connector.mapping.condition import QUERY_ERROR_CODES, condition_problem, mapping_conditions, probe_query
from connector.salesforce.soql import datetime_literal, id_list
from connector.state.cursor import advance, filter_new, poll_window
from connector.sync.context import SyncContext
from connector.sync.lanes import Lanes
from connector.sync.report import Outcome, RunReport

if TYPE_CHECKING:
    from connector.progress import Task as ProgressTask

log = logging.getLogger(__name__)

ID_BATCH = 200
# The action of a record its query no longer returns (outside the condition, or deleted): left
# as it is in Stripe, and listed.
UNSELECTED = "unselected"


class PolledSync(Protocol):
    ctx: SyncContext
    object_type: str  # link type of its Stripe object, e.g. "customer"
    cursor_name: str  # e.g. "Account"
    noun: str  # for logs, e.g. "Account"
    missing_reason: str  # why an id asked for is not returned by its query

    def _select(self) -> str: ...

    def mapping_version(self) -> str: ...

    def _where(self, *clauses: str) -> str: ...

    def process(
        self, rows: Sequence[Mapping[str, Any]], report: RunReport, links: dict[str, Any] | None = None
    ) -> None: ...


def mapping_version(mapping: BaseModel) -> str:
    """A mapping's content as a hash: equal mappings, equal versions (comments and layout of the
    YAML do not count)."""
    return hashlib.sha256(mapping.model_dump_json().encode()).hexdigest()[:32]


def poll_query(sync: PolledSync, since: datetime | None) -> str:
    clause = f"SystemModstamp >= {datetime_literal(since)}" if since is not None else ""
    return f"{sync._select()}{sync._where(clause)} ORDER BY SystemModstamp ASC, Id ASC"


def poll(sync: PolledSync, report: RunReport) -> None:
    """Apply every record changed since the cursor (all of them on the first run).

    Asked to stop (Ctrl-C: `ctx.stop`), it stops between records: the cursor stays before a page
    not fully applied (its records applied already are unchanged on the next run), and the records
    left are counted in `report.unprocessed`."""
    ctx, store = sync.ctx, sync.ctx.store
    cursor = store.cursors.get(sync.cursor_name)
    started = ctx.now()
    since = poll_window(cursor, timedelta(seconds=ctx.settings.cursor_overlap_seconds))
    with progress_task(ctx, report.kind, sync.object_type) as task:
        handled = 0
        on_total = task.set_total if task is not None else None
        for page in query_pages(sync, poll_query(sync, since), on_total=on_total):
            if ctx.stop.is_set():
                break
            # Rows already applied are not skipped by their link: a run killed after linking but
            # before the write-back must still write the Stripe ID back. Re-checking costs no call.
            fresh = filter_new(page, cursor)
            links = store.links.get_many(ctx.stripe_account, sync.object_type, [r["Id"] for r in fresh])
            before, left = len(report.outcomes), report.unprocessed
            sync.process(fresh, report, links=links)
            settle(ctx, report.outcomes[before:], already_applied=len(page) - len(fresh))
            if report.fatal:
                return
            handled += len(page) - (report.unprocessed - left)
            if report.unprocessed > left:
                break  # stopped inside the page: the cursor stays before it
            if not report.dry_run:
                cursor = advance(cursor, page, started)
                store.cursors.set(sync.cursor_name, cursor.modstamp, cursor.seen_ids)
        if ctx.stop.is_set():
            if task is not None and task.total is not None:
                report.unprocessed = max(report.unprocessed, task.total - handled)
            return
    reevaluate(sync, report)
    if not report.dry_run and not report.fatal and not ctx.stop.is_set():
        retry_due(sync, report)


@contextmanager
def progress_task(
    ctx: SyncContext, title: str, object_type: str, total: int | None = None
) -> Iterator[ProgressTask | None]:
    """A pass on the command's progress display (None without one, as in the daemon)."""
    if ctx.progress is None:
        yield None
        return
    with ctx.progress.task(title, total, object_type) as task:
        yield task


def settle(ctx: SyncContext, outcomes: Iterable[Outcome], *, already_applied: int = 0) -> None:
    """A batch has ended: its records count on the progress display, each once (`already_applied`:
    rows a poll skips because an earlier run applied them)."""
    if ctx.progress is not None:
        ctx.progress.settle(outcomes, already_applied)


def reevaluate(sync: PolledSync, report: RunReport) -> None:
    """After a mapping change, every linked record of the object once more, unchanged in
    Salesforce or not: its pipeline sends exactly the fields the new mapping changes (a dry run
    shows them), and lists the records the condition no longer selects (never deleting them)."""
    ctx, store = sync.ctx, sync.ctx.store
    version = sync.mapping_version()
    known = store.cursors.mapping_version(sync.cursor_name)
    if known == version:
        return
    if known is not None:  # None: the first run records the mapping its links are made with
        done = {o.sf_id for o in report.outcomes}  # polled in this run already, under this mapping
        ids = [
            link.sf_id
            for account in ctx.account_contexts()
            for link in store.links.all(stripe_account=account.stripe_account, object_type=sync.object_type)
            if link.status == "linked" and link.stripe_id and link.sf_id not in done
        ]
        log.info("the %s mapping changed: re-evaluating %d linked record(s)", sync.noun, len(ids))
        title = f"{report.kind}: re-evaluating after the mapping change"
        if not sync_ids(sync, ids, report, title=title):
            return  # not recorded: the next run re-evaluates again
    if not report.dry_run:
        store.cursors.set_mapping_version(sync.cursor_name, version)


def retry_due(sync: PolledSync, report: RunReport) -> None:
    """Re-run records whose retryable failure has come due (rate limits, outages, write-backs)."""
    ctx = sync.ctx
    due = [f.sf_id for f in ctx.store.failures.due(ctx.now()) if f.object_type == sync.object_type]
    if due:
        log.info("retrying %d %s(s) whose failures are due", len(due), sync.noun)
        sync_ids(sync, due, report, title=f"{report.kind}: retrying due failures")


def sync_ids(
    sync: PolledSync,
    ids: Iterable[str],
    report: RunReport,
    *,
    should_stop: Callable[[], bool] | None = None,
    title: str = "",
) -> bool:
    """Apply the given records now, whatever the cursor says (retries, events): one query per 200
    ids, two such batches in flight (connector.sync.lanes), so a burst of ids keeps the Stripe
    workers busy. False when a fatal error, a stop request (`ctx.stop`, Ctrl-C) or `should_stop`
    ended it before every id was applied; the ids left count in `report.unprocessed`. `title`
    names the pass on the command's progress display."""
    ctx = sync.ctx
    ids = list(dict.fromkeys(ids))
    if not ids:
        return True
    chunks = [ids[start : start + ID_BATCH] for start in range(0, len(ids), ID_BATCH)]
    complete = True
    lanes: Lanes[list[str], RunReport] = Lanes(lambda chunk: _sync_chunk(sync, chunk, report.dry_run))

    def settled(chunk_report: RunReport) -> None:
        nonlocal complete
        report.outcomes.extend(chunk_report.outcomes)
        report.fatal = report.fatal or chunk_report.fatal
        report.unprocessed += chunk_report.unprocessed
        complete = complete and not chunk_report.unprocessed
        settle(ctx, chunk_report.outcomes)

    with progress_task(ctx, title or f"{report.kind}: {sync.noun}s", sync.object_type, len(ids)), lanes:
        for number, chunk in enumerate(chunks):
            if report.fatal or ctx.stop.is_set() or (should_stop is not None and should_stop()):
                complete = False
                if ctx.stop.is_set():
                    report.unprocessed += sum(len(c) for c in chunks[number:])
                break
            for _chunk, chunk_report in lanes.submit(chunk):
                settled(chunk_report)
        for _chunk, chunk_report in lanes.drain():
            settled(chunk_report)
    return complete and not report.fatal


def _sync_chunk(sync: PolledSync, chunk: list[str], dry_run: bool) -> RunReport:
    """One batch of ids: one query, then the pipeline; its own report (batches overlap)."""
    report = RunReport(sync.noun, dry_run=dry_run)
    soql = f"{sync._select()}{sync._where(f'Id IN {id_list(chunk)}')}"
    rows = [r for page in query_pages(sync, soql) for r in page]
    found = {r["Id"] for r in rows}
    missing = [i for i in chunk if i not in found]
    if missing and not dry_run:
        sync.ctx.store.failures.clear_many(sync.object_type, missing)
    for record_id in missing:
        report.add(
            Outcome(sync.object_type, record_id, "", UNSELECTED, "unchanged", message=sync.missing_reason)
        )
    sync.process(rows, report)
    return report


def query_pages(
    sync: PolledSync, soql: str, *, on_total: Callable[[int], None] | None = None
) -> Iterator[list[dict[str, Any]]]:
    """The sync's query, page by page. When Salesforce cannot run it as written and a mapping
    condition is why, the run stops naming the condition's file:line instead of a raw SOQL error
    at a column of a long query. `on_total` receives the query's totalSize (for the progress)."""
    try:
        if on_total is None:
            yield from sync.ctx.sf.query_pages(soql)
        else:
            stream = sync.ctx.sf.query_stream(soql)
            on_total(stream.total_size)
            yield from stream.pages
    except Exception as exc:
        if classify(exc).code not in QUERY_ERROR_CODES:
            raise
        blamed = condition_error(sync)
        if blamed is None:
            raise
        raise blamed from exc


def condition_error(sync: PolledSync) -> FatalError | None:
    """Run each of the sync's mapping conditions alone (one row); the first Salesforce refuses."""
    mappings = sync.ctx.mappings
    for kind, path, sobject, text in mapping_conditions(mappings, sync.object_type):
        try:
            for _page in sync.ctx.sf.query_pages(probe_query(sobject, text)):
                pass
        except Exception as exc:
            verdict = classify(exc)
            if verdict.code not in QUERY_ERROR_CODES:
                return None
            problem = condition_problem(mappings, kind, path, sobject, verdict.message)
            return FatalError("mapping_condition", f"the mapping's condition cannot run: {problem}")
    return None

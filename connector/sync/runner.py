"""Builds a sync context from settings and runs one pass: the entry for `sync`, `retry`, the demo
and the daemon's jobs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from connector.errors import FatalError, classify
from connector.interrupt import EXIT_INTERRUPTED, interrupted_line, stop_on_interrupt
from connector.mapping import Mappings
from connector.progress import RunProgress
from connector.routing import Router
from connector.settings import Settings
from connector.state.store import StateStore
from connector.stripe_sink.gateway import StripeGateway
from connector.sync import streams
from connector.sync.context import SyncContext, account_problems
from connector.sync.report import RunReport, account_lines, count_by_account, run_counts

log = logging.getLogger(__name__)

EXIT_OK, EXIT_RECORD_FAILURES, EXIT_FATAL = 0, 1, 3

Echo = Callable[[str], None]


@contextmanager
def open_context(settings: Settings, mappings: Mappings) -> Iterator[SyncContext]:
    from connector.salesforce.client import SalesforceClient

    problems = account_problems(settings, mappings)
    if problems:
        raise FatalError("stripe_accounts", "; ".join(problems))
    store = StateStore.open(settings.database_url)
    try:
        sf = SalesforceClient(settings)
        ctx = SyncContext(
            settings=settings,
            mappings=mappings,
            sf=sf,
            gateway=StripeGateway.from_settings(first_account_settings(settings, mappings)),
            store=store,
        )
        try:
            yield ctx
        finally:
            ctx.close()
    finally:
        store.close()


@contextmanager
def open_command(
    settings: Settings,
    mappings: Mappings,
    *,
    progress: RunProgress | None = None,
) -> Iterator[SyncContext]:
    """A long command's context: `open_context` plus the progress display (on stderr unless
    `progress` says otherwise) and Ctrl-C as a stop request (connector.interrupt) for as long as
    it runs, its clean-up included."""
    stop = threading.Event()
    progress = progress or RunProgress()
    progress.stop = stop
    with stop_on_interrupt(stop), progress, open_context(settings, mappings) as ctx:
        ctx.stop, ctx.progress = stop, progress
        yield ctx


def first_account_settings(settings: Settings, mappings: Mappings) -> Settings:
    """The settings of the one Stripe account, or of the first of several (routing.yaml): the run's
    own gateway, which that account's pipelines share."""
    if mappings.routing is None or not settings.stripe_accounts:
        return settings
    return settings.for_stripe_account(Router(mappings.routing).first)


def finish_run(ctx: SyncContext, run_id: int | None, counts: dict[str, int], error: str | None) -> None:
    """Record how a run ended: failed (a fatal error), interrupted (asked to stop: what it did
    and how much it left), or succeeded."""
    if run_id is None:
        return
    if error is None and ctx.stop.is_set():
        ctx.store.runs.finish(run_id, counts, "interrupted", "interrupted (Ctrl-C) before the end")
        return
    ctx.store.runs.finish(run_id, counts, "failed" if error else "succeeded", error)


def run_pass(ctx: SyncContext, *, dry_run: bool, objects: list[str]) -> list[RunReport]:
    """One poll of every object kind, recorded as a run in the state store. Asked to stop
    (`ctx.stop`), it ends after the records in flight; the objects after it are not started."""
    reports: list[RunReport] = []
    run_id = None if dry_run else ctx.store.runs.start("sync")
    ctx.run_id = run_id
    error: str | None = None
    try:
        for stream in streams.selected(objects):
            if ctx.stop.is_set():
                break
            title = stream.title
            report = RunReport(title, dry_run=dry_run, object_type=stream.object_type)
            reports.append(report)
            try:
                stream.poll(ctx, report)
            except Exception as exc:  # a fatal error outside one record: auth, query, state
                verdict = classify(exc)
                report.fatal = verdict.message
                log.error("%s stopped: %s", title, verdict.message)
            if report.fatal:
                error = report.fatal
                break
        reports[:] = streams.by_object(reports)
        if error is None and not ctx.stop.is_set():
            error = _removals(ctx, reports, dry_run=dry_run, objects=objects)
    finally:
        finish_run(ctx, run_id, run_counts(reports), error)
    return reports


def _removals(ctx: SyncContext, reports: list[RunReport], *, dry_run: bool, objects: list[str]) -> str | None:
    """Record merges and deletes (never followed in Stripe) and prune the sync log."""
    from connector.sync.deletes import handle_removals
    from connector.synclog import prune

    try:
        reports.append(handle_removals(ctx, dry_run=dry_run, objects=objects))
        if not dry_run:
            prune(ctx.store, ctx.now())
    except Exception as exc:
        verdict = classify(exc)
        log.error("recording merges and deletes stopped: %s", verdict.message)
        reports.append(RunReport("Merged and deleted in Salesforce", dry_run=dry_run, fatal=verdict.message))
        return verdict.message
    return None


def exit_code(reports: list[RunReport]) -> int:
    if any(r.fatal for r in reports):
        return EXIT_FATAL
    if any(r.failed for r in reports):
        return EXIT_RECORD_FAILURES
    return EXIT_OK


def interrupted_summary(reports: list[RunReport], objects: list[str]) -> str:
    """The last line after Ctrl-C: how many records were left, and the objects not started."""
    started = {r.object_type for r in reports}
    not_started = [s.title for s in streams.selected(objects) if s.object_type not in started]
    return interrupted_line(sum(r.unprocessed for r in reports), not_started)


def run_sync_once(
    settings: Settings,
    mappings: Mappings,
    *,
    dry_run: bool,
    objects: list[str],
    out: Echo,
    progress: RunProgress | None = None,
) -> int:
    """`cpq2stripe sync`: one pass, its summary, the exit code (130 after Ctrl-C). The summary is
    printed once the progress display has ended, so the two never share a line."""
    try:
        with open_command(settings, mappings, progress=progress) as ctx:
            reports = run_pass(ctx, dry_run=dry_run, objects=objects)
            calls = f"Stripe API calls: {ctx.stripe_calls}; Salesforce API calls: {ctx.sf.total_calls}"
            per_account = account_lines(
                count_by_account(o for r in reports for o in r.outcomes), ctx.account_calls()
            )
            interrupted = ctx.stop.is_set() and not any(r.fatal for r in reports)
    except Exception as exc:
        out(f"Sync stopped: {classify(exc).message}")
        return EXIT_FATAL
    if dry_run:
        for report in reports:
            for o in report.outcomes:
                where = f"[{o.account}] " if o.account else ""
                out(f"{o.action:8} {where}{o.sf_id} {o.label!r} {o.stripe_id or ''} {o.message}".rstrip())
    for report in reports:
        for line in report.summary_lines():
            out(line)
    for line in per_account:
        out(line)
    out(calls)
    if interrupted:
        out(interrupted_summary(reports, objects))
        return EXIT_INTERRUPTED
    return exit_code(reports)


def run_retry(settings: Settings, mappings: Mappings, *, record_id: str | None, out: Echo) -> int:
    """Re-run one failed record, or all of them, now (`retry --all`: stopped by Ctrl-C as `sync`)."""
    with open_command(settings, mappings) as ctx:
        failures = ctx.store.failures.all()
        if record_id:
            failures = [f for f in failures if f.sf_id == record_id]
            if not failures:
                out(f"No failure is recorded for {record_id}.")
                return EXIT_RECORD_FAILURES
        report = RunReport("Retry", dry_run=False)
        ctx.run_id = ctx.store.runs.start("retry")
        try:
            for stream in streams.STREAMS:
                ids = [f.sf_id for f in failures if f.object_type == stream.object_type]
                if not ids or report.fatal:
                    continue
                if ctx.stop.is_set():
                    report.unprocessed += len(ids)
                    continue
                stream.sync_ids(ctx, ids, report)
        finally:
            finish_run(ctx, ctx.run_id, run_counts([report]), report.fatal)
        interrupted = ctx.stop.is_set() and not report.fatal
    for line in report.summary_lines():
        out(line)
    if interrupted:
        out(interrupted_line(report.unprocessed, []))
        return EXIT_INTERRUPTED
    return exit_code([report])

"""Builds a sync context from settings and runs one pass: the entry for `sync`, `retry`, the demo
and the daemon's jobs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from connector.errors import classify
from connector.mapping import Mappings
from connector.settings import Settings
from connector.state.store import StateStore
from connector.stripe_sink.gateway import StripeGateway
from connector.sync import streams
from connector.sync.context import SyncContext
from connector.sync.report import RunReport, run_counts

log = logging.getLogger(__name__)

EXIT_OK, EXIT_RECORD_FAILURES, EXIT_FATAL = 0, 1, 3

Echo = Callable[[str], None]


@contextmanager
def open_context(settings: Settings, mappings: Mappings) -> Iterator[SyncContext]:
    from connector.salesforce.client import SalesforceClient

    store = StateStore.open(settings.database_url)
    try:
        sf = SalesforceClient(settings)
        ctx = SyncContext(
            settings=settings,
            mappings=mappings,
            sf=sf,
            gateway=StripeGateway.from_settings(settings),
            store=store,
        )
        try:
            yield ctx
        finally:
            ctx.close()
    finally:
        store.close()


def run_pass(ctx: SyncContext, *, dry_run: bool, objects: list[str]) -> list[RunReport]:
    """One poll of every object kind, recorded as a run in the state store."""
    reports: list[RunReport] = []
    run_id = None if dry_run else ctx.store.runs.start("sync")
    ctx.run_id = run_id
    error: str | None = None
    try:
        for stream in streams.selected(objects):
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
        if error is None:
            error = _removals(ctx, reports, dry_run=dry_run, objects=objects)
    finally:
        if run_id is not None:
            ctx.store.runs.finish(run_id, run_counts(reports), "failed" if error else "succeeded", error)
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


def run_sync_once(
    settings: Settings, mappings: Mappings, *, dry_run: bool, objects: list[str], out: Echo
) -> int:
    try:
        with open_context(settings, mappings) as ctx:
            reports = run_pass(ctx, dry_run=dry_run, objects=objects)
            if dry_run:
                for report in reports:
                    for o in report.outcomes:
                        out(f"{o.action:8} {o.sf_id} {o.label!r} {o.stripe_id or ''} {o.message}".rstrip())
            for report in reports:
                for line in report.summary_lines():
                    out(line)
            out(f"Stripe API calls: {ctx.gateway.total_calls}; Salesforce API calls: {ctx.sf.total_calls}")
    except Exception as exc:
        out(f"Sync stopped: {classify(exc).message}")
        return EXIT_FATAL
    return exit_code(reports)


def run_retry(settings: Settings, mappings: Mappings, *, record_id: str | None, out: Echo) -> int:
    """Re-run one failed record, or all of them, now."""
    with open_context(settings, mappings) as ctx:
        failures = ctx.store.failures.all()
        if record_id:
            failures = [f for f in failures if f.sf_id == record_id]
            if not failures:
                out(f"No failure is recorded for {record_id}.")
                return EXIT_RECORD_FAILURES
        report = RunReport("Retry", dry_run=False)
        ctx.run_id = ctx.store.runs.start("retry")
        for stream in streams.STREAMS:
            ids = [f.sf_id for f in failures if f.object_type == stream.object_type]
            if ids and not report.fatal:
                stream.sync_ids(ctx, ids, report)
        ctx.store.runs.finish(
            ctx.run_id, run_counts([report]), "failed" if report.fatal else "succeeded", report.fatal
        )
        for line in report.summary_lines():
            out(line)
        return exit_code([report])

"""The one place sync work happens: poll, retries, event batches and periodic jobs take one lock.

Every trigger (scheduler jobs, the event listener) goes through `SyncWorker`, so two jobs never
work on the same record at once. Work starts only while this instance may work (leader lease held,
not shutting down). A stop request (SIGTERM, a lost lease) takes effect between SOQL pages of a
poll (up to 2,000 records, each page applied and its cursor saved before the check) and between
batches of 200 ids for event and retry work; a batch in flight always finishes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from typing import Any

from connector.errors import classify
from connector.mapping import Mappings
from connector.sync import streams
from connector.sync.context import SyncContext
from connector.sync.report import RunReport, run_counts

from .metrics import Metrics, Sample

log = logging.getLogger(__name__)


class ShutdownRequested(Exception):
    """Raised between pages or batches once the daemon stops or loses the lease."""


class NotWorking(Exception):
    """This instance may not sync now (standby, stopping): the caller must not record progress."""


class JobFailed(RuntimeError):
    """The job ran but stopped on a fatal error (already logged with its report): counted as an
    error, not "ok", so a poll that cannot run its query shows on the jobs metric."""


class InterruptibleSalesforce:
    """Wraps the Salesforce client so that the *poll query* stops between pages on request.

    Only the first query opened after `arm()` is interruptible (the poll query in
    `AccountSync.poll` / `OrderSync.poll`); nested and later queries (id batches, related
    records) always run to completion so a page is never left half-applied.
    """

    def __init__(self, inner: Any, should_stop: Callable[[], bool]) -> None:
        self._inner = inner
        self._should_stop = should_stop
        self._armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def arm(self) -> None:
        self._armed = True

    def query_pages(self, soql: str, include_deleted: bool = False) -> Iterator[list[dict[str, Any]]]:
        interruptible, self._armed = self._armed, False
        pages = iter(self._inner.query_pages(soql, include_deleted))
        first = True
        try:
            while True:
                if interruptible and not first and self._should_stop():
                    raise ShutdownRequested("stopped between poll pages")
                try:
                    page = next(pages)
                except StopIteration:
                    return
                first = False
                yield page
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()


def log_outcomes(report: RunReport, trigger: str) -> None:
    """One line per record action; unchanged records only at debug level (polls re-read overlaps)."""
    for outcome in report.outcomes:
        level = logging.DEBUG if outcome.status == "unchanged" else logging.INFO
        if outcome.status in ("failed", "refused"):
            level = logging.WARNING
        if not log.isEnabledFor(level):
            continue
        text = f"{outcome.object_type} {outcome.sf_id} {outcome.action} -> {outcome.status}"
        if outcome.stripe_id:
            text += f" {outcome.stripe_id}"
        if outcome.message:
            text += f": {outcome.message}"
        log.log(level, text, extra={"record": {**asdict(outcome), "trigger": trigger}})


class SyncWorker:
    def __init__(
        self,
        ctx: SyncContext,
        metrics: Metrics,
        *,
        may_work: Callable[[], bool],
        mappings: Callable[[], Mappings],
    ) -> None:
        self.ctx = ctx
        self.metrics = metrics
        self._may_work = may_work
        self._mappings = mappings
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sf = InterruptibleSalesforce(ctx.sf, self.should_stop)
        self._raw_sf = ctx.sf
        ctx.sf = self.sf
        metrics.sources.append(self._api_samples)

    # ---- state -------------------------------------------------------------------------------

    def should_stop(self) -> bool:
        return self.stopping.is_set() or not self._may_work()

    def idle(self, timeout: float) -> bool:
        """Wait until no work is in flight (True) or the timeout passes (False)."""
        if self.lock.acquire(timeout=max(0.0, timeout)):
            self.lock.release()
            return True
        return False

    def _api_samples(self) -> Iterable[Sample]:
        for kind, n in dict(self._raw_sf.calls).items():
            yield ("cpq2stripe_api_calls_total", (("kind", kind), ("service", "salesforce")), float(n))
        accounts = self.ctx.account_calls_by_operation()  # several Stripe accounts: one label each
        for account, calls in accounts.items():
            labels = (("stripe_account", account),) if account else ()
            for operation, n in calls.items():
                yield (
                    "cpq2stripe_api_calls_total",
                    (("kind", operation), ("service", "stripe"), *labels),
                    float(n),
                )

    def _run(self, job: str, fn: Callable[[], None], *, required: bool = False) -> bool:
        """Run `fn` under the lock if this instance may work; False if skipped or stopped."""
        with self.lock:
            if self.should_stop():
                if required:
                    raise NotWorking("this instance is not the leader or is stopping")
                return False
            self.ctx.mappings = self._mappings()
            self.ctx.fatal_message = None
            try:
                fn()
            except ShutdownRequested:
                log.info("%s: stopped between pages (shutdown or lost lease); progress so far is saved", job)
                self.metrics.inc("cpq2stripe_jobs_total", {"job": job, "result": "interrupted"})
                if required:
                    raise
                return False
            except NotWorking:
                raise
            except JobFailed:
                self.metrics.inc("cpq2stripe_jobs_total", {"job": job, "result": "error"})
                if required:
                    raise
                return False
            except Exception as exc:
                verdict = classify(exc)
                log.error("%s failed: %s", job, verdict.message)
                self.metrics.inc("cpq2stripe_jobs_total", {"job": job, "result": "error"})
                if required:
                    raise
                return False
            finally:
                self.ctx.run_id = None
            self.metrics.inc("cpq2stripe_jobs_total", {"job": job, "result": "ok"})
            return True

    def _finish(self, reports: list[RunReport], trigger: str) -> list[RunReport]:
        """Log and count what the work did, each outcome under its own object and each record once
        (streams.by_object, as `sync` counts): an Order batch's new Customers are Accounts."""
        reports = streams.by_object(reports)
        for report in reports:
            log_outcomes(report, trigger)
            self.metrics.record_report(report, trigger)
            if report.fatal:
                log.error("%s stopped: %s", report.kind, report.fatal)
        return reports

    # ---- jobs ----------------------------------------------------------------------------------

    def poll(
        self,
        objects: tuple[str, ...] | None = None,
        *,
        required: bool = False,
    ) -> bool:
        """Poll each object (all by default) from its cursor; a run row per poll. `required` (a
        catch-up the listener waits for) raises instead of returning False when not done."""
        if objects is None:
            objects = tuple(stream.sf_object for stream in streams.STREAMS)

        def work() -> None:
            store = self.ctx.store
            run_id = store.runs.start("sync")
            self.ctx.run_id = run_id
            reports: list[RunReport] = []
            error: str | None = None
            interrupted = False
            try:
                for stream in streams.STREAMS:
                    if stream.sf_object not in objects:
                        continue
                    report = RunReport(stream.title, object_type=stream.object_type)
                    reports.append(report)
                    try:
                        self.sf.arm()
                        stream.poll(self.ctx, report)
                    except ShutdownRequested:
                        interrupted = True
                        raise
                    except Exception as exc:
                        report.fatal = classify(exc).message
                    if report.fatal:
                        error = report.fatal
                        break
            finally:
                reports = self._finish(reports, "poll")
                status = "failed" if error else "partial" if interrupted else "succeeded"
                note = error or ("stopped between pages (shutdown or lost lease)" if interrupted else None)
                store.runs.finish(run_id, run_counts(reports), status, note)
            if error is None and not interrupted:
                self.metrics.set("cpq2stripe_last_poll_success_timestamp_seconds", time.time())
            elif error is not None:
                raise JobFailed(error)

        return self._run("poll", work, required=required)

    def retry_due(self) -> bool:
        """Re-run the records whose retryable failure has come due."""

        def work() -> None:
            due = self.ctx.store.failures.due(self.ctx.now())
            if not due:
                return
            log.info("retrying %d record(s) whose failures are due", len(due))
            run_id = self.ctx.store.runs.start("retry")
            self.ctx.run_id = run_id
            reports: list[RunReport] = []
            fatal: str | None = None
            try:
                for stream in streams.STREAMS:  # dependency order: Accounts before their Orders
                    ids = [f.sf_id for f in due if f.object_type == stream.object_type]
                    if not ids:
                        continue
                    report = RunReport(f"Retry {stream.title}", object_type=stream.object_type)
                    reports.append(report)
                    self._sync_batches(stream.sf_object, ids, report)
                    if report.fatal:
                        break
            finally:
                reports = self._finish(reports, "retry")
                fatal = next((r.fatal for r in reports if r.fatal), None)
                self.ctx.store.runs.finish(
                    run_id, run_counts(reports), "failed" if fatal else "succeeded", fatal
                )
            if fatal:
                raise JobFailed(fatal)

        return self._run("retry", work)

    def sync_ids(self, sobject: str, ids: list[str], *, received_at: float | None = None) -> None:
        """Apply records named by events now. Raises (NotWorking, ShutdownRequested, a fatal
        error) when they were not all applied, so the listener must not advance its replay id."""
        if streams.by_sf_object(sobject) is None:
            log.warning("events for %s are not synced by this connector; ignored", sobject)
            return
        self.metrics.inc("cpq2stripe_event_ids_total", {"object": sobject}, len(ids))
        stream = streams.by_sf_object(sobject)
        report = RunReport(f"Events {sobject}", object_type=stream.object_type if stream else "")

        def work() -> None:
            try:
                self._sync_batches(sobject, ids, report)
            finally:
                self._finish([report], "event")
            if report.fatal:
                raise RuntimeError(report.fatal)

        self._run("event", work, required=True)
        if received_at is not None:
            self.metrics.set("cpq2stripe_event_handle_seconds", max(0.0, time.time() - received_at))

    def _sync_batches(self, sobject: str, ids: list[str], report: RunReport) -> None:
        """The records, 200 a query with two batches in flight; a stop request is honoured
        between batches (ShutdownRequested: the caller must not record progress)."""
        stream = streams.by_sf_object(sobject)
        if stream is None:
            return
        complete = stream.sync_ids(self.ctx, ids, report, should_stop=self.should_stop)
        if not complete and not report.fatal:
            raise ShutdownRequested("stopped between batches")

    def run_job(self, job: str, fn: Callable[[SyncContext, RunReport], Any]) -> bool:
        """A periodic job (reconcile, merge detection) under the same lock as the sync work."""

        def work() -> None:
            report = RunReport(job.capitalize())
            try:
                fn(self.ctx, report)
            finally:
                self._finish([report], job)
            if report.fatal:
                raise JobFailed(report.fatal)

        return self._run(job, work)

"""Billing status → Salesforce: one pass over Stripe's events from a stored cursor.

Stripe lists events newest first; `ending_before=<cursor>` pages forward in time (each page the
events just after the cursor), so a pass takes pages oldest first: the events name the objects
that changed, those are read as they are now, and the cursor moves past a page only after that
page's write-back. An event is applied once, and one applied again (a crash before the cursor
moved, or `--replay`) writes the same values, which are then unchanged and not sent. Polling
needs no inbound port. Stripe keeps events 30 days: a cursor older than that, or one the list no
longer knows, is a gap, and the pass reads the objects themselves instead (the subscriptions,
their latest invoices and the Customers the connector linked).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.errors import Disposition, classify
from connector.salesforce.soql import id_list, is_record_id
from connector.salesforce.writeback import WriteBack
from connector.stripe_sink.subscriptions import ORDER_ID_KEY
from connector.sync.billing_status import EVENT_TYPES, BillingFacts, Touched
from connector.sync.context import SyncContext
from connector.sync.payment_setup import SetupEvents
from connector.sync.pipeline import only_changed

log = logging.getLogger(__name__)

# In the replay-id table: "<event id>@<unix time first seen>"; an empty id when Stripe listed none.
CURSOR_TOPIC = "stripe:events"
RETENTION = timedelta(days=30)  # how long Stripe lists events
PAGE = 100
SOQL_CHUNK = 200


@dataclass
class BillingReport:
    events: int = 0
    gap: str | None = None  # why the objects were read instead of the events
    objects_read: int = 0
    written: int = 0  # records updated in Salesforce
    errors: list[str] = field(default_factory=list)
    fatal: str | None = None

    def summary_lines(self) -> list[str]:
        head = (
            f"Billing status: {self.events} event(s) applied, {self.written} record(s) updated in Salesforce"
        )
        lines = [head]
        if self.gap:
            lines.append(f"  read {self.objects_read} Stripe object(s) instead of events: {self.gap}")
        lines.extend(f"  FAILED {e}" for e in self.errors)
        if self.fatal:
            lines.append(f"  stopped: {self.fatal}")
        return lines


def _topic(ctx: SyncContext) -> str:
    """The events cursor: one per Stripe account when there are several (routing.yaml)."""
    return f"{CURSOR_TOPIC}:{ctx.stripe_account}" if ctx.scope is not None else CURSOR_TOPIC


def _cursor(ctx: SyncContext) -> tuple[str, datetime] | None:
    raw = ctx.store.cursors.replay_id(_topic(ctx))
    if not raw or "@" not in raw:
        return None
    event_id, seen = raw.split("@", 1)
    return event_id, datetime.fromtimestamp(int(seen), UTC)


def _save_cursor(ctx: SyncContext, event_id: str) -> None:
    ctx.store.cursors.set_replay_id(_topic(ctx), f"{event_id}@{int(ctx.now().timestamp())}")


def reset_cursor(ctx: SyncContext) -> None:
    for account in ctx.account_contexts():
        ctx.store.cursors.set_replay_id(_topic(account), None)


class BillingStatusPass:
    def __init__(self, ctx: SyncContext, report: BillingReport) -> None:
        self.ctx = ctx
        self.report = report
        self._links: dict[tuple[str, str], list[str]] = {}

    # ---- lookups -------------------------------------------------------------------------------

    def linked(self, stripe_id: str, sf_object: str) -> list[str]:
        key = (stripe_id, sf_object)
        if key not in self._links:
            links = self.ctx.store.links.find_by_stripe_id(stripe_id, self.ctx.stripe_account)
            self._links[key] = [link.sf_id for link in links if link.sf_object == sf_object]
        return self._links[key]

    def facts(self) -> BillingFacts:
        m = self.ctx.mappings
        return BillingFacts(m.subscription.billing_status, m.customer.billing_status, self.linked)

    def _list(self, **params: Any) -> Any:
        v1 = self.ctx.gateway.client.v1
        return self.ctx.gateway.call(
            "events.list", v1.events.list, params={"limit": PAGE, "types": list(EVENT_TYPES), **params}
        )

    # ---- the pass ------------------------------------------------------------------------------

    def run(self, *, replay: bool = False) -> None:
        cursor = _cursor(self.ctx)
        if replay:
            self._replay()
            return
        if cursor is None:
            self._read_objects("no cursor yet (first run)")
            return
        event_id, seen = cursor
        if seen < self.ctx.now() - RETENTION:
            self._read_objects(
                f"the cursor ({event_id or 'no event'}) is older than Stripe's 30 days of events"
            )
            return
        if not event_id:  # no event when the cursor was set: every event listed since is new
            self._replay()
            return
        while not self.ctx.stop.is_set():
            try:
                page = self._list(ending_before=event_id)
            except Exception as exc:
                if getattr(exc, "code", None) == "resource_missing":
                    self._read_objects(f"Stripe no longer lists the cursor's event {event_id}")
                    return
                raise
            events = [e.to_dict() for e in reversed(page.data)]  # oldest first
            if not events:
                return
            if not self._apply(events):
                return
            event_id = events[-1]["id"]
            _save_cursor(self.ctx, event_id)
            if not page.has_more:
                return

    def _replay(self) -> None:
        """Every event Stripe still lists, oldest first (the cursor reset)."""
        newest_first: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = self._list(**({"starting_after": after} if after else {}))
            newest_first.extend(e.to_dict() for e in page.data)
            if not page.has_more or not page.data:
                break
            after = page.data[-1].id
        events = newest_first[::-1]
        for start in range(0, len(events), PAGE):
            chunk = events[start : start + PAGE]
            if self.ctx.stop.is_set() or not self._apply(chunk):
                return
            _save_cursor(self.ctx, chunk[-1]["id"])

    def _apply(self, events: list[dict[str, Any]]) -> bool:
        """Read the objects the events touched, write what changed; False when the cursor must stay."""
        facts, touched, setup = self.facts(), Touched(), SetupEvents(self.ctx)
        for event in events:
            touched.add(facts, event)
            setup.add(event)
        self.report.events += len(events)
        complete = self._read_current(facts, touched)
        complete = setup.read(facts.accounts, self.report.errors) and complete
        written = self._write(facts)
        if written:
            setup.settle()
        return written and complete

    def _read_current(self, facts: BillingFacts, touched: Touched) -> bool:
        """The touched objects as they are now, one call each (a subscription with its latest
        invoice expanded). False when one failed in a way a retry can cure: the cursor stays."""
        reads = [
            *(("subscription", i) for i in sorted(touched.subscriptions)),
            *(("invoice", i) for i in sorted(touched.invoices)),
            *(("customer", i) for i in sorted(touched.customers)),
        ]
        complete = True
        for kind, ident in reads:
            try:
                obj = self._retrieve(kind, ident)
            except Exception as exc:
                verdict = classify(exc)
                if verdict.disposition is Disposition.FATAL:
                    raise
                self.report.errors.append(f"{kind} {ident}: {verdict.message}")
                complete = complete and verdict.disposition is not Disposition.RETRY
                continue
            self.report.objects_read += 1
            if kind == "subscription":
                facts.subscription(obj)
                if isinstance(obj.get("latest_invoice"), dict):
                    facts.invoice(obj["latest_invoice"])
            elif kind == "invoice":
                facts.invoice(obj)
            else:
                facts.customer(obj)
        return complete

    def _retrieve(self, kind: str, ident: str) -> dict[str, Any]:
        gateway, v1 = self.ctx.gateway, self.ctx.gateway.client.v1
        if kind == "subscription":
            params = {"expand": ["latest_invoice"]}
            sub = gateway.call("subscriptions.retrieve", v1.subscriptions.retrieve, ident, params=params)
            return sub.to_dict()
        if kind == "invoice":
            return gateway.call("invoices.retrieve", v1.invoices.retrieve, ident).to_dict()
        return gateway.call("customers.retrieve", v1.customers.retrieve, ident).to_dict()

    def _read_objects(self, why: str) -> None:
        """A gap: the current state of every linked subscription (with its latest invoice), one-time
        invoice and Customer, read with the list endpoints (100 a call) where Stripe has one."""
        self.report.gap = why
        log.info("billing status: reading Stripe's objects (%s)", why)
        newest = self._list(limit=1).data  # the cursor to keep once the objects are written
        ctx, facts = self.ctx, self.facts()
        v1 = ctx.gateway.client.v1
        links = ctx.store.links.all(stripe_account=ctx.stripe_account, status="linked")
        orders = {link.stripe_id for link in links if link.sf_object == "Order" and link.stripe_id}
        customers = {link.stripe_id for link in links if link.sf_object == "Account" and link.stripe_id}
        if orders - {i for i in orders if i.startswith("in_")}:
            params = {"status": "all", "expand": ["data.latest_invoice"]}
            for sub in self._pages("subscriptions.list", v1.subscriptions.list, params):
                schedule = sub.get("schedule")
                if sub["id"] in orders or schedule in orders or ORDER_ID_KEY in (sub.get("metadata") or {}):
                    facts.subscription(sub)
                    if isinstance(sub.get("latest_invoice"), dict):
                        facts.invoice(sub["latest_invoice"])
        for invoice_id in sorted(i for i in orders if i.startswith("in_")):  # Orders of one-time lines
            if ctx.stop.is_set():
                return
            try:
                facts.invoice(
                    ctx.gateway.call("invoices.retrieve", v1.invoices.retrieve, invoice_id).to_dict()
                )
                self.report.objects_read += 1
            except Exception as exc:  # one invoice unreadable (deleted as a draft): the others still count
                verdict = classify(exc)
                if verdict.disposition is Disposition.FATAL:
                    raise
                self.report.errors.append(f"invoice {invoice_id}: {verdict.message}")
        if customers:
            for customer in self._pages("customers.list", v1.customers.list, {}):
                if customer["id"] in customers:
                    facts.customer(customer)
        if ctx.stop.is_set():
            return
        if self._write(facts):
            _save_cursor(ctx, newest[0].id if newest else "")  # "": every event Stripe lists is new

    def _pages(self, op: str, lister: Any, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while not self.ctx.stop.is_set():
            page = self.ctx.gateway.call(
                op, lister, params={"limit": PAGE, **params, **({"starting_after": after} if after else {})}
            )
            for obj in page.data:
                self.report.objects_read += 1
                yield obj.to_dict()
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id

    # ---- write-back ----------------------------------------------------------------------------

    def _rows(self, sobject: str, ids: list[str], fields: Iterable[str]) -> dict[str, dict[str, Any]]:
        select = ", ".join(["Id", *sorted(set(fields))])
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), SOQL_CHUNK):
            soql = f"SELECT {select} FROM {sobject} WHERE Id IN {id_list(ids[start : start + SOQL_CHUNK])}"
            for page in self.ctx.sf.query_pages(soql):
                found.update((r["Id"][:15], dict(r)) for r in page)
        return found

    def _write(self, facts: BillingFacts) -> bool:
        """Only values that differ from the records' are sent, in sObject Collections of 200.
        False (the cursor stays) when a write failed in a way a retry can cure."""
        wb = WriteBack(self.ctx.sf)
        for sobject, desired in (("Order", facts.orders), ("Account", facts.accounts)):
            # A metadata value that is not a record id (edited in Stripe) names no record.
            ids = sorted(i for i in desired if is_record_id(i))
            names = {name for values in desired.values() for name in values}
            if not ids or not names:
                continue
            rows = self._rows(sobject, ids, names)
            for record_id in ids:
                row = rows.get(record_id[:15])
                if row is None:  # deleted in Salesforce, or not an id of this org: nothing to show it on
                    log.info("billing status: %s %s not found; skipped", sobject, record_id)
                    continue
                changed = only_changed(row, desired[record_id])
                if changed:
                    wb.stage(sobject, row["Id"], changed)
        try:
            failures = wb.flush()
        except Exception as exc:
            verdict = classify(exc)
            if verdict.disposition is Disposition.FATAL:
                self.report.fatal = verdict.message
            else:
                self.report.errors.append(verdict.message)
            return False
        self.report.written += wb.last_flush.sent - len(failures)
        for failure in failures:
            self.report.errors.append(
                f"{failure.sobject} {failure.record_id}: {failure.code} {failure.message}"
            )
        return not any(f.retryable for f in failures)


def billing_status(ctx: SyncContext, *, replay: bool = False) -> BillingReport:
    """One pass, recorded as a run (`billing-status` in `status`)."""
    from connector.sync.runner import finish_run  # the runner imports the streams, which import us

    report = BillingReport()
    outer_run = ctx.run_id
    ctx.run_id = ctx.store.runs.start("billing-status")
    try:
        for account in ctx.account_contexts():  # each Stripe account's events (routing.yaml)
            if not report.fatal:
                BillingStatusPass(account, report).run(replay=replay)
    except Exception as exc:
        report.fatal = classify(exc).message
    finally:
        counts = {"events": report.events, "updated": report.written, "failed": len(report.errors)}
        finish_run(ctx, ctx.run_id, counts, report.fatal)
        ctx.run_id = outer_run
    return report


def run_billing_status(settings: Any, mappings: Any, *, replay: bool, out: Callable[[str], None]) -> int:
    """`cpq2stripe billing-status [--replay]`: 0 done, 1 some records failed, 3 stopped."""
    from connector.sync.runner import open_command

    try:
        with open_command(settings, mappings) as ctx:
            report = billing_status(ctx, replay=replay)
            calls = f"Stripe API calls: {ctx.stripe_calls}; Salesforce API calls: {ctx.sf.total_calls}"
    except Exception as exc:
        out(f"Billing status stopped: {classify(exc).message}")
        return 3
    for line in report.summary_lines():
        out(line)
    out(calls)
    if report.fatal:
        return 3
    return 1 if report.errors else 0

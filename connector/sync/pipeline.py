"""What every object's batch does the same way: apply side by side, classify errors, write the
state in one transaction, write the result back to Salesforce, log it.

A stream (connector.sync.streams) decides per record what to do; this module runs those decisions
on the Stripe workers (`apply_all`), turns any exception into an outcome through the one error
table (`connector.errors.classify`), and ends the batch (`finish`): failures recorded or cleared,
links and hashes written with the sync log in one transaction, then the write-back under one
policy for every object (`writeback_fields`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from connector.errors import Disposition, FatalError, classify
from connector.faults import crash_point
from connector.mapping.schema import WriteBack as WriteBackFields
from connector.salesforce.writeback import WriteBack, WriteFailure
from connector.state.models import BatchWrites, FailureUpdate, HashUpdate, Intent, LinkUpdate, LogEntry
from connector.sync.context import SyncContext
from connector.sync.exactly_once import Kind
from connector.sync.report import OK_STATUSES, Outcome, RunReport

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Batch:
    """The state changes a batch collects while its records are applied (from several workers),
    written together by :func:`finish`."""

    kind: Kind
    sf_object: str
    # The batch's own write-back buffer: batches may overlap (the backfill plans the next while
    # this one's creates finish), and a buffer per batch keeps memory flat over a long run.
    writeback: WriteBack
    writes: BatchWrites = field(default_factory=BatchWrites)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def linked(
        self,
        sf_id: str,
        stripe_id: str,
        payload_hash: str | None,
        sf_modstamp: datetime | None,
        field_hashes: dict[str, str] | None = None,
        *,
        adopted_key: str | None = None,
    ) -> None:
        """The record's object exists now; `adopted_key` for one no intent was recorded for."""
        update = LinkUpdate(sf_id, stripe_id, payload_hash, sf_modstamp, field_hashes)
        with self._lock:
            if adopted_key is not None:
                self.writes.intents.append(Intent(self.kind.object_type, self.sf_object, sf_id, adopted_key))
            self.writes.linked.setdefault(self.kind.object_type, []).append(update)

    def hashed(
        self,
        sf_id: str,
        payload_hash: str | None,
        sf_modstamp: datetime | None,
        field_hashes: dict[str, str] | None,
    ) -> None:
        """What was last sent for a linked record (after an update, or for a newer version)."""
        with self._lock:
            self.writes.hashes.setdefault(self.kind.object_type, []).append(
                HashUpdate(sf_id, payload_hash, sf_modstamp, field_hashes)
            )


def apply_safely(ctx: SyncContext, base: Outcome, fn: Callable[[], Outcome]) -> Outcome | None:
    """Run one record's Stripe work; any error becomes that record's failed outcome, classified by
    the one error table. None means fatal: the run must stop."""
    try:
        return fn()
    except Exception as exc:
        verdict = classify(exc)
        if verdict.disposition is Disposition.FATAL:
            log.error("fatal error on %s %s: %s", base.object_type, base.sf_id, verdict.message)
            ctx.fatal_message = verdict.message
            return None
        return replace(
            base,
            status="failed",
            message=verdict.message,
            code=verdict.code,
            retryable=verdict.disposition is Disposition.RETRY,
        )


def apply_all(
    ctx: SyncContext, work: Sequence[T], apply: Callable[[T], Outcome | None]
) -> list[Outcome | None]:
    """`apply` for every item on the Stripe workers, in order. After a fatal error (None), or once
    the run is asked to stop (Ctrl-C: `ctx.stop`), the items not started yet are not attempted
    (None): the next run does them; those started finish. Each record finished counts on the
    command's progress at once, not when the batch ends."""
    return [outcome for [outcome] in apply_lanes(ctx, [[item] for item in work], apply)]


def apply_lanes(
    ctx: SyncContext, lanes: Sequence[Sequence[T]], apply: Callable[[T], Outcome | None]
) -> list[list[Outcome | None]]:
    """`apply_all` for work that must keep an order inside each lane (a contract's Orders): the
    lanes side by side on the Stripe workers, each lane's items one after another."""
    stopping = threading.Event()
    progress = ctx.progress

    def one(item: T) -> Outcome | None:
        if stopping.is_set() or ctx.stop.is_set():
            return None
        outcome = apply(item)
        if outcome is None:
            stopping.set()
        elif progress is not None:
            progress.tick(outcome)
        return outcome

    def lane(items: Sequence[T]) -> list[Outcome | None]:
        return [one(item) for item in items]  # after a None, `one` starts nothing more

    if len(lanes) <= 1 or threading.current_thread().name.startswith("stripe"):
        return [lane(items) for items in lanes]  # (never wait on the pool from one of its own workers)
    return list(ctx.stripe_workers.map(lane, lanes))


def unapplied(ctx: SyncContext, report: RunReport, count: int) -> None:
    """Records `apply_all` did not run: after a fatal error the run stops (`report.fatal`); after
    a stop request they are left for the next run (`report.unprocessed`)."""
    if ctx.fatal_message is None and ctx.stop.is_set():
        report.unprocessed += count
    else:
        report.fatal = ctx.fatal_message or "a fatal error stopped the run"


def stop_requested(ctx: SyncContext, report: RunReport, rows: Sized) -> bool:
    """True once the run is asked to stop: the batch's `rows` are then left for the next run."""
    if not ctx.stop.is_set():
        return False
    report.unprocessed += len(rows)
    return True


def writeback_fields(
    wb: WriteBackFields, row: Mapping[str, Any], outcome: Outcome, now: datetime
) -> dict[str, Any]:
    """The connector's own Salesforce fields to write for one outcome, the same for every object:
    only values that differ from the record's; the Stripe id and ``Synced`` on success; ``Refused``
    or ``Failed`` with the reason otherwise; the message whenever something happened or the status
    changes (so a fixed record loses its old error) or the outcome carries notes (values the mapping
    left out, which may differ from the last run's); the time only when Stripe was written."""
    ok = outcome.status in OK_STATUSES
    incomplete = outcome.status == "incomplete"  # billed object made, first payment awaited
    desired: dict[str, Any] = {}
    if (ok or incomplete) and outcome.stripe_id:
        desired[wb.id_field(outcome.stripe_id)] = outcome.stripe_id
    status = (
        "Synced"
        if ok
        else ("Incomplete" if incomplete else "Refused" if outcome.status == "refused" else "Failed")
    )
    if wb.status:
        desired[wb.status] = status
    if wb.message and (
        outcome.status != "unchanged" or outcome.notes or not wb.status or row.get(wb.status) != status
    ):
        desired[wb.message] = outcome.message or None
    changed = only_changed(row, desired)
    if changed and wb.synced_at and outcome.status in ("created", "updated", "incomplete"):
        changed[wb.synced_at] = now
    return changed


def account_writeback(
    ctx: SyncContext, kind: Kind, row: Mapping[str, Any], outcome: Outcome
) -> dict[str, Any]:
    """With several Stripe accounts: the name of the one a synced Account (its home) or Order
    bills through, in routing.yaml's `write_back` field, for an admin to report on."""
    scope = ctx.scope
    field = scope.router.routing.write_back if scope is not None else None
    if scope is None or not field or outcome.status not in (*OK_STATUSES, "incomplete"):
        return {}
    if kind.object_type == "customer" and scope.router.home(row).account != scope.name:
        return {}  # another account of the sharing group uses its home's Customer
    if kind.object_type not in ("customer", "subscription"):
        return {}
    return only_changed(row, {field: scope.name})


def only_changed(row: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The desired values that differ from the record's as read: the one rule for what the
    connector writes to its own Salesforce fields (sync results and Stripe's billing status)."""
    return {k: v for k, v in desired.items() if row.get(k) != v}


def finish(
    ctx: SyncContext,
    batch: Batch,
    outcomes: Iterable[Outcome],
    rows: Mapping[str, Mapping[str, Any]],
    wb: WriteBackFields,
    failing: set[str],
) -> None:
    """End a batch: failures recorded (or cleared where the record synced), links, hashes and the
    sync log in one transaction, then the records' write-back in sObject Collections."""
    writes, kind, now = batch.writes, batch.kind, ctx.now()
    staged: list[Outcome] = []
    for o in outcomes:
        if o.status in OK_STATUSES:
            if o.sf_id in failing:
                writes.cleared.setdefault(kind.object_type, set()).add(o.sf_id)
        else:
            writes.failures.append(
                FailureUpdate(
                    kind.object_type, batch.sf_object, o.sf_id, o.code or o.status, o.message, o.retryable
                )
            )
        if o.status != "unchanged":
            writes.log.append(
                LogEntry(
                    o.object_type,
                    o.action,
                    o.status,
                    o.sf_id,
                    batch.sf_object,
                    o.stripe_id,
                    o.message,
                    run_id=ctx.run_id,
                )
            )
        staged.append(o)
    ctx.store.write_batch(ctx.stripe_account, writes, now)
    if writes.linked:
        crash_point(kind.after_link)
    for o in staged:
        row = rows.get(o.sf_id)
        if row is None:
            continue
        fields = writeback_fields(wb, row, o, now)
        fields.update(account_writeback(ctx, batch.kind, row, o))
        if fields:
            batch.writeback.stage(batch.sf_object, o.sf_id, fields)
    flush_writeback(ctx, batch)


def flush_writeback(ctx: SyncContext, batch: Batch) -> None:
    """Send the staged write-back. One that fails on the batch's own record is kept due for a
    retry, which re-plans the record (a no-op in Stripe) and writes the fields again; related
    records' ids (Product2, PricebookEntry) are re-sent whenever one of their Orders is seen."""
    kind, sf_object = batch.kind, batch.sf_object
    failures = batch.writeback.flush()
    for failure in failures:
        log.warning("write-back to %s %s failed: %s", failure.sobject, failure.record_id, failure.message)
    own = [f for f in failures if f.sobject == sf_object]
    if own:
        ctx.store.write_batch(
            ctx.stripe_account,
            BatchWrites(
                failures=[
                    FailureUpdate(
                        kind.object_type,
                        sf_object,
                        f.record_id,
                        f"writeback_{f.code}",
                        f"writing the sync result back to Salesforce failed: {f.message}",
                        True,
                    )
                    for f in own
                ]
            ),
            ctx.now(),
        )
    _stop_on_locked_orders(failures)


def _stop_on_locked_orders(failures: Iterable[WriteFailure]) -> None:
    """Salesforce locks activated Orders and their products against users without the Edit
    Activated Orders permission. That is the integration user's configuration, not each record's
    problem: the run stops with the fix (the failures above are kept due, so the first run after
    the fix writes every id back)."""
    locked = [f for f in failures if f.code == "ENTITY_IS_LOCKED" and f.sobject in ("Order", "OrderItem")]
    if locked:
        raise FatalError(
            "salesforce_edit_activated_orders",
            f"Salesforce refused to write the sync result to {len(locked)} activated "
            f"{locked[0].sobject} record(s) ({locked[0].record_id}: ENTITY_IS_LOCKED {locked[0].message}): "
            "give the integration user the Edit Activated Orders permission (the shipped permission "
            "set Cpq2Stripe_Integration has it). What was created in Stripe is kept; the next run "
            "after the fix writes the ids back.",
        )

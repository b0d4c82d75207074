"""Accounts -> Stripe Customers: poll, map, plan, apply, link, write back.

One page of Accounts at a time (one SOQL page, one bulk link lookup, one write-back flush per
200 records). The cursor moves only after every row of the page is applied or recorded as
failed; a fatal error stops the run before the cursor moves past anything unhandled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import stripe

from connector.errors import Disposition, RecordError, classify
from connector.faults import crash_point
from connector.mapping import map_record, soql_fields
from connector.state.cursor import parse_modstamp
from connector.stripe_sink import idempotency
from connector.stripe_sink.customers import SALESFORCE_ID_KEY, CustomerSink
from connector.sync import polling
from connector.sync.context import SyncContext
from connector.sync.plan import Action, LinkView, Plan, plan_record
from connector.sync.report import Outcome, RunReport

log = logging.getLogger(__name__)

OBJECT_TYPE = "customer"
SF_OBJECT = "Account"
CURSOR_NAME = "Account"
# Past Stripe's 24 h idempotency window a reused key would create a second object: search first.
IDEMPOTENCY_WINDOW = timedelta(hours=23)


class RetryLater(Exception):
    """The outcome is not knowable yet (e.g. Stripe search has not indexed a new object)."""


class AccountSync:
    object_type = OBJECT_TYPE
    cursor_name = CURSOR_NAME
    noun = "Account"
    missing_reason = "no longer selected by the mapping's condition, or deleted"

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.mapping = ctx.mappings.customer
        self.sink = CustomerSink(ctx.gateway)

    # ---- queries ---------------------------------------------------------------------------

    def _select(self) -> str:
        fields = soql_fields(self.mapping)
        return f"SELECT {', '.join(fields)} FROM {SF_OBJECT}"

    def _where(self, *clauses: str) -> str:
        parts = [f"({self.mapping.condition})"] if self.mapping.condition else []
        parts.extend(c for c in clauses if c)
        return f" WHERE {' AND '.join(parts)}" if parts else ""

    def poll_query(self, since: datetime | None) -> str:
        return polling.poll_query(self, since)

    # ---- entry points (the loop itself is shared: connector/sync/polling.py) ---------------------

    def poll(self, report: RunReport) -> None:
        polling.poll(self, report)

    def retry_due(self, report: RunReport) -> None:
        polling.retry_due(self, report)

    def sync_ids(self, ids: Iterable[str], report: RunReport) -> None:
        polling.sync_ids(self, ids, report)

    # ---- one batch ------------------------------------------------------------------------------

    def process(self, rows: list[Mapping[str, Any]], report: RunReport, links: dict | None = None) -> None:
        if not rows:
            return
        ctx = self.ctx
        if links is None:
            links = ctx.store.get_links(ctx.stripe_account, OBJECT_TYPE, [r["Id"] for r in rows])
        id_field = self.mapping.write_back.stripe_id
        plans: list[tuple[Mapping[str, Any], Plan]] = []
        for row in rows:
            mapped = map_record(self.mapping, dict(row))
            link = links.get(row["Id"])
            view = None
            if link is not None:
                view = LinkView(
                    link.stripe_id, link.status, dict(link.field_hashes or {}), link.idempotency_key
                )
            plan = plan_record(
                row["Id"], mapped.params, [str(e) for e in mapped.errors], view, row.get(id_field)
            )
            plans.append((row, plan))

        if report.dry_run:
            for row, plan in plans:
                report.add(self._dry_outcome(row, plan))
            return

        # Unchanged records are most of a rerun: clear failures only where there are some.
        failing = ctx.store.failing_ids(OBJECT_TYPE, [r["Id"] for r in rows])
        with ThreadPoolExecutor(max_workers=ctx.settings.stripe_workers) as pool:
            outcomes = list(
                pool.map(lambda rp: self._apply_safely(*rp, links.get(rp[0]["Id"]), failing), plans)
            )
        fatal = any(o is None for o in outcomes)
        for (row, _plan), outcome in zip(plans, outcomes, strict=True):
            if outcome is None:
                continue
            report.add(outcome)
            self._stage_writeback(row, outcome)
        polling.finish_batch(ctx, OBJECT_TYPE, SF_OBJECT, [o for o in outcomes if o is not None])
        if fatal:
            report.fatal = ctx.fatal_message or "a fatal error stopped the run"

    # ---- applying one plan ----------------------------------------------------------------------

    def _label(self, row: Mapping[str, Any]) -> str:
        return str(row.get("Name") or "")

    def _dry_outcome(self, row: Mapping[str, Any], plan: Plan) -> Outcome:
        if plan.action is Action.UPDATE:
            message = "send " + ", ".join(f"{k}={v!r}" for k, v in sorted(plan.changes.items()))
        elif plan.action in (Action.CREATE, Action.ADOPT, Action.RECOVER):
            message = "send " + ", ".join(sorted(plan.params))
        else:
            message = plan.reason
        return Outcome(
            OBJECT_TYPE,
            plan.salesforce_id,
            self._label(row),
            plan.action.value,
            "planned",
            plan.stripe_id,
            message,
        )

    def _apply_safely(
        self, row: Mapping[str, Any], plan: Plan, link: Any, failing: set[str]
    ) -> Outcome | None:
        """Apply one plan; classify any error. None means fatal: the run must stop."""
        label = self._label(row)
        try:
            return self._apply(row, plan, link, failing)
        except RetryLater as exc:
            self._record_failure(plan, "retry_later", str(exc), retryable=True)
            return Outcome(
                OBJECT_TYPE, plan.salesforce_id, label, plan.action.value, "failed", plan.stripe_id, str(exc)
            )
        except Exception as exc:
            verdict = classify(exc)
            if verdict.disposition is Disposition.FATAL:
                log.error("fatal error on Account %s: %s", plan.salesforce_id, verdict.message)
                self.ctx.fatal_message = verdict.message
                return None
            retryable = verdict.disposition is Disposition.RETRY
            self._record_failure(plan, verdict.code, verdict.message, retryable=retryable)
            return Outcome(
                OBJECT_TYPE,
                plan.salesforce_id,
                label,
                plan.action.value,
                "failed",
                plan.stripe_id,
                verdict.message,
            )

    def _record_failure(self, plan: Plan, code: str, message: str, *, retryable: bool) -> None:
        self.ctx.store.record_failure(
            OBJECT_TYPE, SF_OBJECT, plan.salesforce_id, code, message, retryable=retryable, now=self.ctx.now()
        )

    def _apply(self, row: Mapping[str, Any], plan: Plan, link: Any, failing: set[str]) -> Outcome:
        ctx, store, sid = self.ctx, self.ctx.store, plan.salesforce_id
        label = self._label(row)
        modstamp = parse_modstamp(row["SystemModstamp"])
        if plan.action is Action.ERROR:
            raise RecordError(plan.error_code, plan.reason)
        if plan.action is Action.REFUSE:
            store.record_failure(
                OBJECT_TYPE, SF_OBJECT, sid, plan.error_code, plan.reason, retryable=False, now=ctx.now()
            )
            return Outcome(OBJECT_TYPE, sid, label, "refuse", "refused", plan.stripe_id, plan.reason)
        if plan.action is Action.NOOP:
            if link is not None and link.sf_modstamp != modstamp:
                store.update_hash(
                    ctx.stripe_account,
                    OBJECT_TYPE,
                    sid,
                    plan.payload_hash,
                    modstamp,
                    field_hashes=plan.hashes,
                )
            if sid in failing:
                store.clear_failure(OBJECT_TYPE, sid)
            return Outcome(OBJECT_TYPE, sid, label, "noop", "unchanged", plan.stripe_id)
        if plan.action is Action.UPDATE:
            assert plan.stripe_id
            self.sink.update(plan.stripe_id, plan.changes, plan.payload_hash)
            store.update_hash(
                ctx.stripe_account, OBJECT_TYPE, sid, plan.payload_hash, modstamp, field_hashes=plan.hashes
            )
            store.clear_failure(OBJECT_TYPE, sid)
            return Outcome(
                OBJECT_TYPE,
                sid,
                label,
                "update",
                "updated",
                plan.stripe_id,
                "changed " + ", ".join(sorted(plan.changes)),
            )
        if plan.action is Action.ADOPT:
            return self._adopt(row, plan, modstamp)
        return self._create(row, plan, link, modstamp)

    def _create(self, row: Mapping[str, Any], plan: Plan, link: Any, modstamp: Any) -> Outcome:
        ctx, store, sid = self.ctx, self.ctx.store, plan.salesforce_id
        if link is None:
            key = idempotency.create_key(ctx.stripe_account, OBJECT_TYPE, sid)
            link = store.record_intent(ctx.stripe_account, OBJECT_TYPE, SF_OBJECT, sid, key)
        crash_point("customer.after_intent")
        customer = None
        if ctx.now() - link.created_at > IDEMPOTENCY_WINDOW:
            customer = self.sink.find_by_salesforce_id(sid)
        if customer is None:
            try:
                customer = self.sink.create(sid, plan.params, link.idempotency_key)
            except stripe.IdempotencyError:
                # The first create reached Stripe with other data (the record changed since).
                customer = self.sink.find_by_salesforce_id(sid)
                if customer is None:
                    raise RetryLater(
                        "an interrupted create reached Stripe but its Customer is not searchable "
                        "yet; the next run links it"
                    ) from None
                self.sink.update(customer.id, plan.params, plan.payload_hash)
        crash_point("customer.after_create")
        store.mark_linked(
            ctx.stripe_account,
            OBJECT_TYPE,
            sid,
            stripe_id=customer.id,
            payload_hash=plan.payload_hash,
            sf_modstamp=modstamp,
            field_hashes=plan.hashes,
        )
        store.clear_failure(OBJECT_TYPE, sid)
        crash_point("customer.after_link")
        action = "recover" if plan.action is Action.RECOVER else "create"
        return Outcome(OBJECT_TYPE, sid, self._label(row), action, "created", customer.id)

    def _adopt(self, row: Mapping[str, Any], plan: Plan, modstamp: Any) -> Outcome:
        ctx, store, sid = self.ctx, self.ctx.store, plan.salesforce_id
        assert plan.stripe_id
        customer = self.sink.retrieve(plan.stripe_id)
        if customer is None:
            raise RecordError(
                "stripe_id_unknown",
                f"the Stripe ID field holds {plan.stripe_id}, which does not exist in this Stripe account; "
                "clear the field to have the connector create a new Customer",
            )
        owner = (customer.to_dict().get("metadata") or {}).get(SALESFORCE_ID_KEY)
        if not owner or owner == sid:  # the state store knows too, even if the metadata was edited
            others = store.find_by_stripe_id(plan.stripe_id, ctx.stripe_account)
            owner = next((x.sf_id for x in others if x.object_type == OBJECT_TYPE and x.sf_id != sid), owner)
        if owner and owner != sid:
            reason = (
                f"the Stripe ID field holds {plan.stripe_id}, which belongs to Account {owner} "
                "(kept from a merge?); the connector never re-points a Customer. Put this "
                "Account's own Customer ID back, or clear the field"
            )
            store.record_failure(
                OBJECT_TYPE,
                SF_OBJECT,
                sid,
                "stripe_id_belongs_to_other",
                reason,
                retryable=False,
                now=ctx.now(),
            )
            return Outcome(OBJECT_TYPE, sid, self._label(row), "refuse", "refused", plan.stripe_id, reason)
        params = {**plan.params, "metadata": {**plan.params.get("metadata", {}), SALESFORCE_ID_KEY: sid}}
        self.sink.update(plan.stripe_id, params, plan.payload_hash)
        key = idempotency.create_key(ctx.stripe_account, OBJECT_TYPE, sid)
        store.record_intent(ctx.stripe_account, OBJECT_TYPE, SF_OBJECT, sid, key)
        store.mark_linked(
            ctx.stripe_account,
            OBJECT_TYPE,
            sid,
            stripe_id=plan.stripe_id,
            payload_hash=plan.payload_hash,
            sf_modstamp=modstamp,
            field_hashes=plan.hashes,
        )
        store.clear_failure(OBJECT_TYPE, sid)
        return Outcome(
            OBJECT_TYPE,
            sid,
            self._label(row),
            "adopt",
            "updated",
            plan.stripe_id,
            "linked the Customer already named in Salesforce",
        )

    # ---- write-back -------------------------------------------------------------------------------

    def _stage_writeback(self, row: Mapping[str, Any], outcome: Outcome) -> None:
        wb = self.mapping.write_back
        desired: dict[str, Any] = {}
        if outcome.status in ("created", "updated", "unchanged"):
            if outcome.stripe_id:
                desired[wb.stripe_id] = outcome.stripe_id
            if wb.status:
                desired[wb.status] = "Synced"
            if wb.message:
                desired[wb.message] = None
        else:
            if wb.status:
                desired[wb.status] = "Refused" if outcome.status == "refused" else "Failed"
            if wb.message:
                desired[wb.message] = outcome.message
        changed = {k: v for k, v in desired.items() if row.get(k) != v}
        if not changed and outcome.status == "unchanged":
            return
        if wb.synced_at and outcome.status in ("created", "updated"):
            changed[wb.synced_at] = self.ctx.now()
        if changed:
            self.ctx.writeback.stage(SF_OBJECT, row["Id"], changed)

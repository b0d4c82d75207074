"""Usage records -> Billing Meter events, exactly once (mappings/usage.yaml).

Each usage record becomes one event on the meter of its Order Product's Product2 (made when the
Order synced: connector.sync.orders `_meter`), for the Customer of the Order's Account, with the
record's unique id as Stripe's `identifier`. The record's intent is durable before the event is
sent and its link is marked after (connector.sync.exactly_once); a rerun sends nothing for a linked
record, and a resend of an interrupted one is refused by Stripe as a duplicate identifier, which
the sink reads as "sent" (connector.stripe_sink.meter_events).

Refused, with the reason on the record: no Order Product, a quantity that is missing, negative or
not whole, a time outside what Stripe accepts (35 days back, 5 minutes ahead), a line that is not
usage-priced. Failed and retried: the Order or its Account not synced yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.mapping.engine import read_path
from connector.mapping.schema import UsageMapping
from connector.salesforce.writeback import WriteBack
from connector.state.cursor import parse_modstamp
from connector.state.models import Link
from connector.stripe_sink import idempotency
from connector.stripe_sink.catalog import meter_event_name
from connector.stripe_sink.meter_events import MeterEventSink
from connector.sync import pipeline, polling
from connector.sync.context import SyncContext
from connector.sync.exactly_once import (
    CUSTOMER,
    METER,
    METER_EVENT,
    SUBSCRIPTION,
    Create,
    obtain,
    record_intents,
)
from connector.sync.pipeline import Batch
from connector.sync.report import Outcome, RunReport

OBJECT_TYPE = METER_EVENT.object_type
SF_OBJECT = "Stripe_Usage__c"  # the stream's name for it; the mapping may read another object
# Stripe accepts a meter event "within the past 35 calendar days or up to 5 minutes in the future"
# (API reference, Create a billing meter event, `timestamp`). A day's margin on the old side: a
# record that is 35 days old by the clock here may be older by Stripe's when it arrives.
MAX_AGE = timedelta(days=34)
MAX_AHEAD = timedelta(minutes=5)
MAX_IDENTIFIER = 100  # Stripe's limit on `identifier`


@dataclass(frozen=True)
class UsagePlan:
    """One usage record read: what to send, or why not (no I/O)."""

    sf_id: str
    identifier: str
    order_item: str | None
    product: str | None
    order: str | None
    account: str | None
    value: int | None
    timestamp: int | None
    refusal: tuple[str, str] | None = None  # (code, message)


def plan_usage(row: Mapping[str, Any], mapping: UsageMapping, now: datetime) -> UsagePlan:
    """Read one record through the mapping and check it against what Stripe accepts."""
    record = dict(row)
    sid = str(row["Id"])

    def text(path: str) -> str | None:
        value = read_path(record, path)
        return str(value) if value not in (None, "") else None

    identifier = text(mapping.unique_id) or ""
    raw_quantity = read_path(record, mapping.quantity)
    raw_time = read_path(record, mapping.timestamp)
    plan = UsagePlan(
        sid,
        identifier,
        text(mapping.order_item),
        text(mapping.product),
        text(mapping.order),
        text(mapping.account),
        None,
        None,
    )
    refusal: tuple[str, str] | None = None
    value: int | None = None
    when: datetime | None = None
    if not identifier or len(identifier) > MAX_IDENTIFIER:
        refusal = (
            "usage_bad_identifier",
            f"the unique id ({mapping.unique_id}) is empty or longer than Stripe's {MAX_IDENTIFIER} "
            "characters; map unique_id to a field with a short unique value",
        )
    elif plan.order_item is None:
        refusal = (
            "usage_no_order_product",
            f"no Order Product in {mapping.order_item}; set it to the usage-priced Order Product",
        )
    else:
        try:
            quantity = Decimal(str(raw_quantity)) if raw_quantity is not None else None
        except InvalidOperation:
            quantity = None
        if quantity is None:
            refusal = ("usage_no_quantity", f"no quantity in {mapping.quantity}; enter how much was used")
        elif quantity < 0:
            refusal = (
                "usage_negative_quantity",
                f"the quantity in {mapping.quantity} is negative ({quantity}); Stripe meters only add "
                "usage: enter a quantity of 0 or more (correct an earlier record in Stripe)",
            )
        elif quantity != quantity.to_integral_value():
            refusal = (
                "usage_fractional_quantity",
                f"the quantity in {mapping.quantity} is {quantity}, not a whole number; enter whole units",
            )
        else:
            value = int(quantity)
        when = parse_modstamp(raw_time) if isinstance(raw_time, str) and raw_time else None
        if refusal is None and when is None:
            refusal = ("usage_no_time", f"no time in {mapping.timestamp}; enter when the usage happened")
        elif refusal is None and when is not None and when < now - MAX_AGE:
            refusal = (
                "usage_too_old",
                f"the usage time {when.isoformat()} in {mapping.timestamp} is more than "
                f"{MAX_AGE.days} days ago; Stripe accepts meter events only up to 35 days back. Bill "
                "it another way (an invoice item)",
            )
        elif refusal is None and when is not None and when > now + MAX_AHEAD:
            refusal = (
                "usage_in_future",
                f"the usage time {when.isoformat()} in {mapping.timestamp} is in the future; Stripe "
                "accepts meter events at most 5 minutes ahead: enter when it happened",
            )
    timestamp = int(when.timestamp()) if when is not None else None
    return UsagePlan(
        sid,
        identifier,
        plan.order_item,
        plan.product,
        plan.order,
        plan.account,
        value,
        timestamp,
        refusal,
    )


class UsageSync:
    object_type = OBJECT_TYPE
    cursor_name = SF_OBJECT
    noun = "usage record"
    missing_reason = "no longer selected by the usage mapping's condition, or deleted"

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.mapping = ctx.mappings.usage
        self.sink = MeterEventSink(ctx.gateway)

    # ---- queries ---------------------------------------------------------------------------

    def _select(self) -> str:
        mapping = self.mapping or UsageMapping()
        fields = mapping.soql_fields()
        if self.ctx.scope is not None:  # several Stripe accounts: routed by their Orders
            from connector.sync.routed import usage_route_fields

            fields = [
                *fields,
                *(f for f in usage_route_fields(self.ctx, self.ctx.scope.router) if f not in fields),
            ]
        return f"SELECT {', '.join(fields)} FROM {mapping.object}"

    def _where(self, *clauses: str) -> str:
        condition = self.mapping.condition if self.mapping is not None else None
        parts = [f"({condition})"] if condition else []
        parts.extend(c for c in clauses if c)
        return f" WHERE {' AND '.join(parts)}" if parts else ""

    def mapping_version(self) -> str:
        return polling.mapping_version(self.mapping or UsageMapping())

    # ---- one batch ------------------------------------------------------------------------------

    def process(
        self, rows: Sequence[Mapping[str, Any]], report: RunReport, links: dict[str, Link] | None = None
    ) -> None:
        if not rows or self.mapping is None:
            return
        ctx, store, account = self.ctx, self.ctx.store, self.ctx.stripe_account
        ids = [str(r["Id"]) for r in rows]
        if links is None:
            links = store.links.get_many(account, OBJECT_TYPE, ids)
        now = ctx.now()
        plans = [(row, plan_usage(row, self.mapping, now)) for row in rows]
        orders = store.links.get_many(
            account, SUBSCRIPTION.object_type, {p.order for _r, p in plans if p.order}
        )
        meters = store.links.get_many(account, METER.object_type, {p.product for _r, p in plans if p.product})
        customers = store.links.get_many(
            account, CUSTOMER.object_type, {p.account for _r, p in plans if p.account}
        )
        decided = [(row, plan, self._decide(plan, links, orders, meters, customers)) for row, plan in plans]
        if report.dry_run:
            for row, plan, verdict in decided:
                report.add(self._dry(row, plan, verdict))
            return
        failing = store.failures.failing_ids(OBJECT_TYPE, ids)
        creates = {
            plan.sf_id: self._create(plan, customer)
            for _row, plan, (status, customer) in decided
            if status == "send" and customer is not None
        }
        # A pending link from an earlier run: its event may have reached Stripe (sent again with the
        # same key and identifier, which Stripe answers as the first time or as a duplicate).
        interrupted = {sid for sid, link in links.items() if link.status != "linked"}
        links = {**links, **record_intents(store, account, list(creates.values()))}
        batch = Batch(METER_EVENT, SF_OBJECT, WriteBack(ctx.sf))

        def apply(item: tuple[Mapping[str, Any], UsagePlan, tuple[str, str | None]]) -> Outcome | None:
            row, plan, verdict = item
            base = Outcome(OBJECT_TYPE, plan.sf_id, self._label(row), "create", "failed")
            sid = plan.sf_id
            return pipeline.apply_safely(
                ctx, base, lambda: self._apply(row, plan, verdict, links, creates, batch, sid in interrupted)
            )

        outcomes = pipeline.apply_all(ctx, decided, apply)
        done = [o for o in outcomes if o is not None]
        for o in done:
            report.add(o)
        write_back = self.mapping.write_back.as_write_back()
        pipeline.finish(ctx, batch, done, {str(r["Id"]): r for r in rows}, write_back, failing)
        if len(done) < len(outcomes):
            pipeline.unapplied(ctx, report, len(outcomes) - len(done))

    def _decide(
        self,
        plan: UsagePlan,
        links: Mapping[str, Link],
        orders: Mapping[str, Link],
        meters: Mapping[str, Link],
        customers: Mapping[str, Link],
    ) -> tuple[str, str | None]:
        """('sent', None) | ('refuse', None) | ('wait:<code>', message) | ('send', customer id)."""
        link = links.get(plan.sf_id)
        if link is not None and link.status == "linked":
            return "sent", None
        if plan.refusal is not None:
            return "refuse", None
        order = orders.get(plan.order or "")
        if order is None or order.status != "linked":
            return "wait:usage_order_not_synced", (
                f"Order {plan.order} of Order Product {plan.order_item} is not synced to Stripe yet; "
                "the usage is sent once it is"
            )
        meter = meters.get(plan.product or "")
        if meter is None or meter.status != "linked":
            return "no_meter", None
        customer = customers.get(plan.account or "")
        if customer is None or customer.status != "linked" or not customer.stripe_id:
            return "wait:usage_unknown_customer", (
                f"Account {plan.account} is not synced to a Stripe Customer yet; the usage is sent once it is"
            )
        return "send", customer.stripe_id

    def _create(self, plan: UsagePlan, customer_id: str) -> Create:
        assert plan.product is not None and plan.value is not None and plan.timestamp is not None
        event_name, value, timestamp = meter_event_name(plan.product), plan.value, plan.timestamp
        return Create(
            METER_EVENT,
            SF_OBJECT,
            plan.sf_id,
            idempotency.create_key(self.ctx.stripe_account, OBJECT_TYPE, plan.sf_id),
            send=lambda key: self.sink.create(
                event_name, customer_id, value, timestamp, plan.identifier, key
            ),
            expired_fix=(
                f"check the meter {event_name} in Stripe for an event with identifier {plan.identifier}; "
                "if it is missing, create a new usage record for this usage"
            ),
        )

    def _apply(
        self,
        row: Mapping[str, Any],
        plan: UsagePlan,
        verdict: tuple[str, str | None],
        links: Mapping[str, Link],
        creates: Mapping[str, Create],
        batch: Batch,
        recovering: bool,
    ) -> Outcome:
        sid, label = plan.sf_id, self._label(row)
        status, detail = verdict
        if status == "sent":
            link = links[sid]
            return Outcome(OBJECT_TYPE, sid, label, "noop", "unchanged", None, self._sent_message(plan, link))
        if status == "refuse":
            assert plan.refusal is not None
            code, message = plan.refusal
            return Outcome(OBJECT_TYPE, sid, label, "refuse", "refused", None, message, code)
        if status == "no_meter":
            message = (
                f"Order Product {plan.order_item} is not usage-priced (its Product2 {plan.product} has no "
                "Billing Meter in Stripe); report usage only for lines whose price is usage-based"
            )
            return Outcome(
                OBJECT_TYPE, sid, label, "refuse", "refused", None, message, "usage_no_metered_line"
            )
        if status.startswith("wait:"):
            code = status.removeprefix("wait:")
            return Outcome(
                OBJECT_TYPE, sid, label, "error", "failed", None, detail or "", code, retryable=True
            )
        link = links[sid]
        sent = obtain(creates[sid], link, recovering=recovering, now=self.ctx.now())
        batch.linked(sid, sent.id, None, parse_modstamp(row["SystemModstamp"]))
        action = "recover" if getattr(sent, "duplicate", False) else "create"
        return Outcome(OBJECT_TYPE, sid, label, action, "created", None, self._message(plan))

    def _message(self, plan: UsagePlan) -> str:
        assert plan.product is not None
        return f"sent {plan.value} to meter {meter_event_name(plan.product)} as event {plan.identifier}"

    def _sent_message(self, plan: UsagePlan, link: Link) -> str:
        return f"sent to Stripe as meter event {link.stripe_id}"

    def _dry(self, row: Mapping[str, Any], plan: UsagePlan, verdict: tuple[str, str | None]) -> Outcome:
        status, detail = verdict
        label = self._label(row)
        if status == "send":
            return Outcome(OBJECT_TYPE, plan.sf_id, label, "create", "planned", None, self._message(plan))
        if status == "sent":
            return Outcome(OBJECT_TYPE, plan.sf_id, label, "noop", "planned", None, "sent already")
        message = plan.refusal[1] if plan.refusal else detail or "not usage-priced"
        return Outcome(OBJECT_TYPE, plan.sf_id, label, "refuse", "planned", None, message)

    def _label(self, row: Mapping[str, Any]) -> str:
        return str(row["Id"])

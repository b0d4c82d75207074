"""Accounts -> Stripe Customers: map, plan, apply, link, write back.

One page of Accounts at a time: one bulk link lookup, one transaction for the page's intents
before its creates go out (connector.sync.exactly_once) and one for its links, hashes and failures
after (connector.sync.pipeline.finish), one write-back flush per 200 records. The polling loop
(connector.sync.polling) moves the cursor only after a page is fully handled.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from connector.errors import RecordError
from connector.mapping import map_record, soql_fields
from connector.mapping.engine import TAX_IDS_PARAM
from connector.salesforce.soql import id_list
from connector.salesforce.writeback import WriteBack
from connector.state.cursor import parse_modstamp
from connector.state.models import Link
from connector.stripe_sink import idempotency
from connector.stripe_sink.customers import SALESFORCE_ID_KEY, CustomerSink
from connector.stripe_sink.tax_ids import TaxIdSink
from connector.sync import pipeline, polling
from connector.sync.context import SyncContext
from connector.sync.exactly_once import CUSTOMER, Create, obtain, record_intents
from connector.sync.pipeline import Batch
from connector.sync.plan import Action, LinkView, Plan, plan_record, refusal
from connector.sync.report import Outcome, RunReport
from connector.sync.routed import SHARED_CUSTOMER_FIELDS, linked_elsewhere, linked_in, moved_reason
from connector.sync.tax_ids import apply_tax_ids, describe

log = logging.getLogger(__name__)

OBJECT_TYPE = CUSTOMER.object_type
SF_OBJECT = "Account"
CURSOR_NAME = "Account"


PREVIEW_VALUE_CHARS = 40


def preview_params(params: Mapping[str, Any], prefix: str = "") -> str:
    """The values a create would send, one line: `name='Globex', address.city='Springfield'`;
    empty values left out, long ones cut, so an admin can check the mapping at a glance."""
    parts: list[str] = []
    for key, value in sorted(params.items()):
        if isinstance(value, Mapping):
            inner = preview_params(value, f"{prefix}{key}.")
            if inner:
                parts.append(inner)
            continue
        if value is None or value == "" or value == [] or value == {}:
            continue
        text = repr(value)
        if len(text) > PREVIEW_VALUE_CHARS:
            text = text[: PREVIEW_VALUE_CHARS - 1] + "…"
        parts.append(f"{prefix}{key}={text}")
    return ", ".join(parts)


class AccountSync:
    object_type = OBJECT_TYPE
    cursor_name = CURSOR_NAME
    noun = "Account"
    missing_reason = "no longer selected by the mapping's condition, or deleted"

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.mapping = ctx.mappings.customer
        self.sink = CustomerSink(ctx.gateway)
        self.tax_ids = TaxIdSink(ctx.gateway)

    # ---- queries ---------------------------------------------------------------------------

    def _select(self) -> str:
        fields = soql_fields(self.mapping)
        if self.ctx.scope is not None:
            fields = [*fields, *(f for f in self.ctx.scope.router.account_fields() if f not in fields)]
        return f"SELECT {', '.join(fields)} FROM {SF_OBJECT}"

    def _where(self, *clauses: str) -> str:
        parts = [f"({self.mapping.condition})"] if self.mapping.condition else []
        parts.extend(c for c in clauses if c)
        return f" WHERE {' AND '.join(parts)}" if parts else ""

    def poll_query(self, since: datetime | None) -> str:
        return polling.poll_query(self, since)

    def mapping_version(self) -> str:
        return polling.mapping_version(self.mapping)

    # ---- one batch ------------------------------------------------------------------------------

    def process(
        self, rows: Sequence[Mapping[str, Any]], report: RunReport, links: dict[str, Link] | None = None
    ) -> None:
        if not rows:
            return
        ctx = self.ctx
        ids = [r["Id"] for r in rows]
        if links is None:
            links = ctx.store.links.get_many(ctx.stripe_account, OBJECT_TYPE, ids)
        notes: dict[str, list[str]] = {}  # values the mapping left out (on_invalid: omit), per Account
        plans = self.plan_rows(rows, links, notes)

        if report.dry_run:
            for row, plan in plans:
                report.add(self.dry_outcome(row, plan).noted(notes[row["Id"]]))
            return

        # Unchanged records are most of a rerun: clear failures only where there are some.
        failing = ctx.store.failures.failing_ids(OBJECT_TYPE, ids)
        creates = {
            plan.salesforce_id: self._create(plan) for _row, plan in plans if plan.action is Action.CREATE
        }
        links = {**links, **record_intents(ctx.store, ctx.stripe_account, list(creates.values()))}
        batch = Batch(CUSTOMER, SF_OBJECT, WriteBack(ctx.sf))

        def apply(item: tuple[Mapping[str, Any], Plan]) -> Outcome | None:
            row, plan = item
            base = Outcome(
                OBJECT_TYPE, plan.salesforce_id, self._label(row), plan.action.value, "failed", plan.stripe_id
            )
            outcome = pipeline.apply_safely(
                ctx, base, lambda: self._apply(row, plan, links.get(plan.salesforce_id), batch)
            )
            return outcome.noted(notes[plan.salesforce_id]) if outcome is not None else None

        outcomes = pipeline.apply_all(ctx, plans, apply)
        done = [o for o in outcomes if o is not None]
        for o in done:
            report.add(o)
        pipeline.finish(ctx, batch, done, {r["Id"]: r for r in rows}, self.mapping.write_back, failing)
        if len(done) < len(outcomes):
            pipeline.unapplied(ctx, report, len(outcomes) - len(done))

    def plan_rows(
        self,
        rows: Sequence[Mapping[str, Any]],
        links: Mapping[str, Link],
        notes: dict[str, list[str]] | None = None,
    ) -> list[tuple[Mapping[str, Any], Plan]]:
        """Map and plan every row, no Stripe call: what `process` applies and a dry run shows.
        `notes` (when given) receives each row's mapping notes: the values left out and why."""
        id_field = self.mapping.write_back.stripe_id
        routes = AccountRoutes(self.ctx, rows, links) if self.ctx.scope is not None else None
        plans: list[tuple[Mapping[str, Any], Plan]] = []
        for row in rows:
            mapped = map_record(self.mapping, dict(row))
            if notes is not None:
                notes[row["Id"]] = mapped.notes
            link = links.get(row["Id"])
            view = None
            if link is not None:
                view = LinkView(
                    link.stripe_id, link.status, dict(link.field_hashes or {}), link.idempotency_key
                )
            params, stripe_id = mapped.params, row.get(id_field)
            if routes is not None:
                refused = routes.refusal(row)
                if refused is not None:
                    plans.append((row, refused))
                    continue
                if routes.member(row):  # the home account's Customer, this account's own fields
                    params = {k: v for k, v in params.items() if k not in SHARED_CUSTOMER_FIELDS}
                    stripe_id = stripe_id or routes.home_customer(row)
                    if link is None and not stripe_id:
                        plans.append((row, routes.waiting(row)))
                        continue
            plan = plan_record(row["Id"], params, [str(e) for e in mapped.errors], view, stripe_id)
            plans.append((row, plan))
        return plans

    def selected_rows(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """These Accounts as the customer mapping selects them (its condition applied): an id
        missing from the answer is not a billing entity, or was deleted."""
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), polling.ID_BATCH):
            chunk = list(ids[start : start + polling.ID_BATCH])
            soql = f"{self._select()}{self._where(f'Id IN {id_list(chunk)}')}"
            rows.extend(r for page in self.ctx.sf.query_pages(soql) for r in page)
        return rows

    # ---- applying one plan ----------------------------------------------------------------------

    def _label(self, row: Mapping[str, Any]) -> str:
        return str(row.get("Name") or "")

    def dry_outcome(self, row: Mapping[str, Any], plan: Plan) -> Outcome:
        if plan.action is Action.UPDATE:
            message = "send " + ", ".join(
                f"tax IDs -> {describe(v or [])}" if k == TAX_IDS_PARAM else f"{k}={v!r}"
                for k, v in sorted(plan.changes.items())
            )
        elif plan.action in (Action.CREATE, Action.ADOPT, Action.RECOVER):
            fields = {k: v for k, v in plan.params.items() if k != TAX_IDS_PARAM}
            message = "send " + preview_params(fields)
            if plan.params.get(TAX_IDS_PARAM):
                message += f"; tax IDs {describe(plan.params[TAX_IDS_PARAM])}"
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

    def _create(self, plan: Plan) -> Create:
        sid = plan.salesforce_id
        return Create(
            CUSTOMER,
            SF_OBJECT,
            sid,
            idempotency.create_key(self.ctx.stripe_account, OBJECT_TYPE, sid),
            send=lambda key: self.sink.create(sid, plan.params, key),
            find=lambda: self.sink.find_by_salesforce_id(sid),
            refresh=lambda found: self._update(sid, found.id, plan.params, plan.payload_hash)[0] or found,
            expired_fix="clear the Account's Stripe ID field and run the sync again",
        )

    def _apply(self, row: Mapping[str, Any], plan: Plan, link: Link | None, batch: Batch) -> Outcome:
        sid, label = plan.salesforce_id, self._label(row)
        modstamp = parse_modstamp(row["SystemModstamp"])
        refused = refusal(plan, OBJECT_TYPE, label)
        if refused is not None:
            return refused
        if plan.action is Action.NOOP:
            if link is not None and link.sf_modstamp != modstamp:
                batch.hashed(sid, plan.payload_hash, modstamp, plan.hashes)
            return Outcome(OBJECT_TYPE, sid, label, "noop", "unchanged", plan.stripe_id)
        if plan.action is Action.UPDATE:
            assert plan.stripe_id
            version = str(row["SystemModstamp"])
            _customer, tax_notes = self._update(sid, plan.stripe_id, plan.changes, plan.payload_hash, version)
            batch.hashed(sid, plan.payload_hash, modstamp, plan.hashes)
            changed = sorted(k for k in plan.changes if k != TAX_IDS_PARAM)
            message = "changed " + ", ".join(changed) if changed else ""
            outcome = Outcome(OBJECT_TYPE, sid, label, "update", "updated", plan.stripe_id, message)
            return outcome.noted(tax_notes)
        if plan.action is Action.ADOPT:
            return self._adopt(row, plan, modstamp, batch)
        assert link is not None, "an intent is recorded before every create"
        customer = obtain(
            self._create(plan), link, recovering=plan.action is Action.RECOVER, now=self.ctx.now()
        )
        batch.linked(sid, customer.id, plan.payload_hash, modstamp, plan.hashes)
        action = "recover" if plan.action is Action.RECOVER else "create"
        return Outcome(OBJECT_TYPE, sid, label, action, "created", customer.id)

    def _update(
        self, sid: str, customer_id: str, changes: dict[str, Any], payload_hash: str, version: str = ""
    ) -> tuple[Any, list[str]]:
        """Update the Customer: its own fields in one call, a change of its tax ids (`tax_id_data`,
        which Stripe takes on create only) as tax id deletes and creates. (customer or None, notes)

        `version` (the Account's SystemModstamp) goes into the tax id creates' keys with the payload:
        a number removed and added back within Stripe's key window is a new create, not a replay."""
        fields = {k: v for k, v in changes.items() if k != TAX_IDS_PARAM}
        customer = self.sink.update(customer_id, fields, payload_hash) if fields else None
        if TAX_IDS_PARAM not in changes:
            return customer, []
        desired = changes[TAX_IDS_PARAM] or []
        salt = f"{payload_hash}:{version}"
        done = apply_tax_ids(self.tax_ids, self.ctx.stripe_account, sid, customer_id, desired, salt)
        return customer, done

    def _adopt(self, row: Mapping[str, Any], plan: Plan, modstamp: datetime | None, batch: Batch) -> Outcome:
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
            others = store.links.find_by_stripe_id(plan.stripe_id, ctx.stripe_account)
            owner = next((x.sf_id for x in others if x.object_type == OBJECT_TYPE and x.sf_id != sid), owner)
        if owner and owner != sid:
            reason = (
                f"the Stripe ID field holds {plan.stripe_id}, which belongs to Account {owner} "
                "(kept from a merge?); the connector never re-points a Customer. Put this "
                "Account's own Customer ID back, or clear the field"
            )
            return Outcome(
                OBJECT_TYPE,
                sid,
                self._label(row),
                "refuse",
                "refused",
                plan.stripe_id,
                reason,
                code="stripe_id_belongs_to_other",
            )
        params = {**plan.params, "metadata": {**plan.params.get("metadata", {}), SALESFORCE_ID_KEY: sid}}
        # Mapped: Salesforce's set, even none. Not from another account of a sharing group: tax ids
        # are shared, and only the home account writes them.
        member = ctx.scope is not None and ctx.scope.router.home(row).account != ctx.scope.name
        unset: dict[str, Any] = {TAX_IDS_PARAM: []} if self.mapping.tax_ids and not member else {}
        self._update(sid, plan.stripe_id, {**unset, **params}, plan.payload_hash, str(row["SystemModstamp"]))
        key = idempotency.create_key(ctx.stripe_account, OBJECT_TYPE, sid)
        batch.linked(sid, plan.stripe_id, plan.payload_hash, modstamp, plan.hashes, adopted_key=key)
        return Outcome(
            OBJECT_TYPE,
            sid,
            self._label(row),
            "adopt",
            "updated",
            plan.stripe_id,
            "linked the Customer already named in Salesforce",
        )


class AccountRoutes:
    """One batch of Accounts in one of several Stripe accounts: which are refused (routed nowhere,
    or billing through an account that shares no customers with this one), which this account
    bills as their home, and which it bills as a member of the home's sharing group (the same
    Customer id; only this account's own fields are written here)."""

    def __init__(
        self, ctx: SyncContext, rows: Sequence[Mapping[str, Any]], links: Mapping[str, Link]
    ) -> None:
        assert ctx.scope is not None
        self.scope, self.router = ctx.scope, ctx.scope.router
        name = self.scope.name
        new = [str(r["Id"]) for r in rows if r["Id"] not in links]
        shares = self.router.shares_customers
        self.elsewhere = linked_elsewhere(ctx, OBJECT_TYPE, new, allowed=lambda other: shares(other, name))
        self.homes: dict[str, str] = {}  # sf id -> its Customer in its home account (members)
        by_home: dict[str, list[str]] = {}
        for row in rows:
            home = self.router.home(row).account
            if home and home != name and shares(home, name) and row["Id"] in new:
                by_home.setdefault(home, []).append(str(row["Id"]))
        for home, ids in by_home.items():
            self.homes.update(linked_in(ctx, home, OBJECT_TYPE, ids))

    def member(self, row: Mapping[str, Any]) -> bool:
        return self.router.home(row).account != self.scope.name

    def home_customer(self, row: Mapping[str, Any]) -> str | None:
        return self.homes.get(str(row["Id"]))

    def refusal(self, row: Mapping[str, Any]) -> Plan | None:
        sid, name, route = str(row["Id"]), self.scope.name, self.router.home(row)
        if route.account is None:
            return Plan(Action.REFUSE, sid, reason=route.unrouted_reason("Account"), error_code="no_route")
        field = self.router.routing.write_back
        recorded = str(row.get(field) or "") if field else ""
        old = self.elsewhere.get(sid) or (
            recorded
            if recorded in self.router.names and not self.router.shares_customers(recorded, name)
            else ""
        )
        if not self.router.shares_customers(route.account, name):
            old, name = name, route.account  # linked here; its home moved to an account of its own
        if old:
            reason = moved_reason("Account", old, name, route.field, route.value)
            return Plan(Action.REFUSE, sid, reason=reason, error_code="routing_changed")
        return None

    def waiting(self, row: Mapping[str, Any]) -> Plan:
        home = self.router.home(row).account
        reason = (
            f"its Customer is made in its home Stripe account '{home}' (the same id in every account of "
            "the sharing group) and is not there yet: it is used here once it is"
        )
        return Plan(
            Action.REFUSE, str(row["Id"]), reason=reason, error_code="waits_for_home_customer", retryable=True
        )

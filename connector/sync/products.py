"""Product2 -> the Stripe Product its Orders made: name, description and active state kept current.

Products are created by the Orders that bill them (connector.sync.orders, exactly once per
Product2); this pipeline only keeps them up to date. It reads the Product2 rows that carry a
Stripe product id, maps the name and description with the same subscription-mapping slots the
Orders use (`lines.product_name`, `lines.product_description`, read from the Product2 itself), and
sends only the fields whose hash differs from what was last sent (`POST /v1/products/{id}`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from connector.errors import RecordError
from connector.mapping import FieldMapping, LineMapping, ValueSource, WriteBack
from connector.mapping import targets as tg
from connector.mapping.engine import resolve_value
from connector.mapping.transforms import TransformError
from connector.salesforce.writeback import WriteBack as WriteBackBuffer
from connector.state.cursor import parse_modstamp
from connector.state.models import Link
from connector.stripe_sink import idempotency
from connector.stripe_sink.catalog import PRODUCT_ID_KEY, CatalogSink
from connector.sync import pipeline, polling
from connector.sync.context import SyncContext
from connector.sync.exactly_once import PRODUCT
from connector.sync.fieldhash import field_hashes
from connector.sync.pipeline import Batch
from connector.sync.plan import Action, LinkView, Plan, plan_record, refusal
from connector.sync.report import Outcome, RunReport

log = logging.getLogger(__name__)

OBJECT_TYPE = PRODUCT.object_type
SF_OBJECT = "Product2"
PREFIX = f"{SF_OBJECT}."
# The Stripe Product fields this pipeline owns; the rest (metadata) the Orders set at creation.
OWNED = ("name", "description", "active")


def slot_field(source: ValueSource | None) -> str | None:
    """The Product2 field a `lines.product_*` slot reads (`Product2.Name` -> `Name`); None when
    the slot reads the Order Product itself, which a Product2 row cannot answer."""
    if source is None or not source.source or not source.source.startswith(PREFIX):
        return None
    rest = source.source.removeprefix(PREFIX)
    return rest or None


def metadata_entries(lines: LineMapping) -> list[tuple[str, FieldMapping]]:
    """`lines.fields` entries for product.metadata.<key> that read the Product2: (key, entry)."""
    found = []
    for entry in lines.fields:
        parsed = tg.line_target(entry.target)
        if parsed is not None and parsed[0] == "product" and (entry.source is None or slot_field(entry)):
            found.append((parsed[1], entry))
    return found


def product_fields(lines: LineMapping) -> list[str]:
    """The Product2 fields the pipeline reads besides Id and SystemModstamp."""
    fields = ["Name", "IsActive", lines.product_write_back.stripe_id]
    slots = [lines.product_name, lines.product_description, *(e for _k, e in metadata_entries(lines))]
    for slot in slots:
        field = slot_field(slot)
        if field is not None:
            fields.append(field)
    return list(dict.fromkeys(fields))


def product_params(lines: LineMapping, row: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The owned fields for one Product2 row (the Orders' slots, applied to the row as an Order
    Product's `Product2`), and the mapping errors. A slot reading the Order Product is left to
    the Orders: its field is not compared here."""
    record = {"Product2": dict(row)}
    params: dict[str, Any] = {"active": bool(row.get("IsActive", True))}
    errors: list[str] = []
    for slot, target in (("product_name", "name"), ("product_description", "description")):
        source = getattr(lines, slot)
        if slot_field(source) is None:
            continue
        try:
            value = resolve_value(source, record, tg.LINE_SLOTS[slot])
        except TransformError as exc:
            errors.append(f"{source.source} ({slot}): {exc.message}; {exc.fix}")
            continue
        if value not in (None, ""):
            params[target] = value
        elif target == "name":
            errors.append(f"{source.source} ({slot}): the product has no name; fill it in Salesforce")
    for key, entry in metadata_entries(lines):
        try:
            value = resolve_value(entry, record, tg.metadata_spec(key))
        except TransformError as exc:
            errors.append(f"{entry.source or '(default)'} ({entry.target}): {exc.message}; {exc.fix}")
            continue
        if value not in (None, ""):
            params.setdefault("metadata", {})[key] = value
    return params, errors


def compared_fields(lines: LineMapping) -> set[str]:
    """The owned fields this pipeline can answer for: `active` always, name and description when
    their slot reads the Product2."""
    fields = {"active"}
    if slot_field(lines.product_name) is not None:
        fields.add("name")
    if lines.product_description is not None and slot_field(lines.product_description) is not None:
        fields.add("description")
    fields.update(f"metadata.{key}" for key, _entry in metadata_entries(lines))
    return fields


def created_hashes(params: Mapping[str, Any]) -> dict[str, str]:
    """The per-field hashes of a Product the Orders just created (Stripe makes it active): what
    this pipeline compares with, so the first pass after a create sends nothing."""
    owned = {k: params[k] for k in OWNED if params.get(k) not in (None, "")}
    owned.setdefault("active", True)
    if params.get("metadata"):
        owned["metadata"] = dict(params["metadata"])
    return field_hashes(owned)


class ProductSync:
    object_type = OBJECT_TYPE
    cursor_name = SF_OBJECT
    noun = "Product2"
    missing_reason = "carries no Stripe product id (its Orders create it), or deleted"

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.lines = ctx.mappings.subscription.lines
        self.sink = CatalogSink(ctx.gateway)
        self.write_back = WriteBack(stripe_id=self.lines.product_write_back.stripe_id)
        self.compared = compared_fields(self.lines)

    # ---- queries ---------------------------------------------------------------------------

    def _select(self) -> str:
        fields = ["Id", "SystemModstamp", *product_fields(self.lines)]
        return f"SELECT {', '.join(dict.fromkeys(fields))} FROM {SF_OBJECT}"

    def _where(self, *clauses: str) -> str:
        parts = [f"{self.write_back.stripe_id} != null", *(c for c in clauses if c)]
        return f" WHERE {' AND '.join(parts)}"

    def poll_query(self, since: datetime | None) -> str:
        return polling.poll_query(self, since)

    def mapping_version(self) -> str:
        """Only what decides a Product's fields: a change elsewhere in the subscription mapping
        does not re-evaluate every Product."""
        return polling.mapping_version(
            LineMapping(
                product_name=self.lines.product_name,
                product_description=self.lines.product_description,
                product_write_back=self.lines.product_write_back,
                fields=[e for _k, e in metadata_entries(self.lines)],
            )
        )

    # ---- one batch ------------------------------------------------------------------------------

    def plan_rows(self, rows: Sequence[Mapping[str, Any]], links: Mapping[str, Link]) -> list[Plan]:
        """Map and plan every row, no Stripe call."""
        plans: list[Plan] = []
        compared = self.compared
        for row in rows:
            params, errors = product_params(self.lines, row)
            link = links.get(row["Id"])
            view = None
            if link is not None:
                # Only the fields read here count: metadata was the Orders' to set.
                owned = {k: v for k, v in (link.field_hashes or {}).items() if k in compared}
                view = LinkView(link.stripe_id, link.status, owned, link.idempotency_key)
            plans.append(plan_record(row["Id"], params, errors, view, row.get(self.write_back.stripe_id)))
        return plans

    def process(
        self, rows: Sequence[Mapping[str, Any]], report: RunReport, links: dict[str, Link] | None = None
    ) -> None:
        if not rows:
            return
        ctx = self.ctx
        ids = [r["Id"] for r in rows]
        if links is None:
            links = ctx.store.links.get_many(ctx.stripe_account, OBJECT_TYPE, ids)
        plans = self.plan_rows(rows, links)
        by_id = {r["Id"]: r for r in rows}
        if report.dry_run:
            for plan in plans:
                report.add(self._dry_outcome(by_id[plan.salesforce_id], plan))
            return
        failing = ctx.store.failures.failing_ids(OBJECT_TYPE, ids)
        batch = Batch(PRODUCT, SF_OBJECT, WriteBackBuffer(ctx.sf))

        def apply(plan: Plan) -> Outcome | None:
            row = by_id[plan.salesforce_id]
            base = Outcome(
                OBJECT_TYPE, plan.salesforce_id, _label(row), plan.action.value, "failed", plan.stripe_id
            )
            link = links.get(plan.salesforce_id)
            return pipeline.apply_safely(ctx, base, lambda: self._apply(row, plan, link, batch))

        outcomes = pipeline.apply_all(ctx, plans, apply)
        done = [o for o in outcomes if o is not None]
        for o in done:
            report.add(o)
        pipeline.finish(ctx, batch, done, by_id, self.write_back, failing)
        if len(done) < len(outcomes):
            pipeline.unapplied(ctx, report, len(outcomes) - len(done))

    def _dry_outcome(self, row: Mapping[str, Any], plan: Plan) -> Outcome:
        if plan.action is Action.UPDATE:
            message = "send " + ", ".join(f"{k}={v!r}" for k, v in sorted(plan.changes.items()))
        elif plan.action is Action.ADOPT:
            message = "link it and send " + ", ".join(f"{k}={v!r}" for k, v in sorted(plan.params.items()))
        else:
            message = plan.reason
        return Outcome(
            OBJECT_TYPE,
            plan.salesforce_id,
            _label(row),
            plan.action.value,
            "planned",
            plan.stripe_id,
            message,
        )

    # ---- applying one plan ----------------------------------------------------------------------

    def _apply(self, row: Mapping[str, Any], plan: Plan, link: Link | None, batch: Batch) -> Outcome:
        sid, label = plan.salesforce_id, _label(row)
        modstamp = parse_modstamp(row["SystemModstamp"])
        refused = refusal(plan, OBJECT_TYPE, label)
        if refused is not None:
            return refused
        if plan.action in (Action.CREATE, Action.RECOVER):
            # An Order's create of this Product was interrupted: that Order finishes it.
            return Outcome(
                OBJECT_TYPE, sid, label, "noop", "unchanged", plan.stripe_id, "its Order is creating it"
            )
        if plan.action is Action.NOOP:
            if link is not None and link.sf_modstamp != modstamp:
                batch.hashed(sid, plan.payload_hash, modstamp, _merged(link, plan, self.compared))
            return Outcome(OBJECT_TYPE, sid, label, "noop", "unchanged", plan.stripe_id)
        assert plan.stripe_id
        if plan.action is Action.ADOPT:
            return self._adopt(row, plan, modstamp, batch)
        self.sink.update_product(plan.stripe_id, plan.changes, plan.payload_hash)
        batch.hashed(sid, plan.payload_hash, modstamp, _merged(link, plan, self.compared))
        message = "changed " + ", ".join(sorted(plan.changes))
        return Outcome(OBJECT_TYPE, sid, label, "update", "updated", plan.stripe_id, message)

    def _adopt(self, row: Mapping[str, Any], plan: Plan, modstamp: datetime | None, batch: Batch) -> Outcome:
        """A Product2 naming a Product the state store does not link (a rebuilt store, an id an
        admin typed): linked when it is this Product2's, and brought up to its fields."""
        sid = plan.salesforce_id
        assert plan.stripe_id
        product = self.sink.retrieve_product(plan.stripe_id)
        if product is None:
            raise RecordError(
                "stripe_id_unknown",
                f"the Product2's {self.write_back.stripe_id} holds {plan.stripe_id}, which does not exist in "
                "this Stripe account; clear the field and the next Order that bills it creates a Product",
            )
        owner = (product.to_dict().get("metadata") or {}).get(PRODUCT_ID_KEY)
        if owner and owner != sid:
            return Outcome(
                OBJECT_TYPE,
                sid,
                _label(row),
                "refuse",
                "refused",
                plan.stripe_id,
                f"the Product2's {self.write_back.stripe_id} holds {plan.stripe_id}, which belongs to "
                f"Product2 {owner}; put this Product2's own Product id back, or clear the field",
                code="stripe_id_belongs_to_other",
            )
        self.sink.update_product(plan.stripe_id, plan.params, plan.payload_hash)
        key = idempotency.create_key(self.ctx.stripe_account, OBJECT_TYPE, sid)
        batch.linked(sid, plan.stripe_id, plan.payload_hash, modstamp, plan.hashes, adopted_key=key)
        return Outcome(
            OBJECT_TYPE, sid, _label(row), "adopt", "updated", plan.stripe_id, "linked the id in Salesforce"
        )


def _merged(link: Link | None, plan: Plan, compared: set[str]) -> dict[str, str]:
    """The link's hashes with the fields read here replaced (one not read here keeps its hash)."""
    kept = {k: v for k, v in ((link.field_hashes or {}) if link else {}).items() if k not in compared}
    return {**kept, **plan.hashes}


def _label(row: Mapping[str, Any]) -> str:
    return str(row.get("Name") or "")

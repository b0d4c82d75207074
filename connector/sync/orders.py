"""Activated Orders -> Stripe Products, Prices (and Meters) and a Subscription or Schedule.

One SOQL page of Orders (with their OrderItems as a child subquery) at a time, like Accounts:
plan every Order with the pure `order_rules.plan_order` before any Stripe write, give the
Accounts that lack a Customer one through the Accounts pipeline (all its rules), then apply the
valid Orders side by side on the Stripe workers. What Orders share (a Product2's Product and
Meter, a PricebookEntry's Price) is looked up and created under a lock per key, so the first
Order to need it creates it and the others find the link.

Exactly once: every Stripe create is preceded by a durable intent (state-store link with a
deterministic idempotency key) and followed by `mark_linked`; a rerun after a crash reuses the
key, or for a subscription first lists the Customer's subscriptions for one made for the Order.
A linked Order is never billed again: if its billing content (`order_fingerprint`, kept as the
link's payload hash) changed, the change is reported, not applied.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import stripe

from connector.errors import Disposition, RecordError, classify
from connector.faults import crash_point
from connector.mapping import map_record, soql_fields
from connector.mapping.schema import SubscriptionMapping
from connector.state.cursor import parse_modstamp
from connector.stripe_sink import idempotency
from connector.stripe_sink.catalog import CatalogSink
from connector.stripe_sink.subscriptions import ORDER_ID_KEY, SubscriptionSink, metadata_of
from connector.sync import polling
from connector.sync.context import SyncContext
from connector.sync.keyed_locks import KeyedLocks
from connector.sync.order_rules import (
    LinePrice,
    OrderPlan,
    OrderRefusal,
    OrderRulesConfig,
    ProductSpec,
    ScheduleSpec,
    order_fingerprint,
    plan_order,
)
from connector.sync.report import Outcome, RunReport

log = logging.getLogger(__name__)

OBJECT_TYPE = "subscription"
SF_OBJECT = "Order"
CURSOR_NAME = "Order"
CUSTOMER_TYPE = "customer"
PRODUCT_TYPE = "product"
PRICE_TYPE = "price"
METER_TYPE = "meter"
IDEMPOTENCY_WINDOW = timedelta(hours=23)
# The order rules read the saved payment method from the Account under this key; the pipeline puts
# the value the mapping resolved there, wherever the mapping reads it from.
PAYMENT_METHOD_KEY = "cpq2stripe_payment_method"
CHANGED_MESSAGE = (
    "changed after activation: not re-billed; amend in Stripe by hand "
    "(the connector does not apply changes to a synced Order; {stripe_id} still bills the version "
    "synced first)"
)
_LINE_FIELDS = (
    "Id",
    "OrderItemNumber",
    "Product2Id",
    "PricebookEntryId",
    "ServiceDate",
    "EndDate",
    "SBQQ__ChargeType__c",
    "SBQQ__BillingType__c",
    "SBQQ__BillingFrequency__c",
    "SBQQ__SubscriptionTerm__c",
    "SBQQ__SubscriptionType__c",
    "Product2.Name",
    "Product2.Description",
    "PricebookEntry.UnitPrice",
    "PricebookEntry.CurrencyIsoCode",
)
_ORDER_FIELDS = (
    "OrderNumber",
    "AccountId",
    "EffectiveDate",
    "EndDate",
    "CurrencyIsoCode",
    "Type",
    "Account.Name",
)


class RetryLater(Exception):
    """The outcome is not knowable yet (e.g. Stripe search has not indexed a new object)."""


def rules_config(mapping: SubscriptionMapping, today: date) -> OrderRulesConfig:
    """The order rules' options as the subscription mapping sets them."""
    fields = {f.target: f for f in mapping.fields}
    kwargs: dict[str, Any] = {"today": today, "payment_method_field": PAYMENT_METHOD_KEY}
    method = fields.get("collection_method")
    if method is not None and method.default in ("send_invoice", "charge_automatically"):
        kwargs["collection_method"] = method.default
    due = fields.get("days_until_due")
    kwargs["payment_term_field"] = (due.source if due is not None and due.source else "") or "-"
    if due is not None and isinstance(due.default, int) and not isinstance(due.default, bool):
        kwargs["days_until_due"] = due.default
    lines = mapping.lines
    if lines.unit_price.source:
        kwargs["unit_price_field"] = lines.unit_price.source
    if lines.quantity.source:
        kwargs["quantity_field"] = lines.quantity.source
    return OrderRulesConfig(**kwargs)


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class _Work:
    """One Order of a batch and what the pipeline decided about it so far."""

    row: dict[str, Any]
    link: Any
    plan: OrderPlan | None = None
    outcome: Outcome | None = None
    extra: dict[str, Any] | None = None  # mapped description / metadata


class OrderSync:
    object_type = OBJECT_TYPE
    cursor_name = CURSOR_NAME
    noun = "Order"
    missing_reason = "not activated, not selected by the mapping's condition, or deleted"

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.mapping: SubscriptionMapping = ctx.mappings.subscription
        self.catalog = CatalogSink(ctx.gateway)
        self.subscriptions = SubscriptionSink(ctx.gateway)
        self._prices: dict[str, Any] = {}  # Stripe price id -> retrieved price (None: missing), per run
        self._locks = KeyedLocks()  # one per shared Product, Meter and Price while it is created
        self._stopping = False  # a fatal error: Orders not started yet are left for the next run

    # ---- queries ---------------------------------------------------------------------------

    def _line_fields(self) -> list[str]:
        lines = self.mapping.lines
        fields = set(_LINE_FIELDS) | set(soql_fields(lines))
        fields |= {lines.write_back.stripe_price_id}
        fields |= {f"Product2.{lines.product_write_back.stripe_id}"}
        fields |= {f"PricebookEntry.{lines.price_book_entry_write_back.stripe_id}"}
        fields -= {"OrderId", "SystemModstamp"}
        return ["Id", *sorted(fields - {"Id"})]

    def _select(self) -> str:
        fields = set(soql_fields(self.mapping)) | set(_ORDER_FIELDS)
        fields.add("Account.Stripe_Customer_ID__c")
        due = next((f for f in self.mapping.fields if f.target == "days_until_due"), None)
        if due is not None and due.source:
            fields.add(due.source)
        ordered = ["Id", "SystemModstamp", *sorted(fields - {"Id", "SystemModstamp"})]
        where = f" WHERE ({self.mapping.lines.condition})" if self.mapping.lines.condition else ""
        sub = f"(SELECT {', '.join(self._line_fields())} FROM OrderItems{where} ORDER BY Id)"
        return f"SELECT {', '.join(ordered)}, {sub} FROM {SF_OBJECT}"

    def _where(self, *clauses: str) -> str:
        parts = ["Status = 'Activated'"]
        if self.mapping.condition:
            parts.append(f"({self.mapping.condition})")
        parts.extend(c for c in clauses if c)
        return " WHERE " + " AND ".join(parts)

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
        config = rules_config(self.mapping, ctx.now().date())
        work = [self._decide(self._normalise(row), links.get(row["Id"]), config) for row in rows]

        if report.dry_run:
            for w in work:
                report.add(self._dry_outcome(w))
            return

        for w in work:
            if w.outcome is not None and w.outcome.action == "noop" and w.link is not None:
                self._restage_catalog(w.row, config)
        self._ensure_customers([w for w in work if w.outcome is None], report)
        if report.fatal:
            return
        # Orders are independent once their Customer exists; what they share (Products, Meters,
        # PricebookEntry prices) is created under a per-key lock, so they run side by side.
        todo = [w for w in work if w.outcome is None]
        self._stopping = False
        with ThreadPoolExecutor(max_workers=ctx.settings.stripe_workers) as pool:
            applied = iter(list(pool.map(self._apply_unless_stopping, todo)))  # in `work` order
        outcomes: list[Outcome] = []
        for w in work:
            outcome = w.outcome or next(applied)
            if outcome is None:  # fatal here, or not attempted after a fatal error elsewhere
                report.fatal = ctx.fatal_message or "a fatal error stopped the run"
                continue
            self._finish(w, outcome)
            outcomes.append(outcome)
            report.add(outcome)
        polling.finish_batch(ctx, OBJECT_TYPE, SF_OBJECT, outcomes)

    def _apply_unless_stopping(self, w: _Work) -> Outcome | None:
        if self._stopping:
            return None
        outcome = self._apply_safely(w)
        if outcome is None:
            self._stopping = True
        return outcome

    def _normalise(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of the row shaped as the order rules read it: the mapping's write-back fields
        under the names the rules use, and the saved payment method the mapping resolves."""
        lines = self.mapping.lines
        out = dict(row)
        items = row.get("OrderItems")
        records = (
            list((items or {}).get("records") or []) if isinstance(items, Mapping) else list(items or [])
        )
        norm = []
        for rec in records:
            rec = dict(rec)
            rec["Stripe_Price_ID__c"] = rec.get(lines.write_back.stripe_price_id)
            product = dict(rec.get("Product2") or {}) if rec.get("Product2") else None
            if product is not None:
                product["Stripe_Product_ID__c"] = product.get(lines.product_write_back.stripe_id)
            rec["Product2"] = product
            pbe = dict(rec.get("PricebookEntry") or {})
            pbe["Stripe_Price_ID__c"] = pbe.get(lines.price_book_entry_write_back.stripe_id)
            rec["PricebookEntry"] = pbe
            norm.append(rec)
        out["OrderItems"] = {"records": norm}
        return out

    def _decide(self, row: dict[str, Any], link: Any, config: OrderRulesConfig) -> _Work:
        """Everything that needs no Stripe call: already synced, changed, refused, or a plan."""
        w = _Work(row, link)
        sid, label = row["Id"], self._label(row)
        wb = self.mapping.write_back
        in_salesforce = row.get(wb.stripe_id) or None
        if link is not None and link.status == "linked":
            if in_salesforce and in_salesforce != link.stripe_id:
                w.outcome = Outcome(
                    OBJECT_TYPE,
                    sid,
                    label,
                    "refuse",
                    "refused",
                    link.stripe_id,
                    f"{wb.stripe_id} holds {in_salesforce} but this Order is linked to {link.stripe_id}; "
                    f"the connector never re-points billing. Put {link.stripe_id} back in the field",
                )
            elif order_fingerprint(row, config) != link.payload_hash:
                w.outcome = Outcome(
                    OBJECT_TYPE,
                    sid,
                    label,
                    "refuse",
                    "refused",
                    link.stripe_id,
                    CHANGED_MESSAGE.format(stripe_id=link.stripe_id),
                )
            elif not in_salesforce:
                # Linked but never written back (killed before the write-back): write the IDs of
                # the Order, its products and prices back; everything is linked, nothing is created.
                result = plan_order(row, config)
                if isinstance(result, OrderPlan):
                    w.plan = result
                    w.extra = {"writeback_only": link.stripe_id}
                else:
                    w.outcome = Outcome(OBJECT_TYPE, sid, label, "noop", "unchanged", link.stripe_id)
            else:
                w.outcome = Outcome(OBJECT_TYPE, sid, label, "noop", "unchanged", link.stripe_id)
            return w
        if link is not None and link.status != "pending":
            w.outcome = Outcome(
                OBJECT_TYPE, sid, label, "refuse", "refused", link.stripe_id, f"link is {link.status}"
            )
            return w
        if link is None and in_salesforce:
            w.plan = None
            w.extra = {"adopt": in_salesforce, "fingerprint": order_fingerprint(row, config)}
            return w

        mapped = map_record(self.mapping, row)
        account = dict(row.get("Account") or {})
        account[PAYMENT_METHOD_KEY] = mapped.params.get("default_payment_method")
        if (
            mapped.params.get("collection_method") == "charge_automatically"
            and not account[PAYMENT_METHOD_KEY]
        ):
            config = replace(config, collection_method="charge_automatically")
        result = plan_order({**row, "Account": account}, config)
        messages = [str(e) for e in mapped.errors]
        if isinstance(result, OrderRefusal):
            messages = [result.message(), *messages]
        if messages:
            codes = result.codes if isinstance(result, OrderRefusal) else ["invalid_data"]
            w.outcome = Outcome(OBJECT_TYPE, sid, label, "refuse", "refused", None, "\n".join(messages))
            w.extra = {"code": codes[0] if codes else "refused"}
            return w
        assert isinstance(result, OrderPlan)
        w.plan = result
        w.extra = {
            "description": mapped.params.get("description"),
            "metadata": dict(mapped.params.get("metadata") or {}),
        }
        return w

    def _label(self, row: Mapping[str, Any]) -> str:
        return str(row.get("OrderNumber") or "")

    def _dry_outcome(self, w: _Work) -> Outcome:
        if w.outcome is not None:
            return replace(w.outcome, status="planned")
        sid, label = w.row["Id"], self._label(w.row)
        if w.plan is None:
            assert w.extra is not None
            return Outcome(
                OBJECT_TYPE, sid, label, "adopt", "planned", w.extra["adopt"], "link the id in Salesforce"
            )
        if "writeback_only" in (w.extra or {}):
            stripe_id = (w.extra or {})["writeback_only"]
            return Outcome(OBJECT_TYPE, sid, label, "recover", "planned", stripe_id, "write the IDs back")
        kind = "subscription schedule" if w.plan.is_schedule else "subscription"
        action = "recover" if w.link is not None else "create"
        message = (
            f"{kind} with {len(w.plan.subscription.items)} items, "
            f"{len(w.plan.subscription.invoice_items)} one-time items, {len(w.plan.products)} products"
        )
        return Outcome(OBJECT_TYPE, sid, label, action, "planned", None, message)

    # ---- customers ---------------------------------------------------------------------------

    def _ensure_customers(self, work: list[_Work], report: RunReport) -> None:
        """Give every planned Order's Account a Customer (through the Accounts pipeline) and refuse
        the Orders whose Account cannot have one."""
        from connector.sync.accounts import AccountSync

        ctx = self.ctx
        planned = [w for w in work if w.plan is not None and "writeback_only" not in (w.extra or {})]
        account_ids = sorted({str(w.row.get("AccountId")) for w in planned if w.row.get("AccountId")})
        if not account_ids:
            return
        links = ctx.store.get_links(ctx.stripe_account, CUSTOMER_TYPE, account_ids)
        missing = [a for a in account_ids if not (a in links and links[a].status == "linked")]
        account_report = RunReport("Accounts (for Orders)")
        if missing:
            AccountSync(ctx).sync_ids(missing, account_report)
            for o in account_report.outcomes:
                report.add(o)
            if account_report.fatal:
                report.fatal = account_report.fatal
                return
            links = ctx.store.get_links(ctx.stripe_account, CUSTOMER_TYPE, account_ids)
        why = {o.sf_id: o.message for o in account_report.outcomes if o.object_type == CUSTOMER_TYPE}
        for w in planned:
            account_id = str(w.row.get("AccountId") or "")
            link = links.get(account_id)
            if link is not None and link.status == "linked" and link.stripe_id:
                w.extra = {**(w.extra or {}), "customer": link.stripe_id}
                continue
            reason = why.get(account_id) or (link.status if link is not None else "not synced")
            failure = ctx.store.get_failure(CUSTOMER_TYPE, account_id)
            if failure is not None and not why.get(account_id):
                reason = failure.message
            name = (w.row.get("Account") or {}).get("Name")
            who = f"Account {account_id}" + (f" ({name})" if name else "")
            w.outcome = Outcome(
                OBJECT_TYPE,
                w.row["Id"],
                self._label(w.row),
                "refuse",
                "refused",
                None,
                f"{who} has no Stripe Customer, so the Order cannot be billed: {reason}. Fix: make the "
                "Account a billing entity that the customer mapping syncs (or fix its error), then "
                "run the sync again.",
            )
            w.extra = {**(w.extra or {}), "code": "account_not_synced"}

    # ---- applying one Order ------------------------------------------------------------------

    def _apply_safely(self, w: _Work) -> Outcome | None:
        """Apply one Order; classify any error. None means fatal: the run must stop."""
        sid, label = w.row["Id"], self._label(w.row)
        try:
            if w.plan is None:
                return self._adopt(w)
            if "writeback_only" in (w.extra or {}):
                return self._write_back_only(w)
            return self._apply(w)
        except RetryLater as exc:
            self._record_failure(sid, "retry_later", str(exc), retryable=True)
            return Outcome(OBJECT_TYPE, sid, label, "create", "failed", None, str(exc))
        except Exception as exc:
            verdict = classify(exc)
            if verdict.disposition is Disposition.FATAL:
                log.error("fatal error on Order %s: %s", sid, verdict.message)
                self.ctx.fatal_message = verdict.message
                return None
            retryable = verdict.disposition is Disposition.RETRY
            self._record_failure(sid, verdict.code, verdict.message, retryable=retryable)
            return Outcome(OBJECT_TYPE, sid, label, "create", "failed", None, verdict.message)

    def _record_failure(self, sf_id: str, code: str, message: str, *, retryable: bool) -> None:
        self.ctx.store.record_failure(
            OBJECT_TYPE, SF_OBJECT, sf_id, code, message, retryable=retryable, now=self.ctx.now()
        )

    def _apply(self, w: _Work) -> Outcome:
        ctx, store = self.ctx, self.ctx.store
        plan = w.plan
        assert plan is not None and w.extra is not None
        customer_id = w.extra["customer"]
        sid = plan.order_id

        price_ids = self._catalog(plan, w.row)
        params = plan.subscription.params(customer_id, price_ids)
        extra_meta = {k: str(v) for k, v in (w.extra.get("metadata") or {}).items()}
        params["metadata"] = {**extra_meta, **params["metadata"]}
        if plan.is_schedule:
            phase = params["phases"][0]
            phase["metadata"] = {**extra_meta, **phase["metadata"]}
            if w.extra.get("description"):
                phase["description"] = w.extra["description"]
        elif w.extra.get("description"):
            params["description"] = w.extra["description"]

        link = w.link
        recovering = link is not None
        if link is None:
            key = idempotency.create_key(ctx.stripe_account, OBJECT_TYPE, sid)
            link = store.record_intent(ctx.stripe_account, OBJECT_TYPE, SF_OBJECT, sid, key)
        created = None
        if recovering:
            created = self.subscriptions.find_for_order(customer_id, sid, schedule=plan.is_schedule)
        if created is None:
            try:
                created = self.subscriptions.create(params, link.idempotency_key, schedule=plan.is_schedule)
            except stripe.IdempotencyError:
                created = self.subscriptions.find_for_order(customer_id, sid, schedule=plan.is_schedule)
                if created is None:
                    raise RetryLater(
                        "an interrupted create reached Stripe with other parameters but its subscription "
                        "is not listed yet; the next run links it"
                    ) from None
        crash_point("order.after_subscription")
        modstamp = parse_modstamp(w.row["SystemModstamp"])
        store.mark_linked(
            ctx.stripe_account,
            OBJECT_TYPE,
            sid,
            stripe_id=created.id,
            payload_hash=plan.fingerprint,
            sf_modstamp=modstamp,
        )
        store.clear_failure(OBJECT_TYPE, sid)
        crash_point("order.before_writeback")
        return Outcome(
            OBJECT_TYPE,
            sid,
            self._label(w.row),
            "recover" if recovering else "create",
            "created",
            created.id,
            self._success_message(plan, created.id),
        )

    def _catalog(self, plan: OrderPlan, row: Mapping[str, Any]) -> dict[str, str]:
        """Meters, products and prices of the Order (linked, reused or created; write-backs
        staged); returns OrderItem id -> Stripe price id."""
        # Meters first: the call most likely to be refused (an account without usage billing),
        # and nothing else is created before it.
        metered = {
            lp.spec.product_sf_id
            for lp in plan.prices
            if lp.spec.recurring is not None and lp.spec.recurring.usage_type == "metered"
        }
        meters = {p.sf_id: self._meter(p) for p in plan.products if p.sf_id in metered}
        product_ids = {p.sf_id: self._product(p, row) for p in plan.products}
        return {
            lp.order_item_id: self._price(
                lp, product_ids[lp.spec.product_sf_id], meters.get(lp.spec.product_sf_id), row
            )
            for lp in plan.prices
        }

    def _write_back_only(self, w: _Work) -> Outcome:
        plan = w.plan
        assert plan is not None and w.extra is not None
        self._catalog(plan, w.row)
        stripe_id = w.extra["writeback_only"]
        return Outcome(
            OBJECT_TYPE,
            plan.order_id,
            self._label(w.row),
            "recover",
            "updated",
            stripe_id,
            self._success_message(plan, stripe_id),
        )

    def _restage_catalog(self, row: Mapping[str, Any], config: OrderRulesConfig) -> None:
        """A synced Order's Product and Price ids that Salesforce lacks (their write-back was lost
        to a failure, and nothing re-sends it once the Order itself is written back) are staged
        again from the links: state-store reads only, no Stripe call."""
        plan = plan_order(dict(row), config)
        if not isinstance(plan, OrderPlan):
            return
        for spec in plan.products:
            link = None if spec.stripe_id else self._linked(PRODUCT_TYPE, spec.sf_id)
            if link is not None and link.status == "linked" and link.stripe_id:
                self._stage_product(spec, link.stripe_id)
        for lp in plan.prices:
            if lp.existing_price_id:
                continue
            link = self._linked(PRICE_TYPE, f"{lp.write_back_id}-{_short(lp.spec.key())}")
            if link is not None and link.status == "linked" and link.stripe_id:
                self._stage_price(lp, link.stripe_id, row)

    def _success_message(self, plan: OrderPlan, stripe_id: str) -> str:
        sub = plan.subscription
        parts = [f"{len(sub.items)} recurring item(s)"]
        if sub.invoice_items:
            parts.append(f"{len(sub.invoice_items)} one-time item(s)")
        if isinstance(sub, ScheduleSpec):
            start = datetime.fromtimestamp(sub.start_date, UTC).date() if sub.start_date else None
            return f"Subscription schedule {stripe_id} starts {start}: " + ", ".join(parts)
        return f"Subscription {stripe_id}: " + ", ".join(parts)

    def _adopt(self, w: _Work) -> Outcome:
        """Salesforce names a subscription the state store does not know (e.g. the state was
        rebuilt): link it if it was made for this Order; never create a second one."""
        ctx, store = self.ctx, self.ctx.store
        assert w.extra is not None
        sid, stripe_id = w.row["Id"], w.extra["adopt"]
        obj = self.subscriptions.retrieve(stripe_id)
        owner = metadata_of(obj).get(ORDER_ID_KEY)
        if obj is None or owner != sid:
            raise RecordError(
                "stripe_id_unknown",
                f"{self.mapping.write_back.stripe_id} holds {stripe_id}, which is not a subscription made "
                "for this Order in this Stripe account; the connector never bills an Order twice. "
                "Clear the field to have the connector create the subscription",
            )
        key = idempotency.create_key(ctx.stripe_account, OBJECT_TYPE, sid)
        store.record_intent(ctx.stripe_account, OBJECT_TYPE, SF_OBJECT, sid, key)
        store.mark_linked(
            ctx.stripe_account,
            OBJECT_TYPE,
            sid,
            stripe_id=stripe_id,
            payload_hash=w.extra["fingerprint"],
            sf_modstamp=parse_modstamp(w.row["SystemModstamp"]),
        )
        store.clear_failure(OBJECT_TYPE, sid)
        return Outcome(
            OBJECT_TYPE, sid, self._label(w.row), "adopt", "updated", stripe_id, "linked the id in Salesforce"
        )

    # ---- products, meters, prices --------------------------------------------------------------

    def _linked(self, object_type: str, key_id: str) -> Any:
        return self.ctx.store.get_link(self.ctx.stripe_account, object_type, key_id)

    def _intent(self, object_type: str, sf_object: str, key_id: str, key: str) -> Any:
        return self.ctx.store.record_intent(self.ctx.stripe_account, object_type, sf_object, key_id, key)

    def _link(self, object_type: str, key_id: str, stripe_id: str, payload_hash: str | None = None) -> None:
        self.ctx.store.mark_linked(
            self.ctx.stripe_account,
            object_type,
            key_id,
            stripe_id=stripe_id,
            payload_hash=payload_hash,
            sf_modstamp=None,
        )

    def _product(self, spec: ProductSpec, row: Mapping[str, Any]) -> str:
        """The Stripe Product of a Product2: linked, adopted from the Product2's field, or created."""
        with self._locks.hold(PRODUCT_TYPE, spec.sf_id):
            link = self._linked(PRODUCT_TYPE, spec.sf_id)
            stripe_id = self._product_id(spec, row, link)
        self._stage_product(spec, stripe_id)
        return stripe_id

    def _product_id(self, spec: ProductSpec, row: Mapping[str, Any], link: Any) -> str:
        ctx = self.ctx
        if link is not None and link.status == "linked" and link.stripe_id:
            return link.stripe_id
        key = idempotency.create_key(ctx.stripe_account, PRODUCT_TYPE, spec.sf_id)
        if link is None and spec.stripe_id:
            product = self.catalog.retrieve_product(spec.stripe_id)
            owner = metadata_of(product).get("salesforce_product_id")
            if product is not None and owner in (None, spec.sf_id):
                self._intent(PRODUCT_TYPE, "Product2", spec.sf_id, key)
                self._link(PRODUCT_TYPE, spec.sf_id, product.id)
                return product.id
        if link is None:
            link = self._intent(PRODUCT_TYPE, "Product2", spec.sf_id, key)
        if ctx.now() - link.created_at > IDEMPOTENCY_WINDOW:
            raise RecordError(
                "product_intent_expired",
                f"creating the Stripe Product for Product2 {spec.sf_id} was interrupted more than a day ago; "
                "check Stripe for a product with metadata salesforce_product_id and put its id in the "
                "Product2's Stripe Product ID field",
            )
        params = self._product_params(spec, row)
        try:
            product = self.catalog.create_product(params, link.idempotency_key)
        except stripe.IdempotencyError:
            raise RetryLater(
                f"an interrupted create of the Stripe Product for Product2 {spec.sf_id} reached Stripe with "
                "other data (the product was edited since)"
            ) from None
        crash_point("order.after_product")
        self._link(PRODUCT_TYPE, spec.sf_id, product.id)
        return product.id

    def _product_params(self, spec: ProductSpec, row: Mapping[str, Any]) -> dict[str, Any]:
        params = spec.params()
        items = (row.get("OrderItems") or {}).get("records") or []
        rec = next((r for r in items if str(r.get("Product2Id")) == spec.sf_id), None)
        if rec is not None:
            mapped = map_record(self.mapping.lines, dict(rec))
            if mapped.params.get("product_name"):
                params["name"] = mapped.params["product_name"]
            if "product_description" in mapped.params or self.mapping.lines.product_description:
                desc = mapped.params.get("product_description")
                if desc:
                    params["description"] = desc
                else:
                    params.pop("description", None)
        return params

    def _meter(self, spec: ProductSpec) -> str:
        """One Billing Meter per metered Product2 (Stripe requires one behind a metered price)."""
        ctx = self.ctx
        with self._locks.hold(METER_TYPE, spec.sf_id):
            link = self._linked(METER_TYPE, spec.sf_id)
            if link is not None and link.status == "linked" and link.stripe_id:
                return link.stripe_id
            if link is None:
                key = idempotency.create_key(ctx.stripe_account, METER_TYPE, spec.sf_id)
                link = self._intent(METER_TYPE, "Product2", spec.sf_id, key)
            meter = self.catalog.create_meter(spec.sf_id, spec.name, link.idempotency_key)
            self._link(METER_TYPE, spec.sf_id, meter.id)
            return meter.id

    def _price(self, lp: LinePrice, product_id: str, meter_id: str | None, row: Mapping[str, Any]) -> str:
        """The price a line bills with: the linked one for this spec, the Salesforce one when it
        matches, or a new one; its id is staged for write-back where the rules say."""
        key_id = f"{lp.write_back_id}-{_short(lp.spec.key())}"
        with self._locks.hold(PRICE_TYPE, key_id):
            link = self._linked(PRICE_TYPE, key_id)
            if link is not None and link.status == "linked" and link.stripe_id:
                price_id = link.stripe_id
            elif lp.existing_price_id and self._reusable(lp, product_id, meter_id):
                price_id = lp.existing_price_id
            else:
                price_id = self._create_price(lp, key_id, link, product_id, meter_id)
        self._stage_price(lp, price_id, row)
        return price_id

    def _reusable(self, lp: LinePrice, product_id: str, meter_id: str | None) -> bool:
        assert lp.existing_price_id
        if lp.existing_price_id not in self._prices:
            self._prices[lp.existing_price_id] = self.catalog.retrieve_price(lp.existing_price_id)
        price = self._prices[lp.existing_price_id]
        if price is None or not lp.spec.matches_stripe_price(price.to_dict()):
            return False
        product = price.product if isinstance(price.product, str) else getattr(price.product, "id", None)
        if product != product_id:
            return False
        recurring = price.to_dict().get("recurring") or {}
        return meter_id is None or recurring.get("meter") == meter_id

    def _create_price(
        self, lp: LinePrice, key_id: str, link: Any, product_id: str, meter_id: str | None
    ) -> str:
        ctx = self.ctx
        if link is None:
            key = idempotency.create_key(ctx.stripe_account, PRICE_TYPE, lp.write_back_id, lp.spec.key())
            link = self._intent(PRICE_TYPE, lp.write_back_object, key_id, key)
        if ctx.now() - link.created_at > IDEMPOTENCY_WINDOW:
            raise RecordError(
                "price_intent_expired",
                f"creating a Stripe Price for {lp.write_back_object} {lp.write_back_id} was interrupted more "
                "than a day ago; check Stripe for a price with metadata cpq2stripe_price_key "
                f"{lp.spec.key()} and put its id in the Stripe Price ID field",
            )
        params = lp.spec.params(product_id)
        # The Salesforce record the price belongs to (PricebookEntry or OrderItem): exactly one
        # price per record and spec, checkable from Stripe alone.
        params["metadata"] = {**params.get("metadata", {}), "salesforce_record_id": lp.write_back_id}
        if meter_id is not None:
            params["recurring"] = {**params["recurring"], "meter": meter_id}
        price = self.catalog.create_price(params, link.idempotency_key)
        crash_point("order.after_price")
        self._link(PRICE_TYPE, key_id, price.id)
        self._prices[price.id] = price
        return price.id

    # ---- write-back -------------------------------------------------------------------------------

    def _stage_product(self, spec: ProductSpec, stripe_id: str) -> None:
        field = self.mapping.lines.product_write_back.stripe_id
        if spec.stripe_id != stripe_id:
            self.ctx.writeback.stage(
                "Product2", spec.sf_id, {field: stripe_id}, current={field: spec.stripe_id}
            )

    def _stage_price(self, lp: LinePrice, price_id: str, row: Mapping[str, Any]) -> None:
        lines = self.mapping.lines
        rec = next(r for r in row["OrderItems"]["records"] if str(r.get("Id")) == lp.order_item_id)
        if lp.write_back_object == "PricebookEntry":
            field = lines.price_book_entry_write_back.stripe_id
            current = (rec.get("PricebookEntry") or {}).get(field)
        else:
            field = lines.write_back.stripe_price_id
            current = rec.get(field)
        if current != price_id:
            self.ctx.writeback.stage(
                lp.write_back_object, lp.write_back_id, {field: price_id}, current={field: current}
            )

    def _finish(self, w: _Work, outcome: Outcome) -> None:
        """Record refusals, and stage the Order's write-back."""
        if outcome.status == "refused":
            code = (w.extra or {}).get("code") or (
                "changed_after_activation" if outcome.message.startswith("changed after") else "refused"
            )
            # Fixing the Account does not touch the Order, so the poll would not see it again:
            # that refusal stays due for retries (with backoff); the others wait for an Order edit.
            self.ctx.store.record_failure(
                OBJECT_TYPE,
                SF_OBJECT,
                outcome.sf_id,
                code,
                outcome.message,
                retryable=code == "account_not_synced",
                now=self.ctx.now(),
            )
        elif outcome.status in ("created", "updated", "unchanged"):
            self.ctx.store.clear_failure(OBJECT_TYPE, outcome.sf_id)
        row = w.row
        wb = self.mapping.write_back
        desired: dict[str, Any] = {}
        if outcome.status in ("created", "updated", "unchanged"):
            if outcome.stripe_id:
                desired[wb.stripe_id] = outcome.stripe_id
            if wb.status:
                desired[wb.status] = "Synced"
            changed = {k: v for k, v in desired.items() if row.get(k) != v}
            if not changed:
                return
            if wb.message:
                desired[wb.message] = outcome.message or None
        else:
            if wb.status:
                desired[wb.status] = "Refused" if outcome.status == "refused" else "Failed"
            if wb.message:
                desired[wb.message] = outcome.message
            changed = {k: v for k, v in desired.items() if row.get(k) != v}
            if not changed:
                return
        if wb.synced_at:
            desired[wb.synced_at] = self.ctx.now()
        self.ctx.writeback.stage(SF_OBJECT, row["Id"], desired)

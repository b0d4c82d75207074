"""Activated Orders -> Stripe Products, Prices (and Meters) and a Subscription or Schedule.

One SOQL page of Orders (with their OrderItems as a child subquery) at a time, like Accounts:
decide every Order with the pure `order_rules.plan_order` before any Stripe write, give the
Accounts that lack a Customer one through the Accounts pipeline (all its rules), then apply the
valid Orders side by side on the Stripe workers (connector.sync.pipeline). What Orders share (a
Product2's Product and Meter, a PricebookEntry's Price) is ensured under a lock per key, so the
first Order to need it creates it and the others find the link.

Every create goes through the one exactly-once routine (connector.sync.exactly_once): the batch's
subscription intents are recorded together before any is sent, a shared object's intent just
before its create. A linked Order is never billed again: if its billing content
(`order_fingerprint`, kept as the link's payload hash) changed, the change is reported, not applied.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from connector.errors import RecordError
from connector.mapping import map_record, soql_fields
from connector.mapping.engine import resolve_value
from connector.mapping.schema import CustomerMapping, SubscriptionMapping, ValueSource
from connector.mapping.targets import SKIP_ELAPSED_PERIODS, TRIAL_END
from connector.mapping.transforms import TransformError
from connector.salesforce.writeback import WriteBack
from connector.state.cursor import parse_modstamp
from connector.state.models import Link
from connector.stripe_sink import idempotency
from connector.stripe_sink.catalog import PRODUCT_ID_KEY, CatalogSink
from connector.stripe_sink.coupons import CouponSink
from connector.stripe_sink.subscriptions import ORDER_ID_KEY, SubscriptionSink, metadata_of
from connector.sync import pipeline, polling, price_upkeep, products
from connector.sync.context import SyncContext
from connector.sync.contracts import ApplyContractChange, ContractChanges, contract_lanes, is_contract_change
from connector.sync.exactly_once import (
    COUPON,
    CUSTOMER,
    METER,
    PRICE,
    PRODUCT,
    SUBSCRIPTION,
    Create,
    ensure,
    link_existing,
    obtain,
    record_intents,
)
from connector.sync.fieldhash import field_hashes, payload_hash
from connector.sync.invoices import InvoiceOrders, invoice_preview, is_invoice_id
from connector.sync.keyed_locks import KeyedLocks
from connector.sync.money import from_minor_units
from connector.sync.order_rules import (
    InvoiceSpec,
    ItemSpec,
    LinePrice,
    OrderPlan,
    OrderRefusal,
    OrderRulesConfig,
    ProductSpec,
    Recurrence,
    ScheduleSpec,
    SubscriptionSpec,
    order_fingerprint,
    plan_order,
)
from connector.sync.order_rules.config import TRIAL_END_KEY, CpqAmountFields
from connector.sync.order_rules.discounts import CouponSpec, DiscountFields
from connector.sync.order_rules.fields import LINE_FIELDS, ORDER_FIELDS
from connector.sync.order_rules.tax import AddressFields
from connector.sync.pipeline import Batch
from connector.sync.plan import Action
from connector.sync.report import OK_STATUSES, Outcome, RunReport
from connector.sync.routed import linked_elsewhere, moved_reason

log = logging.getLogger(__name__)

OBJECT_TYPE = SUBSCRIPTION.object_type
SF_OBJECT = "Order"
SF_ACCOUNT = "Account"
CURSOR_NAME = "Order"
# The order rules read the saved payment method from the Account under this key; the pipeline puts
# the value the mapping resolved there, wherever the mapping reads it from.
PAYMENT_METHOD_KEY = "cpq2stripe_payment_method"
CHANGED_MESSAGE = (
    "changed after activation: not re-billed; amend in Stripe by hand "
    "(the connector does not apply changes to a synced Order; {stripe_id} still bills the version "
    "synced first)"
)


def tax_address_fields(customer: CustomerMapping) -> dict[str, Any]:
    """The Account fields the customer mapping fills the Customer's billing and shipping address
    from: what the automatic-tax pre-check reads (connector.sync.order_rules.tax)."""
    sources = {f.target: f.source for f in customer.fields}

    def address(prefix: str) -> AddressFields:
        return AddressFields(
            *(sources.get(f"{prefix}.{part}") for part in ("country", "postal_code", "state"))
        )

    shipping = address("shipping.address")
    return {
        "tax_billing_address": address("address"),
        "tax_shipping_address": shipping if shipping.names() else None,
    }


def rules_config(
    mapping: SubscriptionMapping, today: date, customer: CustomerMapping | None = None
) -> OrderRulesConfig:
    """The order rules' options as the subscription mapping sets them (and, for the automatic-tax
    pre-check, where the customer mapping reads the address)."""
    fields = {f.target: f for f in mapping.fields}
    kwargs: dict[str, Any] = {"today": today, "payment_method_field": PAYMENT_METHOD_KEY}
    if mapping.automatic_tax:
        kwargs["automatic_tax"] = True
        if customer is not None:
            kwargs.update(tax_address_fields(customer))
    tax_behavior = mapping.lines.tax_behavior
    if tax_behavior is not None:
        kwargs["tax_behavior_field"] = tax_behavior.source
        if tax_behavior.default in ("inclusive", "exclusive", "unspecified"):
            kwargs["tax_behavior"] = tax_behavior.default
    method = fields.get("collection_method")
    if method is not None and method.default in ("send_invoice", "charge_automatically"):
        kwargs["collection_method"] = method.default
    due = fields.get("days_until_due")
    kwargs["payment_term_field"] = (due.source if due is not None and due.source else "") or "-"
    if due is not None and isinstance(due.default, int) and not isinstance(due.default, bool):
        kwargs["days_until_due"] = due.default
    skip = mapping.skip_elapsed_periods
    if skip is not None:
        kwargs["skip_elapsed_field"] = skip.source
        kwargs["bill_backdated_period"] = skip.default is not True
    kwargs["finalize_invoices"] = mapping.one_time_invoices.finalize
    if mapping.trial_end is not None and mapping.trial_end.source:
        kwargs["trial_end_field"] = mapping.trial_end.source
    lines = mapping.lines
    if lines.unit_price.source:
        kwargs["unit_price_field"] = lines.unit_price.source
    if lines.quantity.source:
        kwargs["quantity_field"] = lines.quantity.source
    kwargs["discounts"] = discount_fields(mapping)
    if mapping.amendment_proration == "cpq_amounts":
        cpq = mapping.cpq_amounts
        kwargs["cpq_amounts"] = CpqAmountFields(
            net_total=cpq.net_total.source or CpqAmountFields.net_total,
            prorate_multiplier=cpq.prorate_multiplier.source or CpqAmountFields.prorate_multiplier,
            pricing_term=cpq.pricing_term.source or CpqAmountFields.pricing_term,
        )
    return OrderRulesConfig(**kwargs)


def discount_fields(mapping: SubscriptionMapping) -> DiscountFields | None:
    """Where the order rules read discounts: None in net_price mode (the unit price is billed)."""
    d = mapping.discounts
    if not d.coupons:
        return None

    def source(src: ValueSource | None) -> str | None:
        return src.source if src is not None else None

    return DiscountFields(
        list_price=d.list_price.source or "PricebookEntry.UnitPrice",
        line_percent=source(d.line_percent),
        line_amount=source(d.line_amount),
        line_months=source(d.line_months),
        order_percent=source(d.order_percent),
        order_months=source(d.order_months),
    )


def plan_coupons(plan: OrderPlan) -> tuple[CouponSpec, ...]:
    """Every distinct coupon an Order's subscription applies (ensured before it is created)."""
    sub = plan.subscription
    if isinstance(sub, InvoiceSpec):  # one-time-only Orders bill net prices (order_rules.planning)
        return ()
    specs = [i.coupon for i in (*sub.items, *sub.invoice_items)] + [sub.discount]
    unique = {c.key(): c for c in specs if c is not None}
    return tuple(unique[k] for k in sorted(unique))


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _price_key_id(lp: LinePrice) -> str:
    """A line price's link key: the record the price belongs to and the spec it bills."""
    return f"{lp.write_back_id}-{_short(lp.spec.key())}"


def _every(rec: Recurrence) -> str:
    unit = {"month": "month", "year": "year"}[rec.interval]
    return f"every {unit}" if rec.interval_count == 1 else f"every {rec.interval_count} {unit}s"


def _items_text(plan: OrderPlan, items: Sequence[ItemSpec]) -> str:
    names = {p.sf_id: p.name for p in plan.products}
    parts = []
    for item in items:
        spec = plan.price_for(item.order_item_id).spec
        amount = from_minor_units(spec.unit_amount, spec.unit_amount_decimal, spec.currency)
        usage = spec.recurring is not None and spec.recurring.usage_type == "metered"
        quantity = "metered" if usage or item.quantity is None else f"{item.quantity} ×"
        off = f" less {item.coupon.name()}" if item.coupon is not None else ""
        parts.append(f"{names.get(spec.product_sf_id, spec.product_sf_id)} {quantity} {amount}{off}")
    return ", ".join(parts)


def order_preview(plan: OrderPlan, customer: str) -> str:
    """What a dry run says an Order becomes, on one line: the Stripe object and its customer,
    currency and interval, each item (product, quantity, unit amount), the one-time items, start
    and end (or evergreen), and what a backdated start bills."""
    sub = plan.subscription
    if isinstance(sub, InvoiceSpec):  # an Order of one-time lines only: connector.sync.invoices
        return invoice_preview(plan, sub, customer, _items_text(plan, sub.items))
    recurrences = {plan.price_for(i.order_item_id).spec.recurring for i in sub.items} - {None}
    every = ", ".join(sorted(_every(r) for r in recurrences if r is not None)) or "no recurring items"
    parts = [
        f"{'subscription schedule' if plan.is_schedule else 'subscription'} for {customer}",
        f"{plan.currency.upper()} {every}",
        f"items: {_items_text(plan, sub.items) or 'none'}",
    ]
    if sub.invoice_items:
        parts.append(f"one-time: {_items_text(plan, sub.invoice_items)}")
    if sub.discount is not None:
        parts.append(f"the whole Order {sub.discount.name()}")
    if isinstance(sub, ScheduleSpec) and sub.later_phases:  # MDQ segments
        parts += [f"from {_day(at)}: {_items_text(plan, items)}" for at, items in sub.later_phases]
    if isinstance(sub, ScheduleSpec):
        start, end_at = _day(sub.start_date), sub.end_date
    else:
        start = _day(sub.backdate_start_date) if sub.backdate_start_date else "today"
        end_at = sub.cancel_at
    # Stripe ends at the first instant after the Order's End Date: show the End Date itself.
    end = "evergreen" if end_at is None else f"ends {_day(end_at - 86400)}"
    parts.append(f"starts {start}, {end}")
    if isinstance(sub, SubscriptionSpec) and sub.backdating():
        parts.append(sub.backdating())
    if sub.trial_end is not None:
        parts.append(f"trial until {_day(sub.trial_end)} (billing starts then)")
    if sub.automatic_tax:
        parts.append("automatic tax (Stripe Tax)")
    return "; ".join(parts)


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


# ---- what the pipeline decided about one Order, before any Stripe call ---------------------------


@dataclass(frozen=True)
class CreateSubscription:
    """A valid Order to bill: its plan and what the subscription mapping adds to it."""

    plan: OrderPlan
    description: str | None
    metadata: dict[str, str]
    customer_id: str | None = None  # set once the Account's Customer is known
    new_customer: str = ""  # a dry run: the Account whose Customer the run would create first
    invoice_settings: dict[str, Any] = field(default_factory=dict)  # mapped: custom fields, footer


@dataclass(frozen=True)
class AdoptSubscription:
    """Salesforce names a subscription the state store does not know (e.g. the state was rebuilt)."""

    stripe_id: str
    fingerprint: str


@dataclass(frozen=True)
class RestoreWriteBack:
    """Linked but never written back (killed before the write-back): write the ids back."""

    plan: OrderPlan
    stripe_id: str


@dataclass(frozen=True)
class RefreshFields:
    """Linked and unchanged, but the subscription mapping changed since it was synced: bring the
    mapped fields Stripe lets change on a live subscription (description, metadata) in line."""

    stripe_id: str
    description: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class CheckPayment:
    """Linked, but Salesforce shows the Order Incomplete or Failed: ask Stripe whether the
    subscription's first payment came in (active), is still awaited, or never came (expired)."""

    stripe_id: str


@dataclass(frozen=True)
class ChangeContract:
    """An Amendment or Renewal not applied yet: decided after the batch's first Orders are linked
    (it may amend one of them), by connector.sync.contracts."""


Task = (
    CreateSubscription | AdoptSubscription | RestoreWriteBack | CheckPayment | RefreshFields | ChangeContract
)
INCOMPLETE_MESSAGE = (
    "Stripe created subscription {stripe_id}, but its first payment failed, so it is incomplete and "
    "bills nothing: Stripe ends it (incomplete_expired) unless its first invoice is paid within 23 "
    "hours. Fix: have the customer pay that invoice or update their payment method in Stripe; the "
    "connector checks it again until it is active or expired."
)
EXPIRED_MESSAGE = (
    "Stripe ended subscription {stripe_id} (incomplete_expired): its first payment was not made "
    "within 23 hours, so nothing is billed for this Order. Fix: collect a working payment method, "
    "then bill the customer with a new Order."
)


@dataclass
class OrderWork:
    """One Order of a batch: a final outcome decided without Stripe, or a task to apply."""

    row: dict[str, Any]
    link: Link | None
    task: Task | None = None
    outcome: Outcome | None = None


class OrderSync:
    object_type = OBJECT_TYPE
    cursor_name = CURSOR_NAME
    noun = "Order"
    missing_reason = "not activated, not selected by the mapping's condition, or deleted"

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.mapping: SubscriptionMapping = ctx.mappings.subscription
        self.catalog = CatalogSink(ctx.gateway)
        self.coupons = CouponSink(ctx.gateway)
        self.subscriptions = SubscriptionSink(ctx.gateway)
        self._prices: dict[str, Any] = {}  # Stripe price id -> retrieved price (None: missing), per run
        self._locks = KeyedLocks()  # one per shared Product, Meter and Price while it is ensured
        # Overlapping batches (the backfill) may share Accounts: one batch at a time gives them theirs.
        self._customers_lock = threading.Lock()
        self._changed: bool | None = None  # see _mapping_changed
        self.contracts = ContractChanges(self)
        self.invoices = InvoiceOrders(ctx, self.mapping.write_back)

    # ---- queries ---------------------------------------------------------------------------

    def _line_fields(self) -> list[str]:
        lines = self.mapping.lines
        fields = set(LINE_FIELDS) | set(soql_fields(lines)) | set(self.mapping.discounts.line_fields())
        fields |= set(self.mapping.cpq_amount_fields())
        fields |= {lines.write_back.stripe_price_id}
        fields |= {f"Product2.{lines.product_write_back.stripe_id}"}
        fields |= {f"PricebookEntry.{lines.price_book_entry_write_back.stripe_id}"}
        fields -= {"OrderId", "SystemModstamp"}
        if self.ctx.single_currency:
            fields -= {"PricebookEntry.CurrencyIsoCode"}
        return ["Id", *sorted(fields - {"Id"})]

    def _select(self) -> str:
        fields = set(soql_fields(self.mapping)) | set(ORDER_FIELDS)
        fields.add(f"Account.{self.ctx.mappings.customer.write_back.stripe_id}")
        if self.mapping.automatic_tax:  # the pre-check reads the Account's address fields
            taxed = tax_address_fields(self.ctx.mappings.customer).values()
            fields |= {f"Account.{name}" for address in taxed if address for name in address.names()}
        if self.ctx.single_currency:
            fields -= {"CurrencyIsoCode"}
        due = next((f for f in self.mapping.fields if f.target == "days_until_due"), None)
        if due is not None and due.source:
            fields.add(due.source)
        if self.ctx.scope is not None:
            fields |= set(self.ctx.scope.router.order_fields())
        ordered = ["Id", "SystemModstamp", *sorted(fields - {"Id", "SystemModstamp"})]
        where = f" WHERE ({self.mapping.lines.condition})" if self.mapping.lines.condition else ""
        sub = f"(SELECT {', '.join(self._line_fields())} FROM OrderItems{where} ORDER BY Id)"
        return f"SELECT {', '.join(ordered)}, {sub} FROM {SF_OBJECT}"

    def _where(self, *clauses: str) -> str:
        # The status category: admins add their own Status values to the Activated category.
        parts = ["StatusCode = 'Activated'"]
        if self.mapping.condition:
            parts.append(f"({self.mapping.condition})")
        parts.extend(c for c in clauses if c)
        return " WHERE " + " AND ".join(parts)

    def poll_query(self, since: datetime | None) -> str:
        return polling.poll_query(self, since)

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
        config = rules_config(self.mapping, ctx.now().date(), ctx.mappings.customer)
        work = [self._decide(self._normalise(row), links.get(row["Id"]), config) for row in rows]
        if ctx.scope is not None:
            self._refuse_misrouted(work)
        # Every check before a Stripe write, the Accounts' included, whether dry or not: a dry
        # run's plan is what the run does.
        with self._customers_lock:
            self._ensure_customers(work, report)
        if report.fatal or pipeline.stop_requested(ctx, report, rows):
            return
        if report.dry_run:
            for w in work:
                report.add(self._dry_outcome(w, config))
            return

        batch = Batch(SUBSCRIPTION, SF_OBJECT, WriteBack(ctx.sf))
        for w in work:
            if w.outcome is not None and w.outcome.action == "noop" and w.link is not None:
                self._restage_catalog(w.row, config, batch)
        failing = ctx.store.failures.failing_ids(OBJECT_TYPE, ids)
        changes = [w for w in work if isinstance(w.task, ChangeContract)]
        work = [w for w in work if not isinstance(w.task, ChangeContract)]
        todo = [w for w in work if w.outcome is None]
        new = [w for w in todo if w.link is None and isinstance(w.task, CreateSubscription)]
        intents = record_intents(ctx.store, ctx.stripe_account, [self._billing_intent(w) for w in new])

        def apply(w: OrderWork) -> Outcome | None:
            base = Outcome(OBJECT_TYPE, w.row["Id"], self._label(w.row), "create", "failed")
            link = w.link or intents.get(w.row["Id"])
            return pipeline.apply_safely(ctx, base, lambda: self._apply(w, link, batch))

        applied = iter(pipeline.apply_all(ctx, todo, apply))  # in `work` order
        outcomes: list[Outcome] = []
        for w in work:
            outcome = w.outcome or next(applied)
            if outcome is None:  # fatal, or not attempted after a fatal error or a stop request
                pipeline.unapplied(ctx, report, 1)
                continue
            outcomes.append(outcome)
            report.add(outcome)
        pipeline.finish(
            ctx, batch, outcomes, {w.row["Id"]: w.row for w in work}, self.mapping.write_back, failing
        )
        if changes and not report.fatal:
            self._change_contracts(changes, config, report, failing)

    def _billing_intent(self, w: OrderWork) -> Create:
        """The create a new Order's intent is recorded for: its subscription, or its invoice."""
        assert isinstance(w.task, CreateSubscription)
        if w.task.plan.invoice is not None:
            return self.invoices.intent(w.row["Id"], "", {})
        return self._subscription(w.row["Id"], {}, "", False)

    def _change_contracts(
        self, changes: list[OrderWork], config: OrderRulesConfig, report: RunReport, failing: set[str]
    ) -> None:
        """Amendments and Renewals, after the Orders they may amend. A contract's Orders apply one
        at a time in the order of its life (an earlier one's phases are in Stripe before a later one
        is planned); different contracts side by side (`contract_lanes`)."""
        ctx = self.ctx

        def one(w: OrderWork) -> Outcome | None:
            row = w.row
            batch = Batch(SUBSCRIPTION, SF_OBJECT, WriteBack(ctx.sf))  # linked before the next is planned

            def change() -> Outcome:
                decided = self.contracts.decide(row, self._for_order(row, config))
                return decided if isinstance(decided, Outcome) else self.contracts.apply(row, decided, batch)

            base = Outcome(OBJECT_TYPE, row["Id"], self._label(row), "update", "failed")
            outcome = pipeline.apply_safely(ctx, base, change)
            if outcome is not None:
                pipeline.finish(ctx, batch, [outcome], {row["Id"]: row}, self.mapping.write_back, failing)
            return outcome

        for outcomes in pipeline.apply_lanes(ctx, contract_lanes(changes, lambda w: w.row), one):
            for outcome in outcomes:
                if outcome is None:  # fatal, or not attempted after a fatal error or a stop request
                    pipeline.unapplied(ctx, report, 1)
                else:
                    report.add(outcome)

    def _normalise(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of the row shaped as the order rules read it: the mapping's write-back fields
        under the names the rules use, and the saved payment method the mapping resolves."""
        lines = self.mapping.lines
        out = dict(row)
        currency = self.ctx.single_currency
        if currency:
            out["CurrencyIsoCode"] = currency
        account = dict(row.get("Account") or {})
        account["Stripe_Customer_ID__c"] = account.get(self.ctx.mappings.customer.write_back.stripe_id)
        out["Account"] = account
        items = row.get("OrderItems")
        records = (
            list((items or {}).get("records") or []) if isinstance(items, Mapping) else list(items or [])
        )
        norm = []
        # With several Stripe accounts a Product2's or PricebookEntry's one id field cannot name
        # each account's Product and Price: they are found by their content keys instead.
        shared_ids = self.ctx.scope is None
        for rec in records:
            rec = dict(rec)
            rec["Stripe_Price_ID__c"] = rec.get(lines.write_back.stripe_price_id)
            product = dict(rec.get("Product2") or {}) if rec.get("Product2") else None
            if product is not None:
                product["Stripe_Product_ID__c"] = (
                    product.get(lines.product_write_back.stripe_id) if shared_ids else None
                )
            rec["Product2"] = product
            pbe = dict(rec.get("PricebookEntry") or {})
            pbe["Stripe_Price_ID__c"] = (
                pbe.get(lines.price_book_entry_write_back.stripe_id) if shared_ids else None
            )
            if currency:
                pbe["CurrencyIsoCode"] = currency
            rec["PricebookEntry"] = pbe
            norm.append(rec)
        out["OrderItems"] = {"records": norm}
        return out

    def _for_order(self, row: Mapping[str, Any], config: OrderRulesConfig) -> OrderRulesConfig:
        """The rules as this Order sets them: its skip-elapsed-periods switch (a value the mapping
        cannot read keeps the default here; map_record reports it)."""
        skip = self.mapping.skip_elapsed_periods
        if skip is None:
            return config
        try:
            value = resolve_value(skip, dict(row), SKIP_ELAPSED_PERIODS)
        except TransformError:
            return config
        return config if value is None else replace(config, bill_backdated_period=not value)

    def _decide(self, row: dict[str, Any], link: Link | None, config: OrderRulesConfig) -> OrderWork:
        """Everything that needs no Stripe call: already synced, changed, refused, or a task."""
        w = OrderWork(row, link)
        config = self._for_order(row, config)
        sid, label = row["Id"], self._label(row)
        wb = self.mapping.write_back
        # The Order's billing object as Salesforce names it: its subscription, or its invoice.
        in_salesforce = row.get(wb.stripe_id) or (row.get(wb.invoice_id) if wb.invoice_id else None) or None

        def refuse(message: str, code: str, stripe_id: str | None = None) -> OrderWork:
            w.outcome = Outcome(OBJECT_TYPE, sid, label, "refuse", "refused", stripe_id, message, code=code)
            return w

        if link is not None and link.status == "linked":
            if in_salesforce and in_salesforce != link.stripe_id:
                return refuse(
                    f"{wb.stripe_id} holds {in_salesforce} but this Order is linked to {link.stripe_id}; "
                    f"the connector never re-points billing. Put {link.stripe_id} back in the field",
                    "stripe_id_mismatch",
                    link.stripe_id,
                )
            if order_fingerprint(row, config) != link.payload_hash:
                return refuse(
                    CHANGED_MESSAGE.format(stripe_id=link.stripe_id),
                    "changed_after_activation",
                    link.stripe_id,
                )
            billed_by_invoice = is_invoice_id(link.stripe_id)  # nothing to check or refresh on it
            if (
                link.stripe_id
                and not billed_by_invoice
                and wb.status
                and row.get(wb.status) in ("Incomplete", "Failed")
            ):
                w.task = CheckPayment(link.stripe_id)
                return w
            if link.stripe_id and not billed_by_invoice and self._mapping_changed():
                mapped = map_record(self.mapping, row)
                if mapped.errors:
                    return refuse("\n".join(str(e) for e in mapped.errors), "invalid_data", link.stripe_id)
                w.task = RefreshFields(
                    link.stripe_id,
                    mapped.params.get("description"),
                    {k: str(v) for k, v in (mapped.params.get("metadata") or {}).items()},
                )
                return w
            result = plan_order(row, config) if not in_salesforce else None
            if isinstance(result, OrderPlan) and link.stripe_id:
                w.task = RestoreWriteBack(result, link.stripe_id)
            else:
                w.outcome = Outcome(OBJECT_TYPE, sid, label, "noop", "unchanged", link.stripe_id)
            return w
        if link is not None and link.status != "pending":
            return refuse(f"link is {link.status}", link.status, link.stripe_id)
        if is_contract_change(row):  # its Stripe ID field holds the contract's object, adopted by applying
            w.task = ChangeContract()
            return w
        if link is None and in_salesforce:
            w.task = AdoptSubscription(in_salesforce, order_fingerprint(row, config))
            return w

        mapped = map_record(self.mapping, row)
        account = dict(row.get("Account") or {})
        account[PAYMENT_METHOD_KEY] = mapped.params.get("default_payment_method")
        if (
            mapped.params.get("collection_method") == "charge_automatically"
            and not account[PAYMENT_METHOD_KEY]
        ):
            config = replace(config, collection_method="charge_automatically")
        trial = mapped.params.get(TRIAL_END.path)
        result = plan_order({**row, "Account": account, TRIAL_END_KEY: trial}, config)
        messages = [str(e) for e in mapped.errors] + self._line_field_errors(row)
        if isinstance(result, OrderRefusal):
            messages = [result.message(), *messages]
        if messages:
            codes = result.codes if isinstance(result, OrderRefusal) else ["invalid_data"]
            return refuse("\n".join(messages), codes[0] if codes else "refused")
        assert isinstance(result, OrderPlan)
        w.task = CreateSubscription(
            result,
            mapped.params.get("description"),
            {k: str(v) for k, v in (mapped.params.get("metadata") or {}).items()},
            invoice_settings=dict(mapped.params.get("invoice_settings") or {}),
        )
        return w

    def _label(self, row: Mapping[str, Any]) -> str:
        return str(row.get("OrderNumber") or "")

    def mapping_version(self) -> str:
        return polling.mapping_version(self.mapping)

    def _mapping_changed(self) -> bool:
        """Whether linked Orders were synced under another subscription mapping than this one
        (until a full re-evaluation records this one)."""
        if self._changed is None:
            known = self.ctx.store.cursors.mapping_version(CURSOR_NAME)
            self._changed = known is not None and known != self.mapping_version()
        return self._changed

    def _dry_outcome(self, w: OrderWork, config: OrderRulesConfig) -> Outcome:
        if w.outcome is not None:
            return replace(w.outcome, status="planned")
        sid, label, task = w.row["Id"], self._label(w.row), w.task
        if isinstance(task, ChangeContract):
            decided = self.contracts.decide(w.row, self._for_order(w.row, config))
            if isinstance(decided, Outcome):
                return replace(decided, status="planned")
            assert isinstance(decided, ApplyContractChange)
            preview = self.contracts.preview(decided)
            return Outcome(OBJECT_TYPE, sid, label, "update", "planned", decided.contract_stripe_id, preview)
        if isinstance(task, AdoptSubscription):
            return Outcome(
                OBJECT_TYPE, sid, label, "adopt", "planned", task.stripe_id, "link the id in Salesforce"
            )
        if isinstance(task, RestoreWriteBack):
            return Outcome(
                OBJECT_TYPE, sid, label, "recover", "planned", task.stripe_id, "write the IDs back"
            )
        if isinstance(task, CheckPayment):
            return Outcome(
                OBJECT_TYPE, sid, label, "check", "planned", task.stripe_id, "check the first payment"
            )
        if isinstance(task, RefreshFields):
            fields = ["description", *(f"metadata.{k}" for k in sorted(task.metadata))]
            message = f"mapping changed: send {', '.join(fields)} where Stripe differs"
            return Outcome(OBJECT_TYPE, sid, label, "update", "planned", task.stripe_id, message)
        assert isinstance(task, CreateSubscription)
        action = "recover" if w.link is not None else "create"
        customer = task.customer_id or f"new customer for {task.new_customer}"
        return Outcome(OBJECT_TYPE, sid, label, action, "planned", None, order_preview(task.plan, customer))

    # ---- several Stripe accounts ---------------------------------------------------------------

    def _refuse_misrouted(self, work: list[OrderWork]) -> None:
        """Orders this account may not bill: routed nowhere, billed already through another
        account, or sent here while their Account's Customer lives in an account that does not
        share customers with this one."""
        scope = self.ctx.scope
        assert scope is not None
        router, name = scope.router, scope.name
        new = [str(w.row["Id"]) for w in work if w.outcome is None and w.link is None]
        elsewhere = linked_elsewhere(self.ctx, OBJECT_TYPE, new, allowed=lambda _other: False)
        field = router.routing.write_back
        for w in work:
            if w.outcome is not None or w.link is not None:
                continue
            route, home = router.order_route(w.row), router.order_home(w.row)
            recorded = str(w.row.get(field) or "") if field else ""
            old = elsewhere.get(str(w.row["Id"])) or (recorded if recorded and recorded != name else "")
            if route.account is None or home.account is None:
                code, reason = "no_route", (route if route.account is None else home).unrouted_reason("Order")
            elif old:
                code, reason = "routing_changed", moved_reason("Order", old, name, route.field, route.value)
            elif not router.shares_customers(home.account, name):
                code = "account_not_shared"
                reason = (
                    f"this Order bills through Stripe account '{name}' ({route.field} is {route.value!r}) "
                    f"but its Account's Customer is in '{home.account}', and the two accounts share no "
                    "customers (routing.yaml gives them no common sharing_group). Fix: route the Order to "
                    f"'{home.account}', or put both accounts in one Stripe Organization sharing group"
                )
            else:
                continue
            w.outcome = Outcome(
                OBJECT_TYPE, w.row["Id"], self._label(w.row), "refuse", "refused", None, reason, code
            )

    # ---- customers ---------------------------------------------------------------------------

    def _ensure_customers(self, work: list[OrderWork], report: RunReport) -> None:
        """Give every Order to bill its Account's Customer and refuse the Orders whose Account
        cannot have one. The same checks in a dry run, without the creates: an Account is
        eligible when the customer mapping selects it (its condition) and plans it without an
        error or refusal. Accounts planned or applied here go in `report` as Account outcomes
        (the run's report regroups them under Accounts)."""
        from connector.sync.accounts import AccountSync

        ctx = self.ctx
        planned = [w for w in work if w.outcome is None and isinstance(w.task, CreateSubscription)]
        account_ids = sorted({str(w.row.get("AccountId")) for w in planned if w.row.get("AccountId")})
        if not account_ids:
            return
        links = ctx.store.links.get_many(ctx.stripe_account, CUSTOMER.object_type, account_ids)
        missing = [a for a in account_ids if not (a in links and links[a].status == "linked")]
        accounts = AccountSync(ctx)
        rows = accounts.selected_rows(missing) if missing else []
        plans = {str(row["Id"]): plan for row, plan in accounts.plan_rows(rows, links)}
        refused = (Action.ERROR, Action.REFUSE)
        why = {sid: plan.reason for sid, plan in plans.items() if plan.action in refused}
        if report.dry_run:
            for row in rows:
                report.add(accounts.dry_outcome(row, plans[str(row["Id"])]))
        elif missing:
            not_selected = [a for a in missing if a not in plans]
            if not_selected:
                ctx.store.failures.clear_many(CUSTOMER.object_type, not_selected)
            account_report = RunReport(SF_ACCOUNT, object_type=CUSTOMER.object_type)
            accounts.process(rows, account_report)
            report.outcomes.extend(account_report.outcomes)
            if account_report.fatal:
                report.fatal = account_report.fatal
                return
            why.update({o.sf_id: o.message for o in account_report.outcomes if o.status not in OK_STATUSES})
            links = ctx.store.links.get_many(ctx.stripe_account, CUSTOMER.object_type, account_ids)
        for w in planned:
            assert isinstance(w.task, CreateSubscription)
            account_id = str(w.row.get("AccountId") or "")
            link = links.get(account_id)
            name = (w.row.get("Account") or {}).get("Name")
            if link is not None and link.status == "linked" and link.stripe_id:
                w.task = replace(w.task, customer_id=link.stripe_id)
                continue
            plan = plans.get(account_id)
            if report.dry_run and plan is not None and account_id not in why:
                # Created (or adopted) by the run before this Order is billed.
                label = f"{plan.stripe_id} (named in Salesforce)" if plan.action is Action.ADOPT else ""
                w.task = replace(w.task, new_customer=str(name or account_id), customer_id=label or None)
                continue
            reason = why.get(account_id) or self._why_not(account_id)
            w.outcome = self._no_customer(w, account_id, name, reason)

    def _why_not(self, account_id: str) -> str:
        """Why an Account the customer mapping did not plan has no Customer."""
        failure = self.ctx.store.failures.get(CUSTOMER.object_type, account_id)
        if failure is not None:
            return failure.message
        return (
            "the customer mapping does not select it (not a billing entity by its condition), "
            "or it was deleted"
        )

    def _no_customer(self, w: OrderWork, account_id: str, name: Any, reason: str) -> Outcome:
        who = f"Account {account_id}" + (f" ({name})" if name else "")
        # Fixing the Account does not touch the Order, so a poll would not see it again: this
        # refusal stays due for retries (with backoff); the others wait for an Order edit.
        return Outcome(
            OBJECT_TYPE,
            w.row["Id"],
            self._label(w.row),
            "refuse",
            "refused",
            None,
            f"{who} has no Stripe Customer, so the Order cannot be billed: {reason}. Fix: make the "
            "Account a billing entity that the customer mapping syncs (or fix its error), then "
            "run the sync again.",
            code="account_not_synced",
            retryable=True,
        )

    # ---- applying one Order ------------------------------------------------------------------

    def _apply(self, w: OrderWork, link: Link | None, batch: Batch) -> Outcome:
        task, sid, label = w.task, w.row["Id"], self._label(w.row)
        if isinstance(task, AdoptSubscription):
            return self._adopt(w, task, batch)
        if isinstance(task, CheckPayment):
            return self._check_payment(sid, label, task.stripe_id)
        if isinstance(task, RefreshFields):
            return self._refresh(sid, label, task)
        if isinstance(task, RestoreWriteBack):
            self._catalog(task.plan, w.row, batch)
            if is_invoice_id(task.stripe_id):
                return self.invoices.restore(w.row, task.stripe_id, batch, label)
            message = self._success_message(task.plan, task.stripe_id)
            return Outcome(OBJECT_TYPE, sid, label, "recover", "updated", task.stripe_id, message)
        assert isinstance(task, CreateSubscription) and task.customer_id and link is not None
        plan = task.plan
        price_ids = self._catalog(plan, w.row, batch)
        if isinstance(plan.subscription, InvoiceSpec):
            return self._invoice(w, task, plan.subscription, price_ids, link, batch)
        for coupon in plan_coupons(plan):
            self._coupon(coupon)
        params = plan.subscription.params(task.customer_id, price_ids)
        params["metadata"] = {**task.metadata, **params["metadata"]}
        if plan.is_schedule:
            for phase in params["phases"]:  # several with MDQ segments: each reaches the subscription
                phase["metadata"] = {**task.metadata, **phase["metadata"]}
                if task.description:
                    phase["description"] = task.description
        elif task.description:
            params["description"] = task.description
        if task.invoice_settings:  # a schedule's first phase carries them to its subscription
            holder = params["phases"][0] if plan.is_schedule else params
            holder["invoice_settings"] = {**holder.get("invoice_settings", {}), **task.invoice_settings}
        recovering = w.link is not None
        create = self._subscription(sid, params, task.customer_id, plan.is_schedule)
        created = obtain(create, link, recovering=recovering, now=self.ctx.now())
        batch.linked(sid, created.id, plan.fingerprint, parse_modstamp(w.row["SystemModstamp"]))
        if getattr(created, "status", None) == "incomplete":
            return self._incomplete(sid, label, created.id, "recover" if recovering else "create")
        return Outcome(
            OBJECT_TYPE,
            sid,
            label,
            "recover" if recovering else "create",
            "created",
            created.id,
            self._success_message(plan, created.id),
        )

    def _invoice(
        self,
        w: OrderWork,
        task: CreateSubscription,
        spec: InvoiceSpec,
        price_ids: dict[str, str],
        link: Link,
        batch: Batch,
    ) -> Outcome:
        """An Order of one-time lines: its invoice (connector.sync.invoices), with what the
        subscription mapping adds (description, metadata)."""
        assert task.customer_id
        params = spec.params(task.customer_id)
        params["metadata"] = {**task.metadata, **params["metadata"]}
        if task.description:
            params["description"] = task.description
        for key in ("custom_fields", "footer"):  # the mapping's invoice_settings, on the invoice itself
            if task.invoice_settings.get(key):
                params[key] = task.invoice_settings[key]
        return self.invoices.apply(
            w.row,
            task.plan,
            spec,
            task.customer_id,
            params,
            price_ids,
            link,
            batch,
            recovering=w.link is not None,
            label=self._label(w.row),
        )

    def _refresh(self, sid: str, label: str, task: RefreshFields) -> Outcome:
        """Send the mapped fields that differ from the live object; keys the mapping no longer
        has are left alone (the connector cannot tell them from keys set in Stripe)."""
        found = self.subscriptions.retrieve(task.stripe_id)
        if found is None:
            message = (
                f"Stripe no longer has {task.stripe_id}; the connector never re-creates billing on its own."
            )
            return Outcome(
                OBJECT_TYPE, sid, label, "error", "failed", task.stripe_id, message, "stripe_missing"
            )
        live = metadata_of(found)
        changes: dict[str, Any] = {}
        metadata = {k: v for k, v in task.metadata.items() if live.get(k) != v}
        if metadata:
            changes["metadata"] = metadata
        schedule = task.stripe_id.startswith("sub_sched_")  # a schedule has no description of its own
        if not schedule and (getattr(found, "description", None) or None) != task.description:
            changes["description"] = task.description or ""
        if not changes:
            return Outcome(OBJECT_TYPE, sid, label, "noop", "unchanged", task.stripe_id)
        self.subscriptions.update(task.stripe_id, changes, payload_hash(field_hashes(changes)))
        sent = sorted(k for k in changes if k != "metadata") + [f"metadata.{k}" for k in sorted(metadata)]
        message = f"mapping changed: sent {', '.join(sent)}"
        return Outcome(OBJECT_TYPE, sid, label, "update", "updated", task.stripe_id, message)

    def _incomplete(self, sid: str, label: str, stripe_id: str, action: str) -> Outcome:
        """Created, first payment failed: kept due (retryable) so the retry job checks it again."""
        message = INCOMPLETE_MESSAGE.format(stripe_id=stripe_id)
        return Outcome(
            OBJECT_TYPE, sid, label, action, "incomplete", stripe_id, message, "subscription_incomplete", True
        )

    def _check_payment(self, sid: str, label: str, stripe_id: str) -> Outcome:
        found = self.subscriptions.retrieve(stripe_id)
        status = getattr(found, "status", None) if found is not None else None
        if status == "incomplete":
            return self._incomplete(sid, label, stripe_id, "noop")
        if status == "incomplete_expired":
            message = EXPIRED_MESSAGE.format(stripe_id=stripe_id)
            return Outcome(
                OBJECT_TYPE, sid, label, "error", "failed", stripe_id, message, "incomplete_expired"
            )
        if found is None:
            message = f"Stripe no longer has {stripe_id}; the connector never re-creates billing on its own."
            return Outcome(OBJECT_TYPE, sid, label, "error", "failed", stripe_id, message, "stripe_missing")
        return Outcome(
            OBJECT_TYPE, sid, label, "recover", "updated", stripe_id, f"Subscription {stripe_id} is {status}"
        )

    def _subscription(self, sid: str, params: dict[str, Any], customer_id: str, schedule: bool) -> Create:
        return Create(
            SUBSCRIPTION,
            SF_OBJECT,
            sid,
            idempotency.create_key(self.ctx.stripe_account, OBJECT_TYPE, sid),
            send=lambda key: self.subscriptions.create(params, key, schedule=schedule),
            find=lambda: self.subscriptions.find_for_order(customer_id, sid, schedule=schedule),
        )

    def _catalog(self, plan: OrderPlan, row: Mapping[str, Any], batch: Batch) -> dict[str, str]:
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
        product_ids = {p.sf_id: self._product(p, row, batch) for p in plan.products}
        return {
            lp.order_item_id: self._price(
                lp, product_ids[lp.spec.product_sf_id], meters.get(lp.spec.product_sf_id), row, batch
            )
            for lp in plan.prices
        }

    def _success_message(self, plan: OrderPlan, stripe_id: str) -> str:
        sub = plan.subscription
        if isinstance(sub, InvoiceSpec):
            return f"Invoice {stripe_id}: {len(sub.items)} one-time item(s)"
        parts = [f"{len(sub.items)} recurring item(s)"]
        if sub.invoice_items:
            parts.append(f"{len(sub.invoice_items)} one-time item(s)")
        if isinstance(sub, ScheduleSpec):
            start = datetime.fromtimestamp(sub.start_date, UTC).date() if sub.start_date else None
            if sub.later_phases:
                parts.append(f"{len(sub.later_phases) + 1} phases (MDQ segments)")
            return f"Subscription schedule {stripe_id} starts {start}: " + ", ".join(parts)
        return f"Subscription {stripe_id}: " + ", ".join(parts)

    def _restage_catalog(self, row: Mapping[str, Any], config: OrderRulesConfig, batch: Batch) -> None:
        """A synced Order's Product and Price ids that Salesforce lacks (their write-back was lost
        to a failure, and nothing re-sends it once the Order itself is written back) are staged
        again from the links: state-store reads only, no Stripe call."""
        plan = plan_order(dict(row), config)
        if not isinstance(plan, OrderPlan):
            return
        for spec in plan.products:
            link = None if spec.stripe_id else self._linked(PRODUCT.object_type, spec.sf_id)
            if link is not None and link.status == "linked" and link.stripe_id:
                self._stage_product(spec, link.stripe_id, batch)
        for lp in plan.prices:
            if lp.existing_price_id:
                continue
            link = self._linked(PRICE.object_type, _price_key_id(lp))
            if link is not None and link.status == "linked" and link.stripe_id:
                self._stage_price(lp, link.stripe_id, row, batch)

    def _adopt(self, w: OrderWork, task: AdoptSubscription, batch: Batch) -> Outcome:
        """Link the subscription Salesforce names if it was made for this Order; never create a
        second one."""
        sid = w.row["Id"]
        invoice = is_invoice_id(task.stripe_id)  # an Order of one-time lines: its invoice
        noun = "invoice" if invoice else "subscription"
        sink = self.invoices.sink if invoice else self.subscriptions
        obj = sink.retrieve(task.stripe_id)
        if obj is None or metadata_of(obj).get(ORDER_ID_KEY) != sid:
            raise RecordError(
                "stripe_id_unknown",
                f"{self.mapping.write_back.id_field(task.stripe_id)} holds {task.stripe_id}, which is not "
                f"a {noun} made for this Order in this Stripe account; the connector never bills an Order "
                f"twice. Clear the field to have the connector create the {noun}",
            )
        if invoice:
            self.invoices.stage_url(w.row, obj, batch)
        key = idempotency.create_key(self.ctx.stripe_account, "invoice" if invoice else OBJECT_TYPE, sid)
        modstamp = parse_modstamp(w.row["SystemModstamp"])
        batch.linked(sid, task.stripe_id, task.fingerprint, modstamp, adopted_key=key)
        return Outcome(
            OBJECT_TYPE,
            sid,
            self._label(w.row),
            "adopt",
            "updated",
            task.stripe_id,
            "linked the id in Salesforce",
        )

    # ---- products, meters, prices --------------------------------------------------------------

    def _linked(self, object_type: str, key_id: str) -> Link | None:
        return self.ctx.store.links.get(self.ctx.stripe_account, object_type, key_id)

    def _ensure(self, create: Create, link: Link | None = None, hashes: dict[str, str] | None = None) -> str:
        return ensure(
            self.ctx.store, self.ctx.stripe_account, create, self.ctx.now(), link=link, field_hashes=hashes
        )

    def _product(self, spec: ProductSpec, row: Mapping[str, Any], batch: Batch) -> str:
        """The Stripe Product of a Product2: linked, adopted from the Product2's field, or created."""
        with self._locks.hold(PRODUCT.object_type, spec.sf_id):
            link = self._linked(PRODUCT.object_type, spec.sf_id)
            params = self._product_params(spec, row)
            create = Create(
                PRODUCT,
                "Product2",
                spec.sf_id,
                idempotency.create_key(self.ctx.stripe_account, PRODUCT.object_type, spec.sf_id),
                send=lambda key: self.catalog.create_product(params, key),
                expired_fix=(
                    f"check Stripe for a product with metadata {PRODUCT_ID_KEY} {spec.sf_id} and put its id "
                    "in the Product2's Stripe Product ID field"
                ),
            )
            stripe_id = None
            if link is None and spec.stripe_id:
                product = self.catalog.retrieve_product(spec.stripe_id)
                if product is not None and metadata_of(product).get(PRODUCT_ID_KEY) in (None, spec.sf_id):
                    link_existing(self.ctx.store, self.ctx.stripe_account, create, product.id)
                    stripe_id = str(product.id)
            if stripe_id is None:
                # What the Product2 pipeline (connector.sync.products) compares with later.
                stripe_id = self._ensure(create, link, hashes=products.created_hashes(params))
        self._stage_product(spec, stripe_id, batch)
        return stripe_id

    def _product_params(self, spec: ProductSpec, row: Mapping[str, Any]) -> dict[str, Any]:
        params = spec.params()
        items = (row.get("OrderItems") or {}).get("records") or []
        rec = next((r for r in items if str(r.get("Product2Id")) == spec.sf_id), None)
        if rec is not None:
            mapped = map_record(self.mapping.lines, dict(rec))
            # lines.fields product.metadata.<key>; the connector's own keys win
            params["metadata"] = {**mapped.params.get("product_metadata", {}), **params.get("metadata", {})}
            if mapped.params.get("product_name"):
                params["name"] = mapped.params["product_name"]
            if "product_description" in mapped.params or self.mapping.lines.product_description:
                desc = mapped.params.get("product_description")
                if desc:
                    params["description"] = desc
                else:
                    params.pop("description", None)
        return params

    def _coupon(self, spec: CouponSpec) -> str:
        """One Stripe coupon per distinct discount, shared by every line and Order that has it."""
        key_id = spec.key()
        with self._locks.hold(COUPON.object_type, key_id):
            return self._ensure(
                Create(
                    COUPON,
                    "Order",
                    key_id,
                    idempotency.create_key(self.ctx.stripe_account, COUPON.object_type, key_id),
                    send=lambda key: self.coupons.create(spec, key),
                    find=lambda: self.coupons.find(spec),
                )
            )

    def _meter(self, spec: ProductSpec) -> str:
        """One Billing Meter per metered Product2 (Stripe requires one behind a metered price)."""
        with self._locks.hold(METER.object_type, spec.sf_id):
            return self._ensure(
                Create(
                    METER,
                    "Product2",
                    spec.sf_id,
                    idempotency.create_key(self.ctx.stripe_account, METER.object_type, spec.sf_id),
                    send=lambda key: self.catalog.create_meter(spec.sf_id, spec.name, key),
                )
            )

    def _price(
        self, lp: LinePrice, product_id: str, meter_id: str | None, row: Mapping[str, Any], batch: Batch
    ) -> str:
        """The price a line bills with: the linked one for this spec, the Salesforce one when it
        matches, or a new one; its id is staged for write-back where the rules say."""
        key_id = _price_key_id(lp)
        with self._locks.hold(PRICE.object_type, key_id):
            link = self._linked(PRICE.object_type, key_id)
            if link is not None and link.status == "linked" and link.stripe_id:
                price_id = link.stripe_id
                if price_upkeep.is_archived(link):  # an entry back at an amount it had before
                    price_upkeep.revive(self.ctx, self.catalog, link)
            elif lp.existing_price_id and self._reusable(lp, product_id, meter_id):
                price_id = lp.existing_price_id
            else:
                params = lp.spec.params(product_id)
                # The Salesforce record the price belongs to (PricebookEntry or OrderItem): exactly
                # one price per record and spec, checkable from Stripe alone.
                params["metadata"] = {
                    **self._price_metadata(lp, row),  # lines.fields price.metadata.<key>
                    **params.get("metadata", {}),
                    "salesforce_record_id": lp.write_back_id,
                }
                if meter_id is not None:
                    params["recurring"] = {**params["recurring"], "meter": meter_id}
                create = Create(
                    PRICE,
                    lp.write_back_object,
                    key_id,
                    idempotency.create_key(
                        self.ctx.stripe_account, PRICE.object_type, lp.write_back_id, lp.spec.key()
                    ),
                    send=lambda key: self.catalog.create_price(params, key),
                    expired_fix=(
                        f"check Stripe for a price with metadata cpq2stripe_price_key {lp.spec.key()} and "
                        "put its id in the Stripe Price ID field"
                    ),
                )
                price_id = self._ensure(create, link)
        self._stage_price(lp, price_id, row, batch)
        return price_id

    def _line_field_errors(self, row: Mapping[str, Any]) -> list[str]:
        """Values `lines.fields` cannot send (product or price metadata), per Order Product."""
        targets = {f.target for f in self.mapping.lines.fields}
        if not targets:
            return []
        errors: list[str] = []
        for rec in (row.get("OrderItems") or {}).get("records") or []:
            mapped = map_record(self.mapping.lines, dict(rec))
            errors.extend(str(e) for e in mapped.errors if e.stripe_target in targets)
        return errors

    def _price_metadata(self, lp: LinePrice, row: Mapping[str, Any]) -> dict[str, Any]:
        if not self.mapping.lines.fields:
            return {}
        rec = next(r for r in row["OrderItems"]["records"] if str(r.get("Id")) == lp.order_item_id)
        return dict(map_record(self.mapping.lines, dict(rec)).params.get("price_metadata", {}))

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

    # ---- write-back ----

    def _stage_product(self, spec: ProductSpec, stripe_id: str, batch: Batch) -> None:
        field = self.mapping.lines.product_write_back.stripe_id
        if spec.stripe_id != stripe_id and self.ctx.scope is None:  # one id field, several accounts: none
            batch.writeback.stage("Product2", spec.sf_id, {field: stripe_id}, current={field: spec.stripe_id})

    def _retire(self, old_id: str, new_id: str) -> None:
        if old_id not in self._prices:
            self._prices[old_id] = self.catalog.retrieve_price(old_id)
        if price_upkeep.retire(self.ctx, self.catalog, self._prices[old_id], new_id):
            self._prices.pop(old_id, None)

    def _stage_price(self, lp: LinePrice, price_id: str, row: Mapping[str, Any], batch: Batch) -> None:
        lines = self.mapping.lines
        rec = next(r for r in row["OrderItems"]["records"] if str(r.get("Id")) == lp.order_item_id)
        if lp.write_back_object == "PricebookEntry":
            if self.ctx.scope is not None:
                return  # one id field, several accounts: none written (see _normalise)
            field = lines.price_book_entry_write_back.stripe_id
            current = (rec.get("PricebookEntry") or {}).get(field)
        else:
            field = lines.write_back.stripe_price_id
            current = rec.get(field)
        if current != price_id:
            if lp.write_back_object == "PricebookEntry" and current:  # the entry's Price is replaced
                self._retire(current, price_id)
            batch.writeback.stage(
                lp.write_back_object, lp.write_back_id, {field: price_id}, current={field: current}
            )

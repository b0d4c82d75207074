"""Amendment and Renewal Orders: changes to a contract's one Stripe subscription schedule.

The first Order of a contract is billed by the Orders pipeline (connector.sync.orders) as a
subscription, or a schedule when it starts later. Every later Order of the contract's life (an
Amendment, a termination, a Renewal and its own amendments) changes that same object:
1. read the contract chain from Salesforce (the Orders of each Contract, a Renewal's Opportunity
   naming the Contract it renews) and the chain's links;
2. wait while the first Order or an earlier one is not applied yet (they apply in order);
3. plan every phase from the Orders applied and this one (`order_rules.contract`, pure);
4. move a plain subscription onto a schedule (`from_subscription`, created exactly once);
5. send the one phase update Stripe accepts (`order_rules.schedule_update`, pure), keyed by its
   content, so a rerun after a kill replays it or finds nothing left to change;
6. link the Order to the contract's Stripe object and write it back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from connector.errors import RecordError
from connector.faults import crash_point
from connector.salesforce.soql import id_list, quote
from connector.state.cursor import parse_modstamp
from connector.stripe_sink import idempotency
from connector.stripe_sink.invoices import ORDER_ITEM_ID_KEY
from connector.stripe_sink.subscriptions import ORDER_ID_KEY
from connector.sync.exactly_once import INVOICE_ITEM, SUBSCRIPTION, Create, Kind, ensure, link_existing
from connector.sync.fieldhash import payload_hash
from connector.sync.money import from_minor_units
from connector.sync.order_rules import OrderRefusal, OrderRulesConfig
from connector.sync.order_rules.catch_up import CatchUp, catch_up, cpq_stub
from connector.sync.order_rules.contract import (
    AMENDMENT,
    RENEWAL,
    ContractPlan,
    Phase,
    Term,
    order_kind,
    plan_contract,
)
from connector.sync.order_rules.planning import plan_products
from connector.sync.order_rules.schedule_update import (
    CancelNow,
    LiveSchedule,
    Proration,
    Refused,
    UpdatePhases,
    describe_phases,
    schedule_update,
)
from connector.sync.order_rules.validation import Collector, Line
from connector.sync.pipeline import Batch
from connector.sync.report import Outcome

if TYPE_CHECKING:
    from connector.sync.orders import OrderSync

log = logging.getLogger(__name__)

SCHEDULE = Kind("subscription_schedule", "subscription schedule", after_create="contract.after_schedule")
RENEWED_CONTRACT = "SBQQ__RenewedContract__c"
SF_ORDER_ITEM = "OrderItem"
CONTRACT_TYPES = (AMENDMENT, RENEWAL)
# A change refused only because an earlier Order of its contract is not in Stripe yet.
WAITING_CODES = frozenset({"waits_for_first_order", "waits_for_earlier_order"})


def is_contract_change(row: Mapping[str, Any]) -> bool:
    """An Order that changes a contract already billed rather than starting one."""
    return order_kind(row) in CONTRACT_TYPES


W = TypeVar("W")


def _id_of(value: Any) -> str | None:
    """An id field as Stripe returns it: the id, or the object when expanded."""
    if value is None or isinstance(value, str):
        return value
    found = value.get("id") if isinstance(value, Mapping) else getattr(value, "id", None)
    return str(found) if found else None


def contract_lanes(changes: Sequence[W], row_of: Callable[[W], Mapping[str, Any]]) -> list[list[W]]:
    """Changes that may touch one contract's life in one lane, in the order of that life (date,
    Order number, Id); other lanes apply side by side. Pure: an Order's Contract and the contract
    its Renewal renews join their lanes. A renewed contract amended in another lane of the same
    batch is safe too (the contract's lock serialises the Stripe writes, and a change decided
    before an earlier one is applied waits and is retried), only slower."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    keys: list[str] = []
    for index, change in enumerate(changes):
        row = row_of(change)
        ids = [
            str(i) for i in (row.get("ContractId"), (row.get("Opportunity") or {}).get(RENEWED_CONTRACT)) if i
        ]
        key = ids[0] if ids else f"#{index}"  # no contract: refused on its own
        for other in ids[1:]:
            parent[root(other)] = root(key)
        keys.append(key)
    lanes: dict[str, list[W]] = {}
    for key, change in zip(keys, changes, strict=True):
        lanes.setdefault(root(key), []).append(change)

    def order(change: W) -> tuple[str, str, str]:
        row = row_of(change)
        return (str(row.get("EffectiveDate")), str(row.get("OrderNumber") or ""), str(row["Id"]))

    return [sorted(lane, key=order) for lane in lanes.values()]


@dataclass(frozen=True)
class ApplyContractChange:
    """A planned change and the contract's Stripe object (its first Order's link)."""

    plan: ContractPlan
    contract_stripe_id: str
    first_order_id: str
    rows: Mapping[str, Mapping[str, Any]]  # every Order of the plan, by id (their lines' prices)
    metadata: dict[str, str]
    before: tuple[Phase, ...] = ()  # the phases of the Orders applied so far (what a dry run compares)


class ContractChanges:
    def __init__(self, orders: OrderSync) -> None:
        self.orders = orders
        self.ctx = orders.ctx

    # ---- reading the chain -----------------------------------------------------------------

    def _orders_of(self, contract_ids: Sequence[str]) -> list[dict[str, Any]]:
        soql = self.orders._select() + self.orders._where(f"ContractId IN {id_list(contract_ids)}")
        return [self.orders._normalise(r) for r in self.ctx.sf.query_all(soql)]

    def chain(self, row: Mapping[str, Any]) -> list[Term] | OrderRefusal:
        """The contract's terms, oldest first, back from this Order's Contract through renewals."""
        out = Collector(str(row["Id"]), row.get("OrderNumber"))
        contract = row.get("ContractId")
        if not contract:
            out.order(
                "no_contract",
                "ContractId",
                None,
                f"{'an' if order_kind(row) == AMENDMENT else 'a'} {order_kind(row)} Order changes a "
                "contract, but this one names no Contract",
                "contract the original Order in CPQ and amend or renew it from its Contract",
            )
            return OrderRefusal(str(row["Id"]), row.get("OrderNumber"), tuple(out.reasons))
        terms: list[Term] = []
        seen: set[str] = set()
        while contract and contract not in seen:
            seen.add(str(contract))
            orders = self._orders_of([str(contract)])
            if str(contract) == row.get("ContractId") and all(o["Id"] != row["Id"] for o in orders):
                orders.append(dict(row))
            terms.insert(0, Term(str(contract), tuple(orders)))
            renewals = [o for o in orders if order_kind(o) == RENEWAL]
            if not renewals:
                break
            renewal = min(renewals, key=lambda o: (str(o.get("EffectiveDate")), str(o["Id"])))
            contract = (renewal.get("Opportunity") or {}).get(RENEWED_CONTRACT)
            if not contract:
                out.order(
                    "no_renewed_contract",
                    f"Opportunity.{RENEWED_CONTRACT}",
                    None,
                    "a Renewal Order continues the contract its Opportunity renews, and its Opportunity "
                    "names none",
                    "renew the contract from CPQ (Renewed Contract on the Opportunity)",
                )
                return OrderRefusal(str(row["Id"]), row.get("OrderNumber"), tuple(out.reasons))
        overlap = self._second_renewal(row, terms)
        if overlap:
            out.order("renewal_overlap", "Type", row.get("Type"), overlap, "cancel one of the two renewals")
            return OrderRefusal(str(row["Id"]), row.get("OrderNumber"), tuple(out.reasons))
        return terms

    def _second_renewal(self, row: Mapping[str, Any], terms: list[Term]) -> str:
        """Two Renewals of one contract would both continue it: the later one is refused."""
        if order_kind(row) != RENEWAL or len(terms) < 2:
            return ""
        renewed = terms[-2].contract_id
        soql = self.orders._select() + self.orders._where(
            f"Type = 'Renewal' AND Opportunity.{RENEWED_CONTRACT} = {quote(renewed)}"
        )
        others = [r for r in self.ctx.sf.query_all(soql) if r["Id"] != row["Id"]]
        key = (str(row.get("EffectiveDate")), str(row.get("OrderNumber")), str(row["Id"]))
        first = [
            o for o in others if (str(o.get("EffectiveDate")), str(o.get("OrderNumber")), str(o["Id"])) < key
        ]
        if not first:
            return ""
        o = first[0]
        return (
            f"Order {o.get('OrderNumber') or o['Id']} already renews contract {renewed}; two renewals of "
            "one term would overlap"
        )

    # ---- deciding -------------------------------------------------------------------------------

    def decide(self, row: dict[str, Any], config: OrderRulesConfig) -> ApplyContractChange | Outcome:
        sid, label = str(row["Id"]), self.orders._label(row)

        def refuse(message: str, code: str, *, retryable: bool = False) -> Outcome:
            return Outcome(
                SUBSCRIPTION.object_type, sid, label, "refuse", "refused", None, message, code, retryable
            )

        terms = self.chain(row)
        if isinstance(terms, OrderRefusal):
            return refuse(terms.message(), terms.codes[0])
        ctx = self.ctx
        ids = [str(o["Id"]) for t in terms for o in t.orders]
        links = ctx.store.links.get_many(ctx.stripe_account, SUBSCRIPTION.object_type, ids)
        applied = {i for i, link in links.items() if link.status == "linked" and link.stripe_id}
        first = self._first_order(terms)
        if first is None:
            return refuse(
                "the contract's first Order (Type New) is not among its activated Orders, so there is no "
                "subscription to change. Fix: activate the original Order and give it this Contract",
                "no_first_order",
                retryable=True,
            )
        if str(first["Id"]) not in applied:
            failure = ctx.store.failures.get(SUBSCRIPTION.object_type, str(first["Id"]))
            why = f": {failure.message}" if failure is not None else ""
            return refuse(
                f"waits for the contract's first Order {first.get('OrderNumber') or first['Id']}, which is "
                f"not billed in Stripe yet{why}; this Order is applied once it is",
                "waits_for_first_order",
                retryable=True,
            )
        waiting = [
            o
            for t in terms
            for o in t.orders
            if str(o["Id"]) not in applied and str(o["Id"]) != sid and _sorts_before(o, row, terms)
        ]
        if waiting:
            names = ", ".join(str(o.get("OrderNumber") or o["Id"]) for o in waiting)
            return refuse(
                f"waits for Order(s) {names} of the same contract, which come first and are not applied "
                "yet; Orders of a contract apply in order",
                "waits_for_earlier_order",
                retryable=True,
            )
        included = [
            Term(t.contract_id, tuple(o for o in t.orders if str(o["Id"]) in applied or str(o["Id"]) == sid))
            for t in terms
        ]
        plan = plan_contract([t for t in included if t.orders], sid, config)
        if isinstance(plan, OrderRefusal):
            return refuse(plan.message(), plan.codes[0])
        first_link = links[str(first["Id"])]
        assert first_link.stripe_id is not None
        metadata = {
            "salesforce_order_id": str(first["Id"]),
            "salesforce_account_id": str(first.get("AccountId") or ""),
            "salesforce_contract_id": str(row.get("ContractId") or ""),
        }
        rows = {str(o["Id"]): o for t in included for o in t.orders}
        before = plan_contract(
            [
                t
                for t in (
                    Term(t.contract_id, tuple(o for o in t.orders if str(o["Id"]) in applied)) for t in terms
                )
                if t.orders
            ],
            str(first["Id"]),
            config,
        )
        previous = before.phases if isinstance(before, ContractPlan) else ()
        return ApplyContractChange(plan, first_link.stripe_id, str(first["Id"]), rows, metadata, previous)

    @staticmethod
    def _first_order(terms: list[Term]) -> Mapping[str, Any] | None:
        news = [o for o in terms[0].orders if order_kind(o) == "New"]
        return min(news, key=lambda o: (str(o.get("EffectiveDate")), str(o["Id"]))) if news else None

    def preview(self, task: ApplyContractChange) -> str:
        plan = task.plan
        text = (
            f"{plan.kind} of {task.contract_stripe_id} from {plan.effective.isoformat()}: phases before "
            f"[{describe_phases(task.before, plan.product_names)}], "
            f"after [{describe_phases(plan.phases, plan.product_names)}]"
        )
        now = int(self.ctx.now().timestamp())  # (a test clock's time is read when applying)
        owed = self._owed(task, now)
        if owed:
            what = (
                "CPQ's prorated amounts, one-time items"
                if self.orders.mapping.amendment_proration == "cpq_amounts"
                else "catch-up for the time before it reaches Stripe"
            )
            text += f"; {what} (about): " + ", ".join(
                f"{from_minor_units(o.amount, None, plan.currency)} {plan.currency.upper()} "
                f"({o.summary(plan.product_names)})"
                for o in owed
            )
        return text

    def _owed(self, task: ApplyContractChange, now: int) -> list[CatchUp]:
        """The one-time items a change owes at `now` (Stripe's time for the subscription): CPQ's own
        amounts in cpq_amounts mode, else the catch-up for a change dated before now; none with
        `amendment_proration: none`."""
        plan, mode = task.plan, self.orders.mapping.amendment_proration
        if mode == "none":
            return []
        if mode == "cpq_amounts":
            return cpq_stub(plan.cpq_lines, now, plan.phases[0].start, plan.recurrence)
        return catch_up(task.before, plan.phases, plan.effective, now, plan.phases[0].start, plan.recurrence)

    # ---- applying ----------------------------------------------------------------------------

    def apply(self, row: Mapping[str, Any], task: ApplyContractChange, batch: Batch) -> Outcome:
        sid, label = str(row["Id"]), self.orders._label(row)
        sink = self.orders.subscriptions
        mode = self.orders.mapping.amendment_proration
        # CPQ's own amounts replace Stripe's proration: Stripe bills the new quantities from the
        # next period boundary only, and the time before it is billed as CPQ priced it
        proration: Proration = "none" if mode == "cpq_amounts" else mode
        with self.orders._locks.hold(SCHEDULE.object_type, task.first_order_id):
            schedule_id, sub = self._attached(task)
            # a plain subscription is judged as the schedule Stripe would make of it, so a refused
            # change leaves it untouched
            live = self._live(schedule_id) if schedule_id else self._as_schedule(sub)
            price_ids = self._price_ids(task, batch)
            coupons = {i.coupon.key(): i.coupon for p in task.plan.phases for i in p.items if i.coupon}
            for key in sorted(coupons):  # coupons mode: the phases' line discounts exist first
                self.orders._coupon(coupons[key])
            now = int(self.ctx.now().timestamp())
            decision = schedule_update(task.plan, live, now, price_ids, task.metadata, proration)
            if isinstance(decision, Refused):
                message = f"{decision.problem}. Fix: {decision.fix}."
                return Outcome(
                    SUBSCRIPTION.object_type, sid, label, "refuse", "refused", None, message, decision.code
                )
            self._catch_up(task, live, now, sid, label)
            if isinstance(decision, CancelNow):
                target = schedule_id or task.contract_stripe_id
                sink.cancel(target, prorate=proration != "none")
            else:
                if schedule_id is None:
                    schedule_id = self._schedule_from(task)
                    decision = schedule_update(
                        task.plan, self._live(schedule_id), now, price_ids, task.metadata, proration
                    )
                    if not isinstance(decision, UpdatePhases):  # the same inputs: cannot differ
                        raise RecordError("contract_changed", f"the schedule {schedule_id} changed meanwhile")
                sink.update(schedule_id, decision.params, payload_hash({"phases": str(decision.params)}))
                target = schedule_id
            crash_point("contract.after_update")
        key = idempotency.create_key(self.ctx.stripe_account, SUBSCRIPTION.object_type, sid)
        modstamp = parse_modstamp(row["SystemModstamp"]) if row.get("SystemModstamp") else None
        batch.linked(sid, task.contract_stripe_id, task.plan.fingerprint, modstamp, adopted_key=key)
        message = f"{task.plan.kind.capitalize()} applied to {target}: {decision.summary}"
        return Outcome(
            SUBSCRIPTION.object_type, sid, label, "update", "updated", task.contract_stripe_id, message
        )

    def _catch_up(
        self, task: ApplyContractChange, live: LiveSchedule, now: int, sid: str, label: str
    ) -> None:
        """The change's one-time items (`_owed`: a catch-up for a change dated before now, or CPQ's
        own amounts) billed (or credited) on the subscription's next invoice, one item per changed
        line, each exactly once."""
        plan = task.plan
        owed = self._owed(task, live.clock_time if live.clock_time is not None else now)
        if not owed or live.subscription is None or live.customer is None:
            return
        sink, ctx = self.orders.invoices.sink, self.ctx
        customer = live.customer
        for item in owed:
            line = item.price.order_item_id
            params = {
                "customer": customer,
                "subscription": live.subscription,
                "currency": plan.currency,
                "amount": item.amount,
                "description": item.description(plan.product_names, label or sid),
                "period": {"start": item.since, "end": item.until},
                "metadata": {
                    ORDER_ID_KEY: sid,
                    ORDER_ITEM_ID_KEY: line,
                    "cpq2stripe_catch_up": "true",
                    **({"cpq2stripe_proration": "cpq_amounts"} if item.source == "cpq" else {}),
                },
            }
            create = Create(
                INVOICE_ITEM,
                SF_ORDER_ITEM,
                f"{sid}-{line}",
                idempotency.create_key(ctx.stripe_account, INVOICE_ITEM.object_type, sid, f"catch-up-{line}"),
                send=partial(sink.add_item, params),
                find=partial(sink.pending_item, customer, sid, line),
                expired_fix=f"check customer {customer}'s pending invoice items for Order {label or sid}",
            )
            ensure(ctx.store, ctx.stripe_account, create, ctx.now())
        crash_point("contract.after_catch_up")

    def _attached(self, task: ApplyContractChange) -> tuple[str | None, Any]:
        """The contract's schedule id (None: a plain subscription still) and its subscription."""
        stripe_id = task.contract_stripe_id
        if stripe_id.startswith("sub_sched_"):
            return stripe_id, None
        sub = self.orders.subscriptions.retrieve(stripe_id)
        if sub is None:
            raise RecordError(
                "stripe_missing",
                f"Stripe no longer has {stripe_id}, the contract's subscription; the connector never "
                "re-creates billing on its own",
            )
        attached = getattr(sub, "schedule", None)
        if not attached:
            return None, sub
        schedule_id = str(attached if isinstance(attached, str) else attached.id)
        link = self.ctx.store.links.get(self.ctx.stripe_account, SCHEDULE.object_type, task.first_order_id)
        if link is None or link.status != "linked":  # made by a run killed before it linked it
            link_existing(self.ctx.store, self.ctx.stripe_account, self._schedule_create(task), schedule_id)
        return schedule_id, sub

    def _schedule_from(self, task: ApplyContractChange) -> str:
        """A schedule made from the contract's subscription, exactly once."""
        return ensure(self.ctx.store, self.ctx.stripe_account, self._schedule_create(task), self.ctx.now())

    def _schedule_create(self, task: ApplyContractChange) -> Create:
        sink, stripe_id = self.orders.subscriptions, task.contract_stripe_id
        return Create(
            SCHEDULE,
            "Order",
            task.first_order_id,
            idempotency.create_key(self.ctx.stripe_account, SCHEDULE.object_type, task.first_order_id),
            send=lambda key: sink.schedule_from_subscription(stripe_id, key),
            find=lambda: _attached(sink.retrieve(stripe_id)),
        )

    def _as_schedule(self, sub: Any) -> LiveSchedule:
        """A plain subscription seen as the one-phase schedule `from_subscription` makes of it."""
        data = sub.to_dict()
        items = (data.get("items") or {}).get("data") or []
        start = min(
            (int(i["current_period_start"]) for i in items if i.get("current_period_start")), default=0
        )
        settings: dict[str, Any] = {"collection_method": data.get("collection_method")}
        if data.get("days_until_due") is not None:
            settings["invoice_settings"] = {"days_until_due": data["days_until_due"]}
        method = data.get("default_payment_method")
        if method:
            settings["default_payment_method"] = method if isinstance(method, str) else method.get("id")
        if (data.get("automatic_tax") or {}).get("enabled"):
            settings["automatic_tax"] = {"enabled": True}  # Stripe Tax stays on in every phase
        live_items = tuple(
            {"price": i["price"], "quantity": i.get("quantity"), "metadata": i.get("metadata") or {}}
            for i in items
        )
        clock = data.get("test_clock")
        clock_id = clock if isinstance(clock, str) or clock is None else clock.get("id")
        return LiveSchedule(
            id=str(data["id"]),
            status="active" if data.get("status") not in ("canceled", "incomplete_expired") else "canceled",
            current_start=start,
            first_start=start,
            current_items=live_items,
            settings=settings,
            clock_time=self.orders.subscriptions.clock_time(clock_id) if clock_id else None,
            trial_end=int(data["trial_end"]) if data.get("status") == "trialing" else None,
            subscription=str(data["id"]),
            customer=_id_of(data.get("customer")),
        )

    def _live(self, schedule_id: str) -> LiveSchedule:
        found = self.orders.subscriptions.retrieve(schedule_id)
        if found is None:
            raise RecordError(
                "stripe_missing",
                f"Stripe no longer has subscription schedule {schedule_id}; nothing to amend",
            )
        data = found.to_dict()
        phases = data.get("phases") or []
        current = data.get("current_phase") or None
        current_start = int(current["start_date"]) if current else None
        now_phase = next((p for p in phases if current and p.get("start_date") == current_start), None)
        model = now_phase or (phases[0] if phases else {})
        settings: dict[str, Any] = {}
        if model.get("collection_method"):
            settings["collection_method"] = model["collection_method"]
        days = (model.get("invoice_settings") or {}).get("days_until_due")
        if days is not None:
            settings["invoice_settings"] = {"days_until_due": days}
        method = model.get("default_payment_method")
        if method:
            settings["default_payment_method"] = method if isinstance(method, str) else method.get("id")
        if (model.get("automatic_tax") or {}).get("enabled"):
            settings["automatic_tax"] = {"enabled": True}  # Stripe Tax stays on in every phase
        clock = data.get("test_clock")
        clock_id = clock if isinstance(clock, str) or clock is None else clock.get("id")
        return LiveSchedule(
            clock_time=self.orders.subscriptions.clock_time(clock_id) if clock_id else None,
            id=schedule_id,
            status=str(data.get("status")),
            current_start=current_start,
            first_start=int(phases[0]["start_date"]) if phases else int(data.get("created") or 0),
            current_items=tuple((now_phase or {}).get("items") or ()),
            settings=settings,
            trial_end=int(model["trial_end"]) if model.get("trial_end") else None,
            subscription=_id_of(data.get("subscription")),
            customer=_id_of(data.get("customer")),
        )

    def _price_ids(self, task: ApplyContractChange, batch: Batch) -> dict[str, str]:
        """The Stripe price of every item in the plan's phases: linked, reused or created (the
        target's new lines), each from the Order whose line set it."""
        lines_of = {
            str(rec.get("Id")): oid
            for oid, order in task.rows.items()
            for rec in (order.get("OrderItems") or {}).get("records") or []
        }
        wanted = {i.price.order_item_id: i.price for p in task.plan.phases for i in p.items}
        out: dict[str, str] = {}
        for line_id, line_price in wanted.items():
            row = task.rows[lines_of[line_id]]
            rec = next(r for r in row["OrderItems"]["records"] if str(r.get("Id")) == line_id)
            spec = plan_products([Line(rec, line_id, rec.get("OrderItemNumber"))])[0]
            product_id = self.orders._product(spec, row, batch)
            metered = (
                line_price.spec.recurring is not None and line_price.spec.recurring.usage_type == "metered"
            )
            meter = self.orders._meter(spec) if metered else None
            out[line_id] = self.orders._price(line_price, product_id, meter, row, batch)
        return out


def _attached(sub: Any) -> Any | None:
    """The schedule a subscription is attached to (what an interrupted from_subscription made)."""
    schedule = getattr(sub, "schedule", None) if sub is not None else None
    if not schedule:
        return None
    return schedule if not isinstance(schedule, str) else _Id(schedule)


@dataclass(frozen=True)
class _Id:
    id: str


def _sorts_before(order: Mapping[str, Any], target: Mapping[str, Any], terms: list[Term]) -> bool:
    """Whether `order` comes before `target` in the contract's life (term, then date, then number)."""

    def key(o: Mapping[str, Any]) -> tuple[int, int, str, str]:
        term = next(i for i, t in enumerate(terms) if any(x["Id"] == o["Id"] for x in t.orders))
        first = 0 if order_kind(o) != AMENDMENT else 1
        return (term, first, str(o.get("EffectiveDate") or ""), str(o.get("OrderNumber") or ""))

    return key(order) < key(target)

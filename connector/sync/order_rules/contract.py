"""`plan_contract`: a CPQ contract's whole life as the phases of one Stripe subscription schedule.

Pure, like `plan_order`. The input is the contract's chain of terms (the first contract, then each
renewal's contract), each with its activated Orders; the output is every phase from the first
Order's start to the end of the last term, as far as the target Order (later Orders are applied
after it, in order), or every reason the target cannot be applied.

The rules (CPQ's documented model, as Stripe's own connector applies it):
- The first Order of a term (Type New, or Renewal for a later term) sells full quantities; an
  Amendment sells deltas (+5, -3) against the lines it revises (`SBQQ__RevisedOrderProduct__c`
  names the line first sold). The quantity in force is the sum over the term's Orders, kept per
  line sold and price: a line at a new price is its own item, as CPQ models a price change (the
  old line to zero, a new line at the new price).
- Each Amendment starts a phase on its start date (`EffectiveDate`) with the quantities then in
  force; a second Amendment on the same date replaces that phase's items instead of stacking a
  phase of no length. An Amendment that brings every quantity to zero ends the term there (a
  termination; the cancellation of an evergreen contract).
- Amendments co-terminate with their term (the same End Date; none for evergreen), keep its
  currency and billing interval, fall inside it, and revise only lines the contract has.
- A Renewal continues the chain the day after the renewed term ends, in the same currency and
  interval; its own quantities replace the old ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any, Literal

from connector.sync.money import MoneyError, normalize_currency
from connector.sync.order_rules.config import OrderRulesConfig
from connector.sync.order_rules.cpq_amounts import CpqLine, cpq_lines
from connector.sync.order_rules.dates import parse_date
from connector.sync.order_rules.discounts import CouponSpec, plan_discounts
from connector.sync.order_rules.fields import order_lines
from connector.sync.order_rules.fingerprint import order_fingerprint
from connector.sync.order_rules.planning import plan_prices, plan_products, subscription_end
from connector.sync.order_rules.refusals import OrderRefusal, Reason
from connector.sync.order_rules.segments import refuse_contract_change
from connector.sync.order_rules.specs import LinePrice, ProductSpec, Recurrence
from connector.sync.order_rules.validation import Collector, Line, check_intervals, check_line

AMENDMENT, RENEWAL = "Amendment", "Renewal"
REVISED_FIELD = "SBQQ__RevisedOrderProduct__c"
Kind = Literal["amendment", "termination", "renewal"]


@dataclass(frozen=True)
class Term:
    """One contract of the chain and its activated Orders (any order: the planner sorts them)."""

    contract_id: str
    orders: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class PhaseItem:
    root_id: str  # the OrderItem first sold (what amendment lines revise)
    price: LinePrice  # the line that set this item's price (its Stripe price is that line's)
    quantity: int | None  # None: metered (Stripe takes no quantity there)
    coupon: CouponSpec | None = None  # the line's discount (coupons mode; a forever coupon)


@dataclass(frozen=True)
class Phase:
    start: date
    end: date | None  # exclusive; None: open (evergreen)
    items: tuple[PhaseItem, ...]
    order_id: str  # the Order whose change starts this phase


@dataclass(frozen=True)
class ContractPlan:
    target_id: str
    kind: Kind
    effective: date  # when the target's change takes effect
    phases: tuple[Phase, ...]  # the whole chain, first Order to last term (or termination)
    currency: str  # lower-case
    recurrence: Recurrence
    products: tuple[ProductSpec, ...]  # the target's lines': ensured before the update
    prices: tuple[LinePrice, ...]
    fingerprint: str
    product_names: Mapping[str, str] = field(default_factory=dict)  # Product2 id -> Name, for people
    cpq_lines: tuple[CpqLine, ...] = ()  # amendment_proration cpq_amounts: the target's CPQ figures

    @property
    def ends(self) -> date | None:
        return self.phases[-1].end if self.phases else None


def order_kind(order: Mapping[str, Any]) -> str:
    """New (also an empty Type), Amendment or Renewal."""
    value = str(order.get("Type") or "New")
    return value if value in (AMENDMENT, RENEWAL) else "New"


def _sort_key(order: Mapping[str, Any]) -> tuple[int, str, str, str]:
    starts = 0 if order_kind(order) != AMENDMENT else 1
    return (
        starts,
        str(order.get("EffectiveDate") or ""),
        str(order.get("OrderNumber") or ""),
        str(order["Id"]),
    )


@dataclass
class _Chain:
    """What the Orders before the target left in force."""

    currency: str
    recurrence: Recurrence
    term_start: date
    term_end: date | None
    evergreen: bool
    roots: dict[str, str]  # any OrderItem id of the chain's current term -> the line first sold
    in_force: dict[tuple[str, str], PhaseItem]  # (root id, price key) -> item
    phases: list[Phase]
    terminated: bool = False


def plan_contract(
    terms: Sequence[Term], target_id: str, config: OrderRulesConfig
) -> ContractPlan | OrderRefusal:
    """The phases after applying every Order given (the caller passes the Orders already applied
    and the target; Orders not applied yet follow it later, in order)."""
    target = next((o for t in terms for o in t.orders if str(o["Id"]) == target_id), None)
    if target is None:
        raise ValueError(f"Order {target_id} is not in the contract chain given")
    mdq = Collector(target_id, target.get("OrderNumber"))  # segmented contracts: changed by hand
    if refuse_contract_change([o for t in terms for o in t.orders], order_lines, mdq):
        return OrderRefusal(target_id, target.get("OrderNumber"), tuple(mdq.reasons))
    chain: _Chain | None = None
    kind: Kind = "amendment"
    for index, term in enumerate(terms):
        orders = sorted(term.orders, key=_sort_key)
        for order in orders:
            step = Collector(str(order["Id"]), order.get("OrderNumber"))
            order_type = order_kind(order)
            if chain is None:
                chain = _first(order, config, step)
            elif order_type == RENEWAL and order is orders[0] and index > 0:
                _renew(chain, order, config, step)
            elif order_type == AMENDMENT:
                _amend(chain, order, config, step)
            else:
                step.order(
                    "order_type",
                    "Type",
                    order.get("Type"),
                    f"a {order_type} Order in the middle of contract {term.contract_id}: only its first "
                    "Order (New, or the Renewal of the contract before) sells full quantities, later ones "
                    "must be Amendments",
                    "set the Order Type to Amendment, or give it its own Contract",
                )
            if str(order["Id"]) == target_id:
                if step.reasons:
                    return OrderRefusal(target_id, target.get("OrderNumber"), tuple(step.reasons))
                assert chain is not None
                kind = (
                    "renewal" if order_type == RENEWAL else "termination" if chain.terminated else "amendment"
                )
            elif step.reasons:
                out = Collector(target_id, target.get("OrderNumber"))
                out.order(
                    "earlier_order_refused",
                    None,
                    None,
                    f"Order {order.get('OrderNumber') or order['Id']} of the same contract cannot be applied "
                    f"with it ({step.reasons[0].problem})",
                    "fix that Order first; this one applies after it",
                )
                return OrderRefusal(target_id, target.get("OrderNumber"), tuple(out.reasons))
    assert chain is not None
    names = {
        str(rec.get("Product2Id")): str((rec.get("Product2") or {}).get("Name") or rec.get("Product2Id"))
        for t in terms
        for o in t.orders
        for rec in order_lines(o)
    }
    plan = replace(_plan(chain, target, kind, config), product_names=names)
    if config.cpq_amounts is None or kind != "amendment" or order_kind(target) != AMENDMENT:
        return plan  # a termination ends billing (no proration); a renewal starts on a boundary
    figures = Collector(target_id, target.get("OrderNumber"))
    found = cpq_lines(target, plan.prices, config.cpq_amounts, figures, config.quantity_field)
    if figures.reasons:
        return OrderRefusal(target_id, target.get("OrderNumber"), tuple(figures.reasons))
    return replace(plan, cpq_lines=tuple(found))


def _lines(
    order: Mapping[str, Any], config: OrderRulesConfig, out: Collector, currency: str | None
) -> list[Line]:
    start, end = parse_date(order.get("EffectiveDate")), parse_date(order.get("EndDate"))
    delta = order_kind(order) == AMENDMENT
    if delta:  # an Amendment's line dates are checked against the contract (co-termination)
        config = replace(config, require_line_dates_match=False)
    lines = [
        check_line(rec, order, currency, start, end, config, out, delta=delta) for rec in order_lines(order)
    ]
    if config.discounts is not None:  # coupons mode: a discounted line bills its list price
        found = plan_discounts(lines, order, currency, config, out)
        for ln in lines:
            ln.coupon = found.lines.get(ln.id)
        _contract_coupons(order, found.order, [c for c in found.lines.values() if c], out)
    return lines


def _contract_coupons(
    order: Mapping[str, Any], order_wide: CouponSpec | None, coupons: list[CouponSpec], out: Collector
) -> None:
    """What a contract's phases can carry: a line's forever coupon, on its item in every phase. A
    coupon that ends (once, repeating) would start over in each phase, and an Order-wide one has no
    item to ride on: refused with the way out."""
    if order_wide is not None:
        out.order(
            "discounted_contract",
            None,
            None,
            f"the Order has an Order-wide discount ({order_wide.name()}) and a contract's phases carry "
            "only line discounts",
            "give the discount on the lines, or set the subscription mapping's discounts mode to net_price",
        )
    limited = [c for c in coupons if c.duration != "forever"]
    if limited:
        out.order(
            "discounted_contract",
            None,
            None,
            f"the Order has a discount that ends ({limited[0].name()}); in a contract's schedule each "
            "phase would start it over, so Stripe would discount longer than the quote",
            "apply this change in Stripe by hand (keeping the coupons), make the discount last the whole "
            "term, or set the subscription mapping's discounts mode to net_price",
        )


def _currency(order: Mapping[str, Any], config: OrderRulesConfig, out: Collector) -> str | None:
    try:
        return normalize_currency(order.get("CurrencyIsoCode"), config.extra_currencies)
    except MoneyError as err:
        out.order(err.code, "CurrencyIsoCode", order.get("CurrencyIsoCode"), err.problem, err.fix)
        return None


def _items(lines: list[Line], currency: str) -> dict[tuple[str, str], PhaseItem]:
    recurring = [ln for ln in lines if ln.kind == "recurring" and ln.unit is not None]
    prices = {lp.order_item_id: lp for lp in plan_prices(recurring, currency)}
    return {
        (ln.id, prices[ln.id].spec.key()): PhaseItem(ln.id, prices[ln.id], ln.quantity, ln.coupon)
        for ln in recurring
    }


def _term_bounds(
    order: Mapping[str, Any], lines: list[Line], config: OrderRulesConfig, out: Collector
) -> tuple[date | None, date | None, bool]:
    start = parse_date(order.get("EffectiveDate"))
    if start is None:
        out.order("start_date", "EffectiveDate", order.get("EffectiveDate"), "no valid start date", "set it")
        return None, None, False
    recurring = [ln for ln in lines if ln.kind == "recurring"]
    # The term's end is the Order's; "already ended" is the apply step's business (phases in the past).
    end = subscription_end(order, start, parse_date(order.get("EndDate")), recurring, _no_today(config), out)
    return start, end, bool(recurring) and all(ln.evergreen for ln in recurring)


def _no_today(config: OrderRulesConfig) -> OrderRulesConfig:
    return replace(config, today=date.min)


def _first(order: Mapping[str, Any], config: OrderRulesConfig, out: Collector) -> _Chain | None:
    currency = _currency(order, config, out)
    lines = _lines(order, config, out, currency)
    recurring = [ln for ln in lines if ln.kind == "recurring"]
    check_intervals(recurring, out)
    start, end, evergreen = _term_bounds(order, lines, config, out)
    if out.reasons or currency is None or start is None or not recurring or recurring[0].recurrence is None:
        if not out.reasons:
            out.order("no_recurring_lines", None, None, "the first Order has no recurring line", "add one")
        return None
    in_force = _items(lines, currency)
    return _Chain(
        currency=currency,
        recurrence=recurring[0].recurrence,
        term_start=start,
        term_end=end,
        evergreen=evergreen,
        roots={ln.id: ln.id for ln in recurring},
        in_force=in_force,
        phases=[Phase(start, end, tuple(in_force.values()), str(order["Id"]))],
    )


def _same_currency(chain: _Chain, order: Mapping[str, Any], config: OrderRulesConfig, out: Collector) -> None:
    """One Stripe subscription keeps one currency: an Order of the contract cannot change it."""
    currency = _currency(order, config, out)
    if currency is not None and currency != chain.currency:
        out.order(
            "currency_change",
            "CurrencyIsoCode",
            currency,
            f"the contract bills in {chain.currency}; one Stripe subscription keeps one currency",
            f"sell this in {chain.currency}, or end the contract and start a new one in {currency}",
        )


def _same_interval(chain: _Chain, lines: list[Line], out: Collector) -> None:
    """One Stripe subscription bills on one interval: an Order of the contract cannot change it."""
    for ln in lines:
        every = (ln.recurrence.interval, ln.recurrence.interval_count) if ln.recurrence else None
        if (
            ln.kind == "recurring"
            and every
            and every != (chain.recurrence.interval, chain.recurrence.interval_count)
        ):
            out.line(
                ln,
                "interval_change",
                "SBQQ__BillingFrequency__c",
                ln.record.get("SBQQ__BillingFrequency__c"),
                f"the contract bills every {chain.recurrence.interval_count} {chain.recurrence.interval}(s);"
                " one Stripe subscription bills on one interval",
                "keep the contract's billing frequency, or end the contract and start a new one",
            )


def _amend(chain: _Chain | None, order: Mapping[str, Any], config: OrderRulesConfig, out: Collector) -> None:
    if chain is None:
        return
    _same_currency(chain, order, config, out)
    lines = _lines(order, config, out, chain.currency)
    _same_interval(chain, lines, out)
    start = parse_date(order.get("EffectiveDate"))
    end_raw = order.get("EndDate")
    end = parse_date(end_raw)
    term_end_shown = (
        (chain.term_end - timedelta(days=1)).isoformat() if chain.term_end else "none (evergreen)"
    )
    if chain.terminated:
        out.order(
            "after_termination",
            "EffectiveDate",
            order.get("EffectiveDate"),
            f"the contract was terminated on {chain.phases[-1].end}; nothing is left to amend",
            "renew the contract, or sell a new one",
        )
        return
    if start is None:
        out.order(
            "start_date", "EffectiveDate", None, "the Amendment has no start date", "set its Start Date"
        )
        return
    if start < chain.term_start or (chain.term_end is not None and start >= chain.term_end):
        out.order(
            "outside_term",
            "EffectiveDate",
            start.isoformat(),
            f"the Amendment starts outside its contract term ({chain.term_start} to {term_end_shown})",
            "set a start date inside the term",
        )
    coterminous = (
        end is None if chain.evergreen else end is not None and end + timedelta(days=1) == chain.term_end
    )
    if not coterminous:
        out.order(
            "not_coterminous",
            "EndDate",
            end_raw,
            f"an Amendment must end with its contract (End Date {term_end_shown}); one subscription has "
            "one end",
            "set the Amendment's End Date to the contract's",
        )
    for ln in lines:
        line_end = parse_date(ln.record.get("EndDate"))
        if line_end is not None and (
            chain.term_end is None or line_end + timedelta(days=1) != chain.term_end
        ):
            out.line(
                ln,
                "not_coterminous",
                "EndDate",
                line_end.isoformat(),
                f"an Amendment's line must end with its contract (End Date {term_end_shown})",
                "set the line's End Date to the contract's",
            )
    if out.reasons:
        return
    changes: dict[tuple[str, str], PhaseItem] = {}
    for ln in lines:
        if ln.kind != "recurring" or ln.unit is None:
            continue
        revised = ln.record.get(REVISED_FIELD)
        if revised:
            root = chain.roots.get(str(revised))
            if root is None:
                out.line(
                    ln,
                    "unknown_revised_line",
                    REVISED_FIELD,
                    revised,
                    "the line revises an Order Product this contract does not have",
                    "point Revised Order Product at a line of the contract's Orders, or clear it to sell "
                    "a new product",
                )
                continue
        else:
            root = ln.id
        chain.roots[ln.id] = root
        price = plan_prices([ln], chain.currency)[0]
        key = (root, price.spec.key())
        before = changes.get(key) or chain.in_force.get(key)
        had = (before.quantity or 0) if before is not None else 0
        metered = ln.quantity is None
        quantity = None if metered else had + (ln.quantity or 0)
        if quantity is not None and quantity < 0:
            out.line(
                ln,
                "negative_quantity",
                "Quantity",
                ln.record.get("Quantity"),
                f"the contract has {had} of this line at this price, so removing {-(ln.quantity or 0)} "
                "leaves a negative quantity",
                "correct the Amendment's quantity",
            )
            continue
        coupon = before.coupon if before is not None else ln.coupon
        if before is not None and ln.coupon is not None and ln.coupon != before.coupon:
            was = before.coupon.name() if before.coupon else "not at all"
            out.line(
                ln,
                "discount_changed",
                None,
                ln.coupon.name(),
                f"the line it revises is discounted {was}; one item carries one discount for the whole term",
                "keep the line's discount as sold, or sell the new discount as a new line",
            )
            continue
        changes[key] = PhaseItem(root, before.price if before is not None else price, quantity, coupon)
    if out.reasons:
        return
    chain.in_force.update(changes)
    items = tuple(i for i in chain.in_force.values() if i.quantity is None or i.quantity > 0)
    last = chain.phases[-1]
    kept = (
        chain.phases[:-1]
        if last.start >= start
        else [*chain.phases[:-1], Phase(last.start, start, last.items, last.order_id)]
    )
    if not items:  # a termination: the term ends on the Amendment's start date
        chain.terminated = True
        chain.term_end = start
        chain.phases = kept
    else:
        chain.phases = [*kept, Phase(start, chain.term_end, items, str(order["Id"]))]


def _renew(chain: _Chain | None, order: Mapping[str, Any], config: OrderRulesConfig, out: Collector) -> None:
    if chain is None:
        return
    _same_currency(chain, order, config, out)
    lines = _lines(order, config, out, chain.currency)
    _same_interval(chain, lines, out)
    start, end, evergreen = _term_bounds(order, lines, config, out)
    if chain.evergreen or chain.term_end is None:
        out.order(
            "renewal_of_evergreen",
            "Type",
            order.get("Type"),
            "the contract it renews is evergreen and never ends, so there is no term to renew",
            "amend the evergreen contract instead",
        )
    elif chain.terminated:
        out.order(
            "renewal_after_termination",
            "Type",
            order.get("Type"),
            f"the contract it renews was terminated on {chain.term_end}",
            "sell a new contract instead of a renewal",
        )
    elif start is not None and start != chain.term_end:
        gap = start > chain.term_end
        out.order(
            "renewal_gap" if gap else "renewal_overlap",
            "EffectiveDate",
            start.isoformat(),
            f"the contract it renews ends {(chain.term_end - timedelta(days=1)).isoformat()}, so its renewal "
            f"must start {chain.term_end.isoformat()}; "
            + ("a gap would leave the subscription without a term" if gap else "the terms would overlap"),
            f"start the renewal on {chain.term_end.isoformat()}",
        )
    if out.reasons or start is None:
        return
    recurring = [ln for ln in lines if ln.kind == "recurring"]
    chain.in_force = _items(lines, chain.currency)
    chain.roots = {ln.id: ln.id for ln in recurring}
    chain.term_start, chain.term_end, chain.evergreen = start, end, evergreen
    chain.phases = [*chain.phases, Phase(start, end, tuple(chain.in_force.values()), str(order["Id"]))]


def _plan(chain: _Chain, order: Mapping[str, Any], kind: Kind, config: OrderRulesConfig) -> ContractPlan:
    lines = [ln for ln in _lines(order, config, Collector(None, None), chain.currency) if ln.unit is not None]
    effective = parse_date(order.get("EffectiveDate"))
    assert effective is not None
    return ContractPlan(
        target_id=str(order["Id"]),
        kind=kind,
        effective=effective,
        phases=tuple(chain.phases),
        currency=chain.currency.lower(),
        recurrence=chain.recurrence,
        products=plan_products(lines),
        prices=plan_prices(lines, chain.currency),
        fingerprint=order_fingerprint(order, config),
    )


def reasons_text(reasons: Sequence[Reason]) -> str:
    return "\n".join(r.message() for r in reasons)

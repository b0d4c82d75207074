"""`plan_order`: validate the whole Order, then shape the Stripe objects it needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date, timedelta
from typing import Any, Literal

from connector.sync.money import MoneyError, normalize_currency, to_minor_units
from connector.sync.order_rules.config import TRIAL_END_KEY, OrderRulesConfig
from connector.sync.order_rules.dates import add_months, midnight_utc, parse_date
from connector.sync.order_rules.discounts import OrderDiscounts, plan_discounts
from connector.sync.order_rules.fields import order_lines
from connector.sync.order_rules.fingerprint import order_fingerprint
from connector.sync.order_rules.invoice_plan import check_invoice_lines, check_no_trial, plan_invoice
from connector.sync.order_rules.refusals import OrderRefusal
from connector.sync.order_rules.segments import check_segments, items_per_phase, plan_phases
from connector.sync.order_rules.specs import (
    Collection,
    InvoiceSpec,
    ItemSpec,
    LinePrice,
    OrderPlan,
    PriceSpec,
    ProductSpec,
    Recurrence,
    ScheduleSpec,
    SubscriptionSpec,
)
from connector.sync.order_rules.tax import line_tax_behaviors, tax_location_reason
from connector.sync.order_rules.validation import (
    Collector,
    Line,
    check_intervals,
    check_line,
    read_collection,
)


def plan_order(order: Mapping[str, Any], config: OrderRulesConfig) -> OrderPlan | OrderRefusal:
    """Validate the whole Order (collecting every reason) and, only if nothing is wrong, plan it."""
    order_id = order.get("Id")
    out = Collector(order_id, order.get("OrderNumber"))
    account = order.get("Account") or {}

    if order.get("Type") in config.refused_order_types:
        out.order(
            "order_type",
            "Type",
            order.get("Type"),
            "Orders of this Type are left out of the sync by the connector's settings",
            "change the Order Type, or bill it by hand",
        )

    currency: str | None = None
    try:
        currency = normalize_currency(order.get("CurrencyIsoCode"), config.extra_currencies)
    except MoneyError as err:
        out.order(err.code, "CurrencyIsoCode", order.get("CurrencyIsoCode"), err.problem, err.fix)

    start = parse_date(order.get("EffectiveDate"))
    if start is None:
        out.order(
            "start_date",
            "EffectiveDate",
            order.get("EffectiveDate"),
            "the Order has no valid start date",
            "set the Order Start Date",
        )
    end_raw = order.get("EndDate")
    end = parse_date(end_raw)
    if end_raw not in (None, "") and end is None:
        out.order("end_date", "EndDate", end_raw, "not a valid date", "set a valid Order End Date")

    collection = read_collection(order, account, config, out)
    if config.automatic_tax:
        billed = {**account, "Id": order.get("AccountId")}
        where = tax_location_reason(billed, config.tax_billing_address, config.tax_shipping_address)
        if where is not None:
            out.add(where)

    records = order_lines(order)
    if not records:
        out.order(
            "no_lines",
            None,
            None,
            "the Order has no lines (OrderItems), so there is nothing to bill",
            "add products to the Order before activating it",
        )

    lines = [check_line(rec, order, currency, start, end, config, out) for rec in records]
    tax_behaviors = line_tax_behaviors(lines, config, out)
    recurring = [ln for ln in lines if ln.kind == "recurring"]
    one_time = [ln for ln in lines if ln.kind == "one_time"]

    invoice_only = bool(records) and not recurring  # one Stripe invoice: order_rules/invoice_plan.py
    if invoice_only:
        check_invoice_lines(one_time, config, out)
    check_intervals(recurring, out)
    per_phase = items_per_phase(recurring)  # MDQ segments of one line are one item at a time
    if per_phase > config.max_subscription_items:
        out.order(
            "too_many_items",
            None,
            None,
            f"the Order has {per_phase} recurring lines; a Stripe subscription takes at most "
            f"{config.max_subscription_items} items",
            "split the Order, or combine lines of the same product",
        )
    if not invoice_only and len(one_time) > config.max_invoice_items:
        out.order(
            "too_many_invoice_items",
            None,
            None,
            f"the Order has {len(one_time)} one-time lines; Stripe adds at most "
            f"{config.max_invoice_items} invoice items to a new subscription",
            "split the Order, or combine one-time lines",
        )

    # Coupons mode: list prices and coupons. An Order of one-time lines only (a Stripe invoice) bills
    # its net prices in either mode: its invoice items carry no coupons (not built yet).
    discounts = OrderDiscounts() if invoice_only else plan_discounts(lines, order, currency, config, out)
    end_exclusive = subscription_end(order, start, end, recurring, config, out)
    trial = check_trial(order, start, end_exclusive, config, out)
    if invoice_only:
        check_no_trial(trial, config, out)
    # A trial already over when the Order syncs: billing began the day it ended.
    billing_start = trial if trial is not None and trial <= config.today else start
    segments = check_segments(lines, start, end_exclusive, trial, config.today, out)
    check_elapsed_lines(order, billing_start, recurring, len(one_time), config, out)

    if out.reasons:
        return OrderRefusal(order_id, order.get("OrderNumber"), tuple(out.reasons))

    assert currency is not None and start is not None and collection is not None
    products = plan_products(lines)
    prices = plan_prices(lines, currency, tax_behaviors)
    metadata = {
        "salesforce_order_id": str(order_id),
        "salesforce_account_id": str(order.get("AccountId") or ""),
        "salesforce_order_number": str(order.get("OrderNumber") or ""),
    }
    item_of = {ln.id: ItemSpec(ln.id, ln.quantity, discounts.lines.get(ln.id)) for ln in recurring}
    items = tuple(item_of.values())
    invoice_items = tuple(ItemSpec(ln.id, ln.quantity, discounts.lines.get(ln.id)) for ln in one_time)
    shape: SubscriptionSpec | ScheduleSpec | InvoiceSpec
    if invoice_only:
        shape = plan_invoice(one_time, collection, metadata, config)
    else:
        shape = shape_plan(
            start, end_exclusive, recurring, items, invoice_items, collection, metadata, config, trial,
            as_schedule=bool(segments),
        )  # fmt: skip
        if discounts.order is not None:
            shape = replace(shape, discount=discounts.order)
        if segments and isinstance(shape, ScheduleSpec):  # MDQ: a phase from every segment start
            assert end_exclusive is not None
            phases = plan_phases(recurring, segments, end_exclusive)
            shape = replace(
                shape,
                items=tuple(item_of[i] for i in phases[0].line_ids),
                later_phases=tuple(
                    (midnight_utc(p.start), tuple(item_of[i] for i in p.line_ids)) for p in phases[1:]
                ),
            )
    return OrderPlan(
        order_id=str(order_id),
        order_number=order.get("OrderNumber"),
        account_id=order.get("AccountId"),
        customer_id=account.get("Stripe_Customer_ID__c") or None,
        currency=currency.lower(),
        products=products,
        prices=prices,
        subscription=shape,
        fingerprint=order_fingerprint(order, config),
    )


def subscription_end(
    order: Mapping[str, Any],
    start: date | None,
    end: date | None,
    recurring: list[Line],
    config: OrderRulesConfig,
    out: Collector,
) -> date | None:
    """Exclusive end date of the subscription (EndDate + 1 day), or None for evergreen."""
    if not recurring or start is None:
        return None
    evergreen = [ln for ln in recurring if ln.evergreen]
    if evergreen and len(evergreen) != len(recurring):
        out.order(
            "mixed_evergreen",
            "SBQQ__SubscriptionType__c",
            None,
            "some recurring lines are Evergreen and others are not; one subscription either ends or doesn't",
            "make all recurring lines Evergreen, or none, or split the Order",
        )
        return None
    if evergreen:
        if end is not None:
            out.order(
                "evergreen_with_end",
                "EndDate",
                end.isoformat(),
                "all recurring lines are Evergreen but the Order has an end date",
                "clear the Order End Date, or make the lines Renewable",
            )
        return None
    if end is not None:
        exclusive = end + timedelta(days=1)
    else:
        terms = {ln.term for ln in recurring if ln.term is not None}
        if len(terms) != 1 or any(ln.term is None for ln in recurring):
            out.order(
                "missing_end_date",
                "EndDate",
                None,
                "the Order is termed (not Evergreen) but has no end date and no common subscription term",
                "set the Order End Date, or mark the lines Evergreen",
            )
            return None
        term = terms.pop()
        if term != term.to_integral_value() or term <= 0:
            out.order(
                "missing_end_date",
                "EndDate",
                None,
                f"the Order has no end date and its subscription term ({term}) is not a whole number"
                " of months",
                "set the Order End Date",
            )
            return None
        exclusive = add_months(start, int(term))
    if exclusive <= start:
        out.order(
            "end_before_start",
            "EndDate",
            (exclusive - timedelta(days=1)).isoformat(),
            f"the Order ends before it starts ({start.isoformat()})",
            "correct the Order Start or End Date",
        )
        return None
    if exclusive <= config.today:
        out.order(
            "ended",
            "EndDate",
            (exclusive - timedelta(days=1)).isoformat(),
            "the Order ended before it was synced; Stripe cannot create a subscription that is already over",
            "correct the End Date, or bill the past period with a Stripe invoice",
        )
        return None
    return exclusive


def check_trial(
    order: Mapping[str, Any],
    start: date | None,
    end_exclusive: date | None,
    config: OrderRulesConfig,
    out: Collector,
) -> date | None:
    """The mapped trial end (the day billing starts), refused unless inside the subscription."""
    raw = order.get(TRIAL_END_KEY)
    trial = parse_date(raw)
    if trial is None or start is None:
        return None
    field = config.trial_end_field or "trial_end"
    if trial <= start:
        out.order(
            "trial_not_after_start",
            field,
            trial.isoformat(),
            f"the trial ends on {trial.isoformat()}, not after the Order starts ({start.isoformat()})",
            f"set {field} after the Order Start Date, or clear it for no trial",
        )
        return None
    if end_exclusive is not None and trial >= end_exclusive:
        last = (end_exclusive - timedelta(days=1)).isoformat()
        out.order(
            "trial_after_end",
            field,
            trial.isoformat(),
            f"the trial ends on {trial.isoformat()}, after the Order's last day ({last}): "
            "nothing would be billed",
            f"set {field} before the Order End Date, or clear it for no trial",
        )
        return None
    return trial


def plan_products(lines: list[Line]) -> tuple[ProductSpec, ...]:
    products: dict[str, ProductSpec] = {}
    for ln in lines:
        product = ln.record.get("Product2") or {}
        sf_id = str(ln.record.get("Product2Id"))
        if sf_id not in products:
            products[sf_id] = ProductSpec(
                sf_id=sf_id,
                name=str(product.get("Name")),
                description=product.get("Description") or None,
                stripe_id=product.get("Stripe_Product_ID__c") or None,
            )
    return tuple(products.values())


def plan_prices(
    lines: list[Line], currency: str, tax_behaviors: Mapping[str, str | None] | None = None
) -> tuple[LinePrice, ...]:
    """Reuse the PricebookEntry's price when the line bills exactly the entry's price, else a price
    for the line. Two lines of one PricebookEntry needing different specs (e.g. Monthly and Annual)
    cannot share the entry's single price id: the first claims it, the others get line prices."""
    claimed: dict[str, PriceSpec] = {}
    prices = []
    for ln in lines:
        assert ln.unit is not None
        tax = (tax_behaviors or {}).get(ln.id)
        spec = PriceSpec(str(ln.record.get("Product2Id")), currency.lower(), *ln.unit, ln.recurrence, tax)
        pbe = ln.record.get("PricebookEntry") or {}
        pbe_id = ln.record.get("PricebookEntryId")
        pbe_spec = None
        if pbe_id and pbe.get("UnitPrice") not in (None, ""):
            try:
                pbe_unit = to_minor_units(pbe["UnitPrice"], pbe.get("CurrencyIsoCode") or currency)
                pbe_currency = str(pbe.get("CurrencyIsoCode") or currency).lower()
                pbe_spec = PriceSpec(spec.product_sf_id, pbe_currency, *pbe_unit, ln.recurrence, tax)
            except MoneyError:
                pbe_spec = None
        own = ln.record.get("Stripe_Price_ID__c") or None
        if pbe_spec == spec and claimed.setdefault(str(pbe_id), spec) == spec:
            existing = own or pbe.get("Stripe_Price_ID__c") or None
            prices.append(LinePrice(ln.id, spec, existing, "PricebookEntry", str(pbe_id)))
        else:
            prices.append(LinePrice(ln.id, spec, own, "OrderItem", ln.id))
    return tuple(prices)


def billed_periods(start: date, recurrence: Recurrence, today: date) -> int:
    """How many billing periods lie from a past start to the first boundary after today: what the
    first invoice of a backdated subscription bills (billing mode flexible: one line per item per
    period; the connector anchors the cycle on the start, so each is a whole period)."""
    months = recurrence.interval_count * (12 if recurrence.interval == "year" else 1)
    k = 1
    while add_months(start, k * months) <= today:
        k += 1
    return k


def check_elapsed_lines(
    order: Mapping[str, Any],
    start: date | None,
    recurring: list[Line],
    one_time: int,
    config: OrderRulesConfig,
    out: Collector,
) -> None:
    """Refuse a backdated Order whose first invoice would pass Stripe's line limit."""
    if start is None or start >= config.today or not config.bill_backdated_period or not recurring:
        return
    recurrence = recurring[0].recurrence
    if recurrence is None:
        return
    periods = billed_periods(start, recurrence, config.today)
    lines = periods * len(recurring) + one_time
    if lines <= config.max_invoice_lines:
        return
    skip = (
        f"tick {config.skip_elapsed_field} on the Order to start billing at the next period boundary"
        if config.skip_elapsed_field
        else "map skip_elapsed_periods in subscription.yaml (the metadata project's "
        "Stripe_Skip_Elapsed_Periods__c) and tick it on the Order to start billing at the next "
        "period boundary"
    )
    out.order(
        "too_many_elapsed_periods",
        "EffectiveDate",
        order.get("EffectiveDate"),
        f"the Order started {periods} billing periods ago, so Stripe's first invoice would bill each of "
        f"its {len(recurring)} recurring lines once per elapsed period: {lines} invoice lines, and Stripe "
        f"refuses a backdated invoice of more than {config.max_invoice_lines}",
        f"{skip} (bill the elapsed periods another way), or split the Order",
    )


def shape_plan(
    start: date,
    end_exclusive: date | None,
    recurring: list[Line],
    items: tuple[ItemSpec, ...],
    invoice_items: tuple[ItemSpec, ...],
    collection: Collection,
    metadata: dict[str, str],
    config: OrderRulesConfig,
    trial: date | None = None,
    *,
    as_schedule: bool = False,
) -> SubscriptionSpec | ScheduleSpec:
    """A future start is a schedule (its first phase trials until `trial`); a trial still ahead
    starts the subscription now, billing from the trial's end; a trial already over moves the
    billing start to its end, backdated as any past start is. `as_schedule` (MDQ segments): a
    start today is a schedule too, from midnight, so its phases keep the Order's calendar."""
    end_ts = midnight_utc(end_exclusive) if end_exclusive else None
    trial_ts = midnight_utc(trial) if trial is not None else None
    if start > config.today or (as_schedule and start == config.today):
        return ScheduleSpec(
            items, invoice_items, collection, midnight_utc(start), end_ts, metadata, trial_ts,
            automatic_tax=config.automatic_tax,
        )  # fmt: skip
    if trial is not None and trial > config.today:
        return SubscriptionSpec(
            items, invoice_items, collection, None, None, None, end_ts, metadata, trial_end=trial_ts,
            automatic_tax=config.automatic_tax,
        )  # fmt: skip
    if trial is not None:
        start = trial
    backdate = anchor = None
    proration: Literal["create_prorations", "none"] | None = None
    if start < config.today:
        backdate = midnight_utc(start)
        recurrence = recurring[0].recurrence
        assert recurrence is not None
        months = recurrence.interval_count * (12 if recurrence.interval == "year" else 1)
        boundary = add_months(start, billed_periods(start, recurrence, config.today) * months)
        if end_exclusive is None or boundary < end_exclusive:
            anchor = midnight_utc(boundary)
        proration = "create_prorations" if config.bill_backdated_period else "none"
    return SubscriptionSpec(
        items, invoice_items, collection, backdate, anchor, proration, end_ts, metadata,
        automatic_tax=config.automatic_tax,
    )  # fmt: skip

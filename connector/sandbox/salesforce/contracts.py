"""A CPQ contract's life in the fake org: its first Order, amendments, renewals and termination.

Each helper writes the records Salesforce CPQ writes for that step, through the org's normal
validation (as the Admin User by default, so the change log and Change Data Capture see them), and
records what should be billed in a `ContractHistory`: tests compute their expectations from it
instead of re-deriving CPQ's rules.

What CPQ writes (docs/SANDBOX.md cites the sources):
- the first Order (Type New) is activated, then contracted: a Contract with `SBQQ__Order__c` = that
  Order, StartDate = the Order's EffectiveDate, ContractTerm in months; the Order's `ContractId`
  points at it and `SBQQ__Contracted__c` is set; each line gets a CPQ subscription
  (`SBQQ__Subscription__c`; an amendment line's holds its delta and revises the original's).
- an Amendment Order has `ContractId` = the amended contract and an Opportunity whose
  `SBQQ__AmendedContract__c` is the contract. Its lines carry deltas (+5, -3) on the line they
  revise (`SBQQ__RevisedOrderProduct__c` = the original order product), start on the amendment's
  date and end on the contract's end date (co-terminated). A new product is a line without a
  revised product; a price change zeroes the old line and adds a new one at the new price.
- a Renewal Order belongs to an Opportunity whose `SBQQ__RenewedContract__c` is the old contract;
  contracting it creates the next term's Contract, starting the day after the old one ends.
- a termination (or an evergreen contract's cancellation) is an amendment bringing every
  quantity to 0 from its date.

The quantity in force on a day is the sum of the quantities of every activated line of the
contract's Orders whose dates hold that day.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any, Literal

from connector.sandbox.salesforce.dates import add_months, contract_end, cpq_months
from connector.sandbox.salesforce.ids import is_valid_id
from connector.sandbox.salesforce.org import ADMIN_USER_ID, ORDER_STATUS_CATEGORY, Org

Flaw = Literal[
    "not_coterminous",  # an amendment line ends on another day than the contract
    "currency_change",  # an amendment in another currency than the contract
    "interval_change",  # an amendment line billed at another frequency than the contract's lines
    "overlapping_renewal",  # a second renewal of a contract already renewed
    "unknown_revised_line",  # an amendment line revising an order product of another contract
    "original_not_activated",  # an amendment of a contract whose first Order was never activated
]
FLAWS: tuple[Flaw, ...] = (
    "not_coterminous",
    "currency_change",
    "interval_change",
    "overlapping_renewal",
    "unknown_revised_line",
    "original_not_activated",
)
PRICEBOOK_NAME = "Contracts Price Book"
ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Line:
    """A subscription line to sell: a product (made with a price book entry on first use), its
    quantity, unit price and billing frequency (SBQQ__BillingFrequency__c)."""

    product: str
    quantity: float
    unit_price: float
    frequency: str = "Monthly"
    fields: Mapping[str, Any] = field(default_factory=dict)  # more OrderItem fields (a quote line, …)
    # MDQ: one Order Product per segment, (quantity, unit price) each, `dimension` long (Year, Quarter,
    # Month; Custom segments are a year long too) and sharing a segment key; `quantity` and
    # `unit_price` are then unused. The last segment ends with the Order.
    segments: tuple[tuple[float, float], ...] = ()
    dimension: str = "Year"


SEGMENT_MONTHS = {"Year": 12, "Quarter": 3, "Month": 1, "Custom": 12}


@dataclass(frozen=True)
class ItemInForce:
    """What is billed for one product over a phase."""

    quantity: float
    unit_price: float
    frequency: str


@dataclass(frozen=True)
class Phase:
    """A date range (both ends inclusive; `end` None = open-ended, evergreen) with constant items."""

    start: date
    end: date | None
    items: dict[str, ItemInForce]


@dataclass(frozen=True)
class OrderLine:
    """One OrderItem as written. `quantity` is a delta on amendment lines; `group` is the original
    order product it counts towards (its own id for an original line)."""

    id: str
    product: str
    quantity: float
    unit_price: float
    frequency: str
    start: date
    end: date | None
    revises: str | None
    group: str


@dataclass
class ContractOrder:
    """One Order of the contract (New, Amendment or Renewal) and its lines."""

    id: str
    type: str
    effective: date
    status: str
    currency: str | None
    opportunity_id: str | None
    lines: list[OrderLine] = field(default_factory=list)
    flaws: set[str] = field(default_factory=set)

    @property
    def activated(self) -> bool:
        return ORDER_STATUS_CATEGORY.get(self.status) == "Activated"


@dataclass
class ContractHistory:
    """One Contract and everything written for it, with the expected billing."""

    account_id: str
    contract_id: str
    start: date
    term_months: int | None  # None: evergreen
    currency: str | None  # None in an org without multi-currency
    orders: list[ContractOrder] = field(default_factory=list)
    originals: dict[str, str] = field(default_factory=dict)  # product -> order product amendments revise
    subscriptions: dict[str, str] = field(default_factory=dict)  # order product -> its SBQQ__Subscription__c
    renewals: list[ContractHistory] = field(default_factory=list)
    renewed_from: str | None = None  # the contract this one renews
    terminated_on: date | None = None  # first day without service, set by terminate()
    flaws: set[str] = field(default_factory=set)

    @property
    def evergreen(self) -> bool:
        return self.term_months is None

    @property
    def end(self) -> date | None:
        """Contract.EndDate: StartDate + ContractTerm months - 1 day; None for an evergreen one."""
        return None if self.term_months is None else contract_end(self.start, self.term_months)

    @property
    def expected_end(self) -> date | None:
        """The last day billed under this contract: the day before a termination, else its end."""
        return self.terminated_on - ONE_DAY if self.terminated_on else self.end

    @property
    def first_order(self) -> ContractOrder:
        return self.orders[0]

    @property
    def amendments(self) -> list[ContractOrder]:
        return [o for o in self.orders if o.type == "Amendment"]

    @property
    def order_ids(self) -> list[str]:
        return [o.id for o in self.orders]

    def lines(self) -> list[OrderLine]:
        """Every line of the contract's activated Orders."""
        return [line for order in self.orders if order.activated for line in order.lines]

    def quantities_on(self, day: date) -> dict[str, ItemInForce]:
        """Product -> what is in force on `day` (products at quantity 0 left out). Lines count towards
        the original line they revise; a product on two such groups at once (only when a flawed
        amendment revises another contract's line) sums its quantities."""
        totals: dict[str, float] = {}
        last: dict[str, OrderLine] = {}
        for line in self.lines():
            if line.start <= day and (line.end is None or day <= line.end):
                totals[line.group] = totals.get(line.group, 0.0) + line.quantity
                last.setdefault(line.group, line)
                if line.revises is None:
                    last[line.group] = line
        items: dict[str, ItemInForce] = {}
        for group, quantity in totals.items():
            if abs(quantity) < 1e-9:
                continue
            line = last[group]
            earlier = items.get(line.product)
            if earlier is not None:  # only in a flawed history (a line of another contract revised)
                quantity += earlier.quantity
                line = replace(line, unit_price=earlier.unit_price, frequency=earlier.frequency)
            items[line.product] = ItemInForce(round(quantity, 2), line.unit_price, line.frequency)
        return items

    def phases(self) -> list[Phase]:
        """The contract's billing as consecutive phases, from its start to its expected end."""
        last_day = self.expected_end
        points = {self.start}
        for line in self.lines():
            points.add(line.start)
            if line.end is not None:
                points.add(line.end + ONE_DAY)
        starts = sorted(p for p in points if p >= self.start and (last_day is None or p <= last_day))
        phases: list[Phase] = []
        for i, start in enumerate(starts):
            end = starts[i + 1] - ONE_DAY if i + 1 < len(starts) else last_day
            items = self.quantities_on(start)
            if phases and phases[-1].items == items:
                phases[-1] = Phase(phases[-1].start, end, items)
            else:
                phases.append(Phase(start, end, items))
        while phases and not phases[-1].items:
            phases.pop()
        return phases

    def life_phases(self) -> list[Phase]:
        """This contract's phases followed by those of its (first) renewal, and so on."""
        return self.phases() + (self.renewals[0].life_phases() if self.renewals else [])


# -------------------------------------------------------------------------------- catalog


def _multi_currency(org: Org) -> bool:
    return "CurrencyIsoCode" in org.schema.objects["Order"].fields


def _with_currency(org: Org, values: dict[str, Any], currency: str | None) -> dict[str, Any]:
    if _multi_currency(org) and currency is not None:
        values["CurrencyIsoCode"] = currency
    return values


def _pricebook(org: Org, user_id: str) -> str:
    for row in org.records("Pricebook2"):
        if row["Name"] == PRICEBOOK_NAME:
            return str(row["Id"])
    return org.insert("Pricebook2", {"Name": PRICEBOOK_NAME, "IsActive": True}, user_id)


def _product(org: Org, name: str, frequency: str, evergreen: bool, user_id: str) -> str:
    for row in org.records("Product2"):
        if row["Name"] == name:
            return str(row["Id"])
    return org.insert(
        "Product2",
        {
            "Name": name,
            "IsActive": True,
            "SBQQ__ChargeType__c": "Recurring",
            "SBQQ__BillingType__c": "Advance",
            "SBQQ__BillingFrequency__c": frequency,
            "SBQQ__SubscriptionType__c": "Evergreen" if evergreen else "Renewable",
        },
        user_id,
    )


def _entry(org: Org, pricebook: str, product: str, price: float, currency: str | None, user_id: str) -> str:
    multi = _multi_currency(org)
    for row in org.records("PricebookEntry"):
        if (
            row["Pricebook2Id"] == pricebook
            and row["Product2Id"] == product
            and (not multi or row.get("CurrencyIsoCode") == currency)
        ):
            return str(row["Id"])
    values = {"Pricebook2Id": pricebook, "Product2Id": product, "UnitPrice": price, "IsActive": True}
    return org.insert("PricebookEntry", _with_currency(org, values, currency), user_id)


# -------------------------------------------------------------------------------- writes


@dataclass(frozen=True)
class _LineSpec:
    product: str
    quantity: float
    unit_price: float
    frequency: str
    revises: str | None
    action: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    segments: tuple[tuple[float, float], ...] = ()
    dimension: str = "Year"


def _segments(
    spec: _LineSpec, effective: date, line_end: date | None
) -> list[tuple[float, float, date, date | None]]:
    """(quantity, unit price, first day, last day) of each Order Product a line spec writes."""
    if not spec.segments:
        return [(spec.quantity, spec.unit_price, effective, line_end)]
    months = SEGMENT_MONTHS[spec.dimension]
    out: list[tuple[float, float, date, date | None]] = []
    for i, (quantity, price) in enumerate(spec.segments):
        last = line_end if i == len(spec.segments) - 1 else add_months(effective, (i + 1) * months) - ONE_DAY
        out.append((quantity, price, add_months(effective, i * months), last))
    return out


def _write_order(
    org: Org,
    *,
    account_id: str,
    order_type: str,
    effective: date,
    end: date | None,
    line_end: date | None,
    currency: str | None,
    evergreen: bool,
    term_months: int | None,
    specs: Sequence[_LineSpec],
    status: str,
    contract_id: str | None,
    opportunity_id: str | None,
    groups: Mapping[str, str],
    user_id: str,
    order_fields: Mapping[str, Any],
) -> ContractOrder:
    """An Order in Draft, its lines, then the wanted status (Salesforce takes lines on a draft Order)."""
    pricebook = _pricebook(org, user_id)
    values: dict[str, Any] = {
        "AccountId": account_id,
        "Pricebook2Id": pricebook,
        "Status": "Draft",
        "Type": order_type,
        "EffectiveDate": effective.isoformat(),
        "EndDate": end.isoformat() if end else None,
        "ContractId": contract_id,
        "OpportunityId": opportunity_id,
    }
    if "Payment_Term__c" in org.schema.objects["Order"].fields:
        values["Payment_Term__c"] = "Net 30"
    values.update(order_fields)
    order_id = org.insert("Order", _with_currency(org, values, currency), user_id)
    order = ContractOrder(order_id, order_type, effective, status, currency, opportunity_id)
    rows = [
        (n, spec, i, part)
        for n, spec in enumerate(specs)
        for i, part in enumerate(_segments(spec, effective, line_end))
    ]
    for number, spec, index, (quantity, price, first, last) in rows:
        product_id = _product(org, spec.product, spec.frequency, evergreen, user_id)
        item = {
            "OrderId": order_id,
            "Product2Id": product_id,
            "PricebookEntryId": _entry(org, pricebook, product_id, price, currency, user_id),
            "Quantity": quantity,
            "SBQQ__OrderedQuantity__c": quantity,
            "UnitPrice": price,
            "ServiceDate": first.isoformat(),
            "EndDate": last.isoformat() if last else None,
            "Description": spec.product[:255],
            "SBQQ__ChargeType__c": "Recurring",
            "SBQQ__BillingType__c": "Advance",
            "SBQQ__BillingFrequency__c": spec.frequency,
            "SBQQ__SubscriptionType__c": "Evergreen" if evergreen else "Renewable",
            "SBQQ__SubscriptionTerm__c": 1.0 if evergreen else float(term_months or 12),
            "SBQQ__RevisedOrderProduct__c": spec.revises,
            "SBQQ__ContractAction__c": spec.action,
            **spec.fields,
        }
        if spec.segments:  # CPQ's segment key is a number shared by the line's segments (Text 30)
            item["SBQQ__SegmentKey__c"] = f"{order_id[-10:]}{number:04d}"
            item["SBQQ__SegmentIndex__c"] = float(index + 1)
            item["SBQQ__SegmentLabel__c"] = f"{spec.dimension} {index + 1}"
            item["SBQQ__DimensionType__c"] = spec.dimension
        if order_type == "Amendment" and "SBQQ__QuoteLine__c" not in spec.fields:
            item["SBQQ__QuoteLine__c"] = _amendment_quote_line(
                org, spec, quantity, price, first, last, evergreen, currency, user_id
            )
        item_id = org.insert("OrderItem", item, user_id)
        group = groups.get(spec.revises, spec.revises) if spec.revises else item_id
        order.lines.append(
            OrderLine(
                item_id, spec.product, quantity, price, spec.frequency,
                first, last, spec.revises, group,
            )
        )  # fmt: skip
    if status != "Draft":
        org.update("Order", order_id, {"Status": status}, user_id)
    return order


FREQUENCY_MONTHS = {"Monthly": 1, "Quarterly": 3, "Semiannual": 6, "Annual": 12}


def _amendment_quote_line(
    org: Org,
    spec: _LineSpec,
    quantity: float,
    price: float,
    first: date,
    last: date | None,
    evergreen: bool,
    currency: str | None,
    user_id: str,
) -> str:
    """The quote line CPQ priced an amendment line from: the list price buys one billing period
    (Default Subscription Term = its months), the Prorate Multiplier is the line's term in such
    periods (Monthly + Daily precision; an evergreen line: one period), and the Net Total is the
    price so prorated times the change (Salesforce Help, "Guidelines for the Effective Quantity
    Field": an amendment line prices its difference)."""
    pricing = FREQUENCY_MONTHS.get(spec.frequency, 1)
    multiplier = 1.0 if evergreen or last is None else round(cpq_months(first, last) / pricing, 4)
    values = {
        "SBQQ__ListPrice__c": price,
        "SBQQ__DefaultSubscriptionTerm__c": float(pricing),
        "SBQQ__ProrateMultiplier__c": multiplier,
        "SBQQ__NetTotal__c": round(price * multiplier * quantity, 2),
    }
    return org.insert("SBQQ__QuoteLine__c", _with_currency(org, values, currency), user_id)


def _contract_from(
    org: Org,
    order: ContractOrder,
    *,
    account_id: str,
    start: date,
    term_months: int | None,
    currency: str | None,
    opportunity_id: str | None,
    user_id: str,
) -> str:
    """What contracting an Order does: a Contract made from it (created Draft, then activated), and
    the Order and its lines pointed at it."""
    values: dict[str, Any] = {
        "AccountId": account_id,
        "Status": "Draft",
        "StartDate": start.isoformat(),
        "ContractTerm": term_months,
        "SBQQ__Order__c": order.id,
        "SBQQ__Opportunity__c": opportunity_id,
        "SBQQ__Evergreen__c": term_months is None,
        "SBQQ__RenewalTerm__c": float(term_months) if term_months else None,
    }
    contract_id = org.insert("Contract", _with_currency(org, values, currency), user_id)
    org.update("Contract", contract_id, {"Status": "Activated"}, user_id)
    contracted = {"ContractId": contract_id, "SBQQ__Contracted__c": order.activated}
    org.update("Order", order.id, contracted, user_id)
    return contract_id


def _subscribe(
    org: Org,
    order: ContractOrder,
    *,
    contract_id: str,
    account_id: str,
    currency: str | None,
    evergreen: bool,
    known: Mapping[str, str],
    user_id: str,
) -> dict[str, str]:
    """What contracting an activated Order also writes: a CPQ subscription per line (an amendment
    line's holding its delta and revising the subscription of the line it revises), linked both
    ways with the line. Returns order product -> subscription."""
    made: dict[str, str] = {}
    if not order.activated:
        return made
    for line in order.lines:
        revised = known.get(line.revises or "")
        if line.revises and revised is None:  # a line of another contract: its own subscription
            revised = (org.get("OrderItem", line.revises) or {}).get("SBQQ__Subscription__c")
        item = org.get("OrderItem", line.id) or {}
        values: dict[str, Any] = {
            "SBQQ__Account__c": account_id,
            "SBQQ__Contract__c": contract_id,
            "SBQQ__Product__c": item.get("Product2Id"),
            "SBQQ__OrderProduct__c": line.id,
            "SBQQ__RevisedSubscription__c": revised,
            "SBQQ__Quantity__c": line.quantity,
            "SBQQ__NetPrice__c": line.unit_price,
            "SBQQ__SubscriptionStartDate__c": line.start.isoformat(),
            "SBQQ__SubscriptionEndDate__c": line.end.isoformat() if line.end else None,
            "SBQQ__BillingFrequency__c": line.frequency,
            "SBQQ__SubscriptionType__c": "Evergreen" if evergreen else "Renewable",
        }
        subscription = org.insert("SBQQ__Subscription__c", _with_currency(org, values, currency), user_id)
        link = {"SBQQ__Contract__c": contract_id, "SBQQ__Subscription__c": subscription}
        org.update("OrderItem", line.id, link, user_id)
        made[line.id] = subscription
    return made


def create_contract(
    org: Org,
    account_id: str,
    start: date,
    lines: Sequence[Line],
    *,
    term_months: int | None = 12,
    currency: str | None = "USD",
    status: str = "Activated",
    user_id: str = ADMIN_USER_ID,
    **order_fields: Any,
) -> ContractHistory:
    """A contract as CPQ makes it from its first Order: the Order (Type New, `status`, lines from
    `start` to the contract's end) and the Contract contracted from it. `term_months=None` makes an
    evergreen contract (no end dates, lines `SBQQ__SubscriptionType__c` Evergreen). `status` other
    than Activated leaves the first Order unactivated (the contract is still made, so amendments of
    it are flagged `original_not_activated`). Extra keyword arguments are Order fields."""
    if not lines:
        raise ValueError("a contract needs at least one line")
    end = None if term_months is None else contract_end(start, term_months)
    specs = [
        _LineSpec(
            x.product, x.quantity, x.unit_price, x.frequency, None, "New", x.fields, x.segments, x.dimension
        )
        for x in lines
    ]
    order = _write_order(
        org, account_id=account_id, order_type="New", effective=start, end=end, line_end=end,
        currency=currency, evergreen=term_months is None, term_months=term_months, specs=specs,
        status=status, contract_id=None, opportunity_id=None, groups={}, user_id=user_id,
        order_fields=order_fields,
    )  # fmt: skip
    contract_id = _contract_from(
        org, order, account_id=account_id, start=start, term_months=term_months, currency=currency,
        opportunity_id=None, user_id=user_id,
    )  # fmt: skip
    history = ContractHistory(account_id, contract_id, start, term_months, _currency(org, currency))
    history.orders.append(order)
    history.originals = {line.product: line.id for line in order.lines}
    history.subscriptions = _subscribe(
        org, order, contract_id=contract_id, account_id=account_id, currency=currency,
        evergreen=term_months is None, known={}, user_id=user_id,
    )  # fmt: skip
    return history


def _currency(org: Org, currency: str | None) -> str | None:
    return currency if _multi_currency(org) else None


def _opportunity(
    org: Org, history: ContractHistory, name: str, close: date, user_id: str, **fields: Any
) -> str:
    values = {
        "Name": name,
        "AccountId": history.account_id,
        "StageName": "Closed Won",
        "CloseDate": close.isoformat(),
        **fields,
    }
    return org.insert("Opportunity", _with_currency(org, values, history.currency), user_id)


def _contract_frequencies(history: ContractHistory) -> set[str]:
    return {line.frequency for line in history.first_order.lines}


def amend(
    org: Org,
    contract: ContractHistory,
    effective: date,
    quantities: Mapping[str, float] | None = None,
    *,
    add: Sequence[Line] = (),
    prices: Mapping[str, float] | None = None,
    end: date | Literal["contract"] | None = "contract",
    currency: str | None = None,
    status: str = "Activated",
    user_id: str = ADMIN_USER_ID,
    **order_fields: Any,
) -> ContractOrder:
    """An Amendment Order of `contract` starting on `effective`, as CPQ writes it. Extra keyword
    arguments are Order fields.

    `quantities`: product name -> delta (+5 adds five, -3 removes three) on the line that product's
    amendments revise; a key that is an OrderItem id revises that order product instead (one of
    another contract makes the flawed `unknown_revised_line` case). `add`: new products (lines
    without a revised product). `prices`: product -> new unit price; the old line is zeroed and a
    new line at the new price takes its quantity. `end`: the lines' EndDate, the contract's end by
    default (co-terminated); another date is flagged `not_coterminous`. `currency` other than the
    contract's is flagged `currency_change`; a line at another billing frequency `interval_change`.
    Raises SalesforceError where Salesforce refuses (an effective date outside the contract)."""
    quantities = dict(quantities or {})
    prices = dict(prices or {})
    order_currency = contract.currency if currency is None else currency
    line_end = contract.end if end == "contract" else end
    in_force = contract.quantities_on(effective)
    groups = {line.id: line.group for line in contract.lines()}
    flaws: set[str] = set()
    specs: list[_LineSpec] = []
    by_id = {line_id: product for product, line_id in contract.originals.items()}
    for key, delta in quantities.items():
        key = by_id.get(key, key)
        if is_valid_id(key) and key.startswith("802"):
            revised = org.get("OrderItem", key)
            if revised is None:
                raise ValueError(f"amend: no order product {key}")
            revised_product = org.get("Product2", revised["Product2Id"]) or {}
            known = {line.id for o in contract.orders for line in o.lines}
            if key not in known:
                flaws.add("unknown_revised_line")
            frequency = str(revised["SBQQ__BillingFrequency__c"])
            price = float(revised["UnitPrice"])
            name = str(revised_product.get("Name"))
            specs.append(_LineSpec(name, delta, price, frequency, key, _action(delta)))
            continue
        if key not in contract.originals:
            raise ValueError(f"amend: contract {contract.contract_id} has no line of {key!r}")
        current = in_force.get(key)
        price = current.unit_price if current else _original_price(contract, key)
        frequency = current.frequency if current else _original_frequency(contract, key)
        specs.append(_LineSpec(key, delta, price, frequency, contract.originals[key], _action(delta)))
    for product, price in prices.items():
        current = in_force.get(product)
        if current is None:
            raise ValueError(f"amend: {product!r} is not in force on {effective} to change its price")
        specs.append(_LineSpec(product, -current.quantity, current.unit_price, current.frequency,
                               contract.originals[product], "Product Swap"))  # fmt: skip
        specs.append(_LineSpec(product, current.quantity, price, current.frequency, None, "Product Swap"))
    for new in add:
        specs.append(_LineSpec(new.product, new.quantity, new.unit_price, new.frequency, None, "New"))
    if not specs:
        raise ValueError("amend: nothing to change")
    if line_end != contract.end:
        flaws.add("not_coterminous")
    if order_currency != contract.currency:
        flaws.add("currency_change")
    if any(s.frequency not in _contract_frequencies(contract) for s in specs):
        flaws.add("interval_change")
    if not contract.first_order.activated:
        flaws.add("original_not_activated")
    opportunity = _opportunity(
        org, contract, f"Amendment of {contract.contract_id}", effective, user_id,
        SBQQ__AmendedContract__c=contract.contract_id,
    )  # fmt: skip
    order = _write_order(
        org, account_id=contract.account_id, order_type="Amendment", effective=effective,
        end=contract.end, line_end=line_end, currency=order_currency, evergreen=contract.evergreen,
        term_months=contract.term_months, specs=specs, status=status, contract_id=contract.contract_id,
        opportunity_id=opportunity, groups=groups, user_id=user_id, order_fields=order_fields,
    )  # fmt: skip
    if order.activated:
        org.update("Order", order.id, {"SBQQ__Contracted__c": True}, user_id)
        contract.subscriptions.update(
            _subscribe(
                org, order, contract_id=contract.contract_id, account_id=contract.account_id,
                currency=order_currency, evergreen=contract.evergreen, known=contract.subscriptions,
                user_id=user_id,
            )
        )  # fmt: skip
    order.flaws |= flaws
    contract.flaws |= flaws
    contract.orders.append(order)
    for line in order.lines:
        if line.revises is None:
            contract.originals[line.product] = line.id
    return order


def _action(delta: float) -> str:
    return "Quantity Increase" if delta >= 0 else "Quantity Decrease"


def _original_line(contract: ContractHistory, product: str) -> OrderLine:
    target = contract.originals[product]
    return next(line for o in contract.orders for line in o.lines if line.id == target)


def _original_price(contract: ContractHistory, product: str) -> float:
    return _original_line(contract, product).unit_price


def _original_frequency(contract: ContractHistory, product: str) -> str:
    return _original_line(contract, product).frequency


def terminate(
    org: Org, contract: ContractHistory, effective: date, *, user_id: str = ADMIN_USER_ID
) -> ContractOrder:
    """End the contract from `effective` (its last billed day is the day before): an amendment
    whose deltas bring every quantity in force to 0. Also cancels an evergreen contract."""
    in_force = contract.quantities_on(effective)
    if not in_force:
        raise ValueError(f"terminate: nothing of contract {contract.contract_id} is in force on {effective}")
    zeroes = {product: -item.quantity for product, item in in_force.items()}
    order = amend(org, contract, effective, zeroes, user_id=user_id)
    contract.terminated_on = effective
    return order


def renew(
    org: Org,
    contract: ContractHistory,
    *,
    term_months: int | None = None,
    prices: Mapping[str, float] | None = None,
    lines: Sequence[Line] | None = None,
    status: str = "Activated",
    user_id: str = ADMIN_USER_ID,
    **order_fields: Any,
) -> ContractHistory:
    """The next term: a renewal Opportunity (`SBQQ__RenewedContract__c` = the contract, also the
    contract's `SBQQ__RenewalOpportunity__c`), a Renewal Order starting the day after the contract
    ends, and the new Contract contracted from it. Lines default to what is in force on the last
    day, at `prices` where given; `lines` replaces them. A second renewal of the same contract is
    flagged `overlapping_renewal` on both. Extra keyword arguments are Order fields."""
    end = contract.end
    if end is None:
        raise ValueError(f"renew: contract {contract.contract_id} is evergreen and has no end to renew at")
    term = term_months or contract.term_months or 12
    start = end + ONE_DAY
    prices = dict(prices or {})
    if lines is None:
        lines = [
            Line(p, item.quantity, prices.get(p, item.unit_price), item.frequency)
            for p, item in contract.quantities_on(end).items()
        ]
    opportunity = _opportunity(
        org, contract, f"Renewal of {contract.contract_id}", start, user_id,
        SBQQ__RenewedContract__c=contract.contract_id, SBQQ__Renewal__c=True,
    )  # fmt: skip
    org.update("Contract", contract.contract_id, {"SBQQ__RenewalOpportunity__c": opportunity}, user_id)
    new_end = contract_end(start, term)
    specs = [_LineSpec(x.product, x.quantity, x.unit_price, x.frequency, None, "Renew") for x in lines]
    order = _write_order(
        org, account_id=contract.account_id, order_type="Renewal", effective=start, end=new_end,
        line_end=new_end, currency=contract.currency, evergreen=False, term_months=term, specs=specs,
        status=status, contract_id=None, opportunity_id=opportunity, groups={}, user_id=user_id,
        order_fields=order_fields,
    )  # fmt: skip
    new_id = _contract_from(
        org, order, account_id=contract.account_id, start=start, term_months=term,
        currency=contract.currency, opportunity_id=opportunity, user_id=user_id,
    )  # fmt: skip
    renewal = ContractHistory(contract.account_id, new_id, start, term, contract.currency)
    renewal.orders.append(order)
    renewal.originals = {line.product: line.id for line in order.lines}
    renewal.subscriptions = _subscribe(
        org, order, contract_id=new_id, account_id=contract.account_id, currency=contract.currency,
        evergreen=False, known={}, user_id=user_id,
    )  # fmt: skip
    renewal.renewed_from = contract.contract_id
    if contract.renewals:
        contract.flaws.add("overlapping_renewal")
        renewal.flaws.add("overlapping_renewal")
        order.flaws.add("overlapping_renewal")
    contract.renewals.append(renewal)
    return renewal

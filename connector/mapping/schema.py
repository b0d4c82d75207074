"""The mapping file format as pydantic models, and the problem/result types of the package.

The models check shape (keys, types, required values); the meaning (is `adress.city` a Stripe
field, is `truncate` given a number, is a metadata key reserved) is checked by the loader's
semantic pass, which knows the file positions and reports every problem at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _scalar(value: Any) -> Any:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise ValueError("must be a single value (text, number or true/false), not a list or mapping")
    return value


Scalar = Annotated[Any, BeforeValidator(_scalar)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueSource(_Model):
    """Where one value comes from: a Salesforce field path, a static default, transforms."""

    source: str | None = None
    default: Scalar = None
    transforms: list[Any] = []

    @property
    def steps(self) -> list[tuple[str, Any]]:
        """Transforms as (name, arg): `- trim` -> ("trim", None), `- truncate: 80` -> ("truncate", 80)."""
        out: list[tuple[str, Any]] = []
        for item in self.transforms:
            if isinstance(item, str):
                out.append((item, None))
            else:
                ((name, arg),) = item.items()
                out.append((name, arg))
        return out


OPTIONAL_CONTACT_TARGETS = frozenset({"phone", "shipping.phone"})
"""Targets whose invalid value is left out (with a note) by default: a customer without a phone is
billed the same, so a bad number must not hold up the Account's Customer and Orders."""


class FieldMapping(ValueSource):
    """One Stripe target (dot-path) and where its value comes from."""

    target: str
    on_invalid: Literal["omit", "fail"] | None = None
    # A named list target (invoice_settings.custom_fields): the item's name, e.g. "PO Number".
    name: str | None = None

    @property
    def omit_invalid(self) -> bool:
        """Leave an invalid value out (and say so) rather than fail the record: `on_invalid`, else
        omit for the optional contact targets and fail for everything else."""
        if self.on_invalid is not None:
            return self.on_invalid == "omit"
        return self.target in OPTIONAL_CONTACT_TARGETS


class WriteBack(_Model):
    """Connector-owned Salesforce fields written after a sync."""

    stripe_id: str
    status: str | None = None
    message: str | None = None
    synced_at: str | None = None

    def fields(self) -> list[str]:
        return [f for f in (self.stripe_id, self.status, self.message, self.synced_at) if f]

    def id_field(self, stripe_id: str) -> str:
        """The field a Stripe id is written to (an Order's invoice has its own)."""
        return self.stripe_id


class OrderWriteBack(WriteBack):
    """An Order's fields: its subscription's, and its one-time invoice's id and hosted URL."""

    invoice_id: str | None = None
    invoice_url: str | None = None

    def fields(self) -> list[str]:
        return [*super().fields(), *(f for f in (self.invoice_id, self.invoice_url) if f)]

    def id_field(self, stripe_id: str) -> str:
        return self.invoice_id if self.invoice_id and stripe_id.startswith("in_") else self.stripe_id


class OrderBillingStatus(_Model):
    """Order fields the connector fills from Stripe's billing events (Stripe is the authority for
    what was billed and paid). A key set to null (or left out of a block written in full) is
    not written."""

    subscription_status: str | None = "Stripe_Subscription_Status__c"
    invoice_number: str | None = "Stripe_Latest_Invoice_Number__c"
    invoice_status: str | None = "Stripe_Latest_Invoice_Status__c"
    invoice_amount_due: str | None = "Stripe_Latest_Invoice_Amount_Due__c"
    invoice_amount_paid: str | None = "Stripe_Latest_Invoice_Amount_Paid__c"
    invoice_due_date: str | None = "Stripe_Latest_Invoice_Due_Date__c"
    invoice_url: str | None = "Stripe_Latest_Invoice_URL__c"


class AccountBillingStatus(_Model):
    """Account fields the connector fills from its Stripe Customer: delinquent and balance."""

    delinquent: str | None = "Stripe_Delinquent__c"
    balance: str | None = "Stripe_Balance__c"


class PaymentSetupFields(_Model):
    """Account fields of a payment setup: the request an admin or a Flow sets, and what the connector
    writes back (the link and its expiry, how it went, the saved payment method)."""

    request: str = "Stripe_Payment_Setup_Requested__c"
    url: str = "Stripe_Payment_Setup_URL__c"
    expires: str = "Stripe_Payment_Setup_Expires__c"
    status: str = "Stripe_Payment_Setup_Status__c"
    payment_method_id: str = "Stripe_Payment_Method_ID__c"
    payment_method_type: str | None = "Stripe_Payment_Method_Type__c"
    payment_method_summary: str | None = "Stripe_Payment_Method_Summary__c"


class PaymentSetup(_Model):
    """Collecting a payment method from Salesforce: a Checkout Session in setup mode per request."""

    payment_method_types: list[str] = ["card"]
    success_url: str = "https://example.com/payment-method-saved"
    cancel_url: str | None = None
    # Whether the Account's subscriptions synced already switch from e-mailed invoices to charging
    # the saved method (Stripe allows changing collection_method on a subscription).
    switch_existing_subscriptions: bool = False
    fields: PaymentSetupFields = PaymentSetupFields()


class OneTimeInvoices(_Model):
    """An Order with only one-time lines becomes a Stripe invoice: finalized (open, with its hosted
    URL) or left a draft for someone to review in Stripe."""

    finalize: bool = True


class LineWriteBack(_Model):
    stripe_price_id: str


class RelatedWriteBack(_Model):
    stripe_id: str


class TaxIdSource(ValueSource):
    """One field holding a customer tax id (a VAT number); `type_source` optionally names a field
    holding the Stripe type (eu_vat, us_ein, ...) when it cannot be inferred from the country."""

    type_source: str | None = None


class CustomerMapping(_Model):
    version: Literal[1] = 1
    object: str = "Account"
    condition: str | None = None
    write_back: WriteBack
    billing_status: AccountBillingStatus = AccountBillingStatus()
    fields: list[FieldMapping]
    tax_ids: list[TaxIdSource] = []
    payment_setup: PaymentSetup | None = None  # left out: no payment setup links

    stripe_object: ClassVar[str] = "customer"


class LineMapping(_Model):
    object: Literal["OrderItem"] = "OrderItem"
    condition: str | None = None
    unit_price: ValueSource = ValueSource(source="UnitPrice")
    quantity: ValueSource = ValueSource(source="Quantity")
    product_name: ValueSource = ValueSource(source="Product2.Name", transforms=["trim", "truncate"])
    product_description: ValueSource | None = ValueSource(source="Product2.Description", transforms=["trim"])
    write_back: LineWriteBack = LineWriteBack(stripe_price_id="Stripe_Price_ID__c")
    product_write_back: RelatedWriteBack = RelatedWriteBack(stripe_id="Stripe_Product_ID__c")
    price_book_entry_write_back: RelatedWriteBack = RelatedWriteBack(stripe_id="Stripe_Price_ID__c")
    # product.metadata.<key> / price.metadata.<key> from the Order Product's fields
    fields: list[FieldMapping] = []
    # The prices' tax_behavior: an OrderItem field (source) and/or one value (default) of
    # inclusive, exclusive, unspecified. Left out: Stripe's unspecified.
    tax_behavior: ValueSource | None = None

    stripe_object: ClassVar[str] = "subscription_item"

    def slots(self) -> dict[str, ValueSource]:
        out = {"unit_price": self.unit_price, "quantity": self.quantity, "product_name": self.product_name}
        if self.product_description is not None:
            out["product_description"] = self.product_description
        return out


class DiscountMapping(_Model):
    """Where CPQ's discounts come from and how they reach Stripe. `net_price` bills the line's net
    unit price (no discount shown in Stripe); `coupons` bills the list price and applies Stripe
    coupons (percent or amount, for a number of months or forever) on the item or the subscription."""

    mode: Literal["coupons", "net_price"] = "net_price"
    list_price: ValueSource = ValueSource(source="PricebookEntry.UnitPrice")  # OrderItem, major unit
    line_percent: ValueSource | None = None  # OrderItem: percent off, 0 < p <= 100
    line_amount: ValueSource | None = None  # OrderItem: amount off per unit, major unit
    line_months: ValueSource | None = None  # OrderItem: months the line's discount lasts (empty: forever)
    order_percent: ValueSource | None = None  # Order: percent off the whole subscription
    order_months: ValueSource | None = None  # Order: months the Order's discount lasts (empty: forever)

    LINE_SLOTS: ClassVar[tuple[str, ...]] = ("list_price", "line_percent", "line_amount", "line_months")
    ORDER_SLOTS: ClassVar[tuple[str, ...]] = ("order_percent", "order_months")

    @property
    def coupons(self) -> bool:
        return self.mode == "coupons"

    def slots(self) -> dict[str, ValueSource]:
        """The sources the mapping gives, by slot (list_price always)."""
        out: dict[str, ValueSource] = {}
        for name in (*self.LINE_SLOTS, *self.ORDER_SLOTS):
            src = getattr(self, name)
            if src is not None:
                out[name] = src
        return out

    def line_fields(self) -> list[str]:
        """OrderItem fields (and parent paths) read in coupons mode."""
        if not self.coupons:
            return []
        return sorted({s.source for k, s in self.slots().items() if k in self.LINE_SLOTS and s.source})

    def order_fields(self) -> list[str]:
        if not self.coupons:
            return []
        return sorted({s.source for k, s in self.slots().items() if k in self.ORDER_SLOTS and s.source})


class CpqAmountsMapping(_Model):
    """Where CPQ's prorated figures of an Amendment line are read (`amendment_proration: cpq_amounts`):
    the amount CPQ priced the line's change at for its whole remaining term, that term in pricing
    periods (CPQ's prorate multiplier) and the months in one pricing period (CPQ's default
    subscription term). Defaults: the line's quote line, where CPQ computes them."""

    net_total: ValueSource = ValueSource(source="SBQQ__QuoteLine__r.SBQQ__NetTotal__c")
    prorate_multiplier: ValueSource = ValueSource(source="SBQQ__QuoteLine__r.SBQQ__ProrateMultiplier__c")
    pricing_term: ValueSource = ValueSource(source="SBQQ__QuoteLine__r.SBQQ__DefaultSubscriptionTerm__c")

    SLOTS: ClassVar[tuple[str, ...]] = ("net_total", "prorate_multiplier", "pricing_term")

    def slots(self) -> dict[str, ValueSource]:
        return {name: getattr(self, name) for name in self.SLOTS}


class SubscriptionMapping(_Model):
    version: Literal[1] = 1
    object: Literal["Order"] = "Order"
    condition: str | None = None
    write_back: OrderWriteBack
    billing_status: OrderBillingStatus = OrderBillingStatus()
    default_payment_method: ValueSource | None = None
    skip_elapsed_periods: ValueSource | None = None
    # A date field: the subscription trials until that day, then bills (refused unless after the start).
    trial_end: ValueSource | None = None
    # How an Amendment's change inside a period is billed: Stripe prorates (create_prorations on
    # the next invoice, always_invoice at once), none, or cpq_amounts: CPQ's own prorated amounts
    # (`cpq_amounts` below) as one-time items for the time Stripe does not bill the new quantity.
    amendment_proration: Literal["create_prorations", "always_invoice", "none", "cpq_amounts"] = (
        "create_prorations"
    )
    cpq_amounts: CpqAmountsMapping = CpqAmountsMapping()
    # Stripe Tax: automatic_tax[enabled]=true on subscriptions, schedule phases and invoices.
    automatic_tax: bool = False
    one_time_invoices: OneTimeInvoices = OneTimeInvoices()
    fields: list[FieldMapping] = []
    lines: LineMapping = LineMapping()
    discounts: DiscountMapping = DiscountMapping()

    stripe_object: ClassVar[str] = "subscription"

    def cpq_amount_fields(self) -> list[str]:
        """OrderItem fields (and parent paths) read when CPQ's own amounts are billed."""
        if self.amendment_proration != "cpq_amounts":
            return []
        return sorted({s.source for s in self.cpq_amounts.slots().values() if s.source})


class UsageWriteBack(_Model):
    """A usage record's own fields: its status, message and time (a meter event has no id)."""

    status: str | None = "Stripe_Sync_Status__c"
    message: str | None = "Stripe_Sync_Message__c"
    synced_at: str | None = "Stripe_Last_Synced__c"

    def as_write_back(self) -> WriteBack:
        """As the shared write-back policy takes it (no Stripe id field: nothing to write there)."""
        return WriteBack(stripe_id="", status=self.status, message=self.message, synced_at=self.synced_at)


class UsageMapping(_Model):
    """Usage records -> Billing Meter events (mappings/usage.yaml): one event per record, on the
    meter of its Order Product's Product2, for the customer of that Order's Account."""

    version: Literal[1] = 1
    object: str = "Stripe_Usage__c"
    condition: str | None = None
    # Field paths on the usage object (relationships allowed: Order_Product__r.OrderId).
    order_item: str = "Order_Product__c"  # the usage-priced Order Product (OrderItem id)
    product: str = "Order_Product__r.Product2Id"  # its Product2: whose meter the event goes to
    order: str = "Order_Product__r.OrderId"  # its Order: must be synced
    account: str = "Order_Product__r.Order.AccountId"  # the customer
    quantity: str = "Quantity__c"  # the event's value: a whole number, not negative
    timestamp: str = "Usage_Time__c"  # when it was used (Stripe: ≤ 35 days ago, ≤ 5 minutes ahead)
    unique_id: str = "Id"  # the event's identifier: Stripe ignores a second event with it
    write_back: UsageWriteBack = UsageWriteBack()

    stripe_object: ClassVar[str] = "meter_event"
    PATHS: ClassVar[tuple[str, ...]] = (
        "order_item",
        "product",
        "order",
        "account",
        "quantity",
        "timestamp",
        "unique_id",
    )

    def soql_fields(self) -> list[str]:
        """What the poll selects: Id and SystemModstamp, every mapped path, the write-back fields."""
        wanted = ["Id", "SystemModstamp", *(getattr(self, k) for k in self.PATHS)]
        wanted += [f for f in (self.write_back.status, self.write_back.message) if f]
        return list(dict.fromkeys(wanted))


ObjectMapping = CustomerMapping | SubscriptionMapping | LineMapping


class StripeAccountOptions(_Model):
    """One Stripe account the connector bills through, as routing.yaml names it."""

    # Accounts of one Stripe Organization sharing group share their Customers (same id).
    sharing_group: str | None = None


class RoutingMapping(_Model):
    """Which Stripe account an Account and its Orders bill through (mappings/routing.yaml, optional:
    without it every record goes to the one account of CPQ2STRIPE_STRIPE_SECRET_KEY)."""

    version: Literal[1] = 1
    # Names as in CPQ2STRIPE_STRIPE_ACCOUNTS (name -> key), each with its options.
    accounts: dict[str, StripeAccountOptions]
    account_field: str  # the Account field that picks the account (a legal entity, a region)
    routes: dict[str, str] = {}  # the field's value -> account name
    default: str | None = None  # a blank or unlisted value; None: such Accounts are refused
    # An Order field that sends one Order to another account of its Account's sharing group.
    order_field: str | None = None
    # Written back on Account and Order: the name of the account it bills through.
    write_back: str | None = "Stripe_Account__c"


@dataclass(frozen=True)
class Mappings:
    """Both mappings, plus where each came from so later checks can cite file:line."""

    customer: CustomerMapping
    subscription: SubscriptionMapping
    files: dict[str, str] = field(default_factory=dict)
    positions: dict[str, dict[tuple[str | int, ...], tuple[int, int]]] = field(default_factory=dict)
    # usage.yaml is optional: without it no usage is read (a home made before it existed).
    usage: UsageMapping | None = None
    # routing.yaml is optional: without it there is one Stripe account.
    routing: RoutingMapping | None = None

    def position(self, kind: str, path: tuple[str | int, ...]) -> tuple[str, int, int]:
        """(file, line, column) of the longest prefix of `path` in the `kind` file; line 0 if unknown."""
        file = self.files.get(kind, f"{kind}.yaml")
        known = self.positions.get(kind, {})
        for end in range(len(path), -1, -1):
            if tuple(path[:end]) in known:
                return (file, *known[tuple(path[:end])])
        return (file, 0, 0)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a mapping, where, and how to fix it. line/column are 1-based (0 = unknown)."""

    file: str
    line: int
    column: int
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.message}" + (f" (fix: {self.fix})" if self.fix else "")


class MappingError(Exception):
    """The mapping files cannot be used; `problems` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class FieldError:
    """Why one value of one record cannot be sent to Stripe."""

    record_id: str | None
    salesforce_field: str
    stripe_target: str
    value: Any
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.salesforce_field} -> {self.stripe_target}: {self.message} (fix: {self.fix})"


@dataclass
class MappedRecord:
    """The Stripe params Salesforce says a record should have, or the reasons it cannot."""

    record_id: str | None
    params: dict[str, Any] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)
    omitted: list[FieldError] = field(default_factory=list)  # invalid values left out (on_invalid: omit)
    remarks: list[str] = field(default_factory=list)  # what a transform changed (a dropped extension)

    @property
    def notes(self) -> list[str]:
        """One line per left-out value (the targets one field feeds with the same problem together),
        then the remarks: what the record's message and the run report say beside a success."""
        grouped: dict[tuple[str, str, str], list[str]] = {}
        for e in self.omitted:
            grouped.setdefault((e.salesforce_field, e.message, e.fix), []).append(e.stripe_target)
        lines = [
            f"{name} left out of {' and '.join(targets)}: {message} (fix: {fix})"
            for (name, message, fix), targets in grouped.items()
        ]
        return [*lines, *self.remarks]

    @property
    def ok(self) -> bool:
        return not self.errors

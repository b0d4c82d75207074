"""The Stripe fields a mapping may write, per Stripe object, with their types and limits.

Two layers. Every writable parameter of the pinned stripe-python's request definitions
(connector.mapping.stripe_schema: create and update both accept it) is a target with its type:
string, integer, boolean, enum with its choices, nested objects by dot path, lists of strings,
and named lists such as `invoice_settings.custom_fields` (`name` + `source` per entry). On top,
the curated entries below (CUSTOMER_TARGETS, SUBSCRIPTION_TARGETS) override what the schema does
not say: lengths, which Salesforce types may feed a field, docs, value patterns. A short
deny-list (DENIED) keeps out what is not data an admin should map: the connector's own fields,
ids of other Stripe objects, money movement and operational switches. An admin typo such as
`adress.city` is refused when the mapping loads, with a suggestion, not when Stripe answers 400.
Lengths come from Stripe's API reference (OpenAPI `maxLength`): customer name 256, phone 20,
email 512, description 5000, address and shipping parts 5000; subscription description 500;
metadata keys 40 and values 500, 50 keys at most; custom field names 40, values 140.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from connector.mapping import stripe_schema

# Salesforce describe `type` values, grouped by what they can feed.
SF_TEXT = frozenset(
    {
        "string",
        "textarea",
        "picklist",
        "multipicklist",
        "combobox",
        "email",
        "phone",
        "url",
        "id",
        "reference",
    }
)
SF_NUMBER = frozenset({"int", "double", "currency", "percent", "long"})
SF_BOOLEAN = frozenset({"boolean"})
SF_TEMPORAL = frozenset({"date", "datetime", "time"})
SF_SCALAR = SF_TEXT | SF_NUMBER | SF_BOOLEAN | SF_TEMPORAL

METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500
# Payment method types a Checkout Session in setup mode accepts (Stripe's "Set up future payments"
# guide for each; iDEAL, Bancontact and Sofort are set up as sepa_debit, vouchers and wallets such as
# konbini, oxxo, boleto, alipay or wechat_pay cannot be saved for later).
SETUP_MODE_PAYMENT_METHOD_TYPES = frozenset(
    {
        "acss_debit",
        "amazon_pay",
        "au_becs_debit",
        "bacs_debit",
        "card",
        "cashapp",
        "link",
        "paypal",
        "revolut_pay",
        "sepa_debit",
        "us_bank_account",
    }
)
METADATA_KEYS_MAX = 50
RESERVED_METADATA_KEYS = frozenset({"salesforce_account_id", "salesforce_order_id", "managed_by"})
"""Set by the connector itself (recovery finds objects by them); never mappable."""


@dataclass(frozen=True)
class TargetSpec:
    """One Stripe parameter a mapping may write."""

    path: str
    kind: str  # "string" | "integer" | "enum" | "string_list"
    max_length: int | None = None
    accepts: frozenset[str] = SF_TEXT | SF_NUMBER
    choices: tuple[str, ...] = ()
    doc: str = ""
    pattern: re.Pattern[str] | None = None  # what each value (each item of a list) must look like
    pattern_fix: str = ""
    # "named_list" (a list of {name, value} such as invoice_settings.custom_fields): each mapping
    # entry adds one item, named by the entry's `name`.
    name_max_length: int | None = None
    max_items: int | None = None


def _s(
    path: str, max_length: int, accepts: frozenset[str] = SF_TEXT | SF_NUMBER, doc: str = ""
) -> TargetSpec:
    return TargetSpec(path, "string", max_length, accepts, doc=doc)


_ADDRESS_PARTS = ("line1", "line2", "city", "state", "postal_code", "country")
_ADDRESS_DOC = {"country": "two-letter ISO code (use the `country` transform)"}


def _address(prefix: str) -> list[TargetSpec]:
    return [
        _s(
            f"{prefix}.{part}",
            5000,
            SF_TEXT if part != "postal_code" else SF_TEXT | SF_NUMBER,
            _ADDRESS_DOC.get(part, ""),
        )
        for part in _ADDRESS_PARTS
    ]


CUSTOMER_TARGETS: dict[str, TargetSpec] = {
    t.path: t
    for t in [
        _s("name", 256, doc="full or business name"),
        _s("email", 512, frozenset({"email", "string", "textarea", "picklist", "combobox"})),
        _s("phone", 20, frozenset({"phone", "string", "textarea", "combobox"})),
        _s("description", 5000, SF_SCALAR),
        *_address("address"),
        _s("shipping.name", 5000, doc="required by Stripe whenever shipping is sent"),
        _s("shipping.phone", 5000, frozenset({"phone", "string", "textarea", "combobox"})),
        *_address("shipping.address"),
        TargetSpec(
            "preferred_locales",
            "string_list",
            None,
            frozenset({"string", "textarea", "picklist", "multipicklist", "combobox"}),
            doc="languages such as 'en;de' (split on ; or ,)",
            pattern=re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"),
            pattern_fix="write IETF language tags such as de or de-DE (a hyphen, not _), separated by ; or ,",
        ),
        TargetSpec(
            "tax_exempt",
            "enum",
            None,
            SF_TEXT,
            ("none", "exempt", "reverse"),
            "none, exempt or reverse (reverse charge: the invoice says so and charges no tax)",
        ),
    ]
}

SUBSCRIPTION_TARGETS: dict[str, TargetSpec] = {
    t.path: t
    for t in [
        _s("description", 500, SF_SCALAR),
        TargetSpec(
            "collection_method",
            "enum",
            None,
            SF_TEXT,
            ("charge_automatically", "send_invoice"),
            "becomes charge_automatically when default_payment_method has a value",
        ),
        TargetSpec("days_until_due", "integer", None, SF_NUMBER | SF_TEXT, doc="only sent with send_invoice"),
    ]
}

# Per-line values of a subscription mapping: not Stripe dot-paths but named slots the order rules read.
LINE_SLOTS: dict[str, TargetSpec] = {
    "unit_price": TargetSpec("unit_price", "number", None, SF_NUMBER, doc="price per unit, major unit"),
    "quantity": TargetSpec("quantity", "integer", None, SF_NUMBER, doc="whole number"),
    "product_name": _s("product.name", 5000, SF_TEXT),
    "product_description": _s("product.description", 40000, SF_SCALAR),
}

# A subscription mapping's per-Order switch (not a Stripe field): start billing at the next period
# boundary instead of billing every elapsed period of a backdated Order.
SKIP_ELAPSED_PERIODS = TargetSpec(
    "skip_elapsed_periods", "boolean", None, SF_BOOLEAN | SF_TEXT, doc="a checkbox, or true/false text"
)

# The subscription mapping's `discounts` sources (not Stripe fields): numbers the coupons are made of.
DISCOUNT_SLOTS: dict[str, TargetSpec] = {
    "list_price": TargetSpec("discounts.list_price", "number", None, SF_NUMBER, doc="list price per unit"),
    "line_percent": TargetSpec("discounts.line_percent", "number", None, SF_NUMBER, doc="percent off"),
    "line_amount": TargetSpec("discounts.line_amount", "number", None, SF_NUMBER, doc="amount off per unit"),
    "line_months": TargetSpec("discounts.line_months", "integer", None, SF_NUMBER, doc="whole months"),
    "order_percent": TargetSpec("discounts.order_percent", "number", None, SF_NUMBER, doc="percent off"),
    "order_months": TargetSpec("discounts.order_months", "integer", None, SF_NUMBER, doc="whole months"),
}
# The subscription mapping's `cpq_amounts` sources (amendment_proration: cpq_amounts; not Stripe
# fields): CPQ's own prorated figures of an Amendment line.
CPQ_AMOUNT_SLOTS: dict[str, TargetSpec] = {
    "net_total": TargetSpec(
        "cpq_amounts.net_total", "number", None, SF_NUMBER, doc="CPQ's amount for the line's term"
    ),
    "prorate_multiplier": TargetSpec(
        "cpq_amounts.prorate_multiplier", "number", None, SF_NUMBER, doc="the term in pricing periods"
    ),
    "pricing_term": TargetSpec(
        "cpq_amounts.pricing_term", "number", None, SF_NUMBER, doc="months in one pricing period"
    ),
}
# A subscription mapping's prices' tax behaviour (lines.tax_behavior; not a subscription field).
TAX_BEHAVIOR = TargetSpec(
    "tax_behavior", "enum", None, SF_TEXT, ("inclusive", "exclusive", "unspecified"), "of every price"
)

TRIAL_END = TargetSpec(
    "trial_end", "date", None, SF_TEMPORAL | SF_TEXT, doc="a date (YYYY-MM-DD): the day billing starts"
)

TARGETS_BY_OBJECT: dict[str, dict[str, TargetSpec]] = {
    "customer": CUSTOMER_TARGETS,
    "subscription": SUBSCRIPTION_TARGETS,
}

_METADATA_KEY = re.compile(r"^[^\[\]]+$")


def metadata_spec(key: str) -> TargetSpec:
    return TargetSpec(f"metadata.{key}", "metadata", METADATA_VALUE_MAX, SF_SCALAR)


def resolve_target(stripe_object: str, path: str) -> TargetSpec | None:
    """The spec for a target path: metadata, a curated entry, or one of Stripe's writable
    parameters outside the deny-list; None when a mapping may not write it."""
    if path.startswith("metadata.") and len(path) > len("metadata."):
        return metadata_spec(path[len("metadata.") :])
    curated = TARGETS_BY_OBJECT[stripe_object].get(path)
    if curated is not None:
        return curated
    if denied(stripe_object, path) is not None:
        return None
    return schema_target(stripe_object, path)


def value_problem(spec: TargetSpec, value: Any) -> str | None:
    """Why a value already fitted to `spec` is still one Stripe refuses (e.g. 'German' as a locale)."""
    if spec.pattern is None or value is None:
        return None
    items = value if isinstance(value, list) else [value]
    bad = [str(item) for item in items if not spec.pattern.match(str(item))]
    if not bad:
        return None
    what = "a language tag" if spec.path == "preferred_locales" else f"a valid {spec.path}"
    return f"{', '.join(repr(b) for b in bad)} is not {what}"


def metadata_key_problem(key: str) -> str | None:
    """Why a metadata key is not allowed, or None."""
    if key in RESERVED_METADATA_KEYS:
        return f"metadata key '{key}' is reserved for the connector"
    if len(key) > METADATA_KEY_MAX:
        return f"metadata key '{key}' is {len(key)} characters; Stripe allows {METADATA_KEY_MAX}"
    if not _METADATA_KEY.match(key):
        return f"metadata key '{key}' may not contain square brackets"
    return None


def supported_targets(stripe_object: str) -> list[str]:
    """Every target a mapping of this object may name (for suggestions and the docs)."""
    derived = [p for p in stripe_schema.params_of(stripe_object) if denied(stripe_object, p) is None]
    return [*dict.fromkeys([*TARGETS_BY_OBJECT[stripe_object], *derived]), "metadata.<key>"]


# ---- the schema-derived layer ---------------------------------------------------------------

_ID = "the id of another Stripe object, which the connector cannot know from Salesforce"
_OWN = "the connector sets it itself from the Order rules"
_MONEY = "moves money or changes what is billed; not a mapping's to set"
_OPS = "an operational switch for the request, not data"
_TAX = "Stripe Tax settings are the tax options' (tax_exempt and tax ids), not a free mapping"

# Prefixes (a path, or a parent of paths) the schema offers but a mapping may not write, and why.
DENIED: dict[str, dict[str, str]] = {
    "customer": {
        "balance": _MONEY,
        "cash_balance": _MONEY,
        "source": _ID,
        "invoice_settings.default_payment_method": _ID,
        "invoice_settings.rendering_options.template": _ID,
        "invoice_prefix": "invoice numbering is fixed once invoices exist; set it in the Dashboard",
        "next_invoice_sequence": "invoice numbering is fixed once invoices exist; set it in the Dashboard",
        "tax": _TAX,
        "validate": _OPS,
        "expand": _OPS,
    },
    "subscription": {
        "default_payment_method": "comes from the mapping's default_payment_method (a section of its own)",
        "default_source": _ID,
        "default_tax_rates": _ID,
        "on_behalf_of": _ID,
        "transfer_data": _MONEY,
        "application_fee_percent": _MONEY,
        "discounts": "discounts come from the CPQ discount fields",
        "payment_behavior": _OWN,
        "proration_behavior": _OWN + " (amendment_proration for contract changes)",
        "off_session": _OWN,
        "cancel_at_period_end": _OWN + " (the Order's end date)",
        "trial_end": _OWN,
        "trial_from_plan": _OWN,
        "trial_settings": _OWN,
        "billing_thresholds": _MONEY,
        "pending_invoice_item_interval": _OWN,
        "automatic_tax": _TAX,
        "payment_settings": "payment method options are set in the Dashboard, per payment method",
        "invoice_settings.account_tax_ids": _ID,
        "invoice_settings.issuer": _ID,
        "expand": _OPS,
    },
}
# Subscriptions: the connector builds the request from the Order rules and sends what the mapping
# names only for these (a schedule's first phase carries them too); any other schema path is refused.
SUBSCRIPTION_SENT = frozenset(
    {
        "description",
        "collection_method",
        "days_until_due",
        "invoice_settings.custom_fields",
        "invoice_settings.description",
        "invoice_settings.footer",
    }
)

_ACCEPTS = {
    "string": SF_SCALAR,
    "enum": SF_TEXT,
    "integer": SF_NUMBER | SF_TEXT,
    "number": SF_NUMBER | SF_TEXT,
    "boolean": SF_BOOLEAN | SF_TEXT,
    "string_list": SF_TEXT,
    "named_list": SF_SCALAR,
}


def denied(stripe_object: str, path: str) -> str | None:
    """Why a schema path may not be mapped, or None."""
    for prefix, reason in DENIED[stripe_object].items():
        if path == prefix or path.startswith(f"{prefix}."):
            return reason
    if stripe_object == "subscription" and path not in SUBSCRIPTION_SENT:
        return (
            "the connector sends only description, collection_method, days_until_due, metadata and "
            "invoice_settings (custom_fields, description, footer) on subscriptions"
        )
    return None


def schema_target(stripe_object: str, path: str) -> TargetSpec | None:
    """The target Stripe's request definitions give for a path (deny-list not applied)."""
    param = stripe_schema.params_of(stripe_object).get(path)
    if param is None:
        return None
    if param.kind == "object_list":
        if set(param.item) != {"name", "value"}:
            return None  # a list of objects a mapping has no form for
        name, value = param.item["name"], param.item["value"]
        return TargetSpec(
            path,
            "named_list",
            value.max_length,
            _ACCEPTS["named_list"],
            doc=param.doc,
            name_max_length=name.max_length,
            max_items=param.max_items,
        )
    return TargetSpec(path, param.kind, param.max_length, _ACCEPTS[param.kind], param.choices, param.doc)


def refusal(stripe_object: str, path: str) -> str | None:
    """Why a target Stripe accepts is not one a mapping may write (None when it is, or when
    Stripe has no such parameter)."""
    if path.startswith("metadata.") or path in TARGETS_BY_OBJECT[stripe_object]:
        return None
    if schema_target(stripe_object, path) is None:
        return None
    return denied(stripe_object, path)


# ---- a subscription mapping's `lines.fields`: the metadata of the Products and Prices ----------

# Keys the connector sets on them itself (recovery and reuse find objects by them).
LINE_RESERVED_KEYS: dict[str, frozenset[str]] = {
    "product": frozenset({"salesforce_product_id", "managed_by"}),
    "price": frozenset(
        {"salesforce_product_id", "cpq2stripe_price_key", "salesforce_record_id", "managed_by"}
    ),
}
LINE_TARGET_FORMS = ("product.metadata.<key>", "price.metadata.<key>")


def line_target(path: str) -> tuple[str, str] | None:
    """`product.metadata.family` -> ("product", "family"); None for anything else."""
    head, _, key = path.partition(".metadata.")
    if head in LINE_RESERVED_KEYS and key:
        return head, key
    return None


def line_target_problem(path: str) -> tuple[str, str] | None:
    """(message, fix) when a `lines.fields` target is not one a mapping may write."""
    parsed = line_target(path)
    if parsed is None:
        return (
            f"'{path}' is not a line target; lines take {' or '.join(LINE_TARGET_FORMS)}",
            "write e.g. 'product.metadata.family'",
        )
    obj, key = parsed
    if key in LINE_RESERVED_KEYS[obj]:
        return f"{obj} metadata key '{key}' is reserved for the connector", "choose another key"
    problem = metadata_key_problem(key)
    return (problem, "use a key of at most 40 characters without [ or ]") if problem else None

"""The Stripe fields a mapping may write, per Stripe object, with their types and limits.

Only fields the connector knows how to send are listed: an admin typo such as `adress.city`
or a field the connector does not manage (`balance`) is refused when the mapping
loads, not when Stripe answers 400. Lengths come from Stripe's API reference (OpenAPI
`maxLength`): customer name 256, phone 20, email 512, description 5000, address and shipping
parts 5000; subscription description 500; metadata keys 40 and values 500, 50 keys at most.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

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
    """The spec for a target path, or None when the connector does not support it."""
    if path.startswith("metadata.") and len(path) > len("metadata."):
        return metadata_spec(path[len("metadata.") :])
    return TARGETS_BY_OBJECT[stripe_object].get(path)


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
    return [*TARGETS_BY_OBJECT[stripe_object], "metadata.<key>"]

"""The hostile-input catalogue: one entry per case — the input, the clear error fragments it must
produce, and (in the tests) the proof that nothing else was affected. Data, so a new case is a
new entry, not new code."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------------------------------
# Mappings: every case must exit 2 with file:line and a fix, no traceback.


@dataclass(frozen=True)
class MappingCase:
    name: str
    file: str  # which file in the mappings directory
    old: str  # text of the shipped file replaced…
    new: str  # …by this (old="" replaces the whole file)
    expect: tuple[str, ...]  # fragments of the error
    against_org: bool = False


# about 5 MB with CPQ2STRIPE_RELIABILITY_SCALE=large, about 0.8 MB in CI (parsing it twice is the
# suite's slowest case)
ENORMOUS_COUNT = (
    120_000 if os.environ.get("CPQ2STRIPE_RELIABILITY_SCALE", "").strip().lower() == "large" else 20_000
)
ENORMOUS_FIELDS = "".join(f"  - target: metadata.k{i}\n    source: Name\n" for i in range(ENORMOUS_COUNT))

MAPPING_CASES = [
    MappingCase(
        "yaml syntax error",
        "customer.yaml",
        "    source: Name\n",
        "    source: [Name\n",
        ("customer.yaml:", "YAML syntax error", "fix:"),
    ),
    MappingCase(
        "wrong type", "customer.yaml", "version: 1\n", "version: [1]\n", ("customer.yaml:", "version")
    ),
    MappingCase(
        "unknown key",
        "customer.yaml",
        "    source: Name\n",
        "    source: Name\n    sorce: Name\n",
        ("sorce",),
    ),
    MappingCase(
        "unknown Stripe path", "customer.yaml", "  - target: name\n", "  - target: nmae\n", ("nmae",)
    ),
    MappingCase(
        "unknown Salesforce field",
        "customer.yaml",
        "    source: Name\n",
        "    source: Nmae__c\n",
        ("customer.yaml:", "Nmae__c"),
        against_org=True,
    ),
    MappingCase("empty file", "customer.yaml", "", "", ("customer.yaml",)),
    MappingCase(
        "circular (self-referencing YAML alias)",
        "customer.yaml",
        "",
        "version: 1\nobject: Account\nfields: &loop\n"
        "  - target: name\n    source: Name\n    transforms: *loop\n",
        ("customer.yaml:",),
    ),
    MappingCase(
        "same target twice",
        "customer.yaml",
        "  - target: email\n",
        "  - target: name\n    source: Name\n  - target: email\n",
        ("customer.yaml:", "name"),
    ),
    MappingCase(
        f"enormous file ({ENORMOUS_COUNT:,} mapped fields)",
        "customer.yaml",
        "fields:\n",
        "fields:\n" + ENORMOUS_FIELDS,
        ("customer.yaml:",),
    ),
]


# ---------------------------------------------------------------------------------------------------
# Data: each hostile Account fails (or syncs faithfully) alone, with a message naming the record,
# the field and the fix, while a good Account in the same run syncs.


@dataclass(frozen=True)
class DataCase:
    name: str
    fields: dict[str, Any]  # Account fields over a valid billing Account
    expect: tuple[str, ...] = ()  # fragments of the record's message; () = must sync as is
    stripe_check: dict[str, Any] = field(default_factory=dict)  # Customer fields it must hold when synced
    note: tuple[str, ...] = ()  # synced: fragments of its message (a value left out, and why)


QUOTES = "O'Brien \\' OR Name != '' -- \" \\\\"
DATA_CASES = [
    DataCase("quotes and backslashes in the name", {"Name": QUOTES}, stripe_check={"name": QUOTES}),
    DataCase(
        "SOQL-looking name",
        {"Name": "x' OR Id != null OR Name = 'y"},
        stripe_check={"name": "x' OR Id != null OR Name = 'y"},
    ),
    DataCase(
        "emoji and right-to-left text",
        {"Name": "שלום עולם 🚀 مرحبا"},
        stripe_check={"name": "שלום עולם 🚀 مرحبا"},
    ),
    # Stripe documents no character restriction on a Customer's name and the fake accepts these;
    # a NUL byte, which Stripe rejects, cannot be stored in a Salesforce text field in the first place
    DataCase(
        "control characters (the bell passes through; the mapping trims the trailing tab)",
        {"Name": "Bell\x07 and tab\t"},
        stripe_check={"name": "Bell\x07 and tab"},
    ),
    DataCase("name over Stripe's 256 characters", {"Name": "N" * 255, "Description": "D" * 6000}, expect=()),
    DataCase(
        "invalid email",
        {"Billing_Email__c": "billing.@hostile.example"},
        expect=("Billing_Email__c", "email", "fix"),
    ),
    # An optional contact field: the Customer syncs without it and says what was left out.
    DataCase(
        "invalid phone", {"Phone": "call me maybe"}, stripe_check={"phone": None}, note=("Phone", "left out")
    ),
    DataCase("unknown country", {"BillingCountry": "Narnia"}, expect=("BillingCountry", "Narnia", "fix")),
]


# ---------------------------------------------------------------------------------------------------
# Orders: each hostile Order is refused alone (nothing created for it in Stripe) with a message
# naming the record, the field and the fix, while a good Order in the same run syncs.


@dataclass(frozen=True)
class OrderCase:
    name: str
    line: dict[str, Any] = field(default_factory=dict)  # over one valid monthly line (price 100)
    order: dict[str, Any] = field(default_factory=dict)  # Order fields; "start"/"end" as ISO dates
    expect: tuple[str, ...] = ()  # fragments of the refusal; () = must sync
    names_line: bool = True  # the message names the OrderItem (else the Order)


ORDER_CASES = [
    OrderCase("decimal quantity", line={"quantity": 1.5}, expect=("Quantity is 1.5", "whole")),
    OrderCase("zero quantity", line={"quantity": 0}, expect=("Quantity", "at least 1")),
    OrderCase("negative amount", line={"unit": -10.0}, expect=("UnitPrice is -10",)),
    OrderCase(  # all lines one-time: an invoice, under the same money rules
        "negative one-time amount", line={"one_time": True, "unit": -10.0}, expect=("UnitPrice is -10",)
    ),
    OrderCase("huge amount", line={"unit": 1e12}, expect=("UnitPrice", "maximum")),
    OrderCase(
        "start date out of range (year 1700)",
        order={"start": "1700-01-01", "end": "1700-12-31"},
        expect=("EndDate is 1700-12-31", "already over"),
        names_line=False,
    ),
    # Salesforce's last date; Stripe documents no upper bound for cancel_at, the fake accepts it:
    # it syncs as a subscription cancelled in 4001 (not verified against live Stripe)
    OrderCase("end date at Salesforce's limit (4000-12-31)", order={"end": "4000-12-31"}),
    OrderCase("product name of 255 characters (Salesforce's limit)", line={"product": "P" * 255}),
]


@dataclass(frozen=True)
class OrgGuardCase:
    """Hostile data the org itself refuses to store: the connector never sees it."""

    name: str
    sobject: str
    fields: dict[str, Any]
    error_code: str


ORG_GUARD_CASES = [
    OrgGuardCase(
        "currency Stripe does not know (restricted picklist)",
        "Order",
        {"currency": "XTS"},
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
    ),
    OrgGuardCase("product name over 255 characters", "Product2", {"Name": "P" * 300}, "STRING_TOO_LONG"),
]

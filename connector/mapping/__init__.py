"""Mapping: admin-edited YAML -> pure Salesforce-record-to-Stripe-params functions.

Imports nothing from the rest of `connector`; its only I/O is reading the two YAML files.

    load_mappings(directory) -> Mappings                 customer.yaml + subscription.yaml;
                                                        raises MappingError(problems) listing
                                                        every Problem(file, line, column, message, fix)
    check_against_describe(mappings, describe) -> list[Problem]
    check_user_permissions(mappings, holds) -> list[Problem]  the integration user's permissions
                                                        sources/write-back fields vs the org's describe
    soql_fields(mapping) -> list[str]                   Id, SystemModstamp, sources, write-back fields
    map_record(mapping, record) -> MappedRecord         params (nested Stripe params) + errors (FieldError)
    project_stripe_object(mapping, obj) -> dict         the mapped part of a Stripe object, for drift diffs
    diff_params(old, new) -> dict                       update params with only what changed ("" unsets)
    payload_hash(params) -> str                         sha256 of canonical JSON

`mapping` is a CustomerMapping (mappings.customer), SubscriptionMapping (mappings.subscription,
order level) or LineMapping (mappings.subscription.lines, one OrderItem). The YAML format is
documented by the shipped files in `defaults/` (`cpq2stripe init` copies them); the Stripe
targets by `targets.py`; the transforms by `transforms.py`.
"""

from connector.mapping.checks import check_against_describe, check_user_permissions
from connector.mapping.engine import diff_params, map_record, payload_hash, project_stripe_object, soql_fields
from connector.mapping.loader import load_mappings, parse_mapping
from connector.mapping.schema import (
    CustomerMapping,
    FieldError,
    FieldMapping,
    LineMapping,
    MappedRecord,
    MappingError,
    Mappings,
    Problem,
    SubscriptionMapping,
    ValueSource,
    WriteBack,
)
from connector.mapping.targets import RESERVED_METADATA_KEYS

__all__ = [
    "RESERVED_METADATA_KEYS",
    "CustomerMapping",
    "FieldError",
    "FieldMapping",
    "LineMapping",
    "MappedRecord",
    "MappingError",
    "Mappings",
    "Problem",
    "SubscriptionMapping",
    "ValueSource",
    "WriteBack",
    "check_against_describe",
    "check_user_permissions",
    "diff_params",
    "load_mappings",
    "map_record",
    "parse_mapping",
    "payload_hash",
    "project_stripe_object",
    "soql_fields",
]

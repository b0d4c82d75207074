"""Mapping targets from stripe-python's request definitions: any writable path with its type,
curated entries on top, the deny-list, and named lists (invoice_settings.custom_fields)."""

from __future__ import annotations

import shutil

import pytest

from connector.mapping import MappingError, check_against_describe, load_mappings, map_record, parse_mapping
from connector.mapping import targets as tg
from connector.mapping.stripe_schema import params_of

from .test_mapping_loader import MAPPINGS, _describe_from_schema

HEAD = "write_back: {stripe_id: Stripe_Customer_ID__c}\nfields:\n  - {target: name, source: Name}\n"


def problems(text: str, kind: str = "customer"):
    with pytest.raises(MappingError) as info:
        parse_mapping(text, "customer.yaml", kind)
    return info.value.problems


def test_the_schema_gives_every_writable_path_with_its_type():
    customer = params_of("customer")
    assert customer["invoice_settings.footer"].kind == "string"
    assert customer["tax_exempt"].choices == ("exempt", "none", "reverse")
    assert customer["address.city"].kind == "string"  # nested objects by dot path
    named = customer["invoice_settings.custom_fields"]
    assert named.kind == "object_list" and named.max_items == 4
    assert (named.item["name"].max_length, named.item["value"].max_length) == (40, 140)
    assert "customer" not in params_of("subscription")  # create-only parameters are left out
    assert "api_key" not in customer  # request options are not parameters


def test_curated_entries_override_the_schema():
    assert tg.resolve_target("customer", "name").max_length == 256  # Stripe's OpenAPI maxLength
    assert tg.resolve_target("customer", "preferred_locales").pattern is not None
    footer = tg.resolve_target("customer", "invoice_settings.footer")
    assert footer is not None and footer.kind == "string"
    assert tg.resolve_target("customer", "business_name").max_length == 150  # from the docstring


def test_the_deny_list_keeps_out_what_is_not_an_admins_data():
    for path in (
        "balance",
        "invoice_settings.default_payment_method",
        "next_invoice_sequence",
        "tax.ip_address",
    ):
        assert tg.resolve_target("customer", path) is None and tg.refusal("customer", path)
    for path in ("items", "customer", "proration_behavior", "trial_end", "automatic_tax.enabled"):
        assert tg.resolve_target("subscription", path) is None
    assert tg.refusal("customer", "adress.city") is None  # not Stripe's: a typo, not a refusal


def test_a_misspelled_path_is_refused_with_a_suggestion():
    [found] = problems(HEAD + "  - {target: invoice_settings.custom_field, name: PO Number, source: PO__c}\n")
    assert found.line == 4 and "invoice_settings.custom_field'" in found.message
    assert "invoice_settings.custom_fields" in found.fix
    assert str(found).startswith("customer.yaml:4:")


def test_a_denied_path_says_why():
    [found] = problems(HEAD + "  - {target: balance, source: Balance__c}\n")
    assert found.line == 4 and "may not write" in found.message and "money" in found.message


def test_a_wrong_type_is_refused_naming_file_and_line():
    found = problems(
        HEAD
        + "  - {target: invoice_settings.rendering_options.amount_tax_display, default: include}\n"
        + "  - {target: tax_exempt, default: maybe}\n"
    )
    by_line = {p.line: p for p in found}
    assert "exclude_tax" in by_line[4].message and "include_inclusive_tax" in by_line[4].message
    assert "exempt" in by_line[5].message


def test_a_wrong_salesforce_type_is_refused_against_the_org(tmp_path):
    shutil.copy(MAPPINGS / "subscription.yaml", tmp_path / "subscription.yaml")
    (tmp_path / "customer.yaml").write_text(
        HEAD + "  - {target: invoice_settings.rendering_options.amount_tax_display, source: CreatedDate}\n"
    )
    [found] = check_against_describe(load_mappings(tmp_path), _describe_from_schema())
    assert found.line == 4 and "datetime" in found.message


def test_named_lists_need_a_name_within_stripes_limits():
    too_long = "A label much longer than forty characters!!"
    found = problems(
        HEAD
        + "  - {target: invoice_settings.custom_fields, source: PO__c}\n"
        + f"  - {{target: invoice_settings.custom_fields, name: '{too_long}', source: A__c}}\n"
        + "  - {target: invoice_settings.custom_fields, name: One, source: B__c}\n"
        + "  - {target: invoice_settings.custom_fields, name: One, source: C__c}\n"
        + "  - {target: invoice_settings.custom_fields, name: Three, source: D__c}\n"
        + "  - {target: invoice_settings.custom_fields, name: Four, source: E__c}\n"
        + "  - {target: email, name: Mail, source: Email__c}\n"
    )
    by_line = {p.line: p.message for p in found}
    assert "needs a 'name'" in by_line[4]
    assert "40" in by_line[5]
    assert "twice" in by_line[7]
    assert "at most 4" in by_line[9]
    assert "only for list targets" in by_line[10]


def test_custom_fields_map_to_name_value_items_in_order():
    mapping = parse_mapping(
        HEAD
        + "  - {target: invoice_settings.custom_fields, name: PO Number, source: PO__c, transforms: [trim]}\n"
        + "  - {target: invoice_settings.custom_fields, name: Cost center, source: CC__c}\n"
        + "  - {target: invoice_settings.footer, default: Thank you}\n",
        "customer.yaml",
        "customer",
    )
    mapped = map_record(mapping, {"Id": "001", "Name": "Acme", "PO__c": " PO-4711 ", "CC__c": None})
    assert mapped.errors == []
    assert mapped.params["invoice_settings"] == {
        "custom_fields": [{"name": "PO Number", "value": "PO-4711"}],
        "footer": "Thank you",
    }
    long = map_record(mapping, {"Id": "001", "Name": "Acme", "PO__c": "x" * 141})
    assert long.errors and "140" in str(long.errors[0])


LINES = "write_back: {stripe_id: S}\nlines:\n  fields:\n"


def test_line_fields_are_product_or_price_metadata_outside_the_connectors_keys():
    found = problems(
        LINES
        + "    - {target: product.metadata.family, source: Product2.Family}\n"
        + "    - {target: price.metadata.cpq2stripe_price_key, source: Product2.ProductCode}\n"
        + "    - {target: product.name, source: Product2.Name}\n"
        + "    - {target: product.metadata.family, source: Product2.Family}\n",
        "subscription",
    )
    by_line = {p.line: p for p in found}
    assert 4 not in by_line
    assert "reserved" in by_line[5].message
    assert "product.metadata.<key>" in by_line[6].message
    assert "twice" in by_line[7].message


def test_line_fields_map_to_product_and_price_metadata():
    mapping = parse_mapping(
        LINES
        + "    - {target: product.metadata.family, source: Product2.Family}\n"
        + "    - {target: price.metadata.sku, source: Product2.ProductCode, transforms: [upper]}\n",
        "subscription.yaml",
        "subscription",
    )
    record = {
        "Id": "802",
        "UnitPrice": 10,
        "Quantity": 1,
        "Product2": {"Name": "P", "Family": "Software", "ProductCode": "ab-1"},
    }
    mapped = map_record(mapping.lines, record)
    assert mapped.params["product_metadata"] == {"family": "Software"}
    assert mapped.params["price_metadata"] == {"sku": "AB-1"}

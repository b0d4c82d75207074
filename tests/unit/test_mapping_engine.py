"""The shipped mappings on seed-like records, and the pure engine helpers."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from connector.mapping import (
    diff_params,
    load_mappings,
    map_record,
    parse_mapping,
    payload_hash,
    project_stripe_object,
    soql_fields,
)

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


@pytest.fixture(scope="module")
def mappings():
    return load_mappings(MAPPINGS)


def seed_account(**overrides):
    record = {
        "attributes": {"type": "Account"},
        "Id": "001000000000001AAA",
        "Name": "Müller GmbH ",
        "Phone": "+49 30 1234567",
        "Description": "Enterprise customer, Germany.",
        "Billing_Email__c": "Billing@mueller0.example.com",
        "BillingStreet": "Hauptstraße 12",
        "BillingCity": "Berlin",
        "BillingState": "Berlin",
        "BillingPostalCode": "10115",
        "BillingCountry": "Germany",
        "ShippingStreet": "Königsallee 3",
        "ShippingCity": "Düsseldorf",
        "ShippingState": "Nordrhein-Westfalen",
        "ShippingPostalCode": "40213",
        "ShippingCountry": "DE",
        "Billing_Entity__c": True,
        "Stripe_Customer_ID__c": None,
        "SystemModstamp": "2024-05-01T10:00:00.000+0000",
    }
    record.update(overrides)
    return record


def test_shipped_customer_mapping_produces_the_seed_table(mappings):
    result = map_record(mappings.customer, seed_account())
    assert result.errors == []
    assert result.params == {
        "name": "Müller GmbH",
        "phone": "+49301234567",
        "description": "Enterprise customer, Germany.",
        "email": "billing@mueller0.example.com",
        "address": {
            "line1": "Hauptstraße 12",
            "city": "Berlin",
            "state": "Berlin",
            "postal_code": "10115",
            "country": "DE",
        },
        "shipping": {
            "name": "Müller GmbH",
            "phone": "+49301234567",
            "address": {
                "line1": "Königsallee 3",
                "city": "Düsseldorf",
                "state": "Nordrhein-Westfalen",
                "postal_code": "40213",
                "country": "DE",
            },
        },
    }


def test_shipped_customer_mapping_condition_and_write_back(mappings):
    customer = mappings.customer
    assert customer.condition == "Billing_Entity__c = true"
    assert customer.write_back.fields() == [
        "Stripe_Customer_ID__c",
        "Stripe_Sync_Status__c",
        "Stripe_Sync_Message__c",
        "Stripe_Last_Synced__c",
    ]


def test_same_input_same_output(mappings):
    first = map_record(mappings.customer, seed_account())
    second = map_record(mappings.customer, seed_account())
    assert first == second
    assert payload_hash(first.params) == payload_hash(second.params)


def test_empty_values_are_left_out_and_shipping_without_address_is_dropped(mappings):
    blank = {f"Shipping{p}": None for p in ("Street", "City", "State", "PostalCode", "Country")}
    result = map_record(mappings.customer, seed_account(Description="   ", Phone=None, **blank))
    assert result.errors == []
    assert "description" not in result.params
    assert "phone" not in result.params
    assert "shipping" not in result.params


def test_record_errors_name_field_target_and_value(mappings):
    result = map_record(mappings.customer, seed_account(BillingCountry="Atlantis", Phone="call me"))
    by_target = {e.stripe_target: e for e in result.errors}
    assert by_target["address.country"].salesforce_field == "BillingCountry"
    assert by_target["address.country"].value == "Atlantis"
    assert "Atlantis" in by_target["address.country"].message
    assert by_target["address.country"].record_id == "001000000000001AAA"
    assert all(e.fix for e in result.errors)


@pytest.mark.parametrize(
    ("phone", "country", "e164"),
    [
        ("030 1234567", "Germany", "+49301234567"),
        ("044 668 18 00", "CH", "+41446681800"),
        ("(415) 555-0132", "United States", "+14155550132"),
    ],
)
def test_shipped_mapping_reads_local_phones_in_the_accounts_country(mappings, phone, country, e164):
    result = map_record(mappings.customer, seed_account(Phone=phone, BillingCountry=country))
    assert result.errors == [] and result.notes == []
    assert result.params["phone"] == e164
    assert result.params["shipping"]["phone"] == e164  # the same number, not re-read in DE (shipping)


def test_an_invalid_phone_is_left_out_with_a_note_and_the_customer_still_maps(mappings):
    result = map_record(mappings.customer, seed_account(Phone="call me"))
    assert result.ok
    assert "phone" not in result.params and "phone" not in result.params["shipping"]
    assert result.params["name"] == "Müller GmbH"
    # phone and shipping.phone fail alike: one note names the field, both targets, the value and why
    assert len(result.notes) == 1
    assert result.notes[0].startswith("Phone left out of phone and shipping.phone: 'call me'")
    assert "not a phone number for DE" in result.notes[0] and "(fix: " in result.notes[0]


def _customer(fields: str):
    return parse_mapping(
        f"write_back: {{stripe_id: Stripe_Customer_ID__c}}\nfields:\n{fields}", "c.yaml", "customer"
    )


def test_on_invalid_overrides_the_default_per_field():
    mapping = _customer(
        "  - {target: name, source: Name, on_invalid: omit}\n"
        "  - {target: phone, source: Phone, transforms: [phone], on_invalid: fail}\n"
        "  - {target: email, source: Billing_Email__c, transforms: [email]}\n"
    )
    result = map_record(
        mapping, {"Id": "1", "Name": "n" * 300, "Phone": "n/a", "Billing_Email__c": "a..b@x.com"}
    )
    assert [e.stripe_target for e in result.errors] == ["phone", "email"]  # fail: the default for email
    assert [e.stripe_target for e in result.omitted] == ["name"]  # over Stripe's 256, left out
    assert result.notes[0].startswith("Name left out of name: value is 300 characters")


def test_phone_region_from_a_custom_field_is_selected_and_used():
    mapping = _customer(
        "  - target: phone\n    source: Phone\n    transforms: [phone: {region_from: Country__c}]\n"
    )
    assert "Country__c" in soql_fields(mapping)
    result = map_record(mapping, {"Id": "1", "Phone": "044 668 18 00", "Country__c": "Switzerland"})
    assert result.params == {"phone": "+41446681800"}


def test_multi_line_streets_fill_line1_and_line2(mappings):
    result = map_record(
        mappings.customer,
        seed_account(BillingStreet="Hauptstr. 1\nHinterhaus", ShippingStreet="Königsallee 3\r\nTor 2\r\n"),
    )
    assert result.params["address"]["line1"] == "Hauptstr. 1"
    assert result.params["address"]["line2"] == "Hinterhaus"
    assert result.params["shipping"]["address"]["line1"] == "Königsallee 3"
    assert result.params["shipping"]["address"]["line2"] == "Tor 2"
    one_line = map_record(mappings.customer, seed_account())
    assert "line2" not in one_line.params["address"]


def test_long_description_is_truncated_to_stripes_limit(mappings):
    result = map_record(mappings.customer, seed_account(Description="x" * 6000))
    assert len(result.params["description"]) == 5000


def test_value_over_limit_without_truncate_is_a_record_error():
    mapping = parse_mapping(
        "write_back: {stripe_id: Stripe_Customer_ID__c}\nfields:\n  - {target: name, source: Name}\n",
        "c.yaml",
        "customer",
    )
    result = map_record(mapping, {"Id": "001", "Name": "n" * 300})
    assert [e.stripe_target for e in result.errors] == ["name"]
    assert "truncate" in result.errors[0].fix


def test_parent_paths_defaults_and_constants():
    text = """
write_back: {stripe_id: Stripe_Customer_ID__c}
fields:
  - {target: name, source: Name}
  - {target: metadata.parent, source: Parent.Name}
  - {target: metadata.region, default: EMEA}
  - {target: address.country, source: BillingCountry, default: Deutschland, transforms: [country]}
"""
    mapping = parse_mapping(text, "c.yaml", "customer")
    with_parent = map_record(
        mapping, {"Id": "1", "Name": "A", "Parent": {"Name": "P"}, "BillingCountry": None}
    )
    assert with_parent.params == {
        "name": "A",
        "metadata": {"parent": "P", "region": "EMEA"},
        "address": {"country": "DE"},
    }
    orphan = map_record(mapping, {"Id": "2", "Name": "B", "Parent": None, "BillingCountry": "FR"})
    assert orphan.params["metadata"] == {"region": "EMEA"}
    assert orphan.params["address"] == {"country": "FR"}


def test_shipping_address_without_name_is_an_error():
    text = """
write_back: {stripe_id: Stripe_Customer_ID__c}
fields:
  - {target: shipping.address.city, source: ShippingCity}
"""
    mapping = parse_mapping(text, "c.yaml", "customer")
    result = map_record(mapping, {"Id": "1", "ShippingCity": "Berlin"})
    assert [e.stripe_target for e in result.errors] == ["shipping.name"]


def test_subscription_order_level(mappings):
    order = {
        "Id": "801000000000001AAA",
        "Description": "Annual plan",
        "Payment_Term__c": "Net 45",
        "OrderNumber": "00000042",
        "Type": "New",
        "SBQQ__Quote__c": None,
        "Account": {"Stripe_Payment_Method_ID__c": None},
    }
    result = map_record(mappings.subscription, order)
    assert result.errors == []
    assert result.params == {
        "description": "Annual plan",
        "collection_method": "send_invoice",
        "days_until_due": 45,
        "metadata": {"order_number": "00000042", "order_type": "New"},
        "skip_elapsed_periods": False,  # the shipped default: bill the elapsed periods
    }
    no_term = map_record(mappings.subscription, {**order, "Payment_Term__c": None})
    assert no_term.params["days_until_due"] == 30


def test_payment_method_switches_to_charge_automatically(mappings):
    order = {"Id": "801", "Payment_Term__c": "Net 30", "Account": {"Stripe_Payment_Method_ID__c": "pm_123"}}
    params = map_record(mappings.subscription, order).params
    assert params["collection_method"] == "charge_automatically"
    assert params["default_payment_method"] == "pm_123"
    assert "days_until_due" not in params


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2026-04-01", "2026-04-01"), ("2026-04-01T00:00:00.000+0000", "2026-04-01"), (None, None)],
)
def test_trial_end_reads_a_date_or_date_time(mappings, value, expected):
    result = map_record(mappings.subscription, {"Id": "801", "Stripe_Trial_End_Date__c": value})
    assert result.errors == [] and result.params.get("trial_end") == expected


def test_a_trial_end_that_is_not_a_date_names_the_field_and_the_fix(mappings):
    result = map_record(mappings.subscription, {"Id": "801", "Stripe_Trial_End_Date__c": "next week"})
    [error] = result.errors
    assert error.salesforce_field == "Stripe_Trial_End_Date__c" and error.stripe_target == "trial_end"
    assert "is not a date" in str(error) and "YYYY-MM-DD" in str(error)
    assert "Stripe_Trial_End_Date__c" in soql_fields(mappings.subscription)


def test_lines(mappings):
    item = {
        "Id": "802",
        "UnitPrice": 19.99,
        "Quantity": 3.0,
        "Product2": {"Name": " Pro Plan ", "Description": "The plan"},
    }
    result = map_record(mappings.subscription.lines, item)
    assert result.errors == []
    assert result.params == {
        "unit_price": Decimal("19.99"),
        "quantity": 3,
        "product_name": "Pro Plan",
        "product_description": "The plan",
    }
    bad = map_record(mappings.subscription.lines, {**item, "Quantity": 2.5, "Product2": None})
    assert {e.stripe_target for e in bad.errors} == {"quantity", "product_name"}


def test_soql_fields(mappings):
    fields = soql_fields(mappings.customer)
    assert fields[:2] == ["Id", "SystemModstamp"]
    assert {
        "Name",
        "Billing_Email__c",
        "ShippingCountry",
        "Stripe_Customer_ID__c",
        "Stripe_Last_Synced__c",
    } <= set(fields)
    assert len(fields) == len(set(fields))
    order_fields = soql_fields(mappings.subscription)
    assert "Account.Stripe_Payment_Method_ID__c" in order_fields
    assert "Stripe_Subscription_ID__c" in order_fields
    line_fields = soql_fields(mappings.subscription.lines)
    assert {"UnitPrice", "Quantity", "Product2.Name", "Product2.Stripe_Product_ID__c"} <= set(line_fields)
    assert {"PricebookEntry.Stripe_Price_ID__c", "Stripe_Price_ID__c"} <= set(line_fields)


def test_diff_params_sends_only_changes():
    old = {
        "name": "A",
        "email": "a@x.com",
        "address": {"line1": "1 Street", "city": "Berlin", "country": "DE"},
        "metadata": {"region": "EMEA", "tier": "gold"},
    }
    new = {
        "name": "A",
        "phone": "+15551234567",
        "address": {"line1": "1 Street", "city": "Hamburg", "country": "DE"},
        "metadata": {"region": "EMEA", "segment": "smb"},
    }
    assert diff_params(old, new) == {
        "email": "",
        "phone": "+15551234567",
        "address": {"line1": "1 Street", "city": "Hamburg", "country": "DE"},
        "metadata": {"segment": "smb", "tier": ""},
    }
    assert diff_params(new, new) == {}


def test_diff_params_never_unsets_reserved_metadata():
    old = {"metadata": {"salesforce_account_id": "001", "managed_by": "cpq2stripe", "x": "1"}}
    assert diff_params(old, {"metadata": {}}) == {"metadata": {"x": ""}}


def test_diff_against_projected_stripe_object_ignores_unmapped_fields(mappings):
    desired = map_record(mappings.customer, seed_account()).params
    stripe_customer = {
        "id": "cus_1",
        "object": "customer",
        "balance": 0,
        "tax_exempt": "none",
        "metadata": {"salesforce_account_id": "001000000000001AAA"},
        **desired,
        "address": {**desired["address"], "line2": None},
    }
    assert diff_params(project_stripe_object(mappings.customer, stripe_customer), desired) == {}
    drifted = {**stripe_customer, "name": "Changed in Stripe"}
    assert diff_params(project_stripe_object(mappings.customer, drifted), desired) == {"name": "Müller GmbH"}


def test_payload_hash_is_stable_and_order_independent():
    a = {"name": "A", "address": {"city": "B", "line1": "C"}, "price": Decimal("1.50")}
    b = {"address": {"line1": "C", "city": "B"}, "price": Decimal("1.50"), "name": "A"}
    assert payload_hash(a) == payload_hash(b)
    assert len(payload_hash(a)) == 64
    assert payload_hash(a) != payload_hash({**a, "name": "B"})

"""Pure drift computation: which mapped fields differ, and the update that puts only them back."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.mapping import load_mappings, map_record
from connector.sync.reconcile import _overlay, customer_drift, flatten

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
SF_ID = "001000000000001AAA"
ACCOUNT = {
    "Id": SF_ID,
    "Name": "Acme",
    "Description": "Key account",
    "BillingStreet": "Main St 1",
    "BillingCity": "Berlin",
    "BillingCountry": "DE",
    "Billing_Entity__c": True,
}


@pytest.fixture(scope="module")
def mapping():
    return load_mappings(MAPPINGS).customer


def stripe_customer(**overrides):
    base = {
        "id": "cus_1",
        "object": "customer",
        "name": "Acme",
        "description": "Key account",
        "email": None,
        "phone": None,
        "address": {
            "line1": "Main St 1",
            "line2": None,
            "city": "Berlin",
            "state": None,
            "postal_code": None,
            "country": "DE",
        },
        "shipping": None,
        "tax_exempt": "none",
        "invoice_prefix": "ABC123",
        "metadata": {"salesforce_account_id": SF_ID, "managed_by": "cpq2stripe"},
    }
    base.update(overrides)
    return base


def desired(mapping):
    return map_record(mapping, dict(ACCOUNT)).params


def test_in_step_customer_has_no_drift(mapping):
    drifts, changes = customer_drift(mapping, SF_ID, desired(mapping), stripe_customer())
    assert drifts == [] and changes == {}


def test_unmapped_fields_and_foreign_metadata_are_not_drift(mapping):
    obj = stripe_customer(
        tax_exempt="reverse",
        invoice_prefix="ZZZ",
        metadata={"salesforce_account_id": SF_ID, "managed_by": "cpq2stripe", "note": "by hand"},
    )
    assert customer_drift(mapping, SF_ID, desired(mapping), obj) == ([], {})


def test_scalar_drift_sends_only_that_field(mapping):
    drifts, changes = customer_drift(mapping, SF_ID, desired(mapping), stripe_customer(name="Other"))
    assert [(d.field, d.stripe_value, d.salesforce_value) for d in drifts] == [("name", "Other", "Acme")]
    assert changes == {"name": "Acme"}


def test_a_value_added_in_stripe_for_an_empty_salesforce_field_is_unset(mapping):
    drifts, changes = customer_drift(mapping, SF_ID, desired(mapping), stripe_customer(phone="+4930123"))
    assert [(d.field, d.salesforce_value) for d in drifts] == [("phone", None)]
    assert changes == {"phone": ""}


def test_nested_drift_keeps_unmapped_parts_of_the_object(mapping):
    # the shipped mapping maps every address part; without address.line2 that part is unmapped
    mapping = mapping.model_copy(
        update={"fields": [f for f in mapping.fields if f.target != "address.line2"]}
    )
    address = {**stripe_customer()["address"], "city": "Hamburg", "line2": "Hinterhaus"}
    drifts, changes = customer_drift(mapping, SF_ID, desired(mapping), stripe_customer(address=address))
    assert [d.field for d in drifts] == ["address.city"]
    assert changes == {
        "address": {"line1": "Main St 1", "line2": "Hinterhaus", "city": "Berlin", "country": "DE"}
    }


def test_the_connectors_own_metadata_key_is_put_back(mapping):
    obj = stripe_customer(metadata={"salesforce_account_id": "001OTHER", "note": "x"})
    drifts, changes = customer_drift(mapping, SF_ID, desired(mapping), obj)
    assert [d.field for d in drifts] == ["metadata.salesforce_account_id"]
    assert changes == {"metadata": {"salesforce_account_id": SF_ID}}


def test_flatten_and_overlay():
    assert flatten({"a": {"b": 1, "c": {"d": [1]}}, "e": None}) == {"a.b": 1, "a.c.d": [1], "e": None}
    assert _overlay({"x": 1, "y": None, "z": 3}, {"x": 2}, ["x", "z"]) == {"x": 2}
    assert _overlay(None, {"x": 2}, ["x"]) == {"x": 2}


def test_invoice_custom_fields_drift_puts_back_only_that_part():
    from connector.mapping import parse_mapping

    mapping = parse_mapping(
        "write_back: {stripe_id: Stripe_Customer_ID__c}\n"
        "fields:\n"
        "  - {target: name, source: Name}\n"
        "  - {target: invoice_settings.custom_fields, name: Sector, source: Industry}\n",
        "customer.yaml",
        "customer",
    )
    want = map_record(mapping, {**ACCOUNT, "Industry": "Banking"}).params
    settings = {
        "custom_fields": [{"name": "Sector", "value": "by hand"}],
        "footer": "Kept",
        "default_payment_method": None,
    }
    drifts, changes = customer_drift(mapping, SF_ID, want, stripe_customer(invoice_settings=settings))
    assert [d.field for d in drifts] == ["invoice_settings.custom_fields"]
    assert changes == {"invoice_settings": {"custom_fields": [{"name": "Sector", "value": "Banking"}]}}

    gone = map_record(mapping, {**ACCOUNT, "Industry": None}).params
    _drifts, changes = customer_drift(mapping, SF_ID, gone, stripe_customer(invoice_settings=settings))
    assert changes == {"invoice_settings": {"custom_fields": ""}}
    in_step = {**settings, "custom_fields": [{"name": "Sector", "value": "Banking"}]}
    assert customer_drift(mapping, SF_ID, want, stripe_customer(invoice_settings=in_step)) == ([], {})

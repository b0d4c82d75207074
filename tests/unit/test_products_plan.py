"""The Product2 pipeline's pure part: which fields it reads, what it would send, what it compares."""

from __future__ import annotations

from connector.mapping import LineMapping, ValueSource
from connector.sync.fieldhash import changed_params, field_hashes
from connector.sync.products import compared_fields, created_hashes, product_fields, product_params

ROW = {"Id": "01t000000000001AAA", "Name": "  Platform  ", "Description": "All of it", "IsActive": True}


def test_the_orders_slots_read_the_product2_itself():
    lines = LineMapping()
    assert product_fields(lines) == ["Name", "IsActive", "Stripe_Product_ID__c", "Description"]
    params, errors = product_params(lines, ROW)
    assert errors == []
    assert params == {"name": "Platform", "description": "All of it", "active": True}


def test_a_product_just_created_by_an_order_compares_equal():
    params, _ = product_params(LineMapping(), ROW)
    created = {
        "name": "Platform",
        "description": "All of it",
        "metadata": {"salesforce_product_id": ROW["Id"]},
    }
    compared = compared_fields(LineMapping())  # what the pipeline compares (not the Orders' keys)
    previous = {k: v for k, v in created_hashes(created).items() if k in compared}
    assert changed_params(previous, params) == {}


def test_only_what_changed_is_sent_and_a_cleared_description_is_unset():
    lines = LineMapping()
    before, _ = product_params(lines, ROW)
    after, _ = product_params(lines, {**ROW, "Name": "Platform Pro", "Description": None, "IsActive": False})
    assert changed_params(field_hashes(before), after) == {
        "name": "Platform Pro",
        "description": "",
        "active": False,
    }


def test_a_slot_reading_the_order_product_is_left_to_the_orders():
    lines = LineMapping(product_name=ValueSource(source="Description"), product_description=None)
    assert compared_fields(lines) == {"active"}
    assert "Description" not in product_fields(lines)
    params, errors = product_params(lines, ROW)
    assert (params, errors) == ({"active": True}, [])


def test_a_product2_without_a_name_is_a_record_error_naming_the_field():
    _params, errors = product_params(LineMapping(), {**ROW, "Name": "   "})
    assert errors and "Product2.Name" in errors[0]

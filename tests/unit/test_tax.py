"""Tax: tax_exempt as a Customer target, tax ids inferred from an Account's fields, the
automatic-tax location pre-check and tax_behavior on prices (pure parts)."""

from __future__ import annotations

from datetime import date

import pytest

from connector.mapping import MappingError, map_record, parse_mapping, soql_fields
from connector.mapping.engine import project_stripe_object
from connector.mapping.tax_ids import TaxIdProblem, infer_tax_id
from connector.sync.fieldhash import changed_params, field_hashes
from connector.sync.order_rules import (
    OrderPlan,
    OrderRefusal,
    OrderRulesConfig,
    PriceSpec,
    Recurrence,
    plan_order,
)
from connector.sync.order_rules.tax import AddressFields
from connector.sync.orders import rules_config
from tests.unit.test_order_rules import line, order

TODAY = date(2026, 3, 10)


def _customer(extra: str = "", fields: str = "  - {target: name, source: Name}\n"):
    text = f"write_back: {{stripe_id: Stripe_Customer_ID__c}}\nfields:\n{fields}" + extra
    return parse_mapping(text, "customer.yaml", "customer")


ADDRESS = "  - {target: address.country, source: BillingCountry, transforms: [country]}\n"
TAX_IDS = "tax_ids:\n  - {source: VAT_Number__c, transforms: [trim, none_if_empty]}\n"


@pytest.mark.parametrize(
    ("value", "country", "expected"),
    [
        ("DE 123 456 789", "DE", ("eu_vat", "DE123456789")),
        ("123456789", "DE", ("eu_vat", "DE123456789")),  # the prefix is added
        ("094123456", "GR", ("eu_vat", "EL094123456")),  # Greece's VAT prefix is EL
        ("ATU12345678", "DE", ("eu_vat", "ATU12345678")),  # its own EU prefix wins
        ("GB 123 4567 89", "GB", ("gb_vat", "GB123456789")),
        ("CHE123456789MWST", "CH", ("ch_vat", "CHE-123.456.789 MWST")),
        ("123456789", "NO", ("no_vat", "123456789MVA")),
        ("12 345 678 912", "AU", ("au_abn", "12345678912")),
    ],
)
def test_the_type_follows_from_the_value_and_the_billing_country(value, country, expected):
    tax_id = infer_tax_id(value, country)
    assert (tax_id.type, tax_id.value) == expected


def test_an_explicit_type_wins_and_an_unknown_country_needs_one():
    assert infer_tax_id("12-3456789", "US", "us_ein").params() == {"type": "us_ein", "value": "12-3456789"}
    with pytest.raises(TaxIdProblem) as info:
        infer_tax_id("12-3456789", "US")
    assert "type_source" in info.value.fix
    with pytest.raises(TaxIdProblem, match="not a Stripe tax ID type"):
        infer_tax_id("DE123456789", "DE", "vat")


def test_a_mapped_vat_number_becomes_tax_id_data_and_a_bad_one_a_record_error_with_an_example():
    mapping = _customer(TAX_IDS, "  - {target: name, source: Name}\n" + ADDRESS)
    assert "VAT_Number__c" in soql_fields(mapping)
    good = map_record(mapping, {"Id": "001A", "Name": "Muster", "BillingCountry": "Germany",
                                "VAT_Number__c": " DE123456789 "})  # fmt: skip
    assert good.params["tax_id_data"] == [{"type": "eu_vat", "value": "DE123456789"}]
    bad = map_record(
        mapping, {"Id": "001A", "Name": "Muster", "BillingCountry": "DE", "VAT_Number__c": "DE12"}
    )
    assert "tax_id_data" not in bad.params
    [error] = bad.errors
    assert str(error) == (
        "VAT_Number__c -> tax_ids: 'DE12' is not a valid DE VAT number (Stripe type eu_vat) "
        "(fix: write it as in the VIES register, e.g. DE123456789)"
    )
    none = map_record(
        mapping, {"Id": "001A", "Name": "Muster", "BillingCountry": "DE", "VAT_Number__c": "n/a"}
    )
    assert "tax_id_data" not in none.params and not none.errors


def test_a_changed_vat_number_is_a_change_of_tax_id_data_and_an_emptied_one_unsets_it():
    sent = field_hashes({"name": "Muster", "tax_id_data": [{"type": "eu_vat", "value": "DE123456789"}]})
    changed = {"name": "Muster", "tax_id_data": [{"type": "eu_vat", "value": "DE987654321"}]}
    assert changed_params(sent, changed) == {"tax_id_data": changed["tax_id_data"]}
    assert changed_params(sent, {"name": "Muster"}) == {"tax_id_data": ""}


def test_tax_exempt_is_an_enum_target_and_none_equals_unset():
    mapping = _customer(fields="  - {target: tax_exempt, source: Tax__c, transforms: [lower]}\n")
    assert map_record(mapping, {"Id": "1", "Tax__c": "Reverse"}).params == {"tax_exempt": "reverse"}
    assert map_record(mapping, {"Id": "1", "Tax__c": "None"}).params == {}  # Stripe's default
    [error] = map_record(mapping, {"Id": "1", "Tax__c": "yes"}).errors
    assert "'yes' is not one of none, exempt, reverse" in str(error)
    # drift: Stripe's "none" is no value, so an unmapped-empty Account shows no drift against it
    assert project_stripe_object(mapping, {"tax_exempt": "none"}) == {}
    assert project_stripe_object(mapping, {"tax_exempt": "exempt"}) == {"tax_exempt": "exempt"}


def test_the_loader_refuses_a_bad_tax_exempt_default_and_a_bad_tax_ids_entry():
    with pytest.raises(MappingError) as info:
        _customer("tax_ids:\n  - {sorce: VAT_Number__c}\n", "  - {target: tax_exempt, default: yes}\n")
    text = str(info.value)
    assert (
        "customer.yaml:3:35: default 'yes' cannot be used: 'yes' is not one of none, exempt, reverse" in text
    )
    assert "unknown key 'sorce'" in text and "did you mean 'source'" in text


def test_automatic_tax_needs_the_accounts_country_and_names_the_field():
    config = OrderRulesConfig(today=TODAY, automatic_tax=True)
    no_country = order(line(), Account={"Stripe_Customer_ID__c": "cus_1", "BillingCountry": None})
    result = plan_order(no_country, config)
    assert isinstance(result, OrderRefusal) and result.codes == ["tax_location"]
    assert "Account 001000000000000001 BillingCountry is empty" in result.message()
    assert "Fix: fill BillingCountry on the Account" in result.message()
    us = order(line(), Account={"Stripe_Customer_ID__c": "cus_1", "BillingCountry": "United States"})
    assert "BillingPostalCode" in plan_order(us, config).message()  # type: ignore[union-attr]
    german = order(line(), Account={"Stripe_Customer_ID__c": "cus_1", "BillingCountry": "Germany"})
    planned = plan_order(german, config)
    assert isinstance(planned, OrderPlan)
    assert planned.subscription.params("cus_1", {line()["Id"]: "price_1"})["automatic_tax"] == {
        "enabled": True
    }
    # a shipping address, when the Account has one, is what Stripe Tax uses
    shipped = order(line(), Account={"Stripe_Customer_ID__c": "cus_1", "BillingCountry": "DE",
                                     "ShippingCountry": "US", "ShippingCity": "Austin"})  # fmt: skip
    assert "ShippingPostalCode" in plan_order(shipped, config).message()  # type: ignore[union-attr]
    off = plan_order(no_country, OrderRulesConfig(today=TODAY))
    assert isinstance(off, OrderPlan) and "automatic_tax" not in off.subscription.params(
        "cus_1", {line()["Id"]: "p"}
    )


def test_schedules_carry_automatic_tax_on_their_phase():
    config = OrderRulesConfig(today=TODAY, automatic_tax=True)
    future = order(line(), EffectiveDate="2026-05-01", EndDate="2027-04-30",
                   Account={"Stripe_Customer_ID__c": "cus_1", "BillingCountry": "DE"})  # fmt: skip
    planned = plan_order(future, config)
    assert isinstance(planned, OrderPlan) and planned.is_schedule
    phase = planned.subscription.params("cus_1", {line()["Id"]: "price_1"})["phases"][0]
    assert phase["automatic_tax"] == {"enabled": True}


def test_rules_config_reads_the_option_and_where_the_customer_mapping_reads_the_address():
    text = (
        "write_back: {stripe_id: X__c}\nautomatic_tax: true\nlines:\n  tax_behavior:\n"
        "    source: Tax_Behavior__c\n    default: exclusive\n"
    )
    sub = parse_mapping(text, "s.yaml", "subscription")
    customer = _customer(fields="  - {target: address.country, source: Country__c}\n")
    config = rules_config(sub, TODAY, customer)
    assert config.automatic_tax and config.tax_behavior == "exclusive"
    assert config.tax_behavior_field == "Tax_Behavior__c"
    assert config.tax_billing_address == AddressFields("Country__c", None, None)
    assert config.tax_shipping_address is None
    assert "Tax_Behavior__c" in soql_fields(sub.lines)
    with pytest.raises(MappingError, match="not one of inclusive, exclusive, unspecified"):
        parse_mapping("write_back: {stripe_id: X__c}\nlines:\n  tax_behavior: {default: gross}\n", "s.yaml",
                      "subscription")  # fmt: skip


def test_tax_behavior_is_part_of_the_price_and_its_key():
    rec = Recurrence("month", 1)
    plain = PriceSpec("01t1", "usd", 1000, None, rec)
    exclusive = PriceSpec("01t1", "usd", 1000, None, rec, "exclusive")
    assert plain.key() == "01t1-usd-1000-monthx1-licensed"  # keys made before tax_behavior stay
    assert exclusive.key() != plain.key()
    assert exclusive.params("prod_1")["tax_behavior"] == "exclusive"
    recurring = {"interval": "month", "interval_count": 1, "usage_type": "licensed"}
    stripe_price = {"active": True, "currency": "usd", "unit_amount": 1000, "tax_behavior": "inclusive",
                    "recurring": recurring}  # fmt: skip
    assert not exclusive.matches_stripe_price(stripe_price)
    assert not plain.matches_stripe_price(stripe_price)  # an inclusive price is not an untaxed one
    assert exclusive.matches_stripe_price({**stripe_price, "tax_behavior": "exclusive"})
    assert plain.matches_stripe_price({**stripe_price, "tax_behavior": "unspecified"})


def test_line_tax_behavior_from_a_field_refuses_unknown_values_and_splits_prices():
    config = OrderRulesConfig(today=TODAY, tax_behavior="exclusive", tax_behavior_field="Tax_Behavior__c")
    planned = plan_order(order(line(1), line(2, Tax_Behavior__c="Inclusive")), config)
    assert isinstance(planned, OrderPlan)
    assert [p.spec.tax_behavior for p in planned.prices] == ["exclusive", "inclusive"]
    # the entry's price is made with the mapping's behaviour; one made before without it is not reused
    assert planned.prices[0].spec.params("prod_1")["tax_behavior"] == "exclusive"
    refused = plan_order(order(line(1, Tax_Behavior__c="gross")), config)
    assert isinstance(refused, OrderRefusal) and refused.codes == ["tax_behavior"]
    assert "Tax_Behavior__c is gross" in refused.message()


def test_drift_puts_tax_exempt_back_and_leaves_tax_ids_to_the_account_pipeline():
    from connector.sync.reconcile import customer_drift

    mapping = _customer(TAX_IDS, "  - {target: tax_exempt, source: Tax__c, transforms: [lower]}\n" + ADDRESS)
    desired = map_record(mapping, {"Id": "001A", "Tax__c": "Reverse", "BillingCountry": "DE",
                                   "VAT_Number__c": "DE123456789"}).params  # fmt: skip
    stripe_obj = {"id": "cus_1", "tax_exempt": "none", "address": {"country": "DE"},
                  "metadata": {"salesforce_account_id": "001A"}}  # fmt: skip
    drifts, changes = customer_drift(mapping, "001A", desired, stripe_obj)
    assert [(d.field, d.stripe_value, d.salesforce_value) for d in drifts] == [
        ("tax_exempt", None, "reverse")
    ]
    assert changes == {"tax_exempt": "reverse"}
    drifts, changes = customer_drift(mapping, "001A", desired, {**stripe_obj, "tax_exempt": "reverse"})
    assert drifts == [] and changes == {}


def test_against_the_org_a_missing_tax_field_is_named_with_its_line(tmp_path):
    import shutil

    from connector.mapping import check_against_describe, load_mappings
    from tests.unit.test_mapping_loader import MAPPINGS, _describe_from_schema

    shutil.copy(MAPPINGS / "customer.yaml", tmp_path / "customer.yaml")
    (tmp_path / "subscription.yaml").write_text(
        (MAPPINGS / "subscription.yaml")
        .read_text()
        .replace(
            "  # tax_behavior:\n  #   default: exclusive", "  tax_behavior:\n    source: Tax_Behaviour__c"
        )
    )
    with (tmp_path / "customer.yaml").open("a") as f:
        f.write("  - source: VAT_Nummer__c\n")
    found = check_against_describe(load_mappings(tmp_path), _describe_from_schema())
    messages = sorted(f"{p.file.rsplit('/', 1)[-1]}: {p.message}" for p in found)
    assert len(messages) == 2, messages
    assert "source 'VAT_Nummer__c' on Account" in messages[0]
    assert "source 'Tax_Behaviour__c' on OrderItem" in messages[1]

"""Every load-time problem is reported at once, with file:line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connector.mapping import MappingError, check_against_describe, load_mappings, parse_mapping

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
SCHEMA = Path(__file__).resolve().parents[2] / "connector" / "sandbox" / "salesforce" / "schema.yaml"


def problems(text: str, kind: str = "customer"):
    with pytest.raises(MappingError) as info:
        parse_mapping(text, "m.yaml", kind)
    return info.value.problems


def lines_of(found):
    return {(p.line, p.message.split(" ")[0]) for p in found}


def test_shipped_mappings_load():
    mappings = load_mappings(MAPPINGS)
    assert mappings.customer.object == "Account"
    assert mappings.subscription.lines.write_back.stripe_price_id == "Stripe_Price_ID__c"


def test_yaml_syntax_error_has_line_and_column():
    found = problems("write_back:\n  stripe_id: X\nfields:\n  - target: name\n    source: [Name\n")
    assert len(found) == 1
    assert found[0].file == "m.yaml"
    assert found[0].line >= 5
    assert found[0].column > 0
    assert "YAML syntax error" in found[0].message


BROKEN = """\
write_back:
  stripe_id: Stripe_Customer_ID__c
  stauts: Stripe_Sync_Status__c
condition: WHERE Billing_Entity__c = true
fields:
  - target: name
    source: Name
  - target: adress.city
    source: BillingCity
  - target: metadata.salesforce_account_id
    source: Id
  - target: name
    source: Name
  - target: email
    source: Billing_Email__c
    transforms: [trim, lowercase]
  - target: phone
    transforms: [phone]
  - target: description
    source: [Description]
  - target: metadata.this_key_is_much_longer_than_forty_characters
    default: x
  - target: address.line1
    source: BillingStreet
    transforms: [{truncate: many}]
"""


def test_every_problem_is_reported_with_its_line():
    found = problems(BROKEN)
    by_line = {p.line: p for p in found}
    assert "stauts" in by_line[3].message and "status" in by_line[3].fix  # did you mean
    assert "WHERE" in by_line[4].message
    assert "adress.city" in by_line[8].message and "address.city" in by_line[8].fix
    assert "reserved" in by_line[10].message
    assert "twice" in by_line[12].message and "line 6" in by_line[12].message
    assert "lowercase" in by_line[16].message and "lower" in by_line[16].fix
    assert "neither 'source' nor 'default'" in by_line[17].message
    assert "source" in by_line[20].message
    assert "40" in by_line[21].message
    assert "truncate" in by_line[25].message
    assert all(p.file == "m.yaml" and p.fix for p in found)
    assert str(by_line[8]).startswith("m.yaml:8:")


def test_empty_file_and_empty_fields():
    assert "empty" in problems("")[0].message
    found = problems("write_back: {stripe_id: Stripe_Customer_ID__c}\nfields: []\n")
    assert found[0].line == 2 and "no fields" in found[0].message


def test_missing_required_and_wrong_types():
    found = problems("fields:\n  - target: name\n    source: Name\n    default: {a: 1}\n")
    messages = " | ".join(p.message for p in found)
    assert "'write_back' is required" in messages
    assert any(p.line == 4 and "single value" in p.message for p in found)


def test_duplicate_yaml_keys_are_reported():
    found = problems(
        "write_back: {stripe_id: A}\nwrite_back: {stripe_id: B}\nfields: [{target: name, source: Name}]\n"
    )
    assert found[0].line == 2 and "twice" in found[0].message


def test_bad_defaults_are_caught_at_load():
    found = problems(
        "write_back: {stripe_id: S}\n"
        "fields:\n"
        "  - {target: address.country, default: Atlantis, transforms: [country]}\n"
    )
    assert found[0].line == 3 and "Atlantis" in found[0].message
    found = problems(
        "write_back: {stripe_id: S}\nfields:\n  - {target: collection_method, default: sometimes}\n",
        "subscription",
    )
    assert "send_invoice" in found[0].message


def test_subscription_targets_are_per_object():
    found = problems("write_back: {stripe_id: S}\nfields:\n  - {target: email, source: X}\n", "subscription")
    assert found[0].line == 3 and "subscription" in found[0].message


def test_load_mappings_reports_both_files(tmp_path):
    shutil.copy(MAPPINGS / "customer.yaml", tmp_path / "customer.yaml")
    (tmp_path / "subscription.yaml").write_text(
        "write_back: {stripe_id: S}\nlines:\n  quantiy: {source: Q}\n"
    )
    (tmp_path / "customer.yaml").write_text(
        (tmp_path / "customer.yaml").read_text().replace("target: phone\n", "target: fone\n", 1)
    )
    with pytest.raises(MappingError) as info:
        load_mappings(tmp_path)
    files = {Path(p.file).name for p in info.value.problems}
    assert files == {"customer.yaml", "subscription.yaml"}
    sub = next(p for p in info.value.problems if p.file.endswith("subscription.yaml"))
    assert sub.line == 3 and "quantity" in sub.fix


# ---------------------------------------------------------------- describe checks


def _describe_from_schema():
    """The fake org's describe: schema.yaml's standard fields plus the metadata project's."""
    from connector.sandbox.salesforce.schema import load_schema

    schema = load_schema(SCHEMA)

    def describe(name):
        obj = schema.objects[name]
        fields = [
            {
                "name": f.name,
                "type": f.type,
                "length": f.length,
                "updateable": f.updateable,
                "referenceTo": list(f.reference_to),
                "relationshipName": f.relationship_name,
                "picklistValues": [{"value": v, "active": True} for v in f.values],
                "restrictedPicklist": f.restricted,
            }
            for f in obj.fields.values()
        ]
        return {"name": name, "fields": fields}

    return describe


def test_shipped_mappings_fit_the_sandbox_org():
    assert check_against_describe(load_mappings(MAPPINGS), _describe_from_schema()) == []


def test_describe_problems_have_lines(tmp_path):
    shutil.copy(MAPPINGS / "subscription.yaml", tmp_path / "subscription.yaml")
    (tmp_path / "customer.yaml").write_text(
        "write_back:\n"
        "  stripe_id: Stripe_Customer_ID__c\n"
        "  status: Name_Missing__c\n"
        "  synced_at: Phone\n"
        "fields:\n"
        "  - {target: name, source: Nmae}\n"
        "  - {target: email, source: Billing_Entity__c}\n"
        "  - {target: metadata.parent, source: Parent.Nope__c}\n"
        "  - {target: metadata.owner, source: Owner.Name}\n"
        "  - {target: description, source: Description}\n"
        "  - {target: metadata.created, source: CreatedDate}\n"
        "  - {target: metadata.parent_name, source: Parent.Name}\n"
    )
    mappings = load_mappings(tmp_path)
    found = check_against_describe(mappings, _describe_from_schema())
    by_line = {p.line: p for p in found}
    assert "Name_Missing__c" in by_line[3].message
    assert "datetime" in by_line[4].message
    assert "Nmae" in by_line[6].message
    assert "boolean" in by_line[7].message
    assert "Nope__c" in by_line[8].message
    assert "Owner" in by_line[9].message
    assert "truncate" in by_line[10].fix  # 32,000 characters into Stripe's 5,000
    assert 11 not in by_line and 12 not in by_line
    assert all(p.file.endswith("customer.yaml") for p in found)


def test_describe_flags_read_only_write_back(tmp_path):
    shutil.copy(MAPPINGS / "subscription.yaml", tmp_path / "subscription.yaml")
    (tmp_path / "customer.yaml").write_text(
        "write_back: {stripe_id: CreatedById}\n"
        "fields: [{target: name, source: Name, transforms: [truncate]}]\n"
    )
    found = check_against_describe(load_mappings(tmp_path), _describe_from_schema())
    assert any(p.line == 1 and "not updateable" in p.message for p in found)


def test_missing_or_locked_connector_fields_point_at_the_metadata_project():
    base = _describe_from_schema()

    def describe(name):
        found = base(name)
        fields = []
        for f in found["fields"]:
            if name == "Account" and f["name"] == "Stripe_Customer_ID__c":
                continue  # never deployed
            if name == "Order" and f["name"] == "Stripe_Subscription_ID__c":
                f = {**f, "updateable": False}  # no edit access for the integration user
            if name == "Order" and f["name"] == "Stripe_Sync_Status__c":
                f = {**f, "picklistValues": [v for v in f["picklistValues"] if v["value"] != "Incomplete"]}
            fields.append(f)
        return {**found, "fields": fields}

    problems = check_against_describe(load_mappings(MAPPINGS), describe)
    text = {p.message: p.fix for p in problems}
    missing = next(fix for msg, fix in text.items() if "Stripe_Customer_ID__c" in msg)
    assert "sf project deploy start" in missing
    locked = next(
        fix for msg, fix in text.items() if "Order.Stripe_Subscription_ID__c is not updateable" in msg
    )
    assert "Cpq2Stripe_Integration" in locked
    assert any("Order.Stripe_Sync_Status__c lacks the values Incomplete" in msg for msg in text)
    assert not any("Account.Stripe_Sync_Status__c lacks" in msg for msg in text)


def test_skip_elapsed_periods_takes_a_checkbox_and_a_true_or_false_default(tmp_path):
    found = problems(
        "write_back: {stripe_id: S}\nskip_elapsed_periods:\n  source: Skip__c\n  default: sometimes\n",
        "subscription",
    )
    assert found[0].line == 4 and "neither true nor false" in found[0].message
    shutil.copy(MAPPINGS / "customer.yaml", tmp_path / "customer.yaml")
    text = (MAPPINGS / "subscription.yaml").read_text()
    (tmp_path / "subscription.yaml").write_text(
        text.replace("source: Stripe_Skip_Elapsed_Periods__c", "source: EffectiveDate", 1)
    )
    [problem] = check_against_describe(load_mappings(tmp_path), _describe_from_schema())
    assert problem.line == text[: text.index("source: Stripe_Skip_Elapsed")].count("\n") + 1
    assert "EffectiveDate" in problem.message and "date" in problem.message


def test_phone_street_line_and_on_invalid_options_are_checked_with_their_lines():
    found = problems(
        "write_back: {stripe_id: S}\n"
        "fields:\n"
        "  - {target: name, source: Name, on_invalid: skip}\n"
        "  - {target: phone, source: Phone, transforms: [phone: {regin: BillingCountry}]}\n"
        "  - {target: shipping.phone, source: Phone, transforms: [phone: {region_from: 'Billing Country'}]}\n"
        "  - {target: address.line1, source: BillingStreet, transforms: [street_line]}\n"
        "  - {target: address.line2, source: BillingStreet, transforms: [street_line: 3]}\n"
        "  - {target: metadata.tel, source: Phone, transforms: [phone: Atlantis]}\n"
    )
    by_line = {p.line: p for p in found}
    assert set(by_line) == {3, 4, 5, 6, 7, 8}
    assert "on_invalid" in by_line[3].message and "'omit' or 'fail'" in by_line[3].fix
    assert "unknown phone option 'regin'" in by_line[4].message and "region_from" in by_line[4].fix
    assert "region_from" in by_line[5].message
    assert "street_line" in by_line[6].message and "street_line: 1" in by_line[6].fix
    assert "3" in by_line[7].message
    assert "Atlantis" in by_line[8].message


def test_region_from_fields_are_checked_against_the_org(tmp_path):
    shutil.copy(MAPPINGS / "subscription.yaml", tmp_path / "subscription.yaml")
    (tmp_path / "customer.yaml").write_text(
        "write_back: {stripe_id: Stripe_Customer_ID__c}\n"
        "fields:\n"
        "  - {target: name, source: Name, transforms: [truncate]}\n"
        "  - {target: phone, source: Phone, transforms: [phone: {region_from: Land__c}]}\n"
        "  - {target: shipping.phone, source: Phone, transforms: [phone: {region_from: ShippingCountry}]}\n"
    )
    [found] = check_against_describe(load_mappings(tmp_path), _describe_from_schema())
    assert found.line == 4 and "Land__c" in found.message and "region_from" in found.fix


def _customer(*fields: str, top: str = "") -> str:
    return (
        top
        + "write_back:\n  stripe_id: Stripe_Customer_ID__c\nfields:\n  - target: name\n    source: Name\n"
        + ("".join(fields))
    )


def test_scalars_follow_yaml_1_2_so_norway_octal_and_yes_stay_text():
    text = _customer(
        "  - target: address.country\n    default: NO\n    transforms: [country]\n",
        "  - target: address.postal_code\n    default: 0700\n",
        "  - target: metadata.invoiced\n    default: yes\n",
        "  - target: metadata.period\n    default: 1:30\n",
        "  - target: metadata.flag\n    default: true\n",
        "  - target: metadata.count\n    default: 12\n",
    )

    defaults = [f.default for f in parse_mapping(text, "m.yaml", "customer").fields[1:]]

    assert defaults == ["NO", "0700", "yes", "1:30", True, 12]


def test_problem_positions_survive_the_yaml_1_2_loader():
    found = problems(_customer("  - target: adress.city\n    default: NO\n"))

    assert [(p.line, p.column) for p in found] == [(6, 13)]


def test_a_truncate_longer_than_the_stripe_limit_is_refused_naming_the_limit():
    text = _customer(
        "  - target: shipping.name\n    source: Name\n    transforms: [truncate: 300]\n",  # limit 5000
        "  - target: phone\n    source: Phone\n    transforms: [truncate: 30]\n",
    )

    found = problems(text)

    assert len(found) == 1
    assert found[0].line == 11
    assert "'phone'" in found[0].message and "20 characters" in found[0].message
    assert "truncate: 20" in found[0].fix


def test_a_preferred_locale_default_must_be_a_language_tag():
    found = problems(_customer("  - target: preferred_locales\n    default: German\n"))
    fine = _customer("  - target: preferred_locales\n    default: de-DE;en\n")

    assert len(found) == 1
    assert "'German' is not a language tag" in found[0].message
    assert "de-DE" in found[0].fix
    parse_mapping(fine, "m.yaml", "customer")


def test_a_misspelt_object_is_refused_with_a_suggestion():
    customer = problems(_customer(top="object: Acount\n"))
    order = (MAPPINGS / "subscription.yaml").read_text().replace("object: Order\n", "object: Oder\n", 1)
    subscription = problems(order, "subscription")

    assert [(p.line, p.fix) for p in customer] == [(1, "did you mean 'Account'?")]
    assert [p.fix for p in subscription] == ["did you mean 'Order'?"]

"""Billing status → Salesforce, the pure parts: which record a Stripe object speaks for, which
invoice is the latest, the values as Salesforce stores them; and the mapping's `billing_status`
blocks, checked by the loader and against the org (`mappings check`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connector.mapping import MappingError, check_against_describe, load_mappings
from connector.sync.billing_status import BillingFacts, Touched
from tests.unit.test_mapping_loader import MAPPINGS, _describe_from_schema

ORDER = "801000000000001AAA"
OTHER_ORDER = "801000000000002AAA"
ACCOUNT = "001000000000001AAA"


def _facts(links: dict[str, list[str]] | None = None) -> BillingFacts:
    m = load_mappings(MAPPINGS)
    return BillingFacts(
        m.subscription.billing_status,
        m.customer.billing_status,
        lambda stripe_id, sobject: (links or {}).get(f"{sobject}:{stripe_id}", []),
    )


def _invoice(ident: str, created: int, status: str, *, sub: str = "sub_1", metadata: dict | None = None):
    return {
        "id": ident,
        "object": "invoice",
        "created": created,
        "number": f"N-{ident}",
        "status": status,
        "currency": "jpy",
        "amount_due": 5000,
        "amount_paid": 5000 if status == "paid" else 0,
        "due_date": 1767225600,  # 2026-01-01 00:00 UTC
        "hosted_invoice_url": f"https://invoice.stripe.com/i/{ident}",
        "metadata": {},
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": sub, "metadata": metadata or {}},
        },
    }


def _event(obj: dict) -> dict:
    return {"object": "event", "data": {"object": obj}}


def test_an_invoice_speaks_for_its_subscriptions_order_and_values_are_salesforces():
    facts = _facts()
    facts.invoice(_invoice("in_1", 100, "paid", metadata={"salesforce_order_id": ORDER}))

    assert facts.orders[ORDER] == {
        "Stripe_Latest_Invoice_Number__c": "N-in_1",
        "Stripe_Latest_Invoice_Status__c": "paid",
        "Stripe_Latest_Invoice_Amount_Due__c": 5000.0,  # JPY has no minor unit
        "Stripe_Latest_Invoice_Amount_Paid__c": 5000.0,
        "Stripe_Latest_Invoice_Due_Date__c": "2026-01-01",
        "Stripe_Latest_Invoice_URL__c": "https://invoice.stripe.com/i/in_1",
    }


def test_an_older_invoices_later_event_does_not_replace_the_newer_invoice():
    facts = _facts({"Order:sub_1": [ORDER]})
    facts.invoice(_invoice("in_new", 200, "open"))
    facts.invoice(_invoice("in_old", 100, "paid"))  # the old one paid late

    assert facts.orders[ORDER]["Stripe_Latest_Invoice_Number__c"] == "N-in_new"
    assert facts.orders[ORDER]["Stripe_Latest_Invoice_Status__c"] == "open"


def test_the_newest_event_wins_and_every_order_of_a_contracts_subscription_gets_it():
    facts = _facts({"Order:sub_1": [ORDER, OTHER_ORDER], "Account:cus_1": [ACCOUNT]})
    for status in ("active", "past_due"):
        facts.subscription({"id": "sub_1", "object": "subscription", "status": status, "metadata": {}})
    facts.customer(
        {"id": "cus_1", "object": "customer", "delinquent": True, "balance": -1250, "currency": "eur"}
    )

    assert {o: v["Stripe_Subscription_Status__c"] for o, v in facts.orders.items()} == {
        ORDER: "past_due",
        OTHER_ORDER: "past_due",
    }
    assert facts.accounts[ACCOUNT] == {"Stripe_Delinquent__c": True, "Stripe_Balance__c": -12.5}


def test_events_name_the_connectors_objects_to_read_again_and_ignore_others():
    facts, touched = _facts({"Account:cus_1": [ACCOUNT]}), Touched()
    events = [
        {"id": "sub_x", "object": "subscription", "status": "active", "metadata": {}},  # not ours
        {"id": "cus_x", "object": "customer", "delinquent": True, "metadata": {}},  # not ours
        {
            "id": "sub_1",
            "object": "subscription",
            "status": "active",
            "metadata": {"salesforce_order_id": ORDER},
        },
        _invoice("in_2", 100, "open", sub="sub_2", metadata={"salesforce_order_id": OTHER_ORDER}),
        {**_invoice("in_3", 100, "open"), "parent": None, "metadata": {"salesforce_order_id": ORDER}},
        {"id": "cus_1", "object": "customer", "delinquent": False, "metadata": {}},
    ]
    for obj in events:
        touched.add(facts, _event(obj))

    # an invoice of a subscription: the subscription is read (with its latest invoice)
    assert touched == Touched({"sub_1", "sub_2"}, {"in_3"}, {"cus_1"})
    assert (facts.orders, facts.accounts) == ({}, {})  # values come from the objects read, not events


def _copy(tmp_path: Path, name: str, old: str, new: str) -> Path:
    for file in ("customer.yaml", "subscription.yaml"):
        shutil.copy(MAPPINGS / file, tmp_path / file)
    text = (MAPPINGS / name).read_text()
    assert old in text
    (tmp_path / name).write_text(text.replace(old, new))
    return tmp_path


def test_a_billing_status_field_of_the_wrong_type_or_missing_is_named_by_mappings_check(tmp_path):
    path = _copy(
        tmp_path,
        "customer.yaml",
        "  delinquent: Stripe_Delinquent__c",
        "  delinquent: Stripe_Sync_Message__c",
    )
    found = check_against_describe(load_mappings(path), _describe_from_schema())
    assert any("Stripe_Sync_Message__c" in p.message and "delinquent flag" in p.message for p in found), found

    path = _copy(
        tmp_path,
        "subscription.yaml",
        "  invoice_due_date: Stripe_Latest_Invoice_Due_Date__c",
        "  invoice_due_date: Stripe_Due_Nope__c",
    )
    found = check_against_describe(load_mappings(path), _describe_from_schema())
    assert any("Stripe_Due_Nope__c" in p.message for p in found), found


def test_the_shipped_billing_status_fields_fit_the_org_and_an_unknown_key_is_refused(tmp_path):
    assert check_against_describe(load_mappings(MAPPINGS), _describe_from_schema()) == []
    path = _copy(tmp_path, "customer.yaml", "  balance: Stripe_Balance__c", "  balanse: Stripe_Balance__c")
    with pytest.raises(MappingError) as info:
        load_mappings(path)
    assert "customer.yaml:" in str(info.value) and "balance" in str(info.value)

"""The subscription mapping's one-time-invoice keys: `one_time_invoices.finalize` and the Order's
`write_back.invoice_id` / `invoice_url`, checked by the loader and against the org (`mappings check`)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from connector.mapping import MappingError, check_against_describe, load_mappings
from connector.sync.orders import rules_config
from tests.unit.test_mapping_loader import MAPPINGS, _describe_from_schema


def _copy(tmp_path: Path, old: str, new: str) -> Path:
    shutil.copy(MAPPINGS / "customer.yaml", tmp_path / "customer.yaml")
    text = (MAPPINGS / "subscription.yaml").read_text()
    assert old in text
    (tmp_path / "subscription.yaml").write_text(text.replace(old, new))
    return tmp_path


def test_shipped_mapping_finalizes_and_writes_the_invoice_back():
    mapping = load_mappings(MAPPINGS).subscription
    assert mapping.one_time_invoices.finalize is True
    assert (mapping.write_back.invoice_id, mapping.write_back.invoice_url) == (
        "Stripe_Invoice_ID__c",
        "Stripe_Invoice_URL__c",
    )
    assert mapping.write_back.id_field("in_123") == "Stripe_Invoice_ID__c"
    assert mapping.write_back.id_field("sub_123") == "Stripe_Subscription_ID__c"


def test_draft_mode_reaches_the_order_rules(tmp_path):
    path = _copy(tmp_path, "  finalize: true", "  finalize: false")
    config = rules_config(load_mappings(path).subscription, date(2026, 1, 1))
    assert config.finalize_invoices is False


@pytest.mark.parametrize(
    ("new", "expect"),
    [("  finalize: maybe", "valid boolean"), ("  finalise: true", "did you mean 'finalize'")],
)
def test_bad_finalize_names_the_line_and_the_fix(tmp_path, new, expect):
    path = _copy(tmp_path, "  finalize: true", new)
    with pytest.raises(MappingError) as info:
        load_mappings(path)
    text = str(info.value)
    assert "subscription.yaml:" in text and expect in text and "fix:" in text


def test_invoice_write_back_fields_are_checked_against_the_org(tmp_path):
    path = _copy(
        tmp_path,
        "  invoice_url: Stripe_Invoice_URL__c",
        "  invoice_url: Stripe_Last_Synced__c",
    )
    found = check_against_describe(load_mappings(path), _describe_from_schema())
    assert any("Stripe_Last_Synced__c" in p.message and "invoice URL" in p.message for p in found), found
    path = _copy(tmp_path, "  invoice_id: Stripe_Invoice_ID__c", "  invoice_id: Stripe_Invoice_Nope__c")
    found = check_against_describe(load_mappings(path), _describe_from_schema())
    assert any("Stripe_Invoice_Nope__c" in p.message for p in found), found

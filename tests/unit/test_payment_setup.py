"""Payment setup's pure parts: the safe summary of a method, the Account's values for a session,
and the mapping check of the payment method types (file:line)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.mapping import MappingError, parse_mapping
from connector.mapping.schema import PaymentSetupFields
from connector.sync.payment_setup import detached_values, is_live, session_values, summary

F = PaymentSetupFields()
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CARD = {"id": "pm_1", "type": "card", "card": {"brand": "visa", "display_brand": "visa", "last4": "4242"}}
SEPA = {
    "id": "pm_2",
    "type": "sepa_debit",
    "sepa_debit": {"bank_code": "37040044", "country": "DE", "last4": "3000"},
}
ACH = {
    "id": "pm_3",
    "type": "us_bank_account",
    "us_bank_account": {"bank_name": "STRIPE TEST BANK", "last4": "6789"},
}


def _session(status: str, *, pm=None, error=None, expires: datetime = NOW.replace(hour=20)) -> dict:
    return {
        "id": "cs_test_1",
        "status": status,
        "url": "https://checkout.stripe.com/c/pay/cs_test_1" if status == "open" else None,
        "expires_at": int(expires.timestamp()),
        "setup_intent": {"id": "seti_1", "payment_method": pm, "last_setup_error": error},
    }


@pytest.mark.parametrize(
    ("pm", "text"),
    [
        (CARD, "visa •••• 4242"),
        (SEPA, "SEPA Direct Debit bank 37040044 •••• 3000"),
        (ACH, "US bank account STRIPE TEST BANK •••• 6789"),
        ({"id": "pm_4", "type": "amazon_pay", "amazon_pay": {}}, "Amazon Pay"),
    ],
)
def test_the_summary_names_the_brand_or_bank_and_the_last_four_only(pm, text):
    assert summary(pm) == text


def test_a_completed_session_saves_the_method_and_clears_the_request():
    values = session_values(_session("complete", pm=CARD), F, NOW)
    assert values[F.payment_method_id] == "pm_1" and values[F.payment_method_type] == "card"
    assert values[F.payment_method_summary] == "visa •••• 4242"
    assert (values[F.request], values[F.url], values[F.expires]) == (False, None, None)
    assert values[F.status] == "Saved visa •••• 4242; new Orders are charged automatically"


def test_an_open_session_shows_its_link_and_expiry_and_the_last_failed_attempt():
    error = {"message": "Your card was declined.", "code": "card_declined", "decline_code": "generic_decline"}
    values = session_values(_session("open", error=error), F, NOW)
    assert values[F.url] == "https://checkout.stripe.com/c/pay/cs_test_1"
    assert values[F.expires] == "2026-12-06T20:00:00.000+0000"
    assert values[F.status].startswith(
        "The customer's last attempt failed: Your card was declined. (generic_decline)"
    )
    assert F.request not in values and F.payment_method_id not in values


def test_an_open_session_past_its_expiry_is_not_live_and_reads_as_expired():
    past = _session("open", expires=NOW.replace(hour=11))
    assert not is_live(past, NOW)
    values = session_values(past, F, NOW)
    assert values[F.request] is False and values[F.url] is None
    assert values[F.status].startswith("The link expired on 2026-12-06 11:00 UTC")


def test_a_detached_method_is_cleared_with_the_reason():
    values = detached_values({**CARD, "customer": None}, F, int(NOW.timestamp()))
    assert values[F.payment_method_id] is None and values[F.payment_method_summary] is None
    assert "visa •••• 4242 (pm_1) was removed" in values[F.status] and "invoiced" in values[F.status]
    assert len(values[F.status]) <= 255


CUSTOMER = """\
version: 1
object: Account
write_back:
  stripe_id: Stripe_Customer_ID__c
fields:
  - target: name
    source: Name
payment_setup:
  payment_method_types:
    - card
    - ideal
    - konbini
  success_url: example.com/thanks
"""


def test_mappings_check_refuses_types_setup_mode_cannot_save_naming_file_and_line():
    with pytest.raises(MappingError) as info:
        parse_mapping(CUSTOMER, "customer.yaml", "customer")
    found = {(p.line, p.message) for p in info.value.problems}
    assert (11, "payment method type 'ideal' cannot be saved with a Checkout Session in setup mode") in found
    assert (
        12,
        "payment method type 'konbini' cannot be saved with a Checkout Session in setup mode",
    ) in found
    assert (13, "'example.com/thanks' is not an absolute URL") in found
    assert all(p.file == "customer.yaml" for p in info.value.problems)
    assert "sepa_debit" in next(p.fix for p in info.value.problems if p.line == 11)

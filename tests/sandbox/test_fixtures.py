"""The shared `sandbox` fixture: reset between tests, admin clients that reach both fakes."""

from __future__ import annotations

from pathlib import Path

import stripe

from tests.conftest import Sandbox


def test_fixture_exposes_urls_ca_and_env(sandbox: Sandbox) -> None:
    assert sandbox.salesforce_url.startswith("https://127.0.0.1:")
    assert sandbox.stripe_url.startswith("http://127.0.0.1:")
    assert Path(sandbox.ca_file).is_file()
    assert sandbox.env["CPQ2STRIPE_SALESFORCE_LOGIN_URL"] == sandbox.salesforce_url
    assert sandbox.env["CPQ2STRIPE_STRIPE_API_BASE"] == sandbox.stripe_url


def test_seed_then_next_test_starts_empty_part_1(sandbox: Sandbox) -> None:
    sandbox.sf_admin.seed(accounts=4, orders=2, seed=1)
    assert len(sandbox.sf_admin.query("SELECT Id FROM Account")) == 4
    assert len(sandbox.sf_admin.query("SELECT Id FROM Order")) == 2


def test_seed_then_next_test_starts_empty_part_2(sandbox: Sandbox) -> None:
    assert sandbox.sf_admin.query("SELECT Id FROM Account") == []


def test_admin_writes_are_stamped_with_the_admin_user(sandbox: Sandbox) -> None:
    account_id = sandbox.sf_admin.create_record("Account", {"Name": "Fixture GmbH", "CurrencyIsoCode": "EUR"})
    sandbox.sf_admin.patch_record("Account", account_id, {"Phone": "+49 30 1234567"})
    record = sandbox.sf_admin.get_record("Account", account_id)
    assert record["Phone"] == "+49 30 1234567"
    users = sandbox.sf_admin.query(f"SELECT Name FROM User WHERE Id = '{record['LastModifiedById']}'")
    assert [u["Name"] for u in users] == ["Admin User"]
    assert record["LastModifiedById"] == record["CreatedById"]
    assert sandbox.sf_admin.changes()  # the change log saw the writes


def test_token_expiry_is_survived_by_the_admin_client(sandbox: Sandbox) -> None:
    account_id = sandbox.sf_admin.create_record("Account", {"Name": "Before Expiry"})
    sandbox.sf_admin.query("SELECT Id FROM Account")  # gets a token
    sandbox.sf_admin.expire_tokens()
    assert (
        sandbox.sf_admin.query(f"SELECT Name FROM Account WHERE Id = '{account_id}'")[0]["Name"]
        == "Before Expiry"
    )


def test_stripe_admin_reaches_the_fake(sandbox: Sandbox) -> None:
    client = stripe.StripeClient("sk_test_sandbox", base_addresses={"api": sandbox.stripe_url})
    client.v1.customers.create(params={"name": "Fixture Customer"})
    assert [c["name"] for c in sandbox.stripe_admin.objects("customer")] == ["Fixture Customer"]
    assert sandbox.stripe_admin.counters()
    assert sandbox.stripe_admin.requests()


def test_stripe_starts_empty_after_reset(sandbox: Sandbox) -> None:
    assert sandbox.stripe_admin.objects("customer") == []

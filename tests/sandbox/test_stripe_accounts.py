"""Fake Stripe with several accounts behind one host: keys pick the account, organization keys with
the Stripe-Context header, per-account limits and idempotency, and an Organization sharing group
(same customer id in every account, shared fields propagated, cards usable across the group).
Driven through the real stripe-python client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import stripe

from connector.sandbox.stripe.accounts import NO_CONTEXT
from connector.sandbox.stripe.server import StripeSandbox, start_stripe

DE_KEY, AT_KEY, US_KEY = "sk_test_de_gmbh", "sk_test_at_gmbh", "sk_test_us_inc"
ORG_KEY = "sk_org_test_rocket"


@dataclass
class Accounts:
    sb: StripeSandbox
    de: str  # in the sharing group "eu"
    at: str  # in the sharing group "eu"
    us: str  # independent

    def client(self, key: str, **kw: Any) -> stripe.StripeClient:
        return stripe.StripeClient(key, base_addresses={"api": self.sb.url}, max_network_retries=0, **kw)

    def event_types(self, account: str) -> list[str]:
        return [e["type"] for e in sorted(self.sb.account(account).objects("event"), key=lambda e: e["id"])]


@pytest.fixture(scope="module")
def made() -> Iterator[Accounts]:
    sb = start_stripe(rps=0)
    de = sb.add_account(key=DE_KEY, sharing_group="eu")
    at = sb.add_account(key=AT_KEY, account_id="acct_1AtGmbHsandbox0", sharing_group="eu")
    us = sb.add_account(key=US_KEY)
    sb.add_organization_key(ORG_KEY, [de, at])
    yield Accounts(sb, de, at, us)
    sb.stop()


@pytest.fixture
def accts(made: Accounts) -> Accounts:
    for account in (made.sb.state.store.account_id, made.de, made.at, made.us):
        made.sb.account(account).reset()
        made.sb.configure(account=account, rps=0, error_rate=0)
    return made


# keys and accounts ---------------------------------------------------------------------------
def test_each_key_reaches_its_own_account_and_unknown_test_keys_the_primary(accts):
    sb = accts.sb
    assert accts.client(DE_KEY).v1.accounts.retrieve_current().id == accts.de
    assert accts.client(US_KEY).v1.accounts.retrieve_current().id == accts.us
    assert accts.client("sk_test_anything").v1.accounts.retrieve_current().id == sb.state.store.account_id
    assert accts.at == "acct_1AtGmbHsandbox0"
    cus = accts.client(US_KEY).v1.customers.create(params={"name": "US only"})
    assert [c["id"] for c in sb.account(accts.us).objects("customer")] == [cus.id]
    for other in (accts.de, accts.at, sb.state.store.account_id):
        assert sb.account(other).objects("customer") == []
    with pytest.raises(stripe.InvalidRequestError) as info:
        accts.client(DE_KEY).v1.customers.retrieve(cus.id)
    assert info.value.code == "resource_missing"
    assert [r["path"] for r in sb.account(accts.us).requests] == ["/v1/account", "/v1/customers"]


def test_a_restricted_key_reaches_the_account_that_created_it(accts):
    accts.sb.configure(account=accts.us, restricted_keys={"rk_test_us_reader": ["rak_customer_read"]})
    cus = accts.client(US_KEY).v1.customers.create()
    reader = accts.client("rk_test_us_reader")
    assert [c.id for c in reader.v1.customers.list().data] == [cus.id]
    with pytest.raises(stripe.PermissionError):
        reader.v1.customers.create()


def test_rate_limits_are_per_account(accts):
    accts.sb.configure(account=accts.us, rps=0.001)  # one request's burst, then nothing for minutes
    us, de = accts.client(US_KEY), accts.client(DE_KEY)
    refused = 0
    for _ in range(4):
        try:
            us.v1.customers.list()
        except stripe.RateLimitError:
            refused += 1
        de.v1.customers.list()  # never refused: de has its own bucket
    assert refused == 3
    assert [r["status"] for r in accts.sb.account(accts.us).requests] == [200, 429, 429, 429]
    assert [r["status"] for r in accts.sb.account(accts.de).requests] == [200] * 4


def test_idempotency_keys_are_scoped_per_account(accts):
    first = accts.client(US_KEY).v1.customers.create(params={"name": "A"}, options={"idempotency_key": "k1"})
    other = accts.client(DE_KEY).v1.customers.create(params={"name": "B"}, options={"idempotency_key": "k1"})
    assert first.id != other.id and other.name == "B"


def test_a_context_header_naming_another_account_is_refused_for_an_account_key(accts):
    with pytest.raises(stripe.PermissionError) as info:
        accts.client(DE_KEY, stripe_context=accts.us).v1.customers.list()
    assert info.value.http_status == 403 and info.value.error.code == "account_invalid"
    assert f"does not have access to account '{accts.us}'" in info.value.user_message
    own = accts.client(DE_KEY, stripe_context=accts.de)  # naming its own account is fine
    assert own.v1.accounts.retrieve_current().id == accts.de


# organization keys ---------------------------------------------------------------------------
def test_an_organization_key_reaches_the_account_its_stripe_context_names(accts):
    org = accts.client(ORG_KEY, stripe_context=accts.de)
    cus = org.v1.customers.create(params={"name": "Via org key"})
    assert accts.sb.account(accts.de).objects("customer")[0]["id"] == cus.id
    per_request = accts.client(ORG_KEY).v1.accounts.retrieve_current(options={"stripe_context": accts.at})
    assert per_request.id == accts.at
    assert [r["path"] for r in accts.sb.account(accts.at).requests] == ["/v1/account"]


def test_an_organization_key_without_context_or_outside_its_organization_is_refused(accts):
    with pytest.raises(stripe.InvalidRequestError) as info:
        accts.client(ORG_KEY).v1.customers.list()
    assert info.value.http_status == 400
    assert info.value.user_message == NO_CONTEXT
    with pytest.raises(stripe.PermissionError) as denied:
        accts.client(ORG_KEY, stripe_context=accts.us).v1.customers.list()
    assert denied.value.error.code == "account_invalid"
    assert denied.value.user_message.startswith(
        f"The provided key 'sk_org_test_**cket' does not have access to account '{accts.us}'"
    )
    with pytest.raises(stripe.AuthenticationError) as unknown:
        accts.client("sk_org_test_neverMade", stripe_context=accts.de).v1.customers.list()
    assert unknown.value.http_status == 401
    assert accts.sb.account(accts.us).objects("customer") == []


def test_an_organization_key_request_without_stripe_version_is_refused():
    sb = start_stripe(rps=0)
    try:
        de = sb.add_account(key="sk_test_solo_de")
        sb.add_organization_key(ORG_KEY, [de])
        session = requests.Session()
        session.trust_env = False
        auth = {"Authorization": f"Bearer {ORG_KEY}", "Stripe-Context": de}
        resp = session.get(f"{sb.url}/v1/customers", headers=auth)
        assert resp.status_code == 400 and "Stripe-Version" in resp.json()["error"]["message"]
        ok = session.get(f"{sb.url}/v1/customers", headers={**auth, "Stripe-Version": "2026-10-28.endive"})
        assert ok.status_code == 200
    finally:
        sb.stop()


# sharing group -------------------------------------------------------------------------------
def test_a_customer_created_in_one_account_of_the_group_exists_in_each_with_the_same_id(accts):
    de, at, us = accts.client(DE_KEY), accts.client(AT_KEY), accts.client(US_KEY)
    cus = de.v1.customers.create(
        params={"name": "Acme GmbH", "email": "billing@acme.example", "metadata": {"sf_id": "001A"},
                "address": {"country": "DE", "city": "Berlin"}, "preferred_locales": ["de"]}
    )  # fmt: skip
    twin = at.v1.customers.retrieve(cus.id)
    assert (twin.name, twin.email, twin.address.city, twin.preferred_locales) == (
        "Acme GmbH", "billing@acme.example", "Berlin", ["de"])  # fmt: skip
    assert twin.metadata.to_dict() == {}  # metadata stays in the account that wrote it
    with pytest.raises(stripe.InvalidRequestError):
        us.v1.customers.retrieve(cus.id)
    assert accts.event_types(accts.de) == ["customer.created"]
    assert accts.event_types(accts.at) == ["customer.created"]
    assert accts.event_types(accts.us) == []
    at_event = accts.sb.account(accts.at).objects("event")[0]
    assert at_event["data"]["object"]["id"] == cus.id and at_event["request"]["id"] is None


def test_shared_fields_reach_every_account_and_other_fields_stay_per_account(accts):
    de, at = accts.client(DE_KEY), accts.client(AT_KEY)
    cus = de.v1.customers.create(params={"name": "Acme", "metadata": {"home": "de"}})
    at.v1.customers.update(
        cus.id,
        params={"email": "ap@acme.example", "address": {"country": "AT"}, "metadata": {"door": "front"}},
    )
    in_de = de.v1.customers.retrieve(cus.id)
    assert in_de.email == "ap@acme.example" and in_de.address.country == "AT"
    assert in_de.metadata.to_dict() == {"home": "de"}
    assert at.v1.customers.retrieve(cus.id).metadata.to_dict() == {"door": "front"}
    de_updates = [e for e in accts.sb.account(accts.de).objects("event") if e["type"] == "customer.updated"]
    assert len(de_updates) == 1
    assert set(de_updates[0]["data"]["previous_attributes"]) == {"email", "address"}
    at_updates = [e for e in accts.sb.account(accts.at).objects("event") if e["type"] == "customer.updated"]
    assert set(at_updates[0]["data"]["previous_attributes"]) == {"email", "address", "metadata"}
    de.v1.customers.update(cus.id, params={"metadata": {"home": "berlin"}})  # not shared: no event in at
    assert accts.event_types(accts.at).count("customer.updated") == 1
    assert accts.event_types(accts.de).count("customer.updated") == 2


def test_concurrent_writes_in_two_accounts_of_a_group_all_land_in_both(accts):
    errors: list[BaseException] = []

    def create(key: str) -> None:
        client = accts.client(key)
        try:
            for i in range(15):
                cus = client.v1.customers.create(params={"name": f"{key} {i}"})
                client.v1.customers.update(cus.id, params={"email": f"c{i}@example.com"})
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(key,)) for key in (DE_KEY, AT_KEY, DE_KEY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    de_ids = {c["id"] for c in accts.sb.account(accts.de).objects("customer")}
    at_ids = {c["id"] for c in accts.sb.account(accts.at).objects("customer")}
    assert len(de_ids) == 45 and de_ids == at_ids
    assert all(c["email"] for c in accts.sb.account(accts.at).objects("customer"))


def test_tax_ids_are_shared_across_the_group(accts):
    de, at = accts.client(DE_KEY), accts.client(AT_KEY)
    cus = de.v1.customers.create(params={"name": "Acme"})
    txi = de.v1.customers.tax_ids.create(cus.id, params={"type": "eu_vat", "value": "DE123456789"})
    assert [t.id for t in at.v1.customers.tax_ids.list(cus.id).data] == [txi.id]
    at.v1.customers.tax_ids.delete(cus.id, txi.id)
    assert de.v1.customers.tax_ids.list(cus.id).data == []


def test_a_card_saved_in_one_account_pays_in_another_account_of_the_group(accts):
    de, at = accts.client(DE_KEY), accts.client(AT_KEY)
    cus = de.v1.customers.create(params={"name": "Acme"})
    card = de.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    de.v1.payment_methods.attach(card.id, params={"customer": cus.id})
    at.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": card.id}})
    product = at.v1.products.create(params={"name": "Seats"})
    price = at.v1.prices.create(
        params={
            "product": product.id,
            "currency": "eur",
            "unit_amount": 1000,
            "recurring": {"interval": "month"},
        }
    )
    sub = at.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": price.id}], "default_payment_method": card.id}
    )
    assert sub.status == "active" and sub.default_payment_method == card.id
    assert accts.sb.account(accts.at).objects("payment_method") == []  # it lives in de only
    assert not any(t.startswith("payment_method.") for t in accts.event_types(accts.at))
    assert "payment_method.attached" in accts.event_types(accts.de)


def test_a_non_card_payment_method_is_not_usable_in_another_account(accts):
    de, at = accts.client(DE_KEY), accts.client(AT_KEY)
    cus = de.v1.customers.create(params={"name": "Acme"})
    bank = de.v1.payment_methods.create(params={
        "type": "us_bank_account", "billing_details": {"name": "Acme"},
        "us_bank_account": {"routing_number": "110000000", "account_number": "000123456789",
                            "account_holder_type": "company"},
    })  # fmt: skip
    de.v1.payment_methods.attach(bank.id, params={"customer": cus.id})
    de.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": bank.id}})
    with pytest.raises(stripe.InvalidRequestError) as info:
        at.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": bank.id}})
    assert info.value.code == "resource_missing"
    assert info.value.user_message == f"No such PaymentMethod: '{bank.id}'"


def test_an_independent_account_sees_nothing_of_the_group(accts):
    de, us = accts.client(DE_KEY), accts.client(US_KEY)
    cus = de.v1.customers.create(params={"name": "Acme"})
    card = de.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    de.v1.payment_methods.attach(card.id, params={"customer": cus.id})
    mine = us.v1.customers.create(params={"name": "Acme Inc"})
    with pytest.raises(stripe.InvalidRequestError) as info:
        us.v1.customers.update(mine.id, params={"invoice_settings": {"default_payment_method": card.id}})
    assert info.value.user_message == f"No such PaymentMethod: '{card.id}'"
    assert [c["id"] for c in accts.sb.account(accts.us).objects("customer")] == [mine.id]
    assert accts.event_types(accts.us) == ["customer.created"]


# admin API -----------------------------------------------------------------------------------
def test_the_admin_api_adds_accounts_and_organization_keys_and_reads_each_account():
    sb = start_stripe(rps=0)
    http = requests.Session()
    http.trust_env = False
    try:
        made = http.post(f"{sb.url}/_sandbox/accounts", json={"key": "sk_test_jp_kk", "rps": 7}).json()
        jp = made["id"]
        assert jp.startswith("acct_") and sb.account(jp).bucket.rate == 7
        assert http.post(
            f"{sb.url}/_sandbox/organization_keys", json={"key": ORG_KEY, "account_ids": [jp]}
        ).json() == {"ok": True}
        client = stripe.StripeClient(
            ORG_KEY, stripe_context=jp, base_addresses={"api": sb.url}, max_network_retries=0
        )
        cus = client.v1.customers.create(params={"name": "KK"})
        listed = http.get(f"{sb.url}/_sandbox/objects/customer?account={jp}").json()
        assert [c["id"] for c in listed] == [cus.id]
        assert http.get(f"{sb.url}/_sandbox/objects/customer").json() == []  # the primary's
        log = http.get(f"{sb.url}/_sandbox/requests?account={jp}").json()
        assert [r["path"] for r in log] == ["/v1/customers"]
        assert http.post(f"{sb.url}/_sandbox/config?account={jp}", json={"rps": 3}).json()["rps"] == 3
        assert sb.state.bucket.rate == 0
        assert {a["id"] for a in http.get(f"{sb.url}/_sandbox/accounts").json()} == {
            sb.state.store.account_id, jp}  # fmt: skip
        http.post(f"{sb.url}/_sandbox/reset")
        assert sb.account(jp).objects("customer") == []
    finally:
        sb.stop()


def test_add_account_refuses_a_key_twice_and_bad_ids():
    sb = start_stripe(rps=0)
    try:
        sb.add_account(key="sk_test_once")
        with pytest.raises(ValueError):
            sb.add_account(key="sk_test_once")
        with pytest.raises(ValueError):
            sb.add_account(key="sk_test_twice", account_id="cus_123")
        with pytest.raises(ValueError):
            sb.add_organization_key("sk_test_notorg", [sb.state.store.account_id])
        with pytest.raises(KeyError):
            sb.account("acct_missing")
    finally:
        sb.stop()

"""Several Stripe accounts: routing.yaml's rules, its checks, and the settings that name the keys."""

from __future__ import annotations

import json

import pytest

from connector.mapping import MappingError
from connector.mapping.loader import parse_mapping
from connector.mapping.schema import RoutingMapping
from connector.routing import Router
from connector.settings import SettingsError, load_settings

ROUTING = """\
version: 1
accounts:
  gmbh: {sharing_group: eu}
  bv: {sharing_group: eu}
  inc: {}
account_field: Legal_Entity__c
routes:
  Acme GmbH: gmbh
  Acme BV: bv
  Acme Inc.: inc
order_field: Legal_Entity__c
"""
BASE = {
    "salesforce_consumer_key": "key",
    "salesforce_consumer_secret": "secret",
    "salesforce_login_url": "https://example.my.salesforce.com",
}


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CPQ2STRIPE_HOME", str(tmp_path))
    for name in ("CPQ2STRIPE_DATABASE_URL", "CPQ2STRIPE_MAPPINGS_DIR", "CPQ2STRIPE_STRIPE_ACCOUNTS"):
        monkeypatch.delenv(name, raising=False)


def router(text: str = ROUTING) -> Router:
    routing = parse_mapping(text, "routing.yaml", "routing")
    assert isinstance(routing, RoutingMapping)
    return Router(routing)


def test_an_account_goes_to_the_account_its_field_names_and_nowhere_without_a_default():
    r = router()

    assert r.home({"Legal_Entity__c": "Acme BV"}).account == "bv"
    assert r.home({"Legal_Entity__c": " Acme GmbH "}).account == "gmbh"  # spaces around do not count
    unrouted = r.home({"Legal_Entity__c": "Acme KK"})
    assert unrouted.account is None
    assert "'Acme KK'" in unrouted.unrouted_reason("Account") and "default:" in unrouted.unrouted_reason(
        "Account"
    )
    assert r.home({"Legal_Entity__c": None}).account is None
    assert r.first == "gmbh"  # reports what is routed nowhere


def test_a_default_takes_blank_and_unlisted_values():
    r = router(ROUTING + "default: inc\n")

    assert r.home({"Legal_Entity__c": ""}).account == "inc"
    assert r.home({"Legal_Entity__c": "Acme KK"}).account == "inc"
    assert r.first == "inc"


def test_an_order_bills_where_its_own_field_says_else_through_its_accounts_home():
    r = router()
    order = {"Legal_Entity__c": None, "Account": {"Legal_Entity__c": "Acme GmbH"}}

    assert r.order_route(order).account == "gmbh"
    assert r.order_route({**order, "Legal_Entity__c": "Acme BV"}).account == "bv"
    assert r.order_home({**order, "Legal_Entity__c": "Acme BV"}).account == "gmbh"
    assert r.order_route(order).field == "Account.Legal_Entity__c"


def test_only_accounts_of_one_sharing_group_share_customers():
    r = router()

    assert r.shares_customers("gmbh", "bv") and r.shares_customers("inc", "inc")
    assert not r.shares_customers("gmbh", "inc")
    assert r.account_fields() == ["Legal_Entity__c", "Stripe_Account__c"]
    assert r.order_fields() == ["Account.Legal_Entity__c", "Legal_Entity__c", "Stripe_Account__c"]


def test_a_route_to_an_account_not_named_is_reported_with_its_line_and_the_likely_one():
    text = ROUTING.replace("Acme BV: bv", "Acme BV: bvv").replace("  inc: {}", "  Inc: {}")

    with pytest.raises(MappingError) as caught:
        parse_mapping(text, "routing.yaml", "routing")

    problems = [str(p) for p in caught.value.problems]
    assert any(p.startswith("routing.yaml:9:") and "'bvv'" in p and "did you mean bv?" in p for p in problems)
    assert any("'Inc' is not an account name" in p for p in problems)


def test_several_accounts_are_named_with_their_keys_and_no_single_key_is_needed():
    keys = {"gmbh": "sk_test_g", "inc": "rk_test_i"}
    settings = load_settings(**BASE, stripe_accounts=json.dumps(keys))

    gmbh = settings.for_stripe_account("gmbh")
    assert gmbh.stripe_key.get_secret_value() == "sk_test_g" and gmbh.stripe_context is None
    assert gmbh.stripe_accounts == {}
    assert "sk_test_g" not in repr(settings)


def test_an_organization_key_reaches_each_account_through_its_context():
    ids = {"gmbh": "acct_1G", "inc": "acct_1I"}
    settings = load_settings(**BASE, stripe_secret_key="sk_org_test_x", stripe_accounts=json.dumps(ids))

    inc = settings.for_stripe_account("inc")
    assert inc.stripe_key.get_secret_value() == "sk_org_test_x"
    assert inc.stripe_context == "acct_1I" and inc.stripe_account_id == "acct_1I"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "CPQ2STRIPE_STRIPE_SECRET_KEY is required but not set"),
        ({"stripe_secret_key": "sk_org_test_x"}, "name the accounts it bills through"),
        ({"stripe_secret_key": "sk_test_x", "stripe_accounts": '{"gmbh": "acct_1"}'}, "organization key"),
        (
            {"stripe_secret_key": "sk_org_test_x", "stripe_accounts": '{"a": "acct_1", "b": "sk_test_b"}'},
            "mixes",
        ),
        ({"stripe_accounts": '{"GmbH": "sk_test_g"}'}, "'GmbH' is not an account name"),
        ({"stripe_accounts": '{"gmbh": "pk_test_g"}'}, "expected the account's key"),
        ({"stripe_accounts": "gmbh=sk_test_g"}, "expected JSON"),
    ],
)
def test_account_settings_an_operator_gets_wrong_say_what_to_write(overrides, expected):
    with pytest.raises(SettingsError) as caught:
        load_settings(**BASE, **overrides)

    message = str(caught.value)
    assert expected in message
    assert "sk_test_g" not in message and "sk_test_b" not in message

"""Several Stripe accounts (issue: legal entities and an Organization sharing group), end to end.

Three fake Stripe accounts behind one host: `gmbh` and `bv` in the sharing group `eu` (a Customer
made in one appears in the other with the same id), `inc` independent. mappings/routing.yaml routes
Accounts by Legal_Entity__c; an Order may name another entity of its Account's group.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.mapping import load_mappings
from connector.sync.runner import open_context, run_pass
from tests.conftest import STRIPE_TEST_RPS, SalesforceAdmin, Sandbox, StripeAdmin
from tests.unit.test_routing import ROUTING

from .conftest import MAPPINGS, settings_for
from .test_orders import Org

SYNC_ALL = ["accounts", "orders"]


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from connector.sandbox.runner import start_sandbox

    accounts = {"gmbh": "eu", "bv": "eu", "inc": None}
    with start_sandbox(
        tmp_path_factory.mktemp("multi"), stripe_rps=STRIPE_TEST_RPS, stripe_accounts=accounts
    ) as running:
        yield running


@pytest.fixture
def world(multi: Any, tmp_path: Path, store_url: str) -> Iterator[Any]:
    """The sandbox emptied, mappings with routing.yaml, and a `sync()` over every account."""
    sf_admin = SalesforceAdmin(multi.salesforce_url, multi.ca_file)
    stripe_admin = StripeAdmin(multi.stripe_url)
    sf_admin.reset()
    stripe_admin.reset()  # every account's objects
    mappings_dir = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, mappings_dir)
    (mappings_dir / "routing.yaml").write_text(ROUTING)
    settings = settings_for(multi, store_url, mappings_dir=str(mappings_dir))
    sandbox = Sandbox(multi, sf_admin, stripe_admin)

    class World:
        org = Org(sandbox)
        ids = multi.stripe_accounts
        mappings_dir = tmp_path / "mappings"

        def sync(self, objects: list[str] = SYNC_ALL, **overrides: Any) -> dict[str, Any]:
            chosen = (
                settings_for(multi, store_url, mappings_dir=str(mappings_dir), **overrides)
                if overrides
                else settings
            )
            with open_context(chosen, load_mappings(mappings_dir)) as ctx:
                reports = run_pass(ctx, dry_run=False, objects=objects)
            return {o.sf_id: o for r in reports for o in r.outcomes}

        def objects(self, name: str, kind: str) -> list[dict[str, Any]]:
            return [o for o in multi.stripe.account(self.ids[name]).objects(kind) if not o.get("deleted")]

        def posts(self, name: str, path: str) -> list[dict[str, Any]]:
            log = multi.stripe.account(self.ids[name]).requests
            return [r for r in list(log) if r["method"] == "POST" and r["path"].startswith(path)]

        def record(self, sobject: str, record_id: str) -> dict[str, Any]:
            return sf_admin.get_record(sobject, record_id)

    try:
        yield World()
    finally:
        sf_admin.session.close()
        stripe_admin.session.close()


def test_accounts_get_one_customer_per_sharing_group_and_per_independent_account(world):
    gmbh = world.org.account(Name="Müller GmbH", Legal_Entity__c="Acme GmbH")
    inc = world.org.account(Name="Globex Inc", Legal_Entity__c="Acme Inc.")

    outcomes = world.sync(["accounts"])

    assert outcomes[gmbh].status == "created" and outcomes[gmbh].account == "gmbh"
    assert outcomes[inc].status == "created" and outcomes[inc].account == "inc"
    [in_gmbh] = world.objects("gmbh", "customer")
    [in_bv] = world.objects("bv", "customer")  # the sharing group's copy: same id, never a second one
    [in_inc] = world.objects("inc", "customer")
    assert in_gmbh["id"] == in_bv["id"] == outcomes[gmbh].stripe_id
    assert in_inc["id"] == outcomes[inc].stripe_id and in_inc["name"] == "Globex Inc"
    assert world.posts("bv", "/v1/customers") == []  # nothing sent to bv: Stripe shares it
    assert world.record("Account", gmbh)["Stripe_Account__c"] == "gmbh"
    assert world.record("Account", inc)["Stripe_Account__c"] == "inc"
    assert world.record("Account", gmbh)["Stripe_Customer_ID__c"] == in_gmbh["id"]


def test_an_address_change_is_sent_once_and_seen_in_both_accounts_of_the_group(world):
    gmbh = world.org.account(Name="Müller GmbH", Legal_Entity__c="Acme GmbH", BillingCity="Berlin")
    world.sync(["accounts"])
    world.org.sandbox.sf_admin.patch_record("Account", gmbh, {"BillingCity": "Hamburg"})

    outcomes = world.sync(["accounts"])

    assert outcomes[gmbh].status == "updated"
    [in_gmbh] = world.objects("gmbh", "customer")
    [in_bv] = world.objects("bv", "customer")
    assert in_gmbh["address"]["city"] == in_bv["address"]["city"] == "Hamburg"
    assert world.posts("bv", "/v1/customers") == []


def test_an_order_routed_to_another_account_of_the_group_bills_the_shared_customer(world):
    gmbh = world.org.account(Name="Müller GmbH", Legal_Entity__c="Acme GmbH")
    order, _ = world.org.order(gmbh, [{"product": "Platform", "price": 49.0}], Legal_Entity__c="Acme BV")

    outcomes = world.sync()

    assert outcomes[order].status == "created", outcomes[order].message
    assert outcomes[order].account == "bv"
    [customer] = world.objects("gmbh", "customer")
    [sub] = world.objects("bv", "subscription")
    assert sub["customer"] == customer["id"]
    assert world.objects("gmbh", "subscription") == []
    # bv's instance of the Customer carries bv's own metadata; the shared fields came from gmbh only.
    [in_bv] = world.objects("bv", "customer")
    assert in_bv["metadata"].get("salesforce_account_id") == gmbh
    sent = world.posts("bv", "/v1/customers")
    assert all(not (set(r.get("params") or {}) & {"name", "address", "email", "phone"}) for r in sent)
    assert world.record("Order", order)["Stripe_Account__c"] == "bv"
    assert world.record("Account", gmbh)["Stripe_Account__c"] == "gmbh"  # its home stays


def test_an_order_routed_outside_its_accounts_group_is_refused(world):
    gmbh = world.org.account(Name="Müller GmbH", Legal_Entity__c="Acme GmbH")
    order, _ = world.org.order(gmbh, [{"product": "Platform", "price": 49.0}], Legal_Entity__c="Acme Inc.")

    outcomes = world.sync()

    assert outcomes[order].status == "refused" and outcomes[order].code == "account_not_shared"
    assert "'inc'" in outcomes[order].message and "'gmbh'" in outcomes[order].message
    assert world.objects("inc", "subscription") == [] and world.objects("inc", "customer") == []
    assert world.record("Order", order)["Stripe_Sync_Status__c"] == "Refused"


def test_an_account_whose_routing_changes_after_it_synced_is_refused_never_recreated(world):
    inc = world.org.account(Name="Globex Inc", Legal_Entity__c="Acme Inc.")
    world.sync(["accounts"])
    world.org.sandbox.sf_admin.patch_record("Account", inc, {"Legal_Entity__c": "Acme GmbH"})

    outcomes = world.sync(["accounts"])

    assert outcomes[inc].status == "refused" and outcomes[inc].code == "routing_changed"
    assert "'inc'" in outcomes[inc].message and "Legal_Entity__c" in outcomes[inc].message
    assert world.objects("gmbh", "customer") == [] and world.objects("bv", "customer") == []
    assert len(world.objects("inc", "customer")) == 1
    assert world.record("Account", inc)["Stripe_Sync_Status__c"] == "Refused"


def test_a_group_accounts_own_fields_follow_salesforce_in_every_account_that_uses_the_customer(world):
    gmbh = world.org.account(Name="Müller GmbH", Legal_Entity__c="Acme GmbH", ShippingCity="Potsdam")
    world.org.order(gmbh, [{"product": "Platform", "price": 49.0}], Legal_Entity__c="Acme BV")
    world.sync()
    assert world.objects("bv", "customer")[0]["shipping"]["address"]["city"] == "Potsdam"
    before = len(world.posts("bv", "/v1/customers"))
    world.org.sandbox.sf_admin.patch_record(
        "Account", gmbh, {"ShippingCity": "Utrecht", "Phone": "+49 30 1234567"}
    )

    outcomes = world.sync(["accounts"])

    assert outcomes[gmbh].status == "updated" and outcomes[gmbh].account == "gmbh"  # counted once, at home
    [in_gmbh] = world.objects("gmbh", "customer")
    [in_bv] = world.objects("bv", "customer")
    # shipping is each account's own (not shared by the group): written in both
    assert in_gmbh["shipping"]["address"]["city"] == in_bv["shipping"]["address"]["city"] == "Utrecht"
    assert in_gmbh["phone"] == in_bv["phone"] == "+49301234567"  # shared: sent once, by the home
    [update] = world.posts("bv", "/v1/customers")[before:]
    assert "phone" not in update["params"] and "shipping" in update["params"]


def test_the_backfill_spreads_its_calls_over_the_accounts_each_within_its_own_limit(multi, world, tmp_path):
    import subprocess
    import sys

    from .conftest import REPO, cli_env

    rps = 8
    for entity in ("Acme GmbH", "Acme BV", "Acme Inc."):
        for i in range(12):
            world.org.account(Name=f"{entity} {i}", Legal_Entity__c=entity)
    for account_id in multi.stripe_accounts.values():
        multi.stripe.configure(account=account_id, rps=rps)
    env = cli_env(
        multi,
        f"sqlite:///{tmp_path / 'backfill.db'}",
        CPQ2STRIPE_MAPPINGS_DIR=str(world.mappings_dir),
        CPQ2STRIPE_STRIPE_RPS=str(rps),
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "connector", "backfill", "--objects", "accounts", "--workers", "16"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        for account_id in multi.stripe_accounts.values():
            multi.stripe.configure(account=account_id, rps=STRIPE_TEST_RPS)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (
        "Stripe account gmbh: 12 created" in done.stdout and "Stripe account inc: 12 created" in done.stdout
    )
    spans = {}
    for name in ("gmbh", "bv", "inc"):
        log = [r for r in multi.stripe.account(multi.stripe_accounts[name]).requests if r["time"] >= 0]
        times = sorted(r["time"] for r in log)
        assert len(times) >= 12 and [r for r in log if r["status"] == 429] == []
        # each account's own budget: any one-second window holds at most `rps` requests (give or
        # take two of arrival jitter), while all three together run well above one account's limit
        worst = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
        assert worst <= rps + 2, name
        spans[name] = (times[0], times[-1])
    assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values())  # side by side


def _client(multi, name):
    import stripe

    from connector.sandbox.runner import stripe_account_key

    return stripe.StripeClient(stripe_account_key(name), base_addresses={"api": multi.stripe_url})


def test_a_card_saved_in_the_home_account_pays_an_order_billed_in_another_of_the_group(multi, world):
    gmbh = world.org.account(Name="Müller GmbH", Legal_Entity__c="Acme GmbH")
    world.sync(["accounts"])
    [customer] = world.objects("gmbh", "customer")
    home = _client(multi, "gmbh")
    card = home.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    home.v1.payment_methods.attach(card.id, params={"customer": customer["id"]})
    bank = home.v1.payment_methods.create(params={
        "type": "us_bank_account", "billing_details": {"name": "Müller"},
        "us_bank_account": {"routing_number": "110000000", "account_number": "000123456789",
                            "account_holder_type": "company"},
    })  # fmt: skip
    home.v1.payment_methods.attach(bank.id, params={"customer": customer["id"]})
    world.org.sandbox.sf_admin.patch_record("Account", gmbh, {"Stripe_Payment_Method_ID__c": card.id})
    by_card, _ = world.org.order(gmbh, [{"product": "Platform", "price": 49.0}], Legal_Entity__c="Acme BV")

    outcomes = world.sync()

    assert outcomes[by_card].status == "created", outcomes[by_card].message
    [sub] = world.objects("bv", "subscription")
    assert sub["collection_method"] == "charge_automatically" and sub["default_payment_method"] == card.id
    assert sub["customer"] == customer["id"]

    world.org.sandbox.sf_admin.patch_record("Account", gmbh, {"Stripe_Payment_Method_ID__c": bank.id})
    by_bank, _ = world.org.order(gmbh, [{"product": "Support", "price": 9.0}], Legal_Entity__c="Acme BV")

    outcomes = world.sync()

    assert outcomes[by_bank].status in ("failed", "refused")
    assert bank.id in outcomes[by_bank].message  # Stripe's reason: no such payment method in bv
    assert len(world.objects("bv", "subscription")) == 1


def test_one_organization_key_reaches_every_account_through_its_context(multi, world):
    import json

    from connector.sandbox.runner import STRIPE_ORGANIZATION_KEY

    org_key = {"stripe_secret_key": STRIPE_ORGANIZATION_KEY, "stripe_accounts": json.dumps(world.ids)}
    gmbh = world.org.account(Name="Müller GmbH", Legal_Entity__c="Acme GmbH")
    inc = world.org.account(Name="Globex Inc", Legal_Entity__c="Acme Inc.")
    order, _ = world.org.order(gmbh, [{"product": "Platform", "price": 49.0}], Legal_Entity__c="Acme BV")

    outcomes = world.sync(**org_key)

    assert outcomes[order].status == "created" and outcomes[order].account == "bv", outcomes[order].message
    [customer] = world.objects("gmbh", "customer")
    assert world.objects("bv", "customer")[0]["id"] == customer["id"]
    assert [c["name"] for c in world.objects("inc", "customer")] == ["Globex Inc"]
    assert world.objects("bv", "subscription")[0]["customer"] == customer["id"]
    assert world.record("Account", inc)["Stripe_Account__c"] == "inc"


def test_the_daemon_polls_every_account_and_labels_its_stripe_calls_by_account(multi, world, tmp_path):
    import signal
    import subprocess
    import sys
    import urllib.request

    from .conftest import REPO, cli_env
    from .test_daemon import free_port, wait_for

    world.org.account(Name="Müller GmbH", Legal_Entity__c="Acme GmbH")
    world.org.account(Name="Globex Inc", Legal_Entity__c="Acme Inc.")
    port = free_port()
    env = cli_env(
        multi,
        f"sqlite:///{tmp_path / 'daemon.db'}",
        CPQ2STRIPE_MAPPINGS_DIR=str(world.mappings_dir),
        CPQ2STRIPE_POLL_INTERVAL_SECONDS="1",
        CPQ2STRIPE_SALESFORCE_PUBSUB_TOPICS="",
        PYTHONPATH=str(REPO),
    )
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "run", "--metrics-port", str(port)],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            return ""

    try:
        text = wait_for(
            "a customer created in gmbh and in inc",
            lambda: (t := scrape()) and 'stripe_account="gmbh"' in t and 'stripe_account="inc"' in t and t,
        )
        assert 'kind="customers.create",service="stripe",stripe_account="gmbh"} 1' in text
        assert 'kind="customers.create",service="stripe",stripe_account="inc"} 1' in text
        assert [c["name"] for c in world.objects("inc", "customer")] == ["Globex Inc"]
        assert [c["name"] for c in world.objects("bv", "customer")] == ["Müller GmbH"]  # shared, not made
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (tmp_path / "daemon.log").read_text()[-3000:]

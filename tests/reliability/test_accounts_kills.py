"""Kills across several Stripe accounts: a sync of three accounts (two in a sharing group) killed
at every Customer and Order crash point, then run to the end. The accounts apply side by side, so
a kill lands while each is mid-way; the end state must hold one Customer per Account per sharing
group or independent account, one subscription per Order in the account it is routed to, and every
id written back real in its account."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from connector.faults import CRASH_POINTS
from connector.faults import ENV as CRASH_ENV
from connector.faults import EXIT_CODE as CRASH_EXIT
from tests.conftest import STRIPE_TEST_RPS, SalesforceAdmin, Sandbox, StripeAdmin
from tests.e2e.conftest import MAPPINGS, cli_env
from tests.e2e.test_orders import Org
from tests.e2e.test_stripe_accounts import ROUTING, multi  # noqa: F401  (fixture)

from .conftest import changed_anything, run_cli

# In the order a record meets them (a kill at an intent leaves creates for the next kill to find).
POINTS = (
    "customer.after_intent",
    "customer.after_create",
    "customer.after_link",
    "order.after_product",
    "order.after_price",
    "order.after_subscription",
    "order.before_writeback",
)
ENTITIES = {"Acme GmbH": "gmbh", "Acme BV": "bv", "Acme Inc.": "inc"}


def test_kills_across_accounts_leave_one_customer_per_group_and_one_subscription_per_order(
    multi: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    sf_admin = SalesforceAdmin(multi.salesforce_url, multi.ca_file)
    stripe_admin = StripeAdmin(multi.stripe_url)
    sf_admin.reset()
    stripe_admin.reset()
    stripe_admin.config(rps=STRIPE_TEST_RPS, latency_ms=3, error_rate=0)
    mappings = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, mappings)
    (mappings / "routing.yaml").write_text(ROUTING)
    env = cli_env(multi, f"sqlite:///{tmp_path / 'connector.db'}", CPQ2STRIPE_MAPPINGS_DIR=str(mappings))
    org = Org(Sandbox(multi, sf_admin, stripe_admin))

    homes: dict[str, str] = {}  # Account id -> home account name
    routed: dict[str, str] = {}  # Order id -> account it bills through
    for entity, name in ENTITIES.items():
        for i in range(4):
            account = org.account(Name=f"{entity} customer {i}", Legal_Entity__c=entity)
            homes[account] = name
            order, _ = org.order(account, [{"product": f"Plan {i % 2}", "price": 20.0 + i}])
            routed[order] = name
            if name == "gmbh" and i < 2:  # billed through the other account of the group
                other, _ = org.order(
                    account, [{"product": "Support", "price": 9.0}], Legal_Entity__c="Acme BV"
                )
                routed[other] = "bv"

    assert set(POINTS) <= CRASH_POINTS
    killed = 0
    for point in POINTS:
        done = run_cli(multi, "", "sync", env={**env, CRASH_ENV: point})
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        killed += done.returncode == CRASH_EXIT
    assert killed >= len(POINTS) - 1  # (the last points may find nothing left to do)
    for _ in range(6):
        done = run_cli(multi, "", "sync", env=env)
        assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
        if not changed_anything(done.stdout):
            break
    else:
        raise AssertionError("still changing things after 6 passes")

    def objects(name: str, kind: str) -> list[dict[str, Any]]:
        return [
            o for o in multi.stripe.account(multi.stripe_accounts[name]).objects(kind) if not o.get("deleted")
        ]

    # Customers: the sharing group holds each of its Accounts once, the same ids in both accounts.
    group = {c["id"] for c in objects("gmbh", "customer")}
    assert group == {c["id"] for c in objects("bv", "customer")}
    assert len(group) == sum(1 for home in homes.values() if home in ("gmbh", "bv"))
    assert len(objects("inc", "customer")) == sum(1 for home in homes.values() if home == "inc")
    for name in ENTITIES.values():
        subs = objects(name, "subscription")
        billed = Counter(s["metadata"]["salesforce_order_id"] for s in subs)
        assert billed == Counter({o: 1 for o, where in routed.items() if where == name}), name
        ids = {s["id"] for s in subs}
        for order, where in routed.items():
            if where == name:
                assert sf_admin.get_record("Order", order)["Stripe_Subscription_ID__c"] in ids
    for account, home in homes.items():
        record = sf_admin.get_record("Account", account)
        assert record["Stripe_Account__c"] == home
        assert record["Stripe_Customer_ID__c"] in {c["id"] for c in objects(home, "customer")}

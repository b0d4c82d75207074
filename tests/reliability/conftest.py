"""The reliability suites' harness: the connector's CLI as a subprocess against the sandbox, a
snapshot of both systems and the state store, and the invariants every suite checks at the end.

Size: CPQ2STRIPE_RELIABILITY_SCALE=ci (default, fits CI) or large (a few hundred records of each
kind, more kills and a longer faulty run).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connector.faults import ENV as CRASH_ENV
from connector.state import StateStore
from tests.e2e.conftest import REPO, cli_env
from tests.unit.conftest import postgres_schema_url, sqlite_url, store_url  # noqa: F401  (fixtures)

SCALE_ENV = "CPQ2STRIPE_RELIABILITY_SCALE"


@dataclass(frozen=True)
class Size:
    accounts: int
    orders: int
    kills: int  # SIGKILLs that must land on SQLite (crash points and random delays together)
    kills_postgres: int  # and on PostgreSQL
    fault_rate: float
    contracts: int = 0  # CPQ contract histories (amendments, renewals, terminations) on top


SIZES = {
    # CI: at least 30 kills on each store, on a smaller org (the kills matter, not the volume)
    "ci": Size(accounts=100, orders=70, kills=32, kills_postgres=30, fault_rate=0.1, contracts=12),
    "large": Size(accounts=400, orders=300, kills=120, kills_postgres=120, fault_rate=0.1, contracts=40),
}


@pytest.fixture(scope="session")
def size() -> Size:
    name = os.environ.get(SCALE_ENV, "ci").strip().lower() or "ci"
    if name not in SIZES:
        raise pytest.UsageError(f"{SCALE_ENV} must be one of {sorted(SIZES)}, not {name!r}")
    return SIZES[name]


# --------------------------------------------------------------------------------------------------
# The CLI as a subprocess


connector_env = cli_env


def spawn(sandbox: Any, database_url: str, *args: str, output: Any, crash_at: str | None = None):
    """The CLI in the background, stdout and stderr to `output` (a file: a pipe could fill up)."""
    env = connector_env(sandbox, database_url)
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.Popen(
        [sys.executable, "-m", "connector", *args],
        env=env,
        cwd=REPO,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_cli(
    sandbox: Any, database_url: str, *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env=env if env is not None else connector_env(sandbox, database_url),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


_CHANGES = re.compile(r"(\d+) created, (\d+) updated")


def changed_anything(stdout: str) -> bool:
    return any(int(c) or int(u) for c, u in _CHANGES.findall(stdout))


def sync_until_done(sandbox: Any, database_url: str, max_passes: int = 8, **extra: str) -> list[int]:
    """`sync` until a pass exits 0 or 1 and creates or updates nothing."""
    codes = []
    for _ in range(max_passes):
        done = run_cli(sandbox, database_url, "sync", env=connector_env(sandbox, database_url, **extra))
        codes.append(done.returncode)
        assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        if not changed_anything(done.stdout):
            return codes
    raise AssertionError(f"still changing things after {max_passes} passes: exit codes {codes}")


# --------------------------------------------------------------------------------------------------
# Both systems and the state store, and the invariants

STRIPE_TYPES = ("customer", "product", "price", "subscription", "subscription_schedule", "billing.meter")
SF_OBJECTS = ("Account", "Order", "OrderItem", "Product2", "PricebookEntry")
SF_ID_FIELDS = {
    "Account": "Stripe_Customer_ID__c",
    "Order": "Stripe_Subscription_ID__c",
    "Product2": "Stripe_Product_ID__c",
    "PricebookEntry": "Stripe_Price_ID__c",
    "OrderItem": "Stripe_Price_ID__c",
}


@dataclass
class World:
    stripe: dict[str, list[dict[str, Any]]]
    sf: dict[str, dict[str, dict[str, Any]]]
    links: list[Any]

    def outcomes(self) -> dict[str, set[str]]:
        """What ended up where: the Salesforce ids each Stripe object kind belongs to."""
        orders = [s["metadata"].get("salesforce_order_id") for s in self.orders_billed()]
        return {
            "customers": {c["metadata"].get("salesforce_account_id") for c in self.stripe["customer"]},
            "orders": set(orders),
            "products": {p["metadata"].get("salesforce_product_id") for p in self.stripe["product"]},
            "prices": {p["metadata"].get("cpq2stripe_price_key") for p in self.stripe["price"]},
            "meters": {m["event_name"] for m in self.stripe["billing.meter"]},
        }

    def orders_billed(self) -> list[dict[str, Any]]:
        # a subscription started by a schedule belongs to the schedule, not to a second Order
        subs = [s for s in self.stripe["subscription"] if not s.get("schedule")]
        return subs + self.stripe["subscription_schedule"]

    def counts(self) -> dict[str, int]:
        return {t: len(v) for t, v in self.stripe.items()}


def snapshot(sandbox: Any, database_url: str) -> World:
    stripe = {t: [o for o in sandbox.stripe_admin.objects(t) if not o.get("deleted")] for t in STRIPE_TYPES}
    # the invoice items the connector makes (an Order's one-time lines, a late change's catch-up);
    # Stripe's own (prorations) carry no Salesforce id
    stripe["invoiceitem"] = [
        o
        for o in sandbox.stripe_admin.objects("invoiceitem")
        if o["metadata"].get("salesforce_order_item_id")
    ]
    org = sandbox.org
    with org.lock:
        sf = {name: {r["Id"]: dict(r) for r in org.records(name)} for name in SF_OBJECTS}
    with StateStore.open(database_url) as store:
        links = store.links.all()
    return World(stripe, sf, links)


def _dupes(values: list[Any]) -> dict[Any, int]:
    return {v: n for v, n in Counter(values).items() if n > 1}


def invariant_problems(world: World, reference: dict[str, set[str]] | None = None) -> list[str]:
    """Everything wrong with the end state; empty when the connector kept every promise."""
    p: list[str] = []
    sf, st = world.sf, world.stripe
    ids = {o["id"] for objs in st.values() for o in objs}

    # exactly one Stripe object per Salesforce record, each owned by a real record
    owners = [c["metadata"].get("salesforce_account_id") for c in st["customer"]]
    if d := _dupes(owners):
        p.append(f"Accounts with more than one Customer: {d}")
    for c in st["customer"]:
        acc = sf["Account"].get(c["metadata"].get("salesforce_account_id"))
        if acc is None:
            p.append(f"orphan Customer {c['id']} (no Account {c['metadata']})")
        elif not acc.get("Billing_Entity__c"):
            p.append(f"Customer {c['id']} for Account {acc['Id']} that is not a billing entity")
        elif acc.get("Stripe_Customer_ID__c") != c["id"]:
            p.append(f"Customer {c['id']} not written back to Account {acc['Id']}")
    billed = world.orders_billed()
    if d := _dupes([s["metadata"].get("salesforce_order_id") for s in billed]):
        p.append(f"Orders billed more than once: {d}")
    for s in billed:
        order = sf["Order"].get(s["metadata"].get("salesforce_order_id"))
        if order is None:
            p.append(f"orphan {s['object']} {s['id']} (metadata {s['metadata']})")
        elif order.get("Status") != "Activated":
            p.append(f"{s['id']} bills Order {order['Id']} in status {order.get('Status')}")
        elif order.get("Stripe_Subscription_ID__c") not in (s["id"], s.get("subscription")):
            # (a schedule the connector made from the Order's subscription keeps its id there)
            p.append(f"{s['id']} not written back to Order {order['Id']}")
        elif order.get("Stripe_Sync_Status__c") != "Synced":
            p.append(
                f"Order {order['Id']} billed by {s['id']} but its status is {order['Stripe_Sync_Status__c']}"
            )
    if d := _dupes([x["metadata"].get("salesforce_product_id") for x in st["product"]]):
        p.append(f"Product2 with more than one Stripe Product: {d}")
    for x in st["product"]:
        prod = sf["Product2"].get(x["metadata"].get("salesforce_product_id"))
        if prod is None or prod.get("Stripe_Product_ID__c") != x["id"]:
            p.append(f"orphan or unlinked Product {x['id']} ({x['metadata']})")
    # One price per (PricebookEntry or OrderItem, spec): identical specs on different discounted
    # lines are separate prices by design.
    price_keys = [
        (x["metadata"].get("salesforce_record_id"), x["metadata"].get("cpq2stripe_price_key"))
        for x in st["price"]
    ]
    if d := _dupes(price_keys):
        p.append(f"prices created twice for one record and spec: {d}")
    item_keys = [
        (
            x["metadata"].get("salesforce_order_id"),
            x["metadata"].get("salesforce_order_item_id"),
            x["metadata"].get("cpq2stripe_catch_up"),
        )
        for x in st.get("invoiceitem", [])
    ]
    if d := _dupes(item_keys):
        p.append(f"invoice items created twice for one Order line: {d}")
    if d := _dupes([m["event_name"] for m in st["billing.meter"]]):
        p.append(f"meters created twice: {d}")
    product_ids = {x["id"] for x in st["product"]}
    used_prices = _prices_in_use(world)
    for x in st["price"]:
        if x["product"] not in product_ids:
            p.append(f"Price {x['id']} of an unknown product {x['product']}")
        if x["id"] not in used_prices:
            p.append(f"orphan Price {x['id']} (no PricebookEntry, OrderItem or subscription uses it)")
    for m in st["billing.meter"]:
        if m["event_name"].removeprefix("cpq2stripe_") not in sf["Product2"]:
            p.append(f"orphan meter {m['id']} {m['event_name']}")

    # every Stripe object is linked exactly once in the state store, and every link exists
    # an Amendment's or Renewal's Order is linked to its contract's object, which its first Order owns
    changes = {i for i, o in sf["Order"].items() if o.get("Type") in ("Amendment", "Renewal")}
    linked = [
        link.stripe_id
        for link in world.links
        if link.stripe_id and not (link.object_type == "subscription" and link.sf_id in changes)
    ]
    if d := _dupes(linked):
        p.append(f"Stripe ids linked to more than one record: {d}")
    linked_set = set(linked)
    for t, objs in st.items():
        if t == "subscription":
            objs = [s for s in objs if not s.get("schedule")]
        for o in objs:
            if o["id"] not in linked_set:
                p.append(f"{t} {o['id']} is not linked in the state store")
    for link in world.links:
        if link.status == "linked" and link.stripe_id not in ids:
            p.append(f"link {link.object_type} {link.sf_id} -> {link.stripe_id} points at nothing")
        if link.status == "pending":
            p.append(f"link {link.object_type} {link.sf_id} still pending (intent never resolved)")

    # every Stripe id written to Salesforce exists; refused and failed records created nothing
    for sobject, fname in SF_ID_FIELDS.items():
        for rec in sf[sobject].values():
            value = rec.get(fname)
            if value and value not in ids:
                p.append(f"{sobject} {rec['Id']}.{fname} = {value} does not exist in Stripe")
    billed_orders = {s["metadata"].get("salesforce_order_id") for s in billed}
    customers_of = {c["metadata"].get("salesforce_account_id") for c in st["customer"]}
    for order in sf["Order"].values():
        if order.get("Stripe_Sync_Status__c") in ("Refused", "Failed") and order["Id"] in billed_orders:
            p.append(f"Order {order['Id']} is {order['Stripe_Sync_Status__c']} but was billed")
        if order.get("Status") == "Activated" and order.get("Stripe_Sync_Status__c") in (None, "Pending"):
            p.append(f"activated Order {order['Id']} was never processed")
    for acc in sf["Account"].values():
        if acc.get("Stripe_Sync_Status__c") in ("Refused", "Failed") and acc["Id"] in customers_of:
            p.append(f"Account {acc['Id']} is {acc['Stripe_Sync_Status__c']} but has a Customer")
        if acc.get("Billing_Entity__c") and acc.get("Stripe_Sync_Status__c") in (None, "Pending"):
            p.append(f"billing entity Account {acc['Id']} was never processed")

    # the same records ended up in Stripe as in an undisturbed run of the same org
    if reference is not None:
        got = world.outcomes()
        for kind, expected in reference.items():
            if got[kind] != expected:
                p.append(
                    f"{kind}: missing {sorted(expected - got[kind])[:10]}, "
                    f"unexpected {sorted(got[kind] - expected)[:10]}"
                )
    return p


def _prices_in_use(world: World) -> set[str]:
    used = {
        rec.get("Stripe_Price_ID__c")
        for name in ("PricebookEntry", "OrderItem")
        for rec in world.sf[name].values()
        if rec.get("Stripe_Price_ID__c")
    }
    for s in world.stripe["subscription"]:
        used.update(_price_id(i["price"]) for i in s["items"]["data"])
        used.update(_price_id(i.get("price")) for i in s.get("add_invoice_items") or [])
    for sched in world.stripe["subscription_schedule"]:
        for phase in sched["phases"]:
            used.update(_price_id(i["price"]) for i in phase.get("items") or [])
            used.update(_price_id(i.get("price")) for i in phase.get("add_invoice_items") or [])
    return used


def _price_id(price: Any) -> str | None:
    return price.get("id") if isinstance(price, dict) else price


@dataclass
class Tally:
    """Where kills landed / which faults were injected; printed with -s and kept for the report."""

    title: str
    counts: Counter = field(default_factory=Counter)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def render(self) -> str:
        body = ", ".join(f"{k}: {n}" for k, n in sorted(self.counts.items()))
        return f"{self.title} ({sum(self.counts.values())}): {body}"

"""A dry run tells the truth: it plans what the following run does (the Accounts an Order needs
included), shows what each Order and new Account would become, exits as the run would, and each
record is counted once, under its own object."""

from __future__ import annotations

import csv
import socket
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from connector.state import StateStore

from .conftest import run_cli
from .test_orders import ONE_TIME, Org, currency_mode, stripe_posts  # noqa: F401  (fixture)

ALL = ("accounts", "orders")


def _mix(sandbox: Any) -> dict[str, str]:
    """Two valid Orders, one whose Account is not a billing entity, one whose Account has bad
    data, one the order rules refuse."""
    org = Org(sandbox)
    suite = [{"product": "Suite", "price": 100.0, "quantity": 2}]
    ids = {
        "good": org.order(
            org.account(Name="Acme"), [*suite, {"product": "Setup", "price": 500.0, "kind": ONE_TIME}]
        )[0],
        "good2": org.order(org.account(Name="Umbrella"), suite)[0],
        "not_entity": org.order(org.account(Name="Hooli", Billing_Entity__c=False), suite)[0],
        "bad_account": org.order(org.account(Name="Narnia Ltd", BillingCountry="Narnia"), suite)[0],
        "refused": org.order(
            org.account(Name="Initech"), [{"product": "Suite", "price": 10.0, "quantity": 1.5}]
        )[0],
    }
    return ids


def _actions(reports: list[Any]) -> dict[tuple[str, str], Counter[str]]:
    """Per report (object) and object kind: how many records had each action."""
    out: dict[tuple[str, str], Counter[str]] = {}
    for r in reports:
        for o in r.outcomes:
            out.setdefault((r.kind, o.object_type), Counter())[o.action] += 1
    return out


@pytest.mark.parametrize("objects", [ALL, ("orders",)], ids=["accounts+orders", "orders-only"])
def test_a_dry_run_counts_exactly_what_the_run_then_does(sandbox, run_sync, objects):
    ids = _mix(sandbox)

    dry = run_sync(objects, dry_run=True)
    assert stripe_posts(sandbox) == []
    real = run_sync(objects)

    assert _actions(dry.reports) == _actions(real.reports)
    accounts, orders = real.reports[0], real.reports[1]
    # Each record once, under its own object: Acme and Umbrella (billing entities, valid) are
    # created, and Initech when Accounts are synced (its Order, refused, needs none); Narnia Ltd
    # fails; Hooli is not the connector's business.
    assert {o.object_type for o in accounts.outcomes} == {"customer"}
    created = 3 if "accounts" in objects else 2
    assert Counter(o.status for o in accounts.outcomes) == Counter(created=created, failed=1)
    assert {o.object_type for o in orders.outcomes} == {"subscription"}
    assert Counter(o.status for o in orders.outcomes) == Counter(created=2, refused=3)
    assert Counter(o.action for o in dry.reports[1].outcomes) == Counter(create=2, refuse=3)
    for key in ("not_entity", "bad_account", "refused"):
        assert (
            dry.outcome(ids[key]).message.split("Fix:")[0] == real.outcome(ids[key]).message.split("Fix:")[0]
        )
    assert "not a billing entity" in dry.outcome(ids["not_entity"]).message
    assert "Narnia" in dry.outcome(ids["bad_account"]).message


def test_the_order_preview_shows_what_stripe_would_get(sandbox, run_sync):
    org = Org(sandbox)
    known = org.account(Name="Globex")
    run_sync(("accounts",))
    linked, _ = org.order(
        known,
        [
            {"product": "Suite", "price": 100.0, "quantity": 3},
            {"product": "Setup", "price": 500.0, "kind": ONE_TIME},
        ],
    )
    new, _ = org.order(org.account(Name="Initrode"), [{"product": "Suite", "price": 100.0}])

    dry = run_sync(ALL, dry_run=True)

    message = dry.outcome(linked).message
    customer = sandbox.sf_admin.get_record("Account", known)["Stripe_Customer_ID__c"]
    assert message.startswith(f"subscription for {customer}; USD every month; ")
    assert "items: Suite 3 × 100.00" in message
    assert "one-time: Setup 1 × 500.00" in message
    assert "starts today, ends " in message
    assert dry.outcome(new).message.startswith("subscription for new customer for Initrode;")
    account_preview = dry.outcome(org_account_id(dry, "Initrode")).message
    assert "name='Initrode'" in account_preview and "address.country='US'" in account_preview


def org_account_id(result: Any, name: str) -> str:
    return next(
        o.sf_id for r in result.reports for o in r.outcomes if o.object_type == "customer" and o.label == name
    )


def test_sync_dry_run_prints_the_preview_and_exits_as_the_run_would(sandbox, store_url):
    _mix(sandbox)

    dry = run_cli(sandbox, store_url, "sync", "--dry-run")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "subscription for new customer for Acme; USD every month; items: Suite 2 × 100.00" in dry.stdout
    assert "Accounts → Customers (dry run, nothing changed): 3 create, 1 error" in dry.stdout
    assert "Orders → Subscriptions (dry run, nothing changed): 2 create, 3 refuse" in dry.stdout

    real = run_cli(sandbox, store_url, "sync")
    assert real.returncode == 1, real.stdout + real.stderr
    assert "Accounts → Customers: 3 created, 0 updated, 0 unchanged, 1 failed, 0 refused" in real.stdout
    assert "Orders → Subscriptions: 2 created, 0 updated, 0 unchanged, 0 failed, 3 refused" in real.stdout

    status = run_cli(sandbox, store_url, "status")
    assert "3 customer created" in status.stdout and "2 subscription created" in status.stdout
    assert "3 subscription refused" in status.stdout and "1 customer failed" in status.stdout


def test_a_backfill_counts_each_record_once_under_its_object(sandbox, store_url, tmp_path: Path):
    _mix(sandbox)
    failures = tmp_path / "failures.csv"

    dry = run_cli(sandbox, store_url, "backfill", "--dry-run", "--objects", "orders")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    real = run_cli(sandbox, store_url, "backfill", "--objects", "orders", "--failures-csv", str(failures))
    assert real.returncode == 1, real.stdout + real.stderr

    # Accounts created for Orders are Accounts, even when only Orders were asked for.
    assert "dry run, nothing changed: 2 create, 1 error" in dry.stdout
    assert "dry run, nothing changed: 2 create, 3 refuse" in dry.stdout
    lines = real.stdout.splitlines()
    accounts = lines.index(next(x for x in lines if x.startswith("Accounts → Customers")))
    orders = lines.index(next(x for x in lines if x.startswith("Orders → Subscriptions")))
    assert lines[accounts + 1].strip() == "2 created, 0 updated, 0 unchanged, 0 refused, 1 failed"
    assert lines[orders + 1].strip() == "2 created, 0 updated, 0 unchanged, 3 refused, 0 failed"
    rows = list(csv.DictReader(failures.open(encoding="utf-8")))
    assert Counter(r["object"] for r in rows) == Counter(Order=3, Account=1)
    assert len({r["record_id"] for r in rows}) == len(rows)


def test_the_backfill_failures_csv_lists_a_failed_account_once(sandbox, store_url, tmp_path: Path):
    org = Org(sandbox)
    bad = org.account(Name="Narnia Ltd", BillingCountry="Narnia")
    org.order(bad, [{"product": "Suite", "price": 100.0}])
    failures = tmp_path / "failures.csv"

    real = run_cli(sandbox, store_url, "backfill", "--failures-csv", str(failures))

    assert real.returncode == 1, real.stdout + real.stderr
    rows = list(csv.DictReader(failures.open(encoding="utf-8")))
    assert [(r["record_id"], r["object"]) for r in rows if r["record_id"] == bad] == [(bad, "Account")]
    assert Counter(r["object"] for r in rows) == Counter(Account=1, Order=1)
    with StateStore.open(store_url) as store:
        run = store.runs.last("backfill")
        assert run is not None and run.counts == {"customer failed": 1, "subscription refused": 1}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_dry_run_that_cannot_reach_salesforce_says_so(sandbox, store_url):
    env = {**sandbox.env, "CPQ2STRIPE_SALESFORCE_LOGIN_URL": f"https://127.0.0.1:{_closed_port()}"}

    dry = run_cli(SimpleNamespace(env=env), store_url, "sync", "--dry-run")

    assert dry.returncode == 3, dry.stdout + dry.stderr
    assert "nothing to do" not in dry.stdout
    assert "STOPPED" in dry.stdout or "stopped" in dry.stdout.lower()
    assert "refused" in (dry.stdout + dry.stderr).lower() or "connect" in (dry.stdout + dry.stderr).lower()

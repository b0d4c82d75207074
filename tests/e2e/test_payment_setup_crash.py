"""Payment setup links under kills: whatever point a run dies at, an Account's request gets one
Checkout Session, and its link reaches Salesforce (marked slow in tests/conftest.py: it kills
processes). The first request and a new request after an expired link both."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import run_cli
from tests.e2e.test_orders import Org, record, stripe_objects

REQUEST = "Stripe_Payment_Setup_Requested__c"
POINTS = ["payment_setup.after_intent", "payment_setup.after_create", "payment_setup.after_link"]


def _sync(sandbox, store_url, crash_at: str | None = None):
    return run_cli(sandbox, store_url, "sync", "--objects", "accounts,payment_setup", crash_at=crash_at)


def _sessions(sandbox, account: str) -> list[dict]:
    return [
        s
        for s in stripe_objects(sandbox, "checkout.session")
        if s["metadata"]["salesforce_account_id"] == account
    ]


def _killed_then_finished(sandbox, store_url, crash_at: str) -> None:
    killed = _sync(sandbox, store_url, crash_at)
    assert killed.returncode != 0
    for _ in range(2):  # the rerun finishes; one more changes nothing
        done = _sync(sandbox, store_url)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("crash_at", POINTS)
def test_a_kill_anywhere_makes_one_link_and_writes_it_back(sandbox, store_url, crash_at: str) -> None:
    account = Org(sandbox).account(**{REQUEST: True})

    _killed_then_finished(sandbox, store_url, crash_at)

    [session] = _sessions(sandbox, account)
    row = record(sandbox, "Account", account)
    assert row["Stripe_Payment_Setup_URL__c"] == session["url"] and session["status"] == "open"


@pytest.mark.parametrize("crash_at", POINTS)
def test_a_kill_while_replacing_an_expired_link_makes_one_new_link(sandbox, store_url, crash_at: str) -> None:
    account = Org(sandbox).account(**{REQUEST: True})
    assert _sync(sandbox, store_url).returncode == 0
    [first] = _sessions(sandbox, account)
    sandbox.stripe_admin.abandon_checkout(first["id"])
    assert _sync(sandbox, store_url).returncode == 0  # the expiry is written back, the request cleared
    assert record(sandbox, "Account", account)[REQUEST] is False
    sandbox.sf_admin.patch_record("Account", account, {REQUEST: True})

    _killed_then_finished(sandbox, store_url, crash_at)

    sessions = _sessions(sandbox, account)
    assert len(sessions) == 2
    [second] = [s for s in sessions if s["id"] != first["id"]]
    assert record(sandbox, "Account", account)["Stripe_Payment_Setup_URL__c"] == second["url"]

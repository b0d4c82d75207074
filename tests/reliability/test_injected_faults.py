"""Injected faults: a full sync while both fakes answer a fixed share of requests with faults —
Stripe 429 / 500 / dropped connections (after the create ran) / answers slower than the client's
timeout, Salesforce 503 / UNABLE_TO_LOCK_ROW / REQUEST_LIMIT_EXCEEDED, and every session expired
from a thread while the run goes on. Everything must end synced exactly as in an undisturbed run,
with one Stripe object per record; the retries it took are counted and printed (-s)."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from connector.mapping import load_mappings
from connector.state import StateStore
from connector.sync.runner import open_context, run_pass, run_retry
from tests.e2e.conftest import settings_for

from .conftest import Tally, invariant_problems, snapshot, sync_until_done

SEED = 4242
STRIPE_KINDS = ["500", "429", "drop", "slow"]
SALESFORCE_KINDS = ["503", "UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED"]
CLIENT_TIMEOUT_SECONDS = 1.0  # the connector gives up on a Stripe answer after this…
SLOW_SECONDS = 1.5  # …and a "slow" fault answers after this (having done the work)


def _count_faults(monkeypatch, sandbox: Any) -> tuple[Tally, Tally]:
    """Wrap both fakes' fault draws (in this process) to count what was injected, per kind."""
    stripe_tally, sf_tally = Tally("Stripe faults injected"), Tally("Salesforce faults injected")
    faults = sandbox.servers.stripe.state.faults
    original_pick = faults.pick

    def pick() -> str | None:
        kind = original_pick()
        if kind:
            stripe_tally.add(kind)
        return kind

    monkeypatch.setattr(faults, "pick", pick)
    app = sandbox.servers.salesforce.app
    original_draw = app._draw_fault

    def draw(write: bool) -> str | None:
        kind = original_draw(write)
        if kind:
            sf_tally.add(kind)
        return kind

    monkeypatch.setattr(app, "_draw_fault", draw)
    return stripe_tally, sf_tally


class TokenExpirer(threading.Thread):
    """Expires every Salesforce session again and again while the run goes on."""

    def __init__(self, sandbox: Any, every_seconds: float = 0.4) -> None:
        super().__init__(daemon=True)
        self.sandbox, self.every, self.done, self.count = sandbox, every_seconds, threading.Event(), 0

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.sandbox.sf_admin._admin("POST", "expire-tokens")
            self.count += 1

    def stop(self) -> None:
        self.done.set()
        self.join()


def _retryable(database_url: str) -> set[tuple[str, str, str]]:
    with StateStore.open(database_url) as store:
        return {(f.sf_id, f.error_code, f.message) for f in store.failures.all(retryable=True)}


def _seed(sandbox: Any, size: Any) -> list[str]:
    sandbox.sf_admin.reset()
    sandbox.stripe_admin.reset()
    sandbox.stripe_admin.config(rps=1000, latency_ms=0, error_rate=0)
    sandbox.sf_admin.seed(accounts=size.accounts, orders=size.orders, seed=SEED, contracts=size.contracts)
    with sandbox.org.lock:
        return sorted(r["Id"] for r in sandbox.org.records("Account"))


def test_everything_syncs_once_through_injected_faults(sandbox, store_url, size, tmp_path: Path, monkeypatch):
    accounts = _seed(sandbox, size)
    reference_db = f"sqlite:///{tmp_path / 'reference' / 'connector.db'}"
    sync_until_done(sandbox, reference_db)
    reference = snapshot(sandbox, reference_db).outcomes()
    # Orders waiting on an Account with bad data stay retryable in any run: not the faults' doing
    expected_waits = _retryable(reference_db)
    assert _seed(sandbox, size) == accounts

    stripe_tally, sf_tally = _count_faults(monkeypatch, sandbox)
    sandbox.stripe_admin.config(
        error_rate=size.fault_rate, error_kinds=STRIPE_KINDS, slow_seconds=SLOW_SECONDS, seed=SEED
    )
    # Salesforce sees ~a dozen calls a pass (bulk queries, 200-record writes): a higher share
    sandbox.sf_admin.faults(min(0.35, size.fault_rate * 3.5), SALESFORCE_KINDS, seed=SEED)
    settings = settings_for(sandbox, store_url, stripe_timeout_seconds=CLIENT_TIMEOUT_SECONDS)
    mappings = load_mappings(settings.mappings_dir)
    retries = Counter()
    expirer = TokenExpirer(sandbox)
    expirer.start()
    passes = retry_rounds = 0
    try:
        for _ in range(8):
            passes += 1
            with open_context(settings, mappings) as ctx:
                reports = run_pass(ctx, dry_run=False, objects=["accounts", "orders"])
                retries["stripe 429 retried by the gateway"] += ctx.gateway.rate_limited
                retries["salesforce requests retried by the session"] += ctx.sf.session.retries
                retries["salesforce re-authentications"] += ctx.sf.reauthentications
                retries["stripe calls"] += ctx.gateway.total_calls
                changed = any(o.status in ("created", "updated") for r in reports for o in r.outcomes)
                fatal = [r.fatal for r in reports if r.fatal]
            if (
                _retryable(store_url) - expected_waits
            ):  # don't wait for the backoff: what `cpq2stripe retry --all` does
                retry_rounds += 1
                run_retry(settings, mappings, record_id=None, out=lambda _line: None)
                continue
            if not changed and not fatal:
                break
    finally:
        expirer.stop()
    injected_sf = dict(sf_tally.counts)
    sandbox.stripe_admin.config(error_rate=0)
    sandbox.sf_admin.clear_faults()

    # with the faults gone, a plain pass has nothing left to do
    final = sync_until_done(sandbox, store_url)
    world = snapshot(sandbox, store_url)
    left = sorted(_retryable(store_url) - expected_waits)
    report = (
        f"\n[faults] {passes} faulty passes, {retry_rounds} retry --all rounds, then {len(final)} clean\n"
        f"[faults] {stripe_tally.render()}\n[faults] Salesforce faults injected: {injected_sf}, "
        f"sessions expired {expirer.count} times\n[faults] retries counted: {dict(retries)}\n"
        f"[faults] end state: {world.counts()}"
    )
    print(report)
    sys.stdout.flush()
    assert left == [], report + "\n" + "\n".join(map(str, left[:20]))
    assert final == [0] or final == [1], report  # nothing changed once the faults stopped
    problems = invariant_problems(world, reference)
    assert problems == [], report + "\n" + "\n".join(problems[:40])
    for kind in STRIPE_KINDS:
        assert stripe_tally.counts[kind] > 0, report
    for kind in SALESFORCE_KINDS:
        assert sf_tally.counts[kind] > 0, report
    assert retries["salesforce re-authentications"] > 0, report


def test_a_create_whose_answer_was_dropped_is_not_made_twice(sandbox, store_url, monkeypatch):
    """Stripe creates the Customer, then the connection drops before the answer: every retry
    (the SDK's, then the connector's next pass) must get that same Customer, never a second."""
    ids = [
        sandbox.sf_admin.create_record(
            "Account",
            {
                "Name": f"Dropped Answer {i}",
                "Billing_Email__c": f"ap{i}@dropped.example",
                "BillingCountry": "US",
                "Billing_Entity__c": True,
            },
        )
        for i in range(3)
    ]
    faults = sandbox.servers.stripe.state.faults
    drops = {"left": 8, "done": 0}

    def pick() -> str | None:
        # drop the answers of every customer create (the endpoint still runs) until 8 are dropped
        request = sys._getframe(1).f_locals.get("req")
        is_create = request is not None and request.method == "POST" and request.path == "/v1/customers"
        if is_create and drops["left"] > 0:
            drops["left"] -= 1
            drops["done"] += 1
            return "drop"
        return None

    monkeypatch.setattr(faults, "pick", pick)
    database_url = store_url
    settings = settings_for(sandbox, database_url, stripe_timeout_seconds=CLIENT_TIMEOUT_SECONDS)
    mappings = load_mappings(settings.mappings_dir)
    for _ in range(4):
        with open_context(settings, mappings) as ctx:
            run_pass(ctx, dry_run=False, objects=["accounts"])
        with StateStore.open(database_url) as store:
            if store.failures.all(retryable=True):
                run_retry(settings, mappings, record_id=None, out=lambda _line: None)
    assert drops["done"] == 8
    customers = [c for c in sandbox.stripe_admin.objects("customer") if not c.get("deleted")]
    assert sorted(c["metadata"]["salesforce_account_id"] for c in customers) == sorted(ids)
    posts = [
        r for r in sandbox.stripe_admin.requests() if r["method"] == "POST" and r["path"] == "/v1/customers"
    ]
    keys = Counter(r["idempotency_key"] for r in posts)
    assert len(keys) == 3 and sum(keys.values()) >= 8 + 3, keys  # dropped answers were retried…
    for c in customers:  # …and each Account points at its one Customer
        assert (
            sandbox.sf_admin.get_record("Account", c["metadata"]["salesforce_account_id"])[
                "Stripe_Customer_ID__c"
            ]
            == c["id"]
        )

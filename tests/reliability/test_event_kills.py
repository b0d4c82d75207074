"""Chaos on the event path: the daemon SIGKILLed in the middle of a burst of Salesforce edits and
new Accounts, again and again. After each kill the poll is silenced (its cursor moved past the
burst), so only the Pub/Sub listener, resuming from its stored replay id, can deliver what the
kill interrupted: if a replay id were ever stored before the records it names were applied, those
edits would never reach Stripe and the wait below would time out. At the end: every edit in
Stripe, every new Account exactly one Customer, the invariants every suite checks."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector.state import StateStore
from connector.stripe_sink.customers import SALESFORCE_ID_KEY
from tests.e2e.conftest import REPO

from .conftest import connector_env, invariant_problems, snapshot, sync_until_done

SEED = 4242
ACCOUNT_TOPIC = "/data/AccountChangeEvent"
ROUNDS = 4
EDITS = 90  # per burst: edits of synced Accounts ...
NEW = 6  # ... and new billing Accounts (creates through events)
WAIT = 120.0


def _wait(what: str, condition: Callable[[], Any], timeout: float = WAIT, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def _customers(sandbox: Any) -> list[dict[str, Any]]:
    return [c for c in sandbox.stripe_admin.objects("customer") if not c.get("deleted")]


def _arrived(sandbox: Any, marker: str, created: list[str]) -> tuple[int, int]:
    """(edited Customers carrying `marker`, Customers of the new Accounts)."""
    customers = _customers(sandbox)
    edited = sum(1 for c in customers if c.get("description") == marker)
    owners = {(c.get("metadata") or {}).get(SALESFORCE_ID_KEY) for c in customers}
    return edited, sum(1 for a in created if a in owners)


def _silence_the_poll(url: str) -> None:
    """Move the Account cursor past everything edited so far: a restart's poll finds nothing."""
    with StateStore.open(url) as store:
        store.cursors.set("Account", datetime.now(UTC) + timedelta(seconds=1), [])


def _listening(url: str) -> bool:
    with StateStore.open(url) as store:
        beats = store.instances.list_heartbeats()
        connected = any(ACCOUNT_TOPIC in (b.info.get("listener_connected") or []) for b in beats)
        return connected and bool(store.cursors.replay_id(ACCOUNT_TOPIC))


def test_sigkill_mid_burst_loses_no_event_and_creates_nothing_twice(sandbox, store_url, tmp_path: Path):
    sandbox.sf_admin.reset()
    sandbox.stripe_admin.reset()
    sandbox.sf_admin.seed(accounts=EDITS * 2, orders=0, seed=SEED)
    sync_until_done(sandbox, store_url)
    with sandbox.org.lock:
        synced = sorted(r["Id"] for r in sandbox.org.records("Account") if r.get("Stripe_Customer_ID__c"))
    assert len(synced) >= EDITS, len(synced)
    # Stretch a burst over a second or two so a kill lands inside it; keepalives every 0.2 s give
    # the listener a stored position before the first burst.
    sandbox.stripe_admin.config(rps=60, latency_ms=20, error_rate=0)
    sandbox.sf_admin._admin("POST", "pubsub/config", {"keepalive_seconds": 0.2})
    env = connector_env(
        sandbox,
        store_url,
        CPQ2STRIPE_POLL_INTERVAL_SECONDS="3600",
        CPQ2STRIPE_CURSOR_OVERLAP_SECONDS="0",
        CPQ2STRIPE_HEARTBEAT_INTERVAL_SECONDS="1",
        CPQ2STRIPE_STRIPE_RPS="60",
        CPQ2STRIPE_LEADER_LEASE_TTL_SECONDS="3",  # a killed leader's lease (PostgreSQL) expires soon
    )
    rng = random.Random(SEED)
    logs = tmp_path / "logs"
    logs.mkdir()
    started: list[subprocess.Popen[str]] = []

    def start(name: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "--json-logs", "run"],
            env=env,
            cwd=REPO,
            stdout=(logs / f"{name}.out").open("w"),
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(proc)
        _wait(f"{name}: the listener connected with a stored replay id", lambda: _listening(store_url))
        return proc

    mid_burst = 0
    created: list[str] = []
    try:
        daemon = start("daemon-0")
        for round_no in range(1, ROUNDS + 1):
            marker = f"burst {round_no}"
            edited = rng.sample(synced, EDITS)
            new = []
            for i, account_id in enumerate(edited):
                sandbox.sf_admin.patch_record("Account", account_id, {"Description": marker})
                if i % (EDITS // NEW) == 0 and len(new) < NEW:
                    new.append(
                        sandbox.sf_admin.create_record(
                            "Account",
                            {
                                "Name": f"Evented {round_no}-{len(new)}",
                                "BillingCountry": "DE",
                                "Billing_Entity__c": True,
                                "Description": marker,
                            },
                        )
                    )
            created += new
            # SIGKILL once part of the burst reached Stripe
            part = rng.randint(5, EDITS // 2)
            _wait(
                f"round {round_no}: part of the burst applied",
                lambda m=marker, k=part: _arrived(sandbox, m, [])[0] >= k,
                step=0.02,
            )
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(timeout=30)
            mid_burst += _arrived(sandbox, marker, new) != (EDITS + len(new), len(new))
            _silence_the_poll(store_url)

            daemon = start(f"daemon-{round_no}")
            _wait(
                f"round {round_no}: every edit and new Account in Stripe after the restart",
                lambda m=marker, n=new: _arrived(sandbox, m, n) == (EDITS + len(n), len(n)),
            )
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    assert mid_burst >= ROUNDS - 1, f"only {mid_burst} of {ROUNDS} kills landed inside a burst"
    owners = [(c.get("metadata") or {}).get(SALESFORCE_ID_KEY) for c in _customers(sandbox)]
    assert all(owners.count(a) == 1 for a in created), "a new Account got two Customers"
    world = snapshot(sandbox, store_url)
    assert invariant_problems(world) == []

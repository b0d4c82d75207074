"""`cpq2stripe run` end to end: the daemon as a subprocess against the sandbox.

Every wait polls for a condition (generous limits); nothing asserts on elapsed time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.state import StateStore
from connector.stripe_sink.customers import SALESFORCE_ID_KEY

from .conftest import MAPPINGS, REPO
from .test_accounts_sync import ACME

WAIT = 90.0  # seconds: the most any condition below may take on a slow machine


def wait_for(what: str, condition: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last value {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def customers(sandbox: Any) -> list[dict[str, Any]]:
    return [c for c in sandbox.stripe_admin.objects("customer") if not c.get("deleted")]


@dataclass
class Daemon:
    proc: subprocess.Popen
    log_path: Path
    out_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def daemon_env(sandbox: Any, tmp_path: Path) -> Callable[..., dict[str, str]]:
    def make(database_url: str, mappings_dir: Path = MAPPINGS, **overrides: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CPQ2STRIPE_")}
        env.update(sandbox.env)
        env.update(
            CPQ2STRIPE_DATABASE_URL=database_url,
            CPQ2STRIPE_MAPPINGS_DIR=str(mappings_dir),
            CPQ2STRIPE_POLL_INTERVAL_SECONDS="1",
            CPQ2STRIPE_RETRY_INTERVAL_SECONDS="2",
            CPQ2STRIPE_HEARTBEAT_INTERVAL_SECONDS="1",
            CPQ2STRIPE_STRIPE_RPS="200",
            PYTHONPATH=str(REPO),
        )
        env.update({f"CPQ2STRIPE_{k.upper()}": str(v) for k, v in overrides.items()})
        return env

    return make


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(env: dict[str, str], *args: str, name: str = "daemon") -> Daemon:
        log_path = tmp_path / f"{name}-{len(started)}.log"
        out_path = tmp_path / f"{name}-{len(started)}.out"
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "--json-logs", "run", *args],
            env=env,
            cwd=tmp_path,
            stdout=out_path.open("w"),
            stderr=log_path.open("w"),
        )
        daemon = Daemon(proc, log_path, out_path)
        started.append(daemon)
        return daemon

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(timeout=30)


def store_for(url: str) -> StateStore:
    return StateStore.open(url)


def test_sigterm_exits_0_with_cursor_saved_heartbeat_removed_lease_released(
    sandbox, sqlite_url, daemon_env, start_daemon
):
    ids = [sandbox.sf_admin.create_record("Account", {**ACME, "Name": f"Acme {i}"}) for i in range(5)]
    daemon = start_daemon(daemon_env(sqlite_url))
    store = store_for(sqlite_url)
    try:
        wait_for("5 customers", lambda: len(customers(sandbox)) == 5)
        wait_for("the Account cursor", lambda: store.cursors.get("Account").modstamp is not None)
        wait_for(
            "a leader heartbeat", lambda: [b for b in store.instances.list_heartbeats() if b.role == "leader"]
        )

        assert daemon.stop(signal.SIGTERM) == 0

        assert store.cursors.get("Account").modstamp is not None
        assert store.instances.list_heartbeats() == []
        assert store.instances.lease_holder("daemon") is None
        linked = {link.sf_id for link in store.links.all(object_type="customer", status="linked")}
        assert linked == set(ids)
        log = daemon.log()
        assert "SIGTERM received" in log and "stopped" in log
        # One structured line per record action, with the record's fields.
        created = [r for r in daemon.records() if r.get("record", {}).get("status") == "created"]
        assert {r["record"]["sf_id"] for r in created} == set(ids)
    finally:
        store.close()


def test_sigint_also_stops_cleanly(sandbox, sqlite_url, daemon_env, start_daemon):
    daemon = start_daemon(daemon_env(sqlite_url))
    store = store_for(sqlite_url)
    try:
        wait_for(
            "a leader heartbeat", lambda: [b for b in store.instances.list_heartbeats() if b.role == "leader"]
        )
        assert daemon.stop(signal.SIGINT) == 0
        assert store.instances.list_heartbeats() == []
    finally:
        store.close()


def test_invalid_mapping_refuses_to_start_with_the_report(sandbox, sqlite_url, daemon_env, tmp_path):
    broken = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, broken)
    (broken / "customer.yaml").write_text(
        (broken / "customer.yaml").read_text() + "\nnot_a_key: 1\n", encoding="utf-8"
    )
    result = subprocess.run(
        [sys.executable, "-m", "connector", "run"],
        env=daemon_env(sqlite_url, broken),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "Refusing to start" in output
    assert "customer.yaml" in output and "not_a_key" in output


def test_broken_mapping_edit_keeps_the_last_good_mapping(
    sandbox, sqlite_url, daemon_env, start_daemon, tmp_path
):
    mappings = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, mappings)
    account_id = sandbox.sf_admin.create_record("Account", ACME)
    daemon = start_daemon(daemon_env(sqlite_url, mappings))
    wait_for("the first customer", lambda: len(customers(sandbox)) == 1)

    customer_yaml = mappings / "customer.yaml"
    customer_yaml.write_text(
        customer_yaml.read_text(encoding="utf-8") + "\nfields_typo: [\n", encoding="utf-8"
    )
    wait_for("the reload failure in the log", lambda: "mapping reload failed" in daemon.log())
    assert "keeping the last good mapping" in daemon.log()
    problems = [r for r in daemon.records() if r["message"].startswith("mapping problem:")]
    assert problems and all("customer.yaml" in r["message"] for r in problems)

    sandbox.sf_admin.patch_record("Account", account_id, {"Name": "Acme Renamed AG"})
    wait_for(
        "the renamed customer in Stripe",
        lambda: [c for c in customers(sandbox) if c["name"] == "Acme Renamed AG"],
    )
    assert daemon.proc.poll() is None
    assert len(customers(sandbox)) == 1

    # A fixed file is picked up again.
    shutil.copy(MAPPINGS / "customer.yaml", customer_yaml)
    wait_for("the reload", lambda: "mappings reloaded" in daemon.log())
    assert daemon.stop() == 0


def test_second_daemon_on_the_same_sqlite_database_refuses(sandbox, sqlite_url, daemon_env, start_daemon):
    first = start_daemon(daemon_env(sqlite_url))
    store = store_for(sqlite_url)
    try:
        wait_for("the first daemon's heartbeat", lambda: store.instances.list_heartbeats())
        result = subprocess.run(
            [sys.executable, "-m", "connector", "run"],
            env=daemon_env(sqlite_url),
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert result.returncode == 2
        output = result.stdout + result.stderr
        assert "Another cpq2stripe daemon is running on this SQLite database" in output
        assert f"pid {first.proc.pid}" in output
        assert first.proc.poll() is None  # the first one is untouched
        assert first.stop() == 0
    finally:
        store.close()


def test_metrics_endpoint_serves_counters_and_status_shows_the_instance(
    sandbox, sqlite_url, daemon_env, start_daemon, tmp_path
):
    for i in range(3):
        sandbox.sf_admin.create_record("Account", {**ACME, "Name": f"Metered {i}"})
    port = free_port()
    env = daemon_env(sqlite_url)
    daemon = start_daemon(env, "--metrics-port", str(port))

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            return ""

    text = wait_for(
        "3 created customers in /metrics",
        lambda: (
            (t := scrape())
            and 'cpq2stripe_records_total{object="customer",status="created",trigger="poll"} 3' in t
            and t
        ),
    )
    assert 'cpq2stripe_api_calls_total{kind="customers.create",service="stripe",stripe_account=""} 3' in text
    assert 'service="salesforce"' in text
    assert "cpq2stripe_leader 1" in text
    assert "# TYPE cpq2stripe_event_lag_seconds gauge" in text

    def status() -> str:
        return subprocess.run(
            [sys.executable, "-m", "connector", "status"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=WAIT,
        ).stdout

    shown = wait_for("the instance in status with its counters", lambda: "synced 3" in (s := status()) and s)
    assert "leader (holds the lease)" in shown and f"pid {daemon.proc.pid}" in shown
    assert daemon.stop() == 0
    assert "none running" in status()


def test_a_sigkilled_leader_blocks_manual_runs_until_its_lease_expires_then_shows_as_former(
    sandbox, sqlite_url, daemon_env, start_daemon, tmp_path
):
    env = daemon_env(sqlite_url, leader_lease_ttl_seconds=3)
    daemon = start_daemon(env)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "connector", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )

    store = store_for(sqlite_url)
    try:
        wait_for(
            "the daemon leading",
            lambda: [
                b
                for b in store.instances.list_heartbeats()
                if b.role == "leader" and b.pid == daemon.proc.pid
            ],
        )
        refused = cli("sync")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"pid {daemon.proc.pid} on {socket.gethostname()}" in refused.stderr
        assert cli("sync", "--dry-run").returncode == 0

        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(timeout=WAIT)
        lease = store.instances.lease("daemon")  # a killed daemon leaves its lease and heartbeat
        assert lease is not None and lease.holder.split(":")[1] == str(daemon.proc.pid)
        wait_for("the lease to expire", lambda: datetime.now(UTC) > lease.expires_at)

        # the first look after expiry already shows it as not leading, in text and JSON
        [instance] = json.loads(cli("status", "--json").stdout)["instances"]
        assert instance["pid"] == daemon.proc.pid
        assert instance["role"] == "former leader" and instance["leading"] is False
        assert instance["lease_expires_at"] == lease.expires_at.isoformat()
        expired = lease.expires_at.isoformat(timespec="seconds")
        assert f"former leader, lease expired at {expired}, last heartbeat " in cli("status").stdout

        ran = cli("sync")  # the same rule: an expired lease blocks nothing
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "Refusing" not in ran.stderr
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_standby_takes_over_when_the_leader_is_killed_without_duplicates(
    sandbox, postgres_schema_url, daemon_env, start_daemon
):
    n = 120
    for i in range(n):
        sandbox.sf_admin.create_record("Account", {**ACME, "Name": f"Failover {i:03d}"})
    # Slow Stripe down so the leader is killed in the middle of its first sync.
    sandbox.stripe_admin.config(latency_ms=40)
    env = daemon_env(postgres_schema_url, leader_lease_ttl_seconds=3, stripe_rps=20)
    first = start_daemon(env, name="a")
    second = start_daemon(env, name="b")
    store = store_for(postgres_schema_url)
    try:
        beats = wait_for(
            "one leader and one standby",
            lambda: (
                (b := store.instances.list_heartbeats())
                and sorted(x.role for x in b) == ["leader", "standby"]
                and b
            ),
        )
        leader = next(b for b in beats if b.role == "leader")
        victim, survivor = (first, second) if leader.pid == first.proc.pid else (second, first)
        wait_for("some customers", lambda: len(customers(sandbox)) >= 10)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=WAIT)

        wait_for(
            "the standby to lead",
            lambda: any(
                b.role == "leader" and b.pid == survivor.proc.pid for b in store.instances.list_heartbeats()
            ),
        )
        late = sandbox.sf_admin.create_record("Account", {**ACME, "Name": "After failover"})
        wait_for("every Account synced", lambda: len(customers(sandbox)) >= n + 1, timeout=180)
        wait_for(
            "the late Account linked",
            lambda: store.links.get(
                store.links.all(object_type="customer")[0].stripe_account, "customer", late
            ),
        )
        found = customers(sandbox)
        owners = [c["metadata"].get(SALESFORCE_ID_KEY) for c in found]
        assert len(found) == n + 1
        assert len(set(owners)) == n + 1  # exactly one Customer per Account
        assert survivor.stop() == 0
    finally:
        store.close()


def test_an_event_syncs_a_change_long_before_the_next_poll(sandbox, sqlite_url, daemon_env, start_daemon):
    pytest.importorskip("connector.salesforce.pubsub.listener")
    if "CPQ2STRIPE_SALESFORCE_PUBSUB_URL" not in sandbox.env:
        pytest.skip("this sandbox has no Pub/Sub API")
    account_id = sandbox.sf_admin.create_record("Account", ACME)
    daemon = start_daemon(daemon_env(sqlite_url, poll_interval_seconds=3600))
    wait_for("the first poll's customer", lambda: len(customers(sandbox)) == 1)
    wait_for(
        "the listener's stream", lambda: '"listener_connected"' in daemon.log() or _connected(sqlite_url)
    )

    sandbox.sf_admin.patch_record("Account", account_id, {"Name": "Acme Evented SE"})
    wait_for(
        "the event-driven update", lambda: [c for c in customers(sandbox) if c["name"] == "Acme Evented SE"]
    )
    events = [r for r in daemon.records() if r.get("record", {}).get("trigger") == "event"]
    assert any(r["record"]["sf_id"] == account_id and r["record"]["status"] == "updated" for r in events)
    assert daemon.stop() == 0


def _connected(url: str) -> bool:
    store = store_for(url)
    try:
        return any(b.info.get("listener_connected") for b in store.instances.list_heartbeats())
    finally:
        store.close()


def test_sigterm_mid_poll_finishes_the_page_in_flight_and_a_restart_completes_without_duplicates(
    sandbox, sqlite_url, daemon_env, start_daemon
):
    n = 2300  # two SOQL pages (2,000 a page)
    for i in range(n):
        sandbox.sf_admin.create_record("Account", {**ACME, "Name": f"Bulk {i:04d}"})
    env = daemon_env(sqlite_url, stripe_rps=150, shutdown_timeout_seconds=300)
    daemon = start_daemon(env)
    wait_for("the first customers", lambda: len(customers(sandbox)) >= 20)
    assert daemon.stop(signal.SIGTERM, timeout=400) == 0

    store = store_for(sqlite_url)
    try:
        done = len(customers(sandbox))
        assert done == 2000  # the page in flight was finished; the next one was never read
        run = store.runs.last("sync")
        assert run.status == "partial" and "between pages" in (run.error or "")
        assert store.cursors.get("Account").modstamp is not None
        assert store.instances.list_heartbeats() == [] and store.instances.lease_holder("daemon") is None
    finally:
        store.close()

    again = start_daemon(env, name="again")
    wait_for("every Account", lambda: len(customers(sandbox)) >= n, timeout=300)
    assert again.stop() == 0
    owners = [c["metadata"].get(SALESFORCE_ID_KEY) for c in customers(sandbox)]
    assert len(owners) == n and len(set(owners)) == n

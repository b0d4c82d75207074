"""A manual run beside a live daemon, and a dead leader's lease, on a real state store: the run
refuses while the leader lease is live, `status` shows the same holder as the leader, and both
stop counting it the moment its lease has expired."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from connector.daemon.leader import LEASE_NAME, LeaderIsLive, refuse_beside_live_leader
from connector.state import StateStore
from connector.status import print_status


def _daemon(url: str, ttl: timedelta, *, instance: str = "host-a:4242:abcd", pid: int = 4242) -> StateStore:
    """What a daemon leaves in the store: its lease (`ttl` from now, negative = expired) and beat."""
    store = StateStore.open(url)
    assert store.instances.acquire_lease(LEASE_NAME, instance, ttl)
    store.instances.heartbeat(instance, "leader", "host-a", pid, {})
    return store


def _status(url: str, *, as_json: bool = False) -> str:
    out: list[str] = []
    settings = SimpleNamespace(database_url=url, heartbeat_interval_seconds=5.0)
    print_status(settings, failed_only=False, out=out.append, as_json=as_json)  # type: ignore[arg-type]
    return "\n".join(out)


def test_a_run_beside_a_live_leader_is_refused_naming_it_and_the_fixes(sqlite_url):
    store = _daemon(sqlite_url, timedelta(seconds=60))
    lease = store.instances.lease(LEASE_NAME)
    store.close()

    with pytest.raises(LeaderIsLive) as refused:
        refuse_beside_live_leader(sqlite_url, "sync", force=False)
    message = str(refused.value)
    assert "Refusing to run `cpq2stripe sync`" in message
    assert "pid 4242 on host-a" in message and "host-a:4242:abcd" in message
    assert f"leader since {lease.acquired_at.isoformat(timespec='seconds')}" in message
    assert f"expires at {lease.expires_at.isoformat(timespec='seconds')}" in message
    assert "SIGTERM to pid 4242 on host-a" in message and "--force" in message and "retry" in message

    # status agrees: the same instance is the leader
    assert "leader (holds the lease)" in _status(sqlite_url)
    [instance] = json.loads(_status(sqlite_url, as_json=True))["instances"]
    assert instance["role"] == "leader" and instance["leading"] is True
    assert instance["lease_expires_at"] == lease.expires_at.isoformat()


def test_force_runs_beside_the_leader_with_a_warning_and_a_dry_run_is_never_refused(sqlite_url, caplog):
    _daemon(sqlite_url, timedelta(seconds=60)).close()
    with caplog.at_level(logging.WARNING, logger="connector.daemon.leader"):
        refuse_beside_live_leader(sqlite_url, "backfill", force=True)
    assert "--force: running `cpq2stripe backfill` beside the live daemon (pid 4242 on host-a" in caplog.text
    refuse_beside_live_leader(sqlite_url, "reconcile", force=False, dry_run=True)


def test_a_leader_whose_lease_expired_blocks_nothing_and_is_shown_as_a_former_leader(sqlite_url):
    store = _daemon(sqlite_url, timedelta(seconds=-1))  # killed: its lease ran out a second ago
    lease = store.instances.lease(LEASE_NAME)
    beat = store.instances.list_heartbeats()[0]
    store.close()

    refuse_beside_live_leader(sqlite_url, "sync", force=False)  # does not raise

    text = _status(sqlite_url)
    assert (
        f"former leader, lease expired at {lease.expires_at.isoformat(timespec='seconds')}, "
        f"last heartbeat {beat.beat_at.isoformat(timespec='seconds')}"
    ) in text
    assert "holds the lease" not in text
    [instance] = json.loads(_status(sqlite_url, as_json=True))["instances"]
    assert instance["role"] == "former leader" and instance["leading"] is False
    assert instance["lease_expires_at"] == lease.expires_at.isoformat()


def test_a_leader_whose_lease_was_taken_over_is_a_former_leader_naming_the_new_holder(sqlite_url):
    store = _daemon(sqlite_url, timedelta(seconds=-1))
    assert store.instances.acquire_lease(LEASE_NAME, "host-b:7:ef01", timedelta(seconds=60))
    store.close()
    assert "former leader, the lease is held by host-b:7:ef01" in _status(sqlite_url)
    with pytest.raises(LeaderIsLive, match="instance host-b:7:ef01"):  # no heartbeat yet: named by id
        refuse_beside_live_leader(sqlite_url, "retry", force=False)


def test_an_unreadable_state_store_is_left_for_the_run_to_report(tmp_path):
    refuse_beside_live_leader("postgresql+psycopg://nobody@127.0.0.1:1/none", "sync", force=False)


def test_the_lease_keeps_when_it_was_taken_across_renewals_and_restarts_it_on_takeover(store_url):
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = StateStore.open(store_url, clock=lambda: now[0])
    try:
        assert store.instances.acquire_lease(LEASE_NAME, "a", timedelta(seconds=10))
        taken = now[0]
        now[0] += timedelta(seconds=5)
        assert store.instances.acquire_lease(LEASE_NAME, "a", timedelta(seconds=10))  # renewal
        lease = store.instances.lease(LEASE_NAME)
        assert lease.acquired_at == taken and lease.expires_at == now[0] + timedelta(seconds=10)
        assert store.instances.live_leader().lease.holder == "a"

        now[0] += timedelta(seconds=10)  # exactly at expiry: no longer live
        assert store.instances.live_leader() is None
        assert store.instances.acquire_lease(LEASE_NAME, "b", timedelta(seconds=10))  # takeover
        lease = store.instances.lease(LEASE_NAME)
        assert lease.holder == "b" and lease.acquired_at == now[0]
    finally:
        store.close()

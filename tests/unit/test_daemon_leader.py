"""One active instance: the leader lease as the daemon uses it (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from connector.daemon.leader import LEASE_NAME, AlreadyRunning, Leadership, claim_single_instance
from connector.state import StateStore


class Clock:
    """Drives both the store's wall clock and the leader's monotonic clock."""

    def __init__(self) -> None:
        self.wall = datetime(2026, 1, 1, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clocked_store(store_url: str, clock: Clock):
    s = StateStore.open(store_url, clock=clock.now)
    try:
        yield s
    finally:
        s.close()


def test_exactly_one_instance_leads_and_a_standby_takes_over_after_expiry(clocked_store, clock):
    a = Leadership(clocked_store, "a", 15, clock=clock.monotonic)
    b = Leadership(clocked_store, "b", 15, clock=clock.monotonic)
    assert a.tick() and a.is_leader()
    assert not b.tick() and not b.is_leader()

    clock.advance(5)
    assert a.tick()  # renewed
    clock.advance(14)
    assert not b.tick()  # a renewed 14 s ago: still valid

    clock.advance(2)  # a stopped renewing 16 s ago: expired
    assert b.tick() and b.is_leader()
    assert not a.tick()
    assert not a.is_leader()  # a leader that fails to renew stops at once


def test_the_leaders_own_view_expires_before_the_lease_does(clocked_store, clock):
    a = Leadership(clocked_store, "a", 15, clock=clock.monotonic)
    assert a.tick()
    clock.advance(15 * 0.8)
    assert not a.is_leader()  # no renewal within the trusted part of the ttl


def test_a_store_error_ends_leadership(clocked_store, clock, monkeypatch):
    a = Leadership(clocked_store, "a", 15, clock=clock.monotonic)
    assert a.tick()

    def down(*_a, **_k):
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(clocked_store.instances, "acquire_lease", down)
    assert not a.tick()
    assert not a.is_leader()


def test_release_frees_the_lease_for_the_next_instance(clocked_store, clock):
    a = Leadership(clocked_store, "a", 15, clock=clock.monotonic)
    b = Leadership(clocked_store, "b", 15, clock=clock.monotonic)
    assert a.tick()
    a.release()
    assert clocked_store.instances.lease_holder(LEASE_NAME) is None
    assert b.tick()


def test_sqlite_second_instance_is_refused_naming_the_live_one(sqlite_url):
    store = StateStore.open(sqlite_url)
    try:
        first = Leadership(store, "first", 15)
        claim_single_instance(first)
        store.instances.heartbeat("first", "leader", socket.gethostname(), os.getpid(), {})
        with pytest.raises(AlreadyRunning) as err:
            claim_single_instance(Leadership(store, "second", 15))
        message = str(err.value)
        assert "instance first" in message and f"pid {os.getpid()}" in message
        assert "use PostgreSQL" in message
    finally:
        store.close()


def test_sqlite_lease_of_a_dead_process_on_this_host_is_taken_over(sqlite_url):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = StateStore.open(sqlite_url)
    try:
        assert store.instances.acquire_lease(LEASE_NAME, "ghost", timedelta(seconds=60))
        store.instances.heartbeat("ghost", "leader", socket.gethostname(), dead.pid, {})
        claim_single_instance(Leadership(store, "me", 15))
        assert store.instances.lease_holder(LEASE_NAME)[0] == "me"
        assert [b.instance_id for b in store.instances.list_heartbeats()] == []
    finally:
        store.close()

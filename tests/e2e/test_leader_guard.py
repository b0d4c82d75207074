"""Manual runs as an operator types them, beside a daemon's live leader lease in the state store
(the daemon itself, killed with SIGKILL, is in test_daemon.py): refused with exit 2 naming it,
run with --force, never refused for a dry run or once the lease has expired."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connector.daemon.leader import LEASE_NAME
from connector.state import StateStore

from .conftest import run_cli
from .test_accounts_sync import ACME

INSTANCE = "ops-host:31337:feedbeef"


def _lead(url: str, ttl: timedelta) -> None:
    """The rows a daemon (`cpq2stripe run`) on ops-host keeps while it leads."""
    with StateStore.open(url) as store:
        assert store.instances.acquire_lease(LEASE_NAME, INSTANCE, ttl)
        store.instances.heartbeat(INSTANCE, "leader", "ops-host", 31337, {})


@pytest.mark.parametrize(
    "command", [["sync"], ["backfill", "--failures-csv", "/dev/null"], ["retry", "--all"], ["reconcile"]]
)
def test_each_run_command_refuses_beside_a_live_leader(sandbox, sqlite_url, command):
    sandbox.sf_admin.create_record("Account", ACME)
    _lead(sqlite_url, timedelta(minutes=5))

    result = run_cli(sandbox, sqlite_url, *command)

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"Refusing to run `cpq2stripe {command[0]}`" in result.stderr
    assert "pid 31337 on ops-host" in result.stderr and "--force" in result.stderr
    assert sandbox.stripe_admin.objects("customer") == []  # nothing was written


def test_force_runs_beside_it_with_a_warning_and_a_dry_run_is_not_refused(sandbox, sqlite_url):
    sandbox.sf_admin.create_record("Account", ACME)
    _lead(sqlite_url, timedelta(minutes=5))

    dry = run_cli(sandbox, sqlite_url, "sync", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Refusing" not in dry.stderr and "create" in dry.stdout

    forced = run_cli(sandbox, sqlite_url, "sync", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "--force: running `cpq2stripe sync` beside the live daemon (pid 31337 on ops-host" in forced.stderr
    assert len(sandbox.stripe_admin.objects("customer")) == 1


def test_a_leader_whose_lease_has_expired_does_not_block(sandbox, sqlite_url):
    sandbox.sf_admin.create_record("Account", ACME)
    _lead(sqlite_url, timedelta(seconds=-1))  # killed: its lease ran out

    result = run_cli(sandbox, sqlite_url, "sync")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Refusing" not in result.stderr
    assert len(sandbox.stripe_admin.objects("customer")) == 1
    status = run_cli(sandbox, sqlite_url, "status")
    assert "former leader, lease expired at" in status.stdout

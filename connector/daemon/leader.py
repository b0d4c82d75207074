"""One active instance: the `daemon` lease in the state store.

The leader takes the lease for `ttl` and renews it every `ttl / 3`; a standby tries to take it on
the same beat and gets it once the leader stops renewing (it died) and the lease expires. The
leader's own view is local and pessimistic: the lease counts as held only until a monotonic
deadline shorter than the ttl, and any failed renewal (lost, or the database unreachable) ends it
at once, so a leader that cannot prove it still holds the lease stops working before anyone else
can take over. Clocks of the hosts must agree (NTP): expiry is compared in UTC wall time.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from connector.state.instances import LEADER_LEASE, LeaderView
from connector.state.store import StateStore

log = logging.getLogger(__name__)

LEASE_NAME = LEADER_LEASE
# Of the ttl, how much this instance trusts its own lease after a successful renewal.
TRUST_FRACTION = 0.8


def new_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class AlreadyRunning(Exception):
    """SQLite allows one daemon per database; the message names the live one."""


class Leadership:
    def __init__(
        self,
        store: StateStore,
        instance_id: str,
        ttl_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.instance_id = instance_id
        self.ttl = timedelta(seconds=ttl_seconds)
        self._clock = clock
        self._valid_until: float | None = None

    @property
    def renew_interval(self) -> float:
        return self.ttl.total_seconds() / 3

    def is_leader(self) -> bool:
        valid_until = self._valid_until
        return valid_until is not None and self._clock() < valid_until

    def tick(self) -> bool:
        """Take or renew the lease; False (and no longer leader) if that failed for any reason."""
        started = self._clock()
        try:
            held = self.store.instances.acquire_lease(LEASE_NAME, self.instance_id, self.ttl)
        except Exception as exc:
            if self._valid_until is not None:
                log.error("could not renew the leader lease (%s): stopping work", exc)
            else:
                log.warning("could not reach the state store for the leader lease: %s", exc)
            self._valid_until = None
            return False
        if held:
            self._valid_until = started + self.ttl.total_seconds() * TRUST_FRACTION
        else:
            if self._valid_until is not None:
                log.error("the leader lease was taken by another instance: stopping work")
            self._valid_until = None
        return held

    def release(self) -> None:
        self._valid_until = None
        try:
            self.store.instances.release_lease(LEASE_NAME, self.instance_id)
        except Exception as exc:
            log.warning("could not release the leader lease (it expires by itself): %s", exc)


def _pid_gone(host: str, pid: int) -> bool:
    """True only when the holder ran on this host and its process no longer exists."""
    if host != socket.gethostname() or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def claim_single_instance(leadership: Leadership) -> None:
    """SQLite: take the lease now or raise AlreadyRunning naming the live holder.

    A holder on this host whose process is gone (killed -9) is released at once instead of making
    the operator wait for its lease to expire.
    """
    if leadership.tick():
        return
    store = leadership.store
    holder = store.instances.lease_holder(LEASE_NAME)
    beats = {b.instance_id: b for b in store.instances.list_heartbeats()}
    if holder is not None:
        holder_id, expires_at = holder
        beat = beats.get(holder_id)
        if beat is not None and _pid_gone(beat.host, beat.pid):
            log.warning("the previous daemon (pid %d) is gone; taking over its lease", beat.pid)
            store.instances.release_lease(LEASE_NAME, holder_id)
            store.instances.remove_heartbeat(holder_id)
            if leadership.tick():
                return
        now = datetime.now(UTC)
        where = (
            f"pid {beat.pid} on {beat.host}, last heartbeat {(now - beat.beat_at).total_seconds():.0f} s ago"
            if beat is not None
            else "no heartbeat recorded"
        )
        left = max(0.0, (expires_at - now).total_seconds())
        raise AlreadyRunning(
            f"Another cpq2stripe daemon is running on this SQLite database ({store.engine.url.database}): "
            f"instance {holder_id} ({where}) holds the lease for {left:.0f} s more. SQLite allows one "
            "daemon per database: stop the other one, or use PostgreSQL to run a standby. If that "
            "process is gone, start again once its lease has expired."
        )
    raise AlreadyRunning("could not take the daemon lease on the SQLite database; try again")


class LeaderIsLive(Exception):
    """A manual run would write beside the live daemon; the message names it and the ways out."""


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def describe_leader(leader: LeaderView, now: datetime) -> str:
    """Which daemon leads, where, since when and until when its lease runs, for people."""
    lease, beat = leader.lease, leader.beat
    where = f"pid {beat.pid} on {beat.host}" if beat is not None else f"instance {lease.holder}"
    beat_text = (
        f", last heartbeat {max(0.0, (now - beat.beat_at).total_seconds()):.0f} s ago"
        if beat is not None
        else ", no heartbeat recorded"
    )
    return (
        f"{where} (instance {lease.holder}), leader since {_when(lease.acquired_at)}, "
        f"its lease expires at {_when(lease.expires_at)} unless renewed{beat_text}"
    )


def refuse_beside_live_leader(database_url: str, command: str, *, force: bool, dry_run: bool = False) -> None:
    """Stop a manual run (`sync`, `backfill`, `retry`, `reconcile`) while a daemon leads on the same
    state store: two writers on the same records race each other and share one Stripe request
    budget. Raises LeaderIsLive naming the leader and the fixes; with `force` it logs a warning and
    returns. A dry run writes nothing and is never refused. "Leads" is the rule `status` shows:
    the leader lease has not expired (Lease.live_at), so a killed daemon stops counting once its
    lease runs out. A state store that cannot be read is left for the run itself to report."""
    if dry_run:
        return
    try:
        with StateStore.open(database_url) as store:
            leader = store.instances.live_leader()
            now = store.db.clock()
    except Exception as exc:
        log.debug("could not check for a live daemon before %s: %s", command, exc)
        return
    if leader is None:
        return
    who = describe_leader(leader, now)
    if force:
        log.warning(
            "--force: running `cpq2stripe %s` beside the live daemon (%s); both write to the same records "
            "and share Stripe's request budget",
            command,
            who,
        )
        return
    stop = (
        f"stop the daemon (SIGTERM to pid {leader.beat.pid} on {leader.beat.host}) and run this again"
        if leader.beat is not None
        else "stop the daemon and run this again"
    )
    raise LeaderIsLive(
        f"Refusing to run `cpq2stripe {command}`: a daemon (`cpq2stripe run`) leads on this state store:\n"
        f"  {who}.\n"
        "Two writers on the same records race each other and double the Stripe requests. Either:\n"
        f"  - {stop},\n"
        "  - or run beside it anyway: add --force,\n"
        "  - or leave failed records to the daemon: its retry job re-runs them when their backoff is due.\n"
        "A daemon killed without stopping holds the lease until it expires; then this command runs."
    )

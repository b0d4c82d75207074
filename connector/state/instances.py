"""Which connector instance may work (the leader lease) and which are alive (heartbeats)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, literal, select

from connector.state.db import Database
from connector.state.models import Heartbeat, HeartbeatRow, LeaseRow, UTCDateTime, table_of

LEADER_LEASE = "daemon"  # the daemon's leader lease (connector.daemon.leader)


@dataclass(frozen=True)
class Lease:
    """A named lease as stored: who holds it, since when, until when."""

    name: str
    holder: str
    acquired_at: datetime  # when `holder` took it (renewals keep it)
    expires_at: datetime

    def live_at(self, now: datetime) -> bool:
        """The one rule for "held": not yet expired. A holder killed without releasing it keeps
        its row until then; from then on anyone may take it (acquire_lease), `status` shows the
        holder as a former leader and a manual run no longer waits for it."""
        return self.expires_at > now


@dataclass(frozen=True)
class LeaderView:
    """The leader lease and the holder's heartbeat (host, pid, last beat), if it wrote one."""

    lease: Lease
    beat: Heartbeat | None


class Instances:
    def __init__(self, db: Database) -> None:
        self._db = db

    def acquire_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take or renew the lease `name` for `holder` if it is free, expired or already ours.

        One atomic upsert (conditional ON CONFLICT DO UPDATE) on both SQLite and PostgreSQL, so
        two daemons racing for it cannot both win.
        """
        now = self._db.clock()
        table = table_of(LeaseRow)
        stmt = (
            self._db.insert(LeaseRow)
            .values(name=name, holder=holder, expires_at=now + ttl, acquired_at=now)
            .on_conflict_do_update(
                index_elements=["name"],
                set_={
                    "holder": holder,
                    "expires_at": now + ttl,
                    # a renewal keeps the time it was taken; a takeover starts it again
                    "acquired_at": case(
                        (table.c.holder == holder, table.c.acquired_at), else_=literal(now, UTCDateTime())
                    ),
                },
                # free once no longer live (Lease.live_at): the same instant status and runs use
                where=(table.c.expires_at <= now) | (table.c.holder == holder),
            )
        )
        with self._db.session() as s:
            s.execute(stmt)
            current = s.get(LeaseRow, name, populate_existing=True)
            return current is not None and current.holder == holder

    def release_lease(self, name: str, holder: str) -> None:
        with self._db.session() as s:
            s.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))

    def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        lease = self.lease(name)
        return (lease.holder, lease.expires_at) if lease else None

    def lease(self, name: str) -> Lease | None:
        with self._db.session() as s:
            row = s.get(LeaseRow, name)
            return Lease(row.name, row.holder, row.acquired_at, row.expires_at) if row else None

    def live_leader(self) -> LeaderView | None:
        """The daemon holding the leader lease now (Lease.live_at), with its heartbeat; None when
        no lease is held or it has expired (its holder stopped renewing: killed, cut off)."""
        lease = self.lease(LEADER_LEASE)
        if lease is None or not lease.live_at(self._db.clock()):
            return None
        beat = next((b for b in self.list_heartbeats() if b.instance_id == lease.holder), None)
        return LeaderView(lease, beat)

    def heartbeat(self, instance_id: str, role: str, host: str, pid: int, info: Mapping[str, Any]) -> None:
        now = self._db.clock()
        values = {"role": role, "host": host, "pid": pid, "beat_at": now, "info": dict(info)}
        with self._db.session() as s:
            s.execute(
                self._db.insert(HeartbeatRow)
                .values(instance_id=instance_id, started_at=now, **values)
                .on_conflict_do_update(index_elements=["instance_id"], set_=values)
            )

    def remove_heartbeat(self, instance_id: str) -> None:
        with self._db.session() as s:
            s.execute(delete(HeartbeatRow).where(HeartbeatRow.instance_id == instance_id))

    def list_heartbeats(self) -> list[Heartbeat]:
        with self._db.session() as s:
            return [
                Heartbeat.of(r) for r in s.scalars(select(HeartbeatRow).order_by(HeartbeatRow.beat_at.desc()))
            ]

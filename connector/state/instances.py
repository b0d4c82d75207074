"""Which connector instance may work (the leader lease) and which are alive (heartbeats)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from connector.state.db import Database
from connector.state.models import Heartbeat, HeartbeatRow, LeaseRow, table_of


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
                set_={"holder": holder, "expires_at": now + ttl},
                where=(table.c.expires_at < now) | (table.c.holder == holder),
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
        with self._db.session() as s:
            row = s.get(LeaseRow, name)
            return (row.holder, row.expires_at) if row else None

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

"""Runs (one row per sync, retry or backfill, with its counts) and the sync log (one entry per
action that did something), which `cpq2stripe status` and `cpq2stripe log` read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import delete, func, select

from connector.state.db import Database, aware, refreshing, rowcount
from connector.state.failures import MESSAGE_MAX
from connector.state.models import RUN_STATUSES, LogEntry, Run, RunRow, SyncLogRow, table_of


class Runs:
    def __init__(self, db: Database) -> None:
        self._db = db

    def start(self, kind: str) -> int:
        with self._db.session() as s:
            row = RunRow(kind=kind, status="running", started_at=self._db.clock(), counts={})
            s.add(row)
            s.flush()
            return row.id

    def finish(self, run_id: int, counts: Mapping[str, int], status: str, error: str | None = None) -> Run:
        if status not in RUN_STATUSES - {"running"}:
            raise ValueError(f"a run finishes as one of {sorted(RUN_STATUSES - {'running'})}, not {status!r}")
        with self._db.session() as s:
            row = s.get(RunRow, run_id, populate_existing=True)
            if row is None:
                raise LookupError(f"no run {run_id}")
            row.counts = {str(k): int(v) for k, v in counts.items()}
            row.status = status
            row.error = error[:MESSAGE_MAX] if error else None
            row.finished_at = self._db.clock()
            s.flush()
            return Run.of(row)

    def last(self, kind: str, *, status: str | None = None) -> Run | None:
        """The most recently started run of ``kind`` (optionally only those with ``status``)."""
        query = refreshing(RunRow).where(RunRow.kind == kind)
        if status is not None:
            query = query.where(RunRow.status == status)
        with self._db.session() as s:
            row = s.scalar(query.order_by(RunRow.started_at.desc(), RunRow.id.desc()).limit(1))
            return Run.of(row) if row else None

    def log_action(self, entries: Iterable[LogEntry]) -> int:
        """Append sync actions in one executemany INSERT; entries without ``at`` get now."""
        now = self._db.clock()
        rows = [
            {
                "at": aware(e.at, "at") if e.at else now,
                "run_id": e.run_id,
                "object_type": e.object_type,
                "sf_object": e.sf_object,
                "sf_id": e.sf_id,
                "stripe_id": e.stripe_id,
                "action": e.action,
                "status": e.status,
                "message": e.message[:MESSAGE_MAX] if e.message else e.message,
            }
            for e in entries
        ]
        if rows:
            with self._db.session() as s:
                s.execute(table_of(SyncLogRow).insert(), rows)
        return len(rows)

    def list_log(
        self,
        *,
        object_type: str | None = None,
        sf_id: str | None = None,
        stripe_id: str | None = None,
        action: str | None = None,
        status: str | None = None,
        run_id: int | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[LogEntry]:
        """Newest first."""
        query = refreshing(SyncLogRow)
        for column, value in (
            (SyncLogRow.object_type, object_type),
            (SyncLogRow.sf_id, sf_id),
            (SyncLogRow.stripe_id, stripe_id),
            (SyncLogRow.action, action),
            (SyncLogRow.status, status),
            (SyncLogRow.run_id, run_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(SyncLogRow.at >= aware(since, "since"))
        query = query.order_by(SyncLogRow.at.desc(), SyncLogRow.id.desc()).limit(limit)
        with self._db.session() as s:
            return [LogEntry.of(r) for r in s.scalars(query)]

    def prune_log(self, older_than: datetime) -> int:
        """Delete log entries before ``older_than``; returns how many."""
        with self._db.session() as s:
            result = s.execute(delete(SyncLogRow).where(SyncLogRow.at < aware(older_than, "older_than")))
            return rowcount(result)

    def count_log(self) -> int:
        with self._db.session() as s:
            return int(s.scalar(select(func.count()).select_from(SyncLogRow)) or 0)

"""Failures: what went wrong with a record, and when to try it again (exponential backoff)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete

from connector.state.db import Database, aware, chunks, refreshing, rowcount
from connector.state.models import Failure, FailureRow, table_of

BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=6)
MESSAGE_MAX = 4_000


def backoff(attempts: int) -> timedelta:
    """Delay before retry number ``attempts``: 1 min, 2 min, 4 min, … capped at 6 h."""
    if attempts < 1:
        raise ValueError("attempts starts at 1")
    delay: timedelta = BACKOFF_BASE * (2 ** min(attempts - 1, 30))
    return min(delay, BACKOFF_CAP)


class Failures:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self,
        object_type: str,
        sf_object: str,
        sf_id: str,
        error_code: str,
        message: str,
        retryable: bool,
        now: datetime,
    ) -> Failure:
        """Upsert the record's failure: attempts + 1, retry after :func:`backoff` (never if not retryable)."""
        now = aware(now, "now")
        message = message[:MESSAGE_MAX]
        table = table_of(FailureRow)
        stmt = (
            self._db.insert(FailureRow)
            .values(
                object_type=object_type,
                sf_object=sf_object,
                sf_id=sf_id,
                error_code=error_code,
                message=message,
                retryable=retryable,
                attempts=1,
                first_failed_at=now,
                last_failed_at=now,
                next_retry_at=None,
            )
            .on_conflict_do_update(
                index_elements=["object_type", "sf_id"],
                set_={
                    "sf_object": sf_object,
                    "error_code": error_code,
                    "message": message,
                    "retryable": retryable,
                    "attempts": table.c.attempts + 1,
                    "last_failed_at": now,
                },
            )
            .returning(table.c.id, table.c.attempts)
        )
        with self._db.session() as s:
            row_id, attempts = s.execute(stmt).one()
            row = s.get(FailureRow, row_id, populate_existing=True)
            assert row is not None
            row.next_retry_at = now + backoff(attempts) if retryable else None
            s.flush()
            return Failure.of(row)

    def clear(self, object_type: str, sf_id: str) -> bool:
        """Forget a record's failure (it synced); True if there was one."""
        with self._db.session() as s:
            result = s.execute(
                delete(FailureRow).where(FailureRow.object_type == object_type, FailureRow.sf_id == sf_id)
            )
            return rowcount(result) > 0

    def clear_many(self, object_type: str, sf_ids: Iterable[str]) -> None:
        """Forget the failures of records that synced, in one DELETE per 5,000 ids."""
        with self._db.session() as s:
            for chunk in chunks(sorted(set(sf_ids))):
                s.execute(
                    delete(FailureRow).where(
                        FailureRow.object_type == object_type, FailureRow.sf_id.in_(chunk)
                    )
                )

    def failing_ids(self, object_type: str, sf_ids: Iterable[str]) -> set[str]:
        """Which of these records have a failure on file (one query per 5,000 ids), so a batch of
        unchanged records clears failures only where there are some."""
        ids = sorted(set(sf_ids))
        out: set[str] = set()
        with self._db.session() as s:
            for chunk in chunks(ids):
                out.update(
                    s.scalars(
                        refreshing(FailureRow.sf_id).where(
                            FailureRow.object_type == object_type, FailureRow.sf_id.in_(chunk)
                        )
                    )
                )
        return out

    def get(self, object_type: str, sf_id: str) -> Failure | None:
        with self._db.session() as s:
            row = s.scalar(
                refreshing(FailureRow).where(FailureRow.object_type == object_type, FailureRow.sf_id == sf_id)
            )
            return Failure.of(row) if row else None

    def due(self, now: datetime, limit: int = 500) -> list[Failure]:
        """Retryable failures whose time has come, longest-waiting first."""
        now = aware(now, "now")
        query = (
            refreshing(FailureRow)
            .where(FailureRow.retryable.is_(True), FailureRow.next_retry_at <= now)
            .order_by(FailureRow.next_retry_at, FailureRow.id)
            .limit(limit)
        )
        with self._db.session() as s:
            return [Failure.of(r) for r in s.scalars(query)]

    def all(
        self, *, object_type: str | None = None, retryable: bool | None = None, limit: int | None = None
    ) -> list[Failure]:
        query = refreshing(FailureRow)
        if object_type is not None:
            query = query.where(FailureRow.object_type == object_type)
        if retryable is not None:
            query = query.where(FailureRow.retryable.is_(retryable))
        with self._db.session() as s:
            return [Failure.of(r) for r in s.scalars(query.order_by(FailureRow.id).limit(limit))]

"""The state database: an engine for SQLite or PostgreSQL, and sessions every store part shares.

Every public method of a part is its own short transaction unless called inside
:meth:`Database.transaction`, which groups them (commit on success, roll back on an exception —
dlt's ``managed_state`` rule). Timestamps are timezone-aware UTC throughout.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, create_engine, event, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from connector.errors import FatalError
from connector.state.migrations import migrate
from connector.state.urls import normalise_database_url

SQLITE_BUSY_TIMEOUT_MS = 30_000
_IN_CHUNK = 5_000  # ids per IN (...) list: a page of 2,000 is one query; SQLite allows 32,766 params


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def rowcount(result: Any) -> int:
    """Rows a DELETE or UPDATE touched (a CursorResult's count; Session.execute is typed Result)."""
    return int(cast(CursorResult[Any], result).rowcount or 0)


def refreshing(model: Any) -> Any:
    """An ORM SELECT that refreshes rows already in the session: inside :meth:`Database.transaction`
    bulk Core UPDATEs and upserts would otherwise leave stale objects in the identity map."""
    return select(model).execution_options(populate_existing=True)


def chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def engine_for(url: str) -> Engine:
    parsed: URL = make_url(normalise_database_url(url))
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_engine(parsed: URL) -> Engine:
    database = parsed.database
    in_memory = not database or database == ":memory:"
    if in_memory:
        engine = create_engine(parsed, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path = Path(str(database))
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 before SQLite opens it: the file holds which customer is which.
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(path, 0o600)
        engine = create_engine(parsed)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own transaction handling is off; "begin" below issues BEGIN IMMEDIATE so
        # a read-then-write transaction takes the write lock up front and waits (busy_timeout)
        # instead of failing with "database is locked" on upgrade.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if not in_memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL" if not in_memory else "PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _unreachable(url: URL, exc: OperationalError) -> FatalError:
    """A clear, password-free message for a state database that cannot be opened."""
    where = url.database if url.get_backend_name() == "sqlite" else f"{url.host}:{url.port or 5432}"
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else "connection failed"
    return FatalError(
        "state_database",
        f"cannot open the state database CPQ2STRIPE_DATABASE_URL ({where}): {reason}. "
        "Fix: start the database or correct CPQ2STRIPE_DATABASE_URL.",
    )


class Database:
    """An engine and the current thread's session. Build one with :meth:`open`."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self.dialect = engine.dialect.name
        self._local = threading.local()

    @classmethod
    def open(cls, url: str, *, clock: Callable[[], datetime] = utcnow) -> Database:
        """Connect and create or migrate the schema (see :mod:`connector.state.migrations`).

        SQLite: the file's directory is created if missing, the file is created with mode 0600,
        and connections use WAL with a busy timeout. PostgreSQL: ``postgresql://`` URLs use
        psycopg 3. Raises :class:`~connector.state.migrations.SchemaTooNew` for a database
        migrated by a newer connector.
        """
        db = cls(engine_for(url), clock=clock)
        try:
            with db.engine.begin() as conn:
                migrate(conn)
        except OperationalError as exc:
            db.close()
            raise _unreachable(db.engine.url, exc) from None
        if db.dialect == "sqlite" and db.engine.url.database not in (None, "", ":memory:"):
            for suffix in ("-wal", "-shm"):
                side = Path(f"{db.engine.url.database}{suffix}")
                if side.exists():
                    os.chmod(side, 0o600)
        return db

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group calls into one transaction; nested use joins the outer one."""
        with self.session():
            yield

    @contextmanager
    def session(self) -> Iterator[Session]:
        current: Session | None = getattr(self._local, "session", None)
        if current is not None:
            yield current
            return
        session = Session(self.engine, expire_on_commit=False, autoflush=True)
        self._local.session = session
        try:
            with session.begin():
                yield session
        finally:
            self._local.session = None
            session.close()

    def insert(self, model: Any) -> Any:
        """The dialect's INSERT, for ON CONFLICT upserts."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(model)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(model)

"""The state store: links, cursors, failures, runs and the sync log, on SQLite or PostgreSQL.

Every public method is its own short transaction unless called inside :meth:`StateStore.transaction`,
which groups them (commit on success, roll back on an exception — dlt's ``managed_state`` rule).
The invariant it serves: a Stripe create is preceded by a *durable* intent row carrying the
idempotency key (:meth:`record_intent` commits before returning), so a crash anywhere leaves either
nothing or an intent whose key the recovery reuses. Timestamps are timezone-aware UTC throughout.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, delete, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from connector.errors import FatalError
from connector.state.cursor import Cursor
from connector.state.migrations import migrate
from connector.state.models import (
    LINK_STATUSES,
    RUN_STATUSES,
    BatchWrites,
    CursorRow,
    Failure,
    FailureRow,
    Heartbeat,
    HeartbeatRow,
    Intent,
    LeaseRow,
    Link,
    LinkRow,
    LinkUpdate,
    LogEntry,
    ReplayIdRow,
    Run,
    RunRow,
    SyncLogRow,
)

BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=6)
SQLITE_BUSY_TIMEOUT_MS = 30_000
_IN_CHUNK = 5_000  # ids per IN (...) list: a page of 2,000 is one query; SQLite allows 32,766 params
_MESSAGE_MAX = 4_000


class LinkNotFound(LookupError):
    """No link row for the key: an intent must be recorded before a link is marked."""


class LinkConflict(RuntimeError):
    """The link already points at another Stripe object: re-pointing it would orphan one."""


def backoff(attempts: int) -> timedelta:
    """Delay before retry number ``attempts``: 1 min, 2 min, 4 min, … capped at 6 h."""
    if attempts < 1:
        raise ValueError("attempts starts at 1")
    return min(BACKOFF_BASE * (2 ** min(attempts - 1, 30)), BACKOFF_CAP)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def _select(model: Any) -> Any:
    """An ORM SELECT that refreshes rows already in the session: inside :meth:`StateStore.transaction`
    bulk Core UPDATEs and upserts would otherwise leave stale objects in the identity map."""
    return select(model).execution_options(populate_existing=True)


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _engine_for(url: str) -> Engine:
    parsed: URL = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    raise ValueError(f"unsupported state database {backend!r}: use sqlite:/// or postgresql://")


def _sqlite_engine(parsed: URL) -> Engine:
    database = parsed.database
    in_memory = not database or database == ":memory:"
    if in_memory:
        engine = create_engine(parsed, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path = Path(database)
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


class StateStore:
    """Links, cursors, failures, runs and the sync log. Build one with :meth:`open`."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.engine = engine
        self._clock = clock
        self._local = threading.local()
        self._dialect = engine.dialect.name

    @classmethod
    def open(cls, url: str, *, clock: Callable[[], datetime] = _utcnow) -> StateStore:
        """Connect and create or migrate the schema (see :mod:`connector.state.migrations`).

        SQLite: the file's directory is created if missing, the file is created with mode 0600,
        and connections use WAL with a busy timeout. PostgreSQL: ``postgresql://`` URLs use
        psycopg 3. Raises :class:`~connector.state.migrations.SchemaTooNew` for a database
        migrated by a newer connector.
        """
        store = cls(_engine_for(url), clock=clock)
        try:
            with store.engine.begin() as conn:
                migrate(conn)
        except OperationalError as exc:
            store.close()
            raise _unreachable(store.engine.url, exc) from None
        if store._dialect == "sqlite" and store.engine.url.database not in (None, "", ":memory:"):
            for suffix in ("-wal", "-shm"):
                side = Path(f"{store.engine.url.database}{suffix}")
                if side.exists():
                    os.chmod(side, 0o600)
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- sessions ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group store calls into one transaction; nested use joins the outer one."""
        with self._session():
            yield

    @contextmanager
    def _session(self) -> Iterator[Session]:
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

    def _insert(self, model: Any) -> Any:
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(model)

    # ---- links ------------------------------------------------------------------------------

    def get_link(self, stripe_account: str, object_type: str, sf_id: str) -> Link | None:
        with self._session() as s:
            row = s.scalar(self._link_query(stripe_account, object_type, sf_id))
            return Link.of(row) if row else None

    def get_links(self, stripe_account: str, object_type: str, sf_ids: Iterable[str]) -> dict[str, Link]:
        """Links by Salesforce id for a whole page (one query per 5,000 ids); absent ids are missing."""
        with self._session() as s:
            return self._links_in(s, stripe_account, object_type, sf_ids)

    def _links_in(
        self, s: Session, stripe_account: str, object_type: str, sf_ids: Iterable[str]
    ) -> dict[str, Link]:
        # Core rows, not ORM objects: a page of 2,000 links costs no identity-map bookkeeping.
        table = LinkRow.__table__
        out: dict[str, Link] = {}
        for chunk in _chunks(sorted(set(sf_ids))):
            rows = s.execute(
                select(table).where(
                    table.c.stripe_account == stripe_account,
                    table.c.object_type == object_type,
                    table.c.sf_id.in_(chunk),
                )
            )
            out.update((r.sf_id, Link.of(r)) for r in rows)
        return out

    def find_by_stripe_id(self, stripe_id: str, stripe_account: str | None = None) -> list[Link]:
        """Every link to a Stripe object (a reused Price can be linked from several records)."""
        query = _select(LinkRow).where(LinkRow.stripe_id == stripe_id)
        if stripe_account is not None:
            query = query.where(LinkRow.stripe_account == stripe_account)
        with self._session() as s:
            return [Link.of(r) for r in s.scalars(query.order_by(LinkRow.id))]

    def record_intent(
        self,
        stripe_account: str,
        object_type: str,
        sf_object: str,
        sf_id: str,
        idempotency_key: str,
        *,
        note: str | None = None,
    ) -> Link:
        """Record a ``pending`` link before the Stripe create; return the row that now exists.

        If a row exists already (a retry, a crash recovery, a concurrent worker) it is returned
        unchanged: the caller must use *its* idempotency key and stripe id. Outside
        :meth:`transaction` the row is committed when this returns.
        """
        now = self._clock()
        stmt = (
            self._insert(LinkRow)
            .values(
                stripe_account=stripe_account,
                object_type=object_type,
                sf_object=sf_object,
                sf_id=sf_id,
                stripe_id=None,
                status="pending",
                idempotency_key=idempotency_key,
                created_at=now,
                updated_at=now,
                note=note,
            )
            .on_conflict_do_nothing(index_elements=["stripe_account", "object_type", "sf_id"])
        )
        with self._session() as s:
            s.execute(stmt)
            row = s.scalar(self._link_query(stripe_account, object_type, sf_id))
            assert row is not None
            return Link.of(row)

    def mark_linked(
        self,
        stripe_account: str,
        object_type: str,
        sf_id: str,
        *,
        stripe_id: str,
        payload_hash: str | None,
        sf_modstamp: datetime | None,
        field_hashes: dict[str, str] | None = None,
    ) -> Link:
        """Set the Stripe id and ``linked`` status after a successful create (or adoption).

        Raises :class:`LinkNotFound` without a prior intent and :class:`LinkConflict` if the
        link already names a different Stripe object.
        """
        with self._session() as s:
            row = s.scalar(self._link_query(stripe_account, object_type, sf_id, for_update=True))
            if row is None:
                raise LinkNotFound(f"no intent recorded for {object_type} {sf_id} on {stripe_account}")
            self._check_repoint(row.stripe_id, stripe_id, object_type, sf_id)
            row.stripe_id = stripe_id
            row.status = "linked"
            row.payload_hash = payload_hash
            row.field_hashes = field_hashes
            row.sf_modstamp = sf_modstamp
            row.updated_at = self._clock()
            s.flush()
            return Link.of(row)

    def mark_linked_many(self, stripe_account: str, object_type: str, updates: Sequence[LinkUpdate]) -> None:
        """:meth:`mark_linked` for a page in one transaction: one SELECT, one executemany UPDATE.

        All or nothing: a missing intent or a re-point raises before anything is written.
        """
        if not updates:
            return
        by_id = {u.sf_id: u for u in updates}
        if len(by_id) != len(updates):
            raise ValueError("mark_linked_many got the same sf_id twice")
        table = LinkRow.__table__
        now = self._clock()
        with self._session() as s:
            current: dict[str, str | None] = {}
            for chunk in _chunks(sorted(by_id)):
                query = select(LinkRow.sf_id, LinkRow.stripe_id).where(
                    LinkRow.stripe_account == stripe_account,
                    LinkRow.object_type == object_type,
                    LinkRow.sf_id.in_(chunk),
                )
                if self._dialect == "postgresql":
                    query = query.with_for_update()
                current.update(s.execute(query).tuples().all())
            missing = sorted(set(by_id) - set(current))
            if missing:
                raise LinkNotFound(f"no intent recorded for {object_type} {', '.join(missing[:5])}")
            for u in updates:
                self._check_repoint(current[u.sf_id], u.stripe_id, object_type, u.sf_id)
            stmt = (
                table.update()
                .where(
                    table.c.stripe_account == stripe_account,
                    table.c.object_type == object_type,
                    table.c.sf_id == bindparam("b_sf_id"),
                )
                .values(
                    stripe_id=bindparam("b_stripe_id"),
                    status="linked",
                    payload_hash=bindparam("b_payload_hash"),
                    field_hashes=bindparam("b_field_hashes"),
                    sf_modstamp=bindparam("b_sf_modstamp"),
                    updated_at=now,
                )
            )
            s.execute(
                stmt,
                [
                    {
                        "b_sf_id": u.sf_id,
                        "b_stripe_id": u.stripe_id,
                        "b_payload_hash": u.payload_hash,
                        "b_field_hashes": u.field_hashes,
                        "b_sf_modstamp": u.sf_modstamp,
                    }
                    for u in updates
                ],
            )

    def record_intents(self, stripe_account: str, intents: Sequence[Intent]) -> dict[tuple[str, str], Link]:
        """:meth:`record_intent` for a whole batch in one transaction (one executemany INSERT that
        keeps existing rows, one SELECT per link type); returns every row by (link type, sf id).

        Committed when this returns (outside :meth:`transaction`): the batch's creates may be sent.
        """
        if not intents:
            return {}
        now = self._clock()
        stmt = self._insert(LinkRow).on_conflict_do_nothing(
            index_elements=["stripe_account", "object_type", "sf_id"]
        )
        rows = [
            {
                "stripe_account": stripe_account,
                "object_type": i.object_type,
                "sf_object": i.sf_object,
                "sf_id": i.sf_id,
                "stripe_id": None,
                "status": "pending",
                "idempotency_key": i.idempotency_key,
                "created_at": now,
                "updated_at": now,
                "note": None,
            }
            for i in intents
        ]
        by_type: dict[str, list[str]] = {}
        for i in intents:
            by_type.setdefault(i.object_type, []).append(i.sf_id)
        out: dict[tuple[str, str], Link] = {}
        with self._session() as s:
            s.execute(stmt, rows)
            for object_type, ids in by_type.items():
                out.update(
                    ((object_type, sf_id), link)
                    for sf_id, link in self._links_in(s, stripe_account, object_type, ids).items()
                )
        return out

    def write_batch(self, stripe_account: str, writes: BatchWrites, now: datetime) -> None:
        """Everything an applied batch changed, in one transaction: adopted links' rows, links,
        hashes, cleared and recorded failures, the sync log. All or nothing."""
        if not writes:
            return
        table = LinkRow.__table__
        with self.transaction(), self._session() as s:
            if writes.intents:
                self.record_intents(stripe_account, writes.intents)
            for object_type, updates in writes.linked.items():
                self.mark_linked_many(stripe_account, object_type, updates)
            for object_type, hashes in writes.hashes.items():
                if not hashes:
                    continue
                stmt = (
                    table.update()
                    .where(
                        table.c.stripe_account == stripe_account,
                        table.c.object_type == object_type,
                        table.c.sf_id == bindparam("b_sf_id"),
                    )
                    .values(
                        payload_hash=bindparam("b_payload_hash"),
                        field_hashes=bindparam("b_field_hashes"),
                        sf_modstamp=bindparam("b_sf_modstamp"),
                        updated_at=self._clock(),
                    )
                )
                s.execute(
                    stmt,
                    [
                        {
                            "b_sf_id": h.sf_id,
                            "b_payload_hash": h.payload_hash,
                            "b_field_hashes": h.field_hashes,
                            "b_sf_modstamp": h.sf_modstamp,
                        }
                        for h in hashes
                    ],
                )
            for object_type, ids in writes.cleared.items():
                for chunk in _chunks(sorted(ids)):
                    s.execute(
                        delete(FailureRow).where(
                            FailureRow.object_type == object_type, FailureRow.sf_id.in_(chunk)
                        )
                    )
            for f in writes.failures:
                self.record_failure(
                    f.object_type, f.sf_object, f.sf_id, f.error_code, f.message, f.retryable, now
                )
            if writes.log:
                self.log_action(writes.log)

    def update_hash(
        self,
        stripe_account: str,
        object_type: str,
        sf_id: str,
        payload_hash: str | None,
        sf_modstamp: datetime | None = None,
        *,
        field_hashes: dict[str, str] | None = None,
    ) -> Link:
        """After an update was sent: remember its params' hash (and the record version applied)."""
        with self._session() as s:
            row = self._existing(s, stripe_account, object_type, sf_id)
            row.payload_hash = payload_hash
            if field_hashes is not None:
                row.field_hashes = field_hashes
            if sf_modstamp is not None:
                row.sf_modstamp = sf_modstamp
            row.updated_at = self._clock()
            s.flush()
            return Link.of(row)

    def set_status(
        self, stripe_account: str, object_type: str, sf_id: str, status: str, note: str | None = None
    ) -> Link:
        """E.g. ``merged_away`` (the Customer stays put) or ``deleted`` (nothing is deleted in Stripe)."""
        if status not in LINK_STATUSES:
            raise ValueError(f"unknown link status {status!r}; expected one of {sorted(LINK_STATUSES)}")
        with self._session() as s:
            row = self._existing(s, stripe_account, object_type, sf_id)
            row.status = status
            row.note = note
            row.updated_at = self._clock()
            s.flush()
            return Link.of(row)

    def list_links(
        self,
        *,
        stripe_account: str | None = None,
        object_type: str | None = None,
        sf_object: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Link]:
        query = _select(LinkRow)
        for column, value in (
            (LinkRow.stripe_account, stripe_account),
            (LinkRow.object_type, object_type),
            (LinkRow.sf_object, sf_object),
            (LinkRow.status, status),
        ):
            if value is not None:
                query = query.where(column == value)
        query = query.order_by(LinkRow.id).offset(offset).limit(limit)
        with self._session() as s:
            return [Link.of(r) for r in s.scalars(query)]

    def link_counts(self) -> dict[tuple[str, str], int]:
        """Number of links per (object type, status), for `cpq2stripe status`."""
        query = select(LinkRow.object_type, LinkRow.status, func.count()).group_by(
            LinkRow.object_type, LinkRow.status
        )
        with self._session() as s:
            return {(t, st): int(n) for t, st, n in s.execute(query).tuples()}

    def _link_query(self, stripe_account: str, object_type: str, sf_id: str, *, for_update: bool = False):
        query = _select(LinkRow).where(
            LinkRow.stripe_account == stripe_account,
            LinkRow.object_type == object_type,
            LinkRow.sf_id == sf_id,
        )
        return query.with_for_update() if for_update and self._dialect == "postgresql" else query

    def _existing(self, s: Session, stripe_account: str, object_type: str, sf_id: str) -> LinkRow:
        row = s.scalar(self._link_query(stripe_account, object_type, sf_id, for_update=True))
        if row is None:
            raise LinkNotFound(f"no link for {object_type} {sf_id} on {stripe_account}")
        return row

    @staticmethod
    def _check_repoint(old: str | None, new: str, object_type: str, sf_id: str) -> None:
        if old is not None and old != new:
            raise LinkConflict(f"{object_type} {sf_id} is linked to {old}; refusing to re-point it to {new}")

    # ---- cursors ----------------------------------------------------------------------------

    def get_cursor(self, name: str) -> Cursor:
        """The cursor for ``name`` (e.g. ``Account``); an empty one before the first sync."""
        with self._session() as s:
            row = s.get(CursorRow, name, populate_existing=True)
            if row is None:
                return Cursor()
            return Cursor(row.modstamp, frozenset(row.seen_ids))

    def list_cursors(self) -> list[tuple[str, Cursor]]:
        with self._session() as s:
            rows = s.scalars(select(CursorRow).order_by(CursorRow.name)).all()
            return [(r.name, Cursor(r.modstamp, frozenset(r.seen_ids))) for r in rows]

    def set_cursor(self, name: str, modstamp: datetime | None, seen_ids: Iterable[str] = ()) -> Cursor:
        cursor = Cursor(modstamp, frozenset(seen_ids))
        values = {
            "modstamp": cursor.modstamp,
            "seen_ids": sorted(cursor.seen_ids),
            "updated_at": self._clock(),
        }
        stmt = (
            self._insert(CursorRow)
            .values(name=name, **values)
            .on_conflict_do_update(index_elements=["name"], set_=values)
        )
        with self._session() as s:
            s.execute(stmt)
        return cursor

    # ---- event replay ids ---------------------------------------------------------------------

    def get_replay_id(self, topic: str) -> str | None:
        """The replay id (base64) after which the topic's events are still to be processed."""
        with self._session() as s:
            row = s.get(ReplayIdRow, topic)
            return row.replay_id if row else None

    def set_replay_id(self, topic: str, replay_id: str | None) -> None:
        """Save only after the event's records are processed; None forgets it (poll instead)."""
        with self._session() as s:
            if replay_id is None:
                s.execute(delete(ReplayIdRow).where(ReplayIdRow.topic == topic))
                return
            values = {"replay_id": replay_id, "updated_at": self._clock()}
            s.execute(
                self._insert(ReplayIdRow)
                .values(topic=topic, **values)
                .on_conflict_do_update(index_elements=["topic"], set_=values)
            )

    # ---- leases and heartbeats ------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take or renew the lease `name` for `holder` if it is free, expired or already ours.

        One atomic upsert (conditional ON CONFLICT DO UPDATE) on both SQLite and PostgreSQL, so
        two daemons racing for it cannot both win.
        """
        now = self._clock()
        table = LeaseRow.__table__
        stmt = (
            self._insert(LeaseRow)
            .values(name=name, holder=holder, expires_at=now + ttl, acquired_at=now)
            .on_conflict_do_update(
                index_elements=["name"],
                set_={"holder": holder, "expires_at": now + ttl},
                where=(table.c.expires_at < now) | (table.c.holder == holder),
            )
        )
        with self._session() as s:
            s.execute(stmt)
            current = s.get(LeaseRow, name, populate_existing=True)
            return current is not None and current.holder == holder

    def release_lease(self, name: str, holder: str) -> None:
        with self._session() as s:
            s.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))

    def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        with self._session() as s:
            row = s.get(LeaseRow, name)
            return (row.holder, row.expires_at) if row else None

    def heartbeat(self, instance_id: str, role: str, host: str, pid: int, info: Mapping[str, Any]) -> None:
        now = self._clock()
        values = {"role": role, "host": host, "pid": pid, "beat_at": now, "info": dict(info)}
        with self._session() as s:
            s.execute(
                self._insert(HeartbeatRow)
                .values(instance_id=instance_id, started_at=now, **values)
                .on_conflict_do_update(index_elements=["instance_id"], set_=values)
            )

    def remove_heartbeat(self, instance_id: str) -> None:
        with self._session() as s:
            s.execute(delete(HeartbeatRow).where(HeartbeatRow.instance_id == instance_id))

    def heartbeats(self) -> list[Heartbeat]:
        with self._session() as s:
            return [
                Heartbeat.of(r) for r in s.scalars(select(HeartbeatRow).order_by(HeartbeatRow.beat_at.desc()))
            ]

    # ---- failures ---------------------------------------------------------------------------

    def record_failure(
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
        now = _aware(now, "now")
        message = message[:_MESSAGE_MAX]
        table = FailureRow.__table__
        stmt = (
            self._insert(FailureRow)
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
        with self._session() as s:
            row_id, attempts = s.execute(stmt).one()
            row = s.get(FailureRow, row_id, populate_existing=True)
            assert row is not None
            row.next_retry_at = now + backoff(attempts) if retryable else None
            s.flush()
            return Failure.of(row)

    def clear_failure(self, object_type: str, sf_id: str) -> bool:
        """Forget a record's failure (it synced); True if there was one."""
        with self._session() as s:
            result = s.execute(
                delete(FailureRow).where(FailureRow.object_type == object_type, FailureRow.sf_id == sf_id)
            )
            return bool(result.rowcount)

    def failing_ids(self, object_type: str, sf_ids: Iterable[str]) -> set[str]:
        """Which of these records have a failure on file (one query per 5,000 ids), so a batch of
        unchanged records clears failures only where there are some."""
        ids = sorted(set(sf_ids))
        out: set[str] = set()
        with self._session() as s:
            for chunk in _chunks(ids):
                out.update(
                    s.scalars(
                        _select(FailureRow.sf_id).where(
                            FailureRow.object_type == object_type, FailureRow.sf_id.in_(chunk)
                        )
                    )
                )
        return out

    def get_failure(self, object_type: str, sf_id: str) -> Failure | None:
        with self._session() as s:
            row = s.scalar(
                _select(FailureRow).where(FailureRow.object_type == object_type, FailureRow.sf_id == sf_id)
            )
            return Failure.of(row) if row else None

    def due_failures(self, now: datetime, limit: int = 500) -> list[Failure]:
        """Retryable failures whose time has come, longest-waiting first."""
        now = _aware(now, "now")
        query = (
            _select(FailureRow)
            .where(FailureRow.retryable.is_(True), FailureRow.next_retry_at <= now)
            .order_by(FailureRow.next_retry_at, FailureRow.id)
            .limit(limit)
        )
        with self._session() as s:
            return [Failure.of(r) for r in s.scalars(query)]

    def list_failures(
        self, *, object_type: str | None = None, retryable: bool | None = None, limit: int | None = None
    ) -> list[Failure]:
        query = _select(FailureRow)
        if object_type is not None:
            query = query.where(FailureRow.object_type == object_type)
        if retryable is not None:
            query = query.where(FailureRow.retryable.is_(retryable))
        with self._session() as s:
            return [Failure.of(r) for r in s.scalars(query.order_by(FailureRow.id).limit(limit))]

    # ---- runs -------------------------------------------------------------------------------

    def start_run(self, kind: str) -> int:
        with self._session() as s:
            row = RunRow(kind=kind, status="running", started_at=self._clock(), counts={})
            s.add(row)
            s.flush()
            return row.id

    def finish_run(
        self, run_id: int, counts: Mapping[str, int], status: str, error: str | None = None
    ) -> Run:
        if status not in RUN_STATUSES - {"running"}:
            raise ValueError(f"a run finishes as one of {sorted(RUN_STATUSES - {'running'})}, not {status!r}")
        with self._session() as s:
            row = s.get(RunRow, run_id, populate_existing=True)
            if row is None:
                raise LookupError(f"no run {run_id}")
            row.counts = {str(k): int(v) for k, v in counts.items()}
            row.status = status
            row.error = error[:_MESSAGE_MAX] if error else None
            row.finished_at = self._clock()
            s.flush()
            return Run.of(row)

    def last_run(self, kind: str, *, status: str | None = None) -> Run | None:
        """The most recently started run of ``kind`` (optionally only those with ``status``)."""
        query = _select(RunRow).where(RunRow.kind == kind)
        if status is not None:
            query = query.where(RunRow.status == status)
        with self._session() as s:
            row = s.scalar(query.order_by(RunRow.started_at.desc(), RunRow.id.desc()).limit(1))
            return Run.of(row) if row else None

    # ---- sync log ---------------------------------------------------------------------------

    def log_action(self, entries: Iterable[LogEntry]) -> int:
        """Append sync actions in one executemany INSERT; entries without ``at`` get now."""
        now = self._clock()
        rows = [
            {
                "at": _aware(e.at, "at") if e.at else now,
                "run_id": e.run_id,
                "object_type": e.object_type,
                "sf_object": e.sf_object,
                "sf_id": e.sf_id,
                "stripe_id": e.stripe_id,
                "action": e.action,
                "status": e.status,
                "message": e.message[:_MESSAGE_MAX] if e.message else e.message,
            }
            for e in entries
        ]
        if rows:
            with self._session() as s:
                s.execute(SyncLogRow.__table__.insert(), rows)
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
        query = _select(SyncLogRow)
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
            query = query.where(SyncLogRow.at >= _aware(since, "since"))
        query = query.order_by(SyncLogRow.at.desc(), SyncLogRow.id.desc()).limit(limit)
        with self._session() as s:
            return [LogEntry.of(r) for r in s.scalars(query)]

    def prune_log(self, older_than: datetime) -> int:
        """Delete log entries before ``older_than``; returns how many."""
        with self._session() as s:
            result = s.execute(delete(SyncLogRow).where(SyncLogRow.at < _aware(older_than, "older_than")))
            return int(result.rowcount or 0)

    def count_log(self) -> int:
        with self._session() as s:
            return int(s.scalar(select(func.count()).select_from(SyncLogRow)) or 0)

"""SQLAlchemy models of the state store (the current schema; migrations.py builds it step by step).

The store hands out the frozen dataclasses below, never ORM rows, so nothing outside a session
can lazily touch the database. Nothing here ever holds a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import JSON, DateTime, Index, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.engine import Dialect, Row
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

LinkStatus = Literal["pending", "linked", "merged_away", "deleted"]
LINK_STATUSES: frozenset[str] = frozenset({"pending", "linked", "merged_away", "deleted"})
RunStatus = Literal["running", "succeeded", "failed", "partial", "interrupted"]
RUN_STATUSES: frozenset[str] = frozenset({"running", "succeeded", "failed", "partial", "interrupted"})


def table_of(model: Any) -> Table:
    """A mapped class's Table (declarative typing says only FromClause)."""
    return cast(Table, model.__table__)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every backend.

    SQLite has no time zones: values are stored as naive UTC and get ``UTC`` back on load.
    Naive datetimes are refused on the way in, so a local time can never slip in unnoticed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the state store takes timezone-aware values")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class SchemaVersionRow(Base):
    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LinkRow(Base):
    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint("stripe_account", "object_type", "sf_id", name="uq_links_account_type_sf_id"),
        Index("ix_links_stripe_id", "stripe_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stripe_account: Mapped[str] = mapped_column(String(255))
    object_type: Mapped[str] = mapped_column(String(64))
    sf_object: Mapped[str] = mapped_column(String(128))
    sf_id: Mapped[str] = mapped_column(String(64))
    stripe_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    payload_hash: Mapped[str | None] = mapped_column(String(128))
    # Hash per Stripe field last sent (not the values): which fields changed, without a copy of
    # customer data in the state store.
    field_hashes: Mapped[dict[str, str] | None] = mapped_column(JSON)
    sf_modstamp: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)


class CursorRow(Base):
    __tablename__ = "cursors"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    modstamp: Mapped[datetime | None] = mapped_column(UTCDateTime())
    seen_ids: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MappingVersionRow(Base):
    """Which mapping an object's linked records were last evaluated with: a changed mapping
    re-evaluates them all once."""

    __tablename__ = "mapping_versions"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReplayIdRow(Base):
    """The last Pub/Sub replay id whose events were fully processed, per topic (base64 text)."""

    __tablename__ = "replay_ids"
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    replay_id: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LeaseRow(Base):
    """A named lease (the daemon's leader lock): held by `holder` until `expires_at`."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())


class HeartbeatRow(Base):
    """One row per running daemon instance, refreshed periodically; `status` shows them."""

    __tablename__ = "heartbeats"
    instance_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    info: Mapped[dict[str, Any]] = mapped_column(JSON)


class FailureRow(Base):
    __tablename__ = "failures"
    __table_args__ = (
        UniqueConstraint("object_type", "sf_id", name="uq_failures_type_sf_id"),
        Index("ix_failures_next_retry_at", "next_retry_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_type: Mapped[str] = mapped_column(String(64))
    sf_object: Mapped[str] = mapped_column(String(128))
    sf_id: Mapped[str] = mapped_column(String(64))
    error_code: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    retryable: Mapped[bool] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer)
    first_failed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_failed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_kind_started_at", "kind", "started_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class SyncLogRow(Base):
    __tablename__ = "sync_log"
    __table_args__ = (
        Index("ix_sync_log_at", "at"),
        Index("ix_sync_log_sf_id", "sf_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    run_id: Mapped[int | None] = mapped_column(Integer)
    object_type: Mapped[str] = mapped_column(String(64))
    sf_object: Mapped[str | None] = mapped_column(String(128))
    sf_id: Mapped[str | None] = mapped_column(String(64))
    stripe_id: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)


# ---- what the store returns -------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    stripe_account: str
    object_type: str
    sf_object: str
    sf_id: str
    stripe_id: str | None
    status: str
    idempotency_key: str
    payload_hash: str | None
    sf_modstamp: datetime | None
    created_at: datetime
    updated_at: datetime
    note: str | None
    field_hashes: dict[str, str] | None = None

    @classmethod
    def of(cls, row: LinkRow | Row[Any]) -> Link:
        return cls(
            row.stripe_account,
            row.object_type,
            row.sf_object,
            row.sf_id,
            row.stripe_id,
            row.status,
            row.idempotency_key,
            row.payload_hash,
            row.sf_modstamp,
            row.created_at,
            row.updated_at,
            row.note,
            dict(row.field_hashes) if row.field_hashes else None,
        )


@dataclass(frozen=True)
class LinkUpdate:
    """One entry of :meth:`StateStore.mark_linked_many`."""

    sf_id: str
    stripe_id: str
    payload_hash: str | None
    sf_modstamp: datetime | None
    field_hashes: dict[str, str] | None = None


@dataclass(frozen=True)
class Intent:
    """A ``pending`` link to record before a Stripe create (see :meth:`StateStore.record_intents`)."""

    object_type: str
    sf_object: str
    sf_id: str
    idempotency_key: str


@dataclass(frozen=True)
class HashUpdate:
    """What was last sent for a linked record (after an update, or a newer unchanged version)."""

    sf_id: str
    payload_hash: str | None
    sf_modstamp: datetime | None
    field_hashes: dict[str, str] | None = None


@dataclass(frozen=True)
class FailureUpdate:
    """A record's failure to upsert (see :meth:`StateStore.record_failure`)."""

    object_type: str
    sf_object: str
    sf_id: str
    error_code: str
    message: str
    retryable: bool


@dataclass
class BatchWrites:
    """Everything one applied batch changes in the state store, written in one transaction by
    :meth:`StateStore.write_batch`: per-record ORM round trips were the connector's biggest cost.

    Keyed by link type (``customer``, ``subscription``, ...).
    """

    intents: list[Intent] = field(default_factory=list)  # adopted objects: a link row must exist
    linked: dict[str, list[LinkUpdate]] = field(default_factory=dict)
    hashes: dict[str, list[HashUpdate]] = field(default_factory=dict)
    cleared: dict[str, set[str]] = field(default_factory=dict)  # failures to forget
    failures: list[FailureUpdate] = field(default_factory=list)
    log: list[LogEntry] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.intents, self.linked, self.hashes, self.cleared, self.failures, self.log))


@dataclass(frozen=True)
class Heartbeat:
    instance_id: str
    role: str  # leader | standby
    host: str
    pid: int
    started_at: datetime
    beat_at: datetime
    info: dict[str, Any]

    @classmethod
    def of(cls, row: HeartbeatRow) -> Heartbeat:
        return cls(row.instance_id, row.role, row.host, row.pid, row.started_at, row.beat_at, dict(row.info))


@dataclass(frozen=True)
class Failure:
    object_type: str
    sf_object: str
    sf_id: str
    error_code: str
    message: str
    retryable: bool
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    next_retry_at: datetime | None

    @classmethod
    def of(cls, row: FailureRow) -> Failure:
        return cls(
            row.object_type,
            row.sf_object,
            row.sf_id,
            row.error_code,
            row.message,
            row.retryable,
            row.attempts,
            row.first_failed_at,
            row.last_failed_at,
            row.next_retry_at,
        )


@dataclass(frozen=True)
class Run:
    id: int
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, int]
    error: str | None

    @classmethod
    def of(cls, row: RunRow) -> Run:
        return cls(row.id, row.kind, row.status, row.started_at, row.finished_at, dict(row.counts), row.error)


@dataclass(frozen=True)
class LogEntry:
    """One sync action: what was done to which record, with which outcome."""

    object_type: str
    action: str
    status: str
    sf_id: str | None = None
    sf_object: str | None = None
    stripe_id: str | None = None
    message: str | None = None
    at: datetime | None = None
    run_id: int | None = None

    @classmethod
    def of(cls, row: SyncLogRow) -> LogEntry:
        return cls(
            row.object_type,
            row.action,
            row.status,
            row.sf_id,
            row.sf_object,
            row.stripe_id,
            row.message,
            row.at,
            row.run_id,
        )

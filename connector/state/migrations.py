"""Schema migrations: an ordered list of functions, no Alembic.

Migration *n* (1-based, ``MIGRATIONS[n - 1]``) takes the schema from version ``n - 1`` to ``n``;
each applied version is a row in ``schema_version``. :func:`migrate` runs the missing ones in one
transaction (DDL is transactional on PostgreSQL and SQLite), under a lock so two processes
starting at once do not both migrate, and refuses a database newer than this code.

Rules for adding one: append a function, never edit a shipped one. Shipped migrations spell out
their DDL (the v1 tables below are a frozen copy, not ``models.Base.metadata``), so a fresh
database and an upgraded one end up identical; ``tests/unit/test_state_store.py`` checks the
result against the models.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
    text,
)

from connector.state.models import SchemaVersionRow, UTCDateTime, table_of


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer connector; this one must not touch it."""


def _v1(conn: Connection) -> None:
    md = MetaData()
    Table(
        "links",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("stripe_account", String(255), nullable=False),
        Column("object_type", String(64), nullable=False),
        Column("sf_object", String(128), nullable=False),
        Column("sf_id", String(64), nullable=False),
        Column("stripe_id", String(255)),
        Column("status", String(16), nullable=False),
        Column("idempotency_key", String(255), nullable=False),
        Column("payload_hash", String(128)),
        Column("field_hashes", JSON),
        Column("sf_modstamp", UTCDateTime()),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
        Column("note", Text),
        UniqueConstraint("stripe_account", "object_type", "sf_id", name="uq_links_account_type_sf_id"),
        Index("ix_links_stripe_id", "stripe_id"),
    )
    Table(
        "cursors",
        md,
        Column("name", String(128), primary_key=True),
        Column("modstamp", UTCDateTime()),
        Column("seen_ids", JSON, nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    )
    Table(
        "replay_ids",
        md,
        Column("topic", String(255), primary_key=True),
        Column("replay_id", Text, nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    )
    Table(
        "leases",
        md,
        Column("name", String(128), primary_key=True),
        Column("holder", String(255), nullable=False),
        Column("expires_at", UTCDateTime(), nullable=False),
        Column("acquired_at", UTCDateTime(), nullable=False),
    )
    Table(
        "heartbeats",
        md,
        Column("instance_id", String(255), primary_key=True),
        Column("role", String(32), nullable=False),
        Column("host", String(255), nullable=False),
        Column("pid", Integer, nullable=False),
        Column("started_at", UTCDateTime(), nullable=False),
        Column("beat_at", UTCDateTime(), nullable=False),
        Column("info", JSON, nullable=False),
    )
    Table(
        "failures",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("object_type", String(64), nullable=False),
        Column("sf_object", String(128), nullable=False),
        Column("sf_id", String(64), nullable=False),
        Column("error_code", String(128), nullable=False),
        Column("message", Text, nullable=False),
        Column("retryable", Boolean, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("first_failed_at", UTCDateTime(), nullable=False),
        Column("last_failed_at", UTCDateTime(), nullable=False),
        Column("next_retry_at", UTCDateTime()),
        UniqueConstraint("object_type", "sf_id", name="uq_failures_type_sf_id"),
        Index("ix_failures_next_retry_at", "next_retry_at"),
    )
    Table(
        "runs",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("kind", String(64), nullable=False),
        Column("status", String(16), nullable=False),
        Column("started_at", UTCDateTime(), nullable=False),
        Column("finished_at", UTCDateTime()),
        Column("counts", JSON, nullable=False),
        Column("error", Text),
        Index("ix_runs_kind_started_at", "kind", "started_at"),
    )
    Table(
        "sync_log",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at", UTCDateTime(), nullable=False),
        Column("run_id", Integer),
        Column("object_type", String(64), nullable=False),
        Column("sf_object", String(128)),
        Column("sf_id", String(64)),
        Column("stripe_id", String(255)),
        Column("action", String(32), nullable=False),
        Column("status", String(16), nullable=False),
        Column("message", Text),
        Index("ix_sync_log_at", "at"),
        Index("ix_sync_log_sf_id", "sf_id"),
    )
    md.create_all(conn)


def _v2(conn: Connection) -> None:
    """The mapping each object's linked records were last evaluated with (a hash)."""
    md = MetaData()
    Table(
        "mapping_versions",
        md,
        Column("name", String(128), primary_key=True),
        Column("version", String(128), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    )
    md.create_all(conn)


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2]
LATEST_VERSION = len(MIGRATIONS)


def current_version(conn: Connection) -> int:
    """The schema version recorded in the database; 0 for an empty one."""
    if not inspect(conn).has_table(SchemaVersionRow.__tablename__):
        return 0
    versions = conn.execute(select(SchemaVersionRow.version)).scalars().all()
    return max(versions, default=0)


def migrate(conn: Connection) -> int:
    """Bring the schema to :data:`LATEST_VERSION` inside the caller's transaction; returns it."""
    if conn.dialect.name == "postgresql":
        # Serialises concurrent starts; released at commit. SQLite is already serialised by
        # the store's BEGIN IMMEDIATE.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('cpq2stripe.schema'))"))
    table_of(SchemaVersionRow).create(conn, checkfirst=True)
    version = current_version(conn)
    if version > LATEST_VERSION:
        raise SchemaTooNew(
            f"the state database is at schema version {version}, but this connector only knows "
            f"versions up to {LATEST_VERSION}; upgrade the connector (downgrades are not supported)"
        )
    for number in range(version + 1, LATEST_VERSION + 1):
        MIGRATIONS[number - 1](conn)
        conn.execute(table_of(SchemaVersionRow).insert().values(version=number, applied_at=datetime.now(UTC)))
    return LATEST_VERSION

"""The state store: links, failures, cursors, runs and the sync log, and instances, on SQLite or
PostgreSQL — each a focused part over one shared database.

The invariant it serves: a Stripe create is preceded by a *durable* intent row carrying the
idempotency key (``links.record_intent(s)`` commits before returning), so a crash anywhere leaves
either nothing or an intent whose key the recovery reuses. A batch's results are written together
(:meth:`StateStore.write_batch`): per-record round trips were the connector's largest cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Engine

from connector.state.cursors import Cursors
from connector.state.db import Database, utcnow
from connector.state.failures import Failures
from connector.state.instances import Instances
from connector.state.links import Links
from connector.state.models import BatchWrites
from connector.state.runs import Runs


class StateStore:
    """Build one with :meth:`open`; its parts are `links`, `failures`, `cursors`, `runs` (with
    the sync log) and `instances` (leases and heartbeats)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._setup(Database(engine, clock=clock))

    @classmethod
    def open(cls, url: str, *, clock: Callable[[], datetime] = utcnow) -> StateStore:
        """Connect and create or migrate the schema (see :meth:`Database.open`)."""
        store = cls.__new__(cls)
        store._setup(Database.open(url, clock=clock))
        return store

    def _setup(self, db: Database) -> None:
        self.db = db
        self.engine = db.engine
        self.links = Links(db)
        self.failures = Failures(db)
        self.cursors = Cursors(db)
        self.runs = Runs(db)
        self.instances = Instances(db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group calls on any part into one transaction; nested use joins the outer one."""
        with self.db.transaction():
            yield

    def write_batch(self, stripe_account: str, writes: BatchWrites, now: datetime) -> None:
        """Everything an applied batch changed, in one transaction: adopted links' rows, links,
        hashes, cleared and recorded failures, the sync log. All or nothing."""
        if not writes:
            return
        with self.transaction():
            if writes.intents:
                self.links.record_intents(stripe_account, writes.intents)
            for object_type, updates in writes.linked.items():
                self.links.mark_linked_many(stripe_account, object_type, updates)
            for object_type, hashes in writes.hashes.items():
                self.links.update_hashes(stripe_account, object_type, hashes)
            for object_type, ids in writes.cleared.items():
                self.failures.clear_many(object_type, ids)
            for f in writes.failures:
                self.failures.record(
                    f.object_type, f.sf_object, f.sf_id, f.error_code, f.message, f.retryable, now
                )
            if writes.log:
                self.runs.log_action(writes.log)

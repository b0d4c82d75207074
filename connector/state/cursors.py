"""Where each poll and each event topic got to: SystemModstamp cursors and Pub/Sub replay ids, and
the mapping version each object's linked records were last evaluated with."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from connector.state.cursor import Cursor
from connector.state.db import Database
from connector.state.models import CursorRow, MappingVersionRow, ReplayIdRow


class Cursors:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, name: str) -> Cursor:
        """The cursor for ``name`` (e.g. ``Account``); an empty one before the first sync."""
        with self._db.session() as s:
            row = s.get(CursorRow, name, populate_existing=True)
            if row is None:
                return Cursor()
            return Cursor(row.modstamp, frozenset(row.seen_ids))

    def all(self) -> list[tuple[str, Cursor]]:
        with self._db.session() as s:
            rows = s.scalars(select(CursorRow).order_by(CursorRow.name)).all()
            return [(r.name, Cursor(r.modstamp, frozenset(r.seen_ids))) for r in rows]

    def set(self, name: str, modstamp: datetime | None, seen_ids: Iterable[str] = ()) -> Cursor:
        cursor = Cursor(modstamp, frozenset(seen_ids))
        values = {
            "modstamp": cursor.modstamp,
            "seen_ids": sorted(cursor.seen_ids),
            "updated_at": self._db.clock(),
        }
        self._upsert(CursorRow, {"name": name}, values)
        return cursor

    def mapping_version(self, name: str) -> str | None:
        """The mapping version `name`'s linked records were last evaluated with (None: never)."""
        with self._db.session() as s:
            row = s.get(MappingVersionRow, name, populate_existing=True)
            return row.version if row else None

    def set_mapping_version(self, name: str, version: str) -> None:
        self._upsert(MappingVersionRow, {"name": name}, {"version": version, "updated_at": self._db.clock()})

    def replay_id(self, topic: str) -> str | None:
        """The replay id (base64) after which the topic's events are still to be processed."""
        with self._db.session() as s:
            row = s.get(ReplayIdRow, topic)
            return row.replay_id if row else None

    def set_replay_id(self, topic: str, replay_id: str | None) -> None:
        """Save only after the event's records are processed; None forgets it (poll instead)."""
        if replay_id is None:
            with self._db.session() as s:
                s.execute(delete(ReplayIdRow).where(ReplayIdRow.topic == topic))
            return
        self._upsert(ReplayIdRow, {"topic": topic}, {"replay_id": replay_id, "updated_at": self._db.clock()})

    def _upsert(self, model: Any, key: dict[str, str], values: dict[str, Any]) -> None:
        """Insert the row, or update it when its key exists (one statement on both backends)."""
        stmt = (
            self._db.insert(model)
            .values(**key, **values)
            .on_conflict_do_update(index_elements=list(key), set_=values)
        )
        with self._db.session() as s:
            s.execute(stmt)

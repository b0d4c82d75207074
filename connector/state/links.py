"""Links: which Stripe object each Salesforce record became, and the intent recorded before it
(its idempotency key). The invariant they serve: an intent is durable before its create is sent."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from connector.state.db import Database, chunks, refreshing
from connector.state.models import (
    LINK_STATUSES,
    HashUpdate,
    Intent,
    Link,
    LinkRow,
    LinkUpdate,
    table_of,
)


class LinkNotFound(LookupError):
    """No link row for the key: an intent must be recorded before a link is marked."""


class LinkConflict(RuntimeError):
    """The link already points at another Stripe object: re-pointing it would orphan one."""


class Links:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, stripe_account: str, object_type: str, sf_id: str) -> Link | None:
        with self._db.session() as s:
            row = s.scalar(self._link_query(stripe_account, object_type, sf_id))
            return Link.of(row) if row else None

    def get_many(self, stripe_account: str, object_type: str, sf_ids: Iterable[str]) -> dict[str, Link]:
        """Links by Salesforce id for a whole page (one query per 5,000 ids); absent ids are missing."""
        with self._db.session() as s:
            return self._links_in(s, stripe_account, object_type, sf_ids)

    def _links_in(
        self, s: Session, stripe_account: str, object_type: str, sf_ids: Iterable[str]
    ) -> dict[str, Link]:
        # Core rows, not ORM objects: a page of 2,000 links costs no identity-map bookkeeping.
        table = table_of(LinkRow)
        out: dict[str, Link] = {}
        for chunk in chunks(sorted(set(sf_ids))):
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
        query = refreshing(LinkRow).where(LinkRow.stripe_id == stripe_id)
        if stripe_account is not None:
            query = query.where(LinkRow.stripe_account == stripe_account)
        with self._db.session() as s:
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
        now = self._db.clock()
        stmt = (
            self._db.insert(LinkRow)
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
        with self._db.session() as s:
            s.execute(stmt)
            row = s.scalar(self._link_query(stripe_account, object_type, sf_id))
            assert row is not None
            return Link.of(row)

    def record_intents(self, stripe_account: str, intents: Sequence[Intent]) -> dict[tuple[str, str], Link]:
        """:meth:`record_intent` for a whole batch in one transaction (one executemany INSERT that
        keeps existing rows, one SELECT per link type); returns every row by (link type, sf id).

        Committed when this returns (outside :meth:`transaction`): the batch's creates may be sent.
        """
        if not intents:
            return {}
        now = self._db.clock()
        stmt = self._db.insert(LinkRow).on_conflict_do_nothing(
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
        with self._db.session() as s:
            s.execute(stmt, rows)
            for object_type, ids in by_type.items():
                out.update(
                    ((object_type, sf_id), link)
                    for sf_id, link in self._links_in(s, stripe_account, object_type, ids).items()
                )
        return out

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
        with self._db.session() as s:
            row = s.scalar(self._link_query(stripe_account, object_type, sf_id, for_update=True))
            if row is None:
                raise LinkNotFound(f"no intent recorded for {object_type} {sf_id} on {stripe_account}")
            self._check_repoint(row.stripe_id, stripe_id, object_type, sf_id)
            row.stripe_id = stripe_id
            row.status = "linked"
            row.payload_hash = payload_hash
            row.field_hashes = field_hashes
            row.sf_modstamp = sf_modstamp
            row.updated_at = self._db.clock()
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
        with self._db.session() as s:
            current: dict[str, str | None] = {}
            for chunk in chunks(sorted(by_id)):
                query = select(LinkRow.sf_id, LinkRow.stripe_id).where(
                    LinkRow.stripe_account == stripe_account,
                    LinkRow.object_type == object_type,
                    LinkRow.sf_id.in_(chunk),
                )
                if self._db.dialect == "postgresql":
                    query = query.with_for_update()
                current.update(s.execute(query).tuples().all())
            missing = sorted(set(by_id) - set(current))
            if missing:
                raise LinkNotFound(f"no intent recorded for {object_type} {', '.join(missing[:5])}")
            for u in updates:
                self._check_repoint(current[u.sf_id], u.stripe_id, object_type, u.sf_id)
            self._update_each(
                s,
                stripe_account,
                object_type,
                {"stripe_id": "stripe_id", "status": "linked", "payload_hash": "payload_hash"},
                [
                    {
                        "sf_id": u.sf_id,
                        "stripe_id": u.stripe_id,
                        "payload_hash": u.payload_hash,
                        "field_hashes": u.field_hashes,
                        "sf_modstamp": u.sf_modstamp,
                    }
                    for u in updates
                ],
            )

    def update_hashes(self, stripe_account: str, object_type: str, hashes: Sequence[HashUpdate]) -> None:
        """What was last sent for many linked records, in one executemany UPDATE."""
        if not hashes:
            return
        with self._db.session() as s:
            self._update_each(
                s,
                stripe_account,
                object_type,
                {"payload_hash": "payload_hash"},
                [
                    {
                        "sf_id": h.sf_id,
                        "payload_hash": h.payload_hash,
                        "field_hashes": h.field_hashes,
                        "sf_modstamp": h.sf_modstamp,
                    }
                    for h in hashes
                ],
            )

    def _update_each(
        self,
        s: Session,
        stripe_account: str,
        object_type: str,
        columns: dict[str, str],
        rows: list[dict[str, Any]],
    ) -> None:
        """One executemany UPDATE of the links named by `rows[*]["sf_id"]`: each column in
        `columns` from the row's key of that name (a value not among the keys is set as given),
        and the field hashes and record version always."""
        table = table_of(LinkRow)
        values: dict[str, Any] = {
            column: bindparam(f"b_{key}") if key in rows[0] else key for column, key in columns.items()
        }
        stmt = (
            table.update()
            .where(
                table.c.stripe_account == stripe_account,
                table.c.object_type == object_type,
                table.c.sf_id == bindparam("b_sf_id"),
            )
            .values(
                **values,
                field_hashes=bindparam("b_field_hashes"),
                sf_modstamp=bindparam("b_sf_modstamp"),
                updated_at=self._db.clock(),
            )
        )
        s.execute(stmt, [{f"b_{k}": v for k, v in row.items()} for row in rows])

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
        with self._db.session() as s:
            row = self._existing(s, stripe_account, object_type, sf_id)
            row.payload_hash = payload_hash
            if field_hashes is not None:
                row.field_hashes = field_hashes
            if sf_modstamp is not None:
                row.sf_modstamp = sf_modstamp
            row.updated_at = self._db.clock()
            s.flush()
            return Link.of(row)

    def restart_intent(
        self, stripe_account: str, object_type: str, sf_id: str, *, ended_stripe_id: str, idempotency_key: str
    ) -> Link:
        """A record whose Stripe object has ended (a used or expired Checkout Session) asks for a new
        one: its link becomes a pending intent again with a new key, in one step, and only while it
        still names the ended object (a concurrent run that restarted it first wins)."""
        with self._db.session() as s:
            row = self._existing(s, stripe_account, object_type, sf_id)
            if row.stripe_id == ended_stripe_id:
                now = self._db.clock()
                row.stripe_id, row.status, row.idempotency_key = None, "pending", idempotency_key
                row.note, row.payload_hash, row.field_hashes = None, None, None
                row.created_at = row.updated_at = now
                s.flush()
            return Link.of(row)

    def set_status(
        self, stripe_account: str, object_type: str, sf_id: str, status: str, note: str | None = None
    ) -> Link:
        """E.g. ``merged_away`` (the Customer stays put) or ``deleted`` (nothing is deleted in Stripe)."""
        if status not in LINK_STATUSES:
            raise ValueError(f"unknown link status {status!r}; expected one of {sorted(LINK_STATUSES)}")
        with self._db.session() as s:
            row = self._existing(s, stripe_account, object_type, sf_id)
            row.status = status
            row.note = note
            row.updated_at = self._db.clock()
            s.flush()
            return Link.of(row)

    def all(
        self,
        *,
        stripe_account: str | None = None,
        object_type: str | None = None,
        sf_object: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Link]:
        query = refreshing(LinkRow)
        for column, value in (
            (LinkRow.stripe_account, stripe_account),
            (LinkRow.object_type, object_type),
            (LinkRow.sf_object, sf_object),
            (LinkRow.status, status),
        ):
            if value is not None:
                query = query.where(column == value)
        query = query.order_by(LinkRow.id).offset(offset).limit(limit)
        with self._db.session() as s:
            return [Link.of(r) for r in s.scalars(query)]

    def counts(self) -> dict[tuple[str, str], int]:
        """Number of links per (object type, status), for `cpq2stripe status`."""
        counts: dict[tuple[str, str], int] = {}
        for (_account, object_type, status), n in self.counts_by_account().items():
            counts[(object_type, status)] = counts.get((object_type, status), 0) + n
        return counts

    def counts_by_account(self) -> dict[tuple[str, str, str], int]:
        """Number of links per (Stripe account, object type, status): several accounts' status."""
        columns = (LinkRow.stripe_account, LinkRow.object_type, LinkRow.status)
        query = select(*columns, func.count()).group_by(*columns)
        with self._db.session() as s:
            return {(a, t, st): int(n) for a, t, st, n in s.execute(query).tuples()}

    def _link_query(
        self, stripe_account: str, object_type: str, sf_id: str, *, for_update: bool = False
    ) -> Any:
        query = refreshing(LinkRow).where(
            LinkRow.stripe_account == stripe_account,
            LinkRow.object_type == object_type,
            LinkRow.sf_id == sf_id,
        )
        return query.with_for_update() if for_update and self._db.dialect == "postgresql" else query

    def _existing(self, s: Session, stripe_account: str, object_type: str, sf_id: str) -> LinkRow:
        row: LinkRow | None = s.scalar(self._link_query(stripe_account, object_type, sf_id, for_update=True))
        if row is None:
            raise LinkNotFound(f"no link for {object_type} {sf_id} on {stripe_account}")
        return row

    @staticmethod
    def _check_repoint(old: str | None, new: str, object_type: str, sf_id: str) -> None:
        if old is not None and old != new:
            raise LinkConflict(f"{object_type} {sf_id} is linked to {old}; refusing to re-point it to {new}")

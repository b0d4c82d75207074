"""Evaluates SOQL against the fake org's records and shapes rows as the REST API returns them.

Names and literal types are checked against the schema once per query, and the WHERE clause is
compiled into plain Python closures, so filtering tens of thousands of rows costs a couple of
function calls per row and no schema lookups. Parent paths (`Order.Account.Name`) go through
`RecordSource.get` with a per-query cache; child subqueries through `RecordSource.children`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from connector.sandbox.salesforce.dates import add_months
from connector.sandbox.salesforce.schema import NUMBER_TYPES, FieldDef, ObjectDef, Schema
from connector.sandbox.salesforce.soql import (
    And,
    BoolLit,
    Comparison,
    Condition,
    CountItem,
    DateLit,
    DateTimeLit,
    FieldPath,
    Not,
    NullLit,
    NumberLit,
    Or,
    Query,
    RelativeDateLit,
    SoqlError,
    StringLit,
    SubQuery,
    error_at,
    parse,
    parse_datetime,
)

__all__ = ["QueryResult", "RecordSource", "execute"]

MAX_OFFSET = 2000


class RecordSource(Protocol):
    """What the engine needs from the org's storage."""

    def records(self, sobject: str, include_deleted: bool) -> Iterable[dict[str, Any]]: ...

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None: ...

    def children(
        self, child_sobject: str, field: str, parent_id: str, include_deleted: bool
    ) -> Iterable[dict[str, Any]]: ...


@dataclass
class QueryResult:
    """Every matching row, ordered and shaped; the server pages it. COUNT(): records == []."""

    total_size: int
    records: list[dict[str, Any]] = field(default_factory=list)


Row = dict[str, Any]
Getter = Callable[[Row], Any]
Predicate = Callable[[Row], bool]

INVALID_FIELD_HINT = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)
INVALID_RELATIONSHIP_HINT = (
    "If you are attempting to use a custom relationship, be sure to append the '__r' after the custom "
    "relationship name. Please reference your WSDL or the describe call for the appropriate names."
)
INVALID_TYPE_HINT = (
    "If you are attempting to use a custom object, be sure to append the '__c' after the entity name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)


# --- value keys: stored value -> comparable key, per schema type -----------------------------------


def _category(f: FieldDef) -> str:
    if f.type in ("id", "reference"):
        return "id"
    if f.type in NUMBER_TYPES:
        return "number"
    if f.type in ("boolean", "date", "datetime"):
        return f.type
    return "string"


def _datetime_key(value: dt.datetime) -> str:
    """Instants compare as fixed-width UTC strings with millisecond precision."""
    u = value.astimezone(dt.UTC)
    return f"{u:%Y-%m-%dT%H:%M:%S}.{u.microsecond // 1000:03d}"


def _stored_datetime_key(v: Any) -> str | None:
    if isinstance(v, str):
        if len(v) == 28 and v.endswith("+0000"):  # the org's canonical 'YYYY-MM-DDTHH:MM:SS.000+0000'
            return v[:23]
        parsed = parse_datetime(v)
        return _datetime_key(parsed) if parsed else v
    if isinstance(v, dt.datetime):
        return _datetime_key(v if v.tzinfo else v.replace(tzinfo=dt.UTC))
    return None if v is None else str(v)


def _stored_date_key(v: Any) -> str | None:
    if isinstance(v, dt.datetime):
        return v.date().isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    return None if v is None else str(v)


def _string_key(v: Any) -> str | None:
    if v is None or v == "":
        return None
    return v.lower() if isinstance(v, str) else str(v).lower()


def _id_key(v: Any) -> str | None:
    if not v:
        return None
    return str(v)[:15]


def _key_function(category: str) -> Callable[[Any], Any]:
    return {
        "string": _string_key,
        "id": _id_key,
        "date": _stored_date_key,
        "datetime": _stored_datetime_key,
    }.get(category, lambda v: v)


# --- resolved paths --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hop:
    ref_field: str  # e.g. AccountId
    relationship: str  # e.g. Account (exact API casing)
    target: ObjectDef


@dataclass(frozen=True)
class _Resolved:
    hops: tuple[_Hop, ...]
    field: FieldDef
    path: FieldPath


class _Context:
    """Per-execution state: schema, query text (for located errors), parent cache, clock."""

    def __init__(
        self,
        schema: Schema,
        text: str,
        source: RecordSource,
        include_deleted: bool,
        base: str,
        today: dt.date,
    ) -> None:
        self.schema = schema
        self.text = text
        self.source = source
        self.include_deleted = include_deleted
        self.base = base
        self.today = today
        self._parents: dict[str, Row | None] = {}

    def error(self, code: str, pos: int, detail: str) -> SoqlError:
        return SoqlError(code, error_at(self.text, pos, detail))

    def fetch(self, sobject: str, record_id: str) -> Row | None:
        try:
            return self._parents[record_id]
        except KeyError:
            row = self.source.get(sobject, record_id)
            self._parents[record_id] = row
            return row

    def url(self, sobject: str, record_id: Any) -> str:
        return f"{self.base}/sobjects/{sobject}/{record_id}"

    # name resolution
    def resolve_object(self, name: str, pos: int) -> ObjectDef:
        obj = self.schema.object(name)
        if obj is None:
            raise self.error(
                "INVALID_TYPE", pos, f"sObject type '{name}' is not supported. {INVALID_TYPE_HINT}"
            )
        return obj

    def resolve(self, obj: ObjectDef, path: FieldPath) -> _Resolved:
        parts = list(path.parts)
        if (
            len(parts) > 1
            and parts[0].lower() == obj.name.lower()
            and obj.parent_relationship(parts[0]) is None
        ):
            parts = parts[1:]  # `SELECT Account.Name FROM Account`: the object's own name as a prefix
        hops: list[_Hop] = []
        current = obj
        for part in parts[:-1]:
            ref = current.parent_relationship(part)
            if ref is None or not ref.reference_to:
                raise self.error(
                    "INVALID_FIELD",
                    path.pos,
                    f"Didn't understand relationship '{part}' in field path. {INVALID_RELATIONSHIP_HINT}",
                )
            target = self.schema.objects[ref.reference_to[0]]
            hops.append(_Hop(ref.name, ref.relationship_name or part, target))
            current = target
        fdef = current.field(parts[-1])
        if fdef is None:
            raise self.error(
                "INVALID_FIELD",
                path.pos,
                f"No such column '{parts[-1]}' on entity '{current.name}'. {INVALID_FIELD_HINT}",
            )
        return _Resolved(tuple(hops), fdef, path)

    def getter(self, resolved: _Resolved) -> Getter:
        name = resolved.field.name
        if not resolved.hops:
            return lambda row: row.get(name)
        hops = [(h.ref_field, h.target.name) for h in resolved.hops]
        fetch = self.fetch

        def get(row: Row) -> Any:
            current: Row | None = row
            for ref_field, target in hops:
                parent_id = current.get(ref_field)  # type: ignore[union-attr]
                if parent_id is None:
                    return None
                current = fetch(target, parent_id)
                if current is None:
                    return None
            return current.get(name)  # type: ignore[union-attr]

        return get


# --- WHERE compilation -----------------------------------------------------------------------------

_TYPE_NAMES = {"datetime": "dateTime", "int": "integer", "reference": "id"}


def _type_error(ctx: _Context, f: FieldDef, pos: int) -> SoqlError:
    category = _category(f)
    if category in ("string", "id"):
        type_name = "id" if category == "id" else "string"
        detail = (
            f"value of filter criterion for field '{f.name}' must be of type {type_name} "
            "and should be enclosed in quotes"
        )
    else:
        type_name = _TYPE_NAMES.get(f.type, f.type)
        detail = (
            f"value of filter criterion for field '{f.name}' must be of type {type_name} "
            "and should not be enclosed in quotes"
        )
    return ctx.error("INVALID_FIELD", pos, detail)


def _relative_range(lit: RelativeDateLit, today: dt.date) -> tuple[dt.date, dt.date]:
    """[start, end) in days for a relative date literal; the user's time zone is taken as GMT."""
    one = dt.timedelta(days=1)
    n = lit.n or 0
    name = lit.name
    if name in ("YESTERDAY", "TODAY", "TOMORROW"):
        start = today + one * {"YESTERDAY": -1, "TODAY": 0, "TOMORROW": 1}[name]
        return start, start + one
    if name.endswith("_WEEK"):
        sunday = today - dt.timedelta(days=(today.weekday() + 1) % 7)
        start = sunday + dt.timedelta(days=7 * {"LAST": -1, "THIS": 0, "NEXT": 1}[name.split("_")[0]])
        return start, start + dt.timedelta(days=7)
    if name.endswith("_MONTH"):
        first = add_months(today.replace(day=1), {"LAST": -1, "THIS": 0, "NEXT": 1}[name.split("_")[0]])
        return first, add_months(first, 1)
    if name.endswith("_YEAR"):
        year = today.year + {"LAST": -1, "THIS": 0, "NEXT": 1}[name.split("_")[0]]
        return dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
    if name == "LAST_90_DAYS":
        return today - dt.timedelta(days=90), today + one
    if name == "NEXT_90_DAYS":
        return today + one, today + dt.timedelta(days=91)
    if name == "LAST_N_DAYS":
        return today - dt.timedelta(days=n), today + one
    if name == "NEXT_N_DAYS":
        return today + one, today + dt.timedelta(days=n + 1)
    if name == "N_DAYS_AGO":
        start = today - dt.timedelta(days=n)
        return start, start + one
    if name == "N_DAYS_FROM_NOW":
        start = today + dt.timedelta(days=n)
        return start, start + one
    raise AssertionError(name)  # the parser only produces the names above


@dataclass(frozen=True)
class _Range:
    start: Any
    end: Any  # exclusive


def _literal_key(ctx: _Context, f: FieldDef, lit: Any, op: str) -> Any:
    """A literal as a key comparable with the field's stored keys; rejects what Salesforce rejects."""
    category = _category(f)
    if isinstance(lit, NullLit):
        return None
    pos = lit.pos
    if category == "string":
        if isinstance(lit, StringLit):
            return _string_key(lit.value)
    elif category == "id":
        if isinstance(lit, StringLit):
            value = lit.value
            if value == "":
                return None
            if op != "LIKE" and (len(value) not in (15, 18) or not value.isascii() or not value.isalnum()):
                raise ctx.error("INVALID_QUERY_FILTER_OPERATOR", pos, f"invalid ID field: {value}")
            return value[:15]
    elif category == "number":
        if isinstance(lit, NumberLit):
            return lit.value
    elif category == "boolean":
        if isinstance(lit, BoolLit):
            return lit.value
    elif category == "date":
        if isinstance(lit, DateLit):
            return lit.value.isoformat()
        if isinstance(lit, RelativeDateLit):
            start, end = _relative_range(lit, ctx.today)
            return _Range(start.isoformat(), end.isoformat())
    elif category == "datetime":
        if isinstance(lit, DateTimeLit):
            return _datetime_key(lit.value)
        if isinstance(lit, RelativeDateLit):
            start, end = _relative_range(lit, ctx.today)
            return _Range(f"{start.isoformat()}T00:00:00.000", f"{end.isoformat()}T00:00:00.000")
    raise _type_error(ctx, f, pos)


def _like_regex(lit: StringLit) -> re.Pattern[str]:
    parts = []
    for ch, escaped in lit.chars:
        if not escaped and ch == "%":
            parts.append(".*")
        elif not escaped and ch == "_":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _compare(op: str, key: Any) -> Callable[[Any], bool]:
    """Predicate on a stored key (None = null) for one operator and literal key."""
    if isinstance(key, _Range):
        start, end = key.start, key.end
        range_ops: dict[str, Callable[[Any], bool]] = {
            "=": lambda v: v is not None and start <= v < end,
            "!=": lambda v: v is None or not (start <= v < end),
            "<": lambda v: v is not None and v < start,
            "<=": lambda v: v is not None and v < end,
            ">": lambda v: v is not None and v >= end,
            ">=": lambda v: v is not None and v >= start,
        }
        return range_ops[op]
    if key is None:
        if op == "=":
            return lambda v: v is None
        if op == "!=":
            return lambda v: v is not None
        return lambda v: False
    ops: dict[str, Callable[[Any], bool]] = {
        "=": lambda v: v == key,
        "!=": lambda v: v != key,
        "<": lambda v: v is not None and v < key,
        "<=": lambda v: v is not None and v <= key,
        ">": lambda v: v is not None and v > key,
        ">=": lambda v: v is not None and v >= key,
    }
    return ops[op]


def _compile_comparison(ctx: _Context, obj: ObjectDef, cmp: Comparison) -> Predicate:
    resolved = ctx.resolve(obj, cmp.field)
    f = resolved.field
    if not f.filterable:
        raise ctx.error(
            "INVALID_FIELD", cmp.field.pos, f"field '{f.name}' can not be filtered in a query call"
        )
    get = ctx.getter(resolved)
    keyfn = _key_function(_category(f))

    if cmp.op == "LIKE":
        lit = cmp.value
        if isinstance(lit, NullLit):
            return lambda row: get(row) is None
        if not isinstance(lit, StringLit) or _category(f) not in ("string", "id"):
            raise _type_error(ctx, f, cmp.field.pos)
        match = _like_regex(lit).fullmatch

        def like(row: Row) -> bool:
            v = get(row)
            return v is not None and match(v if isinstance(v, str) else str(v)) is not None

        return like

    if cmp.op in ("IN", "NOT IN"):
        values = cmp.value if isinstance(cmp.value, tuple) else (cmp.value,)
        keys = [_literal_key(ctx, f, lit, "=") for lit in values]
        if any(isinstance(k, _Range) for k in keys):
            tests = [_compare("=", k) for k in keys]

            def member(v: Any) -> bool:
                return any(t(v) for t in tests)

        else:
            key_set = frozenset(keys)

            def member(v: Any) -> bool:
                return v in key_set

        if cmp.op == "IN":
            return lambda row: member(keyfn(get(row)))
        return lambda row: not member(keyfn(get(row)))

    assert not isinstance(cmp.value, tuple)
    key = _literal_key(ctx, f, cmp.value, cmp.op)
    test = _compare(cmp.op, key)
    if not resolved.hops and keyfn is _string_key and key is not None and cmp.op == "=":
        # The common case (`Status = 'Activated'`) without the generic layers.
        name = f.name

        def string_equals(row: Row) -> bool:
            v = row.get(name)
            return v is not None and v.lower() == key

        return string_equals
    return lambda row: test(keyfn(get(row)))


def _compile_condition(ctx: _Context, obj: ObjectDef, cond: Condition) -> Predicate:
    if isinstance(cond, Comparison):
        return _compile_comparison(ctx, obj, cond)
    if isinstance(cond, Not):
        inner = _compile_condition(ctx, obj, cond.item)
        return lambda row: not inner(row)
    preds = [_compile_condition(ctx, obj, item) for item in cond.items]
    if isinstance(cond, And):

        def all_of(row: Row) -> bool:
            for p in preds:  # noqa: SIM110 - a plain loop beats all(<generator>) on the per-row path
                if not p(row):
                    return False
            return True

        return all_of
    assert isinstance(cond, Or)

    def any_of(row: Row) -> bool:
        for p in preds:  # noqa: SIM110 - as above
            if p(row):
                return True
        return False

    return any_of


# --- SELECT shaping --------------------------------------------------------------------------------


@dataclass
class _Node:
    """One object level of the output: its fields, parent nodes and child subqueries, in select order."""

    obj: ObjectDef
    entries: dict[str, Any] = field(default_factory=dict)  # lower-case key -> str | _ParentOut | _ChildOut


@dataclass
class _ParentOut:
    relationship: str
    ref_field: str
    node: _Node


@dataclass
class _ChildOut:
    relationship: str
    plan: _Plan
    child_field: str


def _add_path(ctx: _Context, node: _Node, resolved: _Resolved) -> None:
    for hop in resolved.hops:
        key = hop.relationship.lower()
        entry = node.entries.get(key)
        if entry is None:
            entry = _ParentOut(hop.relationship, hop.ref_field, _Node(hop.target))
            node.entries[key] = entry
        node = entry.node
    key = resolved.field.name.lower()
    if key in node.entries:
        raise ctx.error(
            "INVALID_FIELD", resolved.path.pos, f"duplicate field selected: {resolved.field.name}"
        )
    node.entries[key] = resolved.field.name


def _render(ctx: _Context, node: _Node, row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attributes": {"type": node.obj.name, "url": ctx.url(node.obj.name, row.get("Id"))}
    }
    for entry in node.entries.values():
        if isinstance(entry, str):
            out[entry] = row.get(entry)
        elif isinstance(entry, _ParentOut):
            parent_id = row.get(entry.ref_field)
            parent = ctx.fetch(entry.node.obj.name, parent_id) if parent_id else None
            out[entry.relationship] = _render(ctx, entry.node, parent) if parent is not None else None
        else:
            children = entry.plan.rows(
                ctx.source.children(
                    entry.plan.obj.name, entry.child_field, str(row.get("Id")), ctx.include_deleted
                )
            )
            records = [_render(ctx, entry.plan.node, c) for c in children]
            out[entry.relationship] = (
                {"totalSize": len(records), "done": True, "records": records} if records else None
            )
    return out


# --- plans -----------------------------------------------------------------------------------------


@dataclass
class _Plan:
    ctx: _Context
    obj: ObjectDef
    node: _Node
    where: Predicate | None
    sort_keys: list[tuple[Getter, Callable[[Any], Any], bool, bool]]  # getter, keyfn, descending, nulls_first
    limit: int | None
    offset: int | None
    count: CountItem | None = None
    count_getter: Getter | None = None

    def rows(self, source_rows: Iterable[Row]) -> list[Row]:
        where = self.where
        include_deleted = self.ctx.include_deleted
        if where is None:
            rows = [r for r in source_rows if include_deleted or not r.get("IsDeleted")]
        elif include_deleted:
            rows = [r for r in source_rows if where(r)]
        else:
            rows = [r for r in source_rows if not r.get("IsDeleted") and where(r)]
        for get, keyfn, descending, nulls_first in reversed(self.sort_keys):
            null_rank = 0 if nulls_first != descending else 1  # reverse=True flips the rank

            def sort_key(
                row: Row, get: Getter = get, keyfn: Callable[[Any], Any] = keyfn, nr: int = null_rank
            ) -> tuple[int, Any]:
                v = keyfn(get(row))
                return (nr, 0) if v is None else (1 - nr, v)

            rows.sort(key=sort_key, reverse=descending)
        if self.offset:
            rows = rows[self.offset :]
        if self.limit is not None:
            rows = rows[: self.limit]
        return rows


def _sort_key_function(category: str) -> Callable[[Any], Any]:
    if category == "id":
        return lambda v: v or None
    return _key_function(category)


def _plan(ctx: _Context, query: Query, obj: ObjectDef) -> _Plan:
    node = _Node(obj)
    count: CountItem | None = None
    count_getter: Getter | None = None
    for item in query.select:
        if isinstance(item, FieldPath):
            _add_path(ctx, node, ctx.resolve(obj, item))
        elif isinstance(item, CountItem):
            count = item
            if item.field is not None:
                count_getter = ctx.getter(ctx.resolve(obj, item.field))
        else:
            _add_subquery(ctx, node, obj, item)
    where = _compile_condition(ctx, obj, query.where) if query.where is not None else None
    sort_keys = []
    for order in query.order_by:
        resolved = ctx.resolve(obj, order.field)
        if not resolved.field.filterable:
            raise ctx.error(
                "INVALID_FIELD",
                order.field.pos,
                f"field '{resolved.field.name}' can not be sorted in a query call",
            )
        sort_keys.append(
            (
                ctx.getter(resolved),
                _sort_key_function(_category(resolved.field)),
                order.descending,
                order.effective_nulls_first,
            )
        )
    if query.offset is not None and query.offset > MAX_OFFSET:
        raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}")
    return _Plan(ctx, obj, node, where, sort_keys, query.limit, query.offset, count, count_getter)


def _add_subquery(ctx: _Context, node: _Node, obj: ObjectDef, item: SubQuery) -> None:
    sub = item.query
    rel = obj.child_relationship(sub.sobject)
    if rel is None:
        raise ctx.error(
            "INVALID_TYPE",
            sub.sobject_pos,
            f"Didn't understand relationship '{sub.sobject}' in FROM part of query call. "
            + INVALID_RELATIONSHIP_HINT,
        )
    child_obj = ctx.schema.objects[rel.child_object]
    if any(isinstance(s, CountItem) for s in sub.select):
        raise ctx.error("MALFORMED_QUERY", item.pos, "COUNT() is not supported in a nested query.")
    key = rel.name.lower()
    if key in node.entries:
        raise ctx.error("INVALID_FIELD", item.pos, f"duplicate field selected: {rel.name}")
    node.entries[key] = _ChildOut(rel.name, _plan(ctx, sub, child_obj), rel.field)


def subquery_depth(base_url_path: str) -> int:
    """Child subqueries may nest four deep (five levels with the root) from API 58.0 on, one before
    (SOQL and SOSL Reference, Understanding Relationship Query Limitations)."""
    match = re.search(r"/v(\d+)\.\d+", base_url_path)
    return 4 if match is None or int(match.group(1)) >= 58 else 1


def execute(
    soql: str,
    schema: Schema,
    source: RecordSource,
    *,
    include_deleted: bool = False,
    base_url_path: str = "/services/data/v61.0",
    now: dt.datetime | None = None,
) -> QueryResult:
    """Run one SOQL query (queryAll when include_deleted). Raises SoqlError as Salesforce would.

    `now` pins the clock for relative date literals (TODAY, LAST_N_DAYS:n ...); default: current UTC.
    """
    query = parse(soql, subquery_depth(base_url_path))
    today = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()
    ctx = _Context(schema, soql, source, include_deleted, base_url_path.rstrip("/"), today)
    obj = ctx.resolve_object(query.sobject, query.sobject_pos)
    plan = _plan(ctx, query, obj)
    rows = plan.rows(source.records(obj.name, include_deleted))
    if plan.count is not None:
        if plan.count_getter is None:
            return QueryResult(total_size=len(rows), records=[])
        get = plan.count_getter
        counted = sum(1 for r in rows if get(r) is not None)
        return QueryResult(
            total_size=1, records=[{"attributes": {"type": "AggregateResult"}, "expr0": counted}]
        )
    return QueryResult(total_size=len(rows), records=[_render(ctx, plan.node, r) for r in rows])

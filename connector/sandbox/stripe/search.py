"""Stripe's search query language, the subset the connector needs.

Clauses `field:'value'` (exact, case-insensitive), `field~'value'` (substring), `-field:'v'`
(negation), `metadata['key']:'value'`, `created>1700000000` (numeric comparisons), joined by AND or
by OR (not both, as Stripe requires). Search sees objects only `search_lag_seconds` after writes."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, cast

from .common import Ctx
from .errors import invalid

_CLAUSE = re.compile(
    r"""\s*(?P<neg>-)?(?P<field>[a-z_]+(?:\[(?P<q>['"])(?P<key>[^'"]+)(?P=q)\])?)\s*"""
    r"""(?P<op>:|~|>=|<=|>|<)\s*(?:(?P<sq>['"])(?P<val>.*?)(?P=sq)|(?P<num>-?\d+)|(?P<null>null))\s*"""
)
FIELDS = {
    "customer": {"created", "email", "metadata", "name", "phone"},
    "product": {"active", "created", "description", "metadata", "name", "shippable", "url"},
    "price": {"active", "created", "currency", "lookup_key", "metadata", "product", "type"},
    "subscription": {"created", "metadata", "status"},
    "invoice": {
        "created",
        "currency",
        "customer",
        "metadata",
        "number",
        "receipt_number",
        "status",
        "subscription",
        "total",
    },
}


@dataclass
class Clause:
    negate: bool
    field: str
    key: str | None
    op: str
    value: Any


def parse(query: str, kind: str) -> tuple[list[Clause], str]:
    clauses: list[Clause] = []
    joiner = ""
    pos = 0
    text = query.strip()
    while True:
        match = _CLAUSE.match(text, pos)
        if not match:
            raise invalid(
                f"Invalid query: could not parse the query at position {pos}: '{text[pos:]}'.", "query"
            )
        field_name = match.group("field").split("[", 1)[0]
        if field_name not in FIELDS[kind]:
            raise invalid(
                f"Field `{field_name}` is an unsupported search field for resource `{kind}`s.", "query"
            )
        if match.group("key") is not None and field_name != "metadata":
            raise invalid(f"Invalid query: `{field_name}` has no keys.", "query")
        value: Any = match.group("val")
        if match.group("num") is not None:
            value = int(match.group("num"))
        elif match.group("null") is not None:
            value = None
        op = match.group("op")
        if op == "~" and (not isinstance(value, str) or len(value) < 3):
            raise invalid("Substring search (`~`) requires at least 3 characters.", "query")
        clauses.append(Clause(bool(match.group("neg")), field_name, match.group("key"), op, value))
        pos = match.end()
        if pos >= len(text):
            break
        conj = re.match(r"(AND|OR)\s+", text[pos:])
        if not conj:
            raise invalid(f"Invalid query: expected AND or OR at position {pos}.", "query")
        if joiner and conj.group(1) != joiner:
            raise invalid("Invalid query: cannot combine AND and OR in the same query.", "query")
        joiner = conj.group(1)
        pos += conj.end()
    return clauses, joiner or "AND"


def _matches(obj: dict[str, Any], c: Clause) -> bool:
    actual = (obj.get("metadata") or {}).get(c.key) if c.field == "metadata" else obj.get(c.field)
    if c.field == "metadata" and c.key is None:
        return False
    if isinstance(actual, bool):
        actual = "true" if actual else "false"
    if c.op == ":":
        if c.value is None:
            ok = actual is None
        else:
            ok = actual is not None and str(actual).lower() == str(c.value).lower()
    elif c.op == "~":
        ok = actual is not None and str(c.value).lower() in str(actual).lower()
    else:
        try:
            a, b = float(cast(Any, actual)), float(cast(Any, c.value))  # None: TypeError below
        except (TypeError, ValueError):
            return False
        ok = {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[c.op]
    return ok != c.negate


def run_search(ctx: Ctx, kind: str, p: dict[str, Any], url: str) -> dict[str, Any]:
    clauses, joiner = parse(p["query"], kind)
    combine = all if joiner == "AND" else any
    rows = [o for o in ctx.store.searchable(kind) if combine(_matches(o, c) for c in clauses)]
    limit = p.get("limit") or 10
    start = 0
    if p.get("page"):
        try:
            start = int(base64.urlsafe_b64decode(p["page"].encode()).decode().split(":", 1)[1])
        except (ValueError, IndexError):
            raise invalid("Invalid page: the page token is not valid.", "page") from None
    page = rows[start : start + limit]
    has_more = len(rows) > start + limit
    token = base64.urlsafe_b64encode(f"page:{start + limit}".encode()).decode() if has_more else None
    return {
        "object": "search_result",
        "data": page,
        "has_more": has_more,
        "next_page": token,
        "url": url,
    }

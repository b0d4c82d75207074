"""Safe literals for the SOQL the connector builds.

Values never reach a query by string formatting alone: strings go through `quote`, record ids
through `id_list` (validated, so an id can never smuggle in a quote), datetimes through
`datetime_literal`. SOQL string escapes are documented by Salesforce as \\n \\r \\t \\b \\f \\" \\'
and \\\\ (plus \\_ and \\% inside LIKE patterns: `escape_like`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime

_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_ESCAPE_RE = re.compile("[" + re.escape("".join(_ESCAPES)) + "]")
_ID_RE = re.compile(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?")


def escape(value: str) -> str:
    """The body of a SOQL string literal (no surrounding quotes)."""
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], value)


def quote(value: str) -> str:
    """A single-quoted SOQL string literal for `value`."""
    return "'" + escape(value) + "'"


def escape_like(value: str) -> str:
    """The body of a LIKE pattern matching `value` literally: the normal escapes plus \\% and \\_.

    Callers add their own `%` wildcards around it and the quotes: `"'%" + escape_like(v) + "%'"`.
    """
    return escape(value).replace("%", "\\%").replace("_", "\\_")


def is_record_id(value: object) -> bool:
    """True for a 15- or 18-character alphanumeric Salesforce record id."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def id_literal(record_id: str) -> str:
    """One quoted record id, validated."""
    if not is_record_id(record_id):
        raise ValueError(f"not a Salesforce record id (15 or 18 letters/digits): {record_id!r:.40}")
    return "'" + record_id + "'"


def id_list(ids: Iterable[str]) -> str:
    """A parenthesised list for `Id IN (...)`, every id validated; duplicates are dropped in order.

    An empty list is an error: `IN ()` is not valid SOQL, and the caller should not query at all.
    """
    literals = list(dict.fromkeys(id_literal(i) for i in ids))
    if not literals:
        raise ValueError("id_list needs at least one id (IN () is not valid SOQL)")
    return "(" + ",".join(literals) + ")"


def datetime_literal(dt: datetime) -> str:
    """A SOQL dateTime literal in UTC, e.g. 2026-01-01T00:00:00Z (unquoted, as SOQL wants).

    Naive datetimes are refused (ambiguous). Sub-second precision is dropped (floored), so a
    cursor used with `>=` never skips a record.
    """
    if not isinstance(dt, datetime):
        raise TypeError(f"expected datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("naive datetime: give it a timezone (UTC) before using it in SOQL")
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def date_literal(d: date) -> str:
    """A SOQL date literal, e.g. 2026-01-01 (unquoted)."""
    if isinstance(d, datetime):
        raise TypeError("expected a date, got a datetime (use datetime_literal)")
    return d.isoformat()

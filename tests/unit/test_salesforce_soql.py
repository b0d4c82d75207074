"""SOQL literal building: every string round-trips, ids are validated, datetimes are UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.salesforce import soql

_UNESCAPE = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


def parse_literal(literal: str) -> str:
    """A tiny reference SOQL string-literal parser: fails on any unescaped quote or bad escape."""
    assert literal[0] == "'" and literal[-1] == "'", literal
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]  # IndexError = dangling backslash = a broken literal
            assert nxt in _UNESCAPE, f"unknown escape \\{nxt}"
            out.append(_UNESCAPE[nxt])
            i += 2
            continue
        assert ch not in "'\n\r", f"unescaped {ch!r} would end or break the literal"
        out.append(ch)
        i += 1
    return "".join(out)


@given(st.text())
def test_quote_round_trips_any_string(value: str) -> None:
    assert parse_literal(soql.quote(value)) == value


@given(st.text(alphabet="\\'\"\n\r\t\b\fab %_"))
def test_quote_round_trips_escape_heavy_strings(value: str) -> None:
    assert parse_literal(soql.quote(value)) == value


def test_quote_examples() -> None:
    assert soql.quote("O'Brien") == r"'O\'Brien'"
    assert soql.quote("a\\b") == r"'a\\b'"
    assert soql.quote('say "hi"\n') == r"""'say \"hi\"\n'"""
    assert soql.quote("x' OR Name != '") == r"'x\' OR Name != \''"
    assert soql.quote("") == "''"
    assert soql.quote("Zürich 東京") == "'Zürich 東京'"


def test_quote_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        soql.quote(5)  # type: ignore[arg-type]


def test_escape_like_escapes_wildcards() -> None:
    assert soql.escape_like("50%_off'") == r"50\%\_off\'"


def test_id_list_validates_and_dedupes() -> None:
    ids = ["001000000000001", "001000000000001AAA", "001000000000001"]
    assert soql.id_list(ids) == "('001000000000001','001000000000001AAA')"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "001",
        "0010000000000011",
        "001000000000001AA",
        "00100000000000'",
        "001000000000001 OR 1=1",
        None,
        7,
    ],
)
def test_id_list_rejects_malformed_ids(bad: object) -> None:
    with pytest.raises(ValueError):
        soql.id_list(["001000000000001", bad])  # type: ignore[list-item]


def test_id_list_rejects_empty() -> None:
    with pytest.raises(ValueError):
        soql.id_list([])


@given(st.text(alphabet="0123456789abcdefABCDEF", min_size=15, max_size=15))
def test_id_list_accepts_any_15_char_alphanumeric(value: str) -> None:
    assert soql.id_list([value]) == f"('{value}')"


def test_datetime_literal_is_utc_whole_seconds() -> None:
    assert soql.datetime_literal(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00Z"
    plus2 = timezone(timedelta(hours=2))
    assert soql.datetime_literal(datetime(2026, 1, 1, 1, 30, 5, 999_999, tzinfo=plus2)) == (
        "2025-12-31T23:30:05Z"
    )


def test_datetime_literal_refuses_naive_and_non_datetimes() -> None:
    with pytest.raises(ValueError):
        soql.datetime_literal(datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        soql.datetime_literal("2026-01-01")  # type: ignore[arg-type]


def test_date_literal() -> None:
    assert soql.date_literal(date(2026, 2, 3)) == "2026-02-03"
    with pytest.raises(TypeError):
        soql.date_literal(datetime(2026, 2, 3, tzinfo=UTC))

"""The SOQL parser: grammar, literals, escapes and MALFORMED_QUERY messages."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.sandbox.salesforce.soql import (
    And,
    BoolLit,
    Comparison,
    CountItem,
    DateLit,
    DateTimeLit,
    FieldPath,
    Not,
    NullLit,
    NumberLit,
    Or,
    OrderItem,
    RelativeDateLit,
    SoqlError,
    StringLit,
    SubQuery,
    escape_like,
    escape_string,
    parse,
    quote,
    unescape_string,
)


def where(text: str):
    return parse(f"SELECT Id FROM Account WHERE {text}").where


def literal(text: str):
    cond = where(f"Name = {text}")
    assert isinstance(cond, Comparison)
    return cond.value


def malformed(text: str) -> str:
    with pytest.raises(SoqlError) as info:
        parse(text)
    assert info.value.error_code == "MALFORMED_QUERY"
    return info.value.message


def test_select_list_paths_subquery_and_clauses():
    q = parse(
        "select Id, Account.Name, Order.Account.Name, "
        "(SELECT Id, Quantity FROM OrderItems WHERE Quantity > 1 ORDER BY Quantity DESC LIMIT 5) "
        "FROM Order WHERE Status = 'Activated' ORDER BY EffectiveDate DESC NULLS FIRST, Id LIMIT 10 OFFSET 20"
    )
    assert q.sobject == "Order"
    assert q.select[:3] == (
        FieldPath(("Id",)),
        FieldPath(("Account", "Name")),
        FieldPath(("Order", "Account", "Name")),
    )
    sub = q.select[3]
    assert isinstance(sub, SubQuery)
    assert sub.query.sobject == "OrderItems"
    assert sub.query.limit == 5
    assert sub.query.order_by == (OrderItem(FieldPath(("Quantity",)), descending=True),)
    assert q.order_by == (
        OrderItem(FieldPath(("EffectiveDate",)), descending=True, nulls_first=True),
        OrderItem(FieldPath(("Id",))),
    )
    assert (q.limit, q.offset) == (10, 20)


def test_keywords_are_case_insensitive_and_contextual():
    q = parse("sElEcT id FrOm Order wHeRe Order.Status = 'x' OrDeR bY Order.Id aSc NuLlS lAsT lImIt 1")
    assert q.sobject == "Order"
    assert q.order_by[0].nulls_first is False
    assert q.where == Comparison(FieldPath(("Order", "Status")), "=", StringLit("x"))


def test_order_defaults():
    assert OrderItem(FieldPath(("X",))).effective_nulls_first is True
    assert OrderItem(FieldPath(("X",)), descending=True).effective_nulls_first is False


def test_count_forms():
    assert parse("SELECT COUNT() FROM Account").select == (CountItem(None),)
    assert parse("SELECT count(Id) FROM Account").select == (CountItem(FieldPath(("Id",))),)
    assert "COUNT() must be the only element in the SELECT list." in malformed(
        "SELECT COUNT(), Id FROM Account"
    )


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_comparison_operators(op):
    assert where(f"Name {op} 'a'") == Comparison(FieldPath(("Name",)), op, StringLit("a"))


def test_not_equal_spellings_are_the_same():
    assert where("Name <> 'a'") == where("Name != 'a'")


def test_in_not_in_like():
    assert where("Name IN ('a', 'b')") == Comparison(
        FieldPath(("Name",)), "IN", (StringLit("a"), StringLit("b"))
    )
    assert where("Name NOT IN ('a')").op == "NOT IN"
    assert where("Name LIKE 'a%'").op == "LIKE"


def test_boolean_structure_and_parentheses():
    a = Comparison(FieldPath(("A",)), "=", NumberLit(1))
    b = Comparison(FieldPath(("B",)), "=", NumberLit(2))
    c = Comparison(FieldPath(("C",)), "=", NumberLit(3))
    assert where("A = 1 AND B = 2 AND C = 3") == And((a, b, c))
    assert where("(A = 1 OR B = 2) AND NOT C = 3") == And((Or((a, b)), Not(c)))
    assert where("A = 1 OR (B = 2 AND C = 3)") == Or((a, And((b, c))))
    assert where("NOT (A = 1)") == Not(a)


def test_mixing_and_or_needs_parentheses():
    assert malformed("SELECT Id FROM A WHERE A = 1 AND B = 2 OR C = 3").endswith("unexpected token: 'OR'")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NULL", NullLit()),
        ("null", NullLit()),
        ("TRUE", BoolLit(True)),
        ("false", BoolLit(False)),
        ("42", NumberLit(42)),
        ("-7", NumberLit(-7)),
        ("3.25", NumberLit(3.25)),
        ("-0.5", NumberLit(-0.5)),
        (".5", NumberLit(0.5)),
        ("2024-01-31", DateLit(dt.date(2024, 1, 31))),
        ("2024-01-31T10:00:00Z", DateTimeLit(dt.datetime(2024, 1, 31, 10, tzinfo=dt.UTC))),
        (
            "2024-01-31T10:00:00.123+05:30",
            DateTimeLit(
                dt.datetime(
                    2024, 1, 31, 10, 0, 0, 123000, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
                )
            ),
        ),
        (
            "2024-01-31T10:00:00-0800",
            DateTimeLit(dt.datetime(2024, 1, 31, 10, tzinfo=dt.timezone(dt.timedelta(hours=-8)))),
        ),
        ("TODAY", RelativeDateLit("TODAY")),
        ("yesterday", RelativeDateLit("YESTERDAY")),
        ("TOMORROW", RelativeDateLit("TOMORROW")),
        ("LAST_N_DAYS:30", RelativeDateLit("LAST_N_DAYS", 30)),
        ("THIS_MONTH", RelativeDateLit("THIS_MONTH")),
    ],
)
def test_literals(text, expected):
    assert literal(text) == expected


def test_number_types():
    assert isinstance(literal("42").value, int)
    assert isinstance(literal("42.0").value, float)


@pytest.mark.parametrize(
    ("body", "value"),
    [
        ("Bob\\'s", "Bob's"),
        ('say \\"hi\\"', 'say "hi"'),
        ("back\\\\slash", "back\\slash"),
        ("a\\nb\\Nc", "a\nb\nc"),
        ("a\\rb\\tc", "a\rb\tc"),
        ("a\\bb\\fc", "a\bb\fc"),
        ("caf\\u00e9", "café"),
        ("100\\%", "100\\%"),  # only LIKE gives \% and \_ a meaning
        ("a\\_b", "a\\_b"),
    ],
)
def test_string_escapes(body, value):
    assert literal(f"'{body}'").value == value


def test_like_escapes_are_marked():
    lit = literal("'a\\%%\\_'")
    assert lit.chars == (("a", False), ("%", True), ("%", False), ("_", True))


def test_bad_escape():
    message = malformed("SELECT Id FROM Account WHERE Name = 'a\\qb'")
    assert message.endswith(
        "Invalid string literal 'a\\qb'. Illegal character sequence '\\q' in string literal."
    )


def test_unexpected_eof_message_matches_salesforce():
    assert malformed("SELECT Nme FROM Account WHERE") == (
        "\nSELECT Nme FROM Account WHERE\n                             ^\nERROR at Row:1:Column:30\n"
        "unexpected token: <EOF>"
    )


def test_error_location_on_later_rows():
    message = malformed("SELECT Id\nFROM Account\nWHERE Name = = 'x'")
    assert message == "\nWHERE Name = = 'x'\n             ^\nERROR at Row:3:Column:14\nunexpected token: '='"


@pytest.mark.parametrize(
    "text",
    [
        "SELECT FROM Account",
        "SELECT Id, FROM Account",
        "SELECT Id Account",
        "SELECT Id FROM",
        "SELECT Id FROM Account a",
        "SELECT Id FROM Account WHERE Name",
        "SELECT Id FROM Account WHERE Name = ",
        "SELECT Id FROM Account WHERE Name = Bob",
        "SELECT Id FROM Account WHERE Name IN ()",
        "SELECT Id FROM Account WHERE Name NOT LIKE 'x'",
        "SELECT Id FROM Account WHERE (Name = 'x'",
        "SELECT Id FROM Account ORDER Name",
        "SELECT Id FROM Account ORDER BY Name NULLS",
        "SELECT Id FROM Account LIMIT -1",
        "SELECT Id FROM Account LIMIT 1.5",
        "SELECT Id FROM Account LIMIT 5 LIMIT 5",
        "SELECT Id, (SELECT Id, (SELECT Id FROM B) FROM A) FROM Account",
        "SELECT Id FROM Account WHERE Name = 'unterminated",
        'SELECT Id FROM Account WHERE Name = "double"',
        "SELECT Id FROM Account WHERE CreatedDate > 2024-01-31T10:00:00",
        "SELECT Id FROM Account WHERE CloseDate = 2024-02-30",
        "SELECT Id FROM Account WHERE X = LAST_N_DAYS",
    ],
)
def test_syntax_errors(text):
    message = malformed(text)
    assert re.search(r"\nERROR at Row:\d+:Column:\d+\n", message)


def test_unknown_character_message():
    assert malformed("SELECT Id FROM Account WHERE Name = #").endswith(
        "line 1:37 no viable alternative at character '#'"
    )


# --- escaping round trips --------------------------------------------------------------------------


@given(st.text())
def test_escape_unescape_roundtrip(value):
    assert unescape_string(escape_string(value)) == value


@given(st.text())
def test_quoted_literal_parses_back(value):
    assert literal(quote(value)).value == value


@given(st.text())
def test_escape_like_marks_every_wildcard_as_literal(value):
    lit = literal("'" + escape_like(value) + "'")
    assert "".join(ch for ch, _ in lit.chars) == value
    assert all(escaped for ch, escaped in lit.chars if ch in "%_")


def test_subqueries_nest_four_deep_when_allowed():
    """API 58.0 and later: five levels of parent-to-child relationships (the root and four nested)."""
    five = "SELECT Id, (SELECT Id, (SELECT Id, (SELECT Id, (SELECT Id FROM E) FROM D) FROM C) FROM B) FROM A"
    query = parse(five, max_subquery_depth=4)
    assert isinstance(query.select[1], SubQuery)
    six = five.replace("(SELECT Id FROM E)", "(SELECT Id, (SELECT Id FROM F) FROM E)")
    with pytest.raises(SoqlError) as exc:
        parse(six, max_subquery_depth=4)
    assert exc.value.error_code == "MALFORMED_QUERY"
    with pytest.raises(SoqlError):
        parse("SELECT Id, (SELECT Id, (SELECT Id FROM B) FROM A) FROM Account")  # before 58.0: one level

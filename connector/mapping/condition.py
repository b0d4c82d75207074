"""Parse a mapping's `condition` (a SOQL WHERE fragment) so a mistake is caught where it is written.

    parse_condition(text) -> list[Comparison]      raises ConditionSyntaxError(offset, message, fix)
    literal_problem(field, comparison, value) -> (message, fix) | None   the value fits the field's type?

The connector ANDs the condition into its poll query; without this check a typo surfaces as
Salesforce's MALFORMED_QUERY at a column of a 400-character query, with no file or line. The
grammar follows Salesforce's SOQL reference (fieldExpression, comparison operators, logical
operators, date formats and date literals): `field op value`, IN / NOT IN / INCLUDES / EXCLUDES
with a parenthesised list (or a semi-join subquery for IN), AND / OR / NOT with parentheses (AND and
OR are not mixed at one level without them), values as quoted strings, numbers, true / false,
null, dates, dateTimes and date literals. Date functions (CALENDAR_YEAR(CreatedDate) = 2026) may
stand for the field. The connector must not import the fake org's parser (an optional extra).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from connector.mapping.schema import Mappings, Problem

__all__ = [
    "QUERY_ERROR_CODES",
    "Comparison",
    "ConditionSyntaxError",
    "Value",
    "condition_problem",
    "literal_problem",
    "mapping_conditions",
    "parse_condition",
    "probe_query",
]


class ConditionSyntaxError(Exception):
    """`offset` is 0-based in the condition text; `column` 1-based."""

    def __init__(self, offset: int, message: str, fix: str) -> None:
        super().__init__(message)
        self.offset, self.message, self.fix = offset, message, fix

    @property
    def column(self) -> int:
        return self.offset + 1


@dataclass(frozen=True)
class Value:
    kind: str  # string number boolean null date datetime date_literal subquery
    text: str
    offset: int


@dataclass(frozen=True)
class Comparison:
    field: str  # a field or parent path as written (Account.Billing_Entity__c)
    offset: int
    op: str  # = != < <= > >= LIKE IN NOT IN INCLUDES EXCLUDES
    values: tuple[Value, ...]
    function: str | None = None  # CALENDAR_YEAR(CreatedDate): the function's name, upper case


_DATE_LITERALS = frozenset(
    f"{when}_{unit}"
    for when in ("LAST", "THIS", "NEXT")
    for unit in ("WEEK", "MONTH", "QUARTER", "YEAR", "FISCAL_QUARTER", "FISCAL_YEAR")
) | {"YESTERDAY", "TODAY", "TOMORROW", "LAST_90_DAYS", "NEXT_90_DAYS"}
_UNITS = "DAYS|WEEKS|MONTHS|QUARTERS|YEARS|FISCAL_QUARTERS|FISCAL_YEARS"
_DATE_LITERAL_N = re.compile(rf"(?:(?:LAST|NEXT)_N_(?:{_UNITS})|N_(?:{_UNITS})_AGO)", re.IGNORECASE)
_DATE_FUNCTIONS = frozenset(
    {
        "CALENDAR_MONTH", "CALENDAR_QUARTER", "CALENDAR_YEAR", "DAY_IN_MONTH", "DAY_IN_WEEK",
        "DAY_IN_YEAR", "DAY_ONLY", "FISCAL_MONTH", "FISCAL_QUARTER", "FISCAL_YEAR", "HOUR_IN_DAY",
        "WEEK_IN_MONTH", "WEEK_IN_YEAR", "CONVERTTIMEZONE",
    }
)  # fmt: skip
_OPERATORS = ("!=", "<>", "<=", ">=", "=", "<", ">")
_TOKEN = re.compile(
    r"""(?P<space>\s+)
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
    |(?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?![\w.]))
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?::\d+)?)
    |(?P<string>'(?:\\.|[^'\\])*')
    |(?P<op>==|!=|<>|<=|>=|=|<|>|&&|\|\||[(),;"!])""",
    re.VERBOSE,
)
_WRONG_OPS = {
    "==": ("SOQL has no '=='", "use = (SOQL has no ==)"),
    "&&": ("SOQL has no '&&'", "use AND"),
    "||": ("SOQL has no '||'", "use OR"),
    '"': ("SOQL text values take single quotes", "write 'text' in single quotes"),
    ";": ("a SOQL condition cannot contain ';'", "remove the ';'"),
    "!": ("SOQL has no '!' on its own", "use NOT, or != to compare"),
}


@dataclass(frozen=True)
class _Tok:
    kind: str  # name string number date datetime op end
    text: str
    offset: int

    @property
    def word(self) -> str:
        return self.text.upper() if self.kind == "name" else ""


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos] == "'":
                raise ConditionSyntaxError(pos, "this quote is never closed", "close the text with a '")
            raise ConditionSyntaxError(pos, f"SOQL does not know the character {text[pos]!r}", "remove it")
        kind = match.lastgroup or "space"
        if kind == "op" and match.group() in _WRONG_OPS:
            message, fix = _WRONG_OPS[match.group()]
            raise ConditionSyntaxError(pos, message, fix)
        if kind != "space":
            out.append(_Tok(kind, match.group(), pos))
        pos = match.end()
    out.append(_Tok("end", "", len(text)))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.found: list[Comparison] = []

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def fail(self, tok: _Tok, expected: str, fix: str = "") -> ConditionSyntaxError:
        got = "the end of the condition" if tok.kind == "end" else f"'{tok.text}'"
        return ConditionSyntaxError(tok.offset, f"expected {expected}, found {got}", fix)

    def expect(self, text: str, expected: str) -> _Tok:
        if self.tok.text.upper() != text:
            raise self.fail(self.tok, expected, f"add '{text}'")
        return self.take()

    def parse(self) -> list[Comparison]:
        if self.tok.word in ("WHERE", "SELECT"):
            fix = f"remove the leading '{self.tok.text}'"
            raise ConditionSyntaxError(0, "write only what follows WHERE", fix)
        self.expression()
        if self.tok.kind != "end":
            fix = "join comparisons with AND or OR" if self.tok.text != ")" else "remove it or add a '('"
            raise self.fail(self.tok, "AND, OR or the end of the condition", fix)
        return self.found

    def expression(self) -> None:
        self.unary()
        joiner = ""
        while self.tok.word in ("AND", "OR"):
            if joiner and self.tok.word != joiner:
                raise ConditionSyntaxError(
                    self.tok.offset,
                    f"{joiner} and {self.tok.word} are mixed without parentheses",
                    "group them: (a AND b) OR c",
                )
            joiner = self.take().word
            self.unary()

    def unary(self) -> None:
        if self.tok.word == "NOT":
            self.take()
            self.unary()
        elif self.tok.text == "(":
            self.take()
            self.expression()
            self.expect(")", "')'")
        else:
            self.comparison()

    def comparison(self) -> None:
        start = self.tok
        if start.kind != "name" or start.word in ("AND", "OR", "IN", "LIKE"):
            raise self.fail(start, "a field name", "start each comparison with a field: Type = 'New'")
        self.take()
        field, function = start.text, None
        if start.word in _DATE_FUNCTIONS and self.tok.text == "(":
            self.take()
            inner = self.take()
            if inner.kind != "name":
                raise self.fail(inner, "a field name inside the function")
            field, function = inner.text, start.word
            self.expect(")", "')'")
        op = self.operator()
        values = self.value_list(op) if op in ("IN", "NOT IN", "INCLUDES", "EXCLUDES") else (self.value(),)
        self.found.append(Comparison(field, start.offset, op, values, function))

    def operator(self) -> str:
        tok = self.tok
        if tok.kind == "op" and tok.text in _OPERATORS:
            self.take()
            return "!=" if tok.text == "<>" else tok.text
        if tok.word in ("LIKE", "IN", "INCLUDES", "EXCLUDES"):
            return self.take().word
        if tok.word == "NOT" and self.toks[self.i + 1].word == "IN":
            self.take()
            self.take()
            return "NOT IN"
        fix = "compare with =, !=, <, <=, >, >=, LIKE, IN, NOT IN, INCLUDES or EXCLUDES"
        if tok.kind == "name" and tok.word not in ("AND", "OR", "NOT"):
            close = difflib.get_close_matches(tok.word, ["LIKE", "IN", "INCLUDES", "EXCLUDES"], n=1)
            fix = f"did you mean {close[0]}?" if close else fix
        raise self.fail(tok, "a comparison operator", fix)

    def value_list(self, op: str) -> tuple[Value, ...]:
        self.expect("(", f"'(' and a list of values after {op}")
        if op in ("IN", "NOT IN") and self.tok.word == "SELECT":
            return (self.subquery(),)
        values = [self.value()]
        while self.tok.text == ",":
            self.take()
            values.append(self.value())
        self.expect(")", "',' or ')' to close the list")
        return tuple(values)

    def subquery(self) -> Value:
        """A semi-join (Id IN (SELECT AccountId FROM Contact)): left for Salesforce to check."""
        start, depth = self.tok.offset, 1
        while depth:
            tok = self.take()
            if tok.kind == "end":
                raise self.fail(tok, "')' to close the subquery")
            depth += {"(": 1, ")": -1}.get(tok.text, 0)
        return Value("subquery", self.text[start : self.toks[self.i - 1].offset], start)

    def value(self) -> Value:
        tok = self.tok
        if tok.kind in ("string", "number", "date", "datetime"):
            self.take()
            return Value(tok.kind, tok.text, tok.offset)
        if tok.kind == "name":
            word = tok.word
            if word in ("TRUE", "FALSE"):
                return Value("boolean", self.take().text, tok.offset)
            if word == "NULL":
                return Value("null", self.take().text, tok.offset)
            name, _, n = word.partition(":")
            if (name in _DATE_LITERALS and not n) or (_DATE_LITERAL_N.fullmatch(name) and n):
                return Value("date_literal", self.take().text, tok.offset)
            if _DATE_LITERAL_N.fullmatch(name):
                raise ConditionSyntaxError(tok.offset, f"{name} needs a number", f"write {name}:30")
            raise ConditionSyntaxError(
                tok.offset,
                f"'{tok.text}' is not a value (SOQL compares a field with a value, not another field)",
                f"quote text: '{tok.text}'; write true/false, a number, a date or a date literal",
            )
        raise self.fail(tok, "a value", "quote text ('New'); numbers, true/false and dates take no quotes")


def parse_condition(text: str) -> list[Comparison]:
    """Every comparison in the condition, in order; raises ConditionSyntaxError at the first mistake."""
    if not text.strip():
        raise ConditionSyntaxError(0, "the condition is empty", "write e.g. Billing_Entity__c = true")
    return _Parser(text).parse()


# ---------------------------------------------------------------- values against field types

_TEXT_TYPES = frozenset(
    {"string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "id", "reference",
     "combobox", "encryptedstring"}
)  # fmt: skip
_NUMBER_TYPES = frozenset({"double", "int", "long", "currency", "percent"})
_WANTS = {
    "boolean": ("a checkbox", "compare with true or false", {"boolean"}),
    "number": ("a number field", "compare with a number without quotes: Amount > 100", {"number"}),
    "date": ("a date field", "compare with 2026-01-31 (no quotes) or a date literal such as TODAY",
             {"date", "date_literal"}),
    "datetime": ("a date/time field",
                 "compare with 2026-01-31T00:00:00Z (no quotes) or a date literal such as LAST_N_DAYS:30",
                 {"datetime", "date_literal"}),
    "text": ("a text field", "quote the value: 'New'", {"string"}),
}  # fmt: skip


def _family(sf_type: str) -> str | None:
    if sf_type == "boolean":
        return "boolean"
    if sf_type in _NUMBER_TYPES:
        return "number"
    if sf_type in ("date", "datetime"):
        return sf_type
    return "text" if sf_type in _TEXT_TYPES else None


def literal_problem(field: dict[str, Any], comparison: Comparison, value: Value) -> tuple[str, str] | None:
    """Why `value` cannot be compared with the described field (message, fix), or None when it fits."""
    if value.kind in ("null", "subquery") or comparison.function:
        return None
    family = _family(str(field.get("type", "")))
    if family is None:
        return None
    label, fix, accepted = _WANTS[family]
    name = comparison.field
    if comparison.op in ("INCLUDES", "EXCLUDES") and field.get("type") != "multipicklist":
        return f"{comparison.op} works only on multi-select picklists; {name} is {label}", "use = or IN"
    if comparison.op == "LIKE" and family != "text":
        return f"LIKE works only on text fields; {name} is {label}", "use = or a range (>, <)"
    if value.kind not in accepted:
        fix = f"quote the value: '{value.text}'" if family == "text" else fix
        return f"{name} is {label}: {value.text} does not fit it", fix
    return _picklist_problem(field, comparison, value)


_PICKLIST_OPS = frozenset({"=", "!=", "IN", "NOT IN", "INCLUDES", "EXCLUDES"})
_SHOWN_VALUES = 12


def _picklist_problem(field: dict[str, Any], comparison: Comparison, value: Value) -> tuple[str, str] | None:
    """A picklist compared with a value that is not one of its values: on a restricted picklist no
    record can hold it, so the comparison never matches; on an unrestricted one only records written
    through the API or a data load can. Salesforce compares picklist values case-insensitively."""
    sf_type = field.get("type")
    if sf_type not in ("picklist", "multipicklist") or comparison.op not in _PICKLIST_OPS:
        return None
    allowed = [str(v["value"]) for v in field.get("picklistValues") or () if v.get("value") is not None]
    if not allowed or value.kind != "string":
        return None
    text = unquote(value.text)
    wanted = [part.strip() for part in text.split(";")] if sf_type == "multipicklist" else [text]
    known = {v.casefold() for v in allowed}
    unknown = next((w for w in wanted if w and w.casefold() not in known), None)
    if unknown is None:
        return None
    shown = ", ".join(allowed[:_SHOWN_VALUES]) + (", …" if len(allowed) > _SHOWN_VALUES else "")
    close = difflib.get_close_matches(unknown.casefold(), list(known), n=1, cutoff=0.6)
    suggestion = next((v for v in allowed if close and v.casefold() == close[0]), None)
    did_you_mean = f"did you mean '{suggestion}'?" if suggestion else f"use one of: {shown}"
    name = comparison.field
    if field.get("restrictedPicklist"):
        message = (
            f"'{unknown}' is not a value of the restricted picklist {name} ({shown}): "
            "no record can hold it, so this comparison never matches"
        )
        return message, did_you_mean
    message = (
        f"'{unknown}' is not one of {name}'s picklist values ({shown}); the picklist is unrestricted, "
        "so only records written through the API or a data load could hold it"
    )
    on_purpose = f"(if records hold '{unknown}' on purpose, add it to the picklist's values)"
    return message, f"{did_you_mean} {on_purpose}"


def unquote(literal: str) -> str:
    """The text of a SOQL string literal ('O\\'Brien' -> O'Brien)."""
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


# ---------------------------------------------------------------- conditions in the org

# What Salesforce answers for a query it cannot run as written (not a transient failure).
QUERY_ERROR_CODES = frozenset(
    {"MALFORMED_QUERY", "INVALID_FIELD", "INVALID_QUERY_FILTER_OPERATOR", "INVALID_TYPE"}
)
_LOCATED = re.compile(r"ERROR at Row:(\d+):Column:(\d+)")

Path_ = tuple[str | int, ...]


def mapping_conditions(mappings: Mappings, kind: str | None = None) -> list[tuple[str, Path_, str, str]]:
    """(kind, path, object, condition) of every condition the mappings set (of one kind if given)."""
    sub = mappings.subscription
    found: list[tuple[str, Path_, str, str | None]] = [
        ("customer", ("condition",), mappings.customer.object, mappings.customer.condition),
        ("subscription", ("condition",), sub.object, sub.condition),
        ("subscription", ("lines", "condition"), sub.lines.object, sub.lines.condition),
    ]
    if mappings.usage is not None:
        found.append(("usage", ("condition",), mappings.usage.object, mappings.usage.condition))
    return [(k, p, o, c) for k, p, o, c in found if c and (kind is None or k == kind)]


def probe_query(sobject: str, condition: str) -> str:
    """The smallest query that runs the condition as the poll query does."""
    return f"{_probe_prefix(sobject)}{condition} LIMIT 1"


def _probe_prefix(sobject: str) -> str:
    return f"SELECT Id FROM {sobject} WHERE "


def refusal(sobject: str, salesforce_message: str) -> tuple[str, int | None]:
    """Salesforce's answer to `probe_query` as one line, and the column inside the condition it names."""
    lines = [line.strip() for line in salesforce_message.splitlines() if line.strip()]
    located = _LOCATED.search(salesforce_message)
    column = None
    if located and located.group(1) == "1":
        column = int(located.group(2)) - len(_probe_prefix(sobject))
        column = column if column >= 1 else None
    # Salesforce's located message: the query, a caret, "ERROR at Row:..", then what is wrong
    detail = lines[-1] if located else " ".join(lines)
    code = salesforce_message.split(":", 1)[0] if located else ""
    detail = f"{code}: {detail}" if code and code.isupper() and code not in detail else detail
    return detail, column


def condition_problem(
    mappings: Mappings, kind: str, path: Path_, sobject: str, salesforce_message: str
) -> Problem:
    """Salesforce refused the condition: the Problem at the condition's file:line."""
    file, line, column = mappings.position(kind, path)
    detail, inner = refusal(sobject, salesforce_message)
    where = f", column {inner} of the condition" if inner else ""
    return Problem(
        file,
        line,
        column + (inner - 1 if inner else 0),
        f"Salesforce refuses the {sobject} condition{where}: {detail}",
        "correct the condition (cpq2stripe mappings check --against-org checks it against the org)",
    )

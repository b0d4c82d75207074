"""SOQL parser for the fake org: query text -> AST dataclasses.

A hand-written scanner and recursive-descent parser, so every syntax error can point at the exact
row and column the way Salesforce's MALFORMED_QUERY messages do. Keywords are contextual (an object
may be called `Order`), and AND/OR may not be mixed at one level without parentheses, as in SOQL.
Name resolution and type checks happen in `query_engine`, which knows the schema.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Literal as TypingLiteral
from typing import cast

__all__ = [
    "And",
    "BoolLit",
    "Comparison",
    "CountItem",
    "DateLit",
    "DateTimeLit",
    "FieldPath",
    "Not",
    "NullLit",
    "NumberLit",
    "Or",
    "OrderItem",
    "Query",
    "RelativeDateLit",
    "SoqlError",
    "StringLit",
    "SubQuery",
    "error_at",
    "escape_like",
    "escape_string",
    "parse",
    "parse_date",
    "parse_datetime",
    "quote",
    "unescape_string",
]


class SoqlError(Exception):
    """A query Salesforce would reject: `error_code` (MALFORMED_QUERY, INVALID_FIELD, ...) and `message`."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message


def row_column(text: str, pos: int) -> tuple[int, int]:
    """1-based row and column of offset `pos`."""
    pos = max(0, min(pos, len(text)))
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def error_at(text: str, pos: int, detail: str) -> str:
    """Salesforce's located message: the offending line, a caret, `ERROR at Row:R:Column:C`, detail."""
    pos = max(0, min(pos, len(text)))
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    if line_end == -1:
        line_end = len(text)
    row, column = row_column(text, pos)
    line = text[line_start:line_end]
    return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{detail}"


# --- string literals -------------------------------------------------------------------------------

_SIMPLE_ESCAPES = {
    "n": "\n",
    "N": "\n",
    "r": "\r",
    "R": "\r",
    "t": "\t",
    "T": "\t",
    "b": "\b",
    "B": "\b",
    "f": "\f",
    "F": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
}
_ESCAPE_OUT = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


class _BadEscape(ValueError):
    def __init__(self, sequence: str, offset: int) -> None:
        super().__init__(sequence)
        self.sequence = sequence
        self.offset = offset


def _scan_escapes(body: str) -> list[tuple[str, bool]]:
    """Split a literal body into (character, escaped) pairs; LIKE cares which `%`/`_` were escaped."""
    out: list[tuple[str, bool]] = []
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out.append((ch, False))
            i += 1
            continue
        if i + 1 >= n:
            raise _BadEscape("\\", i)
        nxt = body[i + 1]
        if nxt in _SIMPLE_ESCAPES:
            out.append((_SIMPLE_ESCAPES[nxt], True))
            i += 2
        elif nxt in "%_":
            out.append((nxt, True))
            i += 2
        elif nxt in "uU":
            digits = body[i + 2 : i + 6]
            if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise _BadEscape(body[i : i + 6], i)
            out.append((chr(int(digits, 16)), True))
            i += 6
        else:
            raise _BadEscape(body[i : i + 2], i)
    return out


def unescape_string(body: str) -> str:
    """The value of a literal body (text between the quotes). `\\%`/`\\_` keep their backslash,
    since they only mean something inside LIKE patterns."""
    return "".join(("\\" + ch if escaped and ch in "%_" else ch) for ch, escaped in _scan_escapes(body))


def escape_string(value: str) -> str:
    """Literal body for `value`, the inverse of `unescape_string`."""
    return "".join(_ESCAPE_OUT.get(ch, ch) for ch in value)


def escape_like(value: str) -> str:
    """Literal body for a LIKE pattern that matches `value` exactly (wildcards escaped)."""
    return escape_string(value).replace("%", "\\%").replace("_", "\\_")


def quote(value: str) -> str:
    """A complete single-quoted SOQL string literal for `value`."""
    return "'" + escape_string(value) + "'"


# --- AST -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldPath:
    """`Name`, `Account.Name`, `Order.Account.Name` as written (case preserved); `pos` = offset."""

    parts: tuple[str, ...]
    pos: int = field(default=0, compare=False)

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class CountItem:
    """`COUNT()` (field None) or `COUNT(field)`."""

    field: FieldPath | None
    pos: int = dataclasses.field(default=0, compare=False)  # `field` is the attribute above


@dataclass(frozen=True)
class SubQuery:
    """A child-relationship subquery in the SELECT list; `query.sobject` is the relationship name."""

    query: Query
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class StringLit:
    value: str  # unescaped; `\%`/`\_` kept with their backslash
    chars: tuple[tuple[str, bool], ...] = field(default=(), compare=False)  # (char, escaped) for LIKE
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class NumberLit:
    value: int | float
    text: str = field(default="", compare=False)
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class BoolLit:
    value: bool
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class NullLit:
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class DateLit:
    value: dt.date
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class DateTimeLit:
    value: dt.datetime  # timezone-aware
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class RelativeDateLit:
    """TODAY, LAST_N_DAYS:30, THIS_MONTH ...: a day range resolved against the clock at execution."""

    name: str  # upper case
    n: int | None = None
    pos: int = field(default=0, compare=False)


Literal = StringLit | NumberLit | BoolLit | NullLit | DateLit | DateTimeLit | RelativeDateLit

CompareOp = TypingLiteral["=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN", "LIKE"]


@dataclass(frozen=True)
class Comparison:
    field: FieldPath
    op: CompareOp  # `<>` is normalised to `!=`
    value: Literal | tuple[Literal, ...]  # tuple for IN / NOT IN
    pos: int = dataclasses.field(default=0, compare=False)  # `field` is the attribute above


@dataclass(frozen=True)
class And:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Comparison | And | Or | Not


@dataclass(frozen=True)
class OrderItem:
    field: FieldPath
    descending: bool = False
    nulls_first: bool | None = None  # None: Salesforce default (first for ASC, last for DESC)

    @property
    def effective_nulls_first(self) -> bool:
        return self.nulls_first if self.nulls_first is not None else not self.descending


SelectItem = FieldPath | CountItem | SubQuery


@dataclass(frozen=True)
class Query:
    select: tuple[SelectItem, ...]
    sobject: str
    sobject_pos: int = field(default=0, compare=False)
    where: Condition | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None
    text: str = field(default="", compare=False, repr=False)


# Relative date literals: plain ones and the ones taking `:n`.
RELATIVE_DATES = frozenset(
    {
        "YESTERDAY",
        "TODAY",
        "TOMORROW",
        "LAST_WEEK",
        "THIS_WEEK",
        "NEXT_WEEK",
        "LAST_MONTH",
        "THIS_MONTH",
        "NEXT_MONTH",
        "LAST_90_DAYS",
        "NEXT_90_DAYS",
        "LAST_YEAR",
        "THIS_YEAR",
        "NEXT_YEAR",
    }
)
RELATIVE_DATES_N = frozenset({"LAST_N_DAYS", "NEXT_N_DAYS", "N_DAYS_AGO", "N_DAYS_FROM_NOW"})


# --- scanner ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # IDENT STRING NUMBER DATE DATETIME OP COMMA LPAREN RPAREN DOT COLON EOF
    text: str
    pos: int
    value: object = None

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "IDENT" else ""


def _is_ident_start(ch: str) -> bool:
    return ch.isascii() and (ch.isalpha() or ch == "_")


def _is_ident_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)

    def fail(self, pos: int, detail: str) -> SoqlError:
        return SoqlError("MALFORMED_QUERY", error_at(self.text, pos, detail))

    def no_viable(self, pos: int, what: str) -> SoqlError:
        row, column = row_column(self.text, pos)
        return self.fail(pos, f"line {row}:{column} no viable alternative at character '{what}'")

    def tokens(self) -> list[Token]:
        text, n = self.text, self.n
        out: list[Token] = []
        i = 0
        while i < n:
            ch = text[i]
            if ch.isspace():
                i += 1
            elif _is_ident_start(ch):
                j = i + 1
                while j < n and _is_ident_char(text[j]):
                    j += 1
                out.append(Token("IDENT", text[i:j], i))
                i = j
            elif self._starts_number(i):
                i = self._number_or_date(i, out)
            elif ch == "'":
                i = self._string(i, out)
            elif ch in "=<>!":
                two = text[i : i + 2]
                if two in ("!=", "<>", "<=", ">="):
                    out.append(Token("OP", "!=" if two == "<>" else two, i))
                    i += 2
                elif ch == "!":
                    raise self.no_viable(i + 1, self._char(i + 1))
                else:
                    out.append(Token("OP", ch, i))
                    i += 1
            elif ch in ",().:":
                kind = {",": "COMMA", "(": "LPAREN", ")": "RPAREN", ".": "DOT", ":": "COLON"}[ch]
                out.append(Token(kind, ch, i))
                i += 1
            else:
                raise self.no_viable(i, ch)
        out.append(Token("EOF", "<EOF>", n))
        return out

    def _starts_number(self, i: int) -> bool:
        text, n = self.text, self.n
        if text[i].isdigit():
            return True
        j = i + 1 if text[i] in "+-" else i
        if j < n and text[j].isdigit():
            return j > i
        return j < n and text[j] == "." and j + 1 < n and text[j + 1].isdigit()

    def _char(self, i: int) -> str:
        return self.text[i] if i < self.n else "<EOF>"

    def _digits(self, i: int) -> int:
        while i < self.n and self.text[i].isdigit():
            i += 1
        return i

    def _number_or_date(self, start: int, out: list[Token]) -> int:
        text = self.text
        i = start + 1 if text[start] in "+-" else start
        j = self._digits(i)
        # A date: 4 digits, '-', 2 digits, '-', 2 digits (unsigned).
        if i == start and j - i == 4 and text[j : j + 1] == "-":
            return self._date(start, out)
        is_float = False
        if text[j : j + 1] == "." and j + 1 < self.n and text[j + 1].isdigit():
            is_float = True
            j = self._digits(j + 1)
        if j < self.n and _is_ident_char(text[j]):
            raise self.no_viable(j, text[j])
        literal = text[start:j]
        value: int | float = float(literal) if is_float else int(literal)
        out.append(Token("NUMBER", literal, start, value))
        return j

    def _date(self, start: int, out: list[Token]) -> int:
        text = self.text
        j = start
        # Take the whole date/datetime lexeme, then validate it.
        while j < self.n and (text[j].isalnum() or text[j] in "-:.+"):
            j += 1
        lexeme = text[start:j]
        if "T" in lexeme or "t" in lexeme:
            value = parse_datetime(lexeme)
            if value is None:
                raise self.no_viable(start, lexeme)
            out.append(Token("DATETIME", lexeme, start, value))
        else:
            value_d = parse_date(lexeme)
            if value_d is None:
                raise self.no_viable(start, lexeme)
            out.append(Token("DATE", lexeme, start, value_d))
        return j

    def _string(self, start: int, out: list[Token]) -> int:
        text = self.text
        i = start + 1
        while i < self.n:
            ch = text[i]
            if ch == "\\":
                i += 2
                continue
            if ch == "'":
                break
            i += 1
        if i >= self.n:
            row, column = row_column(text, self.n)
            raise self.fail(self.n, f"line {row}:{column} mismatched character '<EOF>' expecting '\\''")
        body = text[start + 1 : i]
        try:
            chars = _scan_escapes(body)
        except _BadEscape as exc:
            raise self.fail(
                start + 1 + exc.offset,
                f"Invalid string literal '{body}'. "
                f"Illegal character sequence '{exc.sequence}' in string literal.",
            ) from None
        value = "".join(("\\" + ch if esc and ch in "%_" else ch) for ch, esc in chars)
        out.append(Token("STRING", text[start : i + 1], start, (value, tuple(chars))))
        return i + 1


def _two(s: str, at: int) -> int | None:
    part = s[at : at + 2]
    return int(part) if len(part) == 2 and part.isdigit() else None


def parse_date(s: str) -> dt.date | None:
    if len(s) != 10 or s[4] != "-" or s[7] != "-" or not (s[:4] + s[5:7] + s[8:]).isdigit():
        return None
    try:
        return dt.date(int(s[:4]), int(s[5:7]), int(s[8:]))
    except ValueError:
        return None


def parse_datetime(s: str) -> dt.datetime | None:
    """YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm|+hhmm); a zone is required, as in SOQL."""
    day = parse_date(s[:10])
    if day is None or len(s) < 20 or s[10] not in "Tt" or s[13] != ":" or s[16] != ":":
        return None
    hour, minute, second = _two(s, 11), _two(s, 14), _two(s, 17)
    if hour is None or minute is None or second is None:
        return None
    rest = s[19:]
    micro = 0
    if rest.startswith("."):
        k = 1
        while k < len(rest) and rest[k].isdigit():
            k += 1
        frac = rest[1:k]
        if not frac:
            return None
        micro = int((frac + "000000")[:6])
        rest = rest[k:]
    if rest in ("Z", "z"):
        tz = dt.UTC
    elif len(rest) in (5, 6) and rest[0] in "+-":
        hh = _two(rest, 1)
        mm = _two(rest, 4 if len(rest) == 6 else 3)
        if hh is None or mm is None or (len(rest) == 6 and rest[3] != ":"):
            return None
        sign = 1 if rest[0] == "+" else -1
        try:
            tz = dt.timezone(sign * dt.timedelta(hours=hh, minutes=mm))
        except ValueError:
            return None
    else:
        return None
    try:
        return dt.datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        return None


# --- parser ----------------------------------------------------------------------------------------

_CLAUSE_WORDS = frozenset({"WHERE", "ORDER", "LIMIT", "OFFSET"})


class _Parser:
    def __init__(self, text: str, max_subquery_depth: int = 1) -> None:
        self.text = text
        self.toks = _Scanner(text).tokens()
        self.i = 0
        self.max_subquery_depth = max_subquery_depth

    # helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> Token:
        t = self.toks[self.i]
        if t.kind != "EOF":
            self.i += 1
        return t

    def unexpected(self, t: Token | None = None) -> SoqlError:
        t = t or self.tok
        shown = "<EOF>" if t.kind == "EOF" else f"'{t.text}'"
        return SoqlError("MALFORMED_QUERY", error_at(self.text, t.pos, f"unexpected token: {shown}"))

    def is_kw(self, word: str, t: Token | None = None) -> bool:
        t = t or self.tok
        return t.kind == "IDENT" and t.upper == word

    def expect_kw(self, word: str) -> Token:
        if not self.is_kw(word):
            raise self.unexpected()
        return self.advance()

    def expect(self, kind: str) -> Token:
        if self.tok.kind != kind:
            raise self.unexpected()
        return self.advance()

    # grammar
    def query(self, depth: int = 0) -> Query:
        self.expect_kw("SELECT")
        select_pos = self.tok.pos
        select = self.select_list(depth)
        self._check_counts(select, select_pos)
        self.expect_kw("FROM")
        obj = self.expect("IDENT")
        where = None
        order: tuple[OrderItem, ...] = ()
        limit = offset = None
        if self.is_kw("WHERE"):
            self.advance()
            where = self.condition()
        if self.is_kw("ORDER"):
            self.advance()
            self.expect_kw("BY")
            order = self.order_list()
        if self.is_kw("LIMIT"):
            self.advance()
            limit = self.integer()
        if self.is_kw("OFFSET"):
            self.advance()
            offset = self.integer()
        return Query(select, obj.text, obj.pos, where, order, limit, offset, self.text)

    def _check_counts(self, select: tuple[SelectItem, ...], pos: int) -> None:
        counts = [item for item in select if isinstance(item, CountItem)]
        if not counts or len(select) == 1:
            return
        if any(c.field is None for c in counts):
            raise SoqlError(
                "MALFORMED_QUERY",
                error_at(self.text, pos, "COUNT() must be the only element in the SELECT list."),
            )
        plain = next((item for item in select if isinstance(item, FieldPath)), None)
        if plain is not None:
            raise SoqlError(
                "MALFORMED_QUERY",
                error_at(self.text, plain.pos, f"Field must be grouped or aggregated: {plain.parts[-1]}"),
            )

    def integer(self) -> int:
        t = self.tok
        if t.kind != "NUMBER" or not isinstance(t.value, int) or t.text[0] in "+-":
            raise self.unexpected()
        self.advance()
        return int(t.value)

    def select_list(self, depth: int) -> tuple[SelectItem, ...]:
        items: list[SelectItem] = [self.select_item(depth)]
        while self.tok.kind == "COMMA":
            self.advance()
            items.append(self.select_item(depth))
        return tuple(items)

    def select_item(self, depth: int) -> SelectItem:
        t = self.tok
        if t.kind == "LPAREN" and depth < self.max_subquery_depth and self.is_kw("SELECT", self.peek()):
            self.advance()
            sub = self.query(depth + 1)
            self.expect("RPAREN")
            return SubQuery(sub, t.pos)
        if self.is_kw("COUNT") and self.peek().kind == "LPAREN":
            self.advance()
            self.advance()
            counted = None if self.tok.kind == "RPAREN" else self.field_path()
            self.expect("RPAREN")
            return CountItem(counted, t.pos)
        if t.kind != "IDENT" or (self.is_kw("FROM") and self.peek().kind != "DOT"):
            raise self.unexpected()
        return self.field_path()

    def field_path(self) -> FieldPath:
        first = self.expect("IDENT")
        parts = [first.text]
        while self.tok.kind == "DOT":
            self.advance()
            parts.append(self.expect("IDENT").text)
        return FieldPath(tuple(parts), first.pos)

    def order_list(self) -> tuple[OrderItem, ...]:
        items = [self.order_item()]
        while self.tok.kind == "COMMA":
            self.advance()
            items.append(self.order_item())
        return tuple(items)

    def order_item(self) -> OrderItem:
        path = self.field_path()
        descending = False
        nulls_first: bool | None = None
        if self.is_kw("ASC") or self.is_kw("DESC"):
            descending = self.advance().upper == "DESC"
        if self.is_kw("NULLS"):
            self.advance()
            if self.is_kw("FIRST"):
                nulls_first = True
            elif self.is_kw("LAST"):
                nulls_first = False
            else:
                raise self.unexpected()
            self.advance()
        return OrderItem(path, descending, nulls_first)

    def condition(self) -> Condition:
        first = self.simple_condition()
        if not (self.is_kw("AND") or self.is_kw("OR")):
            return first
        joiner = self.tok.upper
        items = [first]
        while self.is_kw(joiner):
            self.advance()
            items.append(self.simple_condition())
        if self.is_kw("AND") or self.is_kw("OR"):
            # SOQL needs parentheses to mix AND and OR at one level.
            raise self.unexpected()
        return And(tuple(items)) if joiner == "AND" else Or(tuple(items))

    def simple_condition(self) -> Condition:
        t = self.tok
        if t.kind == "LPAREN":
            self.advance()
            inner = self.condition()
            self.expect("RPAREN")
            return inner
        if self.is_kw("NOT") and self.peek().kind != "DOT":
            self.advance()
            return Not(self.simple_condition())
        if t.kind != "IDENT":
            raise self.unexpected()
        return self.comparison()

    def comparison(self) -> Comparison:
        path = self.field_path()
        t = self.tok
        if t.kind == "OP":
            self.advance()
            return Comparison(path, t.text, self.literal(), t.pos)  # type: ignore[arg-type]
        if self.is_kw("LIKE"):
            self.advance()
            if self.tok.kind not in ("STRING",) and not self.is_kw("NULL"):
                raise self.unexpected()
            return Comparison(path, "LIKE", self.literal(), t.pos)
        if self.is_kw("IN") or (self.is_kw("NOT") and self.is_kw("IN", self.peek())):
            op = "IN"
            if self.is_kw("NOT"):
                self.advance()
                op = "NOT IN"
            self.advance()
            self.expect("LPAREN")
            values = [self.literal()]
            while self.tok.kind == "COMMA":
                self.advance()
                values.append(self.literal())
            self.expect("RPAREN")
            return Comparison(path, op, tuple(values), t.pos)  # type: ignore[arg-type]
        raise self.unexpected()

    def literal(self) -> Literal:
        t = self.tok
        if t.kind == "STRING":
            self.advance()
            value, chars = cast(tuple[str, tuple[tuple[str, bool], ...]], t.value)
            return StringLit(value, chars, t.pos)
        if t.kind == "NUMBER":
            self.advance()
            return NumberLit(t.value, t.text, t.pos)  # type: ignore[arg-type]
        if t.kind == "DATE":
            self.advance()
            return DateLit(t.value, t.pos)  # type: ignore[arg-type]
        if t.kind == "DATETIME":
            self.advance()
            return DateTimeLit(t.value, t.pos)  # type: ignore[arg-type]
        if t.kind == "IDENT":
            word = t.upper
            if word == "NULL":
                self.advance()
                return NullLit(t.pos)
            if word in ("TRUE", "FALSE"):
                self.advance()
                return BoolLit(word == "TRUE", t.pos)
            if word in RELATIVE_DATES:
                self.advance()
                return RelativeDateLit(word, None, t.pos)
            if word in RELATIVE_DATES_N:
                self.advance()
                self.expect("COLON")
                return RelativeDateLit(word, self.integer(), t.pos)
        raise self.unexpected()


def parse(text: str, max_subquery_depth: int = 1) -> Query:
    """Parse one SOQL statement; raises SoqlError(MALFORMED_QUERY) with Salesforce-style location.
    `max_subquery_depth`: how many child subqueries may nest (1 before API 58.0, 4 from it)."""
    parser = _Parser(text, max_subquery_depth)
    query = parser.query()
    if parser.tok.kind != "EOF":
        raise parser.unexpected()
    return query

"""Named value transforms an admin lists under `transforms:`; each is a pure function.

A transform receives the current value (str, number, bool or None), its argument and a
`Context` (the target's Stripe limit, the target, a reader for other fields of the same record)
and returns the next value. None flows through every transform untouched, so a blank field never
raises. A value the transform cannot handle raises `TransformError`, which the engine turns into
a record error, or leaves the value out with a note when the field says `on_invalid: omit`.

| name            | argument          | does                                                          |
|-----------------|-------------------|---------------------------------------------------------------|
| trim            |                   | strip surrounding whitespace, collapse runs of inner spaces   |
| lower / upper   |                   | change case                                                   |
| none_if_empty   |                   | blank or placeholder text ('-', 'n/a', 'none', 'null', 'TBD')  |
|                 |                   | becomes "no value", so the field is left out or the default    |
|                 |                   | applies                                                        |
| country         |                   | country name, alias or code -> ISO 3166-1 alpha-2             |
| phone           | region (optional) | -> E.164 (+<country code><number>); a number without + is read |
|                 |                   | in the record's country: `region_from` field(s), default       |
|                 |                   | [BillingCountry, ShippingCountry]; `region` (code, name or the |
|                 |                   | old calling-code argument) when those are empty or unknown.    |
|                 |                   | An extension is kept as ' x<digits>' when it fits the target's |
|                 |                   | limit (Stripe: phone 20), else dropped with a note             |
| street_line     | 1 or 2            | multi-line street: 1 = first line, 2 = the other lines, ', ' |
| truncate        | length (optional) | cut to the length, or to the Stripe target's limit            |
| email           |                   | reject malformed addresses ('.a@x.com', 'a..b@x.com')          |
| payment_term    |                   | 'Net 30 days', 'Net30', '30 days' -> 30; 'Due on Receipt' -> 0 |
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from connector.mapping.countries import country_code
from connector.mapping.payment_terms import PaymentTermError, parse_payment_term


class TransformError(ValueError):
    """A value a transform cannot turn into something Stripe accepts."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def _no_fields(_path: str) -> Any:
    return None


@dataclass
class Context:
    """What a transform may know besides the value: the target, its Stripe limit, the record's other
    fields (read-only, by path), and `notes` for things it changed that the record's message says."""

    limit: int | None = None
    target: str = ""
    lookup: Callable[[str], Any] = _no_fields
    notes: list[str] = field(default_factory=list)


ArgCheck = Callable[[Any], tuple[str, str] | None]


@dataclass(frozen=True)
class TransformDef:
    fn: Callable[[Any, Any, Context], Any]
    arg: str  # "none" | "optional_int" | "checked" (check() validates it, None when absent)
    doc: str
    check: ArgCheck | None = None  # arg (None when absent) -> (problem, fix) or None
    reads: Callable[[Any], tuple[str, ...]] | None = None  # arg -> the record's fields it reads


def _trim(value: Any, _arg: Any, _ctx: Context) -> Any:
    if isinstance(value, str):
        return re.sub(r"[ \t]+", " ", value.strip())
    return value


def _lower(value: Any, _arg: Any, _ctx: Context) -> Any:
    return value.lower() if isinstance(value, str) else value


def _upper(value: Any, _arg: Any, _ctx: Context) -> Any:
    return value.upper() if isinstance(value, str) else value


_PLACEHOLDERS = frozenset({"", "-", "--", "n/a", "na", "none", "null", "tbd", "?"})


def _none_if_empty(value: Any, _arg: Any, _ctx: Context) -> Any:
    if isinstance(value, str) and value.strip().casefold() in _PLACEHOLDERS:
        return None
    return value


def _country(value: Any, _arg: Any, _ctx: Context) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    code = country_code(str(value))
    if code is None:
        raise TransformError(
            f"unknown country '{value}'",
            "use an ISO 3166-1 country code (DE, US, GB) or the English country name in Salesforce",
        )
    return code


# ---- phone ------------------------------------------------------------------------------------

PHONE_OPTION_KEYS = ("region_from", "region")
_FIELD_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")
_EXTENSION = re.compile(r"(?i)\s*(?:,|;)?\s*(?:ext\.?|extension|x|#)\s*(\d{1,10})\s*$")
_PHONE_TEXT = re.compile(r"^\+?[\d\s.\-/()\u00a0]+$")  # digits and separators: no vanity letters


@dataclass(frozen=True)
class PhoneOptions:
    """Where a number written without + gets its country: the first `region_from` field of the
    record holding a known country (name or code), else the fixed `region`."""

    region_from: tuple[str, ...]
    region: str | None = None


DEFAULT_REGION_FROM = ("BillingCountry", "ShippingCountry")
"""The Account's country fields, billing first for every target: one Phone value feeds phone and
shipping.phone, and reading it in two countries would send two different numbers."""


def phone_region(value: Any) -> str | None:
    """'DE', 'Germany' or a calling code ('49', the phone transform's old argument) -> a region
    phonenumbers has numbering data for; None otherwise."""
    text = str(value).strip().removeprefix("+")
    if text.isdigit():
        region = phonenumbers.region_code_for_country_code(int(text))
    else:
        region = country_code(text) or phonenumbers.UNKNOWN_REGION
    return region if region in phonenumbers.SUPPORTED_REGIONS else None


def phone_options(arg: Any) -> PhoneOptions:
    """The `phone` transform's argument: none, a fixed region (`- phone: DE`), or
    `{region_from: Field or [Fields], region: DE}`. Raises TransformError for a bad one."""
    fields: Any = list(DEFAULT_REGION_FROM)
    region = arg
    if isinstance(arg, dict):
        unknown = sorted(str(k) for k in arg if k not in PHONE_OPTION_KEYS)
        if unknown:
            raise TransformError(
                f"unknown phone option '{unknown[0]}'",
                "use region_from (the field, or list of fields, holding the country) and region",
            )
        fields = arg.get("region_from", fields)
        fields = [fields] if isinstance(fields, str) else fields
        if not isinstance(fields, list) or not fields or not all(_is_field_path(f) for f in fields):
            raise TransformError(
                f"region_from must name the Salesforce field holding the country, got {arg['region_from']!r}",
                "write 'region_from: BillingCountry' (or a list: [ShippingCountry, BillingCountry])",
            )
        region = arg.get("region")
    fixed = None
    if region is not None and (
        isinstance(region, bool | dict | list) or (fixed := phone_region(region)) is None
    ):
        raise TransformError(
            f"phone region {region!r} is not a country with known phone numbers",
            "write a country code such as DE or US (or a country name)",
        )
    return PhoneOptions(tuple(fields), fixed)


def _is_field_path(value: Any) -> bool:
    return isinstance(value, str) and bool(_FIELD_PATH.match(value))


def _check_phone_arg(arg: Any) -> tuple[str, str] | None:
    try:
        phone_options(arg)
    except TransformError as exc:
        return exc.message, exc.fix
    return None


def _phone_reads(arg: Any) -> tuple[str, ...]:
    try:
        return phone_options(arg).region_from
    except TransformError:
        return ()


def _region_for(options: PhoneOptions, lookup: Callable[[str], Any]) -> str | None:
    for path in options.region_from:
        value = lookup(path)
        if value is not None and str(value).strip() and (region := phone_region(value)) is not None:
            return region
    return options.region


def parse_phone(value: str, region: str | None) -> tuple[str, str | None]:
    """(E.164 number, extension or None) for a number in international form or in `region`'s
    national form. Raises TransformError for text that is no phone number, letters (phonenumbers
    would read 'Zentrale' as vanity digits), or a digit count the country does not use."""
    text = value.strip()
    extension = None
    if match := _EXTENSION.search(text):
        text, extension = text[: match.start()].strip(), match.group(1)
    where = f" for {region}" if region else ""
    if not _PHONE_TEXT.match(text):
        raise TransformError(f"'{value}' is not a phone number{where}", _PHONE_FIX)
    number = _parse(text, region)
    if number is None and _idd_00(text):
        number = _parse("+" + re.sub(r"\D", "", text)[2:], None)
    if number is None and region is None and not text.startswith("+"):
        raise TransformError(
            f"'{value}' has no country code and the record has no country to read it in",
            "fill the record's country, or write the number with + and the country code",
        )
    if number is None:
        raise TransformError(
            f"'{value}' does not have the digits of a phone number{where}",
            _PHONE_FIX,
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), extension


_PHONE_FIX = "correct the number in Salesforce: digits only, e.g. +49 30 1234567 or 030 1234567"


def _idd_00(text: str) -> bool:
    """'0049 …': the international prefix most of the world dials, also on a record whose
    country dials another one (the US dials 011)."""
    return re.sub(r"[^\d+]", "", text).startswith("00")


_MIN_DIGITS = 7  # the shortest numbers in use (Niue, Tokelau: +683 4002); '123' is an extension


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    """The number when its length is one the country uses (no check that the range is allocated:
    fictional 555 numbers pass, and new ranges need no library update), else None."""
    try:
        number = phonenumbers.parse(text, region)
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        stable = phonenumbers.parse(e164, None) == number  # '+49 000000' loses a 0 per round: no number
    except phonenumbers.NumberParseException:
        return None
    digits = len(e164) - 1
    return number if stable and phonenumbers.is_possible_number(number) and digits >= _MIN_DIGITS else None


def normalise_phone(value: str, region: str | None = None) -> str:
    """'030 1234567' in DE -> '+49301234567'; '+44 (0)20 7946 0958' -> '+442079460958'; an
    extension is kept as ' x12'. Idempotent on its own output. Raises TransformError."""
    number, extension = parse_phone(value, region)
    return f"{number} x{extension}" if extension else number


def _phone(value: Any, arg: Any, ctx: Context) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    region = _region_for(phone_options(arg), ctx.lookup)
    number, extension = parse_phone(str(value), region)
    if extension is None:
        return number
    kept = f"{number} x{extension}"
    if ctx.limit is None or len(kept) <= ctx.limit:
        return kept
    ctx.notes.append(
        f"extension {extension} of '{value}' left out: "
        f"{ctx.target or 'the field'} holds {ctx.limit} characters"
    )
    return number


# ---- street lines -------------------------------------------------------------------------------


def _street_line(value: Any, arg: Any, _ctx: Context) -> Any:
    """Salesforce streets are text areas ('Hauptstr. 1\nHinterhaus'); Stripe has line1 and line2."""
    if not isinstance(value, str):
        return value
    lines = [re.sub(r"[ \t]+", " ", line.strip()) for line in value.splitlines()]
    lines = [line for line in lines if line]
    if arg == 1:
        return lines[0] if lines else None
    return ", ".join(lines[1:]) or None


def _check_street_line(arg: Any) -> tuple[str, str] | None:
    if arg in (1, 2) and not isinstance(arg, bool):
        return None
    got = "" if arg is None else f", got {arg!r}"
    return f"needs the line: 1 or 2{got}", "write '- street_line: 1' for line1, '- street_line: 2' for line2"


def _truncate(value: Any, arg: Any, ctx: Context) -> Any:
    length = arg if arg is not None else ctx.limit
    if isinstance(value, str) and length is not None and len(value) > length:
        return value[:length].rstrip()
    return value


_EMAIL = re.compile(
    r"^(?!\.)(?!.*\.\.)[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+(?<!\.)@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
)


def _email(value: Any, _arg: Any, _ctx: Context) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    if not _EMAIL.match(text):
        raise TransformError(
            f"email '{value}' is not a valid address",
            "correct the address in Salesforce (no leading, trailing or double dots; one @; a domain)",
        )
    return text


def _payment_term(value: Any, _arg: Any, _ctx: Context) -> Any:
    try:
        return parse_payment_term(value)
    except PaymentTermError as exc:
        raise TransformError(exc.problem, exc.fix) from None


TRANSFORMS: dict[str, TransformDef] = {
    "trim": TransformDef(_trim, "none", "strip surrounding whitespace"),
    "lower": TransformDef(_lower, "none", "lower-case"),
    "upper": TransformDef(_upper, "none", "upper-case"),
    "none_if_empty": TransformDef(_none_if_empty, "none", "blank or placeholder text counts as no value"),
    "country": TransformDef(_country, "none", "country name or code -> ISO alpha-2"),
    "phone": TransformDef(
        _phone, "checked", "phone -> E.164 in the record's country", _check_phone_arg, _phone_reads
    ),
    "street_line": TransformDef(
        _street_line, "checked", "line 1 or 2 of a multi-line street", _check_street_line
    ),
    "truncate": TransformDef(_truncate, "optional_int", "cut to the target's Stripe limit or to N"),
    "email": TransformDef(_email, "none", "reject addresses Stripe would refuse"),
    "payment_term": TransformDef(_payment_term, "none", "'Net 30 days' -> 30, 'Due on Receipt' -> 0"),
}


def apply(name: str, arg: Any, value: Any, limit: int | None, ctx: Context | None = None) -> Any:
    """Run one transform; `limit` is the target's Stripe max length (for `truncate`)."""
    context = ctx if ctx is not None else Context()
    context.limit = limit
    return TRANSFORMS[name].fn(value, arg, context)


def fields_read(name: str, arg: Any) -> tuple[str, ...]:
    """The record's other fields a transform reads (to SELECT them and check them against the org)."""
    reads = TRANSFORMS[name].reads
    return reads(arg) if reads is not None else ()

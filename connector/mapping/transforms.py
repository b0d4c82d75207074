"""Named value transforms an admin lists under `transforms:`; each is a pure function.

A transform receives the current value (str, number, bool or None) and returns the next one.
None flows through every transform untouched, so a blank field never raises. A value the
transform cannot handle raises `TransformError`, which the engine turns into a record error
(the record is not synced, the others are).

| name            | argument          | does                                                          |
|-----------------|-------------------|---------------------------------------------------------------|
| trim            |                   | strip surrounding whitespace, collapse runs of inner spaces   |
| lower / upper   |                   | change case                                                   |
| none_if_empty   |                   | blank or placeholder text ('-', 'n/a', 'none', 'null', 'TBD')  |
|                 |                   | becomes "no value", so the field is left out or the default    |
|                 |                   | applies                                                        |
| country         |                   | country name, alias or code -> ISO 3166-1 alpha-2             |
| phone           | calling code, "1" | -> `+<digits>` (E.164); numbers without + get the given code  |
| truncate        | length (optional) | cut to the length, or to the Stripe target's limit            |
| email           |                   | reject malformed addresses ('.a@x.com', 'a..b@x.com')          |
| payment_term    |                   | 'Net 30 days', 'Net30', '30 days' -> 30; 'Due on Receipt' -> 0 |
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connector.mapping.countries import country_code
from connector.mapping.payment_terms import PaymentTermError, parse_payment_term


class TransformError(ValueError):
    """A value a transform cannot turn into something Stripe accepts."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass(frozen=True)
class TransformDef:
    fn: Callable[[Any, Any, int | None], Any]
    arg: str  # "none" | "optional_int" | "optional_str"
    doc: str


def _trim(value: Any, _arg: Any, _limit: int | None) -> Any:
    if isinstance(value, str):
        return re.sub(r"[ \t]+", " ", value.strip())
    return value


def _lower(value: Any, _arg: Any, _limit: int | None) -> Any:
    return value.lower() if isinstance(value, str) else value


def _upper(value: Any, _arg: Any, _limit: int | None) -> Any:
    return value.upper() if isinstance(value, str) else value


_PLACEHOLDERS = frozenset({"", "-", "--", "n/a", "na", "none", "null", "tbd", "?"})


def _none_if_empty(value: Any, _arg: Any, _limit: int | None) -> Any:
    if isinstance(value, str) and value.strip().casefold() in _PLACEHOLDERS:
        return None
    return value


def _country(value: Any, _arg: Any, _limit: int | None) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    code = country_code(str(value))
    if code is None:
        raise TransformError(
            f"unknown country '{value}'",
            "use an ISO 3166-1 country code (DE, US, GB) or the English country name in Salesforce",
        )
    return code


_PHONE_SEPARATORS = re.compile(r"[\s.\-/()\u00a0]")
_EXTENSION = re.compile(r"(?i)(ext\.?|extension|x|#)\s*\d+\s*$")


def normalise_phone(value: str, calling_code: str = "1") -> str:
    """'(555) 123-4567' -> '+15551234567'; '+44 (0)20 7946 0958' -> '+442079460958'.

    Idempotent on its own output. Raises TransformError for letters, extensions, or a digit
    count no country uses (E.164: at most 15 digits including the country code).
    """
    raw = value.strip()
    if _EXTENSION.search(raw):
        raise TransformError(
            f"phone '{value}' has an extension, which Stripe's phone field cannot hold",
            "remove the extension from the phone number in Salesforce",
        )
    text = raw.replace("(0)", "")
    text = _PHONE_SEPARATORS.sub("", text)
    if text.startswith("00"):
        text = "+" + text[2:]
    international = text.startswith("+")
    digits = text[1:] if international else text
    if not digits.isdigit():
        raise TransformError(
            f"phone '{value}' is not a phone number",
            "enter digits only, with a leading + and country code, e.g. +15551234567",
        )
    if not international:
        if calling_code == "1" and len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        if calling_code == "1" and len(digits) != 10:
            raise TransformError(
                f"phone '{value}' has no country code and is not a 10-digit North American number",
                "write it with + and the country code, e.g. +4930123456",
            )
        digits = calling_code + digits.lstrip("0") if calling_code != "1" else calling_code + digits
    if not 8 <= len(digits) <= 15 or digits.startswith("0"):
        raise TransformError(
            f"phone '{value}' does not have a valid international number of digits",
            "E.164 numbers have 8 to 15 digits after the +, starting with the country code",
        )
    return "+" + digits


def _phone(value: Any, arg: Any, _limit: int | None) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return normalise_phone(str(value), str(arg) if arg is not None else "1")


def _truncate(value: Any, arg: Any, limit: int | None) -> Any:
    length = arg if arg is not None else limit
    if isinstance(value, str) and length is not None and len(value) > length:
        return value[:length].rstrip()
    return value


_EMAIL = re.compile(
    r"^(?!\.)(?!.*\.\.)[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+(?<!\.)@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
)


def _email(value: Any, _arg: Any, _limit: int | None) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    if not _EMAIL.match(text):
        raise TransformError(
            f"email '{value}' is not a valid address",
            "correct the address in Salesforce (no leading, trailing or double dots; one @; a domain)",
        )
    return text


def _payment_term(value: Any, _arg: Any, _limit: int | None) -> Any:
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
    "phone": TransformDef(_phone, "optional_str", "phone -> +E.164; arg: default calling code"),
    "truncate": TransformDef(_truncate, "optional_int", "cut to the target's Stripe limit or to N"),
    "email": TransformDef(_email, "none", "reject addresses Stripe would refuse"),
    "payment_term": TransformDef(_payment_term, "none", "'Net 30 days' -> 30, 'Due on Receipt' -> 0"),
}


def apply(name: str, arg: Any, value: Any, limit: int | None) -> Any:
    """Run one transform; `limit` is the target's Stripe max length (for `truncate`)."""
    return TRANSFORMS[name].fn(value, arg, limit)

"""Salesforce record ids: 15 case-sensitive characters plus the 3-character case-safe suffix.

An id is the object's 3-character key prefix, a pod/reserved part and a base-62 number. The suffix
encodes, for each 5-character chunk of the 15-character id, which characters are upper case, so
the 18-character form survives case-insensitive tools. Ids here are deterministic: seed data uses
`make_id(prefix, n)`; records created at run time take `new_id(prefix)`, whose numbers start far
above anything a seed makes, so the two never collide.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterable

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_POD = "5g000"  # instance/reserved characters, constant in this fake org
_NUMBER_WIDTH = 7  # 3 + 5 + 7 = 15
NEW_ID_OFFSET = 10**11  # run-time ids start here; seeds stay below it
_ID_RE = re.compile(r"^[0-9A-Za-z]{15}(?:[A-Z0-5]{3})?$")

_counter = itertools.count(NEW_ID_OFFSET)
_counter_lock = threading.Lock()


def checksum_suffix(id15: str) -> str:
    """The 3-character case-safe suffix of a 15-character id."""
    if len(id15) != 15:
        raise ValueError(f"expected 15 characters, got {len(id15)}: {id15!r}")
    out = []
    for chunk in range(3):
        bits = 0
        for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        out.append(_SUFFIX_CHARS[bits])
    return "".join(out)


def to_18(record_id: str) -> str:
    """The 18-character form of a 15- or 18-character id (an 18-character id is re-derived from
    its first 15 characters, which also repairs a suffix in the wrong case)."""
    return record_id[:15] + checksum_suffix(record_id[:15])


def is_valid_id(record_id: str) -> bool:
    """True for a well-formed 15-character id or an 18-character id whose suffix matches."""
    if not isinstance(record_id, str) or not _ID_RE.match(record_id):
        return False
    return len(record_id) == 15 or record_id[15:] == checksum_suffix(record_id[:15])


def _base62(number: int, width: int) -> str:
    if number < 0:
        raise ValueError("id numbers are non-negative")
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(BASE62[rem])
    text = "".join(reversed(digits)).rjust(width, "0")
    if len(text) > width:
        raise ValueError(f"id number too large: {number}")
    return text


def make_id(key_prefix: str, number: int) -> str:
    """The deterministic 18-character id number `number` of the object with `key_prefix`."""
    if len(key_prefix) != 3:
        raise ValueError(f"key prefix must have 3 characters: {key_prefix!r}")
    id15 = key_prefix + _POD + _base62(number, _NUMBER_WIDTH)
    return id15 + checksum_suffix(id15)


def new_id(key_prefix: str) -> str:
    """A fresh id from a process-wide counter (never equal to a `make_id` seed id below 10**11)."""
    with _counter_lock:
        number = next(_counter)
    return make_id(key_prefix, number)


def id_number(record_id: str) -> int:
    """The number inside an id made here (the inverse of `make_id`)."""
    number = 0
    for ch in record_id[8:15]:
        number = number * 62 + BASE62.index(ch)
    return number


def restart_after(existing: Iterable[str]) -> None:
    """Continue run-time ids just above the highest the org holds: after a reset, the same
    records created in the same order get the same ids (a seed's contract histories, written
    through the org, are reproducible), and no id the org holds is ever given again."""
    global _counter
    highest = max((n for n in map(id_number, existing) if n >= NEW_ID_OFFSET), default=NEW_ID_OFFSET - 1)
    with _counter_lock:
        _counter = itertools.count(highest + 1)

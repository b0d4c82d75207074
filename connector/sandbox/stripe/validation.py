"""Declarative parameter specs: what each endpoint accepts, checked the way Stripe checks.

A spec validates one decoded form value and returns it typed (int, bool, list, dict). Empty
strings mean "unset" in Stripe's encoding: nullable fields come back as None, others are refused
with parameter_invalid_empty."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import invalid, missing_param, unknown_param

UNSET = None  # what an emptied nullable parameter validates to


def path_of(parent: str, key: str) -> str:
    return f"{parent}[{key}]" if parent else key


def _one_of(values: tuple[str, ...]) -> str:
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return f"{values[0]} or {values[1]}"
    return ", ".join(values[:-1]) + f", or {values[-1]}"


def _empty(path: str) -> Exception:
    return invalid(
        f"You passed an empty string for '{path}'. We assume empty values are an attempt to unset a "
        f"parameter; however '{path}' cannot be unset. You should remove '{path}' from your request or "
        "supply a non-empty value.",
        path,
        "parameter_invalid_empty",
    )


@dataclass
class Spec:
    required: bool = False
    nullable: bool = True  # may an empty string unset it?

    def check(self, value: Any, path: str) -> Any:
        if value == "":
            if self.nullable and not self.required:
                return UNSET
            raise _empty(path)
        return self.convert(value, path)

    def convert(self, value: Any, path: str) -> Any:
        return value


@dataclass
class Str(Spec):
    max_len: int | None = None
    enum: tuple[str, ...] | None = None

    def convert(self, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {_show(value)}", path)
        if self.enum is not None and value not in self.enum:
            name = path.rsplit("[", 1)[-1].rstrip("]") if "[" in path else path
            raise invalid(f"Invalid {name}: must be one of {_one_of(self.enum)}", path)
        if self.max_len is not None and len(value) > self.max_len:
            raise invalid(f"Invalid string: {value[:50]}...; must be at most {self.max_len} characters", path)
        return value


@dataclass
class Int(Spec):
    min: int | None = None
    max: int | None = None

    def convert(self, value: Any, path: str) -> Any:
        if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
            raise invalid(f"Invalid integer: {_show(value)}", path, "parameter_invalid_integer")
        number = int(value)
        if self.min is not None and number < self.min:
            raise invalid(f"This value must be greater than or equal to {self.min}.", path)
        if self.max is not None and number > self.max:
            raise invalid(f"This value must be less than or equal to {self.max}.", path)
        return number


@dataclass
class Bool(Spec):
    def convert(self, value: Any, path: str) -> Any:
        if value in ("true", "false"):
            return value == "true"
        raise invalid(f"Invalid boolean: {_show(value)}", path)


@dataclass
class Decimal(Spec):
    """unit_amount_decimal: a decimal string with at most 12 decimal places."""

    places: int = 12

    def convert(self, value: Any, path: str) -> Any:
        if not isinstance(value, str) or not re.fullmatch(r"-?\d+(\.\d+)?", value):
            raise invalid(f"Invalid decimal: {_show(value)}", path)
        if "." in value and len(value.split(".")[1]) > self.places:
            raise invalid(
                f"Invalid decimal: {value}; must contain at maximum {self.places} decimal places", path
            )
        return value


@dataclass
class Num(Spec):
    """A float such as percent_off."""

    min: float | None = None
    max: float | None = None

    def convert(self, value: Any, path: str) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise invalid(f"Invalid decimal: {_show(value)}", path) from None
        if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
            raise invalid(f"Invalid {path}: must be between {self.min} and {self.max}", path)
        return number


@dataclass
class Ts(Spec):
    """A Unix timestamp, or one of the words an endpoint allows instead (`now`)."""

    words: tuple[str, ...] = ()

    def convert(self, value: Any, path: str) -> Any:
        if isinstance(value, str) and value in self.words:
            return value
        if not isinstance(value, str) or not re.fullmatch(r"\d+", value):
            hint = f"; must be a Unix timestamp or one of {_one_of(self.words)}" if self.words else ""
            raise invalid(f"Invalid timestamp: {_show(value)}{hint}", path, "parameter_invalid_integer")
        return int(value)


@dataclass
class Obj(Spec):
    fields: Mapping[str, Spec] = field(default_factory=dict)

    def convert(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise invalid(f"Invalid object: {_show(value)}", path)
        for key in value:
            if key not in self.fields:
                raise unknown_param(path_of(path, key))
        out: dict[str, Any] = {}
        for key, spec in self.fields.items():
            sub = path_of(path, key)
            if key not in value:
                if spec.required:
                    raise missing_param(sub)
                continue
            out[key] = spec.check(value[key], sub)
        return out


@dataclass
class Arr(Spec):
    item: Spec = field(default_factory=Spec)
    max_items: int | None = None

    def convert(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            if not all(k.isdigit() for k in value):
                bad = next(k for k in value if not k.isdigit())
                raise invalid(f"Invalid array: {path_of(path, bad)}", path)
            indexed = [(int(k), k) for k in value]
            indexed.sort()
            items = [(f"{path}[{k}]", value[k]) for _, k in indexed]
        elif isinstance(value, list):
            items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        else:
            raise invalid(f"Invalid array: {_show(value)}", path)
        if self.max_items is not None and len(items) > self.max_items:
            raise invalid(f"Invalid array: {path} must have at most {self.max_items} items", path)
        return [self.item.check(v, p) for p, v in items]


@dataclass
class StrMap(Spec):
    """A hash of free string keys to string values (a meter event's `payload`)."""

    def convert(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise invalid(f"Invalid object: {_show(value)}", path)
        for key, val in value.items():
            if not isinstance(val, str):
                raise invalid(f"Invalid string: {_show(val)}", path_of(path, key))
        return dict(value)


@dataclass
class Metadata(Spec):
    """Key-value strings: at most 50 keys, keys up to 40 characters, values up to 500."""

    def check(self, value: Any, path: str) -> Any:
        if value == "":
            return {}  # unset every key
        if not isinstance(value, dict):
            raise invalid("Invalid object", path)
        for key, val in value.items():
            if isinstance(val, dict | list):
                raise invalid(f"Invalid val: {_show(val)} must be a string under 500 characters", path)
            if len(key) > 40:
                raise invalid(f"Invalid key: {key} must be a string under 40 characters", path)
            if len(val) > 500:
                raise invalid(f"Invalid val: {val[:50]}... must be a string under 500 characters", path)
        check_metadata_count(value, path)
        return dict(value)


def check_metadata_count(meta: dict[str, Any], path: str = "metadata") -> None:
    kept = [k for k, v in meta.items() if v not in ("", None)]
    if len(kept) > 50:
        raise invalid(
            f"Metadata can have up to 50 keys, but you've set {len(kept)}. Email us at "
            "support+metadata@stripe.com for more information.",
            path,
        )


def merge_metadata(current: dict[str, str], update: dict[str, str] | None) -> dict[str, str]:
    """Stripe merges metadata on update; an empty value removes a key, an empty hash removes all."""
    if update is None:
        return current
    if update == {}:
        return {}
    merged = dict(current)
    for key, val in update.items():
        if val == "":
            merged.pop(key, None)
        else:
            merged[key] = val
    check_metadata_count(merged)
    return merged


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def validate(fields: Mapping[str, Spec], params: dict[str, Any]) -> dict[str, Any]:
    """Top-level parameters of one endpoint."""
    converted: dict[str, Any] = Obj(fields=fields).convert(params, "")
    return converted


# Shared building blocks.
EXPAND = Arr(item=Str(nullable=False))
# invoice_settings.custom_fields (customer, subscription, schedule phase): up to 4 fields shown on
# invoices, name up to 40 and value up to 140 characters (Stripe API reference).
CUSTOM_FIELDS = Arr(
    item=Obj(
        fields={
            "name": Str(required=True, nullable=False, max_len=40),
            "value": Str(required=True, nullable=False, max_len=140),
        }
    ),
    max_items=4,
)
METADATA = Metadata()
ADDRESS = Obj(
    fields={
        "line1": Str(max_len=5000),
        "line2": Str(max_len=5000),
        "city": Str(max_len=5000),
        "state": Str(max_len=5000),
        "postal_code": Str(max_len=5000),
        "country": Str(max_len=5000),
    }
)
RANGE = Obj(fields={"gt": Int(), "gte": Int(), "lt": Int(), "lte": Int()})
LIST = {
    "limit": Int(min=1, max=100),
    "starting_after": Str(nullable=False),
    "ending_before": Str(nullable=False),
    "expand": EXPAND,
    "created": RANGE,
}
SEARCH = {
    "query": Str(required=True, nullable=False),
    "limit": Int(min=1, max=100),
    "page": Str(),
    "expand": EXPAND,
}
RETRIEVE = {"expand": EXPAND}

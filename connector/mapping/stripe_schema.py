"""The writable parameters of a Stripe request, read from the pinned stripe-python's TypedDicts.

stripe-python is generated from Stripe's OpenAPI spec: `stripe.params.CustomerCreateParams`,
`CustomerUpdateParams`, `SubscriptionCreateParams`, ... name every parameter of a request with
its type (`str`, `int`, `bool`, `Literal[...]` enums, nested TypedDicts, lists) and a docstring.
This module flattens them to dot paths (`invoice_settings.footer`), so a mapping may write any
field Stripe accepts, with its type checked, without a hand-kept list going stale. The connector
pins stripe-python, so the schema moves only when the pin does.

Only what a mapping can express is kept: strings, integers, numbers, booleans, enums, lists of
strings and lists of small objects (`invoice_settings.custom_fields`); maps (metadata, handled by
`targets.py`) and unions the connector cannot tell apart (an id or an object) are left out.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import re
import sys
import typing
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

import stripe.params
import typing_extensions
from stripe._request_options import RequestOptions

# Which request a target object's mapping feeds: a field must be writable on create and on update
# (the connector creates once and updates after), so only parameters both accept are offered.
REQUESTS: dict[str, tuple[str, ...]] = {
    "customer": ("CustomerCreateParams", "CustomerUpdateParams"),
    "subscription": ("SubscriptionCreateParams", "SubscriptionUpdateParams"),
}

_LENGTH = re.compile(r"(?:up to|at most|maximum of|max(?:imum)? length:?)\s+\*?(\d+)\s+characters", re.I)


@dataclass(frozen=True)
class Param:
    """One writable parameter, by dot path."""

    path: str
    kind: str  # string | integer | number | boolean | enum | string_list | object_list
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    doc: str = ""
    # object_list: the fields of one item (`name`, `value` of a custom field)
    item: dict[str, Param] = field(default_factory=dict)
    max_items: int | None = None


def params_of(stripe_object: str) -> dict[str, Param]:
    """Every writable dot path of a target object (create ∩ update), by path."""
    return dict(_params_of(stripe_object))


@cache
def _params_of(stripe_object: str) -> tuple[tuple[str, Param], ...]:
    create, update = (_walk(getattr(stripe.params, name), "") for name in REQUESTS[stripe_object])
    both = {path: p for path, p in create.items() if path in update}
    return tuple(sorted(both.items()))


def _walk(cls: Any, prefix: str) -> dict[str, Param]:
    out: dict[str, Param] = {}
    docs = _docs(cls)
    skip = set(RequestOptions.__annotations__) if prefix == "" else set()
    for name, annotation in cls.__annotations__.items():
        if name in skip:
            continue
        path = f"{prefix}{name}"
        tp = _resolve(annotation, cls)
        if tp is None:
            continue
        doc = docs.get(name, "")
        nested = _typeddict(tp)
        if nested is not None:
            out.update(_walk(nested, f"{path}."))
            continue
        param = _param(path, tp, doc)
        if param is not None:
            out[path] = param
    return out


def _param(path: str, tp: Any, doc: str) -> Param | None:
    """A leaf's type as a mapping kind, or None when a mapping cannot express it."""
    members = _members(tp)
    literals = [a for m in members if typing.get_origin(m) is typing.Literal for a in typing.get_args(m)]
    choices = tuple(str(a) for a in literals if a != "")
    others = [m for m in members if typing.get_origin(m) is not typing.Literal]
    length = _max_length(doc)
    if choices and all(m is str for m in others):  # Literal[...] | str: an enum open to new values
        return Param(path, "enum", choices, None, doc)
    if len(others) != 1:
        return None  # e.g. int | Literal['now']: the connector cannot tell which is meant
    (base,) = others
    if base is str:
        return Param(path, "string", (), length, doc)
    if base is bool:
        return Param(path, "boolean", (), None, doc)
    if base is int:
        return Param(path, "integer", (), None, doc)
    if base in (float, Decimal):
        return Param(path, "number", (), None, doc)
    if typing.get_origin(base) in (list, typing.List):  # noqa: UP006
        (item,) = typing.get_args(base) or (Any,)
        if item is str:
            return Param(path, "string_list", (), None, doc)
        nested = _typeddict(item)
        if nested is not None:
            fields = {p.path: p for p in _walk(nested, "").values()}
            if fields and all(
                p.kind in ("string", "integer", "number", "boolean", "enum") for p in fields.values()
            ):
                return Param(path, "object_list", (), None, doc, fields, _max_items(doc))
    return None


def _members(tp: Any) -> list[Any]:
    if typing.get_origin(tp) in (typing.Union, _UnionType):
        return [m for a in typing.get_args(tp) for m in _members(a)]
    return [tp]


_UnionType = type(int | str)


def _resolve(annotation: Any, owner: Any) -> Any | None:
    """An annotation with its forward references evaluated in the module that declares it; None
    when a name only exists for type checkers."""
    module = sys.modules[owner.__module__]
    namespace = {**vars(typing), **vars(typing_extensions), **vars(module)}
    try:
        if typing.get_origin(annotation) in (typing.NotRequired, typing.Required):
            (annotation,) = typing.get_args(annotation)
        return _evaluate(annotation, namespace)
    except NameError:
        return None


def _evaluate(tp: Any, namespace: dict[str, Any]) -> Any:
    if isinstance(tp, str):
        return _evaluate(eval(tp, namespace), namespace)  # stripe-python's own annotations
    if isinstance(tp, typing.ForwardRef):
        return _evaluate(tp.__forward_arg__, namespace)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None or not args or origin is typing.Literal:
        return tp
    evaluated = tuple(_evaluate(a, namespace) for a in args)
    if origin in (typing.Union, _UnionType):
        return typing.Union[evaluated]  # noqa: UP007
    if origin is list:
        return typing.List[evaluated[0]]  # type: ignore[valid-type]  # noqa: UP006
    return tp


def _typeddict(tp: Any) -> Any | None:
    members = [m for m in _members(tp) if typing.get_origin(m) is not typing.Literal]
    if len(members) == 1 and typing_extensions.is_typeddict(members[0]):
        return members[0]
    return None


def _docs(cls: Any) -> dict[str, str]:
    """The docstring under each field of a TypedDict (stripe-python writes one per parameter)."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _max_length(doc: str) -> int | None:
    found = _LENGTH.search(doc)
    return int(found.group(1)) if found else None


def _max_items(doc: str) -> int | None:
    found = re.search(r"up to (\d+)", doc)
    return int(found.group(1)) if found else None

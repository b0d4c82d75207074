"""Load `customer.yaml` and `subscription.yaml`, reporting every problem with file:line:column.

    load_mappings(directory) -> Mappings          raises MappingError(problems)
    parse_mapping(text, file, kind) -> model       the same for one document (tests, `mappings check`)

Three passes, all of which always run so an admin sees every problem at once:
1. YAML: syntax errors carry yaml's mark; a composing pass records the line and column of
   every key and value (and catches duplicate keys, which plain YAML silently overwrites).
   Plain scalars follow YAML 1.2's core schema, so `NO` stays Norway's code (_CoreSchemaLoader).
2. Shape: pydantic (`extra='forbid'`); each error's location is mapped back to a line, and an
   unknown key gets a "did you mean" suggestion from the keys the model allows.
3. Meaning: Stripe targets against `targets.py`, reserved/long metadata keys, duplicate targets,
   transform names and arguments, defaults that a transform or the target would reject,
   SOQL conditions that cannot be a WHERE fragment.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from connector.mapping import targets as tg
from connector.mapping import transforms as tf
from connector.mapping.condition import ConditionSyntaxError, parse_condition
from connector.mapping.engine import coerce_to_target
from connector.mapping.schema import (
    CustomerMapping,
    MappingError,
    Mappings,
    Problem,
    RoutingMapping,
    SubscriptionMapping,
    UsageMapping,
    ValueSource,
)

FILES: dict[str, type[BaseModel]] = {
    "customer": CustomerMapping,
    "subscription": SubscriptionMapping,
    "usage": UsageMapping,
    "routing": RoutingMapping,
}
# A home without usage.yaml reads no usage; one without routing.yaml bills through one account.
OPTIONAL = frozenset({"usage", "routing"})
_SF_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SF_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")

Path_ = tuple[str | int, ...]


_MAX_NODES = 1_000_000


class _CoreSchemaLoader(yaml.SafeLoader):
    """Plain scalars read as YAML 1.2's core schema reads them, not as YAML 1.1 (PyYAML) does.

    YAML 1.1 turns `NO` (Norway) and `yes`/`on`/`off` into booleans, `0700` into 448 (octal),
    `1:30` into 90 and `2024-01-01` into a date. Here only true/false are booleans, and the rest stay
    text; so does a number written with a leading zero (a postal code, `0700`), as in JSON.
    """


_YAML11_ONLY = {f"tag:yaml.org,2002:{name}" for name in ("bool", "int", "float", "timestamp")}
_CoreSchemaLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML11_ONLY]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _first in (
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("int", r"[-+]?(?:0|[1-9][0-9]*)|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    (
        "float",
        r"[-+]?(?:\.[0-9]+|(?:0|[1-9][0-9]*)(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+0123456789.",
    ),
):
    _CoreSchemaLoader.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(f"^(?:{_pattern})$"), list(_first)
    )


class _AliasProblem(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.line, self.column = node.start_mark.line + 1, node.start_mark.column + 1


class _Positions:
    """(line, column) of every key and value in a YAML document, by path; 1-based."""

    def __init__(self) -> None:
        self.key: dict[Path_, tuple[int, int]] = {}
        self.value: dict[Path_, tuple[int, int]] = {}
        self.duplicates: list[tuple[Path_, tuple[int, int], tuple[int, int]]] = []
        self._active: set[int] = set()
        self._visits = 0

    def walk(self, node: yaml.Node, path: Path_ = ()) -> None:
        self.value[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        # aliases: one used inside its own anchor never ends, and nested ones (a "YAML bomb")
        # expand exponentially; a mapping file needs neither
        if id(node) in self._active:
            raise _AliasProblem(node, "a YAML anchor is used inside itself (a circular alias)")
        self._visits += 1
        if self._visits > _MAX_NODES:
            raise _AliasProblem(node, f"the document expands to more than {_MAX_NODES:,} YAML nodes")
        self._active.add(id(node))
        try:
            self._walk_children(node, path)
        finally:
            self._active.discard(id(node))

    def _walk_children(self, node: yaml.Node, path: Path_) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = (*path, str(key_node.value))
                pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if child in self.key:
                    self.duplicates.append((child, self.key[child], pos))
                self.key[child] = pos
                self.walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.key[(*path, index)] = (item.start_mark.line + 1, item.start_mark.column + 1)
                self.walk(item, (*path, index))

    def at(self, path: Path_, prefer: str = "value") -> tuple[int, int]:
        """Position of the longest prefix of `path` that the document has."""
        first, second = (self.value, self.key) if prefer == "value" else (self.key, self.value)
        for end in range(len(path), -1, -1):
            prefix = tuple(path[:end])
            if prefix in first:
                return first[prefix]
            if prefix in second:
                return second[prefix]
        return (1, 1)


class _Report:
    def __init__(self, file: str, positions: _Positions) -> None:
        self.file = file
        self.positions = positions
        self.problems: list[Problem] = []

    def add(self, path: Path_, message: str, fix: str = "", prefer: str = "value") -> None:
        line, column = self.positions.at(path, prefer)
        self.problems.append(Problem(self.file, line, column, message, fix))


# ---------------------------------------------------------------- public API


def load_mappings(directory: str | Path) -> Mappings:
    """Read DIR/customer.yaml and DIR/subscription.yaml; raise MappingError listing every problem."""
    directory = Path(directory)
    problems: list[Problem] = []
    models: dict[str, Any] = {}
    files: dict[str, str] = {}
    positions: dict[str, dict[Path_, tuple[int, int]]] = {}
    for kind in FILES:
        path = directory / f"{kind}.yaml"
        if kind in OPTIONAL and not path.exists():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(
                Problem(str(path), 0, 0, f"cannot read the mapping file: {exc.strerror}", f"create {path}")
            )
            continue
        model, found, where = _parse(text, str(path), kind)
        problems.extend(found)
        models[kind] = model
        files[kind] = str(path)
        positions[kind] = where.value
    if problems:
        raise MappingError(problems)
    optional = (models.get("usage"), models.get("routing"))
    return Mappings(models["customer"], models["subscription"], files, positions, *optional)


def parse_mapping(
    text: str, file: str, kind: str
) -> CustomerMapping | SubscriptionMapping | UsageMapping | RoutingMapping:
    """Parse one mapping document (`kind`: a key of FILES); raise MappingError."""
    model, problems, _ = _parse(text, file, kind)
    if problems:
        raise MappingError(problems)
    assert isinstance(model, CustomerMapping | SubscriptionMapping | UsageMapping | RoutingMapping)
    return model


# ---------------------------------------------------------------- passes


def _parse(text: str, file: str, kind: str) -> tuple[Any, list[Problem], _Positions]:
    loader = _CoreSchemaLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        message = f"YAML syntax error: {exc.problem or exc}" + (f" ({exc.context})" if exc.context else "")
        fix = "check indentation, colons and quotes on this line and the one above"
        return None, [Problem(file, line, column, message, fix)], _Positions()
    except yaml.YAMLError as exc:
        return None, [Problem(file, 0, 0, f"YAML error: {exc}", "fix the YAML syntax")], _Positions()
    finally:
        loader.dispose()

    positions = _Positions()
    if node is not None:
        try:
            positions.walk(node)
        except _AliasProblem as exc:
            fix = "write the values out instead of using YAML anchors (&) and aliases (*)"
            return None, [Problem(file, exc.line, exc.column, str(exc), fix)], _Positions()
    report = _Report(file, positions)
    if data is None or data == {}:
        report.add((), "the mapping file is empty", f"start from the shipped mappings/{kind}.yaml")
        return None, report.problems, positions
    if not isinstance(data, dict):
        report.add((), "the mapping file must be a YAML mapping of keys (write_back:, fields:, ...)")
        return None, report.problems, positions

    for dup_path, first, _second in positions.duplicates:
        report.add(
            dup_path,
            f"'{_dotted(dup_path)}' is given twice (first on line {first[0]}); YAML keeps only the last",
            "remove one of them",
            prefer="key",
        )

    model_cls = FILES[kind]
    model = None
    try:
        model = model_cls.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            _pydantic_problem(report, model_cls, err)
    _semantic(report, data, kind)
    if report.problems:
        return None, sorted(report.problems, key=lambda p: (p.line, p.column, p.message)), positions
    return model, [], positions


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _pydantic_problem(report: _Report, root: type[BaseModel], err: Any) -> None:
    loc: Path_ = tuple(p for p in err["loc"] if isinstance(p, int) or not _is_pydantic_tag(p))
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(root, loc[:-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        fix = f"did you mean '{close[0]}'?" if close else "allowed keys here: " + ", ".join(allowed)
        report.add(loc, f"unknown key '{key}' in {_dotted(loc[:-1])}", fix, prefer="key")
    elif kind == "missing":
        field = str(loc[-1])
        report.add(loc[:-1], f"'{field}' is required in {_dotted(loc[:-1])}", f"add '{field}:'", prefer="key")
    else:
        msg = err["msg"].removeprefix("Value error, ")
        report.add(loc, f"{_dotted(loc)}: {msg} (got {err.get('input')!r})", _type_fix(kind, err))


def _is_pydantic_tag(part: str) -> bool:
    return "[" in part or part in {"str", "int", "float", "bool", "none", "list", "dict"}


def _type_fix(kind: str, err: Any) -> str:
    if kind.startswith("literal"):
        expected = str(err.get("ctx", {}).get("expected", "the allowed value"))
        close = difflib.get_close_matches(str(err.get("input")), re.findall(r"'([^']*)'", expected), n=1)
        return f"did you mean '{close[0]}'?" if close else f"use {expected}"
    if kind in {"list_type"}:
        return "write a list: one '- item' per line"
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        return "write a mapping of 'key: value' lines here"
    if kind in {"string_type"}:
        return "write text here (quote it if YAML reads it as a number or true/false)"
    return "see the comments in the shipped mapping file"


def _allowed_keys(root: type[BaseModel], loc: Path_) -> list[str]:
    """The keys the model at `loc` accepts, following field annotations through lists and optionals."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if typing.get_origin(current) is list and args else current
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return arg
    return annotation


# ---------------------------------------------------------------- meaning


def _semantic(report: _Report, data: dict[str, Any], kind: str) -> None:
    if kind == "customer":
        _check_object(report, data.get("object", "Account"), "Account")
    if kind == "routing":
        _check_routing(report, data)
        return
    if kind == "usage":
        _check_sf_name(report, ("object",), data.get("object"))
        for key in UsageMapping.PATHS:
            _check_sf_path(report, (key,), data.get(key))
    _check_condition(report, ("condition",), data.get("condition"))
    wb = data.get("write_back")
    if isinstance(wb, dict):
        for key, name in wb.items():
            _check_sf_name(report, ("write_back", key), name)

    fields = data.get("fields")
    if kind == "customer" and isinstance(fields, list) and not fields:
        report.add(("fields",), "the mapping has no fields", "map at least Name -> name")
    if isinstance(fields, list):
        seen: dict[str, int] = {}
        metadata_keys = 0
        items: dict[str, int] = {}  # named list target -> entries so far
        for index, entry in enumerate(fields):
            if not isinstance(entry, dict):
                continue
            path: Path_ = ("fields", index)
            target = entry.get("target")
            if not isinstance(target, str):
                continue
            spec = _check_target(report, (*path, "target"), kind, target)
            _check_item_name(report, path, entry, spec, items)
            key = (
                f"{target}[{entry.get('name')}]" if spec is not None and spec.kind == "named_list" else target
            )
            if key in seen:
                line = report.positions.at(("fields", seen[key], "target"))[0]
                report.add(
                    (*path, "target"),
                    f"target '{key}' is mapped twice (first on line {line})",
                    "keep one mapping per Stripe target",
                )
            else:
                seen[key] = index
                metadata_keys += target.startswith("metadata.")
            _check_value_source(report, path, entry, spec)
        if metadata_keys > tg.METADATA_KEYS_MAX - len(tg.RESERVED_METADATA_KEYS):
            report.add(
                ("fields",),
                f"{metadata_keys} metadata keys are mapped; Stripe allows {tg.METADATA_KEYS_MAX} "
                f"and the connector uses {len(tg.RESERVED_METADATA_KEYS)}",
                "map fewer metadata keys",
            )

    tax_ids = data.get("tax_ids")
    if kind == "customer" and isinstance(tax_ids, list):
        for index, entry in enumerate(tax_ids):
            if isinstance(entry, dict):
                spec = tg.TargetSpec("tax_ids", "string", 5000, tg.SF_TEXT | tg.SF_NUMBER)
                _check_value_source(report, ("tax_ids", index), entry, spec)
                if isinstance(entry.get("type_source"), str) and not _SF_PATH.match(entry["type_source"]):
                    report.add(
                        ("tax_ids", index, "type_source"),
                        f"'{entry['type_source']}' is not a Salesforce field or parent path",
                        "write the API name of a field holding the Stripe type, e.g. VAT_Type__c",
                    )

    setup = data.get("payment_setup")
    if kind == "customer" and isinstance(setup, dict):
        _check_payment_setup(report, setup)

    if kind == "subscription":
        dpm = data.get("default_payment_method")
        if isinstance(dpm, dict):
            spec = tg.TargetSpec("default_payment_method", "string", 5000, tg.SF_TEXT)
            _check_value_source(report, ("default_payment_method",), dpm, spec)
        skip = data.get("skip_elapsed_periods")
        if isinstance(skip, dict):
            _check_value_source(report, ("skip_elapsed_periods",), skip, tg.SKIP_ELAPSED_PERIODS)
        trial = data.get("trial_end")
        if isinstance(trial, dict):
            _check_value_source(report, ("trial_end",), trial, tg.TRIAL_END)
        lines = data.get("lines")
        if isinstance(lines, dict):
            _check_condition(report, ("lines", "condition"), lines.get("condition"))
            for slot, spec in tg.LINE_SLOTS.items():
                entry = lines.get(slot)
                if isinstance(entry, dict):
                    _check_value_source(report, ("lines", slot), entry, spec)
            _check_line_fields(report, lines.get("fields"))
            tax_behavior = lines.get("tax_behavior")
            if isinstance(tax_behavior, dict):
                _check_value_source(report, ("lines", "tax_behavior"), tax_behavior, tg.TAX_BEHAVIOR)
            for key in ("write_back", "product_write_back", "price_book_entry_write_back"):
                block = lines.get(key)
                if isinstance(block, dict):
                    for name_key, name in block.items():
                        _check_sf_name(report, ("lines", key, name_key), name)
        discounts = data.get("discounts")
        if isinstance(discounts, dict):
            _check_discounts(report, discounts)
        cpq_amounts = data.get("cpq_amounts")
        if isinstance(cpq_amounts, dict):
            _check_raw_sources(report, "cpq_amounts", cpq_amounts, tg.CPQ_AMOUNT_SLOTS)


def _check_raw_sources(
    report: _Report, block: str, entries: dict[str, Any], slots: dict[str, tg.TargetSpec]
) -> None:
    """Each source is a plain field (the order rules read the raw number: no default or transforms)."""
    for slot in slots:
        entry = entries.get(slot)
        if not isinstance(entry, dict):
            continue
        path: Path_ = (block, slot)
        if not entry.get("source"):
            report.add(path, f"{block}.{slot} has no 'source'", "add 'source: FieldName'", "key")
            continue
        _check_value_source(report, path, {"source": entry["source"]}, slots[slot])
        for extra in ("default", "transforms"):
            if entry.get(extra) not in (None, []):
                report.add(
                    (*path, extra),
                    f"{block}.{slot} takes only a source; '{extra}' is not applied to {block}",
                    f"remove '{extra}' (compute the value in a Salesforce formula field instead)",
                    "key",
                )


def _check_payment_setup(report: _Report, setup: dict[str, Any]) -> None:
    """Each payment method type must be one Checkout's setup mode accepts; the URLs absolute."""
    types = setup.get("payment_method_types")
    if isinstance(types, list):
        if not types:
            report.add(
                ("payment_setup", "payment_method_types"), "no payment method type", "list card at least"
            )
        for index, kind in enumerate(types):
            if isinstance(kind, str) and kind not in tg.SETUP_MODE_PAYMENT_METHOD_TYPES:
                report.add(
                    ("payment_setup", "payment_method_types", index),
                    f"payment method type '{kind}' cannot be saved with a Checkout Session in setup mode",
                    "use one of " + ", ".join(sorted(tg.SETUP_MODE_PAYMENT_METHOD_TYPES)),
                )
    for key in ("success_url", "cancel_url"):
        url = setup.get(key)
        if isinstance(url, str) and not url.startswith(("https://", "http://")):
            report.add(
                ("payment_setup", key),
                f"'{url}' is not an absolute URL",
                "write the page the customer returns to, e.g. https://example.com/thanks",
            )
    fields = setup.get("fields")
    if isinstance(fields, dict):
        for key, name in fields.items():
            if name is not None:
                _check_sf_name(report, ("payment_setup", "fields", key), name)


def _check_discounts(report: _Report, discounts: dict[str, Any]) -> None:
    """Sources as `_check_raw_sources` says, and coupons mode names at least one discount."""
    _check_raw_sources(report, "discounts", discounts, tg.DISCOUNT_SLOTS)
    named = [
        s for s in ("line_percent", "line_amount", "order_percent") if isinstance(discounts.get(s), dict)
    ]
    if discounts.get("mode") == "coupons" and not named:
        report.add(
            ("discounts", "mode"),
            "discounts mode is coupons but no discount is mapped",
            "map line_percent, line_amount or order_percent, or set 'mode: net_price'",
        )


def _check_line_fields(report: _Report, fields: Any) -> None:
    """`lines.fields`: product.metadata.<key> / price.metadata.<key>, each once."""
    if not isinstance(fields, list):
        return
    seen: dict[str, int] = {}
    for index, entry in enumerate(fields):
        if not isinstance(entry, dict) or not isinstance(entry.get("target"), str):
            continue
        path: Path_ = ("lines", "fields", index)
        target = entry["target"]
        problem = tg.line_target_problem(target)
        if problem is not None:
            report.add((*path, "target"), *problem)
        elif target in seen:
            line = report.positions.at(("lines", "fields", seen[target], "target"))[0]
            report.add(
                (*path, "target"), f"target '{target}' is mapped twice (first on line {line})", "keep one"
            )
        seen.setdefault(target, index)
        _check_value_source(report, path, entry, tg.metadata_spec(target.rpartition(".")[2]))


def _check_item_name(
    report: _Report, path: Path_, entry: dict[str, Any], spec: tg.TargetSpec | None, items: dict[str, int]
) -> None:
    """A named list target (invoice_settings.custom_fields) needs a `name` per entry, within
    Stripe's limits; any other target takes none."""
    name = entry.get("name")
    if spec is None:
        return
    if spec.kind != "named_list":
        if name is not None:
            report.add(
                (*path, "name"),
                f"'name' is only for list targets such as invoice_settings.custom_fields, not '{spec.path}'",
                "remove the 'name' line",
                "key",
            )
        return
    if not isinstance(name, str) or not name.strip():
        report.add(
            path,
            f"{spec.path} needs a 'name' per entry: the label shown on the invoice",
            "add e.g. 'name: PO Number'",
            "key",
        )
        return
    if spec.name_max_length is not None and len(name) > spec.name_max_length:
        report.add(
            (*path, "name"),
            f"name '{name}' is {len(name)} characters; Stripe allows {spec.name_max_length} for {spec.path}",
            "use a shorter label",
        )
    items[spec.path] = items.get(spec.path, 0) + 1
    if spec.max_items is not None and items[spec.path] > spec.max_items:
        report.add(
            (*path, "target"),
            f"{spec.path} holds at most {spec.max_items} entries; this is number {items[spec.path]}",
            "map fewer fields to it",
        )


def _check_target(report: _Report, path: Path_, kind: str, target: str) -> tg.TargetSpec | None:
    spec = tg.resolve_target(kind, target)
    if spec is None and (reason := tg.refusal(kind, target)) is not None:
        report.add(
            path, f"'{target}' is a Stripe {kind} field a mapping may not write: {reason}", "remove it"
        )
        return None
    if spec is None:
        supported = tg.supported_targets(kind)
        close = difflib.get_close_matches(target, supported, n=1, cutoff=0.6)
        fix = f"did you mean '{close[0]}'?" if close else "supported: " + ", ".join(supported)
        report.add(path, f"'{target}' is not a Stripe {kind} field this connector can write", fix)
        return None
    if target.startswith("metadata."):
        problem = tg.metadata_key_problem(target.removeprefix("metadata."))
        if problem:
            fix = (
                "choose another key; the connector sets it itself"
                if "reserved" in problem
                else "use a key of at most 40 characters without [ or ]"
            )
            report.add(path, problem, fix)
    return spec


def _check_value_source(
    report: _Report, path: Path_, entry: dict[str, Any], spec: tg.TargetSpec | None
) -> None:
    source = entry.get("source")
    default = entry.get("default")
    if source is None and default is None:
        report.add(
            path, f"{_dotted(path)} has neither 'source' nor 'default'", "add 'source: FieldName'", "key"
        )
    if isinstance(source, str) and not _SF_PATH.match(source):
        report.add(
            (*path, "source"),
            f"'{source}' is not a Salesforce field or parent path",
            "write a field API name such as BillingCity or a parent path such as Parent.Name",
        )
    steps = entry.get("transforms", [])
    if not isinstance(steps, list):
        return  # pydantic already reported it
    ok = True
    for index, step in enumerate(steps):
        ok &= _check_transform(report, (*path, "transforms", index), step, spec)
    if ok and spec is not None and isinstance(default, str | int | float | bool):
        _check_default(report, (*path, "default"), default, steps, spec)


def _check_transform(report: _Report, path: Path_, step: Any, spec: tg.TargetSpec | None) -> bool:
    if isinstance(step, str):
        name, arg, has_arg = step, None, False
    elif isinstance(step, dict) and len(step) == 1:
        ((name, arg),) = step.items()
        has_arg = True
    else:
        report.add(
            path,
            f"transform {step!r} is neither a name nor 'name: argument'",
            "write '- trim' or '- truncate: 80'",
        )
        return False
    definition = tf.TRANSFORMS.get(str(name))
    if definition is None:
        close = difflib.get_close_matches(str(name), list(tf.TRANSFORMS), n=1, cutoff=0.6)
        fix = f"did you mean '{close[0]}'?" if close else "known transforms: " + ", ".join(tf.TRANSFORMS)
        report.add(path, f"unknown transform '{name}'", fix)
        return False
    if has_arg and definition.arg == "none":
        report.add(path, f"transform '{name}' takes no argument", f"write '- {name}'")
        return False
    if (
        definition.arg == "optional_int"
        and has_arg
        and (not isinstance(arg, int) or isinstance(arg, bool) or arg < 1)
    ):
        report.add(path, f"'{name}' needs a positive whole number, got {arg!r}", f"write '- {name}: 80'")
        return False
    if definition.check is not None and (problem := definition.check(arg if has_arg else None)):
        report.add(path, f"transform '{name}': {problem[0]}", problem[1])
        return False
    limit = spec.max_length if spec is not None else None
    if name == "truncate" and isinstance(arg, int) and limit is not None and arg > limit:
        where = f"'{spec.path}'" if spec is not None else "this target"
        message = f"'truncate: {arg}' is more than Stripe allows for {where}: {limit} characters"
        report.add(path, message, f"write '- truncate: {limit}', or '- truncate' to cut to the limit")
        return False
    if name == "truncate" and not has_arg and spec is not None and spec.max_length is None:
        report.add(
            path, f"'{spec.path}' has no length limit to truncate to", "give a length: '- truncate: 80'"
        )
        return False
    return True


def _check_default(report: _Report, path: Path_, default: Any, steps: list[Any], spec: tg.TargetSpec) -> None:
    probe = ValueSource(default=default, transforms=steps)
    value: Any = default
    try:
        for name, arg in probe.steps:
            value = tf.apply(name, arg, value, spec.max_length)
        coerce_to_target(value, spec)
    except tf.TransformError as exc:
        report.add(path, f"default {default!r} cannot be used: {exc.message}", exc.fix)


def _check_condition(report: _Report, path: Path_, condition: Any) -> None:
    if condition is None:
        return
    if not isinstance(condition, str) or not condition.strip():
        report.add(path, "the condition must be a SOQL WHERE fragment, e.g. Billing_Entity__c = true", "")
        return
    try:
        parse_condition(condition)
    except ConditionSyntaxError as exc:
        # the column inside the condition is exact; in the file it is exact for a one-line value
        line, column = report.positions.at(path)
        near = condition[exc.offset : exc.offset + 20].strip() or "(the end)"
        message = f"condition, column {exc.column} (at {near!r}): {exc.message}"
        report.problems.append(Problem(report.file, line, column + exc.offset, message, exc.fix))


def _check_object(report: _Report, found: Any, expected: str) -> None:
    """The sync reads one Salesforce object per mapping: another name would be checked, not synced."""
    if found != expected:
        close = difflib.get_close_matches(str(found), [expected], n=1)
        fix = f"did you mean '{expected}'?" if close else f"write 'object: {expected}'"
        report.add(("object",), f"object '{found}' is not read by this mapping; it reads {expected}", fix)


_ACCOUNT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def _check_routing(report: _Report, data: dict[str, Any]) -> None:
    """routing.yaml: account names an admin can report on, every route to a declared account."""
    accounts = data.get("accounts")
    names = set(accounts) if isinstance(accounts, dict) else set()
    if isinstance(accounts, dict) and not accounts:
        report.add(("accounts",), "no Stripe account is named", "name each account: `gmbh: {}`")
    for name in sorted(names, key=str):
        if not isinstance(name, str) or not _ACCOUNT_NAME.match(name):
            report.add(
                ("accounts", name),
                f"'{name}' is not an account name",
                "use lower-case letters, digits, - and _ (at most 40), starting with a letter: gmbh, us-inc",
                prefer="key",
            )
    for key in ("account_field", "order_field", "write_back"):
        _check_sf_name(report, (key,), data.get(key))
    targets: list[tuple[Path_, Any]] = [(("default",), data.get("default"))]
    routes = data.get("routes")
    if isinstance(routes, dict):
        targets += [(("routes", value), target) for value, target in routes.items()]
    for path, target in targets:
        if target is not None and names and target not in names:
            close = difflib.get_close_matches(str(target), sorted(names), n=1)
            report.add(
                path,
                f"'{target}' is not one of the accounts named under accounts: ({', '.join(sorted(names))})",
                f"did you mean {close[0]}?" if close else "add it under accounts:, or route to a named one",
            )


def _check_sf_name(report: _Report, path: Path_, name: Any) -> None:
    if isinstance(name, str) and not _SF_NAME.match(name):
        report.add(
            path,
            f"'{name}' is not a Salesforce field API name",
            "write the field's API name, e.g. Stripe_Customer_ID__c",
        )


def _check_sf_path(report: _Report, path: Path_, name: Any) -> None:
    if isinstance(name, str) and not _SF_PATH.match(name):
        report.add(
            path,
            f"'{name}' is not a Salesforce field path",
            "write a field's API name, or a path through lookups, e.g. Order_Product__r.OrderId",
        )


__all__ = ["load_mappings", "parse_mapping"]

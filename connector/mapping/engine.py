"""The pure mapping engine: Salesforce record in, Stripe params out. No I/O, no clock, no randomness.

map_record(mapping, record) -> MappedRecord
    `record` is a REST query record; parent paths arrive nested ({"Parent": {"Name": ...}}).
    `params` is nested Stripe params ({"address": {"line1": ...}}); empty values are left out,
    and the shipping block is left out entirely when it has no address values. Every value
    that cannot be sent becomes a FieldError in `errors` (the record should then not sync), or,
    for a field whose `on_invalid` is omit (phone and shipping.phone by default), in `omitted`:
    the value is left out and `notes` say so. Transforms may read other fields of the record
    (the phone's country) and add `remarks`.
    For a SubscriptionMapping: a non-empty default_payment_method switches collection_method to
    charge_automatically and drops days_until_due, and `skip_elapsed_periods` (a bool, not a Stripe
    param) says whether a backdated Order skips its elapsed periods; `trial_end` is the trial's
    last-day-exclusive end as YYYY-MM-DD (the order rules turn it into Stripe's trial_end). For a
    LineMapping: params has the slots
    unit_price (Decimal), quantity (int), product_name, product_description.
soql_fields(mapping) -> list[str]
    Fields to SELECT: Id, SystemModstamp, every source and write-back field (sorted, unique).
project_stripe_object(mapping, obj) -> dict
    The mapped part of an object Stripe returned, in the shape map_record produces: what to
    diff against when checking drift (unmapped Stripe fields are never looked at).
diff_params(old, new) -> dict
    Update params with only what changed. Nested objects (address, shipping) are sent whole
    when any part changed, since Stripe replaces them; metadata is diffed per key, since Stripe
    merges it. A value that disappeared becomes "" (Stripe's way to unset a field or a
    metadata key). The connector's reserved metadata keys are never unset.
payload_hash(params) -> str
    sha256 of canonical JSON (sorted keys, no whitespace): equal params, equal hash.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.mapping import targets as tg
from connector.mapping import tax_ids as tx
from connector.mapping import transforms as tf
from connector.mapping.schema import (
    CustomerMapping,
    FieldError,
    FieldMapping,
    LineMapping,
    MappedRecord,
    ObjectMapping,
    SubscriptionMapping,
    ValueSource,
)


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def read_path(record: Mapping[str, Any], path: str) -> Any:
    """`Parent.Name` from {"Parent": {"Name": "x"}}; None when any step is missing or null."""
    current: Any = record
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def coerce_to_target(value: Any, spec: tg.TargetSpec) -> Any:
    """Make a transformed value fit a Stripe target, or raise TransformError saying why it cannot.

    The one check of every value, whatever its origin: a mapping's default (checked when the mapping
    loads) and a Salesforce field's value (when the record syncs), e.g. 'German' as a locale."""
    fitted = _fit(value, spec)
    problem = tg.value_problem(spec, fitted)
    if problem is not None:
        raise tf.TransformError(f"{problem} for {spec.path}", spec.pattern_fix)
    return fitted


def _fit(value: Any, spec: tg.TargetSpec) -> Any:
    if is_empty(value):
        return None
    if spec.kind in ("string", "metadata", "named_list"):
        text = _text(value)
        if spec.max_length is not None and len(text) > spec.max_length:
            raise tf.TransformError(
                f"value is {len(text)} characters; Stripe allows {spec.max_length} for {spec.path}",
                "add '- truncate' to the transforms or shorten the value in Salesforce",
            )
        return text
    if spec.kind == "enum":
        text = _text(value)
        if text not in spec.choices:
            raise tf.TransformError(
                f"'{text}' is not one of {', '.join(spec.choices)}", "map a field holding one of those values"
            )
        return text
    if spec.kind == "string_list":
        items = value if isinstance(value, list) else re.split(r"[;,]", _text(value))
        return [s.strip() for s in (_text(i) for i in items) if s.strip()] or None
    if spec.kind == "integer":
        number = _number(value)
        if number is None or number != number.to_integral_value():
            raise tf.TransformError(
                f"{value!r} is not a whole number for {spec.path}",
                "map a whole-number field"
                + (" (add '- payment_term' for payment terms)" if spec.path == "days_until_due" else ""),
            )
        return int(number)
    if spec.kind == "boolean":
        flag = _BOOLEANS.get(_text(value).strip().lower())
        if flag is None:
            raise tf.TransformError(
                f"{value!r} is neither true nor false for {spec.path}", "map a checkbox field (or true/false)"
            )
        return flag
    if spec.kind == "date":
        day = _date(value)
        if day is None:
            raise tf.TransformError(
                f"{value!r} is not a date for {spec.path}", "map a Date field (or text as YYYY-MM-DD)"
            )
        return day.isoformat()
    if spec.kind == "number":
        number = _number(value)
        if number is None:
            raise tf.TransformError(f"{value!r} is not a number", "map a number or currency field")
        return number
    raise AssertionError(spec.kind)


def _date(value: Any) -> date | None:
    """A Date or Date/Time field's value (Salesforce sends ISO text) as a calendar date."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = _text(value).strip()
    try:
        return date.fromisoformat(text[:10]) if re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ].*)?", text) else None
    except ValueError:
        return None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        return Decimal(str(value).strip()) if isinstance(value, int | float | str | Decimal) else None
    except InvalidOperation:
        return None


def resolve_value(
    source: ValueSource, record: dict[str, Any], spec: tg.TargetSpec, remarks: list[str] | None = None
) -> Any:
    """Source value (or the default when it is empty), through the transforms, fitted to the target.

    The default replaces an empty source and also an empty transform result; it runs through the
    same transforms. Transforms' remarks are added to `remarks`. Raises TransformError.
    """
    ctx = tf.Context(target=spec.path, lookup=lambda path: read_path(record, path))
    raw = read_path(record, source.source) if source.source else None
    value = _run(source, raw, spec, ctx) if not is_empty(raw) else None
    if is_empty(value) and source.default is not None:
        value = _run(source, source.default, spec, ctx)
    value = coerce_to_target(value, spec)
    if remarks is not None:
        remarks.extend(ctx.notes)
    return value


def _run(source: ValueSource, value: Any, spec: tg.TargetSpec, ctx: tf.Context) -> Any:
    for name, arg in source.steps:
        value = tf.apply(name, arg, value, spec.max_length, ctx)
    return value


def _put(params: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _append(params: dict[str, Any], path: str, item: dict[str, Any]) -> None:
    *parents, leaf = path.split(".")
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    node.setdefault(leaf, []).append(item)


_REQUIRED_SLOTS = ("unit_price", "quantity", "product_name")


def map_record(mapping: ObjectMapping, record: dict[str, Any]) -> MappedRecord:
    """Map one Salesforce record to Stripe params (see the module docstring)."""
    result = MappedRecord(record_id=record.get("Id"))
    if isinstance(mapping, LineMapping):
        items = [(slot, src, tg.LINE_SLOTS[slot]) for slot, src in mapping.slots().items()]
        for slot, src, spec in items:
            value = _resolve_into(result, src, record, spec, slot)
            if value is not None:
                result.params[slot] = value
            elif slot in _REQUIRED_SLOTS and not any(e.stripe_target == slot for e in result.errors):
                result.errors.append(
                    FieldError(
                        result.record_id,
                        src.source or "(default)",
                        slot,
                        None,
                        f"the line has no {slot.replace('_', ' ')}",
                        "fill it in Salesforce",
                    )
                )
        for entry in mapping.fields:  # product.metadata.<key> / price.metadata.<key>
            parsed = tg.line_target(entry.target)
            if parsed is None:
                continue  # the loader refuses these
            obj, key = parsed
            spec = tg.metadata_spec(key)
            value = _resolve_into(result, entry, record, spec, entry.target, omit=entry.omit_invalid)
            if value is not None:
                result.params.setdefault(f"{obj}_metadata", {})[key] = value
        return result

    for entry in mapping.fields:
        target_spec = tg.resolve_target(mapping.stripe_object, entry.target)
        if target_spec is None:  # the loader refuses these; a hand-built model may still carry one
            result.errors.append(
                FieldError(
                    result.record_id,
                    entry.source or "(default)",
                    entry.target,
                    None,
                    "unsupported Stripe target",
                    "fix the mapping",
                )
            )
            continue
        value = _resolve_into(result, entry, record, target_spec, entry.target, omit=entry.omit_invalid)
        if value is not None and target_spec.kind == "named_list":  # one {name, value} per entry
            _append(result.params, entry.target, {"name": entry.name, "value": value})
        elif value is not None:
            _put(result.params, entry.target, value)

    if isinstance(mapping, CustomerMapping):
        _finish_customer(result)
        _tax_ids(mapping, record, result)
    elif isinstance(mapping, SubscriptionMapping):
        _finish_subscription(mapping, record, result)
    return result


def _resolve_into(
    result: MappedRecord,
    src: ValueSource,
    record: dict[str, Any],
    spec: tg.TargetSpec,
    target: str,
    *,
    omit: bool = False,
) -> Any:
    """The value for one target, or None with the reason in `errors` (or `omitted` when `omit`)."""
    try:
        return resolve_value(src, record, spec, result.remarks)
    except tf.TransformError as exc:
        raw = read_path(record, src.source) if src.source else src.default
        error = FieldError(result.record_id, src.source or "(default)", target, raw, exc.message, exc.fix)
        (result.omitted if omit else result.errors).append(error)
        return None


def _finish_customer(result: MappedRecord) -> None:
    if result.params.get("tax_exempt") == "none":
        del result.params["tax_exempt"]  # Stripe's default: "none" and no value are the same Customer
    shipping = result.params.get("shipping") or {}
    if not shipping.get("address"):
        result.params.pop("shipping", None)  # a name or phone alone is not a shipping address
        result.omitted = [e for e in result.omitted if not e.stripe_target.startswith("shipping.")]
        return
    if not shipping.get("name"):
        result.errors.append(
            FieldError(
                result.record_id,
                "(none)",
                "shipping.name",
                None,
                "Stripe requires shipping.name whenever a shipping address is sent",
                "map a field (e.g. Name) to shipping.name",
            )
        )


TAX_IDS_PARAM = "tax_id_data"
"""Where the desired tax ids sit in a Customer's params: Stripe takes them under this name on create;
on update the sink turns a change into tax id creates and deletes (connector.stripe_sink.customers)."""
_TAX_ID_TEXT = tg.TargetSpec("tax_ids", "string", 5000, tg.SF_TEXT | tg.SF_NUMBER)


def _tax_ids(mapping: CustomerMapping, record: dict[str, Any], result: MappedRecord) -> None:
    """The Account's tax ids, typed from the value and the mapped billing (else shipping) country."""
    params = result.params
    country = (params.get("address") or {}).get("country") or (
        (params.get("shipping") or {}).get("address") or {}
    ).get("country")
    found: dict[tuple[str, str], dict[str, str]] = {}
    for source in mapping.tax_ids:
        value = _resolve_into(result, source, record, _TAX_ID_TEXT, "tax_ids")
        if value is None:
            continue
        explicit = read_path(record, source.type_source) if source.type_source else None
        try:
            tax_id = tx.infer_tax_id(str(value), country, str(explicit) if explicit else None)
        except tx.TaxIdProblem as exc:
            name = source.source or "(default)"
            result.errors.append(FieldError(result.record_id, name, "tax_ids", value, exc.message, exc.fix))
            continue
        found[(tax_id.type, tax_id.value)] = tax_id.params()
    if found:
        params[TAX_IDS_PARAM] = [found[k] for k in sorted(found)]


def _finish_subscription(mapping: SubscriptionMapping, record: dict[str, Any], result: MappedRecord) -> None:
    if mapping.default_payment_method is None:
        pm = None
    else:
        spec = tg.TargetSpec("default_payment_method", "string", 5000, tg.SF_TEXT)
        pm = _resolve_into(result, mapping.default_payment_method, record, spec, "default_payment_method")
    if pm:
        result.params["default_payment_method"] = pm
        result.params["collection_method"] = "charge_automatically"
    if result.params.get("collection_method") == "charge_automatically":
        result.params.pop("days_until_due", None)  # Stripe accepts it only with send_invoice
    if mapping.skip_elapsed_periods is not None:
        spec = tg.SKIP_ELAPSED_PERIODS
        skip = _resolve_into(result, mapping.skip_elapsed_periods, record, spec, spec.path)
        if skip is not None:
            result.params[spec.path] = skip
    if mapping.trial_end is not None:
        trial = _resolve_into(result, mapping.trial_end, record, tg.TRIAL_END, tg.TRIAL_END.path)
        if trial is not None:
            result.params[tg.TRIAL_END.path] = trial


def soql_fields(mapping: ObjectMapping) -> list[str]:
    """The Salesforce fields to SELECT for a mapping (sources, write-back fields, Id, SystemModstamp)."""
    fields: set[str] = set()
    if isinstance(mapping, LineMapping):
        fields.update(src.source for src in mapping.slots().values() if src.source)
        fields.update(e.source for e in mapping.fields if e.source)
        if mapping.tax_behavior is not None and mapping.tax_behavior.source:
            fields.add(mapping.tax_behavior.source)
        fields.update({"OrderId", "Product2Id", "PricebookEntryId", mapping.write_back.stripe_price_id})
        fields.add(f"Product2.{mapping.product_write_back.stripe_id}")
        fields.add(f"PricebookEntry.{mapping.price_book_entry_write_back.stripe_id}")
    else:
        fields.update(e.source for e in mapping.fields if e.source)
        fields.update(f for e in mapping.fields for f in fields_read(e))
        fields.update(mapping.write_back.fields())
        if isinstance(mapping, CustomerMapping):
            fields.update(f for t in mapping.tax_ids for f in (t.source, t.type_source) if f)
        if isinstance(mapping, SubscriptionMapping):
            fields.add("AccountId")
            for option in (mapping.default_payment_method, mapping.skip_elapsed_periods, mapping.trial_end):
                if option is not None and option.source:
                    fields.add(option.source)
            fields.update(mapping.discounts.order_fields())
    fields -= {"Id", "SystemModstamp"}
    return ["Id", "SystemModstamp", *sorted(fields)]


def fields_read(entry: FieldMapping) -> list[str]:
    """The record's other fields an entry's transforms read (the phone's country fields)."""
    return [f for name, arg in entry.steps for f in tf.fields_read(name, arg)]


def project_stripe_object(
    mapping: CustomerMapping | SubscriptionMapping, obj: dict[str, Any]
) -> dict[str, Any]:
    """The mapped targets of a Stripe object, shaped like map_record's params (empty values left out)."""
    params: dict[str, Any] = {}
    paths = [e.target for e in mapping.fields]
    if isinstance(mapping, SubscriptionMapping) and mapping.default_payment_method is not None:
        paths.append("default_payment_method")
    for path in dict.fromkeys(paths):  # a named list is mapped once per item
        value = read_path(obj, path)
        if isinstance(value, dict) and "id" in value and path == "default_payment_method":
            value = value["id"]
        if not is_empty(value):
            _put(params, path, value)
    if isinstance(mapping, CustomerMapping):
        if params.get("tax_exempt") == "none":
            del params["tax_exempt"]  # as map_record leaves it out
        shipping = params.get("shipping")
        if shipping is not None and not shipping.get("address"):
            del params["shipping"]
    return params


def diff_params(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Stripe update params carrying only what changed from `old` to `new` (see the module docstring)."""
    out: dict[str, Any] = {}
    for key in sorted(set(old) | set(new)):
        if key == "metadata":
            before, after = old.get(key) or {}, new.get(key) or {}
            changed = {k: v for k, v in after.items() if before.get(k) != v}
            changed.update({k: "" for k in before if k not in after and k not in tg.RESERVED_METADATA_KEYS})
            if changed:
                out[key] = dict(sorted(changed.items()))
        elif key not in new:
            out[key] = ""
        elif old.get(key) != new[key]:
            out[key] = new[key]
    return out


def payload_hash(params: dict[str, Any]) -> str:
    """Stable sha256 hex digest of the params (canonical JSON; Decimals as their text)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_text)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

"""Check loaded mappings against the org's describe results (the `mappings check` command).

    check_against_describe(mappings, describe) -> list[Problem]
    check_user_permissions(mappings, holds) -> list[Problem]

`describe(object_name)` returns the REST describe of an sObject (a dict with "fields": [{"name",
"type", "length", "updateable", "referenceTo", "relationshipName", "picklistValues", ...}]); it
may raise for an object the org does not have. Pure apart from calling `describe`, and each
object is described once. Reports, with the file:line of the mapping entry:
- source fields that do not exist (parent paths followed through relationshipName/referenceTo),
- write-back fields that do not exist, are not updateable, or cannot hold what is written,
- type mismatches (a boolean mapped to email, a text field to days_until_due without payment_term),
- a source longer than the Stripe target allows with no truncate (a warning-level problem),
- fields a transform reads besides the source (the phone's region_from) that do not exist.
- conditions naming fields the object lacks (with a "did you mean"), or comparing a field with a
  value of another type (a checkbox with 'Yes'), or a picklist with a value it does not have.

`check_conditions_in_org(mappings, query)` then runs each condition in a one-row query and reports
what Salesforce answers, at the condition's file:line.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from connector.errors import classify
from connector.mapping import targets as tg
from connector.mapping.condition import (
    QUERY_ERROR_CODES,
    ConditionSyntaxError,
    condition_problem,
    literal_problem,
    mapping_conditions,
    parse_condition,
    probe_query,
)
from connector.mapping.engine import fields_read
from connector.mapping.schema import FieldMapping, Mappings, Problem, ValueSource
from connector.salesforce import metadata

STATUS_VALUES = ("Pending", "Synced", "Failed", "Refused")
ORDER_ONLY_STATUS_VALUES = ("Incomplete",)  # a subscription whose first payment failed
_ID_TYPES = frozenset({"string", "textarea", "url"})
_MESSAGE_TYPES = frozenset({"string", "textarea"})
_NAME_TYPES = frozenset({"string", "picklist"})
_DATETIME_TYPES = frozenset({"datetime"})
_URL_TYPES = frozenset({"url", "string", "textarea"})
_STATUS_TYPES = frozenset({"picklist", "string", "textarea"})
_AMOUNT_TYPES = frozenset({"currency", "double"})
_DATE_TYPES = frozenset({"date"})
_BOOLEAN_TYPES = frozenset({"boolean"})
# The billing-status fields (Stripe -> Salesforce): each key, the field types it takes, its role.
_BILLING_STATUS_ROLES = {
    "customer": (
        ("delinquent", _BOOLEAN_TYPES, "delinquent flag"),
        ("balance", _AMOUNT_TYPES, "customer balance"),
    ),
    "subscription": (
        ("subscription_status", _STATUS_TYPES, "subscription status"),
        ("invoice_number", _ID_TYPES, "latest invoice number"),
        ("invoice_status", _STATUS_TYPES, "latest invoice status"),
        ("invoice_amount_due", _AMOUNT_TYPES, "latest invoice amount due"),
        ("invoice_amount_paid", _AMOUNT_TYPES, "latest invoice amount paid"),
        ("invoice_due_date", _DATE_TYPES, "latest invoice due date"),
        ("invoice_url", _URL_TYPES, "latest invoice URL"),
    ),
}


class _Org:
    def __init__(self, describe: Callable[[str], dict[str, Any]]) -> None:
        self._describe = describe
        self._cache: dict[str, dict[str, dict[str, Any]] | None] = {}

    def fields(self, obj: str) -> dict[str, dict[str, Any]] | None:
        if obj not in self._cache:
            try:
                result = self._describe(obj)
            except Exception:  # the describe callable decides what "not found" looks like
                result = None
            self._cache[obj] = (
                {f["name"].lower(): f for f in result.get("fields", [])} if isinstance(result, dict) else None
            )
        return self._cache[obj]

    def resolve(self, obj: str, path: str) -> tuple[dict[str, Any] | None, str]:
        """The describe entry of the last field of `path`, or None and why not."""
        parts = path.split(".")
        current = [obj]
        for part in parts[:-1]:
            found = None
            for candidate in current:
                fields = self.fields(candidate)
                if fields is None:
                    return None, f"object {candidate} is not in the org"
                found = next(
                    (f for f in fields.values() if (f.get("relationshipName") or "").lower() == part.lower()),
                    None,
                )
                if found:
                    break
            if not found:
                return None, f"{' or '.join(current)} has no relationship '{part}'"
            current = list(found.get("referenceTo") or [])
            if not current:
                return None, f"relationship '{part}' points to no object"
        for candidate in current:
            fields = self.fields(candidate)
            if fields is None:
                return None, f"object {candidate} is not in the org"
            if parts[-1].lower() in fields:
                return fields[parts[-1].lower()], ""
        return None, f"{' or '.join(current)} has no field '{parts[-1]}'"


class _Checker:
    def __init__(self, mappings: Mappings, org: _Org) -> None:
        self.mappings = mappings
        self.org = org
        self.problems: list[Problem] = []

    def add(self, kind: str, path: tuple[str | int, ...], message: str, fix: str) -> None:
        file, line, column = self.mappings.position(kind, path)
        self.problems.append(Problem(file, line, column, message, fix))

    def source(
        self, kind: str, path: tuple[str | int, ...], obj: str, src: ValueSource, spec: tg.TargetSpec | None
    ) -> None:
        if not src.source:
            return
        field, why = self.org.resolve(obj, src.source)
        where = (*path, "source")
        if field is None:
            self.add(
                kind,
                where,
                f"source '{src.source}' on {obj}: {why}",
                "use a field API name that exists in the org",
            )
            return
        if spec is None:
            return
        sf_type = field.get("type", "")
        names = {name for name, _ in src.steps}
        accepts = spec.accepts
        if spec.kind == "integer" and "payment_term" not in names:
            accepts = accepts & tg.SF_NUMBER
        if sf_type not in accepts:
            self.add(
                kind,
                where,
                f"'{src.source}' is a {sf_type} field; {spec.path} needs {_describe_accepts(accepts)}",
                "map a field of a matching type"
                + (" or add '- payment_term'" if spec.kind == "integer" else ""),
            )
            return
        length = field.get("length") or 0
        bounded = names & {"truncate", "phone", "country"}  # these never exceed the Stripe limits
        if spec.max_length and length > spec.max_length and not bounded:
            self.add(
                kind,
                where,
                f"'{src.source}' holds up to {length} characters; "
                f"Stripe's {spec.path} allows {spec.max_length}",
                "add '- truncate' to the transforms (or accept record errors for long values)",
            )

    def condition(self, kind: str, path: tuple[str | int, ...], obj: str, text: str) -> None:
        """Each field of the condition exists on `obj` and each value fits its type (syntax: the loader)."""
        try:
            comparisons = parse_condition(text)
        except ConditionSyntaxError:
            return
        for comparison in comparisons:
            field, why = self.org.resolve(obj, comparison.field)
            if field is None:
                close = self._close_path(obj, comparison.field)
                fix = f"did you mean {close}?" if close else f"use a field API name that exists on {obj}"
                message = f"condition: '{comparison.field}' on {obj}: {why}"
                self._at(kind, path, comparison.offset, message, fix)
                continue
            for value in comparison.values:
                problem = literal_problem(field, comparison, value)
                if problem is not None:
                    self._at(kind, path, value.offset, f"condition: {problem[0]}", problem[1])
                    break

    def _at(self, kind: str, path: tuple[str | int, ...], offset: int, message: str, fix: str) -> None:
        """A problem at a character of the condition (exact for a condition written on one line)."""
        file, line, column = self.mappings.position(kind, path)
        self.problems.append(Problem(file, line, column + offset if line else column, message, fix))

    def _close_path(self, obj: str, path: str) -> str | None:
        """The path with its first unknown part replaced by the closest name the org has."""
        parts = path.split(".")
        objects = [obj]
        for index, part in enumerate(parts):
            fields = [f for o in objects for f in (self.org.fields(o) or {}).values()]
            last = index == len(parts) - 1
            names = [str(f.get("name" if last else "relationshipName") or "") for f in fields]
            by_lower = {n.lower(): n for n in names if n}
            if part.lower() not in by_lower:
                close = difflib.get_close_matches(part.lower(), list(by_lower), n=1, cutoff=0.6)
                return ".".join([*parts[:index], by_lower[close[0]], *parts[index + 1 :]]) if close else None
            if not last:
                rel = next(f for f in fields if str(f.get("relationshipName") or "").lower() == part.lower())
                objects = list(rel.get("referenceTo") or [])
        return None

    def fields_read(self, kind: str, path: tuple[str | int, ...], obj: str, entry: FieldMapping) -> None:
        """The other fields an entry's transforms read (the phone's region_from) exist on `obj`."""
        for name in fields_read(entry):
            field, why = self.org.resolve(obj, name)
            if field is None:
                self.add(
                    kind,
                    (*path, "transforms"),
                    f"region_from field '{name}' on {obj}: {why}",
                    "name the field that holds the country, e.g. region_from: BillingCountry",
                )

    def write_back(
        self, kind: str, path: tuple[str | int, ...], obj: str, name: str, allowed: frozenset[str], role: str
    ) -> None:
        field, why = self.org.resolve(obj, name)
        shipped = metadata.default_project().custom_field(obj, name) is not None
        if field is None:
            fix = f"create the field on {obj}"
            if shipped:
                fix = f"deploy the connector's metadata project, which holds it: {metadata.DEPLOY_COMMAND}"
            self.add(kind, path, f"write-back field '{name}' on {obj}: {why}", fix)
            return
        if not field.get("updateable", True):
            fix = "grant the integration user edit access to the field"
            if shipped:
                fix = f"assign the integration user the shipped permission set: {metadata.ASSIGN_COMMAND}"
            self.add(kind, path, f"write-back field {obj}.{name} is not updateable", fix)
        if field.get("type") not in allowed:
            self.add(
                kind,
                path,
                f"write-back field {obj}.{name} is a {field.get('type')} field; the {role} needs "
                + _describe_accepts(allowed),
                "use a field of a matching type",
            )
        elif role == "sync status" and field.get("type") == "picklist" and field.get("picklistValues"):
            values = {v.get("value") for v in field["picklistValues"] if v.get("active", True)}
            wanted = [*STATUS_VALUES, *(ORDER_ONLY_STATUS_VALUES if obj == "Order" else ())]
            missing = [v for v in wanted if v not in values]
            if missing:
                self.add(
                    kind, path, f"picklist {obj}.{name} lacks the values {', '.join(missing)}", "add them"
                )


def _describe_accepts(types: frozenset[str]) -> str:
    return "a field of type " + ", ".join(sorted(types))


def check_against_describe(mappings: Mappings, describe: Callable[[str], dict[str, Any]]) -> list[Problem]:
    """Every way the mappings do not fit the org (see the module docstring)."""
    checker = _Checker(mappings, _Org(describe))
    for kind, mapping in (("customer", mappings.customer), ("subscription", mappings.subscription)):
        if checker.org.fields(mapping.object) is None:
            checker.add(
                kind, ("object",), f"object {mapping.object} is not in the org", "check the object name"
            )
            continue
        for index, entry in enumerate(mapping.fields):
            spec = tg.resolve_target(kind, entry.target)
            checker.source(kind, ("fields", index), mapping.object, entry, spec)
            checker.fields_read(kind, ("fields", index), mapping.object, entry)
        _write_back_block(checker, kind, ("write_back",), mapping.object, mapping.write_back)
        for key, allowed, role in _BILLING_STATUS_ROLES[kind]:
            name = getattr(mapping.billing_status, key)
            if name:
                checker.write_back(kind, ("billing_status", key), mapping.object, name, allowed, role)

    customer = mappings.customer
    tax_id_spec = tg.TargetSpec("tax_ids", "string", 5000, tg.SF_TEXT | tg.SF_NUMBER)
    for index, tax_id in enumerate(customer.tax_ids):
        checker.source("customer", ("tax_ids", index), customer.object, tax_id, tax_id_spec)

    order = mappings.subscription
    if order.default_payment_method is not None:
        spec = tg.TargetSpec("default_payment_method", "string", 255, tg.SF_TEXT)
        checker.source(
            "subscription", ("default_payment_method",), order.object, order.default_payment_method, spec
        )
    if order.skip_elapsed_periods is not None:
        checker.source(
            "subscription", ("skip_elapsed_periods",), order.object, order.skip_elapsed_periods,
            tg.SKIP_ELAPSED_PERIODS,
        )  # fmt: skip
    if order.trial_end is not None:
        checker.source("subscription", ("trial_end",), order.object, order.trial_end, tg.TRIAL_END)
    for kind, path, obj, text in mapping_conditions(mappings):
        if checker.org.fields(obj) is not None:
            checker.condition(kind, path, obj, text)
    lines = order.lines
    for slot, src in lines.slots().items():
        checker.source("subscription", ("lines", slot), lines.object, src, tg.LINE_SLOTS[slot])
    for index, entry in enumerate(lines.fields):
        spec = tg.metadata_spec(entry.target.rpartition(".")[2])
        checker.source("subscription", ("lines", "fields", index), lines.object, entry, spec)
    for slot, src in order.discounts.slots().items():
        obj = lines.object if slot in order.discounts.LINE_SLOTS else order.object
        checker.source("subscription", ("discounts", slot), obj, src, tg.DISCOUNT_SLOTS[slot])
    if order.amendment_proration == "cpq_amounts":  # CPQ's figures must exist where they are read
        for slot, src in order.cpq_amounts.slots().items():
            spec = tg.CPQ_AMOUNT_SLOTS[slot]
            checker.source("subscription", ("cpq_amounts", slot), lines.object, src, spec)
    if lines.tax_behavior is not None:
        checker.source(
            "subscription", ("lines", "tax_behavior"), lines.object, lines.tax_behavior, tg.TAX_BEHAVIOR
        )
    checker.write_back(
        "subscription",
        ("lines", "write_back", "stripe_price_id"),
        lines.object,
        lines.write_back.stripe_price_id,
        _ID_TYPES,
        "Stripe id",
    )
    checker.write_back(
        "subscription",
        ("lines", "product_write_back", "stripe_id"),
        "Product2",
        lines.product_write_back.stripe_id,
        _ID_TYPES,
        "Stripe id",
    )
    checker.write_back(
        "subscription",
        ("lines", "price_book_entry_write_back", "stripe_id"),
        "PricebookEntry",
        lines.price_book_entry_write_back.stripe_id,
        _ID_TYPES,
        "Stripe id",
    )
    _usage(checker, mappings)
    _routing(checker, mappings)
    return checker.problems


def _routing(checker: _Checker, mappings: Mappings) -> None:
    """routing.yaml: the routing fields exist on Account (and Order), the account-name field is
    text the connector may write on both."""
    routing = mappings.routing
    if routing is None:
        return
    checks = [("account_field", "Account", routing.account_field)]
    if routing.order_field:
        checks.append(("order_field", "Order", routing.order_field))
    for key, obj, name in checks:
        field, why = checker.org.resolve(obj, name)
        if field is None:
            checker.add("routing", (key,), f"{key} '{name}' on {obj}: {why}", "use a field that exists")
    if routing.write_back:
        for obj in ("Account", "Order"):
            checker.write_back(
                "routing", ("write_back",), obj, routing.write_back, _NAME_TYPES, "account name"
            )


def _usage(checker: _Checker, mappings: Mappings) -> None:
    """usage.yaml: its object exists, each path resolves on it, its write-back fields fit."""
    usage = mappings.usage
    if usage is None:
        return
    if checker.org.fields(usage.object) is None:
        checker.add(
            "usage",
            ("object",),
            f"object {usage.object} is not in the org",
            "deploy the metadata project (it has Stripe_Usage__c) or name your usage object",
        )
        return
    for key in usage.PATHS:
        path = getattr(usage, key)
        field, why = checker.org.resolve(usage.object, path)
        if field is None:
            checker.add(
                "usage", (key,), f"{key} '{path}' on {usage.object}: {why}", "use a field that exists"
            )
    _write_back_block(checker, "usage", ("write_back",), usage.object, usage.write_back)


def check_conditions_in_org(
    mappings: Mappings, query: Callable[[str], object], skip: frozenset[tuple[str, int]] = frozenset()
) -> list[Problem]:
    """Run each condition in `SELECT Id FROM <object> WHERE <condition> LIMIT 1`; Salesforce's refusal
    at the condition's file:line. `skip`: (file, line) already reported (no second report)."""
    problems = []
    for kind, path, obj, text in mapping_conditions(mappings):
        file, line, _ = mappings.position(kind, path)
        if (file, line) in skip:
            continue
        try:
            query(probe_query(obj, text))
        except Exception as exc:
            verdict = classify(exc)
            if verdict.code not in QUERY_ERROR_CODES:
                raise
            problems.append(condition_problem(mappings, kind, path, obj, verdict.message))
    return problems


def _write_back_block(checker: _Checker, kind: str, path: tuple[str | int, ...], obj: str, wb: Any) -> None:
    roles = (
        ("stripe_id", _ID_TYPES, "Stripe id"),
        ("status", _STATUS_TYPES, "sync status"),
        ("message", _MESSAGE_TYPES, "sync message"),
        ("synced_at", _DATETIME_TYPES, "synced-at time"),
        ("invoice_id", _ID_TYPES, "invoice id"),
        ("invoice_url", _URL_TYPES, "invoice URL"),
    )
    for key, allowed, role in roles:
        name = getattr(wb, key, None)
        if name:
            checker.write_back(kind, (*path, key), obj, name, allowed, role)


# The user permissions the integration user needs, as PermissionSet flags, and why.
USER_PERMISSIONS = {
    "PermissionsEditActivatedOrders": (
        "Edit Activated Orders",
        "every write-back to an activated Order and its Order Products fails with ENTITY_IS_LOCKED "
        "(Stripe bills, Salesforce never learns the subscription id)",
    ),
}


def check_user_permissions(mappings: Mappings, holds: Callable[[str], bool]) -> list[Problem]:
    """The integration user's missing permissions. `holds(flag)` says whether any permission set
    the user has (its profile's included) grants the PermissionSet flag."""
    problems = []
    for flag, (label, why) in USER_PERMISSIONS.items():
        if not holds(flag):
            file, line, column = mappings.position("subscription", ("write_back",))
            problems.append(
                Problem(
                    file,
                    line,
                    column,
                    f"the integration user lacks the {label} permission: {why}",
                    f"assign the integration user the shipped permission set, which grants it: "
                    f"{metadata.ASSIGN_COMMAND}",
                )
            )
    return problems

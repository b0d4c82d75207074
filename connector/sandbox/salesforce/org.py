"""The fake org's in-memory store: records, validation from the schema, merge and a change log.

One lock guards everything; each write touches only the rows it changes (no re-serialising of
the store). Writes are validated the way Salesforce validates them and raise `SalesforceError`
with Salesforce's error codes and wording, so the HTTP layer only has to shape the answer.
The store implements the query engine's RecordSource protocol (`records`, `get`, `children`).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from connector.sandbox.salesforce.dates import contract_end
from connector.sandbox.salesforce.ids import is_valid_id, make_id, new_id, to_18
from connector.sandbox.salesforce.schema import NUMBER_TYPES, FieldDef, ObjectDef, Schema, default_schema

SYSTEM_FIELDS = (
    "Id",
    "IsDeleted",
    "CreatedDate",
    "LastModifiedDate",
    "SystemModstamp",
    "CreatedById",
    "LastModifiedById",
)
ORG_ID = make_id("00D", 1)
INTEGRATION_USER_ID = make_id("005", 1)
ADMIN_USER_ID = make_id("005", 2)
# Order Status values and their status category (StatusCode). Admins add values to either
# category; "Provisioned" is such an added value in the Activated category.
ORDER_STATUS_CATEGORY = {"Draft": "Draft", "Activated": "Activated", "Provisioned": "Activated"}
# Contract Status values and their status category (Contract.StatusCode, ContractStatus.StatusCode).
CONTRACT_STATUS_CATEGORY = {"Draft": "Draft", "In Approval Process": "InApproval", "Activated": "Activated"}
DEFAULT_USERS = (
    (INTEGRATION_USER_ID, "integration@sandbox.example", "Integration User"),
    (ADMIN_USER_ID, "admin@sandbox.example", "Admin User"),
)
ROLLED_BACK_MESSAGE = (
    "Record rolled back because not all records were valid and the request was using AllOrNone header"
)
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?$"
)


class SalesforceError(Exception):
    """An error as Salesforce reports it: HTTP status, errorCode, message, fields."""

    def __init__(self, error_code: str, message: str, fields: list[str] | None = None, status: int = 400):
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message
        self.fields = fields or []
        self.status = status

    def as_dict(self) -> dict[str, Any]:
        return {"message": self.message, "errorCode": self.error_code, "fields": self.fields}

    def as_status(self) -> dict[str, Any]:
        """The `errors[]` entry of a save result (statusCode instead of errorCode)."""
        return {"statusCode": self.error_code, "message": self.message, "fields": self.fields}


class JsonParserError(SalesforceError):
    """A value the JSON deserialiser rejects: fails the whole request, never one record."""

    def __init__(self, message: str, field_name: str) -> None:
        super().__init__("JSON_PARSER_ERROR", message, [field_name])
        self.field_name = field_name


@dataclass
class Change:
    replay_id: int
    object: str
    record_ids: list[str]
    change_type: str  # CREATE, UPDATE, DELETE, UNDELETE
    changed_fields: list[str]
    user_id: str
    commit_timestamp: str
    cause: str = ""  # "merge" for the events a merge produces

    def as_dict(self) -> dict[str, Any]:
        return {
            "replay_id": self.replay_id,
            "object": self.object,
            "record_ids": self.record_ids,
            "change_type": self.change_type,
            "changed_fields": self.changed_fields,
            "user_id": self.user_id,
            "commit_timestamp": self.commit_timestamp,
            "cause": self.cause,
        }


@dataclass
class SaveResult:
    id: str | None
    success: bool
    errors: list[SalesforceError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "success": self.success,
            "errors": [e.as_status() for e in self.errors],
        }
        if self.id is None:
            del out["id"]
        return out


def format_datetime(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _label(f: FieldDef) -> str:
    return f.label


class _Txn:
    """Undo log of one write transaction (for allOrNone rollback)."""

    def __init__(self, stamp: str) -> None:
        self.stamp = stamp
        self.undo: list[tuple[str, str, dict[str, Any] | None]] = []  # (object, id, previous row)
        self.log_mark = 0


class Org:
    """The in-memory org. Thread-safe; all public methods take the one lock."""

    def __init__(self, schema: Schema | None = None) -> None:
        self.multi_currency_schema = schema or default_schema()
        self.schema = self.multi_currency_schema
        self.currency = "USD"  # the org's default currency (Organization.DefaultCurrencyIsoCode)
        self.lock = threading.RLock()
        self._tables: dict[str, dict[str, dict[str, Any]]] = {}
        self._types: dict[str, str] = {}  # id -> object name
        # (child object, reference field) -> parent id -> child ids (insertion ordered)
        self._index: dict[tuple[str, str], dict[str, dict[str, None]]] = {}
        self._autonumbers: dict[tuple[str, str], int] = {}
        self._changes: list[Change] = []
        self._last_ms = 0
        self._ref_fields: dict[str, list[FieldDef]] = {}
        self._children_of: dict[str, list[tuple[str, str]]] = defaultdict(
            list
        )  # parent -> (child obj, field)
        for obj in self.schema.objects.values():
            self._ref_fields[obj.name] = [f for f in obj.fields.values() if f.type == "reference"]
            for f in self._ref_fields[obj.name]:
                for target in f.reference_to:
                    self._children_of[target].append((obj.name, f.name))
        self._prefixes = {obj.key_prefix: obj.name for obj in self.schema.objects.values()}
        self.users: dict[str, str] = {}  # username -> user id
        # Users without the Edit Activated Orders permission: their updates of an activated Order
        # or of its Order Products are refused.
        self._no_edit_activated: set[str] = set()
        self._clear()

    # ----------------------------------------------------------------- store plumbing
    def _clear(self) -> None:
        self._tables = {name: {} for name in self.schema.objects}
        self._tables["Organization"] = {
            ORG_ID: {
                **self._blank_row(self.schema.objects["Organization"]),
                "Id": ORG_ID,
                "Name": "cpq2stripe sandbox",
                "DefaultCurrencyIsoCode": self.currency,
                "IsDeleted": False,
            }
        }
        self._types = {}
        self._index = {(obj, f.name): {} for obj, fields in self._ref_fields.items() for f in fields}
        self._autonumbers = {}
        self._changes = []
        stamp = self._stamp()
        for user_id, username, name in DEFAULT_USERS:
            row = self._blank_row(self.schema.objects["User"])
            row.update(
                Id=user_id,
                Username=username,
                Name=name,
                Email=username,
                IsDeleted=False,
                CreatedDate=stamp,
                LastModifiedDate=stamp,
                SystemModstamp=stamp,
                CreatedById=user_id,
                LastModifiedById=user_id,
            )
            self._put("User", row)
            self.users[username] = user_id
            self._profile_permissions(user_id, stamp)

    def _profile_permissions(self, user_id: str, stamp: str) -> None:
        """The permission set a user's profile owns (as Salesforce exposes it), assigned to them."""
        n = len(self._tables["PermissionSet"]) + 1
        ps = self._blank_row(self.schema.objects["PermissionSet"])
        ps.update(
            Id=make_id("0PS", n),
            Name=f"X00e{n:011d}",
            Label="Integration Profile" if user_id == INTEGRATION_USER_ID else "System Administrator",
            IsOwnedByProfile=True,
            PermissionsApiEnabled=True,
            PermissionsEditActivatedOrders=user_id not in self._no_edit_activated,
            IsDeleted=False, CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp,
            CreatedById=ADMIN_USER_ID, LastModifiedById=ADMIN_USER_ID,
        )  # fmt: skip
        self._put("PermissionSet", ps)
        assignment = self._blank_row(self.schema.objects["PermissionSetAssignment"])
        assignment.update(
            Id=make_id("0Pa", n), AssigneeId=user_id, PermissionSetId=ps["Id"],
            IsDeleted=False, CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp,
            CreatedById=ADMIN_USER_ID, LastModifiedById=ADMIN_USER_ID,
        )  # fmt: skip
        self._put("PermissionSetAssignment", assignment)

    def set_currency_mode(self, single: str | None) -> None:
        """Multi-currency (None, the default) or a single-currency org whose only currency is
        `single`: Salesforce then has no CurrencyIsoCode field on any object. Clears the records."""
        with self.lock:
            self.currency = single or "USD"
            self.schema = (
                without_currency_fields(self.multi_currency_schema)
                if single
                else (self.multi_currency_schema)
            )
            self._clear()

    def set_edit_activated_orders(self, user_id: str, allowed: bool) -> None:
        """Grant or take away Edit Activated Orders on the user's profile."""
        with self.lock:
            (self._no_edit_activated.discard if allowed else self._no_edit_activated.add)(user_id)
            for assignment in self._tables["PermissionSetAssignment"].values():
                ps = self._tables["PermissionSet"][assignment["PermissionSetId"]]
                if assignment["AssigneeId"] == user_id and ps["IsOwnedByProfile"]:
                    ps["PermissionsEditActivatedOrders"] = allowed

    def _check_edit_activated(self, obj: ObjectDef, row: dict[str, Any], user_id: str) -> None:
        """Salesforce locks an activated Order and its Order Products for users without Edit
        Activated Orders."""
        if user_id not in self._no_edit_activated or obj.name not in ("Order", "OrderItem"):
            return
        order = row if obj.name == "Order" else self._tables["Order"].get(row.get("OrderId") or "")
        if order is not None and ORDER_STATUS_CATEGORY.get(order.get("Status") or "") == "Activated":
            raise SalesforceError(
                "ENTITY_IS_LOCKED",
                "Unable to modify activated or superseded Order",
            )

    def reset(self) -> None:
        """Delete every record and the change log; users stay."""
        with self.lock:
            self._clear()

    def _stamp(self) -> str:
        """A commit timestamp strictly later than the previous one (ms resolution)."""
        now_ms = int(time.time() * 1000)
        self._last_ms = max(now_ms, self._last_ms + 1)
        return format_datetime(datetime.fromtimestamp(self._last_ms / 1000, tz=UTC))

    def _blank_row(self, obj: ObjectDef) -> dict[str, Any]:
        return dict.fromkeys(obj.fields)

    def _put(self, sobject: str, row: dict[str, Any], previous: dict[str, Any] | None = None) -> None:
        record_id = row["Id"]
        for f in self._ref_fields[sobject]:
            old = previous.get(f.name) if previous else None
            new = row.get(f.name)
            if old == new:
                continue
            bucket = self._index[(sobject, f.name)]
            if old:
                bucket.get(old, {}).pop(record_id, None)
            if new:
                bucket.setdefault(new, {})[record_id] = None
        self._tables[sobject][record_id] = row
        self._types[record_id] = sobject

    def _drop(self, sobject: str, record_id: str) -> None:
        row = self._tables[sobject].pop(record_id)
        self._types.pop(record_id, None)
        for f in self._ref_fields[sobject]:
            if row.get(f.name):
                self._index[(sobject, f.name)].get(row[f.name], {}).pop(record_id, None)

    def _object(self, sobject: str) -> ObjectDef:
        obj = self.schema.object(sobject)
        if obj is None:
            raise SalesforceError("NOT_FOUND", "The requested resource does not exist", status=404)
        return obj

    def _log(
        self,
        txn: _Txn,
        sobject: str,
        record_id: str,
        change_type: str,
        fields: Iterable[str],
        user_id: str,
        cause: str = "",
    ) -> None:
        replay = self._changes[-1].replay_id + 1 if self._changes else 1
        self._changes.append(
            Change(replay, sobject, [record_id], change_type, sorted(fields), user_id, txn.stamp, cause)
        )

    def _begin(self) -> _Txn:
        txn = _Txn(self._stamp())
        txn.log_mark = len(self._changes)
        return txn

    def _rollback(self, txn: _Txn) -> None:
        for sobject, record_id, previous in reversed(txn.undo):
            current = self._tables[sobject].get(record_id)
            if previous is None:
                if current is not None:
                    self._drop(sobject, record_id)
            else:
                self._put(sobject, previous, current)
        del self._changes[txn.log_mark :]
        txn.undo.clear()

    # ----------------------------------------------------------------- RecordSource protocol
    def records(self, sobject: str, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        obj = self._object(sobject)
        rows = self._tables[obj.name].values()
        if include_deleted:
            return iter(list(rows))
        return iter([r for r in rows if not r["IsDeleted"]])

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        """The stored row (deleted rows too), or None. Accepts 15- or 18-character ids."""
        obj = self.schema.object(sobject)
        if obj is None or not isinstance(record_id, str) or not is_valid_id(record_id):
            return None
        return self._tables[obj.name].get(to_18(record_id))

    def children(
        self, child_sobject: str, field_name: str, parent_id: str, include_deleted: bool = False
    ) -> Iterator[dict[str, Any]]:
        obj = self._object(child_sobject)
        f = obj.field(field_name)
        if f is None:
            return iter(())
        ids = list(self._index.get((obj.name, f.name), {}).get(parent_id, {}))
        table = self._tables[obj.name]
        rows = [table[i] for i in ids if i in table]
        return iter(rows if include_deleted else [r for r in rows if not r["IsDeleted"]])

    # ----------------------------------------------------------------- reads
    def type_of(self, record_id: str) -> str | None:
        if not is_valid_id(record_id):
            return None
        return self._types.get(to_18(record_id)) or self._prefixes.get(record_id[:3])

    def count(self, sobject: str, include_deleted: bool = False) -> int:
        with self.lock:
            return sum(1 for _ in self.records(sobject, include_deleted))

    def retrieve(self, sobject: str, record_id: str, fields: list[str] | None = None) -> dict[str, Any]:
        """A copy of a live record for GET sobjects/{Type}/{Id}; 404s as Salesforce answers them."""
        with self.lock:
            obj = self._object(sobject)
            row = self.get(obj.name, record_id)
            if row is None or row["Id"][:3] != obj.key_prefix:
                raise SalesforceError("NOT_FOUND", "The requested resource does not exist", status=404)
            if row["IsDeleted"]:
                raise SalesforceError("ENTITY_IS_DELETED", "entity is deleted", status=404)
            if fields is None:
                return dict(row)
            out = {}
            for name in fields:
                f = obj.field(name)
                if f is None:
                    raise SalesforceError(
                        "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}"
                    )
                out[f.name] = row[f.name]
            return out

    def query(
        self, soql: str, *, include_deleted: bool = False, base_url_path: str = "/services/data/v61.0"
    ) -> Any:
        """Run SOQL against the store (via the query engine) under the lock."""
        from connector.sandbox.salesforce import query_engine

        with self.lock:
            return query_engine.execute(
                soql, self.schema, self, include_deleted=include_deleted, base_url_path=base_url_path
            )

    def changes(self, after: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            # replay ids are dense from 1, so index directly
            start = max(0, after) if self._changes and self._changes[0].replay_id == 1 else 0
            return [c.as_dict() for c in self._changes[start:] if c.replay_id > after]

    # ----------------------------------------------------------------- value coercion (pure)
    def coerce(self, sobject: str, values: dict[str, Any], *, insert: bool) -> dict[str, Any]:
        """Field names resolved case-insensitively and values turned into stored form. Raises
        JsonParserError for values the REST deserialiser refuses and INVALID_FIELD for unknown names."""
        obj = self._object(sobject)
        out: dict[str, Any] = {}
        for name, value in values.items():
            if name == "attributes":
                continue
            f = obj.field(name)
            if f is None:
                raise SalesforceError(
                    "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}"
                )
            out[f.name] = _coerce_value(f, value)
        return out

    # ----------------------------------------------------------------- semantic validation
    def _check_reference(self, obj: ObjectDef, f: FieldDef, value: str) -> str:
        if not is_valid_id(value):
            raise SalesforceError("MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name])
        value = to_18(value)
        target_types = {self.schema.objects[t].key_prefix: t for t in f.reference_to}
        target = target_types.get(value[:3])
        if target is None:
            raise SalesforceError(
                "FIELD_INTEGRITY_EXCEPTION", f"{f.label}: id value of incorrect type: {value}", [f.name]
            )
        row = self._tables[target].get(value)
        if row is None:
            raise SalesforceError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])
        if row["IsDeleted"]:
            raise SalesforceError("ENTITY_IS_DELETED", "entity is deleted", [f.name])
        return value

    def _validate(
        self, obj: ObjectDef, values: dict[str, Any], *, insert: bool, system: bool
    ) -> dict[str, Any]:
        """Checks one record's coerced values against the schema and the store."""
        if insert and "Id" in values and not system:
            raise SalesforceError(
                "INVALID_FIELD", "The Id field should not be specified in the sobject data."
            )
        values = dict(values)
        values.pop("Id", None)
        if not system:
            locked = [
                n
                for n in values
                if n in SYSTEM_FIELDS
                or (insert and not obj.fields[n].createable)
                or (not insert and not obj.fields[n].updateable)
            ]
            if locked:
                raise SalesforceError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {', '.join(locked)}. Please check the "
                    "security settings of this field and verify that it is read/write for your profile or "
                    "permission set.",
                    locked,
                )
        for name, value in list(values.items()):
            f = obj.fields[name]
            if value is None:
                continue
            if f.type == "reference":
                values[name] = self._check_reference(obj, f, value)
            elif f.type in ("picklist",) and f.restricted and value not in f.values:
                raise SalesforceError(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{f.label}: bad value for restricted picklist field: {value}",
                    [f.name],
                )
            elif f.type == "email" and not _EMAIL_RE.match(value):
                raise SalesforceError(
                    "INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {value}", [f.name]
                )
            if isinstance(values[name], str) and f.length and len(values[name]) > f.length:
                shown = value if len(value) <= 40 else value[:37] + "..."
                raise SalesforceError(
                    "STRING_TOO_LONG",
                    f"{f.label}: data value too large: {shown} (max length={f.length})",
                    [f.name],
                )
            if f.type in NUMBER_TYPES and f.precision:
                limit = 10 ** (f.precision - f.scale)
                if abs(values[name]) >= limit:
                    raise SalesforceError(
                        "NUMBER_OUTSIDE_VALID_RANGE",
                        f"{f.label}: value outside of valid range on numeric field: {value}",
                        [f.name],
                    )
        return values

    def _required_missing(self, obj: ObjectDef, row: dict[str, Any]) -> None:
        missing = [
            f.name
            for f in obj.fields.values()
            if not f.nillable
            and row.get(f.name) is None
            and f.name not in SYSTEM_FIELDS
            and not f.auto_number
            and f.type != "boolean"
            and (f.createable or f.updateable)
        ]
        if missing:
            raise SalesforceError(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )

    def _derive(self, obj: ObjectDef, row: dict[str, Any]) -> None:
        """Values Salesforce computes: PricebookEntry.Name from its product, Order.StatusCode and
        Contract.StatusCode (the status categories) from Status, Contract.EndDate from StartDate
        and ContractTerm (read-only; none without both, as for an evergreen contract), a CPQ
        subscription's start and end formulas (its own dates, else its contract's)."""
        if obj.name == "Order":
            row["StatusCode"] = ORDER_STATUS_CATEGORY.get(row.get("Status") or "")
        if obj.name == "Contract":
            row["StatusCode"] = CONTRACT_STATUS_CATEGORY.get(row.get("Status") or "")
            start, term = row.get("StartDate"), row.get("ContractTerm")
            row["EndDate"] = (
                contract_end(date.fromisoformat(start), int(term)).isoformat()
                if start and term is not None
                else None
            )
        if obj.name == "SBQQ__Subscription__c":
            contract = self._tables["Contract"].get(row.get("SBQQ__Contract__c") or "") or {}
            row["SBQQ__StartDate__c"] = row.get("SBQQ__SubscriptionStartDate__c") or contract.get("StartDate")
            row["SBQQ__EndDate__c"] = row.get("SBQQ__SubscriptionEndDate__c") or contract.get("EndDate")
        if obj.name == "PricebookEntry" and row.get("Product2Id"):
            product = self._tables["Product2"].get(row["Product2Id"])
            row["Name"] = product["Name"] if product else row.get("Name")

    def _check_contract_rules(
        self, obj: ObjectDef, row: dict[str, Any], previous: dict[str, Any] | None, *, system: bool
    ) -> None:
        """Salesforce's own checks between Contracts and Orders: a Contract is created in Draft and
        activated by an update (seed loads are exempt), and an Order's start date lies within its
        contract's start and end dates."""
        if obj.name == "Contract" and previous is None and not system and row.get("Status") == "Activated":
            raise SalesforceError(
                "FIELD_INTEGRITY_EXCEPTION",
                "Status: a contract can't be created as Activated; insert it as Draft, then update "
                "Status to Activated",
                ["Status"],
            )
        if obj.name != "Order" or not row.get("ContractId") or not row.get("EffectiveDate"):
            return
        if previous is not None and all(
            previous.get(k) == row.get(k) for k in ("ContractId", "EffectiveDate")
        ):
            return
        contract = self._tables["Contract"].get(row["ContractId"])
        if contract is None:
            return
        start, end, effective = contract.get("StartDate"), contract.get("EndDate"), row["EffectiveDate"]
        if start and effective < start:
            raise SalesforceError(
                "FIELD_INTEGRITY_EXCEPTION",
                "Order Start Date can't be earlier than its contract's start date.: Order Start Date",
                ["EffectiveDate"],
            )
        if end and effective > end:
            raise SalesforceError(
                "FIELD_INTEGRITY_EXCEPTION",
                "Order Start Date can't be later than its contract's end date.: Order Start Date",
                ["EffectiveDate"],
            )

    def _next_autonumber(self, obj: ObjectDef, f: FieldDef) -> str:
        key = (obj.name, f.name)
        self._autonumbers[key] = self._autonumbers.get(key, 0) + 1
        fmt = f.auto_number or "{0}"
        match = re.search(r"\{(0+)\}", fmt)
        width = len(match.group(1)) if match else 1
        return re.sub(r"\{0+\}", str(self._autonumbers[key]).zfill(width), fmt)

    # ----------------------------------------------------------------- write primitives (lock held)
    def _insert(
        self,
        txn: _Txn,
        obj: ObjectDef,
        values: dict[str, Any],
        user_id: str,
        *,
        system: bool = False,
        record_id: str | None = None,
        created: str | None = None,
    ) -> str:
        checked = self._validate(obj, values, insert=True, system=system)
        row = self._blank_row(obj)
        for f in obj.fields.values():
            if f.default is not None:
                row[f.name] = f.default
            if f.type == "boolean" and row[f.name] is None:
                row[f.name] = False
        row.update(checked)
        for f in obj.fields.values():
            if f.auto_number and row.get(f.name) is None:
                row[f.name] = self._next_autonumber(obj, f)
            if f.type == "boolean" and row[f.name] is None:
                row[f.name] = False
        self._required_missing(obj, row)
        self._derive(obj, row)
        self._check_contract_rules(obj, row, None, system=system)
        rid = record_id or new_id(obj.key_prefix)
        row.update(
            Id=rid,
            IsDeleted=False,
            CreatedDate=created or txn.stamp,
            LastModifiedDate=txn.stamp,
            SystemModstamp=txn.stamp,
            CreatedById=user_id,
            LastModifiedById=user_id,
        )
        self._put(obj.name, row)
        txn.undo.append((obj.name, rid, None))
        self._log(txn, obj.name, rid, "CREATE", [k for k, v in row.items() if v is not None], user_id)
        return rid

    def _live_row(self, obj: ObjectDef, record_id: Any) -> dict[str, Any]:
        if not isinstance(record_id, str) or not is_valid_id(record_id):
            raise SalesforceError(
                "MALFORMED_ID", f"{obj.label} ID: id value of incorrect type: {record_id}", ["Id"]
            )
        rid = to_18(record_id)
        if rid[:3] != obj.key_prefix:
            raise SalesforceError(
                "MALFORMED_ID", f"{obj.label} ID: id value of incorrect type: {record_id}", ["Id"]
            )
        row = self._tables[obj.name].get(rid)
        if row is None:
            raise SalesforceError("NOT_FOUND", "The requested resource does not exist", status=404)
        if row["IsDeleted"]:
            raise SalesforceError("ENTITY_IS_DELETED", "entity is deleted", status=404)
        return row

    def _update(
        self,
        txn: _Txn,
        obj: ObjectDef,
        record_id: str,
        values: dict[str, Any],
        user_id: str,
        *,
        system: bool = False,
        cause: str = "",
    ) -> str:
        row = self._live_row(obj, record_id)
        if not system:
            self._check_edit_activated(obj, row, user_id)
        checked = self._validate(obj, values, insert=False, system=system)
        new = dict(row)
        for name, value in checked.items():
            f = obj.fields[name]
            new[name] = False if (f.type == "boolean" and value is None) else value
        self._required_missing(obj, new)
        self._derive(obj, new)
        self._check_contract_rules(obj, new, row, system=system)
        changed = [k for k in new if new[k] != row[k]]
        new.update(LastModifiedDate=txn.stamp, SystemModstamp=txn.stamp, LastModifiedById=user_id)
        self._put(obj.name, new, row)
        txn.undo.append((obj.name, row["Id"], row))
        self._log(
            txn,
            obj.name,
            row["Id"],
            "UPDATE",
            [*changed, "LastModifiedDate", "SystemModstamp", "LastModifiedById"],
            user_id,
            cause,
        )
        return str(row["Id"])

    def _set_deleted(
        self,
        txn: _Txn,
        sobject: str,
        row: dict[str, Any],
        deleted: bool,
        user_id: str,
        extra: dict[str, Any] | None = None,
        cause: str = "",
    ) -> None:
        new = dict(row)
        new.update(extra or {})
        new.update(
            IsDeleted=deleted, LastModifiedDate=txn.stamp, SystemModstamp=txn.stamp, LastModifiedById=user_id
        )
        self._put(sobject, new, row)
        txn.undo.append((sobject, row["Id"], row))
        self._log(txn, sobject, row["Id"], "DELETE" if deleted else "UNDELETE", [], user_id, cause)

    def _cascade_delete(self, txn: _Txn, sobject: str, record_id: str, user_id: str) -> None:
        """Master-detail children go to the recycle bin with their parent (Order -> OrderItems,
        Account -> Contacts)."""
        for child, fname in (("OrderItem", "OrderId"), ("Contact", "AccountId")):
            ref = self.schema.objects[child].fields[fname]
            if sobject not in ref.reference_to:
                continue
            for child_row in list(self.children(child, fname, record_id)):
                self._set_deleted(txn, child, child_row, True, user_id)

    # ----------------------------------------------------------------- public writes
    def insert(self, sobject: str, values: dict[str, Any], user_id: str = INTEGRATION_USER_ID) -> str:
        obj = self._object(sobject)
        coerced = self.coerce(obj.name, values, insert=True)
        with self.lock:
            txn = self._begin()
            try:
                return self._insert(txn, obj, coerced, user_id)
            except SalesforceError:
                self._rollback(txn)
                raise

    def update(
        self, sobject: str, record_id: str, values: dict[str, Any], user_id: str = INTEGRATION_USER_ID
    ) -> None:
        obj = self._object(sobject)
        coerced = self.coerce(obj.name, values, insert=False)
        with self.lock:
            txn = self._begin()
            try:
                self._update(txn, obj, record_id, coerced, user_id)
            except SalesforceError:
                self._rollback(txn)
                raise

    def delete(self, sobject: str, record_id: str, user_id: str = INTEGRATION_USER_ID) -> None:
        obj = self._object(sobject)
        with self.lock:
            txn = self._begin()
            row = self._live_row(obj, record_id)
            self._set_deleted(txn, obj.name, row, True, user_id)
            self._cascade_delete(txn, obj.name, row["Id"], user_id)

    def undelete(self, sobject: str, record_id: str, user_id: str = INTEGRATION_USER_ID) -> None:
        obj = self._object(sobject)
        with self.lock:
            row = self.get(obj.name, record_id)
            if row is None:
                raise SalesforceError("NOT_FOUND", "The requested resource does not exist", status=404)
            if not row["IsDeleted"]:
                raise SalesforceError("UNDELETE_FAILED", "Entity is not in the recycle bin")
            if row.get("MasterRecordId"):
                raise SalesforceError("UNDELETE_FAILED", "Cannot undelete a record that was merged")
            txn = self._begin()
            self._set_deleted(txn, obj.name, row, False, user_id)

    def save_many(
        self,
        records: list[tuple[str, dict[str, Any]]],
        *,
        create: bool,
        all_or_none: bool,
        user_id: str = INTEGRATION_USER_ID,
    ) -> list[SaveResult]:
        """sObject Collections create/update: per-record results in request order. `records` are
        (object, values) with values already free of `attributes`; updates carry their `Id`.
        JsonParserError in any record fails the whole request before anything is written."""
        prepared: list[tuple[ObjectDef | None, dict[str, Any] | None, SalesforceError | None]] = []
        for sobject, values in records:
            try:
                known = self._object(sobject)
                target = values.get("Id", values.get("id"))
                body = {k: v for k, v in values.items() if k not in ("Id", "id")}
                stored = self.coerce(known.name, body, insert=create)
                if not create or target is not None:
                    stored["Id"] = target
                prepared.append((known, stored, None))
            except JsonParserError:
                raise
            except SalesforceError as exc:
                prepared.append((None, None, exc))
        results: list[SaveResult] = []
        with self.lock:
            txn = self._begin()
            for obj, coerced, error in prepared:
                if error is not None:
                    results.append(SaveResult(None, False, [error]))
                    continue
                assert obj is not None and coerced is not None
                mark = len(txn.undo)
                log_mark = len(self._changes)
                try:
                    if create:
                        rid = self._insert(txn, obj, coerced, user_id)
                    else:
                        target = coerced.pop("Id")
                        if target is None:
                            raise SalesforceError(
                                "MISSING_ARGUMENT", "Id not specified in an update call", []
                            )
                        rid = self._update(txn, obj, target, coerced, user_id)
                    results.append(SaveResult(rid, True))
                except SalesforceError as exc:
                    # undo this record's partial work only
                    partial = _Txn(txn.stamp)
                    partial.undo = txn.undo[mark:]
                    partial.log_mark = log_mark
                    self._rollback(partial)
                    del txn.undo[mark:]
                    if exc.error_code == "NOT_FOUND":  # a save result names a missing row this way
                        exc = SalesforceError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
                    results.append(SaveResult(None if create else _safe_id(coerced), False, [exc]))
            if all_or_none and any(not r.success for r in results):
                self._rollback(txn)
                rolled = SalesforceError("ALL_OR_NONE_OPERATION_ROLLED_BACK", ROLLED_BACK_MESSAGE)
                results = [
                    r if not r.success else SaveResult(None if create else r.id, False, [rolled])
                    for r in results
                ]
        return results

    def load(self, records: Iterable[tuple[str, dict[str, Any]]], user_id: str = ADMIN_USER_ID) -> int:
        """Insert pre-made records (seed data): their own `Id`, system fields stamped, validated like
        any insert except that read-only business fields (auto numbers, IsStandard) may be given."""
        count = 0
        with self.lock:
            txn = self._begin()
            try:
                for sobject, values in records:
                    obj = self._object(sobject)
                    values = dict(values)
                    rid = values.pop("Id", None)
                    if rid is None or not is_valid_id(rid) or rid[:3] != obj.key_prefix:
                        raise SalesforceError(
                            "MALFORMED_ID", f"{obj.label} ID: id value of incorrect type: {rid}"
                        )
                    rid = to_18(rid)
                    if rid in self._types:
                        raise SalesforceError(
                            "DUPLICATE_VALUE",
                            f"duplicate value found: Id duplicates value on record with id: {rid}",
                        )
                    created = values.pop("CreatedDate", None)
                    for name in SYSTEM_FIELDS:
                        values.pop(name, None)
                    coerced = self.coerce(obj.name, values, insert=True)
                    if created is not None:
                        created = _coerce_value(obj.fields["CreatedDate"], created)
                    self._insert(txn, obj, coerced, user_id, system=True, record_id=rid, created=created)
                    for f in obj.fields.values():
                        if f.auto_number and f.name in coerced:
                            number = int(re.sub(r"\D", "", str(coerced[f.name])) or 0)
                            key = (obj.name, f.name)
                            self._autonumbers[key] = max(self._autonumbers.get(key, 0), number)
                    count += 1
            except SalesforceError:
                self._rollback(txn)
                raise
        return count

    def merge(
        self,
        master_id: str,
        loser_ids: list[str],
        keep: dict[str, str] | None = None,
        user_id: str = ADMIN_USER_ID,
    ) -> dict[str, Any]:
        """Merge 1–2 losers into the master as Salesforce does: chosen field values copied to the
        master, children re-parented, losers deleted with MasterRecordId set."""
        keep = keep or {}
        with self.lock:
            sobject = self.type_of(master_id) if isinstance(master_id, str) else None
            if sobject is None or self.get(sobject, master_id) is None:
                raise SalesforceError("INVALID_ID_FIELD", f"invalid record id: {master_id}", ["masterRecord"])
            obj = self.schema.objects[sobject]
            if not obj.mergeable:
                raise SalesforceError("INVALID_TYPE", f"Merge is not supported for {obj.name}")
            if not 1 <= len(loser_ids) <= 2:
                raise SalesforceError(
                    "INVALID_OPERATION", "A merge request must have between 1 and 2 records to merge"
                )
            master = self._live_row(obj, master_id)
            losers = []
            for lid in loser_ids:
                if not isinstance(lid, str) or not is_valid_id(lid) or to_18(lid)[:3] != obj.key_prefix:
                    raise SalesforceError(
                        "INVALID_ID_FIELD", f"invalid record id: {lid}", ["recordToMergeIds"]
                    )
                if to_18(lid) == master["Id"]:
                    raise SalesforceError(
                        "INVALID_ID_FIELD", "Cannot merge a record with itself", ["recordToMergeIds"]
                    )
                losers.append(self._live_row(obj, lid))
            by_id = {r["Id"]: r for r in [master, *losers]}
            copy: dict[str, Any] = {}
            for fname, source in keep.items():
                f = obj.field(fname)
                if f is None:
                    raise SalesforceError(
                        "INVALID_FIELD", f"No such column '{fname}' on sobject of type {obj.name}"
                    )
                if not f.updateable or f.name in SYSTEM_FIELDS:
                    raise SalesforceError(
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        f"Unable to create/update fields: {f.name}.",
                        [f.name],
                    )
                src = by_id.get(to_18(source)) if isinstance(source, str) and is_valid_id(source) else None
                if src is None:
                    raise SalesforceError(
                        "INVALID_ID_FIELD", f"{fname}: {source} is not one of the merged records"
                    )
                if src is not master:
                    copy[f.name] = src[f.name]
            txn = self._begin()
            try:
                if copy:
                    self._update(txn, obj, master["Id"], copy, user_id, system=True, cause="merge")
                reparented: list[str] = []
                for loser in losers:
                    for child_obj, fname in self._children_of[obj.name]:
                        if child_obj == obj.name and fname == "MasterRecordId":
                            continue
                        for child in list(
                            self.children(child_obj, fname, loser["Id"], include_deleted=False)
                        ):
                            if child["Id"] == master["Id"]:
                                continue
                            self._update(
                                txn,
                                self.schema.objects[child_obj],
                                child["Id"],
                                {fname: master["Id"]},
                                user_id,
                                system=True,
                                cause="merge",
                            )
                            reparented.append(child["Id"])
                for loser in losers:
                    current = self._tables[obj.name][loser["Id"]]
                    self._set_deleted(
                        txn, obj.name, current, True, user_id, {"MasterRecordId": master["Id"]}, cause="merge"
                    )
            except SalesforceError:
                self._rollback(txn)
                raise
            return {
                "id": master["Id"],
                "success": True,
                "mergedRecordIds": [r["Id"] for r in losers],
                "updatedRelatedIds": reparented,
                "errors": [],
            }


def _safe_id(values: dict[str, Any]) -> str | None:
    rid = values.get("Id")
    return to_18(rid) if isinstance(rid, str) and is_valid_id(rid) else None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, int):
        return "VALUE_NUMBER_INT"
    if isinstance(value, float):
        return "VALUE_NUMBER_FLOAT"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, dict):
        return "START_OBJECT"
    return "VALUE_STRING"


def _deser_error(kind: str, f: FieldDef, value: Any, extra: str = "") -> JsonParserError:
    shown = (
        value if isinstance(value, str) else ("" if isinstance(value, list | dict) else str(value).lower())
    )
    token = _json_type(value)
    text = f"Cannot deserialize instance of {kind} from {token} value {shown}{extra}".replace(
        " value  ", " value "
    )
    if isinstance(value, list | dict):
        text = f"Cannot deserialize instance of {kind} from {token} value"
    return JsonParserError(text + " or request may be missing a required field", f.name)


def _coerce_value(f: FieldDef, value: Any) -> Any:
    """One JSON value into the stored form for the field's type (what the REST deserialiser does)."""
    if value is None:
        return None
    t = f.type
    if t == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _deser_error("boolean", f, value)
    if t in NUMBER_TYPES:
        if isinstance(value, (bool, list | dict)):
            raise _deser_error("double" if t != "int" else "int", f, value)
        if isinstance(value, str):
            if value.strip() == "":
                return None
            try:
                number = Decimal(value.strip())
            except InvalidOperation:
                raise _deser_error("double" if t != "int" else "int", f, value) from None
        else:
            if isinstance(value, float) and not math.isfinite(value):
                raise _deser_error("double", f, value)
            number = Decimal(str(value))
        if t == "int":
            if number != number.to_integral_value():
                raise _deser_error("int", f, value)
            return int(number)
        if f.scale or f.precision:
            number = number.quantize(Decimal(1).scaleb(-f.scale), rounding=ROUND_HALF_UP)
        return float(number)
    if t == "date":
        if not isinstance(value, str):
            raise _deser_error("date", f, value)
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1]
        if _DATE_RE.match(text):
            try:
                date.fromisoformat(text)
                return text
            except ValueError:
                pass
        raise _deser_error("date", f, value, " or value is not a valid date")
    if t == "datetime":
        if not isinstance(value, str):
            raise _deser_error("datetime", f, value)
        parsed = _parse_datetime(value.strip())
        if parsed is None:
            raise _deser_error("datetime", f, value, " or value is not a valid datetime")
        return parsed
    # string-like types
    if isinstance(value, list | dict):
        raise _deser_error(t if t != "reference" else "id", f, value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and value.is_integer():
        text = str(value)
    else:
        text = str(value)
    if text == "":
        return None
    return text


def _parse_datetime(text: str) -> str | None:
    m = _DATETIME_RE.match(text)
    if not m:
        if _DATE_RE.match(text):
            try:
                d = date.fromisoformat(text)
            except ValueError:
                return None
            return format_datetime(datetime(d.year, d.month, d.day, tzinfo=UTC))
        return None
    year, month, day, hour, minute, second, frac, tz = m.groups()
    try:
        micro = int((frac or "0").ljust(6, "0")[:6])
        if tz in (None, "Z"):
            zone = UTC
        else:
            sign = 1 if tz[0] == "+" else -1
            digits = tz[1:].replace(":", "")
            zone = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, zone
        )
    except ValueError:
        return None
    return format_datetime(moment)


def without_currency_fields(schema: Schema) -> Schema:
    """The schema of the same org without multi-currency: no CurrencyIsoCode anywhere."""
    objects: dict[str, ObjectDef] = {}
    for name, obj in schema.objects.items():
        fields = {n: f for n, f in obj.fields.items() if n != "CurrencyIsoCode"}
        objects[name] = replace(
            obj,
            fields=fields,
            _lower_fields={n.lower(): n for n in fields},
        )
    return Schema(objects=objects, currencies=schema.currencies)

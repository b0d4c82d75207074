"""Avro schemas of the fake org's event channels, shaped like Salesforce's.

Change Data Capture: `/data/<Object>ChangeEvent` (custom objects `/data/<Name>__ChangeEvent`), a
record with a `ChangeEventHeader` and every field of the object as a nullable value (only the
changed fields carry values, as in Salesforce). Platform events: `/event/<Name>__e` with
`CreatedDate`, `CreatedById` and the event's custom fields.

The schema id is a fingerprint of the schema JSON, like Salesforce's (which is also a hash).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import fastavro

from connector.sandbox.salesforce.schema import ObjectDef, Schema

NAMESPACE = "com.sforce.eventbus"
CHANGE_TYPES = [
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
    "SNAPSHOT",
]
_ARRAY_OF_STRINGS = {"type": "array", "items": "string"}
CHANGE_EVENT_HEADER: dict[str, Any] = {
    "type": "record",
    "name": "ChangeEventHeader",
    "namespace": NAMESPACE,
    "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": _ARRAY_OF_STRINGS},
        {
            "name": "changeType",
            "type": {"type": "enum", "name": "ChangeType", "namespace": NAMESPACE, "symbols": CHANGE_TYPES},
        },
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": _ARRAY_OF_STRINGS},
        {"name": "diffFields", "type": _ARRAY_OF_STRINGS},
        {"name": "changedFields", "type": _ARRAY_OF_STRINGS},
    ],
}
# Org field type -> Avro type of its value in an event (dates and times as Salesforce sends them).
_AVRO_TYPES: dict[str, Any] = {
    "boolean": "boolean",
    "int": "int",
    "double": "double",
    "currency": "double",
    "percent": "double",
    "datetime": {"type": "long", "logicalType": "timestamp-millis"},
    "date": {"type": "int", "logicalType": "date"},
}
# Platform events the fake org defines (name -> custom fields); `Record_Id__c` names the record.
PLATFORM_EVENTS: dict[str, list[str]] = {"Order_Activated__e": ["Record_Id__c", "Status__c"]}


@dataclass
class Topic:
    name: str  # /data/AccountChangeEvent, /event/Order_Activated__e
    schema: dict[str, Any]
    schema_json: str
    schema_id: str
    parsed: Any = field(repr=False)
    sobject: str | None = None  # the object of a change event channel
    fields: dict[str, str] = field(default_factory=dict)  # record field -> org type (CDC)

    @property
    def is_change_event(self) -> bool:
        return self.sobject is not None

    def encode(self, record: dict[str, Any]) -> bytes:
        import io

        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.parsed, record)
        return buf.getvalue()

    def decode(self, payload: bytes) -> dict[str, Any]:
        import io

        return fastavro.schemaless_reader(io.BytesIO(payload), self.parsed, self.parsed)  # type: ignore[return-value]


def schema_id_of(schema_json: str) -> str:
    digest = hashlib.sha256(schema_json.encode("utf-8")).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _make_topic(name: str, schema: dict[str, Any], **extra: Any) -> Topic:
    schema_json = json.dumps(schema, separators=(",", ":"))
    parsed = fastavro.parse_schema(json.loads(schema_json))
    return Topic(name, schema, schema_json, schema_id_of(schema_json), parsed, **extra)


def change_event_channel(sobject: str) -> str:
    """Account -> /data/AccountChangeEvent; Invoice__c -> /data/Invoice__ChangeEvent."""
    base = sobject[:-3] + "__" if sobject.endswith("__c") else sobject
    return f"/data/{base}ChangeEvent"


def change_event_topic(obj: ObjectDef) -> Topic:
    channel = change_event_channel(obj.name)
    record_fields: list[dict[str, Any]] = [{"name": "ChangeEventHeader", "type": CHANGE_EVENT_HEADER}]
    types: dict[str, str] = {}
    for f in obj.fields.values():
        if f.name == "Id":
            continue
        avro_type = _AVRO_TYPES.get(f.type, "string")
        record_fields.append({"name": f.name, "type": ["null", avro_type], "default": None})
        types[f.name] = f.type
    schema = {
        "type": "record",
        "name": channel.rsplit("/", 1)[-1],
        "namespace": NAMESPACE,
        "fields": record_fields,
    }
    return _make_topic(channel, schema, sobject=obj.name, fields=types)


def platform_event_topic(name: str, custom_fields: list[str]) -> Topic:
    fields: list[dict[str, Any]] = [
        {"name": "CreatedDate", "type": "long"},
        {"name": "CreatedById", "type": "string"},
    ]
    fields += [{"name": f, "type": ["null", "string"], "default": None} for f in custom_fields]
    schema = {"type": "record", "name": name, "namespace": NAMESPACE, "fields": fields}
    return _make_topic(f"/event/{name}", schema)


def all_topics(schema: Schema) -> dict[str, Topic]:
    topics = {}
    for obj in schema.objects.values():
        topic = change_event_topic(obj)
        topics[topic.name] = topic
    for name, custom in PLATFORM_EVENTS.items():
        topic = platform_event_topic(name, custom)
        topics[topic.name] = topic
    return topics

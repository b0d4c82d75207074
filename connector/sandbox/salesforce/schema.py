"""The fake org's object and field definitions, loaded from schema.yaml and the metadata project.

schema.yaml declares the standard objects and fields (and the CPQ package's); the connector's own
custom fields come from the Salesforce metadata project an admin deploys
(connector/salesforce/metadata_project), so the fake has exactly the fields a real org gets. This
module turns both into typed objects and answers lookups (fields, parent relationships, child
relationships) case-insensitively, as Salesforce does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from connector.salesforce.metadata import CustomFieldDef, MetadataProject, default_project, load_project

SCHEMA_FILE = Path(__file__).with_name("schema.yaml")

STRING_TYPES = {"id", "string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "reference"}
NUMBER_TYPES = {"double", "currency", "percent", "int"}
# Metadata API field type (the metadata project's files) -> describe `type` (what the fake serves).
METADATA_TYPES = {
    "Text": "string",
    "TextArea": "textarea",
    "LongTextArea": "textarea",
    "Email": "email",
    "Phone": "phone",
    "Url": "url",
    "Checkbox": "boolean",
    "Date": "date",
    "DateTime": "datetime",
    "Number": "double",
    "Currency": "currency",
    "Percent": "percent",
    "Picklist": "picklist",
    "Lookup": "reference",
}


@dataclass(frozen=True)
class FieldDef:
    name: str
    label: str
    type: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    values: tuple[str, ...] = ()
    restricted: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    child_relationship_name: str | None = None
    default: Any = None
    auto_number: str | None = None
    external_id: bool = False

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    @property
    def filterable(self) -> bool:
        return self.type != "textarea" or self.length <= 255


@dataclass(frozen=True)
class ChildRelationship:
    name: str  # e.g. OrderItems
    child_object: str  # e.g. OrderItem
    field: str  # e.g. OrderId


@dataclass
class ObjectDef:
    name: str
    label: str
    key_prefix: str
    mergeable: bool = False
    name_field: str | None = None
    fields: dict[str, FieldDef] = field(default_factory=dict)
    children: dict[str, ChildRelationship] = field(default_factory=dict)
    _lower_fields: dict[str, str] = field(default_factory=dict)
    _lower_rels: dict[str, str] = field(default_factory=dict)
    _lower_children: dict[str, str] = field(default_factory=dict)

    def field(self, name: str) -> FieldDef | None:
        """Field by name, case-insensitive."""
        real = self._lower_fields.get(name.lower())
        return self.fields[real] if real else None

    def parent_relationship(self, name: str) -> FieldDef | None:
        """The reference field behind a relationship name (`Account` -> AccountId), case-insensitive."""
        real = self._lower_rels.get(name.lower())
        return self.fields[real] if real else None

    def child_relationship(self, name: str) -> ChildRelationship | None:
        real = self._lower_children.get(name.lower())
        return self.children[real] if real else None


@dataclass
class Schema:
    objects: dict[str, ObjectDef]
    currencies: tuple[str, ...]

    def object(self, name: str) -> ObjectDef | None:
        """Object by API name, case-insensitive."""
        for obj_name, obj in self.objects.items():
            if obj_name.lower() == name.lower():
                return obj
        return None

    def object_for_prefix(self, key_prefix: str) -> ObjectDef | None:
        for obj in self.objects.values():
            if obj.key_prefix == key_prefix:
                return obj
        return None


def _field(name: str, spec: dict[str, Any], currencies: list[str]) -> FieldDef:
    values = spec.get("values") or (currencies if spec.get("values_from") == "currencies" else [])
    return FieldDef(
        name=name,
        label=spec.get("label", name),
        type=spec["type"],
        length=int(spec.get("length", 0)),
        precision=int(spec.get("precision", 0)),
        scale=int(spec.get("scale", 0)),
        nillable=bool(spec.get("nillable", True)),
        createable=bool(spec.get("createable", True)),
        updateable=bool(spec.get("updateable", True)),
        values=tuple(values),
        restricted=bool(spec.get("restricted", False)),
        reference_to=tuple(spec.get("reference_to", ())),
        relationship_name=spec.get("relationship_name"),
        child_relationship_name=spec.get("child_relationship_name"),
        default=spec.get("default"),
        auto_number=spec.get("auto_number"),
        external_id=bool(spec.get("external_id", False)),
    )


def field_from_metadata(spec: CustomFieldDef) -> FieldDef:
    """A metadata project field as the fake org describes it (a checkbox is never null)."""
    kind = METADATA_TYPES.get(spec.type)
    if kind is None:
        raise ValueError(f"{spec.object_name}.{spec.name}: the fake org has no type for {spec.type!r}")
    number = kind in NUMBER_TYPES
    return FieldDef(
        name=spec.name,
        label=spec.label,
        type=kind,
        length=0 if number or kind in ("boolean", "date", "datetime") else spec.length,
        precision=spec.precision if number else 0,
        scale=spec.scale if number else 0,
        nillable=kind != "boolean",
        values=spec.picklist_values,
        restricted=spec.restricted,
        default=spec.default,
        external_id=spec.external_id,
        # A custom lookup's parent relationship is its name with __r; its child relationship on
        # the parent is the relationshipName with __r.
        reference_to=(spec.reference_to,) if spec.reference_to else (),
        relationship_name=spec.name.removesuffix("__c") + "__r" if spec.reference_to else None,
        child_relationship_name=spec.relationship_name + "__r" if spec.relationship_name else None,
    )


def _custom_specs(project: MetadataProject, objects: dict[str, Any]) -> dict[str, dict[str, FieldDef]]:
    """The project's fields by object; an object the fake lacks or a field declared twice is an error."""
    out: dict[str, dict[str, FieldDef]] = {}
    for spec in project.fields:
        obj_spec = objects.get(spec.object_name)
        if obj_spec is None:
            raise ValueError(
                f"metadata project field {spec.qualified_name}: schema.yaml has no {spec.object_name}"
            )
        if spec.name in (obj_spec.get("fields") or {}):
            raise ValueError(
                f"{spec.qualified_name} is declared in both schema.yaml and the metadata project; "
                "keep it in the metadata project only"
            )
        out.setdefault(spec.object_name, {})[spec.name] = field_from_metadata(spec)
    return out


def load_schema(path: Path = SCHEMA_FILE, metadata_dir: Path | None = None) -> Schema:
    """schema.yaml plus the metadata project's custom fields (the shipped one unless `metadata_dir`)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    project = default_project() if metadata_dir is None else load_project(metadata_dir)
    custom = _custom_specs(project, raw["objects"])
    currencies = list(raw.get("currencies", []))
    objects: dict[str, ObjectDef] = {}
    for obj_name, obj_spec in raw["objects"].items():
        obj = ObjectDef(
            name=obj_name,
            label=obj_spec.get("label", obj_name),
            key_prefix=str(obj_spec["key_prefix"]),
            mergeable=bool(obj_spec.get("mergeable", False)),
            name_field=obj_spec.get("name_field"),
        )
        specs = dict(raw["system_fields"])
        if obj.mergeable:
            specs["MasterRecordId"] = {
                "label": "Master Record ID",
                "type": "reference",
                "length": 18,
                "reference_to": [obj_name],
                "relationship_name": "MasterRecord",
                "createable": False,
                "updateable": False,
            }
        specs.update(obj_spec.get("fields", {}))
        for fname, fspec in specs.items():
            obj.fields[fname] = _field(fname, fspec, currencies)
        obj.fields.update(custom.get(obj_name, {}))
        obj._lower_fields = {n.lower(): n for n in obj.fields}
        obj._lower_rels = {
            f.relationship_name.lower(): f.name for f in obj.fields.values() if f.relationship_name
        }
        objects[obj_name] = obj
    for obj in objects.values():
        for f in obj.fields.values():
            if f.child_relationship_name:
                for target in f.reference_to:
                    parent = objects[target]
                    parent.children[f.child_relationship_name] = ChildRelationship(
                        f.child_relationship_name, obj.name, f.name
                    )
    for obj in objects.values():
        obj._lower_children = {n.lower(): n for n in obj.children}
    return Schema(objects=objects, currencies=tuple(currencies))


@cache
def default_schema() -> Schema:
    return load_schema()

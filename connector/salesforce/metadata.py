"""The Salesforce metadata project shipped with the connector, read back as Python values.

`metadata_project/` is what an admin deploys (custom fields, the integration user's permission
set, the Order_Activated__e platform event, the Change Data Capture selection). Reading it here
lets the fake org and the tests use the very files that are deployed, instead of a second copy
that could drift from them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

PROJECT_DIR = Path(__file__).with_name("metadata_project")
SOURCE_DIR = Path("force-app", "main", "default")
PERMISSION_SET = "Cpq2Stripe_Integration"
NAMESPACE = "http://soap.sforce.com/2006/04/metadata"
DEPLOY_COMMAND = "cd connector/salesforce/metadata_project && sf project deploy start --source-dir force-app"
ASSIGN_COMMAND = f"sf org assign permset --name {PERMISSION_SET} --on-behalf-of <integration user>"

_NS = {"md": NAMESPACE}
# Metadata API field types the loader understands; anything else is refused naming the file.
FIELD_TYPES = frozenset(
    {
        "Text",
        "TextArea",
        "LongTextArea",
        "Email",
        "Phone",
        "Url",
        "Checkbox",
        "Date",
        "DateTime",
        "Number",
        "Currency",
        "Percent",
        "Picklist",
        "Lookup",
    }
)
# Salesforce fixes the length of these types and the files leave it out (it refuses `length` on an
# Email field); these are the lengths describe reports for them.
_FIXED_LENGTHS = {"Email": 80, "Phone": 40, "Url": 255, "TextArea": 255, "Picklist": 255, "Lookup": 18}
_NEEDS_LENGTH = frozenset({"Text", "LongTextArea"})
_NUMBER_TYPES = frozenset({"Number", "Currency", "Percent"})


@dataclass(frozen=True)
class CustomFieldDef:
    """One custom field as its `.field-meta.xml` declares it (Metadata API names and types)."""

    object_name: str
    name: str
    label: str
    type: str  # Metadata API type: Text, LongTextArea, Email, Checkbox, DateTime, Picklist, ...
    length: int = 0
    precision: int = 0
    scale: int = 0
    default: bool | str | None = None  # a Checkbox's defaultValue, or a picklist's default value
    picklist_values: tuple[str, ...] = ()
    restricted: bool = False
    external_id: bool = False
    description: str = ""
    reference_to: str = ""  # a Lookup's object
    relationship_name: str = ""  # a Lookup's child relationship (Salesforce adds __r)

    @property
    def qualified_name(self) -> str:
        """`Object.Field`, as permission sets name fields."""
        return f"{self.object_name}.{self.name}"


@dataclass(frozen=True)
class MetadataProject:
    """What the project deploys that the connector (and the fake org) depend on."""

    fields: tuple[CustomFieldDef, ...]
    user_permissions: tuple[str, ...]
    field_permissions: dict[str, tuple[bool, bool]]  # "Object.Field" -> (readable, editable)
    platform_events: dict[str, tuple[str, ...]]  # event -> its custom field names
    change_events: tuple[str, ...]  # selected CDC entities: AccountChangeEvent, ...
    object_permissions: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # (read, edit)

    def fields_of(self, object_name: str) -> tuple[CustomFieldDef, ...]:
        return tuple(f for f in self.fields if f.object_name == object_name)

    def custom_field(self, object_name: str, name: str) -> CustomFieldDef | None:
        return next((f for f in self.fields if f.object_name == object_name and f.name == name), None)


def _parse(path: Path, root_tag: str) -> ET.Element:
    """The file's root element; a ValueError naming the file when it is not what it should be."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: malformed XML: {err}") from err
    except OSError as err:
        raise ValueError(f"{path}: cannot read: {err}") from err
    if root.tag != f"{{{NAMESPACE}}}{root_tag}":
        raise ValueError(f"{path}: expected a <{root_tag}> in the namespace {NAMESPACE}, found {root.tag}")
    return root


def _text(element: ET.Element, child: str, default: str = "") -> str:
    found = element.find(f"md:{child}", _NS)
    if found is None or found.text is None:
        return default
    return found.text.strip()


def _bool(path: Path, element: ET.Element, child: str, default: bool = False) -> bool:
    raw = _text(element, child)
    if not raw:
        return default
    if raw not in ("true", "false"):
        raise ValueError(f"{path}: <{child}> must be true or false, not {raw!r}")
    return raw == "true"


def _int(path: Path, element: ET.Element, child: str) -> int:
    raw = _text(element, child)
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{path}: <{child}> must be a whole number, not {raw!r}") from None


def _suffix_stripped(path: Path, suffix: str) -> str:
    return path.name.removesuffix(suffix)


def _custom_field(path: Path, object_name: str) -> CustomFieldDef:
    root = _parse(path, "CustomField")
    name = _suffix_stripped(path, ".field-meta.xml")
    full_name = _text(root, "fullName")
    if full_name and full_name != name:
        raise ValueError(f"{path}: <fullName> {full_name} does not match the file name {name}")
    field_type = _text(root, "type")
    if field_type not in FIELD_TYPES:
        raise ValueError(
            f"{path}: unknown field type {field_type!r} (known: {', '.join(sorted(FIELD_TYPES))})"
        )
    length = _int(path, root, "length") or _FIXED_LENGTHS.get(field_type, 0)
    if field_type in _NEEDS_LENGTH and not length:
        raise ValueError(f"{path}: a {field_type} field needs a <length>")
    default: bool | str | None = None
    values: list[str] = []
    restricted = False
    if field_type == "Checkbox":
        default = _bool(path, root, "defaultValue")
    elif field_type == "Picklist":
        value_set = root.find("md:valueSet", _NS)
        if value_set is None:
            raise ValueError(f"{path}: a Picklist field needs a <valueSet>")
        restricted = _bool(path, value_set, "restricted")
        for value in value_set.findall("md:valueSetDefinition/md:value", _NS):
            value_name = _text(value, "fullName")
            if not value_name:
                raise ValueError(f"{path}: a picklist <value> without a <fullName>")
            values.append(value_name)
            if _bool(path, value, "default"):
                default = value_name
        if not values:
            raise ValueError(f"{path}: a Picklist field needs at least one value")
    if field_type == "Lookup" and not (_text(root, "referenceTo") and _text(root, "relationshipName")):
        raise ValueError(f"{path}: a Lookup field needs a <referenceTo> and a <relationshipName>")
    return CustomFieldDef(
        object_name=object_name,
        name=name,
        label=_text(root, "label", name),
        type=field_type,
        length=length,
        precision=_int(path, root, "precision") if field_type in _NUMBER_TYPES else 0,
        scale=_int(path, root, "scale") if field_type in _NUMBER_TYPES else 0,
        default=default,
        picklist_values=tuple(values),
        restricted=restricted,
        external_id=_bool(path, root, "externalId"),
        description=_text(root, "description"),
        reference_to=_text(root, "referenceTo"),
        relationship_name=_text(root, "relationshipName"),
    )


def _permission_set(
    path: Path,
) -> tuple[tuple[str, ...], dict[str, tuple[bool, bool]], dict[str, tuple[bool, bool]]]:
    """(enabled user permissions, field permissions, object permissions) of one permission set."""
    root = _parse(path, "PermissionSet")
    users = tuple(
        _text(p, "name") for p in root.findall("md:userPermissions", _NS) if _bool(path, p, "enabled")
    )
    fields = {
        _text(p, "field"): (_bool(path, p, "readable"), _bool(path, p, "editable"))
        for p in root.findall("md:fieldPermissions", _NS)
    }
    objects = {
        _text(p, "object"): (_bool(path, p, "allowRead"), _bool(path, p, "allowEdit"))
        for p in root.findall("md:objectPermissions", _NS)
    }
    return users, fields, objects


def load_project(path: Path = PROJECT_DIR) -> MetadataProject:
    """Read the project's fields, permission set, platform events and CDC selection."""
    source = path / SOURCE_DIR
    objects_dir = source / "objects"
    if not objects_dir.is_dir():
        raise ValueError(f"{objects_dir}: no such directory (is {path} a Salesforce DX project?)")
    fields: list[CustomFieldDef] = []
    events: dict[str, tuple[str, ...]] = {}
    for object_dir in sorted(p for p in objects_dir.iterdir() if p.is_dir()):
        defs = [
            _custom_field(p, object_dir.name)
            for p in sorted((object_dir / "fields").glob("*.field-meta.xml"))
        ]
        if object_dir.name.endswith("__e"):
            _parse(object_dir / f"{object_dir.name}.object-meta.xml", "CustomObject")
            events[object_dir.name] = tuple(f.name for f in defs)
        else:
            fields.extend(defs)
    users, field_permissions, object_permissions = _permission_set(
        source / "permissionsets" / f"{PERMISSION_SET}.permissionset-meta.xml"
    )
    change_events = []
    for member in sorted(
        (source / "platformEventChannelMembers").glob("*.platformEventChannelMember-meta.xml")
    ):
        root = _parse(member, "PlatformEventChannelMember")
        if _text(root, "eventChannel") == "ChangeEvents":
            change_events.append(_text(root, "selectedEntity"))
    return MetadataProject(
        fields=tuple(fields),
        user_permissions=users,
        field_permissions=field_permissions,
        platform_events=events,
        change_events=tuple(change_events),
        object_permissions=object_permissions,
    )


@cache
def default_project() -> MetadataProject:
    """The shipped project, read once per process."""
    return load_project()

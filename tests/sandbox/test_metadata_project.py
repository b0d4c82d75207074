"""The Salesforce metadata project an admin deploys, and the fake org that loads its fields from it.

If the project is missing, malformed or lacks a field the mappings use, these fail: the fake org
(and so every other test) would otherwise run against fields a real org does not have.
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from connector.mapping import load_mappings
from connector.salesforce import metadata
from connector.salesforce.metadata import PROJECT_DIR, CustomFieldDef, default_project, load_project
from connector.sandbox.salesforce.pubsub.schemas import PLATFORM_EVENTS
from connector.sandbox.salesforce.schema import METADATA_TYPES, Schema, load_schema
from connector.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
NS = "{http://soap.sforce.com/2006/04/metadata}"
SOURCE = PROJECT_DIR / "force-app" / "main" / "default"
XML_FILES = sorted(SOURCE.rglob("*.xml"))
# file suffix -> the root element Salesforce expects in it
ROOT_TAGS = {
    ".field-meta.xml": "CustomField",
    ".object-meta.xml": "CustomObject",
    ".permissionset-meta.xml": "PermissionSet",
    ".flow-meta.xml": "Flow",
    ".platformEventChannelMember-meta.xml": "PlatformEventChannelMember",
}
# CustomField children in the order of the Metadata API's CustomField sequence (those we use).
FIELD_ELEMENT_ORDER = [
    "fullName",
    "defaultValue",
    "deleteConstraint",
    "description",
    "externalId",
    "inlineHelpText",
    "label",
    "length",
    "precision",
    "referenceTo",
    "relationshipLabel",
    "relationshipName",
    "required",
    "scale",
    "type",
    "unique",
    "valueSet",
    "visibleLines",
]
STATUSES = ("Pending", "Synced", "Failed", "Refused")
# What schema.yaml declared before the fields moved into the project: the fake org must still
# serve each exactly so (describe type, length, picklist values, external id).
BEFORE = {
    "Account": {
        "Billing_Email__c": ("email", 80, (), False),
        "Billing_Entity__c": ("boolean", 0, (), False),
        "Stripe_Payment_Method_ID__c": ("string", 255, (), False),
        "Stripe_Customer_ID__c": ("string", 255, (), True),
        "Stripe_Sync_Status__c": ("picklist", 255, STATUSES, False),
        "Stripe_Sync_Message__c": ("textarea", 32768, (), False),
        "Stripe_Last_Synced__c": ("datetime", 0, (), False),
        "VAT_Number__c": ("string", 32, (), False),
        "Stripe_Delinquent__c": ("boolean", 0, (), False),
        "Stripe_Balance__c": ("currency", 0, (), False),
        "Legal_Entity__c": ("string", 80, (), False),
        "Stripe_Account__c": ("string", 40, (), False),
        # payment method setup (issue 20), new with the project
        "Stripe_Payment_Setup_Requested__c": ("boolean", 0, (), False),
        "Stripe_Payment_Setup_URL__c": ("textarea", 2000, (), False),
        "Stripe_Payment_Setup_Expires__c": ("datetime", 0, (), False),
        "Stripe_Payment_Setup_Status__c": ("string", 255, (), False),
        "Stripe_Payment_Method_Type__c": ("string", 40, (), False),
        "Stripe_Payment_Method_Summary__c": ("string", 255, (), False),
    },
    "Product2": {"Stripe_Product_ID__c": ("string", 255, (), True)},
    "PricebookEntry": {"Stripe_Price_ID__c": ("string", 255, (), True)},
    "Order": {
        "Payment_Term__c": (
            "picklist",
            255,
            ("Due on Receipt", "Net 15", "Net 30", "Net 45", "Net 60", "Net 90"),
            False,
        ),
        "Stripe_Subscription_ID__c": ("string", 255, (), True),
        "Stripe_Sync_Status__c": (
            "picklist",
            255,
            ("Pending", "Synced", "Incomplete", "Failed", "Refused"),
            False,
        ),
        "Stripe_Sync_Message__c": ("textarea", 32768, (), False),
        "Stripe_Last_Synced__c": ("datetime", 0, (), False),
        "Stripe_Skip_Elapsed_Periods__c": ("boolean", 0, (), False),
        "Stripe_Discount_Months__c": ("double", 0, (), False),
        "Stripe_Invoice_ID__c": ("string", 255, (), True),
        "Stripe_Invoice_URL__c": ("url", 255, (), False),
        "Stripe_Trial_End_Date__c": ("date", 0, (), False),
        "Stripe_Subscription_Status__c": ("string", 40, (), False),
        "Stripe_Latest_Invoice_Number__c": ("string", 64, (), False),
        "Stripe_Latest_Invoice_Status__c": ("string", 20, (), False),
        "Stripe_Latest_Invoice_Amount_Due__c": ("currency", 0, (), False),
        "Stripe_Latest_Invoice_Amount_Paid__c": ("currency", 0, (), False),
        "Stripe_Latest_Invoice_Due_Date__c": ("date", 0, (), False),
        "Stripe_Latest_Invoice_URL__c": ("url", 255, (), False),
        "Legal_Entity__c": ("string", 80, (), False),
        "Stripe_Account__c": ("string", 40, (), False),
    },
    "OrderItem": {
        "Stripe_Price_ID__c": ("string", 255, (), False),
        "Stripe_Discount_Months__c": ("double", 0, (), False),
    },
    # The usage object (mappings/usage.yaml), new with the project rather than moved into it.
    "Stripe_Usage__c": {
        "Order_Product__c": ("reference", 18, (), False),
        "Quantity__c": ("double", 0, (), False),
        "Usage_Time__c": ("datetime", 0, (), False),
        "Stripe_Sync_Status__c": ("picklist", 255, STATUSES, False),
        "Stripe_Sync_Message__c": ("textarea", 32768, (), False),
        "Stripe_Last_Synced__c": ("datetime", 0, (), False),
    },
}
READ_ONLY = {
    "Stripe_Usage__c.Order_Product__c",
    "Stripe_Usage__c.Quantity__c",
    "Stripe_Usage__c.Usage_Time__c",
    "Account.Billing_Email__c",
    "Account.Billing_Entity__c",
    "Account.VAT_Number__c",
    "Account.Legal_Entity__c",
    "Order.Legal_Entity__c",
    "Order.Payment_Term__c",
    "Order.Stripe_Skip_Elapsed_Periods__c",
    "Order.Stripe_Discount_Months__c",
    "OrderItem.Stripe_Discount_Months__c",
    "Order.Stripe_Trial_End_Date__c",
}
_CUSTOM_NAME = re.compile(r"\b[A-Za-z][A-Za-z0-9_]*__c\b")


def _ours(name: str) -> bool:
    return name.endswith("__c") and not name.startswith("SBQQ__")


def _root(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def _child(element: ET.Element, name: str) -> str:
    found = element.find(f"{NS}{name}")
    assert found is not None and found.text is not None, f"no <{name}>"
    return found.text


# ------------------------------------------------------------------ the files themselves


def test_project_layout():
    project = json.loads((PROJECT_DIR / "sfdx-project.json").read_text(encoding="utf-8"))
    assert [d["path"] for d in project["packageDirectories"]] == ["force-app"]
    assert re.fullmatch(r"\d+\.0", project["sourceApiVersion"])
    for relative in (
        "objects/Account/fields/Stripe_Customer_ID__c.field-meta.xml",
        "objects/Order/fields/Stripe_Skip_Elapsed_Periods__c.field-meta.xml",
        "objects/Order_Activated__e/Order_Activated__e.object-meta.xml",
        "permissionsets/Cpq2Stripe_Integration.permissionset-meta.xml",
        "flows/Cpq2Stripe_Publish_Order_Activated.flow-meta.xml",
        "platformEventChannelMembers/ChangeEvents_AccountChangeEvent.platformEventChannelMember-meta.xml",
        "platformEventChannelMembers/ChangeEvents_OrderChangeEvent.platformEventChannelMember-meta.xml",
    ):
        assert (SOURCE / relative).is_file(), relative
    assert len(XML_FILES) >= 23


def test_readme_gives_the_commands():
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    assert "sf project deploy start --source-dir force-app" in readme
    assert "sf org assign permset --name Cpq2Stripe_Integration --on-behalf-of" in readme
    assert "Change Data Capture" in readme
    # the command's directory is the project, relative to the repository root
    cd = re.match(r"cd (\S+) && sf project deploy start --source-dir force-app", metadata.DEPLOY_COMMAND)
    assert cd is not None
    assert (ROOT / cd.group(1)).resolve() == PROJECT_DIR.resolve()


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: str(p.relative_to(SOURCE)))
def test_xml_is_well_formed_metadata(path: Path):
    root = _root(path)  # raises on malformed XML
    suffix = next(s for s in ROOT_TAGS if path.name.endswith(s))
    assert root.tag == f"{NS}{ROOT_TAGS[suffix]}"
    for element in root.iter():
        assert element.tag.startswith(NS), f"{element.tag} is outside the metadata namespace"
    assert path.read_text(encoding="utf-8").startswith('<?xml version="1.0" encoding="UTF-8"?>')


@pytest.mark.parametrize(
    "path", sorted(SOURCE.glob("objects/*/fields/*.field-meta.xml")), ids=lambda p: p.stem
)
def test_field_files_follow_the_metadata_api_shape(path: Path):
    root = _root(path)
    children = [c.tag.removeprefix(NS) for c in root]
    assert children[0] == "fullName"
    assert _child(root, "fullName") == path.name.removesuffix(".field-meta.xml")
    assert set(children) <= set(FIELD_ELEMENT_ORDER), set(children) - set(FIELD_ELEMENT_ORDER)
    assert children == sorted(children, key=FIELD_ELEMENT_ORDER.index), "elements out of WSDL order"
    assert len(_child(root, "label")) <= 40
    description = root.find(f"{NS}description")
    assert description is None or len(description.text or "") <= 1000
    kind = _child(root, "type")
    if kind == "Email":
        assert root.find(f"{NS}length") is None  # Salesforce refuses a length on Email
    if kind == "Text":
        assert 1 <= int(_child(root, "length")) <= 255
    if kind == "LongTextArea":
        assert int(_child(root, "length")) <= 131072
        assert root.find(f"{NS}visibleLines") is not None
    if kind == "Checkbox":
        assert _child(root, "defaultValue") in ("true", "false")
    if kind == "Picklist":
        values = root.findall(f"{NS}valueSet/{NS}valueSetDefinition/{NS}value")
        assert values
        for value in values:
            assert [c.tag.removeprefix(NS) for c in value] == ["fullName", "default", "label"]


def test_loader_reads_every_field_file():
    project = default_project()
    files = {
        f"{p.parent.parent.name}.{p.name.removesuffix('.field-meta.xml')}"
        for p in SOURCE.glob("objects/*/fields/*.field-meta.xml")
        if not p.parent.parent.name.endswith("__e")
    }
    assert {f.qualified_name for f in project.fields} == files
    assert {o: set(f) for o, f in BEFORE.items()} == {
        o: {f.name for f in project.fields_of(o)} for o in {f.object_name for f in project.fields}
    }


# ------------------------------------------------------------------ the mappings' fields exist


def _resolve(schema: Schema, obj: str, path: str) -> tuple[str, str]:
    """`Account.Stripe_Payment_Method_ID__c` read from Order -> (Account, Stripe_Payment_Method_ID__c)."""
    *hops, name = path.split(".")
    for hop in hops:
        found = schema.objects[obj].parent_relationship(hop)
        assert found is not None, f"{obj} has no relationship {hop}"
        obj = found.reference_to[0]
    return obj, name


def _mapped_custom_fields() -> dict[tuple[str, str], str]:
    """(object, field) -> how the mappings use it: 'read' or 'write'."""
    mappings = load_mappings(MAPPINGS)
    schema = load_schema()
    used: dict[tuple[str, str], str] = {}

    def read(obj: str, path: str | None) -> None:
        if path:
            used.setdefault(_resolve(schema, obj, path), "read")

    def condition(obj: str, text: str | None) -> None:
        for name in _CUSTOM_NAME.findall(text or ""):
            used.setdefault((obj, name), "read")

    def write(obj: str, name: str) -> None:
        used[(obj, name)] = "write"

    customer, subscription = mappings.customer, mappings.subscription
    condition(customer.object, customer.condition)
    for f in customer.fields:
        read(customer.object, f.source)
    for name in customer.write_back.fields():
        write(customer.object, name)
    if customer.payment_setup is not None:  # the request is read, the others written (and it cleared)
        for name in customer.payment_setup.fields.model_dump().values():
            if name:
                write(customer.object, name)
    condition("Order", subscription.condition)
    if subscription.default_payment_method is not None:
        read("Order", subscription.default_payment_method.source)
    for f in subscription.fields:
        read("Order", f.source)
    for name in subscription.write_back.fields():
        write("Order", name)
    lines = subscription.lines
    condition(lines.object, lines.condition)
    for slot in lines.slots().values():
        read(lines.object, slot.source)
    write(lines.object, lines.write_back.stripe_price_id)
    write("Product2", lines.product_write_back.stripe_id)
    write("PricebookEntry", lines.price_book_entry_write_back.stripe_id)
    return {key: how for key, how in used.items() if _ours(key[1])}


def test_every_custom_field_the_mappings_use_is_in_the_project():
    used = _mapped_custom_fields()
    # the shipped mappings do use these; an empty set would make the test pass for nothing
    assert ("Account", "Billing_Entity__c") in used  # customer.yaml condition
    assert ("Account", "Stripe_Payment_Method_ID__c") in used  # via Order's Account lookup
    assert used[("Product2", "Stripe_Product_ID__c")] == "write"
    assert used[("Account", "Stripe_Payment_Setup_URL__c")] == "write"
    project = default_project()
    missing = sorted(f"{obj}.{name}" for obj, name in used if project.custom_field(obj, name) is None)
    assert missing == []


def test_every_custom_field_the_mapping_files_name_is_in_the_project():
    """A plain text scan as well, so a field the loader ignores (a comment aside) still counts."""
    project = default_project()
    ours = {f.name for f in project.fields}
    for file in ("customer.yaml", "subscription.yaml"):
        lines = (MAPPINGS / file).read_text(encoding="utf-8").splitlines()
        code = "\n".join(line.split("#", 1)[0] for line in lines)
        names = {n for n in _CUSTOM_NAME.findall(code) if _ours(n)}
        assert names, file
        assert names <= ours, names - ours


# ------------------------------------------------------------------ the permission set


def test_permission_set_grants_what_the_connector_needs():
    project = default_project()
    assert {"ApiEnabled", "EditActivatedOrders"} <= set(project.user_permissions)
    assert set(project.field_permissions) == {f.qualified_name for f in project.fields}
    for f in project.fields:
        readable, editable = project.field_permissions[f.qualified_name]
        assert readable, f.qualified_name
        assert editable == (f.qualified_name not in READ_ONLY), f.qualified_name
    for (obj, name), how in _mapped_custom_fields().items():
        readable, editable = project.field_permissions[f"{obj}.{name}"]
        assert readable
        if how == "write":
            assert editable, f"{obj}.{name} is written back but not editable"
    for obj in ("Account", "Order", "OrderItem", "Product2", "PricebookEntry", "Pricebook2"):
        assert project.object_permissions[obj][0], f"no read on {obj}"
    for obj in ("Account", "Order", "OrderItem", "Product2", "PricebookEntry"):
        assert project.object_permissions[obj][1], f"no edit on {obj}"
    assert project.object_permissions["Order_Activated__e"] == (True, False)


def test_permission_set_file_shape():
    root = _root(SOURCE / "permissionsets" / "Cpq2Stripe_Integration.permissionset-meta.xml")
    assert len(_child(root, "description")) <= 255
    assert _child(root, "label")
    for element, children in (
        ("fieldPermissions", ["editable", "field", "readable"]),
        ("userPermissions", ["enabled", "name"]),
        (
            "objectPermissions",
            [
                "allowCreate",
                "allowDelete",
                "allowEdit",
                "allowRead",
                "modifyAllRecords",
                "object",
                "viewAllRecords",
            ],
        ),
    ):
        found = root.findall(f"{NS}{element}")
        assert found, element
        for item in found:
            assert [c.tag.removeprefix(NS) for c in item] == children
    tags = [c.tag.removeprefix(NS) for c in root]
    assert tags == sorted(tags), "PermissionSet elements out of WSDL (alphabetical) order"


# ------------------------------------------------------------------ the fake org serves the project


def test_fake_org_has_every_project_field():
    schema = load_schema()
    for f in default_project().fields:
        served = schema.objects[f.object_name].field(f.name)
        assert served is not None, f.qualified_name
        assert served.type == METADATA_TYPES[f.type]
        assert served.label == f.label
        assert served.length == (0 if f.type in ("Checkbox", "DateTime", "Date") else f.length)
        assert served.values == f.picklist_values
        assert served.restricted == f.restricted
        assert served.external_id == f.external_id


def test_fake_org_fields_are_what_schema_yaml_declared_before():
    schema = load_schema()
    for obj, fields in BEFORE.items():
        for name, (kind, length, values, external_id) in fields.items():
            served = schema.objects[obj].field(name)
            assert served is not None, f"{obj}.{name}"
            assert (served.type, served.length, served.values, served.external_id) == (
                kind,
                length,
                values,
                external_id,
            ), f"{obj}.{name}"
            assert served.restricted == (name == "Stripe_Sync_Status__c")
    assert schema.objects["Account"].field("Billing_Entity__c").default is True  # type: ignore[union-attr]


def test_order_sync_status_has_incomplete_and_skip_elapsed_periods_exists():
    schema = load_schema()
    order_status = schema.objects["Order"].field("Stripe_Sync_Status__c")
    account_status = schema.objects["Account"].field("Stripe_Sync_Status__c")
    assert order_status is not None and account_status is not None
    assert order_status.values.index("Incomplete") == order_status.values.index("Synced") + 1
    assert "Incomplete" not in account_status.values
    skip = schema.objects["Order"].field("Stripe_Skip_Elapsed_Periods__c")
    assert skip is not None
    assert (skip.type, skip.label, skip.default, skip.nillable) == (
        "boolean",
        "Stripe: Skip Elapsed Periods",
        False,
        False,
    )
    described = default_project().custom_field("Order", "Stripe_Skip_Elapsed_Periods__c")
    assert described is not None and "elapsed" in described.description


def test_every_metadata_type_maps_to_a_fake_type():
    assert set(METADATA_TYPES) == set(metadata.FIELD_TYPES)


def test_fake_org_loads_fields_from_the_project(tmp_path: Path):
    copy = tmp_path / "project"
    shutil.copytree(PROJECT_DIR, copy)
    fields = copy / "force-app" / "main" / "default" / "objects" / "Order" / "fields"
    (fields / "Stripe_Skip_Elapsed_Periods__c.field-meta.xml").unlink()
    schema = load_schema(metadata_dir=copy)
    assert schema.objects["Order"].field("Stripe_Skip_Elapsed_Periods__c") is None
    assert schema.objects["Order"].field("Stripe_Subscription_ID__c") is not None
    assert load_schema().objects["Order"].field("Stripe_Skip_Elapsed_Periods__c") is not None

    # a change to a file shows in the fake too
    path = fields / "Stripe_Subscription_ID__c.field-meta.xml"
    path.write_text(path.read_text(encoding="utf-8").replace("<length>255</length>", "<length>100</length>"))
    assert load_schema(metadata_dir=copy).objects["Order"].field("Stripe_Subscription_ID__c").length == 100  # type: ignore[union-attr]


def test_broken_project_is_refused_naming_the_file(tmp_path: Path):
    copy = tmp_path / "project"
    shutil.copytree(PROJECT_DIR, copy)
    path = (
        copy
        / "force-app"
        / "main"
        / "default"
        / "objects"
        / "Account"
        / "fields"
        / "Stripe_Last_Synced__c.field-meta.xml"
    )
    original = path.read_text(encoding="utf-8")

    path.write_text(original.replace("</CustomField>", ""), encoding="utf-8")
    with pytest.raises(ValueError, match=r"Stripe_Last_Synced__c\.field-meta\.xml: malformed XML"):
        load_project(copy)
    with pytest.raises(ValueError, match="Stripe_Last_Synced__c"):
        load_schema(metadata_dir=copy)

    path.write_text(original.replace("<type>DateTime</type>", "<type>Hologram</type>"), encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"Stripe_Last_Synced__c\.field-meta\.xml: unknown field type 'Hologram'"
    ):
        load_project(copy)

    path.write_text(original.replace('xmlns="http://soap.sforce.com/2006/04/metadata"', ""), encoding="utf-8")
    with pytest.raises(ValueError, match=r"Stripe_Last_Synced__c.*namespace"):
        load_project(copy)

    with pytest.raises(ValueError, match="no such directory"):
        load_project(tmp_path / "nothing")


def test_a_field_in_both_schema_yaml_and_the_project_is_refused(tmp_path: Path):
    from connector.sandbox.salesforce.schema import SCHEMA_FILE

    yaml_copy = tmp_path / "schema.yaml"
    text = SCHEMA_FILE.read_text(encoding="utf-8")
    extra = "      Stripe_Price_ID__c: {label: Stripe Price ID, type: string, length: 255}\n"
    text = text.replace("      UseStandardPrice:", extra + "      UseStandardPrice:")
    yaml_copy.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=r"PricebookEntry\.Stripe_Price_ID__c is declared in both"):
        load_schema(yaml_copy)


def test_loaded_field_defs_carry_the_metadata_values():
    project = default_project()
    entity = project.custom_field("Account", "Billing_Entity__c")
    assert isinstance(entity, CustomFieldDef)
    assert (entity.type, entity.label, entity.default, entity.length) == (
        "Checkbox",
        "Billing Entity",
        True,
        0,
    )
    email = project.custom_field("Account", "Billing_Email__c")
    assert email is not None and (email.type, email.length) == ("Email", 80)  # Salesforce's fixed length
    message = project.custom_field("Order", "Stripe_Sync_Message__c")
    assert message is not None and (message.type, message.length) == ("LongTextArea", 32768)
    status = project.custom_field("Account", "Stripe_Sync_Status__c")
    assert status is not None and (status.picklist_values, status.restricted) == (STATUSES, True)
    term = project.custom_field("Order", "Payment_Term__c")
    assert term is not None and not term.restricted and term.default is None


# ------------------------------------------------------------------ events


def test_platform_event_matches_the_fake_and_the_settings():
    project = default_project()
    assert project.platform_events == {name: tuple(fields) for name, fields in PLATFORM_EVENTS.items()}
    id_field = Settings.model_fields["salesforce_pubsub_event_id_field"].default
    assert id_field in project.platform_events["Order_Activated__e"]
    event_dir = SOURCE / "objects" / "Order_Activated__e"
    root = _root(event_dir / "Order_Activated__e.object-meta.xml")
    assert _child(root, "eventType") == "HighVolume"
    assert _child(root, "publishBehavior") == "PublishAfterCommit"
    assert _child(root, "deploymentStatus") == "Deployed"
    lengths = {
        p.name.removesuffix(".field-meta.xml"): (_child(_root(p), "type"), int(_child(_root(p), "length")))
        for p in (event_dir / "fields").glob("*.field-meta.xml")
    }
    assert lengths == {"Record_Id__c": ("Text", 18), "Status__c": ("Text", 40)}


def test_flow_publishes_the_event_when_an_order_is_activated():
    root = _root(SOURCE / "flows" / "Cpq2Stripe_Publish_Order_Activated.flow-meta.xml")
    assert _child(root, "processType") == "AutoLaunchedFlow"
    assert _child(root, "status") == "Active"
    start = root.find(f"{NS}start")
    assert start is not None
    assert _child(start, "object") == "Order"
    assert _child(start, "triggerType") == "RecordAfterSave"
    assert _child(start, "recordTriggerType") in ("Update", "CreateAndUpdate")
    assert _child(start, "doesRequireRecordChangedToMeetCriteria") == "true"
    (condition,) = start.findall(f"{NS}filters")
    assert (_child(condition, "field"), _child(condition, "operator")) == (
        "StatusCode",
        "EqualTo",
    )  # the status category: added Activated values too
    assert _child(condition, "value/" + NS + "stringValue") == "Activated"
    creates = root.findall(f"{NS}recordCreates")
    assert len(creates) == 1
    create = creates[0]
    target = start.find(f"{NS}connector/{NS}targetReference")
    assert target is not None and target.text == _child(create, "name")
    assert _child(create, "object") == "Order_Activated__e"
    assigned = {
        _child(a, "field"): _child(a, "value/" + NS + "elementReference")
        for a in create.findall(f"{NS}inputAssignments")
    }
    assert assigned == {"Record_Id__c": "$Record.Id", "Status__c": "$Record.Status"}
    assert set(assigned) <= set(default_project().platform_events["Order_Activated__e"])
    tags = [c.tag.removeprefix(NS) for c in root]
    assert tags == sorted(tags), "Flow elements out of WSDL (alphabetical) order"


def test_change_data_capture_selects_the_default_topics():
    project = default_project()
    assert set(project.change_events) == {"AccountChangeEvent", "OrderChangeEvent"}
    topics = Settings.model_fields["salesforce_pubsub_topics"].default.split(",")
    assert {t.removeprefix("/data/") for t in topics} == set(project.change_events)

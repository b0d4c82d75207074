"""usage.yaml: loaded and checked like the other mappings (file:line, the fix), optional; and how
one usage record is read and checked before anything is sent (connector.sync.usage.plan_usage)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.mapping import MappingError, load_mappings
from connector.mapping.schema import UsageMapping
from connector.sync.usage import plan_usage

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, target)
    return target


def test_the_shipped_usage_mapping_loads_with_its_defaults():
    usage = load_mappings(MAPPINGS).usage
    assert usage == UsageMapping()


def test_without_usage_yaml_no_usage_is_read(tmp_path: Path):
    directory = _copy(tmp_path)
    (directory / "usage.yaml").unlink()
    assert load_mappings(directory).usage is None


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("quantity: Quantity__c", "quantity: Quantity c"),
        ("quantity: Quantity__c", "quantiy: Quantity__c"),
    ],
)
def test_a_bad_usage_key_names_file_line_and_fix(tmp_path: Path, line: str, words: str):
    directory = _copy(tmp_path)
    path = directory / "usage.yaml"
    text = path.read_text(encoding="utf-8")
    number = text.splitlines().index(line) + 1
    path.write_text(text.replace(line, words), encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load_mappings(directory)
    message = str(info.value)
    assert f"usage.yaml:{number}" in message
    assert "not a Salesforce field path" in message or "did you mean 'quantity'" in message


def _row(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "Id": "a2U000000000001AAA",
        "SystemModstamp": "2026-06-15T11:00:00.000+0000",
        "Order_Product__c": "802000000000001AAA",
        "Order_Product__r": {
            "OrderId": "801000000000001AAA",
            "Product2Id": "01t000000000001AAA",
            "Order": {"AccountId": "001000000000001AAA"},
        },
        "Quantity__c": 12.0,
        "Usage_Time__c": "2026-06-15T11:00:00.000+0000",
    }
    return {**base, **fields}


def test_a_usage_record_becomes_what_the_meter_event_sends():
    plan = plan_usage(_row(), UsageMapping(), NOW)
    assert plan.refusal is None
    assert (plan.identifier, plan.value, plan.product, plan.account) == (
        "a2U000000000001AAA",
        12,
        "01t000000000001AAA",
        "001000000000001AAA",
    )
    assert plan.timestamp == int(datetime(2026, 6, 15, 11, 0, tzinfo=UTC).timestamp())


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"Quantity__c": -1.0}, "usage_negative_quantity"),
        ({"Quantity__c": 1.5}, "usage_fractional_quantity"),
        ({"Quantity__c": None}, "usage_no_quantity"),
        ({"Usage_Time__c": None}, "usage_no_time"),
        ({"Usage_Time__c": _stamp(NOW - timedelta(days=36))}, "usage_too_old"),
        ({"Usage_Time__c": _stamp(NOW + timedelta(minutes=10))}, "usage_in_future"),
        ({"Order_Product__c": None}, "usage_no_order_product"),
    ],
)
def test_what_stripe_would_refuse_is_refused_before_sending(fields: dict[str, object], code: str):
    plan = plan_usage(_row(**fields), UsageMapping(), NOW)
    assert plan.refusal is not None and plan.refusal[0] == code


def test_usage_a_day_inside_stripes_window_is_sent():
    plan = plan_usage(_row(Usage_Time__c=_stamp(NOW - timedelta(days=33))), UsageMapping(), NOW)
    assert plan.refusal is None

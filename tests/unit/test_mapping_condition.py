"""A mapping's `condition`: parsed as a SOQL WHERE fragment when the mapping loads, its fields and
values checked against the org's describe, and a refusal by Salesforce reported at its file:line."""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connector.daemon.metrics import Metrics
from connector.daemon.reload import MappingWatcher
from connector.daemon.worker import SyncWorker
from connector.errors import FatalError
from connector.mapping import MappingError, check_against_describe, load_mappings
from connector.mapping.checks import check_conditions_in_org
from connector.mapping.condition import ConditionSyntaxError, parse_condition
from connector.state import StateStore
from connector.sync import polling, streams

from .test_mapping_loader import MAPPINGS, _describe_from_schema

SHIPPED = "condition: Billing_Entity__c = true"
CONDITION_LINE = next(
    n for n, line in enumerate((MAPPINGS / "customer.yaml").read_text().splitlines(), 1) if line == SHIPPED
)
CONDITION_COLUMN = len("condition: ") + 1


def _mappings_dir(tmp_path: Path, condition: str, lines_condition: str | None = None) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, target, dirs_exist_ok=True)
    customer = (target / "customer.yaml").read_text().replace(SHIPPED, f"condition: {condition}")
    (target / "customer.yaml").write_text(customer)
    if lines_condition is not None:
        subscription = (target / "subscription.yaml").read_text()
        subscription = subscription.replace("  # condition: UnitPrice > 0", f"  condition: {lines_condition}")
        (target / "subscription.yaml").write_text(subscription)
    return target


# ---------------------------------------------------------------- the parser


@pytest.mark.parametrize(
    "text",
    [
        "Billing_Entity__c = true",
        "Billing_Entity__c = TRUE AND Industry != 'Other'",
        "Type IN ('New', 'Renewal') AND CurrencyIsoCode <> 'JPY'",
        "Type NOT IN ('New') OR (Amount >= -2.5 AND Amount < 1000)",
        "NOT Name LIKE 'Acme\\'s%'",
        "CreatedDate = LAST_N_DAYS:30 AND LastModifiedDate < THIS_FISCAL_QUARTER",
        "EffectiveDate >= 2026-01-01 AND CreatedDate > 2026-01-01T00:00:00Z",
        "CreatedDate < 2026-01-01T00:00:00.000+02:00 AND Parent.Name = null",
        "Regions__c INCLUDES ('EMEA;APAC', 'US') AND Regions__c EXCLUDES ('LATAM')",
        "Id IN (SELECT AccountId FROM Contact WHERE (Email != null))",
        "CALENDAR_YEAR(CreatedDate) = 2026",
        "((a = 1) AND (b = 2)) OR c = 3",
    ],
)
def test_valid_conditions_parse(text):
    assert parse_condition(text)


def test_comparisons_name_their_fields_operators_and_value_kinds():
    found = parse_condition("Account.Billing_Entity__c = true AND Type IN ('New', 'Renewal')")
    assert [(c.field, c.op, [v.kind for v in c.values]) for c in found] == [
        ("Account.Billing_Entity__c", "=", ["boolean"]),
        ("Type", "IN", ["string", "string"]),
    ]
    assert found[1].offset == len("Account.Billing_Entity__c = true AND ")


@pytest.mark.parametrize(
    ("text", "column", "fix"),
    [
        ("Billing_Entity__c == true", 19, "use = (SOQL has no ==)"),
        ("Type = 'New", 8, "close the text"),
        ('Type = "New"', 8, "single quotes"),
        ("Type = New", 8, "quote text"),
        ("(Type = 'New'", 14, "add ')'"),
        ("Type = 'New')", 13, "'('"),
        ("a = 1 AND b = 2 OR c = 3", 17, "(a AND b) OR c"),
        ("Billing_Entity__c = true;", 25, "remove the ';'"),
        ("WHERE Billing_Entity__c = true", 1, "remove the leading 'WHERE'"),
        ("a = 1 && b = 2", 7, "use AND"),
        ("CreatedDate = LAST_N_DAYS", 15, "LAST_N_DAYS:30"),
        ("Type = ", 8, "quote text"),
        ("Type LIKEE 'x%'", 6, "did you mean LIKE"),
        ("Type IN 'New'", 9, "'('"),
        ("Type = 'New' Status = 'x'", 14, "AND or OR"),
    ],
)
def test_syntax_errors_name_the_column_and_the_fix(text, column, fix):
    with pytest.raises(ConditionSyntaxError) as caught:
        parse_condition(text)
    assert caught.value.column == column, caught.value.message
    assert fix in caught.value.fix


def test_a_syntax_error_stops_the_mapping_loading_with_file_line_and_column(tmp_path):
    directory = _mappings_dir(tmp_path, "Billing_Entity__c == true", lines_condition="UnitPrice >> 0")
    with pytest.raises(MappingError) as caught:
        load_mappings(directory)
    by_file = {Path(p.file).name: p for p in caught.value.problems}
    customer = by_file["customer.yaml"]
    assert (customer.line, customer.column) == (CONDITION_LINE, CONDITION_COLUMN + len("Billing_Entity__c "))
    assert "==" in customer.message and customer.fix == "use = (SOQL has no ==)"
    assert str(customer).startswith(f"{directory / 'customer.yaml'}:{CONDITION_LINE}:")
    lines = by_file["subscription.yaml"]
    assert "column 12" in lines.message  # UnitPrice >> 0: the second '>' is not a value


# ---------------------------------------------------------------- against the org's describe


def _describe_problems(tmp_path: Path, condition: str, lines_condition: str | None = None) -> list[Any]:
    mappings = load_mappings(_mappings_dir(tmp_path, condition, lines_condition))
    return check_against_describe(mappings, _describe_from_schema())


def test_a_misspelt_field_gets_a_did_you_mean(tmp_path):
    (problem,) = _describe_problems(tmp_path, "Billing_Entty__c = true")
    assert (problem.line, problem.column) == (CONDITION_LINE, CONDITION_COLUMN)
    assert "Billing_Entty__c" in problem.message and problem.fix == "did you mean Billing_Entity__c?"


def test_parent_paths_are_followed_through_relationships(tmp_path):
    assert _describe_problems(tmp_path, "Parent.Billing_Entity__c = true AND Parent.Name != null") == []
    (problem,) = _describe_problems(tmp_path, "Parnt.Name = 'Acme'")
    assert "Parnt" in problem.message and problem.fix == "did you mean Parent.Name?"


def test_a_checkbox_compared_with_text_is_refused(tmp_path):
    (problem,) = _describe_problems(tmp_path, "Billing_Entity__c = 'Yes'")
    assert "Billing_Entity__c is a checkbox" in problem.message
    assert problem.fix == "compare with true or false"
    assert problem.column == CONDITION_COLUMN + len("Billing_Entity__c = ")


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("Name = 5", "quote the value: '5'"),
        ("CreatedDate > '2026-01-01'", "no quotes"),
        ("Name IN ('a', 2)", "quote the value: '2'"),
        ("Billing_Entity__c LIKE 'tr%'", "use = or"),
    ],
)
def test_values_must_fit_the_field_type(tmp_path, condition, expected):
    (problem,) = _describe_problems(tmp_path, condition)
    assert expected in problem.fix, problem


def test_the_order_product_condition_is_checked_against_order_item(tmp_path):
    found = _describe_problems(tmp_path, "Billing_Entity__c = true", lines_condition="UnitPrce > 0")
    (problem,) = found
    assert problem.file.endswith("subscription.yaml") and problem.fix == "did you mean UnitPrice?"
    found = _describe_problems(tmp_path, "Billing_Entity__c = true", lines_condition="UnitPrice > '0'")
    assert "a number field" in found[0].message


def test_good_conditions_fit_the_sandbox_org(tmp_path):
    condition = "Billing_Entity__c = true AND (Name LIKE 'A%' OR CreatedDate = LAST_N_DAYS:30)"
    assert _describe_problems(tmp_path, condition, lines_condition="UnitPrice > 0") == []


# ---------------------------------------------------------------- Salesforce's answer


def _malformed(code: str, detail: str, query: str, column: int) -> SalesforceMalformedRequest:
    message = f"\n{query}\n{' ' * (column - 1)}^\nERROR at Row:1:Column:{column}\n{detail}"
    return SalesforceMalformedRequest("url", 400, "query", [{"errorCode": code, "message": message}])


def test_salesforce_refusing_a_condition_is_reported_at_its_file_line(tmp_path):
    mappings = load_mappings(_mappings_dir(tmp_path, "Billing_Entity__c = true"))
    asked = []

    def query(soql: str) -> list[Any]:
        asked.append(soql)
        if soql.startswith("SELECT Id FROM Account WHERE "):
            raise _malformed("INVALID_FIELD", "No such column 'Billing_Entity__c'", soql, 30)
        return []

    (problem,) = check_conditions_in_org(mappings, query)
    assert asked == ["SELECT Id FROM Account WHERE Billing_Entity__c = true LIMIT 1"]
    assert (problem.line, problem.column) == (CONDITION_LINE, CONDITION_COLUMN)
    assert "INVALID_FIELD: No such column 'Billing_Entity__c'" in problem.message
    assert "column 1 of the condition" in problem.message
    assert check_conditions_in_org(mappings, query, skip=frozenset({(problem.file, problem.line)})) == []


class _RefusingSalesforce:
    """Refuses every query holding `bad`, as Salesforce answers a condition naming a missing field."""

    def __init__(self, bad: str) -> None:
        self.bad = bad
        self.queries: list[str] = []

    def query_pages(self, soql: str, include_deleted: bool = False):
        self.queries.append(soql)
        if self.bad in soql:
            detail = f"No such column '{self.bad}' on entity 'Account'."
            raise _malformed("INVALID_FIELD", detail, soql, soql.index(self.bad) + 1)
        yield []


def test_a_run_stops_naming_the_condition_not_the_raw_soql_error(tmp_path):
    mappings = load_mappings(_mappings_dir(tmp_path, "Billing_Entty__c = true"))
    sf = _RefusingSalesforce("Billing_Entty__c")
    sync = SimpleNamespace(ctx=SimpleNamespace(sf=sf, mappings=mappings), object_type="customer")

    with pytest.raises(FatalError) as caught:
        poll_query = f"SELECT Id, Name FROM Account WHERE {' ' * 300}(Billing_Entty__c = true)"
        list(polling.query_pages(sync, poll_query))

    text = str(caught.value)
    assert f"customer.yaml:{CONDITION_LINE}:{CONDITION_COLUMN}" in text
    assert "No such column 'Billing_Entty__c'" in text and "Column:" not in text
    assert sf.queries[-1] == "SELECT Id FROM Account WHERE Billing_Entty__c = true LIMIT 1"


def test_a_query_error_the_condition_is_not_behind_is_left_as_it_is(tmp_path):
    mappings = load_mappings(_mappings_dir(tmp_path, "Billing_Entity__c = true"))
    sf = _RefusingSalesforce("Nope__c")
    sync = SimpleNamespace(ctx=SimpleNamespace(sf=sf, mappings=mappings), object_type="customer")
    with pytest.raises(SalesforceMalformedRequest):
        list(polling.query_pages(sync, "SELECT Nope__c FROM Account"))


# ---------------------------------------------------------------- the daemon


def test_hot_reload_refuses_a_broken_condition_and_keeps_the_last_good_mapping(tmp_path, caplog):
    directory = _mappings_dir(tmp_path, "Billing_Entity__c = true")
    watcher = MappingWatcher(directory, load_mappings(directory))
    customer = directory / "customer.yaml"
    customer.write_text(customer.read_text().replace(SHIPPED, "condition: Billing_Entity__c == true"))

    with caplog.at_level(logging.ERROR):
        assert watcher.check() is False

    assert watcher.current.customer.condition == "Billing_Entity__c = true"
    assert f"customer.yaml:{CONDITION_LINE}:" in caplog.text and "use = (SOQL has no ==)" in caplog.text


class _BrokenPoll:
    key, title, sf_object, object_type = "accounts", "Accounts → Customers", "Account", "customer"

    def poll(self, ctx, report) -> None:
        raise FatalError("mapping_condition", "customer.yaml:69:12: Salesforce refuses the condition")


def test_a_poll_that_fails_is_counted_as_an_error_not_ok(sqlite_url, monkeypatch):
    monkeypatch.setattr(streams, "STREAMS", (_BrokenPoll(),))
    store = StateStore.open(sqlite_url)
    ctx = SimpleNamespace(
        sf=SimpleNamespace(calls={}, query_pages=lambda *a, **k: iter(())),
        gateway=SimpleNamespace(calls={}),
        store=store,
        mappings="v1",
        run_id=None,
        fatal_message=None,
        now=lambda: datetime.now(UTC),
    )
    metrics = Metrics()
    worker = SyncWorker(ctx, metrics, may_work=lambda: True, mappings=lambda: "v1")
    try:
        assert worker.poll() is False
        with pytest.raises(RuntimeError, match=r"customer\.yaml:69"):
            worker.poll(required=True)
        assert store.runs.last("sync").status == "failed"
    finally:
        store.close()
    assert metrics.get("cpq2stripe_jobs_total", {"job": "poll", "result": "ok"}) == 0
    assert metrics.get("cpq2stripe_jobs_total", {"job": "poll", "result": "error"}) == 2

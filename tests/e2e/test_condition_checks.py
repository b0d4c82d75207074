"""A mapping's `condition` against the fake org, as an operator meets it: `mappings check
--against-org` refuses a broken one at its file:line, and a run with a condition Salesforce refuses
stops naming the mapping file and the condition instead of a raw SOQL error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import MAPPINGS
from .test_cli import cli, sandbox_env

SHIPPED = "condition: Billing_Entity__c = true"
LINES_EXAMPLE = "  # condition: UnitPrice > 0"


def _line_of(text: str, wanted: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line == wanted)


def _mappings(tmp_path: Path, condition: str | None = None, lines_condition: str | None = None) -> Path:
    copy = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, copy, dirs_exist_ok=True)
    if condition is not None:
        path = copy / "customer.yaml"
        path.write_text(path.read_text().replace(SHIPPED, f"condition: {condition}"))
    if lines_condition is not None:
        path = copy / "subscription.yaml"
        path.write_text(path.read_text().replace(LINES_EXAMPLE, f"  condition: {lines_condition}"))
    return copy


CUSTOMER_LINE = _line_of((MAPPINGS / "customer.yaml").read_text(), SHIPPED)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("Billing_Entty__c = true", "did you mean Billing_Entity__c?"),
        ("Billing_Entity__c == true", "use = (SOQL has no ==)"),
        ("Billing_Entity__c = 'Yes'", "Billing_Entity__c is a checkbox"),
        # runs fine in Salesforce, but no Account holds the misspelt picklist value
        ("Billing_Entity__c = true AND Industry = 'Finanse'", "did you mean 'Finance'?"),
        # fits the describe, but Salesforce refuses it: only running it finds out
        ("Id = 'not-an-id'", "INVALID_QUERY_FILTER_OPERATOR"),
    ],
)
def test_mappings_check_against_the_org_refuses_a_broken_condition(sandbox, tmp_path, condition, expected):
    copy = _mappings(tmp_path, condition)

    done = cli(
        "mappings", "check", "--dir", str(copy), "--against-org",
        env=sandbox_env(sandbox, f"sqlite:///{tmp_path}/s.db", copy),
    )  # fmt: skip

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"customer.yaml:{CUSTOMER_LINE}:" in done.stderr and expected in done.stderr
    assert "Traceback" not in done.stderr


def test_mappings_check_against_the_org_runs_the_order_product_condition(sandbox, tmp_path):
    copy = _mappings(tmp_path, lines_condition="UnitPrice > 0 AND Quantity >= 1")
    env = sandbox_env(sandbox, f"sqlite:///{tmp_path}/s.db", copy)
    good = cli("mappings", "check", "--dir", str(copy), "--against-org", env=env)
    assert good.returncode == 0, good.stderr

    copy = _mappings(tmp_path, lines_condition="UnitPrce > 0")
    bad = cli("mappings", "check", "--dir", str(copy), "--against-org", env=env)
    assert bad.returncode == 2
    line = _line_of((copy / "subscription.yaml").read_text(), "  condition: UnitPrce > 0")
    assert f"subscription.yaml:{line}:" in bad.stderr and "did you mean UnitPrice?" in bad.stderr


def test_a_run_with_a_condition_salesforce_refuses_names_the_mapping_file_and_line(sandbox, tmp_path):
    """The mapping loads (the syntax is fine), the org has no such field: the fake org refuses the
    poll query as Salesforce does, and the run says which condition, where, instead of a SOQL column."""
    copy = _mappings(tmp_path, "Billing_Entty__c = true")
    sandbox.sf_admin.create_record("Account", {"Name": "Acme", "Billing_Entity__c": True})

    done = cli("sync", env=sandbox_env(sandbox, f"sqlite:///{tmp_path}/s.db", copy))

    output = done.stdout + done.stderr
    assert done.returncode == 3, output
    assert f"customer.yaml:{CUSTOMER_LINE}:" in output and "Billing_Entty__c" in output
    assert "INVALID_FIELD" in output and "ERROR at Row" not in output
    assert sandbox.stripe_admin.objects("customer") == []


def test_a_backfill_with_a_condition_salesforce_refuses_names_the_mapping_file_and_line(sandbox, tmp_path):
    copy = _mappings(tmp_path, "Billing_Entty__c = true")
    sandbox.sf_admin.create_record("Account", {"Name": "Acme", "Billing_Entity__c": True})

    done = cli(
        "backfill",
        "--objects",
        "accounts",
        "--failures-csv",
        str(tmp_path / "f.csv"),
        env=sandbox_env(sandbox, f"sqlite:///{tmp_path}/s.db", copy),
    )

    output = done.stdout + done.stderr
    assert done.returncode == 3, output
    assert f"customer.yaml:{CUSTOMER_LINE}:" in output and "Billing_Entty__c" in output
    assert sandbox.stripe_admin.objects("customer") == []

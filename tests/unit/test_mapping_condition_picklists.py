"""`mappings check --against-org`: a condition comparing a picklist with a value that is not one of
its values is reported at file:line with the allowed values and a "did you mean" (the describe is
the fake org's: schema.yaml plus the metadata project)."""

from __future__ import annotations

import pytest

from connector.mapping.condition import unquote

from .test_mapping_condition import CONDITION_COLUMN, CONDITION_LINE, _describe_problems

PREFIX = "Billing_Entity__c = true AND "


def _one(tmp_path, condition: str):
    (problem,) = _describe_problems(tmp_path, PREFIX + condition)
    return problem


def test_a_misspelt_value_of_an_unrestricted_picklist_is_reported_with_the_values_and_a_suggestion(tmp_path):
    problem = _one(tmp_path, "Industry = 'Finanse'")

    assert problem.line == CONDITION_LINE
    assert problem.column == CONDITION_COLUMN + len(PREFIX + "Industry = ")  # at the quote
    assert "'Finanse' is not one of Industry's picklist values (Agriculture, Banking" in problem.message
    assert "unrestricted" in problem.message
    assert problem.fix.startswith("did you mean 'Finance'?")
    assert "add it to the picklist's values" in problem.fix


def test_a_value_a_restricted_picklist_cannot_hold_can_never_match(tmp_path):
    problem = _one(tmp_path, "CurrencyIsoCode IN ('EUR', 'USDD')")

    assert "'USDD' is not a value of the restricted picklist CurrencyIsoCode" in problem.message
    assert "never matches" in problem.message
    assert problem.fix == "did you mean 'USD'?"
    assert problem.column == CONDITION_COLUMN + len(PREFIX + "CurrencyIsoCode IN ('EUR', ")


def test_a_value_with_no_close_match_lists_the_allowed_values(tmp_path):
    problem = _one(tmp_path, "Industry != 'Zebra farming'")
    assert problem.fix.startswith("use one of: Agriculture, Banking, Education")


@pytest.mark.parametrize(
    "condition",
    [
        "Industry = 'Finance'",
        "Industry = 'finance'",  # Salesforce compares picklist values case-insensitively
        "Industry IN ('Banking', 'Retail') AND CurrencyIsoCode != 'JPY'",
        "Industry LIKE 'Fin%'",  # a pattern, not a value
        "Industry = null",
        "Name = 'Not a picklist'",
    ],
)
def test_values_the_picklist_has_pass(tmp_path, condition):
    assert _describe_problems(tmp_path, PREFIX + condition) == []


def test_order_product_picklists_are_checked_too(tmp_path):
    (problem,) = _describe_problems(tmp_path, "Billing_Entity__c = true", "SBQQ__ChargeType__c = 'Recuring'")
    assert "restricted picklist SBQQ__ChargeType__c" in problem.message
    assert problem.fix == "did you mean 'Recurring'?"


def test_string_literals_are_unescaped_before_comparing():
    assert unquote("'O\\'Brien'") == "O'Brien"
    assert unquote("'a\\\\b'") == "a\\b"

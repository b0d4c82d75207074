"""The fake org's SOQL engine over a small in-memory record source and the real schema."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.sandbox.salesforce.query_engine import QueryResult, execute
from connector.sandbox.salesforce.schema import default_schema
from connector.sandbox.salesforce.soql import SoqlError, escape_like, quote

NOW = dt.datetime(2024, 3, 15, 12, 0, tzinfo=dt.UTC)

ACC1 = "001000000000001AAA"
ACC2 = "001000000000002AAA"
ACC3 = "001000000000003AAA"
ORD1 = "801000000000001AAA"
ORD2 = "801000000000002AAA"
ORD3 = "801000000000003AAA"
PROD1 = "01t000000000001AAA"
PROD2 = "01t000000000002AAA"


def _dt(s: str) -> str:
    return f"{s}.000+0000"


class MemorySource:
    """RecordSource over dicts, in insertion order, with a naive children index."""

    def __init__(self) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {}
        self.children_calls = 0

    def add(self, sobject: str, **fields: Any) -> dict[str, Any]:
        row = {"IsDeleted": False, **fields}
        self.tables.setdefault(sobject, []).append(row)
        return row

    def records(self, sobject: str, include_deleted: bool) -> Iterable[dict[str, Any]]:
        return [r for r in self.tables.get(sobject, []) if include_deleted or not r["IsDeleted"]]

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        return next((r for r in self.tables.get(sobject, []) if r["Id"] == record_id), None)

    def children(self, child_sobject: str, field: str, parent_id: str, include_deleted: bool):
        self.children_calls += 1
        return [
            r
            for r in self.tables.get(child_sobject, [])
            if r.get(field) == parent_id and (include_deleted or not r["IsDeleted"])
        ]


@pytest.fixture
def src() -> MemorySource:
    s = MemorySource()
    s.add(
        "Account",
        Id=ACC1,
        Name="Acme Corp",
        Industry="Technology",
        Description="long text",
        CreatedDate=_dt("2024-01-10T08:00:00"),
        Billing_Entity__c=True,
        ParentId=None,
    )
    s.add(
        "Account",
        Id=ACC2,
        Name="Globex 100%_off",
        Industry=None,
        CreatedDate=_dt("2024-03-15T01:00:00"),
        Billing_Entity__c=False,
        ParentId=ACC1,
    )
    s.add(
        "Account",
        Id=ACC3,
        Name='Bob\'s "BBQ"\\n',
        Industry="Retail",
        CreatedDate=_dt("2023-12-31T23:59:59"),
        Billing_Entity__c=True,
        ParentId=None,
        IsDeleted=True,
    )
    s.add("Product2", Id=PROD1, Name="Seat", SBQQ__ChargeType__c="Recurring", IsActive=True)
    s.add("Product2", Id=PROD2, Name="Setup", SBQQ__ChargeType__c="One-Time", IsActive=True)
    s.add(
        "Order",
        Id=ORD1,
        AccountId=ACC1,
        Status="Activated",
        EffectiveDate="2024-01-31",
        EndDate="2025-01-30",
        OrderNumber="00000001",
        CreatedDate=_dt("2024-01-31T10:00:00"),
    )
    s.add(
        "Order",
        Id=ORD2,
        AccountId=ACC2,
        Status="Draft",
        EffectiveDate="2024-03-15",
        EndDate=None,
        OrderNumber="00000002",
        CreatedDate=_dt("2024-03-15T09:30:00"),
    )
    s.add(
        "Order",
        Id=ORD3,
        AccountId=ACC1,
        Status="Activated",
        EffectiveDate="2023-06-01",
        EndDate=None,
        OrderNumber="00000003",
        CreatedDate=_dt("2023-06-01T00:00:00"),
    )
    for n, (order, product, qty, price) in enumerate(
        [(ORD1, PROD1, 10, 12.5), (ORD1, PROD2, 1, 500.0), (ORD2, PROD1, 3.5, 12.5)], start=1
    ):
        s.add(
            "OrderItem",
            Id=f"802{n:012d}AAA",
            OrderId=order,
            Product2Id=product,
            Quantity=qty,
            UnitPrice=price,
            OrderItemNumber=f"{n:010d}",
        )
    s.add(
        "OrderItem",
        Id="802000000000009AAA",
        OrderId=ORD1,
        Product2Id=PROD1,
        Quantity=99,
        UnitPrice=1.0,
        OrderItemNumber="0000000009",
        IsDeleted=True,
    )
    return s


def run(src: MemorySource, soql: str, **kw: Any) -> QueryResult:
    return execute(soql, default_schema(), src, now=NOW, **kw)


def names(result: QueryResult, key: str = "Name") -> list[Any]:
    return [r[key] for r in result.records]


def error(src: MemorySource, soql: str) -> SoqlError:
    with pytest.raises(SoqlError) as info:
        run(src, soql)
    return info.value


# --- shape -----------------------------------------------------------------------------------------


def test_record_shape_uses_schema_casing_and_select_order(src):
    result = run(src, "select name, ID, industry from account where id = '001000000000001AAA'")
    assert result.total_size == 1
    assert result.records == [
        {
            "attributes": {"type": "Account", "url": f"/services/data/v61.0/sobjects/Account/{ACC1}"},
            "Name": "Acme Corp",
            "Id": ACC1,
            "Industry": "Technology",
        }
    ]
    assert list(result.records[0]) == ["attributes", "Name", "Id", "Industry"]


def test_base_url_path_is_used(src):
    result = run(src, f"SELECT Id FROM Account WHERE Id = '{ACC1}'", base_url_path="/services/data/v58.0")
    assert result.records[0]["attributes"]["url"] == f"/services/data/v58.0/sobjects/Account/{ACC1}"


def test_parent_paths_nest_and_merge(src):
    result = run(
        src,
        "SELECT Id, Account.Name, OrderNumber, account.industry FROM Order ORDER BY OrderNumber",
    )
    first = result.records[0]
    assert list(first) == ["attributes", "Id", "Account", "OrderNumber"]
    assert first["Account"] == {
        "attributes": {"type": "Account", "url": f"/services/data/v61.0/sobjects/Account/{ACC1}"},
        "Name": "Acme Corp",
        "Industry": "Technology",
    }


def test_multi_level_parent_path(src):
    result = run(
        src, "SELECT Id, Order.Account.Name, Product2.SBQQ__ChargeType__c FROM OrderItem ORDER BY Id"
    )
    rec = result.records[2]
    assert rec["Order"]["Account"]["Name"] == "Globex 100%_off"
    assert rec["Order"]["attributes"]["type"] == "Order"
    assert rec["Product2"]["SBQQ__ChargeType__c"] == "Recurring"


def test_empty_parent_reference_is_null(src):
    result = run(src, "SELECT Name, Parent.Name FROM Account ORDER BY Name")
    assert (result.records[0]["Name"], result.records[0]["Parent"]) == ("Acme Corp", None)
    assert result.records[1]["Parent"]["Name"] == "Acme Corp"


def test_object_name_prefix_is_accepted(src):
    result = run(src, f"SELECT Account.Name FROM Account WHERE Id = '{ACC1}'")
    assert result.records[0]["Name"] == "Acme Corp"


def test_child_subquery(src):
    result = run(
        src,
        "SELECT Id, (SELECT Id, Quantity, Product2.Name FROM OrderItems WHERE Quantity > 0 "
        "ORDER BY Quantity DESC LIMIT 5) FROM Order ORDER BY OrderNumber",
    )
    by_id = {r["Id"]: r for r in result.records}
    items = by_id[ORD1]["OrderItems"]
    assert items["totalSize"] == 2 and items["done"] is True
    assert [i["Quantity"] for i in items["records"]] == [10, 1]  # the deleted item is left out
    assert items["records"][0]["Product2"]["Name"] == "Seat"
    assert items["records"][0]["attributes"]["type"] == "OrderItem"
    assert by_id[ORD3]["OrderItems"] is None  # no children: null, as Salesforce returns


def test_child_subquery_limit_and_where(src):
    result = run(
        src,
        f"SELECT Id, (SELECT Quantity FROM OrderItems WHERE Product2.Name = 'setup' LIMIT 1) "
        f"FROM Order WHERE Id = '{ORD1}'",
    )
    assert result.records[0]["OrderItems"]["records"][0]["Quantity"] == 1


def test_child_subquery_sees_deleted_children_in_query_all(src):
    result = run(
        src, f"SELECT Id, (SELECT Id FROM OrderItems) FROM Order WHERE Id = '{ORD1}'", include_deleted=True
    )
    assert result.records[0]["OrderItems"]["totalSize"] == 3


def test_count(src):
    result = run(src, "SELECT COUNT() FROM Order WHERE Status = 'Activated'")
    assert (result.total_size, result.records) == (2, [])


def test_count_field_is_an_aggregate(src):
    result = run(src, "SELECT COUNT(EndDate) FROM Order")
    assert result.total_size == 1
    assert result.records == [{"attributes": {"type": "AggregateResult"}, "expr0": 1}]


# --- deleted rows ----------------------------------------------------------------------------------


def test_deleted_rows_only_with_include_deleted(src):
    assert run(src, "SELECT COUNT() FROM Account").total_size == 2
    assert run(src, "SELECT COUNT() FROM Account", include_deleted=True).total_size == 3
    assert names(run(src, "SELECT Name FROM Account WHERE IsDeleted = true", include_deleted=True)) == [
        'Bob\'s "BBQ"\\n'
    ]


# --- WHERE operators -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Status = 'Activated'", ["00000001", "00000003"]),
        ("Status = 'activated'", ["00000001", "00000003"]),  # case-insensitive
        ("Status != 'Activated'", ["00000002"]),
        ("Status <> 'Activated'", ["00000002"]),
        ("EffectiveDate < 2024-01-31", ["00000003"]),
        ("EffectiveDate <= 2024-01-31", ["00000001", "00000003"]),
        ("EffectiveDate > 2024-01-31", ["00000002"]),
        ("EffectiveDate >= 2024-01-31", ["00000001", "00000002"]),
        ("EndDate = null", ["00000002", "00000003"]),
        ("EndDate != null", ["00000001"]),
        ("EndDate < 2030-01-01", ["00000001"]),  # null never compares
        ("OrderNumber IN ('00000001', '00000003')", ["00000001", "00000003"]),
        ("OrderNumber NOT IN ('00000001')", ["00000002", "00000003"]),
        ("Account.Name LIKE 'acme%'", ["00000001", "00000003"]),
        ("NOT Status = 'Activated'", ["00000002"]),
        ("NOT (Status = 'Activated' AND EffectiveDate > 2024-01-01)", ["00000002", "00000003"]),
        ("Status = 'Draft' OR EffectiveDate < 2024-01-01", ["00000002", "00000003"]),
        ("(Status = 'Draft' OR EffectiveDate < 2024-01-01) AND Account.Industry = null", ["00000002"]),
        ("CreatedDate >= 2024-01-31T10:00:00Z", ["00000001", "00000002"]),
        ("CreatedDate > 2024-01-31T10:00:00Z", ["00000002"]),
        ("CreatedDate = 2024-01-31T12:00:00+02:00", ["00000001"]),  # instants, not wall clock
        ("CreatedDate < 2024-01-31T04:59:59.5-05:00", ["00000003"]),
        ("CreatedDate = TODAY", ["00000002"]),
        ("EffectiveDate = TODAY", ["00000002"]),
        ("EffectiveDate < TODAY", ["00000001", "00000003"]),
        ("EffectiveDate = YESTERDAY", []),
        ("EffectiveDate > TOMORROW", []),
        ("CreatedDate = LAST_N_DAYS:60", ["00000001", "00000002"]),
        ("EffectiveDate = THIS_YEAR", ["00000001", "00000002"]),
        ("EffectiveDate IN (2024-01-31, 2023-06-01)", ["00000001", "00000003"]),
        ("Id = '801000000000002'", ["00000002"]),  # 15-character ids match
        ("AccountId IN ('001000000000002AAA')", ["00000002"]),
    ],
)
def test_where_operators(src, where, expected):
    result = run(src, f"SELECT OrderNumber FROM Order WHERE {where} ORDER BY OrderNumber")
    assert names(result, "OrderNumber") == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Industry = null", ["Globex 100%_off"]),
        ("Industry != 'Technology'", ["Globex 100%_off"]),  # null is "not equal" in SOQL
        ("Industry NOT IN ('Technology')", ["Globex 100%_off"]),
        ("Name LIKE '%100\\%\\_%'", ["Globex 100%_off"]),
        ("Name LIKE '%100\\%\\_'", []),
        ("Name LIKE 'glob_x%'", ["Globex 100%_off"]),
        ("Name LIKE 'Acme'", []),
        ("Billing_Entity__c = true", ["Acme Corp"]),
        ("Billing_Entity__c = FALSE", ["Globex 100%_off"]),
        ("Billing_Entity__c != true", ["Globex 100%_off"]),
        ("Name = 'ACME CORP'", ["Acme Corp"]),
        ("Name > 'b'", ["Globex 100%_off"]),
        ("Parent.Name = 'Acme Corp'", ["Globex 100%_off"]),
    ],
)
def test_where_on_accounts(src, where, expected):
    assert names(run(src, f"SELECT Name FROM Account WHERE {where} ORDER BY Name")) == expected


def test_escapes_in_string_literals(src):
    soql = "SELECT Name FROM Account WHERE Name = 'Bob\\'s \\\"BBQ\\\"\\\\n'"
    assert names(run(src, soql, include_deleted=True)) == ['Bob\'s "BBQ"\\n']
    soql = "SELECT Name FROM Account WHERE Name LIKE 'bob\\'s%'"
    assert names(run(src, soql, include_deleted=True)) == ['Bob\'s "BBQ"\\n']


def test_numbers(src):
    soql = "SELECT Quantity FROM OrderItem WHERE Quantity > 3 AND Quantity < 10.5 AND UnitPrice >= -1"
    assert names(run(src, soql + " ORDER BY Quantity"), "Quantity") == [3.5, 10]
    assert names(run(src, "SELECT Quantity FROM OrderItem WHERE Quantity = 10.0"), "Quantity") == [10]
    assert names(
        run(src, "SELECT Quantity FROM OrderItem WHERE Quantity IN (1, 3.5) ORDER BY Quantity"), "Quantity"
    ) == [
        1,
        3.5,
    ]


@given(st.text(min_size=1))
def test_quoted_values_match_themselves(value):
    s = MemorySource()
    s.add("Account", Id=ACC1, Name=value)
    s.add("Account", Id=ACC2, Name=value + "x")
    assert names(run(s, f"SELECT Name FROM Account WHERE Name = {quote(value)}")) == [value]
    assert names(run(s, f"SELECT Name FROM Account WHERE Name LIKE '{escape_like(value)}'")) == [value]


# --- ORDER BY / LIMIT / OFFSET ---------------------------------------------------------------------


def test_order_by_nulls_default_first_asc_last_desc(src):
    asc = run(src, "SELECT Name, Industry FROM Account ORDER BY Industry", include_deleted=True)
    assert names(asc, "Industry") == [None, "Retail", "Technology"]
    desc = run(src, "SELECT Name, Industry FROM Account ORDER BY Industry DESC", include_deleted=True)
    assert names(desc, "Industry") == ["Technology", "Retail", None]


def test_order_by_explicit_nulls(src):
    q = "SELECT Industry FROM Account ORDER BY Industry {}"
    assert names(run(src, q.format("ASC NULLS LAST"), include_deleted=True), "Industry") == [
        "Retail",
        "Technology",
        None,
    ]
    assert names(run(src, q.format("DESC NULLS FIRST"), include_deleted=True), "Industry") == [
        None,
        "Technology",
        "Retail",
    ]


def test_order_by_several_keys_and_parent_path(src):
    result = run(src, "SELECT OrderNumber FROM Order ORDER BY Account.Name DESC, EffectiveDate ASC")
    assert names(result, "OrderNumber") == ["00000002", "00000003", "00000001"]


def test_order_by_datetime_and_case_insensitive_strings(src):
    src.add("Account", Id="001000000000004AAA", Name="apple", CreatedDate=_dt("2020-01-01T00:00:00"))
    assert names(run(src, "SELECT Name FROM Account ORDER BY Name")) == [
        "Acme Corp",
        "apple",
        "Globex 100%_off",
    ]
    assert names(run(src, "SELECT Name FROM Account ORDER BY CreatedDate DESC"))[-1] == "apple"


def test_limit_and_offset(src):
    result = run(src, "SELECT OrderNumber FROM Order ORDER BY OrderNumber LIMIT 1 OFFSET 1")
    assert (result.total_size, names(result, "OrderNumber")) == (1, ["00000002"])
    assert run(src, "SELECT COUNT() FROM Order LIMIT 2").total_size == 2


# --- errors ----------------------------------------------------------------------------------------


def test_malformed_query_message(src):
    err = error(src, "SELECT Nme FROM Account WHERE")
    assert err.error_code == "MALFORMED_QUERY"
    assert err.message == (
        "\nSELECT Nme FROM Account WHERE\n                             ^\n"
        "ERROR at Row:1:Column:30\nunexpected token: <EOF>"
    )


def test_invalid_field(src):
    err = error(src, "SELECT Nme FROM Account")
    assert err.error_code == "INVALID_FIELD"
    assert err.message.endswith(
        "No such column 'Nme' on entity 'Account'. If you are attempting to use a custom field, be sure to "
        "append the '__c' after the custom field name. Please reference your WSDL or the describe call for "
        "the appropriate names."
    )
    assert "ERROR at Row:1:Column:8" in err.message


def test_invalid_field_in_where_order_by_and_parent(src):
    assert error(src, "SELECT Id FROM Account WHERE Nme = 'x'").error_code == "INVALID_FIELD"
    assert error(src, "SELECT Id FROM Account ORDER BY Nme").error_code == "INVALID_FIELD"
    err = error(src, "SELECT Acount.Name FROM Order")
    assert err.error_code == "INVALID_FIELD"
    assert "Didn't understand relationship 'Acount' in field path." in err.message
    err = error(src, "SELECT Account.Nme FROM Order")
    assert "No such column 'Nme' on entity 'Account'." in err.message


def test_invalid_type(src):
    err = error(src, "SELECT Id FROM Acount")
    assert err.error_code == "INVALID_TYPE"
    assert err.message.endswith(
        "sObject type 'Acount' is not supported. If you are attempting to use a custom object, be sure to "
        "append the '__c' after the entity name. Please reference your WSDL or the describe call for the "
        "appropriate names."
    )


def test_unknown_child_relationship(src):
    err = error(src, "SELECT Id, (SELECT Id FROM OrderItem) FROM Order")
    assert err.error_code == "INVALID_TYPE"
    assert "Didn't understand relationship 'OrderItem' in FROM part of query call." in err.message


@pytest.mark.parametrize(
    ("where", "detail"),
    [
        (
            "EffectiveDate = '2024-01-31'",
            "value of filter criterion for field 'EffectiveDate' must be of type date and should not be "
            "enclosed in quotes",
        ),
        (
            "EffectiveDate = 2024-01-31T00:00:00Z",
            "value of filter criterion for field 'EffectiveDate' must be of type date and should not be "
            "enclosed in quotes",
        ),
        (
            "CreatedDate > 2024-01-31",
            "value of filter criterion for field 'CreatedDate' must be of type dateTime and should not be "
            "enclosed in quotes",
        ),
        (
            "Account.Billing_Entity__c = 'true'",
            "value of filter criterion for field 'Billing_Entity__c' must be of type boolean and should not "
            "be enclosed in quotes",
        ),
        (
            "Status = 5",
            "value of filter criterion for field 'Status' must be of type string and should be "
            "enclosed in quotes",
        ),
        ("Description = 'x'", "field 'Description' can not be filtered in a query call"),
        ("Description LIKE '%x%'", "field 'Description' can not be filtered in a query call"),
    ],
)
def test_type_errors_in_where(src, where, detail):
    err = error(src, f"SELECT Id FROM Order WHERE {where}")
    assert err.error_code == "INVALID_FIELD"
    assert err.message.endswith("\n" + detail)


def test_number_field_rejects_quoted_value(src):
    err = error(src, "SELECT Id FROM OrderItem WHERE Quantity > '3'")
    assert err.message.endswith(
        "value of filter criterion for field 'Quantity' must be of type double and should not be "
        "enclosed in quotes"
    )


def test_long_textarea_can_not_be_sorted_but_short_can_be_filtered(src):
    err = error(src, "SELECT Id FROM Account ORDER BY Description")
    assert err.message.endswith("field 'Description' can not be sorted in a query call")
    assert run(src, "SELECT Id FROM Account WHERE BillingStreet = 'x'").total_size == 0  # textarea(255)


def test_invalid_id_literal(src):
    err = error(src, "SELECT Id FROM Account WHERE Id = 'nope'")
    assert err.error_code == "INVALID_QUERY_FILTER_OPERATOR"
    assert err.message.endswith("invalid ID field: nope")


def test_duplicate_field(src):
    err = error(src, "SELECT Name, name FROM Account")
    assert err.error_code == "INVALID_FIELD"
    assert err.message.endswith("duplicate field selected: Name")


def test_offset_limit(src):
    err = error(src, "SELECT Id FROM Account LIMIT 10 OFFSET 2001")
    assert err.error_code == "NUMBER_OUTSIDE_VALID_RANGE"


# --- scale -----------------------------------------------------------------------------------------


def test_large_table_filters_and_sorts_correctly():
    s = MemorySource()
    for n in range(50_000):
        s.add(
            "Order",
            Id=f"801{n:012d}AAA",
            Status="Activated" if n % 3 == 0 else "Draft",
            EffectiveDate=f"2024-{n % 12 + 1:02d}-01",
            OrderNumber=f"{n:08d}",
            AccountId=ACC1,
        )
    result = run(s, "SELECT Id FROM Order WHERE Status = 'Activated' AND EffectiveDate >= 2024-06-01")
    expected = sum(1 for n in range(50_000) if n % 3 == 0 and n % 12 + 1 >= 6)
    assert result.total_size == expected == len(result.records)
    top = run(s, "SELECT OrderNumber FROM Order ORDER BY OrderNumber DESC LIMIT 2")
    assert names(top, "OrderNumber") == ["00049999", "00049998"]

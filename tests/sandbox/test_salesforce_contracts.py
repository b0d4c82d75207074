"""Contracts in the fake org through the real simple-salesforce client: the Contract, Opportunity
and CPQ amendment fields in describe, Contract.EndDate computed from StartDate and ContractTerm,
the checks Salesforce makes between Orders and their contract, and the queries the connector
needs to follow a contract's life (parent paths, child subqueries, filters), plus the Order
change events carrying the new fields."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connector.sandbox.salesforce.contracts import ContractHistory, Line, amend, create_contract, renew
from connector.sandbox.salesforce.pubsub.schemas import all_topics
from connector.sandbox.salesforce.server import SalesforceSandbox, start_salesforce
from tests.sandbox.org_client import fresh_client, org_session


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    sb = start_salesforce(tmp_path_factory.mktemp("sfc"))
    yield sb
    sb.stop()


@pytest.fixture
def sf(sandbox: SalesforceSandbox) -> Salesforce:
    return fresh_client(sandbox)


def _fields(sf: Salesforce, sobject: str) -> dict[str, dict]:
    return {f["name"]: f for f in getattr(sf, sobject).describe()["fields"]}


def _children(sf: Salesforce, sobject: str) -> dict[str, tuple[str, str]]:
    return {
        c["relationshipName"]: (c["childSObject"], c["field"])
        for c in getattr(sf, sobject).describe()["childRelationships"]
        if c["relationshipName"]
    }


def _error(exc: pytest.ExceptionInfo) -> dict:
    return exc.value.content[0]


# ---------------------------------------------------------------- describe
def test_describe_has_contract_opportunity_and_cpq_amendment_fields(sf: Salesforce) -> None:
    contract = _fields(sf, "Contract")
    assert contract["EndDate"]["type"] == "date"
    assert not contract["EndDate"]["createable"] and not contract["EndDate"]["updateable"]
    assert contract["ContractTerm"]["type"] == "int"
    assert contract["ContractNumber"]["autoNumber"] is True
    assert [v["value"] for v in contract["Status"]["picklistValues"]] == [
        "Draft",
        "In Approval Process",
        "Activated",
    ]
    assert contract["SBQQ__Evergreen__c"]["type"] == "boolean"
    for name, target, relationship in [
        ("AccountId", "Account", "Account"),
        ("SBQQ__Order__c", "Order", "SBQQ__Order__r"),
        ("SBQQ__RenewalOpportunity__c", "Opportunity", "SBQQ__RenewalOpportunity__r"),
    ]:
        assert (
            contract[name]["referenceTo"] == [target] and contract[name]["relationshipName"] == relationship
        )

    order = _fields(sf, "Order")
    assert (order["ContractId"]["referenceTo"], order["ContractId"]["relationshipName"]) == (
        ["Contract"],
        "Contract",
    )
    assert order["OpportunityId"]["referenceTo"] == ["Opportunity"]
    assert order["SBQQ__Contracted__c"]["type"] == "boolean"
    item = _fields(sf, "OrderItem")
    revised = item["SBQQ__RevisedOrderProduct__c"]
    assert (revised["referenceTo"], revised["relationshipName"]) == (
        ["OrderItem"],
        "SBQQ__RevisedOrderProduct__r",
    )
    assert "Quantity Decrease" in [v["value"] for v in item["SBQQ__ContractAction__c"]["picklistValues"]]
    opportunity = _fields(sf, "Opportunity")
    assert opportunity["SBQQ__AmendedContract__c"]["referenceTo"] == ["Contract"]
    assert opportunity["SBQQ__RenewedContract__c"]["relationshipName"] == "SBQQ__RenewedContract__r"

    subscription = _fields(sf, "SBQQ__Subscription__c")
    assert subscription["SBQQ__RevisedSubscription__c"]["referenceTo"] == ["SBQQ__Subscription__c"]
    assert (
        not subscription["SBQQ__EndDate__c"]["updateable"]
        and subscription["SBQQ__Quantity__c"]["type"] == "double"
    )
    assert _children(sf, "Contract")["SBQQ__Subscriptions__r"] == (
        "SBQQ__Subscription__c",
        "SBQQ__Contract__c",
    )
    assert _fields(sf, "OrderItem")["SBQQ__Subscription__c"]["relationshipName"] == "SBQQ__Subscription__r"
    assert _children(sf, "Contract")["Orders"] == ("Order", "ContractId")
    assert _children(sf, "Account")["Contracts"] == ("Contract", "AccountId")
    assert _children(sf, "Order")["SBQQ__Contracts__r"] == ("Contract", "SBQQ__Order__c")
    assert _children(sf, "OrderItem")["SBQQ__RevisingOrderProducts__r"] == (
        "OrderItem",
        "SBQQ__RevisedOrderProduct__c",
    )
    assert _children(sf, "Contract")["SBQQ__RenewalOpportunities__r"] == (
        "Opportunity",
        "SBQQ__RenewedContract__c",
    )


# ---------------------------------------------------------------- Contract.EndDate and status
def test_contract_end_date_is_computed_from_start_and_term_and_read_only(sf: Salesforce) -> None:
    account = sf.Account.create({"Name": "Initech"})["id"]
    contract = sf.Contract.create({"AccountId": account, "StartDate": "2025-01-01", "ContractTerm": 12})["id"]
    row = sf.Contract.get(contract)
    assert (row["EndDate"], row["Status"], row["StatusCode"]) == ("2025-12-31", "Draft", "Draft")
    assert row["ContractNumber"]

    sf.Contract.update(contract, {"StartDate": "2025-03-31", "ContractTerm": 1})
    assert sf.Contract.get(contract)["EndDate"] == "2025-04-29"  # Apr 30 (Mar 31 + 1 month, clamped) - 1 day
    sf.Contract.update(contract, {"ContractTerm": None})
    assert sf.Contract.get(contract)["EndDate"] is None  # no term (evergreen): no end

    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Contract.update(contract, {"EndDate": "2030-01-01"})
    assert _error(exc)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_contract_is_created_draft_then_activated(sf: Salesforce) -> None:
    account = sf.Account.create({"Name": "Initech"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Contract.create(
            {"AccountId": account, "StartDate": "2025-01-01", "ContractTerm": 12, "Status": "Activated"}
        )
    assert _error(exc)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION" and _error(exc)["fields"] == ["Status"]
    contract = sf.Contract.create({"AccountId": account, "StartDate": "2025-01-01", "ContractTerm": 12})["id"]
    sf.Contract.update(contract, {"Status": "Activated"})
    assert sf.Contract.get(contract)["StatusCode"] == "Activated"


def test_an_order_must_start_within_its_contract(sf: Salesforce) -> None:
    account = sf.Account.create({"Name": "Initech"})["id"]
    contract = sf.Contract.create({"AccountId": account, "StartDate": "2025-01-01", "ContractTerm": 12})["id"]
    base = {"AccountId": account, "Status": "Draft", "ContractId": contract}
    for day, wording in [
        ("2024-12-31", "earlier than its contract's start"),
        ("2026-01-01", "later than its contract's end"),
    ]:
        with pytest.raises(SalesforceMalformedRequest) as exc:
            sf.Order.create({**base, "EffectiveDate": day})
        assert _error(exc)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION" and _error(exc)["fields"] == [
            "EffectiveDate"
        ]
        assert wording in _error(exc)["message"]
    order = sf.Order.create({**base, "EffectiveDate": "2025-12-31"})["id"]
    with pytest.raises(SalesforceMalformedRequest):
        sf.Order.update(order, {"EffectiveDate": "2026-02-01"})
    assert sf.Order.get(order)["ContractId"] == contract


# ---------------------------------------------------------------- queries the connector needs
@pytest.fixture
def history(sandbox: SalesforceSandbox, sf: Salesforce) -> ContractHistory:
    """10 seats and support from 2025-01-01, +5 seats from April, renewed for 2026."""
    account = sandbox.org.insert("Account", {"Name": "Globex"})
    h = create_contract(
        sandbox.org, account, date(2025, 1, 1), [Line("Seats", 10, 20.0), Line("Support", 1, 100.0)]
    )
    amend(sandbox.org, h, date(2025, 4, 1), {"Seats": 5})
    renew(sandbox.org, h, prices={"Seats": 22.0})
    return h


def test_parent_paths_from_orders_and_contracts(sf: Salesforce, history: ContractHistory) -> None:
    amendment = history.amendments[0]
    rows = sf.query(
        "SELECT Id, Type, Contract.StartDate, Contract.EndDate, Contract.SBQQ__Order__r.EffectiveDate "
        f"FROM Order WHERE ContractId = '{history.contract_id}' ORDER BY EffectiveDate"
    )["records"]
    assert [r["Type"] for r in rows] == ["New", "Amendment"]
    assert rows[1]["Id"] == amendment.id
    assert rows[1]["Contract"]["StartDate"] == "2025-01-01" and rows[1]["Contract"]["EndDate"] == "2025-12-31"
    assert rows[1]["Contract"]["SBQQ__Order__r"]["EffectiveDate"] == "2025-01-01"

    renewal = sf.query(
        "SELECT Id, Opportunity.SBQQ__RenewedContract__c, Contract.StartDate FROM Order "
        "WHERE Type IN ('Amendment','Renewal') AND OpportunityId != null ORDER BY EffectiveDate"
    )["records"]
    assert [r["Opportunity"]["SBQQ__RenewedContract__c"] for r in renewal] == [None, history.contract_id]
    assert renewal[1]["Contract"]["StartDate"] == "2026-01-01"
    contract = sf.query(
        f"SELECT SBQQ__Order__r.Type, SBQQ__RenewalOpportunity__r.SBQQ__RenewedContract__c FROM Contract "
        f"WHERE Id = '{history.contract_id}'"
    )["records"][0]
    assert contract["SBQQ__Order__r"]["Type"] == "New"
    assert contract["SBQQ__RenewalOpportunity__r"]["SBQQ__RenewedContract__c"] == history.contract_id


def test_child_subqueries_and_revised_lines(sf: Salesforce, history: ContractHistory) -> None:
    renewal = history.renewals[0]
    rows = sf.query(
        "SELECT Id, (SELECT Id, Type FROM Orders ORDER BY EffectiveDate) FROM Contract "
        f"WHERE Id IN ('{history.contract_id}', '{renewal.contract_id}') ORDER BY StartDate"
    )["records"]
    assert [[o["Type"] for o in r["Orders"]["records"]] for r in rows] == [["New", "Amendment"], ["Renewal"]]

    lines = sf.query(
        "SELECT Quantity, ServiceDate, EndDate, SBQQ__RevisedOrderProduct__r.Quantity, "
        "SBQQ__RevisedOrderProduct__r.Order.Type FROM OrderItem "
        f"WHERE OrderId = '{history.amendments[0].id}'"
    )["records"]
    assert len(lines) == 1
    (line,) = lines
    assert (line["Quantity"], line["ServiceDate"], line["EndDate"]) == (5.0, "2025-04-01", "2025-12-31")
    assert line["SBQQ__RevisedOrderProduct__r"]["Quantity"] == 10.0
    assert line["SBQQ__RevisedOrderProduct__r"]["Order"]["Type"] == "New"
    seats = history.originals["Seats"]
    revising = sf.query(
        f"SELECT (SELECT Quantity FROM SBQQ__RevisingOrderProducts__r) FROM OrderItem WHERE Id = '{seats}'"
    )["records"][0]
    assert [r["Quantity"] for r in revising["SBQQ__RevisingOrderProducts__r"]["records"]] == [5.0]
    in_contracts = sf.query(
        f"SELECT Id FROM Order WHERE ContractId IN ('{history.contract_id}', '{renewal.contract_id}')"
    )["totalSize"]
    assert in_contracts == 3


def test_a_contract_its_orders_and_their_lines_in_one_query_from_api_58(
    sandbox: SalesforceSandbox, sf: Salesforce, history: ContractHistory
) -> None:
    soql = (
        "SELECT Id, (SELECT Type, (SELECT Quantity FROM OrderItems ORDER BY Quantity) FROM Orders "
        f"ORDER BY EffectiveDate) FROM Contract WHERE Id = '{history.contract_id}'"
    )
    (row,) = sf.query(soql)["records"]
    orders = row["Orders"]["records"]
    assert [(o["Type"], [i["Quantity"] for i in o["OrderItems"]["records"]]) for o in orders] == [
        ("New", [1.0, 10.0]),
        ("Amendment", [5.0]),
    ]
    old = org_session(sandbox).get(
        f"{sandbox.url}/services/data/v57.0/query",
        params={"q": soql},
        headers={"Authorization": f"Bearer {sf.session_id}"},
    )
    assert old.status_code == 400 and old.json()[0]["errorCode"] == "MALFORMED_QUERY"


def test_unknown_relationship_names_are_refused_as_salesforce_does(
    sf: Salesforce, history: ContractHistory
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query("SELECT SBQQ__RevisedOrderProduct__c.Quantity FROM OrderItem")
    assert _error(exc)["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query("SELECT Id, (SELECT Id FROM RevisingOrderProducts) FROM OrderItem")
    assert _error(exc)["errorCode"] == "INVALID_TYPE"


# ---------------------------------------------------------------- Change Data Capture
def test_order_change_events_carry_the_contract_fields(
    sandbox: SalesforceSandbox, history: ContractHistory
) -> None:
    topic = all_topics(sandbox.org.schema)["/data/OrderChangeEvent"]
    assert {"ContractId", "OpportunityId", "SBQQ__Contracted__c"} <= set(topic.fields)
    assert (
        "SBQQ__RevisedOrderProduct__c" in all_topics(sandbox.org.schema)["/data/OrderItemChangeEvent"].fields
    )
    assert "/data/ContractChangeEvent" in all_topics(sandbox.org.schema)
    contracted = [
        c
        for c in sandbox.org.changes()
        if c["object"] == "Order"
        and c["record_ids"] == [history.first_order.id]
        and "ContractId" in c["changed_fields"]
    ]
    assert len(contracted) == 1 and "SBQQ__Contracted__c" in contracted[0]["changed_fields"]


# ---------------------------------------------------------------- the admin seed
def test_admin_seed_writes_contract_histories_only_when_asked(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    plain = org_session(sandbox).post(
        f"{sandbox.url}/_sandbox/seed", json={"accounts": 5, "orders": 5, "seed": 1}
    )
    assert (
        "Contract" not in plain.json()["counts"]
        and sf.query("SELECT COUNT() FROM Contract")["totalSize"] == 0
    )
    org_session(sandbox).post(f"{sandbox.url}/_sandbox/reset")
    body = {"accounts": 0, "orders": 0, "seed": 1, "contracts": 6, "today": "2026-06-15"}
    seeded = org_session(sandbox).post(f"{sandbox.url}/_sandbox/seed", json=body).json()
    assert len(seeded["contracts"]) == 6
    assert seeded["counts"]["Contract"] == sf.query("SELECT COUNT() FROM Contract")["totalSize"] >= 6
    first = sf.query(f"SELECT SBQQ__Order__r.Type FROM Contract WHERE Id = '{seeded['contracts'][0]}'")[
        "records"
    ]
    assert first[0]["SBQQ__Order__r"]["Type"] == "New"


# ---------------------------------------------------------------- MDQ segments
def test_an_mdq_line_is_one_order_product_per_segment_with_cpq_segment_fields(
    sf: Salesforce, sandbox: SalesforceSandbox
) -> None:
    account = sandbox.org.insert("Account", {"Name": "Ramp Co"})
    ramp = Line("Ramp Seats", 0, 0.0, "Annual", segments=((10, 120.0), (20, 120.0), (30, 100.0)))
    h = create_contract(sandbox.org, account, date(2026, 1, 1), [ramp], term_months=36)
    fields = _fields(sf, "OrderItem")
    assert fields["SBQQ__SegmentKey__c"]["length"] == 30
    assert [v["value"] for v in fields["SBQQ__DimensionType__c"]["picklistValues"]] == [
        "Year", "Quarter", "Month", "Custom", "One-time",
    ]  # fmt: skip
    rows = sf.query(
        "SELECT Quantity, UnitPrice, ServiceDate, EndDate, SBQQ__SegmentKey__c, SBQQ__SegmentIndex__c, "
        f"SBQQ__SegmentLabel__c, SBQQ__DimensionType__c FROM OrderItem WHERE OrderId = '{h.first_order.id}' "
        "ORDER BY SBQQ__SegmentIndex__c"
    )["records"]
    assert [(r["Quantity"], r["UnitPrice"], r["ServiceDate"], r["EndDate"]) for r in rows] == [
        (10, 120.0, "2026-01-01", "2026-12-31"),
        (20, 120.0, "2027-01-01", "2027-12-31"),
        (30, 100.0, "2028-01-01", "2028-12-31"),
    ]
    assert len({r["SBQQ__SegmentKey__c"] for r in rows}) == 1
    assert [r["SBQQ__SegmentLabel__c"] for r in rows] == ["Year 1", "Year 2", "Year 3"]
    assert {r["SBQQ__DimensionType__c"] for r in rows} == {"Year"}
    assert [p.items["Ramp Seats"].quantity for p in h.phases()] == [10, 20, 30]

"""Queries against the fake org through simple-salesforce: pagination with nextRecordsUrl,
batchSize, server-side cursors, queryAll seeing deleted and merged rows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connector.sandbox.salesforce.server import SalesforceSandbox, start_salesforce
from tests.sandbox.org_client import fresh_client


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    sb = start_salesforce(tmp_path_factory.mktemp("sfq"))
    yield sb
    sb.stop()


@pytest.fixture
def sf(sandbox: SalesforceSandbox) -> Salesforce:
    return fresh_client(sandbox)


def _bulk_accounts(sandbox: SalesforceSandbox, n: int) -> list[str]:
    ids = []
    for start in range(0, n, 200):
        results = sandbox.org.save_many(
            [("Account", {"Name": f"Acct {i:05d}"}) for i in range(start, min(n, start + 200))],
            create=True,
            all_or_none=True,
        )
        ids += [r.id for r in results]
    return ids


def test_query_pages_with_next_records_url(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    _bulk_accounts(sandbox, 4500)
    first = sf.query("SELECT Id, Name FROM Account ORDER BY Name")
    assert first["totalSize"] == 4500 and first["done"] is False and len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v61.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-2000")
    assert first["records"][0]["attributes"]["type"] == "Account"
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert len(second["records"]) == 2000 and second["records"][0]["Name"] == "Acct 02000"
    third = sf.query_more(second["nextRecordsUrl"], identifier_is_url=True)
    assert third["done"] is True and "nextRecordsUrl" not in third and len(third["records"]) == 500
    everything = sf.query_all("SELECT Id FROM Account")
    assert everything["totalSize"] == 4500 and len(everything["records"]) == 4500


def test_cursor_is_a_snapshot(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    _bulk_accounts(sandbox, 2100)
    first = sf.query("SELECT Id, Name FROM Account ORDER BY Name")
    sandbox.org.insert("Account", {"Name": "Acct 00000 new"})
    rest = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert [r["Name"] for r in rest["records"]][:1] == ["Acct 02000"] and len(rest["records"]) == 100


def test_batch_size_header(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    _bulk_accounts(sandbox, 450)
    sf.headers["Sforce-Query-Options"] = "batchSize=200"
    try:
        page = sf.query("SELECT Id FROM Account")
        assert len(page["records"]) == 200 and page["nextRecordsUrl"].endswith("-200")
        sf.headers["Sforce-Query-Options"] = "batchSize=5"  # below the minimum: 200
        assert len(sf.query("SELECT Id FROM Account")["records"]) == 200
    finally:
        sf.headers.pop("Sforce-Query-Options", None)


def test_invalid_locator(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query_more("/services/data/v61.0/query/01gXXXXXXXXXXXXXXX-2000", identifier_is_url=True)
    assert exc.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_query_all_sees_deleted_and_merged(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    master = sf.Account.create({"Name": "Master"})["id"]
    loser = sf.Account.create({"Name": "Loser"})["id"]
    gone = sf.Account.create({"Name": "Gone"})["id"]
    sf.Account.delete(gone)
    sandbox.org.merge(master, [loser])
    live = {r["Id"] for r in sf.query("SELECT Id FROM Account")["records"]}
    assert live == {master}
    rows = sf.query_all("SELECT Id, IsDeleted, MasterRecordId FROM Account", include_deleted=True)["records"]
    by_id = {r["Id"]: r for r in rows}
    assert by_id[loser]["IsDeleted"] is True and by_id[loser]["MasterRecordId"] == master
    assert by_id[gone]["IsDeleted"] is True and by_id[gone]["MasterRecordId"] is None


def test_query_by_id_and_relationships(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    acc = sf.Account.create({"Name": "Parent"})["id"]
    sf.Contact.create({"LastName": "Kid", "AccountId": acc})
    rows = sf.query(f"SELECT Id, Name, (SELECT LastName FROM Contacts) FROM Account WHERE Id = '{acc}'")[
        "records"
    ]
    assert rows[0]["Contacts"]["records"][0]["LastName"] == "Kid"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query("SELECT Nope FROM Account")
    assert exc.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_modstamp_cursor(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    a = sf.Account.create({"Name": "A"})["id"]
    stamp = sf.Account.get(a)["SystemModstamp"]
    b = sf.Account.create({"Name": "B"})["id"]
    rows = sf.query(f"SELECT Id FROM Account WHERE SystemModstamp > {stamp}")["records"]
    assert [r["Id"] for r in rows] == [b]

"""Bulk API 2.0 query jobs in the fake org, through the connector's Salesforce client and raw HTTP."""

from __future__ import annotations

import pytest
import requests

from connector.salesforce.bulk import BulkQuery
from connector.salesforce.client import SalesforceClient
from connector.settings import load_settings

SOQL = (
    "SELECT Id, Name, Billing_Entity__c, Parent.Name, Stripe_Last_Synced__c, SystemModstamp "
    "FROM Account ORDER BY Id"
)


@pytest.fixture
def client(sandbox):
    env = {k.removeprefix("CPQ2STRIPE_").lower(): v for k, v in sandbox.env.items()}
    return SalesforceClient(load_settings(**env))


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "attributes"}
    return value


def test_bulk_rows_equal_rest_rows_across_result_sets(sandbox, client):
    sandbox.sf_admin.seed(accounts=25, orders=0, seed=2)
    rest = client.query_all(SOQL)
    bulk = BulkQuery(client, max_records=7)
    pages = list(bulk.pages(SOQL))
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    assert [_strip(r) for p in pages for r in p] == [_strip(r) for r in rest]
    assert bulk.calls == {"jobs": 1, "polls": 2, "result_sets": 4}
    counts = sandbox.sf_admin.counters()["counts"]
    assert counts["POST /services/data/{version}/jobs/query"] == 1
    assert counts["DELETE /services/data/{version}/jobs/query/{job_id}"] == 1


def test_results_are_csv_with_locator_headers(sandbox, client):
    sandbox.sf_admin.seed(accounts=3, orders=0, seed=2)
    token = client.token
    base = f"{token.instance_url}/services/data/v61.0/jobs/query"
    s = requests.Session()
    s.trust_env = False
    s.verify = str(sandbox.ca_file)
    s.headers["Authorization"] = f"Bearer {token.access_token.get_secret_value()}"
    job = s.post(
        base, json={"operation": "query", "query": "SELECT Id, Name, Parent.Name FROM Account"}
    ).json()
    assert job["state"] == "UploadComplete" and job["object"] == "Account"
    early = s.get(f"{base}/{job['id']}/results")
    assert early.status_code == 400 and early.json()[0]["errorCode"] == "JOB_NOT_COMPLETE"
    assert s.get(f"{base}/{job['id']}").json()["state"] == "InProgress"
    assert s.get(f"{base}/{job['id']}").json()["state"] == "JobComplete"
    first = s.get(f"{base}/{job['id']}/results", params={"maxRecords": 2})
    assert first.headers["Content-Type"].startswith("text/csv")
    assert first.headers["Sforce-NumberOfRecords"] == "2"
    lines = first.text.splitlines()
    assert lines[0] == '"Id","Name","Parent.Name"'
    assert lines[1].endswith(',""')  # null parent: an empty value
    last = s.get(
        f"{base}/{job['id']}/results", params={"maxRecords": 2, "locator": first.headers["Sforce-Locator"]}
    )
    assert last.headers["Sforce-Locator"] == "null" and last.headers["Sforce-NumberOfRecords"] == "1"
    bad = s.post(base, json={"operation": "query", "query": "SELECT COUNT() FROM Account"})
    assert bad.status_code == 400
    assert s.delete(f"{base}/{job['id']}").status_code == 204

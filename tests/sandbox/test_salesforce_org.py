"""The fake org through the real simple-salesforce client: OAuth, CRUD, validation, composite,
merge, faults, counters and the change log. Query tests live in test_salesforce_query.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from connector.sandbox.salesforce.ids import checksum_suffix, is_valid_id, make_id, new_id, to_18
from connector.sandbox.salesforce.org import ADMIN_USER_ID, INTEGRATION_USER_ID
from connector.sandbox.salesforce.server import SalesforceSandbox, start_salesforce


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    sb = start_salesforce(tmp_path_factory.mktemp("sf"))
    yield sb
    sb.stop()


@pytest.fixture
def org(sandbox: SalesforceSandbox) -> SalesforceSandbox:
    admin(sandbox, "POST", "reset")
    return sandbox


def http(sandbox: SalesforceSandbox) -> requests.Session:
    s = requests.Session()
    s.verify = str(sandbox.ca_file)
    s.trust_env = False
    return s


def admin(sandbox: SalesforceSandbox, method: str, path: str, **kwargs: object) -> requests.Response:
    return http(sandbox).request(method, f"{sandbox.url}/_sandbox/{path}", **kwargs)  # type: ignore[arg-type]


def token(
    sandbox: SalesforceSandbox, client_id: str = "sandbox-client", secret: str = "sandbox-secret"
) -> dict:
    resp = http(sandbox).post(
        f"{sandbox.url}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    return {"status": resp.status_code, **resp.json()}


def client(
    sandbox: SalesforceSandbox, client_id: str = "sandbox-client", secret: str = "sandbox-secret"
) -> Salesforce:
    tok = token(sandbox, client_id, secret)
    return Salesforce(
        instance_url=tok["instance_url"],
        session_id=tok["access_token"],
        session=http(sandbox),
        version="61.0",
    )


def jwt_assertion(sandbox: SalesforceSandbox, **overrides: object) -> str:
    claims = {
        "iss": "sandbox-client",
        "sub": "integration@sandbox.example",
        "aud": sandbox.url,
        "exp": int(time.time()) + 300,
    }
    key = overrides.pop("_key", None) or sandbox.jwt_private_key_file.read_bytes()
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="RS256")


def jwt_token(sandbox: SalesforceSandbox, assertion: str) -> requests.Response:
    return http(sandbox).post(
        f"{sandbox.url}/services/oauth2/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
    )


def error_of(exc: pytest.ExceptionInfo) -> dict:
    return exc.value.content[0]


# ---------------------------------------------------------------- ids
def test_ids_have_prefix_and_case_safe_suffix() -> None:
    assert to_18("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert checksum_suffix("001A0000006Vm9r") == "IAC"
    seeded = make_id("001", 42)
    assert len(seeded) == 18 and seeded.startswith("001") and is_valid_id(seeded)
    assert make_id("001", 42) == seeded
    assert new_id("801") != new_id("801")
    assert not is_valid_id(seeded[:15] + "ZZZ")


# ---------------------------------------------------------------- OAuth
def test_client_credentials_success_shape(org: SalesforceSandbox) -> None:
    tok = token(org)
    assert tok["status"] == 200
    assert tok["token_type"] == "Bearer" and tok["instance_url"] == org.url
    assert tok["id"].endswith(INTEGRATION_USER_ID) and "/id/00D" in tok["id"]
    assert tok["issued_at"].isdigit() and tok["signature"] and tok["scope"]


def test_client_credentials_errors(org: SalesforceSandbox) -> None:
    bad = token(org, "sandbox-client", "nope")
    assert bad == {
        "status": 400,
        "error": "invalid_client",
        "error_description": "invalid client credentials",
    }
    unknown = token(org, "who", "x")
    assert unknown["status"] == 400 and unknown["error"] == "invalid_client_id"


def test_jwt_bearer_flow_and_errors(org: SalesforceSandbox) -> None:
    ok = jwt_token(org, jwt_assertion(org))
    assert ok.status_code == 200 and ok.json()["id"].endswith(INTEGRATION_USER_ID)
    assert jwt_token(org, jwt_assertion(org, aud="https://login.salesforce.com")).status_code == 200
    wrong_aud = jwt_token(org, jwt_assertion(org, aud="https://example.com"))
    assert wrong_aud.status_code == 400
    assert wrong_aud.json() == {"error": "invalid_grant", "error_description": "audience is invalid"}
    expired = jwt_token(org, jwt_assertion(org, exp=int(time.time()) - 10))
    assert expired.json()["error"] == "invalid_grant"
    assert expired.json()["error_description"] == "expired authorization code"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    forged = jwt_token(org, jwt_assertion(org, _key=other))
    assert forged.status_code == 400 and forged.json()["error"] == "invalid_grant"
    unknown_user = jwt_token(org, jwt_assertion(org, sub="nobody@example.com"))
    assert unknown_user.json()["error"] == "invalid_grant"
    assert oct(org.jwt_private_key_file.stat().st_mode & 0o777) == "0o600"


def test_missing_and_expired_tokens_answer_invalid_session(org: SalesforceSandbox) -> None:
    resp = http(org).get(f"{org.url}/services/data/v61.0/limits", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401
    assert resp.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    sf = client(org)
    sf.limits()
    admin(org, "POST", "expire-tokens")
    with pytest.raises(SalesforceExpiredSession):
        sf.limits()


def test_token_ttl(tmp_path: Path) -> None:
    sb = start_salesforce(tmp_path, token_ttl_seconds=0)
    try:
        sf = client(sb)
        with pytest.raises(SalesforceExpiredSession):
            sf.limits()
    finally:
        sb.stop()


# ---------------------------------------------------------------- REST basics
def test_versions_limits_and_limit_header(org: SalesforceSandbox) -> None:
    versions = http(org).get(f"{org.url}/services/data/").json()
    assert {"label": "Summer '24", "url": "/services/data/v61.0", "version": "61.0"} in versions
    sf = client(org)
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] == 15000
    tok = token(org)["access_token"]
    resp = http(org).get(f"{org.url}/services/data/v61.0/limits", headers={"Authorization": f"Bearer {tok}"})
    assert resp.headers["Sforce-Limit-Info"].startswith("api-usage=")
    assert resp.headers["Sforce-Limit-Info"].endswith("/15000")
    bad = http(org).get(f"{org.url}/services/data/v20.0/limits", headers={"Authorization": f"Bearer {tok}"})
    assert bad.status_code == 404 and bad.json()[0]["errorCode"] == "NOT_FOUND"


def test_crud_round_trip(org: SalesforceSandbox) -> None:
    sf = client(org)
    created = sf.Account.create({"Name": "Acme", "Industry": "Banking"})
    assert created["success"] and created["errors"] == [] and created["id"].startswith("001")
    acc = sf.Account.get(created["id"])
    assert acc["attributes"]["type"] == "Account" and acc["Name"] == "Acme"
    assert acc["CurrencyIsoCode"] == "USD" and acc["Billing_Entity__c"] is True
    assert acc["LastModifiedById"] == INTEGRATION_USER_ID
    before = acc["SystemModstamp"]
    assert sf.Account.update(created["id"], {"Phone": "+1 555 0100"}) == 204
    after = sf.Account.get(created["id"])
    assert after["Phone"] == "+1 555 0100" and after["SystemModstamp"] > before
    assert sf.Account.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Account.get(created["id"])
    assert error_of(exc)["errorCode"] == "ENTITY_IS_DELETED"
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Account.get(make_id("001", 999_999))
    assert error_of(exc)["errorCode"] == "NOT_FOUND"


def test_admin_edits_stamp_admin_user(org: SalesforceSandbox) -> None:
    sf = client(org)
    acc = sf.Account.create({"Name": "Human"})["id"]
    resp = admin(org, "PATCH", f"records/Account/{acc}", json={"Website": "https://example.com"})
    assert resp.status_code == 204
    assert sf.Account.get(acc)["LastModifiedById"] == ADMIN_USER_ID
    made = admin(org, "POST", "records/Account", json={"Name": "By admin"})
    assert made.status_code == 201 and sf.Account.get(made.json()["id"])["CreatedById"] == ADMIN_USER_ID


def test_auto_numbers_and_pricebook_entry_name(org: SalesforceSandbox) -> None:
    sf = client(org)
    acc = sf.Account.create({"Name": "A"})["id"]
    product = sf.Product2.create({"Name": "Widget"})["id"]
    book = sf.Pricebook2.create({"Name": "Std"})["id"]
    entry = sf.PricebookEntry.create({"Pricebook2Id": book, "Product2Id": product, "UnitPrice": 10})["id"]
    assert sf.PricebookEntry.get(entry)["Name"] == "Widget"
    o1 = sf.Order.create({"AccountId": acc, "EffectiveDate": "2024-01-01"})["id"]
    o2 = sf.Order.create({"AccountId": acc, "EffectiveDate": "2024-01-01"})["id"]
    n1, n2 = sf.Order.get(o1)["OrderNumber"], sf.Order.get(o2)["OrderNumber"]
    assert len(n1) == 8 and int(n2) == int(n1) + 1
    item = sf.OrderItem.create({"OrderId": o1, "PricebookEntryId": entry, "Quantity": 2, "UnitPrice": 9.999})
    got = sf.OrderItem.get(item["id"])
    assert got["UnitPrice"] == 10.0 and len(got["OrderItemNumber"]) == 10


def test_describe_and_describe_global(org: SalesforceSandbox) -> None:
    sf = client(org)
    d = sf.Account.describe()
    assert d["name"] == "Account" and d["keyPrefix"] == "001"
    fields = {f["name"]: f for f in d["fields"]}
    assert fields["Name"]["length"] == 255 and fields["Name"]["nillable"] is False
    assert fields["Stripe_Customer_ID__c"]["custom"] is True and fields["Stripe_Customer_ID__c"]["externalId"]
    status = fields["Stripe_Sync_Status__c"]
    assert [p["value"] for p in status["picklistValues"]] == ["Pending", "Synced", "Failed", "Refused"]
    assert (
        fields["ParentId"]["referenceTo"] == ["Account"]
        and fields["ParentId"]["relationshipName"] == "Parent"
    )
    assert fields["CreatedDate"]["createable"] is False
    rels = {r["relationshipName"] for r in d["childRelationships"]}
    assert {"Contacts", "Orders", "ChildAccounts"} <= rels
    names = {s["name"] for s in sf.describe()["sobjects"]}
    assert {"Account", "Order", "OrderItem", "Product2", "PricebookEntry"} <= names


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("values", "code", "fields"),
    [
        ({"Name": "a", "Bogus__c": 1}, "INVALID_FIELD", []),
        (
            {"Name": "a", "CreatedDate": "2024-01-01T00:00:00Z"},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            ["CreatedDate"],
        ),
        ({"Name": "x" * 256}, "STRING_TOO_LONG", ["Name"]),
        (
            {"Name": "a", "CurrencyIsoCode": "XXX"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            ["CurrencyIsoCode"],
        ),
        ({"Phone": "1"}, "REQUIRED_FIELD_MISSING", ["Name"]),
        ({"Name": "a", "Billing_Email__c": "not-an-email"}, "INVALID_EMAIL_ADDRESS", ["Billing_Email__c"]),
        ({"Name": "a", "Stripe_Last_Synced__c": "yesterday"}, "JSON_PARSER_ERROR", ["Stripe_Last_Synced__c"]),
        ({"Name": "a", "Billing_Entity__c": "maybe"}, "JSON_PARSER_ERROR", ["Billing_Entity__c"]),
        ({"Name": "a", "ParentId": "001xyz"}, "MALFORMED_ID", ["ParentId"]),
        ({"Name": "a", "ParentId": make_id("003", 5)}, "FIELD_INTEGRITY_EXCEPTION", ["ParentId"]),
        ({"Name": "a", "ParentId": make_id("001", 5)}, "INVALID_CROSS_REFERENCE_KEY", ["ParentId"]),
        ({"Id": make_id("001", 5), "Name": "a"}, "INVALID_FIELD", []),
    ],
)
def test_validation_errors(org: SalesforceSandbox, values: dict, code: str, fields: list) -> None:
    sf = client(org)
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Account.create(values)
    err = error_of(exc)
    assert exc.value.status == 400 and err["errorCode"] == code
    assert err.get("fields", []) == fields


def test_validation_messages_follow_salesforce(org: SalesforceSandbox) -> None:
    sf = client(org)
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Account.create({"Name": "a", "Bogus__c": 1})
    assert error_of(exc)["message"] == "No such column 'Bogus__c' on sobject of type Account"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Account.create({"Name": "y" * 300})
    assert error_of(exc)["message"].startswith("Account Name: data value too large: ")
    assert error_of(exc)["message"].endswith("(max length=255)")
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Order.create({"AccountId": sf.Account.create({"Name": "b"})["id"], "EffectiveDate": "2024-02-30"})
    assert "Cannot deserialize instance of date" in error_of(exc)["message"]
    order_item = sf.OrderItem.describe()
    assert order_item["name"] == "OrderItem"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Product2.create({"Name": "p", "SBQQ__SubscriptionTerm__c": "twelve"})
    assert error_of(exc)["errorCode"] == "JSON_PARSER_ERROR"


def test_malformed_json_and_unknown_object(org: SalesforceSandbox) -> None:
    tok = token(org)["access_token"]
    headers = {"Authorization": f"Bearer {tok}", "Content-Type": "application/json"}
    resp = http(org).post(f"{org.url}/services/data/v61.0/sobjects/Account", data=b"{nope", headers=headers)
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    resp = http(org).get(f"{org.url}/services/data/v61.0/sobjects/Nope__c/describe", headers=headers)
    assert resp.status_code == 404 and resp.json()[0]["errorCode"] == "NOT_FOUND"


def test_update_validation_and_deleted_record(org: SalesforceSandbox) -> None:
    sf = client(org)
    acc = sf.Account.create({"Name": "a"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Account.update(acc, {"Name": None})
    assert error_of(exc)["errorCode"] == "REQUIRED_FIELD_MISSING"
    sf.Account.delete(acc)
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Account.update(acc, {"Phone": "1"})
    assert error_of(exc)["errorCode"] == "ENTITY_IS_DELETED"


# ---------------------------------------------------------------- composite
def composite(sandbox: SalesforceSandbox, method: str, payload: dict) -> requests.Response:
    tok = token(sandbox)["access_token"]
    return http(sandbox).request(
        method,
        f"{sandbox.url}/services/data/v61.0/composite/sobjects",
        json=payload,
        headers={"Authorization": f"Bearer {tok}"},
    )


def test_composite_create_and_update_partial_success(org: SalesforceSandbox) -> None:
    records = [{"attributes": {"type": "Account"}, "Name": f"A{i}"} for i in range(3)]
    records[1] = {"attributes": {"type": "Account"}, "Phone": "1"}
    resp = composite(org, "POST", {"allOrNone": False, "records": records})
    results = resp.json()
    assert resp.status_code == 200 and [r["success"] for r in results] == [True, False, True]
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    ids = [results[0]["id"], results[2]["id"]]
    upd = [{"attributes": {"type": "Account"}, "id": i, "Stripe_Sync_Status__c": "Synced"} for i in ids]
    upd.append({"attributes": {"type": "Account"}, "id": ids[0], "Stripe_Sync_Status__c": "Bogus"})
    results = composite(org, "PATCH", {"allOrNone": False, "records": upd}).json()
    assert [r["success"] for r in results] == [True, True, False]
    assert results[2]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert org.org.get("Account", ids[1])["Stripe_Sync_Status__c"] == "Synced"


def test_composite_all_or_none_rolls_back(org: SalesforceSandbox) -> None:
    sf = client(org)
    acc = sf.Account.create({"Name": "keep"})["id"]
    changes_before = len(admin(org, "GET", "changes").json())
    upd = [
        {"attributes": {"type": "Account"}, "id": acc, "Name": "changed"},
        {"attributes": {"type": "Account"}, "id": acc, "CurrencyIsoCode": "ZZZ"},
    ]
    results = composite(org, "PATCH", {"allOrNone": True, "records": upd}).json()
    assert results[0]["success"] is False
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert sf.Account.get(acc)["Name"] == "keep"
    assert len(admin(org, "GET", "changes").json()) == changes_before
    created = composite(
        org,
        "POST",
        {"allOrNone": True, "records": [{"attributes": {"type": "Account"}, "Name": "n1"},
                                          {"attributes": {"type": "Account"}}]},
    ).json()  # fmt: skip
    assert [r["success"] for r in created] == [False, False]
    assert org.org.count("Account") == 1


def test_composite_record_limit(org: SalesforceSandbox) -> None:
    records = [{"attributes": {"type": "Account"}, "Name": f"A{i}"} for i in range(201)]
    resp = composite(org, "POST", {"allOrNone": False, "records": records})
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    resp = composite(org, "POST", {"allOrNone": False, "records": records[:200]})
    assert resp.status_code == 200 and all(r["success"] for r in resp.json())


# ---------------------------------------------------------------- merge
def test_merge_reparents_and_hides_losers(org: SalesforceSandbox) -> None:
    sf = client(org)
    master = sf.Account.create({"Name": "Master", "Phone": "1"})["id"]
    loser = sf.Account.create({"Name": "Loser", "Phone": "2", "Website": "https://l.example"})["id"]
    child = sf.Account.create({"Name": "Sub", "ParentId": loser})["id"]
    contact = sf.Contact.create({"LastName": "C", "AccountId": loser})["id"]
    stamp = sf.Contact.get(contact)["SystemModstamp"]
    resp = admin(
        org, "POST", "merge", json={"master_id": master, "loser_ids": [loser], "keep": {"Phone": loser}}
    )
    assert resp.status_code == 200 and resp.json()["mergedRecordIds"] == [loser]
    got = sf.Account.get(master)
    assert got["Phone"] == "2" and got["Name"] == "Master"
    moved = sf.Contact.get(contact)
    assert moved["AccountId"] == master and moved["SystemModstamp"] > stamp
    assert sf.Account.get(child)["ParentId"] == master
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Account.get(loser)
    assert error_of(exc)["errorCode"] == "ENTITY_IS_DELETED"
    row = org.org.get("Account", loser)
    assert row["IsDeleted"] is True and row["MasterRecordId"] == master
    bad = admin(org, "POST", "merge", json={"master_id": master, "loser_ids": []})
    assert bad.status_code == 400


# ---------------------------------------------------------------- faults, counters, changes
def test_faults_are_deterministic(org: SalesforceSandbox) -> None:
    def run() -> list[int]:
        admin(
            org, "POST", "faults", json={"rate": 0.5, "kinds": ["503", "REQUEST_LIMIT_EXCEEDED"], "seed": 7}
        )
        tok = token(org)["access_token"]
        s = http(org)
        return [
            s.get(
                f"{org.url}/services/data/v61.0/limits", headers={"Authorization": f"Bearer {tok}"}
            ).status_code
            for _ in range(30)
        ]

    first, second = run(), run()
    assert first == second and {503, 403, 200} <= set(first)
    sf = client(org)
    admin(org, "POST", "faults", json={"rate": 1.0, "kinds": ["UNABLE_TO_LOCK_ROW"], "seed": 1})
    sf.limits()  # reads never get row-lock errors
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Account.create({"Name": "locked"})
    assert error_of(exc)["errorCode"] == "UNABLE_TO_LOCK_ROW"
    admin(org, "POST", "faults", json={"rate": 1.0, "kinds": ["503"], "seed": 1})
    with pytest.raises(SalesforceGeneralError):
        sf.limits()
    admin(org, "POST", "faults", json={"rate": 0})


def test_counters(org: SalesforceSandbox) -> None:
    admin(org, "POST", "counters/reset")
    sf = client(org)
    sf.Account.create({"Name": "a"})
    sf.limits()
    counts = admin(org, "GET", "counters").json()["counts"]
    creates = {
        k: v for k, v in counts.items() if k.startswith("POST /services/data/{version}/sobjects/{sobject}")
    }
    assert sum(creates.values()) == 1
    assert counts["GET /services/data/{version}/limits"] == 1
    assert not any(k.startswith("GET /_sandbox") for k in counts)


def test_change_log(org: SalesforceSandbox) -> None:
    sf = client(org)
    acc = sf.Account.create({"Name": "a"})["id"]
    sf.Account.update(acc, {"Phone": "9"})
    sf.Account.delete(acc)
    changes = admin(org, "GET", "changes").json()
    mine = [c for c in changes if acc in c["record_ids"]]
    assert [c["change_type"] for c in mine] == ["CREATE", "UPDATE", "DELETE"]
    assert "Phone" in mine[1]["changed_fields"] and mine[1]["user_id"] == INTEGRATION_USER_ID
    replay = [c["replay_id"] for c in changes]
    assert replay == sorted(replay) and len(set(replay)) == len(replay)
    after = admin(org, "GET", f"changes?after={mine[1]['replay_id']}").json()
    assert [c["change_type"] for c in after] == ["DELETE"]
    assert mine[0]["commit_timestamp"] < mine[1]["commit_timestamp"] < mine[2]["commit_timestamp"]


def test_seed_endpoint_loads_generated_org(org: SalesforceSandbox) -> None:
    resp = admin(org, "POST", "seed", json={"accounts": 5, "orders": 5, "seed": 1})
    assert resp.status_code == 200, resp.text
    assert org.org.count("Account") >= 5 and org.org.count("Order") >= 1

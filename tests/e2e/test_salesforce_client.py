"""The connector's Salesforce layer against the fake org: OAuth flows, paging, re-auth, retries,
collection writes and the write-back buffer. A second section checks the session's retry policy
and the write-back buffer offline (a scripted transport / a fake writer), where the fake org
cannot produce the situation on demand."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from simple_salesforce.exceptions import SalesforceGeneralError

from connector.errors import FatalError
from connector.salesforce.auth import build_jwt_assertion, jwt_audience
from connector.salesforce.client import RecordErrorDetail, RecordResult, SalesforceClient
from connector.salesforce.session import CALL_OPTIONS_HEADER, SalesforceSession, session_from_settings
from connector.salesforce.soql import id_list, quote
from connector.salesforce.writeback import WriteBack, redact, truncate
from connector.settings import Settings, SettingsError, load_settings

INTEGRATION_USERNAME = "integration@sandbox.example"
WRONG_SECRET = "wrong-secret-Zx81"


# ---------------------------------------------------------------------------------------------
# fixtures


class OrgAdmin:
    """The fake org's /_sandbox/ admin API (plain requests; its CA must win over the env)."""

    def __init__(self, url: str, ca_file: Path) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(ca_file)

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        resp = self.session.request(method, f"{self.url}/_sandbox/{path}", json=payload)
        assert resp.status_code < 400, resp.text[:300]
        return resp.json() if resp.content else None


@pytest.fixture(scope="module")
def org_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from connector.sandbox.salesforce.server import start_salesforce

    server = start_salesforce(tmp_path_factory.mktemp("sf-org"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin(org_server: Any) -> Iterator[OrgAdmin]:
    admin = OrgAdmin(org_server.url, org_server.ca_file)
    admin.call("POST", "reset")
    try:
        yield admin
    finally:
        admin.call("POST", "faults", {"rate": 0})
        admin.session.close()


def make_settings(server: Any, **overrides: Any) -> Settings:
    options: dict[str, Any] = {
        "salesforce_login_url": server.url,
        "salesforce_consumer_key": "sandbox-client",
        "salesforce_consumer_secret": "sandbox-secret",
        "salesforce_ca_bundle": server.ca_file,
        "stripe_secret_key": "sk_test_x",
    }
    options.update(overrides)
    return load_settings(**options)


def make_client(settings: Settings, **session_options: Any) -> SalesforceClient:
    """A client whose backoff does not sleep (no timing in tests)."""
    session_options.setdefault("sleep", lambda _seconds: None)
    return SalesforceClient(settings, session=session_from_settings(settings, **session_options))


def integration_user_id() -> str:
    from connector.sandbox.salesforce.org import INTEGRATION_USER_ID

    return INTEGRATION_USER_ID


def insert_accounts(org: Any, count: int, **fields: Any) -> list[str]:
    return [org.insert("Account", {"Name": f"Acme {n:04d}", **fields}) for n in range(count)]


# ---------------------------------------------------------------------------------------------
# authentication


def test_client_credentials_flow(org_server: Any, admin: OrgAdmin) -> None:
    client = make_client(make_settings(org_server))
    token = client.connect()
    assert token.instance_url == org_server.url.rstrip("/")
    assert client.user_id == integration_user_id()
    assert token.org_id and token.org_id.startswith("00D")
    assert token.access_token.get_secret_value() not in repr(token)
    assert client.calls["auth"] == 1
    assert client.describe("Account")["name"] == "Account"
    assert client.calls["other"] == 1 and client.total_calls == 2


def test_jwt_bearer_flow(org_server: Any, admin: OrgAdmin) -> None:
    settings = make_settings(
        org_server,
        salesforce_auth_flow="jwt_bearer",
        salesforce_consumer_secret=None,
        salesforce_username=INTEGRATION_USERNAME,
        salesforce_private_key_file=org_server.jwt_private_key_file,
    )
    client = make_client(settings)
    assert client.user_id == integration_user_id()
    assert client.query_all("SELECT Id FROM Account") == []


def test_wrong_secret_is_fatal_with_salesforce_reason_and_no_secret(org_server: Any, admin: OrgAdmin) -> None:
    client = make_client(make_settings(org_server, salesforce_consumer_secret=WRONG_SECRET))
    with pytest.raises(FatalError) as caught:
        client.connect()
    text = str(caught.value)
    assert "invalid_client" in text and "invalid client credentials" in text
    assert "client_credentials" in text
    assert WRONG_SECRET not in text and WRONG_SECRET not in repr(caught.value)
    assert client.calls["auth"] == 1  # a 400 from the token endpoint is not retried


def test_jwt_for_unknown_user_is_fatal(org_server: Any, admin: OrgAdmin) -> None:
    settings = make_settings(
        org_server,
        salesforce_auth_flow="jwt_bearer",
        salesforce_username="nobody@sandbox.example",
        salesforce_private_key_file=org_server.jwt_private_key_file,
    )
    with pytest.raises(FatalError, match="invalid_grant"):
        make_client(settings).connect()


def test_jwt_with_unreadable_key_is_fatal(org_server: Any, admin: OrgAdmin, tmp_path: Path) -> None:
    bad_key = tmp_path / "key.pem"
    bad_key.write_text("not a key")
    settings = make_settings(
        org_server,
        salesforce_auth_flow="jwt_bearer",
        salesforce_username=INTEGRATION_USERNAME,
        salesforce_private_key_file=bad_key,
    )
    with pytest.raises(FatalError, match="cannot sign the JWT assertion"):
        make_client(settings).connect()


def test_jwt_assertion_claims(org_server: Any) -> None:
    import jwt

    pem = Path(org_server.jwt_private_key_file).read_bytes()
    assertion = build_jwt_assertion(
        consumer_key="ck",
        username="u@example.com",
        audience="https://login.salesforce.com",
        private_key_pem=pem,
        now=1000,
    )
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert claims == {"iss": "ck", "sub": "u@example.com", "aud": "https://login.salesforce.com", "exp": 1180}
    assert jwt.get_unverified_header(assertion)["alg"] == "RS256"
    assert jwt_audience("https://login.salesforce.com/") == "https://login.salesforce.com"
    assert jwt_audience("https://TEST.salesforce.com") == "https://test.salesforce.com"
    # Salesforce's documented audiences: login for production (a My Domain too), test for a sandbox,
    # the site's own URL for anything else; a configured audience wins.
    assert jwt_audience("https://acme.my.salesforce.com/") == "https://login.salesforce.com"
    assert jwt_audience("https://acme--uat.sandbox.my.salesforce.com") == "https://test.salesforce.com"
    assert jwt_audience("https://acme.my.site.com/partners") == "https://acme.my.site.com/partners"
    assert jwt_audience("https://acme.my.salesforce.com", "https://acme.my.salesforce.com/") == (
        "https://acme.my.salesforce.com"
    )


def _jwt_settings(org_server: Any, **overrides: Any) -> Any:
    return make_settings(
        org_server,
        salesforce_auth_flow="jwt_bearer",
        salesforce_consumer_secret=None,
        salesforce_username=INTEGRATION_USERNAME,
        salesforce_private_key_file=org_server.jwt_private_key_file,
        **overrides,
    )


def test_an_org_that_accepts_only_its_documented_audience_needs_the_audience_setting(
    org_server: Any, admin: OrgAdmin
) -> None:
    admin.call("POST", "profile", {"jwt_audiences": ["https://test.salesforce.com"]})  # a sandbox org
    with pytest.raises(FatalError, match="audience is invalid"):
        make_client(_jwt_settings(org_server)).connect()
    client = make_client(_jwt_settings(org_server, salesforce_jwt_audience="https://test.salesforce.com"))
    assert client.user_id == integration_user_id()


def test_the_generic_login_host_refuses_client_credentials_and_settings_refuse_it_first(
    org_server: Any, admin: OrgAdmin
) -> None:
    admin.call("POST", "profile", {"login_host": "generic"})
    with pytest.raises(FatalError, match="request not supported on this domain"):
        make_client(make_settings(org_server)).connect()
    assert make_client(_jwt_settings(org_server)).user_id == integration_user_id()  # JWT still works
    for host in ("https://login.salesforce.com", "https://TEST.salesforce.com/"):
        with pytest.raises(SettingsError) as caught:
            make_settings(org_server, salesforce_login_url=host)
        text = str(caught.value)
        assert "CPQ2STRIPE_SALESFORCE_LOGIN_URL" in text and "My Domain" in text and "jwt_bearer" in text


def test_configured_ca_bundle_wins_over_requests_ca_bundle(
    org_server: Any, admin: OrgAdmin, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import certifi

    # A bundle that does not contain the sandbox CA: requests would use it and fail TLS.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())
    client = make_client(make_settings(org_server))
    assert client.user_id == integration_user_id()


# ---------------------------------------------------------------------------------------------
# queries


def test_query_pages_streams_2500_records_in_two_pages(org_server: Any, admin: OrgAdmin) -> None:
    admin.call("POST", "seed", {"accounts": 2500, "orders": 0, "seed": 7})
    client = make_client(make_settings(org_server))
    pages = list(client.query_pages("SELECT Id, Name FROM Account ORDER BY Id"))
    assert [len(p) for p in pages] == [2000, 500]
    ids = [r["Id"] for page in pages for r in page]
    assert len(set(ids)) == 2500 == org_server.org.count("Account")
    assert type(pages[0][0]) is dict and type(pages[0][0]["attributes"]) is dict
    assert client.calls["query"] == 1 and client.calls["query_more"] == 1


def test_query_with_quoted_literals_and_id_list(org_server: Any, admin: OrgAdmin) -> None:
    org = org_server.org
    tricky = 'O\'Brien \\ "Ltd"\nline two'
    wanted = org.insert("Account", {"Name": tricky})
    other = org.insert("Account", {"Name": "Other"})
    client = make_client(make_settings(org_server))
    found = client.query_all(f"SELECT Id, Name FROM Account WHERE Name = {quote(tricky)}")
    assert [(r["Id"], r["Name"]) for r in found] == [(wanted, tricky)]
    both = client.query_all(f"SELECT Id FROM Account WHERE Id IN {id_list([wanted, other])}")
    assert {r["Id"] for r in both} == {wanted, other}


def test_token_expiry_mid_run_reauthenticates_transparently(org_server: Any, admin: OrgAdmin) -> None:
    admin.call("POST", "seed", {"accounts": 2500, "orders": 0, "seed": 3})
    client = make_client(make_settings(org_server))
    pages = client.query_pages("SELECT Id FROM Account")
    first = next(pages)
    admin.call("POST", "expire-tokens")
    rest = [r for page in pages for r in page]
    assert len(first) + len(rest) == 2500
    assert client.reauthentications == 1
    assert client.calls["auth"] == 2
    assert client.calls["query_more"] == 2  # the 401 and the repeat
    # and later calls keep working on the new token
    admin.call("POST", "expire-tokens")
    assert len(client.query_all("SELECT Id FROM Account LIMIT 10")) == 10
    assert client.reauthentications == 2


def test_a_renewed_session_that_expires_again_is_renewed_again(org_server: Any, admin: OrgAdmin) -> None:
    # Calls run side by side: the token one call renews (or finds renewed by another thread) can
    # expire before the call is repeated. That is not bad credentials; only a token rejected on
    # every attempt is.
    admin.call("POST", "seed", {"accounts": 3, "orders": 0, "seed": 3})
    client = make_client(make_settings(org_server))
    attempts = 0

    def expire_then_query(sf: Any, expiries: int) -> Any:
        nonlocal attempts
        attempts += 1
        if attempts <= expiries:
            admin.call("POST", "expire-tokens")
        return sf.query("SELECT Id FROM Account")

    result = client._call(lambda sf: expire_then_query(sf, expiries=2))
    assert result["totalSize"] == 3
    assert attempts == 3 and client.reauthentications == 2

    attempts = 0
    with pytest.raises(FatalError, match="INVALID_SESSION_ID"):
        client._call(lambda sf: expire_then_query(sf, expiries=99))
    assert attempts == 3


def test_injected_faults_are_retried_to_success(org_server: Any, admin: OrgAdmin) -> None:
    admin.call("POST", "seed", {"accounts": 2500, "orders": 0, "seed": 5})
    client = make_client(make_settings(org_server), max_attempts=12)
    client.connect()
    admin.call(
        "POST",
        "faults",
        {"rate": 0.4, "kinds": ["503", "UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED"], "seed": 11},
    )
    records = client.query_all("SELECT Id FROM Account")
    assert len(records) == 2500
    results = client.update_many(
        "Account", [{"Id": r["Id"], "Stripe_Sync_Status__c": "Synced"} for r in records[:600]]
    )
    assert all(r.success for r in results), [r.message for r in results if not r.success][:3]
    created = client.create_many("Account", [{"Name": f"New {n}"} for n in range(250)])
    assert all(r.success and r.id for r in created)
    admin.call("POST", "faults", {"rate": 0})
    assert client.session.retries > 0
    org = org_server.org
    assert all(org.get("Account", r["Id"])["Stripe_Sync_Status__c"] == "Synced" for r in records[:600])
    assert org.count("Account") == 2750  # creates retried only when rejected: no duplicates


def test_retries_are_bounded(org_server: Any, admin: OrgAdmin) -> None:
    client = make_client(make_settings(org_server), max_attempts=3)
    client.connect()
    admin.call("POST", "faults", {"rate": 1.0, "kinds": ["503"], "seed": 1})
    with pytest.raises(SalesforceGeneralError):
        client.query_all("SELECT Id FROM Account")
    assert client.calls["query"] == 3


# ---------------------------------------------------------------------------------------------
# collection writes


def test_update_many_450_records_in_three_calls_with_one_bad_record(org_server: Any, admin: OrgAdmin) -> None:
    org = org_server.org
    ids = insert_accounts(org, 450)
    client = make_client(make_settings(org_server))
    client.connect()
    before = client.calls["composite"]
    records = [
        {"Id": i, "Stripe_Customer_ID__c": f"cus_{n}", "Stripe_Sync_Status__c": "Synced"}
        for n, i in enumerate(ids)
    ]
    records[321]["Stripe_Sync_Status__c"] = "Bogus"  # outside the restricted picklist
    results = client.update_many("Account", records)
    assert client.calls["composite"] - before == 3
    assert len(results) == 450
    bad = [r for r in results if not r.success]
    assert len(bad) == 1 and bad[0].id == ids[321]
    assert bad[0].errors[0].code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert "Stripe_Sync_Status__c" in bad[0].errors[0].fields
    assert not bad[0].retryable
    assert org.get("Account", ids[320])["Stripe_Customer_ID__c"] == "cus_320"
    assert org.get("Account", ids[321])["Stripe_Customer_ID__c"] is None
    assert org.get("Account", ids[449])["Stripe_Sync_Status__c"] == "Synced"
    assert org.get("Account", ids[0])["LastModifiedById"] == integration_user_id()


def test_create_many_reports_failed_records_without_ids(org_server: Any, admin: OrgAdmin) -> None:
    client = make_client(make_settings(org_server))
    results = client.create_many("Account", [{"Name": "Good"}, {"Name": "Bad", "CurrencyIsoCode": "XXX"}])
    assert results[0].success and results[0].id
    assert not results[1].success and results[1].id is None
    assert org_server.org.get("Account", results[0].id)["Name"] == "Good"


def test_client_rejects_bad_sobject_names_and_missing_ids(org_server: Any) -> None:
    client = make_client(make_settings(org_server))
    with pytest.raises(ValueError):
        client.describe("Account/../x")
    with pytest.raises(ValueError):
        client.update_many("Account", [{"Name": "no id"}])


# ---------------------------------------------------------------------------------------------
# write-back


def test_writeback_sends_nothing_when_unchanged(org_server: Any, admin: OrgAdmin) -> None:
    org = org_server.org
    ids = insert_accounts(org, 3, Stripe_Customer_ID__c="cus_same", Stripe_Sync_Status__c="Synced")
    client = make_client(make_settings(org_server))
    rows = {
        r["Id"]: r
        for r in client.query_all("SELECT Id, Stripe_Customer_ID__c, Stripe_Sync_Status__c FROM Account")
    }
    writeback = WriteBack(client)
    for record_id in ids:
        writeback.stage(
            "Account",
            record_id,
            {"Stripe_Customer_ID__c": "cus_same", "Stripe_Sync_Status__c": "Synced"},
            current=rows[record_id],
        )
    before = client.calls["composite"]
    assert writeback.flush() == []
    assert client.calls["composite"] == before
    assert writeback.last_flush.sent == 0 and writeback.last_flush.skipped == 3

    # one change: one call carrying only that record; then the same value again: nothing
    writeback.stage("Account", ids[1], {"Stripe_Sync_Status__c": "Failed", "Stripe_Sync_Message__c": "boom"})
    assert writeback.flush() == []
    assert client.calls["composite"] == before + 1
    assert writeback.last_flush.sent == 1
    assert org.get("Account", ids[1])["Stripe_Sync_Status__c"] == "Failed"
    writeback.stage("Account", ids[1], {"Stripe_Sync_Status__c": "Failed"})
    writeback.flush()
    assert client.calls["composite"] == before + 1


def test_writeback_redacts_truncates_and_reports_bad_records(org_server: Any, admin: OrgAdmin) -> None:
    org = org_server.org
    ids = insert_accounts(org, 250)
    client = make_client(make_settings(org_server))
    writeback = WriteBack(client, field_lengths={"Stripe_Sync_Message__c": 200})
    secret_message = "Stripe said: Invalid API Key provided: sk_live_51AbCdEfGhIjKlMnOp " + "x" * 500
    for n, record_id in enumerate(ids):
        writeback.stage("Account", record_id, {"Stripe_Sync_Status__c": "Failed"})
        writeback.stage("Account", record_id, {"Stripe_Sync_Message__c": secret_message})  # merged
        if n == 7:
            writeback.stage("Account", record_id, {"Stripe_Sync_Status__c": "Nope"})
    before = client.calls["composite"]
    failures = writeback.flush()
    assert client.calls["composite"] - before == 2
    assert [(f.record_id, f.code, f.retryable) for f in failures] == [
        (ids[7], "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", False)
    ]
    stored = org.get("Account", ids[0])["Stripe_Sync_Message__c"]
    assert "sk_live_51" not in stored and "sk_live_***" in stored
    assert len(stored) == 200 and stored.endswith("…")
    assert org.get("Account", ids[249])["Stripe_Sync_Status__c"] == "Failed"
    assert writeback.pending == 0  # permanent failures are reported, not retried forever


# ---------------------------------------------------------------------------------------------
# offline: the session's retry policy, with a scripted transport


class ScriptedAdapter(BaseAdapter):
    """Answers requests from a script of (status, body, headers) or exceptions, recording each."""

    def __init__(self, script: list[Any]) -> None:
        super().__init__()
        self.script = list(script)
        self.sent: list[tuple[requests.PreparedRequest, dict[str, Any]]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append((request, kwargs))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        status, body, headers = (*step, {})[:3] if len(step) == 2 else step
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode() if not isinstance(body, bytes) else body
        response.headers.update(headers)
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


BASE = "https://org.example/services/data/v61.0/"
LOCK = [{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}]
LIMIT = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "limit"}]


def scripted_session(
    script: list[Any], **options: Any
) -> tuple[SalesforceSession, ScriptedAdapter, list[float]]:
    sleeps: list[float] = []
    session = SalesforceSession(sleep=sleeps.append, **options)
    adapter = ScriptedAdapter(script)
    session.mount("https://", adapter)
    return session, adapter, sleeps


@pytest.mark.parametrize(
    ("method", "path", "script", "attempts"),
    [
        ("GET", "query/?q=x", [(503, b"down"), (400, LOCK), (200, {})], 3),
        ("GET", "query/?q=x", [(400, [{"errorCode": "MALFORMED_QUERY"}])], 1),
        ("PATCH", "composite/sobjects", [(500, b"oops"), (200, [])], 2),
        ("POST", "composite/sobjects", [(503, b"down"), (400, LOCK), (403, LIMIT), (200, [])], 4),
        ("POST", "composite/sobjects", [(500, b"oops")], 1),  # a create may have happened
        ("POST", "composite/sobjects", [(502, b"bad gateway")], 1),
        ("POST", "composite/batch", [(503, b"down")], 1),  # not a path we vouch for
        ("DELETE", "sobjects/Account/001000000000001", [(503, b"down")], 1),
        ("POST", "sobjects/Account", [(503, b"down"), (201, {"id": "x"})], 2),
    ],
)
def test_retry_policy(method: str, path: str, script: list[Any], attempts: int) -> None:
    session, adapter, _ = scripted_session(script)
    response = session.request(method, BASE + path, json={})
    assert len(adapter.sent) == attempts
    assert response.status_code == script[attempts - 1][0]


def test_network_errors_retried_only_when_safe() -> None:
    session, adapter, _ = scripted_session([requests.ConnectionError("reset"), (200, {})])
    assert session.get(BASE + "query/?q=x").status_code == 200
    session, adapter, _ = scripted_session([requests.ReadTimeout("slow"), (200, [])])
    assert session.patch(BASE + "composite/sobjects", json={}).status_code == 200
    session, adapter, _ = scripted_session([requests.ConnectTimeout("never sent"), (200, [])])
    assert session.post(BASE + "composite/sobjects", json={}).status_code == 200
    session, adapter, _ = scripted_session([requests.ReadTimeout("maybe applied"), (200, [])])
    with pytest.raises(requests.ReadTimeout):
        session.post(BASE + "composite/sobjects", json={})
    assert len(adapter.sent) == 1


def test_attempts_are_bounded_and_backoff_grows_within_cap() -> None:
    session, adapter, sleeps = scripted_session(
        [(503, b"")] * 6, max_attempts=6, backoff_base=1, backoff_cap=4
    )
    assert session.get(BASE + "limits").status_code == 503
    assert len(adapter.sent) == 6 and len(sleeps) == 5
    ceilings = [1, 2, 4, 4, 4]
    assert all(0 <= s <= c for s, c in zip(sleeps, ceilings, strict=True))
    assert session.retries == 5 and session.calls["other"] == 6


def test_retry_after_is_honoured() -> None:
    session, _, sleeps = scripted_session([(503, b"", {"Retry-After": "7"}), (200, {})], backoff_base=0.001)
    session.get(BASE + "query/?q=x")
    assert sleeps[0] >= 7


def test_session_sets_header_timeout_ca_and_counts_kinds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere.pem")
    script = [(200, {})] * 5
    session, adapter, _ = scripted_session(script, ca_bundle=ca, timeout=12)
    session.get(BASE + "query/?q=x")
    session.get(BASE + "query/01gD0000000001-2000")
    session.patch(BASE + "composite/sobjects", json={})
    session.post("https://org.example/services/oauth2/token", data={})
    session.get(BASE + "sobjects/Account/describe")
    assert session.calls == {"query": 1, "query_more": 1, "composite": 1, "auth": 1, "other": 1}
    for request, kwargs in adapter.sent:
        assert request.headers[CALL_OPTIONS_HEADER] == "client=cpq2stripe"
        assert kwargs["timeout"] == 12
        assert kwargs["verify"] == str(ca)


def test_token_endpoint_errors(tmp_path: Path) -> None:
    from connector.salesforce.auth import authenticate

    settings = load_settings(
        salesforce_login_url="https://login.example",
        salesforce_consumer_key="ck",
        salesforce_consumer_secret=WRONG_SECRET,
        stripe_secret_key="sk_test_x",
    )
    echo = {"error": "invalid_client", "error_description": f"bad secret {WRONG_SECRET}"}
    session, adapter, _ = scripted_session([(400, echo)])
    with pytest.raises(FatalError) as caught:
        authenticate(settings, session)
    assert WRONG_SECRET not in str(caught.value) and "invalid_client" in str(caught.value)
    assert adapter.sent[0][0].url == "https://login.example/services/oauth2/token"

    session, _, _ = scripted_session([(503, b"down")] * 2, max_attempts=2)
    with pytest.raises(SalesforceGeneralError):  # transient: classify() says RETRY
        authenticate(settings, session)

    ok = {
        "access_token": "00Dx!tok",
        "instance_url": "https://na1.example/",
        "id": "https://login.example/id/00Dx/005y",
    }
    session, _, _ = scripted_session([(200, ok)])
    token = authenticate(settings, session)
    assert (token.instance_url, token.org_id, token.user_id) == ("https://na1.example", "00Dx", "005y")


# ---------------------------------------------------------------------------------------------
# offline: write-back buffer


class FakeWriter:
    def __init__(self, fail: dict[str, str] | None = None, raise_exc: Exception | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.fail = fail or {}
        self.raise_exc = raise_exc

    def update_many(self, sobject: str, records: list[dict[str, Any]]) -> list[RecordResult]:
        self.calls.append(records)
        if self.raise_exc:
            raise self.raise_exc
        return [
            RecordResult(r["Id"], False, (RecordErrorDetail(self.fail[r["Id"]], "no"),))
            if r["Id"] in self.fail
            else RecordResult(r["Id"], True)
            for r in records
        ]


ID_A = "001000000000001AAA"
ID_B = "001000000000002AAA"


def test_writeback_chunks_merges_and_keeps_only_given_fields() -> None:
    writer = FakeWriter()
    writeback = WriteBack(writer)
    ids = [f"001{n:012d}" for n in range(401)]
    for record_id in ids:
        writeback.stage("Account", record_id, {"Stripe_Customer_ID__c": "cus_1"})
        writeback.stage("Account", record_id, {"Stripe_Sync_Status__c": "Synced"})
    assert writeback.flush() == []
    assert sorted(len(c) for c in writer.calls) == [1, 200, 200]
    sent = {r["Id"]: r for call in writer.calls for r in call}
    assert sorted(sent) == ids
    assert sent[ids[0]] == {"Id": ids[0], "Stripe_Customer_ID__c": "cus_1", "Stripe_Sync_Status__c": "Synced"}


class BarrierWriter(FakeWriter):
    """Every call waits until `parties` calls are in flight together (or the barrier breaks)."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)

    def update_many(self, sobject: str, records: list[dict[str, Any]]) -> list[RecordResult]:
        self.barrier.wait()
        return super().update_many(sobject, records)


def test_writeback_flush_sends_its_collections_side_by_side() -> None:
    # Four calls of 200 can only all pass the barrier if they are in flight at the same time.
    writer = BarrierWriter(parties=4)
    writeback = WriteBack(writer)
    for n in range(800):
        writeback.stage("Account", f"001{n:012d}", {"Stripe_Sync_Status__c": "Synced"})
    assert writeback.flush() == []
    assert sorted(len(c) for c in writer.calls) == [200, 200, 200, 200]
    assert writeback.last_flush.sent == 800 and writeback.pending == 0


def test_writeback_keeps_retryable_failures_staged() -> None:
    writer = FakeWriter(fail={ID_A: "UNABLE_TO_LOCK_ROW", ID_B: "FIELD_CUSTOM_VALIDATION_EXCEPTION"})
    writeback = WriteBack(writer)
    writeback.stage("Account", ID_A, {"Stripe_Sync_Status__c": "Synced"})
    writeback.stage("Account", ID_B, {"Stripe_Sync_Status__c": "Synced"})
    failures = writeback.flush()
    assert {(f.record_id, f.retryable) for f in failures} == {(ID_A, True), (ID_B, False)}
    assert writeback.pending == 1
    writer.fail = {}
    assert writeback.flush() == [] and writer.calls[-1] == [{"Id": ID_A, "Stripe_Sync_Status__c": "Synced"}]


def test_writeback_whole_call_failures() -> None:
    transient = SalesforceGeneralError("u", 503, "composite/sobjects", "down")
    writeback = WriteBack(FakeWriter(raise_exc=transient))
    writeback.stage("Account", ID_A, {"Stripe_Sync_Status__c": "Synced"})
    [failure] = writeback.flush()
    assert failure.retryable and writeback.pending == 1

    writeback = WriteBack(FakeWriter(raise_exc=FatalError("salesforce_auth", "bad credentials")))
    writeback.stage("Account", ID_A, {"Stripe_Sync_Status__c": "Synced"})
    with pytest.raises(FatalError):
        writeback.flush()
    assert writeback.pending == 1


def test_writeback_rejects_bad_input() -> None:
    writeback = WriteBack(FakeWriter())
    with pytest.raises(ValueError):
        writeback.stage("Account", "001' OR Id != '", {"Stripe_Sync_Status__c": "x"})
    with pytest.raises(ValueError):
        writeback.stage("Account", ID_A, {"Id": ID_B})
    with pytest.raises(TypeError):
        writeback.stage("Account", ID_A, {"Stripe_Sync_Message__c": object()})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk_live_51HqAbCdEf123 failed", "key sk_live_*** failed"),
        ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "sk_test_***"),
        ("restricted rk_live_abcDEF123, ok", "restricted rk_live_***, ok"),
        ("api_key=sk_test_abc", "api_key=sk_test_***"),
        ("Authorization: Bearer 00D5g000004Ab1C!AQ4AQFmx.y_z", "Authorization: Bearer ***"),
        ("session 00D5g000004Ab1C!AQ4AQFmxyz in text", "session 00D5g000004Ab1C!*** in text"),
        ("whsec_abcdef12345", "whsec_***"),
        ("no secrets here: cus_123 pk_test_abc", "no secrets here: cus_123 pk_test_abc"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_truncate() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) == "ab…"

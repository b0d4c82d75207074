"""Fake Stripe: protocol behaviour (auth, validation errors, idempotency, limits, faults, lists,
search, events, admin API), driven through the real stripe-python client."""

from __future__ import annotations

import threading

import pytest
import requests
import stripe

from connector.sandbox.stripe.server import StripeSandbox, mask_key, start_stripe


@pytest.fixture(scope="module")
def server():
    sb = start_stripe(rps=0)
    yield sb
    sb.stop()


@pytest.fixture
def sb(server: StripeSandbox) -> StripeSandbox:
    server.state.reset()
    server.configure(rps=0, latency_ms=0, error_rate=0, error_kinds=["500", "429", "drop", "slow"],
                     search_lag_seconds=0, seed=1)  # fmt: skip
    server.state.store.clock = __import__("time").time
    return server


def client_for(sb: StripeSandbox, key: str = "sk_test_123", **kw) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": sb.url}, max_network_retries=0, **kw)


@pytest.fixture
def client(sb: StripeSandbox) -> stripe.StripeClient:
    return client_for(sb)


def http() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


# auth ----------------------------------------------------------------------------------------
def test_test_and_restricted_keys_are_accepted(sb):
    assert client_for(sb, "sk_test_abc").v1.accounts.retrieve_current().id.startswith("acct_")
    sb.configure(restricted_keys={"rk_test_abc": ["rak_customer_read"]})
    assert client_for(sb, "rk_test_abc").v1.customers.list().object == "list"


def test_a_restricted_key_the_account_never_created_is_invalid(sb):
    with pytest.raises(stripe.AuthenticationError) as info:
        client_for(sb, "rk_test_neverMade1234").v1.customers.list()
    assert info.value.http_status == 401
    assert info.value.user_message == "Invalid API Key provided: rk_test_*********1234"


def test_a_restricted_key_is_refused_what_it_was_not_granted_and_told_which_permission(sb):
    sb.configure(restricted_keys={"rk_test_readonly9876": ["rak_customer_read", "rak_product_write"]})
    client = client_for(sb, "rk_test_readonly9876")
    assert client.v1.customers.list().object == "list"
    assert client.v1.products.create(params={"name": "P"}).name == "P"
    assert client.v1.products.retrieve(client.v1.products.list().data[0].id).name == "P"  # write grants read
    with pytest.raises(stripe.PermissionError) as info:
        client.v1.customers.create(params={"name": "C"})
    account = sb.state.store.account_id
    assert info.value.http_status == 403
    assert info.value.user_message == (
        f"The provided key 'rk_test_********9876' does not have the required permissions for this "
        f"endpoint on account '{account}'. Having the 'rak_customer_write' permission would allow this "
        "request to continue."
    )
    with pytest.raises(stripe.PermissionError, match="rak_plan_write"):
        client.v1.prices.create(params={"currency": "usd", "unit_amount": 100, "product_data": {"name": "x"}})
    assert not [c for c in sb.state.objects("customer") if c.get("name") == "C"]


def test_no_restricted_key_may_read_the_account(sb):
    everything = [f"rak_{r}_write" for r in ("customer", "product", "plan", "subscription", "event")]
    sb.configure(restricted_keys={"rk_test_everything42": everything})
    with pytest.raises(stripe.PermissionError) as info:
        client_for(sb, "rk_test_everything42").v1.accounts.retrieve_current()
    assert "not available for use by restricted keys" in (info.value.user_message or "")


@pytest.mark.parametrize("key", ["sk_live_abcdef123456", "sk_test_", "pk_test_abcdef1234", "nonsense-key"])
def test_other_keys_are_refused_with_a_masked_key(sb, key):
    with pytest.raises(stripe.AuthenticationError) as info:
        client_for(sb, key).v1.customers.list()
    assert info.value.http_status == 401
    assert info.value.user_message == f"Invalid API Key provided: {mask_key(key)}"
    assert (
        key[-4:] not in info.value.user_message or len(key) <= 8 or key.endswith(info.value.user_message[-4:])
    )


def test_mask_key_keeps_prefix_and_last_four():
    assert mask_key("sk_live_abcdef123456") == "sk_live_********3456"


def test_missing_key_is_401(sb):
    resp = http().get(f"{sb.url}/v1/customers")
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert "You did not provide an API key" in resp.json()["error"]["message"]
    assert resp.headers["Request-Id"].startswith("req_")


def test_basic_auth_like_curl(sb):
    resp = http().get(f"{sb.url}/v1/customers", auth=("sk_test_123", ""))
    assert resp.status_code == 200


def test_unknown_url_is_404(sb):
    resp = http().get(f"{sb.url}/v1/nothing", auth=("sk_test_123", ""))
    assert resp.status_code == 404
    assert "Unrecognized request URL (GET: /v1/nothing)" in resp.json()["error"]["message"]


# validation ----------------------------------------------------------------------------------
def _invalid(fn, *args, **kwargs) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as info:
        fn(*args, **kwargs)
    return info.value


def test_unknown_parameter_top_level_and_nested(client):
    err = _invalid(client.v1.customers.create, params={"nmae": "x"})
    assert (err.code, err.param, err.user_message) == (
        "parameter_unknown",
        "nmae",
        "Received unknown parameter: nmae",
    )
    err = _invalid(client.v1.customers.create, params={"address": {"lin1": "x"}})
    assert (err.code, err.param) == ("parameter_unknown", "address[lin1]")
    assert err.user_message == "Received unknown parameter: address[lin1]"
    assert err.http_status == 400
    assert err.error.doc_url


def test_missing_required_param(client):
    err = _invalid(client.v1.products.create, params={})
    assert (err.code, err.param, err.user_message) == (
        "parameter_missing",
        "name",
        "Missing required param: name.",
    )
    err = _invalid(client.v1.customers.create, params={"shipping": {"phone": "1"}})
    assert (err.code, err.param) == ("parameter_missing", "shipping[name]")


def test_invalid_integer_empty_and_enum(client):
    prod = client.v1.products.create(params={"name": "P"})
    err = _invalid(
        client.v1.prices.create, params={"currency": "usd", "unit_amount": "ten", "product": prod.id}
    )
    assert (err.code, err.param) == ("parameter_invalid_integer", "unit_amount")
    assert err.user_message == "Invalid integer: ten"
    err = _invalid(client.v1.products.create, params={"name": ""})
    assert (err.code, err.param) == ("parameter_invalid_empty", "name")
    err = _invalid(client.v1.customers.create, params={"tax_exempt": "sometimes"})
    assert err.param == "tax_exempt"
    assert err.user_message == "Invalid tax_exempt: must be one of exempt, none, or reverse"


def test_email_and_country_and_lengths(client):
    err = _invalid(client.v1.customers.create, params={"email": "not-an-email"})
    assert (err.code, err.param, err.user_message) == (
        "email_invalid", "email", "Invalid email address: not-an-email"
    )  # fmt: skip
    err = _invalid(client.v1.customers.create, params={"address": {"country": "USA"}})
    assert err.param == "address[country]"
    assert err.user_message.startswith("Country 'USA' is unknown.")
    err = _invalid(
        client.v1.customers.create, params={"shipping": {"name": "n", "address": {"country": "ZZ"}}}
    )
    assert err.param == "shipping[address][country]"
    err = _invalid(client.v1.customers.create, params={"phone": "1" * 21})
    assert err.param == "phone"
    assert "must be at most 20 characters" in err.user_message
    err = _invalid(client.v1.customers.create, params={"name": "n" * 257})
    assert err.param == "name"
    assert client.v1.customers.create(params={"name": "n" * 256, "phone": "1" * 20}).name == "n" * 256


def test_metadata_limits(client):
    err = _invalid(client.v1.customers.create, params={"metadata": {f"k{i}": "v" for i in range(51)}})
    assert err.param == "metadata"
    assert "Metadata can have up to 50 keys, but you've set 51" in err.user_message
    err = _invalid(client.v1.customers.create, params={"metadata": {"k" * 41: "v"}})
    assert err.user_message.startswith("Invalid key: ")
    err = _invalid(client.v1.customers.create, params={"metadata": {"k": "v" * 501}})
    assert err.user_message.startswith("Invalid val: ")
    cus = client.v1.customers.create(params={"metadata": {f"k{i}": "v" for i in range(50)}})
    err = _invalid(client.v1.customers.update, cus.id, params={"metadata": {"one_more": "v"}})
    assert "you've set 51" in err.user_message
    cus = client.v1.customers.update(cus.id, params={"metadata": {"k0": "", "one_more": "v"}})
    assert "k0" not in cus.metadata and cus.metadata["one_more"] == "v"
    assert client.v1.customers.update(cus.id, params={"metadata": ""}).metadata.to_dict() == {}


def test_missing_objects(client):
    err = _invalid(client.v1.customers.retrieve, "cus_nope")
    assert (err.http_status, err.code, err.param) == (404, "resource_missing", "id")
    assert err.user_message == "No such customer: 'cus_nope'"
    err = _invalid(client.v1.subscriptions.create, params={"customer": "cus_nope", "items": [{"price": "p"}]})
    assert (err.http_status, err.code, err.param) == (400, "resource_missing", "customer")


# customers -----------------------------------------------------------------------------------
def test_customer_shape_update_and_delete(client):
    cus = client.v1.customers.create(
        params={
            "name": "Acme",
            "email": "billing@acme.test",
            "phone": "+1 555 0100",
            "description": "d",
            "address": {"line1": "1 Main", "city": "Springfield", "postal_code": "1", "country": "US"},
            "shipping": {"name": "Dock", "address": {"line1": "2 Main", "country": "US"}},
            "preferred_locales": ["en", "fr"],
            "tax_exempt": "exempt",
            "metadata": {"sf_account_id": "001A"},
        }
    )
    assert cus.id.startswith("cus_") and cus.object == "customer" and cus.livemode is False
    assert cus.address.line2 is None and cus.address.country == "US"
    assert cus.shipping.name == "Dock" and cus.shipping.address.line1 == "2 Main"
    assert cus.invoice_settings.default_payment_method is None
    assert cus.preferred_locales == ["en", "fr"] and cus.tax_exempt == "exempt"
    updated = client.v1.customers.update(cus.id, params={"name": "Acme Inc", "description": ""})
    assert updated.name == "Acme Inc" and updated.description is None and updated.email == "billing@acme.test"
    gone = client.v1.customers.delete(cus.id)
    assert gone.deleted is True and gone.id == cus.id
    again = client.v1.customers.retrieve(cus.id)
    assert again.deleted is True and again.object == "customer"
    err = _invalid(client.v1.customers.update, cus.id, params={"name": "x"})
    assert err.code == "resource_missing"


def test_list_pagination_and_email_filter(client):
    ids = [client.v1.customers.create(params={"email": f"c{i}@x.test"}).id for i in range(5)]
    page = client.v1.customers.list(params={"limit": 2})
    assert [c.id for c in page.data] == ids[::-1][:2] and page.has_more is True
    page2 = client.v1.customers.list(params={"limit": 2, "starting_after": page.data[-1].id})
    assert [c.id for c in page2.data] == ids[::-1][2:4] and page2.has_more is True
    page3 = client.v1.customers.list(params={"limit": 2, "starting_after": page2.data[-1].id})
    assert [c.id for c in page3.data] == [ids[0]] and page3.has_more is False
    back = client.v1.customers.list(params={"limit": 2, "ending_before": ids[0]})
    assert [c.id for c in back.data] == [ids[2], ids[1]] and back.has_more is True
    assert [c.id for c in client.v1.customers.list(params={"limit": 2}).auto_paging_iter()] == ids[::-1]
    only = client.v1.customers.list(params={"email": "c3@x.test"})
    assert [c.id for c in only.data] == [ids[3]]
    err = _invalid(client.v1.customers.list, params={"limit": 101})
    assert err.param == "limit"


def test_search_grammar_and_pages(client):
    a = client.v1.customers.create(
        params={"name": "Alpha", "email": "a@x.test", "metadata": {"sf": "001", "r": "emea"}}
    )
    client.v1.customers.create(
        params={"name": "Beta", "email": "b@x.test", "metadata": {"sf": "002", "r": "emea"}}
    )
    res = client.v1.customers.search(params={"query": "metadata['sf']:'001'"})
    assert res.object == "search_result" and [c.id for c in res.data] == [a.id] and res.has_more is False
    assert res.next_page is None
    assert [
        c.id for c in client.v1.customers.search(params={"query": "email:'a@x.test' AND name:'Alpha'"}).data
    ] == [a.id]
    assert client.v1.customers.search(params={"query": "email:'a@x.test' AND name:'Beta'"}).data == []
    res = client.v1.customers.search(params={"query": 'metadata["r"]:"emea"', "limit": 1})
    assert len(res.data) == 1 and res.has_more is True and res.next_page
    rest = client.v1.customers.search(
        params={"query": 'metadata["r"]:"emea"', "limit": 1, "page": res.next_page}
    )
    assert len(rest.data) == 1 and rest.data[0].id != res.data[0].id and rest.has_more is False
    err = _invalid(client.v1.customers.search, params={"query": "bogus_field:'x'"})
    assert err.param == "query"


def test_search_lag_hides_new_and_updated_objects(sb, client):
    now = [1_800_000_000.0]
    sb.state.store.clock = lambda: now[0]
    old = client.v1.customers.create(params={"name": "Before", "metadata": {"k": "old"}})
    sb.configure(search_lag_seconds=30)
    client.v1.customers.update(old.id, params={"metadata": {"k": "older"}})
    assert [c.id for c in client.v1.customers.search(params={"query": "metadata['k']:'old'"}).data] == [
        old.id
    ]
    cus = client.v1.customers.create(params={"name": "Lagging", "metadata": {"k": "v1"}})
    assert client.v1.customers.search(params={"query": "name:'Lagging'"}).data == []
    assert client.v1.customers.retrieve(cus.id).name == "Lagging"  # retrieve is immediate
    now[0] += 31
    assert [c.id for c in client.v1.customers.search(params={"query": "name:'Lagging'"}).data] == [cus.id]
    client.v1.customers.update(cus.id, params={"metadata": {"k": "v2"}})
    assert [c.id for c in client.v1.customers.search(params={"query": "metadata['k']:'v1'"}).data] == [cus.id]
    assert client.v1.customers.search(params={"query": "metadata['k']:'v2'"}).data == []
    now[0] += 31
    assert client.v1.customers.search(params={"query": "metadata['k']:'v1'"}).data == []
    assert [c.id for c in client.v1.customers.search(params={"query": "metadata['k']:'v2'"}).data] == [cus.id]


def test_events_for_creates_and_updates(client):
    cus = client.v1.customers.create(params={"name": "E"})
    client.v1.customers.update(cus.id, params={"name": "F"})
    events = client.v1.events.list(params={"type": "customer.*"}).data
    assert [e.type for e in events] == ["customer.updated", "customer.created"]
    assert events[0].data.object.name == "F" and events[0].data.previous_attributes.name == "E"
    assert events[1].id.startswith("evt_") and events[1].request.id.startswith("req_")
    assert client.v1.events.retrieve(events[0].id).type == "customer.updated"


def test_expand(client):
    prod = client.v1.products.create(params={"name": "P"})
    price = client.v1.prices.create(params={"currency": "usd", "unit_amount": 5, "product": prod.id})
    got = client.v1.prices.retrieve(price.id, params={"expand": ["product"]})
    assert got.product.name == "P"
    err = _invalid(client.v1.prices.retrieve, price.id, params={"expand": ["nickname"]})
    assert err.param == "expand"


# idempotency ---------------------------------------------------------------------------------
def test_idempotent_replay_and_mismatch(client, sb):
    first = client.v1.customers.create(params={"name": "Once"}, options={"idempotency_key": "key-1"})
    again = client.v1.customers.create(params={"name": "Once"}, options={"idempotency_key": "key-1"})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert len(sb.state.objects("customer")) == 1
    with pytest.raises(stripe.IdempotencyError) as info:
        client.v1.customers.create(params={"name": "Other"}, options={"idempotency_key": "key-1"})
    assert info.value.http_status == 400
    assert info.value.user_message == (
        "Keys for idempotent requests can only be used with the same parameters they were first used with. "
        "Try using a key other than 'key-1' if you meant to execute a different request."
    )
    with pytest.raises(stripe.IdempotencyError):
        client.v1.products.create(params={"name": "Once"}, options={"idempotency_key": "key-1"})


def test_idempotency_keys_are_scoped_per_api_key(sb):
    a = client_for(sb, "sk_test_aaa").v1.customers.create(
        params={"name": "S"}, options={"idempotency_key": "k"}
    )
    b = client_for(sb, "sk_test_bbb").v1.customers.create(
        params={"name": "S"}, options={"idempotency_key": "k"}
    )
    assert a.id != b.id


def test_validation_errors_are_not_saved_for_idempotency(client):
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create(params={"email": "bad"}, options={"idempotency_key": "k2"})
    with pytest.raises(stripe.InvalidRequestError):  # same key, same params: validated again, not replayed
        client.v1.customers.create(params={"email": "bad"}, options={"idempotency_key": "k2"})


def test_concurrent_request_with_same_key_gets_409(sb, client):
    results: list[object] = []
    lock = sb.state.store.lock
    lock.acquire()
    try:
        worker = threading.Thread(
            target=lambda: results.append(
                client.v1.customers.create(params={"name": "C"}, options={"idempotency_key": "busy"})
            )
        )
        worker.start()
        while sb.state.idempotency.count() == 0:  # the first request is now in progress
            threading.Event().wait(0.005)
        with pytest.raises(stripe.APIError) as info:
            client.v1.customers.create(params={"name": "C"}, options={"idempotency_key": "busy"})
        assert info.value.http_status == 409 and info.value.error.code == "idempotency_key_in_use"
    finally:
        lock.release()
    worker.join()
    replay = client.v1.customers.create(params={"name": "C"}, options={"idempotency_key": "busy"})
    assert replay.id == results[0].id


# limits and faults ---------------------------------------------------------------------------
def test_rate_limit_429():
    sb = start_stripe(rps=1)
    try:
        client = client_for(sb)
        with pytest.raises(stripe.RateLimitError) as info:
            for _ in range(20):
                client.v1.customers.list()
        assert info.value.http_status == 429 and info.value.error.code == "rate_limit"
        assert info.value.user_message.startswith("Request rate limit exceeded.")
        assert info.value.error.type == "invalid_request_error"
    finally:
        sb.stop()


def test_injected_500_and_429(sb, client):
    sb.configure(error_rate=1.0, error_kinds=["500"])
    with pytest.raises(stripe.APIError) as info:
        client.v1.customers.create(params={"name": "x"})
    assert info.value.http_status == 500 and info.value.error.type == "api_error"
    sb.configure(error_kinds=["429"])
    with pytest.raises(stripe.RateLimitError):
        client.v1.customers.list()
    sb.configure(error_rate=0)
    assert sb.state.objects("customer") == []  # a 500 before execution changes nothing


def test_drop_creates_then_drops_and_same_key_replays(sb, client):
    sb.configure(error_rate=1.0, error_kinds=["drop"])
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.create(params={"name": "Dropped"}, options={"idempotency_key": "drop-1"})
    assert [c["name"] for c in sb.state.objects("customer")] == ["Dropped"]  # created before the drop
    sb.configure(error_rate=0)
    retry = client.v1.customers.create(params={"name": "Dropped"}, options={"idempotency_key": "drop-1"})
    assert retry.id == sb.state.objects("customer")[0]["id"]
    assert retry.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(sb.state.objects("customer")) == 1


def test_slow_requests_outlast_the_client_timeout_but_still_run(sb):
    sb.configure(error_rate=1.0, error_kinds=["slow"], slow_seconds=1.0)
    impatient = client_for(sb, http_client=stripe.RequestsClient(timeout=0.2))
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.customers.create(params={"name": "Slow"}, options={"idempotency_key": "slow-1"})
    sb.configure(error_rate=0)
    while not any(r["idempotency_key"] == "slow-1" for r in sb.state.requests):
        threading.Event().wait(0.05)  # wait for the server to finish the slow request
    assert [c["name"] for c in sb.state.objects("customer")] == ["Slow"]


# admin API -----------------------------------------------------------------------------------
def test_admin_counters_requests_objects_config_reset(sb, client):
    s = http()
    client.v1.customers.create(params={"name": "A"}, options={"idempotency_key": "adm"})
    client.v1.customers.list()
    counters = s.get(f"{sb.url}/_sandbox/counters").json()
    assert counters["POST /v1/customers"] == 1 and counters["GET /v1/customers"] == 1
    assert not any(k.startswith("GET /_sandbox") for k in counters)
    log = s.get(f"{sb.url}/_sandbox/requests").json()
    assert [(r["method"], r["path"], r["status"], r["idempotency_key"]) for r in log] == [
        ("POST", "/v1/customers", 200, "adm"),
        ("GET", "/v1/customers", 200, None),
    ]
    assert isinstance(log[0]["time"], float)
    assert log[0]["params"] == {"name": "A"} and log[0]["request_id"].startswith("req_")
    objs = s.get(f"{sb.url}/_sandbox/objects/customer").json()
    assert [o["name"] for o in objs] == ["A"]
    cfg = s.post(
        f"{sb.url}/_sandbox/config", json={"rps": 0, "latency_ms": 0, "search_lag_seconds": 2}
    ).json()
    assert cfg["search_lag_seconds"] == 2
    assert s.post(f"{sb.url}/_sandbox/config", json={"error_kinds": ["boom"]}).status_code == 400
    s.post(f"{sb.url}/_sandbox/counters/reset")
    assert s.get(f"{sb.url}/_sandbox/counters").json() == {}
    s.post(f"{sb.url}/_sandbox/reset")
    assert s.get(f"{sb.url}/_sandbox/objects/customer").json() == []
    assert s.get(f"{sb.url}/_sandbox/requests").json() == []
    # the reset also forgot idempotency keys
    assert client.v1.customers.create(params={"name": "B"}, options={"idempotency_key": "adm"}).name == "B"

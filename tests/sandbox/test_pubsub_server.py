"""The fake org's Pub/Sub API, driven over gRPC/TLS on loopback by the connector's generated stubs."""

from __future__ import annotations

import io
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import fastavro
import grpc
import pytest

from connector.salesforce.pubsub import pubsub_api_pb2 as pb
from connector.salesforce.pubsub import pubsub_api_pb2_grpc as pb_grpc
from connector.sandbox.salesforce.contracts import Line, create_contract

ACCOUNTS = "/data/AccountChangeEvent"
ORDER_ACTIVATED = "/event/Order_Activated__e"
CORRUPTED = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
INTEGRATION = ("sandbox-client", "sandbox-secret")
ADMIN = ("sandbox-admin", "sandbox-admin-secret")


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _token(sandbox: Any, client: tuple[str, str]) -> dict[str, str]:
    resp = sandbox.sf_admin.session.post(
        f"{sandbox.salesforce_url}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": client[0], "client_secret": client[1]},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


class Api:
    """The generated stub plus the auth metadata of one OAuth token."""

    def __init__(self, sandbox: Any, client: tuple[str, str] = INTEGRATION) -> None:
        self.sandbox = sandbox
        creds = grpc.ssl_channel_credentials(Path(sandbox.ca_file).read_bytes())
        self.channel = grpc.secure_channel(sandbox.servers.salesforce.pubsub_url, creds)
        self.stub = pb_grpc.PubSubStub(self.channel)
        token = _token(sandbox, client)
        self.user_id = token["id"].rsplit("/", 1)[-1]
        self.metadata = (
            ("accesstoken", token["access_token"]),
            ("instanceurl", token["instance_url"]),
            ("tenantid", token["id"].rsplit("/", 2)[-2]),
        )
        self._schemas: dict[str, Any] = {}

    def decode(self, event: Any) -> dict[str, Any]:
        if event.schema_id not in self._schemas:
            info = self.stub.GetSchema(pb.SchemaRequest(schema_id=event.schema_id), metadata=self.metadata)
            self._schemas[event.schema_id] = fastavro.parse_schema(json.loads(info.schema_json))
        schema = self._schemas[event.schema_id]
        return fastavro.schemaless_reader(io.BytesIO(event.payload), schema, schema)

    def subscribe(self, first: Any) -> Subscription:
        return Subscription(self, first)


class Subscription:
    """A Subscribe stream whose further FetchRequests the test sends explicitly."""

    def __init__(self, api: Api, first: Any) -> None:
        self.requests: queue.Queue[Any] = queue.Queue()
        self.requests.put(first)
        self.done = threading.Event()
        self.call = api.stub.Subscribe(self._iter(), metadata=api.metadata)
        self.responses: queue.Queue[Any] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self.ended = threading.Event()
        self._buffer: list[Any] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _iter(self) -> Iterator[Any]:
        while not self.done.is_set():
            try:
                yield self.requests.get(timeout=0.2)
            except queue.Empty:
                continue

    def _read(self) -> None:
        try:
            for response in self.call:
                self.responses.put(response)
        except grpc.RpcError as exc:
            self.error = exc
        finally:
            self.ended.set()

    def request(self, n: int) -> None:
        self.requests.put(pb.FetchRequest(num_requested=n))

    def events(self, n: int, timeout: float = 15.0) -> list[Any]:
        """The next n events (across however many FetchResponses carry them)."""
        deadline = time.monotonic() + timeout
        while len(self._buffer) < n:
            try:
                response = self.responses.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"got {len(self._buffer)} of {n} events; error={self.error}") from None
            self._buffer.extend(response.events)
        got, self._buffer = self._buffer[:n], self._buffer[n:]
        return got

    def close(self) -> None:
        self.done.set()
        self.call.cancel()


@pytest.fixture
def api(sandbox: Any) -> Iterator[Api]:
    client = Api(sandbox)
    try:
        yield client
    finally:
        client.channel.close()


def _streams(sandbox: Any) -> list[dict[str, Any]]:
    return sandbox.sf_admin._admin("GET", "pubsub/streams")


def _pubsub(sandbox: Any, path: str, body: Any = None) -> Any:
    return sandbox.sf_admin._admin("POST", f"pubsub/{path}", body or {})


def _subscribed(sandbox: Any, topic: str) -> bool:
    return any(s["subscribed"] and s["topic"] == topic for s in _streams(sandbox))


def _accounts(sandbox: Any, n: int) -> list[str]:
    return [sandbox.sf_admin.create_record("Account", {"Name": f"Acme {i}"}) for i in range(n)]


def test_topics_and_schemas(api: Api) -> None:
    topic = api.stub.GetTopic(pb.TopicRequest(topic_name=ACCOUNTS), metadata=api.metadata)
    assert topic.can_subscribe and not topic.can_publish and topic.schema_id
    info = api.stub.GetSchema(pb.SchemaRequest(schema_id=topic.schema_id), metadata=api.metadata)
    schema = json.loads(info.schema_json)
    assert schema["name"] == "AccountChangeEvent"
    names = [f["name"] for f in schema["fields"]]
    assert names[0] == "ChangeEventHeader" and "Name" in names
    header = schema["fields"][0]["type"]
    assert {f["name"] for f in header["fields"]} >= {
        "entityName",
        "recordIds",
        "changeType",
        "changedFields",
        "commitTimestamp",
        "commitUser",
        "changeOrigin",
        "transactionKey",
        "sequenceNumber",
    }
    event = api.stub.GetTopic(pb.TopicRequest(topic_name=ORDER_ACTIVATED), metadata=api.metadata)
    assert event.can_publish
    pe_schema = json.loads(
        api.stub.GetSchema(pb.SchemaRequest(schema_id=event.schema_id), metadata=api.metadata).schema_json
    )
    assert "Record_Id__c" in [f["name"] for f in pe_schema["fields"]]
    with pytest.raises(grpc.RpcError) as err:
        api.stub.GetTopic(pb.TopicRequest(topic_name="/data/NopeChangeEvent"), metadata=api.metadata)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_calls_need_a_valid_token(sandbox: Any, api: Api) -> None:
    bad = (("accesstoken", "00D!nope"), api.metadata[1], api.metadata[2])
    with pytest.raises(grpc.RpcError) as err:
        api.stub.GetTopic(pb.TopicRequest(topic_name=ACCOUNTS), metadata=bad)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    wrong_org = (api.metadata[0], api.metadata[1], ("tenantid", "00D000000000000AAA"))
    with pytest.raises(grpc.RpcError) as err:
        api.stub.GetTopic(pb.TopicRequest(topic_name=ACCOUNTS), metadata=wrong_org)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_change_events_carry_header_ids_and_changed_values(sandbox: Any, api: Api) -> None:
    sub = api.subscribe(pb.FetchRequest(topic_name=ACCOUNTS, replay_preset=pb.LATEST, num_requested=10))
    try:
        wait_for(lambda: _subscribed(sandbox, ACCOUNTS), what="subscription")
        account_id = sandbox.sf_admin.create_record("Account", {"Name": "Acme", "Phone": "555"})
        # (field values are read when the fake turns the change log into events, so this waits)
        created = api.decode(sub.events(1)[0].event)
        sandbox.sf_admin.patch_record("Account", account_id, {"Name": "Acme Corp"})
        updated = api.decode(sub.events(1)[0].event)
        assert created["ChangeEventHeader"]["changeType"] == "CREATE"
        assert created["ChangeEventHeader"]["recordIds"] == [account_id]
        assert created["Name"] == "Acme"
        header = updated["ChangeEventHeader"]
        assert header["changeType"] == "UPDATE"
        assert header["entityName"] == "Account"
        assert "Name" in header["changedFields"]
        assert header["commitUser"] == sandbox.org.users["admin@sandbox.example"]
        assert updated["Name"] == "Acme Corp"
        assert updated["Phone"] is None  # unchanged fields carry no value
    finally:
        sub.close()


def test_order_change_events_carry_the_contract_an_order_belongs_to(sandbox: Any, api: Api) -> None:
    orders = "/data/OrderChangeEvent"
    sub = api.subscribe(pb.FetchRequest(topic_name=orders, replay_preset=pb.LATEST, num_requested=10))
    try:
        wait_for(lambda: _subscribed(sandbox, orders), what="subscription")
        account = sandbox.sf_admin.create_record("Account", {"Name": "Globex"})
        history = create_contract(sandbox.org, account, date(2025, 1, 1), [Line("Seats", 10, 20.0)])
        # the Order is inserted, activated, then contracted: three events
        events = [api.decode(e.event) for e in sub.events(3)]
        contracted = [e for e in events if "ContractId" in e["ChangeEventHeader"]["changedFields"]]
        assert len(contracted) == 1
        assert contracted[0]["ChangeEventHeader"]["recordIds"] == [history.first_order.id]
        assert contracted[0]["ContractId"] == history.contract_id
        assert contracted[0]["SBQQ__Contracted__c"] is True
    finally:
        sub.close()


def test_merge_is_a_delete_of_the_losers_and_an_update_of_the_survivor(sandbox: Any, api: Api) -> None:
    master, loser = _accounts(sandbox, 2)
    sub = api.subscribe(pb.FetchRequest(topic_name=ACCOUNTS, replay_preset=pb.LATEST, num_requested=10))
    try:
        wait_for(lambda: _subscribed(sandbox, ACCOUNTS), what="subscription")
        sandbox.sf_admin.merge(master, [loser], keep={"Name": loser})
        seen = {}
        while "DELETE" not in seen or "UPDATE" not in seen:
            header = api.decode(sub.events(1)[0].event)["ChangeEventHeader"]
            seen[header["changeType"]] = header["recordIds"]
        assert seen["DELETE"] == [loser]
        assert seen["UPDATE"] == [master]
    finally:
        sub.close()


def test_flow_control_delivers_at_most_what_was_requested(sandbox: Any, api: Api) -> None:
    ids = _accounts(sandbox, 5)
    sub = api.subscribe(pb.FetchRequest(topic_name=ACCOUNTS, replay_preset=pb.EARLIEST, num_requested=2))
    try:
        first = sub.events(2)
        wait_for(lambda: [s for s in _streams(sandbox) if s["delivered"] == 2 and s["pending"] == 0])
        # nothing more is sent until asked: the server holds the rest
        assert sub.responses.empty()
        sub.request(10)
        rest = sub.events(3)
        got = [api.decode(e.event)["ChangeEventHeader"]["recordIds"][0] for e in first + rest]
        assert got == ids
        assert [s["pending"] for s in _streams(sandbox)] == [7]
    finally:
        sub.close()


def test_num_requested_is_capped_at_100(sandbox: Any, api: Api) -> None:
    sub = api.subscribe(pb.FetchRequest(topic_name=ACCOUNTS, num_requested=500))
    try:
        wait_for(lambda: _subscribed(sandbox, ACCOUNTS), what="subscription")
        assert [s["pending"] for s in _streams(sandbox)] == [100]
    finally:
        sub.close()


def test_replay_presets(sandbox: Any, api: Api) -> None:
    ids = _accounts(sandbox, 3)
    earliest = api.subscribe(
        pb.FetchRequest(topic_name=ACCOUNTS, replay_preset=pb.EARLIEST, num_requested=10)
    )
    events = earliest.events(3)
    earliest.close()
    assert [api.decode(e.event)["ChangeEventHeader"]["recordIds"][0] for e in events] == ids

    custom = api.subscribe(
        pb.FetchRequest(
            topic_name=ACCOUNTS, replay_preset=pb.CUSTOM, replay_id=events[0].replay_id, num_requested=10
        )
    )
    after_first = custom.events(2)
    custom.close()
    assert [api.decode(e.event)["ChangeEventHeader"]["recordIds"][0] for e in after_first] == ids[1:]

    # The two streams above close asynchronously: until they are gone, "subscribed" could be
    # theirs, and the Account below could be created before LATEST's stream has its position.
    wait_for(lambda: not _subscribed(sandbox, ACCOUNTS), what="the earlier streams to close")
    latest = api.subscribe(pb.FetchRequest(topic_name=ACCOUNTS, replay_preset=pb.LATEST, num_requested=10))
    try:
        wait_for(lambda: _subscribed(sandbox, ACCOUNTS), what="subscription")
        new_id = sandbox.sf_admin.create_record("Account", {"Name": "New"})
        (event,) = latest.events(1)
        assert api.decode(event.event)["ChangeEventHeader"]["recordIds"] == [new_id]
    finally:
        latest.close()


def _refused(api: Api, replay_id: bytes) -> grpc.RpcError:
    sub = api.subscribe(
        pb.FetchRequest(topic_name=ACCOUNTS, replay_preset=pb.CUSTOM, replay_id=replay_id, num_requested=1)
    )
    try:
        sub.ended.wait(15)
        assert sub.error is not None, "the server accepted the replay id"
        return sub.error
    finally:
        sub.close()


def test_replay_id_past_retention_or_never_issued_is_refused(sandbox: Any, api: Api) -> None:
    _accounts(sandbox, 2)
    earliest = api.subscribe(
        pb.FetchRequest(topic_name=ACCOUNTS, replay_preset=pb.EARLIEST, num_requested=10)
    )
    first, second = earliest.events(2)
    earliest.close()

    never_issued = (int.from_bytes(second.replay_id, "big") + 1000).to_bytes(8, "big")
    for bad in (never_issued, b"garbage"):
        error = _refused(api, bad)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(error.trailing_metadata())["error-code"] == CORRUPTED

    assert _pubsub(sandbox, "expire")["expired"] >= 2  # the retention window passes
    error = _refused(api, first.replay_id)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(error.trailing_metadata())["error-code"] == CORRUPTED

    # the newest expired id is still a valid place to resume: nothing after it was lost
    sub = api.subscribe(
        pb.FetchRequest(
            topic_name=ACCOUNTS, replay_preset=pb.CUSTOM, replay_id=second.replay_id, num_requested=5
        )
    )
    try:
        wait_for(lambda: _subscribed(sandbox, ACCOUNTS), what="subscription")
        new_id = sandbox.sf_admin.create_record("Account", {"Name": "After expiry"})
        (event,) = sub.events(1)
        assert api.decode(event.event)["ChangeEventHeader"]["recordIds"] == [new_id]
    finally:
        sub.close()


def test_retention_window_drops_old_events(sandbox: Any, api: Api) -> None:
    _accounts(sandbox, 1)
    time.sleep(0.05)  # the event's age must exceed the window set below
    _pubsub(sandbox, "config", {"retention_seconds": 0.01})
    sub = api.subscribe(pb.FetchRequest(topic_name=ACCOUNTS, replay_preset=pb.EARLIEST, num_requested=5))
    try:
        wait_for(lambda: _subscribed(sandbox, ACCOUNTS), what="subscription")
        _pubsub(sandbox, "config", {"retention_seconds": 3600})
        new_id = sandbox.sf_admin.create_record("Account", {"Name": "Fresh"})
        (event,) = sub.events(1)  # the expired one is not replayed
        assert api.decode(event.event)["ChangeEventHeader"]["recordIds"] == [new_id]
    finally:
        sub.close()


def test_expired_token_ends_an_open_stream_unauthenticated(sandbox: Any, api: Api) -> None:
    sub = api.subscribe(pb.FetchRequest(topic_name=ACCOUNTS, num_requested=5))
    try:
        wait_for(lambda: _subscribed(sandbox, ACCOUNTS), what="subscription")
        sandbox.sf_admin.expire_tokens()
        assert sub.ended.wait(15)
        assert sub.error is not None and sub.error.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        sub.close()


def test_stream_with_nothing_requested_closes_when_idle(sandbox: Any, api: Api) -> None:
    _pubsub(sandbox, "config", {"idle_timeout_seconds": 0.3})
    _accounts(sandbox, 1)
    sub = api.subscribe(pb.FetchRequest(topic_name=ACCOUNTS, replay_preset=pb.EARLIEST, num_requested=1))
    try:
        sub.events(1)
        assert sub.ended.wait(15)  # nothing pending and no new FetchRequest: closed
        assert sub.error is None
    finally:
        sub.close()


def test_stream_with_pending_request_gets_keepalives_not_closed(sandbox: Any, api: Api) -> None:
    _pubsub(sandbox, "config", {"idle_timeout_seconds": 0.2, "keepalive_seconds": 0.1})
    sub = api.subscribe(pb.FetchRequest(topic_name=ACCOUNTS, replay_preset=pb.LATEST, num_requested=1))
    try:
        keepalives = [sub.responses.get(timeout=15) for _ in range(3)]
        assert all(not r.events and r.latest_replay_id and r.pending_num_requested == 1 for r in keepalives)
        assert not sub.ended.is_set()
    finally:
        sub.close()


def test_admin_can_force_streams_closed(sandbox: Any, api: Api) -> None:
    sub = api.subscribe(pb.FetchRequest(topic_name=ACCOUNTS, num_requested=5))
    try:
        wait_for(lambda: _subscribed(sandbox, ACCOUNTS), what="subscription")
        assert _pubsub(sandbox, "close-streams")["closed"] == 1
        assert sub.ended.wait(15)
    finally:
        sub.close()


def test_platform_events_from_admin_api_and_publish_rpc(sandbox: Any, api: Api) -> None:
    sub = api.subscribe(pb.FetchRequest(topic_name=ORDER_ACTIVATED, num_requested=5))
    try:
        wait_for(lambda: _subscribed(sandbox, ORDER_ACTIVATED), what="subscription")
        _pubsub(
            sandbox, "publish", {"topic": ORDER_ACTIVATED, "events": [{"Record_Id__c": "801000000000001AAA"}]}
        )
        topic = api.stub.GetTopic(pb.TopicRequest(topic_name=ORDER_ACTIVATED), metadata=api.metadata)
        schema = fastavro.parse_schema(
            json.loads(
                api.stub.GetSchema(
                    pb.SchemaRequest(schema_id=topic.schema_id), metadata=api.metadata
                ).schema_json
            )
        )
        buf = io.BytesIO()
        fastavro.schemaless_writer(
            buf,
            schema,
            {
                "CreatedDate": 0,
                "CreatedById": api.user_id,
                "Record_Id__c": "801000000000002AAA",
                "Status__c": None,
            },
        )
        published = api.stub.Publish(
            pb.PublishRequest(
                topic_name=ORDER_ACTIVATED,
                events=[pb.ProducerEvent(id="e1", schema_id=topic.schema_id, payload=buf.getvalue())],
            ),
            metadata=api.metadata,
        )
        assert published.results[0].replay_id and not published.results[0].HasField("error")
        records = [api.decode(e.event) for e in sub.events(2)]
        assert [r["Record_Id__c"] for r in records] == ["801000000000001AAA", "801000000000002AAA"]
    finally:
        sub.close()


def test_cannot_publish_to_a_change_event_channel(api: Api) -> None:
    with pytest.raises(grpc.RpcError) as err:
        api.stub.Publish(pb.PublishRequest(topic_name=ACCOUNTS), metadata=api.metadata)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("sobject", "fields", "edit"),
    [
        ("Product2", {"Name": "Platform", "IsActive": True}, {"Name": "Platform Pro", "IsActive": False}),
        ("PricebookEntry", {"UnitPrice": 49.0}, {"UnitPrice": 59.0}),
    ],
)
def test_catalog_edits_stamp_the_record_and_publish_change_events(
    sandbox: Any, api: Api, sobject: str, fields: dict[str, Any], edit: dict[str, Any]
) -> None:
    admin = sandbox.sf_admin
    if sobject == "PricebookEntry":
        book = admin.create_record("Pricebook2", {"Name": "Standard", "IsActive": True})
        product = admin.create_record("Product2", {"Name": "Platform"})
        fields = {**fields, "Pricebook2Id": book, "Product2Id": product, "IsActive": True}
    channel = f"/data/{sobject}ChangeEvent"
    sub = api.subscribe(pb.FetchRequest(topic_name=channel, replay_preset=pb.LATEST, num_requested=10))
    try:
        wait_for(lambda: _subscribed(sandbox, channel), what="subscription")
        record_id = admin.create_record(sobject, fields)
        created = admin.get_record(sobject, record_id)
        assert api.decode(sub.events(1)[0].event)["ChangeEventHeader"]["changeType"] == "CREATE"
        admin.patch_record(sobject, record_id, edit)
        header = api.decode(sub.events(1)[0].event)["ChangeEventHeader"]
        assert header["changeType"] == "UPDATE" and header["recordIds"] == [record_id]
        assert set(edit) <= set(header["changedFields"])
        assert admin.get_record(sobject, record_id)["SystemModstamp"] > created["SystemModstamp"]
        logged = [c for c in admin.changes() if record_id in c["record_ids"]]
        assert [c["change_type"] for c in logged] == ["CREATE", "UPDATE"]
    finally:
        sub.close()

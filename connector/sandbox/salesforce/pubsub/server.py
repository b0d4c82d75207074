"""The fake org's Pub/Sub API: the `eventbus.v1.PubSub` gRPC service over TLS on 127.0.0.1.

Events come from two places: the org's change log (one Change Data Capture event per entry, on
`/data/<Object>ChangeEvent`) and platform events published through the admin API or the `Publish`
RPC. Behaviour that matters to a subscriber follows Salesforce:

* auth by the `accesstoken` / `instanceurl` / `tenantid` metadata, checked against the org's own
  tokens, on every call and again while a stream is open (expired tokens end it UNAUTHENTICATED);
* flow control: at most `num_requested` events (capped at 100 a request, pending adds up), an empty
  keepalive FetchResponse with the latest replay id when nothing arrives for `keepalive_seconds`
  (270 s by default), and the stream closed when nothing is requested for `idle_timeout_seconds`
  (60 s by default);
* replay: LATEST, EARLIEST (the oldest retained event) and CUSTOM (after an opaque 8-byte replay
  id); a replay id older than the retention window, never issued or malformed ends the call
  INVALID_ARGUMENT with `error-code: sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted`
  in the trailers.

Knobs (retention, idle timeout, keepalive, a silent stall) and the admin routes live on `EventBus`.
"""

from __future__ import annotations

import itertools
import logging
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import grpc
import trustme

from connector.sandbox.http import Request, Response, Router
from connector.sandbox.salesforce.pubsub import pubsub_api_pb2 as pb
from connector.sandbox.salesforce.pubsub.schemas import Topic, all_topics

log = logging.getLogger(__name__)

SERVICE = "eventbus.v1.PubSub"
MAX_NUM_REQUESTED = 100
DEFAULT_RETENTION_SECONDS = 72 * 3600
DEFAULT_IDLE_TIMEOUT_SECONDS = 60.0
DEFAULT_KEEPALIVE_SECONDS = 270.0
REPLAY_ID_CORRUPTED = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
AUTH_ERROR = "sfdc.platform.eventbus.grpc.service.auth.error"
TOPIC_NOT_FOUND = "sfdc.platform.eventbus.grpc.service.topic.not.found"
PUBLISH_ERROR = "sfdc.platform.eventbus.grpc.publish.error"
_TICK = 0.05  # how often an open stream looks at its token, the clock and new events
_PUMP_INTERVAL = 0.01  # how often the org's change log is read

Authenticator = Callable[[str], "str | None"]  # access token -> user id, None when invalid/expired


def encode_replay_id(replay: int) -> bytes:
    return struct.pack(">Q", replay)


def decode_replay_id(raw: bytes) -> int | None:
    return struct.unpack(">Q", raw)[0] if len(raw) == 8 else None


@dataclass
class _Event:
    replay: int
    topic: str
    schema_id: str
    payload: bytes
    event_id: str
    stored_at: float


@dataclass
class Knobs:
    retention_seconds: float = DEFAULT_RETENTION_SECONDS
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS
    keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS
    stalled: bool = False  # streams stay open but send nothing (a silent stall)


@dataclass
class _Stream:
    stream_id: int
    user_id: str
    token: str
    topic: str = ""
    cursor: int = 0
    pending: int = 0
    last_request: float = field(default_factory=time.monotonic)
    first: threading.Event = field(default_factory=threading.Event)
    first_request: Any = None
    client_done: bool = False
    started: bool = False  # the first FetchRequest was accepted: the replay position is fixed
    delivered: int = 0


def _millis(stamp: str) -> int:
    return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)


def _avro_value(org_type: str, value: Any) -> Any:
    if value is None:
        return None
    if org_type == "datetime":
        return _millis(value) if isinstance(value, str) else value
    if org_type == "date":
        return (date.fromisoformat(value) - date(1970, 1, 1)).days if isinstance(value, str) else value
    if org_type in ("boolean", "int", "double", "currency", "percent"):
        return value
    return str(value)


class EventBus:
    """Retained events per topic, a global replay counter that never goes back, and the knobs."""

    def __init__(self, org: Any, org_id: str) -> None:
        self.org = org
        self.org_id = org_id
        self.topics: dict[str, Topic] = all_topics(org.schema)
        self.by_schema_id = {t.schema_id: t for t in self.topics.values()}
        self.cond = threading.Condition()
        self.knobs = Knobs()
        self._counter = 0
        self._floor = 0  # events with replay <= floor are past retention (gone)
        self._events: dict[str, list[_Event]] = {name: [] for name in self.topics}
        self._close_generation = 0
        self._streams: dict[int, _Stream] = {}
        self._stream_ids = itertools.count(1)
        self._org_seen = 0  # last org change-log replay id turned into an event
        self._org_seen_stamp = ""

    # ------------------------------------------------------------------ store
    def _append(
        self, topic: Topic, payload: bytes, event_id: str | None = None, at: float | None = None
    ) -> int:
        self._counter += 1
        self._events[topic.name].append(
            _Event(
                self._counter,
                topic.name,
                topic.schema_id,
                payload,
                event_id or str(uuid.uuid4()),
                time.time() if at is None else at,
            )
        )
        return self._counter

    def ingest(self) -> int:
        """Turn new org change-log entries into change events; returns how many were added."""
        with self.org.lock:
            after = max(0, self._org_seen - 1)
            entries = self.org.changes(after)
            if self._org_seen and (
                not entries
                or entries[0]["replay_id"] != self._org_seen
                or entries[0]["commit_timestamp"] != self._org_seen_stamp
            ):
                entries = self.org.changes(0)  # the org was reset: its log starts again at 1
                with self.cond:
                    self._clear_change_events()
            else:
                entries = entries[1:] if self._org_seen else entries
            if not entries:
                return 0
            records = [(entry, self._change_record(entry)) for entry in entries]
        added = 0
        with self.cond:
            for entry, (topic, record) in records:
                self._org_seen, self._org_seen_stamp = entry["replay_id"], entry["commit_timestamp"]
                if topic is not None:
                    at = record["ChangeEventHeader"]["commitTimestamp"] / 1000
                    self._append(topic, topic.encode(record), at=at)
                    added += 1
            if added:
                self.cond.notify_all()
        return added

    def _clear_change_events(self) -> None:
        for name, topic in self.topics.items():
            if topic.is_change_event:
                self._events[name] = []
        self._org_seen, self._org_seen_stamp = 0, ""

    def _change_record(self, entry: dict[str, Any]) -> tuple[Topic | None, dict[str, Any]]:
        """One change-log entry as a change event record (called under the org lock)."""
        sobject = entry["object"]
        topic = next((t for t in self.topics.values() if t.sobject == sobject), None)
        if topic is None:
            return None, {}
        change_type = entry["change_type"]
        changed = [f for f in entry["changed_fields"] if f in topic.fields]
        values: dict[str, Any] = {}
        nulled: list[str] = []
        if change_type in ("CREATE", "UPDATE"):
            row = self.org.get(sobject, entry["record_ids"][0]) or {}
            for name in changed:
                value = _avro_value(topic.fields[name], row.get(name))
                if value is None:
                    nulled.append(name)
                values[name] = value
        stamp = entry["commit_timestamp"]
        header = {
            "entityName": sobject,
            "recordIds": list(entry["record_ids"]),
            "changeType": change_type,
            # The org does not record the writer's Sforce-Call-Options; commitUser tells who wrote.
            "changeOrigin": "",
            "transactionKey": uuid.uuid5(uuid.NAMESPACE_OID, f"{self.org_id}/{stamp}").hex,
            "sequenceNumber": 1,
            "commitTimestamp": _millis(stamp),
            "commitNumber": entry["replay_id"],
            "commitUser": entry["user_id"],
            "nulledFields": nulled if change_type == "UPDATE" else [],
            "diffFields": [],
            "changedFields": changed if change_type == "UPDATE" else [],
        }
        return topic, {"ChangeEventHeader": header, **values}

    def publish_wildcard(self, sobject: str, user_id: str) -> int:
        """A change event whose recordIds is the object's key prefix and `*` ("001*"), as Salesforce
        sends after some schema changes: every record of the object may have changed."""
        topic = next((t for t in self.topics.values() if t.is_change_event and t.sobject == sobject), None)
        if topic is None:
            raise KeyError(f"no change event channel for {sobject}")
        self.ingest()
        with self.org.lock:
            stamp = self.org._stamp()
        prefix = self.org.schema.objects[sobject].key_prefix
        header = {
            "entityName": sobject,
            "recordIds": [prefix + "*"],
            "changeType": "UPDATE",
            "changeOrigin": "",
            "transactionKey": uuid.uuid5(uuid.NAMESPACE_OID, f"{self.org_id}/{stamp}").hex,
            "sequenceNumber": 1,
            "commitTimestamp": _millis(stamp),
            "commitNumber": 0,
            "commitUser": user_id,
            "nulledFields": [],
            "diffFields": [],
            "changedFields": [],
        }
        payload = topic.encode({"ChangeEventHeader": header})
        with self.cond:
            replay = self._append(topic, payload)
            self.cond.notify_all()
        return replay

    def publish(self, topic_name: str, fields: dict[str, Any], user_id: str) -> int:
        """Publish one platform event with these custom field values; returns its replay number."""
        topic = self.topics.get(topic_name)
        if topic is None or topic.is_change_event:
            raise KeyError(f"no platform event channel {topic_name}")
        self.ingest()
        record = {"CreatedDate": int(time.time() * 1000), "CreatedById": user_id, **fields}
        payload = topic.encode(record)
        with self.cond:
            replay = self._append(topic, payload)
            self.cond.notify_all()
        return replay

    def publish_payload(self, topic: Topic, payload: bytes, event_id: str) -> int:
        topic.decode(payload)  # refuse what does not match the schema
        with self.cond:
            replay = self._append(topic, payload, event_id or None)
            self.cond.notify_all()
        return replay

    def purge(self, now: float | None = None) -> int:
        """Drop events older than the retention window; returns how many went."""
        self.ingest()
        now = time.time() if now is None else now
        cutoff = now - self.knobs.retention_seconds
        gone = 0
        with self.cond:
            for name, events in self._events.items():
                keep = [e for e in events if e.stored_at > cutoff]
                for e in events[: len(events) - len(keep)]:
                    self._floor = max(self._floor, e.replay)
                gone += len(events) - len(keep)
                self._events[name] = keep
        return gone

    def expire_all(self) -> int:
        """Every retained event falls out of the retention window now."""
        self.ingest()  # changes already in the org's log are as old as the rest
        with self.cond:
            gone = sum(len(events) for events in self._events.values())
            self._events = {name: [] for name in self.topics}
            self._floor = self._counter
        return gone

    def reset(self) -> None:
        """Forget every event and knob (the replay counter keeps counting, as replay ids never repeat)."""
        with self.cond:
            self.knobs = Knobs()
            self._events = {name: [] for name in self.topics}
            self._close_generation += 1
            self.cond.notify_all()

    def close_streams(self) -> int:
        with self.cond:
            self._close_generation += 1
            self.cond.notify_all()
            return len(self._streams)

    def streams(self) -> list[dict[str, Any]]:
        with self.cond:
            return [
                {
                    "id": s.stream_id,
                    "topic": s.topic,
                    "user_id": s.user_id,
                    "pending": s.pending,
                    "delivered": s.delivered,
                    "subscribed": s.started,
                }
                for s in self._streams.values()
            ]

    def _after(self, topic: str, cursor: int, limit: int) -> list[_Event]:
        events = self._events[topic]
        # replay numbers increase within a topic: skip what was delivered
        lo, hi = 0, len(events)
        while lo < hi:
            mid = (lo + hi) // 2
            if events[mid].replay <= cursor:
                lo = mid + 1
            else:
                hi = mid
        return events[lo : lo + limit]

    # ------------------------------------------------------------------ pump
    def pump_forever(self, stop: threading.Event) -> None:
        last_purge = 0.0
        while not stop.wait(_PUMP_INTERVAL):
            try:
                with self.cond:
                    listening = bool(self._streams)
                if listening:  # otherwise the change log waits: events are made when asked for
                    self.ingest()
                if time.monotonic() - last_purge > 0.5:
                    last_purge = time.monotonic()
                    self.purge()
            except Exception:  # the pump must outlive a bad entry
                log.exception("pub/sub sandbox: ingest failed")


class PubSubService:
    """The gRPC handlers."""

    def __init__(self, bus: EventBus, authenticate: Authenticator) -> None:
        self.bus = bus
        self.authenticate = authenticate
        self._rpc_ids = itertools.count(1)

    def _rpc_id(self) -> str:
        return f"sandbox-{next(self._rpc_ids)}"

    def _abort(self, context: grpc.ServicerContext, code: grpc.StatusCode, error_code: str, msg: str) -> None:
        rpc_id = self._rpc_id()
        context.set_trailing_metadata((("error-code", error_code), ("rpc-id", rpc_id)))
        context.abort(code, f"{msg} rpcId: {rpc_id}")

    def _auth(self, context: grpc.ServicerContext) -> tuple[str, str]:
        meta = {k.lower(): v for k, v in context.invocation_metadata()}
        token = str(meta.get("accesstoken") or "")
        tenant = str(meta.get("tenantid") or "")
        user_id = self.authenticate(token) if token else None
        if user_id is None or not meta.get("instanceurl") or tenant[:15] != self.bus.org_id[:15]:
            self._abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                AUTH_ERROR,
                "An error occurred while trying to authenticate. Verify your credentials and try again.",
            )
        return token, str(user_id)

    def _topic(self, context: grpc.ServicerContext, name: str) -> Topic:
        topic = self.bus.topics.get(name)
        if topic is None:
            self._abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                TOPIC_NOT_FOUND,
                f"Topic {name} not found. Verify the topic name and your access to it.",
            )
        return topic  # type: ignore[return-value]

    def GetTopic(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        topic = self._topic(context, request.topic_name)
        return pb.TopicInfo(
            topic_name=topic.name,
            tenant_guid=self.bus.org_id,
            can_publish=not topic.is_change_event,
            can_subscribe=True,
            schema_id=topic.schema_id,
            rpc_id=self._rpc_id(),
        )

    def GetSchema(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        topic = self.bus.by_schema_id.get(request.schema_id)
        if topic is None:
            self._abort(context, grpc.StatusCode.NOT_FOUND, TOPIC_NOT_FOUND, "Schema not found.")
        return pb.SchemaInfo(schema_json=topic.schema_json, schema_id=topic.schema_id, rpc_id=self._rpc_id())  # type: ignore[union-attr]

    def Publish(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        topic = self._topic(context, request.topic_name)
        if topic.is_change_event:
            self._abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                PUBLISH_ERROR,
                "Publishing to this topic is not allowed.",
            )
        results = []
        for event in request.events:
            if event.schema_id != topic.schema_id:
                results.append(
                    pb.PublishResult(
                        error=pb.Error(code=pb.PUBLISH, msg="schema id does not match the topic's"),
                        correlation_key=event.id,
                    )
                )
                continue
            try:
                replay = self.bus.publish_payload(topic, event.payload, event.id)
            except Exception as exc:  # an undecodable payload fails that event only
                results.append(
                    pb.PublishResult(
                        error=pb.Error(code=pb.PUBLISH, msg=str(exc)[:200]), correlation_key=event.id
                    )
                )
                continue
            results.append(pb.PublishResult(replay_id=encode_replay_id(replay), correlation_key=event.id))
        return pb.PublishResponse(results=results, schema_id=topic.schema_id, rpc_id=self._rpc_id())

    # ------------------------------------------------------------------ Subscribe
    def Subscribe(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        token, user_id = self._auth(context)
        bus = self.bus
        with bus.cond:
            stream = _Stream(next(bus._stream_ids), user_id, token)
            bus._streams[stream.stream_id] = stream
            generation = bus._close_generation
        reader = threading.Thread(
            target=self._read_requests,
            args=(request_iterator, stream),
            name="pubsub-sandbox-reader",
            daemon=True,
        )
        reader.start()
        try:
            yield from self._serve(stream, generation, context)
        finally:
            with bus.cond:
                bus._streams.pop(stream.stream_id, None)

    def _read_requests(self, request_iterator: Iterator[Any], stream: _Stream) -> None:
        bus = self.bus
        try:
            for request in request_iterator:
                with bus.cond:
                    if stream.first_request is None:
                        stream.first_request = request
                    stream.pending += max(0, min(request.num_requested, MAX_NUM_REQUESTED))
                    stream.last_request = time.monotonic()
                    stream.first.set()
                    bus.cond.notify_all()
        except Exception:  # cancelled or broken: the serving loop notices client_done
            pass
        finally:
            with bus.cond:
                stream.client_done = True
                bus.cond.notify_all()

    def _start(self, stream: _Stream, context: grpc.ServicerContext) -> None:
        """Resolve the first FetchRequest: topic and replay start (under the bus lock)."""
        bus = self.bus
        first = stream.first_request
        topic = bus.topics.get(first.topic_name)
        if topic is None:
            self._abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                TOPIC_NOT_FOUND,
                f"Topic {first.topic_name} not found. Verify the topic name and your access to it.",
            )
        stream.topic = first.topic_name
        if first.replay_preset == pb.EARLIEST:
            stream.cursor = bus._floor
        elif first.replay_preset == pb.CUSTOM:
            replay = decode_replay_id(first.replay_id)
            if replay is None or replay > bus._counter or replay < bus._floor:
                self._abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    REPLAY_ID_CORRUPTED,
                    "The Replay ID validation failed. Ensure that the Replay ID is valid "
                    "and within the retention window.",
                )
            stream.cursor = int(replay)  # type: ignore[arg-type]
        else:
            stream.cursor = bus._counter

    def _serve(self, stream: _Stream, generation: int, context: grpc.ServicerContext) -> Iterator[Any]:
        bus = self.bus
        started = False
        response: Any = None
        last_sent = time.monotonic()
        while context.is_active():
            with bus.cond:
                if response is None:  # nothing was sent last round: wait for news
                    bus.cond.wait(_TICK)
                if bus._close_generation != generation:
                    return  # closed by the admin API (forced idle close) or a reset
                if not started and stream.first_request is None:
                    if stream.client_done:
                        return
                    continue
            if not started:
                bus.ingest()  # LATEST means after everything the org has logged so far
                with bus.cond:
                    self._start(stream, context)
                    stream.started = True
                started = True
            if self.authenticate(stream.token) is None:
                self._abort(
                    context,
                    grpc.StatusCode.UNAUTHENTICATED,
                    AUTH_ERROR,
                    "An error occurred while trying to authenticate. Verify your credentials and try again.",
                )
            with bus.cond:
                now = time.monotonic()
                response = None
                if bus.knobs.stalled:
                    continue
                if stream.pending > 0:
                    events = bus._after(stream.topic, stream.cursor, stream.pending)
                    if events:
                        stream.cursor = events[-1].replay
                        stream.pending -= len(events)
                        stream.delivered += len(events)
                        response = pb.FetchResponse(
                            events=[
                                pb.ConsumerEvent(
                                    event=pb.ProducerEvent(
                                        id=e.event_id, schema_id=e.schema_id, payload=e.payload
                                    ),
                                    replay_id=encode_replay_id(e.replay),
                                )
                                for e in events
                            ],
                            latest_replay_id=encode_replay_id(stream.cursor),
                            rpc_id=self._rpc_id(),
                            pending_num_requested=stream.pending,
                        )
                    elif now - last_sent >= bus.knobs.keepalive_seconds:
                        # nothing for this topic up to the tip: the tip is a safe place to resume
                        stream.cursor = max(stream.cursor, bus._counter)
                        response = pb.FetchResponse(
                            latest_replay_id=encode_replay_id(stream.cursor),
                            rpc_id=self._rpc_id(),
                            pending_num_requested=stream.pending,
                        )
                elif now - stream.last_request >= bus.knobs.idle_timeout_seconds:
                    return  # nothing requested for too long: Salesforce closes the stream
            if response is not None:
                last_sent = time.monotonic()
                yield response


def _admin(fn: Callable[[], Response]) -> Response:
    try:
        return fn()
    except (ValueError, TypeError, KeyError) as exc:
        return Response.json({"error": f"bad admin request: {exc}"}, 400)


def add_admin_routes(router: Router, bus: EventBus, default_user_id: str) -> None:
    """`/_sandbox/pubsub/...` on the fake org's HTTPS server."""
    base = "/_sandbox/pubsub"

    def publish(req: Request) -> Response:
        def run() -> Response:
            body = req.json() or {}
            events = body.get("events") or [body.get("fields") or {}]
            user = str(body.get("user_id") or default_user_id)
            replays = [bus.publish(str(body["topic"]), dict(e), user) for e in events]
            return Response.json({"ok": True, "replay_ids": [encode_replay_id(r).hex() for r in replays]})

        return _admin(run)

    def wildcard(req: Request) -> Response:
        def run() -> Response:
            body = req.json() or {}
            replay = bus.publish_wildcard(str(body["object"]), str(body.get("user_id") or default_user_id))
            return Response.json({"ok": True, "replay_id": encode_replay_id(replay).hex()})

        return _admin(run)

    def config(req: Request) -> Response:
        def run() -> Response:
            body = req.json() or {}
            with bus.cond:
                for name in ("retention_seconds", "idle_timeout_seconds", "keepalive_seconds"):
                    if name in body:
                        value = float(body[name])
                        if value <= 0:
                            raise ValueError(f"{name} must be positive")
                        setattr(bus.knobs, name, value)
                if "stalled" in body:
                    bus.knobs.stalled = bool(body["stalled"])
                bus.cond.notify_all()
                knobs = dict(bus.knobs.__dict__)
            bus.purge()
            return Response.json({"ok": True, **knobs})

        return _admin(run)

    def expire(req: Request) -> Response:
        return Response.json({"ok": True, "expired": bus.expire_all()})

    def close(req: Request) -> Response:
        return Response.json({"ok": True, "closed": bus.close_streams()})

    def streams(req: Request) -> Response:
        return Response.json(bus.streams())

    def topics(req: Request) -> Response:
        return Response.json(sorted(bus.topics))

    router.add("POST", base + "/publish", publish)
    router.add("POST", base + "/wildcard", wildcard)
    router.add("POST", base + "/config", config)
    router.add("POST", base + "/expire", expire)
    router.add("POST", base + "/close-streams", close)
    router.add("GET", base + "/streams", streams)
    router.add("GET", base + "/topics", topics)


@dataclass
class PubSubSandbox:
    """The running gRPC server: `.url` is `127.0.0.1:PORT` (TLS, trusted through DIR/ca.pem)."""

    url: str
    port: int
    bus: EventBus
    server: grpc.Server
    _stop: threading.Event
    _pump: threading.Thread

    def stop(self) -> None:
        self._stop.set()
        self.server.stop(grace=0.5).wait(5)
        self._pump.join(5)


def _tls_credentials(ca_file: Path) -> grpc.ServerCredentials:
    """A certificate for 127.0.0.1/localhost from a CA of its own, appended to DIR/ca.pem so the
    one CA bundle the connector is given trusts both sandbox servers."""
    ca = trustme.CA(organization_name="cpq2stripe sandbox pubsub")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    with open(ca_file, "ab") as fh:
        fh.write(b"\n" + ca.cert_pem.bytes())
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    return grpc.ssl_server_credentials([(cert.private_key_pem.bytes(), chain)])


def start_pubsub(
    org: Any, org_id: str, authenticate: Authenticator, ca_file: Path, *, port: int = 0
) -> PubSubSandbox:
    bus = EventBus(org, org_id)
    service = PubSubService(bus, authenticate)
    handlers = {
        "Subscribe": grpc.stream_stream_rpc_method_handler(
            service.Subscribe,
            request_deserializer=pb.FetchRequest.FromString,
            response_serializer=pb.FetchResponse.SerializeToString,
        ),
        "GetTopic": grpc.unary_unary_rpc_method_handler(
            service.GetTopic,
            request_deserializer=pb.TopicRequest.FromString,
            response_serializer=pb.TopicInfo.SerializeToString,
        ),
        "GetSchema": grpc.unary_unary_rpc_method_handler(
            service.GetSchema,
            request_deserializer=pb.SchemaRequest.FromString,
            response_serializer=pb.SchemaInfo.SerializeToString,
        ),
        "Publish": grpc.unary_unary_rpc_method_handler(
            service.Publish,
            request_deserializer=pb.PublishRequest.FromString,
            response_serializer=pb.PublishResponse.SerializeToString,
        ),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="pubsub-sandbox"))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    bound = server.add_secure_port(f"127.0.0.1:{port}", _tls_credentials(ca_file))
    if not bound:
        raise OSError(f"cannot bind the Pub/Sub sandbox to 127.0.0.1:{port}")
    server.start()
    stop = threading.Event()
    bus.ingest()  # whatever the org already logged is history, retained like any event
    pump = threading.Thread(target=bus.pump_forever, args=(stop,), name="pubsub-sandbox-pump", daemon=True)
    pump.start()
    return PubSubSandbox(f"127.0.0.1:{bound}", bound, bus, server, stop, pump)


__all__ = ["UTC", "EventBus", "PubSubSandbox", "add_admin_routes", "start_pubsub"]
